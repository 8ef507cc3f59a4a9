//! Runs probes under the exporter's shared rules: the in-flight limit, the
//! deadline, the module's result counters, and the probe thread.
//!
//! Every probe, whether from `/probe`, the scheduler or a group check,
//! goes through [`ProbeRunner::run`], so the limit is shared and every
//! probe that ends is counted once; a cancelled one (below) is not.
//!
//! **Honest reasons under overload.** A probe counts from the moment it is
//! asked for, and its deadline is fixed then ([`Budget`]). If it queues
//! (for a slot, or for the probe thread) until less than
//! [`MIN_WIRE_SHARE`] of its timeout is left, it does not start: it fails
//! as `local` as soon as that point passes, saying how long it queued and
//! why. (If a slow name server eats the time instead, the prober fails it
//! as `dns`.) So `timeout` always means the target had its SYN on the wire
//! for at least that share of the timeout and did not answer, and an
//! exporter that is itself the bottleneck shows up as `local`, not as
//! targets down.
//!
//! **Cancellation.** A caller that stops waiting (a `/probe` client that
//! disconnected, so hyper dropped the request) cancels the probe: its
//! task is aborted, the socket is dropped, which closes it with RST, and
//! the slot is free at once.
//!
//! Probes run on a thread of their own, with a single-threaded tokio
//! runtime that does nothing else. A half-open probe must close its socket
//! before the kernel's delayed ACK (about 200 ms after the SYN-ACK) or the
//! handshake completes and the application accepts a connection. On the
//! HTTP workers, thousands of concurrent scrapes delayed that close past
//! 200 ms (measured: 2 626 of 288 000 probes accepted under
//! `wrk -c2000`); on the probe thread the only work between a wake-up
//! and the close is other probes' equally short steps. Every half-open
//! socket that reached SYN-ACK counts its time from the SYN-ACK to the
//! close into [`HalfOpenCloses`], also when its probe was abandoned, so
//! that `/metrics` shows it if this stops holding.
//!
//! For the same reason DNS queries run on a second thread, the DNS
//! thread, which the runner starts with the exporter's one [`Resolver`];
//! the probe thread only waits for their answers. See
//! [`crate::prober::resolve`] for why.
//!
//! **Exec probes** run on a third thread, the exec thread, never on the
//! probe thread: starting a process blocks the thread that starts it
//! until the child has exec'd, which would delay the half-open closes
//! waiting behind it. [`ProbeRunner::run`] sends them there instead of to
//! the probe thread, and [`ProbeRunner::run_in_place`], which the
//! scheduler calls on the probe thread, hops there for them. They hold an
//! in-flight slot like every probe, and before it an exec slot: at most
//! `--exec.max-concurrent` commands run at once, so that a scrape storm
//! cannot fork-bomb the host. The exec slot comes first, so that exec
//! probes queueing for their own limit hold no in-flight slot that TCP
//! probes could use. Queueing for either limit ends as above: past
//! [`MIN_WIRE_SHARE`] of the timeout, the probe fails as `local`.
//!
//! **Sessions** (`prober: tcp` with TLS or `query_response`) run on a
//! fourth thread, the sessions thread, for the same reason: a TLS
//! handshake costs a millisecond of CPU or so, and a dialogue reads and
//! writes for as long as the target takes, none of which may sit between
//! a half-open SYN-ACK and its RST. They hold a session slot before
//! their in-flight slot, as exec probes hold an exec slot: at most
//! `--probe.max-sessions` at once, each holding at most a 64 KiB line
//! buffer and rustls' buffers (about 100 KiB).
//!
//! **No command outlives the exporter.** The runner owns the registry of
//! the commands' process groups ([`ProcessGroups`]).
//! [`ProbeRunner::stop_commands`], called when the exporter stops serving,
//! kills every group still running, synchronously, and starts no command
//! after it; dropping the runner does the same. Cancelling the probes
//! alone was not enough: a cancelled probe kills its group only when the
//! exec thread gets to drop it, and the process may have exited by then.

#![forbid(unsafe_code)]

use crate::config::Prober;
use crate::modules::LoadedModule;
use crate::prober::{
    self, Budget, Failure, HalfOpenCloses, MIN_WIRE_SHARE, Outcome, Reason, Resolver, Step, StepLog,
};
use crate::settings::{DEFAULT_MAX_EXEC, DEFAULT_MAX_SESSIONS};
use crate::target::Target;
use crate::task::AbortOnDrop;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, SemaphorePermit, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Runs probes within the in-flight limit, on the probe thread, and counts them.
#[derive(Debug)]
pub(crate) struct ProbeRunner {
    rules: Rules,
    probe_thread: RuntimeThread,
    /// Runs the `exec` probes, away from the probe thread.
    exec_thread: RuntimeThread,
    /// Runs the sessions (TLS, `query_response`), away from the probe thread.
    sessions_thread: RuntimeThread,
    /// Runs the resolver's queries; kept to stop it with the runner.
    _dns_thread: RuntimeThread,
}

