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
//! The next slot is one interval after the slot just started, the
//! interval of the target's [`Phase`] (`interval`, `fast_interval` or
//! `down_interval`) as its last finished probe left it. A probe whose
//! result changes the interval moves its job: it sends the driver the new
//! due time (the first slot one new interval after its own slot that is
//! not past), and the driver takes the old entry out. That is a wake-up
//! only when a target's phase changes, not per probe. Each move raises the
//! job's generation, and an entry of an older generation met in the
//! calendar (one the driver started before the move reached it) is
//! dropped, so a job is queued once whatever the order.
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

use super::{Phase, Plan, ScheduleLag, ScheduledTarget, Transitions, next_slot};
use crate::prober::StepLog;
use crate::runner::ProbeRunner;
use crate::task::AbortOnDrop;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc::{
    UnboundedReceiver, UnboundedSender, WeakUnboundedSender, unbounded_channel,
};
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// Messages the driver takes from its channel per wake-up: a reload that
/// starts 200 000 targets then does not hold off due probes for all of them.
const JOB_BATCH: usize = 1024;

/// One target on its schedule: what to probe, how, and when first.
#[derive(Debug)]
pub(super) struct Job {
    /// The target, whose state the probes update.
    pub(super) target: Arc<ScheduledTarget>,
    /// How it is probed.
    pub(super) plan: Plan,
    /// The first slot, on the grid of the interval in force when queued.
    first_slot: Instant,
    /// Its probe and its place in the queue.
    slots: Mutex<Slots>,
}

/// A job's probe, its interval in force and where the calendar holds it.
#[derive(Debug)]
struct Slots {
    probe: Probe,
    /// The interval after the last finished probe's phase; the job's
    /// entry in the calendar was computed with it.
    interval: Duration,
    /// When the job is queued for.
    queued: Instant,
    /// Raised by each move; entries of an older one are stale.
    generation: u64,
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
    /// A job probing `target` by `plan`, at `first_slot` and then every
    /// interval of its phase, starting with `interval`.
    pub(super) fn new(
        target: Arc<ScheduledTarget>,
        plan: Plan,
        first_slot: Instant,
        interval: Duration,
    ) -> Self {
        Self {
            target,
            plan,
            first_slot,
            slots: Mutex::new(Slots {
                probe: Probe::Idle,
                interval,
                queued: first_slot,
                generation: 0,
            }),
        }
    }

    /// Stops the job for good, aborting its probe if one is running.
    pub(super) fn stop(&self) {
        if let Probe::Running(task) = std::mem::replace(&mut self.lock().probe, Probe::Stopped) {
            task.abort();
        }
    }

    /// Where a new job goes in the calendar: its first slot at or after
    /// `now`; `None` once stopped.
    fn first_due(self: &Arc<Self>, now: Instant) -> Option<Due> {
        let mut slots = self.lock();
        if matches!(slots.probe, Probe::Stopped) {
            return None;
        }
        slots.queued = next_slot(self.first_slot, slots.interval, now);
        Some(Due {
            at: slots.queued,
            generation: slots.generation,
            job: Arc::clone(self),
        })
    }

    /// Starts the probe of `due` as its own task, unless the previous
    /// probe still runs, and returns where the job goes next: one interval
    /// on, or the first slot after that which is not past. `None` when the
    /// job stopped or `due` is stale. The lock is held over the spawn, so
    /// that a concurrent [`stop`](Self::stop) either sees the task to
    /// abort or prevents it.
    fn start(self: &Arc<Self>, due: &Due, now: Instant, context: &Arc<Context>) -> Option<Due> {
        let mut slots = self.lock();
        if due.generation != slots.generation {
            return None;
        }
        match slots.probe {
            Probe::Stopped => return None,
            Probe::Running(_) => {}
            Probe::Idle => {
                let task = context.runner.spawn_on_probe_thread(probe_once(
                    Arc::clone(self),
                    due.at,
                    Arc::clone(context),
                ));
                slots.probe = Probe::Running(task.abort_handle());
            }
        }
        slots.queued = slot_after(due.at, slots.interval, now);
        Some(Due {
            at: slots.queued,
            generation: slots.generation,
            job: Arc::clone(self),
        })
    }

    /// Forgets the finished probe of `slot`, whose memory its abort handle
    /// would otherwise keep until the next probe, and moves the job when
    /// the probe left the target in a phase of another interval.
    fn finished(self: &Arc<Self>, slot: Instant, phase: Phase, context: &Context) {
        let mut slots = self.lock();
        if !matches!(slots.probe, Probe::Running(_)) {
            return; // stopped
        }
        slots.probe = Probe::Idle;
        let interval = self.plan.intervals.of(phase);
        if interval == slots.interval {
            return;
        }
        slots.interval = interval;
        slots.generation += 1;
        let from = slots.queued;
        slots.queued = slot_after(slot, interval, Instant::now());
        let due = Due {
            at: slots.queued,
            generation: slots.generation,
            job: Arc::clone(self),
        };
        // Fails only once the driver is gone, when the scheduler is dropped.
        if let Some(driver) = context.driver.upgrade() {
            let _ = driver.send(Message::Move { from, due });
        }
    }

