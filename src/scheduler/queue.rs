//! When each scheduled target is probed next: one queue of due times on
//! the probe thread, rather than a sleeping task and timer per target.
//!
//! A sleeping task per target cost about 550 bytes of memory each (the
//! task's cell, its future, its `Sleep`), 55 MB for 100 000 targets, and
//! tokio's timer wheel moved each of those timers down its levels on every
//! interval: `process_at_time` was the exporter's largest user-space item
//! under `perf` (4.6 % of its samples in `bench/scheduler_100k.sh`).
//! Here one driver task keeps a calendar of jobs by due millisecond and
//! sleeps until the earliest. A due job's probe runs as a short-lived task
//! of its own on the probe thread, so probes still overlap and a slow
//! target never delays another; between probes a job costs its [`Job`]
//! and its calendar entry, not a task.
//!
//! When the driver starts a probe it queues the job again right away, for
//! its next slot after now. That costs no wake-up of the driver per probe:
//! a first version, where each probe handed its job back over a channel
//! when it ended, took 33 µs of CPU per probe against 27 to 29 µs for a
//! task per target. One probe per target at a time still: a job whose
//! probe is still running at its next slot skips that slot, which is the
//! slot a task per target would have skipped too (it chose the first slot
//! after its probe ended).
//!
//! The calendar is a `BTreeMap` from millisecond to the jobs due in it
//! (tokio's timers are no finer). A binary heap of 100 000 jobs was tried
//! first: each probe's sift through its 2.4 MB missed the cache on most
//! levels and `start_due` became the largest user-space item under `perf`
//! (6.5 % of samples, more than the timer wheel it replaced). Buckets are
//! taken whole and a job goes back near the map's end, where the nodes
//! were just touched, so a probe costs a push onto a short `Vec`.
//!
//! A job stops (its target was removed, or restarts with a new plan) by
//! [`Job::stop`]: a probe in flight is aborted, which closes its socket,
//! and the driver drops the job when it next meets it, at the latest one
//! interval later. Dropping the [`Queue`] aborts the driver.

#![forbid(unsafe_code)]

use super::{Plan, ScheduleLag, ScheduledTarget, next_slot};
use crate::prober::StepLog;
use crate::runner::ProbeRunner;
use crate::task::AbortOnDrop;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Jobs the driver takes from its channel per wake-up: a reload that
/// starts 200 000 targets then does not hold off due probes for all of them.
const JOB_BATCH: usize = 1024;

/// One target on its schedule: what to probe, how, and when first.
#[derive(Debug)]
pub(super) struct Job {
    /// The target, whose state the probes update.
    pub(super) target: Arc<ScheduledTarget>,
    /// How it is probed.
    pub(super) plan: Plan,
    /// The first slot; the others follow every `plan.interval`.
    first_slot: Instant,
    /// Its probe, if one is running, or whether the job stopped.
    probe: Mutex<Probe>,
}

/// Where a job's probing stands.
#[derive(Debug)]
enum Probe {
    /// Waiting in the queue for its slot.
    Idle,
    /// A probe task is running; aborting it closes its socket.
    Running(AbortHandle),
    /// Stopped for good: the driver drops it.
    Stopped,
}

impl Job {
    /// A job probing `target` by `plan` at `first_slot` and every interval after.
    pub(super) fn new(target: Arc<ScheduledTarget>, plan: Plan, first_slot: Instant) -> Self {
        Self {
            target,
            plan,
            first_slot,
            probe: Mutex::new(Probe::Idle),
        }
    }

    /// Stops the job for good, aborting its probe if one is running.
    pub(super) fn stop(&self) {
        if let Probe::Running(task) = std::mem::replace(&mut *self.lock(), Probe::Stopped) {
            task.abort();
        }
    }

    fn is_stopped(&self) -> bool {
        matches!(*self.lock(), Probe::Stopped)
    }

    /// Starts the probe of `slot` as its own task, unless the previous
    /// probe still runs; returns false when the job stopped. The lock is
    /// held over the spawn, so that a concurrent [`stop`](Self::stop)
    /// either sees the task to abort or prevents it.
    fn start(self: &Arc<Self>, slot: Instant, context: &Arc<Context>) -> bool {
        let mut probe = self.lock();
        match *probe {
            Probe::Stopped => return false,
            Probe::Running(_) => return true,
            Probe::Idle => {}
        }
        let task = context.runner.spawn_on_probe_thread(probe_once(
            Arc::clone(self),
            slot,
            Arc::clone(context),
        ));
        *probe = Probe::Running(task.abort_handle());
        true
    }

    /// The first slot at or after `now` that is not `slot`, the one just
    /// started.
    fn slot_after(&self, slot: Instant, now: Instant) -> Instant {
        let next = next_slot(self.first_slot, self.plan.interval, now);
        if next == slot {
            next + self.plan.interval
        } else {
            next
        }
    }

