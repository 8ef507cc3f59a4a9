//! Probers: what a probe does and how it ends.
//!
//! A probe takes a [`Module`] (which prober, with what options), a
//! [`Target`] and a deadline, and always returns an [`Outcome`]: success,
//! or a failure with exactly one [`Reason`]. Probers never return errors
//! and never panic on what the network does; even the exporter's own
//! trouble becomes an outcome with reason `local`.
//!
//! Each prober lives in its own file (`tcp.rs` for the two TCP probers,
//! `exec.rs` for commands) and owns its shape there: its probe function,
//! its [`Detail`] type (what it reports beside the shared part of the
//! [`Outcome`]), its steps and their wording in the step log (a
//! [`Wording`] type, such as [`TcpStep`]), its `/probe` series (a
//! `write_series` function, see [`Series`]), and the series it adds to
//! scheduled targets on `/metrics` with what a target keeps for them
//! ([`TargetSeries`], [`Kept`]). What probes share travels in
//! a [`Context`]; the steps every prober may take (probing, resolving,
//! how it ended) are the step log's own ([`crate::steplog`]).
//!
//! # Adding a prober
//!
//! 1. A new file here, `prober/NAME.rs`, with `probe(options, target,
//!    context, budget, steplog) -> Outcome`, its detail type (`pub struct
//!    NameDetail`, `#[non_exhaustive]`), its steps (`pub(crate) enum
//!    NameStep`, with [`Wording`]: each step's sentence and, for a step
//!    that owns heap memory, its size), `write_series(detail, slot,
//!    out)`, and for scheduled targets a `NameKept` with `record(detail)`
//!    and a `TargetSeries` const for each of its `/metrics` series; `pub
//!    use` the detail type here and in `lib.rs`.
//! 2. One variant in [`Prober`](crate::config::Prober), with the
//!    prober's options, and one in [`ProberKind`](crate::config::ProberKind)
//!    for its name in the YAML (`prober: NAME`). Options read from the
//!    YAML (a `NAME:` block) are a type of `src/config/`, which reads and
//!    checks the file one layer below this one, and a field of the
//!    config's `ModuleFields` with its arm in `Module`'s `TryFrom`.
//! 3. One variant in [`Detail`], in [`ProberStep`] (with its
//!    `From<NameStep> for Step`) and in [`Kept`], an arm in [`run`], in
//!    [`write_series`], in `ProberStep`'s [`Wording`] and in `Kept`'s
//!    methods, and its series at the end of [`TARGET_SERIES`]. The compiler
//!    points at each `match` that needs the new variant; nothing
//!    downstream (scheduler, history, `/probe`) changes.
//!
//! What the first prober added this way (`prober: tcp`'s sessions, TLS and
//! `query_response`, in `session/`) needed beyond these steps, and a new
//! prober may too:
//!
//! - **A directory** when one file grows past one job: `session/mod.rs`
//!   (the probe and its steps), `query.rs` (the dialogue), `series.rs`
//!   (its series and what a target keeps). Parts other probers may reuse
//!   are files of their own (`tls.rs`, `certificate.rs`), and a part of an
//!   existing prober it shares is split out there (`tcp::open`).
//! - **A thread and a limit** when its probes hold a connection for long:
//!   one arm in the runner's `thread_for` and its in-flight limit with a
//!   flag (`--probe.max-sessions`), so slow dialogues cannot delay the
//!   half-open probes' closes.
//! - **State kept between probes** (the TLS setups) goes in [`Context`],
//!   bounded, and is dropped on a config reload by the runner.
//! - **A new [`Reason`]** (`tls`) is appended last: every module's
//!   `probe_failure_reason` gains the row, with 0.
//! - **Label names** of its info series are reserved for scheduled
//!   targets' own labels, per module, in `config/scheduled.rs`.

#![forbid(unsafe_code)]

mod addresses;
mod certificate;
mod classify;
mod close_guard;
pub(crate) mod exec;
mod process_groups;
pub(crate) mod raw;
pub(crate) mod resolve;
mod session;
mod tcp;
mod tls;
mod trace;

pub use certificate::CertFacts;
pub use exec::ExecDetail;
pub use session::SessionDetail;
pub use tcp::{HandshakeStats, PortAnswer, TcpDetail};
pub use tls::TlsFacts;
pub use trace::{Trace, TraceHop};

