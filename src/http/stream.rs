//! A response body written while it is sent, for `/metrics` with many
//! scheduled targets: the text is produced a chunk at a time as hyper asks
//! for the next frame, so a scrape of 100 000 targets never sits in memory
//! whole. hyper asks only when its write buffer has room (see
//! [`super::connection`]), so a client that reads slowly slows the
//! production down rather than piling frames up.

#![forbid(unsafe_code)]

use crate::metrics::scheduled::ScheduledExposition;
use hyper::body::{Body, Bytes, Frame};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Bytes per frame: large enough to amortise the frame overhead, small
/// enough that producing one does not hold a worker thread for long, and
/// that a stalled connection holds little (one frame on top of hyper's
/// write buffer).
const CHUNK_BYTES: usize = 64 * 1024;

/// The exporter's own metrics, then the scheduled targets, then the end marker.
#[derive(Debug)]
pub(super) struct MetricsBody {
    head: Option<String>,
    scheduled: ScheduledExposition,
    tail: Option<&'static str>,
    /// Set after each chunk: the next poll yields to other tasks first.
    yield_next: bool,
}

impl MetricsBody {
    /// A body of `head`, the chunks of `scheduled`, and `tail`.
    pub(super) fn new(head: String, scheduled: ScheduledExposition, tail: &'static str) -> Self {
        Self {
            head: Some(head),
            scheduled,
            tail: Some(tail),
            yield_next: false,
        }
    }

    fn next_text(&mut self) -> Option<String> {
        loop {
            let text = match self.head.take() {
                Some(head) => head,
                None => match self.scheduled.next_chunk(CHUNK_BYTES) {
                    Some(chunk) => chunk,
                    None => self.tail.take()?.to_owned(),
                },
            };
            if !text.is_empty() {
                return Some(text);
            }
        }
    }
}

impl Body for MetricsBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let body = self.get_mut();
        // A 300 MB scrape is seconds of CPU; without yielding between
        // chunks it would hold a worker thread and starve other requests.
        if std::mem::take(&mut body.yield_next) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        body.yield_next = true;
        Poll::Ready(
            body.next_text()
                .map(|text| Ok(Frame::data(Bytes::from(text)))),
        )
    }
}
