//! The YAML configuration: which modules exist and how each one probes.
//!
//! The shape follows blackbox_exporter's so that users can carry modules
//! over: a `modules:` map whose entries name a `prober`, a `timeout`, and a
//! `tcp:` block with `preferred_ip_protocol`, `ip_protocol_fallback` and
//! `source_ip_address`; or, for `prober: exec`, an `exec:` block with the
//! command to run (see [`ExecOptions`] and the `exec` submodule's rules).
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
//!
//! Every value has bounds, and a value outside them is an error that
//! states them: a config is often generated, and a generator's slip (a
//! timeout of 584 million years, a 1 ms interval, a module named `""`)
//! should stop at `--config.check`, not become a busy or stuck exporter.
//! The bounds are [`TIMEOUT_RANGE`], [`ATTEMPTS_RANGE`],
//! [`ATTEMPT_INTERVAL_RANGE`], [`scheduled::INTERVAL_RANGE`],
//! [`scheduled::RISE_FALL_RANGE`], [`scheduled::GROUP_MEMBERS_RANGE`],
//! [`MAX_SCHEDULED_TARGETS`] and [`MAX_CONFIG_BYTES`]; module and group
//! names use letters, digits, `-`, `_` and `.` only. YAML tags that
//! serde-saphyr does not know (`!custom`) are errors rather than silently
//! dropped.
//!
//! Reading the file is bounded too ([`Config::load`]): only a regular file
//! is read, the size limit applies before reading, and a FIFO or a device
//! is refused without waiting on it.
//!
//! A load then checks the config against the host it runs on (the `host`
//! submodule): an `exec` program that is not found or not executable, and
//! a `source_ip_address` the host cannot bind, would fail every probe of
//! their module, and are located errors at start-up, at every reload and
//! in `--config.check` alike. A `source_interface` that does not exist
//! and a `mark` without its capability are located warnings instead (the
//! `route` submodule): the interface may come later, and the capability
//! is the service manager's to grant. [`Config::parse`] alone does not
//! look at the host.

#![forbid(unsafe_code)]

mod blackbox;
mod duration;
mod exec;
mod file;
mod health_checker;
mod host;
mod policy;
mod route;
mod scheduled;
mod stamp;
mod tls;
mod tls_material;
mod words;

use blackbox::TcpBlock;
pub use blackbox::{Expect, ExpectLabel, QueryStep, TcpProbe};
pub use duration::PromDuration;
pub use exec::ExecOptions;
pub(crate) use exec::{RESERVED_ENV_PREFIX, Values};
pub(crate) use file::{Refusal, in_mebibytes, read_bounded};
pub(crate) use health_checker::HEALTH_CHECKER_GROUP;
pub use health_checker::HealthChecks;
pub(crate) use host::{EXPORTER_PATH, command_path, find_program};
pub(crate) use policy::PolicyRefusal;
pub use policy::TargetPolicy;
pub(crate) use route::{RouteRefused, set_route_options};
pub(crate) use scheduled::located;
pub(crate) use scheduled::{
    Group, GroupMember, GroupName, LabelName, MAX_SCHEDULED_TARGETS, TargetBlock,
};
#[cfg(test)]
pub(crate) use stamp::tests::rotate;
pub(crate) use stamp::{Stamp, read_stamped, stamp};
pub(crate) use tls::{GO_CIPHER_SUITES, go_cipher_name};
pub use tls::{TlsOptions, TlsVersion};
pub(crate) use tls_material::{TlsMaterial, pem_certificates, pem_private_key};

use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::marker::PhantomData;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The largest config file read: 64 MiB. A config with the most
/// scheduled targets allowed ([`MAX_SCHEDULED_TARGETS`]) takes 25 to 60 MB
/// depending on the length of the names, and parsing 64 MiB takes seconds,
/// not minutes. The limit applies before the file is read.
pub(crate) const MAX_CONFIG_BYTES: u64 = 64 * 1024 * 1024;

/// The shortest and longest module `timeout`. 1 ms is the smallest
/// Prometheus duration. Linux itself gives up on an unanswered SYN after
/// about 127 s (`tcp_syn_retries` = 6), so a longer timeout could only
/// wait for a result that the kernel already gave; and a scrape timeout,
/// which bounds `/probe` anyway, is rarely over a minute.
pub(crate) const TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(120);

/// The fewest and most handshakes of one probe (`tcp.attempts`). A
/// hundred is ping's `-c 100`: enough for a loss ratio in percent from a
/// single probe; more would belong to a longer-running tool than a probe
/// that a scrape waits for.
pub(crate) const ATTEMPTS_RANGE: RangeInclusive<u32> = 1..=100;

/// The shortest and longest `tcp.attempt_interval`. Under 10 ms one probe
/// would send over 100 SYNs a second to its target, a flood rather than a
/// check (ping itself refuses under 200 ms to ordinary users); a minute is
/// already more than most scrape timeouts allow for two attempts.
pub(crate) const ATTEMPT_INTERVAL_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(60);

/// The configuration used when no `--config.file` is given.
pub(crate) const EMBEDDED_DEFAULT_YAML: &str = include_str!("default.yml");

/// Name under which the embedded default is reported in errors and logs.
pub(crate) const EMBEDDED_DEFAULT_NAME: &str = "<embedded default>";

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(from = "ConfigFields")]
pub struct Config {
    /// Probe modules by name, as used in `/probe?module=NAME`: the
    /// [built-in modules](builtin_modules) and the file's own, which may
    /// redefine a built-in one.
    pub modules: BTreeMap<String, Module>,
    /// The file's modules that this exporter cannot run (blackbox_exporter
    /// modules of other probers), by name: reported, not run.
    #[serde(skip)]
    pub unsupported: BTreeMap<String, Unsupported>,
    /// What the load notes, located, about modules it runs (a
    /// `min_version` below TLS 1.2; a `tls_config` file that cannot serve
    /// now): reported by [`Config::warnings`].
    #[serde(skip)]
    notes: Vec<ConfigError>,
    /// Targets the scheduler probes on its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetBlock>,
    /// Sets of targets checked together by `/health/<group>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<GroupName, Group>,
}

/// One way of probing: a prober with its own options, and what every
/// prober shares (the timeout, the target policy).
///
/// Reading a module checks how its fields fit together: `exec:` is
/// required by `prober: exec` and refused by the TCP probers, and `tcp:`
/// options other than the defaults are refused by `prober: exec`, which
/// opens no socket of its own. A module built in Rust cannot get them
/// wrong: each [`Prober`] carries the options of its own kind.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "ModuleFields", into = "ModuleFields")]
pub struct Module {
    /// Which prober runs, with its options.
    prober: Prober,
    /// Upper bound for one probe, DNS included. The scrape timeout may lower it.
    timeout: PromDuration,
    /// Whether the module gave no timeout and takes the scrape's, as a
    /// blackbox_exporter module does (`prober: tcp` without `timeout:`).
    timeout_from_scrape: bool,
    /// Which targets the module may probe; `None` for any (see
    /// [`TargetPolicy`]). Boxed so that a module without one stays small.
    target_policy: Option<Box<TargetPolicy>>,
}

/// A prober and its options: what a [`Module`] runs. Each prober's
/// options are those of its own kind, so that an `exec` module without a
/// command cannot be built.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub enum Prober {
    /// SYN, SYN-ACK, RST: the application never sees a connection.
    TcpHalfopen(TcpOptions),
    /// A full handshake closed with RST, for SYN proxies and middleboxes.
    TcpConnect(TcpOptions),
    /// Runs a command; exit 0 within the timeout is success.
    Exec(ExecOptions),
    /// blackbox_exporter's TCP module: half-open or a full connect, TLS,
    /// a dialogue (`query_response`).
    Tcp(Box<TcpProbe>),
}

impl Prober {
    /// Which prober this is, without its options.
    #[must_use]
    pub fn kind(&self) -> ProberKind {
        match self {
            Self::TcpHalfopen(_) => ProberKind::TcpHalfopen,
            Self::TcpConnect(_) => ProberKind::TcpConnect,
            Self::Exec(_) => ProberKind::Exec,
            Self::Tcp(_) => ProberKind::Tcp,
        }
    }

    /// The name used in the config and in metrics: `tcp_halfopen`, ...
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    /// The TCP options of a TCP prober; `None` for the others.
    #[must_use]
    pub fn tcp(&self) -> Option<&TcpOptions> {
        match self {
            Self::TcpHalfopen(options) | Self::TcpConnect(options) => Some(options),
            Self::Tcp(probe) => Some(&probe.tcp),
            Self::Exec(_) => None,
        }
    }

    /// The command of the `exec` prober; `None` for the others.
    #[must_use]
    pub fn exec(&self) -> Option<&ExecOptions> {
        match self {
            Self::Exec(options) => Some(options),
            Self::TcpHalfopen(_) | Self::TcpConnect(_) | Self::Tcp(_) => None,
        }
    }

    /// The options of `prober: tcp`; `None` for the others.
    #[must_use]
    pub fn tcp_probe(&self) -> Option<&TcpProbe> {
        match self {
            Self::Tcp(probe) => Some(probe),
            _ => None,
        }
    }

