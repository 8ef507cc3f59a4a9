//! `prober: tcp` with a session: a full connect that the exporter keeps
//! and talks on, with TLS (`tls: true`, `starttls`) or a dialogue
//! (`query_response`).
//!
//! A session opens the connection as `tcp_connect` does ([`tcp::open`]:
//! one attempt, `SO_LINGER {on, 0}`), shakes hands when `tls: true`, runs
//! the dialogue ([`query`]), shaking hands again at a `starttls` item, and
//! closes. A session that passed closes politely, as Go's `conn.Close`
//! does for blackbox: TLS `close_notify`, then FIN (linger off just
//! before). A failed or cancelled one is dropped with its linger still 0:
//! an RST, as every probe of this exporter closes, leaving no TIME_WAIT.

#![forbid(unsafe_code)]

mod query;
pub(super) mod series;

pub(crate) use series::{SessionKept, write_series};

use super::tcp::{self, Handshake};
use super::tls;
use super::{Budget, Context, Detail, Failure, Outcome, Reason, StepLog, TcpDetail, TlsFacts};
use crate::config::{TargetPolicy, TcpProbe};
use crate::steplog::{Wording, allocated};
use crate::target::Target;
use query::Next;
use rustls::pki_types::ServerName;
use std::fmt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

/// What a session reports beside the shared part of the outcome.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionDetail {
    /// The connection's handshake.
    pub tcp: TcpDetail,
    /// The TLS handshake, when one succeeded.
    pub tls: Option<TlsFacts>,
    /// Whether an `expect` read to the end of the connection without a match.
    pub failed_due_to_regex: bool,
    /// Whether an `expect_bytes` read other bytes.
    pub failed_due_to_bytes: bool,
    /// The labels of the step that has them, expanded, once it matched.
    pub expect_labels: Vec<(Box<str>, String)>,
    /// The `query_response` step that failed, counted from 1.
    pub failed_step: Option<u16>,
}

/// The most bytes of what was read or sent that the step log and a
/// failure's detail show of it, as of a command's stderr line.
const SHOWN_BYTES: usize = super::STDERR_LINE_BYTES;

/// Bytes as the step log shows them: quoted and escaped as a Rust string
/// (so that what a target sends can neither forge a log line nor drive a
/// terminal), the first [`SHOWN_BYTES`] only, then how many there were.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Shown {
    head: Box<str>,
    total: usize,
}

impl Shown {
    fn of(bytes: &[u8]) -> Self {
        let head = &bytes[..bytes.len().min(SHOWN_BYTES)];
        Self {
            head: String::from_utf8_lossy(head).into(),
            total: bytes.len(),
        }
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.head)?;
        if self.total > SHOWN_BYTES {
            write!(f, "… ({} bytes)", self.total)?;
        }
        Ok(())
    }
}

/// A `query_response` item's place: `step 3/9`, counted from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Item {
    number: u16,
    of: u16,
}

impl Item {
    fn new(index: usize, of: usize) -> Self {
        // The config allows at most MAX_QUERY_STEPS (100) items.
        let count = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
        Self {
            number: count(index + 1),
            of: count(of),
        }
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "step {}/{}", self.number, self.of)
    }
}

/// A TLS handshake that succeeded: with whom, what it agreed, the
/// server's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Handshaken {
    peer: Option<std::net::SocketAddr>,
    sni: Option<Box<str>>,
    version: &'static str,
    cipher: &'static str,
    leaf: Box<str>,
    expires: i64,
}

