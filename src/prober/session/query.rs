//! The `query_response` dialogue, item by item, as blackbox_exporter's
//! `probeQueryResponses` runs it, over any byte stream (plain TCP, or TLS
//! after `tls: true` or `starttls`).
//!
//! Per item, in this order:
//! 1. `expect`: read lines (split at `\n`, one trailing `\r` dropped, the
//!    last unterminated line counts, as Go's `bufio.Scanner` splits them)
//!    until one matches, as Go's regexp matches bytes (see
//!    [`go_captures`]: invalid UTF-8 is U+FFFD to `.`). The end of the
//!    connection first fails the probe with `probe_failed_due_to_regex`
//!    1; a line longer than
//!    [`MAX_LINE_BYTES`], a read error or the deadline fail it with the
//!    gauge left at 0, as in blackbox.
//! 2. `expect_bytes`: read until that many bytes came (from what the
//!    lines left in the buffer first), or the connection ended; bytes
//!    that differ set `probe_failed_due_to_bytes`. blackbox takes one
//!    `Read` from the socket, which fails on bytes split over two
//!    segments: here they are waited for.
//! 3. `send`: the text, with `$1`, `${1}`, `$name` and `$$` expanded from
//!    the groups of **this item's** `expect` match (a later item's `send`
//!    is sent as written), and a `\n` added; nothing is sent when the
//!    text, expanded, is empty (`if send != ""` in blackbox).
//! 4. `starttls`: ends the run with [`Next::StartTls`]; the caller shakes
//!    hands and runs the rest over TLS with a new reader, so that
//!    plaintext read ahead is dropped, as blackbox drops its scanner.
//!
//! The `labels` of the item whose `expect` matched are expanded from its
//! groups into [`SessionDetail::expect_labels`], each value cut at
//! [`MAX_LABEL_VALUE_BYTES`] (a scheduled target keeps them). A failed item is
//! `check_failed` (the target answered, the dialogue said no), or
//! `timeout` when the deadline came first; the detail names the item.

#![forbid(unsafe_code)]

use super::{Item, SessionDetail, SessionStep, Shown};
use crate::config::QueryStep;
use crate::prober::{Failure, Reason, StepLog, classify};
use crate::steplog::cut_text;
use regex_automata::util::interpolate;
use std::io;
use std::ops::Range;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// The longest `probe_expect_info` label value, in bytes, kept from an
/// expansion: a matched line may be 64 KiB, and a scheduled target keeps
/// its labels until the next match. Longer values are cut on a character
/// boundary and end with `…` (blackbox does not cut them).
pub(crate) const MAX_LABEL_VALUE_BYTES: usize = 256;

/// The longest line an `expect` reads, `\n` included: Go's
/// `bufio.MaxScanTokenSize`, where blackbox's scanner gives up. It bounds
/// the buffer a session holds.
pub(crate) const MAX_LINE_BYTES: usize = 64 * 1024;

/// How many lines of one `expect` the step log shows; the rest are
/// counted in one step, so that a chatty target cannot grow the log.
const LOGGED_LINES: u64 = 16;

/// How much the buffer grows by at a time, up to [`MAX_LINE_BYTES`]: a
/// banner takes one small read, and a session holds 64 KiB only when a
/// target sends that much without a newline.
const READ_CHUNK: usize = 4096;

/// How a run of the dialogue ended well.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Every item passed.
    Done,
    /// The item before `next` asked for TLS: shake hands, then run again
    /// from `next`.
    StartTls { next: usize },
}

/// Runs `steps` from index `from` over `stream` until the end, a
/// `starttls`, or a failure, recording in `detail` what the series show.
pub(super) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    steps: &[QueryStep],
    from: usize,
    deadline: Instant,
    detail: &mut SessionDetail,
    steplog: &mut StepLog,
) -> Result<Next, Failure> {
    let mut reader = Reader::default();
    let of = steps.len();
    for (index, step) in steps.iter().enumerate().skip(from) {
        let item = Item::new(index, of);
        let mut talk = Talk {
            stream: &mut *stream,
            reader: &mut reader,
            deadline,
            item,
            steplog: &mut *steplog,
        };
        if let Err(failure) = talk.item(step, detail).await {
            detail.failed_step = Some(item.number);
            return Err(failure);
        }
        if step.starttls {
            steplog.log(|| SessionStep::StartTls { item });
            return Ok(Next::StartTls { next: index + 1 });
        }
    }
    Ok(Next::Done)
}

