//! The TCP probers: `tcp_halfopen` and `tcp_connect`.
//!
//! Both open a non-blocking socket with `SO_LINGER {on, 0}`, so that
//! closing it sends RST and leaves no TIME_WAIT, start a connect, wait
//! with tokio until the socket is writable, and read `SO_ERROR`. They
//! differ in one socket option:
//!
//! - **half-open** sets `TCP_QUICKACK` to 0 before connecting. The kernel
//!   then holds back the ACK for the SYN-ACK (delayed ACK, about 200 ms),
//!   and we close first: the wire shows SYN, SYN-ACK, RST, and the
//!   listening application never gets a connection from `accept()`.
//! - **connect** leaves quick ACKs on, so the handshake completes before
//!   the RST. SYN proxies and middleboxes that answer SYNs themselves need
//!   this, as do kernels without `TCP_QUICKACK`.
//!
//! Epoll flags decide nothing: a bare `EPOLLERR` can arrive while the
//! socket is still in SYN_SENT (HAProxy issues #1863, #2491). After each
//! wake-up we read `SO_ERROR`; if it is clear we ask `getpeername` whether
//! the connection really exists, and otherwise wait again.

#![forbid(unsafe_code)]

use super::{Budget, Failure, Outcome, Reason, Resolver, classify, resolve};
use crate::config::{TargetPolicy, TcpOptions};
use crate::target::Target;
use crate::trace::{Step, Trace};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::Interest;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// How far the handshake goes before the RST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Handshake {
    /// Stop after the SYN-ACK.
    HalfOpen,
    /// Complete the handshake.
    Full,
}

/// Resolves the target, then runs the handshake; see the module docs.
///
/// With a `policy`, the target is checked before it is resolved and the
/// address after, before any socket is opened; a refusal ends the probe
/// with [`Outcome::denied`]. Without one, neither check costs anything.
pub(super) async fn probe(
    handshake: Handshake,
    target: &Target,
    options: &TcpOptions,
    policy: Option<&TargetPolicy>,
    resolver: &Resolver,
    budget: Budget,
    trace: &mut Trace,
) -> Outcome {
    let cleared = match policy.map(|policy| policy.check_target(target)) {
        Some(Err(refusal)) => return Outcome::denied(&refusal),
        Some(Ok(cleared)) => Some(cleared),
        None => None,
    };
    let deadline = budget.deadline;
    let dns_started = Instant::now();
    let resolved = resolve::resolve(&target.host, options, resolver, deadline, trace)
        .await
        .and_then(|ip| left_enough_after_dns(ip, budget, dns_started));
    let dns_time = dns_started.elapsed();
    let mut outcome = Outcome {
        failure: None,
        address: None,
        dns_time,
        handshake_time: None,
        duration: Duration::ZERO,
        attempts: 0,
        attempts_failed: 0,
        later_handshake_times: Vec::new(),
        exit_code: None,
        denied_by_policy: false,
    };
    let ip = match resolved {
        Ok(ip) => ip,
        Err(failure) => {
            outcome.failure = Some(failure);
            return outcome;
        }
    };
    if let (Some(policy), Some(cleared)) = (policy, cleared)
        && let Err(refusal) = policy.check_address(cleared, ip, target.port)
    {
        return Outcome {
            dns_time,
            ..Outcome::denied(&refusal)
        };
    }
    let address = SocketAddr::new(ip, target.port);
    outcome.address = Some(address);
    attempt_all(
        handshake,
        address,
        options,
        budget.deadline,
        &mut outcome,
        trace,
    )
    .await;
    outcome
}

/// Runs the module's attempts against `address` one after another and
/// records them in `outcome`: success if any succeeded, else the last
/// attempt's failure.
///
/// Attempt *n* (from 0) starts `n × attempt_interval` after the first,
/// and has [`TcpOptions::attempt_deadline`] to get its answer. The first
/// always runs, as a single attempt did before attempts existed: the
/// prober starts it only before [`Budget::last_start`], and when the
/// deadline (lowered by a scrape timeout) comes before its own, the
/// deadline cuts it short. A later attempt is not started when it could
/// not end before the deadline, so the attempts run are all whole.
///
/// A single attempt without `attempt_timeout`, the default, takes one
/// pass with the probe's deadline: no timer, no allocation.
async fn attempt_all(
    handshake: Handshake,
    address: SocketAddr,
    options: &TcpOptions,
    deadline: Instant,
    outcome: &mut Outcome,
    trace: &mut Trace,
) {
    let planned = options.attempts.max(1);
    let each = options.attempt_deadline();
    let interval = options.attempt_interval.0;
    let mut first_start: Option<Instant> = None;
    let mut last_failure = None;
    for number in 1..=planned {
        if let Some(first_start) = first_start {
            let start = first_start + interval * (number - 1);
            if each.is_some_and(|each| start + each > deadline) {
                trace.log(|| Step::AttemptsCut {
                    from: number,
                    of: planned,
                });
                break;
            }
            tokio::time::sleep_until(start).await;
        }
        let started = Instant::now();
        first_start.get_or_insert(started);
        let attempt_deadline = each.map_or(deadline, |each| deadline.min(started + each));
        let result = connect(
            address,
            handshake,
            options.source_ip_address,
            attempt_deadline,
            trace,
        )
        .await;
        let latency = started.elapsed();
        outcome.attempts += 1;
        if planned > 1 {
            trace.log(|| Step::Attempt {
                number,
                of: planned,
                result: result
                    .as_ref()
                    .map_or_else(|failure| failure.reason.as_str(), |()| "success"),
                latency,
            });
        }
        match result {
            Ok(()) if outcome.handshake_time.is_none() => outcome.handshake_time = Some(latency),
            Ok(()) => outcome.later_handshake_times.push(latency),
            Err(failure) => {
                outcome.attempts_failed += 1;
                last_failure = Some(failure);
            }
        }
        if options.stop_on_success && outcome.handshake_time.is_some() {
            break;
        }
    }
    if outcome.handshake_time.is_none() {
        outcome.failure = last_failure.map(|failure| {
            if planned == 1 {
                return failure;
            }
            let detail = format!(
                "{} of {} attempts failed, the last: {}",
                outcome.attempts_failed, outcome.attempts, failure.detail
            );
            Failure::new(failure.reason, detail)
        });
    }
}

