//! `source_interface`, `mark` and `dscp` of a module's `tcp:` block:
//! which interface its probes leave by, the firewall mark that selects
//! their route, and the DiffServ class they travel in.
//!
//! All three are socket options set before the SYN, through socket2:
//! `SO_BINDTODEVICE` (no privilege needed since Linux 5.7, `CAP_NET_RAW`
//! before), `SO_MARK` (`CAP_NET_ADMIN`, or `CAP_NET_RAW` since 5.17) and
//! `IP_TOS` / `IPV6_TCLASS`. [`set_route_options`] is their one setter:
//! the probe calls it on each socket, and each load of the config
//! (`host::route_notes`) on a throwaway socket, so that a missing
//! interface or capability is said at `--config.check` and start-up in
//! the same words as in the failed probe's detail.

#![forbid(unsafe_code)]

use super::TcpOptions;
use serde::{Deserialize, Deserializer};
use socket2::Socket;
use std::io;
use std::net::IpAddr;
use std::ops::RangeInclusive;

/// The DiffServ code points: six bits.
pub(crate) const DSCP_RANGE: RangeInclusive<u8> = 0..=63;

/// The longest interface name Linux takes: `IFNAMSIZ` (16) less the NUL.
const MAX_INTERFACE_NAME: usize = 15;

/// The IPv4 TOS / IPv6 traffic class byte that carries `dscp`: the code
/// point in the upper six bits, the two ECN bits clear (the kernel sets
/// those itself for TCP).
#[must_use]
pub(crate) fn tos_byte(dscp: u8) -> u32 {
    u32::from(dscp) << 2
}

/// Why Linux would refuse `name` as an interface name (`dev_valid_name`),
/// if it would.
fn interface_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_INTERFACE_NAME {
        return Some(format!(
            "interface name {name:?} must be 1 to {MAX_INTERFACE_NAME} bytes long, as Linux allows"
        ));
    }
    if name == "." || name == ".." {
        return Some(format!("{name:?} is not an interface name"));
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
    {
        return Some(format!(
            "interface name {name:?} holds {bad:?}, which Linux does not allow in one"
        ));
    }
    None
}

/// `source_interface`: a name Linux could give an interface. Whether the
/// interface exists is the host's matter, noted at load
/// (`host::route_notes`): it may come later (a VPN link, a VRF).
pub(super) fn some_interface_name<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let name = String::deserialize(deserializer)?;
    match interface_name_problem(&name) {
        Some(problem) => Err(serde::de::Error::custom(problem)),
        None => Ok(Some(name)),
    }
}

/// `dscp`: a code point in [`DSCP_RANGE`].
pub(super) fn some_dscp<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u8>, D::Error> {
    let dscp = u64::deserialize(deserializer)?;
    match u8::try_from(dscp) {
        Ok(dscp) if DSCP_RANGE.contains(&dscp) => Ok(Some(dscp)),
        _ => Err(serde::de::Error::custom(format!(
            "{dscp} is out of range: a DSCP is 6 bits, from {} to {} (46 is EF, 10 AF11, 0 best effort)",
            DSCP_RANGE.start(),
            DSCP_RANGE.end()
        ))),
    }
}

/// One of the module's route options that the kernel refused on a socket.
#[derive(Debug)]
pub(crate) struct RouteRefused {
    /// The field of the `tcp:` block: `source_interface`, `mark`, `dscp`.
    pub(crate) field: &'static str,
    /// What the kernel said.
    pub(crate) error: io::Error,
    /// What to do about it, in the config's words (see [`Self::hint`]).
    hint: String,
}

impl RouteRefused {
    fn new(field: &'static str, options: &TcpOptions, error: io::Error) -> Self {
        let hint = match (field, error.raw_os_error()) {
            ("source_interface", Some(libc::ENODEV)) => format!(
                "source_interface {:?} is not an interface of this host (none has that name \
                 in the exporter's network namespace)",
                options.source_interface.as_deref().unwrap_or_default()
            ),
            ("source_interface", Some(libc::EPERM)) => {
                "source_interface needs CAP_NET_RAW on Linux before 5.7, which the exporter \
                 does not have"
                    .to_owned()
            }
            ("mark", Some(libc::EPERM)) => {
                "mark needs CAP_NET_ADMIN (or CAP_NET_RAW on Linux 5.17 and later), which the \
                 exporter does not have"
                    .to_owned()
            }
            (field, _) => format!("the kernel refused {field}: {error}"),
        };
        Self { field, error, hint }
    }

    /// The cause in the config's words, naming the field and, where it
    /// is one, the interface or capability that is missing.
    #[must_use]
    pub(crate) fn hint(&self) -> &str {
        &self.hint
    }
}