/// The limits and the resolver, cheap to clone onto the probe thread.
#[derive(Clone, Debug)]
struct Rules {
    slots: Arc<Semaphore>,
    max_in_flight: usize,
    /// Commands allowed to run at once, `--exec.max-concurrent`.
    exec_slots: Arc<Semaphore>,
    max_exec: usize,
    /// Sessions allowed at once, `--probe.max-sessions`.
    session_slots: Arc<Semaphore>,
    max_sessions: usize,
    /// Probes holding a slot now: `synack_exporter_probes_in_flight`.
    in_flight: Arc<AtomicUsize>,
    /// The resolver, how soon each half-open success closed after its
    /// SYN-ACK, and the process groups of the commands running now (at
    /// most `max_exec`).
    context: prober::Context,
}

impl ProbeRunner {
    /// A runner allowing at most `max_in_flight` probes at once, resolving
    /// names with `resolver`, whose queries run on the runner's DNS thread.
    ///
    /// At most [`DEFAULT_MAX_EXEC`] commands and [`DEFAULT_MAX_SESSIONS`]
    /// sessions run at once; see [`with_max_exec`](Self::with_max_exec)
    /// and [`with_max_sessions`](Self::with_max_sessions).
    ///
    /// # Errors
    /// When the operating system refuses to start the probe thread, the
    /// exec thread, the sessions thread or the DNS thread (or their
    /// runtimes), which leaves
    /// nothing to probe with. The threads started before stop again.
    pub(crate) fn new(max_in_flight: usize, resolver: Resolver) -> std::io::Result<Self> {
        let dns_thread = RuntimeThread::start("synack-dns")?;
        let exec_thread = RuntimeThread::start("synack-exec")?;
        let sessions_thread = RuntimeThread::start("synack-sessions")?;
        let resolver = resolver.run_on(dns_thread.handle.clone());
        let probe_thread = RuntimeThread::start("synack-probes")?;
        // First on the thread, so before any probe; only in benchmark
        // builds, and nothing without the benchmark's variable.
        #[cfg(feature = "bench")]
        drop(
            probe_thread
                .handle
                .spawn(async { crate::sys::enter_bench_probe_netns() }),
        );
        Ok(Self {
            rules: Rules {
                slots: Arc::new(Semaphore::new(max_in_flight)),
                max_in_flight,
                exec_slots: Arc::new(Semaphore::new(DEFAULT_MAX_EXEC)),
                max_exec: DEFAULT_MAX_EXEC,
                session_slots: Arc::new(Semaphore::new(DEFAULT_MAX_SESSIONS)),
                max_sessions: DEFAULT_MAX_SESSIONS,
                in_flight: Arc::default(),
                context: prober::Context::new(resolver),
            },
            probe_thread,
            exec_thread,
            sessions_thread,
            _dns_thread: dns_thread,
        })
    }

    /// The same runner, allowing at most `max_exec` (at least 1) `exec`
    /// commands to run at once. Only before the first probe.
    pub(crate) fn with_max_exec(mut self, max_exec: usize) -> Self {
        let max_exec = max_exec.max(1);
        self.rules.exec_slots = Arc::new(Semaphore::new(max_exec));
        self.rules.max_exec = max_exec;
        self
    }

    /// The same runner, allowing at most `max_sessions` (at least 1)
    /// sessions at once. Only before the first probe.
    pub(crate) fn with_max_sessions(mut self, max_sessions: usize) -> Self {
        let max_sessions = max_sessions.max(1);
        self.rules.session_slots = Arc::new(Semaphore::new(max_sessions));
        self.rules.max_sessions = max_sessions;
        self
    }

    /// Gives the raw engine (modules with `engine: raw`) these source
    /// ports instead of the default range. Before any probe: the engine
    /// starts with the first raw probe.
    pub(crate) fn with_raw_source_ports(mut self, ports: std::ops::RangeInclusive<u16>) -> Self {
        self.rules.context.raw = Arc::new(prober::raw::RawEngineSlot::new(ports));
        self
    }

    /// Kills the process group of every command still running and starts
    /// no command from now on: an `exec` probe asked for later fails as
    /// `local`. Returns how many groups it killed. For shutdown; see the
    /// module docs.
    pub(crate) fn stop_commands(&self) -> usize {
        self.rules.context.groups.stop()
    }

    /// Forgets the TLS setups built so far: each `tls_config`'s files
    /// are read again at its next handshake. For a config reload.
    pub(crate) fn forget_tls_setups(&self) {
        self.rules.context.tls.clear();
    }

    /// The resolver every probe of this runner uses.
    pub(crate) fn resolver(&self) -> &Resolver {
        &self.rules.context.resolver
    }

    /// How many probes hold a slot now.
    pub(crate) fn in_flight(&self) -> usize {
        self.rules.in_flight.load(Ordering::Relaxed)
    }

