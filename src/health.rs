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
//! An answer is reused only for the same module (name and settings) and
//! members, so a reload that changes the group is never answered from the
//! old one.

use crate::config::{Config, Module};
use crate::prober::Failure;
use crate::runner::ProbeRunner;
use crate::target::Target;
use crate::trace::Trace;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// The result of checking one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupReport {
    /// Members that failed, with why, in config order.
    pub failing: Vec<(Target, Failure)>,
}

impl GroupReport {
    /// Whether every member accepted the handshake.
    #[must_use]
    pub fn all_up(&self) -> bool {
        self.failing.is_empty()
    }
}

/// The last answer of a group, for the landing page.
#[derive(Clone, Debug)]
pub struct LastAnswer {
    /// What the check found.
    pub report: Arc<GroupReport>,
    /// Unix time when it finished, seconds.
    pub finished_unix: f64,
}

/// One round of probes of a group, shared by every request that joins it.
#[derive(Debug)]
struct Round {
    module_name: String,
    module: Module,
    members: Vec<Target>,
    report: OnceCell<Arc<GroupReport>>,
}

impl Round {
    /// Whether this round checks what a request for `members` with
    /// `module` asks for.
    fn is_for(&self, module_name: &str, module: &Module, members: &[Target]) -> bool {
        self.module_name == module_name && self.module == *module && self.members == members
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
pub struct GroupChecker {
    groups: Mutex<HashMap<String, GroupState>>,
}

impl GroupChecker {
    /// The answer for group `name`: its last one if younger than
    /// `min_interval` and for the same module and `members`, else
    /// that of the round under way, else that of a new round probing
    /// `members` with `module`.
    pub async fn check(
        &self,
        name: &str,
        module_name: &str,
        module: &Module,
        members: &[Target],
        min_interval: Duration,
        runner: &Arc<ProbeRunner>,
    ) -> Arc<GroupReport> {
        let round = {
            let mut groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
            let state = groups.entry(name.to_owned()).or_default();
            if let Some(last) = &state.last
                && last.round.is_for(module_name, module, members)
                && last.at.elapsed() < min_interval
            {
                return Arc::clone(&last.report);
            }
            match &state.in_flight {
                Some(round) if round.is_for(module_name, module, members) => Arc::clone(round),
                _ => {
                    let round = Arc::new(Round {
                        module_name: module_name.to_owned(),
                        module: module.clone(),
                        members: members.to_vec(),
                        report: OnceCell::new(),
                    });
                    state.in_flight = Some(Arc::clone(&round));
                    round
                }
            }
        };
        let report = round
            .report
            .get_or_init(|| probe_members(module_name, module, members, runner))
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
    pub fn forget_groups_not_in(&self, config: &Config) {
        self.groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|name, _| config.groups.contains_key(name.as_str()));
    }

    /// The last answer for group `name`, if it was ever checked.
    #[must_use]
    pub fn last_answer(&self, name: &str) -> Option<LastAnswer> {
        let groups = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        let last = groups.get(name)?.last.as_ref()?;
        Some(LastAnswer {
            report: Arc::clone(&last.report),
            finished_unix: last.unix,
        })
    }
}

async fn probe_members(
    module_name: &str,
    module: &Module,
    members: &[Target],
    runner: &Arc<ProbeRunner>,
) -> Arc<GroupReport> {
    let mut probes = tokio::task::JoinSet::new();
    for (index, member) in members.iter().enumerate() {
        let (runner, module_name, module, member) = (
            Arc::clone(runner),
            module_name.to_owned(),
            module.clone(),
            member.clone(),
        );
        probes.spawn(async move {
            let timeout = module.timeout.0;
            let outcome = runner
                .run(
                    &module_name,
                    &module,
                    &member,
                    timeout,
                    &mut Trace::disabled(),
                )
                .await;
            (index, member, outcome.failure)
        });
    }
    let mut failing = Vec::new();
    while let Some(joined) = probes.join_next().await {
        if let Ok((index, member, Some(failure))) = joined {
            failing.push((index, member, failure));
        }
    }
    failing.sort_by_key(|(index, _, _)| *index);
    Arc::new(GroupReport {
        failing: failing
            .into_iter()
            .map(|(_, member, failure)| (member, failure))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::exporter::ExporterMetrics;

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
        let group = &config.groups[name];
        let members: Vec<Target> = group
            .targets
            .iter()
            .map(|member| member.0.clone())
            .collect();
        let module_name = &group.module.value;
        let report = checker
            .check(
                name,
                module_name,
                &config.modules[module_name],
                &members,
                group.min_interval.0,
                runner,
            )
            .await;
        assert_eq!(report.failing.len(), 1, "{name}: {report:?}");
    }

    #[tokio::test]
    async fn groups_gone_from_the_config_are_forgotten() {
        let runner = Arc::new(ProbeRunner::new(4, Arc::new(ExporterMetrics::new())));
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
}
