//! Issue 21, item 4: `source_interface`, `mark` and `dscp` on the wire,
//! for every TCP prober (`tcp_halfopen`, `tcp_connect`, and `prober: tcp`
//! with a dialogue, the session path), in IPv4 and IPv6.
//!
//! The topology, built by the parent test and deleted on drop (also when
//! an assertion fails), in three network namespaces joined by veth pairs,
//! with documentation addresses only:
//!
//! ```text
//!            va 192.0.2.2/24, 2001:db8:a::2/64 ---- pa 192.0.2.1, 2001:db8:a::1     peer a
//!  client                                                                          lo: BOTH
//!            vb 203.0.113.2/24, 2001:db8:b::2/64 -- pb 203.0.113.1, 2001:db8:b::1   peer b
//!                                                                                  lo: BOTH, MARKED
//! ```
//!
//! `BOTH` (198.51.100.2, 2001:db8:99::2) is an address of both peers, and
//! the client has a route to it through each interface: via `va` with
//! metric 10, which the kernel picks, and via `vb` with metric 20. So a
//! probe bound to `vb` is the only way a SYN for it reaches peer b without
//! a mark. `ip rule fwmark 0x10 lookup 100` sends marked packets to table
//! 100, which routes `BOTH` and `MARKED` (198.51.100.3, 2001:db8:99::3,
//! peer b's alone) via `vb`; the main table has no route to `MARKED`, so
//! only a marked probe reaches it.
//!
//! Each peer counts, with nftables named counters in its `input` chain,
//! the SYNs to port 80 it receives ([`peer_ruleset`]: `syn`), and those of
//! them whose DSCP is [`DSCP`] (`dscp_v4`, `dscp_v6`). A case reads both
//! peers' counters before and after its probe: the peer it must reach
//! must have counted its SYN, the other none.
//!
//! The plain and `dscp` modules run with the raw engine too (`tcp:
//! {engine: raw}`, issue 22): its SYN must arrive where a socket's does,
//! with the DSCP, a target without a route must fail as `unreachable`,
//! and the step log must read as the socket's `tcp_halfopen` one
//! ([`crate::engines::step_difference`]).
//!
//! The probes run in the client namespace, in this binary re-executed
//! under `ip netns exec` (see `tests/netns/faults.rs` for why), through an
//! in-process exporter serving a YAML config, so the options go the way a
//! user's do. No packet leaves the namespaces: the client's only
//! interfaces are `lo`, `va` and `vb`, which it checks before probing.
//! The peers' listeners are this binary again ([`netns_route_peer_listens`]).
//!
//! Prerequisites (root, `ip`, `nft`, a working `ip netns add`) are checked
//! first; when one is missing the test is skipped, or fails under
//! `SYNACK_SYSTEM_TESTS=require`.

use crate::common;

use crate::namespace::{ChildTest, NamespaceProcess, done_marker, ip, run_checked, write_proc_sys};
use common::{TestExporter, sample};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};
use synack_exporter::Exporter;

/// Set for the re-executed binary in the client namespace.
const CLIENT_ENV: &str = "SYNACK_NETNS_ROUTE_CLIENT";
/// Set for the re-executed binary in a peer namespace.
const PEER_ENV: &str = "SYNACK_NETNS_ROUTE_PEER";
/// The libtest name of the client child; keep in sync with the function.
const CLIENT_TEST: &str = "route::netns_route_client_probes";
/// The libtest name of the peers' listener; keep in sync too.
const PEER_TEST: &str = "route::netns_route_peer_listens";

/// The address both peers have, and the client routes to via each.
const BOTH_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const BOTH_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x99, 0, 0, 0, 0, 2);
/// Peer b's alone, routed only in the marked table.
const MARKED_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
const MARKED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x99, 0, 0, 0, 0, 3);

/// The port the peers listen on and count SYNs to.
const PORT: u16 = 80;
/// The firewall mark that selects table [`TABLE`].
const MARK: u32 = 0x10;
/// The routing table of marked packets.
const TABLE: &str = "100";
/// The DSCP the `dscp` modules set: EF.
const DSCP: u8 = 46;

/// The peers' counters of SYNs to [`PORT`]: all, and those with [`DSCP`]
/// in each family.
fn peer_ruleset() -> String {
    let syn = format!("tcp dport {PORT} tcp flags & (syn | ack) == syn");
    format!(
        "table inet synack_netns_route {{
    counter syn {{ }}
    counter dscp_v4 {{ }}
    counter dscp_v6 {{ }}
    chain input_filter {{
        type filter hook input priority 0; policy accept;
        {syn} counter name \"syn\"
        ip dscp {DSCP} {syn} counter name \"dscp_v4\"
        ip6 dscp {DSCP} {syn} counter name \"dscp_v6\"
    }}
}}
"
    )
}

