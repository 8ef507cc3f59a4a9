//! Gives hyper's own error answers a body that says what is wrong.
//!
//! When a request cannot be parsed, hyper 1's HTTP/1 server answers by
//! itself, before any handler runs: 400 for a malformed request line or
//! header field, 414 for a URI over 65,534 bytes, 431 for a request head
//! over the limit or with too many header fields. It writes only a head
//! with `content-length: 0`, and its `http1::Builder` has no option to
//! change that. A client, or the person behind `curl`, learns nothing.
//!
//! [`ErrorAnswers`] watches what hyper writes to the socket, recognises
//! these answers, and writes in their place the same head with a
//! `text/plain` one-line body, keeping the status, `connection: close` and
//! `date`. A write is taken for such an answer only when all of its bytes
//! are one response head whose status is 400, 414 or 431, with
//! `content-length: 0` and no `content-type`. Every answer of our handlers
//! has a `content-type` (and a body, which hyper queues as a slice of its
//! own), so nothing else matches; other writes are looked at for a dozen
//! bytes at most. hyper closes the connection after these answers, so
//! nothing follows them.
//!
//! One case is not rewritten: when the head shares a write with the unsent
//! end of an earlier response on the same connection (a pipelining client
//! whose socket was full). That answer keeps hyper's empty body.

#![forbid(unsafe_code)]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::AsyncWrite;

/// The most bytes a request head (request line and header fields) may
/// have; hyper answers 431 above it. Exporter requests are a few hundred
/// bytes, and the limit is also what a connection's read buffer may grow
/// to. With the request line's method and version, a URI near hyper's
/// own URI limit (65,534 bytes) already exceeds it, so an over-long URI
/// gets 431 rather than 414.
pub(super) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// hyper's limit on header fields in a request (`http1::Builder::max_headers`).
const MAX_HEADER_FIELDS: usize = 100;

/// hyper's limit on the length of a URI.
const MAX_URI_BYTES: usize = 65_534;

/// The one-line reason for each status hyper answers by itself.
fn reason(status: &[u8]) -> Option<String> {
    match status {
        b"400" => Some(
            "bad request: the request line or a header field is not valid HTTP/1.1, \
             e.g. a method with a space in it or a header line without a colon\n"
                .to_owned(),
        ),
        b"414" => Some(format!(
            "URI too long: the limit is {MAX_URI_BYTES} bytes\n"
        )),
        b"431" => Some(format!(
            "request header fields too large: the request line and header fields may have at \
             most {MAX_HEAD_BYTES} bytes together, and at most {MAX_HEADER_FIELDS} header fields\n"
        )),
        _ => None,
    }
}

/// hyper's bodiless error answer in `head`, rewritten with a body; `None`
/// when `head` is anything else.
fn with_body(head: &[u8]) -> Option<Vec<u8>> {
    let status = head.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    let body = reason(status)?;
    // All of the write is one head: it ends at its first blank line.
    let end = head.windows(4).position(|window| window == b"\r\n\r\n")?;
    if end + 4 != head.len() {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    let lower = text.to_ascii_lowercase();
    let empty = "\r\ncontent-length: 0\r\n";
    let at = lower.find(empty)?;
    if lower.contains("\r\ncontent-type:") {
        return None;
    }
    let mut rewritten = String::with_capacity(head.len() + body.len() + 64);
    rewritten.push_str(&text[..at]);
    rewritten.push_str(&format!(
        "\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n",
        body.len()
    ));
    rewritten.push_str(&text[at + empty.len()..]);
    rewritten.push_str(&body);
    Some(rewritten.into_bytes())
}

/// A rewritten answer being written in place of hyper's.
#[derive(Debug)]
struct Replacement {
    bytes: Vec<u8>,
    written: usize,
    /// The length of hyper's head, reported as written when all of
    /// `bytes` is.
    stands_for: usize,
}

/// Rewrites hyper's bodiless error answers on one connection's write path.
#[derive(Debug, Default)]
pub(super) struct ErrorAnswers {
    replacing: Option<Replacement>,
}

impl ErrorAnswers {
    /// Writes with `write`, or, when `alone` (the write's only bytes) is
    /// one of hyper's error answers, writes its rewrite to `inner` instead
    /// and reports `alone` as written once all of it is. hyper offers the
    /// same bytes again until they are reported written, so a rewrite in
    /// progress goes on whatever it offers.
    pub(super) fn write<T: AsyncWrite + Unpin>(
        &mut self,
        inner: &mut T,
        cx: &mut Context<'_>,
        alone: &[u8],
        write: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if self.replacing.is_none() {
            let Some(bytes) = with_body(alone) else {
                return write(Pin::new(inner), cx);
            };
            self.replacing = Some(Replacement {
                bytes,
                written: 0,
                stands_for: alone.len(),
            });
        }
        let Some(replacement) = self.replacing.as_mut() else {
            return write(Pin::new(inner), cx);
        };
        while replacement.written < replacement.bytes.len() {
            let rest = &replacement.bytes[replacement.written..];
            let written = ready!(Pin::new(&mut *inner).poll_write(cx, rest))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            replacement.written += written;
        }
        let stands_for = replacement.stands_for;
        self.replacing = None;
        Poll::Ready(Ok(stands_for))
    }
}

/// The bytes of a vectored write when they are all in one slice: a head
/// alone; anything spread over several slices is not an answer of hyper's
/// own.
pub(super) fn alone<'a>(bufs: &'a [io::IoSlice<'_>]) -> &'a [u8] {
    let mut filled = bufs.iter().filter(|buf| !buf.is_empty());
    match (filled.next(), filled.next()) {
        (Some(only), None) => only,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYPER_431: &str = "HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n\
                             content-length: 0\r\ndate: Sun, 22 Nov 2026 05:30:28 GMT\r\n\r\n";

    #[test]
    fn hyper_answers_get_a_body_and_keep_their_head() {
        let rewritten = String::from_utf8(with_body(HYPER_431.as_bytes()).unwrap()).unwrap();
        let (head, body) = rewritten.split_once("\r\n\r\n").unwrap();
        assert_eq!(
            head,
            format!(
                "HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n\
                 content-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\
                 date: Sun, 22 Nov 2026 05:30:28 GMT",
                body.len()
            )
        );
        assert!(
            body.starts_with("request header fields too large") && body.ends_with("fields\n"),
            "{body:?}"
        );
        for status in ["400 Bad Request", "414 URI Too Long"] {
            let head = HYPER_431.replace("431 Request Header Fields Too Large", status);
            assert!(with_body(head.as_bytes()).is_some(), "{status}");
        }
    }

    #[test]
    fn anything_else_is_left_alone() {
        for other in [
            // Our own 400s have a content type and a body.
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 0\r\n\r\n".to_owned(),
            "HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n".to_owned(),
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_owned(),
            // A head followed by more bytes, or cut short.
            format!("{HYPER_431}x"),
            HYPER_431[..HYPER_431.len() - 2].to_owned(),
            String::new(),
        ] {
            assert_eq!(with_body(other.as_bytes()), None, "{other:?}");
        }
    }
}
