//! The kernel's view of a handshake (`TCP_INFO`): a probe whose first SYN
//! is lost must succeed after the SYN retransmission and report exactly
//! one retransmit; a clean probe reports none, and an RTT sample within
//! its handshake time.
//!
//! The loss is staged with nftables on the loopback of a network namespace
//! that the test creates and removes (see `tests/netns/faults.rs` for why
//! a namespace and why the binary re-executes itself): a SYN to
//! [`PORT_FIRST_SYN_DROPPED`] whose source address and port are not yet
//! in a set is added to it and dropped; its retransmission, about 1 s
//! later (the initial RTO), is in the set and passes. Every connection
//! has its own source port, so each probe loses exactly its first SYN.
//!
//! Prerequisites (root, `ip`, `nft`, a working `ip netns add`) are checked
//! first; when one is missing the test is skipped, or fails under
//! `SYNACK_SYSTEM_TESTS=require`.

use crate::concurrent::{Problems, check_valid};
use crate::engines::Engine;
use crate::namespace::{LOOPBACKS, current_thread_runtime, listeners, namespace_test};
use std::net::SocketAddr;
use std::time::Duration;
use synack_exporter::{Module, Outcome, Prober};

/// The first SYN of each connection to this port is dropped.
const PORT_FIRST_SYN_DROPPED: u16 = 7101;
/// No rule matches: every SYN gets through.
const PORT_OPEN: u16 = 7102;

/// Drops the first SYN of each attempt to port 7101, per family: the
/// sets remember a SYN by its source address, port and sequence number for a
/// minute, far longer than the test runs.
const RULESET: &str = "\
table inet synack_syn_retransmit {
    set seen4 {
        typeof ip saddr . tcp sport . tcp sequence
        flags dynamic, timeout
        timeout 60s
    }
    set seen6 {
        typeof ip6 saddr . tcp sport . tcp sequence
        flags dynamic, timeout
        timeout 60s
    }
    chain input {
        type filter hook input priority 0; policy accept;
        tcp dport 7101 tcp flags & (syn | ack) == syn ip saddr . tcp sport . tcp sequence @seen4 accept
        tcp dport 7101 tcp flags & (syn | ack) == syn ip6 saddr . tcp sport . tcp sequence @seen6 accept
        tcp dport 7101 tcp flags & (syn | ack) == syn add @seen4 { ip saddr . tcp sport . tcp sequence } drop
        tcp dport 7101 tcp flags & (syn | ack) == syn add @seen6 { ip6 saddr . tcp sport . tcp sequence } drop
    }
}
";

/// The module timeout: room for the retransmission at about 1 s, and
/// for a second one at about 3 s not to fit, so that a rule that drops
/// every SYN shows as a failure rather than as two retransmits.
const TIMEOUT: Duration = Duration::from_secs(3);

/// When the retransmitted SYN's answer may come: the initial RTO is 1 s.
const RETRANSMIT_WINDOW: (Duration, Duration) =
    (Duration::from_millis(900), Duration::from_millis(2000));

/// How much the kernel's RTT may exceed the handshake time measured in
/// user space, which starts later (at `connect()`) and ends later (at
/// the wake-up); only clock granularity can put it above.
const RTT_SLACK: Duration = Duration::from_micros(100);

namespace_test! {
    /// The parent: builds the namespace with its rules and runs the child in
    /// it (and does nothing when run as the child).
    parent: netns_a_lost_first_syn_is_one_syn_retransmit,
    /// The child: probes both ports on 127.0.0.1 and ::1 with both probers,
    /// and the lossy port once more with two attempts, one probe after
    /// another, so that no probe's timing suffers from another's. Passes at
    /// once outside the namespace.
    child: netns_syn_retransmit_child_probes => probe_one_by_one,
    prefix: "synack-synrtx",
    ruleset: RULESET,
    env: "SYNACK_NETNS_SYN_RETRANSMIT_CHILD",
    limit: Duration::from_secs(60),
}

fn probe_one_by_one() {
    let _listeners =
        listeners(LOOPBACKS.into_iter().flat_map(|ip| {
            [PORT_FIRST_SYN_DROPPED, PORT_OPEN].map(|port| SocketAddr::new(ip, port))
        }));
    let runtime = current_thread_runtime();
    let mut problems = Problems::default();
    for (prober, engine) in crate::engines::matrix_probers() {
        for ip in LOOPBACKS {
            for (port, attempts) in [
                (PORT_FIRST_SYN_DROPPED, 1),
                (PORT_OPEN, 1),
                (PORT_FIRST_SYN_DROPPED, 2),
            ] {
                let address = SocketAddr::new(ip, port);
                let outcome = runtime.block_on(probe(address, module(&prober, attempts), engine));
                let line = format!(
                    "{:<16} {address:<16} {attempts} attempt(s): {}",
                    crate::engines::label(&prober, engine),
                    describe(&outcome)
                );
                problems.check(&line, check(port, attempts, engine, &outcome));
            }
        }
    }
    problems.assert_none();
}