/// The modules' timeout: a path that works answers in well under it.
const TIMEOUT_SECONDS: u32 = 2;
/// How long the warm-up of one path may keep trying.
const WARM_UP_LIMIT: Duration = Duration::from_secs(10);
/// How long the whole client run may take before the parent kills it.
const CHILD_LIMIT: Duration = Duration::from_secs(90);
/// How long a peer's listener lives if nobody kills it.
const PEER_LIFETIME: Duration = Duration::from_secs(120);

/// The parent: builds the three namespaces, starts the peers' listeners,
/// runs the client child and removes everything.
#[test]
fn netns_route_interface_mark_and_dscp_on_the_wire() {
    if std::env::var_os(CLIENT_ENV).is_some() || std::env::var_os(PEER_ENV).is_some() {
        return; // a child: only its own test has work here
    }
    // Dropped after the listener(s), declared later: the namespaces go
    // last, their veths with them.
    let Some(namespaces) = crate::namespace::namespaces("synack-route", ["c", "a", "b"]) else {
        return;
    };
    let [client, peer_a, peer_b] = [0, 1, 2].map(|i| namespaces[i].name().to_owned());
    build_topology(&client, &peer_a, &peer_b);
    let _listeners =
        [&peer_a, &peer_b].map(|peer| NamespaceProcess::start(peer, PEER_ENV, PEER_TEST));
    crate::namespace::run_child_in(
        &client,
        &ChildTest {
            env: CLIENT_ENV,
            test: CLIENT_TEST,
            limit: CHILD_LIMIT,
        },
    );
}

/// Veths, addresses, routes, the marked table and the peers' counters, as
/// in the module docs. IPv6 addresses are `nodad`, usable at once.
fn build_topology(client: &str, peer_a: &str, peer_b: &str) {
    ip(&[
        "link", "add", "va", "netns", client, "type", "veth", "peer", "name", "pa", "netns", peer_a,
    ]);
    ip(&[
        "link", "add", "vb", "netns", client, "type", "veth", "peer", "name", "pb", "netns", peer_b,
    ]);
    crate::namespace::links_up(&[
        (client, &["lo", "va", "vb"][..]),
        (peer_a, &["lo", "pa"][..]),
        (peer_b, &["lo", "pb"][..]),
    ]);
    let addresses: [(&str, &str, String); 14] = [
        (client, "va", "192.0.2.2/24".to_owned()),
        (peer_a, "pa", "192.0.2.1/24".to_owned()),
        (client, "vb", "203.0.113.2/24".to_owned()),
        (peer_b, "pb", "203.0.113.1/24".to_owned()),
        (client, "va", "2001:db8:a::2/64".to_owned()),
        (peer_a, "pa", "2001:db8:a::1/64".to_owned()),
        (client, "vb", "2001:db8:b::2/64".to_owned()),
        (peer_b, "pb", "2001:db8:b::1/64".to_owned()),
        (peer_a, "lo", format!("{BOTH_V4}/32")),
        (peer_b, "lo", format!("{BOTH_V4}/32")),
        (peer_b, "lo", format!("{MARKED_V4}/32")),
        (peer_a, "lo", format!("{BOTH_V6}/128")),
        (peer_b, "lo", format!("{BOTH_V6}/128")),
        (peer_b, "lo", format!("{MARKED_V6}/128")),
    ];
    crate::namespace::add_addresses(&addresses);
    let both = [
        ("-4", BOTH_V4.to_string(), "192.0.2.1", "203.0.113.1"),
        ("-6", BOTH_V6.to_string(), "2001:db8:a::1", "2001:db8:b::1"),
    ];
    for (family, target, via_a, via_b) in &both {
        for (via, dev, metric) in [(via_a, "va", "10"), (via_b, "vb", "20")] {
            ip(&[
                "-n", client, family, "route", "add", target, "via", via, "dev", dev, "metric",
                metric,
            ]);
        }
        ip(&[
            "-n", client, family, "route", "add", target, "via", via_b, "dev", "vb", "table", TABLE,
        ]);
        ip(&[
            "-n",
            client,
            family,
            "rule",
            "add",
            "fwmark",
            &format!("{MARK:#x}"),
            "lookup",
            TABLE,
            "priority",
            "100",
        ]);
    }
    for (family, target, via_b) in [
        ("-4", MARKED_V4.to_string(), "203.0.113.1"),
        ("-6", MARKED_V6.to_string(), "2001:db8:b::1"),
    ] {
        ip(&[
            "-n", client, family, "route", "add", &target, "via", via_b, "dev", "vb", "table",
            TABLE,
        ]);
    }
    // Answers from BOTH come back on whichever interface the SYN left by,
    // which strict reverse-path filtering would drop on vb.
    for key in ["all", "default", "va", "vb"] {
        write_proc_sys(client, &format!("net/ipv4/conf/{key}/rp_filter"), "0");
    }
    for peer in [peer_a, peer_b] {
        run_checked(
            Command::new("ip").args(["netns", "exec", peer, "nft", "-f", "-"]),
            Some(&peer_ruleset()),
        );
    }
}

