//! `sched_setscheduler(SCHED_RR)`, the opt-in `--probe.realtime-priority`
//! for the probe thread, so that a busy machine cannot delay a half-open
//! close past the delayed ACK. It needs an `RLIMIT_RTPRIO` of at least 1 or
//! `CAP_SYS_NICE`.

use std::io;

use super::check_errno;

/// Puts the calling thread under the real-time `SCHED_RR` policy at the
/// lowest real-time priority, 1: above every ordinary (CFS) thread, below
/// the kernel's own real-time threads.
///
/// # Errors
/// The `sched_setscheduler` error: `EPERM` when neither `RLIMIT_RTPRIO`
/// nor `CAP_SYS_NICE` allows it.
pub(crate) fn set_current_thread_realtime() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: `param` is a valid `sched_param` that outlives the call, and
    // pid 0 names the calling thread.
    check_errno(unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &raw const param) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realtime_puts_the_calling_thread_under_sched_rr_at_priority_1_or_says_eperm() {
        // A thread of its own, which ends with the test: no other thread
        // of the test binary changes policy.
        let (result, policy, priority) = std::thread::spawn(|| {
            let result = set_current_thread_realtime();
            // SAFETY: pid 0 names the calling thread; the call only reads.
            let policy = unsafe { libc::sched_getscheduler(0) };
            let mut param = libc::sched_param { sched_priority: -1 };
            // SAFETY: `param` is a live, writable `sched_param`.
            check_errno(unsafe { libc::sched_getparam(0, &raw mut param) }).unwrap();
            (result, policy, param.sched_priority)
        })
        .join()
        .unwrap();
        match result {
            Ok(()) => assert_eq!((policy, priority), (libc::SCHED_RR, 1)),
            Err(error) => {
                assert_eq!(error.raw_os_error(), Some(libc::EPERM), "{error}");
                assert_eq!((policy, priority), (libc::SCHED_OTHER, 0));
            }
        }
    }
}
