//! Issue 21, item 5: `trace_on_timeout` names the last hop that answered
//! a trace SYN, in IPv4 and IPv6, for both TCP probers.
//!
//! The topology, built by the parent test and deleted on drop (also when
//! an assertion fails), in four network namespaces joined by veth pairs,
//! with documentation addresses only:
//!
//! ```text
//!  client c0 ------ r1a router 1 r1b ------ r2a router 2 r2b ------ s0 server
//!  192.0.2.2/24   192.0.2.1   198.51.100.1   198.51.100.2   203.0.113.1   203.0.113.2/24
//!  2001:db8:1::2  2001:db8:1::1  2001:db8:2::1  2001:db8:2::2  2001:db8:3::1  2001:db8:3::2
//! ```
//!
//! Both routers forward. Two ports are dropped silently, at two places:
//!
//! - [`PORT_SERVER_DROP`] by the server's `input` chain: a trace SYN with
//!   TTL 1 expires at router 1, TTL 2 at router 2 (each sends ICMP time
//!   exceeded from the address facing the client), TTL 3 and more reach the
//!   server and are dropped: the last hop is 2, router 2 (198.51.100.2).
//! - [`PORT_ROUTER_DROP`] by router 2's `prerouting` chain, which runs
//!   before the TTL check of forwarding: only TTL 1 draws an answer, from
//!   router 1 (192.0.2.1), so the last hop is 1.
//!
//! The client's `output` chain counts the SYNs it sends with a TTL (hop
//! limit) below the default 64: the trace's, which must be exactly
//! [`MAX_HOPS`] per trace, and none for a module without the option.
//!
//! The probes run in the client namespace, in this binary re-executed
//! under `ip netns exec` (see `tests/netns/faults.rs` for why), through an
//! in-process exporter serving a YAML config, so the option goes the way a
//! user's does. Each path is warmed up first with probes to a port nobody
//! listens on until the server's RST comes back. No packet leaves the
//! namespaces: the client's only interfaces are `lo` and `c0`.
//!
//! Routers rate-limit ICMP errors per destination (`icmp_ratelimit`, a
//! burst of 6): each router sends at most one per trace here.
//!
//! Prerequisites (root, `ip`, `nft`, a working `ip netns add`) are checked
//! first; when one is missing the test is skipped, or fails under
//! `SYNACK_SYSTEM_TESTS=require`.

use crate::common;

use crate::namespace::{ChildTest, done_marker, ip, run_checked, write_proc_sys};
use common::{TestExporter, sample};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};
use synack_exporter::Exporter;

/// Set for the re-executed binary in the client namespace.
const CLIENT_ENV: &str = "SYNACK_NETNS_TRACE_CLIENT";
/// The libtest name of the client child; keep in sync with the function.
const CLIENT_TEST: &str = "trace::netns_trace_client_probes";

const SERVER_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 2);
/// Router 1's address facing the client, and router 2's facing router 1.
const ROUTER1_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const ROUTER1_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
const ROUTER2_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const ROUTER2_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);

/// Dropped by the server; nothing listens on it anyway.
const PORT_SERVER_DROP: u16 = 7001;
/// Dropped by router 2 before forwarding.
const PORT_ROUTER_DROP: u16 = 7002;
/// Nobody listens and nobody drops: the server's RST, for the warm-up.
const PORT_CLOSED: u16 = 7003;

/// The most trace SYNs per trace (the exporter's bound, documented).
const MAX_HOPS: u64 = 30;

/// The modules' timeout; a trace keeps a quarter of it (0.5 s).
const TIMEOUT_SECONDS: u64 = 2;
/// How long the whole client run may take before the parent kills it.
const CHILD_LIMIT: Duration = Duration::from_secs(90);
/// How long the warm-up of one path may keep trying.
const WARM_UP_LIMIT: Duration = Duration::from_secs(10);

const CLIENT_RULESET: &str = "table inet synack_netns_trace {
    counter trace { }
    chain output_filter {
        type filter hook output priority 0; policy accept;
        ip ttl < 64 tcp flags & (syn | ack) == syn counter name \"trace\"
        ip6 hoplimit < 64 tcp flags & (syn | ack) == syn counter name \"trace\"
    }
}
";

/// A ruleset that drops TCP packets to `port` on `hook`: the server's
/// `input` for [`PORT_SERVER_DROP`], router 2's `prerouting` for
/// [`PORT_ROUTER_DROP`].
fn drop_ruleset(hook: &str, port: u16) -> String {
    format!(
        "table inet synack_netns_trace {{
    chain {hook}_filter {{
        type filter hook {hook} priority 0; policy accept;
        tcp dport {port} drop
    }}
}}
"
    )
}

