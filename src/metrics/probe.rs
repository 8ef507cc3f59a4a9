//! The metrics of one `/probe` request, from its [`Outcome`].
//!
//! Names and meanings follow blackbox_exporter (`probe_success`,
//! `probe_duration_seconds`, ...), so dashboards and alerts carry over.
//! What blackbox_exporter lacks is `probe_failure_reason`: one series per
//! [`Reason`], always all of them, with the failing one at 1. The set of
//! series never changes, so alert rules like
//! `probe_failure_reason{reason="refused"} == 1` behave.
//!
//! Each prober adds its own series (the TCP probers' `TCP_INFO` and
//! attempt series, `exec`'s exit code), which its file in `src/prober/`
//! declares ([`prober::write_series`]); this file writes the shared ones
//! and puts the prober's in their places. Which series a prober adds
//! depends on the module, not on the probe, so a module's set of series
//! never changes.

#![forbid(unsafe_code)]

use super::exposition::{Format, Kind, Value, Writer, push_label_value};
use crate::config::{ADDRESS_LABEL, IpAddresses, Module};
use crate::hash::fnv1a_32;
use crate::prober::{self, AddressOutcome, IcmpError, Number, Outcome, Reason, Slot};
use std::net::IpAddr;

/// The `reason` labels of `probe_failure_reason`, in the order of [`Reason::ALL`].
const REASON_LABELS: [&str; Reason::ALL.len()] = [
    "reason=\"refused\"",
    "reason=\"timeout\"",
    "reason=\"unreachable\"",
    "reason=\"dns\"",
    "reason=\"local\"",
    "reason=\"check_failed\"",
    "reason=\"tls\"",
    "reason=\"open\"",
];

/// The exposition writer, as the place where probers write their series.
struct ProberSeries<'w, 'a>(&'w mut Writer<'a>);

impl prober::Series for ProberSeries<'_, '_> {
    fn gauge(&mut self, name: &'static str, help: &'static str, value: Number) {
        self.0.gauge(name, help, Value::from(value));
    }

    fn icmp_error(&mut self, icmp: &IcmpError) {
        super::icmp::write_family(self.0, icmp);
    }

    fn info(&mut self, name: &'static str, help: &'static str, labels: &[(&str, &str)]) {
        self.0.family(name, Kind::Info, help);
        let labels = info_labels("", labels);
        self.0.sample(name, "_info", &[&labels], Value::Int(1));
    }

    fn labelled_gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: Number,
    ) {
        self.0.family(name, Kind::Gauge, help);
        let labels = info_labels("", labels);
        self.0.sample(name, "", &[&labels], value.into());
    }
}

impl From<Number> for Value {
    fn from(number: Number) -> Self {
        match number {
            Number::Count(count) => Self::from(count),
            Number::Measure(measure) => Self::from(measure),
        }
    }
}

/// `labels` as escaped `name="value"` pieces joined by commas, after
/// `separator` when there are any: the labels of an info sample.
pub(super) fn info_labels(separator: &str, labels: &[(&str, &str)]) -> String {
    let mut text = String::with_capacity(64);
    for (index, (name, value)) in labels.iter().enumerate() {
        text.push_str(if index == 0 { separator } else { "," });
        text.push_str(name);
        text.push_str("=\"");
        push_label_value(&mut text, value);
        text.push('"');
    }
    text
}

/// The metrics of one probe of `module` in `format`, as a complete exposition.
pub(crate) fn render(outcome: &Outcome, module: &Module, format: Format) -> String {
    let mut text = String::with_capacity(1024);
    let mut writer = Writer::new(&mut text, format);
    let own = |writer: &mut Writer<'_>, slot| {
        prober::write_series(module, outcome, slot, &mut ProberSeries(writer));
    };
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
    // Every module writes it, 0 without a handshake, as it always has.
    writer.gauge(
        "probe_tcp_handshake_duration_seconds",
        "Time from connect to the SYN-ACK; 0 when no SYN-ACK came.",
        outcome
            .handshake_time()
            .map_or(0.0, |time| time.as_secs_f64()),
    );
    own(&mut writer, Slot::Handshake);
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
    own(&mut writer, Slot::Address);
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
    own(&mut writer, Slot::Reasons);
    if module
        .tcp()
        .is_some_and(|options| options.ip_addresses == IpAddresses::All)
    {
        write_addresses(&mut writer, &outcome.addresses);
    }
    writer.end();
    text
}

