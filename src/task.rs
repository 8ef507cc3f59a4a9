//! Tasks that must not outlive the one waiting for them.

#![forbid(unsafe_code)]

use tokio::task::AbortHandle;

/// Aborts a task when dropped. A probe whose caller stopped waiting (its
/// HTTP client left) or a DNS query past its deadline then ends at once,
/// with its socket, instead of holding a slot until its own deadline.
/// Aborting a task that already finished does nothing.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(AbortHandle);

impl AbortOnDrop {
    /// Aborts the task behind `handle` when this guard is dropped.
    pub(crate) fn new(handle: AbortHandle) -> Self {
        Self(handle)
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