/// A module of `prober` with `attempts`. One attempt has the test's
/// timeout; each of several has half of it, room for one SYN
/// retransmission, and starts 1.5 s after the one before, once that one
/// has its answer; all of them run, whatever the first found.
fn module(prober: &Prober, attempts: u32) -> Module {
    let mut module = Module::new(prober.clone()).with_timeout(TIMEOUT * attempts);
    let tcp = module.tcp_mut().expect("a TCP module");
    tcp.attempts = attempts;
    if attempts > 1 {
        tcp.attempt_interval = Duration::from_millis(1500).into();
        tcp.attempt_timeout = Some(synack_exporter::PromDuration::new(TIMEOUT / 2));
        tcp.stop_on_success = false;
    }
    module
}

/// One probe of `address`, bounded by the timeout plus 5 s in case the
/// prober ever ignores its deadline.
async fn probe(address: SocketAddr, module: Module, engine: Engine) -> Outcome {
    match engine {
        Engine::Socket => check_valid(address.to_string(), module).await,
        Engine::Raw => tokio::time::timeout(
            module.timeout() + Duration::from_secs(5),
            engine.check(&address.to_string(), &module),
        )
        .await
        .expect("the raw probe ends by its deadline")
        .expect("a valid target"),
    }
}

/// The figures of one outcome, for the log.
fn describe(outcome: &Outcome) -> String {
    format!(
        "{}: handshakes {:?}, kernel RTT {:?}, SYN retransmits {}",
        crate::concurrent::verdict(outcome),
        outcome
            .tcp()
            .expect("a TCP outcome")
            .handshake_times()
            .collect::<Vec<_>>(),
        outcome.tcp().and_then(|tcp| tcp.tcp_rtt),
        outcome.tcp().map_or(0, |tcp| tcp.syn_retransmits)
    )
}

/// What is wrong with the outcome of a probe of `port` with `attempts`,
/// if anything. Every attempt must succeed; the kernel RTT is the first
/// one's, and the SYN retransmits are summed over all. The raw engine
/// retransmits as the kernel does (after 1 s) and takes no RTT sample
/// after a retransmit (Karn's rule).
fn check(port: u16, attempts: u32, engine: Engine, outcome: &Outcome) -> Option<String> {
    let rtt = outcome.tcp().and_then(|tcp| tcp.tcp_rtt);
    let Some(handshake) = outcome.handshake_time() else {
        return Some("expected a success with a handshake time".to_owned());
    };
    let rtt = match (rtt, engine, port) {
        (None, Engine::Raw, PORT_FIRST_SYN_DROPPED) => handshake,
        (Some(_), Engine::Raw, PORT_FIRST_SYN_DROPPED) => {
            return Some("a raw probe takes no RTT sample after a retransmit".to_owned());
        }
        (Some(rtt), _, _) => rtt,
        (None, _, _) => return Some("expected a kernel RTT".to_owned()),
    };
    if !outcome.is_success() {
        return Some("expected a success".to_owned());
    }
    if rtt.is_zero() || rtt > handshake + RTT_SLACK {
        return Some(format!(
            "the kernel RTT must be above 0 and at most the handshake time + {RTT_SLACK:?}"
        ));
    }
    let (retransmits, window) = if port == PORT_FIRST_SYN_DROPPED {
        (attempts, RETRANSMIT_WINDOW)
    } else {
        (0, (Duration::ZERO, RETRANSMIT_WINDOW.0))
    };
    if outcome.tcp().map_or(0, |tcp| tcp.syn_retransmits) != retransmits {
        return Some(format!("expected {retransmits} SYN retransmits"));
    }
    if outcome
        .tcp()
        .expect("a TCP outcome")
        .handshake_times()
        .count()
        != attempts as usize
    {
        return Some(format!("expected {attempts} successful attempts"));
    }
    if outcome
        .tcp()
        .expect("a TCP outcome")
        .handshake_times()
        .any(|time| time < window.0 || time >= window.1)
    {
        return Some(format!(
            "every handshake should take [{:?}, {:?})",
            window.0, window.1
        ));
    }
    None
}