/// The parent: builds the four namespaces, runs the client child and
/// removes everything.
#[test]
fn netns_trace_names_the_last_hop_that_answered() {
    if std::env::var_os(CLIENT_ENV).is_some() {
        return; // the child: only its own test has work here
    }
    let Some(namespaces) = crate::namespace::namespaces("synack-trace", ["c", "r1", "r2", "s"])
    else {
        return;
    };
    let [client, router1, router2, server] = [0, 1, 2, 3].map(|i| namespaces[i].name().to_owned());
    build_topology(&client, &router1, &router2, &server);
    crate::namespace::run_child_in(
        &client,
        &ChildTest {
            env: CLIENT_ENV,
            test: CLIENT_TEST,
            limit: CHILD_LIMIT,
        },
    );
}

/// Veths, addresses, routes, forwarding and the firewalls, as in the
/// module docs. IPv6 addresses are `nodad`, usable at once.
fn build_topology(client: &str, router1: &str, router2: &str, server: &str) {
    for (a, a_link, b, b_link) in [
        (client, "c0", router1, "r1a"),
        (router1, "r1b", router2, "r2a"),
        (router2, "r2b", server, "s0"),
    ] {
        ip(&[
            "link", "add", a_link, "netns", a, "type", "veth", "peer", "name", b_link, "netns", b,
        ]);
    }
    crate::namespace::links_up(&[
        (client, &["lo", "c0"][..]),
        (router1, &["lo", "r1a", "r1b"][..]),
        (router2, &["lo", "r2a", "r2b"][..]),
        (server, &["lo", "s0"][..]),
    ]);
    let addresses: [(&str, &str, String); 12] = [
        (client, "c0", "192.0.2.2/24".to_owned()),
        (router1, "r1a", format!("{ROUTER1_V4}/24")),
        (router1, "r1b", "198.51.100.1/24".to_owned()),
        (router2, "r2a", format!("{ROUTER2_V4}/24")),
        (router2, "r2b", "203.0.113.1/24".to_owned()),
        (server, "s0", format!("{SERVER_V4}/24")),
        (client, "c0", "2001:db8:1::2/64".to_owned()),
        (router1, "r1a", format!("{ROUTER1_V6}/64")),
        (router1, "r1b", "2001:db8:2::1/64".to_owned()),
        (router2, "r2a", format!("{ROUTER2_V6}/64")),
        (router2, "r2b", "2001:db8:3::1/64".to_owned()),
        (server, "s0", format!("{SERVER_V6}/64")),
    ];
    crate::namespace::add_addresses(&addresses);
    let routes: [(&str, &str, &str, &str); 8] = [
        (client, "-4", "default", "192.0.2.1"),
        (client, "-6", "default", "2001:db8:1::1"),
        (router1, "-4", "203.0.113.0/24", "198.51.100.2"),
        (router1, "-6", "2001:db8:3::/64", "2001:db8:2::2"),
        (router2, "-4", "192.0.2.0/24", "198.51.100.1"),
        (router2, "-6", "2001:db8:1::/64", "2001:db8:2::1"),
        (server, "-4", "default", "203.0.113.1"),
        (server, "-6", "default", "2001:db8:3::1"),
    ];
    for (namespace, family, to, via) in routes {
        ip(&["-n", namespace, family, "route", "add", to, "via", via]);
    }
    for router in [router1, router2] {
        write_proc_sys(router, "net/ipv4/ip_forward", "1");
        write_proc_sys(router, "net/ipv6/conf/all/forwarding", "1");
    }
    for (namespace, ruleset) in [
        (client, CLIENT_RULESET.to_owned()),
        (server, drop_ruleset("input", PORT_SERVER_DROP)),
        (router2, drop_ruleset("prerouting", PORT_ROUTER_DROP)),
    ] {
        run_checked(
            Command::new("ip").args(["netns", "exec", namespace, "nft", "-f", "-"]),
            Some(&ruleset),
        );
    }
}

/// One module per prober and engine, traced or not: `traced_halfopen`,
/// `plain_connect`, `traced_raw` (the half-open prober with the raw
/// engine, whose trace SYNs are the socket engine's), ...
fn config() -> String {
    let mut yaml = String::from("modules:\n");
    for (name, trace) in [("traced", "true"), ("plain", "false")] {
        for (kind, prober, engine) in KINDS {
            yaml.push_str(&format!(
                "  {name}_{kind}:\n    prober: {prober}\n    timeout: {TIMEOUT_SECONDS}s\n    \
                 tcp: {{trace_on_timeout: {trace}, engine: {engine}}}\n"
            ));
        }
    }
    yaml
}

/// The module kinds of [`config`]: name, prober, engine.
const KINDS: [(&str, &str, &str); 3] = [
    ("halfopen", "tcp_halfopen", "socket"),
    ("connect", "tcp_connect", "socket"),
    ("raw", "tcp_halfopen", "raw"),
];

