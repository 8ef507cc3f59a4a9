//! The background scheduler: probes the configured `targets:` once per
//! interval and keeps their state for `/metrics` and the landing page.
//!
//! Which interval is the target's [`Phase`] after its last probe, as in
//! HAProxy: `interval` while healthy, `fast_interval` while its results
//! disagree with its state (rise or fall is counting), `down_interval`
//! while unhealthy. The next probe is one such interval after the slot of
//! the last (see [`queue`]).
//!
//! Each probe runs as a task of its own, so a slow or dead target never
//! delays another; one queue on the probe thread starts them when due
//! (see [`queue`] for why not a task per target). Start times are spread
//! over the interval by a stable hash of the target, so 10 000 targets at
//! 10 s give 1 000 probes in every second
//! rather than 10 000 at second 0. The hash also decides the shard under
//! `--targets.shard=i/n`, so replicas split one list without talking.
//!
//! A reload diffs the new target list against the running one: removed
//! targets stop and lose their series, new ones start, and unchanged ones
//! keep their state and counters. A target whose intervals, rise or fall
//! changed keeps its state and restarts its schedule. A target whose
//! module changed its definition (another prober, another option, even
//! under the same name) starts afresh, as a new target: the old results
//! say nothing about the new probe, and series of the old prober (an
//! `exec` exit code) must not linger beside the new one's.
//!
//! The diff is plain CPU work, most of a second when 200 000 targets are
//! replaced, so a reload runs it on a blocking thread (see [`crate::app`]),
//! never on the HTTP workers. The jobs it hands to the probe thread's
//! queue are each cheaper there than the diff's own work per target, so
//! they do not pile up in front of `/probe`: measured with
//! `bench/reload_storm.py`, replacing 200 000 targets delayed no `/probe`
//! by more than 15 ms.
//!
//! [`Scheduler::apply`] returns the new list when it changed, so that the
//! caller, on the same thread, can prepare what scrapes need of it (the
//! escaped label sets of `/metrics`) before anyone reads it.
//!
//! The scheduler reports what it finds into state it owns: each target's
//! [`TargetState`] and the [`ScheduleLag`] histogram. Observers (the
//! metrics, the landing page) read them; the scheduler knows nothing of
//! them.

#![forbid(unsafe_code)]

mod lag;
mod queue;
mod state;
mod transitions;

pub(crate) use lag::ScheduleLag;
pub(crate) use state::{HANDSHAKE_BUCKETS, Phase, TargetState};
pub(crate) use transitions::{
    EVENTS_FILE_MAX_BYTES, EventsFile, MAX_RECENT, MAX_RECENT_BYTES, Transition, Transitions,
};

use crate::config::{Config, LabelName};
use crate::hash::fnv1a_64;
use crate::modules::{LoadedModule, Modules};
use crate::prober::Kept;
use crate::runner::ProbeRunner;
use crate::settings::Shard;
use crate::target::Target;
use queue::{Job, Queue};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// One scheduled target: who it is, and its state behind a lock that only
/// its own probes write and scrapes read.
#[derive(Debug)]
pub(crate) struct ScheduledTarget {
    /// The module name.
    pub(crate) module: Arc<str>,
    /// The parsed target.
    pub(crate) target: Target,
    /// The target as written, `host:port`; shared with its [`TargetKey`].
    pub(crate) target_text: Arc<str>,
    /// The user's labels, shared by every target of a block.
    pub(crate) labels: Labels,
    state: Mutex<TargetState>,
}

impl ScheduledTarget {
    fn new(key: &TargetKey, target: Target, plan: &Plan) -> Self {
        let mut state = TargetState::default();
        state.kept = Kept::new(&plan.module.module);
        Self {
            module: Arc::clone(&key.module),
            target,
            target_text: Arc::clone(&key.target),
            labels: Arc::clone(&key.labels),
            state: Mutex::new(state),
        }
    }

