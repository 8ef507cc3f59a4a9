//! The YAML configuration: which modules exist and how each one probes.
//!
//! The shape follows blackbox_exporter's so that users can carry modules
//! over: a `modules:` map whose entries name a `prober`, a `timeout`, and a
//! `tcp:` block with `preferred_ip_protocol`, `ip_protocol_fallback` and
//! `source_ip_address`.
//!
//! Two modules are built in, `tcp_halfopen` and `tcp_connect` (5 s
//! timeout each), so that a file holding only `targets:` or `groups:`, or
//! nothing at all, is a working config. A file's `modules:` adds modules and
//! may redefine the built-in ones by name; the merged set is the config in
//! force, shown by `/config` and the landing page.
//!
//! All validation happens while deserialising, so every error, whether a
//! YAML syntax slip, an unknown field or a zero timeout, carries the file,
//! line, column and the dotted path of the field (see [`ConfigError`]).
//! YAML is read with serde-saphyr rather than the archived serde_yaml.

mod duration;
mod scheduled;

pub use duration::PromDuration;
pub use scheduled::{Group, GroupName, LabelName, TargetBlock, TargetSpec};

use serde::{Deserialize, Deserializer, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The configuration used when no `--config.file` is given.
pub const EMBEDDED_DEFAULT_YAML: &str = include_str!("default.yml");

/// Name under which the embedded default is reported in errors and logs.
pub const EMBEDDED_DEFAULT_NAME: &str = "<embedded default>";

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Probe modules by name, as used in `/probe?module=NAME`: the
    /// [built-in modules](builtin_modules) and the file's own, which may
    /// redefine a built-in one.
    #[serde(default)]
    pub modules: BTreeMap<String, Module>,
    /// Targets the scheduler probes on its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetBlock>,
    /// Sets of targets checked together by `/health/<group>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<GroupName, Group>,
}

/// One way of probing: a prober and its options.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Module {
    /// Which prober runs.
    pub prober: ProberKind,
    /// Upper bound for one probe, DNS included. The scrape timeout may lower it.
    #[serde(default = "default_timeout", deserialize_with = "positive_duration")]
    pub timeout: PromDuration,
    /// Options of the TCP probers.
    #[serde(default)]
    pub tcp: TcpOptions,
}

/// The available probers.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProberKind {
    /// SYN, SYN-ACK, RST: the application never sees a connection.
    TcpHalfopen,
    /// A full handshake closed with RST, for SYN proxies and middleboxes.
    TcpConnect,
}

impl ProberKind {
    /// The name used in the config and in metrics.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TcpHalfopen => "tcp_halfopen",
            Self::TcpConnect => "tcp_connect",
        }
    }
}

/// Options shared by the TCP probers, named as in blackbox_exporter.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TcpOptions {
    /// Address family tried first when a name resolves to both.
    #[serde(default)]
    pub preferred_ip_protocol: IpProtocol,
    /// Whether the other family may be used when the preferred one has no address.
    #[serde(default = "default_true")]
    pub ip_protocol_fallback: bool,
    /// Local address to bind before connecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip_address: Option<IpAddr>,
}

impl Default for TcpOptions {
    fn default() -> Self {
        Self {
            preferred_ip_protocol: IpProtocol::default(),
            ip_protocol_fallback: true,
            source_ip_address: None,
        }
    }
}

/// An IP version, spelled `ip4` or `ip6` as in blackbox_exporter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum IpProtocol {
    /// IPv4.
    #[default]
    #[serde(rename = "ip4", alias = "ipv4")]
    Ip4,
    /// IPv6.
    #[serde(rename = "ip6", alias = "ipv6")]
    Ip6,
}

impl Module {
    /// A module for `prober` with the defaults: 5 s timeout, IPv4 preferred
    /// with fallback, no source address.
    #[must_use]
    pub fn new(prober: ProberKind) -> Self {
        Self {
            prober,
            timeout: default_timeout(),
            tcp: TcpOptions::default(),
        }
    }

    /// The same module with another timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = PromDuration(timeout);
        self
    }
}

/// The modules every config has: `tcp_halfopen` and `tcp_connect`, each
/// with [`Module::new`]'s defaults (5 s timeout). A config file's
/// `modules:` may redefine them by name.
#[must_use]
pub fn builtin_modules() -> BTreeMap<String, Module> {
    [ProberKind::TcpHalfopen, ProberKind::TcpConnect]
        .into_iter()
        .map(|kind| (kind.as_str().to_owned(), Module::new(kind)))
        .collect()
}

fn default_timeout() -> PromDuration {
    PromDuration(Duration::from_secs(5))
}

fn default_true() -> bool {
    true
}

fn positive_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PromDuration, D::Error> {
    let duration = PromDuration::deserialize(deserializer)?;
    if duration.0.is_zero() {
        return Err(serde::de::Error::custom("must be greater than 0s"));
    }
    Ok(duration)
}

