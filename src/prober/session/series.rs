//! The series of `prober: tcp` modules, on `/probe` and for scheduled
//! targets: blackbox_exporter's names and label names, so that its
//! dashboards and alerts work unchanged.
//!
//! On `/probe`, after `probe_failure_reason`:
//!
//! - `probe_failed_due_to_regex` and `probe_failed_due_to_bytes`, for every
//!   `prober: tcp` module, 0 unless a `query_response` step failed so;
//! - `probe_expect_info{...}`, with the labels of the step that has them,
//!   once its `expect` matched;
//! - the TLS series, after a successful handshake only (`tls: true` or a
//!   `starttls` step), so that an expiry alert never fires on a target
//!   that is down: `probe_ssl_earliest_cert_expiry`,
//!   `probe_ssl_last_chain_expiry_timestamp_seconds`,
//!   `probe_ssl_last_chain_info{fingerprint_sha256,subject,issuer,subjectalternative,serialnumber}`,
//!   `probe_tls_version_info{version}` and `probe_tls_cipher_info{cipher}`
//!   (which blackbox writes for `http` only).
//!
//! Scheduled targets of a session module (TLS or a dialogue) have the same
//! families on `/metrics`: the regex and bytes gauges of their last probe,
//! `probe_expect_info` of their last match, and the TLS series of their
//! last successful handshake, kept through failures and absent before the
//! first.

#![forbid(unsafe_code)]

use super::SessionDetail;
use crate::config::TcpProbe;
use crate::prober::{
    Kept, Number, Series, Slot, TargetFamily, TargetSample, TargetSeries, TcpKept, TlsFacts,
};

/// `probe_failed_due_to_regex`.
const REGEX: &str = "probe_failed_due_to_regex";
/// `probe_failed_due_to_bytes`.
const BYTES: &str = "probe_failed_due_to_bytes";
/// `probe_expect_info`, an info family.
const EXPECT: &str = "probe_expect";

/// Writes the series of a `prober: tcp` module that go in `slot`, from
/// `detail` (`None` when the probe did not run a session: a plain module,
/// or a probe that never started).
pub(crate) fn write_series(
    probe: &TcpProbe,
    detail: Option<&SessionDetail>,
    slot: Slot,
    out: &mut dyn Series,
) {
    // Which series a module writes depends on the module; `probe` says
    // nothing more than that it is a `prober: tcp` one.
    let _ = probe;
    if slot != Slot::Reasons {
        return;
    }
    let flag = |of: fn(&SessionDetail) -> bool| Number::Count(detail.is_some_and(of).into());
    out.gauge(
        REGEX,
        "1 when a query_response expect read to the end of the connection without a matching line, else 0.",
        flag(|detail| detail.failed_due_to_regex),
    );
    out.gauge(
        BYTES,
        "1 when a query_response expect_bytes read other bytes than it expects, else 0.",
        flag(|detail| detail.failed_due_to_bytes),
    );
    let Some(detail) = detail else { return };
    if !detail.expect_labels.is_empty() {
        out.info(
            EXPECT,
            "The labels of the query_response step that has them, expanded from what its expect matched; absent until it matched.",
            &label_pairs(&detail.expect_labels),
        );
    }
    if let Some(tls) = &detail.tls {
        for family in TlsFamily::ALL {
            family.show(tls, |sample| match sample {
                Sample::Time(unix) => {
                    out.gauge(family.name(), family.probe_help(), unix_time(unix))
                }
                Sample::Info(labels) => out.info(family.name(), family.probe_help(), labels),
            });
        }
    }
}

/// `labels` as the name and value pairs an info sample takes.
fn label_pairs(labels: &[(Box<str>, String)]) -> Vec<(&str, &str)> {
    labels
        .iter()
        .map(|(name, value)| (&**name, value.as_str()))
        .collect()
}

/// A Unix time in seconds as a sample's value: an integer, as blackbox's
/// are: exact in an `f64` (certificate dates are far below 2^53 s), which
/// the exposition writes without exponent or fraction.
fn unix_time(unix: i64) -> Number {
    Number::Measure(unix as f64)
}

/// One of the TLS families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TlsFamily {
    EarliestExpiry,
    LastChainExpiry,
    LastChain,
    Version,
    Cipher,
}

/// What a TLS family shows of a handshake: a time, or an info sample's labels.
enum Sample<'a> {
    Time(i64),
    Info(&'a [(&'a str, &'a str)]),
}

impl TlsFamily {
    /// Every TLS family, in the order they are written.
    const ALL: [Self; 5] = [
        Self::EarliestExpiry,
        Self::LastChainExpiry,
        Self::LastChain,
        Self::Version,
        Self::Cipher,
    ];