/// One item's work: the stream, the reader over it, and where to log.
struct Talk<'a, S> {
    stream: &'a mut S,
    reader: &'a mut Reader,
    deadline: Instant,
    item: Item,
    steplog: &'a mut StepLog,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Talk<'_, S> {
    async fn item(&mut self, step: &QueryStep, detail: &mut SessionDetail) -> Result<(), Failure> {
        let mut send = step.send.as_deref().map(|send| send.to_vec());
        if let Some(expect) = &step.expect {
            let (line, groups) = self.expect(expect.regex(), expect.as_str(), detail).await?;
            let line = &self.reader.buf[line];
            let expand = |template: &[u8], dst: &mut Vec<u8>| {
                interpolate::bytes(
                    template,
                    |index, dst| {
                        if let Some(Some(group)) = groups.get(index) {
                            dst.extend_from_slice(&line[group.clone()]);
                        }
                    },
                    |name| {
                        expect
                            .regex()
                            .capture_names()
                            .position(|group| group == Some(name))
                    },
                    dst,
                );
            };
            if let (Some(template), Some(send)) = (&step.send, &mut send) {
                send.clear();
                expand(template, send);
            }
            for label in &step.labels {
                let mut value = Vec::new();
                expand(label.value.as_bytes(), &mut value);
                let mut value = String::from_utf8_lossy(&value).into_owned();
                cut_text(&mut value, MAX_LABEL_VALUE_BYTES);
                detail
                    .expect_labels
                    .push((label.name.0.as_str().into(), value));
            }
        }
        if let Some(want) = &step.expect_bytes {
            self.expect_bytes(want, detail).await?;
        }
        // blackbox sends nothing when `send`, expanded, is empty.
        if let Some(mut send) = send.filter(|send| !send.is_empty()) {
            send.push(b'\n');
            self.send(&send).await?;
        }
        Ok(())
    }

    /// Reads lines until one matches `regex`; returns where it is in the
    /// reader's buffer and where its groups are in it.
    async fn expect(
        &mut self,
        regex: &regex::bytes::Regex,
        pattern: &str,
        detail: &mut SessionDetail,
    ) -> Result<(Range<usize>, Groups), Failure> {
        let item = self.item;
        let fail =
            |reason, why: String| Failure::new(reason, format!("{item} expect {pattern:?}: {why}"));
        let mut lines = 0_u64;
        let mut last: Option<Shown> = None;
        let mut unlogged = 0_u64;
        let read_so_far = |lines: u64, last: &Option<Shown>| match last {
            Some(last) => format!("{lines} lines read, the last {last}"),
            None => "no line read".to_owned(),
        };
        loop {
            let read = self.reader.line(self.stream, self.deadline).await;
            let range = match read {
                Ok(Some(range)) => range,
                Ok(None) => {
                    self.log_unlogged(unlogged);
                    detail.failed_due_to_regex = true;
                    let why = match &last {
                        Some(last) => format!(
                            "the connection ended after {lines} lines without a match (last: {last})"
                        ),
                        None => "the connection ended before any line came".to_owned(),
                    };
                    return Err(fail(Reason::CheckFailed, why));
                }
                Err(Stop::Deadline) => {
                    self.log_unlogged(unlogged);
                    let why = format!(
                        "no matching line before the deadline ({})",
                        read_so_far(lines, &last)
                    );
                    return Err(fail(Reason::Timeout, why));
                }
                Err(Stop::TooLong) => {
                    self.log_unlogged(unlogged);
                    let why = format!(
                        "a line is longer than {MAX_LINE_BYTES} bytes ({})",
                        read_so_far(lines, &last)
                    );
                    return Err(fail(Reason::CheckFailed, why));
                }
                Err(Stop::Io(error)) => {
                    self.log_unlogged(unlogged);
                    let why = format!(
                        "reading failed: {} ({})",
                        classify::describe(&error),
                        read_so_far(lines, &last)
                    );
                    return Err(fail(Reason::CheckFailed, why));
                }
            };
            lines += 1;
            let groups = go_captures(regex, &self.reader.buf[range.clone()]);
            let matched = groups.is_some();
            if matched {
                self.log_unlogged(unlogged);
            }
            let line = &self.reader.buf[range.clone()];
            if matched || lines <= LOGGED_LINES {
                let shown = Shown::of(line);
                self.steplog.log(|| SessionStep::Line {
                    item,
                    expect: pattern.into(),
                    line: shown,
                    matched,
                });
            } else {
                unlogged += 1;
            }
            if let Some(groups) = groups {
                return Ok((range, groups));
            }
            last = Some(Shown::of(line));
        }
    }

    fn log_unlogged(&mut self, lines: u64) {
        if lines > 0 {
            let item = self.item;
            self.steplog.log(|| SessionStep::Unlogged { item, lines });
        }
    }

    async fn expect_bytes(
        &mut self,
        want: &[u8],
        detail: &mut SessionDetail,
    ) -> Result<(), Failure> {
        let item = self.item;
        let fail = |reason, why: String| {
            Failure::new(
                reason,
                format!("{item} expect_bytes {}: {why}", Shown::of(want)),
            )
        };
        let got = match self
            .reader
            .bytes(self.stream, want.len(), self.deadline)
            .await
        {
            Ok(range) => range,
            Err(Stop::Deadline) => {
                let why = format!(
                    "{} of {} bytes came before the deadline",
                    self.reader.unread(),
                    want.len()
                );
                return Err(fail(Reason::Timeout, why));
            }
            Err(Stop::Io(error)) => {
                let why = format!("reading failed: {}", classify::describe(&error));
                return Err(fail(Reason::CheckFailed, why));
            }
            Err(Stop::TooLong) => unreachable!("reading bytes has no line to be too long"),
        };
        let got = &self.reader.buf[got];
        if got.len() < want.len() {
            let why = format!(
                "the connection ended after {} of {} bytes ({})",
                got.len(),
                want.len(),
                Shown::of(got)
            );
            return Err(fail(Reason::CheckFailed, why));
        }
        let matched = got == want;
        self.steplog.log(|| SessionStep::Bytes {
            item,
            want: Shown::of(want),
            got: Shown::of(got),
            matched,
        });
        if !matched {
            detail.failed_due_to_bytes = true;
            let why = format!("read {}", Shown::of(got));
            return Err(fail(Reason::CheckFailed, why));
        }
        Ok(())
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let item = self.item;
        let fail = |reason, why: String| {
            Failure::new(reason, format!("{item} send {}: {why}", Shown::of(bytes)))
        };
        let written = tokio::time::timeout_at(self.deadline, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => {
                self.steplog.log(|| SessionStep::Sent {
                    item,
                    sent: Shown::of(bytes),
                });
                Ok(())
            }
            Ok(Err(error)) => Err(fail(
                Reason::CheckFailed,
                format!("writing failed: {}", classify::describe(&error)),
            )),
            Err(_) => Err(fail(
                Reason::Timeout,
                "the deadline passed while writing".to_owned(),
            )),
        }
    }
}

