//! The exporter's own metrics, served on `/metrics`: build info, probe
//! counters, the in-flight gauge, reload status, the schedule lag, the
//! half-open close delays and the `process_*` metrics.
//!
//! The values live with what they describe (the modules' result
//! counters, the runner's in-flight count and close delays, the
//! scheduler's lag histogram); a scrape gathers them into an [`ExporterView`] and writes
//! it. Only the reload status is kept here, as [`ReloadStatus`]: the
//! app and the web config's reload state (layers above) record into it.

#![forbid(unsafe_code)]

use super::exposition::{Kind, Value, Writer, push_label_value};
use super::process::ProcessMetrics;
use crate::histogram::HistogramValues;
use crate::prober::raw::RawEngineValues;
use crate::prober::{HalfOpenCloseValues, LATE_CLOSE_THRESHOLD, RESULTS};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Whether the last config load worked, and when one last did.
#[derive(Debug, Default)]
pub(crate) struct ReloadStatus {
    successful: AtomicBool,
    /// `f64` bits of the Unix time of the last success; 0 before any.
    success_unix_bits: AtomicU64,
}

impl ReloadStatus {
    /// Records the result of a config load or reload.
    pub(crate) fn record(&self, successful: bool) {
        self.successful.store(successful, Ordering::Relaxed);
        if successful {
            let now = crate::clock::unix_seconds();
            self.success_unix_bits
                .store(now.to_bits(), Ordering::Relaxed);
        }
    }
}

/// What the basic-auth check of `--web.config.file` did: the requests it
/// answered, by result, and the bcrypt checks it ran for them (the rest
/// were answered from its caches of recent results).
#[derive(Debug, Default)]
pub(crate) struct LoginCounts {
    /// Let through: the right password of a known user.
    pub(crate) accepted: AtomicU64,
    /// Answered 401: no credentials, an unknown user or a wrong password.
    pub(crate) refused: AtomicU64,
    /// Answered 503: no bcrypt check could start in time.
    pub(crate) busy: AtomicU64,
    /// bcrypt checks run.
    pub(crate) bcrypt_checks: AtomicU64,
}

impl LoginCounts {
    fn write(&self, writer: &mut Writer<'_>) {
        writer.family(
            "synack_exporter_web_auth_requests",
            Kind::Counter,
            "Requests checked for basic auth credentials, by result: accepted, refused (401: none, an unknown user or a wrong password) or busy (503: no bcrypt check could start in time).",
        );
        for (result, count) in [
            ("accepted", &self.accepted),
            ("refused", &self.refused),
            ("busy", &self.busy),
        ] {
            writer.sample(
                "synack_exporter_web_auth_requests",
                "_total",
                &["result=\"", result, "\""],
                Value::Int(count.load(Ordering::Relaxed)),
            );
        }
        writer.family(
            "synack_exporter_web_auth_bcrypt_checks",
            Kind::Counter,
            "Passwords checked with bcrypt; the other requests with credentials were answered from the caches of recent results.",
        );
        writer.sample(
            "synack_exporter_web_auth_bcrypt_checks",
            "_total",
            &[],
            Value::Int(self.bcrypt_checks.load(Ordering::Relaxed)),
        );
    }
}

/// What one scrape of the exporter's own metrics shows.
#[derive(Debug)]
pub(crate) struct ExporterView<'a> {
    /// Each module name ever loaded with its counts, in the order of [`RESULTS`].
    pub(crate) probe_results: Vec<(String, [u64; RESULTS.len()])>,
    /// Each module name ever loaded with the targets its policy refused.
    pub(crate) probes_denied: Vec<(String, u64)>,
    /// Probes holding a slot now.
    pub(crate) in_flight: usize,
    /// The config loads.
    pub(crate) reload: &'a ReloadStatus,
    /// How late scheduled probes started.
    pub(crate) schedule_lag: HistogramValues,
    /// How soon half-open sockets closed after their SYN-ACK.
    pub(crate) half_open_closes: HalfOpenCloseValues,
    /// What the raw engine (`engine: raw`) has sent and received.
    pub(crate) raw_engine: RawEngineValues,
    /// Targets this instance probes on its schedule.
    pub(crate) scheduled_targets: usize,
    /// Transitions the events file's writer had no room for.
    pub(crate) events_dropped: u64,
    /// The `process_*` metrics.
    pub(crate) process: &'a ProcessMetrics,
    /// The `--web.config.file` loads and logins, when one is given.
    pub(crate) web_config: Option<(&'a ReloadStatus, &'a LoginCounts)>,
}