/// `ip`, unless resolving it left less than [`super::MIN_WIRE_SHARE`] of
/// the timeout: a SYN sent then could only time out on the name server's
/// account, so the probe fails as `dns` and says so.
fn left_enough_after_dns(
    ip: IpAddr,
    budget: Budget,
    dns_started: Instant,
) -> Result<IpAddr, Failure> {
    let now = Instant::now();
    if now <= budget.last_start {
        return Ok(ip);
    }
    Err(Failure::new(
        Reason::Dns,
        format!(
            "resolving took {:.3}s, leaving {:.3}s of the {:.3}s timeout: too little for the target to answer a SYN; \
             the name servers are slow (or raise the module's timeout)",
            now.saturating_duration_since(dns_started).as_secs_f64(),
            budget.deadline.saturating_duration_since(now).as_secs_f64(),
            budget.timeout.as_secs_f64(),
        ),
    ))
}

/// Connects and closes with RST; `Ok` once the port answered with SYN-ACK.
async fn connect(
    address: SocketAddr,
    handshake: Handshake,
    source: Option<IpAddr>,
    deadline: Instant,
    trace: &mut Trace,
) -> Result<(), Failure> {
    // Nothing has been sent yet: whatever fails here is the exporter's own
    // trouble (fds, a source address it does not have), never the target's.
    let socket = open_socket(address, handshake, source).map_err(|error| {
        let failure = os_failure("cannot prepare a socket for", address, &error);
        Failure::new(Reason::Local, failure.detail)
    })?;
    trace.log(|| Step::Connecting {
        address,
        half_open: handshake == Handshake::HalfOpen,
    });
    let connecting = TcpSocket::from_std_stream(socket.into()).connect(address);
    match tokio::time::timeout_at(deadline, until_connected(connecting)).await {
        Ok(Ok(stream)) => {
            // Closing with zero linger sends the RST, before the delayed ACK.
            drop(stream);
            trace.log(|| Step::SynAck(address));
            Ok(())
        }
        Ok(Err(error)) => {
            if let Some(errno) = error.raw_os_error() {
                trace.log(|| Step::ConnectFailed { address, errno });
            }
            Err(os_failure("connect to", address, &error))
        }
        Err(_) => {
            trace.log(|| Step::NoAnswer(address));
            Err(Failure::new(
                Reason::Timeout,
                format!("no answer from {address} before the deadline"),
            ))
        }
    }
}

/// Opens the non-blocking socket with the options the handshake needs.
fn open_socket(
    address: SocketAddr,
    handshake: Handshake,
    source: Option<IpAddr>,
) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    if handshake == Handshake::HalfOpen {
        socket.set_tcp_quickack(false)?;
    }
    socket.set_linger(Some(Duration::ZERO))?;
    if let Some(ip) = source {
        socket.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
    }
    Ok(socket)
}

/// Waits until the kernel reports that the connect finished.
///
/// tokio's connect returns once the socket is writable and `SO_ERROR` is
/// clear. That is not proof of a connection, so `getpeername` must agree;
/// until it does we wait for the next wake-up.
async fn until_connected(
    connecting: impl std::future::Future<Output = io::Result<TcpStream>>,
) -> io::Result<TcpStream> {
    let stream = connecting.await?;
    while stream.peer_addr().is_err() {
        // Forget the readiness that woke us, or writable() returns at once.
        let _ = stream.try_io(Interest::WRITABLE, || {
            Err::<(), _>(io::ErrorKind::WouldBlock.into())
        });
        stream.writable().await?;
        if let Some(error) = stream.take_error()? {
            return Err(error);
        }
    }
    Ok(stream)
}

fn os_failure(action: &str, address: SocketAddr, error: &io::Error) -> Failure {
    Failure::new(
        classify::reason_for(error),
        format!("{action} {address}: {}", classify::describe(error)),
    )
}
