//! Name resolution: `/etc/hosts`, NXDOMAIN, deadlines, IPv6-only names,
//! the TTL cache and many lookups at once, against a DNS server that each
//! test runs itself on 127.0.0.1 UDP (the sandbox's resolver answers
//! NXDOMAIN for everything, so it cannot be used).

use crate::common;

use common::{ExporterProcess, TempDir, TestExporter, open_port, request, sample};
use hickory_resolver::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA};
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use synack_exporter::Exporter;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

/// How long the server waits before answering names under `slow.test.`.
const SLOW_ANSWER: Duration = Duration::from_millis(1500);

/// A DNS server on 127.0.0.1 UDP that answers by the name's last labels:
///
/// | name | A | AAAA |
/// |---|---|---|
/// | `*.v4.test.` | 127.0.0.1, TTL 300 | no data |
/// | `*.v6only.test.` | no data | ::1, TTL 300 |
/// | `*.slow.test.` | 127.0.0.1 after [`SLOW_ANSWER`] | no data, as late |
/// | `*.silent.test.` | never answers | never answers |
/// | `*.three.test.` | 127.0.0.2, 127.0.0.3, 127.0.0.4, TTL 300 | no data |
/// | `*.both.test.` | 127.0.0.2, TTL 300 | ::1, TTL 300 |
/// | `*.noaaaa.test.` | 127.0.0.5, TTL 300 | never answers |
/// | anything else | NXDOMAIN | NXDOMAIN |
///
/// It runs on a thread of its own so that a busy test cannot delay its
/// answers, and records every query it receives.
struct DnsServer {
    address: SocketAddr,
    queries: Arc<Mutex<Vec<(String, RecordType)>>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsServer {
    fn start() -> Self {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind the test DNS server");
        socket.set_nonblocking(true).unwrap();
        let address = socket.local_addr().unwrap();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = oneshot::channel::<()>();
        let seen = Arc::clone(&queries);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let socket = Arc::new(UdpSocket::from_std(socket).unwrap());
                tokio::select! {
                    _ = stopped => {}
                    () = serve(socket, seen) => {}
                }
            });
        });
        Self {
            address,
            queries,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// How many queries of `kind` for `name` (fully qualified) arrived.
    fn count(&self, name: &str, kind: RecordType) -> usize {
        let queries = self.queries.lock().unwrap();
        queries
            .iter()
            .filter(|(seen, seen_kind)| seen == name && *seen_kind == kind)
            .count()
    }

    fn total(&self) -> usize {
        self.queries.lock().unwrap().len()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(socket: Arc<UdpSocket>, seen: Arc<Mutex<Vec<(String, RecordType)>>>) {
    let mut buffer = vec![0u8; 4096];
    loop {
        let Ok((len, client)) = socket.recv_from(&mut buffer).await else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buffer[..len]) else {
            continue;
        };
        let Some(question) = query.queries.first().cloned() else {
            continue;
        };
        let name = question.name().to_ascii().to_ascii_lowercase();
        let kind = question.query_type();
        seen.lock().unwrap().push((name.clone(), kind));
        let mut answer = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
        answer.metadata.recursion_desired = query.metadata.recursion_desired;
        answer.metadata.recursion_available = true;
        answer.add_query(question.clone());
        let record = |data: RData| Record::from_rdata(question.name().clone(), 300, data);
        let delay = if name.ends_with(".silent.test.")
            || (name.ends_with(".noaaaa.test.") && kind == RecordType::AAAA)
        {
            continue;
        } else if name.ends_with(".noaaaa.test.") {
            answer.add_answer(record(RData::A(A(NO_AAAA))));
            Duration::ZERO
        } else if name.ends_with(".slow.test.") {
            if kind == RecordType::A {
                answer.add_answer(record(RData::A(A(Ipv4Addr::LOCALHOST))));
            }
            SLOW_ANSWER
        } else if name.ends_with(".v4.test.") {
            if kind == RecordType::A {
                answer.add_answer(record(RData::A(A(Ipv4Addr::LOCALHOST))));
            }
            Duration::ZERO
        } else if name.ends_with(".three.test.") {
            if kind == RecordType::A {
                for ip in THREE {
                    answer.add_answer(record(RData::A(A(ip))));
                }
            }
            Duration::ZERO
        } else if name.ends_with(".both.test.") {
            answer.add_answer(record(if kind == RecordType::A {
                RData::A(A(THREE[0]))
            } else {
                RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))
            }));
            Duration::ZERO
        } else if name.ends_with(".v6only.test.") {
            if kind == RecordType::AAAA {
                answer.add_answer(record(RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))));
            }
            Duration::ZERO
        } else {
            answer.metadata.response_code = ResponseCode::NXDomain;
            Duration::ZERO
        };
        let bytes = answer.to_vec().expect("encode the answer");
        let socket = Arc::clone(&socket);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = socket.send_to(&bytes, client).await;
        });
    }
}