/// A peer's listener: binds the port on each of the test's addresses that
/// the peer has, and keeps them for [`PEER_LIFETIME`] (the parent kills it
/// sooner). The kernel completes handshakes into the backlog without
/// `accept`. Passes at once outside a peer namespace.
#[test]
fn netns_route_peer_listens() {
    if std::env::var_os(PEER_ENV).is_none() {
        return;
    }
    let _listeners: Vec<TcpListener> = [
        BOTH_V4.into(),
        MARKED_V4.into(),
        BOTH_V6.into(),
        MARKED_V6.into(),
    ]
    .into_iter()
    .filter_map(|ip: IpAddr| TcpListener::bind(SocketAddr::new(ip, PORT)).ok())
    .collect();
    std::thread::sleep(PEER_LIFETIME);
}

/// The prober kinds, as `prober:` and the rest of a module's YAML; the
/// last, the half-open prober with the raw engine (issue 22), only for
/// the variants it takes ([`raw_takes`]).
const PROBERS: [(&str, &str, &str); 4] = [
    ("halfopen", "tcp_halfopen", ""),
    ("connect", "tcp_connect", ""),
    ("session", "tcp", ", query_response: [{send: hi}]"),
    ("raw", "tcp_halfopen", ", engine: raw"),
];

/// Whether the raw engine takes the route variant: `source_interface`
/// and `mark` are refused for raw modules, which have no socket of their
/// own to bind or mark; no route and `dscp` must work as with a socket.
fn raw_takes(variant: &str, kind: &str) -> bool {
    kind != "raw" || matches!(variant, "plain" | "dscp")
}

/// The route variants, as a module name part and `tcp:` fields.
fn variants() -> [(&'static str, String); 5] {
    [
        ("plain", String::new()),
        ("via_va", "source_interface: va".to_owned()),
        ("via_vb", "source_interface: vb".to_owned()),
        ("marked", format!("mark: {MARK:#x}")),
        ("dscp", format!("dscp: {DSCP}")),
    ]
}

/// One module per prober and variant, `VARIANT_PROBER`.
fn config() -> String {
    let mut yaml = String::from("modules:\n");
    for (variant, fields) in variants() {
        for (kind, prober, extra) in PROBERS {
            if !raw_takes(variant, kind) {
                continue;
            }
            let comma = if fields.is_empty() { "" } else { ", " };
            yaml.push_str(&format!(
                "  {variant}_{kind}:\n    prober: {prober}\n    timeout: {TIMEOUT_SECONDS}s\n    \
                 tcp: {{{fields}{comma}preferred_ip_protocol: ip4{extra}}}\n"
            ));
        }
    }
    yaml
}

/// Where a case's SYN must arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// At this peer ('a' or 'b'), and the probe succeeds; with the DSCP
    /// counted there when `dscp`.
    At { peer: char, dscp: bool },
    /// Nowhere: the probe fails as `unreachable` (no route).
    NoRoute,
}

/// A peer's counters: `syn`, `dscp_v4`, `dscp_v6`.
type Counters = BTreeMap<String, u64>;

/// Reads the named counters of `peer`'s table.
fn counters(peer: &str) -> Counters {
    let counters = crate::namespace::named_counters(Some(peer), "synack_netns_route");
    assert_eq!(counters.len(), 3, "{counters:?}");
    counters
}