    /// The family's name (an info family's without `_info`).
    const fn name(self) -> &'static str {
        match self {
            Self::EarliestExpiry => "probe_ssl_earliest_cert_expiry",
            Self::LastChainExpiry => "probe_ssl_last_chain_expiry_timestamp_seconds",
            Self::LastChain => "probe_ssl_last_chain",
            Self::Version => "probe_tls_version",
            Self::Cipher => "probe_tls_cipher",
        }
    }

    /// Its HELP on `/probe`.
    const fn probe_help(self) -> &'static str {
        match self {
            Self::EarliestExpiry => {
                "Unix time in seconds when the first of the certificates the server sent expires; absent without a successful TLS handshake."
            }
            Self::LastChainExpiry => {
                "Unix time in seconds when the verified chain first expires (its earliest notAfter, root included); -62135596800 when none was verified (insecure_skip_verify); absent without a successful TLS handshake."
            }
            Self::LastChain => {
                "The server's certificate as Go prints it: SHA-256 fingerprint, subject, issuer, DNS names, serial number; absent without a successful TLS handshake."
            }
            Self::Version => {
                "The TLS version of the handshake; absent without a successful TLS handshake."
            }
            Self::Cipher => {
                "The cipher suite of the TLS handshake, by its Go name; absent without a successful TLS handshake."
            }
        }
    }

    /// Its HELP on `/metrics`, for scheduled targets.
    const fn target_help(self) -> &'static str {
        match self {
            Self::EarliestExpiry => {
                "Unix time in seconds when the first of the certificates the server sent expires, at the last successful TLS handshake of scheduled probes; absent before the first."
            }
            Self::LastChainExpiry => {
                "Unix time in seconds when the verified chain first expires (its earliest notAfter, root included), at the last successful TLS handshake of scheduled probes; -62135596800 when none was verified; absent before the first."
            }
            Self::LastChain => {
                "The server's certificate as Go prints it, at the last successful TLS handshake of scheduled probes; absent before the first."
            }
            Self::Version => {
                "The TLS version of the last successful TLS handshake of scheduled probes; absent before the first."
            }
            Self::Cipher => {
                "The cipher suite, by its Go name, of the last successful TLS handshake of scheduled probes; absent before the first."
            }
        }
    }

    /// Gives `out` this family's sample of the handshake `tls`.
    fn show(self, tls: &TlsFacts, out: impl FnOnce(Sample<'_>)) {
        match self {
            Self::EarliestExpiry => out(Sample::Time(tls.earliest_expiry)),
            Self::LastChainExpiry => out(Sample::Time(tls.last_chain_expiry)),
            Self::LastChain => {
                let leaf = &tls.leaf;
                out(Sample::Info(&[
                    ("fingerprint_sha256", &leaf.fingerprint_sha256),
                    ("subject", &leaf.subject),
                    ("issuer", &leaf.issuer),
                    ("subjectalternative", &leaf.subjectalternative),
                    ("serialnumber", &leaf.serialnumber),
                ]));
            }
            Self::Version => out(Sample::Info(&[("version", tls.version)])),
            Self::Cipher => out(Sample::Info(&[("cipher", tls.cipher)])),
        }
    }

    /// Its [`TargetFamily`] on `/metrics`.
    const fn target_family(self) -> TargetFamily {
        match self {
            Self::EarliestExpiry | Self::LastChainExpiry => TargetFamily::Gauge {
                name: self.name(),
                help: self.target_help(),
            },
            Self::LastChain | Self::Version | Self::Cipher => TargetFamily::Info {
                name: self.name(),
                help: self.target_help(),
            },
        }
    }

    /// Writes a scheduled target's sample of this family from what it
    /// kept: nothing for a target of another prober, or before its first
    /// successful handshake.
    fn write_kept(self, kept: &Kept, out: &mut dyn TargetSample) {
        let Some(tls) = SessionKept::of(kept).and_then(|kept| kept.tls.as_deref()) else {
            return;
        };
        self.show(tls, |sample| match sample {
            Sample::Time(unix) => out.number(unix_time(unix)),
            Sample::Info(labels) => out.info(labels),
        });
    }
}

/// What a scheduled target of a session module keeps between probes.
/// The TLS facts and labels are boxed, so that the targets of other
/// modules, which share the [`Kept`] type, do not pay for them.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct SessionKept {
    /// What its connection's handshakes leave, as for a TCP module.
    pub(crate) tcp: TcpKept,
    /// Whether the last probe failed an `expect` (see
    /// [`SessionDetail::failed_due_to_regex`]).
    failed_due_to_regex: bool,
    /// Whether the last probe failed an `expect_bytes`.
    failed_due_to_bytes: bool,
    /// The `probe_expect_info` labels of the last probe whose step with
    /// labels matched; empty before any.
    expect_labels: Box<[(Box<str>, String)]>,
    /// The last successful TLS handshake, kept through failures; `None`
    /// before the first.
    tls: Option<Box<TlsFacts>>,
}

