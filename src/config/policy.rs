//! A module's `target_policy`: which targets its probes may be aimed at.
//!
//! ```yaml
//! target_policy:
//!   allow: ["10.0.0.0/8", "[2001:db8::]/32:443", "*.db.internal:5432", "127.0.0.1:8000-9000"]
//!   deny:  ["10.0.0.1"]
//! ```
//!
//! # Entries
//!
//! An entry is a host pattern with an optional port part:
//!
//! - **Host**: an IPv4 address or CIDR (`10.0.0.1`, `10.0.0.0/8`); an
//!   IPv6 address or CIDR, in brackets when a port follows
//!   (`[2001:db8::]/32:443`, `[::1]:9100`, or bare `2001:db8::/32`); a
//!   host name (`db.internal`); a name glob whose first label is `*`
//!   (`*.db.internal`), which matches one or more labels before the rest,
//!   so `a.db.internal` and `a.b.db.internal` but not `db.internal`
//!   itself; or `*` alone, any host. `*` anywhere else is an error, as are
//!   CIDRs with host bits set (`10.0.0.1/8`: write `10.0.0.0/8`).
//! - **Port**: `:443`, a range `:8000-9000`, or `:*`; without one, any port.
//!
//! Names compare without regard to ASCII case and to one trailing dot
//! (`DB.internal.` is `db.internal`). IPv4-mapped IPv6 addresses
//! (`::ffff:10.0.0.1`) are IPv4 addresses here, in entries and in the
//! addresses checked, so that they cannot slip past an IPv4 `deny`.
//!
//! # Checks
//!
//! `deny` wins over `allow`; without `allow`, whatever is not denied is
//! allowed. A target is checked twice, both times before any packet:
//!
//! 1. **As written** ([`TargetPolicy::check_target`]), before any lookup:
//!    a name against the name entries and `*`, an IP literal against the
//!    address entries. A name that no `allow` entry could cover (no name
//!    entry matches, no address entry has its port) is refused without
//!    a DNS query.
//! 2. **The address to be probed** ([`TargetPolicy::check_address`]),
//!    after resolution: `deny`'s address entries apply to every target, so
//!    a name that resolves into a denied network is refused, which closes
//!    DNS rebinding. When a name was allowed by a name entry of `allow`,
//!    its address need only pass `deny` (the operator trusts that zone);
//!    otherwise the address must match an `allow` entry.
//!
//! Each list holds at most [`MAX_POLICY_ENTRIES`] entries; they are tried
//! in order, a few nanoseconds each.

#![forbid(unsafe_code)]

use super::{Config, ConfigError, ProberKind, scheduled};
use crate::target::{Host, Target};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The most entries in each of `allow` and `deny`. A thousand covers a
/// generated list of every subnet of a large site; each probe tries them
/// in order, so the bound also bounds the check's cost (about 10 µs).
pub(crate) const MAX_POLICY_ENTRIES: usize = 1000;

/// A module's `target_policy`; see the module docs. Build one with
/// [`TargetPolicy::new`] from the entries as the config writes them.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetPolicy {
    /// What may be probed; empty for everything not denied.
    #[serde(
        default,
        deserialize_with = "bounded_entries",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) allow: Vec<PolicyEntry>,
    /// What may never be probed; wins over `allow`.
    #[serde(
        default,
        deserialize_with = "bounded_entries",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) deny: Vec<PolicyEntry>,
}

/// One entry of `allow` or `deny`: a host pattern and a port range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PolicyEntry {
    host: HostPattern,
    /// Inclusive; `1..=65535` for any port.
    ports: (u16, u16),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    /// `*`: every name and every address.
    Any,
    /// An address with a prefix length; IPv4-mapped ones are stored as IPv4.
    Net { network: IpAddr, prefix: u8 },
    /// A name, lowercase without the trailing dot; `wildcard` for `*.name`,
    /// which matches names with at least one more label in front.
    Name { name: Box<str>, wildcard: bool },
}

/// Why a target was refused: the one line `/probe` answers with 403.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PolicyRefusal(String);