/// The addresses of `*.three.test.`, in the order the server gives them.
const THREE: [Ipv4Addr; 3] = [
    Ipv4Addr::new(127, 0, 0, 2),
    Ipv4Addr::new(127, 0, 0, 3),
    Ipv4Addr::new(127, 0, 0, 4),
];

/// The A record of `*.noaaaa.test.`, whose AAAA query is never answered.
const NO_AAAA: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);

/// A test DNS server, and an in-process exporter with [`MODULES`] that
/// resolves through it only.
async fn exporter_and_server() -> (DnsServer, TestExporter) {
    let server = DnsServer::start();
    let settings = Exporter::builder().dns_servers(vec![server.address]);
    let exporter = TestExporter::with_config(MODULES, settings).await;
    (server, exporter)
}

const MODULES: &str = "
modules:
  fast:
    prober: tcp_halfopen
    timeout: 500ms
  slow_ok:
    prober: tcp_halfopen
    timeout: 4s
  slow_half:
    prober: tcp_halfopen
    timeout: 2s
  storm:
    prober: tcp_halfopen
    timeout: 3s
  ip4_only:
    prober: tcp_halfopen
    timeout: 500ms
    tcp:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
  every_any:
    prober: tcp_halfopen
    timeout: 2s
    tcp: {ip_addresses: all}
  every_all:
    prober: tcp_connect
    timeout: 2s
    tcp: {ip_addresses: all, ip_addresses_success: all}
  first:
    prober: tcp_halfopen
    timeout: 2s
  every_ip4:
    prober: tcp_halfopen
    timeout: 2s
    tcp: {ip_addresses: all, ip_protocol_fallback: false}
";

/// One `/probe` and what it said: the reason (`None` on success), the
/// probe's own duration and the wall-clock time of the request.
struct Probed {
    reason: Option<String>,
    ip_protocol: Option<f64>,
    duration: f64,
    elapsed: Duration,
    body: String,
}

async fn probe(address: SocketAddr, target: &str, module: &str) -> Probed {
    let started = Instant::now();
    let response = request(
        address,
        "GET",
        &format!("/probe?target={target}&module={module}"),
        &[],
    )
    .await;
    let elapsed = started.elapsed();
    assert_eq!(response.status, 200, "{target}: {}", response.body);
    let body = response.body;
    let reason = common::failed_reason(&body).map(str::to_owned);
    Probed {
        reason,
        ip_protocol: sample(&body, "probe_ip_protocol"),
        duration: sample(&body, "probe_duration_seconds").expect("probe_duration_seconds"),
        elapsed,
        body,
    }
}

/// A probe with module `fast` ended as `dns` at its deadline, not much
/// later: the margin allows for a busy machine, and still catches a
/// lookup left to run to the resolver's own timeout, seconds later.
fn fails_as_dns_at_the_500ms_deadline(probed: &Probed) {
    assert_eq!(probed.reason.as_deref(), Some("dns"), "{}", probed.body);
    assert!(
        (0.45..0.9).contains(&probed.duration) && probed.elapsed < Duration::from_millis(1200),
        "a 500 ms deadline ended after {:.3} s (request {:?})",
        probed.duration,
        probed.elapsed
    );
}

#[tokio::test]
async fn nxdomain_fails_as_dns_at_once() {
    let _not_beside_the_storm = common::load::timed().await;
    let (server, exporter) = exporter_and_server().await;
    let probed = probe(exporter.address, "missing.example.test:80", "tcp_halfopen").await;
    assert_eq!(probed.reason.as_deref(), Some("dns"), "{}", probed.body);
    assert!(
        probed.elapsed < Duration::from_millis(500),
        "NXDOMAIN took {:?} against a 5 s timeout",
        probed.elapsed
    );
    assert!(server.count("missing.example.test.", RecordType::A) >= 1);
    let log = exporter
        .get("/probe?target=missing.example.test:80&debug=true")
        .await;
    assert!(log.body.contains("does not exist"), "{}", log.body);
}