/// A session's own steps, worded as HAProxy's `tcp-check` logs name its
/// rules: the item's number, what it wanted, what came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SessionStep {
    /// A line an `expect` read, and whether it matched.
    Line {
        item: Item,
        expect: Box<str>,
        line: Shown,
        matched: bool,
    },
    /// Lines an `expect` read beyond those logged.
    Unlogged { item: Item, lines: u64 },
    /// What an `expect_bytes` read.
    Bytes {
        item: Item,
        want: Shown,
        got: Shown,
        matched: bool,
    },
    /// What a `send` wrote, its newline included.
    Sent { item: Item, sent: Shown },
    /// A `starttls` item: the TLS handshake follows.
    StartTls { item: Item },
    /// A TLS handshake that succeeded (boxed: a step log's every step
    /// has the size of the largest).
    Tls(Box<Handshaken>),
    /// The session passed and closed politely.
    Closed { tls: bool },
}

impl Wording for SessionStep {
    fn write(&self, f: &mut fmt::Formatter<'_>, _show_commands: bool) -> fmt::Result {
        match self {
            Self::Line {
                item,
                expect,
                line,
                matched,
            } => write!(
                f,
                "{item} expect {expect:?}: read {line} ({})",
                if *matched { "match" } else { "no match" }
            ),
            Self::Unlogged { item, lines } => write!(
                f,
                "{item}: {lines} more lines read without a match, not logged"
            ),
            Self::Bytes {
                item,
                want,
                got,
                matched,
            } => write!(
                f,
                "{item} expect_bytes {want}: read {got} ({})",
                if *matched { "match" } else { "no match" }
            ),
            Self::Sent { item, sent } => write!(f, "{item} send {sent}"),
            Self::StartTls { item } => write!(f, "{item} starttls"),
            Self::Tls(handshaken) => {
                let Handshaken {
                    peer,
                    sni,
                    version,
                    cipher,
                    leaf,
                    expires,
                } = &**handshaken;
                f.write_str("TLS handshake")?;
                if let Some(peer) = peer {
                    write!(f, " with {peer}")?;
                }
                match sni {
                    Some(sni) => write!(f, " (SNI {sni})")?,
                    None => f.write_str(" (no SNI)")?,
                }
                write!(
                    f,
                    ": {version}, {cipher}, leaf {leaf}, expires {}",
                    super::certificate::utc(*expires)
                )
            }
            Self::Closed { tls: true } => {
                f.write_str("closed the connection: TLS close_notify, then FIN")
            }
            Self::Closed { tls: false } => f.write_str("closed the connection with FIN"),
        }
    }

    fn heap_bytes(&self) -> usize {
        let shown = |shown: &Shown| allocated(shown.head.len());
        match self {
            Self::Line { expect, line, .. } => allocated(expect.len()) + shown(line),
            Self::Bytes { want, got, .. } => shown(want) + shown(got),
            Self::Sent { sent, .. } => shown(sent),
            Self::Tls(handshaken) => {
                allocated(size_of::<Handshaken>())
                    + handshaken
                        .sni
                        .as_ref()
                        .map_or(0, |sni| allocated(sni.len()))
                    + allocated(handshaken.leaf.len())
            }
            Self::Unlogged { .. } | Self::StartTls { .. } | Self::Closed { .. } => 0,
        }
    }
}

/// Probes `target` with a session of `probe`.
pub(super) async fn probe(
    probe: &TcpProbe,
    policy: Option<&TargetPolicy>,
    target: &Target,
    context: &Context,
    budget: Budget,
    steplog: &mut StepLog,
) -> Outcome {
    let tcp = tcp::Tcp {
        handshake: Handshake::Full,
        options: &probe.tcp,
        policy,
    };
    let (stream, mut outcome) = match tcp::open(tcp, target, context, budget, steplog).await {
        Ok(opened) => opened,
        Err(mut outcome) => {
            if let Detail::Tcp(tcp) = std::mem::take(&mut outcome.detail) {
                outcome.detail = Detail::Session(Box::new(SessionDetail {
                    tcp,
                    ..SessionDetail::default()
                }));
            }
            return outcome;
        }
    };
    let mut detail = SessionDetail::default();
    if let Detail::Tcp(tcp) = std::mem::take(&mut outcome.detail) {
        detail.tcp = tcp;
    }
    let session = Session {
        probe,
        target,
        context,
        deadline: budget.deadline,
    };
    outcome.failure = session.run(stream, &mut detail, steplog).await.err();
    outcome.detail = Detail::Session(Box::new(detail));
    outcome
}

