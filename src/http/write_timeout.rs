//! Fails a connection's write once it has made no progress for a while.
//!
//! hyper has a timeout for reading a request's headers but none for
//! writing the answer. A client that sends `GET /metrics` and never reads
//! would keep its connection, its file descriptor and the response's
//! buffers for as long as it likes. With a [`StallTimer`] watching its
//! writes, a write that stays pending for `--web.write-timeout` fails with
//! `TimedOut`; hyper then ends the connection and drops the response.
//!
//! The timer measures stalls, not whole responses: it starts when a write
//! finds the socket full and is cleared by any write that gets through. A
//! slow but live reader, such as Prometheus reading a large scrape over a
//! slow link, is never cut off; one that reads nothing is, after exactly
//! the timeout.

#![forbid(unsafe_code)]

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Watches one connection's writes.
#[derive(Debug)]
pub(super) struct StallTimer {
    timeout: Duration,
    /// Created at the first stall only: most connections never stall.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether a write is waiting now, so the timer is running.
    armed: bool,
}

impl StallTimer {
    pub(super) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            timer: None,
            armed: false,
        }
    }

    /// Passes a finished `write` through and clears the timer; for a write
    /// still waiting, starts the timer, or fails once it has run out.
    pub(super) fn watch(
        &mut self,
        cx: &mut Context<'_>,
        write: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if write.is_ready() {
            self.armed = false;
            return write;
        }
        let deadline = Instant::now() + self.timeout;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.armed {
            timer.as_mut().reset(deadline);
            self.armed = true;
        }
        if timer.as_mut().poll(cx).is_ready() {
            self.armed = false;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client accepted no data for {:?}, closing the connection \
                     (raise --web.write-timeout for slower clients)",
                    self.timeout
                ),
            )));
        }
        Poll::Pending
    }
}
