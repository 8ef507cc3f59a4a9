//! `prober: tcp`: blackbox_exporter's TCP module, read as blackbox reads
//! it: the `tcp:` block's connection options, `tls`, `tls_config` and
//! `query_response`.

#![forbid(unsafe_code)]

use super::{
    Engine, ExpectPort, IpAddresses, IpAddressesSuccess, IpProtocol, LabelName, Prober, ProberKind,
    PromDuration, TcpOptions, TlsOptions, TlsVersion,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::IpAddr;

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
    /// What to send, a newline added: the text as written, or the bytes
    /// of a `!!binary` scalar.
    pub send: Option<Box<[u8]>>,
    /// Whether to start TLS on the connection here.
    pub starttls: bool,
}

mod go_regex;

/// An `expect` regular expression, with the text it was written as.
#[derive(Clone)]
pub struct Expect {
    regex: regex::bytes::Regex,
    /// As written: `regex` is compiled from it with Go's ASCII `\d`, `\w`,
    /// `\s`, `\b` spelled out.
    text: Box<str>,
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
        &self.text
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

/// The most `query_response` items of one module: blackbox's longest
/// example (`smtp_starttls`) has 9; a hundred is a dialogue no check needs.
pub(crate) const MAX_QUERY_STEPS: usize = 100;

/// The most bytes one `expect` may compile to, so that a generated
/// expression cannot take the exporter's memory: far above any banner
/// pattern.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The label names the TLS series of `prober: tcp` set, which a scheduled
/// target of such a module may not set itself.
pub(crate) const TLS_LABELS: [&str; 7] = [
    "version",
    "cipher",
    "subject",
    "issuer",
    "subjectalternative",
    "fingerprint_sha256",
    "serialnumber",
];

impl TcpProbe {
    /// Whether a probe may shake hands with TLS: `tls: true` or a
    /// `starttls` step; its `tls_config` is then used.
    #[must_use]
    pub fn shakes_hands(&self) -> bool {
        self.tls || self.query_response.iter().any(|step| step.starttls)
    }

    /// The label names this module's series set beside the target's own:
    /// those of the TLS series when it shakes hands, and those its
    /// `labels` give `probe_expect_info`.
    pub(crate) fn series_label_names(&self) -> Vec<&str> {
        let mut names = Vec::new();
        if self.shakes_hands() {
            names.extend(TLS_LABELS);
        }
        for step in &self.query_response {
            names.extend(step.labels.iter().map(|label| label.name.0.as_str()));
        }
        names
    }
}

impl Expect {
    /// Compiles `text` as blackbox compiles an `expect`: unanchored, on
    /// bytes, with Go's ASCII-only perl classes, within [`REGEX_SIZE_LIMIT`].
    fn compile(text: &str) -> Result<Self, String> {
        let ascii = go_regex::ascii_perl_classes(text);
        regex::bytes::RegexBuilder::new(ascii.as_deref().unwrap_or(text))
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(|regex| Self {
                regex,
                text: text.into(),
            })
            .map_err(|error| {
                // The parser's report is several lines with a caret; its
                // last line says what is wrong.
                let why = match &error {
                    regex::Error::Syntax(report) => report
                        .lines()
                        .rev()
                        .find_map(|line| line.trim().strip_prefix("error: "))
                        .unwrap_or("it does not parse")
                        .to_owned(),
                    regex::Error::CompiledTooBig(_) => format!(
                        "it compiles to more than {} KiB: simplify it",
                        REGEX_SIZE_LIMIT / 1024
                    ),
                    _ => error.to_string(),
                };
                format!("{text:?} is not a regular expression: {why}")
            })
    }
}

impl<'de> Deserialize<'de> for Expect {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::compile(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Expect {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A `query_response` item as written.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct StepFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expect: Option<Expect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expect_bytes: Option<YamlBytes>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    labels: Vec<LabelFields>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    send: Option<YamlBytes>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    starttls: bool,
}

/// `send` and `expect_bytes`, which blackbox_exporter reads into Go
/// strings, so into any bytes: a string's UTF-8, or the bytes a `!!binary`
/// scalar spells in base64 (yaml.v3 decodes it so; the config reader
/// leaves `!!binary` undecoded in strings, for this).
struct YamlBytes(Vec<u8>);

impl From<&[u8]> for YamlBytes {
    fn from(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }
}

impl<'de> Deserialize<'de> for YamlBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        let serde_saphyr::Tagged(text, tag) =
            serde_saphyr::Tagged::<String>::deserialize(deserializer)?;
        if !matches!(
            tag.as_deref(),
            Some("!!binary" | "tag:yaml.org,2002:binary")
        ) {
            return Ok(Self(text.into_bytes()));
        }
        let base64: String = text.split_whitespace().collect();
        base64::engine::general_purpose::STANDARD
            .decode(base64)
            .map(Self)
            .map_err(|error| {
                serde::de::Error::custom(format!("!!binary is not base64 here: {error}"))
            })
    }
}

/// Text where the bytes are UTF-8 (as written, in the cases that matter),
/// else `!!binary`-free lossy text: `/config` shows it, nothing reads it back.
impl Serialize for YamlBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&String::from_utf8_lossy(&self.0))
    }
}