impl fmt::Display for PolicyRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused by the module's target_policy: {}", self.0)
    }
}

impl std::error::Error for PolicyRefusal {}

/// What the check before resolution found, for the check after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cleared {
    /// Allowed by a name entry (or `*`) of `allow`: the address need only
    /// pass `deny`.
    by_name: bool,
}

impl TargetPolicy {
    /// A policy from `allow` and `deny` entries written as in the config
    /// (`10.0.0.0/8`, `[2001:db8::]/32:443`, `*.db.internal:5432-5433`, `*`).
    ///
    /// # Errors
    /// The config's one line on the first entry that does not parse, or on
    /// a list longer than the config allows (1000 entries).
    pub fn new<'a>(
        allow: impl IntoIterator<Item = &'a str>,
        deny: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, String> {
        let entries = |texts: &mut dyn Iterator<Item = &'a str>| {
            let mut entries = Vec::new();
            for text in texts {
                if entries.len() == MAX_POLICY_ENTRIES {
                    return Err(too_many_entries());
                }
                entries.push(PolicyEntry::parse(text)?);
            }
            Ok(entries)
        };
        Ok(Self {
            allow: entries(&mut allow.into_iter())?,
            deny: entries(&mut deny.into_iter())?,
        })
    }

    /// The check before resolution; see the module docs.
    ///
    /// # Errors
    /// The refusal, when the target is denied or no `allow` entry can cover it.
    pub(crate) fn check_target(&self, target: &Target) -> Result<Cleared, PolicyRefusal> {
        let port = target.port;
        let name = match &target.host {
            Host::Ip(ip) => {
                self.check_address(Cleared { by_name: false }, *ip, port)?;
                return Ok(Cleared { by_name: false });
            }
            Host::Name(name) => name.strip_suffix('.').unwrap_or(name),
        };
        if let Some(entry) = self.deny.iter().find(|e| e.matches_name(name, port)) {
            return Err(PolicyRefusal(format!(
                "{name}:{port} matches deny entry {entry}"
            )));
        }
        if self.allow.is_empty() {
            return Ok(Cleared { by_name: false });
        }
        if self.allow.iter().any(|e| e.matches_name(name, port)) {
            return Ok(Cleared { by_name: true });
        }
        if self
            .allow
            .iter()
            .any(|e| matches!(e.host, HostPattern::Net { .. }) && e.has_port(port))
        {
            // An address entry may cover what the name resolves to.
            return Ok(Cleared { by_name: false });
        }
        Err(PolicyRefusal(format!(
            "{name}:{port} matches no allow entry"
        )))
    }

    /// The check of the address about to be probed; see the module docs.
    ///
    /// # Errors
    /// The refusal, when the address is denied, or must be allowed and is not.
    pub(crate) fn check_address(
        &self,
        cleared: Cleared,
        ip: IpAddr,
        port: u16,
    ) -> Result<(), PolicyRefusal> {
        let ip = reached(ip.to_canonical());
        let shown = SocketShown(ip, port);
        if let Some(entry) = self.deny.iter().find(|e| e.matches_address(ip, port)) {
            return Err(PolicyRefusal(format!("{shown} is in deny entry {entry}")));
        }
        if cleared.by_name
            || self.allow.is_empty()
            || self.allow.iter().any(|e| e.matches_address(ip, port))
        {
            return Ok(());
        }
        Err(PolicyRefusal(format!("{shown} matches no allow entry")))
    }

    /// The whole check of a target whose address the exporter never sees
    /// (an `exec` module's command resolves names itself): a name must
    /// match a name entry of `allow` when there is an `allow`, since no
    /// address entry can be checked for it.
    ///
    /// # Errors
    /// The refusal.
    pub(crate) fn check_unresolved(&self, target: &Target) -> Result<(), PolicyRefusal> {
        let cleared = self.check_target(target)?;
        match &target.host {
            Host::Name(name) if !cleared.by_name && !self.allow.is_empty() => {
                Err(PolicyRefusal(format!(
                    "{name}:{} matches no name entry of allow, and this module's command \
                     resolves names itself, so address entries cannot cover it",
                    target.port
                )))
            }
            _ => Ok(()),
        }
    }
}