/// The client's count of SYNs sent with a TTL below 64.
fn trace_syns() -> u64 {
    let listed = common::run_bounded(
        Command::new("nft").args(["list", "counter", "inet", "synack_netns_trace", "trace"]),
        None,
        Duration::from_secs(20),
    )
    .expect("nft list counter");
    assert!(listed.status.success(), "{}", listed.stderr);
    listed
        .stdout
        .lines()
        .find_map(|line| line.trim().strip_prefix("packets "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no packet count in {}", listed.stdout))
}

/// The client: warms up the paths, then probes each case and checks the
/// last hop, the detail, the trace SYNs sent and the time `/probe` took.
/// Passes at once outside the namespace.
#[test]
fn netns_trace_client_probes() {
    if std::env::var_os(CLIENT_ENV).is_none() {
        return;
    }
    crate::namespace::assert_only_interfaces(CLIENT_ENV, &["lo", "c0"]);
    println!(); // libtest has printed "test NAME ... " without a newline
    let runtime = crate::namespace::runtime();
    runtime.block_on(async {
        let exporter = TestExporter::with_config(&config(), Exporter::builder()).await;
        let mut problems = Vec::new();
        for (server, router1, router2) in [
            (
                IpAddr::from(SERVER_V4),
                IpAddr::from(ROUTER1_V4),
                IpAddr::from(ROUTER2_V4),
            ),
            (SERVER_V6.into(), ROUTER1_V6.into(), ROUTER2_V6.into()),
        ] {
            warm_up(&exporter, server).await;
            let cases = [
                (PORT_SERVER_DROP, Some((2, router2))),
                (PORT_ROUTER_DROP, Some((1, router1))),
            ];
            for (port, hop) in cases {
                for (kind, _, _) in KINDS {
                    for traced in [true, false] {
                        let module = format!("{}_{kind}", if traced { "traced" } else { "plain" });
                        let before = trace_syns();
                        let started = Instant::now();
                        let body = probe(&exporter, SocketAddr::new(server, port), &module).await;
                        let took = started.elapsed();
                        let sent = trace_syns() - before;
                        println!("{module} {server}:{port}: {sent} trace SYNs, {took:?}");
                        let expect = if traced { hop } else { None };
                        if let Some(problem) = wrong(&body, expect, sent, took) {
                            problems
                                .push(format!("{module} to {server}:{port}: {problem}\n{body}"));
                        }
                    }
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    });
    println!("{}", done_marker(CLIENT_ENV));
}

/// What is wrong with a timed-out probe's answer, if anything: with a
/// trace, `expect` is the last hop's TTL and address.
fn wrong(body: &str, expect: Option<(u32, IpAddr)>, sent: u64, took: Duration) -> Option<String> {
    if sample(body, "probe_success") != Some(0.0)
        || sample(body, "probe_failure_reason{reason=\"timeout\"}") != Some(1.0)
    {
        return Some("expected a failure as timeout".to_owned());
    }
    // The trace ends within the probe's deadline: /probe answers in time.
    if took > Duration::from_secs(TIMEOUT_SECONDS) + Duration::from_millis(300) {
        return Some(format!(
            "/probe took {took:?}, over the {TIMEOUT_SECONDS}s timeout"
        ));
    }
    let Some((ttl, address)) = expect else {
        if body.contains("probe_trace_last_hop") || sent != 0 {
            return Some(format!("traced without the option ({sent} trace SYNs)"));
        }
        return None;
    };
    if sent != MAX_HOPS {
        return Some(format!("{sent} trace SYNs sent, not {MAX_HOPS}"));
    }
    let series = format!("probe_trace_last_hop{{address=\"{address}\"}}");
    if sample(body, &series) != Some(f64::from(ttl)) {
        return Some(format!("expected {series} {ttl}"));
    }
    let detail = format!("timeout: SYN lost after hop {ttl} ({address})");
    if !body.contains(&detail) {
        return Some(format!("the debug output lacks {detail:?}"));
    }
    None
}

/// `/probe` of `target` with `module`, bounded, with `debug=true` so that
/// the failure's detail and the steps show.
async fn probe(exporter: &TestExporter, target: SocketAddr, module: &str) -> String {
    tokio::time::timeout(
        Duration::from_secs(TIMEOUT_SECONDS + 5),
        exporter.get(&format!(
            "/probe?target={target}&module={module}&debug=true"
        )),
    )
    .await
    .unwrap_or_else(|_| panic!("/probe of {target} with {module} did not answer"))
    .body
}

/// Probes the server's closed port until its RST comes back, for at most
/// [`WARM_UP_LIMIT`]: the first packet on a fresh veth waits for ARP or
/// neighbour discovery on every link.
async fn warm_up(exporter: &TestExporter, server: IpAddr) {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < WARM_UP_LIMIT {
        last = probe(
            exporter,
            SocketAddr::new(server, PORT_CLOSED),
            "plain_halfopen",
        )
        .await;
        if sample(&last, "probe_failure_reason{reason=\"refused\"}") == Some(1.0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the path to {server} did not work within {WARM_UP_LIMIT:?}; last: {last}");
}
