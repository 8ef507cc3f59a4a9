//! Failure classification for faults that only root can stage: a dropped
//! SYN, ICMP errors and firewall resets, made by nftables rules on the
//! loopback of a network namespace that the test creates and removes.
//!
//! Why a namespace: the rules must not touch the host's firewall or its
//! traffic, and a fresh namespace has nothing in it but `lo`, so every
//! packet the probes send stays on 127.0.0.1 / ::1 inside it and vanishes
//! with it.
//!
//! Why the test re-executes itself: a network namespace belongs to a
//! thread, and entering one from a test thread needs `unsafe` `setns`.
//! Instead the parent test ([`netns_faults_are_classified`]) runs this
//! very test binary under `ip netns exec`, asking libtest for just the
//! child test ([`netns_child_probes_every_fault`]) with
//! `SYNACK_NETNS_CHILD=1` set. The child does all probing; outside a
//! namespace (the variable unset) it passes without doing anything.
//!
//! Why the rules sit in an `input` hook chain: a packet to a loopback
//! address passes both `output` and `input`; on Linux 6.x either hook
//! works for `drop` and for every `reject` (tried both), and `input` is
//! where a real host firewall would reject a SYN, so the errors come back
//! the way a remote firewall's would.
//!
//! What the kernel reports (measured on 6.x, printed by the child):
//! `reject with tcp reset` gives `ECONNREFUSED`; ICMPv4 host-unreachable
//! and admin-prohibited give `EHOSTUNREACH`, no-route `ENETUNREACH`;
//! ICMPv6 admin-prohibited gives `EACCES`; a dropped SYN gives nothing
//! until the deadline.
//!
//! Why the answered cases get only 500 ms: the ICMP(v6) error for a SYN
//! to ::1 is made and delivered before `connect()` returns, while the
//! call still holds the socket (`TcpExtLockDroppedIcmps` counts it), so
//! the kernel does not fail the connect: it keeps the error as a soft
//! error (which `SO_ERROR` returns) and, because the probe sets
//! `IPV6_RECVERR`, queues it on the socket's error queue, whose wake-up
//! (`EPOLLERR`) ends the probe within milliseconds. Before the probe set
//! it (issue 12), nothing woke the socket until the SYN retransmission
//! after the initial RTO of 1 s drew a second error, and a timeout under
//! 1 s called that ICMP answer a timeout. A timeout below that
//! retransmission makes such a regression fail here as `timeout`.
//!
//! Prerequisites (root, `ip`, `nft`, a working `ip netns add`) are checked
//! first; when one is missing the test is skipped, or fails under
//! `SYNACK_SYSTEM_TESTS=require`.

use crate::common;

use crate::namespace::{LOOPBACKS, listeners, namespace_test, runtime};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use synack_exporter::{Module, ProberKind, Reason};

/// The SYN to this port is dropped: no answer at all.
const PORT_DROP: u16 = 7001;
/// Answered with ICMP(v6) host unreachable.
const PORT_HOST_UNREACHABLE: u16 = 7002;
/// Answered with ICMP(v6) no route (network unreachable).
const PORT_NO_ROUTE: u16 = 7003;
/// Answered with ICMP(v6) administratively prohibited.
const PORT_ADMIN_PROHIBITED: u16 = 7004;
/// Answered by the firewall with a TCP RST.
const PORT_FIREWALL_RESET: u16 = 7005;
/// A std `TcpListener` listens here; no rule matches.
const PORT_OPEN: u16 = 7006;
/// Nothing listens and no rule matches: the kernel itself answers RST.
const PORT_CLOSED: u16 = 7007;

/// One ruleset serves every case: each fault has its own destination
/// port, and the `inet` family covers IPv4 and IPv6 with the same rules.
const RULESET: &str = "\
table inet synack_netns_faults {
    chain input {
        type filter hook input priority 0; policy accept;
        tcp dport 7001 drop
        tcp dport 7002 reject with icmpx type host-unreachable
        tcp dport 7003 reject with icmpx type no-route
        tcp dport 7004 reject with icmpx type admin-prohibited
        tcp dport 7005 reject with tcp reset
    }
}
";

/// Timeout of the dropped-SYN cases: short, because they always run to it.
const DROP_TIMEOUT: Duration = Duration::from_secs(1);

/// Timeout of every other case: below the first SYN retransmission
/// (1 s), so that an ICMP error noticed only on the retransmission fails
/// as `timeout` (see the module docs). Cases that work return in
/// milliseconds.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(500);

namespace_test! {
    /// The parent: checks prerequisites, builds the namespace and its rules,
    /// runs the child test inside it and reports what the child printed.
    parent: netns_faults_are_classified,
    /// The child: probes every fault on 127.0.0.1 and ::1 with both probers
    /// and checks each [`Reason`]. Passes at once outside the namespace.
    child: netns_child_probes_every_fault => probe_every_fault,
    prefix: "synack-faults",
    ruleset: RULESET,
    env: "SYNACK_NETNS_CHILD",
    limit: Duration::from_secs(60),
}