/// An item of `labels`.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct LabelFields {
    name: LabelName,
    value: String,
}

impl<'de> Deserialize<'de> for QueryStep {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = StepFields::deserialize(deserializer)?;
        if fields.expect.is_some() && fields.expect_bytes.is_some() {
            return Err(serde::de::Error::custom(
                "expect and expect_bytes are mutually exclusive, as in blackbox_exporter: \
                 split them over two items",
            ));
        }
        if !fields.labels.is_empty() && fields.expect.is_none() {
            return Err(serde::de::Error::custom(
                "labels take their values from the item's expect: add an expect to this item",
            ));
        }
        Ok(Self {
            expect: fields.expect,
            expect_bytes: fields.expect_bytes.map(|bytes| bytes.0.into()),
            labels: fields
                .labels
                .into_iter()
                .map(|label| ExpectLabel {
                    name: label.name,
                    value: label.value.into(),
                })
                .collect(),
            send: fields.send.map(|bytes| bytes.0.into()),
            starttls: fields.starttls,
        })
    }
}

impl Serialize for QueryStep {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StepFields {
            expect: self.expect.clone(),
            expect_bytes: self.expect_bytes.as_deref().map(YamlBytes::from),
            labels: self
                .labels
                .iter()
                .map(|label| LabelFields {
                    name: label.name.clone(),
                    value: label.value.to_string(),
                })
                .collect(),
            send: self.send.as_deref().map(YamlBytes::from),
            starttls: self.starttls,
        }
        .serialize(serializer)
    }
}

/// Reads `query_response`, at most [`MAX_QUERY_STEPS`] items.
pub(super) fn query_steps<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<QueryStep>>, D::Error> {
    super::bounded_list(
        deserializer,
        "a list of query_response items",
        MAX_QUERY_STEPS,
        || format!("query_response may hold at most {MAX_QUERY_STEPS} items"),
        |_| Ok(()),
    )
    .map(Some)
}

/// Checks how a `prober: tcp` module's steps fit together: one item with
/// `labels` (blackbox would register `probe_expect_info` twice), each of
/// its names once (a series with a label twice fails the whole scrape;
/// blackbox panics), one `starttls`, and none with `tls: true` (the
/// connection is TLS already).
pub(super) fn check_steps(tls: bool, steps: &[QueryStep]) -> Result<(), String> {
    let labelled = steps.iter().filter(|step| !step.labels.is_empty()).count();
    if labelled > 1 {
        return Err(format!(
            "{labelled} query_response items have labels, and probe_expect_info can take them \
             from one only: keep labels on one item"
        ));
    }
    for step in steps {
        for (index, label) in step.labels.iter().enumerate() {
            if step.labels[..index]
                .iter()
                .any(|earlier| earlier.name == label.name)
            {
                return Err(format!(
                    "label name {:?} is given twice in query_response's labels \
                     (probe_expect_info takes each name once): rename or remove one",
                    label.name.0
                ));
            }
        }
    }
    let starttls = steps.iter().filter(|step| step.starttls).count();
    if starttls > 1 {
        return Err("query_response starts TLS twice: keep one starttls: true".to_owned());
    }
    if starttls == 1 && tls {
        return Err(
            "starttls: true upgrades a plain connection, and tls: true makes it TLS from the \
             start: keep one of them"
                .to_owned(),
        );
    }
    Ok(())
}

