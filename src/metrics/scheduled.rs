//! The series of scheduled targets on `/metrics`, written in chunks.
//!
//! With 100 000 targets this is about 3 million samples, so it is not
//! held in memory whole, and no label set is escaped per scrape.
//! [`ScheduledExposition::next_chunk`] writes the families family by
//! family, a bounded number of bytes at a time, so the HTTP body can stream
//! while memory stays flat.
//!
//! Each target's label set is escaped once per published target list, not
//! per scrape: [`ScheduledSeries::publish`] builds the list's
//! [`LabelSets`], end to end in one string, when the scheduler hands over a
//! new list (on the reload's blocking thread), and every scrape of that
//! list shares them. Building them per
//! scrape gave each response its own copy, 14 MB with 200 000 targets,
//! kept as long as the client took to read; sixty clients that never read
//! held 825 MB. Building them at the first scrape of a list ran on an HTTP
//! worker under a lock that a second scrape then waited on with the other
//! worker, so every endpoint stalled for the build. One string rather than
//! a string per target also keeps the nine passes over the targets
//! sequential in memory: with a string per target, kept on the target, a
//! scrape of 100 000 targets took a quarter more CPU.
//!
//! Names match `/probe` (`probe_success`, `probe_failure_reason`, ...), so
//! one alert rule covers both ways of probing.

#![forbid(unsafe_code)]

use super::exposition::{Format, Kind, Value, Writer, push_label_value};
use super::icmp;
use crate::config::ADDRESS_LABEL;
use crate::prober::{
    self, IcmpError, Number, RESULTS, Reason, TargetFamily, TargetSample, TargetSeries,
};
use crate::scheduler::{HANDSHAKE_BUCKETS, ScheduledTarget, TargetList, TargetState};
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

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
    Attempts,
    AttemptsFailed,
    Handshake,
    AddressSuccess,
    AddressHealthy,
    AddressFailureReason,
    /// One of a prober's own series.
    Prober(TargetSeries),
}

/// The families every target has, in export order, with name, type and
/// help; the probers' own follow ([`prober::TARGET_SERIES`]).
const FAMILIES: [(Family, &str, Kind, &str); 14] = [
    (
        Family::Success,
        "probe_success",
        Kind::Gauge,
        "Whether the last scheduled probe succeeded.",
    ),
    (
        Family::Duration,
        "probe_duration_seconds",
        Kind::Gauge,
        "How long the last scheduled probe took.",
    ),
    (
        Family::FailureReason,
        "probe_failure_reason",
        Kind::Gauge,
        "Why the last scheduled probe failed: 1 for the reason, 0 for the others.",
    ),
    (
        Family::IpProtocol,
        "probe_ip_protocol",
        Kind::Gauge,
        "IP version of the last probe: 4 or 6; 0 before any.",
    ),
    (
        Family::Healthy,
        "probe_healthy",
        Kind::Gauge,
        "The rise/fall health state: 1 healthy, 0 unhealthy or not probed yet.",
    ),
    (
        Family::LastProbe,
        "probe_last_probe_timestamp_seconds",
        Kind::Gauge,
        "Unix time when the last scheduled probe finished; 0 before any.",
    ),
    (
        Family::Results,
        "probe_results",
        Kind::Counter,
        "Scheduled probes by result: success or the failure reason.",
    ),
    (
        Family::StateChanges,
        "probe_state_changes",
        Kind::Counter,
        "Changes of the rise/fall health state.",
    ),
    (
        Family::Attempts,
        "probe_attempts",
        Kind::Counter,
        "Handshakes attempted by scheduled probes (tcp.attempts per probe, or fewer).",
    ),
    (
        Family::AttemptsFailed,
        "probe_attempts_failed",
        Kind::Counter,
        "Attempted handshakes that failed; divided by probe_attempts_total, the loss ratio.",
    ),
    (
        Family::Handshake,
        "probe_tcp_handshake_latency_seconds",
        Kind::Histogram,
        "Time from connect to the SYN-ACK of every successful attempt of scheduled probes.",
    ),
    (
        Family::AddressSuccess,
        "probe_address_success",
        Kind::Gauge,
        "With ip_addresses: all, whether the last probe of this address succeeded.",
    ),
    (
        Family::AddressHealthy,
        "probe_address_healthy",
        Kind::Gauge,
        "With ip_addresses: all, this address's own rise/fall health state: 1 healthy, 0 unhealthy.",
    ),
    (
        Family::AddressFailureReason,
        "probe_address_failure_reason",
        Kind::Gauge,
        "With ip_addresses: all, why the last probe of this address failed: 1 for the reason, 0 for the others.",
    ),
];

