//! `--web.listen-address`: what it may say, and binding it.
//!
//! The flag is parsed into a [`ListenAddress`] when the command line is
//! read, and the list is checked for addresses given twice
//! ([`ListenAddress::check_distinct`]), so `--config.check` refuses
//! exactly what start-up would refuse; only the bind itself (a port that
//! another process holds, a name that does not resolve) is left for
//! start-up.

#![forbid(unsafe_code)]

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use tokio::net::TcpListener;

/// How many connections may wait in the kernel for `accept`.
const LISTEN_BACKLOG: i32 = 1024;

/// A valid `--web.listen-address`: `:PORT` (every address), `IP:PORT`,
/// `[IPv6]:PORT` or `HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ListenAddress {
    host: Host,
    port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Host {
    /// `:PORT`: dual-stack `[::]` where IPv6 exists, `0.0.0.0` otherwise.
    Every,
    Ip(IpAddr),
    Name(String),
}

impl ListenAddress {
    /// The socket addresses to try, in order.
    fn candidates(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(match &self.host {
            Host::Every => vec![
                SocketAddr::from((Ipv6Addr::UNSPECIFIED, self.port)),
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, self.port)),
            ],
            Host::Ip(ip) => vec![SocketAddr::new(*ip, self.port)],
            Host::Name(name) => (name.as_str(), self.port).to_socket_addrs()?.collect(),
        })
    }

    /// Binds the first candidate address that works.
    ///
    /// # Errors
    /// The last bind error, or the name's resolution error.
    pub(crate) fn bind(&self) -> io::Result<TcpListener> {
        let mut last_error = io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{self} names no address"),
        );
        for address in self.candidates()? {
            match bind_one(address) {
                Ok(listener) => return Ok(listener),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }
}

fn bind_one(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if address.is_ipv6() && address.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(address))?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

impl FromStr for ListenAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = "use :PORT for every address, or HOST:PORT, IP:PORT or [IPv6]:PORT for one";
        if text.bytes().all(|b| b.is_ascii_digit()) && !text.is_empty() {
            return Err(format!(
                "{text:?} has no host part: write :{text} to listen on all addresses, or 127.0.0.1:{text} for loopback only"
            ));
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(format!("{text:?} has no port: {usage}"));
        };
        let port = parse_port(port).ok_or_else(|| {
            format!("{text:?} has no valid port (a number from 0 to 65535): {usage}")
        })?;
        let host = if host.is_empty() {
            Host::Every
        } else if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            let ip = inner
                .parse::<Ipv6Addr>()
                .map_err(|_| format!("{text:?}: {inner:?} in brackets is not an IPv6 address"))?;
            Host::Ip(IpAddr::V6(ip))
        } else if let Ok(ip) = host.parse::<Ipv4Addr>() {
            Host::Ip(IpAddr::V4(ip))
        } else if host.contains(':') {
            return Err(format!(
                "{text:?}: put an IPv6 address in brackets, as in [::1]:{port}"
            ));
        } else if is_host_name(host) {
            Host::Name(host.to_owned())
        } else {
            return Err(format!(
                "{text:?}: {host:?} is not a host name or IP address: {usage}"
            ));
        };
        Ok(Self { host, port })
    }
}

