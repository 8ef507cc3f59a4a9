//! Path evidence for a TCP probe that timed out (`tcp.trace_on_timeout`):
//! SYNs with a rising TTL, and the last hop that answered one.
//!
//! After the probe's SYNs went unanswered, [`run`] sends one SYN for each
//! TTL (IPv6: hop limit) from 1 to [`MAX_HOPS`], all at once, each from
//! its own non-blocking socket set up as the probe's was (half-open:
//! `TCP_QUICKACK` 0 and `SO_LINGER {on, 0}`, the module's source address,
//! interface, mark and DSCP, `IP_RECVERR`). A router where a SYN's TTL
//! runs out sends ICMP time exceeded, which the kernel queues on that
//! SYN's socket with the router as offender; a SYN that reaches the target
//! draws its answer (SYN-ACK, RST, an ICMP error) or nothing. When the
//! target answered, the last hop is the target at the lowest TTL it
//! answered (every higher TTL reaches it too): the path is whole, and the
//! probe's SYN or its answer was lost. Otherwise the last hop is the
//! highest TTL with an answer, and the SYN was lost after it.
//!
//! The trace must end within the probe's deadline, so that `/probe`
//! still answers within the scrape timeout: a module with
//! `trace_on_timeout` keeps [`reserve`] of its timeout (a quarter, at most
//! [`MAX_WAIT`]) for it, and its SYNs' wait ends that much earlier.
//!
//! No trace SYN ever completes a connection: a socket whose SYN drew a
//! SYN-ACK closes at the wake-up that shows it, with RST, before the
//! delayed ACK, and the close counts in the half-open guard as a probe's.

#![forbid(unsafe_code)]

use super::tcp::{
    Handshake, ProbeSocket, open_socket, queued_icmp, start_connect, until_connected,
};
use super::{HalfOpenCloses, IcmpError};
use crate::config::TcpOptions;
use futures_util::future::join_all;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::time::Duration;
use tokio::time::Instant;

/// The highest TTL a trace SYN is sent with: one SYN per TTL from 1, so a
/// trace sends at most this many packets.
pub(super) const MAX_HOPS: u8 = 30;

/// The most time a trace waits for its answers.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(1);

/// How much of a probe's `timeout` is kept for the trace of a module with
/// `trace_on_timeout`: a quarter, at most [`MAX_WAIT`]; `None` without
/// the option.
#[must_use]
pub(super) fn reserve(options: &TcpOptions, timeout: Duration) -> Option<Duration> {
    options
        .trace_on_timeout
        .then(|| (timeout / 4).min(MAX_WAIT))
}

/// A host that answered a trace SYN.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceHop {
    /// The TTL (IPv6: hop limit) of the SYN it answered.
    pub ttl: u8,
    /// Who answered: the router that sent the ICMP error, or the target.
    pub address: IpAddr,
}

/// What a trace found.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    /// SYNs sent (one per TTL from 1); fewer than 30 only when the
    /// exporter could not open more sockets.
    pub sent: u8,
    /// The last hop that answered: the target at [`Self::reached`] when
    /// it answered, else the answer to the highest TTL that drew one;
    /// `None` when no hop answered.
    pub last_hop: Option<TraceHop>,
    /// The lowest TTL whose SYN the target answered with SYN-ACK (closed
    /// at once with RST): the port is open, and the probe's SYN or its
    /// answer was lost.
    pub syn_ack: Option<u8>,
    /// The lowest TTL whose SYN the target answered with RST.
    pub rst: Option<u8>,
    /// The lowest TTL whose SYN the target itself answered (SYN-ACK, RST,
    /// or an ICMP error from its address): how many hops away it is.
    /// Every higher TTL reaches it too, so this, not the highest TTL
    /// answered, is then the last hop.
    pub reached: Option<u8>,
}

impl fmt::Display for Trace {
    /// What the trace puts in front of a timeout's detail:
    /// `SYN lost after hop 2 (198.51.100.1)`, or that no hop answered, or
    /// that the target answered a trace SYN.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const LOST: &str = "the probe's SYN or its answer was lost";
        if self.sent == 0 {
            return f
                .write_str("no trace SYN was sent: the exporter could not open a socket for one");
        }
        if let Some(ttl) = self.syn_ack {
            return write!(
                f,
                "the port answered the trace SYN at hop {ttl} with SYN-ACK (closed with RST): {LOST}"
            );
        }
        if let Some(ttl) = self.rst {
            return write!(
                f,
                "the target answered the trace SYN at hop {ttl} with RST: {LOST}"
            );
        }
        if let Some(ttl) = self.reached {
            return write!(
                f,
                "the target answered the trace SYN at hop {ttl} with an ICMP error: {LOST}"
            );
        }
        match self.last_hop {
            Some(hop) => write!(f, "SYN lost after hop {} ({})", hop.ttl, hop.address),
            None => write!(
                f,
                "SYN lost before hop 1: no hop answered the {} trace SYNs (TTL 1 to {})",
                self.sent, self.sent
            ),
        }
    }
}