impl SessionKept {
    /// Takes in the detail of one probe, none if it never started.
    pub(crate) fn record(&mut self, detail: Option<&SessionDetail>) {
        self.tcp.record(detail.map(|detail| &detail.tcp));
        self.failed_due_to_regex = detail.is_some_and(|detail| detail.failed_due_to_regex);
        self.failed_due_to_bytes = detail.is_some_and(|detail| detail.failed_due_to_bytes);
        let Some(detail) = detail else { return };
        if !detail.expect_labels.is_empty() {
            self.expect_labels = detail.expect_labels.clone().into_boxed_slice();
        }
        if let Some(tls) = &detail.tls {
            self.tls = Some(Box::new(tls.clone()));
        }
    }

    fn of(kept: &Kept) -> Option<&Self> {
        match kept {
            Kept::Session(kept) => Some(kept),
            _ => None,
        }
    }
}

/// `probe_failed_due_to_regex` of scheduled targets, from before their
/// first probe on.
pub(in crate::prober) const REGEX_SERIES: TargetSeries = TargetSeries {
    family: TargetFamily::Gauge {
        name: REGEX,
        help: "1 when the last scheduled probe's query_response expect read to the end of the connection without a matching line, else 0; prober tcp modules with TLS or query_response only.",
    },
    sample: |kept, out| {
        if let Some(kept) = SessionKept::of(kept) {
            out.number(Number::Count(kept.failed_due_to_regex.into()));
        }
    },
};

/// `probe_failed_due_to_bytes` of scheduled targets, from before their
/// first probe on.
pub(in crate::prober) const BYTES_SERIES: TargetSeries = TargetSeries {
    family: TargetFamily::Gauge {
        name: BYTES,
        help: "1 when the last scheduled probe's query_response expect_bytes read other bytes than it expects, else 0; prober tcp modules with TLS or query_response only.",
    },
    sample: |kept, out| {
        if let Some(kept) = SessionKept::of(kept) {
            out.number(Number::Count(kept.failed_due_to_bytes.into()));
        }
    },
};

/// `probe_expect_info` of scheduled targets: the last match's labels.
pub(in crate::prober) const EXPECT_SERIES: TargetSeries = TargetSeries {
    family: TargetFamily::Info {
        name: EXPECT,
        help: "The labels of the query_response step that has them, expanded from what its expect matched in the last scheduled probe that got that far; absent before any.",
    },
    sample: |kept, out| {
        if let Some(kept) = SessionKept::of(kept).filter(|kept| !kept.expect_labels.is_empty()) {
            out.info(&label_pairs(&kept.expect_labels));
        }
    },
};

/// `probe_ssl_earliest_cert_expiry` of scheduled targets.
pub(in crate::prober) const EARLIEST_EXPIRY_SERIES: TargetSeries = TargetSeries {
    family: TlsFamily::EarliestExpiry.target_family(),
    sample: |kept, out| TlsFamily::EarliestExpiry.write_kept(kept, out),
};

/// `probe_ssl_last_chain_expiry_timestamp_seconds` of scheduled targets.
pub(in crate::prober) const LAST_CHAIN_EXPIRY_SERIES: TargetSeries = TargetSeries {
    family: TlsFamily::LastChainExpiry.target_family(),
    sample: |kept, out| TlsFamily::LastChainExpiry.write_kept(kept, out),
};

/// `probe_ssl_last_chain_info` of scheduled targets.
pub(in crate::prober) const LAST_CHAIN_SERIES: TargetSeries = TargetSeries {
    family: TlsFamily::LastChain.target_family(),
    sample: |kept, out| TlsFamily::LastChain.write_kept(kept, out),
};

/// `probe_tls_version_info` of scheduled targets.
pub(in crate::prober) const TLS_VERSION_SERIES: TargetSeries = TargetSeries {
    family: TlsFamily::Version.target_family(),
    sample: |kept, out| TlsFamily::Version.write_kept(kept, out),
};

/// `probe_tls_cipher_info` of scheduled targets.
pub(in crate::prober) const TLS_CIPHER_SERIES: TargetSeries = TargetSeries {
    family: TlsFamily::Cipher.target_family(),
    sample: |kept, out| TlsFamily::Cipher.write_kept(kept, out),
};
