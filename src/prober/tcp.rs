//! The TCP probers: `tcp_halfopen` and `tcp_connect`.
//!
//! Both open a non-blocking socket with `SO_LINGER {on, 0}`, so that
//! closing it sends RST and leaves no TIME_WAIT, start a connect, wait
//! with tokio until the socket is writable, and read `SO_ERROR`. They
//! differ in one socket option:
//!
//! - **half-open** sets `TCP_QUICKACK` to 0 before connecting. The kernel
//!   then holds back the ACK for the SYN-ACK (delayed ACK, about 200 ms),
//!   and we close first: the wire shows SYN, SYN-ACK, RST, and the
//!   listening application never gets a connection from `accept()`.
//! - **connect** leaves quick ACKs on, so the handshake completes before
//!   the RST. SYN proxies and middleboxes that answer SYNs themselves need
//!   this, as do kernels without `TCP_QUICKACK`.
//!
//! Before the SYN, the module's `source_interface`, `mark` and `dscp`
//! are set on the socket by the config's one setter for them
//! (`config::set_route_options`); one the kernel refuses fails the
//! attempt as `local`, its detail naming the interface or capability.
//!
//! Epoll flags decide nothing: a bare `EPOLLERR` can arrive while the
//! socket is still in SYN_SENT (HAProxy issues #1863, #2491). After each
//! wake-up we read `SO_ERROR`; if it is clear we ask `getpeername` whether
//! the connection really exists, and otherwise wait again.

#![forbid(unsafe_code)]

use super::raw::{RawEngineSlot, RawFailed};
use super::trace::{HopAnswer, Trace, TraceHop};
use super::{
    Budget, Context, Detail, Failure, HalfOpenCloses, IcmpError, Kept, Number, Outcome, Reason,
    Series, Slot, StepLog, TargetFamily, TargetSeries, classify, close_guard, resolve, trace,
};
use crate::config::{
    ADDRESS_LABEL, Engine, ExpectPort, PORT_ANSWER_LABEL, RouteRefused, TargetPolicy, TcpOptions,
    set_route_options,
};
use crate::steplog::Wording;
use crate::sys::HandshakeInfo;
use crate::target::Target;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How far the handshake goes before the RST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Handshake {
    /// Stop after the SYN-ACK.
    HalfOpen,
    /// Complete the handshake.
    Full,
}

impl Handshake {
    /// How far a TCP module's handshake goes: half-open when it asks for
    /// it, and always when its `expect_port` is not `open`, so that a
    /// negative check never completes a handshake with a port that is open.
    pub(super) fn of(half_open: bool, options: &TcpOptions) -> Self {
        if half_open || options.expect_port != ExpectPort::Open {
            Self::HalfOpen
        } else {
            Self::Full
        }
    }
}

/// What a TCP module asks for: how far the handshake goes, the module's
/// TCP options, and its target policy.
#[derive(Clone, Copy)]
pub(super) struct Tcp<'a> {
    pub(super) handshake: Handshake,
    pub(super) options: &'a TcpOptions,
    pub(super) policy: Option<&'a TargetPolicy>,
}

/// Resolves the target, then runs the handshake; see the module docs.
///
/// With a `policy`, the target is checked before it is resolved and the
/// address after, before any socket is opened; a refusal ends the probe
/// with [`Outcome::denied`]. Without one, neither check costs anything.
pub(super) async fn probe(
    tcp: Tcp<'_>,
    target: &Target,
    context: &Context,
    budget: Budget,
    steplog: &mut StepLog,
) -> Outcome {
    let (address, dns_time) = match reach(tcp, target, context, budget, steplog).await {
        Ok(reached) => reached,
        Err(outcome) => return outcome,
    };
    let mut outcome = probe_address(tcp, address, context, budget, steplog).await;
    outcome.dns_time = dns_time;
    outcome
}

/// Runs the handshake with `address`, resolved and cleared by the policy
/// already; the outcome has no DNS time.
pub(super) async fn probe_address(
    tcp: Tcp<'_>,
    address: SocketAddr,
    context: &Context,
    budget: Budget,
    steplog: &mut StepLog,
) -> Outcome {
    let Tcp {
        handshake, options, ..
    } = tcp;
    let connect = Connect {
        address,
        handshake,
        options,
        // Only a half-open close races the delayed ACK.
        guard: (handshake == Handshake::HalfOpen).then_some(&*context.closes),
        raw: (handshake == Handshake::HalfOpen && options.engine == Engine::Raw)
            .then_some(&*context.raw),
        keep: false,
    };
    let reserved = trace::reserve(options, budget.timeout);
    let wire_deadline = reserved.map_or(budget.deadline, |reserved| budget.deadline - reserved);
    let (failure, mut detail) = attempt_all(&connect, options, wire_deadline, steplog).await;
    let failure = match (options.expect_port, detail.port_answer) {
        (ExpectPort::Open, _) => failure,
        (expect, answer) => {
            let judged = judge_answer(expect, answer, failure);
            if let Some(answer) = answer {
                steplog.log(|| TcpStep::Judged {
                    answer,
                    expect,
                    success: judged.is_none(),
                });
            }
            judged
        }
    };
    let failure = trace_a_timeout(failure, &mut detail, &connect, context, budget, steplog).await;
    let mut outcome = Outcome::new(failure, Detail::Tcp(detail));
    outcome.address = Some(address);
    outcome
}

/// With `trace_on_timeout`, after a probe that failed as `timeout`: runs
/// the trace ([`trace::run`]) until the probe's deadline, keeps it in
/// `detail` and puts its summary in front of the failure's detail, as
/// `SYN lost after hop 2 (198.51.100.1): no answer from …`. Any other
/// outcome passes unchanged.
async fn trace_a_timeout(
    failure: Option<Failure>,
    detail: &mut TcpDetail,
    connect: &Connect<'_>,
    context: &Context,
    budget: Budget,
    steplog: &mut StepLog,
) -> Option<Failure> {
    let mut failure = failure?;
    if !connect.options.trace_on_timeout || failure.reason != Reason::Timeout {
        return Some(failure);
    }
    let address = connect.address;
    steplog.log(|| TcpStep::TraceStarted {
        address,
        hops: trace::MAX_HOPS,
        wait: budget.deadline.saturating_duration_since(Instant::now()),
    });
    let found = trace::run(
        address,
        connect.options,
        &context.closes,
        budget.deadline,
        |ttl, answer| steplog.log(|| TcpStep::TraceAnswer { ttl, answer }),
    )
    .await;
    steplog.log(|| TcpStep::Traced(found));
    failure.detail = format!("{found}: {}", failure.detail);
    detail.trace = Some(found);
    Some(failure)
}

/// What the port's answer makes of a probe whose `expect_port` is
/// `expect` (not `open`): its failure, `None` for success. A SYN-ACK
/// fails it as `open`; an RST fails `filtered` as `refused` (the port is
/// reachable, and closed); silence and an ICMP error are success. When
/// nothing came from the network (`dns`, `local`, or this host refusing
/// to send: no route, a local firewall) nothing is known of the port, and
/// the probe's `failure` stands.
fn judge_answer(
    expect: ExpectPort,
    answer: Option<PortAnswer>,
    failure: Option<Failure>,
) -> Option<Failure> {
    match (expect, answer) {
        (ExpectPort::Open, _) | (_, None | Some(PortAnswer::Unreachable)) => failure,
        (_, Some(PortAnswer::SynAck)) => Some(Failure::new(
            Reason::Open,
            format!(
                "the port answered with SYN-ACK: it is open, and expect_port is {}",
                expect.as_str()
            ),
        )),
        (ExpectPort::Filtered, Some(PortAnswer::Rst)) => {
            let why = failure.map_or_else(|| "an RST came back".to_owned(), |f| f.detail);
            Some(Failure::new(
                Reason::Refused,
                format!(
                    "{why}: the port answered with RST, so nothing filters it, and expect_port is filtered"
                ),
            ))
        }
        (ExpectPort::Closed | ExpectPort::Filtered, Some(_)) => None,
    }
}

/// What the port answered a probe's SYN, as far as the exporter can tell:
/// what a module with `expect_port` (`closed`, `filtered`) judges, and
/// what `probe_port_answer_info` shows. Ordered from the weakest evidence
/// to the strongest: with several attempts, the strongest answer any of
/// them got is the probe's, so that one SYN-ACK or RST among lost SYNs
/// decides.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortAnswer {
    /// Nothing before the deadline: the SYN (or its answer) was dropped.
    Silence,
    /// The kernel refused to send the SYN or gave up on it without an
    /// ICMP error on the socket: no route (an `unreachable`, `prohibit` or
    /// `blackhole` route), a local firewall (`EPERM`).
    Unreachable,
    /// An ICMP or ICMPv6 error (`probe_icmp_error_info` says which, and
    /// from whom): a router or firewall rejected the SYN.
    Icmp,
    /// An RST: the host is reachable and nothing listens on the port.
    Rst,
    /// A SYN-ACK: the port is open.
    SynAck,
}

impl PortAnswer {
    /// The label value in `probe_port_answer_info{answer}`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Silence => "silence",
            Self::Unreachable => "unreachable",
            Self::Icmp => "icmp",
            Self::Rst => "rst",
            Self::SynAck => "syn_ack",
        }
    }
}

/// `probe_trace_last_hop{address}`: after a timeout with
/// `trace_on_timeout`, the TTL of the last hop that answered a trace SYN,
/// and its address; 0 with an empty `address` when none did.
const TRACE_LAST_HOP: &str = "probe_trace_last_hop";
const TRACE_LAST_HOP_HELP: &str = "After a timeout, with trace_on_timeout: the TTL of the last hop that answered a trace SYN, address its IP; 0 with address=\"\" when no hop answered; absent when no trace ran.";