pub(crate) use exec::ExecStep;
pub(crate) use session::SessionStep;
pub(crate) use tcp::{TcpKept, TcpStep};

pub(crate) use close_guard::{HalfOpenCloseValues, HalfOpenCloses, LATE_CLOSE_THRESHOLD};
pub(crate) use process_groups::ProcessGroups;
pub(crate) use resolve::Resolver;

use crate::config::{ExpectPort, IpAddresses, Module, PolicyRefusal, Prober};
use crate::steplog::{self, Wording};
use crate::target::Target;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Why a probe failed. Every failure has exactly one.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// An RST came back: nothing listens on the port.
    Refused,
    /// No answer before the deadline: a dropped SYN, a filter, a dead host.
    Timeout,
    /// Routing or ICMP said no: host or network unreachable, admin-prohibited.
    Unreachable,
    /// The name did not resolve, or has no address of an allowed family.
    Dns,
    /// The exporter's own resources failed (fds, ports, in-flight limit).
    Local,
    /// The target was reached but the check said no: an `exec` command
    /// exited non-zero or was killed by a signal, or a `query_response`
    /// step of `prober: tcp` did not get what it expected.
    CheckFailed,
    /// The TLS handshake failed: the certificate did not verify (expired,
    /// unknown issuer, another name), or the server refused the handshake.
    Tls,
    /// The port answered with SYN-ACK, and the module's `expect_port`
    /// (`closed` or `filtered`) says it must not.
    Open,
}

impl Reason {
    /// Every reason, in the order series are exported.
    pub const ALL: [Self; 8] = [
        Self::Refused,
        Self::Timeout,
        Self::Unreachable,
        Self::Dns,
        Self::Local,
        Self::CheckFailed,
        Self::Tls,
        Self::Open,
    ];

    /// The label value used in metrics.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Unreachable => "unreachable",
            Self::Dns => "dns",
            Self::Local => "local",
            Self::CheckFailed => "check_failed",
            Self::Tls => "tls",
            Self::Open => "open",
        }
    }
}

/// The values of a `result` label: `success`, then every [`Reason`] in
/// the order of [`Reason::ALL`]. [`result_index`] gives an outcome's place.
pub(crate) const RESULTS: [&str; 9] = [
    "success",
    "refused",
    "timeout",
    "unreachable",
    "dns",
    "local",
    "check_failed",
    "tls",
    "open",
];

/// Where `reason` (`None` for success) is in [`RESULTS`].
pub(crate) fn result_index(reason: Option<Reason>) -> usize {
    match reason {
        None => 0,
        Some(Reason::Refused) => 1,
        Some(Reason::Timeout) => 2,
        Some(Reason::Unreachable) => 3,
        Some(Reason::Dns) => 4,
        Some(Reason::Local) => 5,
        Some(Reason::CheckFailed) => 6,
        Some(Reason::Tls) => 7,
        Some(Reason::Open) => 8,
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed probe: the reason, and a sentence for logs and debug output.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The classification used in metrics and alerts.
    pub reason: Reason,
    /// What happened, such as `connect to 127.0.0.1:1: ECONNREFUSED (Connection refused)`.
    pub detail: String,
    /// For an `exec` command: the first line that is not blank of what it
    /// wrote to stderr, trimmed, cut at [`STDERR_LINE_BYTES`] (marked with
    /// `…`): the command's own word on why. Raw text: escape it to show it,
    /// as [`Failure::stderr_note`] does.
    pub stderr: Option<Box<str>>,
}

/// The most bytes of a command's stderr line a [`Failure`] keeps.
pub const STDERR_LINE_BYTES: usize = 200;

impl Failure {
    /// A failure with this reason and detail.
    #[must_use]
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            stderr: None,
        }
    }

    /// ` (stderr: "…")` with the command's stderr line, quoted and escaped
    /// as a Rust string (control characters as `\u{1b}`, so it stays on one
    /// line); empty when there is none.
    #[must_use]
    pub fn stderr_note(&self) -> String {
        self.stderr
            .as_ref()
            .map_or_else(String::new, |line| format!(" (stderr: {line:?})"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}{}", self.reason, self.detail, self.stderr_note())
    }
}

