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
//! A group's members may use different modules, say a half-open check of
//! a port and an `exec` script that asks the service itself; each member
//! is probed within its own module's timeout. An answer is reused only for
//! the same members with the same modules (name and settings), so a reload
//! that changes the group is never answered from the old one.

#![forbid(unsafe_code)]

use crate::config::{Config, Group, GroupMember};
use crate::modules::{LoadedModule, Modules};
use crate::prober::{Failure, Reason};
use crate::runner::ProbeRunner;
use crate::target::Target;
use crate::trace::Trace;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tokio::sync::OnceCell;

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
    /// What it probed.
    pub(crate) target: Target,
    /// Why it failed.
    pub(crate) failure: Failure,
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
}

/// The last answer of a group, for the landing page.
#[derive(Clone, Debug)]
pub(crate) struct LastAnswer {
    /// What the check found.
    pub(crate) report: Arc<GroupReport>,
    /// Unix time when it finished, seconds.
    pub(crate) finished_unix: f64,
}

/// A member as a round probes it: its target and its module in force.
#[derive(Debug)]
struct RoundMember {
    module: Arc<LoadedModule>,
    target: Target,
}

/// One round of probes of a group, shared by every request that joins it.
#[derive(Debug)]
struct Round {
    members: Vec<RoundMember>,
    report: OnceCell<Arc<GroupReport>>,
}

impl Round {
    /// Whether this round checks what a request for `members`, whose
    /// modules in force are `modules`, asks for.
    fn is_for(&self, members: &[GroupMember], modules: &[Arc<LoadedModule>]) -> bool {
        self.members.len() == members.len()
            && self.members.iter().zip(members.iter().zip(modules)).all(
                |(ours, (member, module))| {
                    ours.target == member.target.0 && ours.module.same_as(module)
                },
            )
    }
}

/// A finished round and when it finished.
#[derive(Debug)]
struct Finished {
    round: Arc<Round>,
    report: Arc<GroupReport>,
    at: Instant,
    unix: f64,
}

/// What is known about one group.
#[derive(Debug, Default)]
struct GroupState {
    /// The round under way, which requests join.
    in_flight: Option<Arc<Round>>,
    /// The last round that finished.
    last: Option<Finished>,
}

/// Runs group checks: reuses a recent answer, or joins the round under
/// way, or starts one.
#[derive(Debug, Default)]
pub(crate) struct GroupChecker {
    groups: Mutex<HashMap<String, GroupState>>,
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
        GroupAnswer::Checked(self.check(name, group, member_modules, runner).await)
    }

    /// The group's last answer if younger than its `min_interval` and for
    /// the same members and modules, else that of the round under way,
    /// else that of a new round. `modules` are the members' modules, in
    /// member order.
    async fn check(
        &self,
        name: &str,
        group: &Group,
        modules: Vec<Arc<LoadedModule>>,
        runner: &Arc<ProbeRunner>,
    ) -> Arc<GroupReport> {
        let round = {
            let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
            let state = groups.entry(name.to_owned()).or_default();
            if let Some(last) = &state.last
                && last.round.is_for(&group.members, &modules)
                && last.at.elapsed() < group.min_interval.0
            {
                return Arc::clone(&last.report);
            }
            match &state.in_flight {
                Some(round) if round.is_for(&group.members, &modules) => Arc::clone(round),
                _ => {
                    let members = group
                        .members
                        .iter()
                        .zip(modules)
                        .map(|(member, module)| RoundMember {
                            module,
                            target: member.target.0.clone(),
                        })
                        .collect();
                    let round = Arc::new(Round {
                        members,
                        report: OnceCell::new(),
                    });
                    state.in_flight = Some(Arc::clone(&round));
                    round
                }
            }
        };
        let report = round
            .report
            .get_or_init(|| probe_members(&round.members, runner))
            .await
            .clone();
        // The first request to finish retires the round as the group's last
        // answer. Until then, latecomers still join the finished round, so
        // no request falls between the round and its answer.
        let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = groups.get_mut(name)
            && state
                .in_flight
                .as_ref()
                .is_some_and(|current| Arc::ptr_eq(current, &round))
        {
            state.in_flight = None;
            state.last = Some(Finished {
                round,
                report: Arc::clone(&report),
                at: Instant::now(),
                unix: crate::clock::unix_seconds(),
            });
        }
        report
    }

    /// Forgets the groups that `config` does not have. Called when a config
    /// is put in force: a group renamed or removed by a reload would
    /// otherwise keep its last round, up to 1,000 members, for ever.
    pub(crate) fn forget_groups_not_in(&self, config: &Config) {
        self.groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|name, _| config.groups.contains_key(name.as_str()));
    }

    /// The last answer for group `name`, if it was ever checked.
    pub(crate) fn last_answer(&self, name: &str) -> Option<LastAnswer> {
        let groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let last = groups.get(name)?.last.as_ref()?;
        Some(LastAnswer {
            report: Arc::clone(&last.report),
            finished_unix: last.unix,
        })
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
            let timeout = module.module.timeout.0;
            runner
                .run(&module, &target, timeout, &mut Trace::disabled())
                .await
                .failure
        });
        index_of.insert(task.id(), index);
    }
    let failures = failures_in_order(probes, &index_of, members.len()).await;
    Arc::new(GroupReport {
        failing: members
            .iter()
            .zip(failures)
            .filter_map(|(member, failure)| {
                Some(FailingMember {
                    module: Arc::clone(&member.module.name),
                    target: member.target.clone(),
                    failure: failure?,
                })
            })
            .collect(),
    })
}

/// The failure of each of `count` probes, in member order; `index_of`
/// maps each task to its member. A task that ended without an outcome
/// (it panicked) is a failure.
async fn failures_in_order(
    mut probes: tokio::task::JoinSet<Option<Failure>>,
    index_of: &HashMap<tokio::task::Id, usize>,
    count: usize,
) -> Vec<Option<Failure>> {
    let mut failures: Vec<Option<Failure>> = vec![None; count];
    while let Some(joined) = probes.join_next_with_id().await {
        let (id, failure) = match joined {
            Ok((id, failure)) => (id, failure),
            Err(error) => (
                error.id(),
                Some(Failure::new(
                    Reason::Local,
                    format!("the probe ended without an outcome: {error}"),
                )),
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
        let runner = Arc::new(ProbeRunner::new(4, Resolver::from_system(&[])));
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

    #[tokio::test]
    async fn a_member_whose_probe_panicked_is_failing_not_up() {
        let mut probes = tokio::task::JoinSet::new();
        let mut index_of = HashMap::new();
        let up = probes.spawn(async { None });
        let panicked = probes.spawn(async { panic!("a bug in a prober") });
        index_of.insert(up.id(), 0);
        index_of.insert(panicked.id(), 1);
        let failures = failures_in_order(probes, &index_of, 2).await;
        assert_eq!(failures[0], None);
        let failure = failures[1].as_ref().expect("the panicked member fails");
        assert_eq!(failure.reason, Reason::Local);
        assert!(failure.detail.contains("without an outcome"), "{failure}");
    }
}