    /// The label names this prober's series set beside a scheduled
    /// target's own: `answer` for a TCP module whose `expect_port` is not
    /// `open` (`probe_port_answer_info`), `address` for one with
    /// `trace_on_timeout` (`probe_trace_last_hop`) or `ip_addresses: all`
    /// (`probe_address_success`), and those of `prober: tcp`'s TLS
    /// and dialogue series ([`TcpProbe::series_label_names`]).
    pub(crate) fn series_label_names(&self) -> Vec<&str> {
        let mut names = self
            .tcp_probe()
            .map(TcpProbe::series_label_names)
            .unwrap_or_default();
        if self
            .tcp()
            .is_some_and(|options| options.expect_port != ExpectPort::Open)
        {
            names.push(PORT_ANSWER_LABEL);
        }
        if self.tcp().is_some_and(|options| {
            options.trace_on_timeout || options.ip_addresses == IpAddresses::All
        }) {
            names.push(ADDRESS_LABEL);
        }
        names
    }
}

/// The label of `probe_port_answer_info` that names the answer.
pub(crate) const PORT_ANSWER_LABEL: &str = "answer";

/// A module's fields as written in the YAML: ours, and blackbox_exporter's
/// (a `prober: tcp` module, and the blocks of the probers this exporter
/// does not have, read and set aside).
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ModuleFields {
    prober: ProberName,
    #[serde(
        default,
        deserialize_with = "timeout_in_range",
        skip_serializing_if = "Option::is_none"
    )]
    timeout: Option<PromDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tcp: Option<TcpBlock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exec: Option<ExecOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target_policy: Option<Box<TargetPolicy>>,
    // blackbox_exporter's blocks of the probers this exporter lacks.
    #[serde(default, skip_serializing)]
    http: Option<IgnoredAny>,
    #[serde(default, skip_serializing)]
    icmp: Option<IgnoredAny>,
    #[serde(default, skip_serializing)]
    dns: Option<IgnoredAny>,
    #[serde(default, skip_serializing)]
    grpc: Option<IgnoredAny>,
    #[serde(default, skip_serializing)]
    unix: Option<IgnoredAny>,
    #[serde(default, skip_serializing)]
    websocket: Option<IgnoredAny>,
}

/// What `prober:` names: one of ours, or one of blackbox_exporter's that
/// this exporter does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProberName {
    Ours(ProberKind),
    Blackbox(&'static str),
}

/// blackbox_exporter's probers other than `tcp`: a module of one of them
/// is set aside and reported, not an error.
const BLACKBOX_ONLY_PROBERS: [&str; 6] = ["http", "icmp", "dns", "grpc", "unix", "websocket"];

/// Our probers, by their names in the config.
const OUR_PROBERS: [ProberKind; 4] = [
    ProberKind::TcpHalfopen,
    ProberKind::TcpConnect,
    ProberKind::Exec,
    ProberKind::Tcp,
];

impl<'de> Deserialize<'de> for ProberName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Read as serde reads an enum of unit variants, so that the YAML
        // reader locates an unknown name at the value, not at its key.
        struct Names;

        impl<'de> Visitor<'de> for Names {
            type Value = ProberName;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a prober name")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<ProberName, E> {
                if let Some(kind) = OUR_PROBERS.into_iter().find(|kind| kind.as_str() == name) {
                    return Ok(ProberName::Ours(kind));
                }
                if let Some(prober) = BLACKBOX_ONLY_PROBERS.into_iter().find(|p| *p == name) {
                    return Ok(ProberName::Blackbox(prober));
                }
                Err(E::unknown_variant(name, &OUR_PROBER_NAMES))
            }

            fn visit_enum<A: serde::de::EnumAccess<'de>>(
                self,
                data: A,
            ) -> Result<ProberName, A::Error> {
                let (name, variant) = data.variant::<Identifier>()?;
                serde::de::VariantAccess::unit_variant(variant)?;
                Ok(name.0)
            }
        }

        /// The name, refused while it is read.
        struct Identifier(ProberName);

        impl<'de> Deserialize<'de> for Identifier {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_identifier(Names).map(Identifier)
            }
        }

        deserializer.deserialize_enum("ProberName", &OUR_PROBER_NAMES, Names)
    }
}

/// The names of [`OUR_PROBERS`], for the error that lists them.
const OUR_PROBER_NAMES: [&str; 4] = ["tcp_halfopen", "tcp_connect", "exec", "tcp"];

impl Serialize for ProberName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(match self {
            Self::Ours(kind) => kind.as_str(),
            Self::Blackbox(name) => name,
        })
    }
}

/// A module of a blackbox_exporter file that this exporter cannot run: of
/// a prober it does not have, or asking for what rustls does not speak.
/// It is reported once per load (`Config::warnings`), and `/probe`
/// answers a request for it with 400 saying so.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    /// The module's prober, such as `http`.
    pub prober: String,
    /// What is not supported, completing "module NAME …".
    pub why: String,
    /// Line and column of the module's `prober:`, when read from a file.
    pub at: Option<(u64, u64)>,
}

/// A module as read: one this exporter runs, or one it sets aside.
enum ModuleEntry {
    Runs(Module),
    SetAside(Unsupported),
}

impl<'de> Deserialize<'de> for ModuleEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = ModuleFields::deserialize(deserializer)?;
        Self::try_from(fields).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<ModuleFields> for Module {
    type Error = String;

    fn try_from(fields: ModuleFields) -> Result<Self, String> {
        match ModuleEntry::try_from(fields)? {
            ModuleEntry::Runs(module) => Ok(module),
            ModuleEntry::SetAside(unsupported) => Err(format!("this module {}", unsupported.why)),
        }
    }
}

impl TryFrom<ModuleFields> for ModuleEntry {
    type Error = String;

    fn try_from(fields: ModuleFields) -> Result<Self, String> {
        let ModuleFields {
            prober,
            timeout,
            tcp,
            exec,
            target_policy,
            http,
            icmp,
            dns,
            grpc,
            unix,
            websocket,
        } = fields;
        let kind = match prober {
            ProberName::Ours(kind) => kind,
            ProberName::Blackbox(name) => {
                return Ok(Self::SetAside(Unsupported {
                    prober: name.to_owned(),
                    why: format!(
                        "uses prober {name}, which synack_exporter does not support (it reads \
                         only blackbox_exporter's tcp modules)"
                    ),
                    at: None,
                }));
            }
        };
        let other_blocks = [
            http.is_some(),
            icmp.is_some(),
            dns.is_some(),
            grpc.is_some(),
            unix.is_some(),
            websocket.is_some(),
        ];
        // blackbox_exporter's modules carry every prober's block and use
        // their own prober's: a `prober: tcp` module's other blocks are
        // ignored there, and here. Our probers' modules are ours: strict.
        if let Some(block) = BLACKBOX_ONLY_PROBERS
            .into_iter()
            .zip(other_blocks)
            .find_map(|(name, set)| set.then_some(name))
            .filter(|_| kind != ProberKind::Tcp)
        {
            return Err(format!(
                "{block}: applies to blackbox_exporter's prober {block}, which synack_exporter \
                 does not support, and this module's prober is {}: remove the {block}: block",
                kind.as_str()
            ));
        }
        let prober = match (kind, exec) {
            (ProberKind::Exec, None) => {
                return Err("prober exec needs an exec: block with the command to run, such as \
                     exec: {command: [\"/usr/local/bin/check\", \"--host\", \"{host}\", \"--port\", \"{port}\"]}"
                    .to_owned());
            }
            (ProberKind::Exec, Some(exec)) => {
                if tcp.as_ref().is_some_and(|tcp| !tcp.is_default_for_exec()) {
                    return Err(
                        "tcp: options do not apply to prober exec, which opens no connection \
                         of its own: remove the tcp: block"
                            .to_owned(),
                    );
                }
                Prober::Exec(exec)
            }
            (_, Some(_)) => {
                return Err(format!(
                    "exec: applies only to prober exec, and this module's prober is {}: remove the exec: block or set prober: exec",
                    kind.as_str()
                ));
            }
            (_, None) => TcpBlock::prober(tcp, kind)?,
        };
        if let Some(why) = prober.tcp_probe().and_then(TcpProbe::unsupported_here) {
            return Ok(Self::SetAside(Unsupported {
                prober: kind.as_str().to_owned(),
                why,
                at: None,
            }));
        }
        // blackbox_exporter's module without a timeout takes the scrape's.
        let timeout_from_scrape = kind == ProberKind::Tcp && timeout.is_none();
        let timeout = match timeout {
            Some(timeout) => timeout,
            None if timeout_from_scrape => PromDuration(*TIMEOUT_RANGE.end()),
            None => default_timeout(),
        };
        if let Some(tcp) = prober.tcp() {
            tcp.check_attempts_fit(timeout.0)?;
        }
        Ok(Self::Runs(Module {
            prober,
            timeout,
            timeout_from_scrape,
            target_policy,
        }))
    }
}

impl From<Module> for ModuleFields {
    /// What `/config` shows: no `tcp:` for an exec module, no `exec:`
    /// for the others.
    fn from(module: Module) -> Self {
        let kind = module.prober.kind();
        let (tcp, exec) = match module.prober {
            Prober::Exec(exec) => (None, Some(exec)),
            prober => (Some(TcpBlock::from(prober)), None),
        };
        Self {
            prober: ProberName::Ours(kind),
            timeout: (!module.timeout_from_scrape).then_some(module.timeout),
            tcp,
            exec,
            target_policy: module.target_policy,
            http: None,
            icmp: None,
            dns: None,
            grpc: None,
            unix: None,
            websocket: None,
        }
    }
}

