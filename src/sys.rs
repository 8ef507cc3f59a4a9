//! The one place where this crate calls libc directly or uses `unsafe`.
//!
//! Everything on the probe path goes through socket2's safe API. What is
//! left here has no safe wrapper in std, socket2 or tokio:
//!
//! - [`raise_nofile_limit`]: `getrlimit`/`setrlimit(RLIMIT_NOFILE)`. Every
//!   probe holds a socket, so the default soft limit of 1024 would cap the
//!   in-flight probes far below `--probe.max-in-flight`.
//! - [`nofile_limit`]: `getrlimit`, for `process_max_fds`.
//! - [`set_current_thread_realtime`]: `sched_setscheduler(SCHED_RR)`, the
//!   opt-in `--probe.realtime-priority` for the probe thread, so that a
//!   busy machine cannot delay a half-open close past the delayed ACK. It
//!   needs an `RLIMIT_RTPRIO` of at least 1 or `CAP_SYS_NICE`.
//! - [`clock_ticks_per_second`] and [`page_size`]: `sysconf`, to turn the
//!   tick and page counts of `/proc/self/stat` into seconds and bytes for
//!   the `process_*` metrics.
//! - [`open_for_reading_without_blocking`]: std's safe `custom_flags`, but
//!   with libc's flag values, which std does not name.
//! - [`kill_process_group`]: `kill(-pgid, SIGKILL)`, for the `exec`
//!   prober, which starts each command in a process group of its own and
//!   kills the whole group so that no child of the command outlives the
//!   probe. std and tokio only kill the one child they started.
//! - `enter_bench_probe_netns`: `setns(CLONE_NEWNET)`, only in builds with
//!   the `bench` feature, for `bench/halfopen_under_load.sh`: it moves the
//!   probe thread into a network namespace where the kernel's delayed-ACK
//!   counter sees probes only.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens `path` read-only with `O_NONBLOCK` and `O_NOCTTY`.
///
/// A plain open of a FIFO waits until something opens it for writing,
/// which is how a FIFO at the config path used to hang reloads; with
/// `O_NONBLOCK` the open returns at once and the caller can look at the
/// file type before reading. `O_NOCTTY` keeps a terminal device from
/// becoming the process's controlling terminal. Reads of a regular file
/// are unaffected by either flag.
///
/// # Errors
/// The `open` error.
pub fn open_for_reading_without_blocking(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// Sends `SIGKILL` to every process in the process group `pgid`.
///
/// # Errors
/// The `kill` error: `ESRCH` when no process is left in the group, and
/// `EINVAL` for a `pgid` of 0, 1 or over `i32::MAX`, which would name the
/// caller's own group, every process, or nothing.
pub fn kill_process_group(pgid: u32) -> io::Result<()> {
    let pgid = i32::try_from(pgid)
        .ok()
        .filter(|&pgid| pgid > 1)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: kill only sends a signal and touches no memory of ours. A
    // negative pid names a process group; `pgid > 1` rules out -1 (every
    // process we may signal) and 0 (our own group), so at worst the call
    // signals a group that no longer exists and fails with ESRCH.
    if unsafe { libc::kill(-pgid, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads the soft and hard `RLIMIT_NOFILE`.
///
/// # Errors
/// The `getrlimit` error, which Linux only returns for a bad resource id.
pub fn nofile_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` that outlives the call,
    // and RLIMIT_NOFILE is a valid resource id.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
///
/// # Errors
/// The `getrlimit` or `setrlimit` error.
pub fn raise_nofile_limit() -> io::Result<u64> {
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
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(hard)
}

/// Puts the calling thread under the real-time `SCHED_RR` policy at the
/// lowest real-time priority, 1: above every ordinary (CFS) thread, below
/// the kernel's own real-time threads.
///
/// # Errors
/// The `sched_setscheduler` error: `EPERM` when neither `RLIMIT_RTPRIO`
/// nor `CAP_SYS_NICE` allows it.
pub fn set_current_thread_realtime() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: `param` is a valid `sched_param` that outlives the call, and
    // pid 0 names the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &raw const param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `sysconf(_SC_CLK_TCK)`: the unit of the CPU times in `/proc/self/stat`.
#[must_use]
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value; any name is allowed
    // and an unknown one returns -1, which we replace by Linux's 100.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// `sysconf(_SC_PAGESIZE)`: the unit of the resident size in `/proc/self/stat`.
#[must_use]
pub fn page_size() -> u64 {
    // SAFETY: as above; -1 falls back to the common 4 KiB page.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// Benchmark-only, built with `--features bench` by
/// `bench/halfopen_under_load.sh`: when the environment
/// variable `SYNACK_BENCH_PROBE_NETNS` names a network namespace file
/// (`/run/netns/NAME`), moves the calling thread into it, so that the
/// probe sockets it creates from then on live there while the HTTP
/// sockets, accepted from a listener bound before, stay where they were.
/// That makes the namespace's `TcpExtDelayedACKs` count probes only: plain
/// HTTP load moves the host's counter by itself. Does nothing without the
/// variable; a failure is logged, not fatal.
#[cfg(feature = "bench")]
pub fn enter_bench_probe_netns() {
    let Some(path) = std::env::var_os("SYNACK_BENCH_PROBE_NETNS") else {
        return;
    };
    let result = File::open(&path).and_then(|file| {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is open for the duration of the call, and
        // setns only changes the calling thread's network namespace.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    });
    match result {
        Ok(()) => tracing::warn!(
            netns = ?path,
            "benchmark: probe sockets of this thread live in this network namespace"
        ),
        Err(error) => tracing::error!(
            netns = ?path,
            err = %error,
            "benchmark: cannot enter the network namespace"
        ),
    }
}
