//! From a host to the one IP address a probe uses.
//!
//! The choice follows blackbox_exporter: take an address of the preferred
//! family; if there is none and fallback is on, take one of the other
//! family; otherwise fail as `dns`. IP literals skip the lookup but obey
//! the same family rule, so a config that forbids IPv4 forbids it for
//! literals too.

use super::{Failure, Reason};
use crate::config::{IpProtocol, TcpOptions};
use crate::target::Host;
use crate::trace::Trace;
use std::net::IpAddr;
use tokio::time::Instant;

/// Resolves `host` and picks an address allowed by `options`.
pub(super) async fn resolve(
    host: &Host,
    options: &TcpOptions,
    deadline: Instant,
    trace: &mut Trace,
) -> Result<IpAddr, Failure> {
    let candidates = match host {
        Host::Ip(ip) => vec![*ip],
        Host::Name(name) => lookup(name, deadline, trace).await?,
    };
    let chosen = choose(&candidates, options).ok_or_else(|| {
        Failure::new(
            Reason::Dns,
            format!(
                "{host} has no address of an allowed family (preferred {:?}, fallback {}, source address {})",
                options.preferred_ip_protocol,
                options.ip_protocol_fallback,
                options
                    .source_ip_address
                    .map_or_else(|| "any".to_owned(), |source| source.to_string())
            ),
        )
    })?;
    trace.log(format_args!("chose address {chosen}"));
    Ok(chosen)
}

async fn lookup(name: &str, deadline: Instant, trace: &mut Trace) -> Result<Vec<IpAddr>, Failure> {
    trace.log(format_args!("resolving {name}"));
    // The port is irrelevant to resolution; getaddrinfo just needs one.
    let lookup = tokio::net::lookup_host((name, 0));
    match tokio::time::timeout_at(deadline, lookup).await {
        Err(_) => Err(Failure::new(
            Reason::Dns,
            format!("resolving {name} did not finish before the deadline"),
        )),
        Ok(Err(error)) => Err(Failure::new(
            Reason::Dns,
            format!("resolving {name} failed: {error}"),
        )),
        Ok(Ok(addresses)) => {
            let ips: Vec<IpAddr> = addresses.map(|address| address.ip()).collect();
            trace.log(format_args!("{name} resolved to {ips:?}"));
            Ok(ips)
        }
    }
}

fn choose(candidates: &[IpAddr], options: &TcpOptions) -> Option<IpAddr> {
    // With a source address, only its family can be connected from.
    let source_family_ok = |ip: &&IpAddr| {
        options
            .source_ip_address
            .is_none_or(|source| source.is_ipv4() == ip.is_ipv4())
    };
    let candidates: Vec<IpAddr> = candidates
        .iter()
        .filter(source_family_ok)
        .copied()
        .collect();
    let is_preferred = |ip: &&IpAddr| match options.preferred_ip_protocol {
        IpProtocol::Ip4 => ip.is_ipv4(),
        IpProtocol::Ip6 => ip.is_ipv6(),
    };
    let preferred = candidates.iter().find(is_preferred);
    let fallback = || {
        candidates
            .iter()
            .find(|ip| !is_preferred(ip))
            .filter(|_| options.ip_protocol_fallback)
    };
    preferred.or_else(fallback).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(preferred: IpProtocol, fallback: bool) -> TcpOptions {
        TcpOptions {
            preferred_ip_protocol: preferred,
            ip_protocol_fallback: fallback,
            source_ip_address: None,
        }
    }

    #[test]
    fn prefers_the_configured_family_and_falls_back_only_when_allowed() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(choose(&[v6, v4], &options(IpProtocol::Ip4, true)), Some(v4));
        assert_eq!(choose(&[v4, v6], &options(IpProtocol::Ip6, true)), Some(v6));
        assert_eq!(choose(&[v6], &options(IpProtocol::Ip4, true)), Some(v6));
        assert_eq!(choose(&[v6], &options(IpProtocol::Ip4, false)), None);
        assert_eq!(choose(&[], &options(IpProtocol::Ip4, true)), None);
        let from_v6 = TcpOptions {
            source_ip_address: Some(v6),
            ..options(IpProtocol::Ip4, true)
        };
        assert_eq!(
            choose(&[v4, v6], &from_v6),
            Some(v6),
            "the source's family wins"
        );
        assert_eq!(choose(&[v4], &from_v6), None);
    }
}