/// Where each group of a match is in the line, by group index; `None`
/// for a group that did not take part.
type Groups = Vec<Option<Range<usize>>>;

/// Matches `regex` against `line` as Go's `regexp.FindSubmatchIndex` does
/// on bytes, which blackbox uses: Go reads each byte that does not start a
/// valid UTF-8 sequence as one U+FFFD of width 1, so `.` and `[^ ]` match
/// it (a Latin-1 banner). The regex crate's Unicode classes match no
/// invalid byte, so such a line is matched as a copy with each invalid
/// byte replaced by U+FFFD, and the groups are mapped back to the line's
/// own bytes, which `$1` then carries, as Go's `Expand(.., line, match)`
/// does. A valid line (the usual case) is matched as it is.
fn go_captures(regex: &regex::bytes::Regex, line: &[u8]) -> Option<Groups> {
    let decoded = GoDecoded::of(line);
    let haystack = decoded.as_ref().map_or(line, |decoded| &decoded.text);
    let captures = regex.captures(haystack)?;
    let original = |offset| {
        decoded
            .as_ref()
            .map_or(offset, |decoded| decoded.original(offset))
    };
    Some(
        captures
            .iter()
            .map(|group| group.map(|group| original(group.start())..original(group.end())))
            .collect(),
    )
}

/// A line with invalid UTF-8 as Go's regexp reads it: each invalid byte
/// replaced by U+FFFD (3 bytes).
#[derive(Debug)]
struct GoDecoded {
    text: Vec<u8>,
    /// Where each U+FFFD put in starts in `text`, in order.
    replaced: Vec<usize>,
}

impl GoDecoded {
    const REPLACEMENT: &'static [u8] = "\u{FFFD}".as_bytes();