/// An address and port as in a target: `[::1]:80`, `10.0.0.1:80`.
struct SocketShown(IpAddr, u16);

impl fmt::Display for SocketShown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        std::net::SocketAddr::new(self.0, self.1).fmt(f)
    }
}

impl PolicyEntry {
    fn has_port(&self, port: u16) -> bool {
        (self.ports.0..=self.ports.1).contains(&port)
    }

    /// Whether a name (without its trailing dot) and port match.
    fn matches_name(&self, name: &str, port: u16) -> bool {
        if !self.has_port(port) {
            return false;
        }
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Net { .. } => false,
            HostPattern::Name {
                name: pattern,
                wildcard: false,
            } => name.eq_ignore_ascii_case(pattern),
            HostPattern::Name {
                name: pattern,
                wildcard: true,
            } => {
                // At least one label, then a dot, then the pattern.
                let (name, pattern) = (name.as_bytes(), pattern.as_bytes());
                name.len() > pattern.len() + 1
                    && name[name.len() - pattern.len()..].eq_ignore_ascii_case(pattern)
                    && name[name.len() - pattern.len() - 1] == b'.'
            }
        }
    }

    /// Whether a canonical address and port match.
    fn matches_address(&self, ip: IpAddr, port: u16) -> bool {
        if !self.has_port(port) {
            return false;
        }
        match self.host {
            HostPattern::Any => true,
            HostPattern::Name { .. } => false,
            HostPattern::Net { network, prefix } => in_network(ip, network, prefix),
        }
    }

    /// Parses one entry; the error says what to change.
    fn parse(text: &str) -> Result<Self, String> {
        let fail = |why: &str| Err(format!("target_policy entry {text:?}: {why}"));
        if text.is_empty() {
            return fail("empty; write a CIDR, an address or a host name, with an optional :port");
        }
        if let Some(c) = text.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return fail(&format!("contains {c:?}; remove it"));
        }
        let (host_text, ports_text) = split_host_and_ports(text);
        let ports = match ports_text {
            None => (1, u16::MAX),
            Some(ports) => match parse_ports(ports) {
                Ok(ports) => ports,
                Err(why) => return fail(&why),
            },
        };
        let host = match parse_host(host_text) {
            Ok(host) => host,
            Err(why) => return fail(&why),
        };
        Ok(Self { host, ports })
    }
}

/// Splits `host[:ports]`: a bracketed IPv6 host ends at `]` (and its
/// `/prefix`); an unbracketed IPv6 host (two colons or more) has no port.
fn split_host_and_ports(text: &str) -> (&str, Option<&str>) {
    if text.starts_with('[') {
        if let Some(close) = text.find(']') {
            let rest = &text[close + 1..];
            let prefix_end = rest.find(':').map_or(text.len(), |colon| close + 1 + colon);
            let ports = (prefix_end < text.len()).then(|| &text[prefix_end + 1..]);
            return (&text[..prefix_end], ports);
        }
        return (text, None);
    }
    if text.matches(':').count() >= 2 {
        return (text, None);
    }
    match text.rsplit_once(':') {
        Some((host, ports)) => (host, Some(ports)),
        None => (text, None),
    }
}

fn parse_ports(text: &str) -> Result<(u16, u16), String> {
    if text == "*" {
        return Ok((1, u16::MAX));
    }
    let port = |part: &str| {
        let canonical =
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) && !part.starts_with('0');
        canonical
            .then(|| part.parse::<u16>().ok())
            .flatten()
            .ok_or_else(|| {
                format!("port {part:?} is not a number from 1 to 65535 (without leading zeros)")
            })
    };
    let (low, high) = match text.split_once('-') {
        Some((low, high)) => (port(low)?, port(high)?),
        None => {
            let single = port(text)?;
            (single, single)
        }
    };
    if low > high {
        return Err(format!(
            "port range {text} runs backwards: write {high}-{low}"
        ));
    }
    Ok((low, high))
}

