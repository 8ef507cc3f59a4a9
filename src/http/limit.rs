//! `--web.max-connections`: the most HTTP connections served at once.
//!
//! The accept loop takes a slot before it accepts, and the connection
//! gives it back when it ends. At the limit the loop stops accepting:
//! new connections wait in the kernel's listen backlog (then their SYNs
//! go unanswered and clients retry), and are served as others close. No
//! error, no crash, and the descriptors that probes need stay free.
//!
//! `/probe` requests, which hold their connection for up to the probe's
//! timeout, may hold only part of the slots ([`ProbeRequestSlots`]); one
//! that finds none free is answered 503 at once ([`probe_request_slot`]),
//! so that a crowd of `/probe` clients cannot keep `/metrics` and
//! `/-/healthy` waiting in the backlog behind them.

#![forbid(unsafe_code)]

use super::response::{HttpResponse, refusal};
use crate::app::ProbeRequestSlots;
use crate::episodes::Episodes;
use hyper::StatusCode;
use hyper::header::{HeaderValue, RETRY_AFTER};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

/// The slots of one exporter's connections, shared by all its listeners,
/// and whether the loop is waiting at the limit, to log it once.
#[derive(Debug)]
pub(super) struct ConnectionLimit {
    slots: Arc<Semaphore>,
    max: usize,
    episodes: Episodes,
}

impl ConnectionLimit {
    pub(super) fn new(slots: Arc<Semaphore>, max: usize) -> Self {
        Self {
            slots,
            max,
            episodes: Episodes::default(),
        }
    }

    /// A slot for the next connection, waiting until one is free.
    pub(super) async fn admit(&mut self) -> OwnedSemaphorePermit {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            if self.episodes.left() {
                tracing::info!("accepting connections again");
            }
            return permit;
        }
        if let Some(times) = self.episodes.reached() {
            tracing::warn!(
                max_connections = self.max,
                times,
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

/// A slot for one `/probe` request, if one is free; a request that finds
/// none gets [`too_many_probe_requests`].
pub(super) fn probe_request_slot(slots: &ProbeRequestSlots) -> Option<SemaphorePermit<'_>> {
    let permit = slots.slots.try_acquire().ok()?;
    if slots.refusing.left() {
        tracing::info!("serving /probe requests again");
    }
    Some(permit)
}

/// The answer to a `/probe` that found no slot: 503 with `Retry-After: 1`
/// and `Connection: close`, so that the client's connection closes and
/// gives its slot to the next in the backlog. Refusals are logged as
/// [`Episodes`] say.
pub(super) fn too_many_probe_requests(slots: &ProbeRequestSlots) -> HttpResponse {
    if let Some(times) = slots.refusing.reached() {
        tracing::warn!(
            probe_requests = slots.max,
            refused = times,
            "every /probe slot is in use; answering further /probe requests 503 until one \
             frees, to keep connections for /metrics and /-/healthy (raise \
             --web.max-connections or the open file limit if the clients are legitimate)"
        );
    }
    let mut response = refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!(
            "too many /probe requests at once: all {} are in flight (a share of \
             --web.max-connections, lowered by a low open file limit); retry later\n",
            slots.max
        ),
    );
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
