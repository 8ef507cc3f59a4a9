//! What a probe is aimed at: `host:port`.
//!
//! The host is a DNS name, an IPv4 literal or a bracketed IPv6 literal
//! (`[::1]:443`). Parsing is strict and every rejection says in one line
//! what to change, because the text usually arrives from a Prometheus
//! relabeling rule that the user is debugging.
//!
//! Some rules exist so that a message names the real problem:
//!
//! - Control characters (CR, LF, ESC, NUL, ...) are looked for first and
//!   anywhere in the text. Otherwise `a\r\nX: b:80` would be described by
//!   its colon, as an IPv6 address without brackets, and an ESC sequence
//!   by its `[`, as an unbalanced bracket.
//! - A name may end in one dot, the root: `db.example.org.` is fully
//!   qualified and is looked up without search domains. It is kept as
//!   written, so labels show what the user wrote.
//! - A host may not start with `-`: no host name does, and an `exec`
//!   module's command would read `{host}` as an option.
//! - Numbers are decimal without leading zeros, in ports as in IPv4
//!   octets: `010.0.0.1` is refused because resolvers read it as octal,
//!   and `:08080` is refused so that the two rules agree. A dotted quad
//!   with a part over 255 (`256.1.1.1`) is refused naming that part.
//! - An IPv6 zone ID (`[fe80::1%eth0]`) is refused as such: probes name
//!   no interface.

#![forbid(unsafe_code)]

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// Longest target text accepted; DNS names stop at 253 bytes anyway.
pub(crate) const MAX_TARGET_LEN: usize = 1024;

/// The host part of a target.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IP literal: no DNS lookup is made.
    Ip(IpAddr),
    /// A DNS name, resolved at probe time.
    Name(String),
}

/// A parsed `host:port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// Where to connect.
    pub host: Host,
    /// TCP port, never 0.
    pub port: u16,
}

/// Why a target was rejected. The `Display` text is the one-line message
/// that `/probe` returns with status 400.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetError {
    /// Nothing was given.
    Empty,
    /// Longer than 1024 bytes.
    TooLong(usize),
    /// A URL such as `tcp://host:port` was given.
    HasScheme,
    /// No `:port` at the end.
    MissingPort,
    /// The port is not a whole number from 1 to 65535.
    BadPort(String),
    /// The port starts with `0`, which IPv4 octets may not either.
    PortLeadingZero(String),
    /// A control character (CR, LF, ESC, NUL, ...) anywhere in the target.
    ControlChar(char),
    /// Nothing before the `:port`.
    EmptyHost,
    /// A `[` without `]` or the other way round.
    UnbalancedBracket,
    /// `::1:80` instead of `[::1]:80`.
    UnbracketedIpv6,
    /// Text inside brackets that is not an IPv6 address.
    BadIpv6(String),
    /// A character that no host name contains.
    BadHostChar(char),
    /// Two dots in a row, or a dot at the start: `a..b`, `.a`.
    EmptyLabel(String),
    /// A host starting with `-`, as no host name does: an `exec` command
    /// given `{host}` would read it as an option.
    LeadingHyphen(String),
    /// Numbers that resolvers would read as an IP in some old form
    /// (`127.1`, `2130706433`, `0x7f.1`, `010.0.0.1`), not a dotted quad.
    AmbiguousNumericHost(String),
    /// Four decimal parts, one over 255: `256.1.1.1`.
    OctetOutOfRange {
        /// The host as written.
        host: String,
        /// The first part over 255.
        part: String,
    },
    /// An IPv6 address with a zone (`[fe80::1%eth0]`), which probes do
    /// not support.
    ZoneId(String),
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("target is missing or empty: pass target=host:port"),
            Self::TooLong(len) => write!(
                f,
                "target is {len} bytes long, more than the limit of {MAX_TARGET_LEN}"
            ),
            Self::HasScheme => {
                f.write_str("target must be host:port, without a scheme such as tcp://")
            }
            Self::MissingPort => f.write_str("target has no port: write it as host:port"),
            Self::BadPort(port) => {
                write!(f, "target port {port:?} is not a number from 1 to 65535")
            }
            Self::PortLeadingZero(port) => write!(
                f,
                "target port {port:?} has a leading zero: write it without, as {}",
                port.trim_start_matches('0')
            ),
            Self::ControlChar(c) => write!(
                f,
                "control character U+{:04X} in target: remove it",
                u32::from(*c)
            ),
            Self::EmptyHost => f.write_str("target has an empty host: write it as host:port"),
            Self::UnbalancedBracket => {
                f.write_str("target has an unbalanced bracket: write IPv6 addresses as [addr]:port")
            }
            Self::UnbracketedIpv6 => f.write_str(
                "target looks like an IPv6 address without brackets: write it as [addr]:port",
            ),
            Self::BadIpv6(text) => {
                write!(f, "target host {text:?} in brackets is not an IPv6 address")
            }
            Self::AmbiguousNumericHost(host) => write!(
                f,
                "target host {host:?} is not a dotted-quad IPv4 address, and resolvers would read it as some other address; write all four parts in decimal"
            ),
            Self::OctetOutOfRange { host, part } => write!(
                f,
                "target host {host:?}: {part} is out of range: each part of an IPv4 address is 0 to 255"
            ),
            Self::ZoneId(host) => write!(
                f,
                "target host {host:?} has a zone ID: zone IDs are not supported; probe a global or unique-local address"
            ),
            Self::EmptyLabel(host) => write!(
                f,
                "target host {host:?} has an empty label: remove the extra dot"
            ),
            Self::LeadingHyphen(host) => write!(
                f,
                "target host {host:?} starts with '-', which no host name does"
            ),
            Self::BadHostChar(c) => write!(
                f,
                "target host contains {c:?}, which no host name may contain"
            ),
        }
    }
}

