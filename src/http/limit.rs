//! `--web.max-connections`: the most HTTP connections served at once.
//!
//! The accept loop takes a slot before it accepts, and the connection
//! gives it back when it ends. At the limit the loop stops accepting:
//! new connections wait in the kernel's listen backlog (then their SYNs
//! go unanswered and clients retry), and are served as others close. No
//! error, no crash, and the descriptors that probes need stay free.

#![forbid(unsafe_code)]

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The slots of one exporter's connections, shared by all its listeners,
/// and whether the loop is waiting at the limit, to log it once.
#[derive(Debug)]
pub(super) struct ConnectionLimit {
    slots: Arc<Semaphore>,
    max: usize,
    waiting: bool,
}

impl ConnectionLimit {
    pub(super) fn new(slots: Arc<Semaphore>, max: usize) -> Self {
        Self {
            slots,
            max,
            waiting: false,
        }
    }

    /// A slot for the next connection, waiting until one is free.
    pub(super) async fn admit(&mut self) -> OwnedSemaphorePermit {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            if std::mem::take(&mut self.waiting) {
                tracing::info!("accepting connections again");
            }
            return permit;
        }
        if !self.waiting {
            self.waiting = true;
            tracing::warn!(
                max_connections = self.max,
                "all connection slots are in use; new connections wait until some close \
                 (raise --web.max-connections if the clients are legitimate)"
            );
        }
        Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed")
    }
}