/// A module's `tcp:` block as written: the options of every prober that
/// connects, ours and blackbox_exporter's, each checked where it is
/// written; [`TcpBlock::prober`] then takes what the module's prober uses
/// and refuses the rest.
#[derive(Serialize)]
#[serde(transparent)]
pub(super) struct TcpBlock(TcpFields);

#[derive(Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct TcpFields {
    #[serde(
        default,
        deserialize_with = "ip_protocol_or_empty",
        skip_serializing_if = "Option::is_none"
    )]
    preferred_ip_protocol: Option<IpProtocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip_protocol_fallback: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source_ip_address: Option<IpAddr>,
    #[serde(
        default,
        deserialize_with = "super::route::some_interface_name",
        skip_serializing_if = "Option::is_none"
    )]
    source_interface: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mark: Option<u32>,
    #[serde(
        default,
        deserialize_with = "super::route::some_dscp",
        skip_serializing_if = "Option::is_none"
    )]
    dscp: Option<u8>,
    #[serde(
        default,
        deserialize_with = "some_attempts",
        skip_serializing_if = "Option::is_none"
    )]
    attempts: Option<u32>,
    #[serde(
        default,
        deserialize_with = "some_attempt_interval",
        skip_serializing_if = "Option::is_none"
    )]
    attempt_interval: Option<PromDuration>,
    #[serde(
        default,
        deserialize_with = "super::attempt_timeout_in_range",
        skip_serializing_if = "Option::is_none"
    )]
    attempt_timeout: Option<PromDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stop_on_success: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expect_port: Option<ExpectPort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trace_on_timeout: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip_addresses: Option<IpAddresses>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip_addresses_success: Option<IpAddressesSuccess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    engine: Option<Engine>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    half_open: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls_config: Option<TlsOptions>,
    #[serde(
        default,
        deserialize_with = "query_steps",
        skip_serializing_if = "Option::is_none"
    )]
    query_response: Option<Vec<QueryStep>>,
}

/// `preferred_ip_protocol`, where `""` means the prober's default, as in
/// blackbox_exporter (`chooseProtocol` reads `""` as `ip6`, its default).
fn ip_protocol_or_empty<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<IpProtocol>, D::Error> {
    // Read first, then judged: an error about the word is located at it.
    let word = String::deserialize(deserializer)?;
    if word.is_empty() {
        return Ok(None);
    }
    IpProtocol::from_word(&word)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn some_attempts<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    super::attempts_in_range(deserializer).map(Some)
}

fn some_attempt_interval<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<PromDuration>, D::Error> {
    super::attempt_interval_in_range(deserializer).map(Some)
}

impl<'de> Deserialize<'de> for TcpBlock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = TcpFields::deserialize(deserializer)?;
        let session = fields.tls == Some(true)
            || fields
                .query_response
                .as_ref()
                .is_some_and(|steps| !steps.is_empty());
        if session && fields.half_open == Some(true) {
            return Err(serde::de::Error::custom(
                "half_open: true sends no more than a SYN, and tls and query_response need a \
                 connection: remove half_open",
            ));
        }
        if session && let Some(expect) = fields.expect_port.filter(|e| *e != ExpectPort::Open) {
            return Err(serde::de::Error::custom(format!(
                "expect_port: {} sends no more than a SYN, and tls and query_response need a \
                 connection: remove expect_port, or tls and query_response",
                expect.as_str()
            )));
        }
        if session && fields.ip_addresses == Some(IpAddresses::All) {
            return Err(serde::de::Error::custom(
                "ip_addresses: all probes every address with a SYN at once, and tls and \
                 query_response hold one connection to one address: remove ip_addresses, or tls \
                 and query_response",
            ));
        }
        if fields.engine == Some(Engine::Raw) {
            check_raw_engine(&fields, session).map_err(serde::de::Error::custom)?;
        }
        if fields.ip_addresses == Some(IpAddresses::All) && fields.trace_on_timeout == Some(true) {
            return Err(serde::de::Error::custom(format!(
                "trace_on_timeout traces one address, and ip_addresses: all probes up to {} at \
                 once, each of which would send a trace of its own: remove one of them",
                super::MAX_ADDRESSES
            )));
        }
        if let Some(steps) = &fields.query_response {
            check_steps(fields.tls == Some(true), steps).map_err(serde::de::Error::custom)?;
        }
        Ok(Self(fields))
    }
}

