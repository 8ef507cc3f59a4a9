//! The front door of a TLS listener, as Go's `net/http` server keeps it
//! (and so every exporter built on exporter-toolkit):
//!
//! - A client that speaks plain HTTP to the TLS port gets Go's answer,
//!   byte for byte: `HTTP/1.0 400 Bad Request`, no headers, the body
//!   `Client sent an HTTP request to an HTTPS server.`, and the
//!   connection closes. It is told by the first five bytes, read before
//!   the handshake (and read again by it, as Go reads them into its
//!   buffer), which Go takes for HTTP (`tlsRecordHeaderLooksLikeHTTP`):
//!   `GET /`, `HEAD `, `POST `, `PUT /` and `OPTIO`. A client that sends
//!   fewer and stops costs nothing while it waits: the bytes are read as
//!   they come, never peeked at again and again.
//! - A handshake that fails (a malformed ClientHello, no client
//!   certificate, a SAN that `client_allowed_sans` does not allow, a
//!   version that `min_version` refuses) or does not finish within
//!   [`HEADER_READ_TIMEOUT`] is logged at `warn` with the client's
//!   address, as Go logs `http: TLS handshake error from ADDR: ...`.
//!   A scanner could make thousands of those a second, so the log takes at
//!   most [`LOG_BURST`] of them at once and then one per [`LOG_INTERVAL`];
//!   how many were left out is logged when the limit allows again. The
//!   limit is one token bucket for all clients: its memory is constant.
//! - A connection that closes before sending anything (a load balancer's
//!   TCP check) is no handshake failure: it is logged at `debug` only,
//!   where Go logs `EOF` for it.

#![forbid(unsafe_code)]