    /// `None` when `line` is valid UTF-8 and needs no copy.
    ///
    /// Go's `utf8.DecodeRune` returns one error of width 1 for a byte that
    /// does not start a valid sequence, then decodes again from the next
    /// byte; `String::from_utf8_lossy` instead puts one U+FFFD for the
    /// longest prefix of a valid sequence (`E2 82` gives one, Go two). The
    /// bytes after the first of such a prefix are continuation bytes,
    /// which start no sequence: each is one U+FFFD here, as in Go.
    fn of(line: &[u8]) -> Option<Self> {
        std::str::from_utf8(line).err()?;
        let mut text = Vec::with_capacity(line.len() + 2 * Self::REPLACEMENT.len());
        let mut replaced = Vec::new();
        let mut rest = line;
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.extend_from_slice(valid.as_bytes());
                    return Some(Self { text, replaced });
                }
                Err(error) => {
                    let (valid, after) = rest.split_at(error.valid_up_to());
                    text.extend_from_slice(valid);
                    let invalid = error.error_len().unwrap_or(after.len());
                    for _ in 0..invalid {
                        replaced.push(text.len());
                        text.extend_from_slice(Self::REPLACEMENT);
                    }
                    rest = &after[invalid..];
                }
            }
        }
    }

    /// The offset in the original line of `offset` in `text`; one inside
    /// a U+FFFD (an empty match may split it) is that byte's start.
    fn original(&self, offset: usize) -> usize {
        let width = Self::REPLACEMENT.len();
        let before = self
            .replaced
            .partition_point(|&start| start + width <= offset);
        let offset = match self.replaced.get(before) {
            Some(&start) if start < offset => start,
            _ => offset,
        };
        offset - before * (width - 1)
    }
}

/// Why a read stopped short.
#[derive(Debug)]
enum Stop {
    /// The probe's deadline passed.
    Deadline,
    /// [`MAX_LINE_BYTES`] came without a newline.
    TooLong,
    /// The stream failed: a reset, or a TLS error after the handshake.
    Io(io::Error),
}

/// What was read and not yet used, as Go's `bufio.Scanner` holds it.
#[derive(Debug, Default)]
struct Reader {
    buf: Vec<u8>,
    /// Where the unread bytes start.
    start: usize,
    /// How many unread bytes, from `start`, the newline search has
    /// already looked at and found none in: each byte is looked at once,
    /// however the target splits its writes.
    scanned: usize,
    /// Whether the stream ended.
    eof: bool,
    /// How many bytes the newline search has looked at, all lines
    /// together: the work a slow sender causes.
    #[cfg(test)]
    examined: usize,
}

impl Reader {
    fn unread(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next line, without its `\n` and one `\r` before it; the last
    /// line counts without a `\n`. `None` once the stream ended and every
    /// line was read.
    async fn line<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        deadline: Instant,
    ) -> Result<Option<Range<usize>>, Stop> {
        loop {
            let unread = &self.buf[self.start..];
            let from = self.start + self.scanned;
            #[cfg(test)]
            {
                self.examined += unread.len() - self.scanned;
            }
            let newline = unread[self.scanned..]
                .iter()
                .position(|&byte| byte == b'\n');
            self.scanned = unread.len();
            let (end, next) = match newline {
                Some(newline) => (from + newline, from + newline + 1),
                None if self.eof && !unread.is_empty() => (self.buf.len(), self.buf.len()),
                None if self.eof => return Ok(None),
                None if unread.len() >= MAX_LINE_BYTES => return Err(Stop::TooLong),
                None => {
                    self.fill(stream, MAX_LINE_BYTES, deadline).await?;
                    continue;
                }
            };
            let start = self.start;
            self.start = next;
            self.scanned = 0;
            let end = if end > start && self.buf[end - 1] == b'\r' {
                end - 1
            } else {
                end
            };
            return Ok(Some(start..end));
        }
    }

