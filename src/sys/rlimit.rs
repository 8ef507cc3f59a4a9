//! `getrlimit`/`setrlimit(RLIMIT_NOFILE)`. Every probe holds a socket, so
//! the default soft limit of 1024 would cap the in-flight probes far below
//! `--probe.max-in-flight`; the limit also sizes the connection slots and
//! is `process_max_fds`.

use std::io;

use super::check_errno;

/// Reads the soft and hard `RLIMIT_NOFILE`.
///
/// # Errors
/// The `getrlimit` error, which Linux only returns for a bad resource id.
pub(crate) fn nofile_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` that outlives the call,
    // and RLIMIT_NOFILE is a valid resource id.
    check_errno(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) })?;
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
///
/// # Errors
/// The `getrlimit` or `setrlimit` error.
pub(crate) fn raise_nofile_limit() -> io::Result<u64> {
    let (soft, hard) = nofile_limit()?;
    if soft >= hard {
        return Ok(soft);
    }
    let limit = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: `limit` is a valid `rlimit` read for the duration of the call;
    // raising the soft limit up to the unchanged hard limit needs no privilege.
    check_errno(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) })?;
    Ok(hard)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Max open files` of `/proc/self/limits`: (soft, hard), "unlimited" as `u64::MAX`.
    fn proc_nofile_limit() -> (u64, u64) {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .expect("Max open files in /proc/self/limits");
        let mut values = line["Max open files".len()..]
            .split_whitespace()
            .map(|value| value.parse().unwrap_or(u64::MAX));
        (values.next().unwrap(), values.next().unwrap())
    }

    #[test]
    fn nofile_limit_is_what_proc_self_limits_says() {
        assert_eq!(nofile_limit().unwrap(), proc_nofile_limit());
    }

    #[test]
    fn raise_nofile_limit_lifts_the_soft_limit_to_the_hard_one() {
        let (soft, hard) = nofile_limit().unwrap();
        if soft == hard {
            // Lower the soft limit by one (no privilege needed), so that
            // the raise has something to do; no test holds that many files.
            let lower = libc::rlimit {
                rlim_cur: hard - 1,
                rlim_max: hard,
            };
            // SAFETY: `lower` is a valid `rlimit` read for the duration of
            // the call; lowering the soft limit needs no privilege.
            check_errno(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lower) }).unwrap();
            assert_eq!(proc_nofile_limit(), (hard - 1, hard));
        }
        assert_eq!(raise_nofile_limit().unwrap(), hard);
        assert_eq!(proc_nofile_limit(), (hard, hard));
        // At the hard limit already: nothing to do, the same answer.
        assert_eq!(raise_nofile_limit().unwrap(), hard);
        assert_eq!(proc_nofile_limit(), (hard, hard));
    }
}