/// The connection, before and after TLS.
enum Connection {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Connection {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(stream) => stream,
            Self::Tls(stream) => stream.get_ref().0,
        }
    }

    /// Closes as Go's `conn.Close` does: `close_notify` over TLS, then
    /// FIN. Within the deadline; past it, or when the peer is gone, the
    /// socket just closes (the probe has passed already).
    async fn close_politely(mut self, deadline: Instant, steplog: &mut StepLog) {
        // A zero linger would send RST: turn lingering off for a FIN.
        let _ = socket2::SockRef::from(self.tcp()).set_linger(None);
        let shutdown = match &mut self {
            Self::Plain(stream) => tokio::time::timeout_at(deadline, stream.shutdown()).await,
            Self::Tls(stream) => tokio::time::timeout_at(deadline, stream.shutdown()).await,
        };
        if let Ok(Ok(())) = shutdown {
            steplog.log(|| SessionStep::Closed {
                tls: matches!(self, Self::Tls(_)),
            });
        }
    }
}

/// One session's setting: what it runs, against what, until when.
struct Session<'a> {
    probe: &'a TcpProbe,
    target: &'a Target,
    context: &'a Context,
    deadline: Instant,
}

impl Session<'_> {
    /// TLS if asked, the dialogue, and the polite close if all passed.
    async fn run(
        &self,
        stream: TcpStream,
        detail: &mut SessionDetail,
        steplog: &mut StepLog,
    ) -> Result<(), Failure> {
        let mut connection = if self.probe.tls {
            Connection::Tls(Box::new(self.start_tls(stream, detail, steplog).await?))
        } else {
            Connection::Plain(stream)
        };
        let steps = &self.probe.query_response;
        let mut from = 0;
        loop {
            let next = match &mut connection {
                Connection::Plain(stream) => {
                    query::run(stream, steps, from, self.deadline, detail, steplog).await?
                }
                Connection::Tls(stream) => {
                    query::run(&mut **stream, steps, from, self.deadline, detail, steplog).await?
                }
            };
            match (next, connection) {
                (Next::Done, done) => {
                    connection = done;
                    break;
                }
                (Next::StartTls { next }, Connection::Plain(stream)) => {
                    connection =
                        Connection::Tls(Box::new(self.start_tls(stream, detail, steplog).await?));
                    from = next;
                }
                // The config refuses starttls twice or with tls: true.
                (Next::StartTls { .. }, Connection::Tls(_)) => {
                    return Err(Failure::new(
                        Reason::Local,
                        "starttls on a connection that is already TLS",
                    ));
                }
            }
        }
        connection.close_politely(self.deadline, steplog).await;
        Ok(())
    }

    /// Shakes hands over `stream` as the module's `tls_config` says,
    /// recording what the TLS series show.
    async fn start_tls(
        &self,
        stream: TcpStream,
        detail: &mut SessionDetail,
        steplog: &mut StepLog,
    ) -> Result<TlsStream<TcpStream>, Failure> {
        let setup = self.context.tls.get(&self.probe.tls_config)?;
        let name = setup.server_name(&self.target.host.to_string())?;
        let peer = stream.peer_addr().ok();
        let sni = match &name {
            ServerName::DnsName(dns) => Some(dns.as_ref().into()),
            _ => None,
        };
        let (stream, facts) = tls::handshake(stream, &setup, name, self.deadline, steplog).await?;
        steplog.log(|| {
            SessionStep::Tls(Box::new(Handshaken {
                peer,
                sni,
                version: facts.version,
                cipher: facts.cipher,
                leaf: facts.leaf.subject.as_str().into(),
                expires: facts.leaf.not_after,
            }))
        });
        detail.tls = Some(facts);
        Ok(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Module};
    use crate::prober::{Resolver, run};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    use tokio::net::TcpListener;

    /// The module `name` of `yaml`, as the config reads it.
    fn module(yaml: &str, name: &str) -> Module {
        let config = Config::parse("t.yml", yaml).expect("the test config loads");
        config.modules[name].clone()
    }

    /// What a test server saw of one connection.
    #[derive(Debug)]
    struct Served {
        received: Vec<u8>,
        /// Whether it ended with RST rather than FIN.
        reset: bool,
    }

    /// Accepts one connection, writes `greeting`, answers each line that
    /// starts with a `replies` key with its value, and reads until the
    /// prober closes; 3 s at most for each. With `hang_up`, closes after
    /// the greeting instead.
    async fn serve(
        listener: TcpListener,
        greeting: &'static [u8],
        replies: &'static [(&'static str, &'static [u8])],
        hang_up: bool,
    ) -> Served {
        let (mut socket, _) = tokio::time::timeout(Duration::from_secs(3), listener.accept())
            .await
            .expect("the prober connects")
            .expect("accept");
        socket.write_all(greeting).await.expect("greeting");
        if hang_up {
            return Served {
                received: Vec::new(),
                reset: false,
            };
        }
        let mut received = Vec::new();
        let mut answered = 0;
        let read_all = async {
            loop {
                let mut chunk = [0; 1024];
                match socket.read(&mut chunk).await {
                    Ok(0) => return false,
                    Ok(n) => received.extend_from_slice(&chunk[..n]),
                    Err(_) => return true,
                }
                let text = String::from_utf8_lossy(&received).into_owned();
                for (line, (trigger, reply)) in text.lines().zip(replies).skip(answered) {
                    if line.starts_with(trigger) {
                        answered += 1;
                        socket.write_all(reply).await.expect("reply");
                    }
                }
            }
        };
        let reset = tokio::time::timeout(Duration::from_secs(3), read_all)
            .await
            .expect("the prober closes");
        Served { received, reset }
    }

    async fn probe_once(module: &Module, port: u16) -> (Outcome, String) {
        let context = Context::new(Resolver::from_system(&[]));
        let target = Target::parse(&format!("127.0.0.1:{port}")).unwrap();
        let budget = Budget::new(Instant::now(), Duration::from_secs(2));
        let mut steplog = StepLog::enabled();
        let outcome = run(module, Some(&target), &context, budget, &mut steplog).await;
        let failure = outcome
            .failure
            .as_ref()
            .map(|failure| failure as &dyn fmt::Display);
        let log = steplog.into_steps().render(Some(&target), failure, true);
        (outcome, log)
    }

    const SSH: &str = r#"
modules:
  ssh_banner:
    prober: tcp
    timeout: 2s
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - expect: "^SSH-2.0-([^ ]+)"
          labels: [{name: ver, value: "$1"}]
        - send: "SSH-2.0-blackbox-ssh-check"
"#;

    #[tokio::test]
    async fn an_ssh_banner_passes_labels_its_version_and_closes_with_fin() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(serve(listener, b"SSH-2.0-OpenSSH_9.6\r\n", &[], false));
        let (outcome, log) = probe_once(&module(SSH, "ssh_banner"), port).await;
        assert_eq!(outcome.failure, None, "{log}");
        let detail = outcome.session().expect("a session's detail");
        assert_eq!(
            detail.expect_labels,
            [("ver".into(), "OpenSSH_9.6".to_owned())]
        );
        assert_eq!(detail.tcp.attempts, 1);
        assert!(detail.tcp.handshake_time.is_some());
        let served = server.await.unwrap();
        assert_eq!(served.received, b"SSH-2.0-blackbox-ssh-check\n");
        assert!(!served.reset, "a passed session ends with FIN: {log}");
        assert!(log.contains("closed the connection with FIN"), "{log}");
    }

    /// Two labels of one name would write `probe_expect_info{v="a",v="b"}`,
    /// which Prometheus refuses with the whole scrape: the config must
    /// refuse it, located, as blackbox refuses (panics on) it.
    #[test]
    fn two_expect_labels_of_one_name_are_refused_at_load() {
        let yaml = r#"
modules:
  m:
    prober: tcp
    tcp:
      query_response:
        - expect: "^SSH-2.0-([^ ]+) (.*)"
          labels: [{name: v, value: "$1"}, {name: v, value: "$2"}]
"#;
        let loaded = Config::parse("t.yml", yaml);
        assert!(
            loaded.is_err(),
            "loaded: {:?}",
            loaded.map(|c| c.modules["m"].clone())
        );
    }

    #[tokio::test]
    async fn an_smtp_dialogue_without_tls_passes_step_by_step() {
        let yaml = r#"
modules:
  smtp:
    prober: tcp
    timeout: 2s
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - expect: "^220 ([^ ]+) ESMTP (.+)$"
        - send: "EHLO prober\r"
        - expect: "^250 "
        - send: "QUIT\r"
        - expect: "^221"
"#;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(serve(
            listener,
            b"220 mail.test ESMTP Postfix\r\n",
            &[
                (
                    "EHLO prober",
                    b"250-mail.test\r\n250-PIPELINING\r\n250 OK\r\n",
                ),
                ("QUIT", b"221 2.0.0 Bye\r\n"),
            ],
            false,
        ));
        let (outcome, log) = probe_once(&module(yaml, "smtp"), port).await;
        assert_eq!(outcome.failure, None, "{log}");
        for line in [
            r#"step 1/5 expect "^220 ([^ ]+) ESMTP (.+)$": read "220 mail.test ESMTP Postfix" (match)"#,
            r#"step 2/5 send "EHLO prober\r\n""#,
            r#"step 3/5 expect "^250 ": read "250-mail.test" (no match)"#,
            r#"step 3/5 expect "^250 ": read "250 OK" (match)"#,
            r#"step 5/5 expect "^221": read "221 2.0.0 Bye" (match)"#,
        ] {
            assert!(log.contains(line), "{line} not in\n{log}");
        }
        let served = server.await.unwrap();
        assert_eq!(served.received, b"EHLO prober\r\nQUIT\r\n");
    }

    #[tokio::test]
    async fn a_wrong_banner_fails_the_check_with_the_regex_gauge() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(serve(listener, b"HTTP/1.1 400 Bad Request\r\n", &[], true));
        let (outcome, log) = probe_once(&module(SSH, "ssh_banner"), port).await;
        server.await.unwrap();
        let failure = outcome.failure.as_ref().expect("a wrong banner fails");
        assert_eq!(failure.reason, Reason::CheckFailed, "{log}");
        assert!(failure.detail.starts_with("step 1/2 expect"), "{failure}");
        let detail = outcome.session().expect("a session's detail");
        assert!(detail.failed_due_to_regex && !detail.failed_due_to_bytes);
        assert_eq!(detail.failed_step, Some(1));
        assert!(detail.expect_labels.is_empty());
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_with_the_sessions_detail() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap()
            .port();
        let (outcome, log) = probe_once(&module(SSH, "ssh_banner"), port).await;
        let failure = outcome.failure.as_ref().expect("refused");
        assert_eq!(failure.reason, Reason::Refused, "{log}");
        let detail = outcome.session().expect("a session's detail");
        assert_eq!((detail.tcp.attempts, detail.tcp.attempts_failed), (1, 1));
        assert!(!detail.failed_due_to_regex);
    }

    #[tokio::test]
    async fn a_plain_tcp_module_stays_half_open_and_is_never_accepted() {
        let yaml = r#"
modules:
  tcp_connect:
    prober: tcp
    timeout: 2s
    tcp:
      preferred_ip_protocol: ip4
"#;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (outcome, log) = probe_once(&module(yaml, "tcp_connect"), port).await;
        assert_eq!(outcome.failure, None, "{log}");
        assert!(outcome.session().is_none(), "no session: {log}");
        assert!(log.contains("half-open"), "{log}");
        // Past the delayed ACK (about 200 ms), which would have completed it.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let accepted = std::iter::from_fn(|| listener.accept().ok()).count();
        assert_eq!(accepted, 0, "{log}");
    }

    /// A self-signed certificate for localhost and 127.0.0.1 valid until
    /// 1 January of `year`: its PEM, and a server config that sends it.
    fn certified(year: i32) -> (String, Arc<rustls::ServerConfig>) {
        let cert = tls::tests::leaf(None, &["localhost", "127.0.0.1"], year, false);
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der], cert.key)
            .unwrap();
        (cert.pem, Arc::new(config))
    }

    /// A module `name` that trusts `ca_pem` (pinned), with `tcp` lines.
    fn tls_module(name: &str, ca_pem: &str, tcp: &str) -> Module {
        let yaml = format!(
            "modules:\n  {name}:\n    prober: tcp\n    timeout: 2s\n    tcp:\n      \
             preferred_ip_protocol: ip4\n{tcp}      tls_config:\n        ca: {ca_pem:?}\n"
        );
        module(&yaml, name)
    }

    /// Accepts one connection, shakes hands as a TLS server by `config`,
    /// and reads until the prober closes; whether the handshake passed.
    async fn serve_tls(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> bool {
        let (socket, _) = tokio::time::timeout(Duration::from_secs(3), listener.accept())
            .await
            .expect("the prober connects")
            .expect("accept");
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let Ok(Ok(mut tls)) =
            tokio::time::timeout(Duration::from_secs(3), acceptor.accept(socket)).await
        else {
            return false;
        };
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), tls.read_to_end(&mut rest)).await;
        true
    }

    #[tokio::test]
    async fn a_tls_module_shakes_hands_and_reports_the_certificate() {
        let (pem, config) = certified(2040);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(serve_tls(listener, config));
        let module = tls_module("tls_connect", &pem, "      tls: true\n");
        let (outcome, log) = probe_once(&module, port).await;
        assert_eq!(outcome.failure, None, "{log}");
        let tls = outcome
            .session()
            .and_then(|detail| detail.tls.clone())
            .expect("the TLS facts");
        assert_eq!(tls.leaf.subject, "CN=localhost");
        assert_eq!(tls.leaf.subjectalternative, "localhost");
        assert_eq!(tls.earliest_expiry, 2_208_988_800, "2040-01-01");
        assert_eq!(tls.last_chain_expiry, 2_208_988_800, "pinned: the leaf's");
        assert_eq!(tls.version, "TLS 1.3");
        assert!(
            log.contains(&format!(
                "TLS handshake with 127.0.0.1:{port} (no SNI): TLS 1.3, {}, leaf CN=localhost, \
                 expires 2040-01-01T00:00:00Z",
                tls.cipher
            )),
            "{log}"
        );
        assert!(log.contains("TLS close_notify, then FIN"), "{log}");
        assert!(server.await.unwrap(), "the server saw the handshake");
    }

    #[tokio::test]
    async fn an_expired_certificate_fails_as_tls_and_a_missing_ca_file_too() {
        let (pem, config) = certified(2021);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(serve_tls(listener, config));
        let module = tls_module("tls_connect", &pem, "      tls: true\n");
        let (outcome, log) = probe_once(&module, port).await;
        let failure = outcome.failure.as_ref().expect("expired");
        assert_eq!(failure.reason, Reason::Tls, "{log}");
        assert!(failure.detail.contains("expired"), "{failure}");
        assert_eq!(outcome.session().and_then(|d| d.tls.clone()), None);
        assert!(!server.await.unwrap(), "the server saw no handshake pass");

        // A ca_file that is not there: the config loads (with a note), the
        // probe fails as tls naming the file, and the server sees no TLS.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let yaml = "modules:\n  rabbitmq:\n    prober: tcp\n    timeout: 2s\n    tcp:\n      \
                    preferred_ip_protocol: ip4\n      tls: true\n      tls_config:\n        \
                    ca_file: /nonexistent/CA_cert.crt\n";
        let config = Config::parse_for_this_host("t.yml", yaml).expect("a TLS file is a note");
        let (outcome, log) = probe_once(&config.modules["rabbitmq"], port).await;
        let failure = outcome.failure.as_ref().expect("no CA");
        assert_eq!(failure.reason, Reason::Tls, "{log}");
        assert_eq!(
            failure.detail,
            "tls_config.ca_file: /nonexistent/CA_cert.crt: cannot read the file: no such file"
        );
        drop(listener);
    }

    #[tokio::test]
    async fn an_smtp_dialogue_upgrades_with_starttls() {
        let (pem, config) = certified(2040);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut plain = tokio::io::BufReader::new(socket);
            let mut line = String::new();
            plain
                .get_mut()
                .write_all(b"220 mail.test ESMTP\r\n")
                .await
                .unwrap();
            plain.read_line(&mut line).await.unwrap();
            assert_eq!(line, "EHLO prober\r\n");
            plain
                .get_mut()
                .write_all(b"250-mail.test\r\n250-STARTTLS\r\n250 OK\r\n")
                .await
                .unwrap();
            line.clear();
            plain.read_line(&mut line).await.unwrap();
            assert_eq!(line, "STARTTLS\r\n");
            plain
                .get_mut()
                .write_all(b"220 go ahead\r\n")
                .await
                .unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            let tls = acceptor.accept(plain.into_inner()).await.unwrap();
            let mut tls = tokio::io::BufReader::new(tls);
            line.clear();
            tls.read_line(&mut line).await.unwrap();
            assert_eq!(line, "EHLO prober\r\n");
            tls.get_mut()
                .write_all(b"250-mail.test\r\n250-AUTH PLAIN\r\n250 OK\r\n")
                .await
                .unwrap();
            line.clear();
            tls.read_line(&mut line).await.unwrap();
            assert_eq!(line, "QUIT\r\n");
            tls.get_mut().write_all(b"221 bye\r\n").await.unwrap();
            let mut rest = Vec::new();
            let _ = tls.read_to_end(&mut rest).await;
        });
        let steps = "      query_response:\n\
                     \x20       - expect: \"^220 ([^ ]+) ESMTP\"\n\
                     \x20       - send: \"EHLO prober\\r\"\n\
                     \x20       - expect: \"^250-STARTTLS\"\n\
                     \x20       - send: \"STARTTLS\\r\"\n\
                     \x20       - expect: \"^220\"\n\
                     \x20       - starttls: true\n\
                     \x20       - send: \"EHLO prober\\r\"\n\
                     \x20       - expect: \"^250-AUTH\"\n\
                     \x20       - send: \"QUIT\\r\"\n\
                     \x20       - expect: \"^221\"\n";
        let module = tls_module("smtp_starttls", &pem, steps);
        let (outcome, log) = probe_once(&module, port).await;
        assert_eq!(outcome.failure, None, "{log}");
        let tls = outcome.session().and_then(|d| d.tls.clone());
        assert_eq!(tls.map(|tls| tls.leaf.subject), Some("CN=localhost".into()));
        assert!(log.contains("step 6/10 starttls"), "{log}");
        assert!(log.contains("TLS handshake with 127.0.0.1"), "{log}");
        assert!(
            log.contains(r#"step 8/10 expect "^250-AUTH": read "250-AUTH PLAIN" (match)"#),
            "{log}"
        );
        server.await.unwrap();
    }
}