impl std::error::Error for TargetError {}

impl Target {
    /// Parses `host:port`.
    ///
    /// # Errors
    /// A [`TargetError`] saying what is wrong with the text.
    pub fn parse(text: &str) -> Result<Self, TargetError> {
        if text.is_empty() {
            return Err(TargetError::Empty);
        }
        if text.len() > MAX_TARGET_LEN {
            return Err(TargetError::TooLong(text.len()));
        }
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(TargetError::ControlChar(c));
        }
        if text.contains("://") {
            return Err(TargetError::HasScheme);
        }
        let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
            let (inside, after) = bracketed
                .split_once(']')
                .ok_or(TargetError::UnbalancedBracket)?;
            let port = after.strip_prefix(':').ok_or(if after.is_empty() {
                TargetError::MissingPort
            } else {
                TargetError::UnbalancedBracket
            })?;
            let address: Ipv6Addr = inside.parse().map_err(|_| match inside.split_once('%') {
                Some((address, _)) if address.parse::<Ipv6Addr>().is_ok() => {
                    TargetError::ZoneId(inside.to_owned())
                }
                _ => TargetError::BadIpv6(inside.to_owned()),
            })?;
            (Host::Ip(IpAddr::V6(address)), port)
        } else {
            if text.contains(['[', ']']) {
                return Err(TargetError::UnbalancedBracket);
            }
            let (host, port) = text.rsplit_once(':').ok_or(TargetError::MissingPort)?;
            if host.contains(':') {
                return Err(TargetError::UnbracketedIpv6);
            }
            (parse_host(host)?, port)
        };
        Ok(Self {
            host,
            port: parse_port(port)?,
        })
    }
}

fn parse_host(host: &str) -> Result<Host, TargetError> {
    if host.is_empty() {
        return Err(TargetError::EmptyHost);
    }
    if let Some(bad) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Err(TargetError::BadHostChar(bad));
    }
    if host.starts_with('-') {
        return Err(TargetError::LeadingHyphen(host.to_owned()));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    // One final dot is the root: `db.example.org.` is fully qualified.
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.split('.').any(str::is_empty) {
        return Err(TargetError::EmptyLabel(host.to_owned()));
    }
    // No DNS name ends in a numeric label, but getaddrinfo turns `127.1`
    // into 127.0.0.1 and `010.0.0.1` into 8.0.0.1: never what was meant.
    let last_label = name.rsplit('.').next().unwrap_or(name);
    let numeric = last_label.bytes().all(|b| b.is_ascii_digit())
        || (last_label.len() > 2 && last_label[..2].eq_ignore_ascii_case("0x"));
    if numeric {
        // Looked for only here: a dotted quad ends in a numeric label, and
        // a usual name is parsed without splitting it once more.
        if let Some(part) = octet_out_of_range(host) {
            return Err(TargetError::OctetOutOfRange {
                host: host.to_owned(),
                part: part.to_owned(),
            });
        }
        return Err(TargetError::AmbiguousNumericHost(host.to_owned()));
    }
    Ok(Host::Name(host.to_owned()))
}

