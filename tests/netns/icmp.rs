//! Issue 12's table of faults, for IPv4 and IPv6 and both TCP probers:
//! each must end with the right reason and ICMP detail
//! (`Outcome::icmp_error`: type, code, and the host that sent it, from
//! the socket's error queue) or none, and an answered probe must end at
//! once, not after a SYN retransmission or at the deadline.
//!
//! The topology, built by the parent test and deleted on drop (also when
//! an assertion fails), in three network namespaces joined by veth pairs,
//! with documentation addresses only:
//!
//! ```text
//!  client c0 ---------- r0 router r1 ---------- s0 server
//!  192.0.2.2/24      192.0.2.1  198.51.100.1    198.51.100.2/24
//!  2001:db8:1::2/64  2001:db8:1::1  2001:db8:2::1  2001:db8:2::2/64
//! ```
//!
//! Each fault has its own destination port and a rule in one of three
//! firewalls: the router's `forward` chain ([`ROUTER_RULESET`]: ICMP
//! rejects and a drop), the server's `input` chain ([`SERVER_RULESET`]:
//! TCP reset, port unreachable) and the client's `output` chain
//! ([`CLIENT_RULESET`]: the exporter's own host rejecting its SYNs). The
//! client routes everything via the router, which has no route to a third
//! network (203.0.113.0/24, 2001:db8:3::/64) and must say so itself. A
//! listener in the server namespace (this binary again, test
//! [`netns_icmp_server_listens`], under `ip netns exec`) proves that the
//! path works; a port nobody listens on gives the server's own RST.
//!
//! The probing runs in the client namespace, in this binary re-executed
//! under `ip netns exec` (see `tests/netns/faults.rs` for why), with the
//! library's `synack_exporter::check`. No packet leaves the namespaces:
//! the client's only interfaces are `lo` and its veth, which it checks
//! before probing.
//!
//! What this showed on Linux 6.18: every ICMP error, from the client's
//! own firewall as from the router or the server, reaches the client's
//! socket while `connect()` still holds it (a veth hands the packet on in
//! the sender's own softirq, so the whole path runs before the call
//! returns; the child prints `TcpExtLockDroppedIcmps` per case). The
//! kernel then keeps it as a soft error and does not fail the connect,
//! but with `IP_RECVERR` / `IPV6_RECVERR` it queues it, which wakes the
//! probe at once. Without `IPV6_RECVERR` the IPv6 cases end only on the
//! SYN retransmission after 1 s, or time out under the same-host cases'
//! 500 ms timeout: the checks below fail then.
//!
//! Each path is warmed up first with a probe to the open port, repeated
//! until it succeeds: the first packet on a fresh veth waits for ARP or
//! neighbour discovery, which takes about 1 s for IPv6 here, and would
//! blur the "answered at once" check.
//!
//! Every row runs with the raw engine too (`tcp: {engine: raw}`, issue
//! 22), which reads its answers from raw TCP and ICMP sockets instead of
//! a socket's error queue: the same reason, the same ICMP type, code and
//! offender, as promptly. Through the exporter, each row's `/probe`
//! answer must then show the same `probe_icmp_error_info` with either
//! engine, and `debug=true` the same step log, but for the line that
//! names the engine and what only a kernel socket knows of a SYN-ACK
//! ([`crate::engines::step_difference`]).
//!
//! Prerequisites (root, `ip`, `nft`, a working `ip netns add`) are checked
//! first; when one is missing the test is skipped, or fails under
//! `SYNACK_SYSTEM_TESTS=require`.

use crate::common;

use crate::concurrent::Problems;
use crate::engines::Engine;
use crate::namespace::{
    ChildTest, NamespaceProcess, done_marker, firewall, ip, listeners, run_checked, runtime,
    write_proc_sys,
};
use common::TestExporter;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};
use synack_exporter::{Exporter, Module, Outcome, Reason};

/// Set for the re-executed binary in the client namespace.
const CLIENT_ENV: &str = "SYNACK_NETNS_ICMP_CLIENT";
/// Set for the re-executed binary in the server namespace.
const SERVER_ENV: &str = "SYNACK_NETNS_ICMP_SERVER";

/// The libtest name of the client child; keep in sync with the function.
const CLIENT_TEST: &str = "icmp::netns_icmp_client_probes";
/// The libtest name of the server's listener; keep in sync too.
const SERVER_TEST: &str = "icmp::netns_icmp_server_listens";

const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const ROUTER_CLIENT_SIDE_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const ROUTER_SERVER_SIDE_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const ROUTER_CLIENT_SIDE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const ROUTER_SERVER_SIDE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);

/// The server's listener; no rule matches it.
const PORT_OPEN: u16 = 80;
/// No rule, no listener: the server's kernel answers RST.
const PORT_CLOSED: u16 = 83;

