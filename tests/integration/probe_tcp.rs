//! The TCP probers against real loopback sockets.
//!
//! The central claim of the project is tested here: after many half-open
//! probes the listening application has accepted nothing, while the same
//! listener does accept `tcp_connect` probes.

use crate::common;

use common::{TestExporter, sample};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;
use synack_exporter::{Exporter, IpProtocol, Module, Outcome, Reason, check};

fn halfopen(timeout: Duration) -> Module {
    Module::tcp_halfopen().with_timeout(timeout)
}

fn connect(timeout: Duration) -> Module {
    Module::tcp_connect().with_timeout(timeout)
}

/// A non-blocking listener with a large backlog, so `accept` can be polled.
fn listener(address: &str) -> Option<TcpListener> {
    let address: SocketAddr = address.parse().unwrap();
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .ok()?;
    socket.bind(&address.into()).ok()?;
    socket.listen(1024).ok()?;
    let listener: TcpListener = socket.into();
    listener.set_nonblocking(true).unwrap();
    Some(listener)
}

fn target_of(listener: &TcpListener) -> String {
    match listener.local_addr().unwrap() {
        SocketAddr::V4(v4) => v4.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

/// Counts connections that `accept` hands out, after waiting past the
/// kernel's delayed-ACK timer so that a late ACK would have been seen.
fn accepted_after_delayed_ack(listener: &TcpListener) -> usize {
    std::thread::sleep(Duration::from_millis(600));
    common::accept_waiting(listener)
}

async fn assert_halfopen_is_invisible(address: &str) {
    let _timed = common::load::timed().await;
    let Some(listener) = listener(address) else {
        common::skip_or_fail(&format!("cannot listen on {address}"));
        return;
    };
    let target = target_of(&listener);
    for round in 0..120 {
        let outcome = check(&target, &halfopen(Duration::from_secs(2)))
            .await
            .unwrap();
        assert!(
            outcome.is_success(),
            "probe {round} of {target}: {:?}",
            outcome.failure
        );
        assert!(outcome.handshake_time().is_some());
        let close_delay = outcome
            .tcp()
            .and_then(|tcp| tcp.close_delay)
            .expect("a half-open success has a close delay");
        // Loopback, an idle runtime: the RST follows the wake-up at once.
        assert!(
            close_delay < Duration::from_millis(50),
            "probe {round}: closed {close_delay:?} after the SYN-ACK"
        );
    }
    assert_eq!(
        accepted_after_delayed_ack(&listener),
        0,
        "half-open probes must never be accepted"
    );
}

#[tokio::test]
async fn halfopen_ipv4_succeeds_and_the_application_accepts_nothing() {
    assert_halfopen_is_invisible("127.0.0.1:0").await;
}

#[tokio::test]
async fn halfopen_ipv6_succeeds_and_the_application_accepts_nothing() {
    assert_halfopen_is_invisible("[::1]:0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halfopen_stays_invisible_under_concurrent_load() {
    let listener = listener("127.0.0.1:0").unwrap();
    let target = Arc::new(target_of(&listener));
    let mut probes = tokio::task::JoinSet::new();
    for _ in 0..300 {
        let target = Arc::clone(&target);
        probes.spawn(async move {
            check(&target, &halfopen(Duration::from_secs(3)))
                .await
                .unwrap()
        });
    }
    let mut successes = 0;
    while let Some(outcome) = probes.join_next().await {
        successes += usize::from(outcome.unwrap().is_success());
    }
    assert_eq!(successes, 300);
    assert_eq!(
        accepted_after_delayed_ack(&listener),
        0,
        "a delayed ACK escaped under load"
    );
}

#[tokio::test]
async fn tcp_connect_is_accepted_by_the_same_listener() {
    let listener = listener("127.0.0.1:0").unwrap();
    let target = target_of(&listener);
    for _ in 0..10 {
        let outcome = check(&target, &connect(Duration::from_secs(2)))
            .await
            .unwrap();
        assert!(outcome.is_success(), "{:?}", outcome.failure);
        assert_eq!(
            outcome.tcp().and_then(|tcp| tcp.close_delay),
            None,
            "a full handshake races nothing"
        );
    }
    assert_eq!(accepted_after_delayed_ack(&listener), 10);
}

#[tokio::test]
async fn closed_port_is_refused_by_both_probers() {
    let target = common::closed_port().to_string();
    for module in [
        halfopen(Duration::from_secs(2)),
        connect(Duration::from_secs(2)),
    ] {
        let outcome = check(&target, &module).await.unwrap();
        assert!(detail_of(&outcome, Reason::Refused).contains("ECONNREFUSED"));
        assert_eq!(outcome.handshake_time(), None);
        assert_eq!(outcome.tcp().and_then(|tcp| tcp.close_delay), None);
    }
}

#[tokio::test]
async fn full_accept_queue_times_out_close_to_the_deadline() {
    let listener = common::saturated_listener();
    let target = listener.address.to_string();
    let timeout = Duration::from_millis(1000);
    let outcome = check(&target, &halfopen(timeout)).await.unwrap();
    assert_reason(&outcome, Reason::Timeout);
    assert!(
        outcome.duration >= timeout.mul_f64(0.95)
            && outcome.duration < timeout + Duration::from_millis(500),
        "duration {:?} should be close to the {timeout:?} deadline",
        outcome.duration
    );
}

/// `address` as /proc/net/tcp{,6} writes it: the address's 32-bit words
/// in host byte order, then the port, in upper-case hex.
fn proc_net_address(address: SocketAddr) -> String {
    let octets = match address.ip() {
        std::net::IpAddr::V4(ip) => ip.octets().to_vec(),
        std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    let words: String = octets
        .chunks(4)
        .map(|word| format!("{:08X}", u32::from_ne_bytes(word.try_into().unwrap())))
        .collect();
    format!("{words}:{:04X}", address.port())
}

/// The lines of /proc/net/tcp{,6} whose local or remote address is
/// `address` (IP and port): `(local, remote, state)` and the whole line.
fn sockets_at(address: SocketAddr) -> Vec<((String, String, String), String)> {
    let address = proc_net_address(address);
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|text| text.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1).map(str::to_owned);
            let (local, remote, state) = (fields.next()?, fields.next()?, fields.next()?);
            (local == address || remote == address).then_some(((local, remote, state), line))
        })
        .collect()
}

/// Neither side of a half-open or connect probe stays in TIME_WAIT: no
/// TIME_WAIT socket (state 06) to or from the listener's address appears
/// while the test probes it. Sockets already there when the listener was
/// bound are not the probes': a port freed by another test's server (or
/// another process's) may still have TIME_WAIT sockets of that server's
/// clients pointing at it, as a session that closed with FIN leaves them,
/// and `bind` to port 0 hands such a port out again.
#[tokio::test]
async fn halfopen_and_connect_leave_no_time_wait() {
    for (module, address) in [
        (halfopen(Duration::from_secs(2)), "127.0.0.1:0"),
        (halfopen(Duration::from_secs(2)), "[::1]:0"),
        (connect(Duration::from_secs(2)), "127.0.0.1:0"),
    ] {
        let Some(listener) = listener(address) else {
            common::skip_or_fail(&format!("cannot listen on {address}"));
            continue;
        };
        let bound = listener.local_addr().unwrap();
        let before: Vec<_> = sockets_at(bound).into_iter().map(|(key, _)| key).collect();
        let target = target_of(&listener);
        for _ in 0..100 {
            assert!(check(&target, &module).await.unwrap().is_success());
        }
        // Accept whatever tcp_connect completed, then close those too.
        while listener.accept().is_ok() {}
        tokio::time::sleep(Duration::from_millis(200)).await;
        let entries: Vec<String> = sockets_at(bound)
            .into_iter()
            .filter(|((local, remote, state), _)| {
                state == "06"
                    && !before.iter().any(|(was_local, was_remote, _)| {
                        was_local == local && was_remote == remote
                    })
            })
            .map(|(_, line)| line)
            .collect();
        assert!(
            entries.is_empty(),
            "{} left TIME_WAIT at {bound}: {entries:#?}",
            module.prober().name()
        );
    }
}

#[tokio::test]
async fn localhost_resolves_and_unknown_names_fail_as_dns() {
    let listener = listener("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let outcome = check(
        &format!("localhost:{port}"),
        &halfopen(Duration::from_secs(3)),
    )
    .await
    .unwrap();
    assert!(outcome.is_success(), "{:?}", outcome.failure);
    assert_eq!(outcome.ip_protocol(), 4, "ip4 is preferred by default");

    let outcome = check("no-such-host.invalid:80", &halfopen(Duration::from_secs(3)))
        .await
        .unwrap();
    assert_reason(&outcome, Reason::Dns);
    assert_eq!(outcome.ip_protocol(), 0);
}

/// Fails the test unless `outcome` failed with `reason`.
fn assert_reason(outcome: &Outcome, reason: Reason) {
    assert_eq!(outcome.reason(), Some(reason), "{:?}", outcome.failure);
}

/// The detail of `outcome`, which must have failed with `reason`.
fn detail_of(outcome: &Outcome, reason: Reason) -> &str {
    assert_reason(outcome, reason);
    &outcome.failure.as_ref().expect("a failure").detail
}

/// An IP literal that the module's family options forbid was never looked
/// up, so it is not `dns`: it fails as `local`, saying which option
/// forbids it, with families spelt as in the config. A name without an
/// allowed address is `dns`.
#[tokio::test]
async fn disallowed_family_fails_a_literal_as_local_a_name_as_dns_and_fallback_allows_it() {
    let listener = listener("127.0.0.1:0").unwrap();
    let target = target_of(&listener);
    let mut module = halfopen(Duration::from_secs(2));
    let tcp = module.tcp_mut().expect("a TCP module");
    tcp.preferred_ip_protocol = IpProtocol::Ip6;
    tcp.ip_protocol_fallback = false;
    let outcome = check(&target, &module).await.unwrap();
    assert_eq!(
        detail_of(&outcome, Reason::Local),
        "target 127.0.0.1 is an ip4 address and the module allows only ip6 \
         (preferred_ip_protocol: ip6, ip_protocol_fallback: false): use a module that allows ip4"
    );

    // localhost is in /etc/hosts with 127.0.0.1; an IPv4 source rules
    // out any IPv6 address it may have too.
    module.tcp_mut().expect("a TCP module").source_ip_address = Some("127.0.0.1".parse().unwrap());
    let outcome = check("localhost:9", &module).await.unwrap();
    let detail = detail_of(&outcome, Reason::Dns);
    assert!(
        detail.ends_with(
            "has no address of an allowed family (preferred_ip_protocol ip6, \
             ip_protocol_fallback false, source_ip_address 127.0.0.1)"
        ),
        "{detail}"
    );
    let outcome = check("[::1]:9", &module).await.unwrap();
    let detail = detail_of(&outcome, Reason::Local);
    assert!(
        detail.starts_with(
            "target ::1 is an ip6 address and the module's source_ip_address 127.0.0.1 is ip4"
        ),
        "{detail}"
    );

    let tcp = module.tcp_mut().expect("a TCP module");
    tcp.source_ip_address = None;
    tcp.ip_protocol_fallback = true;
    assert!(check(&target, &module).await.unwrap().is_success());
}

#[tokio::test]
async fn source_ip_address_is_used() {
    let listener = listener("127.0.0.1:0").unwrap();
    let target = target_of(&listener);
    let mut module = connect(Duration::from_secs(2));
    module.tcp_mut().expect("a TCP module").source_ip_address = Some("127.0.0.2".parse().unwrap());
    assert!(check(&target, &module).await.unwrap().is_success());
    // The handshake completed before check() returned: the connection
    // waits in the accept queue.
    let (_, peer) = listener.accept().expect("tcp_connect was accepted");
    assert_eq!(peer.ip().to_string(), "127.0.0.2");

    // A source address this host does not have is the exporter's
    // problem, and the detail names the setting to fix.
    module.tcp_mut().expect("a TCP module").source_ip_address = Some("192.0.2.1".parse().unwrap());
    let outcome = check(&target, &module).await.unwrap();
    let detail = detail_of(&outcome, Reason::Local);
    assert!(
        detail.contains("EADDRNOTAVAIL")
            && detail.contains("source_ip_address 192.0.2.1 is not an address of this host"),
        "{detail}"
    );
}

/// With its one slot taken, the exporter makes a probe wait for a slot
/// until less than half of its timeout is left, then fail it as `local`,
/// the exporter's own problem, saying which flag to raise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_in_flight_limit_a_probe_waits_then_fails_as_local() {
    let listener = common::saturated_listener();
    let target = listener.address;
    let exporter = Arc::new(
        TestExporter::with_config(
            "modules:\n  hold:\n    prober: tcp_halfopen\n    timeout: 3s\n  \
             waiter:\n    prober: tcp_halfopen\n    timeout: 300ms\n",
            Exporter::builder().max_in_flight(1),
        )
        .await,
    );
    let busy = {
        let exporter = Arc::clone(&exporter);
        tokio::spawn(async move {
            exporter
                .get(&format!("/probe?target={target}&module=hold"))
                .await
                .body
        })
    };
    exporter.wait_for_in_flight(1.0).await;
    let timeout = Duration::from_millis(300);
    let body = exporter
        .get(&format!("/probe?target={target}&module=waiter&debug=true"))
        .await
        .body;
    assert_eq!(
        sample(&body, "probe_failure_reason{reason=\"local\"}"),
        Some(1.0),
        "{body}"
    );
    // It gives up once less than half of its timeout is left: no SYN
    // could then get an honest share of the timeout.
    let waited = Duration::from_secs_f64(sample(&body, "probe_duration_seconds").unwrap());
    assert!(
        waited >= timeout.mul_f64(0.45) && waited < timeout,
        "waited {waited:?}: {body}"
    );
    assert!(body.contains("--probe.max-in-flight"), "{body}");
    let busy = busy.await.unwrap();
    assert_eq!(
        sample(&busy, "probe_failure_reason{reason=\"timeout\"}"),
        Some(1.0),
        "{busy}"
    );
}