/// `probe_port_answer_info`'s family, without `_info`, and HELP.
const PORT_ANSWER_FAMILY: &str = "probe_port_answer";
const PORT_ANSWER_HELP: &str = "What the port answered the SYN, for modules whose expect_port is closed or filtered: syn_ack, rst, icmp, unreachable or silence; absent when nothing came from the network.";

/// Opens a connection for a session: the target resolved and checked as
/// [`probe`] does it, then one full handshake, and the connected stream
/// handed back instead of closed, with `SO_LINGER {on, 0}` still set, so
/// that dropping it sends RST (the session turns lingering off for a
/// polite close). The outcome is the connect's, a success; an `Err` is
/// the failed probe's outcome.
pub(super) async fn open(
    tcp: Tcp<'_>,
    target: &Target,
    context: &Context,
    budget: Budget,
    steplog: &mut StepLog,
) -> Result<(TcpStream, Outcome), Outcome> {
    let (address, dns_time) = reach(tcp, target, context, budget, steplog).await?;
    let connect = Connect {
        address,
        handshake: Handshake::Full,
        options: tcp.options,
        guard: None,
        raw: None,
        keep: true,
    };
    let mut detail = TcpDetail {
        attempts: 1,
        ..TcpDetail::default()
    };
    let reserved = trace::reserve(tcp.options, budget.timeout);
    let wire_deadline = reserved.map_or(budget.deadline, |reserved| budget.deadline - reserved);
    let (failure, stream) = match connect.attempt(wire_deadline, steplog).await {
        Ok(mut syn_ack) => {
            let stream = syn_ack.stream.take();
            detail.record(&syn_ack, Handshake::Full);
            (None, stream)
        }
        Err(failed) => {
            detail.attempts_failed = 1;
            detail.icmp_error = failed.icmp;
            (Some(failed.failure), None)
        }
    };
    let failure = trace_a_timeout(failure, &mut detail, &connect, context, budget, steplog).await;
    let mut outcome = Outcome::new(failure, Detail::Tcp(detail));
    outcome.dns_time = dns_time;
    outcome.address = Some(address);
    match stream {
        Some(stream) => Ok((stream, outcome)),
        None => Err(outcome),
    }
}

/// Checks the target against the policy, resolves it, and checks the
/// address: the address to connect to and the time DNS took, or the
/// outcome of a probe that ends here.
async fn reach(
    tcp: Tcp<'_>,
    target: &Target,
    context: &Context,
    budget: Budget,
    steplog: &mut StepLog,
) -> Result<(SocketAddr, Duration), Outcome> {
    let Tcp {
        options, policy, ..
    } = tcp;
    let cleared = policy
        .map(|policy| policy.check_target(target))
        .transpose()
        .map_err(|refusal| Outcome::denied(&refusal))?;
    let deadline = budget.deadline;
    let dns_started = Instant::now();
    let resolved = resolve::resolve(&target.host, options, &context.resolver, deadline, steplog)
        .await
        .and_then(|ip| left_enough_after_dns(ip, budget, dns_started));
    let dns_time = dns_started.elapsed();
    let ip = match resolved {
        Ok(ip) => ip,
        Err(failure) => return Err(resolve_failed(failure, dns_time)),
    };
    if let (Some(policy), Some(cleared)) = (policy, cleared)
        && let Err(refusal) = policy.check_address(cleared, ip, target.port)
    {
        let mut outcome = Outcome::denied(&refusal);
        outcome.dns_time = dns_time;
        return Err(outcome);
    }
    Ok((SocketAddr::new(ip, target.port), dns_time))
}

/// The outcome of a probe that failed to resolve after `dns_time`.
pub(super) fn resolve_failed(failure: Failure, dns_time: Duration) -> Outcome {
    let mut outcome = Outcome::new(Some(failure), Detail::Tcp(TcpDetail::default()));
    outcome.dns_time = dns_time;
    outcome
}

/// Runs the module's attempts one after another, and returns what they
/// found: no failure if any succeeded, else the last attempt's, and the
/// detail of them all. The handshake time and kernel RTT are the first
/// successful attempt's; SYN retransmits are summed over the successful
/// attempts (see [`TcpDetail::record`]).
///
/// Attempt *n* (from 0) starts `n × attempt_interval` after the first,
/// and has [`TcpOptions::attempt_deadline`] to get its answer. The first
/// always runs, as a single attempt did before attempts existed: the
/// prober starts it only before [`Budget::last_start`], and when the
/// deadline (lowered by a scrape timeout) comes before its own, the
/// deadline cuts it short. A later attempt is not started when it could
/// not end before the deadline, so the attempts run are all whole.
///
/// A single attempt without `attempt_timeout`, the default, takes one
/// pass with the probe's deadline: no timer, no allocation.
async fn attempt_all(
    connect: &Connect<'_>,
    options: &TcpOptions,
    deadline: Instant,
    steplog: &mut StepLog,
) -> (Option<Failure>, TcpDetail) {
    let handshake = connect.handshake;
    let mut outcome = TcpDetail::default();
    let planned = options.attempts.max(1);
    let each = options.attempt_deadline();
    let interval = options.attempt_interval.0;
    let mut first_start: Option<Instant> = None;
    let mut last_failure = None;
    for number in 1..=planned {
        if let Some(first_start) = first_start {
            let start = first_start + interval * (number - 1);
            if each.is_some_and(|each| start + each > deadline) {
                steplog.log(|| TcpStep::AttemptsCut {
                    from: number,
                    of: planned,
                });
                break;
            }
            tokio::time::sleep_until(start).await;
        }
        let started = Instant::now();
        first_start.get_or_insert(started);
        let attempt_deadline = each.map_or(deadline, |each| deadline.min(started + each));
        let result = connect.attempt(attempt_deadline, steplog).await;
        // This attempt's ICMP error or none, not an earlier attempt's.
        outcome.icmp_error = result.as_ref().err().and_then(|failed| failed.icmp);
        if options.expect_port != ExpectPort::Open {
            let answer = result
                .as_ref()
                .map_or_else(|failed| failed.answer, |_| Some(PortAnswer::SynAck));
            outcome.port_answer = outcome.port_answer.max(answer);
        }
        let result = result.map_err(|failed| failed.failure);
        let latency = match &result {
            Ok(syn_ack) => syn_ack.time,
            Err(_) => started.elapsed(),
        };
        outcome.attempts += 1;
        if planned > 1 {
            steplog.log(|| TcpStep::Attempt {
                number,
                of: planned,
                result: result
                    .as_ref()
                    .map_or_else(|failure| failure.reason.as_str(), |_| "success"),
                latency,
            });
        }
        match result {
            Ok(syn_ack) => outcome.record(&syn_ack, handshake),
            Err(failure) => {
                outcome.attempts_failed += 1;
                last_failure = Some(failure);
            }
        }
        if options.stop_on_success && outcome.handshake_time.is_some() {
            break;
        }
    }
    if outcome.handshake_time.is_some() {
        // A success says nothing about ICMP, whatever an earlier attempt drew.
        outcome.icmp_error = None;
        (None, outcome)
    } else {
        let failure = last_failure.map(|failure| {
            if planned == 1 {
                return failure;
            }
            let detail = format!(
                "{} of {} attempts failed, the last: {}",
                outcome.attempts_failed, outcome.attempts, failure.detail
            );
            Failure::new(failure.reason, detail)
        });
        (failure, outcome)
    }
}

/// What the TCP probers report beside the shared part of an [`Outcome`].
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcpDetail {
    /// From the `connect()` call to the wake-up at the SYN-ACK; only when
    /// the port answered with one. With several attempts, the first
    /// successful one's. It includes how long the exporter took to wake
    /// up: what a client would feel, where [`tcp_rtt`](Self::tcp_rtt) is
    /// the network's round trip alone.
    pub handshake_time: Option<Duration>,
    /// The kernel's RTT sample of the SYN/SYN-ACK exchange (`TCP_INFO`'s
    /// `tcpi_rtt`), of the attempt that gave
    /// [`handshake_time`](Self::handshake_time). `None` without a SYN-ACK,
    /// and when the kernel took no sample. After a retransmitted SYN it
    /// comes from TCP timestamps, in whole milliseconds (at least 1 ms).
    pub tcp_rtt: Option<Duration>,
    /// How many times a SYN was sent again before its SYN-ACK came
    /// (`TCP_INFO`'s `tcpi_total_retrans`), summed over the successful
    /// attempts; 0 when none succeeded. A success with retransmits means
    /// a SYN or SYN-ACK was lost on the path although the port is up. A
    /// failed attempt's retransmits are not counted: its failure already
    /// says that its SYNs went unanswered.
    pub syn_retransmits: u32,
    /// Handshakes attempted (`tcp.attempts`, fewer when one succeeded with
    /// `stop_on_success` or the deadline left no room); 0 when none began,
    /// as when the name did not resolve.
    pub attempts: u32,
    /// Of those, how many failed, whatever the reason.
    pub attempts_failed: u32,
    /// The handshake times of the successful attempts after the first,
    /// whose time is [`handshake_time`](Self::handshake_time). Empty with a
    /// single attempt, so that such a probe allocates nothing for it.
    pub later_handshake_times: Vec<Duration>,
    /// The ICMP or ICMPv6 error the kernel queued for the probe's socket
    /// (`IP_RECVERR`): which message, and which host sent it. `None` on
    /// success, and for failures that drew no ICMP error (an RST, a
    /// silent drop, a local error). With several attempts, the last
    /// failed attempt's.
    pub icmp_error: Option<IcmpError>,
    /// For `tcp_halfopen` successes: from the SYN-ACK to the return of the
    /// close that sent the RST. That is the exporter's own time from the
    /// wake-up that showed the SYN-ACK to the close, plus how long the
    /// SYN-ACK had waited for that wake-up as `TCP_INFO` tells it (in
    /// whole milliseconds, so a starved probe thread shows), and at least
    /// 200 ms when the target had sent more than the SYN-ACK. The probe
    /// stays invisible to the target's application only if that RST goes
    /// out before this host's delayed ACK (about 200 ms after the SYN-ACK),
    /// so this is how much of that margin the exporter used. With several
    /// successful attempts, the largest. `None` for failures, and for
    /// `tcp_connect`, which completes the handshake on purpose. The
    /// exporter's guard counts every half-open close itself, also those
    /// of probes that end without an outcome (cancelled).
    pub close_delay: Option<Duration>,
    /// For a module whose `expect_port` is `closed` or `filtered`: what
    /// the port answered, the strongest answer of the attempts (see
    /// [`PortAnswer`]). `None` for other modules, and when nothing came
    /// from the network (the name did not resolve, a local error).
    pub port_answer: Option<PortAnswer>,
    /// For a module with `trace_on_timeout` whose probe timed out: what
    /// the trace SYNs found. `None` otherwise.
    pub trace: Option<Trace>,
}