/// In a network the client routes to the router (its default route) but
/// the router has no route for: the router itself must say so.
const UNROUTED_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const UNROUTED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 2);

firewall! {
    /// The router's rules.
    /// Explicit `icmp` and `icmpv6` types (not `icmpx`), so that each family
    /// gets the exact message the issue names.
    const ROUTER_RULESET = table "synack_netns_icmp" hook "forward";
    /// The router answers ICMP host-unreachable / ICMPv6 address-unreachable.
    const PORT_HOST_UNREACHABLE = 81 => ipv4 "reject with icmp type host-unreachable",
                                        ipv6 "reject with icmpv6 type addr-unreachable";
    /// The router answers ICMP(v6) administratively prohibited.
    const PORT_ADMIN_PROHIBITED = 82 => ipv4 "reject with icmp type admin-prohibited",
                                        ipv6 "reject with icmpv6 type admin-prohibited";
    /// The router answers ICMP net-unreachable / ICMPv6 no-route.
    const PORT_NET_UNREACHABLE = 84 => ipv4 "reject with icmp type net-unreachable",
                                       ipv6 "reject with icmpv6 type no-route";
    /// The router drops the SYN: no answer at all.
    const PORT_DROPPED = 87 => "drop";
}

firewall! {
    /// The server's own firewall, where a host firewall rejects a SYN.
    const SERVER_RULESET = table "synack_netns_icmp" hook "input";
    /// The server's firewall answers with a TCP RST.
    const PORT_SERVER_RESET = 85 => "reject with tcp reset";
    /// The server's firewall answers ICMP(v6) port-unreachable.
    const PORT_SERVER_PORT_UNREACHABLE = 86 => ipv4 "reject with icmp type port-unreachable",
                                               ipv6 "reject with icmpv6 type port-unreachable";
}

firewall! {
    /// The client's own firewall (the exporter's host), rejecting its SYNs on
    /// the way out: the ICMP error is made and delivered on the client's host
    /// while `connect()` may still hold the socket (see the module docs).
    const CLIENT_RULESET = table "synack_netns_icmp" hook "output";
    /// The client's own firewall answers ICMP(v6) administratively prohibited.
    const PORT_CLIENT_ADMIN_PROHIBITED = 88 => ipv4 "reject with icmp type admin-prohibited",
                                               ipv6 "reject with icmpv6 type admin-prohibited";
    /// The client's own firewall answers ICMP host-unreachable / ICMPv6
    /// address-unreachable.
    const PORT_CLIENT_HOST_UNREACHABLE = 89 => ipv4 "reject with icmp type host-unreachable",
                                               ipv6 "reject with icmpv6 type addr-unreachable";
}

/// The module timeout of the cases that get an answer from off the
/// client's host.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The module timeout of the same-host cases: the one the issue names,
/// below the 1 s SYN retransmission that used to be the only way such an
/// error ended the connect.
const SAME_HOST_TIMEOUT: Duration = Duration::from_millis(500);

/// The module timeout of the dropped SYNs: they always run to it, so
/// short, to keep the test fast.
const DROP_TIMEOUT: Duration = Duration::from_millis(300);

/// An answered case must end within this: well before the timeout, and
/// below the initial SYN retransmission time (1 s), so that an error
/// counted only on the retransmit fails the test. Cases with a shorter
/// timeout must end within half of it (see [`Case::answer_within`]).
const ANSWER_WITHIN: Duration = Duration::from_millis(500);

/// How long the warm-up of one path may keep trying.
const WARM_UP_LIMIT: Duration = Duration::from_secs(10);

/// How long the whole client run may take before the parent kills it.
const CHILD_LIMIT: Duration = Duration::from_secs(120);

/// How long the server's listener lives if nobody kills it.
const SERVER_LIFETIME: Duration = Duration::from_secs(90);

/// The parent: builds the three namespaces, starts the listener in the
/// server namespace, runs the client child and removes everything.
#[test]
fn netns_icmp_errors_name_the_router() {
    if std::env::var_os(CLIENT_ENV).is_some() || std::env::var_os(SERVER_ENV).is_some() {
        return; // a child: only its own test has work here
    }
    // Dropped after the listener(s), declared later: the namespaces go
    // last, their veths with them.
    let Some(namespaces) = crate::namespace::namespaces("synack-icmp", ["c", "r", "s"]) else {
        return;
    };
    let [client, router, server] = [0, 1, 2].map(|i| namespaces[i].name().to_owned());
    build_topology(&client, &router, &server);
    let _listener = NamespaceProcess::start(&server, SERVER_ENV, SERVER_TEST);

    crate::namespace::run_child_in(
        &client,
        &ChildTest {
            env: CLIENT_ENV,
            test: CLIENT_TEST,
            limit: CHILD_LIMIT,
        },
    );
}

