//! The series of scheduled targets on `/metrics`, written in chunks.
//!
//! With 100 000 targets this is about 3 million samples, so it is not
//! built through prometheus-client's registry (a hash map lookup and label
//! encoding per sample) nor held in memory whole. Each target's label set
//! is escaped once, when the target is created ([`label_set`]), and
//! [`ScheduledExposition::next_chunk`] writes the families family by
//! family, a bounded number of bytes at a time, so the HTTP body can stream
//! while memory stays flat. A scrape in progress holds only a reference to
//! the published target list and its position in it, so a client that
//! stops reading holds no copy of anything that grows with the targets.
//!
//! Names match `/probe` (`probe_success`, `probe_failure_reason`, ...), so
//! one alert rule covers both ways of probing.

use super::exposition::Format;
use crate::config::LabelName;
use crate::prober::Reason;
use crate::scheduler::{HANDSHAKE_BUCKETS, RESULTS, ScheduledTarget, TargetState};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

/// What one family writes for one target, after the label set.
#[derive(Clone, Copy, Debug)]
enum Family {
    Success,
    Duration,
    FailureReason,
    IpProtocol,
    Healthy,
    LastProbe,
    Results,
    StateChanges,
    Handshake,
}

/// Families in export order, with name, type and help.
const FAMILIES: [(Family, &str, &str, &str); 9] = [
    (
        Family::Success,
        "probe_success",
        "gauge",
        "Whether the last scheduled probe succeeded.",
    ),
    (
        Family::Duration,
        "probe_duration_seconds",
        "gauge",
        "How long the last scheduled probe took.",
    ),
    (
        Family::FailureReason,
        "probe_failure_reason",
        "gauge",
        "Why the last scheduled probe failed: 1 for the reason, 0 for the others.",
    ),
    (
        Family::IpProtocol,
        "probe_ip_protocol",
        "gauge",
        "IP version of the last probe: 4 or 6; 0 before any.",
    ),
    (
        Family::Healthy,
        "probe_healthy",
        "gauge",
        "The rise/fall health state: 1 healthy, 0 unhealthy or not probed yet.",
    ),
    (
        Family::LastProbe,
        "probe_last_probe_timestamp_seconds",
        "gauge",
        "Unix time when the last scheduled probe finished; 0 before any.",
    ),
    (
        Family::Results,
        "probe_results",
        "counter",
        "Scheduled probes by result: success or the failure reason.",
    ),
    (
        Family::StateChanges,
        "probe_state_changes",
        "counter",
        "Changes of the rise/fall health state.",
    ),
    (
        Family::Handshake,
        "probe_tcp_handshake_latency_seconds",
        "histogram",
        "Time from connect to the SYN-ACK of successful scheduled probes.",
    ),
];

/// The per-sample labels that follow a target's label set, formatted once
/// rather than for each of millions of samples.
struct ExtraLabels {
    reasons: Vec<String>,
    results: Vec<String>,
    bounds: Vec<String>,
}

static EXTRA_LABELS: LazyLock<ExtraLabels> = LazyLock::new(|| ExtraLabels {
    reasons: Reason::ALL
        .iter()
        .map(|reason| format!(",reason=\"{reason}\""))
        .collect(),
    results: RESULTS
        .iter()
        .map(|result| format!(",result=\"{result}\""))
        .collect(),
    bounds: HANDSHAKE_BUCKETS
        .iter()
        .map(|bound| format!(",le=\"{bound}\""))
        .collect(),
});

/// A target's label set, escaped: `module="m",target="t",k="v"`.
#[must_use]
pub fn label_set(module: &str, target: &str, labels: &BTreeMap<LabelName, String>) -> String {
    let mut set = String::new();
    push_label(&mut set, "module", module);
    push_label(&mut set, "target", target);
    for (name, value) in labels {
        push_label(&mut set, &name.0, value);
    }
    set
}

fn push_label(out: &mut String, name: &str, value: &str) {
    if !out.is_empty() {
        out.push(',');
    }
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
    out.push('"');
}

/// The scheduled targets' families, produced chunk by chunk.
#[derive(Debug)]
pub struct ScheduledExposition {
    targets: Arc<[Arc<ScheduledTarget>]>,
    format: Format,
    family: usize,
    next_target: usize,
}

impl ScheduledExposition {
    /// Prepares the exposition of `targets` in `format`.
    #[must_use]
    pub fn new(targets: Arc<[Arc<ScheduledTarget>]>, format: Format) -> Self {
        Self {
            targets,
            format,
            family: 0,
            next_target: 0,
        }
    }

    /// The next piece of text, at least about `chunk_bytes` long unless it
    /// is the last; `None` when everything was written.
    pub fn next_chunk(&mut self, chunk_bytes: usize) -> Option<String> {
        if self.targets.is_empty() || self.family >= FAMILIES.len() {
            return None;
        }
        let mut out = String::with_capacity(chunk_bytes + 4096);
        while out.len() < chunk_bytes && self.family < FAMILIES.len() {
            let (family, name, kind, help) = FAMILIES[self.family];
            if self.next_target == 0 {
                self.write_header(&mut out, name, kind, help);
            }
            let target = &self.targets[self.next_target];
            let labels = &target.label_set;
            target.with_state(|state| write_samples(&mut out, family, name, labels, state));
            self.next_target += 1;
            if self.next_target == self.targets.len() {
                self.next_target = 0;
                self.family += 1;
            }
        }
        Some(out)
    }

    fn write_header(&self, out: &mut String, name: &str, kind: &str, help: &str) {
        // In 0.0.4 a TYPE line names the samples it types: counters by `_total`.
        let suffix = if kind == "counter" && self.format == Format::PrometheusText {
            "_total"
        } else {
            ""
        };
        let _ = writeln!(out, "# HELP {name}{suffix} {help}");
        let _ = writeln!(out, "# TYPE {name}{suffix} {kind}");
    }
}

fn write_samples(out: &mut String, family: Family, name: &str, labels: &str, state: &TargetState) {
    // Writing into a String cannot fail.
    let mut sample = |suffix: &str, extra: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{name}{suffix}{{{labels}{extra}}} {value}");
    };
    match family {
        Family::Success => sample("", "", &u8::from(state.last_success)),
        Family::Duration => sample("", "", &state.last_duration),
        Family::FailureReason => {
            for (reason, extra) in Reason::ALL.iter().zip(&EXTRA_LABELS.reasons) {
                sample("", extra, &u8::from(state.last_reason == Some(*reason)));
            }
        }
        Family::IpProtocol => sample("", "", &state.ip_protocol),
        Family::Healthy => sample("", "", &u8::from(state.healthy)),
        Family::LastProbe => sample("", "", &state.last_probe_unix),
        Family::Results => {
            for (extra, count) in EXTRA_LABELS.results.iter().zip(state.results) {
                sample("_total", extra, &count);
            }
        }
        Family::StateChanges => sample("_total", "", &state.state_changes),
        Family::Handshake => {
            let histogram = &state.handshake;
            for (extra, count) in EXTRA_LABELS.bounds.iter().zip(histogram.cumulative) {
                sample("_bucket", extra, &count);
            }
            sample("_bucket", ",le=\"+Inf\"", &histogram.count);
            sample("_sum", "", &histogram.sum);
            sample("_count", "", &histogram.count);
        }
    }
}