/// The handshake times of a probe's successful attempts, as ping prints
/// its round-trip times.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HandshakeStats {
    /// How many attempts succeeded.
    pub count: u32,
    /// The fastest.
    pub min: Duration,
    /// The arithmetic mean.
    pub mean: Duration,
    /// The slowest.
    pub max: Duration,
    /// The population standard deviation (ping's `mdev`); 0 for one.
    pub stddev: Duration,
}

impl TcpDetail {
    /// The handshake time of every successful attempt, in order.
    pub fn handshake_times(&self) -> impl Iterator<Item = Duration> + '_ {
        self.handshake_time
            .into_iter()
            .chain(self.later_handshake_times.iter().copied())
    }

    /// Minimum, mean, maximum and standard deviation of the handshake
    /// times; `None` when no attempt succeeded.
    #[must_use]
    pub fn handshake_stats(&self) -> Option<HandshakeStats> {
        let first = self.handshake_time?;
        let (mut count, mut min, mut max) = (0_u32, first, first);
        let (mut sum, mut sum_of_squares) = (0.0_f64, 0.0_f64);
        for time in self.handshake_times() {
            count += 1;
            min = min.min(time);
            max = max.max(time);
            let seconds = time.as_secs_f64();
            sum += seconds;
            sum_of_squares += seconds * seconds;
        }
        let mean = sum / f64::from(count);
        // Rounding can take the difference a hair below zero.
        let variance = (sum_of_squares / f64::from(count) - mean * mean).max(0.0);
        Some(HandshakeStats {
            count,
            min,
            mean: Duration::from_secs_f64(mean),
            max,
            stddev: Duration::from_secs_f64(variance.sqrt()),
        })
    }

    /// Adds a successful attempt: the first gives the handshake time and
    /// the kernel RTT, a later one a time in
    /// [`later_handshake_times`](Self::later_handshake_times); every one
    /// adds its SYN retransmits, and a half-open one its close delay (the
    /// largest is kept).
    fn record(&mut self, syn_ack: &SynAck, handshake: Handshake) {
        if handshake == Handshake::HalfOpen {
            self.close_delay = self.close_delay.max(syn_ack.close_delay);
        }
        self.syn_retransmits += syn_ack.syn_retransmits;
        if self.handshake_time.is_none() {
            self.handshake_time = Some(syn_ack.time);
            self.tcp_rtt = syn_ack.rtt;
        } else {
            self.later_handshake_times.push(syn_ack.time);
        }
    }
}

/// The handshake statistics over the successful attempts: name, help,
/// and which statistic, in export order.
/// One of the statistics of [`HandshakeStats`].
type Stat = fn(&HandshakeStats) -> Duration;

const HANDSHAKE_STATS: [(&str, &str, Stat); 4] = [
    (
        "probe_tcp_handshake_min_seconds",
        "Shortest handshake time of the successful attempts; 0 when none succeeded.",
        |stats| stats.min,
    ),
    (
        "probe_tcp_handshake_mean_seconds",
        "Mean handshake time of the successful attempts; 0 when none succeeded.",
        |stats| stats.mean,
    ),
    (
        "probe_tcp_handshake_max_seconds",
        "Longest handshake time of the successful attempts; 0 when none succeeded.",
        |stats| stats.max,
    ),
    (
        "probe_tcp_handshake_stddev_seconds",
        "Standard deviation of the successful attempts' handshake times (ping's mdev); 0 when none succeeded.",
        |stats| stats.stddev,
    ),
];

/// The steps the TCP probers log beside the shared ones (see
/// [`crate::steplog`]), and their wording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TcpStep {
    /// The SYN is about to go out.
    Connecting {
        address: SocketAddr,
        half_open: bool,
        /// For the raw engine: the source port the SYN leaves from.
        raw_source_port: Option<u16>,
    },
    /// The port answered with SYN-ACK, and the socket closed with RST.
    SynAck {
        address: SocketAddr,
        /// From `connect()` to the wake-up at the SYN-ACK.
        handshake: Duration,
        /// The kernel's RTT sample of the exchange, if it took one.
        rtt: Option<Duration>,
        /// SYNs sent again before the SYN-ACK came.
        syn_retransmits: u32,
        /// Half-open only: from the SYN-ACK to the close's return.
        close_delay: Option<Duration>,
        /// Whether the connection was kept for a session, not closed.
        kept: bool,
        /// The raw engine's: the kernel sent the RST.
        raw: bool,
    },
    /// The connect failed with this errno.
    ConnectFailed { address: SocketAddr, errno: i32 },
    /// No answer came before the deadline.
    NoAnswer(SocketAddr),
    /// The socket's error queue held this ICMP error.
    Icmp(IcmpError),
    /// One of several attempts ended with `result` (`success` or the
    /// failure reason), `latency` after its connect.
    Attempt {
        number: u32,
        of: u32,
        result: &'static str,
        latency: Duration,
    },
    /// Attempts `from` to `of` were not started: they could not have
    /// ended before the deadline.
    AttemptsCut { from: u32, of: u32 },
    /// A module with `expect_port` judged the port's answer.
    Judged {
        answer: PortAnswer,
        expect: ExpectPort,
        success: bool,
    },
    /// The probe timed out: trace SYNs with TTL 1 to `hops` go out, and
    /// wait at most `wait` for their answers.
    TraceStarted {
        address: SocketAddr,
        hops: u8,
        wait: Duration,
    },
    /// The trace SYN with this TTL drew this answer.
    TraceAnswer { ttl: u8, answer: HopAnswer },
    /// What the trace found, as the failure's detail begins.
    Traced(Trace),
}

impl Wording for TcpStep {
    fn write(&self, f: &mut fmt::Formatter<'_>, _show_commands: bool) -> fmt::Result {
        match self {
            Self::Connecting {
                address,
                half_open,
                raw_source_port,
            } => match (raw_source_port, half_open) {
                (Some(port), _) => write!(
                    f,
                    "connecting to {address} (half-open, raw engine: a SYN from port {port}, \
                     whose SYN-ACK the kernel answers with RST)"
                ),
                (None, true) => write!(
                    f,
                    "connecting to {address} (half-open: TCP_QUICKACK=0, SO_LINGER {{on, 0}})"
                ),
                (None, false) => {
                    write!(
                        f,
                        "connecting to {address} (full handshake, SO_LINGER {{on, 0}})"
                    )
                }
            },
            Self::SynAck {
                address,
                handshake,
                rtt,
                syn_retransmits,
                close_delay,
                kept,
                raw,
            } => {
                write!(
                    f,
                    "{address} answered with SYN-ACK after {:.6}s ({} RTT ",
                    handshake.as_secs_f64(),
                    if *raw { "packet" } else { "kernel" }
                )?;
                match rtt {
                    Some(rtt) => write!(f, "{:.6}s", rtt.as_secs_f64())?,
                    None => f.write_str("not sampled")?,
                }
                if *kept {
                    return write!(f, ", {syn_retransmits} SYN retransmits); connected");
                }
                if *raw {
                    return write!(
                        f,
                        ", {syn_retransmits} SYN retransmits); the kernel answered it with RST"
                    );
                }
                write!(f, ", {syn_retransmits} SYN retransmits); closed with RST")?;
                match close_delay {
                    Some(delay) => write!(f, " {:.6}s after it", delay.as_secs_f64()),
                    None => Ok(()),
                }
            }
            Self::ConnectFailed { address, errno } => write!(
                f,
                "connect to {address} failed: {}",
                io::Error::from_raw_os_error(*errno)
            ),
            Self::NoAnswer(address) => write!(f, "no answer from {address} before the deadline"),
            Self::Icmp(icmp) => write!(f, "{icmp}"),
            Self::Attempt {
                number,
                of,
                result,
                latency,
            } => write!(
                f,
                "attempt {number}/{of}: {result} after {:.6}s",
                latency.as_secs_f64()
            ),
            Self::AttemptsCut { from, of } => write!(
                f,
                "attempts {from} to {of} not started: they could not end before the deadline"
            ),
            Self::Judged {
                answer,
                expect,
                success,
            } => write!(
                f,
                "the port's answer: {}; expect_port {}: {}",
                answer.as_str(),
                expect.as_str(),
                if *success { "success" } else { "failure" }
            ),
            Self::TraceStarted {
                address,
                hops,
                wait,
            } => write!(
                f,
                "tracing the path to {address}: SYNs with TTL 1 to {hops}, half-open, waiting at most {:.3}s",
                wait.as_secs_f64()
            ),
            Self::TraceAnswer { ttl, answer } => write!(f, "trace TTL {ttl}: {answer}"),
            Self::Traced(found) => write!(f, "trace: {found}"),
        }
    }
}

