//! `/health/<group>`: one answer for many ports, for load balancers that
//! can check only one URL.
//!
//! A request probes every member of the group, concurrently, unless the
//! group's last answer is younger than its `min_interval` (1 s by
//! default), in which case it gets that answer. Requests that arrive while
//! a round is under way join it (single flight). Together these bound the
//! probes a group can cause to one round per `min_interval`, however many
//! load-balancer nodes ask and however their requests are spread: single
//! flight alone merges only requests that overlap, so forty requests
//! spread over half a second, or forty "concurrent" ones against a group
//! that answers in a millisecond, used to cause up to forty rounds.
//!
//! A round runs on a task of its own, owned by the group's state, not in
//! the future of the request that started it: a client that hangs up
//! (a load balancer whose check timeout is shorter than the slowest
//! member's) neither cancels the round nor makes the next request start
//! it over, and the round's answer serves every request within
//! `min_interval` of its end. So however clients behave, a group runs at
//! most one round at a time and starts one only when the last answer is
//! older than `min_interval`; a load balancer that never waits long
//! enough for a round still gets the finished round's answer.
//!
//! A group's members may use different modules, say a half-open check of
//! a port and an `exec` script that asks the service itself; each member
//! is probed within its own module's timeout. An answer is reused only for
//! the same members with the same modules (name and settings), so a reload
//! that changes the group is never answered from the old one.

#![forbid(unsafe_code)]

use crate::config::{Config, Group, GroupMember};
use crate::modules::{LoadedModule, Modules};
use crate::prober::{AddressOutcome, Failure, Reason, StepLog};
use crate::runner::ProbeRunner;
use crate::target::Target;
use crate::task::AbortOnDrop;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tokio::sync::watch;

/// The result of checking one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GroupReport {
    /// Members that failed, with why, in config order.
    pub(crate) failing: Vec<FailingMember>,
}

/// A member whose probe failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FailingMember {
    /// The member's module.
    pub(crate) module: Arc<str>,
    /// What it probed; `None` for an `exec` command run without a target.
    pub(crate) target: Option<Target>,
    /// With `ip_addresses: all`, the address that failed: such a member
    /// has a line for each of its failing addresses.
    pub(crate) address: Option<IpAddr>,
    /// Why it failed.
    pub(crate) failure: Failure,
}

impl std::fmt::Display for FailingMember {
    /// The member's line in a failing answer: `module target reason`
    /// (`module target address reason` for an address of an
    /// `ip_addresses: all` member), or
    /// `module reason` for a command run without a target, then the first
    /// line of a failed command's stderr, escaped:
    /// `zk 127.0.0.1:2181 check_failed (stderr: "not serving requests")`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.module)?;
        if let Some(target) = &self.target {
            write!(f, " {target}")?;
        }
        if let Some(address) = self.address {
            write!(f, " {address}")?;
        }
        write!(f, " {}{}", self.failure.reason, self.failure.stderr_note())
    }
}

impl GroupReport {
    /// Whether every member accepted the handshake.
    pub(crate) fn all_up(&self) -> bool {
        self.failing.is_empty()
    }
}

/// What a request for a group gets.
#[derive(Debug)]
pub(crate) enum GroupAnswer {
    /// The config has no such group; these are the groups it has.
    Unknown(Vec<String>),
    /// A member's module is not in force (validation rules this out).
    UnknownModule(String),
    /// What probing the members found.
    Checked(Arc<GroupReport>),
    /// Reloads changed or removed the group again and again while this
    /// request waited for its round.
    Interrupted,
}

/// The last answer of a group, for the landing page.
#[derive(Clone, Debug)]
pub(crate) struct LastAnswer {
    /// What the check found.
    pub(crate) report: Arc<GroupReport>,
    /// Unix time when it finished, seconds.
    pub(crate) finished_unix: f64,
}

/// A member as a round probes it: its target (none for a command that
/// takes none) and its module in force.
#[derive(Debug)]
struct RoundMember {
    module: Arc<LoadedModule>,
    target: Option<Target>,
}

