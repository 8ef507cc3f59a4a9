//! The exporter's own metrics, served on `/metrics`.

use super::exposition::{Format, encode_registry};
use super::process::ProcessCollector;
use crate::prober::{Outcome, Reason};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

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
}

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
        registry.register_collector(Box::new(ProcessCollector::new()));
        Self {
            registry,
            probes,
            in_flight,
            reload_successful,
            reload_success_timestamp,
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
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64());
            self.reload_success_timestamp.set(now);
        }
    }

    /// The exposition of all of the above.
    #[must_use]
    pub fn encode(&self, format: Format) -> String {
        encode_registry(&self.registry, format)
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