/// What one probe found: what every prober reports (success or one
/// failure, the address, the times), and what only its prober knows, in
/// [`detail`](Self::detail).
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `None` on success.
    pub failure: Option<Failure>,
    /// The address probed, once DNS chose one.
    pub address: Option<SocketAddr>,
    /// Time spent resolving the host; zero for IP literals.
    pub dns_time: Duration,
    /// The whole probe, DNS included.
    pub duration: Duration,
    /// The module's `target_policy` refused the target (as written, or
    /// the address it resolved to), so nothing was sent: the failure is
    /// `local` and says why. `/probe` answers it with 403.
    pub denied_by_policy: bool,
    /// What the prober alone reports.
    pub detail: Detail,
    /// With `ip_addresses: all`, each address probed and how its probe
    /// ended, in the order resolved (the preferred family's first); empty
    /// otherwise. The rest of the outcome is that of the address that
    /// decided it: the first that succeeded, or on failure the first that
    /// failed.
    pub addresses: Vec<AddressOutcome>,
}

/// How the probe of one address of an `ip_addresses: all` probe ended.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressOutcome {
    /// The address.
    pub ip: std::net::IpAddr,
    /// `None` on success.
    pub failure: Option<Failure>,
}

impl AddressOutcome {
    /// How the probe of `ip` ended: `failure`, `None` for success.
    #[must_use]
    pub fn new(ip: std::net::IpAddr, failure: Option<Failure>) -> Self {
        Self { ip, failure }
    }
}

/// What only one prober reports, beside the shared part of an [`Outcome`].
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Detail {
    /// No prober ran: the probe never started (refused by a limit or by
    /// the target policy, or built with [`Outcome::not_started`]).
    #[default]
    NotRun,
    /// From `tcp_halfopen` and `tcp_connect`.
    Tcp(TcpDetail),
    /// From `exec`.
    Exec(ExecDetail),
    /// From `prober: tcp` with TLS or a dialogue.
    Session(Box<SessionDetail>),
}

/// An ICMP or ICMPv6 error that ended a probe, as the socket's error
/// queue gave it: the message type and code, and the host that sent it.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpError {
    /// Whether it is an ICMPv6 message (the probe went over IPv6).
    pub ipv6: bool,
    /// The ICMP type, such as 3 (destination unreachable; 1 in ICMPv6).
    pub icmp_type: u8,
    /// The ICMP code, such as 13 (communication administratively prohibited).
    pub code: u8,
    /// The address of the host or router that sent the message
    /// (`SO_EE_OFFENDER`), when the kernel gives one.
    pub offender: Option<std::net::IpAddr>,
}

impl fmt::Display for IcmpError {
    /// As `ICMP destination unreachable, code 13 (communication
    /// administratively prohibited), from 192.0.2.1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        classify::write_icmp(f, self)
    }
}

impl Outcome {
    /// An outcome with `failure` (`None` for success) and `detail`,
    /// nothing resolved, no time taken: what each prober starts from.
    #[must_use]
    pub fn new(failure: Option<Failure>, detail: Detail) -> Self {
        Self {
            failure,
            address: None,
            dns_time: Duration::ZERO,
            duration: Duration::ZERO,
            denied_by_policy: false,
            detail,
            addresses: Vec::new(),
        }
    }

    /// Whether the port accepted the handshake.
    #[must_use]
    pub fn is_success(&self) -> bool {
        self.failure.is_none()
    }

    /// The failure reason, `None` on success.
    #[must_use]
    pub fn reason(&self) -> Option<Reason> {
        self.failure.as_ref().map(|failure| failure.reason)
    }

    /// 4 or 6 for the address probed, 0 when nothing was resolved.
    #[must_use]
    pub fn ip_protocol(&self) -> u8 {
        match self.address {
            Some(SocketAddr::V4(_)) => 4,
            Some(SocketAddr::V6(_)) => 6,
            None => 0,
        }
    }

    /// What a TCP prober reported, a session's connection included;
    /// `None` for the others, and for a probe that never started.
    #[must_use]
    pub fn tcp(&self) -> Option<&TcpDetail> {
        match &self.detail {
            Detail::Tcp(detail) => Some(detail),
            Detail::Session(detail) => Some(&detail.tcp),
            _ => None,
        }
    }

    /// What a `prober: tcp` session reported; `None` for the others.
    #[must_use]
    pub fn session(&self) -> Option<&SessionDetail> {
        match &self.detail {
            Detail::Session(detail) => Some(detail),
            _ => None,
        }
    }