/// Whether a round of `ours` checks what a request for `members`, whose
/// modules in force are `modules`, asks for.
fn same_members(
    ours: &[RoundMember],
    members: &[GroupMember],
    modules: &[Arc<LoadedModule>],
) -> bool {
    ours.len() == members.len()
        && ours
            .iter()
            .zip(members.iter().zip(modules))
            .all(|(ours, (member, module))| {
                ours.target.as_ref() == member.target.as_ref().map(|target| &target.0)
                    && ours.module.same_as(module)
            })
}

/// The members of `group` as a round probes them; `modules` are theirs,
/// in member order.
fn round_members(group: &Group, modules: Vec<Arc<LoadedModule>>) -> Vec<RoundMember> {
    group
        .members
        .iter()
        .zip(modules)
        .map(|(member, module)| RoundMember {
            module,
            target: member.target.as_ref().map(|target| target.0.clone()),
        })
        .collect()
}

/// What a round found, and when it ended.
#[derive(Debug)]
struct Done {
    report: Arc<GroupReport>,
    at: Instant,
    unix: f64,
}

/// One round of probes of a group, run by a task of its own and shared by
/// every request that joins it.
///
/// The group's state owns the round: the task runs to its end whoever
/// waits for it, and is aborted (with its probes) only when the round is
/// dropped, that is when a reload changed or removed the group and a
/// request for the new definition replaced it, or with the
/// [`GroupChecker`] itself. So at most one round per group runs at a time.
#[derive(Debug)]
struct Round {
    members: Arc<[RoundMember]>,
    /// `None` until the task has probed every member.
    done: watch::Receiver<Option<Arc<Done>>>,
    _task: AbortOnDrop,
}

impl Round {
    /// Starts probing `members` of group `name` on a task of its own.
    fn start(name: &str, members: Vec<RoundMember>, runner: &Arc<ProbeRunner>) -> Self {
        let members: Arc<[RoundMember]> = members.into();
        let (sender, done) = watch::channel(None);
        let (task_members, runner) = (Arc::clone(&members), Arc::clone(runner));
        let name = name.to_owned();
        let task = tokio::spawn(async move {
            let done = run_round(&name, &task_members, &runner).await;
            sender.send_replace(Some(Arc::new(done)));
        });
        Self {
            members,
            done,
            _task: AbortOnDrop::new(task.abort_handle()),
        }
    }

    /// What it found, once it has ended.
    fn done(&self) -> Option<Arc<Done>> {
        self.done.borrow().clone()
    }

    /// Whether its task ended without an answer: it panicked (a bug).
    fn died(&self) -> bool {
        self.done().is_none() && self.done.has_changed().is_err()
    }
}

/// A finished round: what it checked and what it found.
#[derive(Debug)]
struct Finished {
    members: Arc<[RoundMember]>,
    done: Arc<Done>,
}

/// What is known about one group.
#[derive(Debug, Default)]
struct GroupState {
    /// The round under way, which requests join.
    in_flight: Option<Round>,
    /// The last round that finished.
    last: Option<Finished>,
}

impl GroupState {
    /// The last answer, if it is younger than the group's `min_interval`
    /// and for the same members and modules (`modules`).
    fn fresh_answer(
        &mut self,
        group: &Group,
        modules: &[Arc<LoadedModule>],
    ) -> Option<Arc<GroupReport>> {
        self.retire_finished();
        let last = self.last.as_ref()?;
        (same_members(&last.members, &group.members, modules)
            && last.done.at.elapsed() < group.min_interval.0)
            .then(|| Arc::clone(&last.done.report))
    }

    /// Makes the round under way the last one if it has ended, and drops
    /// it if its task died without an answer, so that the next request
    /// starts another.
    fn retire_finished(&mut self) {
        let Some(round) = &self.in_flight else {
            return;
        };
        if let Some(done) = round.done() {
            self.last = Some(Finished {
                members: Arc::clone(&round.members),
                done,
            });
            self.in_flight = None;
        } else if round.died() {
            self.in_flight = None;
        }
    }
}