/// The TCP probers' series in `/probe`'s answer. After the handshake
/// time, what `TCP_INFO` said at the SYN-ACK: the kernel's RTT sample and
/// the SYN retransmits, 0 when no SYN-ACK came, as the handshake gauge is,
/// so that a module's series stay the same whatever the outcome. At the
/// end, the ICMP error if the probe drew one, and for a module of several
/// `attempts` the series of a TCP ping: attempts, failed attempts, and the
/// min, mean, max and standard deviation of the successful handshakes. A
/// single-attempt module, the default, writes what it wrote before
/// attempts existed and pays nothing for them.
pub(super) fn write_series(
    options: &TcpOptions,
    detail: Option<&TcpDetail>,
    slot: Slot,
    out: &mut dyn Series,
) {
    let seconds = |time: Option<Duration>| Number::Measure(time.map_or(0.0, |t| t.as_secs_f64()));
    let count = |of: fn(&TcpDetail) -> u32| Number::Count(detail.map_or(0, of).into());
    match slot {
        Slot::Handshake => {
            out.gauge(
                "probe_tcp_rtt_seconds",
                "The kernel's RTT sample of the SYN/SYN-ACK exchange (TCP_INFO; engine raw: from the packets' kernel timestamps), without the exporter's wake-up; 0 when no SYN-ACK came or no sample was taken.",
                seconds(detail.and_then(|detail| detail.tcp_rtt)),
            );
            out.gauge(
                "probe_tcp_syn_retransmits",
                "SYNs sent again before the SYN-ACK came (TCP_INFO; engine raw: its own retransmits), summed over the handshakes that got one; above 0, packets were lost although the port is up.",
                count(|detail| detail.syn_retransmits),
            );
        }
        Slot::Address => {}
        Slot::Reasons => {
            if let Some(icmp) = detail.and_then(|detail| detail.icmp_error.as_ref()) {
                out.icmp_error(icmp);
            }
            if let Some(answer) = detail.and_then(|detail| detail.port_answer) {
                out.info(
                    PORT_ANSWER_FAMILY,
                    PORT_ANSWER_HELP,
                    &[(PORT_ANSWER_LABEL, answer.as_str())],
                );
            }
            if let Some(found) = detail.and_then(|detail| detail.trace) {
                let (ttl, address) = trace_sample(found.last_hop);
                out.labelled_gauge(
                    TRACE_LAST_HOP,
                    TRACE_LAST_HOP_HELP,
                    &[(ADDRESS_LABEL, &address)],
                    ttl,
                );
            }
            if options.attempts > 1 {
                out.gauge(
                    "probe_attempts",
                    "Handshakes attempted by the probe.",
                    count(|detail| detail.attempts),
                );
                out.gauge(
                    "probe_attempts_failed",
                    "Attempted handshakes that failed: no SYN-ACK, whatever the reason.",
                    count(|detail| detail.attempts_failed),
                );
                let stats = detail.and_then(TcpDetail::handshake_stats);
                for (name, help, stat) in HANDSHAKE_STATS {
                    out.gauge(name, help, seconds(stats.as_ref().map(stat)));
                }
            }
        }
    }
}

/// What a scheduled target of a TCP module keeps between probes.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct TcpKept {
    /// The kernel's RTT sample (see [`TcpDetail::tcp_rtt`]) of the last
    /// probe that had one, seconds; 0 before any.
    last_tcp_rtt: f64,
    /// SYN retransmits of successful attempts, over all probes (see
    /// [`TcpDetail::syn_retransmits`]).
    syn_retransmits: u64,
    /// The ICMP error of the last probe, if it drew one (see
    /// [`TcpDetail::icmp_error`]); cleared by a probe that drew none.
    last_icmp_error: Option<IcmpError>,
    /// The port's answer to the last probe of a module with
    /// `expect_port` (see [`TcpDetail::port_answer`]); cleared by a probe
    /// that got none.
    last_port_answer: Option<PortAnswer>,
    /// The trace of the last probe, if it ran one (see
    /// [`TcpDetail::trace`]): `Some(None)` when no hop answered; cleared
    /// by a probe without a trace.
    last_trace: Option<Option<TraceHop>>,
}

impl TcpKept {
    /// Takes in the detail of one probe, none if it never started.
    pub(super) fn record(&mut self, detail: Option<&TcpDetail>) {
        self.last_icmp_error = detail.and_then(|detail| detail.icmp_error);
        self.last_port_answer = detail.and_then(|detail| detail.port_answer);
        self.last_trace = detail
            .and_then(|detail| detail.trace)
            .map(|trace| trace.last_hop);
        if let Some(detail) = detail {
            self.syn_retransmits += u64::from(detail.syn_retransmits);
            if let Some(rtt) = detail.tcp_rtt {
                self.last_tcp_rtt = rtt.as_secs_f64();
            }
        }
    }

    fn of(kept: &Kept) -> Option<&Self> {
        match kept {
            Kept::Tcp(kept) => Some(kept),
            Kept::Session(kept) => Some(&kept.tcp),
            _ => None,
        }
    }
}

/// `probe_tcp_rtt_seconds` of scheduled targets.
pub(super) const RTT_SERIES: TargetSeries = TargetSeries {
    family: TargetFamily::Gauge {
        name: "probe_tcp_rtt_seconds",
        help: "The kernel's RTT sample of the SYN/SYN-ACK exchange (TCP_INFO; engine raw: from the packets' kernel timestamps) of the last scheduled probe that had one, TCP modules only; 0 before any.",
    },
    sample: |kept, out| {
        if let Some(kept) = TcpKept::of(kept) {
            out.number(Number::Measure(kept.last_tcp_rtt));
        }
    },
};

/// `probe_tcp_syn_retransmits_total` of scheduled targets: there from
/// before the first probe, so that the first retransmit counts in
/// `increase()`.
pub(super) const SYN_RETRANSMITS_SERIES: TargetSeries = TargetSeries {
    family: TargetFamily::Counter {
        name: "probe_tcp_syn_retransmits",
        help: "SYNs sent again before a SYN-ACK came (TCP_INFO; engine raw: its own retransmits) in successful attempts of scheduled probes, TCP modules only.",
    },
    sample: |kept, out| {
        if let Some(kept) = TcpKept::of(kept) {
            out.number(Number::Count(kept.syn_retransmits));
        }
    },
};

/// `probe_icmp_error_info` of scheduled targets: the last probe's only.
pub(super) const ICMP_ERROR_SERIES: TargetSeries = TargetSeries {
    family: TargetFamily::IcmpError,
    sample: |kept, out| {
        if let Some(icmp) = TcpKept::of(kept).and_then(|kept| kept.last_icmp_error.as_ref()) {
            out.icmp_error(icmp);
        }
    },
};

/// `probe_port_answer_info` of scheduled targets of modules with
/// `expect_port`: the last probe's answer only.
pub(super) const PORT_ANSWER_SERIES: TargetSeries = TargetSeries {
    family: TargetFamily::Info {
        name: PORT_ANSWER_FAMILY,
        help: "What the port answered the last scheduled probe's SYN, for modules whose expect_port is closed or filtered; absent when nothing came from the network.",
    },
    sample: |kept, out| {
        if let Some(answer) = TcpKept::of(kept).and_then(|kept| kept.last_port_answer) {
            out.info(&[(PORT_ANSWER_LABEL, answer.as_str())]);
        }
    },
};

/// `probe_trace_last_hop{address}` of scheduled targets of modules with
/// `trace_on_timeout`: the last probe's trace only.
pub(super) const TRACE_LAST_HOP_SERIES: TargetSeries = TargetSeries {
    family: TargetFamily::Gauge {
        name: TRACE_LAST_HOP,
        help: "After the last scheduled probe timed out, with trace_on_timeout: the TTL of the last hop that answered a trace SYN, address its IP; 0 with address=\"\" when no hop answered; absent when no trace ran.",
    },
    sample: |kept, out| {
        if let Some(last_hop) = TcpKept::of(kept).and_then(|kept| kept.last_trace) {
            let (ttl, address) = trace_sample(last_hop);
            out.labelled_number(&[(ADDRESS_LABEL, &address)], ttl);
        }
    },
};

/// The value and `address` of `probe_trace_last_hop` for a trace whose
/// last hop is `last_hop`: its TTL and IP, or 0 and empty for none.
fn trace_sample(last_hop: Option<TraceHop>) -> (Number, String) {
    last_hop.map_or((Number::Count(0), String::new()), |hop| {
        (Number::Count(hop.ttl.into()), hop.address.to_string())
    })
}

/// `ip`, unless resolving it left less than [`super::MIN_WIRE_SHARE`] of
/// the timeout: a SYN sent then could only time out on the name server's
/// account, so the probe fails as `dns` and says so.
pub(super) fn left_enough_after_dns(
    ip: IpAddr,
    budget: Budget,
    dns_started: Instant,
) -> Result<IpAddr, Failure> {
    let now = Instant::now();
    if now <= budget.last_start {
        return Ok(ip);
    }
    Err(Failure::new(
        Reason::Dns,
        format!(
            "resolving took {:.3}s, leaving {:.3}s of the {:.3}s timeout: too little for the target to answer a SYN; \
             the name servers are slow (or raise the module's timeout)",
            now.saturating_duration_since(dns_started).as_secs_f64(),
            budget.deadline.saturating_duration_since(now).as_secs_f64(),
            budget.timeout.as_secs_f64(),
        ),
    ))
}