/// RFC 6761: names under `.invalid` never exist, and no query is sent for
/// them (tests elsewhere use such names as a name that does not resolve).
#[tokio::test]
async fn names_under_invalid_fail_as_dns_without_a_query() {
    let _not_beside_the_storm = common::load::timed().await;
    let (server, exporter) = exporter_and_server().await;
    for target in ["no-such-host.invalid:80", "x.INVALID.:80"] {
        let probed = probe(exporter.address, target, "tcp_halfopen").await;
        assert_eq!(probed.reason.as_deref(), Some("dns"), "{}", probed.body);
    }
    assert_eq!(server.total(), 0, "no query was sent");
}

#[tokio::test]
async fn a_server_that_never_answers_fails_as_dns_at_the_deadline() {
    let _not_beside_the_storm = common::load::timed().await;
    let (server, exporter) = exporter_and_server().await;
    let probed = probe(exporter.address, "db.silent.test:80", "fast").await;
    fails_as_dns_at_the_500ms_deadline(&probed);
    assert!(server.count("db.silent.test.", RecordType::A) >= 1);
}

#[tokio::test]
async fn an_answer_after_the_deadline_is_too_late_and_one_before_it_is_used() {
    let _not_beside_the_storm = common::load::timed().await;
    let (server, exporter) = exporter_and_server().await;
    let (_listener, port) = open_port();
    let late = probe(exporter.address, &format!("db.slow.test:{port}"), "fast").await;
    fails_as_dns_at_the_500ms_deadline(&late);
    // With a 4 s deadline the same slow answer leaves enough time.
    let in_time = probe(
        exporter.address,
        &format!("web.slow.test:{port}"),
        "slow_ok",
    )
    .await;
    assert_eq!(in_time.reason, None, "{}", in_time.body);
    assert!(in_time.duration >= SLOW_ANSWER.as_secs_f64() * 0.9);
    // hickory resends an unanswered UDP query (every 333 ms or more), so
    // the slow server saw the one lookup a few times.
    assert!((1..=5).contains(&server.count("web.slow.test.", RecordType::A)));
}

/// An answer that arrives in time but leaves less than half the timeout
/// fails as `dns`: a SYN sent then could only time out on the name
/// server's account, not the target's.
#[tokio::test]
async fn an_answer_that_leaves_less_than_half_the_timeout_fails_as_dns() {
    let _not_beside_the_storm = common::load::timed().await;
    let (_server, exporter) = exporter_and_server().await;
    let (_listener, port) = open_port();
    let probed = probe(
        exporter.address,
        &format!("half.slow.test:{port}"),
        "slow_half",
    )
    .await;
    assert_eq!(probed.reason.as_deref(), Some("dns"), "{}", probed.body);
    let log = exporter
        .get(&format!(
            "/probe?target=other.slow.test:{port}&module=slow_half&debug=true"
        ))
        .await;
    assert!(log.body.contains("resolving took"), "{}", log.body);
}

#[tokio::test]
async fn an_ipv6_only_name_is_probed_over_ipv6_unless_the_module_forbids_it() {
    let _not_beside_the_storm = common::load::timed().await;
    let listener = match TcpListener::bind("[::1]:0") {
        Ok(listener) => listener,
        Err(error) => {
            common::skip_or_fail(&format!("IPv6 on loopback (bind [::1]: {error})"));
            return;
        }
    };
    let port = listener.local_addr().unwrap().port();
    let (server, exporter) = exporter_and_server().await;
    let target = format!("db.v6only.test:{port}");
    let fallback = probe(exporter.address, &target, "tcp_halfopen").await;
    assert_eq!(fallback.reason, None, "{}", fallback.body);
    assert_eq!(fallback.ip_protocol, Some(6.0));
    let forbidden = probe(exporter.address, &target, "ip4_only").await;
    assert_eq!(
        forbidden.reason.as_deref(),
        Some("dns"),
        "{}",
        forbidden.body
    );
    assert_eq!(forbidden.ip_protocol, Some(0.0));
    assert_eq!(
        server.count("db.v6only.test.", RecordType::AAAA),
        1,
        "ip4_only must not ask for AAAA, and the first AAAA answer is cached"
    );
}

