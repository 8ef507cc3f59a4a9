//! From an OS error to a [`Reason`](super::Reason) and a readable errno name.
//!
//! The mapping is what the kernel reports after a non-blocking connect
//! (measured on Linux 6.x, see the reasons table of docs/metrics.md): an
//! RST gives `ECONNREFUSED`; ICMP and routing answers give `EHOSTUNREACH`,
//! `ENETUNREACH`, `EACCES` (ICMPv6 admin-prohibited), `EPERM` (a local
//! firewall) or `EINVAL` (a blackhole route). Anything else is the
//! exporter's own trouble (`EMFILE`, `EADDRNOTAVAIL`, ...) and counts as
//! `local`, so that it never looks like the target's fault.

#![forbid(unsafe_code)]

use super::{IcmpError, Reason};
use std::fmt;
use std::io;
use std::net::IpAddr;

/// Which reason an OS error from socket, bind or connect stands for.
#[must_use]
pub(super) fn reason_for(error: &io::Error) -> Reason {
    match error.raw_os_error() {
        Some(libc::ECONNREFUSED | libc::ECONNRESET) => Reason::Refused,
        Some(libc::ETIMEDOUT) => Reason::Timeout,
        Some(
            libc::EHOSTUNREACH
            | libc::ENETUNREACH
            | libc::EACCES
            | libc::EPERM
            | libc::EINVAL
            | libc::ENETDOWN
            | libc::EHOSTDOWN
            | libc::ENONET
            | libc::EPROTO,
        ) => Reason::Unreachable,
        _ => Reason::Local,
    }
}

/// The symbolic name and the description of an OS error, as
/// `ECONNREFUSED (Connection refused)`.
#[must_use]
pub(super) fn describe(error: &io::Error) -> String {
    let Some(code) = error.raw_os_error() else {
        return error.to_string();
    };
    // io::Error's text is "Connection refused (os error 111)"; keep the words.
    let text = io::Error::from_raw_os_error(code).to_string();
    let meaning = text.split(" (os error").next().unwrap_or(&text);
    format!("{} ({meaning})", errno_name(code))
}

fn errno_name(code: i32) -> String {
    let name = match code {
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::EINVAL => "EINVAL",
        libc::ENETDOWN => "ENETDOWN",
        libc::EHOSTDOWN => "EHOSTDOWN",
        libc::ENONET => "ENONET",
        libc::EPROTO => "EPROTO",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::ENOBUFS => "ENOBUFS",
        libc::ENOMEM => "ENOMEM",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        libc::ENODEV => "ENODEV",
        _ => return format!("errno {code}"),
    };
    name.to_owned()
}

/// ICMP (IPv4) destination unreachable.
const ICMP_DEST_UNREACH: u8 = 3;
/// Its code for "port unreachable".
const ICMP_PORT_UNREACH: u8 = 3;
/// Its code for "fragmentation needed": path MTU discovery, not a failure.
const ICMP_FRAG_NEEDED: u8 = 4;
/// ICMPv6 destination unreachable.
const ICMP6_DST_UNREACH: u8 = 1;
/// Its code for "port unreachable".
const ICMP6_DST_UNREACH_NOPORT: u8 = 4;
/// ICMPv6 packet too big: path MTU discovery, not a failure.
const ICMP6_PACKET_TOO_BIG: u8 = 2;