impl ListenAddress {
    /// Refuses a list in which two addresses would listen on the same
    /// address and port, so that the second bind would fail with "address
    /// in use" although no other process holds it: the same address given
    /// twice, or one that another covers (`:9215` and `0.0.0.0:9215`).
    ///
    /// Names are compared as written, not resolved: `localhost:9215` and
    /// `127.0.0.1:9215` are left to the bind. Port 0 never collides: the
    /// kernel picks a free port for each.
    ///
    /// # Errors
    /// One line naming the two addresses.
    pub(crate) fn check_distinct(addresses: &[Self]) -> Result<(), String> {
        for (index, first) in addresses.iter().enumerate() {
            for second in &addresses[index + 1..] {
                if first.port != second.port || first.port == 0 {
                    continue;
                }
                if first.host.same_as(&second.host) {
                    return Err(format!(
                        "--web.listen-address {second} is given twice: give each address once"
                    ));
                }
                let wider = [first, second]
                    .into_iter()
                    .find(|address| address.host.covers(&other(address, first, second).host));
                if let Some(wider) = wider {
                    let narrower = other(wider, first, second);
                    return Err(format!(
                        "--web.listen-address {first} and {second} overlap: {wider} already listens \
                         on {} of port {}, {narrower} included; give only one of them",
                        wider.host.scope(),
                        wider.port
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Of `first` and `second`, the one that is not `this`.
fn other<'a>(
    this: &ListenAddress,
    first: &'a ListenAddress,
    second: &'a ListenAddress,
) -> &'a ListenAddress {
    if std::ptr::eq(this, first) {
        second
    } else {
        first
    }
}

impl Host {
    /// Whether both name the same address: equal IPs (an IPv4-mapped IPv6
    /// address is its IPv4 address), or names equal but for case.
    fn same_as(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Every, Self::Every) => true,
            (Self::Ip(a), Self::Ip(b)) => a.to_canonical() == b.to_canonical(),
            (Self::Name(a), Self::Name(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        }
    }

    /// Whether listening here takes `other`'s address too: every address
    /// (`:PORT`, `[::]`, both dual-stack) takes them all, `0.0.0.0` every
    /// IPv4 address.
    fn covers(&self, other: &Self) -> bool {
        match self {
            Self::Every => true,
            Self::Ip(IpAddr::V6(ip)) if ip.is_unspecified() => true,
            Self::Ip(IpAddr::V4(ip)) if ip.is_unspecified() => {
                matches!(other, Self::Ip(ip) if ip.to_canonical().is_ipv4())
            }
            _ => false,
        }
    }

    /// What a covering host listens on, for [`ListenAddress::check_distinct`].
    fn scope(&self) -> &'static str {
        match self {
            Self::Ip(IpAddr::V4(_)) => "every IPv4 address",
            _ => "every address",
        }
    }
}

/// A decimal port with no sign and no leading zeros (`0` itself is valid).
fn parse_port(text: &str) -> Option<u16> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

fn is_host_name(text: &str) -> bool {
    text.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Every => write!(f, ":{}", self.port),
            Host::Ip(ip) => write!(f, "{}", SocketAddr::new(*ip, self.port)),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_documented_form_and_round_trips() {
        for text in [
            ":9215",
            "127.0.0.1:9215",
            "[::1]:9215",
            "localhost:0",
            "exporter.example.org:9215",
        ] {
            let address: ListenAddress = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(address.to_string(), text);
        }
    }

    #[test]
    fn a_bare_port_gets_the_colon_hint() {
        let error = "9215".parse::<ListenAddress>().unwrap_err();
        assert!(
            error.contains("write :9215 to listen on all addresses"),
            "{error}"
        );
    }

    #[test]
    fn the_same_address_twice_or_one_inside_another_is_named_as_such() {
        let check = |texts: &[&str]| {
            let addresses: Vec<ListenAddress> = texts.iter().map(|t| t.parse().unwrap()).collect();
            ListenAddress::check_distinct(&addresses)
        };
        for (texts, error) in [
            (
                &[":9215", ":9215"][..],
                "--web.listen-address :9215 is given twice: give each address once",
            ),
            (
                &["127.0.0.1:9215", "[::ffff:127.0.0.1]:9215"],
                "--web.listen-address [::ffff:127.0.0.1]:9215 is given twice: give each address once",
            ),
            (
                &["Localhost:9215", "localhost:9215"],
                "--web.listen-address localhost:9215 is given twice: give each address once",
            ),
            (
                &["0.0.0.0:9215", ":9215"],
                "--web.listen-address 0.0.0.0:9215 and :9215 overlap: :9215 already listens on \
                 every address of port 9215, 0.0.0.0:9215 included; give only one of them",
            ),
            (
                &["127.0.0.1:9215", "0.0.0.0:9215"],
                "--web.listen-address 127.0.0.1:9215 and 0.0.0.0:9215 overlap: 0.0.0.0:9215 already \
                 listens on every IPv4 address of port 9215, 127.0.0.1:9215 included; give only one of them",
            ),
            (
                &["[::]:9215", "[::1]:9215"],
                "--web.listen-address [::]:9215 and [::1]:9215 overlap: [::]:9215 already listens on \
                 every address of port 9215, [::1]:9215 included; give only one of them",
            ),
            (
                &["127.0.0.1:1", "localhost:9215", ":9215"],
                "--web.listen-address localhost:9215 and :9215 overlap: :9215 already listens on \
                 every address of port 9215, localhost:9215 included; give only one of them",
            ),
        ] {
            assert_eq!(check(texts), Err(error.to_owned()), "{texts:?}");
        }
        for texts in [
            &[":9215", ":9216"][..],
            &["127.0.0.1:9215", "127.0.0.2:9215", "[::1]:9215"],
            &["0.0.0.0:9215", "[::1]:9215"],
            &[":0", ":0"],
            &["localhost:9215", "127.0.0.1:9215"],
        ] {
            assert_eq!(check(texts), Ok(()), "{texts:?}");
        }
    }

    #[test]
    fn rejects_what_cannot_be_bound_with_a_reason() {
        for (text, needle) in [
            ("", "no port"),
            ("localhost", "no port"),
            (":", "no valid port"),
            (":65536", "no valid port"),
            (":09215", "no valid port"),
            (":+1", "no valid port"),
            ("::1:9215", "brackets"),
            ("[nope]:9215", "not an IPv6 address"),
            ("bad host:9215", "not a host name"),
            ("a..b:1", "not a host name"),
        ] {
            let error = text.parse::<ListenAddress>().unwrap_err();
            assert!(error.contains(needle), "{text:?}: {error}");
        }
    }
}
