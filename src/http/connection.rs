//! What one client connection may hold, and the IO it is served over.
//!
//! A client that sends a request and then reads slowly, or never, must
//! cost a bounded amount of memory and be let go. Three things make it so:
//!
//! - The `/metrics` body is produced a frame of [`super::stream`]'s
//!   64 KiB at a time, only when hyper asks for one, and holds nothing
//!   that grows with the number of targets.
//! - hyper asks for the next frame only while its write buffer holds less
//!   than [`WRITE_BUFFER_BYTES`]. A stalled connection therefore holds
//!   under 64 KiB plus one frame (64 KiB and one target's lines), plus
//!   hyper's 8 KiB head buffer and a read buffer of at most
//!   [`MAX_HEAD_BYTES`]: about 150 KB in all (the kernel's socket
//!   buffers, bounded by `net.ipv4.tcp_wmem`, come on top but are not the
//!   process's memory). With hyper's default of 400 KiB and 256 KiB frames
//!   it was about 530 KB, and each response also kept a copy of every
//!   target's label set, megabytes with 100 000 targets.
//! - A [`StallTimer`] fails a write that has made no progress for
//!   `--web.write-timeout`, which ends the connection and frees all of it.
//!
//! The same IO layer gives hyper's own 400 and 431 answers a body
//! ([`ErrorAnswers`]). Both watch the write path, so they share one type,
//! [`Guarded`], rather than stacking two IO wrappers.

#![forbid(unsafe_code)]

use super::error_bodies::{self, ErrorAnswers};
use super::write_timeout::StallTimer;
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub(super) use super::error_bodies::MAX_HEAD_BYTES;

/// How long a client may take to send a request's headers.
pub(super) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// hyper's `max_buf_size`: it takes no further body frame while its write
/// buffer holds this much (hyper's minimum is 8 KiB, its default 400 KiB).
/// One frame's worth is enough to keep the socket busy between polls.
pub(super) const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// The IO a connection is served over: a TCP stream, or TLS over one.
pub(super) type ConnectionIo<T = TcpStream> = TokioIo<Guarded<T>>;

/// Wraps an accepted `stream`, or its TLS session, for hyper.
pub(super) fn io<T>(stream: T, write_timeout: Duration) -> ConnectionIo<T> {
    TokioIo::new(Guarded::new(stream, write_timeout))
}

/// A connection's stream with its writes watched: stalls time out, and
/// hyper's error answers get a body. Reads pass through.
#[derive(Debug)]
pub(super) struct Guarded<T> {
    inner: T,
    stalls: StallTimer,
    answers: ErrorAnswers,
}

impl<T> Guarded<T> {
    fn new(inner: T, write_timeout: Duration) -> Self {
        Self {
            inner,
            stalls: StallTimer::new(write_timeout),
            answers: ErrorAnswers::default(),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let write = this.answers.write(&mut this.inner, cx, buf, |inner, cx| {
            inner.poll_write(cx, buf)
        });
        this.stalls.watch(cx, write)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let alone = error_bodies::alone(bufs);
        let write = this.answers.write(&mut this.inner, cx, alone, |inner, cx| {
            inner.poll_write_vectored(cx, bufs)
        });
        this.stalls.watch(cx, write)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    /// Passed through: on a TCP stream, flush and shutdown never wait.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TIMEOUT: Duration = Duration::from_millis(200);

    const HYPER_431: &str = "HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n\
                             content-length: 0\r\ndate: Sun, 22 Nov 2026 05:30:28 GMT\r\n\r\n";

    #[tokio::test]
    async fn a_write_nobody_reads_fails_after_the_timeout() {
        let (client, _server) = tokio::io::duplex(1024);
        let mut stalled = Guarded::new(client, TIMEOUT);
        let started = std::time::Instant::now();
        let error = stalled
            .write_all(&[0; 64 * 1024])
            .await
            .expect_err("nobody reads");
        let waited = started.elapsed();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        assert!(error.to_string().contains("--web.write-timeout"), "{error}");
        assert!(
            (TIMEOUT..TIMEOUT * 5).contains(&waited),
            "failed after {waited:?}"
        );
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_never_cut_off() {
        let (client, mut server) = tokio::io::duplex(1024);
        let mut slow = Guarded::new(client, TIMEOUT);
        // 8 KiB through a 1 KiB pipe, 1 KiB every 100 ms: 800 ms in all,
        // four times the timeout, but no stall is longer than half of it.
        let reader = tokio::spawn(async move {
            let mut buffer = [0; 1024];
            let mut total = 0;
            while total < 8 * 1024 {
                tokio::time::sleep(TIMEOUT / 2).await;
                total += server.read(&mut buffer).await.unwrap();
            }
            total
        });
        slow.write_all(&[1; 8 * 1024])
            .await
            .expect("the reader keeps up");
        assert_eq!(reader.await.unwrap(), 8 * 1024);
    }

    #[tokio::test]
    async fn a_rewritten_answer_survives_partial_writes() {
        // A 16-byte pipe: the rewrite goes out in many pieces.
        let (client, mut server) = tokio::io::duplex(16);
        let mut io = Guarded::new(client, Duration::from_secs(5));
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            server.read_to_end(&mut all).await.unwrap();
            String::from_utf8(all).unwrap()
        });
        let written = io.write(HYPER_431.as_bytes()).await.unwrap();
        assert_eq!(written, HYPER_431.len(), "hyper's head counts as written");
        io.write_all(b"then more").await.unwrap();
        io.shutdown().await.unwrap();
        drop(io);
        let sent = reader.await.unwrap();
        assert!(
            sent.contains("\r\n\r\nrequest header fields too large"),
            "{sent}"
        );
        assert!(sent.ends_with("header fields\nthen more"), "{sent}");
    }

    #[tokio::test]
    async fn vectored_writes_are_rewritten_only_when_the_head_is_alone() {
        let (client, mut server) = tokio::io::duplex(4096);
        let mut io = Guarded::new(client, Duration::from_secs(5));
        let head = io::IoSlice::new(HYPER_431.as_bytes());
        let empty = io::IoSlice::new(&[]);
        let written = std::future::poll_fn(|cx| {
            Pin::new(&mut io).poll_write_vectored(cx, &[empty, head, empty])
        })
        .await
        .unwrap();
        assert_eq!(written, HYPER_431.len());
        let more = io::IoSlice::new(b"x");
        let written =
            std::future::poll_fn(|cx| Pin::new(&mut io).poll_write_vectored(cx, &[head, more]))
                .await
                .unwrap();
        drop(io);
        let mut sent = String::new();
        server.read_to_string(&mut sent).await.unwrap();
        let (rewritten, rest) = sent.split_at(sent.len() - written);
        assert!(rewritten.contains("header fields\n"), "{rewritten}");
        assert!(
            rest.starts_with("HTTP/1.1 431") && !rest.contains("content-type"),
            "{rest}"
        );
    }
}