    /// What the raw engine has sent and received so far.
    pub(crate) fn raw_engine(&self) -> prober::raw::RawEngineValues {
        self.rules.context.raw.values()
    }

    /// The close delays of the half-open successes of every probe so far.
    pub(crate) fn half_open_closes(&self) -> &HalfOpenCloses {
        &self.rules.context.closes
    }

    /// Probes `target` with `module`, within `timeout`, on the thread of
    /// its kind of work ([`thread_for`]). Callable from
    /// any task. `None` for a target only suits an `exec` module whose
    /// command holds no placeholder (see [`prober::run`]).
    ///
    /// When the in-flight limit is reached the probe waits for a slot; if
    /// none frees up before the deadline it fails as `local`, because the
    /// limit is the exporter's, not the target's.
    pub(crate) async fn run(
        &self,
        module: &Arc<LoadedModule>,
        target: Option<&Target>,
        timeout: Duration,
        steplog: &mut StepLog,
    ) -> Outcome {
        let asked = Instant::now();
        let rules = self.rules.clone();
        let (job_module, target) = (Arc::clone(module), target.cloned());
        let mut job_trace = std::mem::replace(steplog, StepLog::disabled());
        let thread = match thread_for(module) {
            Thread::Probe => &self.probe_thread,
            Thread::Exec => &self.exec_thread,
            Thread::Sessions => &self.sessions_thread,
        };
        let job = thread.handle.spawn(async move {
            let outcome = rules
                .run(&job_module, target.as_ref(), asked, timeout, &mut job_trace)
                .await;
            (outcome, job_trace)
        });
        // Dropping this future (the client left) aborts the probe.
        let _cancel = AbortOnDrop::new(job.abort_handle());
        match job.await {
            Ok((outcome, job_trace)) => {
                *steplog = job_trace;
                outcome
            }
            Err(error) => {
                let detail = if error.is_panic() {
                    "the probe panicked (a bug; stderr has the panic message)"
                } else {
                    // Cancelled: the runner is being dropped, at shutdown.
                    "the probe thread stopped"
                };
                let outcome = prober::not_started_for(
                    &module.module,
                    Failure::new(Reason::Local, detail),
                    asked.elapsed(),
                );
                module.results.record(&outcome);
                outcome
            }
        }
    }

    /// Like [`run`](Self::run), but probes in the calling task, saving the
    /// hop between threads. Only for tasks started with
    /// [`spawn_on_probe_thread`](Self::spawn_on_probe_thread): anywhere else
    /// the half-open close loses its protection from other work. An `exec`
    /// probe or a session still hops to its thread, as [`run`](Self::run)
    /// does.
    pub(crate) async fn run_in_place(
        &self,
        module: &Arc<LoadedModule>,
        target: &Target,
        timeout: Duration,
        steplog: &mut StepLog,
    ) -> Outcome {
        if thread_for(module) != Thread::Probe {
            // Boxed, so that the scheduler's TCP probes do not carry the
            // larger future of the hop.
            return Box::pin(self.run(module, Some(target), timeout, steplog)).await;
        }
        self.rules
            .run(module, Some(target), Instant::now(), timeout, steplog)
            .await
    }

    /// Gives the probe thread real-time priority (`SCHED_RR`, priority 1),
    /// so that no ordinary thread, however busy or highly niced, can delay
    /// a half-open close past the delayed ACK.
    ///
    /// # Errors
    /// `EPERM` when neither `RLIMIT_RTPRIO` nor `CAP_SYS_NICE` allows it.
    pub(crate) async fn make_probe_thread_realtime(&self) -> std::io::Result<()> {
        self.probe_thread
            .handle
            .spawn(async { crate::sys::set_current_thread_realtime() })
            .await
            .map_err(std::io::Error::other)?
    }

    /// Starts `task` on the probe thread, for callers that probe over and
    /// over, such as the scheduler, and use [`run_in_place`](Self::run_in_place).
    pub(crate) fn spawn_on_probe_thread<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.probe_thread.handle.spawn(task)
    }
}

impl Rules {
    /// Runs one probe asked for at `asked` with `timeout`, unless queueing
    /// left it too little time; see the module docs.
    async fn run(
        &self,
        module: &LoadedModule,
        target: Option<&Target>,
        asked: Instant,
        timeout: Duration,
        steplog: &mut StepLog,
    ) -> Outcome {
        let budget = Budget::new(asked, timeout);
        let thread = thread_for(module);
        let on_thread = Instant::now();
        // An exec probe or a session takes its own slot first; see the
        // module docs.
        let own = match thread {
            Thread::Probe => None,
            Thread::Exec => Some((&self.exec_slots, Limit::Exec(self.max_exec))),
            Thread::Sessions => Some((&self.session_slots, Limit::Sessions(self.max_sessions))),
        };
        let _own_slot = match own {
            Some((slots, limit)) => {
                match Self::slot(slots, limit, thread, on_thread, asked, budget).await {
                    Ok(slot) => Some(slot),
                    Err(failure) => return Self::refuse(module, failure, asked, steplog),
                }
            }
            None => None,
        };
        let limit = Limit::InFlight(self.max_in_flight);
        let _slot = match Self::slot(&self.slots, limit, thread, on_thread, asked, budget).await {
            Ok(slot) => slot,
            Err(failure) => return Self::refuse(module, failure, asked, steplog),
        };
        let _in_flight = InFlight::enter(&self.in_flight);
        let outcome = prober::run(&module.module, target, &self.context, budget, steplog).await;
        module.results.record(&outcome);
        outcome
    }
}

