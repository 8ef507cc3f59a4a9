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
//! Every row runs with the raw engine too (`tcp: {engine: raw}`, issue
//! 22), whose SYN leaves by a raw socket and whose answers come from its
//! raw TCP and ICMP receive paths instead of a socket's errno: the same
//! reason, as promptly.
//!
//! Prerequisites (root, `ip`, `nft`, a working `ip netns add`) are checked
//! first; when one is missing the test is skipped, or fails under
//! `SYNACK_SYSTEM_TESTS=require`.

use crate::concurrent::Problems;
use crate::namespace::{LOOPBACKS, firewall, listeners, namespace_test, runtime};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use synack_exporter::{Outcome, Reason};

firewall! {
    /// One ruleset serves every case: each fault has its own destination
    /// port, and the `inet` family covers IPv4 and IPv6 with the same rules.
    const RULESET = table "synack_netns_faults" hook "input";
    /// The SYN to this port is dropped: no answer at all.
    const PORT_DROP = 7001 => "drop";
    /// Answered with ICMP(v6) host unreachable.
    const PORT_HOST_UNREACHABLE = 7002 => "reject with icmpx type host-unreachable";
    /// Answered with ICMP(v6) no route (network unreachable).
    const PORT_NO_ROUTE = 7003 => "reject with icmpx type no-route";
    /// Answered with ICMP(v6) administratively prohibited.
    const PORT_ADMIN_PROHIBITED = 7004 => "reject with icmpx type admin-prohibited";
    /// Answered by the firewall with a TCP RST.
    const PORT_FIREWALL_RESET = 7005 => "reject with tcp reset";
}

/// A std `TcpListener` listens here; no rule matches.
const PORT_OPEN: u16 = 7006;
/// Nothing listens and no rule matches: the kernel itself answers RST.
const PORT_CLOSED: u16 = 7007;

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

    let mut problems = Problems::default();
    for (case, result) in cases.iter().zip(&results) {
        problems.check(
            &case.describe(result),
            case.judge(result, |outcome| case.wrong(outcome)),
        );
    }
    println!(
        "{} cases in {:.3}s (run concurrently)",
        cases.len(),
        total.as_secs_f64()
    );
    problems.assert_none();
}

/// What a case must end with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// A SYN-ACK: the namespace and the listener work.
    Open,
    /// A failure with this reason.
    Fails(Reason),
}

/// One probe of the table, and what it returned (or that it did not
/// return in time).
type Case = crate::concurrent::Case<Expect>;
type CaseResult = crate::concurrent::Checked;

/// Every fault for both loopback addresses, both probers and both
/// engines; the classification must not depend on the family, on how far
/// the handshake is meant to go, or on how the SYN is sent.
fn all_cases() -> Vec<Case> {
    use Expect::{Fails, Open};
    use Reason::{Refused, Timeout, Unreachable};
    let faults = [
        ("nft drop", PORT_DROP, Fails(Timeout)),
        (
            "reject icmpx host-unreachable",
            PORT_HOST_UNREACHABLE,
            Fails(Unreachable),
        ),
        ("reject icmpx no-route", PORT_NO_ROUTE, Fails(Unreachable)),
        (
            "reject icmpx admin-prohibited",
            PORT_ADMIN_PROHIBITED,
            Fails(Unreachable),
        ),
        ("reject with tcp reset", PORT_FIREWALL_RESET, Fails(Refused)),
        ("open (TcpListener)", PORT_OPEN, Open),
        ("closed (kernel RST)", PORT_CLOSED, Fails(Refused)),
    ];
    let mut cases = Vec::new();
    for (prober, engine) in crate::engines::matrix_probers() {
        for ip in LOOPBACKS {
            for (fault, port, expect) in faults {
                let timeout = if expect == Fails(Timeout) {
                    DROP_TIMEOUT
                } else {
                    ANSWER_TIMEOUT
                };
                cases.push(Case {
                    what: fault,
                    address: SocketAddr::new(ip, port),
                    prober: prober.clone(),
                    engine,
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
    crate::concurrent::check_cases_at_once(cases).await
}

impl Case {
    /// One line for the log: case, result, duration and the kernel's errno.
    fn describe(&self, result: &CaseResult) -> String {
        self.log_line(result, |outcome| {
            let verdict = match outcome.handshake_time() {
                Some(handshake) if outcome.is_success() => {
                    format!("success (SYN-ACK after {:.6}s)", handshake.as_secs_f64())
                }
                _ => crate::concurrent::verdict(outcome),
            };
            format!("{verdict} in {:.3}s", outcome.duration.as_secs_f64())
        })
    }

    /// What is wrong with `outcome`, if anything.
    fn wrong(&self, outcome: &Outcome) -> Option<String> {
        match self.expect {
            Expect::Open => {
                if !outcome.is_success() || outcome.handshake_time().is_none() {
                    return Some("expected success with a handshake time".to_owned());
                }
                crate::engines::wrong_engine(self.engine, &self.prober, outcome)
            }
            Expect::Fails(reason) => {
                if outcome.reason() != Some(reason) {
                    return Some(format!("expected reason {reason}"));
                }
                let timed_out = reason == Reason::Timeout;
                crate::concurrent::wrong_duration(outcome, timed_out, self.timeout, self.timeout)
            }
        }
    }
}