/// What a connect that reached SYN-ACK found.
struct SynAck {
    /// From the `connect()` call to the wake-up at the SYN-ACK; for the
    /// raw engine, from the first SYN's send to the SYN-ACK's arrival.
    time: Duration,
    /// The RTT sample of the exchange: `TCP_INFO`'s as read at the
    /// wake-up, or the raw engine's; `None` when there is none.
    rtt: Option<Duration>,
    /// SYNs sent again before the SYN-ACK came.
    syn_retransmits: u32,
    /// From the SYN-ACK's arrival, as far as it can be known, to the
    /// return of the close that sent the RST: see [`close_delay`]. `None`
    /// when nothing closed: a connection kept for a session, or the raw
    /// engine's, whose RST the kernel sent.
    close_delay: Option<Duration>,
    /// The connected socket, for a session ([`Connect::keep`]); `None`
    /// once closed.
    stream: Option<TcpStream>,
}

/// How a connect that did not reach SYN-ACK ended.
pub(super) struct Failed {
    /// What the kernel said: `SO_ERROR`, or the connect call's error;
    /// `None` when the deadline passed, or a soft ICMP error came first.
    pub(super) error: Option<io::Error>,
    /// The ICMP error from the socket's error queue, if any.
    pub(super) icmp: Option<IcmpError>,
}

/// What one attempt needs besides its deadline: where to, how far,
/// from which source address and interface, with which mark and DSCP (the
/// module's TCP options), and where a half-open close is counted (`None`
/// for a full handshake).
struct Connect<'a> {
    address: SocketAddr,
    handshake: Handshake,
    options: &'a TcpOptions,
    guard: Option<&'a HalfOpenCloses>,
    /// The raw engine, for a half-open attempt of a module with
    /// `engine: raw`; `None` for every other.
    raw: Option<&'a RawEngineSlot>,
    /// Whether the connected socket is handed back (in
    /// [`SynAck::stream`]) instead of closed: a full handshake only.
    keep: bool,
}

/// How an attempt that got no SYN-ACK ended: its failure, and the ICMP
/// error that decided it, if any.
#[derive(Debug)]
struct AttemptFailed {
    failure: Failure,
    icmp: Option<IcmpError>,
    /// What came back from the network; `None` when nothing did (the
    /// exporter's own trouble).
    answer: Option<PortAnswer>,
}

impl From<Failure> for AttemptFailed {
    /// A failure before the SYN went out: no ICMP error, no answer.
    fn from(failure: Failure) -> Self {
        Self {
            failure,
            icmp: None,
            answer: None,
        }
    }
}

impl Connect<'_> {
    /// Connects and closes with RST; `Ok` once the port answered with
    /// SYN-ACK, with the time from the wake-up that showed it to the
    /// close's return.
    ///
    /// On success, `TCP_INFO` is read between the wake-up and the close:
    /// one `getsockopt`, the only work allowed to delay the RST.
    ///
    /// On failure, and at the deadline, the socket's error queue is read
    /// before it closes: an ICMP error there decides the reason
    /// ([`classify::icmp_reason`]), with `SO_ERROR` as the fallback.
    async fn attempt(
        &self,
        deadline: Instant,
        steplog: &mut StepLog,
    ) -> Result<SynAck, AttemptFailed> {
        let waited = match self.raw {
            Some(raw) => self.raw_attempt(raw, deadline, steplog).await?,
            None => self.socket_attempt(deadline, steplog).await?,
        };
        let Self {
            address, options, ..
        } = *self;
        let source = options.source_ip_address;
        let Failed { error, icmp } = match waited {
            Ok(syn_ack) => {
                steplog.log(|| TcpStep::SynAck {
                    address,
                    handshake: syn_ack.time,
                    rtt: syn_ack.rtt,
                    syn_retransmits: syn_ack.syn_retransmits,
                    close_delay: syn_ack.close_delay,
                    kept: syn_ack.stream.is_some(),
                    raw: self.raw.is_some(),
                });
                return Ok(syn_ack);
            }
            Err(failed) => failed,
        };
        if let Some(errno) = error.as_ref().and_then(io::Error::raw_os_error) {
            steplog.log(|| TcpStep::ConnectFailed { address, errno });
        }
        if let Some(icmp) = icmp {
            steplog.log(|| TcpStep::Icmp(icmp));
        }
        let from_icmp = icmp.and_then(|icmp| {
            classify::icmp_reason(&icmp, address.ip())
                .map(|reason| Failure::new(reason, format!("connect to {address}: {icmp}")))
        });
        let failure = match (from_icmp, error) {
            (Some(failure), _) => (failure, Some(PortAnswer::Icmp)),
            (None, Some(error)) => {
                let mut failure = os_failure("connect to", address, &error);
                // The local port is chosen at connect(): none was left, or
                // the source address went away since the bind.
                if let (Some(libc::EADDRNOTAVAIL), Some(source)) = (error.raw_os_error(), source) {
                    failure.detail = format!(
                        "{}: no local port is free from source_ip_address {source}, or it is no longer an address of this host",
                        failure.detail
                    );
                }
                let answer = match failure.reason {
                    Reason::Refused => Some(PortAnswer::Rst),
                    Reason::Timeout => Some(PortAnswer::Silence),
                    Reason::Unreachable => Some(PortAnswer::Unreachable),
                    _ => None,
                };
                (failure, answer)
            }
            (None, None) => {
                steplog.log(|| TcpStep::NoAnswer(address));
                let failure = Failure::new(
                    Reason::Timeout,
                    format!("no answer from {address} before the deadline"),
                );
                (failure, Some(PortAnswer::Silence))
            }
        };
        let (failure, answer) = failure;
        Err(AttemptFailed {
            failure,
            icmp,
            answer,
        })
    }

    /// The socket engine's attempt: a socket of its own, `connect()`, and
    /// a close with RST (see the module docs). `Err` when the socket
    /// could not be made ready: nothing was sent.
    async fn socket_attempt(
        &self,
        deadline: Instant,
        steplog: &mut StepLog,
    ) -> Result<Result<SynAck, Failed>, AttemptFailed> {
        let Self {
            address,
            handshake,
            options,
            guard,
            keep,
            ..
        } = *self;
        let source = options.source_ip_address;
        // Nothing has been sent yet: whatever fails here is the exporter's own
        // trouble (fds, a source address or interface it does not have, a
        // capability it lacks), never the target's.
        let socket = open_socket(address, handshake, options).map_err(|error| {
            let (error, hint) = match error {
                OpenFailed::Os(error) => (error, None),
                OpenFailed::Route(refused) => {
                    let hint = refused.hint().to_owned();
                    (refused.error, Some(hint))
                }
            };
            let failure = os_failure("cannot prepare a socket for", address, &error);
            let detail = match (error.raw_os_error(), source, hint) {
                (_, _, Some(hint)) => format!("{}: {hint}", failure.detail),
                // bind() of an address that is not (or no longer) the host's.
                (Some(libc::EADDRNOTAVAIL), Some(source), None) => format!(
                    "{}: source_ip_address {source} is not an address of this host",
                    failure.detail
                ),
                _ => failure.detail,
            };
            Failure::new(Reason::Local, detail)
        })?;
        steplog.log(|| TcpStep::Connecting {
            address,
            half_open: handshake == Handshake::HalfOpen,
            raw_source_port: None,
        });
        // Timed from here, not from before socket(): what the handshake took,
        // without the exporter's own socket setup.
        let connect_started = Instant::now();
        let waited = match start_connect(socket, address) {
            Ok(stream) => {
                let socket = ProbeSocket::new(stream, guard);
                let ended =
                    tokio::time::timeout_at(deadline, until_connected(socket.stream(), address))
                        .await;
                match ended {
                    Ok(Ok(woke)) => {
                        let kernel = crate::sys::handshake_info(socket.stream().as_fd()).ok();
                        let time = woke.saturating_duration_since(connect_started);
                        let (close_delay, stream) = if keep {
                            (None, Some(socket.keep()))
                        } else {
                            (Some(socket.close_after_syn_ack(woke, kernel)), None)
                        };
                        Ok(SynAck {
                            time,
                            rtt: kernel.and_then(|kernel| kernel.rtt),
                            syn_retransmits: kernel.map_or(0, |kernel| kernel.syn_retransmits),
                            close_delay,
                            stream,
                        })
                    }
                    Ok(Err(failed)) => {
                        socket.close_unanswered();
                        Err(failed)
                    }
                    // Dropped, not closed as unanswered: a SYN-ACK that came
                    // while the probe thread could not run still counts.
                    Err(_) => Err(Failed {
                        error: None,
                        icmp: queued_icmp(socket.stream()),
                    }),
                }
            }
            Err(error) => Err(Failed {
                error: Some(error),
                icmp: None,
            }),
        };
        Ok(waited)
    }

    /// The raw engine's attempt ([`RawEngine::attempt`](super::raw::RawEngine)):
    /// a SYN from the engine's raw socket, whose SYN-ACK the kernel answers
    /// with RST. `Err` when the engine cannot start or has no source port
    /// free: nothing was sent.
    async fn raw_attempt(
        &self,
        raw: &RawEngineSlot,
        deadline: Instant,
        steplog: &mut StepLog,
    ) -> Result<Result<SynAck, Failed>, AttemptFailed> {
        let address = self.address;
        let engine = raw.engine().map_err(|why| {
            Failure::new(
                Reason::Local,
                format!("cannot send a raw SYN to {address}: {why}"),
            )
        })?;
        let sending = |port| {
            steplog.log(|| TcpStep::Connecting {
                address,
                half_open: true,
                raw_source_port: Some(port),
            });
        };
        match engine
            .attempt(address, self.options, deadline, sending)
            .await
        {
            Ok(syn_ack) => Ok(Ok(SynAck {
                time: syn_ack.time,
                rtt: syn_ack.rtt,
                syn_retransmits: syn_ack.syn_retransmits,
                close_delay: None,
                stream: None,
            })),
            Err(RawFailed::Local(why)) => Err(Failure::new(
                Reason::Local,
                format!("cannot send a raw SYN to {address}: {why}"),
            )
            .into()),
            Err(RawFailed::Answer { error, icmp }) => Ok(Err(Failed { error, icmp })),
        }
    }
}