impl Rules {
    /// A permit of `slots`, or the `local` failure saying how long the
    /// probe queued and for what, once `budget.last_start` has passed.
    /// Waiting longer is pointless: the probe could not start any more.
    async fn slot(
        slots: &Semaphore,
        limit: Limit,
        thread: Thread,
        on_thread: Instant,
        asked: Instant,
        budget: Budget,
    ) -> Result<SemaphorePermit<'_>, Failure> {
        let slot = tokio::time::timeout_at(budget.last_start, slots.acquire()).await;
        let starting = Instant::now();
        match slot {
            // The semaphore is never closed, so only the timeout fails `slot`.
            Ok(Ok(slot)) if starting <= budget.last_start => Ok(slot),
            _ => {
                let queue = Queue {
                    thread,
                    for_thread: on_thread.saturating_duration_since(asked),
                    for_slot: starting.saturating_duration_since(on_thread),
                    timeout: budget.timeout,
                };
                Err(Failure::new(Reason::Local, queue.describe(limit)))
            }
        }
    }

    /// The outcome of a probe that queued too long to start, counted.
    fn refuse(
        module: &LoadedModule,
        failure: Failure,
        asked: Instant,
        steplog: &mut StepLog,
    ) -> Outcome {
        steplog.log(|| Step::Failed);
        let outcome = prober::not_started_for(&module.module, failure, asked.elapsed());
        module.results.record(&outcome);
        outcome
    }
}

impl Drop for ProbeRunner {
    /// Its threads stop without waiting for the probes they cancel, so the
    /// commands' groups are killed here, before the threads go.
    fn drop(&mut self) {
        self.stop_commands();
    }
}

/// Which of the runner's threads runs a probe: see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Thread {
    /// Half-open and connect probes, kept free of anything slow.
    Probe,
    /// `exec` probes, which start processes.
    Exec,
    /// Sessions: TLS handshakes and `query_response` dialogues.
    Sessions,
}

impl Thread {
    /// The thread's name in messages.
    fn name(self) -> &'static str {
        match self {
            Self::Probe => "probe thread",
            Self::Exec => "exec thread",
            Self::Sessions => "sessions thread",
        }
    }
}

/// The thread that runs the probes of `module`.
fn thread_for(module: &LoadedModule) -> Thread {
    match module.module.prober() {
        Prober::Exec(_) => Thread::Exec,
        Prober::Tcp(probe) if probe.is_session() => Thread::Sessions,
        _ => Thread::Probe,
    }
}

/// Counts a probe as in flight until dropped, also when the probe is
/// cancelled because its HTTP client went away.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// File descriptors kept for everything but probe sockets: HTTP
/// connections (so `/metrics` and `/-/healthy` still answer while probes
/// queue), the config file, `/proc` reads. A quarter of the limit, at
/// least 64 and at most 1024.
pub(crate) fn fd_reserve(nofile: u64) -> u64 {
    (nofile / 4).clamp(64, 1024)
}

/// How many probes may hold a socket at once: `--probe.max-in-flight`,
/// lowered when the open file limit could not hold that many sockets and
/// still keep [`fd_reserve`] for the HTTP side.
pub(crate) fn probe_slots(max_in_flight: usize, nofile: u64) -> usize {
    let for_probes = nofile.saturating_sub(fd_reserve(nofile)).max(1);
    max_in_flight.min(usize::try_from(for_probes).unwrap_or(usize::MAX))
}

/// Descriptors the exporter holds whatever its load, counted before HTTP
/// connections: stdio, the runtimes' epoll and event descriptors, the
/// listeners, the DNS sockets, and one config, web config or `/proc`
/// read at a time (an idle exporter holds 24; the rest is room for
/// reads); and what the raw engine holds beside its probes in flight.
const BASE_DESCRIPTORS: u64 = 32 + prober::raw::RAW_ENGINE_DESCRIPTORS;