/// Which reason an ICMP error from the error queue stands for, for a
/// probe of `target`; `None` for messages that do not end a connect
/// (fragmentation needed, packet too big).
///
/// Every destination-unreachable is `unreachable`, except a port
/// unreachable sent by the target itself: the host is up and says that
/// nothing listens, as an RST would, so it is `refused`. A port
/// unreachable from anyone else is a firewall's forgery, `unreachable`.
/// Time exceeded and parameter problems are `unreachable` too: the SYN
/// did not get there.
#[must_use]
pub(super) fn icmp_reason(icmp: &IcmpError, target: IpAddr) -> Option<Reason> {
    let (unreach, port_unreach) = if icmp.ipv6 {
        if icmp.icmp_type == ICMP6_PACKET_TOO_BIG || icmp.icmp_type >= 128 {
            return None;
        }
        (ICMP6_DST_UNREACH, ICMP6_DST_UNREACH_NOPORT)
    } else {
        if icmp.icmp_type == ICMP_DEST_UNREACH && icmp.code == ICMP_FRAG_NEEDED {
            return None;
        }
        if !matches!(icmp.icmp_type, 3 | 4 | 11 | 12) {
            return None;
        }
        (ICMP_DEST_UNREACH, ICMP_PORT_UNREACH)
    };
    let from_target = icmp
        .offender
        .is_none_or(|offender| same_ip(offender, target));
    if icmp.icmp_type == unreach && icmp.code == port_unreach && from_target {
        return Some(Reason::Refused);
    }
    Some(Reason::Unreachable)
}

/// Equal, counting an IPv4-mapped IPv6 address as its IPv4 address.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// Writes `icmp` in words, for the step log and the failure's detail:
/// `ICMP destination unreachable, code 13 (communication administratively
/// prohibited), from 192.0.2.1`; a type without a name here is shown by
/// its number.
pub(super) fn write_icmp(f: &mut impl fmt::Write, icmp: &IcmpError) -> fmt::Result {
    let (protocol, (message, meaning)) = if icmp.ipv6 {
        ("ICMPv6", icmpv6_words(icmp.icmp_type, icmp.code))
    } else {
        ("ICMP", icmpv4_words(icmp.icmp_type, icmp.code))
    };
    f.write_str(protocol)?;
    match message {
        Some(message) => write!(f, " {message}")?,
        None => write!(f, " type {}", icmp.icmp_type)?,
    }
    write!(f, ", code {}", icmp.code)?;
    if let Some(meaning) = meaning {
        write!(f, " ({meaning})")?;
    }
    if let Some(offender) = icmp.offender {
        write!(f, ", from {offender}")?;
    }
    Ok(())
}

/// RFC 792, 1812 and the IANA registry: type and code in words.
fn icmpv4_words(icmp_type: u8, code: u8) -> (Option<&'static str>, Option<&'static str>) {
    match icmp_type {
        3 => (
            Some("destination unreachable"),
            Some(match code {
                0 => "net unreachable",
                1 => "host unreachable",
                2 => "protocol unreachable",
                3 => "port unreachable",
                4 => "fragmentation needed",
                5 => "source route failed",
                6 => "destination network unknown",
                7 => "destination host unknown",
                8 => "source host isolated",
                9 => "network administratively prohibited",
                10 => "host administratively prohibited",
                11 => "network unreachable for type of service",
                12 => "host unreachable for type of service",
                13 => "communication administratively prohibited",
                14 => "host precedence violation",
                15 => "precedence cutoff in effect",
                _ => return (Some("destination unreachable"), None),
            }),
        ),
        4 => (Some("source quench"), None),
        11 => (
            Some("time exceeded"),
            match code {
                0 => Some("time to live exceeded in transit"),
                1 => Some("fragment reassembly time exceeded"),
                _ => None,
            },
        ),
        12 => (Some("parameter problem"), None),
        _ => (None, None),
    }
}