/// Sets `options`' `source_interface`, `mark` and `dscp` on `socket`, a
/// socket of the family that connects to `destination`: the
/// `IPV6_TCLASS` of an IPv6 socket, plus its `IP_TOS` when `destination`
/// is IPv4-mapped, whose packets are IPv4. Options the module leaves
/// unset are not touched.
///
/// # Errors
/// The first option the kernel refused, which it names.
pub(crate) fn set_route_options(
    socket: &Socket,
    options: &TcpOptions,
    destination: IpAddr,
) -> Result<(), RouteRefused> {
    let refused = |field| move |error| RouteRefused::new(field, options, error);
    if let Some(interface) = &options.source_interface {
        socket
            .bind_device(Some(interface.as_bytes()))
            .map_err(refused("source_interface"))?;
    }
    if let Some(mark) = options.mark {
        socket.set_mark(mark).map_err(refused("mark"))?;
    }
    if let Some(dscp) = options.dscp {
        let tos = tos_byte(dscp);
        match destination {
            IpAddr::V4(_) => socket.set_tos_v4(tos),
            IpAddr::V6(v6) => socket.set_tclass_v6(tos).and_then(|()| {
                if v6.to_ipv4_mapped().is_some() {
                    socket.set_tos_v4(tos)
                } else {
                    Ok(())
                }
            }),
        }
        .map_err(refused("dscp"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Type};

    #[test]
    fn the_tos_byte_holds_the_code_point_in_its_upper_six_bits() {
        assert_eq!(tos_byte(0), 0);
        // EF (46) is the TOS byte 0xb8 that tcpdump prints as "tos 0xb8".
        assert_eq!(tos_byte(46), 0xb8);
        assert_eq!(tos_byte(10), 0x28, "AF11");
        assert_eq!(tos_byte(63), 0xfc, "the ECN bits stay clear");
    }

    #[test]
    fn interface_names_follow_linux() {
        for good in [
            "eth0",
            "vrf-blue",
            "wg0",
            "a",
            "enp0s31f6.100",
            "abcdefghijklmno",
        ] {
            assert_eq!(interface_name_problem(good), None, "{good}");
        }
        for bad in ["", "abcdefghijklmnop", ".", "..", "a/b", "eth0:1", "eth 0"] {
            assert!(interface_name_problem(bad).is_some(), "{bad:?}");
        }
    }

    /// Values outside the bounds are located config errors that state
    /// them; values inside parse into the module's options, for each
    /// TCP prober.
    #[test]
    fn the_config_takes_the_options_within_bounds_and_locates_the_rest() {
        let module = |prober: &str, fields: &str| {
            format!("modules:\n  m:\n    prober: {prober}\n    tcp: {{{fields}}}\n")
        };
        for prober in ["tcp_halfopen", "tcp_connect", "tcp"] {
            let yaml = module(prober, "source_interface: vrf-blue, mark: 0xff00, dscp: 63");
            let config = crate::config::Config::parse("r.yml", &yaml).unwrap();
            let tcp = config.modules["m"].tcp().unwrap();
            assert_eq!(
                (tcp.source_interface.as_deref(), tcp.mark, tcp.dscp),
                (Some("vrf-blue"), Some(0xff00), Some(63)),
                "{prober}"
            );
        }
        for (fields, wanted) in [
            (
                "dscp: 64",
                "r.yml:4:17: field `modules.m.tcp.dscp`: 64 is out of range: a DSCP is 6 bits, from 0 to 63",
            ),
            ("dscp: -1", "modules.m.tcp.dscp"),
            ("mark: 4294967296", "modules.m.tcp.mark"),
            (
                "source_interface: \"eth0:1\"",
                "r.yml:4:29: field `modules.m.tcp.source_interface`: interface name \"eth0:1\" holds ':'",
            ),
            (
                "source_interface: abcdefghijklmnop",
                "must be 1 to 15 bytes long",
            ),
        ] {
            let error = crate::config::Config::parse("r.yml", &module("tcp_halfopen", fields))
                .expect_err(fields)
                .to_string();
            assert!(error.contains(wanted), "{fields}: {error}");
        }
    }

    fn options(source_interface: Option<&str>, mark: Option<u32>, dscp: Option<u8>) -> TcpOptions {
        TcpOptions {
            source_interface: source_interface.map(str::to_owned),
            mark,
            dscp,
            ..TcpOptions::default()
        }
    }

    /// What the kernel keeps of each option is read back with socket2's
    /// getters, for both families and an IPv4-mapped destination.
    #[test]
    fn the_options_reach_the_socket_as_the_kernel_reads_them() {
        let v4 = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        set_route_options(
            &v4,
            &options(None, None, Some(46)),
            "192.0.2.1".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(v4.tos_v4().unwrap(), 0xb8);
        let v6 = Socket::new(Domain::IPV6, Type::STREAM, None).unwrap();
        set_route_options(
            &v6,
            &options(None, None, Some(10)),
            "2001:db8::1".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(v6.tclass_v6().unwrap(), 0x28);
        let mapped = Socket::new(Domain::IPV6, Type::STREAM, None).unwrap();
        set_route_options(
            &mapped,
            &options(None, None, Some(63)),
            "::ffff:192.0.2.1".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(
            (mapped.tclass_v6().unwrap(), mapped.tos_v4().unwrap()),
            (0xfc, 0xfc)
        );
        // Unset options are left alone.
        let untouched = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        set_route_options(
            &untouched,
            &TcpOptions::default(),
            "192.0.2.1".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(untouched.tos_v4().unwrap(), 0);
        assert_eq!(untouched.device().unwrap(), None);
    }

    #[test]
    fn loopback_binds_and_a_missing_interface_is_named() {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        set_route_options(
            &socket,
            &options(Some("lo"), None, None),
            "127.0.0.1".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(socket.device().unwrap().as_deref(), Some(&b"lo"[..]));
        let refused = set_route_options(
            &socket,
            &options(Some("synack-none0"), None, None),
            "127.0.0.1".parse().unwrap(),
        )
        .unwrap_err();
        assert_eq!(refused.field, "source_interface");
        assert_eq!(refused.error.raw_os_error(), Some(libc::ENODEV));
        assert!(
            refused
                .hint()
                .contains("\"synack-none0\" is not an interface of this host"),
            "{}",
            refused.hint()
        );
    }

    #[test]
    fn a_refused_mark_names_the_capabilities_that_grant_it() {
        let refused = RouteRefused::new(
            "mark",
            &options(None, Some(7), None),
            io::Error::from_raw_os_error(libc::EPERM),
        );
        assert!(
            refused.hint().contains("CAP_NET_ADMIN"),
            "{}",
            refused.hint()
        );
        assert!(
            refused.hint().contains("CAP_NET_RAW on Linux 5.17"),
            "{}",
            refused.hint()
        );
    }
}