#[tokio::test]
async fn answers_are_cached_for_their_ttl() {
    let _not_beside_the_storm = common::load::timed().await;
    let (server, exporter) = exporter_and_server().await;
    let (_listener, port) = open_port();
    for _ in 0..3 {
        let probed = probe(exporter.address, &format!("db.v4.test:{port}"), "fast").await;
        assert_eq!(probed.reason, None, "{}", probed.body);
        assert_eq!(probed.ip_protocol, Some(4.0));
    }
    let queries = |kind| server.count("db.v4.test.", kind);
    assert_eq!(
        (queries(RecordType::A), queries(RecordType::AAAA)),
        (1, 0),
        "three probes, one A query: the TTL is 300 s, and an A answer is \
         enough for a module that prefers IPv4"
    );
}

#[tokio::test]
async fn trailing_dot_names_and_etc_hosts_resolve() {
    let _not_beside_the_storm = common::load::timed().await;
    let (server, exporter) = exporter_and_server().await;
    let (_listener, port) = open_port();
    for target in [
        format!("db.v4.test.:{port}"),
        format!("localhost:{port}"),
        format!("localhost.:{port}"),
    ] {
        let probed = probe(exporter.address, &target, "fast").await;
        assert_eq!(probed.reason, None, "{target}: {}", probed.body);
    }
    assert_eq!(
        server.count("localhost.", RecordType::A),
        0,
        "localhost comes from /etc/hosts, not from the name server"
    );
}

/// Threads of process `pid` now, from `/proc/<pid>/task`.
fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(Iterator::count)
        .unwrap_or(0)
}

/// Issue 8, defect 3: 1,000 lookups that the server never answers used to
/// hold one blocking thread each (516 threads), and `localhost` waited
/// behind them until its own deadline. Now lookups are tasks on the DNS
/// thread: the thread count stays flat, other names resolve at once, and
/// the probe thread stays quick enough for half-open probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_unanswered_lookups_neither_add_threads_nor_delay_other_names() {
    const STUCK: usize = 1000;
    // Loads both cores of a small machine for seconds.
    let _alone = common::load::heavy().await;
    let server = DnsServer::start();
    let dir = TempDir::new("dns-load");
    let config = dir.write("synack.yml", MODULES);
    let dns_server = format!("--dns.server={}", server.address);
    // 1,000 /probe requests held open at once, and a few more beside them:
    // more than the default connections leave to /probe (960 of 1,024).
    let exporter = ExporterProcess::start(&[
        "--config.file",
        config.to_str().unwrap(),
        &dns_server,
        "--web.max-connections=1200",
    ]);
    let (_listener, port) = open_port();
    let warm_up = probe(exporter.address, &format!("localhost:{port}"), "storm").await;
    assert_eq!(warm_up.reason, None, "{}", warm_up.body);
    let threads_before = threads(exporter.pid());

    let address = exporter.address;
    let fired = Instant::now();
    let stuck: Vec<_> = (0..STUCK)
        .map(|i| {
            tokio::spawn(async move {
                probe(address, &format!("n{i}.silent.test:{port}"), "storm").await
            })
        })
        .collect();
    // Let the lookups start and pile up at the server.
    let piling = Instant::now();
    while server.total() < STUCK && piling.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pending = server.total();

    let mut threads_during = threads(exporter.pid());
    let mut slowest = Duration::ZERO;
    let mut others = Vec::new();
    for target in [format!("localhost:{port}"), format!("db.v4.test:{port}")] {
        let probed = probe(address, &target, "storm").await;
        slowest = slowest.max(probed.elapsed);
        threads_during = threads_during.max(threads(exporter.pid()));
        others.push((target, probed.reason));
    }

    // Probes of an IP literal while the 1,000 lookups reach their deadline
    // together: the probe thread must stay free to close half-open sockets
    // long before the kernel's ~200 ms delayed ACK.
    let mut worst_literal = 0.0f64;
    let mut literals = 0;
    tokio::time::sleep_until((fired + Duration::from_millis(2800)).into()).await;
    while fired.elapsed() < Duration::from_millis(3600) && literals < 500 {
        let probed = probe(address, &format!("127.0.0.1:{port}"), "storm").await;
        assert_eq!(probed.reason, None, "{}", probed.body);
        worst_literal = worst_literal.max(probed.duration);
        literals += 1;
    }

    let mut failed_as_dns = 0;
    let mut latest = 0.0f64;
    for job in stuck {
        let probed = job.await.unwrap();
        failed_as_dns += usize::from(probed.reason.as_deref() == Some("dns"));
        latest = latest.max(probed.duration);
    }
    eprintln!(
        "threads: {threads_before} before, {threads_during} with {pending} lookups pending; \
         localhost and db.v4.test answered within {slowest:?} ({others:?}); \
         {failed_as_dns}/{STUCK} unanswered names failed as dns, the last after {latest:.3} s; \
         {literals} probes of 127.0.0.1 around their deadline took at most {worst_literal:.4} s"
    );
    for (target, reason) in &others {
        assert_eq!(
            *reason, None,
            "{target} failed while other lookups were pending"
        );
    }
    assert!(
        pending >= STUCK / 2,
        "only {pending} queries reached the server: the load did not happen"
    );
    assert!(
        threads_during <= threads_before + 2,
        "the exporter grew from {threads_before} to {threads_during} threads"
    );
    assert!(
        slowest < Duration::from_millis(500),
        "other names waited {slowest:?} behind the unanswered ones"
    );
    assert!(
        worst_literal < 0.1,
        "a half-open probe took {worst_literal:.3} s while lookups ended: \
         near the ~200 ms delayed ACK, the application would see a connection"
    );
    assert_eq!(failed_as_dns, STUCK);
    assert!(latest < 3.3, "a 3 s deadline ended after {latest:.3} s");
}