/// The available probers, without their options: what `prober:` names.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProberKind {
    /// SYN, SYN-ACK, RST: the application never sees a connection.
    TcpHalfopen,
    /// A full handshake closed with RST, for SYN proxies and middleboxes.
    TcpConnect,
    /// Runs a command from the config; exit 0 within the timeout is success.
    Exec,
    /// blackbox_exporter's TCP module: half-open when plain, else a full
    /// connect with TLS or a dialogue.
    Tcp,
}

impl ProberKind {
    /// The name used in the config and in metrics.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TcpHalfopen => "tcp_halfopen",
            Self::TcpConnect => "tcp_connect",
            Self::Exec => "exec",
            Self::Tcp => "tcp",
        }
    }
}

/// Options shared by the TCP probers, named as in blackbox_exporter.
/// Start from `TcpOptions::default()` and set what you need: new options
/// may come.
#[non_exhaustive]
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
    /// The interface the probes leave by (`SO_BINDTODEVICE`), whatever
    /// the routing table says: a VRF, a VPN link. Needs no privilege
    /// since Linux 5.7. 1 to 15 bytes, no `/`, `:` or white space.
    #[serde(
        default,
        deserialize_with = "route::some_interface_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_interface: Option<String>,
    /// The firewall mark of the probes' packets (`SO_MARK`), which
    /// `ip rule fwmark` and nftables `meta mark` match: a policy route.
    /// Needs `CAP_NET_ADMIN` (or `CAP_NET_RAW` since Linux 5.17).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<u32>,
    /// The DiffServ code point, 0 to 63, of the probes' packets: the
    /// upper six bits of the IPv4 TOS / IPv6 traffic class byte
    /// (`dscp << 2`, the ECN bits left to the kernel).
    #[serde(
        default,
        deserialize_with = "route::some_dscp",
        skip_serializing_if = "Option::is_none"
    )]
    pub dscp: Option<u8>,
    /// Handshakes per probe, one after another: 1 (the default) to 100.
    /// The probe succeeds when at least one does.
    #[serde(default = "default_attempts", deserialize_with = "attempts_in_range")]
    pub attempts: u32,
    /// From the start of one attempt to the start of the next: 10 ms to
    /// 1 minute, 100 ms by default.
    #[serde(
        default = "default_attempt_interval",
        deserialize_with = "attempt_interval_in_range"
    )]
    pub attempt_interval: PromDuration,
    /// One attempt's own deadline, 1 ms to 2 minutes; see
    /// [`attempt_deadline`](Self::attempt_deadline) for the default.
    #[serde(
        default,
        deserialize_with = "attempt_timeout_in_range",
        skip_serializing_if = "Option::is_none"
    )]
    pub attempt_timeout: Option<PromDuration>,
    /// Whether the attempts stop at the first success (true, the default:
    /// retries) or all run whatever they find (false: a TCP ping).
    #[serde(default = "default_true")]
    pub stop_on_success: bool,
    /// What the port must answer for the probe to succeed: `open` (a
    /// SYN-ACK, the default), `closed` or `filtered`; see [`ExpectPort`].
    #[serde(default)]
    pub expect_port: ExpectPort,
    /// Whether a probe that timed out sends trace SYNs with a rising TTL
    /// (1 to 30) and names the last hop that answered; see
    /// `docs/configuration.md` for the time it keeps for them.
    #[serde(default)]
    pub trace_on_timeout: bool,
    /// Which addresses of a name are probed: the first of an allowed
    /// family (`first`, the default) or every one, at once (`all`, at
    /// most [`MAX_ADDRESSES`]); see [`IpAddresses`].
    #[serde(default)]
    pub ip_addresses: IpAddresses,
    /// With `ip_addresses: all`, whether the probe succeeds when `any`
    /// address does (the default) or only when `all` do.
    #[serde(default)]
    pub ip_addresses_success: IpAddressesSuccess,
    /// How a half-open probe sends its SYN and reads the answer: a kernel
    /// socket per probe (`socket`, the default) or the exporter's raw
    /// engine (`raw`, needs `CAP_NET_RAW`); see [`Engine`].
    #[serde(default)]
    pub engine: Engine,
}

impl Default for TcpOptions {
    fn default() -> Self {
        Self {
            preferred_ip_protocol: IpProtocol::default(),
            ip_protocol_fallback: true,
            source_ip_address: None,
            source_interface: None,
            mark: None,
            dscp: None,
            attempts: default_attempts(),
            attempt_interval: default_attempt_interval(),
            attempt_timeout: None,
            stop_on_success: true,
            expect_port: ExpectPort::Open,
            trace_on_timeout: false,
            ip_addresses: IpAddresses::First,
            ip_addresses_success: IpAddressesSuccess::Any,
            engine: Engine::Socket,
        }
    }
}

impl TcpOptions {
    /// How long one attempt may wait for its answer: `attempt_timeout`
    /// when set, else `attempt_interval` when there are several attempts.
    /// `None` for a single attempt without `attempt_timeout`: it has the
    /// whole probe's deadline, as before attempts existed.
    #[must_use]
    pub fn attempt_deadline(&self) -> Option<Duration> {
        match self.attempt_timeout {
            Some(timeout) => Some(timeout.0),
            None if self.attempts > 1 => Some(self.attempt_interval.0),
            None => None,
        }
    }

    /// Refuses attempts that overlap or that cannot all end within
    /// `timeout`: `(attempts − 1) × attempt_interval + attempt_timeout`.
    fn check_attempts_fit(&self, timeout: Duration) -> Result<(), String> {
        let Some(each) = self.attempt_deadline() else {
            return Ok(());
        };
        let interval = self.attempt_interval;
        if self.attempts > 1 && each > interval.0 {
            return Err(format!(
                "attempt_timeout {} is longer than attempt_interval {interval}, so attempts would overlap: \
                 make attempt_timeout at most attempt_interval",
                PromDuration(each)
            ));
        }
        let last_end = interval.0 * (self.attempts - 1) + each;
        if last_end > timeout {
            return Err(format!(
                "the last of {} attempts would end {} after the probe starts ((attempts - 1) x attempt_interval + \
                 attempt_timeout = {} x {interval} + {}), after the module's timeout {}: \
                 lower attempts, attempt_interval or attempt_timeout, or raise timeout",
                self.attempts,
                PromDuration(last_end),
                self.attempts - 1,
                PromDuration(each),
                PromDuration(timeout),
            ));
        }
        Ok(())
    }
}

/// How to give the exporter what `engine: raw` needs, said where it is
/// missing: at `--config.check` and start-up, and in the failure of each
/// probe of a raw module.
pub(crate) const RAW_ENGINE_CAPABILITY: &str = "engine: raw needs CAP_NET_RAW: grant it (systemd: \
AmbientCapabilities=CAP_NET_RAW; Kubernetes: securityContext.capabilities.add: [NET_RAW]; \
Docker's default capabilities have it), or use engine: socket";

/// How a half-open probe sends its SYN (`tcp.engine`).
///
/// `socket` opens a kernel socket per probe and races the kernel's
/// delayed ACK to close it. `raw` sends the SYN from one raw socket
/// shared by every probe, from a source port the exporter holds with a
/// socket that never listens, so the kernel itself answers the SYN-ACK
/// with an RST: no race, and no socket per probe (see
/// `docs/raw-engine.md`). It needs `CAP_NET_RAW`, and does half-open
/// probes only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// A kernel socket per probe, `connect()` and a close with RST.
    #[default]
    Socket,
    /// The exporter's raw-SYN engine.
    Raw,
}

impl<'de> Deserialize<'de> for Engine {
    /// One of [`Engine::WORDS`]; read first, then judged, so that an
    /// error about the word is located at it.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = String::deserialize(deserializer)?;
        words::one_of(&word, &Self::WORDS).map_err(serde::de::Error::custom)
    }
}

impl Engine {
    /// The words the config takes.
    pub const WORDS: [(&'static str, Self); 2] = [("socket", Self::Socket), ("raw", Self::Raw)];

    /// The name used in the config: `socket` or `raw`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Socket => "socket",
            Self::Raw => "raw",
        }
    }
}

/// What a TCP module expects of the port (`tcp.expect_port`). With
/// `closed` or `filtered` the probe is a negative check: it is half-open
/// whatever the prober, so it never completes a handshake, and a SYN-ACK
/// fails it with reason `open`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpectPort {
    /// A SYN-ACK: the port accepts connections.
    #[default]
    Open,
    /// Anything but a SYN-ACK: an RST, silence, an ICMP error, or a
    /// route that refuses to send.
    Closed,
    /// No answer from the port: silence, an ICMP error, or a route that
    /// refuses to send; an RST fails it as `refused`.
    Filtered,
}

impl<'de> Deserialize<'de> for ExpectPort {
    /// One of [`ExpectPort::WORDS`]; read first, then judged, so that an
    /// error about the word is located at it.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = String::deserialize(deserializer)?;
        words::one_of(&word, &Self::WORDS).map_err(serde::de::Error::custom)
    }
}

impl ExpectPort {
    /// The words the config takes.
    pub const WORDS: [(&'static str, Self); 3] = [
        ("open", Self::Open),
        ("closed", Self::Closed),
        ("filtered", Self::Filtered),
    ];

    /// The name used in the config: `open`, `closed` or `filtered`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Filtered => "filtered",
        }
    }
}