/// Veths, addresses, routes, forwarding and the router's rules, as in the
/// module docs. IPv6 addresses are `nodad`, usable at once.
fn build_topology(client: &str, router: &str, server: &str) {
    ip(&[
        "link", "add", "c0", "netns", client, "type", "veth", "peer", "name", "r0", "netns", router,
    ]);
    ip(&[
        "link", "add", "r1", "netns", router, "type", "veth", "peer", "name", "s0", "netns", server,
    ]);
    crate::namespace::links_up(&[
        (client, &["lo", "c0"][..]),
        (router, &["lo", "r0", "r1"][..]),
        (server, &["lo", "s0"][..]),
    ]);
    let addresses: [(&str, &str, String); 8] = [
        (client, "c0", format!("{CLIENT_V4}/24")),
        (router, "r0", format!("{ROUTER_CLIENT_SIDE_V4}/24")),
        (router, "r1", format!("{ROUTER_SERVER_SIDE_V4}/24")),
        (server, "s0", format!("{SERVER_V4}/24")),
        (client, "c0", format!("{CLIENT_V6}/64")),
        (router, "r0", format!("{ROUTER_CLIENT_SIDE_V6}/64")),
        (router, "r1", format!("{ROUTER_SERVER_SIDE_V6}/64")),
        (server, "s0", format!("{SERVER_V6}/64")),
    ];
    crate::namespace::add_addresses(&addresses);
    let gateways = [
        (client, "-4", ROUTER_CLIENT_SIDE_V4.to_string()),
        (server, "-4", ROUTER_SERVER_SIDE_V4.to_string()),
        (client, "-6", ROUTER_CLIENT_SIDE_V6.to_string()),
        (server, "-6", ROUTER_SERVER_SIDE_V6.to_string()),
    ];
    for (namespace, family, gateway) in &gateways {
        ip(&[
            "-n", namespace, family, "route", "add", "default", "via", gateway,
        ]);
    }
    write_proc_sys(router, "net/ipv4/ip_forward", "1");
    write_proc_sys(router, "net/ipv6/conf/all/forwarding", "1");
    // The kernel sends about one ICMP error a second to each host after a
    // burst of 6 (IPv4), 4 a second (IPv6 to a /64): more than this test's
    // cases from one sender to the client would go missing. IPv4 is
    // exempted by type (ratemask), not by a zero ratelimit: a zero limit
    // still empties the client's per-host token bucket on every error,
    // and the router's "no route" errors (`ip_error`) draw on that same
    // bucket, so they would never be sent.
    for sender in [router, server] {
        write_proc_sys(sender, "net/ipv4/icmp_ratemask", "0");
        write_proc_sys(sender, "net/ipv6/icmp/ratelimit", "0");
    }
    for (namespace, ruleset) in [
        (router, ROUTER_RULESET),
        (server, SERVER_RULESET),
        (client, CLIENT_RULESET),
    ] {
        run_checked(
            Command::new("ip").args(["netns", "exec", namespace, "nft", "-f", "-"]),
            Some(ruleset),
        );
    }
}

/// The server's listener: binds the open port on both server addresses
/// and keeps them for [`SERVER_LIFETIME`] (the parent kills it sooner).
/// The kernel completes handshakes into the backlog without `accept`.
/// Passes at once outside the server namespace.
#[test]
fn netns_icmp_server_listens() {
    if std::env::var_os(SERVER_ENV).is_none() {
        return;
    }
    crate::namespace::assert_only_interfaces(SERVER_ENV, &["lo", "s0"]);
    let _listeners = listeners(
        [IpAddr::V4(SERVER_V4), IpAddr::V6(SERVER_V6)].map(|ip| SocketAddr::new(ip, PORT_OPEN)),
    );
    std::thread::sleep(SERVER_LIFETIME);
}

/// What a case must end with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Success: the path and the listener work.
    Open,
    /// `refused`, with no ICMP detail: an RST from the server.
    Refused,
    /// `timeout` at the module's deadline, with no ICMP detail.
    Timeout,
    /// This reason, with an ICMP error of this type and code sent by
    /// this host.
    Icmp {
        reason: Reason,
        icmp_type: u8,
        code: u8,
        from: Hop,
    },
}

/// Who sends an ICMP error, named by role so that one row serves both
/// families ([`Hop::address`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hop {
    /// The client's own host: its firewall's `output` chain.
    Client,
    /// The router, from its client-side address.
    Router,
    /// The server, from the probed address.
    Server,
}

impl Hop {
    /// The address this host sends its ICMP errors to the client from.
    fn address(self, ipv6: bool) -> IpAddr {
        match (self, ipv6) {
            (Hop::Client, false) => IpAddr::V4(CLIENT_V4),
            (Hop::Client, true) => IpAddr::V6(CLIENT_V6),
            (Hop::Router, false) => IpAddr::V4(ROUTER_CLIENT_SIDE_V4),
            (Hop::Router, true) => IpAddr::V6(ROUTER_CLIENT_SIDE_V6),
            (Hop::Server, false) => IpAddr::V4(SERVER_V4),
            (Hop::Server, true) => IpAddr::V6(SERVER_V6),
        }
    }
}