/// Refuses what `engine: raw` cannot do: a connection (`tls`,
/// `query_response`, `half_open: false`), and a module's own interface or
/// mark, which the engine's one raw socket for every module cannot take
/// per packet.
fn check_raw_engine(fields: &TcpFields, session: bool) -> Result<(), String> {
    let connection = if session {
        Some("tls and query_response need a connection")
    } else if fields.half_open == Some(false) {
        Some("half_open: false completes the handshake")
    } else {
        None
    };
    if let Some(why) = connection {
        return Err(format!(
            "engine: raw sends no more than a SYN, and {why}: remove engine: raw, or use engine: socket"
        ));
    }
    let per_module = [
        ("source_interface", fields.source_interface.is_some()),
        ("mark", fields.mark.is_some()),
    ]
    .into_iter()
    .find_map(|(name, set)| set.then_some(name));
    match per_module {
        Some(name) => Err(format!(
            "engine: raw sends every module's SYNs from one raw socket, which cannot take a \
             module's own {name}: remove {name}, or use engine: socket"
        )),
        None => Ok(()),
    }
}

impl IpProtocol {
    /// The family tried first when a module does not say: IPv4 for our
    /// probers, IPv6 for `prober: tcp`, as blackbox_exporter has it.
    #[must_use]
    pub(crate) fn default_for(kind: ProberKind) -> Self {
        match kind {
            ProberKind::Tcp => Self::Ip6,
            _ => Self::Ip4,
        }
    }
}

impl TcpBlock {
    /// The connection options of a module of `kind`, its defaults where
    /// the block is silent.
    fn options(&self, kind: ProberKind) -> TcpOptions {
        let fields = &self.0;
        let defaults = TcpOptions::default();
        TcpOptions {
            preferred_ip_protocol: fields
                .preferred_ip_protocol
                .unwrap_or(IpProtocol::default_for(kind)),
            ip_protocol_fallback: fields
                .ip_protocol_fallback
                .unwrap_or(defaults.ip_protocol_fallback),
            source_ip_address: fields.source_ip_address,
            source_interface: fields.source_interface.clone(),
            mark: fields.mark,
            dscp: fields.dscp,
            attempts: fields.attempts.unwrap_or(defaults.attempts),
            attempt_interval: fields.attempt_interval.unwrap_or(defaults.attempt_interval),
            attempt_timeout: fields.attempt_timeout,
            stop_on_success: fields.stop_on_success.unwrap_or(defaults.stop_on_success),
            expect_port: fields.expect_port.unwrap_or(defaults.expect_port),
            trace_on_timeout: fields.trace_on_timeout.unwrap_or(defaults.trace_on_timeout),
            ip_addresses: fields.ip_addresses.unwrap_or(defaults.ip_addresses),
            ip_addresses_success: fields
                .ip_addresses_success
                .unwrap_or(defaults.ip_addresses_success),
            engine: fields.engine.unwrap_or(defaults.engine),
        }
    }

