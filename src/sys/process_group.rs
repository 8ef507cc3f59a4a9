//! `kill(-pgid, SIGKILL)`, for the `exec` prober, which starts each
//! command in a process group of its own and kills the whole group so
//! that no child of the command outlives the probe. std and tokio only
//! kill the one child they started.

use std::io;

use super::check_errno;

/// Sends `SIGKILL` to every process in the process group `pgid`.
///
/// # Errors
/// The `kill` error: `ESRCH` when no process is left in the group, and
/// `EINVAL` for a `pgid` of 0, 1 or over `i32::MAX`, which would name the
/// caller's own group, every process, or nothing.
pub(crate) fn kill_process_group(pgid: u32) -> io::Result<()> {
    let pgid = group_id(pgid)?;
    // SAFETY: kill only sends a signal and touches no memory of ours. A
    // negative pid names a process group; `group_id` rules out -1 (every
    // process we may signal) and 0 (our own group), so at worst the call
    // signals a group that no longer exists and fails with ESRCH.
    check_errno(unsafe { libc::kill(-pgid, libc::SIGKILL) })?;
    Ok(())
}

/// `pgid` as the id of one process group that is not the caller's own:
/// over 1 and at most `i32::MAX`, or `EINVAL`.
fn group_id(pgid: u32) -> io::Result<i32> {
    i32::try_from(pgid)
        .ok()
        .filter(|&pgid| pgid > 1)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// Waits (at most 5 s) until `pid` has exited: gone, or a zombie.
    fn exited(pid: u32) -> bool {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(stat) if stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z')) => {
                    return true;
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        false
    }

    #[test]
    fn kill_process_group_kills_the_command_and_its_children() {
        // A shell in a group of its own that starts a child, says its
        // pid, and waits for it.
        let mut shell = Command::new("sh")
            .args(["-c", "sleep 30 & echo $!; wait"])
            .process_group(0)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(shell.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let sleeper: u32 = line.trim().parse().unwrap();
        kill_process_group(shell.id()).unwrap();
        assert_eq!(shell.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert!(
            exited(sleeper),
            "the shell's child {sleeper} outlived the kill"
        );
    }

    #[test]
    fn kill_process_group_of_a_group_that_is_gone_says_esrch() {
        let mut sleeper = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        kill_process_group(sleeper.id()).unwrap();
        assert_eq!(sleeper.wait().unwrap().signal(), Some(libc::SIGKILL));
        // Reaped, so no process is left in the group.
        let error = kill_process_group(sleeper.id()).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ESRCH), "{error}");
    }

    #[test]
    fn only_one_group_that_is_not_the_callers_is_named() {
        // 0 is the caller's group, 1 would be -1: every process.
        let beyond = u32::try_from(i32::MAX).unwrap() + 1;
        for pgid in [0, 1, beyond, u32::MAX] {
            let error = group_id(pgid).unwrap_err();
            assert_eq!(error.raw_os_error(), Some(libc::EINVAL), "{pgid}: {error}");
        }
        assert_eq!(group_id(2).unwrap(), 2);
        assert_eq!(group_id(beyond - 1).unwrap(), i32::MAX);
    }
}