/// How many times a request follows a round that was replaced while it
/// waited (each time a reload changed the group) before it gives up.
const MAX_ROUNDS_FOLLOWED: usize = 3;

/// Runs group checks: reuses a recent answer, or joins the round under
/// way, or starts one.
#[derive(Debug, Default)]
pub(crate) struct GroupChecker {
    groups: Mutex<HashMap<String, GroupState>>,
    /// Rounds of probes started, every group together.
    rounds_started: AtomicU64,
}

impl GroupChecker {
    /// The answer for group `name` of `config`, whose modules are `modules`.
    pub(crate) async fn answer(
        &self,
        name: &str,
        config: &Config,
        modules: &Modules,
        runner: &Arc<ProbeRunner>,
    ) -> GroupAnswer {
        let Some(group) = config.groups.get(name) else {
            return GroupAnswer::Unknown(
                config.groups.keys().map(|group| group.0.clone()).collect(),
            );
        };
        let mut member_modules = Vec::with_capacity(group.members.len());
        for member in &group.members {
            let Some(module) = modules.get(&member.module.value) else {
                return GroupAnswer::UnknownModule(member.module.value.clone());
            };
            member_modules.push(Arc::clone(module));
        }
        match self.check(name, group, member_modules, runner).await {
            Some(report) => GroupAnswer::Checked(report),
            None => GroupAnswer::Interrupted,
        }
    }

    /// The group's last answer if younger than its `min_interval` and for
    /// the same members and modules, else that of the round under way,
    /// else that of a new round. `modules` are the members' modules, in
    /// member order. `None` when the round was replaced or dropped more
    /// than [`MAX_ROUNDS_FOLLOWED`] times while this request waited.
    async fn check(
        &self,
        name: &str,
        group: &Group,
        modules: Vec<Arc<LoadedModule>>,
        runner: &Arc<ProbeRunner>,
    ) -> Option<Arc<GroupReport>> {
        if !group.single_flight {
            let fresh = {
                let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
                groups
                    .entry(name.to_owned())
                    .or_default()
                    .fresh_answer(group, &modules)
            };
            return Some(match fresh {
                Some(report) => report,
                None => self.own_round(name, group, modules, runner).await,
            });
        }
        let asked = Instant::now();
        let mut done = {
            let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
            let state = groups.entry(name.to_owned()).or_default();
            if let Some(report) = state.fresh_answer(group, &modules) {
                return Some(report);
            }
            match &state.in_flight {
                Some(round) if same_members(&round.members, &group.members, &modules) => {
                    round.done.clone()
                }
                _ => {
                    let members = round_members(group, modules);
                    self.rounds_started.fetch_add(1, Ordering::Relaxed);
                    // Replacing a round for another definition of the
                    // group (a reload changed it) aborts that one.
                    let round = Round::start(name, members, runner);
                    let done = round.done.clone();
                    state.in_flight = Some(round);
                    done
                }
            }
        };
        for _ in 0..MAX_ROUNDS_FOLLOWED {
            if let Ok(finished) = done.wait_for(Option::is_some).await
                && let Some(finished) = finished.as_ref()
            {
                return Some(Arc::clone(&finished.report));
            }
            // The round was dropped: a reload changed or removed the group
            // and a request replaced or forgot it, or its task died. The
            // group's answer now is that of what replaced it, if that
            // ended after this request came; never an older one.
            let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
            let state = groups.get_mut(name)?;
            state.retire_finished();
            match (&state.in_flight, &state.last) {
                (Some(round), _) => done = round.done.clone(),
                (None, Some(last)) if last.done.at >= asked => {
                    return Some(Arc::clone(&last.done.report));
                }
                (None, _) => return None,
            }
        }
        None
    }