fn probe_every_fault() {
    // Kept open until every probe is done.
    let _listeners = listeners(LOOPBACKS.map(|ip| SocketAddr::new(ip, PORT_OPEN)));
    let cases = all_cases();
    let runtime = runtime();
    let started = Instant::now();
    let results = runtime.block_on(run_cases(&cases));
    let total = started.elapsed();

    let mut problems = Vec::new();
    for (case, result) in cases.iter().zip(&results) {
        let line = case.describe(result);
        println!("{line}");
        if let Some(problem) = case.check(result) {
            problems.push(format!("{line}\n    => {problem}"));
        }
    }
    println!(
        "{} cases in {:.3}s (run concurrently)",
        cases.len(),
        total.as_secs_f64()
    );
    assert!(
        problems.is_empty(),
        "{} of {} cases misclassified:\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n")
    );
}

/// What a case must end with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// A SYN-ACK: the namespace and the listener work.
    Open,
    /// A failure with this reason.
    Fails(Reason),
}

/// One probe: which fault, which address, which prober, which timeout.
#[derive(Clone, Debug)]
struct Case {
    fault: &'static str,
    address: SocketAddr,
    prober: ProberKind,
    timeout: Duration,
    expect: Expect,
}

/// What one probe returned, or that it did not return in time.
type CaseResult = common::concurrent::Checked;

/// Every fault for both loopback addresses and both probers; the
/// classification must not depend on the family or on how far the
/// handshake is meant to go.
fn all_cases() -> Vec<Case> {
    let faults: [(&str, u16, Expect); 7] = [
        ("nft drop", PORT_DROP, Expect::Fails(Reason::Timeout)),
        (
            "reject icmpx host-unreachable",
            PORT_HOST_UNREACHABLE,
            Expect::Fails(Reason::Unreachable),
        ),
        (
            "reject icmpx no-route",
            PORT_NO_ROUTE,
            Expect::Fails(Reason::Unreachable),
        ),
        (
            "reject icmpx admin-prohibited",
            PORT_ADMIN_PROHIBITED,
            Expect::Fails(Reason::Unreachable),
        ),
        (
            "reject with tcp reset",
            PORT_FIREWALL_RESET,
            Expect::Fails(Reason::Refused),
        ),
        ("open (TcpListener)", PORT_OPEN, Expect::Open),
        (
            "closed (kernel RST)",
            PORT_CLOSED,
            Expect::Fails(Reason::Refused),
        ),
    ];
    let mut cases = Vec::new();
    for prober in [ProberKind::TcpHalfopen, ProberKind::TcpConnect] {
        for ip in LOOPBACKS {
            for (fault, port, expect) in faults {
                let timeout = if expect == Expect::Fails(Reason::Timeout) {
                    DROP_TIMEOUT
                } else {
                    ANSWER_TIMEOUT
                };
                cases.push(Case {
                    fault,
                    address: SocketAddr::new(ip, port),
                    prober,
                    timeout,
                    expect,
                });
            }
        }
    }
    cases
}

/// Runs all cases concurrently, so the run costs about the longest
/// timeout rather than the sum of all waits; results keep the
/// order of `cases`. Each probe is bounded by its timeout plus 5 s in
/// case the prober ever ignores its deadline.
async fn run_cases(cases: &[Case]) -> Vec<CaseResult> {
    let probes = cases.iter().map(|case| {
        let target = case.address.to_string(); // "[::1]:7001" for IPv6
        (target, Module::new(case.prober).with_timeout(case.timeout))
    });
    common::concurrent::check_all_at_once(probes).await
}

impl Case {
    /// One line for the log: case, result, duration and the kernel's errno.
    fn describe(&self, result: &CaseResult) -> String {
        let head = format!(
            "{:<12} {:<16} {:<30} timeout {:.1}s ->",
            self.prober.as_str(),
            self.address.to_string(),
            self.fault,
            self.timeout.as_secs_f64()
        );
        common::concurrent::describe_checked(&head, result, |outcome| {
            let verdict = match outcome.handshake_time {
                Some(handshake) if outcome.is_success() => {
                    format!("success (SYN-ACK after {:.6}s)", handshake.as_secs_f64())
                }
                _ => common::concurrent::verdict(outcome),
            };
            format!("{verdict} in {:.3}s", outcome.duration.as_secs_f64())
        })
    }

    /// What is wrong with `result`, if anything.
    fn check(&self, result: &CaseResult) -> Option<String> {
        let outcome = match common::concurrent::outcome_for(result, self.address) {
            Ok(outcome) => outcome,
            Err(problem) => return Some(problem),
        };
        match self.expect {
            Expect::Open => {
                if !outcome.is_success() || outcome.handshake_time.is_none() {
                    return Some("expected success with a handshake time".to_owned());
                }
            }
            Expect::Fails(reason) => {
                if outcome.reason() != Some(reason) {
                    return Some(format!("expected reason {reason}"));
                }
                if reason == Reason::Timeout {
                    // A timeout must mean "waited the whole deadline", not
                    // an early failure that happens to carry the label.
                    let low = self.timeout.mul_f64(0.9);
                    let high = self.timeout + Duration::from_secs(1);
                    if outcome.duration < low || outcome.duration >= high {
                        return Some(format!(
                            "a timeout should take [{low:?}, {high:?}), took {:?}",
                            outcome.duration
                        ));
                    }
                } else if outcome.duration >= self.timeout {
                    return Some("an answered probe should end before its timeout".to_owned());
                }
            }
        }
        None
    }
}