/// How many HTTP connections may be open at once: `--web.max-connections`,
/// lowered when the descriptors that `probes` probe sockets and
/// [`BASE_DESCRIPTORS`] leave of the open file limit could not hold that
/// many. So `accept` never runs out of descriptors because of connections
/// and probes: the accept queue keeps draining, and `/metrics` is not
/// stuck in it behind connections the exporter cannot take.
pub(crate) fn connection_slots(max_connections: usize, nofile: u64, probes: usize) -> usize {
    let probes = u64::try_from(probes).unwrap_or(u64::MAX);
    let for_http = nofile
        .saturating_sub(probes)
        .saturating_sub(BASE_DESCRIPTORS)
        .max(1);
    max_connections.min(usize::try_from(for_http).unwrap_or(usize::MAX))
}

/// A limit that a probe queues for, with its size.
#[derive(Clone, Copy, Debug)]
enum Limit {
    /// `--probe.max-in-flight`.
    InFlight(usize),
    /// `--exec.max-concurrent`.
    Exec(usize),
    /// `--probe.max-sessions`.
    Sessions(usize),
}

/// How long a probe waited before it could start, and for what.
#[derive(Clone, Copy, Debug)]
struct Queue {
    /// The thread of the probe's kind ([`thread_for`]).
    thread: Thread,
    /// From the request to `thread` picking it up.
    for_thread: Duration,
    /// On `thread`, waiting for its slots (its own limit's, then an
    /// in-flight one).
    for_slot: Duration,
    timeout: Duration,
}

impl Queue {
    fn waited(self) -> Duration {
        self.for_thread + self.for_slot
    }

    fn describe(self, limit: Limit) -> String {
        let thread = self.thread.name();
        let cause = if self.for_slot >= self.for_thread {
            let (size, slot, raise) = match limit {
                Limit::InFlight(size) => (
                    size,
                    "probe",
                    "--probe.max-in-flight or lower the probe rate",
                ),
                Limit::Exec(size) => (
                    size,
                    "exec",
                    "--exec.max-concurrent or lower the rate of exec probes",
                ),
                Limit::Sessions(size) => (
                    size,
                    "session",
                    "--probe.max-sessions or lower the rate of TLS and query_response probes",
                ),
            };
            let busy = if size == 1 {
                format!("the only {slot} slot was busy")
            } else {
                format!("all {size} {slot} slots were busy")
            };
            format!("{busy}; raise {raise}")
        } else {
            format!("the {thread} was busy (CPU starvation?); give the exporter more CPU")
        };
        format!(
            "not started: queued {:.3}s of the {:.3}s timeout ({:.3}s for the {thread}, {:.3}s for a slot), \
             leaving less than {:.0}% of it for the target to answer: {cause}",
            self.waited().as_secs_f64(),
            self.timeout.as_secs_f64(),
            self.for_thread.as_secs_f64(),
            self.for_slot.as_secs_f64(),
            MIN_WIRE_SHARE * 100.0,
        )
    }
}

