//! What `/metrics` says about scheduled targets: the scheduler's state as
//! a scraper sees it, so tests need none of the exporter's internals.

use super::TestExporter;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The series of one scheduled target, from one exposition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScheduledState {
    /// `probe_success` is 1: the last probe succeeded.
    pub success: bool,
    /// `probe_healthy` is 1: the rise/fall state is healthy.
    pub healthy: bool,
    /// `probe_last_probe_timestamp_seconds`: 0 before any probe.
    pub last_probe_unix: f64,
    /// `probe_results_total` by its `result` label.
    pub results: BTreeMap<String, u64>,
    /// `probe_state_changes_total`.
    pub state_changes: u64,
    /// `probe_attempts_total` and `probe_attempts_failed_total`.
    pub attempts: u64,
    pub attempts_failed: u64,
    /// `probe_tcp_handshake_latency_seconds_count`: successful attempts.
    pub handshakes: u64,
}

impl ScheduledState {
    /// `probe_results_total{result="<result>"}`, 0 if absent.
    pub fn count(&self, result: &str) -> u64 {
        self.results.get(result).copied().unwrap_or(0)
    }

    /// Probes finished, whatever their result.
    pub fn probes(&self) -> u64 {
        self.results.values().sum()
    }

    /// Whether any probe has finished.
    pub fn probed(&self) -> bool {
        self.probes() > 0
    }
}

/// The value of label `name` in `labels` (the text between the braces),
/// unescaped.
fn label(labels: &str, name: &str) -> Option<String> {
    let mut rest = labels;
    loop {
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (index, '"') => break index,
                (_, other) => value.push(other),
            }
        };
        if key.trim_start_matches(',') == name {
            return Some(value);
        }
        rest = &after[end + 1..];
    }
}

/// `(name, labels, value)` of each sample line with labels.
fn samples(exposition: &str) -> impl Iterator<Item = (&str, &str, f64)> {
    exposition.lines().filter_map(|line| {
        let (name, rest) = line.split_once('{')?;
        let (labels, value) = rest.rsplit_once("} ")?;
        Some((name, labels, value.split_whitespace().next()?.parse().ok()?))
    })
}

/// The state of every scheduled target in `exposition`, by its `target`
/// label. Each family is read as written: a probe that finished while the
/// exporter wrote the exposition may show in the later families only.
pub fn scheduled_states(exposition: &str) -> BTreeMap<String, ScheduledState> {
    let mut states: BTreeMap<String, ScheduledState> = BTreeMap::new();
    for (name, labels, value) in samples(exposition) {
        let field: fn(&mut ScheduledState, &str, f64) = match name {
            "probe_success" => |state, _, value| state.success = value == 1.0,
            "probe_healthy" => |state, _, value| state.healthy = value == 1.0,
            "probe_last_probe_timestamp_seconds" => |state, _, value| {
                state.last_probe_unix = value;
            },
            "probe_state_changes_total" => |state, _, value| state.state_changes = value as u64,
            "probe_attempts_total" => |state, _, value| state.attempts = value as u64,
            "probe_attempts_failed_total" => |state, _, value| state.attempts_failed = value as u64,
            "probe_tcp_handshake_latency_seconds_count" => |state, _, value| {
                state.handshakes = value as u64;
            },
            "probe_results_total" => |state, labels, value| {
                let result = label(labels, "result").expect("probe_results_total has a result");
                state.results.insert(result, value as u64);
            },
            _ => continue,
        };
        let target = label(labels, "target").expect("a scheduled series has a target label");
        field(states.entry(target).or_default(), labels, value);
    }
    states
}

/// The `target` labels of the `probe_success` series, in exposition
/// order: the targets this exporter schedules. Cheap on large expositions.
pub fn scheduled_targets(exposition: &str) -> Vec<String> {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("probe_success{"))
        .map(|labels| label(labels, "target").expect("probe_success has a target label"))
        .collect()
}

/// The state of `target` from two scrapes in a row that agree, so that no
/// probe finished halfway through: `healthy` and the counters then belong
/// to the same probe. `None` when `target` is not scheduled.
pub async fn scheduled_state(exporter: &TestExporter, target: &str) -> Option<ScheduledState> {
    let mut previous = None;
    for _ in 0..50 {
        let metrics = exporter.get("/metrics").await.body;
        let state = scheduled_states(&metrics).remove(target);
        if previous.as_ref() == Some(&state) {
            return state;
        }
        previous = Some(state);
    }
    panic!("50 scrapes in a row never agreed on {target}: last {previous:#?}");
}

/// Polls the state of scheduled `target` every 10 ms until `check` holds,
/// for up to `limit`; the state that met it.
pub async fn wait_for_scheduled(
    exporter: &TestExporter,
    target: &str,
    limit: Duration,
    check: impl Fn(&ScheduledState) -> bool,
) -> ScheduledState {
    let started = Instant::now();
    loop {
        let state = scheduled_state(exporter, target)
            .await
            .unwrap_or_else(|| panic!("{target} is not scheduled"));
        if check(&state) {
            return state;
        }
        assert!(
            started.elapsed() < limit,
            "{target}: condition not met within {limit:?}; last state {state:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
