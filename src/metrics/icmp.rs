//! `probe_icmp_error_info`: which ICMP error ended a probe, and who sent it.
//!
//! One info series, only while there is something to say: `/probe`
//! writes it for a failed probe whose socket drew an ICMP or ICMPv6 error,
//! and a scheduled target shows the one of its last probe. Its labels are
//! bounded: `icmp_type` and `icmp_code` are bytes, and `offender` is one address per
//! target at a time (the router or host that said no, or `""` when the
//! kernel named none). The ICMP version follows from `probe_ip_protocol`:
//! type 3 is "destination unreachable" in ICMP, type 1 in ICMPv6; except
//! for an IPv4-mapped target, probed over IPv6, whose errors are ICMP.

#![forbid(unsafe_code)]

use super::exposition::{Kind, Value, Writer};
use crate::prober::IcmpError;
use std::fmt::Write;

/// The family's name; OpenMetrics writes its sample with `_info`.
pub(crate) const FAMILY: &str = "probe_icmp_error";

/// The family's help text.
pub(crate) const HELP: &str =
    "The ICMP error that ended the probe: its type, code and sender (offender); absent when none.";

/// The family and its one sample, for a single probe's exposition.
pub(crate) fn write_family(writer: &mut Writer<'_>, icmp: &IcmpError) {
    writer.family(FAMILY, Kind::Info, HELP);
    write_sample(writer, "", icmp);
}

/// The sample alone, after `labels` (escaped `name="value"` pieces, or
/// empty); a non-empty `labels` is joined to the ICMP labels with a comma.
pub(crate) fn write_sample(writer: &mut Writer<'_>, labels: &str, icmp: &IcmpError) {
    let separator = if labels.is_empty() { "" } else { "," };
    let mut own = String::with_capacity(64);
    // Writing to a String cannot fail; an IP address needs no escaping.
    let _ = write!(
        own,
        "{separator}icmp_type=\"{}\",icmp_code=\"{}\",offender=\"",
        icmp.icmp_type, icmp.code
    );
    if let Some(offender) = icmp.offender {
        let _ = write!(own, "{offender}");
    }
    own.push('"');
    writer.sample(FAMILY, "_info", &[labels, &own], Value::Int(1));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::exposition::Format;

    fn prohibited(offender: Option<&str>) -> IcmpError {
        IcmpError {
            ipv6: false,
            icmp_type: 3,
            code: 13,
            offender: offender.map(|address| address.parse().unwrap()),
        }
    }

    #[test]
    fn the_sample_carries_type_code_and_offender() {
        let mut text = String::new();
        let mut writer = Writer::new(&mut text, Format::OpenMetrics);
        write_family(&mut writer, &prohibited(Some("192.0.2.1")));
        assert_eq!(
            text,
            "# HELP probe_icmp_error The ICMP error that ended the probe: its type, code and sender (offender); absent when none.\n\
             # TYPE probe_icmp_error info\n\
             probe_icmp_error_info{icmp_type=\"3\",icmp_code=\"13\",offender=\"192.0.2.1\"} 1\n"
        );
    }

    #[test]
    fn target_labels_come_first_and_a_missing_offender_is_empty() {
        let mut text = String::new();
        let mut writer = Writer::new(&mut text, Format::PrometheusText);
        write_sample(&mut writer, "module=\"m\"", &prohibited(None));
        assert_eq!(
            text,
            "probe_icmp_error_info{module=\"m\",icmp_type=\"3\",icmp_code=\"13\",offender=\"\"} 1\n"
        );
    }
}