    /// The next `len` bytes, fewer if the stream ended first.
    async fn bytes<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        len: usize,
        deadline: Instant,
    ) -> Result<Range<usize>, Stop> {
        while self.unread() < len && !self.eof {
            self.fill(stream, len.max(MAX_LINE_BYTES), deadline).await?;
        }
        let start = self.start;
        self.start += len.min(self.unread());
        self.scanned = self.scanned.saturating_sub(self.start - start);
        Ok(start..self.start)
    }

    /// Reads once into the buffer, keeping at most `limit` unread bytes.
    async fn fill<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        limit: usize,
        deadline: Instant,
    ) -> Result<(), Stop> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let room = limit.saturating_sub(self.buf.len());
        self.buf.reserve(room.min(READ_CHUNK));
        let mut limited = (&mut *stream).take(room as u64);
        match tokio::time::timeout_at(deadline, limited.read_buf(&mut self.buf)).await {
            Ok(Ok(0)) => {
                self.eof = true;
                Ok(())
            }
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(Stop::Io(error)),
            Err(_) => Err(Stop::Deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The steps of `yaml`, a `query_response` list, read as the config reads them.
    fn steps(yaml: &str) -> Vec<QueryStep> {
        serde_saphyr::from_str(yaml).expect("query_response items")
    }

    /// Runs `steps` against a peer that writes `script` (then ends unless
    /// `stay_open`), within `timeout`; returns the outcome, the detail,
    /// what the peer received, and the step log.
    async fn dialogue(
        steps: &[QueryStep],
        script: &[&[u8]],
        stay_open: bool,
        timeout: Duration,
    ) -> (Result<Next, Failure>, SessionDetail, Vec<u8>, String) {
        let (mut ours, mut theirs) = tokio::io::duplex(1 << 20);
        let script: Vec<Vec<u8>> = script.iter().map(|chunk| chunk.to_vec()).collect();
        let peer = tokio::spawn(async move {
            // The prober may have given up and gone: the rest is not read.
            for chunk in script {
                if theirs.write_all(&chunk).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if !stay_open {
                let _ = theirs.shutdown().await;
            }
            let mut received = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), theirs.read_to_end(&mut received))
                .await;
            received
        });
        let mut detail = SessionDetail::default();
        let mut steplog = StepLog::enabled();
        let deadline = Instant::now() + timeout;
        let result = run(&mut ours, steps, 0, deadline, &mut detail, &mut steplog).await;
        drop(ours);
        let received = peer.await.unwrap();
        let log = steplog.into_steps().render(None, None, true);
        (result, detail, received, log)
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn lines_split_at_newline_drop_one_carriage_return_and_the_last_unterminated_counts() {
        let steps = steps(
            r#"
            - expect: "^one$"
            - expect: "^two\r$"
            - expect: "^three$"
            "#,
        );
        let (result, detail, _, log) =
            dialogue(&steps, &[b"one\r\n", b"two\r\r\nthr", b"ee"], false, SECOND).await;
        assert_eq!(result, Ok(Next::Done), "{log}");
        assert!(!detail.failed_due_to_regex);
        assert!(
            log.contains(r#"step 2/3 expect "^two\r$": read "two\r" (match)"#),
            "{log}"
        );
    }

    #[tokio::test]
    async fn a_line_without_a_match_is_logged_and_reading_goes_on() {
        let steps = steps(
            r#"
            - expect: "^250-STARTTLS"
            "#,
        );
        let (result, _, _, log) = dialogue(
            &steps,
            &[b"250-mail.test\r\n250-STARTTLS\r\n"],
            false,
            SECOND,
        )
        .await;
        assert_eq!(result, Ok(Next::Done), "{log}");
        assert!(
            log.contains(r#"step 1/1 expect "^250-STARTTLS": read "250-mail.test" (no match)"#),
            "{log}"
        );
        assert!(
            log.contains(r#"step 1/1 expect "^250-STARTTLS": read "250-STARTTLS" (match)"#),
            "{log}"
        );
    }

    #[tokio::test]
    async fn the_end_of_the_connection_without_a_match_fails_the_regex() {
        let steps = steps(
            r#"
            - expect: "^SSH-2.0-"
            - send: "SSH-2.0-blackbox-ssh-check"
            "#,
        );
        let (result, detail, received, log) =
            dialogue(&steps, &[b"HTTP/1.1 400 Bad Request\r\n"], false, SECOND).await;
        let failure = result.unwrap_err();
        assert_eq!(failure.reason, Reason::CheckFailed, "{log}");
        assert_eq!(
            failure.detail,
            r#"step 1/2 expect "^SSH-2.0-": the connection ended after 1 lines without a match (last: "HTTP/1.1 400 Bad Request")"#
        );
        assert!(detail.failed_due_to_regex);
        assert!(!detail.failed_due_to_bytes);
        assert_eq!(detail.failed_step, Some(1));
        assert!(received.is_empty(), "nothing sent after a failed expect");
    }

    #[tokio::test]
    async fn the_deadline_fails_as_timeout_naming_the_step_with_the_regex_gauge_at_0() {
        let steps = steps(
            r#"
            - expect: "^220"
            - expect: "^250"
            "#,
        );
        let (result, detail, _, log) = dialogue(
            &steps,
            &[b"220 hello\r\n", b"451 wait\r\n"],
            true,
            Duration::from_millis(200),
        )
        .await;
        let failure = result.unwrap_err();
        assert_eq!(failure.reason, Reason::Timeout, "{log}");
        assert_eq!(
            failure.detail,
            r#"step 2/2 expect "^250": no matching line before the deadline (1 lines read, the last "451 wait")"#
        );
        assert!(!detail.failed_due_to_regex);
        assert_eq!(detail.failed_step, Some(2));
    }

    #[tokio::test]
    async fn a_line_longer_than_64_kib_fails_the_check_without_the_regex_gauge() {
        let steps = steps(r#"[{expect: "x"}]"#);
        let long = vec![b'a'; MAX_LINE_BYTES + 10];
        let (result, detail, _, _) = dialogue(&steps, &[&long, b"\nx\n"], false, SECOND).await;
        let failure = result.unwrap_err();
        assert_eq!(failure.reason, Reason::CheckFailed);
        assert!(
            failure.detail.contains("a line is longer than 65536 bytes"),
            "{}",
            failure.detail
        );
        assert!(!detail.failed_due_to_regex);

        // One byte less, with its newline, still fits, as in Go's scanner.
        let mut fits = vec![b'a'; MAX_LINE_BYTES - 1];
        fits.push(b'\n');
        let (result, _, _, _) = dialogue(&steps, &[&fits, b"x\n"], false, SECOND).await;
        assert_eq!(result, Ok(Next::Done));
    }

    #[tokio::test]
    async fn captures_expand_into_the_same_items_send_only() {
        let steps = steps(
            r#"
            - expect: "^220 (?P<host>[^ ]+) ESMTP (.+)$"
              send: "EHLO $1 ${2}x $2x $host $$ ${host}\r"
            - send: "later ${1}"
            "#,
        );
        let (result, _, received, log) =
            dialogue(&steps, &[b"220 mail.test ESMTP Postfix\r\n"], false, SECOND).await;
        assert_eq!(result, Ok(Next::Done), "{log}");
        // `$1` is the named group (it is group 1), `$2x` an unknown group:
        // empty, as Go's Expand and the regex crate agree.
        assert_eq!(
            String::from_utf8(received).unwrap(),
            "EHLO mail.test Postfixx  mail.test $ mail.test\r\nlater ${1}\n"
        );
        assert!(
            log.contains(r#"step 1/2 send "EHLO mail.test Postfixx  mail.test $ mail.test\r\n""#),
            "{log}"
        );
    }

    #[tokio::test]
    async fn labels_are_expanded_from_the_match() {
        let steps = steps(
            r#"
            - expect: "^SSH-2.0-([^ \r]+)"
              labels:
                - {name: ver, value: "${1}"}
                - {name: raw, value: "v=$1"}
            "#,
        );
        let (result, detail, _, _) =
            dialogue(&steps, &[b"SSH-2.0-OpenSSH_9.6\r\n"], false, SECOND).await;
        assert_eq!(result, Ok(Next::Done));
        assert_eq!(
            detail.expect_labels,
            [
                ("ver".into(), "OpenSSH_9.6".to_owned()),
                ("raw".into(), "v=OpenSSH_9.6".to_owned())
            ]
        );
    }

    #[tokio::test]
    async fn a_long_label_value_is_cut() {
        let steps = steps(
            r#"
            - expect: "^(.*)$"
              labels: [{name: all, value: "${1}"}]
            "#,
        );
        let line = format!("{}\n", "é".repeat(1000));
        let (result, detail, _, _) = dialogue(&steps, &[line.as_bytes()], false, SECOND).await;
        assert_eq!(result, Ok(Next::Done));
        let value = &detail.expect_labels[0].1;
        assert!(value.len() <= MAX_LABEL_VALUE_BYTES, "{}", value.len());
        assert!(value.len() > MAX_LABEL_VALUE_BYTES - 8, "{}", value.len());
        assert!(value.ends_with("é…"), "{value}");
    }

    #[tokio::test]
    async fn expect_bytes_reads_the_buffer_first_then_waits_for_split_segments() {
        let steps = steps(
            r#"
            - expect: "^hello$"
            - expect_bytes: "ABCDEF"
            - expect: "^after$"
            "#,
        );
        let (result, detail, _, log) =
            dialogue(&steps, &[b"hello\nAB", b"CD", b"EFafter\n"], false, SECOND).await;
        assert_eq!(result, Ok(Next::Done), "{log}");
        assert!(!detail.failed_due_to_bytes);
        assert!(
            log.contains(r#"step 2/3 expect_bytes "ABCDEF": read "ABCDEF" (match)"#),
            "{log}"
        );
    }

    #[tokio::test]
    async fn other_bytes_fail_the_bytes_gauge_and_too_few_fail_without_it() {
        let steps = steps(r#"[{expect_bytes: "\u0000\u0001"}]"#);
        let (result, detail, _, _) = dialogue(&steps, &[b"\x00\x02"], false, SECOND).await;
        let failure = result.unwrap_err();
        assert_eq!(failure.reason, Reason::CheckFailed);
        assert_eq!(
            failure.detail,
            r#"step 1/1 expect_bytes "\0\u{1}": read "\0\u{2}""#
        );
        assert!(detail.failed_due_to_bytes);

        let (result, detail, _, _) = dialogue(&steps, &[b"\x00"], false, SECOND).await;
        let failure = result.unwrap_err();
        assert_eq!(failure.reason, Reason::CheckFailed);
        assert!(
            failure.detail.contains("ended after 1 of 2 bytes"),
            "{}",
            failure.detail
        );
        assert!(!detail.failed_due_to_bytes);

        let (result, detail, _, _) =
            dialogue(&steps, &[b"\x00"], true, Duration::from_millis(100)).await;
        assert_eq!(result.unwrap_err().reason, Reason::Timeout);
        assert!(!detail.failed_due_to_bytes);
    }

    #[tokio::test]
    async fn starttls_hands_back_after_the_items_send() {
        let steps = steps(
            r#"
            - expect: "^220"
            - send: "STARTTLS\r"
              starttls: true
            - send: "EHLO prober\r"
            "#,
        );
        let (result, _, received, log) = dialogue(&steps, &[b"220 ready\r\n"], false, SECOND).await;
        assert_eq!(result, Ok(Next::StartTls { next: 2 }), "{log}");
        assert_eq!(received, b"STARTTLS\r\n");
        assert!(log.contains("step 2/3 send \"STARTTLS\\r\\n\""), "{log}");
        assert!(log.contains("step 2/3 starttls"), "{log}");
    }

    #[tokio::test]
    async fn a_reset_mid_dialogue_fails_the_check() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            socket.set_zero_linger().unwrap();
            drop(socket);
        });
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        server.await.unwrap();
        let steps = steps(r#"[{expect: "^220"}]"#);
        let mut detail = SessionDetail::default();
        let failure = run(
            &mut stream,
            &steps,
            0,
            Instant::now() + SECOND,
            &mut detail,
            &mut StepLog::disabled(),
        )
        .await
        .unwrap_err();
        assert_eq!(failure.reason, Reason::CheckFailed);
        assert!(failure.detail.contains("ECONNRESET"), "{}", failure.detail);
        assert!(!detail.failed_due_to_regex);
    }

    #[tokio::test]
    async fn a_chatty_target_gets_a_bounded_log() {
        let steps = steps(r#"[{expect: "^end"}]"#);
        let chatter: Vec<u8> = b"noise\n".repeat(1000);
        let (result, _, _, log) = dialogue(&steps, &[&chatter, b"end\n"], false, SECOND).await;
        assert_eq!(result, Ok(Next::Done));
        assert!(log.lines().count() < 30, "{log}");
        assert!(log.contains("984 more lines read without a match"), "{log}");
    }

    /// Go's regexp matches `.` and `[^ ]` against any byte, invalid UTF-8
    /// included (as U+FFFD): a Latin-1 SMTP banner passes blackbox's
    /// `smtp_starttls` first expect.
    #[tokio::test]
    async fn a_latin1_banner_matches_dot_as_in_go() {
        let steps = steps(
            r#"
            - expect: "^220 ([^ ]+) ESMTP (.+)$"
            "#,
        );
        let (result, _, _, log) = dialogue(
            &steps,
            &[b"220 mail.m\xfcller.de ESMTP Gr\xfc\xdfe\r\n"],
            false,
            SECOND,
        )
        .await;
        assert_eq!(result, Ok(Next::Done), "{log}");
    }

    /// blackbox sends nothing when `send` (after expansion) is empty:
    /// `if send != ""`.
    #[tokio::test]
    async fn an_empty_expanded_send_sends_nothing_as_in_blackbox() {
        let steps = steps(
            r#"
            - expect: "^hi(.*)$"
              send: "$1"
            "#,
        );
        let (result, _, received, log) = dialogue(&steps, &[b"hi\n"], false, SECOND).await;
        assert_eq!(result, Ok(Next::Done), "{log}");
        assert_eq!(received, b"", "{log}");
    }

    /// `${1}` carries the bytes the target sent, as Go's `Expand(...,
    /// line, match)` does, not the U+FFFD the match saw.
    #[tokio::test]
    async fn an_expanded_group_holding_invalid_utf8_sends_the_original_bytes() {
        let steps = steps(
            r#"
            - expect: "^220 ([^ ]+) (.)(.)x$"
              send: "EHLO ${1} $2$3"
              labels: [{name: host, value: "${1}"}]
            "#,
        );
        let (result, detail, received, log) =
            dialogue(&steps, &[b"220 m\xfcller.de \xe2\x82x\r\n"], false, SECOND).await;
        assert_eq!(result, Ok(Next::Done), "{log}");
        // Go decodes E2 82 (a cut sequence) as two runes of width 1.
        assert_eq!(received, b"EHLO m\xfcller.de \xe2\x82\n", "{log}");
        assert_eq!(
            detail.expect_labels,
            [("host".into(), "m\u{FFFD}ller.de".to_owned())]
        );
    }

    /// A target sending one byte per read: each byte is looked at once
    /// by the newline search, not once per read after it.
    #[tokio::test]
    async fn a_line_sent_a_byte_at_a_time_is_scanned_once() {
        struct OneByte(std::collections::VecDeque<u8>);
        impl AsyncRead for OneByte {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                _: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<io::Result<()>> {
                if let Some(byte) = self.0.pop_front() {
                    buf.put_slice(&[byte]);
                }
                std::task::Poll::Ready(Ok(()))
            }
        }
        let mut line = vec![b'a'; MAX_LINE_BYTES - 1];
        line.push(b'\n');
        line.extend_from_slice(b"next\n");
        let mut stream = OneByte(line.into());
        let mut reader = Reader::default();
        let deadline = Instant::now() + Duration::from_secs(30);
        let first = reader.line(&mut stream, deadline).await.unwrap();
        assert_eq!(first, Some(0..MAX_LINE_BYTES - 1));
        let second = reader.line(&mut stream, deadline).await.unwrap().unwrap();
        assert_eq!(&reader.buf[second], b"next");
        assert!(
            reader.examined <= MAX_LINE_BYTES + 5,
            "{} bytes examined for {} sent",
            reader.examined,
            MAX_LINE_BYTES + 5
        );
    }

    /// A literal `send: ""` sends nothing either.
    #[tokio::test]
    async fn a_literal_empty_send_sends_nothing() {
        let steps = steps(
            r#"
            - send: ""
            - send: "after"
            "#,
        );
        let (result, _, received, log) = dialogue(&steps, &[], false, SECOND).await;
        assert_eq!(result, Ok(Next::Done), "{log}");
        assert_eq!(received, b"after\n", "{log}");
    }

    /// Go decodes each byte that starts no valid sequence as one U+FFFD,
    /// where `from_utf8_lossy` puts one for `E2 82`; offsets map back.
    #[test]
    fn invalid_bytes_decode_as_go_does_and_offsets_map_back() {
        assert!(GoDecoded::of("ascii é".as_bytes()).is_none());
        let line = b"a\xe2\x82b\xffc\xf0\x9f\x98";
        let decoded = GoDecoded::of(line).unwrap();
        assert_eq!(
            String::from_utf8(decoded.text.clone()).unwrap(),
            "a\u{FFFD}\u{FFFD}b\u{FFFD}c\u{FFFD}\u{FFFD}\u{FFFD}"
        );
        assert_eq!(String::from_utf8_lossy(line).matches('\u{FFFD}').count(), 3);
        // Each character's start, in the copy and in the line.
        let starts = [
            (0, 0),
            (1, 1),
            (4, 2),
            (7, 3),
            (8, 4),
            (11, 5),
            (12, 6),
            (15, 7),
            (18, 8),
        ];
        for (copy, original) in starts {
            assert_eq!(decoded.original(copy), original, "{copy}");
        }
        assert_eq!(decoded.original(decoded.text.len()), line.len());
        // Inside a U+FFFD: that byte's start.
        assert_eq!(decoded.original(2), 1);
        assert_eq!(decoded.original(3), 1);
        assert_eq!(decoded.original(17), 7);
    }

    /// Go's `\d`, `\w`, `\s`, `\b` are ASCII: `é` is no word character,
    /// `٣` no digit, `\v` no space; so the first three lines do not match
    /// and `\bx` finds a boundary between `é` and `x`.
    #[tokio::test]
    async fn perl_classes_and_word_boundaries_are_ascii_as_in_go() {
        let steps = steps(
            r#"
            - expect: '^\w+ \d\s\d$'
            - expect: '\bx'
            "#,
        );
        let script: &[&[u8]] = &[
            "héllo 1 2\n".as_bytes(),
            "hello ٣ 2\n".as_bytes(),
            b"hello 1\x0b2\n",
            b"hello 1 2\n",
            "éx\n".as_bytes(),
        ];
        let (result, _, _, log) = dialogue(&steps, script, false, SECOND).await;
        assert_eq!(result, Ok(Next::Done), "{log}");
        assert_eq!(log.matches("(no match)").count(), 3, "{log}");
    }
}
