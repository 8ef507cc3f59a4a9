//! Warnings about limits that are reached and left again, without
//! flooding the log.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The least time between two warnings about the same limit.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// When to log that a limit was reached, and that it was left again: a
/// limit under load is reached and left many times a second, and a line
/// for each flooded the log (148 warnings in 2 s of a `/probe` storm).
/// So the warning comes at most once per [`WARN_EVERY`], saying how many
/// times the limit was reached since the last one, and the line saying
/// it was left comes once after each warning.
#[derive(Debug, Default)]
pub(crate) struct Episodes {
    state: Mutex<EpisodeState>,
    /// A warning was logged and no line saying the limit was left yet.
    /// Outside the lock: [`left`](Self::left) is asked on every pass
    /// through a limit (every `/probe` request), and the answer is
    /// nearly always no, which a load tells without taking a lock that
    /// every worker thread would share.
    open: AtomicBool,
}

#[derive(Debug, Default)]
struct EpisodeState {
    last_warning: Option<Instant>,
    /// Times reached since the last warning.
    reached: u64,
}

impl Episodes {
    /// The limit is reached: `Some(times it was reached since the last
    /// warning, this one included)` when a warning is due now.
    pub(crate) fn reached(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.reached += 1;
        let due = state
            .last_warning
            .is_none_or(|last| last.elapsed() >= WARN_EVERY);
        if !due {
            return None;
        }
        state.last_warning = Some(Instant::now());
        self.open.store(true, Ordering::Relaxed);
        Some(std::mem::take(&mut state.reached))
    }

    /// The limit is left: true when the line saying so is due.
    pub(crate) fn left(&self) -> bool {
        self.open.load(Ordering::Relaxed) && self.open.swap(false, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_a_minute_and_one_line_after_each() {
        let episodes = Episodes::default();
        assert_eq!(episodes.reached(), Some(1), "the first is logged");
        assert!(episodes.left(), "and its end");
        for _ in 0..100 {
            assert_eq!(episodes.reached(), None, "flapping is not logged");
            assert!(!episodes.left());
        }
        // A minute later, the next warning counts what was not logged.
        episodes.state.lock().unwrap().last_warning = Instant::now().checked_sub(WARN_EVERY);
        assert_eq!(episodes.reached(), Some(101));
        assert!(episodes.left());
    }
}