/// The first part over 255 of a dotted quad written in decimal without
/// leading zeros, which would be an IPv4 address but for that part.
fn octet_out_of_range(host: &str) -> Option<&str> {
    let parts: Vec<&str> = host.split('.').collect();
    let decimal = |part: &&str| {
        !part.is_empty()
            && part.bytes().all(|b| b.is_ascii_digit())
            && (*part == "0" || !part.starts_with('0'))
    };
    if parts.len() != 4 || !parts.iter().all(decimal) {
        return None;
    }
    parts.into_iter().find(|part| part.parse::<u8>().is_err())
}

fn parse_port(port: &str) -> Result<u16, TargetError> {
    if port.is_empty() {
        return Err(TargetError::MissingPort);
    }
    let bad = || TargetError::BadPort(port.to_owned());
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        // Refused for the same reason as `010` in an IPv4 address.
        Ok(_) if port.starts_with('0') => Err(TargetError::PortLeadingZero(port.to_owned())),
        Ok(number) => Ok(number),
    }
}

impl fmt::Display for Host {
    /// The host as written in a target; IPv6 without brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::Name(name) => f.write_str(name),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_and_literals() {
        let ok = |t: &str| Target::parse(t).unwrap();
        assert_eq!(
            ok("127.0.0.1:80").host,
            Host::Ip("127.0.0.1".parse().unwrap())
        );
        assert_eq!(ok("[::1]:6379").host, Host::Ip("::1".parse().unwrap()));
        assert_eq!(
            ok("db-1.example_x.org:5432").host,
            Host::Name("db-1.example_x.org".into())
        );
        assert_eq!(ok("localhost:65535").port, 65535);
        assert_eq!(ok("[::1]:22").to_string(), "[::1]:22");
    }

    #[test]
    fn accepts_fully_qualified_names_with_a_trailing_dot() {
        let ok = |t: &str| Target::parse(t).map(|target| target.host);
        assert_eq!(
            ok("db.example.org.:5432"),
            Ok(Host::Name("db.example.org.".into()))
        );
        assert_eq!(ok("localhost.:8080"), Ok(Host::Name("localhost.".into())));
        assert_eq!(
            Target::parse("localhost.:8080").unwrap().to_string(),
            "localhost.:8080",
            "shown as written"
        );
    }

    #[test]
    fn control_characters_are_named_as_such_wherever_they_are() {
        use TargetError as E;
        let cases = [
            ("a\r\nX-Injected: b:80", E::ControlChar('\r')),
            ("\u{1b}[31mred:80", E::ControlChar('\u{1b}')),
            ("h\n:80", E::ControlChar('\n')),
            ("h\u{7}:80", E::ControlChar('\u{7}')),
            ("\thost:80", E::ControlChar('\t')),
            ("host:80\r", E::ControlChar('\r')),
            ("[::1\0]:80", E::ControlChar('\0')),
            ("h\u{7f}:80", E::ControlChar('\u{7f}')),
            ("h\u{85}:80", E::ControlChar('\u{85}')),
        ];
        for (text, expected) in cases {
            assert_eq!(Target::parse(text), Err(expected), "{text:?}");
        }
        assert_eq!(
            E::ControlChar('\r').to_string(),
            "control character U+000D in target: remove it"
        );
    }

    #[test]
    fn ports_with_leading_zeros_are_refused_like_octets() {
        use TargetError as E;
        for port in ["08080", "000000000000000008080", "0443"] {
            assert_eq!(
                Target::parse(&format!("h:{port}")),
                Err(E::PortLeadingZero(port.into())),
                "{port}"
            );
        }
        assert_eq!(
            E::PortLeadingZero("08080".into()).to_string(),
            "target port \"08080\" has a leading zero: write it without, as 8080"
        );
        assert_eq!(Target::parse("h:00"), Err(E::BadPort("00".into())));
        assert_eq!(Target::parse("h:8080").unwrap().port, 8080);
    }

    #[test]
    fn rejects_each_bad_form_with_its_reason() {
        use TargetError as E;
        let cases = [
            ("", E::Empty),
            ("localhost", E::MissingPort),
            ("localhost:", E::MissingPort),
            ("[::1]", E::MissingPort),
            ("h:0", E::BadPort("0".into())),
            ("h:-1", E::BadPort("-1".into())),
            ("h:65536", E::BadPort("65536".into())),
            (
                "h:99999999999999999999",
                E::BadPort("99999999999999999999".into()),
            ),
            ("h:http", E::BadPort("http".into())),
            ("h:+80", E::BadPort("+80".into())),
            (":80", E::EmptyHost),
            ("[::1:80", E::UnbalancedBracket),
            ("::1]:80", E::UnbalancedBracket),
            ("[::1]x:80", E::UnbalancedBracket),
            ("::1:80", E::UnbracketedIpv6),
            ("[nope]:80", E::BadIpv6("nope".into())),
            ("a b:80", E::BadHostChar(' ')),
            ("\"h\":80", E::BadHostChar('"')),
            ("'h':80", E::BadHostChar('\'')),
            ("tcp://h:80", E::HasScheme),
            ("127.1:80", E::AmbiguousNumericHost("127.1".into())),
            (
                "2130706433:80",
                E::AmbiguousNumericHost("2130706433".into()),
            ),
            ("0x7f.1:80", E::AmbiguousNumericHost("0x7f.1".into())),
            ("010.0.0.1:80", E::AmbiguousNumericHost("010.0.0.1".into())),
            ("host.0x1f:80", E::AmbiguousNumericHost("host.0x1f".into())),
            ("db.42.:80", E::AmbiguousNumericHost("db.42.".into())),
            (".:80", E::EmptyLabel(".".into())),
            ("a..b:80", E::EmptyLabel("a..b".into())),
            (".a:80", E::EmptyLabel(".a".into())),
            ("a.b..:80", E::EmptyLabel("a.b..".into())),
            ("-rf:80", E::LeadingHyphen("-rf".into())),
            (
                "256.1.1.1:80",
                E::OctetOutOfRange {
                    host: "256.1.1.1".into(),
                    part: "256".into(),
                },
            ),
            (
                "10.0.0.99999999999999999999:80",
                E::OctetOutOfRange {
                    host: "10.0.0.99999999999999999999".into(),
                    part: "99999999999999999999".into(),
                },
            ),
            (
                "010.0.0.256:80",
                E::AmbiguousNumericHost("010.0.0.256".into()),
            ),
            ("1.2.3.4.5:80", E::AmbiguousNumericHost("1.2.3.4.5".into())),
            ("[fe80::1%lo]:80", E::ZoneId("fe80::1%lo".into())),
            ("[fe80::1%25eth0]:80", E::ZoneId("fe80::1%25eth0".into())),
            ("[nope%lo]:80", E::BadIpv6("nope%lo".into())),
            ("--help:80", E::LeadingHyphen("--help".into())),
        ];
        for (text, expected) in cases {
            assert_eq!(Target::parse(text), Err(expected), "{text:?}");
        }
        assert_eq!(
            Target::parse("256.1.1.1:80").unwrap_err().to_string(),
            "target host \"256.1.1.1\": 256 is out of range: each part of an IPv4 address is 0 to 255"
        );
        assert_eq!(
            Target::parse("[fe80::1%lo]:80").unwrap_err().to_string(),
            "target host \"fe80::1%lo\" has a zone ID: zone IDs are not supported; probe a global or unique-local address"
        );
        let long = format!("{}:80", "a".repeat(MAX_TARGET_LEN));
        assert_eq!(Target::parse(&long), Err(E::TooLong(long.len())));
    }
}
