//! What the accept loop does when `accept` fails.
//!
//! A failure that concerns one connection (a client that reset while
//! queued) is skipped at once. The one that matters is running out of
//! file descriptors (`EMFILE`, `ENFILE`), buffers or memory: every
//! in-flight probe holds a socket.
//!
//! Out of descriptors, the loop sheds: it closes a descriptor it keeps in
//! reserve ([`SpareDescriptor`]), accepts the next queued connection with
//! it, answers 503 with a one-line reason and `Connection: close`, closes
//! it and takes the reserve back. So the accept queue keeps draining with
//! quick answers, rather than holding every client, `/metrics` scrapes
//! included, until descriptors free up (7.7 s measured with 1,500
//! `/probe` clients under an open file limit of 256). Connections and
//! probes are sized so that they alone never run out
//! ([`crate::runner::connection_slots`]); shedding is for what else may
//! take descriptors, such as the pipes of `exec` commands.
//!
//! When shedding is not possible (out of buffers or memory, or the
//! reserve could not be taken back), retrying at once would spin a core,
//! so the loop pauses, longer each time up to [`MAX_PAUSE`]. Logging every
//! failure floods the log (402 warnings in 20 s were measured before this
//! existed): one warning when an episode starts, at most one a minute,
//! and one line when accepting works again.

#![forbid(unsafe_code)]

use crate::episodes::Episodes;
use socket2::{Domain, SockRef, Socket, Type};
use std::io::{self, Read as _, Write as _};
use std::net::Shutdown;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Whether a failed `accept` means the process or the system ran out of
/// descriptors, which [`SpareDescriptor::shed`] works around.
pub(super) fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Whether a failed `accept` means the process or the system ran out of
/// something (descriptors, buffers, memory), which retrying at once cannot
/// fix. Other errors (`ECONNABORTED`, `EPROTO`, `EPERM` from a firewall)
/// concern one connection that a client reset while it was queued.
pub(super) fn is_exhaustion(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The longest pause between two accepts that failed.
const MAX_PAUSE: Duration = Duration::from_millis(500);

/// The current run of failed accepts, if any.
#[derive(Debug, Default)]
pub(super) struct AcceptTrouble {
    failures: u32,
    /// Connections answered 503 by [`SpareDescriptor::shed`] in this run.
    shed: u64,
    since: Option<Instant>,
    episodes: Episodes,
}

impl AcceptTrouble {
    /// Records a failed accept; returns how long to pause before the next
    /// if it cannot be worked around.
    pub(super) fn failed(&mut self, error: &io::Error) -> Duration {
        if self.failures == 0 {
            self.since = Some(Instant::now());
            if let Some(episodes) = self.episodes.reached() {
                tracing::warn!(
                    err = %error,
                    episodes,
                    "accept failed; until it clears, new connections are answered 503 if \
                     descriptors ran out, else they wait (raise the open file limit, or lower \
                     --probe.max-in-flight or --exec.max-concurrent)"
                );
            }
        }
        self.failures = self.failures.saturating_add(1);
        Duration::from_millis(10u64 << self.failures.min(6)).min(MAX_PAUSE)
    }

    /// Records a connection answered 503 for want of descriptors.
    pub(super) fn shed(&mut self) {
        self.shed += 1;
    }

    /// Records a successful accept, ending an episode of failures.
    pub(super) fn recovered(&mut self) {
        if let Some(since) = self.since.take() {
            if self.episodes.left() {
                tracing::info!(
                    failures = self.failures,
                    shed = self.shed,
                    seconds = since.elapsed().as_secs_f64(),
                    "accepting connections again"
                );
            }
            self.failures = 0;
            self.shed = 0;
        }
    }
}

/// The answer to a connection shed for want of descriptors.
const SHED_ANSWER: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 86\r\n\
Retry-After: 1\r\n\
Connection: close\r\n\r\n\
the exporter is out of file descriptors; retry, or raise its open file limit (ulimit)\n";

/// The most of a shed connection's request that is read (and dropped)
/// before answering, so that closing it sends FIN rather than RST, which
/// could make the client lose the answer.
const SHED_READ_BYTES: usize = 16 * 1024;

/// One descriptor held in reserve to shed connections when the process is
/// out of descriptors; see the module docs. An unbound UDP socket: it
/// holds no port and nothing is ever sent on it.
#[derive(Debug)]
pub(super) struct SpareDescriptor(Option<Socket>);

impl SpareDescriptor {
    pub(super) fn new() -> Self {
        Self(Self::open())
    }

    fn open() -> Option<Socket> {
        Socket::new(Domain::IPV4, Type::DGRAM, None).ok()
    }

    /// Frees the reserve, accepts the next connection queued on
    /// `listener`, answers it 503 and closes it, then takes the reserve
    /// back. False when there was no reserve to free or no connection came.
    pub(super) fn shed(&mut self, listener: &TcpListener) -> bool {
        let Some(spare) = self.0.take() else {
            // Taken back later, once a descriptor is free again.
            self.0 = Self::open();
            return false;
        };
        drop(spare);
        // The listener is non-blocking: an empty queue is WouldBlock.
        let accepted = SockRef::from(listener).accept();
        self.0 = Self::open();
        let Ok((connection, _)) = accepted else {
            return false;
        };
        answer_shed(&connection);
        true
    }
}

/// Reads what the client sent so far, answers [`SHED_ANSWER`], all without
/// waiting, and closes.
fn answer_shed(connection: &Socket) {
    let _ = connection.set_nonblocking(true);
    let mut request = [0u8; SHED_READ_BYTES];
    let _ = (&*connection).read(&mut request);
    // A fresh socket's send buffer holds far more than the answer.
    let _ = (&*connection).write(SHED_ANSWER);
    let _ = connection.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shed_answer_says_why_and_closes() {
        let text = std::str::from_utf8(SHED_ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert!(head.contains("Connection: close"), "{head}");
        assert_eq!(body.lines().count(), 1, "one line: {body}");
    }

    #[tokio::test]
    async fn a_shed_connection_gets_503_and_the_spare_is_taken_back() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut spare = SpareDescriptor::new();
        assert!(!spare.shed(&listener), "nothing queued");
        let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
        client
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // The request reaches the exporter's side before it sheds.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(spare.shed(&listener));
        assert!(spare.0.is_some(), "the reserve is held again");
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer))
            .await
            .expect("closed at once")
            .expect("a clean close, not a reset");
        assert_eq!(answer, SHED_ANSWER);
    }

    #[test]
    fn only_exhaustion_pauses_accepting() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(
                is_exhaustion(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        for errno in [libc::ECONNABORTED, libc::EPROTO, libc::EPERM] {
            assert!(
                !is_exhaustion(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
    }

    #[test]
    fn pauses_grow_to_a_cap_and_an_accept_ends_the_episode() {
        let mut trouble = AcceptTrouble::default();
        let error = io::Error::from_raw_os_error(libc::EMFILE);
        let pauses: Vec<u128> = (0..8).map(|_| trouble.failed(&error).as_millis()).collect();
        assert_eq!(pauses, [20, 40, 80, 160, 320, 500, 500, 500]);
        trouble.recovered();
        assert_eq!(trouble.failed(&error).as_millis(), 20, "a new episode");
    }
}