/// How one trace SYN ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HopAnswer {
    /// An ICMP error from a router or the target.
    Icmp(IcmpError),
    /// SYN-ACK from the target; the socket closed with RST.
    SynAck,
    /// RST from the target.
    Rst,
}

impl fmt::Display for HopAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Icmp(icmp) => write!(f, "{icmp}"),
            Self::SynAck => f.write_str("SYN-ACK from the target, closed with RST"),
            Self::Rst => f.write_str("RST from the target"),
        }
    }
}

/// Sends the trace SYNs to `address` and waits for their answers until
/// `deadline` (or until every SYN has one); `answered` is told of each
/// answer, by TTL. Sockets the exporter cannot open end the sending: the
/// trace then has fewer SYNs.
pub(super) async fn run(
    address: SocketAddr,
    options: &TcpOptions,
    guard: &HalfOpenCloses,
    deadline: Instant,
    mut answered: impl FnMut(u8, HopAnswer),
) -> Trace {
    let mut sockets = Vec::with_capacity(usize::from(MAX_HOPS));
    for ttl in 1..=MAX_HOPS {
        match send(address, options, ttl) {
            Ok(stream) => sockets.push((ttl, ProbeSocket::new(stream, Some(guard)))),
            Err(_) => break,
        }
    }
    let sent = u8::try_from(sockets.len()).unwrap_or(MAX_HOPS);
    let waits = sockets
        .into_iter()
        .map(|(ttl, socket)| async move { (ttl, wait(socket, address, deadline).await) });
    let answers = join_all(waits)
        .await
        .into_iter()
        .filter_map(|(ttl, answer)| {
            let answer = answer?;
            answered(ttl, answer);
            Some((ttl, answer))
        });
    summarize(sent, address.ip(), answers)
}

/// What a trace of `sent` SYNs to `target` found from their `answers`,
/// by TTL in rising order: see [`Trace::last_hop`].
fn summarize(
    sent: u8,
    target: IpAddr,
    answers: impl IntoIterator<Item = (u8, HopAnswer)>,
) -> Trace {
    let mut trace = Trace {
        sent,
        ..Trace::default()
    };
    for (ttl, answer) in answers {
        let from = match answer {
            HopAnswer::Icmp(icmp) => icmp.offender,
            HopAnswer::SynAck => {
                trace.syn_ack = trace.syn_ack.or(Some(ttl));
                Some(target)
            }
            HopAnswer::Rst => {
                trace.rst = trace.rst.or(Some(ttl));
                Some(target)
            }
        };
        // An IPv4-mapped target's ICMP may name it as plain IPv4.
        if from.map(|from| from.to_canonical()) == Some(target.to_canonical()) {
            trace.reached = trace.reached.or(Some(ttl));
        }
        if let Some(from) = from {
            trace.last_hop = Some(TraceHop { ttl, address: from });
        }
    }
    // Once a SYN reaches the target, every higher TTL does too: the target
    // at its distance is the last hop, not at the highest TTL.
    if let Some(ttl) = trace.reached {
        trace.last_hop = Some(TraceHop {
            ttl,
            address: target,
        });
    }
    trace
}

/// Opens a trace socket with the probe's options and `ttl`, and sends its SYN.
fn send(address: SocketAddr, options: &TcpOptions, ttl: u8) -> io::Result<tokio::net::TcpStream> {
    let socket = open_socket(address, Handshake::HalfOpen, options).map_err(io::Error::from)?;
    let ttl = u32::from(ttl);
    if address.is_ipv6() {
        socket.set_unicast_hops_v6(ttl)?;
        // An IPv4-mapped target goes out as IPv4, with IP_TTL (which
        // Linux takes on an IPv6 socket too).
        if let IpAddr::V6(ip) = address.ip()
            && ip.to_ipv4_mapped().is_some()
        {
            socket.set_ttl_v4(ttl)?;
        }
    } else {
        socket.set_ttl_v4(ttl)?;
    }
    start_connect(socket, address)
}