    /// What the `exec` prober reported; `None` for the others.
    #[must_use]
    pub fn exec(&self) -> Option<&ExecDetail> {
        match &self.detail {
            Detail::Exec(detail) => Some(detail),
            _ => None,
        }
    }

    /// The time from the `connect()` call to the SYN-ACK
    /// ([`TcpDetail::handshake_time`]); `None` without a SYN-ACK and for
    /// probers that open no connection.
    #[must_use]
    pub fn handshake_time(&self) -> Option<Duration> {
        self.tcp().and_then(|tcp| tcp.handshake_time)
    }

    /// What `probe_exec_exit_code` shows ([`ExecDetail::exit_code`]):
    /// `None` for the probers that run no command.
    #[must_use]
    pub fn exit_code(&self) -> Option<i32> {
        self.exec().map(|exec| exec.exit_code)
    }

    /// A failed outcome for a probe that never started, such as one refused
    /// by the in-flight limit after waiting `waited`.
    #[must_use]
    pub fn not_started(failure: Failure, waited: Duration) -> Self {
        let mut outcome = Self::new(Some(failure), Detail::NotRun);
        outcome.duration = waited;
        outcome
    }

    /// The TCP detail, made one if it was another: for tests that build
    /// outcomes by hand.
    #[cfg(test)]
    pub(crate) fn tcp_mut(&mut self) -> &mut TcpDetail {
        if !matches!(self.detail, Detail::Tcp(_)) {
            self.detail = Detail::Tcp(TcpDetail::default());
        }
        match &mut self.detail {
            Detail::Tcp(detail) => detail,
            _ => unreachable!("made a TCP detail just above"),
        }
    }

    /// The outcome of a probe that the module's target policy refused.
    pub(crate) fn denied(refusal: &PolicyRefusal) -> Self {
        let mut outcome = Self::not_started(
            Failure::new(Reason::Local, refusal.to_string()),
            Duration::ZERO,
        );
        outcome.denied_by_policy = true;
        outcome
    }
}

/// [`Outcome::not_started`] for a probe with `module`: for `exec`, with
/// the exit code -1, so that `probe_exec_exit_code` is there whatever
/// stopped the command from running.
pub(crate) fn not_started_for(module: &Module, failure: Failure, waited: Duration) -> Outcome {
    let mut outcome = Outcome::not_started(failure, waited);
    if let Prober::Exec(_) = module.prober() {
        outcome.detail = Detail::Exec(ExecDetail::NOT_RUN);
    }
    outcome
}

/// A number one of a prober's series shows: a count, or a measure
/// (seconds, an exit code), which the exposition writes differently.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Number {
    Count(u64),
    Measure(f64),
}

/// Where a prober's own series go in `/probe`'s answer: each variant is
/// the shared series they follow. The answer's order never changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// After `probe_tcp_handshake_duration_seconds`.
    Handshake,
    /// After `probe_ip_addr_hash`.
    Address,
    /// After `probe_failure_reason`, at the end.
    Reasons,
}

/// Where a prober writes its own series: `metrics::probe` implements it
/// over the exposition writer, which this layer cannot name.
pub(crate) trait Series {
    /// A gauge without labels.
    fn gauge(&mut self, name: &'static str, help: &'static str, value: Number);
    /// `probe_icmp_error_info` for `icmp`.
    fn icmp_error(&mut self, icmp: &IcmpError);
    /// An info series `<name>_info` (OpenMetrics: family `name` of type
    /// info) with `labels` and the value 1; the values are escaped.
    fn info(&mut self, name: &'static str, help: &'static str, labels: &[(&str, &str)]);
    /// A gauge with `labels`; the values are escaped.
    fn labelled_gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: Number,
    );
}

/// Writes the series of `module`'s prober that go in `slot`, with the
/// values of `outcome`. Which series depends on the module alone, so that
/// a module's set never changes from probe to probe; a probe that did not
/// run writes its prober's series at their zero.
pub(crate) fn write_series(module: &Module, outcome: &Outcome, slot: Slot, out: &mut dyn Series) {
    match module.prober() {
        Prober::TcpHalfopen(options) | Prober::TcpConnect(options) => {
            tcp::write_series(options, outcome.tcp(), slot, out);
        }
        Prober::Tcp(probe) => {
            tcp::write_series(&probe.tcp, outcome.tcp(), slot, out);
            session::write_series(probe, outcome.session(), slot, out);
        }
        Prober::Exec(_) => exec::write_series(outcome.exec(), slot, out),
    }
}