impl Config {
    /// The embedded default: modules `tcp_halfopen` and `tcp_connect`, 5 s each.
    ///
    /// # Panics
    /// Never in a released build: a unit test parses the embedded text.
    #[must_use]
    pub fn embedded_default() -> Self {
        Self::parse(EMBEDDED_DEFAULT_NAME, EMBEDDED_DEFAULT_YAML)
            .expect("the embedded default config is valid (checked by a unit test)")
    }

    /// Reads and validates a config file.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file and, for content errors, the line,
    /// column and field.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            file: path.display().to_string(),
            position: None,
            field: None,
            message: format!("cannot read the file: {error}"),
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses and validates config text; `file` names it in errors.
    ///
    /// # Errors
    /// A [`ConfigError`] with the line, column and field at fault.
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        // serde_path_to_error knows the field, serde-saphyr the position;
        // the closure can only return saphyr's error, so the path leaves by
        // the side.
        let field_path = RefCell::new(None);
        let result = serde_saphyr::with_deserializer_from_str(text, |deserializer| {
            serde_path_to_error::deserialize(deserializer).map_err(|error| {
                let path = error.path().to_string();
                if path != "." && path != "?" {
                    *field_path.borrow_mut() = Some(path);
                }
                error.into_inner()
            })
        });
        let mut config: Self = result
            .map_err(|error| ConfigError::from_yaml(file, field_path.into_inner(), &error))?;
        let mut modules = builtin_modules();
        modules.append(&mut config.modules);
        config.modules = modules;
        scheduled::validate(file, config.modules.keys(), &config.targets, &config.groups)?;
        Ok(config)
    }

    /// Whether module `name` is a built-in one left as it is built in.
    #[must_use]
    pub fn is_builtin(&self, name: &str) -> bool {
        builtin_modules()
            .get(name)
            .is_some_and(|builtin| self.modules.get(name) == Some(builtin))
    }

    /// The module names, for error messages: `a, tcp_connect, tcp_halfopen`.
    #[must_use]
    pub fn module_names(&self) -> String {
        module_list(self.modules.keys())
    }

    /// The config in force as YAML, for `/config`: built-in modules
    /// included, so that what is shown is what runs.
    #[must_use]
    pub fn to_yaml(&self) -> String {
        let yaml = serde_saphyr::to_string(self)
            .unwrap_or_else(|error| format!("# cannot render the config as YAML: {error}\n"));
        format!(
            "# The config in force. Modules tcp_halfopen and tcp_connect are built in;\n\
             # a config file's modules: may redefine them.\n{yaml}"
        )
    }
}

/// `names` joined with `, `, for error messages that list what exists.
fn module_list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    names.map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// Where a config came from: a file, or the embedded default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config.file`.
    File(PathBuf),
    /// No file given: [`EMBEDDED_DEFAULT_YAML`].
    Embedded,
}

impl ConfigSource {
    /// Reads the config from this source.
    ///
    /// # Errors
    /// See [`Config::load`].
    pub fn load(&self) -> Result<Config, ConfigError> {
        match self {
            Self::File(path) => Config::load(path),
            Self::Embedded => Ok(Config::embedded_default()),
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Embedded => f.write_str(EMBEDDED_DEFAULT_NAME),
        }
    }
}