    fn is_current(&self, generation: u64) -> bool {
        self.lock().generation == generation
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The first slot after `slot` at or after `now`, where slots follow
/// every `interval`.
fn slot_after(slot: Instant, interval: Duration, now: Instant) -> Instant {
    next_slot(slot + interval, interval, now)
}

/// A queued job, when it is due, and the generation it was queued in.
#[derive(Debug)]
struct Due {
    at: Instant,
    generation: u64,
    job: Arc<Job>,
}

/// What the driver receives.
#[derive(Debug)]
enum Message {
    /// A new job, to queue for its first slot.
    Add(Arc<Job>),
    /// A job whose interval changed, queued at `from`, to go to `due`.
    Move { from: Instant, due: Due },
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

    /// The millisecond that ends at or after `at`.
    fn bucket_of(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }

    /// Queues `due` in the millisecond that ends at or after it.
    fn push(&mut self, due: Due) {
        self.buckets
            .entry(self.bucket_of(due.at))
            .or_default()
            .push(due);
    }

    /// Takes out `job`'s entries queued at `at` of generations before
    /// `generation`; a bucket holds the jobs of one millisecond, a few.
    fn remove(&mut self, at: Instant, job: &Arc<Job>, generation: u64) {
        let bucket = self.bucket_of(at);
        if let Some(dues) = self.buckets.get_mut(&bucket) {
            dues.retain(|due| !(Arc::ptr_eq(&due.job, job) && due.generation < generation));
            if dues.is_empty() {
                self.buckets.remove(&bucket);
            }
        }
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
    transitions: Arc<Transitions>,
    /// To move a job whose interval changed; weak, so that the driver
    /// still ends when the [`Queue`] is gone.
    driver: WeakUnboundedSender<Message>,
}

/// The queue of scheduled jobs; its driver runs on the probe thread.
#[derive(Debug)]
pub(super) struct Queue {
    /// New jobs, to the driver.
    jobs: UnboundedSender<Message>,
    _driver: AbortOnDrop,
}

impl Queue {
    /// Starts the driver on `runner`'s probe thread, observing each probe's
    /// start into `lag` and health changes into `transitions`.
    pub(super) fn start(
        runner: Arc<ProbeRunner>,
        lag: Arc<ScheduleLag>,
        transitions: Arc<Transitions>,
    ) -> Self {
        let (jobs, received) = unbounded_channel();
        let context = Arc::new(Context {
            runner: Arc::clone(&runner),
            lag,
            transitions,
            driver: jobs.downgrade(),
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
        let _ = self.jobs.send(Message::Add(job));
    }
}

/// The driver: queues the jobs it receives and starts them when due.
async fn drive(mut received: UnboundedReceiver<Message>, context: Arc<Context>) {
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

/// Queues each new job for its first slot at or after now, and moves the
/// jobs whose interval changed; a stopped job is dropped, and a move that
/// a later one overtook is ignored.
fn queue_all(calendar: &mut Calendar, messages: impl Iterator<Item = Message>) {
    let now = Instant::now();
    for message in messages {
        match message {
            Message::Add(job) => {
                if let Some(first) = job.first_due(now) {
                    calendar.push(first);
                }
            }
            Message::Move { from, due } => {
                if due.job.is_current(due.generation) {
                    calendar.remove(from, &due.job, due.generation);
                    calendar.push(due);
                }
            }
        }
    }
}

/// Starts every job due by now and queues it again for its next slot;
/// stopped jobs and stale entries leave the queue.
fn start_due(calendar: &mut Calendar, context: &Arc<Context>) {
    let now = Instant::now();
    // Bounded by the buckets there are: jobs go back after now, so each
    // bucket due now is taken once.
    for _ in 0..calendar.buckets.len() {
        let Some(bucket) = calendar.take_due(now) else {
            break;
        };
        for due in bucket {
            if let Some(next) = due.job.start(&due, now, context) {
                calendar.push(next);
            }
        }
    }
}

/// One scheduled probe of `job`, for `slot`.
async fn probe_once(job: Arc<Job>, slot: Instant, context: Arc<Context>) {
    // Against the slot the job was due at, whichever interval led to it.
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
    let phase = job.target.record(outcome, plan, &context.transitions);
    job.finished(slot, phase, &context);
}
