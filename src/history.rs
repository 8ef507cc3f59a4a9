//! The last probes made through `/probe`, with their step logs, for the
//! landing page and `/logs?id=N` (blackbox_exporter keeps the same).
//!
//! A record keeps the probe's steps as [`Steps`], not as text: the text
//! is made only when `/logs` asks for it, so remembering a probe costs the
//! request no formatting. The number kept is capped at [`MAX_LIMIT`], and
//! readers take one page of records rather than a copy of all of them.

#![forbid(unsafe_code)]

use crate::prober::{Failure, Outcome, Reason};
use crate::target::Target;
use crate::trace::Steps;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

/// One remembered `/probe` request.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ProbeRecord {
    /// Increasing id, for `/logs?id=N`.
    pub(crate) id: u64,
    /// Unix time when it finished, seconds.
    pub(crate) finished_unix: f64,
    /// The module name.
    pub(crate) module: Arc<str>,
    /// The target, as parsed from the request; `None` for an `exec`
    /// command run without one.
    pub(crate) target: Option<Target>,
    /// `None` on success.
    pub(crate) failure: Option<Failure>,
    /// Duration of the probe, seconds.
    pub(crate) duration: f64,
    /// What the probe did.
    pub(crate) steps: Steps,
}

impl ProbeRecord {
    /// `None` on success.
    pub(crate) fn reason(&self) -> Option<Reason> {
        self.failure.as_ref().map(|failure| failure.reason)
    }

    /// The step log, as `debug=true` shows it.
    pub(crate) fn log(&self) -> String {
        let failure = self.failure.as_ref().map(|failure| failure as _);
        self.steps.render(self.target.as_ref(), failure)
    }
}

/// The most records `--history.limit` may keep: about 9 MB. That covers
/// minutes of `/probe` traffic from a typical Prometheus, enough to look up
/// a recent failure's log; a million records took 1.29 GB.
pub(crate) const MAX_LIMIT: u32 = 10_000;

/// A bounded, newest-last list of probe records.
#[derive(Debug)]
pub(crate) struct History {
    limit: usize,
    records: Mutex<(u64, VecDeque<ProbeRecord>)>,
}

impl History {
    /// Keeps the last `limit` probes, at most [`MAX_LIMIT`]; 0 keeps none.
    pub(crate) fn new(limit: usize) -> Self {
        let limit = limit.min(MAX_LIMIT as usize);
        Self {
            limit,
            records: Mutex::new((0, VecDeque::with_capacity(limit.min(1024)))),
        }
    }

    /// Whether records are kept at all, so callers can skip the step log.
    pub(crate) fn is_enabled(&self) -> bool {
        self.limit > 0
    }

    /// Remembers one finished probe of `target` with module `module`.
    pub(crate) fn record(
        &self,
        module: &Arc<str>,
        target: Option<Target>,
        outcome: Outcome,
        steps: Steps,
    ) {
        if self.limit == 0 {
            return;
        }
        let finished_unix = crate::clock::unix_seconds();
        let mut guard = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let (next_id, records) = &mut *guard;
        *next_id += 1;
        if records.len() == self.limit {
            records.pop_front();
        }
        records.push_back(ProbeRecord {
            id: *next_id,
            finished_unix,
            module: Arc::clone(module),
            target,
            failure: outcome.failure,
            duration: outcome.duration.as_secs_f64(),
            steps,
        });
    }

    /// Up to `take` records, newest first, after skipping the `skip`
    /// newest; and how many are kept in all.
    pub(crate) fn newest(&self, skip: usize, take: usize) -> (Vec<ProbeRecord>, usize) {
        let guard = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let records = &guard.1;
        let page = records
            .iter()
            .rev()
            .skip(skip)
            .take(take)
            .cloned()
            .collect();
        (page, records.len())
    }

    /// The record with `id`, if still kept.
    pub(crate) fn get(&self, id: u64) -> Option<ProbeRecord> {
        let guard = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let records = &guard.1;
        // Ids are consecutive, so the oldest kept one gives the position.
        let oldest = records.front()?.id;
        let index = usize::try_from(id.checked_sub(oldest)?).ok()?;
        records.get(index).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keeps_the_newest_up_to_the_limit() {
        let history = History::new(2);
        let outcome = Outcome::not_started(Failure::new(Reason::Local, "x"), Duration::ZERO);
        let module: Arc<str> = Arc::from("m");
        for n in 1..=3 {
            let target = Target::parse(&format!("127.0.0.{n}:1")).unwrap();
            history.record(&module, Some(target), outcome.clone(), Steps::default());
        }
        let ids = |(records, _): (Vec<ProbeRecord>, usize)| -> Vec<u64> {
            records.iter().map(|record| record.id).collect()
        };
        assert_eq!(ids(history.newest(0, 10)), [3, 2]);
        assert_eq!(ids(history.newest(1, 10)), [2]);
        assert_eq!(history.newest(2, 10), (Vec::new(), 2));
        assert!(history.get(1).is_none() && history.get(4).is_none());
        assert_eq!(
            history.get(3).unwrap().target.unwrap().to_string(),
            "127.0.0.3:1"
        );
        assert_eq!(history.get(2).unwrap().id, 2);
    }

    #[test]
    fn the_limit_is_capped() {
        let history = History::new(usize::MAX);
        assert_eq!(history.limit, MAX_LIMIT as usize);
    }
}
