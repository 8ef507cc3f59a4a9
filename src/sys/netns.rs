//! `setns(CLONE_NEWNET)`, only in builds with the `bench` feature, for
//! `bench/halfopen_under_load.sh`: it moves the probe thread into a
//! network namespace where the kernel's delayed-ACK counter sees probes
//! only.

use std::fs::File;
use std::os::fd::AsRawFd;

use super::check_errno;

/// Benchmark-only, built with `--features bench` by
/// `bench/halfopen_under_load.sh`: when the environment
/// variable `SYNACK_BENCH_PROBE_NETNS` names a network namespace file
/// (`/run/netns/NAME`), moves the calling thread into it, so that the
/// probe sockets it creates from then on live there while the HTTP
/// sockets, accepted from a listener bound before, stay where they were.
/// That makes the namespace's `TcpExtDelayedACKs` count probes only: plain
/// HTTP load moves the host's counter by itself. Does nothing without the
/// variable; a failure is logged, not fatal.
pub(crate) fn enter_bench_probe_netns() {
    let Some(path) = std::env::var_os("SYNACK_BENCH_PROBE_NETNS") else {
        return;
    };
    let result = File::open(&path).and_then(|file| {
        // SAFETY: the descriptor is open for the duration of the call, and
        // setns only changes the calling thread's network namespace.
        check_errno(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }).map(drop)
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