impl ExporterView<'_> {
    /// Writes every family, in the order `/metrics` has always had them.
    pub(crate) fn write(&self, writer: &mut Writer<'_>) {
        writer.family(
            "synack_exporter_build",
            Kind::Info,
            "Build information of synack_exporter.",
        );
        let build = [
            "version=\"",
            env!("CARGO_PKG_VERSION"),
            "\",os=\"",
            std::env::consts::OS,
            "\",arch=\"",
            std::env::consts::ARCH,
            "\"",
        ];
        writer.sample("synack_exporter_build", "_info", &build, Value::Int(1));
        self.write_probe_results(writer);
        self.write_probes_denied(writer);
        writer.gauge(
            "synack_exporter_probes_in_flight",
            "Probes running now.",
            self.in_flight,
        );
        writer.gauge(
            "synack_exporter_config_last_reload_successful",
            "Whether the last config load or reload succeeded.",
            self.reload.successful.load(Ordering::Relaxed),
        );
        writer.gauge(
            "synack_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load or reload.",
            f64::from_bits(self.reload.success_unix_bits.load(Ordering::Relaxed)),
        );
        if let Some((web, logins)) = self.web_config {
            writer.gauge(
                "synack_exporter_web_config_last_reload_successful",
                "Whether the last load or reload of --web.config.file succeeded.",
                web.successful.load(Ordering::Relaxed),
            );
            writer.gauge(
                "synack_exporter_web_config_last_reload_success_timestamp_seconds",
                "Unix time of the last successful load or reload of --web.config.file.",
                f64::from_bits(web.success_unix_bits.load(Ordering::Relaxed)),
            );
            logins.write(writer);
        }
        writer.family(
            "synack_exporter_schedule_lag_seconds",
            Kind::Histogram,
            "How late scheduled probes start against their slot.",
        );
        let lag = &self.schedule_lag;
        writer.histogram(
            "synack_exporter_schedule_lag_seconds",
            &[],
            (lag.bounds, &lag.cumulative),
            lag.count,
            lag.sum,
        );
        writer.gauge(
            "synack_exporter_scheduled_targets",
            "Targets this instance probes on its own schedule.",
            self.scheduled_targets,
        );
        writer.family(
            "synack_exporter_transition_events_dropped",
            Kind::Counter,
            "Health transitions of scheduled targets not written to --events.file because its writer's queue was full (the log line has them).",
        );
        writer.sample(
            "synack_exporter_transition_events_dropped",
            "_total",
            &[],
            Value::Int(self.events_dropped),
        );
        self.write_half_open_closes(writer);
        self.write_raw_engine(writer);
        self.process.write(writer);
    }

    fn write_half_open_closes(&self, writer: &mut Writer<'_>) {
        writer.family(
            "synack_exporter_halfopen_close_delay_seconds",
            Kind::Histogram,
            "Half-open sockets that got a SYN-ACK (each attempt, and those of timed-out or cancelled probes), /probe and scheduled: time from the SYN-ACK's arrival (as TCP_INFO dates it, to the millisecond) to the return of the close that sent the RST.",
        );
        let delays = &self.half_open_closes.delays;
        writer.histogram(
            "synack_exporter_halfopen_close_delay_seconds",
            &[],
            (delays.bounds, &delays.cumulative),
            delays.count,
            delays.sum,
        );
        writer.family(
            "synack_exporter_halfopen_late_closes",
            Kind::Counter,
            &format!(
                "Half-open sockets that closed more than {} ms after their SYN-ACK (or after the target sent again), close to the kernel's 200 ms delayed ACK that would complete the handshake.",
                LATE_CLOSE_THRESHOLD.as_millis()
            ),
        );
        writer.sample(
            "synack_exporter_halfopen_late_closes",
            "_total",
            &[],
            Value::Int(self.half_open_closes.late),
        );
    }

    /// The raw engine's series: zeros until a module with `engine: raw`
    /// probes, so that alerts and dashboards find them from the start.
    fn write_raw_engine(&self, writer: &mut Writer<'_>) {
        let raw = &self.raw_engine;
        let counters: [(&str, &str, u64); 3] = [
            (
                "synack_exporter_raw_syns_sent",
                "SYNs the raw engine (engine: raw) sent, retransmits included.",
                raw.sent,
            ),
            (
                "synack_exporter_raw_answers",
                "SYN-ACKs, RSTs and ICMP errors that proved to answer a raw probe's SYN (its sequence number) and reached it.",
                raw.answers,
            ),
            (
                "synack_exporter_raw_answers_ignored",
                "Packets the raw engine's kernel filter passed that answered no waiting probe: forged, stale, too late, or another exporter's on this host.",
                raw.ignored,
            ),
        ];
        for (name, help, value) in counters {
            writer.family(name, Kind::Counter, help);
            writer.sample(name, "_total", &[], Value::Int(value));
        }
        let gauges: [(&str, &str, usize); 2] = [
            (
                "synack_exporter_raw_source_ports_held",
                "Source ports the raw engine holds now (sockets bound, never listening), at most one per raw probe in flight at its busiest.",
                raw.ports_held,
            ),
            (
                "synack_exporter_raw_source_ports",
                "Ports of --probe.raw-source-ports: the raw probes that can be in flight at once.",
                raw.ports,
            ),
        ];
        for (name, help, value) in gauges {
            writer.family(name, Kind::Gauge, help);
            writer.sample(name, "", &[], Value::Int(value as u64));
        }
    }

    fn write_probes_denied(&self, writer: &mut Writer<'_>) {
        writer.family(
            "synack_exporter_probes_denied",
            Kind::Counter,
            "Probes not made because the module's target_policy refused the target or its address.",
        );
        let mut module_label = String::with_capacity(64);
        for (module, denied) in &self.probes_denied {
            start_module_label(&mut module_label, module);
            module_label.push('"');
            writer.sample(
                "synack_exporter_probes_denied",
                "_total",
                &[module_label.as_str()],
                Value::Int(*denied),
            );
        }
    }

    fn write_probe_results(&self, writer: &mut Writer<'_>) {
        writer.family(
            "synack_exporter_probes",
            Kind::Counter,
            "Probes run, by module and result (success or the failure reason).",
        );
        let mut module_label = String::with_capacity(64);
        for (module, counts) in &self.probe_results {
            start_module_label(&mut module_label, module);
            module_label.push_str("\",result=\"");
            for (result, count) in RESULTS.iter().zip(counts) {
                let labels = [module_label.as_str(), result, "\""];
                writer.sample(
                    "synack_exporter_probes",
                    "_total",
                    &labels,
                    Value::Int(*count),
                );
            }
        }
    }
}

/// `label` made `module="<module>` (escaped, the quote left open).
fn start_module_label(label: &mut String, module: &str) {
    label.clear();
    label.push_str("module=\"");
    push_label_value(label, module);
}