    /// Runs `read` on the current state.
    pub(crate) fn with_state<R>(&self, read: impl FnOnce(&TargetState) -> R) -> R {
        read(&self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Takes in the outcome of a probe by `plan`, writes a change of
    /// health into `transitions`, and returns the phase it leaves the
    /// target in.
    fn record(
        &self,
        outcome: crate::prober::Outcome,
        plan: &Plan,
        transitions: &Transitions,
    ) -> Phase {
        let now = crate::clock::unix_seconds();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // Its prober is that of `plan`: a reload that changes the module
        // makes a new target.
        let changed = state.record(outcome, plan.rise, plan.fall, now);
        let phase = state.phase();
        state.interval = plan.intervals.of(phase);
        let transition = changed.then(|| {
            let probes = state.take_probes_since_change();
            Transition::new(
                now,
                &self.target_text,
                &self.module,
                &self.labels,
                state.healthy,
                state.last_reason,
                &state.last_detail,
                probes,
            )
        });
        drop(state);
        if let Some(transition) = transition {
            transitions.record(transition);
        }
        phase
    }

    /// The interval `plan` gives the target in its phase now, which its
    /// state then shows.
    fn interval_now(&self, plan: &Plan) -> std::time::Duration {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.interval = plan.intervals.of(state.phase());
        state.interval
    }
}

/// A block's labels. One map per block, shared by its targets, their keys
/// and their [`ScheduledTarget`]s: with 100 000 targets, a copy each was
/// megabytes for the same few labels.
pub(crate) type Labels = Arc<BTreeMap<LabelName, String>>;

/// What makes two scheduled targets the same one across a reload. Labels
/// are part of it because they are part of every series' identity. The
/// texts are shared with the [`ScheduledTarget`] rather than copied, and
/// compare by content, so the diff works as with owned strings.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct TargetKey {
    module: Arc<str>,
    target: Arc<str>,
    labels: Labels,
}

/// How a target is probed; a change restarts its schedule, and a change
/// of the module's definition its state too.
#[derive(Clone, Debug)]
struct Plan {
    module: Arc<LoadedModule>,
    intervals: Intervals,
    rise: u32,
    fall: u32,
}

impl PartialEq for Plan {
    fn eq(&self, other: &Self) -> bool {
        self.module.same_as(&other.module)
            && (self.intervals, self.rise, self.fall) == (other.intervals, other.rise, other.fall)
    }
}

/// A target's intervals, one per [`Phase`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Intervals {
    /// While healthy, and before the first probe.
    up: Duration,
    /// While the last result disagrees with the state.
    changing: Duration,
    /// While unhealthy.
    down: Duration,
}

impl Intervals {
    /// The interval until the next probe of a target in `phase`.
    fn of(&self, phase: Phase) -> Duration {
        match phase {
            Phase::Up => self.up,
            Phase::Changing => self.changing,
            Phase::Down => self.down,
        }
    }
}

/// The list of targets being probed.
pub(crate) type TargetList = Arc<[Arc<ScheduledTarget>]>;

/// Owns the schedules of all scheduled targets.
#[derive(Debug)]
pub(crate) struct Scheduler {
    shard: Shard,
    epoch: Instant,
    running: Mutex<BTreeMap<TargetKey, Arc<Job>>>,
    queue: Queue,
    published: RwLock<TargetList>,
    lag: Arc<ScheduleLag>,
    transitions: Arc<Transitions>,
}

impl Scheduler {
    /// A scheduler with no targets yet, writing health changes into
    /// `transitions`; see [`Scheduler::apply`].
    pub(crate) fn new(runner: Arc<ProbeRunner>, shard: Shard, transitions: Transitions) -> Self {
        let lag = Arc::new(lag::empty_schedule_lag());
        let transitions = Arc::new(transitions);
        Self {
            shard,
            epoch: Instant::now(),
            running: Mutex::new(BTreeMap::new()),
            queue: Queue::start(runner, Arc::clone(&lag), Arc::clone(&transitions)),
            published: RwLock::new(Arc::from(Vec::new())),
            lag,
            transitions,
        }
    }

    /// The log of health changes.
    pub(crate) fn transitions(&self) -> &Transitions {
        &self.transitions
    }