    /// The field of `prober: tcp` alone that the block sets, if any.
    fn tcp_only_field(&self) -> Option<&'static str> {
        let fields = &self.0;
        [
            ("half_open", fields.half_open.is_some()),
            ("tls", fields.tls.is_some()),
            ("tls_config", fields.tls_config.is_some()),
            ("query_response", fields.query_response.is_some()),
        ]
        .into_iter()
        .find_map(|(name, set)| set.then_some(name))
    }

    /// Whether the block asks nothing of an `exec` module, which opens no
    /// connection: our defaults at most.
    pub(super) fn is_default_for_exec(&self) -> bool {
        self.tcp_only_field().is_none() && self.options(ProberKind::Exec) == TcpOptions::default()
    }

    /// The prober of `kind` (one that connects) with `block`'s options.
    pub(super) fn prober(block: Option<Self>, kind: ProberKind) -> Result<Prober, String> {
        let block = block.unwrap_or(Self(TcpFields::default()));
        let options = block.options(kind);
        if kind != ProberKind::Tcp
            && let Some(field) = block.tcp_only_field()
        {
            return Err(format!(
                "tcp.{field} applies to prober tcp only, and this module's prober is {}: \
                 set prober: tcp or remove {field}",
                kind.as_str()
            ));
        }
        if kind == ProberKind::TcpConnect
            && options.engine == Engine::Raw
            && options.expect_port == ExpectPort::Open
        {
            return Err(
                "engine: raw sends no more than a SYN, and prober tcp_connect completes the \
                 handshake: use prober tcp_halfopen, or engine: socket"
                    .to_owned(),
            );
        }
        Ok(match kind {
            ProberKind::TcpConnect => Prober::TcpConnect(options),
            ProberKind::Tcp => {
                let TcpFields {
                    half_open,
                    tls,
                    tls_config,
                    query_response,
                    ..
                } = block.0;
                let mut probe = TcpProbe {
                    tcp: options,
                    half_open: false,
                    tls: tls.unwrap_or(false),
                    tls_config: tls_config.unwrap_or_default(),
                    query_response: query_response.unwrap_or_default(),
                };
                // Plain, it runs half-open unless told not to.
                probe.half_open = !probe.is_session() && half_open.unwrap_or(true);
                Prober::Tcp(Box::new(probe))
            }
            _ => Prober::TcpHalfopen(options),
        })
    }
}

impl From<Prober> for TcpBlock {
    /// What `/config` shows of a prober that connects: every option, so
    /// that what runs is what is read.
    fn from(prober: Prober) -> Self {
        let (options, probe) = match prober {
            Prober::TcpHalfopen(options) | Prober::TcpConnect(options) => (options, None),
            Prober::Tcp(probe) => {
                let probe = *probe;
                (probe.tcp.clone(), Some(probe))
            }
            Prober::Exec(_) => (TcpOptions::default(), None),
        };
        let mut fields = TcpFields {
            preferred_ip_protocol: Some(options.preferred_ip_protocol),
            ip_protocol_fallback: Some(options.ip_protocol_fallback),
            source_ip_address: options.source_ip_address,
            source_interface: options.source_interface,
            mark: options.mark,
            dscp: options.dscp,
            attempts: Some(options.attempts),
            attempt_interval: Some(options.attempt_interval),
            attempt_timeout: options.attempt_timeout,
            stop_on_success: Some(options.stop_on_success),
            expect_port: Some(options.expect_port),
            trace_on_timeout: Some(options.trace_on_timeout),
            ip_addresses: Some(options.ip_addresses),
            ip_addresses_success: Some(options.ip_addresses_success),
            engine: Some(options.engine),
            ..TcpFields::default()
        };
        if let Some(probe) = probe {
            let session = probe.is_session();
            fields.half_open = (!session).then_some(probe.half_open);
            fields.tls = probe.tls.then_some(true);
            fields.tls_config =
                (probe.tls_config != TlsOptions::default()).then_some(probe.tls_config);
            fields.query_response =
                (!probe.query_response.is_empty()).then_some(probe.query_response);
        }
        Self(fields)
    }
}

impl TcpProbe {
    /// What this module asks that synack_exporter cannot do, completing
    /// "module NAME …"; `None` when it can run it.
    pub(super) fn unsupported_here(&self) -> Option<String> {
        let max = self.tls_config.max_version?;
        (max < TlsVersion::Tls12).then(|| {
            format!(
                "asks for TLS below 1.2 (tls_config.max_version {}), which synack_exporter does \
                 not speak: rustls has only TLS 1.2 and 1.3",
                max.as_str()
            )
        })
    }
}

