//! The exporter's own metrics, served on `/metrics`.

use super::exposition::{Format, encode_families, encode_registry};
use super::process::ProcessCollector;
use crate::prober::{Outcome, Reason};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Labels of `synack_exporter_probes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeResultLabels {
    /// The module name.
    pub module: String,
    /// `success` or the failure reason.
    pub result: &'static str,
}

/// Counters and gauges about the exporter itself.
#[derive(Debug)]
pub struct ExporterMetrics {
    registry: Registry,
    probes: Family<ProbeResultLabels, Counter>,
    in_flight: Gauge,
    reload_successful: Gauge,
    reload_success_timestamp: Gauge<f64, AtomicU64>,
    schedule_lag: Histogram,
    scheduled_targets: Gauge,
}

/// Bounds of the schedule-lag histogram, seconds: 1 ms to 10 s.
const SCHEDULE_LAG_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Default for ExporterMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ExporterMetrics {
    /// Registers every metric; reload status starts at "never loaded" (0).
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::default();
        registry.register(
            "synack_exporter_build",
            "Build information of synack_exporter",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("os", std::env::consts::OS),
                ("arch", std::env::consts::ARCH),
            ]),
        );
        let probes = Family::<ProbeResultLabels, Counter>::default();
        registry.register(
            "synack_exporter_probes",
            "Probes run, by module and result (success or the failure reason)",
            probes.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "synack_exporter_probes_in_flight",
            "Probes running now",
            in_flight.clone(),
        );
        let reload_successful = Gauge::default();
        registry.register(
            "synack_exporter_config_last_reload_successful",
            "Whether the last config load or reload succeeded",
            reload_successful.clone(),
        );
        let reload_success_timestamp = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "synack_exporter_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load or reload",
            reload_success_timestamp.clone(),
        );
        let schedule_lag = Histogram::new(SCHEDULE_LAG_BUCKETS);
        registry.register(
            "synack_exporter_schedule_lag_seconds",
            "How late scheduled probes start against their slot",
            schedule_lag.clone(),
        );
        let scheduled_targets = Gauge::default();
        registry.register(
            "synack_exporter_scheduled_targets",
            "Targets this instance probes on its own schedule",
            scheduled_targets.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector::new()));
        Self {
            registry,
            probes,
            in_flight,
            reload_successful,
            reload_success_timestamp,
            schedule_lag,
            scheduled_targets,
        }
    }

    /// Creates the probe counters of `module` at zero, so that rate() and
    /// alerts see every result series from the start.
    pub fn declare_module(&self, module: &str) {
        for result in std::iter::once("success").chain(Reason::ALL.map(Reason::as_str)) {
            let _ = self.probes.get_or_create(&ProbeResultLabels {
                module: module.to_owned(),
                result,
            });
        }
    }

    /// Counts one finished probe.
    pub fn record_probe(&self, module: &str, outcome: &Outcome) {
        let result = outcome.reason().map_or("success", Reason::as_str);
        self.probes
            .get_or_create(&ProbeResultLabels {
                module: module.to_owned(),
                result,
            })
            .inc();
    }

    /// Marks a probe as running until the guard is dropped.
    #[must_use]
    pub fn probe_in_flight(&self) -> InFlightGuard {
        self.in_flight.inc();
        InFlightGuard(self.in_flight.clone())
    }

    /// Records the result of a config load or reload.
    pub fn record_reload(&self, successful: bool) {
        self.reload_successful.set(i64::from(successful));
        if successful {
            let now = crate::clock::unix_seconds();
            self.reload_success_timestamp.set(now);
        }
    }

    /// Records how late a scheduled probe started.
    pub fn observe_schedule_lag(&self, lag: Duration) {
        self.schedule_lag.observe(lag.as_secs_f64());
    }

    /// Sets how many targets the scheduler probes.
    pub fn set_scheduled_targets(&self, count: usize) {
        self.scheduled_targets
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// The exposition of all of the above.
    #[must_use]
    pub fn encode(&self, format: Format) -> String {
        encode_registry(&self.registry, format)
    }

    /// The families of all of the above, without the closing `# EOF`.
    #[must_use]
    pub fn encode_families(&self, format: Format) -> String {
        encode_families(&self.registry, format)
    }
}

/// Decrements `synack_exporter_probes_in_flight` when dropped, also when a
/// probe is cancelled because its HTTP client went away.
#[derive(Debug)]
pub struct InFlightGuard(Gauge);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
