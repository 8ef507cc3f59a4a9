//! The [`Checker`]: the exporter's probe, exec and DNS threads and its
//! limits, for Rust programs that check many targets without the HTTP
//! server. The [`crate::Exporter`] runs every probe on one of its own.
//!
//! It is the Rust answer to tcp-shaker's `NewChecker`, `CheckingLoop` and
//! `CheckAddr`: the threads start once, in [`CheckerBuilder::build`], and
//! every [`Checker::check`], from any task, hands its probe to them.

#![forbid(unsafe_code)]

use crate::config::Module;
use crate::modules::LoadedModule;
use crate::prober::{Outcome, Resolver, StepLog};
use crate::runner::ProbeRunner;
use crate::settings::{
    DEFAULT_MAX_EXEC, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_SESSIONS, DEFAULT_RAW_SOURCE_PORTS,
};
use crate::target::{Target, TargetError};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;

/// Checks targets on threads of its own, started once and shared by every
/// check, under the limits the exporter's probes run under.
///
/// [`crate::check`] probes in the calling task and starts nothing; it
/// suits a command-line tool or a test that checks a few targets once. A
/// `Checker` suits a program that checks many targets, or checks them
/// again and again:
///
/// - **The probe thread.** A half-open probe must send its RST before the
///   kernel's delayed ACK (about 200 ms after the SYN-ACK) or the
///   handshake completes and the application accepts a connection. The
///   checker's probes run on a thread that does nothing else, so a busy
///   runtime cannot delay that close. `exec` commands start on a thread of
///   their own, and names are resolved on a third (the DNS thread), with
///   one resolver and its cache for every check.
/// - **Limits.** At most [`max_in_flight`](CheckerBuilder::max_in_flight)
///   probes at once (each holds a socket;
///   [`DEFAULT_MAX_IN_FLIGHT`] unless set), and at most
///   [`max_exec`](CheckerBuilder::max_exec) commands. A check waits for a
///   slot; if it waits past half its module's timeout it does not start,
///   and fails as [`Reason::Local`](crate::Reason::Local) saying how long
///   it queued, so that `timeout` always means the target did not answer.
/// - **Its threads stop when it goes.** Clones share the threads and the
///   limits. Dropping the last clone stops the threads: outside a tokio
///   runtime it waits for them to end; inside one, they end on their own
///   within a second. No `exec` command outlives it either: the process
///   group of every command still running is killed.
///
/// ```
/// use synack_exporter::{Checker, Module};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let checker = Checker::builder().max_in_flight(100).build()?;
/// let module = Module::tcp_halfopen();
/// // A port that listens, and whose application will accept nothing.
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let target = listener.local_addr()?.to_string();
///
/// let mut checks = tokio::task::JoinSet::new();
/// for _ in 0..10 {
///     let (checker, module, target) = (checker.clone(), module.clone(), target.clone());
///     checks.spawn(async move { checker.check(&target, &module).await });
/// }
/// while let Some(done) = checks.join_next().await {
///     let outcome = done??;
///     assert!(outcome.is_success(), "{:?}", outcome.failure);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Checker {
    runner: Arc<ProbeRunner>,
}

/// The limits and name servers of a [`Checker`], before its threads start.
#[derive(Clone, Debug)]
#[must_use]
pub struct CheckerBuilder {
    max_in_flight: usize,
    max_exec: usize,
    max_sessions: usize,
    raw_source_ports: RangeInclusive<u16>,
    dns_servers: Vec<SocketAddr>,
}

impl Default for CheckerBuilder {
    fn default() -> Self {
        Self {
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_exec: DEFAULT_MAX_EXEC,
            max_sessions: DEFAULT_MAX_SESSIONS,
            raw_source_ports: DEFAULT_RAW_SOURCE_PORTS,
            dns_servers: Vec::new(),
        }
    }
}

impl CheckerBuilder {
    /// Probes allowed at once, at least 1 ([`DEFAULT_MAX_IN_FLIGHT`]
    /// unless set, as the exporter's `--probe.max-in-flight`). Each probe
    /// in flight holds a socket, so the limit keeps a storm of checks
    /// within the open file limit; a check that finds no slot before its
    /// deadline fails as `local`.
    pub fn max_in_flight(mut self, probes: usize) -> Self {
        self.max_in_flight = probes.max(1);
        self
    }

