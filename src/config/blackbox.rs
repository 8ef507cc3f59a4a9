//! `prober: tcp`: blackbox_exporter's TCP module, read as blackbox reads
//! it: the `tcp:` block's connection options, `tls`, `tls_config` and
//! `query_response`.

#![forbid(unsafe_code)]

use super::{LabelName, TcpOptions, TlsOptions};
use std::fmt;

/// A `prober: tcp` module's options: how it connects (`tcp`), whether
/// half-open, and what it does on the connection (TLS, a dialogue).
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TcpProbe {
    /// Address family, fallback, source address, attempts.
    pub tcp: TcpOptions,
    /// Whether a plain module (no TLS, no dialogue) probes half-open.
    pub half_open: bool,
    /// Whether the connection starts with a TLS handshake.
    pub tls: bool,
    /// The TLS options of `tls: true` and of a `starttls` step.
    pub tls_config: TlsOptions,
    /// The dialogue, step by step.
    pub query_response: Vec<QueryStep>,
}

impl TcpProbe {
    /// Options that probe with `tcp`, half-open, with no TLS and no dialogue.
    #[must_use]
    pub fn new(tcp: TcpOptions) -> Self {
        Self {
            tcp,
            half_open: true,
            ..Self::default()
        }
    }

    /// Whether a probe needs a connection the exporter keeps and talks
    /// on: TLS or a dialogue.
    #[must_use]
    pub fn is_session(&self) -> bool {
        self.tls || !self.query_response.is_empty()
    }
}

/// One `query_response` item: what to expect, what to send, whether to
/// start TLS.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueryStep {
    /// A regular expression a line read must match.
    pub expect: Option<Expect>,
    /// Bytes that must come next, exactly.
    pub expect_bytes: Option<Box<[u8]>>,
    /// The labels of `probe_expect_info` once `expect` matched.
    pub labels: Vec<ExpectLabel>,
    /// What to send, a newline added.
    pub send: Option<Box<str>>,
    /// Whether to start TLS on the connection here.
    pub starttls: bool,
}

/// An `expect` regular expression, with the text it was written as.
#[derive(Clone)]
pub struct Expect {
    regex: regex::bytes::Regex,
}

impl Expect {
    /// The compiled expression.
    #[must_use]
    pub fn regex(&self) -> &regex::bytes::Regex {
        &self.regex
    }

    /// The expression as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }
}

impl PartialEq for Expect {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expect({:?})", self.as_str())
    }
}

/// One label of `probe_expect_info`: its name, and its value with `$1`
/// or `${name}` for the groups of the step's `expect`.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub struct ExpectLabel {
    /// A Prometheus label name.
    pub name: LabelName,
    /// The value, before expansion.
    pub value: Box<str>,
}