/// The value of `series` with exactly `labels` in `body`.
fn labelled(body: &str, series: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{series}{{{labels}}} ");
    body.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .map(|value| value.trim().parse().expect("a number"))
}

#[tokio::test]
async fn ip_addresses_all_probes_every_address_and_any_or_all_decides() {
    let (server, exporter) = exporter_and_server().await;
    // Only the second address listens; the others answer RST.
    let listener = TcpListener::bind((THREE[1], 0)).expect("listen on 127.0.0.3");
    let port = listener.local_addr().unwrap().port();
    let target = format!("www.three.test:{port}");
    // Today's default probes the first address only, which refuses.
    let first = probe(exporter.address, &target, "first").await;
    assert_eq!(first.reason.as_deref(), Some("refused"), "{}", first.body);
    assert!(
        !first.body.contains("probe_address_success"),
        "{}",
        first.body
    );
    let any = probe(exporter.address, &target, "every_any").await;
    let all = probe(exporter.address, &target, "every_all").await;
    assert_eq!(any.reason, None, "{}", any.body);
    assert_eq!(all.reason.as_deref(), Some("refused"), "{}", all.body);
    for probed in [&any, &all] {
        for ip in THREE {
            let up = ip == THREE[1];
            let address = format!("address=\"{ip}\"");
            assert_eq!(
                labelled(&probed.body, "probe_address_success", &address),
                Some(f64::from(u8::from(up))),
                "{ip}: {}",
                probed.body
            );
            let refused = format!("{address},reason=\"refused\"");
            assert_eq!(
                labelled(&probed.body, "probe_address_failure_reason", &refused),
                Some(f64::from(u8::from(!up))),
                "{ip}: {}",
                probed.body
            );
        }
    }
    // The name was looked up through the test server.
    assert!(server.count("www.three.test.", RecordType::A) >= 1);
    // An IP literal is just that one address.
    let literal = probe(exporter.address, &format!("127.0.0.3:{port}"), "every_all").await;
    assert_eq!(literal.reason, None, "{}", literal.body);
    assert_eq!(
        literal.body.matches("probe_address_success{").count(),
        1,
        "{}",
        literal.body
    );
}