    /// Commands of `exec` modules allowed to run at once, at least 1
    /// ([`DEFAULT_MAX_EXEC`] unless set), within
    /// [`max_in_flight`](Self::max_in_flight).
    pub fn max_exec(mut self, commands: usize) -> Self {
        self.max_exec = commands.max(1);
        self
    }

    /// Sessions allowed at once, at least 1 ([`DEFAULT_MAX_SESSIONS`]
    /// unless set, as the exporter's `--probe.max-sessions`): `prober: tcp`
    /// probes with TLS or `query_response`, within
    /// [`max_in_flight`](Self::max_in_flight).
    pub fn max_sessions(mut self, sessions: usize) -> Self {
        self.max_sessions = sessions.max(1);
        self
    }

    /// The source ports of the raw engine, for modules with `engine: raw`
    /// ([`DEFAULT_RAW_SOURCE_PORTS`] unless set, as the exporter's
    /// `--probe.raw-source-ports`): one per raw probe in flight, held as
    /// probes need them; a raw probe that finds none free fails as `local`.
    pub fn raw_source_ports(mut self, ports: RangeInclusive<u16>) -> Self {
        self.raw_source_ports = ports;
        self
    }

    /// Name servers that replace those of `/etc/resolv.conf`; empty (the
    /// default) for resolv.conf's own.
    pub fn dns_servers(mut self, servers: Vec<SocketAddr>) -> Self {
        self.dns_servers = servers;
        self
    }

    /// Reads `/etc/resolv.conf` and `/etc/hosts` (problems with them are
    /// logged, not returned: IP literals and names in `/etc/hosts` still
    /// work) and starts the probe, exec and DNS threads.
    ///
    /// # Errors
    /// When the operating system refuses to start a thread; those started
    /// before it stop again.
    pub fn build(self) -> std::io::Result<Checker> {
        let resolver = Resolver::from_system(&self.dns_servers);
        let runner = ProbeRunner::new(self.max_in_flight, resolver)?
            .with_max_exec(self.max_exec)
            .with_max_sessions(self.max_sessions)
            .with_raw_source_ports(self.raw_source_ports);
        Ok(Checker {
            runner: Arc::new(runner),
        })
    }
}

impl Checker {
    /// A checker with the default limits ([`DEFAULT_MAX_IN_FLIGHT`] probes,
    /// [`DEFAULT_MAX_EXEC`] commands at once) and the name servers of
    /// `/etc/resolv.conf`; see
    /// [`CheckerBuilder::build`].
    ///
    /// # Errors
    /// When the operating system refuses to start a thread.
    pub fn new() -> std::io::Result<Self> {
        Self::builder().build()
    }

    /// Settings at their defaults.
    pub fn builder() -> CheckerBuilder {
        CheckerBuilder::default()
    }

    /// Probes `target` (`host:port`) once with `module`, within its
    /// timeout, on the checker's threads. Callable from any task of any
    /// runtime, by any number of tasks at once.
    ///
    /// Dropping the future cancels the probe: its socket closes with RST,
    /// an `exec` command's process group is killed, and its slot is free
    /// at once.
    ///
    /// # Errors
    /// A [`TargetError`] when `target` is not a valid `host:port`. A port
    /// that is down is not an error: it is an [`Outcome`] with a failure.
    pub async fn check(&self, target: &str, module: &Module) -> Result<Outcome, TargetError> {
        let target = Target::parse(target)?;
        let module = Arc::new(LoadedModule::uncounted(module.clone()));
        let timeout = module.module.timeout();
        Ok(self
            .runner
            .run(&module, Some(&target), timeout, &mut StepLog::disabled())
            .await)
    }

    /// The runner behind it, for the exporter's own callers: `/probe`,
    /// the scheduler and group checks.
    pub(crate) fn runner(&self) -> &Arc<ProbeRunner> {
        &self.runner
    }
}