/// The series of an `ip_addresses: all` module: each address's success
/// and failure reason, labelled with the bare IP.
fn write_addresses(writer: &mut Writer<'_>, addresses: &[AddressOutcome]) {
    let labels: Vec<String> = addresses
        .iter()
        .map(|address| format!("{ADDRESS_LABEL}=\"{}\"", address.ip))
        .collect();
    writer.family(
        "probe_address_success",
        Kind::Gauge,
        "With ip_addresses: all, whether the probe of this address succeeded.",
    );
    for (address, label) in addresses.iter().zip(&labels) {
        let value = Value::from(address.failure.is_none());
        writer.sample("probe_address_success", "", &[label], value);
    }
    writer.family(
        "probe_address_failure_reason",
        Kind::Gauge,
        "With ip_addresses: all, why the probe of this address failed: 1 for the reason, 0 for the others.",
    );
    for (address, label) in addresses.iter().zip(&labels) {
        let failed = address.failure.as_ref().map(|failure| failure.reason);
        for (reason, reason_label) in Reason::ALL.into_iter().zip(REASON_LABELS) {
            let value = Value::from(failed == Some(reason));
            writer.sample(
                "probe_address_failure_reason",
                "",
                &[label, ",", reason_label],
                value,
            );
        }
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
pub(super) mod tests {
    use super::*;
    use crate::config::Config;
    use crate::prober::{CertFacts, Detail, ExecDetail, Failure, SessionDetail, TlsFacts};
    use std::time::Duration;

    #[test]
    fn every_reason_is_present_and_only_the_failing_one_is_1() {
        for failed in Reason::ALL {
            let outcome = Outcome::not_started(Failure::new(failed, "x"), Duration::from_millis(5));
            let text = render(&outcome, &single_attempt(), Format::OpenMetrics);
            for reason in Reason::ALL {
                let expected = u8::from(reason == failed);
                let line = format!("probe_failure_reason{{reason=\"{reason}\"}} {expected}\n");
                assert!(text.contains(&line), "missing {line:?} in\n{text}");
            }
            assert!(text.contains("probe_success 0\n"), "{text}");
            assert!(text.ends_with("# EOF\n"), "{text}");
            assert!(!text.contains("attempts"), "{text}");
            assert!(!text.contains("probe_exec_exit_code"), "{text}");
        }
    }

    #[test]
    fn the_exit_code_is_written_for_exec_modules_only() {
        let exec = exec_module();
        let mut outcome =
            Outcome::not_started(Failure::new(Reason::CheckFailed, "x"), Duration::ZERO);
        for (code, line) in [
            (Some(3), "probe_exec_exit_code 3\n"),
            (Some(-1), "probe_exec_exit_code -1\n"),
            // Not started (over the exec limit): no exit code either.
            (None, "probe_exec_exit_code -1\n"),
        ] {
            outcome.detail = code.map_or(Detail::NotRun, |exit_code| {
                Detail::Exec(ExecDetail { exit_code })
            });
            let text = render(&outcome, &exec, Format::PrometheusText);
            assert!(text.contains(line), "{text}");
            assert!(
                text.contains("# TYPE probe_exec_exit_code gauge\n"),
                "{text}"
            );
        }
    }

    /// The value of the unlabelled sample `series` in `text`.
    fn sample_value(text: &str, series: &str) -> f64 {
        let line = text
            .lines()
            .find(|line| line.split(' ').next() == Some(series))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"));
        line.split(' ').nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn tcp_modules_write_the_kernel_rtt_and_syn_retransmits_whatever_the_outcome() {
        let mut outcome = Outcome::not_started(Failure::new(Reason::Timeout, "x"), Duration::ZERO);
        for module in [Module::tcp_halfopen(), Module::tcp_connect()] {
            // Failed: no SYN-ACK, so both are 0, like the handshake gauge.
            let text = render(&outcome, &module, Format::OpenMetrics);
            assert_eq!(sample_value(&text, "probe_tcp_rtt_seconds"), 0.0, "{text}");
            assert_eq!(
                sample_value(&text, "probe_tcp_syn_retransmits"),
                0.0,
                "{text}"
            );
            assert!(
                text.contains("# TYPE probe_tcp_rtt_seconds gauge\n"),
                "{text}"
            );
            assert!(
                text.contains("# TYPE probe_tcp_syn_retransmits gauge\n"),
                "{text}"
            );
        }
        outcome.failure = None;
        outcome.tcp_mut().handshake_time = Some(Duration::from_millis(1005));
        outcome.tcp_mut().tcp_rtt = Some(Duration::from_micros(1250));
        outcome.tcp_mut().syn_retransmits = 2;
        for format in [Format::OpenMetrics, Format::PrometheusText] {
            let text = render(&outcome, &single_attempt(), format);
            assert!(
                (sample_value(&text, "probe_tcp_rtt_seconds") - 0.001_25).abs() < 1e-9,
                "{text}"
            );
            assert_eq!(
                sample_value(&text, "probe_tcp_syn_retransmits"),
                2.0,
                "{text}"
            );
            assert!(
                (sample_value(&text, "probe_tcp_handshake_duration_seconds") - 1.005).abs() < 1e-9,
                "{text}"
            );
        }
    }

    #[test]
    fn exec_modules_write_no_tcp_info_series() {
        let exec = exec_module();
        let mut outcome =
            Outcome::not_started(Failure::new(Reason::CheckFailed, "x"), Duration::ZERO);
        outcome.tcp_mut().tcp_rtt = Some(Duration::from_micros(5));
        outcome.tcp_mut().syn_retransmits = 1;
        let text = render(&outcome, &exec, Format::OpenMetrics);
        assert!(!text.contains("probe_tcp_rtt_seconds"), "{text}");
        assert!(!text.contains("probe_tcp_syn_retransmits"), "{text}");
    }

    fn exec_module() -> Module {
        Config::parse(
            "t.yml",
            "modules:\n  script:\n    prober: exec\n    exec: {command: [\"/bin/true\"]}\n",
        )
        .unwrap()
        .modules["script"]
            .clone()
    }

    fn single_attempt() -> Module {
        Module::tcp_halfopen()
    }

    #[test]
    fn a_multi_attempt_module_writes_attempts_and_handshake_statistics() {
        let mut module = single_attempt();
        module.tcp_mut().unwrap().attempts = 4;
        let mut outcome = Outcome::not_started(Failure::new(Reason::Timeout, "x"), Duration::ZERO);
        outcome.failure = None;
        outcome.tcp_mut().attempts = 4;
        outcome.tcp_mut().attempts_failed = 1;
        outcome.tcp_mut().handshake_time = Some(Duration::from_millis(2));
        outcome.tcp_mut().later_handshake_times =
            vec![Duration::from_millis(4), Duration::from_millis(6)];
        let text = render(&outcome, &module, Format::OpenMetrics);
        for (series, value) in [
            ("probe_attempts", 4.0),
            ("probe_attempts_failed", 1.0),
            ("probe_tcp_handshake_min_seconds", 0.002),
            ("probe_tcp_handshake_mean_seconds", 0.004),
            ("probe_tcp_handshake_max_seconds", 0.006),
            // sqrt(((2-4)² + 0 + (6-4)²) / 3) ms
            ("probe_tcp_handshake_stddev_seconds", 0.001_632_993),
            ("probe_tcp_handshake_duration_seconds", 0.002),
        ] {
            let got = sample_value(&text, series);
            assert!((got - value).abs() < 1e-6, "{series}: {got} != {value}");
        }
        // No attempt succeeded: the statistics are 0, like the handshake gauge.
        outcome.tcp_mut().handshake_time = None;
        outcome.tcp_mut().later_handshake_times.clear();
        let text = render(&outcome, &module, Format::PrometheusText);
        assert!(
            text.contains("\nprobe_tcp_handshake_stddev_seconds 0\n"),
            "{text}"
        );
        assert!(
            text.contains("\nprobe_tcp_handshake_min_seconds 0\n"),
            "{text}"
        );
    }

    #[test]
    fn an_icmp_error_adds_its_info_series_and_only_then() {
        let mut outcome =
            Outcome::not_started(Failure::new(Reason::Unreachable, "x"), Duration::ZERO);
        let text = render(&outcome, &single_attempt(), Format::OpenMetrics);
        assert!(!text.contains("probe_icmp_error"), "{text}");
        outcome.tcp_mut().icmp_error = Some(crate::prober::IcmpError {
            ipv6: false,
            icmp_type: 3,
            code: 13,
            offender: Some("192.0.2.1".parse().unwrap()),
        });
        let text = render(&outcome, &single_attempt(), Format::OpenMetrics);
        assert!(
            text.contains(
                "# TYPE probe_icmp_error info\n\
                 probe_icmp_error_info{icmp_type=\"3\",icmp_code=\"13\",offender=\"192.0.2.1\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// An info series is its family (type info in OpenMetrics, gauge
    /// `_info` in the text format) and one sample at 1 with its labels
    /// escaped, in the order given.
    #[test]
    fn info_series_write_escaped_labels_in_order() {
        for (format, family) in [
            (Format::OpenMetrics, "# TYPE probe_tls_version info\n"),
            (
                Format::PrometheusText,
                "# TYPE probe_tls_version_info gauge\n",
            ),
        ] {
            let mut text = String::new();
            let mut writer = Writer::new(&mut text, format);
            prober::Series::info(
                &mut ProberSeries(&mut writer),
                "probe_tls_version",
                "Help.",
                &[("version", "TLS 1.3"), ("subject", "O=Acme\\, \"I\"\n")],
            );
            assert!(text.contains(family), "{text}");
            assert!(
                text.ends_with(
                    "probe_tls_version_info{version=\"TLS 1.3\",subject=\"O=Acme\\\\, \\\"I\\\"\\n\"} 1\n"
                ),
                "{text}"
            );
        }
    }

    /// A module of `prober: tcp` named `name` from its YAML body.
    pub(in crate::metrics) fn tcp_module(body: &str) -> Module {
        let yaml = format!("modules:\n  m:\n    prober: tcp\n    timeout: 5s\n{body}");
        Config::parse("t.yml", &yaml).unwrap().modules["m"].clone()
    }

    /// A `prober: tcp` module with `tls: true`.
    pub(in crate::metrics) fn tls_module() -> Module {
        tcp_module("    tcp:\n      tls: true\n")
    }

    /// A handshake's facts, with a subject that needs every escape: Go's
    /// `\,` and `\"`, which the exposition escapes again.
    pub(in crate::metrics) fn tls_facts() -> TlsFacts {
        TlsFacts {
            version: "TLS 1.3",
            cipher: "TLS_AES_128_GCM_SHA256",
            leaf: CertFacts {
                fingerprint_sha256:
                    "4679a17a0c9e6f8e1f0d7b6b2d2a1c3e5f7a9b0c1d2e3f405162738495a6a75f".into(),
                subject: r#"CN=localhost,OU=Ops,O=Acme\, \"Inc.\",C=US"#.into(),
                issuer: "CN=Test CA,O=Acme".into(),
                subjectalternative: "localhost,foo.example".into(),
                serialnumber: "f1e2".into(),
                not_after: 1_799_253_559,
            },
            earliest_expiry: 1_799_253_559,
            last_chain_expiry: 1_830_789_559,
        }
    }

    /// An outcome of a session with `failure` and `detail`.
    pub(in crate::metrics) fn session_outcome(
        failure: Option<Reason>,
        detail: SessionDetail,
    ) -> Outcome {
        let failure = failure.map(|reason| Failure::new(reason, "x"));
        Outcome::new(failure, Detail::Session(Box::new(detail)))
    }

    /// What `render` writes after `probe_failure_reason`, without the HELP
    /// lines (each family's HELP is checked by the docs test).
    fn after_reasons(outcome: &Outcome, module: &Module, format: Format) -> String {
        let text = render(outcome, module, format);
        let last = Reason::ALL[Reason::ALL.len() - 1];
        let (_, tail) = text
            .split_once(&format!("probe_failure_reason{{reason=\"{last}\"}}"))
            .unwrap_or_else(|| panic!("{text}"));
        let tail = tail.split_once('\n').unwrap().1;
        tail.lines()
            .filter(|line| !line.starts_with("# HELP "))
            .map(|line| format!("{line}\n"))
            .collect()
    }

    /// The regex and bytes gauges, as every prober: tcp module writes them.
    fn flags(regex: u8, bytes: u8) -> String {
        format!(
            "# TYPE probe_failed_due_to_regex gauge\nprobe_failed_due_to_regex {regex}\n\
             # TYPE probe_failed_due_to_bytes gauge\nprobe_failed_due_to_bytes {bytes}\n"
        )
    }

    #[test]
    fn a_tls_handshake_writes_blackboxs_series_with_go_values_in_both_formats() {
        let detail = SessionDetail {
            tls: Some(tls_facts()),
            ..SessionDetail::default()
        };
        let outcome = session_outcome(None, detail);
        let chain = "probe_ssl_last_chain_info{\
            fingerprint_sha256=\"4679a17a0c9e6f8e1f0d7b6b2d2a1c3e5f7a9b0c1d2e3f405162738495a6a75f\",\
            subject=\"CN=localhost,OU=Ops,O=Acme\\\\, \\\\\\\"Inc.\\\\\\\",C=US\",\
            issuer=\"CN=Test CA,O=Acme\",\
            subjectalternative=\"localhost,foo.example\",\
            serialnumber=\"f1e2\"} 1\n";
        let samples = |info_type: &str, suffix: &str| {
            format!(
                "{flags}\
                 # TYPE probe_ssl_earliest_cert_expiry gauge\n\
                 probe_ssl_earliest_cert_expiry 1799253559\n\
                 # TYPE probe_ssl_last_chain_expiry_timestamp_seconds gauge\n\
                 probe_ssl_last_chain_expiry_timestamp_seconds 1830789559\n\
                 # TYPE probe_ssl_last_chain{suffix} {info_type}\n\
                 {chain}\
                 # TYPE probe_tls_version{suffix} {info_type}\n\
                 probe_tls_version_info{{version=\"TLS 1.3\"}} 1\n\
                 # TYPE probe_tls_cipher{suffix} {info_type}\n\
                 probe_tls_cipher_info{{cipher=\"TLS_AES_128_GCM_SHA256\"}} 1\n",
                flags = flags(0, 0),
            )
        };
        assert_eq!(
            after_reasons(&outcome, &tls_module(), Format::OpenMetrics),
            samples("info", "") + "# EOF\n"
        );
        assert_eq!(
            after_reasons(&outcome, &tls_module(), Format::PrometheusText),
            samples("gauge", "_info")
        );
    }

    #[test]
    fn without_verification_the_last_chain_expiry_is_gos_zero_time_as_an_integer() {
        let mut tls = tls_facts();
        tls.last_chain_expiry = -62_135_596_800;
        let detail = SessionDetail {
            tls: Some(tls),
            ..SessionDetail::default()
        };
        let text = render(
            &session_outcome(None, detail),
            &tls_module(),
            Format::PrometheusText,
        );
        assert!(
            text.contains("\nprobe_ssl_last_chain_expiry_timestamp_seconds -62135596800\n"),
            "{text}"
        );
    }

    #[test]
    fn no_tls_series_before_a_successful_handshake() {
        let failed = session_outcome(Some(Reason::Tls), SessionDetail::default());
        let refused = Outcome::not_started(Failure::new(Reason::Refused, "x"), Duration::ZERO);
        for outcome in [failed, refused] {
            for format in [Format::OpenMetrics, Format::PrometheusText] {
                let tail = after_reasons(&outcome, &tls_module(), format);
                assert_eq!(tail, flags(0, 0) + format.end(), "{outcome:?}");
            }
        }
    }

    #[test]
    fn a_failed_expect_sets_its_gauge_and_a_match_writes_the_expect_labels() {
        let module = tcp_module(
            "    tcp:\n      query_response:\n        - expect: \"^SSH-2.0-([^ ]+)\"\n          \
             labels: [{name: ver, value: \"${1}\"}]\n",
        );
        let detail = SessionDetail {
            failed_due_to_regex: true,
            ..SessionDetail::default()
        };
        let failed = session_outcome(Some(Reason::CheckFailed), detail);
        assert_eq!(
            after_reasons(&failed, &module, Format::PrometheusText),
            flags(1, 0)
        );
        let detail = SessionDetail {
            failed_due_to_bytes: true,
            ..SessionDetail::default()
        };
        let failed = session_outcome(Some(Reason::CheckFailed), detail);
        assert_eq!(
            after_reasons(&failed, &module, Format::PrometheusText),
            flags(0, 1)
        );
        let detail = SessionDetail {
            expect_labels: vec![("ver".into(), "OpenSSH_9.6 \"p1\"\\".into())],
            ..SessionDetail::default()
        };
        let matched = session_outcome(None, detail);
        assert_eq!(
            after_reasons(&matched, &module, Format::OpenMetrics),
            flags(0, 0)
                + "# TYPE probe_expect info\n\
                   probe_expect_info{ver=\"OpenSSH_9.6 \\\"p1\\\"\\\\\"} 1\n\
                   # EOF\n"
        );
        assert!(
            render(&matched, &module, Format::PrometheusText)
                .contains("# TYPE probe_expect_info gauge\nprobe_expect_info{ver="),
        );
    }

    #[test]
    fn every_prober_tcp_module_writes_the_regex_and_bytes_gauges_and_only_those() {
        let plain = tcp_module("");
        let mut refused = Outcome::not_started(Failure::new(Reason::Refused, "x"), Duration::ZERO);
        assert_eq!(
            after_reasons(&refused, &plain, Format::PrometheusText),
            flags(0, 0)
        );
        refused.tcp_mut();
        assert_eq!(
            after_reasons(&refused, &plain, Format::PrometheusText),
            flags(0, 0)
        );
        for module in [Module::tcp_halfopen(), Module::tcp_connect(), exec_module()] {
            let text = render(&refused, &module, Format::OpenMetrics);
            assert!(!text.contains("probe_failed_due_to"), "{text}");
        }
    }
}