/// A thread running a single-threaded tokio runtime for one kind of work
/// only: probes, or DNS queries. Dropping it stops the runtime and joins
/// the thread.
#[derive(Debug)]
struct RuntimeThread {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RuntimeThread {
    fn start(name: &str) -> std::io::Result<Self> {
        let (stop, stopped) = oneshot::channel::<()>();
        let (started, runtime_handle) = std::sync::mpsc::sync_channel(1);
        // The runtime is built on its own thread: were it built here and
        // moved into a thread that then failed to start, it would be
        // dropped here, and dropping a runtime inside another one (the
        // caller's, when it builds a Checker or an Exporter from async
        // code) panics instead of returning the error.
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = started.send(Err(error));
                        return;
                    }
                };
                let _ = started.send(Ok(runtime.handle().clone()));
                let _ = runtime.block_on(stopped);
                // Probes still running are cancelled: their sockets close
                // with RST as they are dropped. So are DNS queries.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        let handle = runtime_handle.recv().unwrap_or_else(|_| {
            Err(std::io::Error::other(
                "the thread ended before its runtime started",
            ))
        })?;
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Joining from inside a runtime would block it; the thread ends on
        // its own within the shutdown timeout either way.
        if tokio::runtime::Handle::try_current().is_err()
            && let Some(thread) = self.thread.take()
        {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::modules::{Modules, ResultCounters};

    #[test]
    fn connections_fit_in_what_probes_leave_of_the_descriptors() {
        // What the exporter holds whatever its load, the raw engine's
        // descriptors beside its probes in flight among them.
        assert_eq!(BASE_DESCRIPTORS, 32 + 69);
        assert_eq!(connection_slots(1024, 512, 192), 219, "512 - 192 - 101");
        assert_eq!(
            connection_slots(1024, 512, 10),
            401,
            "few probes leave more"
        );
        assert_eq!(
            connection_slots(1024, 1_048_576, 4096),
            1024,
            "the flag rules"
        );
        assert_eq!(connection_slots(1024, 40, 20), 1, "never zero");
    }

    #[test]
    fn probe_slots_leave_a_reserve_of_descriptors() {
        assert_eq!(probe_slots(4096, 256), 192, "64 kept for HTTP");
        assert_eq!(probe_slots(4096, 1024), 768);
        assert_eq!(probe_slots(4096, 1_048_576), 4096, "the flag rules");
        assert_eq!(probe_slots(4096, 10), 1, "never zero");
    }

    /// The threads on which exec probes of `target` ran.
    fn exec_threads_of(target: &Target) -> Vec<Option<String>> {
        let started = crate::prober::exec::STARTED_ON.lock().unwrap();
        started
            .iter()
            .filter(|(of, _)| of.as_ref() == Some(target))
            .map(|(_, thread)| thread.clone())
            .collect()
    }

    #[test]
    fn exec_probes_never_run_on_the_probe_thread() {
        use crate::config::ProberKind;
        let config = Config::parse(
            "t.yml",
            "modules:\n  true:\n    prober: exec\n    exec: {command: [\"/bin/true\"]}\n",
        )
        .unwrap();
        let modules = Modules::load(&config, &ResultCounters::default());
        let module = Arc::clone(modules.get("true").unwrap());
        assert_eq!(module.module.prober().kind(), ProberKind::Exec);
        let runner = Arc::new(ProbeRunner::new(4, Resolver::from_system(&[])).unwrap());
        // A port of its own, so that other tests' probes do not count.
        let target = Target::parse("127.0.0.1:39177").unwrap();
        let timeout = Duration::from_secs(10);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let outcome = runner
                .run(&module, Some(&target), timeout, &mut StepLog::disabled())
                .await;
            assert!(outcome.is_success(), "{outcome:?}");
            // As the scheduler does: in place, from a task on the probe thread.
            let (in_place, in_place_target) = (Arc::clone(&runner), target.clone());
            let outcome = runner
                .spawn_on_probe_thread(async move {
                    assert_eq!(
                        std::thread::current().name(),
                        Some("synack-probes"),
                        "the test runs this task on the probe thread"
                    );
                    in_place
                        .run_in_place(&module, &in_place_target, timeout, &mut StepLog::disabled())
                        .await
                })
                .await
                .unwrap();
            assert!(outcome.is_success(), "{outcome:?}");
        });
        drop(runtime);
        let threads = exec_threads_of(&target);
        assert_eq!(
            threads,
            vec![Some("synack-exec".to_owned()); 2],
            "both exec probes ran on the exec thread"
        );
    }

    /// A `prober: tcp` module `banner` whose dialogue is a session (it
    /// expects `HELLO`, then sends `hi`), and `connect`, a plain full
    /// connect, which is not.
    fn session_modules() -> Modules {
        let config = Config::parse(
            "t.yml",
            r#"
modules:
  banner:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - expect: "^HELLO"
        - send: "hi"
  connect:
    prober: tcp
    timeout: 5s
    tcp: {preferred_ip_protocol: ip4, half_open: false}
"#,
        )
        .unwrap();
        Modules::load(&config, &ResultCounters::default())
    }

    /// A loopback server for `banner`, and what the test sees of it.
    struct Banner {
        target: Target,
        /// The connections that sent back `hi`, by their index.
        heard: std::sync::mpsc::Receiver<usize>,
        /// The connections accepted, by their index.
        accepted: tokio::sync::mpsc::UnboundedReceiver<usize>,
        /// Lets the held connections go on.
        release: Arc<tokio::sync::Notify>,
        server: JoinHandle<()>,
    }

    impl Banner {
        /// Accepts at most `connections` (5 s each at most) and greets
        /// each with `HELLO`; the first line it reads back, if `hi`, is
        /// reported on `heard`, then it reads to the end. The connections
        /// listed in `hold` are greeted only once `release` is notified,
        /// so that their sessions stay open until then.
        async fn start(connections: usize, hold: &'static [usize]) -> Self {
            use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let target = Target::parse(&listener.local_addr().unwrap().to_string()).unwrap();
            let (heard_tx, heard) = std::sync::mpsc::channel();
            let (accepted_tx, accepted) = tokio::sync::mpsc::unbounded_channel();
            let release = Arc::new(tokio::sync::Notify::new());
            let released = Arc::clone(&release);
            let bound = Duration::from_secs(5);
            let server = tokio::spawn(async move {
                for index in 0..connections {
                    let Ok(Ok((socket, _))) = tokio::time::timeout(bound, listener.accept()).await
                    else {
                        return;
                    };
                    let _ = accepted_tx.send(index);
                    let (heard, released) = (heard_tx.clone(), Arc::clone(&released));
                    tokio::spawn(tokio::time::timeout(bound, async move {
                        if hold.contains(&index) {
                            released.notified().await;
                        }
                        let mut socket = BufReader::new(socket);
                        socket.get_mut().write_all(b"HELLO\r\n").await.ok()?;
                        let mut line = String::new();
                        socket.read_line(&mut line).await.ok()?;
                        if line == "hi\n" {
                            heard.send(index).ok()?;
                        }
                        while socket.read_line(&mut line).await.ok()? > 0 {}
                        Some(())
                    }));
                }
            });
            Self {
                target,
                heard,
                accepted,
                release,
                server,
            }
        }
    }

    /// Probes `target` with `module` through `runner` in a task of its
    /// own: the outcome, and how long it took.
    fn spawn_run(
        runner: &Arc<ProbeRunner>,
        module: &Arc<LoadedModule>,
        target: &Target,
        timeout: Duration,
    ) -> JoinHandle<(Outcome, Duration)> {
        let (runner, module, target) = (Arc::clone(runner), Arc::clone(module), target.clone());
        tokio::spawn(async move {
            let asked = Instant::now();
            let outcome = runner
                .run(&module, Some(&target), timeout, &mut StepLog::disabled())
                .await;
            (outcome, asked.elapsed())
        })
    }

    /// Blocks the thread of `handle` (as a slow step would) until `until`
    /// receives or `at_most` passes; `started` says when it holds the
    /// thread. The task's output: whether `until` received, and `until`.
    fn block_thread(
        handle: &Handle,
        until: std::sync::mpsc::Receiver<usize>,
        at_most: Duration,
    ) -> (
        oneshot::Receiver<()>,
        JoinHandle<(bool, std::sync::mpsc::Receiver<usize>)>,
    ) {
        let (started, blocking) = oneshot::channel();
        let task = handle.spawn(async move {
            let _ = started.send(());
            let received = until.recv_timeout(at_most).is_ok();
            (received, until)
        });
        (blocking, task)
    }

    /// A session runs on the sessions thread: it runs to its end while
    /// the probe thread and the exec thread are blocked, from `run` and
    /// from `run_in_place` on the probe thread, and it does not move
    /// while the sessions thread is blocked.
    #[test]
    fn sessions_run_on_the_sessions_thread() {
        let modules = session_modules();
        let banner = Arc::clone(modules.get("banner").unwrap());
        assert_eq!(thread_for(&banner), Thread::Sessions);
        let runner = Arc::new(ProbeRunner::new(4, Resolver::from_system(&[])).unwrap());
        let timeout = Duration::from_secs(5);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let Banner {
                target,
                heard,
                release,
                server,
                ..
            } = Banner::start(3, &[1]).await;

            // From `run`, with the probe and exec threads blocked.
            let (probe_blocked, probe_blocker) =
                block_thread(&runner.probe_thread.handle, heard, timeout);
            let (exec_free, exec_until) = std::sync::mpsc::channel();
            let (exec_blocked, exec_blocker) =
                block_thread(&runner.exec_thread.handle, exec_until, timeout);
            probe_blocked.await.unwrap();
            exec_blocked.await.unwrap();
            let (outcome, _) = spawn_run(&runner, &banner, &target, timeout).await.unwrap();
            assert!(outcome.is_success(), "{:?}", outcome.failure);
            drop(exec_free);
            let (heard_while_blocked, heard) = probe_blocker.await.unwrap();
            assert!(
                heard_while_blocked,
                "the session ran while the probe thread was blocked"
            );
            exec_blocker.await.unwrap();

            // In place, as the scheduler does, from a task on the probe
            // thread, which is blocked once the probe has begun; only then
            // does the server greet it.
            let (entering_tx, entering) = oneshot::channel();
            let (in_place, in_place_module, in_place_target) =
                (Arc::clone(&runner), Arc::clone(&banner), target.clone());
            let scheduled = runner.spawn_on_probe_thread(async move {
                let mut steplog = StepLog::disabled();
                let probe = in_place.run_in_place(
                    &in_place_module,
                    &in_place_target,
                    timeout,
                    &mut steplog,
                );
                let _ = entering_tx.send(());
                probe.await
            });
            entering.await.unwrap();
            let (probe_blocked, probe_blocker) =
                block_thread(&runner.probe_thread.handle, heard, timeout);
            probe_blocked.await.unwrap();
            release.notify_one();
            let (heard_while_blocked, heard) = probe_blocker.await.unwrap();
            assert!(
                heard_while_blocked,
                "the session ran in place while the probe thread was blocked"
            );
            let outcome = scheduled.await.unwrap();
            assert!(outcome.is_success(), "{:?}", outcome.failure);

            // And it is the sessions thread that runs it.
            let (sessions_blocked, sessions_blocker) = block_thread(
                &runner.sessions_thread.handle,
                heard,
                Duration::from_millis(500),
            );
            sessions_blocked.await.unwrap();
            let probe = spawn_run(&runner, &banner, &target, timeout);
            let (heard_while_blocked, heard) = sessions_blocker.await.unwrap();
            assert!(
                !heard_while_blocked,
                "the session waited while the sessions thread was blocked"
            );
            let (outcome, _) = probe.await.unwrap();
            assert!(outcome.is_success(), "{:?}", outcome.failure);
            let third = tokio::task::spawn_blocking(move || heard.recv_timeout(timeout));
            assert_eq!(third.await.unwrap(), Ok(2), "the third session was heard");
            server.await.unwrap();
        });
    }

    /// With `--probe.max-sessions` sessions open, the next one waits for
    /// a session slot, holding no in-flight slot, and fails as `local`
    /// once half its timeout is gone, naming the limit and its flag; once
    /// a session ends, its slot serves the next.
    #[test]
    fn the_session_limit_refuses_naming_its_flag() {
        let modules = session_modules();
        let (banner, connect) = (
            Arc::clone(modules.get("banner").unwrap()),
            Arc::clone(modules.get("connect").unwrap()),
        );
        assert_eq!(thread_for(&connect), Thread::Probe);
        let runner = Arc::new(
            ProbeRunner::new(2, Resolver::from_system(&[]))
                .unwrap()
                .with_max_sessions(1),
        );
        let long = Duration::from_secs(5);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let Banner {
                target,
                heard,
                mut accepted,
                release,
                server,
            } = Banner::start(2, &[0]).await;
            let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let other_target = Target::parse(&other.local_addr().unwrap().to_string()).unwrap();

            // The first session holds the only session slot, and one of
            // the two in-flight slots.
            let held = spawn_run(&runner, &banner, &target, long);
            let first = tokio::time::timeout(long, accepted.recv()).await;
            assert_eq!(first, Ok(Some(0)), "the first session connected");

            // The second queues for a session slot...
            let timeout = Duration::from_secs(1);
            let queued = spawn_run(&runner, &banner, &target, timeout);
            tokio::time::sleep(Duration::from_millis(100)).await;
            // ... holding no in-flight slot: a connect probe takes the other.
            let (outcome, _) = spawn_run(&runner, &connect, &other_target, timeout)
                .await
                .unwrap();
            assert!(
                outcome.is_success(),
                "a session queueing for its own limit holds no in-flight slot: {:?}",
                outcome.failure
            );

            let (outcome, took) = queued.await.unwrap();
            let failure = outcome.failure.expect("the second session could not start");
            assert_eq!(failure.reason, Reason::Local, "{failure}");
            let expected = regex::Regex::new(
                r"^not started: queued 0\.[5-9]\d\ds of the 1\.000s timeout \(0\.\d{3}s for the sessions thread, 0\.\d{3}s for a slot\), leaving less than 50% of it for the target to answer: the only session slot was busy; raise --probe\.max-sessions or lower the rate of TLS and query_response probes$",
            )
            .unwrap();
            assert!(expected.is_match(&failure.detail), "{}", failure.detail);
            assert!(
                took >= timeout / 2 && took < timeout,
                "it gave up when half its timeout was gone, not at the deadline: {took:?}"
            );
            assert_eq!(
                accepted.try_recv(),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty),
                "the refused session never connected"
            );

            // Once the held session ends, the next one gets its slot.
            release.notify_one();
            let (outcome, _) = held.await.unwrap();
            assert!(outcome.is_success(), "{:?}", outcome.failure);
            let (outcome, _) = spawn_run(&runner, &banner, &target, long).await.unwrap();
            assert!(outcome.is_success(), "{:?}", outcome.failure);
            let both = tokio::task::spawn_blocking(move || {
                let mut both = [heard.recv_timeout(long).ok(), heard.recv_timeout(long).ok()];
                both.sort_unstable();
                both
            });
            assert_eq!(
                both.await.unwrap(),
                [Some(0), Some(1)],
                "the held session and the next were heard"
            );
            server.await.unwrap();
        });
    }

    #[test]
    fn the_queue_says_what_it_waited_for() {
        let queue = Queue {
            thread: Thread::Probe,
            for_thread: Duration::ZERO,
            for_slot: Duration::from_millis(600),
            timeout: Duration::from_secs(1),
        };
        let text = queue.describe(Limit::InFlight(7));
        assert!(text.contains("all 7 probe slots were busy"), "{text}");
        assert!(text.contains("less than 50% of it"), "{text}");
        let text = queue.describe(Limit::Exec(3));
        assert!(
            text.contains("all 3 exec slots were busy; raise --exec.max-concurrent"),
            "{text}"
        );
        let text = queue.describe(Limit::InFlight(1));
        assert!(
            text.contains("the only probe slot was busy; raise --probe.max-in-flight"),
            "{text}"
        );
        let starved = Queue {
            thread: Thread::Exec,
            for_thread: Duration::from_millis(600),
            for_slot: Duration::ZERO,
            timeout: Duration::from_secs(1),
        };
        let text = starved.describe(Limit::Exec(3));
        assert!(
            text.contains("(0.600s for the exec thread, 0.000s for a slot)"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "the exec thread was busy (CPU starvation?); give the exporter more CPU"
            ),
            "{text}"
        );
    }
}