    /// The targets being probed, in a stable order, for scrapes and pages.
    pub(crate) fn targets(&self) -> TargetList {
        Arc::clone(
            &self
                .published
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// How late scheduled probes started against their slots.
    pub(crate) fn schedule_lag(&self) -> &ScheduleLag {
        &self.lag
    }

    /// Makes the running targets match `config`, probing with `modules`,
    /// and publishes the new list; returns it when it changed. Probes start
    /// on the probe thread. Costly for long lists: a reload calls it on a
    /// blocking thread.
    pub(crate) fn apply(&self, config: &Config, modules: &Modules) -> Option<TargetList> {
        let wanted = self.plans(config, modules);
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.retain(|key, job| {
            let keep = wanted.contains_key(key);
            if !keep {
                job.stop();
            }
            keep
        });
        for (key, (target, plan)) in wanted {
            match running.get_mut(&key) {
                Some(job) if job.plan == plan => {}
                Some(job) if job.plan.module.same_as(&plan.module) => {
                    job.stop();
                    *job = self.schedule(Arc::clone(&job.target), plan);
                }
                Some(job) => {
                    job.stop();
                    let scheduled = Arc::new(ScheduledTarget::new(&key, target, &plan));
                    *job = self.schedule(scheduled, plan);
                }
                None => {
                    let scheduled = Arc::new(ScheduledTarget::new(&key, target, &plan));
                    running.insert(key, self.schedule(scheduled, plan));
                }
            }
        }
        let targets: Vec<Arc<ScheduledTarget>> = running
            .values()
            .map(|job| Arc::clone(&job.target))
            .collect();
        // A reload that keeps every target (a SIGHUP after an unrelated
        // edit) keeps the published list, and what observers made of it.
        let current = self.targets();
        if current.len() == targets.len()
            && current.iter().zip(&targets).all(|(a, b)| Arc::ptr_eq(a, b))
        {
            return None;
        }
        let targets: TargetList = Arc::from(targets);
        *self
            .published
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::clone(&targets);
        Some(targets)
    }

    /// The targets of `config` that this shard probes, with their plans.
    /// A shard of several says how many of the list it took.
    fn plans(&self, config: &Config, modules: &Modules) -> BTreeMap<TargetKey, (Target, Plan)> {
        let plans = self.plans_of_shard(config, modules);
        if self.shard.count > 1 {
            let total: usize = config.targets.iter().map(|block| block.targets.len()).sum();
            tracing::info!(
                shard = %self.shard,
                owned = plans.len(),
                total,
                "this replica probes {} of the {total} scheduled targets",
                plans.len()
            );
        }
        plans
    }

    fn plans_of_shard(
        &self,
        config: &Config,
        modules: &Modules,
    ) -> BTreeMap<TargetKey, (Target, Plan)> {
        let mut plans = BTreeMap::new();
        for block in &config.targets {
            let Some(module) = modules.get(&block.module.value) else {
                continue; // validation rejects this; nothing to probe with
            };
            let module_name: Arc<str> = Arc::from(block.module.value.as_str());
            let labels: Labels = Arc::new(block.labels.clone());
            for target in &block.targets {
                let text = target.value.0.to_string();
                if !self.shard.owns(&text) {
                    continue;
                }
                let key = TargetKey {
                    module: Arc::clone(&module_name),
                    target: Arc::from(text),
                    labels: Arc::clone(&labels),
                };
                let plan = Plan {
                    module: Arc::clone(module),
                    intervals: Intervals {
                        up: block.interval.0,
                        changing: block.fast_interval.0,
                        down: block.down_interval.0,
                    },
                    rise: block.rise,
                    fall: block.fall,
                };
                plans.insert(key, (target.value.0.clone(), plan));
            }
        }
        plans
    }

    /// Queues `target` to be probed by `plan` at its slots, from the
    /// interval of its phase now (a reload keeps the state of a target
    /// that is down).
    fn schedule(&self, target: Arc<ScheduledTarget>, plan: Plan) -> Arc<Job> {
        let interval = target.interval_now(&plan);
        let offset = slot_offset(&target.module, &target.target_text, interval);
        let job = Arc::new(Job::new(target, plan, self.epoch + offset, interval));
        self.queue.add(Arc::clone(&job));
        job
    }
}

impl Drop for Scheduler {
    /// Aborts the probes in flight; the queue's drop then stops its driver.
    fn drop(&mut self) {
        for job in self
            .running
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            job.stop();
        }
    }
}

/// Where in the interval a target's probes start: a stable hash of module
/// and target, so the spread survives restarts and is the same on replicas.
fn slot_offset(module: &str, target: &str, interval: Duration) -> Duration {
    let interval_nanos = u64::try_from(interval.as_nanos())
        .unwrap_or(u64::MAX)
        .max(1);
    let key = format!("{module}\u{0}{target}");
    Duration::from_nanos(fnv1a_64(key.as_bytes()) % interval_nanos)
}

/// The first slot at or after `now`, where slots are `first + k * interval`.
fn next_slot(first: Instant, interval: Duration, now: Instant) -> Instant {
    if now <= first {
        return first;
    }
    let since = now - first;
    let periods = since.as_nanos().div_ceil(interval.as_nanos().max(1));
    let periods = u32::try_from(periods).unwrap_or(u32::MAX);
    first + interval * periods
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::ResultCounters;
    use crate::prober::Resolver;

    /// A loopback port that refuses connections: bound, then closed.
    fn refusing_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    /// Blocks of targets probed every second, each with its `rise`.
    fn config(blocks: &[(&[&str], u32)]) -> Config {
        let mut yaml = String::from("targets:\n");
        for (targets, rise) in blocks {
            let list: Vec<String> = targets.iter().map(|target| format!("{target:?}")).collect();
            yaml.push_str(&format!(
                "  - {{module: tcp_halfopen, interval: 1s, rise: {rise}, targets: [{}]}}\n",
                list.join(", ")
            ));
        }
        Config::parse("t.yml", &yaml).unwrap()
    }

    fn find(list: &TargetList, text: &str) -> Arc<ScheduledTarget> {
        let found = list.iter().find(|target| &*target.target_text == text);
        Arc::clone(found.expect("target is scheduled"))
    }

    fn probes(target: &ScheduledTarget) -> u64 {
        target.with_state(|state| state.results.iter().sum())
    }

    #[test]
    fn targets_are_probed_once_a_slot_and_reloads_keep_restart_and_stop_them() {
        let port = refusing_port();
        let [a, b, c] = [1, 2, 3].map(|host| format!("127.0.0.{host}:{port}"));
        let runner = Arc::new(ProbeRunner::new(16, Resolver::from_system(&[])).unwrap());
        let scheduler = Scheduler::new(runner, Shard::ALL, Transitions::default());
        let counters = ResultCounters::default();
        let apply = |config: &Config| {
            let modules = Modules::load(config, &counters);
            scheduler.apply(config, &modules).expect("the list changed")
        };

        let first = apply(&config(&[(&[&a, &b], 2)]));
        // Slots every second from an offset under a second: two or three.
        std::thread::sleep(Duration::from_millis(2300));
        for target in first.iter() {
            let count = probes(target);
            assert!((2..=3).contains(&count), "{}: {count}", target.target_text);
        }

        // `a` changes its rise (a restart), `b` goes, `c` comes.
        let second = apply(&config(&[(&[&a], 3), (&[&c], 2)]));
        let (kept, gone) = (find(&first, &a), find(&first, &b));
        assert!(
            Arc::ptr_eq(&kept, &find(&second, &a)),
            "a restart keeps the state"
        );
        let kept_count = probes(&kept);
        // A probe of `b` running at the reload was aborted; let any that
        // was past its last wait finish before counting.
        std::thread::sleep(Duration::from_millis(100));
        let gone_count = probes(&gone);
        std::thread::sleep(Duration::from_millis(1300));
        let count = probes(&kept);
        assert!(
            (kept_count + 1..=kept_count + 2).contains(&count),
            "{kept_count} then {count}"
        );
        assert_eq!(probes(&gone), gone_count, "a removed target is not probed");
        assert!(probes(&find(&second, &c)) >= 1, "a new target is probed");
    }

    #[test]
    fn each_phase_has_its_interval() {
        let intervals = Intervals {
            up: Duration::from_secs(4),
            changing: Duration::from_secs(1),
            down: Duration::from_secs(2),
        };
        assert_eq!(intervals.of(Phase::Up), Duration::from_secs(4));
        assert_eq!(intervals.of(Phase::Changing), Duration::from_secs(1));
        assert_eq!(intervals.of(Phase::Down), Duration::from_secs(2));
    }

    #[test]
    fn offsets_spread_over_the_interval() {
        let interval = Duration::from_secs(10);
        let mut per_second = [0u32; 10];
        for n in 0..10_000u32 {
            let target = format!("127.{}.{}.{}:80", n >> 16, (n >> 8) & 255, n & 255);
            let offset = slot_offset("tcp_halfopen", &target, interval);
            assert!(offset < interval);
            per_second[usize::try_from(offset.as_secs()).unwrap()] += 1;
        }
        for count in per_second {
            assert!(
                (850..1150).contains(&count),
                "uneven spread: {per_second:?}"
            );
        }
    }

    #[test]
    fn next_slot_is_the_first_at_or_after_now() {
        let first = Instant::now();
        let interval = Duration::from_secs(10);
        assert_eq!(next_slot(first, interval, first), first);
        assert_eq!(
            next_slot(first, interval, first + Duration::from_secs(1)),
            first + interval
        );
        assert_eq!(
            next_slot(first, interval, first + interval),
            first + interval
        );
        assert_eq!(
            next_slot(first, interval, first + Duration::from_secs(25)),
            first + Duration::from_secs(30)
        );
    }
}
