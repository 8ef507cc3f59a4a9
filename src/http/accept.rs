//! What the accept loop does when `accept` fails.
//!
//! A failure that concerns one connection (a client that reset while
//! queued) is skipped at once. The one that matters is running out of
//! file descriptors (`EMFILE`, `ENFILE`), buffers or memory: every
//! in-flight probe holds a socket. Retrying at once would
//! spin a core, and logging every failure floods the log (402 warnings in
//! 20 s were measured before this existed). So the loop pauses, longer
//! each time up to [`MAX_PAUSE`], and logs one warning when an episode
//! starts and one line when accepting works again.

#![forbid(unsafe_code)]

use std::io;
use std::time::{Duration, Instant};

/// Whether a failed `accept` means the process or the system ran out of
/// something (descriptors, buffers, memory), which retrying at once cannot
/// fix. Other errors (`ECONNABORTED`, `EPROTO`, `EPERM` from a firewall)
/// concern one connection that a client reset while it was queued.
pub(super) fn is_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The longest pause between two accepts that failed.
const MAX_PAUSE: Duration = Duration::from_millis(500);

/// The current run of failed accepts, if any.
#[derive(Debug, Default)]
pub(super) struct AcceptTrouble {
    failures: u32,
    since: Option<Instant>,
}

impl AcceptTrouble {
    /// Records a failed accept; returns how long to pause before the next.
    pub(super) fn failed(&mut self, error: &io::Error) -> Duration {
        if self.failures == 0 {
            self.since = Some(Instant::now());
            tracing::warn!(
                err = %error,
                "accept failed; pausing new connections until it clears (out of file \
                 descriptors? raise the open file limit or lower --probe.max-in-flight)"
            );
        }
        self.failures = self.failures.saturating_add(1);
        Duration::from_millis(10u64 << self.failures.min(6)).min(MAX_PAUSE)
    }

    /// Records a successful accept, ending an episode of failures.
    pub(super) fn recovered(&mut self) {
        if let Some(since) = self.since.take() {
            tracing::info!(
                failures = self.failures,
                seconds = since.elapsed().as_secs_f64(),
                "accepting connections again"
            );
            self.failures = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exhaustion_pauses_accepting() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(
                is_exhaustion(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        for errno in [libc::ECONNABORTED, libc::EPROTO, libc::EPERM] {
            assert!(
                !is_exhaustion(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
    }

    #[test]
    fn pauses_grow_to_a_cap_and_an_accept_ends_the_episode() {
        let mut trouble = AcceptTrouble::default();
        let error = io::Error::from_raw_os_error(libc::EMFILE);
        let pauses: Vec<u128> = (0..8).map(|_| trouble.failed(&error).as_millis()).collect();
        assert_eq!(pauses, [20, 40, 80, 160, 320, 500, 500, 500]);
        trouble.recovered();
        assert_eq!(trouble.failed(&error).as_millis(), 20, "a new episode");
    }
}