/// The label that names an IP address: of the per-address series of an
/// `ip_addresses: all` module (`probe_address_success{address}`) and of
/// the hop in `probe_trace_last_hop{address}`; reserved for the scheduled
/// targets of such modules.
pub(crate) const ADDRESS_LABEL: &str = "address";

/// The most addresses of one name that `ip_addresses: all` probes: the
/// first 16 the name servers give (of the families the module allows);
/// the rest are left out, and the step log says how many.
pub const MAX_ADDRESSES: usize = 16;

/// Which addresses of a name a TCP module probes (`tcp.ip_addresses`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IpAddresses {
    /// The first address of the preferred family, else (with
    /// `ip_protocol_fallback`) of the other: one probe.
    #[default]
    First,
    /// Every address of the preferred family and, with
    /// `ip_protocol_fallback`, of the other (only the source address's
    /// family when `source_ip_address` is set), up to [`MAX_ADDRESSES`],
    /// probed at once within the module's one timeout.
    All,
}

impl<'de> Deserialize<'de> for IpAddresses {
    /// One of [`IpAddresses::WORDS`], located at the word when it is not.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = String::deserialize(deserializer)?;
        words::one_of(&word, &Self::WORDS).map_err(serde::de::Error::custom)
    }
}

impl IpAddresses {
    /// The words the config takes.
    pub const WORDS: [(&'static str, Self); 2] = [("first", Self::First), ("all", Self::All)];
}

/// When a probe of every address (`ip_addresses: all`) succeeds
/// (`tcp.ip_addresses_success`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IpAddressesSuccess {
    /// When at least one address succeeds.
    #[default]
    Any,
    /// Only when every address succeeds.
    All,
}

impl<'de> Deserialize<'de> for IpAddressesSuccess {
    /// One of [`IpAddressesSuccess::WORDS`], located at the word when it is not.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = String::deserialize(deserializer)?;
        words::one_of(&word, &Self::WORDS).map_err(serde::de::Error::custom)
    }
}

impl IpAddressesSuccess {
    /// The words the config takes.
    pub const WORDS: [(&'static str, Self); 2] = [("any", Self::Any), ("all", Self::All)];
}

/// An IP version, spelled `ip4` or `ip6` as in blackbox_exporter (also
/// `ipv4`, `ipv6`: [`IpProtocol::WORDS`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub enum IpProtocol {
    /// IPv4.
    #[default]
    #[serde(rename = "ip4")]
    Ip4,
    /// IPv6.
    #[serde(rename = "ip6")]
    Ip6,
}

impl<'de> Deserialize<'de> for IpProtocol {
    /// One of [`IpProtocol::WORDS`]; read first, then judged, so that an
    /// error about the word is located at it.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = String::deserialize(deserializer)?;
        Self::from_word(&word).map_err(serde::de::Error::custom)
    }
}

impl IpProtocol {
    /// The words the config takes for each, as blackbox_exporter does.
    pub const WORDS: [(&'static str, Self); 4] = [
        ("ip4", Self::Ip4),
        ("ipv4", Self::Ip4),
        ("ip6", Self::Ip6),
        ("ipv6", Self::Ip6),
    ];

    /// The protocol `word` names, or why it names none.
    pub(crate) fn from_word(word: &str) -> Result<Self, String> {
        words::one_of(word, &Self::WORDS)
    }

    /// The name used in the config: `ip4` or `ip6`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ip4 => "ip4",
            Self::Ip6 => "ip6",
        }
    }

    /// The family of `ip`.
    #[must_use]
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() { Self::Ip4 } else { Self::Ip6 }
    }
}

impl fmt::Display for IpProtocol {
    /// As the config spells it: `ip4`, `ip6`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Module {
    /// A module running `prober`, with the default timeout (5 s) and no
    /// target policy.
    #[must_use]
    pub fn new(prober: Prober) -> Self {
        Self {
            prober,
            timeout: default_timeout(),
            timeout_from_scrape: false,
            target_policy: None,
        }
    }

    /// A `tcp_halfopen` module with the defaults: 5 s timeout, IPv4
    /// preferred with fallback, no source address, one attempt.
    #[must_use]
    pub fn tcp_halfopen() -> Self {
        Self::new(Prober::TcpHalfopen(TcpOptions::default()))
    }

    /// A `tcp_connect` module with the defaults of
    /// [`tcp_halfopen`](Self::tcp_halfopen).
    #[must_use]
    pub fn tcp_connect() -> Self {
        Self::new(Prober::TcpConnect(TcpOptions::default()))
    }

    /// An `exec` module running `options`, with the default timeout (5 s).
    #[must_use]
    pub fn exec(options: ExecOptions) -> Self {
        Self::new(Prober::Exec(options))
    }

    /// The same module with another timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = PromDuration(timeout);
        self.timeout_from_scrape = false;
        self
    }

    /// The same module with a target policy.
    #[must_use]
    pub fn with_target_policy(mut self, policy: TargetPolicy) -> Self {
        self.target_policy = Some(Box::new(policy));
        self
    }

    /// Which prober runs, with its options.
    #[must_use]
    pub fn prober(&self) -> &Prober {
        &self.prober
    }

    /// The options of a TCP module; `None` for an `exec` module.
    #[must_use]
    pub fn tcp(&self) -> Option<&TcpOptions> {
        self.prober.tcp()
    }

    /// The options of a TCP module, to change them; `None` for an `exec`
    /// module. A module read from a config file has had its attempts
    /// checked against its timeout; changed here, they are not.
    #[must_use]
    pub fn tcp_mut(&mut self) -> Option<&mut TcpOptions> {
        match &mut self.prober {
            Prober::TcpHalfopen(options) | Prober::TcpConnect(options) => Some(options),
            Prober::Tcp(probe) => Some(&mut probe.tcp),
            Prober::Exec(_) => None,
        }
    }

    /// The upper bound for one probe, DNS included: for a module that
    /// takes its timeout from the scrape, the longest there is (2 minutes).
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout.0
    }

    /// Whether the module sets no timeout and takes the scrape's, less the
    /// offset, as blackbox_exporter's modules do: `prober: tcp` without
    /// `timeout:`. Such a module cannot be scheduled.
    #[must_use]
    pub fn timeout_from_scrape(&self) -> bool {
        self.timeout_from_scrape
    }

    /// Which targets the module may probe; `None` for any.
    #[must_use]
    pub fn target_policy(&self) -> Option<&TargetPolicy> {
        self.target_policy.as_deref()
    }

    /// Why this module cannot probe without a target, or `None` if it
    /// can: an `exec` module whose command holds no placeholder.
    #[must_use]
    pub(crate) fn why_a_target_is_needed(&self) -> Option<String> {
        match &self.prober {
            Prober::Exec(exec) => exec
                .first_placeholder()
                .map(|placeholder| format!("its command uses {placeholder}")),
            prober => Some(format!("it probes a port (prober {})", prober.name())),
        }
    }
}

/// The modules every config has: `tcp_halfopen` and `tcp_connect`, each
/// with the defaults of [`Module::tcp_halfopen`] (5 s timeout). A config file's
/// `modules:` may redefine them by name.
#[must_use]
pub(crate) fn builtin_modules() -> BTreeMap<String, Module> {
    [Module::tcp_halfopen(), Module::tcp_connect()]
        .into_iter()
        .map(|module| (module.prober.name().to_owned(), module))
        .collect()
}

fn default_timeout() -> PromDuration {
    PromDuration(Duration::from_secs(5))
}

fn default_true() -> bool {
    true
}

fn default_attempts() -> u32 {
    1
}

fn default_attempt_interval() -> PromDuration {
    PromDuration(Duration::from_millis(100))
}

fn attempts_in_range<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let attempts = u32::deserialize(deserializer)?;
    if ATTEMPTS_RANGE.contains(&attempts) {
        return Ok(attempts);
    }
    Err(serde::de::Error::custom(format!(
        "{attempts} is out of range: use a count from {} to {}",
        ATTEMPTS_RANGE.start(),
        ATTEMPTS_RANGE.end()
    )))
}

fn attempt_interval_in_range<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<PromDuration, D::Error> {
    PromDuration::deserialize_within(
        deserializer,
        ATTEMPT_INTERVAL_RANGE,
        "; shorter floods the target with SYNs",
    )
}

fn attempt_timeout_in_range<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<PromDuration>, D::Error> {
    PromDuration::deserialize_within(deserializer, TIMEOUT_RANGE, "").map(Some)
}

fn timeout_in_range<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<PromDuration>, D::Error> {
    PromDuration::deserialize_within(
        deserializer,
        TIMEOUT_RANGE,
        "; the kernel gives up on an unanswered SYN after about 2 minutes anyway",
    )
    .map(Some)
}

/// Whether `name` may name a module or a group: non-empty, and only ASCII
/// letters, digits, `-`, `_` and `.`. Names appear in URLs
/// (`/probe?module=`, `/health/<group>`), in label values and in logs,
/// where these characters need no escaping anywhere.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The error for a name that [`is_plain_name`] refuses.
fn plain_name_error(kind: &str, name: &str, appears_in: &str) -> String {
    format!(
        "{kind} name {name:?} must be non-empty and use only letters, digits, '-', '_' and '.', as it appears in {appears_in}"
    )
}

/// A module name, checked by [`is_plain_name`]; the map is then stored
/// with plain `String` keys, which is what every user of it looks up by.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct ModuleName(String);