/// How many families `/metrics` writes for scheduled targets.
const FAMILY_COUNT: usize = FAMILIES.len() + prober::TARGET_SERIES.len();

/// The `index`-th family in export order, with name, type and help.
fn family(index: usize) -> (Family, &'static str, Kind, &'static str) {
    let Some(series) = index
        .checked_sub(FAMILIES.len())
        .and_then(|own| prober::TARGET_SERIES.get(own))
    else {
        return FAMILIES[index];
    };
    let (name, kind, help) = match series.family {
        TargetFamily::Gauge { name, help } => (name, Kind::Gauge, help),
        TargetFamily::Counter { name, help } => (name, Kind::Counter, help),
        TargetFamily::IcmpError => (icmp::FAMILY, Kind::Info, icmp::HELP),
        TargetFamily::Info { name, help } => (name, Kind::Info, help),
    };
    (Family::Prober(*series), name, kind, help)
}

/// One target's sample of a prober's series, after the target's labels.
struct TargetSamples<'s, 'w> {
    writer: &'s mut Writer<'w>,
    name: &'s str,
    labels: &'s str,
    counter: bool,
}

impl TargetSample for TargetSamples<'_, '_> {
    fn number(&mut self, value: Number) {
        let suffix = if self.counter { "_total" } else { "" };
        self.writer
            .sample(self.name, suffix, &[self.labels, ""], value.into());
    }

    fn icmp_error(&mut self, icmp: &IcmpError) {
        icmp::write_sample(self.writer, self.labels, icmp);
    }

    fn info(&mut self, labels: &[(&str, &str)]) {
        let separator = if self.labels.is_empty() { "" } else { "," };
        let own = super::probe::info_labels(separator, labels);
        self.writer
            .sample(self.name, "_info", &[self.labels, &own], Value::Int(1));
    }

    fn labelled_number(&mut self, labels: &[(&str, &str)], value: Number) {
        let separator = if self.labels.is_empty() { "" } else { "," };
        let own = super::probe::info_labels(separator, labels);
        self.writer
            .sample(self.name, "", &[self.labels, &own], value.into());
    }
}

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
        .map(|bound| format!(",le=\"{}\"", Value::Float(*bound)))
        .collect(),
});

/// Appends a target's escaped label set: `module="m",target="t",k="v"`.
fn write_label_set(out: &mut String, target: &ScheduledTarget) {
    push_label(out, "", "module", &target.module);
    push_label(out, ",", "target", &target.target_text);
    for (name, value) in target.labels.iter() {
        push_label(out, ",", &name.0, value);
    }
}

fn push_label(out: &mut String, separator: &str, name: &str, value: &str) {
    out.push_str(separator);
    out.push_str(name);
    out.push_str("=\"");
    push_label_value(out, value);
    out.push('"');
}

/// The escaped label sets of one target list, end to end.
#[derive(Debug)]
struct LabelSets {
    text: String,
    /// Where each target's set ends in `text`; it starts where the
    /// previous one ends.
    ends: Vec<usize>,
}

impl LabelSets {
    /// Escapes the label sets of `targets`.
    fn new(targets: &[Arc<ScheduledTarget>]) -> Self {
        let mut text = String::new();
        let ends = targets
            .iter()
            .map(|target| {
                write_label_set(&mut text, target);
                text.len()
            })
            .collect();
        text.shrink_to_fit();
        Self { text, ends }
    }

    /// The label set of the `index`-th target.
    fn get(&self, index: usize) -> &str {
        let start = index
            .checked_sub(1)
            .map_or(0, |previous| self.ends[previous]);
        &self.text[start..self.ends[index]]
    }
}

/// The target list scrapes write, published with its label sets so that
/// a scrape never pairs one list with another's labels.
#[derive(Debug)]
pub(crate) struct ScheduledSeries(RwLock<(TargetList, Arc<LabelSets>)>);