/// A prober's own step: each prober's file defines its steps and their
/// wording ([`TcpStep`], [`ExecStep`]); the step log knows only the steps
/// every prober may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ProberStep {
    Tcp(TcpStep),
    Exec(ExecStep),
    Session(SessionStep),
}

impl Wording for ProberStep {
    fn write(&self, f: &mut fmt::Formatter<'_>, show_commands: bool) -> fmt::Result {
        match self {
            Self::Tcp(step) => step.write(f, show_commands),
            Self::Exec(step) => step.write(f, show_commands),
            Self::Session(step) => step.write(f, show_commands),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Self::Tcp(step) => step.heap_bytes(),
            Self::Exec(step) => step.heap_bytes(),
            Self::Session(step) => step.heap_bytes(),
        }
    }

    fn compact(&mut self) {
        match self {
            Self::Tcp(step) => step.compact(),
            Self::Exec(step) => step.compact(),
            Self::Session(step) => step.compact(),
        }
    }

    fn bound(&mut self) -> Option<Self> {
        match self {
            Self::Tcp(step) => step.bound().map(Self::Tcp),
            Self::Exec(step) => step.bound().map(Self::Exec),
            Self::Session(step) => step.bound().map(Self::Session),
        }
    }
}

impl From<TcpStep> for Step {
    fn from(step: TcpStep) -> Self {
        Self::Prober(ProberStep::Tcp(step))
    }
}

impl From<ExecStep> for Step {
    fn from(step: ExecStep) -> Self {
        Self::Prober(ProberStep::Exec(step))
    }
}

impl From<SessionStep> for Step {
    fn from(step: SessionStep) -> Self {
        Self::Prober(ProberStep::Session(step))
    }
}

/// One step of a probe: a shared one, or a prober's own.
pub(crate) type Step = steplog::Step<ProberStep>;
/// A probe's log of its steps, or nothing when disabled.
pub(crate) type StepLog = steplog::StepLog<ProberStep>;
/// The steps of one finished probe.
pub(crate) type Steps = steplog::Steps<ProberStep>;

/// A series a prober adds to each scheduled target of its modules on
/// `/metrics`: its family, and how one target's sample is written from
/// what the target keeps ([`Kept`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TargetSeries {
    /// The family's name, type and help.
    pub(crate) family: TargetFamily,
    /// Writes the target's sample, or nothing: a target of another
    /// prober has none, and a prober may have nothing to say yet.
    pub(crate) sample: fn(&Kept, &mut dyn TargetSample),
}

/// The family of a [`TargetSeries`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum TargetFamily {
    /// A gauge.
    Gauge {
        name: &'static str,
        help: &'static str,
    },
    /// A counter; the exposition adds `_total` to its sample.
    Counter {
        name: &'static str,
        help: &'static str,
    },
    /// `probe_icmp_error_info`, named and written by the metrics.
    IcmpError,
    /// An info series: `name` without `_info`, which the exposition adds.
    Info {
        name: &'static str,
        help: &'static str,
    },
}

/// Where a [`TargetSeries`] writes one target's sample: `metrics::scheduled`
/// implements it over the exposition writer, after the target's labels.
pub(crate) trait TargetSample {
    /// The sample of a gauge or counter.
    fn number(&mut self, value: Number);
    /// The `probe_icmp_error_info` sample for `icmp`.
    fn icmp_error(&mut self, icmp: &IcmpError);
    /// The sample of an info series ([`TargetFamily::Info`]) with
    /// `labels` after the target's, and the value 1.
    fn info(&mut self, labels: &[(&str, &str)]);
    /// The sample of a gauge with `labels` after the target's.
    fn labelled_number(&mut self, labels: &[(&str, &str)], value: Number);
}