/// Three modules, one per TCP prober (the last a `prober: tcp` session),
/// whose `tcp:` block holds `route`, one line of flow YAML's fields.
fn every_tcp_prober(route: &str) -> String {
    format!(
        "modules:\n  halfopen:\n    prober: tcp_halfopen\n    tcp: {{{route}}}\n  connect:\n    \
         prober: tcp_connect\n    tcp: {{{route}}}\n  session:\n    prober: tcp\n    \
         tcp: {{{route}, query_response: [{{send: hi}}]}}\n"
    )
}

/// The names of [`every_tcp_prober`]'s modules.
const EVERY_TCP_PROBER: [&str; 3] = ["halfopen", "connect", "session"];

/// A `source_interface` this host does not have (yet) is not a load
/// error but a located note, as the interface may come later; a probe of
/// every TCP prober through it fails as `local`, naming the interface and
/// the kernel's ENODEV.
#[tokio::test]
async fn a_missing_source_interface_is_noted_at_load_and_fails_each_prober_as_local() {
    let listener = listener("127.0.0.1:0").unwrap();
    let target = target_of(&listener);
    let yaml = every_tcp_prober("source_interface: synack-none0");
    let warnings: Vec<String> = Exporter::builder()
        .config_text("r.yml", &yaml)
        .check_config_with_warnings()
        .expect("a missing interface is a note, not an error")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert!(
        warnings[1].starts_with("r.yml:4:29: field `modules.halfopen.tcp.source_interface`")
            && warnings[1]
                .contains("source_interface \"synack-none0\" is not an interface of this host")
            && warnings[1].contains("its probes fail with reason local"),
        "{warnings:#?}"
    );
    let exporter = TestExporter::with_config(&yaml, Exporter::builder()).await;
    for module in EVERY_TCP_PROBER {
        let body = exporter
            .get(&format!(
                "/probe?target={target}&module={module}&debug=true"
            ))
            .await
            .body;
        assert!(
            body.contains("local")
                && body.contains("ENODEV")
                && body
                    .contains("source_interface \"synack-none0\" is not an interface of this host"),
            "{module}: {body}"
        );
    }
    assert_eq!(common::accept_waiting(&listener), 0, "no SYN left");
}

/// Bound to `lo` and with a DSCP, every TCP prober still reaches a
/// loopback listener; and `/config` shows both options as written.
#[tokio::test]
async fn source_interface_and_dscp_keep_a_loopback_probe_working_and_show_in_config() {
    let listener = listener("127.0.0.1:0").unwrap();
    let target = target_of(&listener);
    let yaml = every_tcp_prober("source_interface: lo, dscp: 46");
    let warnings = Exporter::builder()
        .config_text("r.yml", &yaml)
        .check_config_with_warnings()
        .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let exporter = TestExporter::with_config(&yaml, Exporter::builder()).await;
    for module in EVERY_TCP_PROBER {
        let body = exporter.probe(&target, module).await.body;
        assert_eq!(
            sample(&body, "probe_success"),
            Some(1.0),
            "{module}: {body}"
        );
    }
    let shown = exporter.get("/config").await.body;
    assert_eq!(shown.matches("source_interface: lo").count(), 3, "{shown}");
    assert_eq!(shown.matches("dscp: 46").count(), 3, "{shown}");
}