impl Default for ScheduledSeries {
    fn default() -> Self {
        Self(RwLock::new((
            Arc::from(Vec::new()),
            Arc::new(LabelSets::new(&[])),
        )))
    }
}

impl ScheduledSeries {
    /// Escapes the label sets of `targets` and publishes both. Costly for
    /// long lists: a reload calls it on its blocking thread.
    pub(crate) fn publish(&self, targets: TargetList) {
        let labels = Arc::new(LabelSets::new(&targets));
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = (targets, labels);
    }

    /// How many targets the list published now has.
    pub(crate) fn len(&self) -> usize {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .len()
    }

    /// The exposition of the list published now, in `format`.
    pub(crate) fn exposition(&self, format: Format) -> ScheduledExposition {
        let (targets, labels) = &*self.0.read().unwrap_or_else(PoisonError::into_inner);
        ScheduledExposition {
            targets: Arc::clone(targets),
            labels: Arc::clone(labels),
            format,
            family: 0,
            next_target: 0,
        }
    }
}

/// The scheduled targets' families, produced chunk by chunk.
#[derive(Debug)]
pub(crate) struct ScheduledExposition {
    targets: TargetList,
    labels: Arc<LabelSets>,
    format: Format,
    family: usize,
    next_target: usize,
}

impl ScheduledExposition {
    /// The next piece of text, at least about `chunk_bytes` long unless it
    /// is the last; `None` when everything was written.
    pub(crate) fn next_chunk(&mut self, chunk_bytes: usize) -> Option<String> {
        if self.targets.is_empty() || self.family >= FAMILY_COUNT {
            return None;
        }
        let mut out = String::with_capacity(chunk_bytes + 4096);
        let mut writer = Writer::new(&mut out, self.format);
        while writer.len() < chunk_bytes && self.family < FAMILY_COUNT {
            let (family, name, kind, help) = family(self.family);
            if self.next_target == 0 {
                writer.family(name, kind, help);
            }
            let target = &self.targets[self.next_target];
            let labels = self.labels.get(self.next_target);
            target.with_state(|state| write_samples(&mut writer, family, name, labels, state));
            self.next_target += 1;
            if self.next_target == self.targets.len() {
                self.next_target = 0;
                self.family += 1;
            }
        }
        Some(out)
    }
}