impl<'de> Deserialize<'de> for ModuleName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        if !is_plain_name(&name) {
            return Err(serde::de::Error::custom(plain_name_error(
                "module",
                &name,
                "/probe?module=<name> and in the module label",
            )));
        }
        Ok(Self(name))
    }
}

/// The file as written: [`Config`] with its modules still in one map,
/// those that run and those set aside.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFields {
    #[serde(default)]
    modules: BTreeMap<ModuleName, ModuleEntry>,
    #[serde(default)]
    targets: Vec<TargetBlock>,
    #[serde(default)]
    groups: BTreeMap<GroupName, Group>,
}

impl From<ConfigFields> for Config {
    fn from(fields: ConfigFields) -> Self {
        let mut modules = BTreeMap::new();
        let mut unsupported = BTreeMap::new();
        for (name, entry) in fields.modules {
            match entry {
                ModuleEntry::Runs(module) => {
                    modules.insert(name.0, module);
                }
                ModuleEntry::SetAside(set_aside) => {
                    unsupported.insert(name.0, set_aside);
                }
            }
        }
        Self {
            modules,
            unsupported,
            notes: Vec::new(),
            targets: fields.targets,
            groups: fields.groups,
        }
    }
}

/// Reads a list and stops at the first item past `most`, refused in
/// `too_many`'s words, so that a huge list is not kept in full only to be
/// refused; `check_first` is asked about the first item as soon as it is
/// read, so that its error comes before the list's. serde-saphyr places
/// the error at the start of the list.
fn bounded_list<'de, D, T>(
    deserializer: D,
    expecting: &'static str,
    most: usize,
    too_many: fn() -> String,
    check_first: fn(&T) -> Result<(), String>,
) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Bounded<T> {
        expecting: &'static str,
        most: usize,
        too_many: fn() -> String,
        check_first: fn(&T) -> Result<(), String>,
        item: PhantomData<T>,
    }

    impl<'de, T: Deserialize<'de>> Visitor<'de> for Bounded<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                if items.len() == self.most {
                    return Err(serde::de::Error::custom((self.too_many)()));
                }
                if items.is_empty() {
                    (self.check_first)(&item).map_err(serde::de::Error::custom)?;
                }
                items.push(item);
            }
            Ok(items)
        }
    }

    deserializer.deserialize_seq(Bounded {
        expecting,
        most,
        too_many,
        check_first,
        item: PhantomData,
    })
}

/// serde-saphyr's options: unknown tags are errors, and the budget admits
/// a config with [`MAX_SCHEDULED_TARGETS`] and room for groups and labels,
/// while a file of tiny nodes within [`MAX_CONFIG_BYTES`] is still refused.
fn yaml_options() -> serde_saphyr::Options {
    const MAX_NODES: usize = 4 * MAX_SCHEDULED_TARGETS;
    serde_saphyr::options! {
        reject_unsupported_tags: true,
        // blackbox_exporter's send and expect_bytes take !!binary bytes,
        // which need not be UTF-8: they decode it themselves (YamlBytes).
        ignore_binary_tag_for_string: true,
        budget: serde_saphyr::budget! {
            max_nodes: MAX_NODES,
            // Each node is an event, and so is the end of each collection.
            max_events: 2 * MAX_NODES,
            max_total_scalar_bytes: MAX_CONFIG_BYTES as usize,
        },
    }
}

/// Reads the config file at `path` within the limits: a regular file, at
/// most [`MAX_CONFIG_BYTES`], UTF-8.
pub(crate) fn read_config_file(path: &Path) -> Result<String, ConfigError> {
    let file_name = path.display().to_string();
    let bytes = read_bounded(path, MAX_CONFIG_BYTES).map_err(|refusal| {
        let message = match refusal {
            Refusal::NotRegular(_) => format!("{refusal}: point --config.file at a YAML file"),
            Refusal::TooLarge { size, .. } => too_large(size),
            Refusal::Unreadable(_) => refusal.to_string(),
        };
        ConfigError::about_file(&file_name, message)
    })?;
    utf8_text(bytes).map_err(|message| ConfigError::about_file(&file_name, message))
}

/// `bytes` as text, or what to do about a file that is not UTF-8.
pub(crate) fn utf8_text(bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|error| {
        format!(
            "the file is not UTF-8 text (invalid byte at offset {}): save it as UTF-8",
            error.utf8_error().valid_up_to()
        )
    })
}

fn too_large(size: u64) -> String {
    let refusal = Refusal::TooLarge {
        size,
        limit: MAX_CONFIG_BYTES,
    };
    format!(
        "{refusal}; a config of {MAX_SCHEDULED_TARGETS} scheduled targets, the most allowed, fits: split larger lists over several exporters, each with its own file"
    )
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

    /// Reads and validates a config file, and checks it against this
    /// host as [`parse_for_this_host`](Self::parse_for_this_host) does.
    ///
    /// Only a regular file is read: a FIFO, socket, device or directory is
    /// refused without waiting on it, and a file over [`MAX_CONFIG_BYTES`]
    /// before any of it is read.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file and, for content errors, the line,
    /// column and field.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = read_config_file(path)?;
        Self::parse_for_this_host(&path.display().to_string(), &text)
    }

    /// Parses and validates config text as [`parse`](Self::parse) does,
    /// then checks what would fail every probe of a module on this host:
    /// an `exec` program that is not found or not executable, a
    /// `source_ip_address` that the host cannot bind; and notes a
    /// `source_interface` or `mark` the host refuses now. Every load of the
    /// exporter (start-up, reload, `--config.check`) goes through here.
    ///
    /// # Errors
    /// A [`ConfigError`] with the line, column and field at fault.
    pub fn parse_for_this_host(file: &str, text: &str) -> Result<Self, ConfigError> {
        let mut config = Self::parse(file, text)?;
        host::check(file, text, &config)?;
        let notes = host::tls_file_notes(file, text, &config);
        config.notes.extend(notes);
        let notes = host::route_notes(file, text, &config);
        config.notes.extend(notes);
        let notes = host::raw_engine_notes(file, text, &config);
        config.notes.extend(notes);
        Ok(config)
    }

    /// Parses and validates config text; `file` names it in errors. The
    /// host is not looked at: see [`parse_for_this_host`](Self::parse_for_this_host).
    ///
    /// # Errors
    /// A [`ConfigError`] with the line, column and field at fault.
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::about_file(file, too_large(text.len() as u64)));
        }
        let mut config: Self = parse_yaml(file, text)?;
        let mut modules = builtin_modules();
        modules.append(&mut config.modules);
        // A built-in name given to a module set aside is that module's.
        modules.retain(|name, _| !config.unsupported.contains_key(name));
        host::locate_probers(file, text, &mut config.unsupported);
        config.modules = modules;
        config.notes = host::min_version_notes(file, text, &config.modules);
        scheduled::validate(file, &config)?;
        policy::check_scheduled(file, &config)?;
        Ok(config)
    }

    /// What a load of this config, from `file`, reports without refusing
    /// it, located: each module set aside ([`Config::unsupported`]), then
    /// what it notes about modules it runs (a `tls_config.min_version`
    /// below TLS 1.2, which is the floor here; a `tls_config` file that
    /// cannot serve now, whose module's probes fail as `tls`; a
    /// `source_interface` that does not exist or a `mark` without its
    /// capability, whose module's probes fail as `local`).
    #[must_use]
    pub fn warnings(&self, file: &str) -> Vec<ConfigError> {
        let notes = self.notes.iter().map(|note| ConfigError {
            file: file.to_owned(),
            ..note.clone()
        });
        self.unsupported
            .iter()
            .map(|(name, unsupported)| ConfigError {
                file: file.to_owned(),
                position: unsupported.at,
                field: Some(format!("modules.{name}.prober")),
                message: format!(
                    "module {name:?} {}; it is left out, and /probe?module={name} answers 400",
                    unsupported.why
                ),
            })
            .chain(notes)
            .collect()
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

/// Deserialises `text` as YAML within [`yaml_options`]' limits; `file`
/// names it in errors, which carry the line, column and field at fault.
/// Every YAML file the exporter reads goes through here.
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, ConfigError> {
    // serde_path_to_error knows the field, serde-saphyr the position;
    // the closure can only return saphyr's error, so the path leaves by
    // the side.
    let field_path = RefCell::new(None);
    let result = serde_saphyr::with_deserializer_from_str_with_options(
        text,
        yaml_options(),
        |deserializer| {
            serde_path_to_error::deserialize(deserializer).map_err(|error| {
                let path = error.path().to_string();
                if path != "." {
                    *field_path.borrow_mut() = Some(path);
                }
                error.into_inner()
            })
        },
    );
    result.map_err(|error| ConfigError::from_yaml(file, field_path.into_inner(), &error))
}

/// `names` joined with `, `, for error messages that list what exists.
fn module_list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    names.map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// Where a config came from: a file, or the embedded default.
#[derive(Clone, Debug)]
pub(crate) enum ConfigSource {
    /// `--config.file`.
    File(PathBuf),
    /// No file given: [`EMBEDDED_DEFAULT_YAML`].
    Embedded,
    /// Text given by a library user; `name` stands for the file.
    Text {
        /// What error messages call it.
        name: String,
        /// The YAML.
        yaml: String,
    },
    /// A config built in code, such as the health-checker mode's from its
    /// flags; `name` says where it came from.
    Built {
        /// What logs call it.
        name: String,
        /// The config.
        config: Box<Config>,
    },
}

impl ConfigSource {
    /// Reads the config from this source.
    ///
    /// # Errors
    /// See [`Config::load`].
    pub(crate) fn load(&self) -> Result<Config, ConfigError> {
        let config = match self {
            Self::File(path) => Config::load(path),
            Self::Embedded => Ok(Config::embedded_default()),
            Self::Text { name, yaml } => Config::parse_for_this_host(name, yaml),
            // health-checker's checks: a script that cannot run fails its
            // checks, as in health-checker, rather than the start-up.
            Self::Built { config, .. } => Ok(Config::clone(config)),
        }?;
        // Once per load: each module set aside and each note, where it
        // is written.
        for warning in config.warnings(&self.to_string()) {
            tracing::warn!(%warning, "config warning");
        }
        Ok(config)
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Embedded => f.write_str(EMBEDDED_DEFAULT_NAME),
            Self::Text { name, .. } | Self::Built { name, .. } => f.write_str(name),
        }
    }
}

