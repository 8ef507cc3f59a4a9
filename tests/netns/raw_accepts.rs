//! The half-open promise of the raw engine (issue 22): 100,000 raw probes
//! of an open listener complete no handshake. No socket of the exporter
//! owns a raw probe's 4-tuple, so the kernel answers the SYN-ACK with an
//! RST in the softirq that received it; there is no close to be late, so
//! no delayed ACK, and the listener never has a connection to accept.
//!
//! In a network namespace of its own with only `lo` (see
//! `tests/netns/faults.rs` for why the test re-executes itself), the child
//! listens on [`PORT`] on 127.0.0.1 and ::1 and sends [`PROBES`] raw probes
//! per family through a [`Checker`](synack_exporter::Checker), at most
//! [`IN_FLIGHT`] at once: the exporter's probe thread and raw engine
//! without its HTTP, the fastest way to send that many (about 10,000 a
//! second in a debug build here, where `/probe` requests would spend most
//! of the time in HTTP). nftables counters in the namespace's `input`
//! chain count what crossed the wire: the SYNs, the SYN-ACKs and the RSTs
//! (the proof that the probes went out, and that each SYN-ACK drew the
//! kernel's RST). Every probe must succeed; then the listener must have
//! nothing to accept, and `TcpExtDelayedACKs` must not have moved.
//!
//! A control shows that the two counts can fail: one ordinary connection
//! with `TCP_QUICKACK` off, closed 500 ms after its handshake (a late
//! half-open close, as a starved socket prober's), is accepted and counts
//! a delayed ACK.

use crate::concurrent::check_bounded_with;
use crate::engines::Engine;
use crate::namespace::{current_thread_runtime, namespace_test};
use socket2::{Domain, Socket, Type};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};
use synack_exporter::Module;

/// The listener's port.
const PORT: u16 = 7201;

/// Raw probes per family.
const PROBES: usize = 100_000;

/// Probes in flight at once: well inside the engine's 4,536 source ports
/// and the checker's 4,096 slots.
const IN_FLIGHT: usize = 512;

/// One probe's timeout: an answer on `lo` takes microseconds.
const TIMEOUT: Duration = Duration::from_secs(2);

/// How long one family's probes may take in all before the test gives up
/// (they take seconds).
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// The listen backlog: the most a listener may queue (`somaxconn`'s
/// default); a probe leaves nothing in it for long, but a small one would
/// fill with half-open requests and make the kernel send SYN cookies.
const BACKLOG: i32 = 4096;

/// Counts the SYNs to [`PORT`], the SYN-ACKs from it and the RSTs to it,
/// both families (`inet`), on `input`: on `lo` every packet passes it
/// once.
const RULESET: &str = "\
table inet synack_raw_accepts {
    counter syn { }
    counter synack { }
    counter rst { }
    chain input_filter {
        type filter hook input priority 0; policy accept;
        tcp dport 7201 tcp flags & (syn | ack | rst) == syn counter name \"syn\"
        tcp sport 7201 tcp flags & (syn | ack | rst) == syn | ack counter name \"synack\"
        tcp dport 7201 tcp flags & rst == rst counter name \"rst\"
    }
}
";

namespace_test! {
    /// The parent: builds the namespace with the counters and runs the child.
    parent: netns_raw_probes_complete_no_handshake,
    /// The child: the control, then the raw probes per family, and the counts.
    child: netns_raw_accepts_child_probes => probe_and_count,
    prefix: "synack-rawacc",
    ruleset: RULESET,
    env: "SYNACK_NETNS_RAW_ACCEPTS_CHILD",
    limit: Duration::from_secs(600),
}

