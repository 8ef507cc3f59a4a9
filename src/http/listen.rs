//! `--web.listen-address`: what it may say, and binding it.
//!
//! The flag is parsed into a [`ListenAddress`] when the command line is
//! read, so `--config.check` refuses exactly what start-up would refuse;
//! only the bind itself (a port in use, a name that does not resolve) is
//! left for start-up.

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
pub struct ListenAddress {
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
    /// The port asked for; 0 lets the kernel choose.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

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
    pub fn bind(&self) -> io::Result<TcpListener> {
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