/// Why a config was rejected, with where in which file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or `<embedded default>` for the built-in config.
    pub file: String,
    /// 1-based line and column, when the error is about the content.
    pub position: Option<(u64, u64)>,
    /// Dotted path of the field, such as `modules.web.timeout`.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error about the file as a whole, with no position or field.
    #[must_use]
    pub fn about_file(file: &str, message: String) -> Self {
        Self {
            file: file.to_owned(),
            position: None,
            field: None,
            message,
        }
    }

    /// A YAML error in the user's words (see the `words` submodule);
    /// `field` is serde_path_to_error's path.
    fn from_yaml(file: &str, field: Option<String>, error: &serde_saphyr::Error) -> Self {
        Self {
            file: file.to_owned(),
            position: error.location().map(|at| (at.line(), at.column())),
            field: field.and_then(|path| words::user_field(&path, error)),
            message: words::message(error),
        }
    }
}

impl fmt::Display for ConfigError {
    /// The file, line, column, field and message, with control characters
    /// escaped as in Rust (`\n`, `\u{1b}`). The field path and the message
    /// carry keys and values from the file, and this text reaches
    /// terminals (`--config.check`), logs and `POST /-/reload` answers: a
    /// raw ESC could drive the reader's terminal, and a newline could forge
    /// a log line or split the one-line answer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = EscapeControl(f);
        out.write_str(&self.file)?;
        if let Some((line, column)) = self.position {
            write!(out, ":{line}:{column}")?;
        }
        if let Some(field) = &self.field {
            write!(out, ": field `{field}`")?;
        }
        write!(out, ": {}", self.message)
    }
}

#[cfg(test)]
impl ConfigError {
    /// Asserts that the error reads `at` first (`file:line:column: field
    /// `name``, as the user sees it), then says each of `needles`.
    #[track_caller]
    pub(crate) fn assert_says(&self, at: &str, needles: &[&str]) {
        let text = self.to_string();
        assert!(text.starts_with(&format!("{at}: ")), "{at}: {text}");
        for needle in needles {
            assert!(self.message.contains(needle), "{needle:?}: {text}");
        }
    }
}