impl Expect {
    /// The module timeout of a case with this expectation.
    fn timeout(self) -> Duration {
        match self {
            Expect::Timeout => DROP_TIMEOUT,
            Expect::Icmp {
                from: Hop::Client, ..
            } => SAME_HOST_TIMEOUT,
            _ => PROBE_TIMEOUT,
        }
    }
}

/// One probe of the table, and what it returned (or that it did not
/// return in time).
type Case = crate::concurrent::Case<Expect>;
type CaseResult = crate::concurrent::Checked;

/// The client: checks it is in its namespace, warms up both paths, then
/// probes every case with both probers and checks reason, ICMP detail and
/// duration. Passes at once outside the client namespace.
#[test]
fn netns_icmp_client_probes() {
    if std::env::var_os(CLIENT_ENV).is_none() {
        return;
    }
    crate::namespace::assert_only_interfaces(CLIENT_ENV, &["lo", "c0"]);
    println!(); // libtest has printed "test NAME ... " without a newline
    let runtime = runtime();
    for server in [IpAddr::V4(SERVER_V4), IpAddr::V6(SERVER_V6)] {
        for engine in [Engine::Socket, Engine::Raw] {
            runtime.block_on(warm_up(engine, SocketAddr::new(server, PORT_OPEN)));
        }
    }

    let cases = all_cases();
    let mut problems = Problems::default();
    // One at a time: each duration is then the probe's own.
    for case in &cases {
        let dropped_before = lock_dropped_icmps();
        let result = runtime.block_on(run_case(case));
        problems.check(
            &case.describe(&result),
            case.judge(&result, |outcome| case.wrong(outcome)),
        );
        let dropped = lock_dropped_icmps().saturating_sub(dropped_before);
        if dropped > 0 {
            println!(
                "    TcpExtLockDroppedIcmps +{dropped}: the error came while connect() held the socket"
            );
        }
    }
    // Both tables run before either fails, so that one run shows all.
    runtime.block_on(the_engines_answer_and_log_alike(&mut problems));
    problems.assert_none();
    for engine in [Engine::Socket, Engine::Raw] {
        runtime.block_on(the_exporter_shows_who_said_no(engine));
        runtime.block_on(expect_port_reads_the_answer(engine));
    }
    println!("{}", done_marker(CLIENT_ENV));
}

/// Every row of both families through the exporter, as a `tcp_halfopen`
/// module of each engine: the reason the row wants, and with either
/// engine the same `probe_icmp_error_info` (or none) and the same step log
/// but for what [`crate::engines::step_difference`] leaves out.
async fn the_engines_answer_and_log_alike(problems: &mut Problems) {
    let module =
        |engine: Engine, timeout: Duration| format!("{}_{}ms", engine.name(), timeout.as_millis());
    let mut config = String::from("modules:\n");
    for engine in [Engine::Socket, Engine::Raw] {
        for timeout in [PROBE_TIMEOUT, SAME_HOST_TIMEOUT, DROP_TIMEOUT] {
            config.push_str(&format!(
                "  {}:\n    prober: tcp_halfopen\n    timeout: {}ms\n    tcp: {{{}}}\n",
                module(engine, timeout),
                timeout.as_millis(),
                engine.yaml()
            ));
        }
    }
    let exporter = TestExporter::with_config(&config, Exporter::builder()).await;
    let ipv4 = rows(IpAddr::V4(SERVER_V4), IpAddr::V4(UNROUTED_V4), &ICMP_V4);
    let ipv6 = rows(IpAddr::V6(SERVER_V6), IpAddr::V6(UNROUTED_V6), &ICMP_V6);
    for (what, ip, port, expect) in ipv4.into_iter().chain(ipv6) {
        let target = SocketAddr::new(ip, port);
        let mut bodies = Vec::new();
        for engine in [Engine::Socket, Engine::Raw] {
            let path = format!(
                "/probe?module={}&target={target}&debug=true",
                module(engine, expect.timeout())
            );
            bodies.push(exporter.get(&path).await.body);
        }
        let (socket, raw) = (&bodies[0], &bodies[1]);
        let icmp_info = |body: &str| -> Vec<String> {
            body.lines()
                .filter(|line| line.starts_with("probe_icmp_error_info{"))
                .map(str::to_owned)
                .collect()
        };
        let wanted = match expect {
            Expect::Open => None,
            Expect::Refused => Some("refused"),
            Expect::Timeout => Some("timeout"),
            Expect::Icmp { reason, .. } => Some(reason.as_str()),
        };
        let reasons = [socket, raw].map(|body| common::failed_reason(body));
        let problem = if reasons != [wanted, wanted] {
            Some(format!(
                "wanted reason {wanted:?} with both engines, got {reasons:?}\n--- socket ---\n{socket}\n--- raw ---\n{raw}"
            ))
        } else if icmp_info(socket) != icmp_info(raw) {
            Some(format!(
                "probe_icmp_error_info: socket {:?}, raw {:?}",
                icmp_info(socket),
                icmp_info(raw)
            ))
        } else {
            crate::engines::step_difference(
                &crate::engines::steps(socket),
                &crate::engines::steps(raw),
            )
        };
        problems.check(
            &format!(
                "exporter {target:<24} {what:<40} socket and raw: {} {:?}",
                reasons[1].unwrap_or("success"),
                icmp_info(raw)
            ),
            problem,
        );
    }
}

