//! The modules in force, each with its probe counters, resolved once per
//! config load.
//!
//! A probe counts its result into `synack_exporter_probes_total{module,
//! result}`. Looking the counter up by name for every probe meant a hash
//! of the name and a lock on the probe thread; here each [`LoadedModule`]
//! carries its counters, found once when the config is put in force, and
//! a probe adds to them with one atomic increment.
//!
//! Counters outlive reloads: [`ResultCounters`] keeps those of every
//! module name ever loaded, so a reload neither resets a counter (which
//! `rate()` would read as a restart) nor drops the series of a module
//! that left the config.

#![forbid(unsafe_code)]

use crate::config::{Config, Module};
use crate::prober::{Outcome, RESULTS, result_index};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// How many probes of one module ended with each result of [`RESULTS`],
/// and how many its target policy refused, which sent nothing and so are
/// not probes (`synack_exporter_probes_denied_total`).
#[derive(Debug, Default)]
pub(crate) struct ResultCounts([AtomicU64; RESULTS.len()], AtomicU64);

impl ResultCounts {
    /// Counts one finished probe, or one refused by the policy.
    pub(crate) fn record(&self, outcome: &Outcome) {
        let counter = if outcome.denied_by_policy {
            &self.1
        } else {
            &self.0[result_index(outcome.reason())]
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// How many targets the module's policy refused.
    pub(crate) fn denied(&self) -> u64 {
        self.1.load(Ordering::Relaxed)
    }

    /// The counts, in the order of [`RESULTS`].
    pub(crate) fn values(&self) -> [u64; RESULTS.len()] {
        std::array::from_fn(|index| self.0[index].load(Ordering::Relaxed))
    }
}

/// The counters of every module name ever loaded.
#[derive(Debug, Default)]
pub(crate) struct ResultCounters(Mutex<BTreeMap<String, Arc<ResultCounts>>>);

impl ResultCounters {
    /// The counters of module `name`, created at zero the first time.
    fn of(&self, name: &str) -> Arc<ResultCounts> {
        let mut by_name = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(counts) = by_name.get(name) {
            return Arc::clone(counts);
        }
        let counts = Arc::new(ResultCounts::default());
        by_name.insert(name.to_owned(), Arc::clone(&counts));
        counts
    }

    /// Every module name with its counts, in name order.
    pub(crate) fn snapshot(&self) -> Vec<(String, [u64; RESULTS.len()])> {
        let by_name = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        by_name
            .iter()
            .map(|(name, counts)| (name.clone(), counts.values()))
            .collect()
    }
}

impl ResultCounters {
    /// Every module name with the number of targets its policy refused,
    /// in name order.
    pub(crate) fn denied_snapshot(&self) -> Vec<(String, u64)> {
        let by_name = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        by_name
            .iter()
            .map(|(name, counts)| (name.clone(), counts.denied()))
            .collect()
    }
}

/// A module of the config in force, with the counters its probes count into.
#[derive(Debug)]
pub(crate) struct LoadedModule {
    /// The name it has in the config.
    pub(crate) name: Arc<str>,
    /// What it probes with.
    pub(crate) module: Module,
    /// Its `synack_exporter_probes_total` counters.
    pub(crate) results: Arc<ResultCounts>,
}

impl LoadedModule {
    /// `module` under no name, with counters of its own that nothing
    /// reads: for probes of a library caller, which has no `/metrics`.
    pub(crate) fn uncounted(module: Module) -> Self {
        Self {
            name: Arc::from(""),
            module,
            results: Arc::default(),
        }
    }

    /// Whether `other` probes the same way under the same name: what lets
    /// a scheduled target or a group's last answer carry across a reload.
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        self.name == other.name && self.module == other.module
    }
}

/// The modules of one config, by name.
#[derive(Debug, Default)]
pub(crate) struct Modules(BTreeMap<String, Arc<LoadedModule>>);

impl Modules {
    /// The modules of `config`, with their counters from `counters`.
    pub(crate) fn load(config: &Config, counters: &ResultCounters) -> Self {
        Self(
            config
                .modules
                .iter()
                .map(|(name, module)| {
                    let loaded = LoadedModule {
                        name: Arc::from(name.as_str()),
                        module: module.clone(),
                        results: counters.of(name),
                    };
                    (name.clone(), Arc::new(loaded))
                })
                .collect(),
        )
    }

    /// The module called `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Arc<LoadedModule>> {
        self.0.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prober::{Failure, Reason};
    use std::time::Duration;

    fn config(yaml: &str) -> Config {
        Config::parse("t.yml", yaml).unwrap()
    }

    #[test]
    fn counters_are_found_at_load_and_survive_reloads() {
        let counters = ResultCounters::default();
        let first = Modules::load(
            &config("modules:\n  web: {prober: tcp_connect}\n"),
            &counters,
        );
        let refused = Outcome::not_started(Failure::new(Reason::Refused, "x"), Duration::ZERO);
        first.get("web").unwrap().results.record(&refused);

        let second = Modules::load(&config(""), &counters);
        assert!(second.get("web").is_none(), "web left the config");
        let third = Modules::load(
            &config("modules:\n  web: {prober: tcp_halfopen}\n"),
            &counters,
        );
        third.get("web").unwrap().results.record(&refused);
        let web = counters
            .snapshot()
            .into_iter()
            .find(|(name, _)| name == "web")
            .unwrap();
        assert_eq!(web.1, [0, 2, 0, 0, 0, 0, 0, 0, 0], "counted across reloads");
        assert!(
            !first.get("web").unwrap().same_as(third.get("web").unwrap()),
            "another prober is another module"
        );
    }
}