    /// A round of `group` of the request's own, for a group without
    /// single flight (`health-checker` without `--singleflight`): it runs
    /// in the request's future, and ends with it, as nobody else waits for
    /// it. Its answer becomes the group's last.
    async fn own_round(
        &self,
        name: &str,
        group: &Group,
        modules: Vec<Arc<LoadedModule>>,
        runner: &Arc<ProbeRunner>,
    ) -> Arc<GroupReport> {
        self.rounds_started.fetch_add(1, Ordering::Relaxed);
        let members: Arc<[RoundMember]> = round_members(group, modules).into();
        let done = Arc::new(run_round(name, &members, runner).await);
        let report = Arc::clone(&done.report);
        if let Some(state) = self
            .groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(name)
        {
            state.last = Some(Finished { members, done });
        }
        report
    }

    /// Forgets the groups that `config` does not have, aborting their
    /// rounds under way. Called when a config is put in force: a group
    /// renamed or removed by a reload would otherwise keep its last round,
    /// up to 1,000 members, for ever.
    pub(crate) fn forget_groups_not_in(&self, config: &Config) {
        self.groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|name, _| config.groups.contains_key(name.as_str()));
    }

    /// How many rounds of probes were started, every group together.
    #[cfg(test)]
    fn rounds_started(&self) -> u64 {
        self.rounds_started.load(Ordering::Relaxed)
    }

    /// The last answer for group `name`, if it was ever checked.
    pub(crate) fn last_answer(&self, name: &str) -> Option<LastAnswer> {
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let state = groups.get_mut(name)?;
        state.retire_finished();
        let last = state.last.as_ref()?;
        Some(LastAnswer {
            report: Arc::clone(&last.done.report),
            finished_unix: last.done.unix,
        })
    }
}

/// One round of group `name`: probes `members`, logs the failures and
/// says when it ended.
async fn run_round(name: &str, members: &[RoundMember], runner: &Arc<ProbeRunner>) -> Done {
    let report = probe_members(members, runner).await;
    log_failures(name, &report);
    Done {
        report,
        at: Instant::now(),
        unix: crate::clock::unix_seconds(),
    }
}

/// The most failing members a round logs one by one; the others are
/// counted in one more line, so that a large group that fails whole does
/// not flood the log.
const MAX_FAILURES_LOGGED: usize = 10;

/// Logs each failing member of group `name` at `warn`, the default level
/// shows: which member, why, and what a failed command wrote to stderr.
fn log_failures(name: &str, report: &GroupReport) {
    for member in report.failing.iter().take(MAX_FAILURES_LOGGED) {
        tracing::warn!(
            group = name,
            module = %member.module,
            target = member.target.as_ref().map_or_else(String::new, ToString::to_string),
            reason = %member.failure.reason,
            detail = member.failure.detail,
            stderr = member.failure.stderr.as_deref().unwrap_or_default(),
            "group member failed"
        );
    }
    if let Some(more) = report.failing.len().checked_sub(MAX_FAILURES_LOGGED)
        && more > 0
    {
        tracing::warn!(
            group = name,
            more,
            "more group members failed; the group's answer lists them all"
        );
    }
}

/// Probes every member at once, each within its module's timeout. A
/// member whose probe task ended without an outcome (it panicked) counts
/// as failed, never as up.
async fn probe_members(members: &[RoundMember], runner: &Arc<ProbeRunner>) -> Arc<GroupReport> {
    let mut probes = tokio::task::JoinSet::new();
    let mut index_of = HashMap::with_capacity(members.len());
    for (index, member) in members.iter().enumerate() {
        let (runner, module, target) = (
            Arc::clone(runner),
            Arc::clone(&member.module),
            member.target.clone(),
        );
        let task = probes.spawn(async move {
            let timeout = module.module.timeout();
            let outcome = runner
                .run(&module, target.as_ref(), timeout, &mut StepLog::disabled())
                .await;
            (outcome.failure, outcome.addresses)
        });
        index_of.insert(task.id(), index);
    }
    let failures = failures_in_order(probes, &index_of, members.len()).await;
    let mut failing = Vec::new();
    for (member, (failure, addresses)) in members.iter().zip(failures) {
        let Some(failure) = failure else { continue };
        let line = |address, failure| FailingMember {
            module: Arc::clone(&member.module.name),
            target: member.target.clone(),
            address,
            failure,
        };
        // ip_addresses: all: a line for each address that failed.
        let failed: Vec<_> = addresses
            .into_iter()
            .filter_map(|probed| Some(line(Some(probed.ip), probed.failure?)))
            .collect();
        if failed.is_empty() {
            failing.push(line(None, failure));
        } else {
            failing.extend(failed);
        }
    }
    Arc::new(GroupReport { failing })
}