/// The same errors through the exporter, with `engine`: `/probe`
/// answers an IPv6 admin-prohibited with its `probe_icmp_error_info`, and
/// a scheduled IPv4 target shows its own on `/metrics`.
async fn the_exporter_shows_who_said_no(engine: Engine) {
    let scheduled = SocketAddr::new(IpAddr::V4(SERVER_V4), PORT_ADMIN_PROHIBITED);
    let config = format!(
        "modules:\n  fast:\n    prober: tcp_halfopen\n    timeout: 1s\n    tcp: {{{}}}\n\
         targets:\n  - module: fast\n    interval: 1s\n    targets: [\"{scheduled}\"]\n",
        engine.yaml()
    );
    let exporter = TestExporter::with_config(&config, Exporter::builder()).await;

    let probed = SocketAddr::new(IpAddr::V6(SERVER_V6), PORT_ADMIN_PROHIBITED);
    let answer = exporter
        .get(&format!("/probe?module=fast&target={probed}"))
        .await;
    let wanted = format!(
        "probe_icmp_error_info{{icmp_type=\"1\",icmp_code=\"1\",offender=\"{ROUTER_CLIENT_SIDE_V6}\"}} 1\n"
    );
    assert!(
        answer.body.contains(&wanted),
        "{}: no {wanted:?} in\n{}",
        engine.name(),
        answer.body
    );
    assert_eq!(
        common::failed_reason(&answer.body),
        Some("unreachable"),
        "{}",
        engine.name()
    );

    let wanted = format!(
        "probe_icmp_error_info{{module=\"fast\",target=\"{scheduled}\",icmp_type=\"3\",icmp_code=\"13\",offender=\"{ROUTER_CLIENT_SIDE_V4}\"}} 1\n"
    );
    let started = Instant::now();
    let mut metrics = String::new();
    while started.elapsed() < Duration::from_secs(5) && !metrics.contains(&wanted) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        metrics = exporter.get("/metrics").await.body;
    }
    assert!(
        metrics.contains(&wanted),
        "{}: no {wanted:?} in\n{metrics}",
        engine.name()
    );
    println!(
        "exporter, engine {}: /probe and /metrics show probe_icmp_error_info",
        engine.name()
    );
}