/// Every prober's series of scheduled targets, in the order `/metrics`
/// writes them after the shared ones. A new prober adds its own at the
/// end, so that the order of what exists never changes.
pub(crate) const TARGET_SERIES: [TargetSeries; 14] = [
    tcp::RTT_SERIES,
    tcp::SYN_RETRANSMITS_SERIES,
    exec::EXIT_CODE_SERIES,
    tcp::ICMP_ERROR_SERIES,
    session::series::REGEX_SERIES,
    session::series::BYTES_SERIES,
    session::series::EXPECT_SERIES,
    session::series::EARLIEST_EXPIRY_SERIES,
    session::series::LAST_CHAIN_EXPIRY_SERIES,
    session::series::LAST_CHAIN_SERIES,
    session::series::TLS_VERSION_SERIES,
    session::series::TLS_CIPHER_SERIES,
    tcp::PORT_ANSWER_SERIES,
    tcp::TRACE_LAST_HOP_SERIES,
];

/// What a scheduled target keeps of its prober's details from probe to
/// probe, for its [`TARGET_SERIES`]. Its variant is its module's prober
/// (a reload that changes the module makes a new target), so a target
/// has its prober's series from before its first probe on.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kept {
    /// A TCP module's: the kernel's RTT, SYN retransmits, the ICMP error.
    Tcp(tcp::TcpKept),
    /// An `exec` module's: the exit code.
    Exec(exec::ExecKept),
    /// A `prober: tcp` session module's: its connection's, and what its
    /// TLS handshake and dialogue found.
    Session(session::SessionKept),
}

impl Default for Kept {
    /// As for the default module, `tcp_halfopen`, before any probe.
    fn default() -> Self {
        Self::Tcp(tcp::TcpKept::default())
    }
}

impl Kept {
    /// What a target of `module` keeps before its first probe.
    pub(crate) fn new(module: &Module) -> Self {
        match module.prober() {
            Prober::TcpHalfopen(_) | Prober::TcpConnect(_) => Self::default(),
            Prober::Tcp(probe) if probe.is_session() => {
                Self::Session(session::SessionKept::default())
            }
            Prober::Tcp(_) => Self::default(),
            Prober::Exec(_) => Self::Exec(exec::ExecKept::default()),
        }
    }

    /// Takes in what the prober reported of one probe.
    pub(crate) fn record(&mut self, outcome: &Outcome) {
        match self {
            Self::Tcp(kept) => kept.record(outcome.tcp()),
            Self::Exec(kept) => kept.record(outcome.exec()),
            Self::Session(kept) => kept.record(outcome.session()),
        }
    }
}

/// The least share of its timeout a probe must have left when it sends its
/// SYN, so that a `timeout` means the target really had time to answer.
/// Time eaten before that by the exporter's queue makes the probe fail as
/// `local`, by a slow name server as `dns`.
pub(crate) const MIN_WIRE_SHARE: f64 = 0.5;

/// The time a probe has: when it must end, and the last moment at which
/// it may still send its SYN (see [`MIN_WIRE_SHARE`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Budget {
    /// When the probe must have an outcome.
    pub(crate) deadline: Instant,
    /// After this, too little time is left for an honest `timeout`.
    pub(crate) last_start: Instant,
    /// The whole timeout, from when the probe was asked for.
    pub(crate) timeout: Duration,
}

impl Budget {
    /// The budget of a probe asked for at `asked` with `timeout`.
    #[must_use]
    pub(crate) fn new(asked: Instant, timeout: Duration) -> Self {
        Self {
            deadline: asked + timeout,
            last_start: asked + timeout.mul_f64(1.0 - MIN_WIRE_SHARE),
            timeout,
        }
    }
}

/// Why `module` could never probe `target` as written, or `None`: an IP
/// literal of a family that the TCP options forbid (see
/// [`resolve::family_refusal`]). `/probe` answers it with 400; scheduled
/// targets and groups fail it as `local` when it runs.
pub(crate) fn refusal_as_written(module: &Module, target: &Target) -> Option<String> {
    match (module.tcp(), &target.host) {
        (Some(options), crate::target::Host::Ip(ip)) => resolve::family_refusal(*ip, options),
        _ => None,
    }
}

/// What every probe of an exporter (or of a library caller) shares: the
/// resolver and its cache, the guard that counts half-open closes, and
/// the process groups of the commands running now. Cheap to clone (three
/// `Arc`s), so that the runner holds one and hands it to each probe.
#[derive(Clone, Debug)]
pub(crate) struct Context {
    /// Looks names up.
    pub(crate) resolver: Arc<Resolver>,
    /// Counts every half-open close, for `/metrics`.
    pub(crate) closes: Arc<HalfOpenCloses>,
    /// Holds the process group of every `exec` command running.
    pub(crate) groups: Arc<ProcessGroups>,
    /// The TLS setup of each `tls_config` that shook hands.
    pub(crate) tls: Arc<tls::TlsSetups>,
    /// The raw engine of `engine: raw` modules, started by their first
    /// probe, with the source ports it may use.
    pub(crate) raw: Arc<raw::RawEngineSlot>,
}