/// The client: checks it is in its namespace, finds its peers' names
/// (`ip netns identify`), warms up the paths, then probes every case and
/// checks where its SYN arrived. Passes at once outside the namespace.
#[test]
fn netns_route_client_probes() {
    if std::env::var_os(CLIENT_ENV).is_none() {
        return;
    }
    crate::namespace::assert_only_interfaces(CLIENT_ENV, &["lo", "va", "vb"]);
    println!(); // libtest has printed "test NAME ... " without a newline
    let identified = common::run_bounded(
        Command::new("ip").args(["netns", "identify"]),
        None,
        Duration::from_secs(20),
    )
    .expect("ip netns identify");
    let client = identified.stdout.trim().to_owned();
    let base = client
        .strip_suffix("-c")
        .expect("the client namespace ends in -c");
    let peers = [('a', format!("{base}-a")), ('b', format!("{base}-b"))];

    let runtime = crate::namespace::runtime();
    runtime.block_on(async {
        let exporter = TestExporter::with_config(&config(), Exporter::builder()).await;
        for target in [BOTH_V4.into(), BOTH_V6.into()] {
            for module in ["plain_halfopen", "via_vb_halfopen", "plain_raw"] {
                warm_up(&exporter, target, module).await;
            }
        }
        let mut problems = Vec::new();
        let mut checked = 0;
        for (both, marked) in [
            (IpAddr::from(BOTH_V4), IpAddr::from(MARKED_V4)),
            (BOTH_V6.into(), MARKED_V6.into()),
        ] {
            let at = |peer, dscp| Expect::At { peer, dscp };
            let cases = [
                ("plain", both, at('a', false)),
                ("via_va", both, at('a', false)),
                ("via_vb", both, at('b', false)),
                ("marked", both, at('b', false)),
                ("plain", marked, Expect::NoRoute),
                ("marked", marked, at('b', false)),
                ("dscp", both, at('a', true)),
            ];
            for (variant, target, expect) in cases {
                let mut socket_steps = Vec::new();
                for (kind, _, _) in PROBERS {
                    if !raw_takes(variant, kind) {
                        continue;
                    }
                    let module = format!("{variant}_{kind}");
                    let before = peers.each_ref().map(|(_, peer)| counters(peer));
                    let body = probe(&exporter, target, &module).await;
                    let after = peers.each_ref().map(|(_, peer)| counters(peer));
                    let seen =
                        [0, 1].map(|i| crate::namespace::counters_gained(&before[i], &after[i]));
                    println!("{module} {target}: a {:?}, b {:?}", seen[0], seen[1]);
                    // The raw module's step log against the socket's, of
                    // the same case (`halfopen` comes first in PROBERS).
                    let mut same_steps = None;
                    if kind == "halfopen" {
                        socket_steps = crate::engines::steps(&body);
                    } else if kind == "raw" {
                        same_steps = crate::engines::step_difference(
                            &socket_steps,
                            &crate::engines::steps(&body),
                        );
                    }
                    if let Some(problem) = wrong(expect, target, &body, &seen).or(same_steps) {
                        problems.push(format!("{module} to {target}: {problem}\n{body}"));
                    }
                    checked += 1;
                }
            }
        }
        // 7 cases of 3 probers, and 3 of them with the raw engine, per family.
        assert_eq!(checked, 48);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    });
    println!("{}", done_marker(CLIENT_ENV));
}

/// `/probe` of `target` port [`PORT`] with `module`, bounded, with
/// `debug=true` so that a failure's detail shows.
async fn probe(exporter: &TestExporter, target: IpAddr, module: &str) -> String {
    let target = SocketAddr::new(target, PORT);
    tokio::time::timeout(
        Duration::from_secs(u64::from(TIMEOUT_SECONDS) + 5),
        exporter.get(&format!(
            "/probe?target={target}&module={module}&debug=true"
        )),
    )
    .await
    .unwrap_or_else(|_| panic!("/probe of {target} with {module} did not answer"))
    .body
}

/// What is wrong with a case's result, if anything: `seen` is what each
/// peer's counters gained during its probe.
fn wrong(expect: Expect, target: IpAddr, body: &str, seen: &[Counters; 2]) -> Option<String> {
    let success = sample(body, "probe_success");
    let syn = |peer: usize| seen[peer]["syn"];
    match expect {
        Expect::NoRoute => {
            if success != Some(0.0) || !body.contains("unreachable") {
                return Some("expected a failure as unreachable".to_owned());
            }
            (syn(0) + syn(1) != 0).then(|| "a SYN arrived at a peer".to_owned())
        }
        Expect::At { peer, dscp } => {
            if success != Some(1.0) {
                return Some("expected success".to_owned());
            }
            let (this, other) = if peer == 'a' { (0, 1) } else { (1, 0) };
            if syn(this) == 0 || syn(other) != 0 {
                return Some(format!("expected the SYN at peer {peer} alone"));
            }
            let counter = if target.is_ipv4() {
                "dscp_v4"
            } else {
                "dscp_v6"
            };
            let marked = seen[this][counter];
            match (dscp, marked == syn(this)) {
                (true, false) => Some(format!("{counter} counted {marked} of {} SYNs", syn(this))),
                (false, _) if marked != 0 => {
                    Some(format!("{counter} counted {marked} SYNs without dscp"))
                }
                _ => None,
            }
        }
    }
}

/// Probes `target` with `module` until it succeeds, for at most
/// [`WARM_UP_LIMIT`]: the first packet on a fresh veth waits for ARP or
/// neighbour discovery, which would blur the first case.
async fn warm_up(exporter: &TestExporter, target: IpAddr, module: &str) {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < WARM_UP_LIMIT {
        last = probe(exporter, target, module).await;
        if sample(&last, "probe_success") == Some(1.0) {
            println!(
                "warm-up {target} with {module}: open after {:.3}s",
                started.elapsed().as_secs_f64()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the path to {target} with {module} did not work within {WARM_UP_LIMIT:?}; last: {last}"
    );
}