/// How long after the SYN-ACK the close returned, measured just after it:
/// the kernel's age of the SYN-ACK at the wake-up (`tcpi_last_data_sent`,
/// whole milliseconds of jiffies; see [`HandshakeInfo::since_syn_ack`]), which counts the time the SYN-ACK
/// waited for a starved probe thread, plus the exporter's own time from
/// that wake-up (clock read at `woke`) to now. The kernel's part is coarse:
/// it reads 0 right at a prompt wake-up, and can add one jiffy (1–10 ms)
/// when the SYN-ACK came just before a tick.
///
/// When the target had sent more than the SYN-ACK by the wake-up
/// ([`HandshakeInfo::segments_in`]), the handshake completed on its side
/// however soon the close came after what the kernel dates as the SYN-ACK
/// (a SYN-ACK held in the socket's backlog while a pre-empted `connect()`
/// held the lock is dated when it is processed): the delay is then at
/// least [`close_guard::DELAYED_ACK`], the earliest such a second segment
/// can come.
fn close_delay(woke: Instant, kernel: Option<HandshakeInfo>) -> Duration {
    let Some(kernel) = kernel else {
        return woke.elapsed();
    };
    let measured = kernel.since_syn_ack + woke.elapsed();
    if kernel.segments_in > 1 {
        measured.max(close_guard::DELAYED_ACK)
    } else {
        measured
    }
}

/// A probe's socket from its SYN on; closing it sends RST (zero linger).
///
/// A half-open socket that reached SYN-ACK counts its close delay into the
/// guard however it closes: after a SYN-ACK seen in time
/// ([`close_after_syn_ack`](Self::close_after_syn_ack)), or dropped, as
/// when its deadline passed before the probe thread saw the SYN-ACK, or
/// its task was aborted because the `/probe` client left. Under a
/// starved probe thread the latter two are where the late closes are.
pub(super) struct ProbeSocket<'a> {
    /// `None` once closed.
    stream: Option<TcpStream>,
    /// Where half-open closes are counted; `None` for a full handshake.
    guard: Option<&'a HalfOpenCloses>,
}

impl<'a> ProbeSocket<'a> {
    pub(super) fn new(stream: TcpStream, guard: Option<&'a HalfOpenCloses>) -> Self {
        Self {
            stream: Some(stream),
            guard,
        }
    }

    pub(super) fn stream(&self) -> &TcpStream {
        self.stream.as_ref().expect("open until closed")
    }

    /// Closes after the SYN-ACK that woke the probe at `woke`, with
    /// `kernel` read at that wake-up; returns the close delay, which a
    /// half-open socket counts.
    pub(super) fn close_after_syn_ack(
        mut self,
        woke: Instant,
        kernel: Option<HandshakeInfo>,
    ) -> Duration {
        drop(self.stream.take());
        let delay = close_delay(woke, kernel);
        if let Some(guard) = self.guard {
            guard.observe(delay);
        }
        delay
    }

    /// Hands the connected socket over instead of closing it, for a
    /// session; only for a full handshake, whose close nothing counts.
    fn keep(mut self) -> TcpStream {
        self.stream.take().expect("open until closed")
    }

    /// Closes a socket whose connect failed: no SYN-ACK, nothing to count,
    /// and no `TCP_INFO` to read.
    fn close_unanswered(mut self) {
        drop(self.stream.take());
    }
}

impl Drop for ProbeSocket<'_> {
    fn drop(&mut self) {
        let (Some(stream), Some(guard)) = (self.stream.take(), self.guard) else {
            return;
        };
        let closing = Instant::now();
        let connected = crate::sys::handshake_info(stream.as_fd())
            .ok()
            .filter(|kernel| kernel.got_syn_ack);
        drop(stream);
        if let Some(kernel) = connected {
            guard.observe(close_delay(closing, Some(kernel)));
        }
    }
}

/// Sends the SYN: a non-blocking connect, then the socket handed to tokio.
/// An error other than `EINPROGRESS` is the connect's answer.
pub(super) fn start_connect(socket: Socket, address: SocketAddr) -> io::Result<TcpStream> {
    if let Err(error) = socket.connect(&SockAddr::from(address))
        && error.raw_os_error() != Some(libc::EINPROGRESS)
    {
        return Err(error);
    }
    TcpStream::from_std(socket.into())
}

/// The ICMP or ICMPv6 error that was last on the socket's error queue, if
/// any (whether it ends a connect is [`classify::icmp_reason`]'s to say);
/// an unreadable queue counts as empty.
pub(super) fn queued_icmp(stream: &TcpStream) -> Option<IcmpError> {
    let queued = crate::sys::read_error_queue(stream.as_fd()).ok()??;
    if !matches!(
        queued.origin,
        libc::SO_EE_ORIGIN_ICMP | libc::SO_EE_ORIGIN_ICMP6
    ) {
        return None;
    }
    // The origin, not the socket's family, says which ICMP it is: an IPv6
    // socket connecting to an IPv4-mapped address gets ICMP (IPv4) errors,
    // origin SO_EE_ORIGIN_ICMP, with the sender written as `::ffff:a.b.c.d`.
    Some(IcmpError {
        ipv6: queued.origin == libc::SO_EE_ORIGIN_ICMP6,
        icmp_type: queued.icmp_type,
        code: queued.code,
        offender: queued.offender.map(|offender| offender.to_canonical()),
    })
}

/// Why a socket could not be made ready for its SYN.
pub(super) enum OpenFailed {
    /// A call every probe makes.
    Os(io::Error),
    /// One of the module's `source_interface`, `mark`, `dscp`.
    Route(RouteRefused),
}

impl From<OpenFailed> for io::Error {
    /// The OS error alone, for the trace SYNs, which only stop sending.
    fn from(failed: OpenFailed) -> Self {
        match failed {
            OpenFailed::Os(error) => error,
            OpenFailed::Route(refused) => refused.error,
        }
    }
}

impl From<io::Error> for OpenFailed {
    fn from(error: io::Error) -> Self {
        Self::Os(error)
    }
}

/// Opens the non-blocking socket with the options the handshake and the
/// module need: the interface, mark and DSCP before the source address is
/// bound, all before the SYN.
pub(super) fn open_socket(
    address: SocketAddr,
    handshake: Handshake,
    options: &TcpOptions,
) -> Result<Socket, OpenFailed> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    if handshake == Handshake::HalfOpen {
        socket.set_tcp_quickack(false)?;
    }
    socket.set_linger(Some(Duration::ZERO))?;
    crate::sys::set_recv_err(socket.as_fd(), address.is_ipv6())?;
    set_route_options(&socket, options, address.ip()).map_err(OpenFailed::Route)?;
    if let Some(ip) = options.source_ip_address {
        // A port reserved at bind() would be the address's alone, so the
        // ephemeral range would cap the probes in flight from it; chosen at
        // connect(), it is shared by probes to different targets.
        crate::sys::set_bind_address_no_port(socket.as_fd())?;
        socket.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
    }
    Ok(socket)
}

/// Waits until the kernel reports that the connect finished; returns when
/// the SYN-ACK was seen, as far as the exporter knows: the wake-up that
/// proved the connection.
///
/// A writable socket with `SO_ERROR` clear is not proof of a connection,
/// so `getpeername` must agree; until it does we wait for the next
/// wake-up. A wake-up with neither is how a soft ICMP error shows (one
/// the kernel queues but lets the connect retry past): when the error
/// queue then holds one that ends a connect, the probe ends at once.
pub(super) async fn until_connected(
    stream: &TcpStream,
    address: SocketAddr,
) -> Result<Instant, Failed> {
    let failed = |error| Failed {
        icmp: queued_icmp(stream),
        error: Some(error),
    };
    loop {
        stream.writable().await.map_err(failed)?;
        let woke = Instant::now();
        if let Some(error) = stream.take_error().map_err(failed)? {
            return Err(failed(error));
        }
        if stream.peer_addr().is_ok() {
            return Ok(woke);
        }
        if let Some(icmp) = queued_icmp(stream)
            && classify::icmp_reason(&icmp, address.ip()).is_some()
        {
            return Err(Failed {
                error: None,
                icmp: Some(icmp),
            });
        }
        // Forget the readiness that woke us, or writable() returns at once.
        let _ = stream.try_io(Interest::WRITABLE, || {
            Err::<(), _>(io::ErrorKind::WouldBlock.into())
        });
    }
}