impl TcpProbe {
    /// What each load notes about this module without leaving it out,
    /// completing "module NAME …": a `tls_config.min_version` below TLS
    /// 1.2, which rustls does not speak, so 1.2 is where it starts.
    pub(super) fn min_version_note(&self) -> Option<String> {
        let min = self.tls_config.min_version?;
        (min < TlsVersion::Tls12).then(|| {
            format!(
                "allows TLS from {} up (tls_config.min_version), as blackbox_exporter would; \
                 synack_exporter speaks TLS 1.2 and 1.3 only (rustls), so TLS 1.2 is the floor \
                 here",
                min.as_str()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, IpProtocol, Prober, TlsVersion};

    /// blackbox_exporter's example modules (v0.28 `example.yml` and the
    /// usual `ssh_banner`), with one of its http modules among them.
    const BLACKBOX: &str = "modules:
  http_2xx:
    prober: http
    http:
      valid_status_codes: []
  tcp_connect:
    prober: tcp
  connect_full:
    prober: tcp
    tcp: {half_open: false}
  ssh_banner:
    prober: tcp
    tcp:
      query_response:
        - expect: \"^SSH-2.0-\"
        - send: \"SSH-2.0-blackbox-ssh-check\"
  smtp_starttls:
    prober: tcp
    timeout: 5s
    tcp:
      query_response:
        - expect: \"^220 ([^ ]+) ESMTP (.+)$\"
        - send: \"EHLO prober\\r\"
        - expect: \"^250-STARTTLS\"
        - send: \"STARTTLS\\r\"
        - expect: \"^220\"
        - starttls: true
        - send: \"EHLO prober\\r\"
        - expect: \"^250-AUTH\"
        - send: \"QUIT\\r\"
  tls_connect:
    prober: tcp
    tcp:
      tls: true
      tls_config:
        insecure_skip_verify: false
        server_name: example.com
        min_version: TLS12
        max_version: TLS13
";

    #[test]
    fn blackbox_tcp_modules_are_read_with_blackbox_defaults() {
        let config = Config::parse("blackbox.yml", BLACKBOX).unwrap();
        let plain = &config.modules["tcp_connect"];
        let Prober::Tcp(probe) = plain.prober() else {
            panic!("{plain:?}")
        };
        assert!(probe.half_open && !probe.is_session(), "{probe:?}");
        assert_eq!(probe.tcp.preferred_ip_protocol, IpProtocol::Ip6);
        assert!(probe.tcp.ip_protocol_fallback);
        assert!(plain.timeout_from_scrape());
        let full = config.modules["connect_full"].prober().tcp_probe().unwrap();
        assert!(!full.half_open, "half_open: false is a full connect");
        let ssh = config.modules["ssh_banner"].prober().tcp_probe().unwrap();
        assert!(ssh.is_session() && !ssh.half_open);
        assert_eq!(
            ssh.query_response[0].expect.as_ref().unwrap().as_str(),
            "^SSH-2.0-"
        );
        assert_eq!(
            ssh.query_response[1].send.as_deref(),
            Some(&b"SSH-2.0-blackbox-ssh-check"[..])
        );
        let smtp = &config.modules["smtp_starttls"];
        assert_eq!(smtp.timeout(), std::time::Duration::from_secs(5));
        assert!(!smtp.timeout_from_scrape());
        let steps = &smtp.prober().tcp_probe().unwrap().query_response;
        assert_eq!(steps.len(), 9);
        assert_eq!(steps[1].send.as_deref(), Some(&b"EHLO prober\r"[..]));
        assert!(steps[5].starttls);
        let tls = config.modules["tls_connect"].prober().tcp_probe().unwrap();
        assert!(tls.tls);
        assert_eq!(tls.tls_config.server_name.as_deref(), Some("example.com"));
        assert_eq!(tls.tls_config.max_version, Some(TlsVersion::Tls13));
        // Our own modules keep our defaults.
        let ours = config.modules["tcp_halfopen"].tcp().unwrap();
        assert_eq!(ours.preferred_ip_protocol, IpProtocol::Ip4);
        // The http module is set aside, located, and the rest loads.
        assert!(!config.modules.contains_key("http_2xx"));
        let warnings = config.warnings("blackbox.yml");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        warnings[0].assert_says(
            "blackbox.yml:3:13: field `modules.http_2xx.prober`",
            &["uses prober http, which synack_exporter does not support"],
        );
        // What /config shows reads back as the same modules.
        let again = Config::parse("again", &config.to_yaml()).unwrap();
        assert_eq!(again.modules, config.modules);
    }

    /// A module `m` of `prober: tcp` with `tcp:` lines `block`.
    fn tcp_module(block: &str) -> String {
        format!("modules:\n  m:\n    prober: tcp\n    timeout: 5s\n    tcp:\n{block}")
    }

    fn rejected(yaml: &str, field: &str, needle: &str) {
        let error = Config::parse("b.yml", yaml).expect_err(yaml);
        assert!(error.position.is_some(), "{error}");
        assert_eq!(error.field.as_deref(), Some(field), "{error}");
        assert!(error.message.contains(needle), "{needle:?}: {error}");
    }

    #[test]
    fn mistakes_in_a_tcp_module_are_located_errors() {
        rejected(
            &tcp_module("      query_response:\n        - expect: \"^(220\"\n"),
            "modules.m.tcp.query_response[0].expect",
            "is not a regular expression: unclosed group",
        );
        rejected(
            &tcp_module("      query_response:\n        - {expect: a, expect_bytes: b}\n"),
            "modules.m.tcp.query_response[0]",
            "expect and expect_bytes are mutually exclusive",
        );
        rejected(
            &tcp_module("      query_response:\n        - {send: a, sned: b}\n"),
            "modules.m.tcp.query_response[0].sned",
            "unknown field",
        );
        rejected(
            &tcp_module("      tls: true\n      tls_config: {ca_ref: corp-ca}\n"),
            "modules.m.tcp.tls_config.ca_ref",
            "secret manager",
        );
        rejected(
            &tcp_module(
                "      tls: true\n      tls_config: {min_version: TLS13, max_version: TLS12}\n",
            ),
            "modules.m.tcp.tls_config",
            "max_version TLS12 is below min_version TLS13",
        );
        rejected(
            &tcp_module("      tls: true\n      tls_config: {ca_flie: /x}\n"),
            "modules.m.tcp.tls_config.ca_flie",
            "unknown field",
        );
        rejected(
            &tcp_module("      tls: true\n      half_open: true\n"),
            "modules.m.tcp",
            "half_open: true",
        );
        rejected(
            "modules:\n  m:\n    prober: tcp_connect\n    tcp: {tls: true}\n",
            "modules.m",
            "tcp.tls applies to prober tcp only",
        );
    }

    /// blackbox_exporter reads `send` and `expect_bytes` into Go strings,
    /// which hold any bytes: its example.yml's `postgresql` module sends
    /// PostgreSQL's SSLRequest as `!!binary`. Plain text is its bytes.
    #[test]
    fn send_and_expect_bytes_take_binary_scalars() {
        let yaml = tcp_module(
            "      query_response:\n      - send: !!binary AAAACATSFi8= # SSLRequest\n      \
             - expect_bytes: S\n      - expect_bytes: !!binary 0vA=\n      - starttls: true\n",
        );
        let config = Config::parse("b.yml", &yaml).expect(&yaml);
        let steps = &config.modules["m"]
            .prober()
            .tcp_probe()
            .unwrap()
            .query_response;
        assert_eq!(
            steps[0].send.as_deref(),
            Some(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f][..])
        );
        assert_eq!(steps[1].expect_bytes.as_deref(), Some(&b"S"[..]));
        assert_eq!(steps[2].expect_bytes.as_deref(), Some(&[0xd2, 0xf0][..]));
        rejected(
            &tcp_module("      query_response:\n      - send: !!binary \"%%\"\n"),
            "modules.m.tcp.query_response[0].send",
            "base64",
        );
    }

    /// rustls has no TLS below 1.2, so a `min_version` under it asks for
    /// nothing more here: the module loads, and each load notes, where it
    /// is written, that TLS 1.2 is the floor.
    #[test]
    fn min_version_below_tls12_loads_with_a_located_note() {
        for version in ["TLS10", "TLS11"] {
            let yaml = tcp_module(&format!(
                "      tls: true\n      tls_config:\n        min_version: {version}\n"
            ));
            let config = Config::parse("b.yml", &yaml).expect(&yaml);
            assert!(config.modules.contains_key("m"));
            let warnings = config.warnings("b.yml");
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            warnings[0].assert_says(
                "b.yml:8:22: field `modules.m.tcp.tls_config.min_version`",
                &[version, "TLS 1.2 is the floor here"],
            );
        }
        let tls12 = tcp_module("      tls: true\n      tls_config: {min_version: TLS12}\n");
        assert!(
            Config::parse("b.yml", &tls12)
                .unwrap()
                .warnings("b.yml")
                .is_empty()
        );
    }

    #[test]
    fn scheduled_targets_keep_clear_of_a_modules_series_labels_and_need_a_timeout() {
        let tls = "modules:\n  tls:\n    prober: tcp\n    timeout: 5s\n    tcp: {tls: true}\n";
        let block = |module: &str, labels: &str| {
            format!(
                "targets:\n  - module: {module}\n    targets: [\"127.0.0.1:443\"]\n    labels: {{{labels}}}\n"
            )
        };
        rejected(
            &format!("{tls}{}", block("tls", "version: v2")),
            "targets[0].labels.version",
            "set by the series of module \"tls\"",
        );
        // Per module: a half-open target keeps its version label.
        assert!(
            Config::parse(
                "b.yml",
                &format!("{tls}{}", block("tcp_halfopen", "version: v2"))
            )
            .is_ok()
        );
        // `answer`, for the modules that write probe_port_answer_info.
        let closed =
            "modules:\n  closed:\n    prober: tcp_connect\n    tcp: {expect_port: closed}\n";
        rejected(
            &format!("{closed}{}", block("closed", "answer: yes")),
            "targets[0].labels.answer",
            "set by the series of module \"closed\"",
        );
        assert!(
            Config::parse(
                "b.yml",
                &format!("{closed}{}", block("tcp_connect", "answer: yes"))
            )
            .is_ok()
        );
        // `address`, for the modules that write probe_trace_last_hop.
        let traced =
            "modules:\n  traced:\n    prober: tcp_halfopen\n    tcp: {trace_on_timeout: true}\n";
        rejected(
            &format!("{traced}{}", block("traced", "address: x")),
            "targets[0].labels.address",
            "set by the series of module \"traced\"",
        );
        let scrape_timed = "modules:\n  plain:\n    prober: tcp\n";
        rejected(
            &format!("{scrape_timed}{}", block("plain", "a: b")),
            "targets[0].module",
            "takes its timeout from the scrape",
        );
        rejected(
            &format!(
                "{scrape_timed}groups:\n  g:\n    members: [{{module: plain, target: \"127.0.0.1:1\"}}]\n"
            ),
            "groups.g.members[0].module",
            "takes its timeout from the scrape",
        );
    }

    /// blackbox_exporter reads `preferred_ip_protocol: ""` as ip6
    /// (`chooseProtocol`), and a `tcp` module carrying another prober's
    /// block (ignored there): both files load in blackbox (checked with
    /// Debian's 0.23 `--config.check`).
    #[test]
    fn an_empty_ip_protocol_and_other_probers_blocks_load_as_in_blackbox() {
        let empty = Config::parse("b.yml", &tcp_module("      preferred_ip_protocol: \"\"\n"));
        assert!(empty.is_ok(), "{:?}", empty.err());
        let other_block = Config::parse(
            "b.yml",
            "modules:\n  m:\n    prober: tcp\n    http:\n      valid_status_codes: [200]\n",
        );
        assert!(other_block.is_ok(), "{:?}", other_block.err());
    }
}
