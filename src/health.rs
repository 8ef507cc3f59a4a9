//! `/health/<group>`: one answer for many ports, for load balancers that
//! can check only one URL.
//!
//! Every member of the group is probed now, concurrently. Concurrent
//! requests for the same group share one in-flight check (single flight):
//! forty load-balancer nodes asking at once cause one round of probes.

use crate::config::Module;
use crate::prober::Failure;
use crate::runner::ProbeRunner;
use crate::target::Target;
use crate::trace::Trace;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};
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

type SharedCheck = Arc<OnceCell<Arc<GroupReport>>>;

/// The last answer of a group, for the landing page.
#[derive(Clone, Debug)]
pub struct LastAnswer {
    /// What the check found.
    pub report: Arc<GroupReport>,
    /// Unix time when it finished, seconds.
    pub finished_unix: f64,
}

/// Runs group checks, sharing each in-flight check among its requests.
#[derive(Debug, Default)]
pub struct GroupChecker {
    in_flight: Mutex<HashMap<String, SharedCheck>>,
    last: Mutex<HashMap<String, LastAnswer>>,
}

impl GroupChecker {
    /// Checks `members` of group `name` with `module`, or joins the check
    /// of that group already under way.
    pub async fn check(
        &self,
        name: &str,
        module_name: &str,
        module: &Module,
        members: &[Target],
        runner: &Arc<ProbeRunner>,
    ) -> Arc<GroupReport> {
        let shared = {
            let mut in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(in_flight.entry(name.to_owned()).or_default())
        };
        let report = shared
            .get_or_init(|| probe_members(module_name, module, members, runner))
            .await
            .clone();
        // The first request to finish retires the check; later requests
        // start a fresh one instead of reusing an old answer.
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if in_flight
            .get(name)
            .is_some_and(|current| Arc::ptr_eq(current, &shared))
        {
            in_flight.remove(name);
            drop(in_flight);
            self.remember(name, &report);
        }
        report
    }

    /// The last answer for group `name`, if it was ever checked.
    #[must_use]
    pub fn last_answer(&self, name: &str) -> Option<LastAnswer> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn remember(&self, name: &str, report: &Arc<GroupReport>) {
        let finished_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        let answer = LastAnswer {
            report: Arc::clone(report),
            finished_unix,
        };
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), answer);
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
