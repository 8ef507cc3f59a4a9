//! Everything the exporter exposes as metrics.
//!
//! - [`probe`]: the answer to one `/probe` request, built from an outcome.
//! - [`exporter`]: the exporter's own `/metrics` (build info, probe
//!   counters, in-flight gauge, reload status).
//! - [`process`]: the standard `process_*` metrics.
//! - [`scheduled`]: the series of scheduled targets, streamed.
//! - [`exposition`]: OpenMetrics or Prometheus text, chosen by `Accept`.

pub mod exporter;
pub mod exposition;
pub mod probe;
pub mod process;
pub mod scheduled;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// Writes one unlabelled gauge from a collector.
fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}