/// Scheduled targets and health groups of an `ip_addresses: all` module:
/// each address's own state on `/metrics`, each failing address named in
/// the group's answer.
#[tokio::test]
async fn scheduled_and_grouped_ip_addresses_all_show_each_address() {
    let server = DnsServer::start();
    let listener = TcpListener::bind((THREE[1], 0)).expect("listen on 127.0.0.3");
    let port = listener.local_addr().unwrap().port();
    let config = format!(
        "{MODULES}targets:\n  - module: every_all\n    interval: 1s\n    targets: [\"www.three.test:{port}\"]\n\
         groups:\n  g:\n    module: every_all\n    targets: [\"www.three.test:{port}\"]\n"
    );
    let settings = Exporter::builder().dns_servers(vec![server.address]);
    let exporter = TestExporter::with_config(&config, settings).await;
    let value = |body: &str, series: &str, ip: Ipv4Addr| -> Option<f64> {
        let address = format!("address=\"{ip}\"");
        body.lines()
            .find(|line| line.starts_with(&format!("{series}{{")) && line.contains(&address))
            .and_then(|line| line.rsplit(' ').next())
            .map(|value| value.parse().expect("a number"))
    };
    let started = Instant::now();
    let body = loop {
        let body = exporter.get("/metrics").await.body;
        if THREE
            .iter()
            .all(|ip| value(&body, "probe_address_healthy", *ip).is_some())
        {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no per-address series after 10 s:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for ip in THREE {
        let up = f64::from(u8::from(ip == THREE[1]));
        assert_eq!(value(&body, "probe_address_success", ip), Some(up), "{ip}");
        assert_eq!(value(&body, "probe_address_healthy", ip), Some(up), "{ip}");
    }
    let response = exporter.get("/health/g").await;
    assert_eq!(response.status, 503, "{}", response.body);
    for ip in [THREE[0], THREE[2]] {
        let line = format!("every_all www.three.test:{port} {ip} refused");
        assert!(
            response.body.lines().any(|seen| seen == line),
            "no line {line:?} in {}",
            response.body
        );
    }
    assert!(!response.body.contains("127.0.0.3"), "{}", response.body);
}

/// With `ip_protocol_fallback` (the default) both families are probed;
/// without it only the preferred one.
#[tokio::test]
async fn ip_addresses_all_probes_both_families_only_with_fallback() {
    let (_server, exporter) = exporter_and_server().await;
    let listener = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).expect("listen on ::1");
    let port = listener.local_addr().unwrap().port();
    let target = format!("www.both.test:{port}");
    let both = probe(exporter.address, &target, "every_any").await;
    assert_eq!(both.reason, None, "{}", both.body);
    let v4 = "address=\"127.0.0.2\"";
    let v6 = "address=\"::1\"";
    assert_eq!(
        labelled(&both.body, "probe_address_success", v4),
        Some(0.0),
        "{}",
        both.body
    );
    assert_eq!(
        labelled(&both.body, "probe_address_success", v6),
        Some(1.0),
        "{}",
        both.body
    );
    let ip4 = probe(exporter.address, &target, "every_ip4").await;
    assert_eq!(ip4.reason.as_deref(), Some("refused"), "{}", ip4.body);
    assert_eq!(
        labelled(&ip4.body, "probe_address_success", v4),
        Some(0.0),
        "{}",
        ip4.body
    );
    assert_eq!(
        labelled(&ip4.body, "probe_address_success", v6),
        None,
        "{}",
        ip4.body
    );
}

/// With `ip_addresses: all` and fallback, a family whose query is never
/// answered must not cost the addresses the other family gave: the probe
/// stops waiting for it in time to probe them, within its timeout.
#[tokio::test]
async fn ip_addresses_all_probes_the_answered_family_when_the_other_never_answers() {
    let _not_beside_the_storm = common::load::timed().await;
    let (server, exporter) = exporter_and_server().await;
    let listener = TcpListener::bind((NO_AAAA, 0)).expect("listen on 127.0.0.5");
    let port = listener.local_addr().unwrap().port();
    let probed = probe(
        exporter.address,
        &format!("www.noaaaa.test:{port}"),
        "every_any",
    )
    .await;
    assert_eq!(probed.reason, None, "{}", probed.body);
    assert_eq!(
        labelled(
            &probed.body,
            "probe_address_success",
            "address=\"127.0.0.5\""
        ),
        Some(1.0),
        "{}",
        probed.body
    );
    eprintln!(
        "A answered, AAAA never: probed 127.0.0.5 after {:.3} s of a 2 s timeout",
        probed.duration
    );
    assert!(
        probed.duration < 2.0 && probed.elapsed < Duration::from_millis(2500),
        "a 2 s timeout ended after {:.3} s (request {:?})",
        probed.duration,
        probed.elapsed
    );
    assert!(
        server.count("www.noaaaa.test.", RecordType::AAAA) >= 1,
        "AAAA was asked for"
    );
}