impl Context {
    /// A context resolving with `resolver`, with a guard and process
    /// groups of its own.
    pub(crate) fn new(resolver: impl Into<Arc<Resolver>>) -> Self {
        Self {
            resolver: resolver.into(),
            closes: Arc::default(),
            groups: Arc::default(),
            tls: Arc::default(),
            raw: Arc::new(raw::RawEngineSlot::new(
                crate::settings::DEFAULT_RAW_SOURCE_PORTS,
            )),
        }
    }
}

/// Runs one probe of `target` with `module` within `budget`, with what
/// probes share in `context`, recording its steps in `steplog`.
/// Without a target only an `exec` module whose command holds no
/// placeholder can probe (the config and `/probe` see to it); any other
/// fails as `local`.
pub(crate) async fn run(
    module: &Module,
    target: Option<&Target>,
    context: &Context,
    budget: Budget,
    steplog: &mut StepLog,
) -> Outcome {
    let started = Instant::now();
    steplog.log(|| Step::Probing {
        prober: module.prober().name(),
        timeout: budget.timeout,
        left: budget.deadline.saturating_duration_since(started),
    });
    let mut outcome = match (module.prober(), target) {
        (Prober::TcpHalfopen(options) | Prober::TcpConnect(options), Some(target)) => {
            let half_open = matches!(module.prober(), Prober::TcpHalfopen(_));
            let tcp = tcp::Tcp {
                handshake: tcp::Handshake::of(half_open, options),
                options,
                policy: module.target_policy(),
            };
            if options.ip_addresses == IpAddresses::All {
                addresses::probe(tcp, target, context, budget, steplog).await
            } else {
                tcp::probe(tcp, target, context, budget, steplog).await
            }
        }
        // A session never runs with an expect_port other than open (the
        // config refuses it); should a library caller build one, the
        // negative check wins and the probe stays half-open.
        (Prober::Tcp(probe), Some(target))
            if probe.is_session() && probe.tcp.expect_port == ExpectPort::Open =>
        {
            let policy = module.target_policy();
            session::probe(probe, policy, target, context, budget, steplog).await
        }
        (Prober::Tcp(probe), Some(target)) => {
            let tcp = tcp::Tcp {
                handshake: tcp::Handshake::of(probe.half_open, &probe.tcp),
                options: &probe.tcp,
                policy: module.target_policy(),
            };
            if probe.tcp.ip_addresses == IpAddresses::All {
                addresses::probe(tcp, target, context, budget, steplog).await
            } else {
                tcp::probe(tcp, target, context, budget, steplog).await
            }
        }
        // Without a target, only a command without placeholders runs.
        (Prober::Exec(options), _)
            if target.is_some() || module.why_a_target_is_needed().is_none() =>
        {
            // The command resolves names itself: the target is checked
            // as written. A command without a target has none to check.
            match module
                .target_policy()
                .zip(target)
                .map(|(policy, target)| policy.check_unresolved(target))
            {
                Some(Err(refusal)) => {
                    let mut outcome = Outcome::denied(&refusal);
                    outcome.detail = Detail::Exec(ExecDetail::NOT_RUN);
                    outcome
                }
                _ => exec::probe(options, target, &context.groups, budget, steplog).await,
            }
        }
        _ => not_started_for(
            module,
            Failure::new(
                Reason::Local,
                format!(
                    "no target given, and {}",
                    module.why_a_target_is_needed().unwrap_or_default()
                ),
            ),
            Duration::ZERO,
        ),
    };
    outcome.duration = started.elapsed();
    steplog.log(|| match outcome.failure {
        None => Step::Succeeded(outcome.duration),
        Some(_) => Step::Failed,
    });
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_labels_follow_the_reason_order() {
        assert_eq!(RESULTS[result_index(None)], "success");
        for reason in Reason::ALL {
            assert_eq!(RESULTS[result_index(Some(reason))], reason.as_str());
        }
    }
}