fn parse_host(text: &str) -> Result<HostPattern, String> {
    if text == "*" {
        return Ok(HostPattern::Any);
    }
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let inner = address
        .strip_prefix('[')
        .map(|rest| rest.strip_suffix(']').ok_or("a '[' without its ']'"))
        .transpose()?;
    let ip = match inner {
        Some(inner) => {
            Some(IpAddr::V6(inner.parse::<Ipv6Addr>().map_err(|_| {
                format!("{inner:?} in brackets is not an IPv6 address")
            })?))
        }
        None => address.parse::<IpAddr>().ok(),
    };
    let Some(ip) = ip else {
        if prefix.is_some() {
            return Err(format!("{address:?} before the '/' is not an IP address"));
        }
        return parse_name(text);
    };
    let most = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => most,
        Some(prefix) => prefix
            .parse::<u8>()
            .ok()
            .filter(|len| *len <= most && (prefix == "0" || !prefix.starts_with('0')))
            .ok_or_else(|| format!("prefix length {prefix:?} is not a number from 0 to {most}"))?,
    };
    if masked(ip, prefix) != ip {
        return Err(format!(
            "{text} has bits set past the prefix length: write {}/{prefix}",
            masked(ip, prefix)
        ));
    }
    let (network, prefix) = canonical_network(ip, prefix);
    Ok(HostPattern::Net { network, prefix })
}

/// A host name or `*.name`, checked with the rules of targets.
fn parse_name(text: &str) -> Result<HostPattern, String> {
    let (rest, wildcard) = match text.strip_prefix("*.") {
        Some(rest) => (rest, true),
        None => (text, false),
    };
    if rest.contains('*') {
        return Err(
            "'*' is a wildcard only as the whole first label (*.example.org) or as the whole host"
                .to_owned(),
        );
    }
    match Target::parse(&format!("{rest}:1")) {
        Ok(Target {
            host: Host::Name(name),
            ..
        }) => {
            let name = name.strip_suffix('.').unwrap_or(&name).to_ascii_lowercase();
            Ok(HostPattern::Name {
                name: name.into(),
                wildcard,
            })
        }
        Ok(_) => Err(format!("{rest:?} after '*.' is an address, not a name")),
        Err(error) => Err(error.to_string().replacen("target", "host", 1)),
    }
}

/// IPv4-mapped networks (`::ffff:0:0/96` and inside) as IPv4 ones.
fn canonical_network(ip: IpAddr, prefix: u8) -> (IpAddr, u8) {
    match ip {
        IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => (IpAddr::V4(v4), prefix - 96),
            None => (ip, prefix),
        },
        _ => (ip, prefix),
    }
}

/// `ip` with the bits past `prefix` cleared.
fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// Whether canonical `ip` is in `network/prefix`; families never mix.
fn in_network(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
            masked(ip, prefix) == network
        }
        _ => false,
    }
}

impl fmt::Display for PolicyEntry {
    /// The entry in its canonical form, which parses back to the same entry.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_port = self.ports != (1, u16::MAX);
        match &self.host {
            HostPattern::Any => f.write_str("*")?,
            HostPattern::Name { name, wildcard } => {
                write!(f, "{}{name}", if *wildcard { "*." } else { "" })?;
            }
            HostPattern::Net { network, prefix } => {
                let full = if network.is_ipv4() { 32 } else { 128 };
                match (network, with_port) {
                    (IpAddr::V6(v6), true) => write!(f, "[{v6}]")?,
                    _ => write!(f, "{network}")?,
                }
                if *prefix != full {
                    write!(f, "/{prefix}")?;
                }
            }
        }
        match self.ports {
            _ if !with_port => Ok(()),
            (low, high) if low == high => write!(f, ":{low}"),
            (low, high) => write!(f, ":{low}-{high}"),
        }
    }
}