fn os_failure(action: &str, address: SocketAddr, error: &io::Error) -> Failure {
    Failure::new(
        classify::reason_for(error),
        format!("{action} {address}: {}", classify::describe(error)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_takes_any_answer_but_a_syn_ack_and_filtered_no_rst_either() {
        use PortAnswer::{Icmp, Rst, Silence, SynAck, Unreachable};
        let failed = |reason| Some(Failure::new(reason, "what the connect said"));
        let judged = |expect, answer, reason| {
            judge_answer(expect, Some(answer), failed(reason)).map(|failure| failure.reason)
        };
        for expect in [ExpectPort::Closed, ExpectPort::Filtered] {
            // A success of the connect can only be a SYN-ACK.
            assert_eq!(
                judge_answer(expect, Some(SynAck), None).map(|failure| failure.reason),
                Some(Reason::Open),
                "{expect:?}"
            );
            assert_eq!(judged(expect, Silence, Reason::Timeout), None, "{expect:?}");
            assert_eq!(judged(expect, Icmp, Reason::Unreachable), None);
            // ICMP port unreachable from the target: `refused` for an open
            // check, an ICMP answer here (a `reject` rule's default).
            assert_eq!(judged(expect, Icmp, Reason::Refused), None);
            // The exporter's own host refused to send (no route, a local
            // firewall): nothing came from the network, so nothing is
            // known of the port: the failure stands.
            assert_eq!(
                judged(expect, Unreachable, Reason::Unreachable),
                Some(Reason::Unreachable)
            );
            // Nothing came from the network: the failure stands.
            for reason in [Reason::Dns, Reason::Local] {
                assert_eq!(
                    judge_answer(expect, None, failed(reason)).map(|failure| failure.reason),
                    Some(reason)
                );
            }
        }
        assert_eq!(judged(ExpectPort::Closed, Rst, Reason::Refused), None);
        let refused = judge_answer(ExpectPort::Filtered, Some(Rst), failed(Reason::Refused))
            .expect("an RST fails filtered");
        assert_eq!(refused.reason, Reason::Refused);
        assert_eq!(
            refused.detail,
            "what the connect said: the port answered with RST, so nothing filters it, and \
             expect_port is filtered"
        );
        let open = judge_answer(ExpectPort::Closed, Some(SynAck), None).unwrap();
        assert_eq!(
            open.detail,
            "the port answered with SYN-ACK: it is open, and expect_port is closed"
        );
        // An open check keeps what the connect found.
        assert_eq!(
            judged(ExpectPort::Open, Rst, Reason::Refused),
            Some(Reason::Refused)
        );
    }

    #[test]
    fn the_strongest_answer_of_the_attempts_is_the_probes() {
        use PortAnswer::{Icmp, Rst, Silence, SynAck, Unreachable};
        let strongest = |answers: &[Option<PortAnswer>]| {
            answers.iter().fold(None, |kept, answer| kept.max(*answer))
        };
        assert_eq!(strongest(&[Some(Rst), Some(Silence)]), Some(Rst));
        assert_eq!(strongest(&[Some(Silence), None, Some(Icmp)]), Some(Icmp));
        assert_eq!(
            strongest(&[Some(Unreachable), Some(Silence)]),
            Some(Unreachable)
        );
        assert_eq!(
            strongest(&[Some(Rst), Some(SynAck), Some(Silence)]),
            Some(SynAck)
        );
        assert_eq!(strongest(&[None, None]), None);
    }

    #[test]
    fn a_negative_check_is_half_open_whatever_the_prober() {
        let mut options = TcpOptions::default();
        assert_eq!(Handshake::of(false, &options), Handshake::Full);
        assert_eq!(Handshake::of(true, &options), Handshake::HalfOpen);
        for expect in [ExpectPort::Closed, ExpectPort::Filtered] {
            options.expect_port = expect;
            assert_eq!(Handshake::of(false, &options), Handshake::HalfOpen);
        }
    }

    /// Records the series a prober writes, as `name labels value`.
    struct Infos(Vec<String>);
    impl Series for Infos {
        fn gauge(&mut self, _: &'static str, _: &'static str, _: Number) {}
        fn icmp_error(&mut self, _: &IcmpError) {}
        fn info(&mut self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) {
            assert!(!help.is_empty());
            self.0.push(format!("{name} {labels:?}"));
        }
        fn labelled_gauge(
            &mut self,
            name: &'static str,
            help: &'static str,
            labels: &[(&str, &str)],
            value: Number,
        ) {
            assert!(!help.is_empty());
            self.0.push(format!("{name} {labels:?} {value:?}"));
        }
    }

    #[test]
    fn the_answer_series_is_written_only_with_an_answer_and_kept_for_targets() {
        let options = TcpOptions::default();
        let mut detail = TcpDetail::default();
        let mut out = Infos(Vec::new());
        write_series(&options, Some(&detail), Slot::Reasons, &mut out);
        assert!(out.0.is_empty());
        detail.port_answer = Some(PortAnswer::Rst);
        write_series(&options, Some(&detail), Slot::Reasons, &mut out);
        assert_eq!(out.0, ["probe_port_answer [(\"answer\", \"rst\")]"]);

        let mut kept = TcpKept::default();
        kept.record(Some(&detail));
        assert_eq!(kept.last_port_answer, Some(PortAnswer::Rst));
        kept.record(Some(&TcpDetail::default()));
        assert_eq!(
            kept.last_port_answer, None,
            "a probe without an answer clears it"
        );
    }

    #[test]
    fn the_trace_series_is_written_only_after_a_trace_and_kept_for_targets() {
        let options = TcpOptions {
            trace_on_timeout: true,
            ..TcpOptions::default()
        };
        let mut detail = TcpDetail::default();
        let mut out = Infos(Vec::new());
        write_series(&options, Some(&detail), Slot::Reasons, &mut out);
        assert!(out.0.is_empty(), "no trace, no series");
        detail.trace = Some(Trace {
            sent: 30,
            ..Trace::default()
        });
        write_series(&options, Some(&detail), Slot::Reasons, &mut out);
        let hop = TraceHop {
            ttl: 2,
            address: "198.51.100.1".parse().unwrap(),
        };
        detail.trace = Some(Trace {
            sent: 30,
            last_hop: Some(hop),
            ..Trace::default()
        });
        write_series(&options, Some(&detail), Slot::Reasons, &mut out);
        assert_eq!(
            out.0,
            [
                "probe_trace_last_hop [(\"address\", \"\")] Count(0)",
                "probe_trace_last_hop [(\"address\", \"198.51.100.1\")] Count(2)",
            ]
        );

        let mut kept = TcpKept::default();
        kept.record(Some(&detail));
        assert_eq!(kept.last_trace, Some(Some(hop)));
        kept.record(Some(&TcpDetail::default()));
        assert_eq!(kept.last_trace, None, "a probe without a trace clears it");
    }

    #[test]
    fn syn_retransmits_add_up_and_the_last_kernel_rtt_stays_through_failures() {
        let success = |syn_retransmits, tcp_rtt| TcpDetail {
            handshake_time: Some(Duration::from_micros(300)),
            attempts: 1,
            syn_retransmits,
            tcp_rtt,
            ..TcpDetail::default()
        };
        let mut kept = TcpKept::default();
        kept.record(Some(&success(2, Some(Duration::from_millis(1)))));
        kept.record(Some(&success(0, Some(Duration::from_micros(40)))));
        assert_eq!((kept.syn_retransmits, kept.last_tcp_rtt), (2, 0.000_04));
        let refused = TcpDetail {
            attempts: 1,
            attempts_failed: 1,
            ..TcpDetail::default()
        };
        kept.record(Some(&refused));
        kept.record(Some(&success(1, None)));
        assert_eq!(
            (kept.syn_retransmits, kept.last_tcp_rtt),
            (3, 0.000_04),
            "neither a failure nor a success without a sample clears the RTT"
        );
    }

    #[test]
    fn steps_render_as_one_line_each_with_the_failure() {
        let address: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut steplog = StepLog::enabled();
        steplog.log(|| TcpStep::Connecting {
            address,
            half_open: true,
            raw_source_port: None,
        });
        steplog.log(|| TcpStep::ConnectFailed {
            address,
            errno: libc::ECONNREFUSED,
        });
        steplog.log(|| crate::prober::Step::Failed);
        let target = Target::parse("127.0.0.1:1").unwrap();
        let text = steplog
            .into_steps()
            .render(Some(&target), Some(&"refused: RST"), true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].ends_with(
            "s connecting to 127.0.0.1:1 (half-open: TCP_QUICKACK=0, SO_LINGER {on, 0})"
        ));
        assert!(lines[1].contains("Connection refused"), "{text}");
        assert!(lines[2].ends_with("s probe failed: refused: RST"), "{text}");
    }

    fn syn_ack(time_ms: u64, rtt_us: Option<u64>, syn_retransmits: u32) -> SynAck {
        SynAck {
            time: Duration::from_millis(time_ms),
            rtt: rtt_us.map(Duration::from_micros),
            syn_retransmits,
            // Distinct per attempt, so that the largest can be told apart.
            close_delay: Some(Duration::from_micros(time_ms)),
            stream: None,
        }
    }

    #[test]
    fn the_first_success_gives_time_and_rtt_and_every_success_adds_its_retransmits() {
        let mut outcome = TcpDetail::default();
        outcome.record(&syn_ack(1003, Some(1000), 1), Handshake::HalfOpen);
        outcome.record(&syn_ack(2, Some(40), 0), Handshake::HalfOpen);
        outcome.record(&syn_ack(3005, None, 2), Handshake::HalfOpen);
        // TCP_INFO unreadable: the time still counts, no retransmits.
        outcome.record(
            &SynAck {
                time: Duration::from_millis(4),
                rtt: None,
                syn_retransmits: 0,
                close_delay: Some(Duration::ZERO),
                stream: None,
            },
            Handshake::HalfOpen,
        );
        assert_eq!(outcome.handshake_time, Some(Duration::from_millis(1003)));
        assert_eq!(outcome.tcp_rtt, Some(Duration::from_millis(1)));
        assert_eq!(outcome.syn_retransmits, 3);
        assert_eq!(
            outcome.later_handshake_times,
            [2, 3005, 4].map(Duration::from_millis)
        );
    }

    #[test]
    fn a_first_success_without_an_rtt_sample_leaves_the_rtt_unknown() {
        let mut outcome = TcpDetail::default();
        outcome.record(&syn_ack(1003, None, 1), Handshake::HalfOpen);
        outcome.record(&syn_ack(2, Some(40), 0), Handshake::HalfOpen);
        assert_eq!((outcome.tcp_rtt, outcome.syn_retransmits), (None, 1));
    }

    #[test]
    fn half_open_successes_keep_their_largest_close_delay_and_full_ones_none() {
        let mut half_open = TcpDetail::default();
        let mut full = half_open.clone();
        for time_ms in [2, 3005, 40] {
            half_open.record(&syn_ack(time_ms, None, 0), Handshake::HalfOpen);
            full.record(&syn_ack(time_ms, None, 0), Handshake::Full);
        }
        assert_eq!(half_open.close_delay, Some(Duration::from_micros(3005)));
        assert_eq!(full.close_delay, None);
    }

    #[test]
    fn the_close_delay_counts_how_long_the_syn_ack_waited_for_the_wake_up() {
        let woke = Instant::now();
        let starved = HandshakeInfo {
            rtt: None,
            syn_retransmits: 0,
            since_syn_ack: Duration::from_millis(180),
            segments_in: 1,
            got_syn_ack: true,
        };
        let delay = close_delay(woke, Some(starved));
        assert!(
            delay >= Duration::from_millis(180) && delay < Duration::from_secs(5),
            "{delay:?}"
        );
        assert!(close_delay(woke, None) < Duration::from_millis(180));
    }

    #[test]
    fn a_second_segment_from_the_target_makes_the_close_at_least_the_delayed_ack_late() {
        let woke = Instant::now();
        let info = |segments_in| HandshakeInfo {
            rtt: None,
            syn_retransmits: 0,
            since_syn_ack: Duration::ZERO,
            segments_in,
            got_syn_ack: true,
        };
        assert!(close_delay(woke, Some(info(1))) < close_guard::LATE_CLOSE_THRESHOLD);
        assert!(close_delay(woke, Some(info(2))) >= close_guard::DELAYED_ACK);
        // Kernels before 4.2 leave the count at 0: no guess either way.
        assert!(close_delay(woke, Some(info(0))) < close_guard::LATE_CLOSE_THRESHOLD);
    }

    #[tokio::test]
    async fn an_attempt_that_fails_before_its_syn_draws_no_icmp_error() {
        // It fails as `local` at bind() (192.0.2.77 is not an address of
        // this host), before anything is sent: the attempt carries no ICMP
        // error, so that the probe's ICMP detail (the last failed
        // attempt's) cannot describe its `local` failure.
        let options = TcpOptions {
            source_ip_address: Some("192.0.2.77".parse().unwrap()),
            ..TcpOptions::default()
        };
        let connect = Connect {
            address: "127.0.0.1:9".parse().unwrap(),
            handshake: Handshake::HalfOpen,
            options: &options,
            guard: None,
            raw: None,
            keep: false,
        };
        let result = connect
            .attempt(
                Instant::now() + Duration::from_secs(1),
                &mut StepLog::disabled(),
            )
            .await;
        let failed = result.err().expect("bind fails");
        assert_eq!(
            failed.failure.reason,
            Reason::Local,
            "{}",
            failed.failure.detail
        );
        assert_eq!(failed.icmp, None);
    }

    /// A starved probe thread lets the kernel's delayed ACK complete the
    /// handshake; a target that then greets (SSH, SMTP) or closes sends
    /// segments whose ACKs reset `tcpi_last_ack_recv`. The age of the
    /// SYN-ACK read 300 ms after it must still say 300 ms, not the ~100 ms
    /// since the target's greeting (what `tcpi_last_ack_recv` said), or the
    /// guard misses the very closes that leaked a connection.
    #[test]
    fn the_syn_ack_age_survives_what_the_target_sends_after_the_delayed_ack() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let address = listener.local_addr().expect("local address");
        let socket = syn_acked_socket(address);
        let syn_ack = std::time::Instant::now();
        // The delayed ACK (~200 ms) completes the handshake: accept, greet
        // and close, as a target would.
        let (mut accepted, _) = loop {
            match listener.accept() {
                Ok(connection) => break connection,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    assert!(syn_ack.elapsed() < Duration::from_secs(2), "never accepted");
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(error) => panic!("accept: {error}"),
            }
        };
        accepted.write_all(b"220 hello\r\n").expect("greeting");
        drop(accepted);
        std::thread::sleep(Duration::from_millis(300).saturating_sub(syn_ack.elapsed()));
        let late = crate::sys::handshake_info(socket.as_fd()).expect("TCP_INFO");
        assert!(
            late.since_syn_ack >= Duration::from_millis(250)
                && late.since_syn_ack < Duration::from_secs(2),
            "SYN-ACK age {:?} read {:?} after it",
            late.since_syn_ack,
            syn_ack.elapsed()
        );
        assert!(
            late.segments_in >= 2,
            "the greeting counts: {} segments",
            late.segments_in
        );
    }

    #[test]
    fn tcp_info_dates_the_syn_ack_so_that_a_late_wake_up_shows() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("local address");
        let socket = syn_acked_socket(address);
        let prompt = crate::sys::handshake_info(socket.as_fd()).expect("TCP_INFO");
        std::thread::sleep(Duration::from_millis(60));
        let late = crate::sys::handshake_info(socket.as_fd()).expect("TCP_INFO");
        assert!(
            late.since_syn_ack >= Duration::from_millis(50)
                && late.since_syn_ack < Duration::from_secs(2)
                && prompt.since_syn_ack < late.since_syn_ack
                && prompt.segments_in == 1,
            "SYN-ACK age {:?} at once ({} segments in), {:?} 60 ms later",
            prompt.since_syn_ack,
            prompt.segments_in,
            late.since_syn_ack
        );
    }

    /// Waits, blocking, until `connected()` holds, for at most 2 s.
    fn wait_until(mut connected: impl FnMut() -> bool) {
        let started = std::time::Instant::now();
        while !connected() {
            assert!(started.elapsed() < Duration::from_secs(2), "no SYN-ACK");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A half-open socket to `address` whose SYN-ACK has come.
    fn syn_acked_socket(address: SocketAddr) -> Socket {
        let socket = open_socket(address, Handshake::HalfOpen, &TcpOptions::default())
            .ok()
            .expect("socket");
        let _in_progress = socket.connect(&SockAddr::from(address));
        wait_until(|| socket.peer_addr().is_ok());
        socket
    }

    /// A half-open tokio stream to `listener` whose SYN-ACK has come, as
    /// the probe holds it; needs a tokio runtime.
    fn syn_acked_stream(listener: &std::net::TcpListener) -> TcpStream {
        let address = listener.local_addr().expect("local address");
        let socket = open_socket(address, Handshake::HalfOpen, &TcpOptions::default())
            .ok()
            .expect("socket");
        let stream = start_connect(socket, address).expect("connect");
        wait_until(|| stream.peer_addr().is_ok());
        stream
    }

    #[tokio::test]
    async fn a_socket_dropped_after_an_unseen_syn_ack_counts_its_late_close() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let closes = HalfOpenCloses::default();
        let stream = syn_acked_stream(&listener);
        // The probe thread did not run for 60 ms, then its task was
        // aborted (or its deadline passed): the socket is dropped.
        std::thread::sleep(Duration::from_millis(60));
        drop(ProbeSocket::new(stream, Some(&closes)));
        let values = closes.values();
        assert_eq!((values.delays.count, values.late), (1, 1), "{values:?}");

        // A socket that got no SYN-ACK (refused) counts nowhere.
        let refused = closed_port_address();
        let socket = open_socket(refused, Handshake::HalfOpen, &TcpOptions::default())
            .ok()
            .expect("socket");
        let stream = start_connect(socket, refused).expect("connect");
        std::thread::sleep(Duration::from_millis(20));
        drop(ProbeSocket::new(stream, Some(&closes)));
        assert_eq!(closes.values().delays.count, 1);
    }

    /// A loopback port nothing listens on (bound, then released).
    fn closed_port_address() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
    }

    #[tokio::test]
    async fn a_socket_dropped_after_the_target_greeted_and_closed_counts_its_late_close() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let closes = HalfOpenCloses::default();
        let stream = syn_acked_stream(&listener);
        // The probe thread starved past the delayed ACK: the target
        // accepted, greeted and closed, so this side is in CLOSE_WAIT when
        // the probe is finally dropped (deadline passed, task aborted).
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let mut accepted = None;
        wait_until(|| {
            accepted = accepted.take().or_else(|| listener.accept().ok());
            accepted.is_some()
        });
        let mut accepted = accepted.expect("the delayed ACK completes it").0;
        accepted.write_all(b"220 hello\r\n").expect("greeting");
        drop(accepted);
        std::thread::sleep(Duration::from_millis(20));
        drop(ProbeSocket::new(stream, Some(&closes)));
        let values = closes.values();
        assert_eq!((values.delays.count, values.late), (1, 1), "{values:?}");
    }
}