/// Writes one target's samples of `family`.
fn write_samples(
    writer: &mut Writer<'_>,
    family: Family,
    name: &str,
    labels: &str,
    state: &TargetState,
) {
    let mut sample = |suffix: &str, extra: &str, value: Value| {
        writer.sample(name, suffix, &[labels, extra], value);
    };
    match family {
        Family::Success => sample("", "", state.last_success.into()),
        Family::Duration => sample("", "", state.last_duration.into()),
        Family::FailureReason => {
            for (reason, extra) in Reason::ALL.iter().zip(&EXTRA_LABELS.reasons) {
                sample("", extra, (state.last_reason == Some(*reason)).into());
            }
        }
        Family::IpProtocol => sample("", "", state.ip_protocol.into()),
        Family::Healthy => sample("", "", state.healthy.into()),
        Family::LastProbe => sample("", "", state.last_probe_unix.into()),
        Family::Results => {
            for (extra, count) in EXTRA_LABELS.results.iter().zip(state.results) {
                sample("_total", extra, count.into());
            }
        }
        Family::StateChanges => sample("_total", "", state.state_changes.into()),
        Family::Attempts => sample("_total", "", state.attempts.into()),
        Family::AttemptsFailed => sample("_total", "", state.attempts_failed.into()),
        Family::Handshake => {
            let histogram = &state.handshake;
            for (extra, count) in EXTRA_LABELS.bounds.iter().zip(histogram.cumulative) {
                sample("_bucket", extra, count.into());
            }
            sample("_bucket", ",le=\"+Inf\"", histogram.count.into());
            sample("_sum", "", histogram.sum.into());
            sample("_count", "", histogram.count.into());
        }
        Family::AddressSuccess | Family::AddressHealthy | Family::AddressFailureReason => {
            for address in &state.addresses {
                let own = format!(",{ADDRESS_LABEL}=\"{}\"", address.ip);
                match family {
                    Family::AddressSuccess => sample("", &own, address.last_success.into()),
                    Family::AddressHealthy => sample("", &own, address.healthy.into()),
                    _ => {
                        for (reason, extra) in Reason::ALL.iter().zip(&EXTRA_LABELS.reasons) {
                            let value = (address.last_reason == Some(*reason)).into();
                            sample("", &format!("{own}{extra}"), value);
                        }
                    }
                }
            }
        }
        Family::Prober(series) => {
            let mut out = TargetSamples {
                writer,
                name,
                labels,
                counter: matches!(series.family, TargetFamily::Counter { .. }),
            };
            (series.sample)(&state.kept, &mut out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::modules::{Modules, ResultCounters};
    use crate::prober::{Failure, IcmpError, Kept, Outcome, Resolver};
    use crate::runner::ProbeRunner;
    use crate::scheduler::Scheduler;
    use crate::settings::Shard;
    use std::time::Duration;

    fn config(targets: &str) -> Config {
        let yaml = format!(
            "targets:\n  - module: tcp_halfopen\n    interval: 1h\n    targets: [{targets}]\n    \
             labels: {{team: \"a\\\"b\\\\c\\nd\"}}\n"
        );
        Config::parse("t.yml", &yaml).unwrap()
    }

    /// The family named `name`, as `/metrics` writes it.
    fn family_named(name: &str) -> Family {
        (0..FAMILY_COUNT)
            .map(family)
            .find(|(_, candidate, ..)| *candidate == name)
            .unwrap_or_else(|| panic!("no family {name}"))
            .0
    }

    /// What `write_samples` writes of the family `name` for `state`,
    /// labelled `labels`.
    fn samples_of(name: &str, labels: &str, state: &TargetState) -> String {
        let mut text = String::new();
        let mut writer = Writer::new(&mut text, Format::OpenMetrics);
        write_samples(&mut writer, family_named(name), name, labels, state);
        text
    }

    /// A probe that failed as `unreachable` with `icmp`.
    fn unreachable_by(icmp: IcmpError) -> Outcome {
        let mut unreachable =
            Outcome::not_started(Failure::new(Reason::Unreachable, "x"), Duration::ZERO);
        unreachable.tcp_mut().icmp_error = Some(icmp);
        unreachable
    }

    #[test]
    fn tcp_targets_have_the_kernel_rtt_and_a_syn_retransmit_counter_exec_targets_not() {
        let tcp_series = |state: &TargetState| {
            samples_of("probe_tcp_rtt_seconds", "module=\"m\"", state)
                + &samples_of("probe_tcp_syn_retransmits", "module=\"m\"", state)
        };
        let mut state = TargetState::default();
        state.kept = Kept::new(&crate::config::Module::tcp_halfopen());
        assert_eq!(
            tcp_series(&state),
            "probe_tcp_rtt_seconds{module=\"m\"} 0\nprobe_tcp_syn_retransmits_total{module=\"m\"} 0\n",
            "present from before the first probe, so that the first retransmit counts in increase()"
        );
        let mut lossy = Outcome::not_started(Failure::new(Reason::Timeout, "x"), Duration::ZERO);
        lossy.tcp_mut().tcp_rtt = Some(Duration::from_micros(250));
        lossy.tcp_mut().syn_retransmits = 3;
        state.record(lossy, 1, 1, 1.0);
        assert_eq!(
            tcp_series(&state),
            "probe_tcp_rtt_seconds{module=\"m\"} 0.00025\nprobe_tcp_syn_retransmits_total{module=\"m\"} 3\n"
        );
        let exec = Config::parse(
            "t.yml",
            "modules:\n  script:\n    prober: exec\n    exec: {command: [\"/bin/true\"]}\n",
        )
        .unwrap();
        state.kept = Kept::new(&exec.modules["script"]);
        assert_eq!(tcp_series(&state), "");
    }

    fn published(series: &ScheduledSeries) -> (TargetList, Arc<LabelSets>) {
        let (targets, labels) = &*series.0.read().unwrap();
        (Arc::clone(targets), Arc::clone(labels))
    }

    #[test]
    fn label_sets_are_escaped_once_per_published_target_list() {
        let runner = Arc::new(ProbeRunner::new(4, Resolver::from_system(&[])).unwrap());
        let scheduler = Scheduler::new(runner, Shard::ALL, Default::default());
        let counters = ResultCounters::default();
        let series = ScheduledSeries::default();
        let apply = |yaml: &Config| {
            if let Some(list) = scheduler.apply(yaml, &Modules::load(yaml, &counters)) {
                series.publish(list);
            }
        };
        let (targets, sets) = published(&series);
        assert_eq!((targets.len(), sets.ends.len()), (0, 0));

        apply(&config("\"127.0.0.1:1\", \"127.0.0.1:2\""));
        let (targets, sets) = published(&series);
        assert_eq!(sets.ends.len(), targets.len());
        assert_eq!(
            [sets.get(0), sets.get(1)],
            [
                r#"module="tcp_halfopen",target="127.0.0.1:1",team="a\"b\\c\nd""#,
                r#"module="tcp_halfopen",target="127.0.0.1:2",team="a\"b\\c\nd""#,
            ]
        );
        apply(&config("\"127.0.0.1:2\", \"127.0.0.1:1\""));
        let (same_targets, same_sets) = published(&series);
        assert!(
            Arc::ptr_eq(&targets, &same_targets) && Arc::ptr_eq(&sets, &same_sets),
            "a reload that keeps every target keeps the list and its label sets"
        );

        apply(&config("\"127.0.0.1:3\", \"127.0.0.1:1\""));
        let (targets, reloaded) = published(&series);
        assert_eq!(reloaded.ends.len(), 2);
        for (index, target) in targets.iter().enumerate() {
            assert!(
                reloaded
                    .get(index)
                    .contains(&format!("target=\"{}\"", target.target_text)),
                "{index}: {reloaded:?}"
            );
        }
        assert_eq!(&*targets[1].target_text, "127.0.0.1:3");
    }

    /// The label names of one sample line, in order.
    fn label_names(line: &str) -> Vec<&str> {
        let inside = line
            .split_once('{')
            .and_then(|(_, rest)| rest.rsplit_once('}'));
        let mut names = Vec::new();
        let mut rest = inside.map_or("", |(labels, _)| labels);
        while let Some((name, value)) = rest.split_once("=\"") {
            names.push(name.trim_start_matches(','));
            // Values here hold no escaped quotes.
            rest = value.split_once('"').map_or("", |(_, after)| after);
        }
        names
    }

    #[test]
    fn the_icmp_info_labels_never_clash_with_a_targets_own() {
        // `type` and `code` are common label names and valid ones for a
        // target (reserved are only the names the exporter sets); a
        // sample naming one twice makes Prometheus reject the scrape.
        let yaml = "targets:\n  - module: tcp_halfopen\n    targets: [\"127.0.0.1:1\"]\n    \
                    labels: {type: db, code: eu1}\n";
        let config = Config::parse("t.yml", yaml).expect("labels type and code are allowed");
        let own: Vec<String> = config.targets[0]
            .labels
            .keys()
            .map(|name| format!(",{}=\"x\"", name.0))
            .collect();
        let labels = format!("module=\"m\",target=\"t\"{}", own.concat());
        let mut state = TargetState::default();
        let unreachable = unreachable_by(IcmpError {
            ipv6: false,
            icmp_type: 3,
            code: 13,
            offender: Some("192.0.2.1".parse().unwrap()),
        });
        state.record(unreachable, 1, 1, 1.0);
        let text = samples_of(icmp::FAMILY, &labels, &state);
        let names = label_names(text.trim_end());
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{text}");
        for name in names {
            if !["module", "target", "type", "code"].contains(&name) {
                let yaml = format!(
                    "targets:\n  - module: tcp_halfopen\n    targets: []\n    labels: {{{name}: x}}\n"
                );
                assert!(
                    Config::parse("t.yml", &yaml).is_err(),
                    "{name}, set by the exporter, must be reserved"
                );
            }
        }
    }

    #[test]
    fn the_icmp_error_of_the_last_probe_only_is_shown() {
        let labels = r#"module="m",target="t""#;
        let icmp_lines = |state: &TargetState| samples_of(icmp::FAMILY, labels, state);
        let unreachable = unreachable_by(IcmpError {
            ipv6: true,
            icmp_type: 1,
            code: 3,
            offender: Some("2001:db8:1::1".parse().unwrap()),
        });
        let mut state = TargetState::default();
        assert_eq!(icmp_lines(&state), "", "nothing before any probe");
        state.record(unreachable, 1, 1, 1.0);
        assert_eq!(
            icmp_lines(&state),
            "probe_icmp_error_info{module=\"m\",target=\"t\",icmp_type=\"1\",icmp_code=\"3\",offender=\"2001:db8:1::1\"} 1\n"
        );
        let refused = Outcome::not_started(Failure::new(Reason::Refused, "RST"), Duration::ZERO);
        state.record(refused, 1, 1, 2.0);
        assert_eq!(
            icmp_lines(&state),
            "",
            "a later probe without one clears it"
        );
    }

    /// What `/metrics` writes of the session families for `state`, in
    /// `format`, labelled `module="m"`, without the HELP lines.
    fn session_families(state: &TargetState, format: Format) -> String {
        let mut text = String::new();
        let mut writer = Writer::new(&mut text, format);
        for index in FAMILIES.len()..FAMILY_COUNT {
            let (family, name, kind, help) = family(index);
            if [
                "probe_ssl",
                "probe_tls",
                "probe_failed_due_to",
                "probe_expect",
            ]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            {
                writer.family(name, kind, help);
                write_samples(&mut writer, family, name, "module=\"m\"", state);
            }
        }
        text.lines()
            .filter(|line| !line.starts_with("# HELP "))
            .map(|line| format!("{line}\n"))
            .collect()
    }

    #[test]
    fn session_targets_keep_the_tls_series_of_their_last_handshake_through_failures() {
        use crate::metrics::probe::tests::{session_outcome, tls_facts, tls_module};
        let mut state = TargetState::default();
        state.kept = Kept::new(&tls_module());
        let before = "# TYPE probe_failed_due_to_regex gauge\nprobe_failed_due_to_regex{module=\"m\"} 0\n\
                      # TYPE probe_failed_due_to_bytes gauge\nprobe_failed_due_to_bytes{module=\"m\"} 0\n\
                      # TYPE probe_expect info\n\
                      # TYPE probe_ssl_earliest_cert_expiry gauge\n\
                      # TYPE probe_ssl_last_chain_expiry_timestamp_seconds gauge\n\
                      # TYPE probe_ssl_last_chain info\n\
                      # TYPE probe_tls_version info\n\
                      # TYPE probe_tls_cipher info\n";
        assert_eq!(
            session_families(&state, Format::OpenMetrics),
            before,
            "no TLS series before the first handshake"
        );
        let refused = Outcome::not_started(Failure::new(Reason::Refused, "x"), Duration::ZERO);
        state.record(refused.clone(), 1, 1, 1.0);
        assert_eq!(session_families(&state, Format::OpenMetrics), before);

        let detail = crate::prober::SessionDetail {
            tls: Some(tls_facts()),
            ..Default::default()
        };
        state.record(session_outcome(None, detail), 1, 1, 2.0);
        let after = |info: &str, suffix: &str| {
            format!(
                "# TYPE probe_failed_due_to_regex gauge\nprobe_failed_due_to_regex{{module=\"m\"}} 0\n\
                 # TYPE probe_failed_due_to_bytes gauge\nprobe_failed_due_to_bytes{{module=\"m\"}} 0\n\
                 # TYPE probe_expect{suffix} {info}\n\
                 # TYPE probe_ssl_earliest_cert_expiry gauge\n\
                 probe_ssl_earliest_cert_expiry{{module=\"m\"}} 1799253559\n\
                 # TYPE probe_ssl_last_chain_expiry_timestamp_seconds gauge\n\
                 probe_ssl_last_chain_expiry_timestamp_seconds{{module=\"m\"}} 1830789559\n\
                 # TYPE probe_ssl_last_chain{suffix} {info}\n\
                 probe_ssl_last_chain_info{{module=\"m\",\
                 fingerprint_sha256=\"4679a17a0c9e6f8e1f0d7b6b2d2a1c3e5f7a9b0c1d2e3f405162738495a6a75f\",\
                 subject=\"CN=localhost,OU=Ops,O=Acme\\\\, \\\\\\\"Inc.\\\\\\\",C=US\",\
                 issuer=\"CN=Test CA,O=Acme\",subjectalternative=\"localhost,foo.example\",\
                 serialnumber=\"f1e2\"}} 1\n\
                 # TYPE probe_tls_version{suffix} {info}\n\
                 probe_tls_version_info{{module=\"m\",version=\"TLS 1.3\"}} 1\n\
                 # TYPE probe_tls_cipher{suffix} {info}\n\
                 probe_tls_cipher_info{{module=\"m\",cipher=\"TLS_AES_128_GCM_SHA256\"}} 1\n"
            )
        };
        assert_eq!(
            session_families(&state, Format::OpenMetrics),
            after("info", "")
        );
        assert_eq!(
            session_families(&state, Format::PrometheusText),
            after("gauge", "_info")
        );
        // A failed handshake, then a probe that never started: the facts
        // of the last successful one stay, for the expiry alerts.
        let failed = session_outcome(Some(Reason::Tls), crate::prober::SessionDetail::default());
        state.record(failed, 1, 1, 3.0);
        state.record(refused, 1, 1, 4.0);
        assert_eq!(
            session_families(&state, Format::OpenMetrics),
            after("info", "")
        );
    }

    #[test]
    fn session_targets_show_the_last_probes_flags_and_the_last_matchs_labels() {
        use crate::metrics::probe::tests::{session_outcome, tcp_module};
        let module = tcp_module(
            "    tcp:\n      query_response:\n        - expect: \"^SSH-2.0-([^ ]+)\"\n          \
             labels: [{name: ver, value: \"${1}\"}]\n",
        );
        let mut state = TargetState::default();
        state.kept = Kept::new(&module);
        let lines = |state: &TargetState| {
            [
                "probe_failed_due_to_regex",
                "probe_failed_due_to_bytes",
                "probe_expect",
            ]
            .map(|name| samples_of(name, "module=\"m\"", state))
            .concat()
        };
        let matched = crate::prober::SessionDetail {
            expect_labels: vec![("ver".into(), "OpenSSH_9.6".into())],
            ..Default::default()
        };
        state.record(session_outcome(None, matched), 1, 1, 1.0);
        let info = "probe_expect_info{module=\"m\",ver=\"OpenSSH_9.6\"} 1\n";
        assert_eq!(
            lines(&state),
            format!(
                "probe_failed_due_to_regex{{module=\"m\"}} 0\nprobe_failed_due_to_bytes{{module=\"m\"}} 0\n{info}"
            )
        );
        let no_match = crate::prober::SessionDetail {
            failed_due_to_regex: true,
            ..Default::default()
        };
        state.record(
            session_outcome(Some(Reason::CheckFailed), no_match),
            1,
            1,
            2.0,
        );
        assert_eq!(
            lines(&state),
            format!(
                "probe_failed_due_to_regex{{module=\"m\"}} 1\nprobe_failed_due_to_bytes{{module=\"m\"}} 0\n{info}"
            )
        );
        // The target of a half-open module has none of them.
        state.kept = Kept::new(&crate::config::Module::tcp_halfopen());
        assert_eq!(lines(&state), "");
    }

    #[test]
    fn the_session_info_labels_are_the_ones_the_config_reserves_for_the_module() {
        use crate::metrics::probe::tests::{session_outcome, tcp_module, tls_facts};
        let module = tcp_module(
            "    tcp:\n      query_response:\n        - expect: \"^220 ([^ ]+)\"\n          \
             labels: [{name: host, value: \"$1\"}]\n        - starttls: true\n",
        );
        let crate::config::Prober::Tcp(probe) = module.prober() else {
            panic!("a prober: tcp module");
        };
        let reserved = probe.series_label_names();
        let mut tls = tls_facts();
        // `label_names` reads values without escaped quotes.
        tls.leaf.subject = "CN=localhost".into();
        let detail = crate::prober::SessionDetail {
            tls: Some(tls),
            expect_labels: vec![("host".into(), "mail.test".into())],
            ..Default::default()
        };
        let mut state = TargetState::default();
        state.kept = Kept::new(&module);
        state.record(session_outcome(None, detail), 1, 1, 1.0);
        let text = session_families(&state, Format::OpenMetrics);
        let mut written: Vec<&str> = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .flat_map(label_names)
            .filter(|name| *name != "module")
            .collect();
        written.sort_unstable();
        written.dedup();
        let mut reserved_sorted = reserved.clone();
        reserved_sorted.sort_unstable();
        // Both ways: a name written but not reserved could clash with a
        // target's own label and spoil the scrape.
        assert_eq!(written, reserved_sorted, "{text}");
    }
}