impl Serialize for PolicyEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PolicyEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for PolicyEntry {
    type Err = String;

    /// Parses an entry as the config does: `10.0.0.0/8`, `*.db.internal:5432`.
    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

/// The one line on a list of entries longer than [`MAX_POLICY_ENTRIES`].
fn too_many_entries() -> String {
    format!(
        "more than {MAX_POLICY_ENTRIES} entries: merge addresses into CIDRs, or names under a *. glob"
    )
}

/// Reads a list of entries and stops at the first past [`MAX_POLICY_ENTRIES`].
fn bounded_entries<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<PolicyEntry>, D::Error> {
    super::bounded_list(
        deserializer,
        "a list of CIDRs, addresses or host names, each with an optional :port",
        MAX_POLICY_ENTRIES,
        too_many_entries,
        |_| Ok(()),
    )
}

/// Checks the scheduled targets and group members against their module's
/// policy when the config loads, as the prober would before resolving
/// them: a denied target, or a name that no `allow` entry could cover, is
/// an error located at the target (a group member's at its module, as the
/// shorthand's targets carry no position). A name that passes is checked
/// again at every probe, after resolution.
pub(super) fn check_scheduled(file: &str, config: &Config) -> Result<(), ConfigError> {
    let policy_of = |module: &str| {
        config
            .modules
            .get(module)
            .and_then(|module| Some((module.target_policy()?, module.prober().kind())))
    };
    let check = |policy: &TargetPolicy, prober: ProberKind, target: &Target| {
        match prober {
            // A command is given the target as written: nothing resolves it.
            ProberKind::Exec => policy.check_unresolved(target),
            ProberKind::TcpHalfopen | ProberKind::TcpConnect | ProberKind::Tcp => {
                policy.check_target(target).map(drop)
            }
        }
    };
    for (block_index, block) in config.targets.iter().enumerate() {
        let Some((policy, prober)) = policy_of(&block.module.value) else {
            continue;
        };
        for (index, target) in block.targets.iter().enumerate() {
            if let Err(refusal) = check(policy, prober, &target.value.0) {
                return Err(scheduled::located(
                    file,
                    Some(&target.referenced),
                    format!("targets[{block_index}].targets[{index}]"),
                    format!(
                        "module {:?} may not probe {}: {refusal}",
                        block.module.value, target.value.0
                    ),
                ));
            }
        }
    }
    for (name, group) in &config.groups {
        for (index, member) in group.members.iter().enumerate() {
            // A member without a target runs a command that takes none.
            let (Some((policy, prober)), Some(target)) =
                (policy_of(&member.module.value), &member.target)
            else {
                continue;
            };
            if let Err(refusal) = check(policy, prober, &target.0) {
                return Err(scheduled::located(
                    file,
                    Some(&member.module.referenced),
                    group.target_field(&name.0, index),
                    format!(
                        "module {:?} may not probe {}: {refusal}",
                        member.module.value, target.0
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The address a connect to `ip` reaches: Linux sends a connect to the
/// unspecified address (`0.0.0.0`, `::`) to this host's loopback, so a
/// policy must see it as `127.0.0.1` or `::1`, or `0.0.0.0` would walk
/// past a deny of 127.0.0.0/8.
fn reached(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> TargetPolicy {
        TargetPolicy::new(allow.iter().copied(), deny.iter().copied())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_policy_built_in_code_is_the_one_the_config_reads() {
        let built = policy(&["10.0.0.0/8", "*.db.internal:5432"], &["10.0.0.1"]);
        let read: TargetPolicy =
            serde_saphyr::from_str("allow: [10.0.0.0/8, '*.db.internal:5432']\ndeny: [10.0.0.1]\n")
                .unwrap();
        assert_eq!(built, read);
        let bad = TargetPolicy::new(["10.0.0.0/33"], []).unwrap_err();
        assert_eq!(bad, PolicyEntry::parse("10.0.0.0/33").unwrap_err());
        let many: Vec<String> = (0..=MAX_POLICY_ENTRIES)
            .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
            .collect();
        assert_eq!(
            TargetPolicy::new([], many.iter().map(String::as_str)),
            Err(too_many_entries())
        );
        assert!(TargetPolicy::new([], many[1..].iter().map(String::as_str)).is_ok());
    }

    fn target(text: &str) -> Target {
        Target::parse(text).unwrap()
    }

    /// The whole check, with `resolved` standing for what a name resolves to.
    fn verdict(policy: &TargetPolicy, text: &str, resolved: Option<&str>) -> bool {
        let target = target(text);
        let Ok(cleared) = policy.check_target(&target) else {
            return false;
        };
        let ip = match (&target.host, resolved) {
            (Host::Ip(ip), _) => *ip,
            (Host::Name(_), Some(ip)) => ip.parse().unwrap(),
            (Host::Name(_), None) => return true,
        };
        policy.check_address(cleared, ip, target.port).is_ok()
    }

    #[test]
    fn the_issue_example_allows_and_denies_as_documented() {
        let p = policy(
            &[
                "10.0.0.0/8",
                "[2001:db8::]/32:443",
                "*.db.internal:5432",
                "127.0.0.1:8000-9000",
            ],
            &["10.0.0.1"],
        );
        for (text, resolved, allowed) in [
            ("10.1.2.3:22", None, true),
            ("10.0.0.1:22", None, false),
            ("[::ffff:10.0.0.1]:22", None, false),
            ("[::ffff:10.9.9.9]:22", None, true),
            ("11.0.0.1:22", None, false),
            ("[2001:db8::1]:443", None, true),
            ("[2001:db8::1]:444", None, false),
            ("[2001:db9::1]:443", None, false),
            ("a.db.internal:5432", Some("192.0.2.1"), true),
            ("A.B.DB.Internal.:5432", Some("192.0.2.1"), true),
            ("db.internal:5432", Some("10.2.0.1"), true), // by address
            ("db.internal:5432", Some("192.0.2.1"), false),
            ("a.db.internal:5433", Some("10.2.0.1"), true), // by address
            ("a.db.internal:5432", Some("10.0.0.1"), false), // deny wins
            ("xdb.internal:5432", Some("192.0.2.1"), false),
            ("127.0.0.1:8000", None, true),
            ("127.0.0.1:9000", None, true),
            ("127.0.0.1:9001", None, false),
            ("127.0.0.1:7999", None, false),
        ] {
            assert_eq!(
                verdict(&p, text, resolved),
                allowed,
                "{text} -> {resolved:?}"
            );
        }
    }

    #[test]
    fn a_name_no_allow_entry_can_cover_is_refused_before_resolution() {
        let p = policy(&["*.db.internal:5432", "10.0.0.0/8:22"], &[]);
        let error = p.check_target(&target("evil.example:80")).unwrap_err();
        assert!(
            error.to_string().contains("matches no allow entry"),
            "{error}"
        );
        // Port 22 has an address entry: resolution decides.
        assert!(p.check_target(&target("evil.example:22")).is_ok());
    }

    #[test]
    fn without_allow_everything_not_denied_is_allowed_and_rebinding_is_caught() {
        let p = policy(&[], &["127.0.0.0/8", "::1", "169.254.0.0/16"]);
        assert!(verdict(&p, "example.org:80", Some("192.0.2.1")));
        assert!(!verdict(&p, "localhost:80", Some("127.0.0.1")));
        assert!(!verdict(&p, "localhost:80", Some("::1")));
        assert!(!verdict(&p, "[::ffff:127.0.0.1]:80", None));
        assert!(!verdict(&p, "meta.example:80", Some("169.254.169.254")));
        // A connect to the unspecified address reaches loopback.
        assert!(!verdict(&p, "0.0.0.0:80", None));
        assert!(!verdict(&p, "[::ffff:0.0.0.0]:80", None));
        assert!(!verdict(&p, "[::]:80", None));
        assert!(!verdict(&p, "rebind.example:80", Some("0.0.0.0")));
        let error = p
            .check_address(
                p.check_target(&target("localhost:80")).unwrap(),
                "127.0.0.1".parse().unwrap(),
                80,
            )
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "refused by the module's target_policy: 127.0.0.1:80 is in deny entry 127.0.0.0/8"
        );
    }

    #[test]
    fn deny_by_name_and_star_with_ports() {
        let p = policy(&["*"], &["*.corp:*", "*:22", "admin.example"]);
        assert!(!verdict(&p, "x.corp:443", Some("192.0.2.1")));
        assert!(!verdict(&p, "example.org:22", Some("192.0.2.1")));
        assert!(!verdict(&p, "192.0.2.1:22", None));
        assert!(!verdict(&p, "ADMIN.example.:80", Some("192.0.2.1")));
        assert!(
            verdict(&p, "corp:443", Some("192.0.2.1")),
            "a glob needs a label"
        );
        assert!(verdict(&p, "192.0.2.1:80", None));
    }

    #[test]
    fn exec_modules_need_a_name_entry_for_names() {
        let p = policy(&["10.0.0.0/8", "*.ok.example"], &[]);
        assert!(p.check_unresolved(&target("10.1.1.1:22")).is_ok());
        assert!(p.check_unresolved(&target("a.ok.example:22")).is_ok());
        let error = p.check_unresolved(&target("other.example:22")).unwrap_err();
        assert!(
            error.to_string().contains("resolves names itself"),
            "{error}"
        );
        assert!(
            policy(&[], &["10.0.0.0/8"])
                .check_unresolved(&target("other.example:22"))
                .is_ok()
        );
    }

    #[test]
    fn entries_round_trip_in_canonical_form() {
        for (text, shown) in [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("10.0.0.1", "10.0.0.1"),
            ("10.0.0.1/32", "10.0.0.1"),
            ("[2001:db8::]/32:443", "[2001:db8::]/32:443"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("[::1]", "::1"),
            ("[::1]:9100", "[::1]:9100"),
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
            ("*.DB.Internal.:5432", "*.db.internal:5432"),
            ("127.0.0.1:8000-9000", "127.0.0.1:8000-9000"),
            ("*", "*"),
            ("*:*", "*"),
            ("0.0.0.0/0:22", "0.0.0.0/0:22"),
        ] {
            let entry = PolicyEntry::parse(text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(entry.to_string(), shown, "{text}");
            assert_eq!(PolicyEntry::parse(shown).unwrap(), entry, "{shown}");
        }
    }

    #[test]
    fn bad_entries_say_what_to_change() {
        for (text, needle) in [
            ("", "empty"),
            ("10.0.0.1/8", "write 10.0.0.0/8"),
            ("10.0.0.0/33", "from 0 to 32"),
            ("10.0.0.0/08", "from 0 to 32"),
            ("[2001:db8::1]/32", "write 2001:db8::/32"),
            ("a.*.example", "wildcard only"),
            ("*example.org", "wildcard only"),
            ("10.0.0.1:0", "from 1 to 65535"),
            ("10.0.0.1:080", "leading zeros"),
            ("10.0.0.1:9000-8000", "backwards"),
            ("10.0.0.1:", "from 1 to 65535"),
            ("[nope]:80", "not an IPv6 address"),
            ("[::1:80", "without its ']'"),
            ("a b", "remove it"),
            ("a..b", "empty label"),
            ("host/8", "not an IP address"),
            ("127.1", "dotted-quad"),
        ] {
            let error = PolicyEntry::parse(text).expect_err(text);
            assert!(error.contains(needle), "{text:?}: {error}");
            assert!(error.starts_with("target_policy entry"), "{error}");
        }
    }

    const MODULE: &str = "modules:\n  m:\n    prober: tcp_halfopen\n    target_policy:\n      allow: [\"10.0.0.0/8\", \"*.db.internal:5432\"]\n      deny: [\"10.0.0.1\"]\n";

    fn load(rest: &str) -> Result<Config, ConfigError> {
        Config::parse("t.yml", &format!("{MODULE}{rest}"))
    }

    #[test]
    fn a_bad_entry_is_located_at_its_line_and_field() {
        let yaml = "modules:\n  m:\n    prober: tcp_halfopen\n    target_policy:\n      allow:\n        - 10.0.0.0/8\n        - 10.0.0.1/8\n";
        let error = Config::parse("t.yml", yaml).unwrap_err();
        error.assert_says(
            "t.yml:7:11: field `modules.m.target_policy.allow[1]`",
            &["write 10.0.0.0/8"],
        );
        let error = Config::parse(
            "t.yml",
            "modules:\n  m:\n    prober: tcp_halfopen\n    target_policy: {alow: []}\n",
        )
        .unwrap_err();
        assert!(error.message.contains("unknown field"), "{error}");
    }

    #[test]
    fn too_many_entries_are_refused() {
        let entries = (0..=MAX_POLICY_ENTRIES)
            .map(|i| format!("\"10.{}.{}.0/24\"", i / 256, i % 256))
            .collect::<Vec<_>>()
            .join(", ");
        let yaml = format!(
            "modules:\n  m:\n    prober: tcp_halfopen\n    target_policy: {{deny: [{entries}]}}\n"
        );
        let error = Config::parse("t.yml", &yaml).unwrap_err();
        error.assert_says(
            "t.yml:4:27: field `modules.m.target_policy.deny`",
            &["more than 1000 entries"],
        );
    }

    #[test]
    fn the_policy_round_trips_through_config_yaml() {
        let config = load("").unwrap();
        let shown = config.to_yaml();
        assert!(shown.contains("*.db.internal:5432"), "{shown}");
        let again = Config::parse("again", &shown).unwrap();
        assert_eq!(again.modules, config.modules);
    }

    #[test]
    fn scheduled_targets_outside_the_policy_are_located_errors() {
        assert!(
            load("targets:\n  - module: m\n    targets: [\"10.1.1.1:22\", \"a.db.internal:5432\", \"name.example:22\"]\n")
                .is_ok(),
            "name.example:22 may resolve into 10.0.0.0/8: checked at each probe"
        );
        let error = load(
            "targets:\n  - module: m\n    targets:\n      - 10.1.1.1:22\n      - 10.0.0.1:22\n",
        )
        .unwrap_err();
        error.assert_says(
            "t.yml:11:9: field `targets[0].targets[1]`",
            &["deny entry 10.0.0.1"],
        );
        let error = load("targets:\n  - module: m\n    targets: [\"192.0.2.1:80\"]\n").unwrap_err();
        assert!(error.message.contains("matches no allow entry"), "{error}");
        // Other modules have no policy.
        assert!(
            load("targets:\n  - module: tcp_connect\n    targets: [\"10.0.0.1:22\"]\n").is_ok()
        );
    }

    #[test]
    fn group_members_outside_the_policy_are_located_errors() {
        let error = load(
            "groups:\n  web:\n    members:\n      - {module: tcp_connect, target: \"10.0.0.1:1\"}\n      - {module: m, target: \"192.0.2.1:5433\"}\n",
        )
        .unwrap_err();
        error.assert_says("t.yml:11:18: field `groups.web.members[1].target`", &[]);
        let error =
            load("groups:\n  web:\n    module: m\n    targets: [\"10.2.2.2:1\", \"10.0.0.1:1\"]\n")
                .unwrap_err();
        assert_eq!(
            error.field.as_deref(),
            Some("groups.web.targets[1]"),
            "{error}"
        );
    }

    #[test]
    fn an_exec_module_checks_names_as_written_at_load() {
        let yaml = "modules:\n  x:\n    prober: exec\n    exec: {command: [/bin/true]}\n    target_policy: {allow: [\"10.0.0.0/8\"]}\ntargets:\n  - module: x\n    targets: [\"name.example:22\"]\n";
        let error = Config::parse("t.yml", yaml).unwrap_err();
        assert!(error.message.contains("resolves names itself"), "{error}");
    }
}