fn probe_and_count() {
    let listeners: Vec<(IpAddr, TcpListener)> = [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]
    .into_iter()
    .map(|ip| (ip, listen(SocketAddr::new(ip, PORT))))
    .collect();
    control(&listeners[0].1);

    let runtime = current_thread_runtime();
    let mut problems = Vec::new();
    for (ip, listener) in &listeners {
        let target = SocketAddr::new(*ip, PORT);
        let counters_before = counters();
        let delayed_before = crate::namespace::tcp_ext("DelayedACKs");
        let started = Instant::now();
        let ends = runtime.block_on(probe_many(target));
        let took = started.elapsed();
        // A connection the delayed ACK completed would be queued by now.
        std::thread::sleep(Duration::from_millis(300));
        let accepted = crate::common::accept_waiting(listener);
        let delayed = crate::namespace::tcp_ext("DelayedACKs") - delayed_before;
        let wire = crate::namespace::counters_gained(&counters_before, &counters());
        let successes = ends.get("success").copied().unwrap_or(0);
        println!(
            "{target}: {PROBES} raw probes in {:.3}s ({:.0}/s): {ends:?}; on the wire {wire:?}; \
             {accepted} accepted, {delayed} delayed ACKs",
            took.as_secs_f64(),
            PROBES as f64 / took.as_secs_f64()
        );
        if successes != PROBES {
            problems.push(format!(
                "{target}: {successes} of {PROBES} probes succeeded: {ends:?}"
            ));
        }
        for (counter, what) in [
            ("syn", "SYNs to the port"),
            ("synack", "SYN-ACKs from it"),
            ("rst", "RSTs to it (the kernel's answers to the SYN-ACKs)"),
        ] {
            if wire[counter] < PROBES as u64 {
                problems.push(format!(
                    "{target}: {} {what} for {PROBES} probes: the probes did not all go out, \
                     or were not all answered",
                    wire[counter]
                ));
            }
        }
        if accepted != 0 || delayed != 0 {
            problems.push(format!(
                "{target}: {accepted} connections accepted and {delayed} delayed ACKs; a raw probe \
                 must complete no handshake"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A non-blocking listener on `address` with a [`BACKLOG`].
fn listen(address: SocketAddr) -> TcpListener {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None).expect("socket");
    if address.is_ipv6() {
        socket.set_only_v6(true).expect("IPV6_V6ONLY");
    }
    socket
        .bind(&address.into())
        .unwrap_or_else(|error| panic!("bind {address}: {error}"));
    socket.listen(BACKLOG).expect("listen");
    let listener = TcpListener::from(socket);
    listener.set_nonblocking(true).expect("non-blocking");
    listener
}

/// One connection to `listener` as a late half-open close makes it:
/// `TCP_QUICKACK` off, so the handshake's last ACK waits for the delayed
/// ACK timer, and the close (an RST, `SO_LINGER {on, 0}`) 500 ms after the
/// SYN-ACK. The listener must then have one connection to accept, and
/// `TcpExtDelayedACKs` must have counted, or the counts of the raw probes
/// prove nothing.
fn control(listener: &TcpListener) {
    let address = listener.local_addr().expect("listener address");
    let delayed_before = crate::namespace::tcp_ext("DelayedACKs");
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_tcp_quickack(false).expect("TCP_QUICKACK");
    socket.set_linger(Some(Duration::ZERO)).expect("SO_LINGER");
    socket
        .connect_timeout(&address.into(), Duration::from_secs(5))
        .expect("the control connects");
    std::thread::sleep(Duration::from_millis(500));
    drop(socket);
    std::thread::sleep(Duration::from_millis(200));
    let accepted = crate::common::accept_waiting(listener);
    let delayed = crate::namespace::tcp_ext("DelayedACKs") - delayed_before;
    println!(
        "control: a close 500 ms after the SYN-ACK: {accepted} accepted, {delayed} delayed ACKs"
    );
    assert!(
        accepted == 1 && delayed >= 1,
        "the control's late close gave {accepted} accepts and {delayed} delayed ACKs, \
         expected 1 and at least 1: the counts cannot tell"
    );
}

/// [`PROBES`] raw probes of `target`, [`IN_FLIGHT`] at once, within
/// [`RUN_LIMIT`]; how many ended how (`success` or the reason).
async fn probe_many(target: SocketAddr) -> BTreeMap<String, usize> {
    let module = Module::new(Engine::Raw.halfopen()).with_timeout(TIMEOUT);
    let target = target.to_string();
    let started = Instant::now();
    let mut ends: BTreeMap<String, usize> = BTreeMap::new();
    let mut running = tokio::task::JoinSet::new();
    let mut sent = 0;
    while sent < PROBES || !running.is_empty() {
        assert!(
            started.elapsed() < RUN_LIMIT,
            "{sent} of {PROBES} probes started within {RUN_LIMIT:?}, {} still running: {ends:?}",
            running.len()
        );
        while sent < PROBES && running.len() < IN_FLIGHT {
            running.spawn(check_bounded_with(
                Engine::Raw,
                target.clone(),
                module.clone(),
            ));
            sent += 1;
        }
        let Some(done) = running.join_next().await else {
            continue;
        };
        let end = match done.expect("probe task") {
            Err(_) => "no outcome (deadline ignored)".to_owned(),
            Ok(Err(error)) => format!("target rejected: {error}"),
            Ok(Ok(outcome)) => outcome.failure.map_or_else(
                || "success".to_owned(),
                |failure| format!("{}: {}", failure.reason, failure.detail),
            ),
        };
        // Failure details name ports: keep the map small.
        if ends.len() < 20 || ends.contains_key(&end) {
            *ends.entry(end).or_default() += 1;
        } else {
            *ends.entry("other failures".to_owned()).or_default() += 1;
        }
    }
    ends
}

/// The namespace's counters, by name.
fn counters() -> BTreeMap<String, u64> {
    let counters = crate::namespace::named_counters(None, "synack_raw_accepts");
    assert_eq!(counters.len(), 3, "{counters:?}");
    counters
}
