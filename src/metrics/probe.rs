//! The metrics of one `/probe` request, from its [`Outcome`].
//!
//! Names and meanings follow blackbox_exporter (`probe_success`,
//! `probe_duration_seconds`, ...), so dashboards and alerts carry over.
//! What blackbox_exporter lacks is `probe_failure_reason`: one series per
//! [`Reason`], always all of them, with the failing one at 1. The set of
//! series never changes, so alert rules like
//! `probe_failure_reason{reason="refused"} == 1` behave.

#![forbid(unsafe_code)]

use super::exposition::{Format, Kind, Value, Writer};
use crate::hash::fnv1a_32;
use crate::prober::{Outcome, Reason};
use std::net::IpAddr;

/// Name of the handshake gauge: from connect to the SYN-ACK.
const HANDSHAKE_GAUGE: &str = "probe_tcp_handshake_duration_seconds";

/// The `reason` labels of `probe_failure_reason`, in the order of [`Reason::ALL`].
const REASON_LABELS: [&str; Reason::ALL.len()] = [
    "reason=\"refused\"",
    "reason=\"timeout\"",
    "reason=\"unreachable\"",
    "reason=\"dns\"",
    "reason=\"local\"",
    "reason=\"check_failed\"",
];

/// The metrics of one probe in `format`, as a complete exposition.
pub(crate) fn render(outcome: &Outcome, format: Format) -> String {
    let mut text = String::with_capacity(1024);
    let mut writer = Writer::new(&mut text, format);
    writer.gauge(
        "probe_success",
        "Whether the probe succeeded.",
        outcome.is_success(),
    );
    writer.gauge(
        "probe_duration_seconds",
        "How long the probe took, DNS included.",
        outcome.duration.as_secs_f64(),
    );
    writer.gauge(
        "probe_dns_lookup_time_seconds",
        "How long resolving the target took.",
        outcome.dns_time.as_secs_f64(),
    );
    writer.gauge(
        HANDSHAKE_GAUGE,
        "Time from connect to the SYN-ACK; 0 when no SYN-ACK came.",
        outcome
            .handshake_time
            .map_or(0.0, |time| time.as_secs_f64()),
    );
    writer.gauge(
        "probe_ip_protocol",
        "IP version of the probed address: 4 or 6; 0 when nothing resolved.",
        outcome.ip_protocol(),
    );
    writer.gauge(
        "probe_ip_addr_hash",
        "FNV-1a hash of the probed address, to notice when it changes.",
        outcome.address.map_or(0, |address| ip_hash(address.ip())),
    );
    if let Some(code) = outcome.exit_code {
        writer.gauge(
            "probe_exec_exit_code",
            "Exit code of the exec module's command; -1 when it has none (killed, timed out, not started).",
            f64::from(code),
        );
    }
    writer.family(
        "probe_failure_reason",
        Kind::Gauge,
        "Why the probe failed: 1 for the reason, 0 for the others; all 0 on success.",
    );
    let failed = outcome.reason();
    for (reason, label) in Reason::ALL.into_iter().zip(REASON_LABELS) {
        let value = Value::from(failed == Some(reason));
        writer.sample("probe_failure_reason", "", &[label], value);
    }
    writer.end();
    text
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
        for failed in Reason::ALL {
            let outcome = Outcome::not_started(Failure::new(failed, "x"), Duration::from_millis(5));
            let text = render(&outcome, Format::OpenMetrics);
            for reason in Reason::ALL {
                let expected = u8::from(reason == failed);
                let line = format!("probe_failure_reason{{reason=\"{reason}\"}} {expected}\n");
                assert!(text.contains(&line), "missing {line:?} in\n{text}");
            }
            assert!(text.contains("probe_success 0\n"), "{text}");
            assert!(text.ends_with("# EOF\n"), "{text}");
            assert!(!text.contains("probe_exec_exit_code"), "{text}");
        }
    }

    #[test]
    fn the_exit_code_is_written_for_exec_outcomes_only() {
        let mut outcome =
            Outcome::not_started(Failure::new(Reason::CheckFailed, "x"), Duration::ZERO);
        for (code, line) in [
            (Some(3), "probe_exec_exit_code 3\n"),
            (Some(-1), "probe_exec_exit_code -1\n"),
        ] {
            outcome.exit_code = code;
            let text = render(&outcome, Format::PrometheusText);
            assert!(text.contains(line), "{text}");
            assert!(
                text.contains("# TYPE probe_exec_exit_code gauge\n"),
                "{text}"
            );
        }
    }
}