use super::connection::HEADER_READ_TIMEOUT;
use crate::web::{RateLimit, TokenBucket};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Go's answer to a plain-HTTP request on a TLS connection.
pub(super) const PLAIN_HTTP_ANSWER: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// The first five bytes Go takes for a plain-HTTP request.
const HTTP_STARTS: [&[u8]; 5] = [b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO"];

/// After the 400, how long the rest of the request is read (and dropped)
/// for, at most: closing with unread bytes makes Linux reset the
/// connection, and a reset can reach the client before it read the answer.
const LINGER: Duration = Duration::from_secs(1);

/// The most bytes read and dropped in [`LINGER`].
const LINGER_BYTES: usize = 64 * 1024;

/// Handshake failures logged at once, at most.
pub(super) const LOG_BURST: u32 = 10;

/// After the burst, one handshake failure logged per this much time.
pub(super) const LOG_INTERVAL: Duration = Duration::from_secs(6);

/// What the first bytes of a connection say.
#[derive(Debug, PartialEq, Eq)]
enum Opening {
    /// Anything but plain HTTP: rustls decides.
    Tls,
    /// One of [`HTTP_STARTS`].
    PlainHttp,
    /// The client closed before sending anything.
    Closed,
}

/// Whether `start`, the first bytes seen, settle what the connection is
/// (`Some`), or could still begin a plain-HTTP request (`None`).
fn opening(start: &[u8]) -> Option<Opening> {
    let head = HTTP_STARTS[0].len();
    if start.is_empty() {
        Some(Opening::Closed)
    } else if start.len() >= head {
        Some(if HTTP_STARTS.contains(&&start[..head]) {
            Opening::PlainHttp
        } else {
            Opening::Tls
        })
    } else if HTTP_STARTS.iter().any(|http| http.starts_with(start)) {
        None
    } else {
        Some(Opening::Tls)
    }
}

/// The first bytes of a connection, read to tell what it is: at most
/// the five that tell.
#[derive(Debug, Default)]
struct Head {
    bytes: [u8; 5],
    len: usize,
}

/// Reads the first bytes of `stream` into `head` as they come, until
/// they tell what it is. Bytes are read, not peeked at: a peek returns
/// at once the bytes it saw before, so waiting for more meant peeking
/// again and again, and each client that sent "GE" and stopped kept the
/// exporter polling until the header timeout.
async fn first_bytes(stream: &mut TcpStream, head: &mut Head) -> io::Result<Opening> {
    loop {
        let read = stream.read(&mut head.bytes[head.len..]).await?;
        if read == 0 {
            // The client closed: before sending anything, or in the
            // middle of what it sent, which the handshake refuses.
            return Ok(if head.len == 0 {
                Opening::Closed
            } else {
                Opening::Tls
            });
        }
        head.len += read;
        if let Some(opening) = opening(&head.bytes[..head.len]) {
            return Ok(opening);
        }
    }
}

/// A connection whose first bytes were read to tell what it is ([`Head`]):
/// they are read again first, by the TLS handshake.
#[derive(Debug)]
pub(super) struct Replayed {
    head: Head,
    /// How many of `head`'s bytes were read again.
    replayed: usize,
    stream: TcpStream,
}

impl AsyncRead for Replayed {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let left = &this.head.bytes[this.replayed..this.head.len];
        if left.is_empty() {
            return Pin::new(&mut this.stream).poll_read(context, buf);
        }
        let count = left.len().min(buf.remaining());
        buf.put_slice(&left[..count]);
        this.replayed += count;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Replayed {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(context, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(context, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(context)
    }
}

/// The TLS session of an accepted connection, once its handshake is done;
/// `None` when there is none, after answering a plain-HTTP client and
/// logging a failed handshake. Takes at most [`HEADER_READ_TIMEOUT`] and
/// [`LINGER`].
pub(super) async fn accept(
    acceptor: TlsAcceptor,
    mut stream: TcpStream,
    client: SocketAddr,
    log: &HandshakeLog,
) -> Option<TlsStream<Replayed>> {
    let deadline = tokio::time::Instant::now() + HEADER_READ_TIMEOUT;
    let late = || {
        format!(
            "no TLS handshake within {}s",
            HEADER_READ_TIMEOUT.as_secs_f64()
        )
    };
    let mut head = Head::default();
    let opening = match tokio::time::timeout_at(deadline, first_bytes(&mut stream, &mut head)).await
    {
        Ok(Ok(opening)) => opening,
        Ok(Err(error)) => {
            tracing::debug!(client = %client, err = %error, "connection failed before the TLS handshake");
            return None;
        }
        Err(_) => {
            log.failure(client, &late());
            return None;
        }
    };
    match opening {
        Opening::Closed => {
            tracing::debug!(client = %client, "connection closed before the TLS handshake");
            None
        }
        Opening::PlainHttp => {
            log.failure(client, "client sent an HTTP request to an HTTPS server");
            answer_plain_http(stream, deadline).await;
            None
        }
        Opening::Tls => {
            let stream = Replayed {
                head,
                replayed: 0,
                stream,
            };
            match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                Ok(Ok(session)) => Some(session),
                Ok(Err(error)) => {
                    log.failure(client, &error.to_string());
                    None
                }
                Err(_) => {
                    log.failure(client, &late());
                    None
                }
            }
        }
    }
}

/// Writes [`PLAIN_HTTP_ANSWER`] and closes, reading the request meanwhile
/// so that the close does not reset the connection.
async fn answer_plain_http(mut stream: TcpStream, deadline: tokio::time::Instant) {
    let answered = tokio::time::timeout_at(deadline, async {
        stream.write_all(PLAIN_HTTP_ANSWER).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(answered, Ok(Ok(()))) {
        return;
    }
    let linger = deadline.min(tokio::time::Instant::now() + LINGER);
    let _ = tokio::time::timeout_at(linger, async {
        let mut sink = [0; 4096];
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(read) => dropped += read,
            }
        }
    })
    .await;
}

/// The log of failed handshakes, rate-limited; see the module docs.
#[derive(Debug)]
pub(super) struct HandshakeLog {
    state: Arc<Mutex<LogState>>,
    /// The task that logs how many failures were left out, once the
    /// limit allows; aborted with the log.
    summary: Mutex<Option<crate::task::AbortOnDrop>>,
}

#[derive(Debug)]
struct LogState {
    bucket: TokenBucket,
    /// Failures not logged since the last line.
    left_out: u64,
    /// Whether a summary task is waiting for a token.
    summary_pending: bool,
}

/// What becomes of one failure.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Logged, saying how many before it were left out.
    Logged { left_out: u64 },
    /// Left out; the first left out since the last line starts a summary.
    LeftOut { start_summary: bool },
}

impl Default for HandshakeLog {
    fn default() -> Self {
        Self {
            state: Arc::new(Mutex::new(LogState {
                bucket: TokenBucket::new(LOG_LIMIT, Instant::now()),
                left_out: 0,
                summary_pending: false,
            })),
            summary: Mutex::new(None),
        }
    }
}

/// [`LOG_BURST`] and [`LOG_INTERVAL`] as a token bucket's limit.
const LOG_LIMIT: RateLimit = RateLimit {
    interval: LOG_INTERVAL,
    burst: LOG_BURST,
};

impl LogState {
    fn judge(&mut self, now: Instant) -> Verdict {
        if self.bucket.take(now) {
            return Verdict::Logged {
                left_out: std::mem::take(&mut self.left_out),
            };
        }
        self.left_out += 1;
        let start_summary = !self.summary_pending;
        self.summary_pending = true;
        Verdict::LeftOut { start_summary }
    }

    /// The failures left out, if the limit allows a line about them now;
    /// `None` to try again later. `Some(0)`: nothing left to say (a
    /// failure logged since said it).
    fn summary(&mut self, now: Instant) -> Option<u64> {
        if self.left_out == 0 {
            self.summary_pending = false;
            return Some(0);
        }
        if !self.bucket.take(now) {
            return None;
        }
        self.summary_pending = false;
        Some(std::mem::take(&mut self.left_out))
    }
}

impl HandshakeLog {
    fn lock(state: &Mutex<LogState>) -> std::sync::MutexGuard<'_, LogState> {
        state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Logs the failed handshake of `client`, if the limit allows.
    fn failure(&self, client: SocketAddr, reason: &str) {
        let verdict = Self::lock(&self.state).judge(Instant::now());
        match verdict {
            Verdict::Logged { left_out: 0 } => {
                tracing::warn!(client = %client, err = %reason, "TLS handshake error");
            }
            Verdict::Logged { left_out } => {
                tracing::warn!(
                    client = %client,
                    err = %reason,
                    not_logged = left_out,
                    "TLS handshake error (and {left_out} more before it, not logged: at most {LOG_BURST} at once, then one per {}s)",
                    LOG_INTERVAL.as_secs()
                );
            }
            Verdict::LeftOut {
                start_summary: true,
            } => {
                let state = Arc::clone(&self.state);
                let task = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(LOG_INTERVAL).await;
                        match Self::lock(&state).summary(Instant::now()) {
                            None => {}
                            Some(0) => return,
                            Some(left_out) => {
                                tracing::warn!(
                                    not_logged = left_out,
                                    "{left_out} TLS handshake errors were not logged: at most {LOG_BURST} at once, then one per {}s",
                                    LOG_INTERVAL.as_secs()
                                );
                                return;
                            }
                        }
                    }
                });
                *self.summary.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(crate::task::AbortOnDrop::new(task.abort_handle()));
            }
            Verdict::LeftOut {
                start_summary: false,
            } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_bytes_tell_plain_http_from_tls() {
        assert_eq!(opening(b""), Some(Opening::Closed));
        for http in HTTP_STARTS {
            assert_eq!(opening(http), Some(Opening::PlainHttp));
        }
        assert_eq!(opening(b"OPTIONS * HTTP/1.1"), Some(Opening::PlainHttp));
        // A ClientHello's record starts with 0x16, which no request does.
        assert_eq!(opening(&[0x16, 0x03, 0x01]), Some(Opening::Tls));
        // Not among Go's five: rustls refuses them as it refuses any
        // record that is not TLS.
        assert_eq!(opening(b"DELETE / HTTP/1.1"), Some(Opening::Tls));
        assert_eq!(opening(b"GET http://x/"), Some(Opening::Tls));
        // Could still be one: wait for more.
        assert_eq!(opening(b"G"), None);
        assert_eq!(opening(b"PU"), None);
        assert_eq!(opening(b"HEAD"), None);
        assert_eq!(opening(b"GX"), Some(Opening::Tls));
    }

    fn state(now: Instant) -> LogState {
        LogState {
            bucket: TokenBucket::new(LOG_LIMIT, now),
            left_out: 0,
            summary_pending: false,
        }
    }

    #[test]
    fn a_flood_is_logged_up_to_the_burst_then_counted() {
        const FLOOD: u64 = 10_000;
        let start = Instant::now();
        let mut state = state(start);
        let verdicts: Vec<Verdict> = (0..FLOOD).map(|_| state.judge(start)).collect();
        let logged = verdicts
            .iter()
            .filter(|verdict| matches!(verdict, Verdict::Logged { .. }))
            .count();
        assert_eq!(logged, LOG_BURST as usize);
        let summaries = verdicts
            .iter()
            .filter(|verdict| {
                matches!(
                    verdict,
                    Verdict::LeftOut {
                        start_summary: true
                    }
                )
            })
            .count();
        assert_eq!(summaries, 1, "one summary task at a time");
        // No token yet: the summary waits.
        assert_eq!(state.summary(start + LOG_INTERVAL / 2), None);
        // With one, it says how many were left out, once.
        let refilled = start + LOG_INTERVAL;
        assert_eq!(state.summary(refilled), Some(FLOOD - u64::from(LOG_BURST)));
        assert_eq!(
            state.judge(refilled + LOG_INTERVAL),
            Verdict::Logged { left_out: 0 }
        );
    }

    #[test]
    fn a_line_logged_after_a_gap_carries_the_count_and_ends_the_summary() {
        let start = Instant::now();
        let mut state = state(start);
        for _ in 0..LOG_BURST + 3 {
            state.judge(start);
        }
        assert_eq!(
            state.judge(start + LOG_INTERVAL),
            Verdict::Logged { left_out: 3 }
        );
        // The summary task then has nothing to say, and ends.
        assert_eq!(state.summary(start + LOG_INTERVAL * 2), Some(0));
        assert!(!state.summary_pending);
    }
}
