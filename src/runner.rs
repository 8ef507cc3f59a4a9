//! Runs probes under the exporter's shared rules: the in-flight limit, the
//! deadline, the counters of `/metrics`, and the probe thread.
//!
//! Every probe, whether from `/probe`, the scheduler or a group check,
//! goes through [`ProbeRunner::run`], so the limit is shared and every
//! probe is counted once, even when the HTTP client that asked for it
//! goes away.
//!
//! Probes run on a thread of their own, with a single-threaded tokio
//! runtime that does nothing else. A half-open probe must close its socket
//! before the kernel's delayed ACK (about 200 ms after the SYN-ACK) or the
//! handshake completes and the application accepts a connection. On the
//! HTTP workers, thousands of concurrent scrapes delayed that close past
//! 200 ms (measured: 2 626 of 288 000 probes accepted under
//! `wrk -c2000`); on the probe thread the only work between a wake-up
//! and the close is other probes' equally short steps.
//!
//! For the same reason DNS queries run on a second thread, the DNS
//! thread, which the runner starts with the exporter's one [`Resolver`];
//! the probe thread only waits for their answers. See
//! [`crate::prober::resolve`] for why.

use crate::config::Module;
use crate::metrics::exporter::ExporterMetrics;
use crate::prober::{self, Failure, Outcome, Reason, Resolver};
use crate::target::Target;
use crate::trace::Trace;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Runs probes within the in-flight limit, on the probe thread, and counts them.
#[derive(Debug)]
pub struct ProbeRunner {
    rules: Rules,
    probe_thread: RuntimeThread,
    /// Runs the resolver's queries; kept to stop it with the runner.
    _dns_thread: RuntimeThread,
}

/// The limit and the counters, cheap to clone onto the probe thread.
#[derive(Clone, Debug)]
struct Rules {
    slots: Arc<Semaphore>,
    max_in_flight: usize,
    metrics: Arc<ExporterMetrics>,
    resolver: Arc<Resolver>,
}

impl ProbeRunner {
    /// A runner allowing at most `max_in_flight` probes at once, resolving
    /// names with the system's resolver config (reads `/etc/resolv.conf`
    /// and `/etc/hosts`).
    ///
    /// # Panics
    /// When the operating system refuses to start the probe thread or the
    /// DNS thread, which leaves nothing to probe with.
    #[must_use]
    pub fn new(max_in_flight: usize, metrics: Arc<ExporterMetrics>) -> Self {
        Self::with_resolver(max_in_flight, metrics, Resolver::from_system(&[]))
    }

    /// Like [`new`](Self::new), resolving names with `resolver`, whose
    /// queries run on the runner's DNS thread.
    ///
    /// # Panics
    /// As [`new`](Self::new).
    #[must_use]
    pub fn with_resolver(
        max_in_flight: usize,
        metrics: Arc<ExporterMetrics>,
        resolver: Resolver,
    ) -> Self {
        let dns_thread = RuntimeThread::start("synack-dns").expect("start the DNS thread");
        let resolver = resolver.run_on(dns_thread.handle.clone());
        Self {
            rules: Rules {
                slots: Arc::new(Semaphore::new(max_in_flight)),
                max_in_flight,
                metrics,
                resolver: Arc::new(resolver),
            },
            probe_thread: RuntimeThread::start("synack-probes").expect("start the probe thread"),
            _dns_thread: dns_thread,
        }
    }

    /// The resolver every probe of this runner uses.
    #[must_use]
    pub fn resolver(&self) -> &Resolver {
        &self.rules.resolver
    }

    /// The metrics this runner counts into.
    #[must_use]
    pub fn metrics(&self) -> &Arc<ExporterMetrics> {
        &self.rules.metrics
    }

    /// Probes `target` with the module called `module_name`, within
    /// `timeout`, on the probe thread. Callable from any task.
    ///
    /// When the in-flight limit is reached the probe waits for a slot; if
    /// none frees up before the deadline it fails as `local`, because the
    /// limit is the exporter's, not the target's.
    pub async fn run(
        &self,
        module_name: &str,
        module: &Module,
        target: &Target,
        timeout: Duration,
        trace: &mut Trace,
    ) -> Outcome {
        let started = Instant::now();
        let deadline = started + timeout;
        let rules = self.rules.clone();
        let (module_name, module, target) =
            (module_name.to_owned(), module.clone(), target.clone());
        let mut job_trace = std::mem::replace(trace, Trace::disabled());
        let job = self.probe_thread.handle.spawn(async move {
            let outcome = rules
                .run(&module_name, &module, &target, deadline, &mut job_trace)
                .await;
            (outcome, job_trace)
        });
        match job.await {
            Ok((outcome, job_trace)) => {
                *trace = job_trace;
                outcome
            }
            // Only when the runner is being dropped, i.e. at shutdown.
            Err(_) => Outcome::not_started(
                Failure::new(Reason::Local, "the probe thread stopped"),
                started.elapsed(),
            ),
        }
    }

    /// Like [`run`](Self::run), but probes in the calling task, saving the
    /// hop between threads. Only for tasks started with
    /// [`spawn_on_probe_thread`](Self::spawn_on_probe_thread): anywhere else
    /// the half-open close loses its protection from other work.
    pub async fn run_in_place(
        &self,
        module_name: &str,
        module: &Module,
        target: &Target,
        timeout: Duration,
        trace: &mut Trace,
    ) -> Outcome {
        let deadline = Instant::now() + timeout;
        self.rules
            .run(module_name, module, target, deadline, trace)
            .await
    }

    /// Starts `task` on the probe thread, for callers that probe over and
    /// over, such as the scheduler, and use [`run_in_place`](Self::run_in_place).
    pub fn spawn_on_probe_thread<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.probe_thread.handle.spawn(task)
    }
}

impl Rules {
    async fn run(
        &self,
        module_name: &str,
        module: &Module,
        target: &Target,
        deadline: Instant,
        trace: &mut Trace,
    ) -> Outcome {
        let started = Instant::now();
        let Ok(Ok(_slot)) = tokio::time::timeout_at(deadline, self.slots.acquire()).await else {
            // The semaphore is never closed, so only the timeout lands here.
            let failure = Failure::new(
                Reason::Local,
                format!(
                    "all {} probe slots stayed busy until the deadline; raise --probe.max-in-flight",
                    self.max_in_flight
                ),
            );
            trace.log(format_args!("{}", failure.detail));
            let outcome = Outcome::not_started(failure, started.elapsed());
            self.metrics.record_probe(module_name, &outcome);
            return outcome;
        };
        let _in_flight = self.metrics.probe_in_flight();
        let outcome = prober::run(module, target, &self.resolver, deadline, trace).await;
        self.metrics.record_probe(module_name, &outcome);
        outcome
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
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
                // Probes still running are cancelled: their sockets close
                // with RST as they are dropped. So are DNS queries.
                runtime.shutdown_timeout(Duration::from_secs(1));
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
