//! The metrics of one `/probe` request, from its [`Outcome`].
//!
//! Names and meanings follow blackbox_exporter (`probe_success`,
//! `probe_duration_seconds`, ...), so dashboards and alerts carry over.
//! What blackbox_exporter lacks is `probe_failure_reason`: one series per
//! [`Reason`], always all of them, with the failing one at 1. The set of
//! series never changes, so alert rules like
//! `probe_failure_reason{reason="refused"} == 1` behave.

use super::encode_gauge as gauge;
use super::exposition::{Format, encode_registry};
use crate::hash::fnv1a_32;
use crate::prober::{Outcome, Reason};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::net::IpAddr;

/// Name of the handshake gauge: from connect to the SYN-ACK.
pub const HANDSHAKE_GAUGE: &str = "probe_tcp_handshake_duration_seconds";

/// Renders the metrics of one probe in `format`.
#[must_use]
pub fn render(outcome: &Outcome, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProbeReport::from(outcome)));
    encode_registry(&registry, format)
}

/// The numbers of one outcome, as the collector exports them.
#[derive(Debug)]
struct ProbeReport {
    success: bool,
    duration: f64,
    dns_time: f64,
    handshake_time: f64,
    ip_protocol: u8,
    ip_addr_hash: u32,
    reason: Option<Reason>,
}

impl From<&Outcome> for ProbeReport {
    fn from(outcome: &Outcome) -> Self {
        Self {
            success: outcome.is_success(),
            duration: outcome.duration.as_secs_f64(),
            dns_time: outcome.dns_time.as_secs_f64(),
            handshake_time: outcome
                .handshake_time
                .map_or(0.0, |time| time.as_secs_f64()),
            ip_protocol: outcome.ip_protocol(),
            ip_addr_hash: outcome.address.map_or(0, |address| ip_hash(address.ip())),
            reason: outcome.reason(),
        }
    }
}

impl Collector for ProbeReport {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        gauge(
            &mut encoder,
            "probe_success",
            "Whether the probe succeeded.",
            f64::from(u8::from(self.success)),
        )?;
        gauge(
            &mut encoder,
            "probe_duration_seconds",
            "How long the probe took, DNS included.",
            self.duration,
        )?;
        gauge(
            &mut encoder,
            "probe_dns_lookup_time_seconds",
            "How long resolving the target took.",
            self.dns_time,
        )?;
        gauge(
            &mut encoder,
            HANDSHAKE_GAUGE,
            "Time from connect to the SYN-ACK; 0 when no SYN-ACK came.",
            self.handshake_time,
        )?;
        gauge(
            &mut encoder,
            "probe_ip_protocol",
            "IP version of the probed address: 4 or 6; 0 when nothing resolved.",
            f64::from(self.ip_protocol),
        )?;
        gauge(
            &mut encoder,
            "probe_ip_addr_hash",
            "FNV-1a hash of the probed address, to notice when it changes.",
            f64::from(self.ip_addr_hash),
        )?;
        let mut family = encoder.encode_descriptor(
            "probe_failure_reason",
            "Why the probe failed: 1 for the reason, 0 for the others; all 0 on success.",
            None,
            ConstGauge::<f64>::new(0.0).metric_type(),
        )?;
        for reason in Reason::ALL {
            let labels = [("reason", reason.as_str())];
            let value = if self.reason == Some(reason) {
                1.0
            } else {
                0.0
            };
            ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// blackbox_exporter's `ipHash`: FNV-1a (32 bit) over the address bytes.
fn ip_hash(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(v4) => fnv1a_32(&v4.octets()),
        IpAddr::V6(v6) => fnv1a_32(&v6.octets()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prober::Failure;
    use std::time::Duration;

    #[test]
    fn every_reason_is_present_and_only_the_failing_one_is_1() {
        let outcome =
            Outcome::not_started(Failure::new(Reason::Timeout, "x"), Duration::from_millis(5));
        let text = render(&outcome, Format::OpenMetrics);
        for reason in Reason::ALL {
            let expected = if reason == Reason::Timeout {
                "1.0"
            } else {
                "0.0"
            };
            let line = format!("probe_failure_reason{{reason=\"{reason}\"}} {expected}\n");
            assert!(text.contains(&line), "missing {line:?} in\n{text}");
        }
        assert!(text.contains("probe_success 0.0\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