/// `expect_port: closed` and `filtered` (issue 21) against the table's
/// ports, through `/probe`: a drop (silence) and an ICMP reject satisfy
/// both, with the answer exported (and the ICMP error's type, code and
/// sender); an RST, from the server's kernel or its firewall, satisfies
/// `closed` and fails `filtered` as `refused`; the listener's SYN-ACK
/// fails both as `open`. Then a scheduled `filtered` target behind the
/// router's admin-prohibited shows the same on `/metrics`. With the
/// socket engine the modules are `tcp_connect` ones (an `expect_port`
/// check is half-open whatever the prober); the raw engine is refused
/// for `tcp_connect`, so its modules are `tcp_halfopen` ones.
async fn expect_port_reads_the_answer(engine: Engine) {
    let scheduled = SocketAddr::new(IpAddr::V4(SERVER_V4), PORT_ADMIN_PROHIBITED);
    let (prober, fields) = match engine {
        Engine::Socket => ("tcp_connect", String::new()),
        Engine::Raw => ("tcp_halfopen", format!(", {}", engine.yaml())),
    };
    let config = format!(
        "modules:\n  closed:\n    prober: {prober}\n    timeout: 500ms\n    tcp: {{expect_port: closed{fields}}}\n  \
         filtered:\n    prober: {prober}\n    timeout: 500ms\n    tcp: {{expect_port: filtered{fields}}}\n\
         targets:\n  - module: filtered\n    interval: 1s\n    targets: [\"{scheduled}\"]\n"
    );
    let exporter = TestExporter::with_config(&config, Exporter::builder()).await;
    // (port, answer, ICMP code and sender, reason of `closed`, of `filtered`)
    type ExpectRow = (
        u16,
        &'static str,
        Option<(u8, Hop)>,
        Option<&'static str>,
        Option<&'static str>,
    );
    let mut problems = Vec::new();
    for (server, icmp) in [
        (IpAddr::V4(SERVER_V4), ICMP_V4),
        (IpAddr::V6(SERVER_V6), ICMP_V6),
    ] {
        let table: [ExpectRow; 6] = [
            (PORT_DROPPED, "silence", None, None, None),
            (
                PORT_ADMIN_PROHIBITED,
                "icmp",
                Some((icmp.admin_prohibited, Hop::Router)),
                None,
                None,
            ),
            (
                PORT_SERVER_PORT_UNREACHABLE,
                "icmp",
                Some((icmp.port, Hop::Server)),
                None,
                None,
            ),
            (PORT_CLOSED, "rst", None, None, Some("refused")),
            (PORT_SERVER_RESET, "rst", None, None, Some("refused")),
            (PORT_OPEN, "syn_ack", None, Some("open"), Some("open")),
        ];
        for (port, answer, from, closed_reason, filtered_reason) in table {
            let target = SocketAddr::new(server, port);
            for (module, reason) in [("closed", closed_reason), ("filtered", filtered_reason)] {
                let body = exporter
                    .get(&format!("/probe?module={module}&target={target}"))
                    .await
                    .body;
                let got = common::failed_reason(&body);
                let answered = body.contains(&format!(
                    "probe_port_answer_info{{answer=\"{answer}\"}} 1\n"
                ));
                let icmp_ok = match from {
                    None => !body.contains("probe_icmp_error_info{"),
                    Some((code, hop)) => body.contains(&format!(
                        "probe_icmp_error_info{{icmp_type=\"{}\",icmp_code=\"{code}\",offender=\"{}\"}} 1\n",
                        icmp.icmp_type,
                        hop.address(server.is_ipv6())
                    )),
                };
                println!(
                    "    {} expect_port {module} {target}: {}, answer {answer} {}",
                    engine.name(),
                    got.unwrap_or("success"),
                    if answered && icmp_ok {
                        "exported"
                    } else {
                        "MISSING"
                    }
                );
                if got != reason || !answered || !icmp_ok {
                    problems.push(format!(
                        "{} {module} {target}: wanted {reason:?} with answer {answer} ({from:?}), got {got:?} in\n{body}",
                        engine.name()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let wanted = [
        format!(
            "probe_port_answer_info{{module=\"filtered\",target=\"{scheduled}\",answer=\"icmp\"}} 1\n"
        ),
        format!(
            "probe_icmp_error_info{{module=\"filtered\",target=\"{scheduled}\",icmp_type=\"3\",icmp_code=\"13\",offender=\"{ROUTER_CLIENT_SIDE_V4}\"}} 1\n"
        ),
        format!("probe_healthy{{module=\"filtered\",target=\"{scheduled}\"}} 1\n"),
    ];
    let started = Instant::now();
    let mut metrics = String::new();
    while started.elapsed() < Duration::from_secs(5)
        && !wanted.iter().all(|line| metrics.contains(line))
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        metrics = exporter.get("/metrics").await.body;
    }
    for line in &wanted {
        assert!(
            metrics.contains(line),
            "{}: no {line:?} in\n{metrics}",
            engine.name()
        );
    }
    println!(
        "exporter, engine {}: expect_port closed and filtered read silence, ICMP, RST and SYN-ACK",
        engine.name()
    );
}

/// The client namespace's `TcpExtLockDroppedIcmps`: ICMP errors that
/// came while the socket was held by a system call, so that the kernel
/// kept them only as a soft error (and on the error queue). Printed per
/// case as the evidence of which path an error took.
fn lock_dropped_icmps() -> u64 {
    crate::namespace::tcp_ext("LockDroppedIcmps")
}

/// Probes `address` with `engine` until a probe succeeds (the listener
/// may still be starting, ARP and neighbour discovery may still be
/// running), for at most [`WARM_UP_LIMIT`].
async fn warm_up(engine: Engine, address: SocketAddr) {
    let target = address.to_string();
    let module = Module::new(engine.halfopen()).with_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let mut last = String::from("no probe ran");
    while started.elapsed() < WARM_UP_LIMIT {
        let bounded =
            tokio::time::timeout(Duration::from_secs(5), engine.check(&target, &module)).await;
        match bounded {
            Ok(Ok(outcome)) if outcome.is_success() => {
                println!(
                    "warm-up {target}, engine {}: open after {:.3}s",
                    engine.name(),
                    started.elapsed().as_secs_f64()
                );
                return;
            }
            Ok(Ok(outcome)) => last = format!("{:?}", outcome.failure),
            Ok(Err(error)) => last = format!("target rejected: {error}"),
            Err(_) => last = "the probe ignored its deadline".to_owned(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the path to {target} did not work with engine {} within {WARM_UP_LIMIT:?}; last: {last}",
        engine.name()
    );
}

/// One row of the table: what, the probed address, what it must give.
type Row = (&'static str, IpAddr, u16, Expect);

/// One family's ICMP destination-unreachable type and the codes the
/// rules draw, so that one table serves both families.
struct DestinationUnreachable {
    icmp_type: u8,
    /// ICMP net unreachable; ICMPv6 no route.
    net: u8,
    /// ICMP host unreachable; ICMPv6 address unreachable.
    host: u8,
    port: u8,
    admin_prohibited: u8,
}

const ICMP_V4: DestinationUnreachable = DestinationUnreachable {
    icmp_type: 3,
    net: 0,
    host: 1,
    port: 3,
    admin_prohibited: 13,
};

const ICMP_V6: DestinationUnreachable = DestinationUnreachable {
    icmp_type: 1,
    net: 0,
    host: 3,
    port: 4,
    admin_prohibited: 1,
};

/// The rows of one family: `server` and `unrouted` are its addresses of
/// the server and of the network the router has no route to.
fn rows(server: IpAddr, unrouted: IpAddr, icmp: &DestinationUnreachable) -> [Row; 11] {
    let answer = |reason, code, from| Expect::Icmp {
        reason,
        icmp_type: icmp.icmp_type,
        code,
        from,
    };
    let unreachable = |code, from| answer(Reason::Unreachable, code, from);
    [
        ("open (listener)", server, PORT_OPEN, Expect::Open),
        (
            "router: reject host/addr-unreachable",
            server,
            PORT_HOST_UNREACHABLE,
            unreachable(icmp.host, Hop::Router),
        ),
        (
            "router: reject admin-prohibited",
            server,
            PORT_ADMIN_PROHIBITED,
            unreachable(icmp.admin_prohibited, Hop::Router),
        ),
        (
            "router: reject net-unreachable/no-route",
            server,
            PORT_NET_UNREACHABLE,
            unreachable(icmp.net, Hop::Router),
        ),
        (
            "router: no route to the network",
            unrouted,
            PORT_OPEN,
            unreachable(icmp.net, Hop::Router),
        ),
        (
            "server: reject with tcp reset",
            server,
            PORT_SERVER_RESET,
            Expect::Refused,
        ),
        ("server: no listener", server, PORT_CLOSED, Expect::Refused),
        ("router: drop", server, PORT_DROPPED, Expect::Timeout),
        (
            "server: reject port-unreachable",
            server,
            PORT_SERVER_PORT_UNREACHABLE,
            answer(Reason::Refused, icmp.port, Hop::Server),
        ),
        (
            "client: reject admin-prohibited",
            server,
            PORT_CLIENT_ADMIN_PROHIBITED,
            unreachable(icmp.admin_prohibited, Hop::Client),
        ),
        (
            "client: reject host/addr-unreachable",
            server,
            PORT_CLIENT_HOST_UNREACHABLE,
            unreachable(icmp.host, Hop::Client),
        ),
    ]
}

/// Every row of both families with both probers and both engines: the
/// classification must not depend on how far the handshake is meant to
/// go, nor on how the SYN is sent.
fn all_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (prober, engine) in crate::engines::matrix_probers() {
        let ipv4 = rows(IpAddr::V4(SERVER_V4), IpAddr::V4(UNROUTED_V4), &ICMP_V4);
        let ipv6 = rows(IpAddr::V6(SERVER_V6), IpAddr::V6(UNROUTED_V6), &ICMP_V6);
        for (what, ip, port, expect) in ipv4.into_iter().chain(ipv6) {
            cases.push(Case {
                what,
                address: SocketAddr::new(ip, port),
                prober: prober.clone(),
                engine,
                expect,
                timeout: expect.timeout(),
            });
        }
    }
    cases
}

/// One probe, bounded in case the prober ever ignores its deadline.
async fn run_case(case: &Case) -> CaseResult {
    case.check().await
}

/// What is wrong with a success's timing over the veth path, if
/// anything. A socket's: [`wrong_kernel_timing`]. A raw probe's, which
/// has no kernel socket: a handshake time above 0, an RTT (from its own
/// timestamps) above 0 and within the handshake time if it gives one,
/// and no SYN retransmitted.
fn wrong_timing(engine: Engine, outcome: &Outcome) -> Option<String> {
    if engine == Engine::Socket {
        return wrong_kernel_timing(outcome);
    }
    let Some(handshake) = outcome.handshake_time().filter(|time| !time.is_zero()) else {
        return Some(format!(
            "expected a handshake time above 0, got {:?}",
            outcome.handshake_time()
        ));
    };
    if let Some(rtt) = outcome.tcp().and_then(|tcp| tcp.tcp_rtt)
        && (rtt.is_zero() || rtt > handshake + Duration::from_micros(100))
    {
        return Some(format!("RTT {rtt:?} against a handshake of {handshake:?}"));
    }
    let retransmits = outcome.tcp().map_or(0, |tcp| tcp.syn_retransmits);
    (retransmits != 0).then(|| format!("{retransmits} SYN retransmits"))
}

/// What is wrong with a success's kernel timing over the veth path, if
/// anything: an RTT sample must exist, be above 0 and not exceed the
/// handshake time the exporter measured from `connect()` (plus the
/// kernel's rounding, 100 µs), and no SYN was retransmitted (the warm-up
/// settled the path).
fn wrong_kernel_timing(outcome: &Outcome) -> Option<String> {
    let (Some(rtt), Some(handshake)) = (
        outcome.tcp().and_then(|tcp| tcp.tcp_rtt),
        outcome.handshake_time(),
    ) else {
        return Some(format!(
            "expected an RTT sample and a handshake time, got {:?} and {:?}",
            outcome.tcp().and_then(|tcp| tcp.tcp_rtt),
            outcome.handshake_time()
        ));
    };
    if rtt.is_zero() || rtt > handshake + Duration::from_micros(100) {
        return Some(format!("RTT {rtt:?} against a handshake of {handshake:?}"));
    }
    (outcome.tcp().map_or(0, |tcp| tcp.syn_retransmits) != 0).then(|| {
        format!(
            "{} SYN retransmits",
            outcome.tcp().map_or(0, |tcp| tcp.syn_retransmits)
        )
    })
}

impl Case {
    /// One line for the log: case, result, ICMP detail and duration.
    fn describe(&self, result: &CaseResult) -> String {
        self.log_line(result, |outcome| {
            let icmp = outcome
                .tcp()
                .and_then(|tcp| tcp.icmp_error)
                .as_ref()
                .map_or_else(|| "no ICMP".to_owned(), ToString::to_string);
            format!(
                "{}; {icmp}; in {:.6}s; handshake {:?}, kernel RTT {:?}",
                crate::concurrent::verdict(outcome),
                outcome.duration.as_secs_f64(),
                outcome.handshake_time(),
                outcome.tcp().and_then(|tcp| tcp.tcp_rtt)
            )
        })
    }

    /// What is wrong with `outcome`, if anything.
    fn wrong(&self, outcome: &Outcome) -> Option<String> {
        match self.expect {
            Expect::Open => {
                if !outcome.is_success() {
                    return Some("expected success".to_owned());
                }
                return wrong_timing(self.engine, outcome)
                    .or_else(|| crate::engines::wrong_engine(self.engine, &self.prober, outcome));
            }
            Expect::Refused => {
                if outcome.reason() != Some(Reason::Refused) {
                    return Some("expected reason refused".to_owned());
                }
            }
            Expect::Timeout => {
                if outcome.reason() != Some(Reason::Timeout) {
                    return Some("expected reason timeout".to_owned());
                }
            }
            Expect::Icmp { reason, .. } => {
                if outcome.reason() != Some(reason) {
                    return Some(format!("expected reason {reason}"));
                }
            }
        }
        self.wrong_icmp(outcome)
            .or_else(|| self.wrong_duration(outcome))
    }

    /// What is wrong with the outcome's ICMP detail, if anything.
    fn wrong_icmp(&self, outcome: &Outcome) -> Option<String> {
        let Expect::Icmp {
            icmp_type,
            code,
            from,
            ..
        } = self.expect
        else {
            return outcome
                .tcp()
                .and_then(|tcp| tcp.icmp_error)
                .map(|icmp| format!("expected no ICMP detail, got {icmp:?}"));
        };
        let Some(icmp) = &outcome.tcp().and_then(|tcp| tcp.icmp_error) else {
            return Some("expected the ICMP error from the error queue".to_owned());
        };
        let ipv6 = self.address.is_ipv6();
        if icmp.ipv6 != ipv6 || icmp.icmp_type != icmp_type || icmp.code != code {
            return Some(format!(
                "expected ICMP{} type {icmp_type} code {code}, got {icmp:?}",
                if ipv6 { "v6" } else { "" }
            ));
        }
        let sender = from.address(ipv6);
        if icmp.offender != Some(sender) {
            return Some(format!(
                "expected {from:?} {sender} as offender, got {:?}",
                icmp.offender
            ));
        }
        None
    }

    /// What is wrong with how long the probe took, if anything: a timeout
    /// must have waited for its deadline, an answer must not have.
    fn wrong_duration(&self, outcome: &Outcome) -> Option<String> {
        crate::concurrent::wrong_duration(
            outcome,
            self.expect == Expect::Timeout,
            self.timeout,
            self.answer_within(),
        )
    }

    /// How soon an answer must come: [`ANSWER_WITHIN`], or half a shorter
    /// timeout, so that an error found only at the deadline fails.
    fn answer_within(&self) -> Duration {
        ANSWER_WITHIN.min(self.timeout / 2)
    }
}