    /// Forgets the finished probe's task, whose memory its abort handle
    /// would otherwise keep until the next probe.
    fn finished(&self) {
        let mut probe = self.lock();
        if matches!(*probe, Probe::Running(_)) {
            *probe = Probe::Idle;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Probe> {
        self.probe.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A queued job and when it is due.
#[derive(Debug)]
struct Due {
    at: Instant,
    job: Arc<Job>,
}

/// Queued jobs by the millisecond they are due in, counted from `epoch`.
#[derive(Debug)]
struct Calendar {
    epoch: Instant,
    buckets: BTreeMap<u64, Vec<Due>>,
}

impl Calendar {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            buckets: BTreeMap::new(),
        }
    }

    /// Queues `due` in the millisecond that ends at or after it.
    fn push(&mut self, due: Due) {
        let nanos = due.at.saturating_duration_since(self.epoch).as_nanos();
        let millis = u64::try_from(nanos.div_ceil(1_000_000)).unwrap_or(u64::MAX);
        self.buckets.entry(millis).or_default().push(due);
    }

    /// When the earliest bucket is due.
    fn earliest(&self) -> Option<Instant> {
        let (&millis, _) = self.buckets.first_key_value()?;
        Some(self.epoch + Duration::from_millis(millis))
    }

    /// Takes out the earliest bucket if it is due by `now`.
    fn take_due(&mut self, now: Instant) -> Option<Vec<Due>> {
        let entry = self.buckets.first_entry()?;
        (self.epoch + Duration::from_millis(*entry.key()) <= now).then(|| entry.remove())
    }
}

/// What each probe task needs, shared in one allocation.
#[derive(Debug)]
struct Context {
    runner: Arc<ProbeRunner>,
    lag: Arc<ScheduleLag>,
}

/// The queue of scheduled jobs; its driver runs on the probe thread.
#[derive(Debug)]
pub(super) struct Queue {
    /// New jobs, to the driver.
    jobs: UnboundedSender<Arc<Job>>,
    _driver: AbortOnDrop,
}

impl Queue {
    /// Starts the driver on `runner`'s probe thread, observing each probe's
    /// start into `lag`.
    pub(super) fn start(runner: Arc<ProbeRunner>, lag: Arc<ScheduleLag>) -> Self {
        let (jobs, received) = unbounded_channel();
        let context = Arc::new(Context {
            runner: Arc::clone(&runner),
            lag,
        });
        let driver = runner.spawn_on_probe_thread(drive(received, context));
        Self {
            jobs,
            _driver: AbortOnDrop::new(driver.abort_handle()),
        }
    }

    /// Queues `job` for its first slot at or after now.
    pub(super) fn add(&self, job: Arc<Job>) {
        // Fails only once the driver is gone, when the scheduler is dropped.
        let _ = self.jobs.send(job);
    }
}

/// The driver: queues the jobs it receives and starts them when due.
async fn drive(mut received: UnboundedReceiver<Arc<Job>>, context: Arc<Context>) {
    let mut due = Calendar::new();
    let mut batch = Vec::with_capacity(JOB_BATCH);
    let sleep = tokio::time::sleep_until(Instant::now());
    tokio::pin!(sleep);
    // The time the sleep is set to, while the queue has a job.
    let mut armed: Option<Instant> = None;
    loop {
        tokio::select! {
            count = received.recv_many(&mut batch, JOB_BATCH) => {
                if count == 0 {
                    return; // every sender is gone
                }
                queue_all(&mut due, batch.drain(..));
            }
            () = &mut sleep, if armed.is_some() => start_due(&mut due, &context),
        }
        let earliest = due.earliest();
        if earliest != armed {
            if let Some(at) = earliest {
                sleep.as_mut().reset(at);
            }
            armed = earliest;
        }
    }
}

/// Queues each new job for its first slot at or after now; one stopped
/// already is dropped.
fn queue_all(due: &mut Calendar, jobs: impl Iterator<Item = Arc<Job>>) {
    let now = Instant::now();
    for job in jobs {
        if job.is_stopped() {
            continue;
        }
        let at = next_slot(job.first_slot, job.plan.interval, now);
        due.push(Due { at, job });
    }
}

/// Starts every job due by now and queues it again for its next slot;
/// stopped jobs leave the queue.
fn start_due(due: &mut Calendar, context: &Arc<Context>) {
    let now = Instant::now();
    // Bounded by the buckets there are: jobs go back after now, so each
    // bucket due now is taken once.
    for _ in 0..due.buckets.len() {
        let Some(bucket) = due.take_due(now) else {
            break;
        };
        for Due { at, job } in bucket {
            if job.start(at, context) {
                let at = job.slot_after(at, now);
                due.push(Due { at, job });
            }
        }
    }
}

/// One scheduled probe of `job`, for `slot`.
async fn probe_once(job: Arc<Job>, slot: Instant, context: Arc<Context>) {
    context
        .lag
        .observe(Instant::now().saturating_duration_since(slot));
    let plan = &job.plan;
    // Boxed: the probe's future is large, and a task cell that size (tokio
    // aligns them to 128 bytes) for each of 10 000 probes a second
    // fragmented the heap. Measured with 100 000 targets all refused:
    // VmRSS 165 to 200 MB unboxed, 103 MB boxed.
    let outcome = Box::pin(context.runner.run_in_place(
        &plan.module,
        &job.target.target,
        plan.module.module.timeout(),
        &mut StepLog::disabled(),
    ))
    .await;
    job.target.record(outcome, plan);
    job.finished();
}