/// Waits for one trace SYN's answer until `deadline`; a SYN-ACK closes the
/// socket at once, with RST.
async fn wait(
    socket: ProbeSocket<'_>,
    address: SocketAddr,
    deadline: Instant,
) -> Option<HopAnswer> {
    match tokio::time::timeout_at(deadline, until_connected(socket.stream(), address)).await {
        Ok(Ok(woke)) => {
            let kernel = crate::sys::handshake_info(socket.stream().as_fd()).ok();
            socket.close_after_syn_ack(woke, kernel);
            Some(HopAnswer::SynAck)
        }
        Ok(Err(failed)) => match (failed.icmp, failed.error) {
            (Some(icmp), _) => Some(HopAnswer::Icmp(icmp)),
            (None, Some(error)) if error.raw_os_error() == Some(libc::ECONNREFUSED) => {
                Some(HopAnswer::Rst)
            }
            _ => None,
        },
        // Dropped, not closed as unanswered: a SYN-ACK that came while
        // the thread could not run still counts in the guard.
        Err(_) => queued_icmp(socket.stream()).map(HopAnswer::Icmp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prober::IcmpError;

    #[test]
    fn a_trace_keeps_a_quarter_of_the_timeout_at_most_one_second_when_asked() {
        let mut options = TcpOptions::default();
        assert_eq!(reserve(&options, Duration::from_secs(2)), None);
        options.trace_on_timeout = true;
        assert_eq!(
            reserve(&options, Duration::from_secs(2)),
            Some(Duration::from_millis(500))
        );
        assert_eq!(reserve(&options, Duration::from_secs(10)), Some(MAX_WAIT));
        const { assert!(MAX_HOPS <= 30, "about 30 packets at most, says the issue") };
    }

    #[test]
    fn a_trace_reads_as_the_start_of_a_timeout_detail() {
        let hop = |ttl, address: &str| TraceHop {
            ttl,
            address: address.parse().unwrap(),
        };
        let lost = Trace {
            sent: 30,
            last_hop: Some(hop(2, "198.51.100.1")),
            ..Trace::default()
        };
        assert_eq!(lost.to_string(), "SYN lost after hop 2 (198.51.100.1)");
        let silent = Trace {
            sent: 30,
            ..Trace::default()
        };
        assert_eq!(
            silent.to_string(),
            "SYN lost before hop 1: no hop answered the 30 trace SYNs (TTL 1 to 30)"
        );
        let open = Trace {
            sent: 30,
            last_hop: Some(hop(3, "203.0.113.2")),
            syn_ack: Some(3),
            ..Trace::default()
        };
        assert_eq!(
            open.to_string(),
            "the port answered the trace SYN at hop 3 with SYN-ACK (closed with RST): \
             the probe's SYN or its answer was lost"
        );
    }

    /// ICMP time exceeded from `router`, as the kernel queues it.
    fn time_exceeded(router: &str) -> HopAnswer {
        HopAnswer::Icmp(IcmpError {
            ipv6: false,
            icmp_type: 11,
            code: 0,
            offender: Some(router.parse().unwrap()),
        })
    }

    /// Once a trace SYN reaches the target, every higher TTL reaches it
    /// too: the last hop is the lowest TTL the target answered at (its
    /// distance), whatever its answer, not the highest TTL answered.
    #[test]
    fn a_trace_that_reached_the_target_names_the_hop_where_it_did() {
        let target: IpAddr = "203.0.113.2".parse().unwrap();
        let port_unreachable = HopAnswer::Icmp(IcmpError {
            ipv6: false,
            icmp_type: 3,
            code: 3,
            offender: Some(target),
        });
        for (answer, detail) in [
            (
                HopAnswer::Rst,
                "the target answered the trace SYN at hop 3 with RST: \
                 the probe's SYN or its answer was lost",
            ),
            (
                HopAnswer::SynAck,
                "the port answered the trace SYN at hop 3 with SYN-ACK (closed with RST): \
                 the probe's SYN or its answer was lost",
            ),
            (
                port_unreachable,
                "the target answered the trace SYN at hop 3 with an ICMP error: \
                 the probe's SYN or its answer was lost",
            ),
        ] {
            let answers = [
                (1, time_exceeded("192.0.2.1")),
                (2, time_exceeded("198.51.100.2")),
            ]
            .into_iter()
            .chain((3..=MAX_HOPS).map(|ttl| (ttl, answer)));
            let trace = summarize(MAX_HOPS, target, answers);
            assert_eq!(
                trace.last_hop,
                Some(TraceHop {
                    ttl: 3,
                    address: target
                }),
                "{answer}"
            );
            assert_eq!(trace.to_string(), detail);
        }
        // A path that loses the SYN after hop 2 still names hop 2.
        let lost = summarize(
            MAX_HOPS,
            target,
            [
                (1, time_exceeded("192.0.2.1")),
                (2, time_exceeded("198.51.100.2")),
            ],
        );
        assert_eq!(lost.to_string(), "SYN lost after hop 2 (198.51.100.2)");
    }

    #[test]
    fn a_trace_that_could_not_send_says_so() {
        let none = summarize(0, "203.0.113.2".parse().unwrap(), []);
        assert_eq!(none.last_hop, None);
        assert_eq!(
            none.to_string(),
            "no trace SYN was sent: the exporter could not open a socket for one"
        );
    }
}