/// Writes through to a formatter, escaping control characters.
struct EscapeControl<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for EscapeControl<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for piece in text.split_inclusive(char::is_control) {
            let mut chars = piece.chars();
            match chars.next_back() {
                Some(last) if last.is_control() => {
                    self.0.write_str(chars.as_str())?;
                    write!(self.0, "{}", last.escape_default())?;
                }
                _ => self.0.write_str(piece)?,
            }
        }
        Ok(())
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
            assert_eq!(module.prober().kind(), kind);
            assert_eq!(module.timeout(), Duration::from_secs(5));
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
            config.modules["tcp_halfopen"].timeout(),
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
        assert_eq!(module.timeout(), Duration::from_millis(750));
        let tcp = module.tcp().unwrap();
        assert_eq!(tcp.preferred_ip_protocol, IpProtocol::Ip6);
        assert!(!tcp.ip_protocol_fallback);
        assert_eq!(tcp.source_ip_address, Some("::1".parse().unwrap()));
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
        assert!(
            error
                .message
                .contains("0s is out of range: use a duration from 1ms to 2m"),
            "{error}"
        );
    }

    #[test]
    fn unknown_prober_and_protocol_are_rejected() {
        let error = error_of("modules:\n  a:\n    prober: ping\n");
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

    /// `(yaml, field, needle)`: rejected, located at `field`, saying `needle`.
    fn assert_rejected(cases: &[(&str, &str, &str)]) {
        for (yaml, field, needle) in cases {
            let error = error_of(yaml);
            assert!(
                error.field.as_deref().is_some_and(|f| f.starts_with(field)),
                "{yaml:?}: {error}"
            );
            assert!(error.position.is_some(), "{yaml:?}: {error}");
            assert!(error.message.contains(needle), "{yaml:?}: {error}");
        }
    }

    fn assert_accepted(yamls: &[&str]) {
        for yaml in yamls {
            if let Err(error) = Config::parse("ok.yml", yaml) {
                panic!("{yaml:?} should be accepted: {error}");
            }
        }
    }

    #[test]
    fn timeouts_are_bounded_from_1ms_to_2m() {
        let module = |timeout: &str| {
            format!("modules:\n  a:\n    prober: tcp_halfopen\n    timeout: {timeout}\n")
        };
        assert_accepted(&[&module("1ms"), &module("2m"), &module("1m59s999ms")]);
        let range = "from 1ms to 2m";
        assert_rejected(&[
            (&module("0ms"), "modules.a.timeout", range),
            (&module("2m1ms"), "modules.a.timeout", range),
            (&module("1000y"), "modules.a.timeout", range),
            (
                &module("18446744073709551615ms"),
                "modules.a.timeout",
                range,
            ),
        ]);
    }

    /// A module with `timeout` and a `tcp:` block of `options`.
    fn with_attempts(timeout: &str, options: &str) -> String {
        format!(
            "modules:\n  a:\n    prober: tcp_halfopen\n    timeout: {timeout}\n    tcp:\n{options}"
        )
    }

    #[test]
    fn attempt_options_are_read_with_defaults_and_bounded() {
        let module = &Config::parse("t.yml", &with_attempts("2s", "      attempts: 5\n      attempt_interval: 200ms\n      attempt_timeout: 150ms\n      stop_on_success: false\n"))
            .unwrap()
            .modules["a"];
        let tcp = module.tcp().unwrap();
        assert_eq!((tcp.attempts, tcp.stop_on_success), (5, false));
        assert_eq!(tcp.attempt_interval.0, Duration::from_millis(200));
        assert_eq!(tcp.attempt_deadline(), Some(Duration::from_millis(150)));
        let defaults = TcpOptions::default();
        assert_eq!((defaults.attempts, defaults.stop_on_success), (1, true));
        assert_eq!(defaults.attempt_interval.0, Duration::from_millis(100));
        assert_eq!(
            defaults.attempt_deadline(),
            None,
            "one attempt has the whole timeout"
        );
        let three = TcpOptions {
            attempts: 3,
            ..TcpOptions::default()
        };
        assert_eq!(
            three.attempt_deadline(),
            Some(Duration::from_millis(100)),
            "the interval"
        );

        let option = |line: &str| with_attempts("2m", &format!("      {line}\n"));
        assert_accepted(&[
            &option("attempts: 1"),
            &option("attempts: 100"),
            &option("attempt_interval: 10ms"),
            &option("attempt_interval: 1m"),
            &option("attempt_timeout: 1ms"),
            &option("attempt_timeout: 2m"),
        ]);
        assert_rejected(&[
            (
                &option("attempts: 0"),
                "modules.a.tcp.attempts",
                "from 1 to 100",
            ),
            (
                &option("attempts: 101"),
                "modules.a.tcp.attempts",
                "from 1 to 100",
            ),
            (&option("attempts: -1"), "modules.a.tcp.attempts", ""),
            (
                &option("attempt_interval: 9ms"),
                "modules.a.tcp.attempt_interval",
                "from 10ms to 1m",
            ),
            (
                &option("attempt_interval: 1m1ms"),
                "modules.a.tcp.attempt_interval",
                "from 10ms to 1m",
            ),
            (
                &option("attempt_timeout: 0s"),
                "modules.a.tcp.attempt_timeout",
                "from 1ms to 2m",
            ),
            (
                &option("attempt_timeout: 2m1ms"),
                "modules.a.tcp.attempt_timeout",
                "from 1ms to 2m",
            ),
        ]);
    }

    #[test]
    fn attempts_that_cannot_end_within_the_timeout_are_rejected_at_the_module() {
        // 4 × 200ms + 150ms = 950ms: fits in 950ms, not in 949ms.
        let ping =
            "      attempts: 5\n      attempt_interval: 200ms\n      attempt_timeout: 150ms\n";
        assert_accepted(&[&with_attempts("950ms", ping)]);
        let error = error_of(&with_attempts("949ms", ping));
        // The check relates the module's timeout to its tcp: block, so
        // it names the module, where both are written.
        error.assert_says("bad.yml:3:5: field `modules.a`", &["950ms", "949ms"]);
        // The default attempt_timeout is the interval: 2 × 100ms + 100ms.
        assert_accepted(&[&with_attempts("300ms", "      attempts: 3\n")]);
        let error = error_of(&with_attempts("299ms", "      attempts: 3\n"));
        assert!(error.message.contains("lower attempts"), "{error}");
        // One attempt: only an explicit attempt_timeout must fit.
        assert_accepted(&[&with_attempts("1ms", "      attempt_interval: 1m\n")]);
        let error = error_of(&with_attempts("1s", "      attempt_timeout: 2s\n"));
        assert_eq!(error.field.as_deref(), Some("modules.a"), "{error}");
        // Attempts never overlap.
        let error = error_of(&with_attempts(
            "5s",
            "      attempts: 2\n      attempt_interval: 100ms\n      attempt_timeout: 101ms\n",
        ));
        assert!(error.message.contains("would overlap"), "{error}");
        assert!(error.position.is_some(), "{error}");
        // A flow-style block is located too.
        let error =
            error_of("modules:\n  a: {prober: tcp_connect, timeout: 100ms, tcp: {attempts: 2}}\n");
        assert_eq!(
            (error.field.as_deref(), error.position.map(|p| p.0)),
            (Some("modules.a"), Some(2)),
            "{error}"
        );
    }

    #[test]
    fn module_names_are_non_empty_letters_digits_dash_underscore_dot() {
        let named = |name: &str| format!("modules:\n  {name}:\n    prober: tcp_halfopen\n");
        assert_accepted(&[&named("a"), &named("http_2xx-v1.2"), &named("\"A\"")]);
        let charset = "letters, digits, '-', '_' and '.'";
        assert_rejected(&[
            (&named("\"\""), "modules", charset),
            (&named("\"a b\""), "modules", charset),
            (&named("\"a/b\""), "modules", charset),
            (&named("\"a\\tb\""), "modules", charset),
            (&named("\"a\\eb\""), "modules", charset),
            (&named("\"caf\u{e9}\""), "modules", charset),
        ]);
    }

    #[test]
    fn unknown_yaml_tags_are_errors() {
        assert_rejected(&[
            // saphyr refuses the tag before the field is entered, so the
            // path stops at the module; the position is the tag's own.
            (
                "modules:\n  a:\n    prober: tcp_halfopen\n    timeout: !custom 5s\n",
                "modules.a",
                "unsupported tag `!custom`",
            ),
            (
                "modules:\n  a: !custom\n    prober: tcp_halfopen\n",
                "modules",
                "unsupported tag `!custom`",
            ),
        ]);
        // The standard string tag stays usable.
        assert_accepted(&["modules:\n  a:\n    prober: !!str tcp_halfopen\n"]);
    }

    #[test]
    fn control_characters_are_escaped_when_an_error_is_shown() {
        let error = ConfigError {
            file: "bad\n.yml".to_owned(),
            position: Some((1, 2)),
            field: Some("modules.a\u{1b}[2J".to_owned()),
            message: "unknown field `x\u{1b}]0;owned\u{7}\ny`, \u{9b}31m caf\u{e9}".to_owned(),
        };
        let text = error.to_string();
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert_eq!(
            text,
            "bad\\n.yml:1:2: field `modules.a\\u{1b}[2J`: unknown field `x\\u{1b}]0;owned\\u{7}\\ny`, \\u{9b}31m caf\u{e9}"
        );
        // From a real file: YAML escapes put ESC and a newline in a key.
        let error =
            error_of("modules:\n  a:\n    prober: tcp_halfopen\n    \"x\\e[31my\\nz\": 1\n");
        let text = error.to_string();
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert!(text.contains("x\\u{1b}[31my\\nz"), "{text}");
    }

    /// Bytes this thread has read through system calls, from
    /// `/proc/thread-self/io`: other tests' threads do not count.
    fn bytes_read_by_this_thread() -> u64 {
        let io =
            std::fs::read_to_string("/proc/thread-self/io").expect("read /proc/thread-self/io");
        io.lines()
            .find_map(|line| line.strip_prefix("rchar: "))
            .and_then(|n| n.trim().parse().ok())
            .expect("rchar in /proc/thread-self/io")
    }

    /// `synack.yml` in a fresh directory of its own named after `name`.
    pub(super) fn temp_file(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("synack-config-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("synack.yml")
    }

    #[test]
    fn a_file_over_the_size_limit_is_refused_before_it_is_read() {
        let path = temp_file("too-big");
        let limit = MAX_CONFIG_BYTES;
        // Sparse: no disk space, but reading it would read every byte.
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(limit + 1).unwrap();
        drop(file);
        let before = bytes_read_by_this_thread();
        let result = Config::load(&path);
        let read = bytes_read_by_this_thread() - before;
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
        let error = result.expect_err("over the limit");
        assert!(
            read < 1024 * 1024,
            "read {read} bytes of a file over the limit"
        );
        assert!(
            error.message.contains("67108865 bytes") && error.message.contains("67108864"),
            "{error}"
        );
    }

    #[test]
    fn a_fifo_at_the_config_path_is_refused_without_blocking() {
        let path = temp_file("fifo");
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        assert!(
            made.is_ok_and(|status| status.success()),
            "mkfifo {}",
            path.display()
        );
        let (done, result) = std::sync::mpsc::channel();
        let loading = path.clone();
        std::thread::spawn(move || done.send(Config::load(&loading)));
        let answer = result.recv_timeout(Duration::from_secs(3));
        if answer.is_err() {
            // Release the reader that blocks in open(), so the thread ends.
            let _ = std::fs::OpenOptions::new().write(true).open(&path);
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
        let error = answer
            .expect("Config::load blocked on a FIFO for 3 s")
            .expect_err("a FIFO is not a config file");
        assert!(error.message.contains("FIFO"), "{error}");
    }

    #[test]
    fn exec_modules_are_read_and_their_errors_located() {
        let exec = |rest: &str| format!("modules:\n  zk:\n    prober: exec\n{rest}");
        let yaml = exec(
            "    timeout: 2s\n    exec:\n      command: [\"/bin/check\", \"--host\", \"{host}\"]\n      env: {ZK_MODE: follower}\n",
        );
        let module = &Config::parse("t.yml", &yaml).unwrap().modules["zk"];
        let options = module.prober().exec().unwrap();
        assert_eq!(options.command(), ["/bin/check", "--host", "{host}"]);
        assert_eq!(options.env()["ZK_MODE"], "follower");
        assert_accepted(&[&exec(
            "    exec: {command: [x]}\n    tcp: {preferred_ip_protocol: ip4}\n",
        )]);
        let command = |list: &str| exec(&format!("    exec:\n      command: {list}\n"));
        assert_rejected(&[
            (
                &exec("    timeout: 1s\n"),
                "modules.zk",
                "needs an exec: block",
            ),
            (
                "modules:\n  a:\n    prober: tcp_connect\n    exec: {command: [x]}\n",
                "modules.a",
                "exec: applies only to prober exec",
            ),
            (
                &exec("    exec: {command: [x]}\n    tcp: {preferred_ip_protocol: ip6}\n"),
                "modules.zk",
                "tcp: options do not apply to prober exec",
            ),
            (
                &command("[\"/bin/x\", \"--host={hots}\"]"),
                "modules.zk.exec.command[1]",
                "unknown placeholder {hots}",
            ),
            (
                &command("[]"),
                "modules.zk.exec.command",
                "command is empty",
            ),
            (
                &command("[\"{host}\"]"),
                "modules.zk.exec.command",
                "holds a placeholder",
            ),
            (
                &exec("    exec:\n      command: [x]\n      env: {SYNACK_TARGET: x}\n"),
                "modules.zk.exec.env",
                "reserved",
            ),
            (
                &exec("    exec:\n      command: [x]\n      env: {\"A=B\": x}\n"),
                "modules.zk.exec.env",
                "without '=' or NUL",
            ),
            (
                &exec("    exec:\n      command: [x]\n      shell: true\n"),
                "modules.zk.exec.shell",
                "unknown field",
            ),
        ]);
        let error = error_of(&command("[\"/bin/x\", \"{hots}\"]"));
        assert_eq!(
            error.position,
            Some((5, 27)),
            "at the argument itself: {error}"
        );
    }

    #[test]
    fn each_module_carries_the_options_of_its_own_prober() {
        let yaml = "modules:\n  zk:\n    prober: exec\n    timeout: 2s\n    exec: {command: [\"/bin/check\"]}\n  \
                    ping:\n    prober: tcp_connect\n    tcp: {attempts: 3}\n";
        let config = Config::parse("t.yml", yaml).unwrap();
        let zk = &config.modules["zk"];
        assert!(
            matches!(zk.prober(), Prober::Exec(options) if options.command() == ["/bin/check"])
        );
        assert_eq!((zk.tcp(), zk.timeout()), (None, Duration::from_secs(2)));
        let ping = &config.modules["ping"];
        assert!(matches!(ping.prober(), Prober::TcpConnect(options) if options.attempts == 3));
        assert_eq!(ping.prober().exec(), None);
        // Built in Rust, an exec module has its command by construction.
        let built =
            Module::exec(ExecOptions::new(vec!["/bin/check".to_owned()], BTreeMap::new()).unwrap())
                .with_timeout(Duration::from_secs(2));
        assert_eq!(&built, zk);
        assert_eq!(Module::tcp_halfopen().prober().name(), "tcp_halfopen");
    }

    #[test]
    fn an_exec_module_round_trips_without_a_tcp_block() {
        let yaml = "modules:\n  zk:\n    prober: exec\n    exec: {command: [\"/bin/check\", \"{{x}}\"], env: {A: b}}\n";
        let config = Config::parse("t.yml", yaml).unwrap();
        let shown = config.to_yaml();
        assert!(
            !shown.contains("preferred_ip_protocol: ip4\n    exec"),
            "{shown}"
        );
        let again = Config::parse("again", &shown).unwrap();
        assert_eq!(again.modules, config.modules);
    }

    #[test]
    fn trace_on_timeout_is_read_by_every_tcp_prober_and_shown() {
        for prober in ["tcp_halfopen", "tcp_connect", "tcp"] {
            let yaml = format!(
                "modules:\n  m:\n    prober: {prober}\n    tcp: {{trace_on_timeout: true}}\n"
            );
            let config = Config::parse("t.yml", &yaml).unwrap();
            assert!(
                config.modules["m"].tcp().unwrap().trace_on_timeout,
                "{yaml}"
            );
            let shown = config.to_yaml();
            assert!(shown.contains("trace_on_timeout: true\n"), "{shown}");
            let again = Config::parse("again", &shown).unwrap();
            assert_eq!(again.modules, config.modules);
        }
        let plain = Config::parse("t.yml", "modules:\n  m:\n    prober: tcp_halfopen\n").unwrap();
        assert!(!plain.modules["m"].tcp().unwrap().trace_on_timeout);
        assert!(plain.to_yaml().contains("trace_on_timeout: false\n"));
        assert_rejected(&[(
            "modules:\n  m:\n    prober: tcp_halfopen\n    tcp: {trace_on_timeout: 3}\n",
            "modules.m.tcp.trace_on_timeout",
            "",
        )]);
    }

    #[test]
    fn expect_port_is_read_by_every_tcp_prober_shown_and_refused_with_a_session() {
        let module = |prober: &str, tcp: &str| {
            format!("modules:\n  m:\n    prober: {prober}\n    timeout: 2s\n    tcp: {{{tcp}}}\n")
        };
        for prober in ["tcp_halfopen", "tcp_connect", "tcp"] {
            for (word, expect) in ExpectPort::WORDS {
                let yaml = module(prober, &format!("expect_port: {word}"));
                let config = Config::parse("t.yml", &yaml).unwrap();
                let tcp = config.modules["m"].tcp().unwrap();
                assert_eq!(tcp.expect_port, expect, "{yaml}");
                let shown = config.to_yaml();
                assert!(shown.contains(&format!("expect_port: {word}\n")), "{shown}");
                let again = Config::parse("again", &shown).unwrap();
                assert_eq!(again.modules, config.modules);
            }
            let config = Config::parse("t.yml", &module(prober, "")).unwrap();
            assert_eq!(
                config.modules["m"].tcp().unwrap().expect_port,
                ExpectPort::Open
            );
        }
        assert_rejected(&[
            (
                &module("tcp_halfopen", "expect_port: clsoed"),
                "modules.m.tcp.expect_port",
                "unknown value \"clsoed\": use one of open, closed, filtered",
            ),
            (
                &module("tcp", "tls: true, expect_port: closed"),
                "modules.m.tcp",
                "expect_port: closed sends no more than a SYN, and tls and query_response need a connection",
            ),
            (
                &module("tcp", "query_response: [{send: hi}], expect_port: filtered"),
                "modules.m.tcp",
                "expect_port: filtered sends no more than a SYN",
            ),
        ]);
        // Open is what a session does anyway.
        assert_accepted(&[&module("tcp", "tls: true, expect_port: open")]);
    }

    #[test]
    fn engine_is_read_shown_and_refused_where_a_raw_syn_cannot_serve() {
        let module = |prober: &str, tcp: &str| {
            format!("modules:\n  m:\n    prober: {prober}\n    timeout: 2s\n    tcp: {{{tcp}}}\n")
        };
        for prober in ["tcp_halfopen", "tcp"] {
            for (word, engine) in Engine::WORDS {
                let yaml = module(prober, &format!("engine: {word}"));
                let config = Config::parse("t.yml", &yaml).unwrap();
                assert_eq!(config.modules["m"].tcp().unwrap().engine, engine, "{yaml}");
                let shown = config.to_yaml();
                assert!(shown.contains(&format!("engine: {word}\n")), "{shown}");
                let again = Config::parse("again", &shown).unwrap();
                assert_eq!(again.modules, config.modules);
            }
            let config = Config::parse("t.yml", &module(prober, "")).unwrap();
            assert_eq!(config.modules["m"].tcp().unwrap().engine, Engine::Socket);
        }
        // What a raw SYN serves with: every option but a module's own
        // interface and mark, and a negative check of tcp_connect (half-open).
        assert_accepted(&[
            &module(
                "tcp_halfopen",
                "engine: raw, attempts: 3, attempt_interval: 500ms, stop_on_success: false, \
                 source_ip_address: 127.0.0.1, dscp: 46, expect_port: closed, \
                 trace_on_timeout: true, preferred_ip_protocol: ip6",
            ),
            &module("tcp_halfopen", "engine: raw, ip_addresses: all"),
            &module("tcp", "engine: raw, half_open: true"),
            &module("tcp_connect", "engine: raw, expect_port: filtered"),
        ]);
        assert_rejected(&[
            (
                &module("tcp_halfopen", "engine: rwa"),
                "modules.m.tcp.engine",
                "unknown value \"rwa\": use one of socket, raw",
            ),
            (
                &module("tcp_connect", "engine: raw"),
                "modules.m",
                "engine: raw sends no more than a SYN, and prober tcp_connect completes the handshake",
            ),
            (
                &module("tcp", "engine: raw, half_open: false"),
                "modules.m.tcp",
                "half_open: false completes the handshake: remove engine: raw, or use engine: socket",
            ),
            (
                &module("tcp", "engine: raw, tls: true"),
                "modules.m.tcp",
                "tls and query_response need a connection: remove engine: raw",
            ),
            (
                &module("tcp", "engine: raw, query_response: [{expect: hi}]"),
                "modules.m.tcp",
                "engine: raw sends no more than a SYN",
            ),
            (
                &module("tcp_halfopen", "engine: raw, source_interface: lo"),
                "modules.m.tcp",
                "cannot take a module's own source_interface: remove source_interface, or use engine: socket",
            ),
            (
                &module("tcp_halfopen", "engine: raw, mark: 7"),
                "modules.m.tcp",
                "own mark: remove mark",
            ),
            (&module("exec", "engine: raw"), "modules.m", ""),
        ]);
    }

    #[test]
    fn ip_addresses_are_read_by_every_tcp_prober_shown_and_refused_with_a_session() {
        let module = |prober: &str, tcp: &str| {
            format!("modules:\n  m:\n    prober: {prober}\n    timeout: 2s\n    tcp: {{{tcp}}}\n")
        };
        for prober in ["tcp_halfopen", "tcp_connect", "tcp"] {
            let config = Config::parse("t.yml", &module(prober, "")).unwrap();
            let tcp = config.modules["m"].tcp().unwrap();
            assert_eq!(
                (tcp.ip_addresses, tcp.ip_addresses_success),
                (IpAddresses::First, IpAddressesSuccess::Any)
            );
            let yaml = module(prober, "ip_addresses: all, ip_addresses_success: all");
            let config = Config::parse("t.yml", &yaml).unwrap();
            let tcp = config.modules["m"].tcp().unwrap();
            assert_eq!(
                (tcp.ip_addresses, tcp.ip_addresses_success),
                (IpAddresses::All, IpAddressesSuccess::All)
            );
            assert!(
                config.modules["m"]
                    .prober()
                    .series_label_names()
                    .contains(&"address")
            );
            let shown = config.to_yaml();
            assert!(shown.contains("ip_addresses: all\n"), "{shown}");
            assert!(shown.contains("ip_addresses_success: all\n"), "{shown}");
            let again = Config::parse("again", &shown).unwrap();
            assert_eq!(again.modules, config.modules);
        }
        assert_rejected(&[
            (
                &module("tcp_halfopen", "ip_addresses: every"),
                "modules.m.tcp.ip_addresses",
                "unknown value \"every\": use one of first, all",
            ),
            (
                &module("tcp_connect", "ip_addresses_success: most"),
                "modules.m.tcp.ip_addresses_success",
                "unknown value \"most\": use one of any, all",
            ),
            (
                &module("tcp", "tls: true, ip_addresses: all"),
                "modules.m.tcp",
                "ip_addresses: all probes every address with a SYN at once, and tls and query_response hold one connection",
            ),
            // A trace per address would send up to 16 x 30 SYNs.
            (
                &module("tcp_halfopen", "ip_addresses: all, trace_on_timeout: true"),
                "modules.m.tcp",
                "trace_on_timeout traces one address",
            ),
        ]);
        assert_accepted(&[&module("tcp", "tls: true, ip_addresses: first")]);
        let labelled = format!(
            "{}targets:\n  - module: m\n    targets: [\"a.example:80\"]\n    labels: {{address: x}}\n",
            module("tcp_halfopen", "ip_addresses: all")
        );
        assert_rejected(&[(
            &labelled,
            "targets[0].labels.address",
            "label name \"address\" is set by the series of module \"m\"",
        )]);
        assert_accepted(&[&labelled.replace("ip_addresses: all", "ip_addresses: first")]);
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