/// How a member's probe ended: its failure (`None` for success), and
/// with `ip_addresses: all` each address's.
type MemberEnd = (Option<Failure>, Vec<AddressOutcome>);

/// The failure of each of `count` probes, in member order; `index_of`
/// maps each task to its member. A task that ended without an outcome
/// (it panicked) is a failure.
async fn failures_in_order(
    mut probes: tokio::task::JoinSet<MemberEnd>,
    index_of: &HashMap<tokio::task::Id, usize>,
    count: usize,
) -> Vec<MemberEnd> {
    let mut failures: Vec<MemberEnd> = vec![(None, Vec::new()); count];
    while let Some(joined) = probes.join_next_with_id().await {
        let (id, failure) = match joined {
            Ok((id, failure)) => (id, failure),
            Err(error) => (
                error.id(),
                (
                    Some(Failure::new(
                        Reason::Local,
                        format!("the probe ended without an outcome: {error}"),
                    )),
                    Vec::new(),
                ),
            ),
        };
        if let Some(index) = index_of.get(&id) {
            failures[*index] = failure;
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::ResultCounters;
    use crate::prober::Resolver;
    use std::time::Duration;

    fn config(groups: &[&str]) -> Config {
        let mut yaml = String::from("groups:\n");
        for name in groups {
            // A closed loopback port: refused at once.
            yaml.push_str(&format!(
                "  {name}:\n    module: tcp_connect\n    targets: [\"127.0.0.1:1\"]\n"
            ));
        }
        Config::parse("t.yml", &yaml).unwrap()
    }

    async fn check(checker: &GroupChecker, config: &Config, name: &str, runner: &Arc<ProbeRunner>) {
        let modules = Modules::load(config, &ResultCounters::default());
        let GroupAnswer::Checked(report) = checker.answer(name, config, &modules, runner).await
        else {
            panic!("{name} is a group of the config");
        };
        assert_eq!(report.failing.len(), 1, "{name}: {report:?}");
    }

    #[tokio::test]
    async fn groups_gone_from_the_config_are_forgotten() {
        let runner = Arc::new(ProbeRunner::new(4, Resolver::from_system(&[])).unwrap());
        let checker = GroupChecker::default();
        let before = config(&["kept", "renamed"]);
        for name in ["kept", "renamed"] {
            check(&checker, &before, name, &runner).await;
        }
        assert!(checker.last_answer("renamed").is_some());

        let after = config(&["kept", "new_name"]);
        checker.forget_groups_not_in(&after);
        assert!(checker.last_answer("renamed").is_none());
        assert!(
            checker.last_answer("kept").is_some(),
            "a group still configured keeps its last answer"
        );
        let known: Vec<String> = checker.groups.lock().unwrap().keys().cloned().collect();
        assert_eq!(known, ["kept"]);
    }

    /// A round whose task ended without an answer (a bug: probes that
    /// panic already count as failures) must not hand its waiters an
    /// answer older than their request: here the last one said "all up"
    /// a minute ago, of a member that is down now.
    #[tokio::test]
    async fn a_round_that_died_is_not_answered_with_an_older_round() {
        let runner = Arc::new(ProbeRunner::new(4, Resolver::from_system(&[])).unwrap());
        let checker = GroupChecker::default();
        let config = config(&["edge"]);
        let modules = Modules::load(&config, &ResultCounters::default());
        let group = config.groups.get("edge").unwrap();
        let member_modules: Vec<_> = group
            .members
            .iter()
            .map(|member| Arc::clone(modules.get(&member.module.value).unwrap()))
            .collect();
        let members: Arc<[RoundMember]> = round_members(group, member_modules).into();
        let old = Finished {
            members: Arc::clone(&members),
            done: Arc::new(Done {
                report: Arc::new(GroupReport {
                    failing: Vec::new(),
                }),
                at: Instant::now() - Duration::from_secs(60),
                unix: 0.0,
            }),
        };
        let (sender, done) = watch::channel(None);
        let dies = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(sender);
        });
        let dying = Round {
            members,
            done,
            _task: AbortOnDrop::new(dies.abort_handle()),
        };
        checker.groups.lock().unwrap().insert(
            "edge".to_owned(),
            GroupState {
                in_flight: Some(dying),
                last: Some(old),
            },
        );
        match checker.answer("edge", &config, &modules, &runner).await {
            GroupAnswer::Checked(report) => assert!(
                !report.all_up(),
                "answered with the minute-old round: {report:?}"
            ),
            GroupAnswer::Interrupted => {}
            other => panic!("{other:?}"),
        }
    }

    /// A config whose module `slow` runs `sleep 30` within `timeout`, a
    /// check that never answers in time, and whose group `edge` has
    /// `members` members of it and `min_interval`.
    fn sleeping_group(timeout: &str, members: usize, min_interval: &str) -> Config {
        let members: String = (0..members).map(|_| "      - {module: slow}\n").collect();
        Config::parse(
            "t.yml",
            &format!(
                "modules:\n  slow: {{prober: exec, timeout: {timeout}, exec: {{command: [sleep, \"30\"]}}}}\n\
                 groups:\n  edge:\n    min_interval: {min_interval}\n    members:\n{members}"
            ),
        )
        .unwrap()
    }

    /// Clients that give up after 0.25 s on a group whose members take
    /// 1 s to time out (the adversarial run's load balancers; its members
    /// dropped SYNs, as in tests/integration/scheduler.rs, and here they run a command
    /// that outlives its timeout): a round
    /// once started runs to its end, however many clients leave it, so
    /// rounds stay within one per `min_interval` after the last ended, and
    /// clients that ask within `min_interval` of its end get its answer.
    /// When the round ran inside the requester's future, each client
    /// that gave up cancelled it and the next one started it over: 20
    /// clients caused a round every 0.25 s and none got an answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clients_that_give_up_neither_restart_a_round_nor_go_unanswered() {
        let config = sleeping_group("1s", 5, "1s");
        let config = Arc::new(config);
        let modules = Arc::new(Modules::load(&config, &ResultCounters::default()));
        let runner = Arc::new(ProbeRunner::new(4096, Resolver::from_system(&[])).unwrap());
        let checker = Arc::new(GroupChecker::default());
        let started = Instant::now();
        let run_for = Duration::from_millis(3500);
        let mut clients = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (config, modules, runner, checker) = (
                Arc::clone(&config),
                Arc::clone(&modules),
                Arc::clone(&runner),
                Arc::clone(&checker),
            );
            clients.spawn(async move {
                let mut answered = 0;
                while started.elapsed() < run_for {
                    let asked = checker.answer("edge", &config, &modules, &runner);
                    if let Ok(GroupAnswer::Checked(report)) =
                        tokio::time::timeout(Duration::from_millis(250), asked).await
                    {
                        assert_eq!(report.failing.len(), 5, "{report:?}");
                        answered += 1;
                    }
                }
                answered
            });
        }
        let mut answered = 0;
        while let Some(client) = clients.join_next().await {
            answered += client.unwrap();
        }
        let rounds = checker.rounds_started();
        // Round 1 from 0 to 1 s, its answer reused to 2 s; round 2 from
        // 2 s to 3 s, reused to 4 s. One more for a slow machine.
        assert!(
            (1..=3).contains(&rounds),
            "{rounds} rounds started in {:?}",
            started.elapsed()
        );
        assert!(
            answered > 0,
            "no client got an answer in {:?}, with {rounds} rounds started",
            started.elapsed()
        );
    }

    /// Polls `runner`'s probes in flight every 10 ms until there are
    /// `want`; fails the test after 3 s.
    async fn wait_for_in_flight(runner: &ProbeRunner, want: usize) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while runner.in_flight() != want {
            assert!(
                Instant::now() < deadline,
                "{} probes in flight, want {want}",
                runner.in_flight()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A round belongs to the checker: it runs on without its requester,
    /// and ends, probes and all, when the checker (the exporter) goes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_round_outlives_its_requester_but_not_the_checker() {
        let config = sleeping_group("10s", 2, "1s");
        let modules = Modules::load(&config, &ResultCounters::default());
        let runner = Arc::new(ProbeRunner::new(16, Resolver::from_system(&[])).unwrap());
        let checker = GroupChecker::default();
        let asked = checker.answer("edge", &config, &modules, &runner);
        assert!(
            tokio::time::timeout(Duration::from_millis(100), asked)
                .await
                .is_err()
        );
        wait_for_in_flight(&runner, 2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            runner.in_flight(),
            2,
            "the requester left; the round goes on"
        );
        drop(checker);
        wait_for_in_flight(&runner, 0).await;
    }

    /// A request for a group that a reload changed replaces the round
    /// under way for the old definition; who waited for that one gets the
    /// new round's answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_round_replaced_by_a_reload_hands_its_waiters_the_new_answer() {
        let old = sleeping_group("10s", 1, "1s");
        // The same group and module name; the module now fails at once.
        let new = Config::parse(
            "t.yml",
            "modules:\n  slow: {prober: exec, timeout: 10s, exec: {command: [\"false\"]}}\n\
             groups:\n  edge:\n    members: [{module: slow}]\n",
        )
        .unwrap();
        let counters = ResultCounters::default();
        let (old_modules, new_modules) = (
            Modules::load(&old, &counters),
            Modules::load(&new, &counters),
        );
        let runner = Arc::new(ProbeRunner::new(16, Resolver::from_system(&[])).unwrap());
        let checker = GroupChecker::default();
        let waiting = checker.answer("edge", &old, &old_modules, &runner);
        let replacing = async {
            wait_for_in_flight(&runner, 1).await;
            checker.answer("edge", &new, &new_modules, &runner).await
        };
        let (waited, replaced) = tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(waiting, replacing)
        })
        .await
        .expect("the old round was replaced, not waited for");
        for answer in [waited, replaced] {
            let GroupAnswer::Checked(report) = answer else {
                panic!("{answer:?}");
            };
            assert_eq!(report.failing[0].failure.reason, Reason::CheckFailed);
        }
        wait_for_in_flight(&runner, 0).await;
        assert_eq!(checker.rounds_started(), 2);
    }

    #[tokio::test]
    async fn a_member_whose_probe_panicked_is_failing_not_up() {
        let mut probes = tokio::task::JoinSet::new();
        let mut index_of = HashMap::new();
        let up = probes.spawn(async { (None, Vec::new()) });
        let panicked = probes.spawn(async { panic!("a bug in a prober") });
        index_of.insert(up.id(), 0);
        index_of.insert(panicked.id(), 1);
        let failures = failures_in_order(probes, &index_of, 2).await;
        assert_eq!(failures[0], (None, Vec::new()));
        let failure = failures[1].0.as_ref().expect("the panicked member fails");
        assert_eq!(failure.reason, Reason::Local);
        assert!(failure.detail.contains("without an outcome"), "{failure}");
    }
}