/// RFC 4443 and the IANA registry: type and code in words.
fn icmpv6_words(icmp_type: u8, code: u8) -> (Option<&'static str>, Option<&'static str>) {
    match icmp_type {
        1 => (
            Some("destination unreachable"),
            match code {
                0 => Some("no route to destination"),
                1 => Some("communication with destination administratively prohibited"),
                2 => Some("beyond scope of source address"),
                3 => Some("address unreachable"),
                4 => Some("port unreachable"),
                5 => Some("source address failed ingress/egress policy"),
                6 => Some("reject route to destination"),
                _ => None,
            },
        ),
        2 => (Some("packet too big"), None),
        3 => (
            Some("time exceeded"),
            match code {
                0 => Some("hop limit exceeded in transit"),
                1 => Some("fragment reassembly time exceeded"),
                _ => None,
            },
        ),
        4 => (Some("parameter problem"), None),
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn kernel_answers_map_to_reasons() {
        assert_eq!(reason_for(&os(libc::ECONNREFUSED)), Reason::Refused);
        assert_eq!(reason_for(&os(libc::ETIMEDOUT)), Reason::Timeout);
        for code in [
            libc::EHOSTUNREACH,
            libc::ENETUNREACH,
            libc::EACCES,
            libc::EINVAL,
        ] {
            assert_eq!(reason_for(&os(code)), Reason::Unreachable, "errno {code}");
        }
        for code in [
            libc::EMFILE,
            libc::ENFILE,
            libc::EADDRNOTAVAIL,
            libc::ENOBUFS,
        ] {
            assert_eq!(reason_for(&os(code)), Reason::Local, "errno {code}");
        }
    }

    #[test]
    fn describe_names_the_errno_and_its_meaning() {
        assert_eq!(
            describe(&os(libc::ECONNREFUSED)),
            "ECONNREFUSED (Connection refused)"
        );
    }

    fn icmp(ipv6: bool, icmp_type: u8, code: u8, offender: &str) -> IcmpError {
        IcmpError {
            ipv6,
            icmp_type,
            code,
            offender: Some(offender.parse().unwrap()),
        }
    }

    #[test]
    fn icmp_errors_map_to_reasons() {
        let target: IpAddr = "198.51.100.2".parse().unwrap();
        let router = "192.0.2.1";
        for code in [0, 1, 9, 10, 13] {
            let error = icmp(false, 3, code, router);
            assert_eq!(
                icmp_reason(&error, target),
                Some(Reason::Unreachable),
                "{error}"
            );
        }
        // Port unreachable: refused from the target, a forgery from a router.
        assert_eq!(
            icmp_reason(&icmp(false, 3, 3, "198.51.100.2"), target),
            Some(Reason::Refused)
        );
        assert_eq!(
            icmp_reason(&icmp(false, 3, 3, router), target),
            Some(Reason::Unreachable)
        );
        assert_eq!(
            icmp_reason(&icmp(false, 11, 0, router), target),
            Some(Reason::Unreachable)
        );
        assert_eq!(icmp_reason(&icmp(false, 3, 4, router), target), None);

        let target: IpAddr = "2001:db8:2::2".parse().unwrap();
        let router = "2001:db8:1::1";
        for code in [0, 1, 3, 5, 6] {
            let error = icmp(true, 1, code, router);
            assert_eq!(
                icmp_reason(&error, target),
                Some(Reason::Unreachable),
                "{error}"
            );
        }
        assert_eq!(
            icmp_reason(&icmp(true, 1, 4, "2001:db8:2::2"), target),
            Some(Reason::Refused)
        );
        assert_eq!(
            icmp_reason(&icmp(true, 1, 4, router), target),
            Some(Reason::Unreachable)
        );
        assert_eq!(icmp_reason(&icmp(true, 2, 0, router), target), None);
    }

    #[test]
    fn icmp_errors_read_as_sentences() {
        assert_eq!(
            icmp(false, 3, 13, "192.0.2.1").to_string(),
            "ICMP destination unreachable, code 13 (communication administratively prohibited), from 192.0.2.1"
        );
        assert_eq!(
            icmp(true, 1, 3, "2001:db8:1::1").to_string(),
            "ICMPv6 destination unreachable, code 3 (address unreachable), from 2001:db8:1::1"
        );
        let unknown = IcmpError {
            ipv6: false,
            icmp_type: 42,
            code: 7,
            offender: None,
        };
        assert_eq!(unknown.to_string(), "ICMP type 42, code 7");
    }
}