/// Why a config was rejected, with where in which file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or [`EMBEDDED_DEFAULT_NAME`].
    pub file: String,
    /// 1-based line and column, when the error is about the content.
    pub position: Option<(u64, u64)>,
    /// Dotted path of the field, such as `modules.web.timeout`.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn from_yaml(file: &str, field: Option<String>, error: &serde_saphyr::Error) -> Self {
        let position = error.location().map(|at| (at.line(), at.column()));
        let mut message = error.without_snippet().to_string();
        // saphyr appends the position to its message; we print it up front.
        if let Some((line, column)) = position {
            let suffix = format!(" at line {line}, column {column}");
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message.truncate(stripped.len());
            }
        }
        Self {
            file: file.to_owned(),
            position,
            field,
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_has_both_tcp_modules_with_5s() {
        let config = Config::embedded_default();
        for (name, kind) in [
            ("tcp_halfopen", ProberKind::TcpHalfopen),
            ("tcp_connect", ProberKind::TcpConnect),
        ] {
            let module = &config.modules[name];
            assert_eq!(module.prober, kind);
            assert_eq!(module.timeout.0, Duration::from_secs(5));
        }
    }

    #[test]
    fn builtin_modules_exist_in_every_config() {
        let targets_only = "targets:\n  - module: tcp_halfopen\n    targets: [\"127.0.0.1:22\"]\n";
        let groups_only =
            "groups:\n  web:\n    module: tcp_connect\n    targets: [\"127.0.0.1:80\"]\n";
        for text in [
            "",
            "# only a comment\n",
            "modules: {}\n",
            targets_only,
            groups_only,
        ] {
            let config =
                Config::parse("t.yml", text).unwrap_or_else(|error| panic!("{text:?}: {error}"));
            assert_eq!(config.modules, builtin_modules(), "{text:?}");
            assert!(config.is_builtin("tcp_halfopen") && config.is_builtin("tcp_connect"));
        }
    }

    #[test]
    fn a_file_adds_modules_and_may_redefine_the_builtin_ones() {
        let yaml = "modules:\n  tcp_halfopen:\n    prober: tcp_halfopen\n    timeout: 1s\n  fast:\n    prober: tcp_connect\n    timeout: 250ms\n";
        let config = Config::parse("t.yml", yaml).unwrap();
        assert_eq!(config.module_names(), "fast, tcp_connect, tcp_halfopen");
        assert_eq!(
            config.modules["tcp_halfopen"].timeout.0,
            Duration::from_secs(1)
        );
        assert!(!config.is_builtin("tcp_halfopen"), "redefined");
        assert!(config.is_builtin("tcp_connect"));
        assert!(!config.is_builtin("fast"));
    }

    #[test]
    fn unknown_module_error_lists_every_module_that_exists() {
        let error = error_of(
            "modules:\n  mine:\n    prober: tcp_connect\ntargets:\n  - module: nope\n    targets: [\"127.0.0.1:1\"]\n",
        );
        assert_eq!(
            error.message,
            "unknown module \"nope\"; use one of mine, tcp_connect, tcp_halfopen, or define it under modules:"
        );
    }

    #[test]
    fn blackbox_style_tcp_block_is_read() {
        let yaml = "modules:\n  v6:\n    prober: tcp_connect\n    timeout: 750ms\n    tcp:\n      preferred_ip_protocol: ip6\n      ip_protocol_fallback: false\n      source_ip_address: \"::1\"\n";
        let module = &Config::parse("t.yml", yaml).unwrap().modules["v6"];
        assert_eq!(module.timeout.0, Duration::from_millis(750));
        assert_eq!(module.tcp.preferred_ip_protocol, IpProtocol::Ip6);
        assert!(!module.tcp.ip_protocol_fallback);
        assert_eq!(module.tcp.source_ip_address, Some("::1".parse().unwrap()));
    }

    fn error_of(yaml: &str) -> ConfigError {
        Config::parse("bad.yml", yaml).expect_err("config should be rejected")
    }

    #[test]
    fn unknown_field_names_file_line_column_and_field() {
        let error = error_of("modules:\n  a:\n    prober: tcp_halfopen\n    bogus: 1\n");
        assert_eq!(error.position, Some((4, 5)));
        assert_eq!(error.field.as_deref(), Some("modules.a.bogus"));
        let text = error.to_string();
        assert!(
            text.starts_with("bad.yml:4:5: field `modules.a.bogus`: unknown field `bogus`"),
            "{text}"
        );
    }

    #[test]
    fn bad_duration_and_zero_timeout_are_located() {
        let error = error_of("modules:\n  a:\n    prober: tcp_halfopen\n    timeout: 5x\n");
        assert_eq!(
            (error.position, error.field.as_deref()),
            (Some((4, 14)), Some("modules.a.timeout"))
        );
        assert!(error.message.contains("invalid duration"), "{error}");
        let error = error_of("modules:\n  a:\n    prober: tcp_halfopen\n    timeout: 0s\n");
        assert!(error.message.contains("greater than 0s"), "{error}");
    }

    #[test]
    fn unknown_prober_and_protocol_are_rejected() {
        let error = error_of("modules:\n  a:\n    prober: icmp\n");
        assert_eq!(error.field.as_deref(), Some("modules.a.prober"));
        assert!(error.message.contains("tcp_halfopen"), "{error}");
        let error = error_of(
            "modules:\n  a:\n    prober: tcp_connect\n    tcp: {preferred_ip_protocol: ip5}\n",
        );
        assert_eq!(
            error.field.as_deref(),
            Some("modules.a.tcp.preferred_ip_protocol")
        );
    }

    #[test]
    fn yaml_syntax_error_has_position() {
        let error = error_of("modules:\n  a: [\n");
        assert!(error.position.is_some(), "{error}");
        assert!(error.to_string().starts_with("bad.yml:"), "{error}");
    }

    #[test]
    fn yaml_round_trips_through_to_yaml() {
        let config = Config::parse(
            "t.yml",
            "modules:\n  m:\n    prober: tcp_connect\n    timeout: 2s\n",
        )
        .unwrap();
        let again = Config::parse("again", &config.to_yaml()).unwrap();
        assert_eq!(again.modules, config.modules);
        assert_eq!(again.module_names(), "m, tcp_connect, tcp_halfopen");
    }
}
