//! The raw engine's source ports, held so that nobody else has them.
//!
//! A raw SYN names its source port itself; no socket owns it. The engine
//! holds each port it uses by binding an ordinary TCP socket to it (on
//! `[::]`, dual-stack, so IPv4 too; on `0.0.0.0` where the host has no
//! IPv6) that never listens and never connects. The port is then in the
//! kernel's bind table: the kernel gives it to no other socket, and a
//! SYN-ACK that comes to it finds no connection and no listener, so the
//! kernel answers it with an RST itself, in the softirq that received it.
//! That RST is what makes the engine's probes half-open whatever its
//! threads are doing.
//!
//! **The range** is `--probe.raw-source-ports`, 61000–65535 by default:
//! above Linux's ephemeral range (32768–60999, `ip_local_port_range`), so
//! the kernel never picks these ports for outgoing connections; and its
//! 4536 ports cover `--probe.max-in-flight`'s default 4096. Each probe
//! in flight holds one port, for its SYN and its retransmits; one that
//! finds none free fails as `local`, naming the flag.
//!
//! **Held as needed**, not all at start: a port is bound when no held
//! port is free, and let go again when more than [`IDLE_PORTS`] held ports
//! are free. So the engine holds one descriptor per raw probe in flight,
//! as the socket engine holds one socket, and at most [`IDLE_PORTS`]
//! more. Two exporters on one host share the range: a port one of them
//! holds is skipped by the other (its bind fails) and tried again a
//! second later.
//!
//! **Reuse is delayed as long as the pool allows:** a port given back
//! goes to the end of the free list. Its next probe may still meet a late
//! answer to its last one; the sequence number's generation
//! ([`super::isn`]) tells them apart.

#![forbid(unsafe_code)]

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The source ports of one engine.
#[derive(Debug)]
pub(super) struct SourcePorts {
    range: RangeInclusive<u16>,
    pool: Mutex<Pool>,
}

#[derive(Debug)]
struct Pool {
    /// The holding socket of each port of the range, by its offset.
    held: Vec<Option<Socket>>,
    /// How many probes have used each port: its generation.
    generations: Vec<u32>,
    /// Held ports no probe uses, the longest free first; at most
    /// [`IDLE_PORTS`].
    free: VecDeque<u16>,
    /// Ports not held, to try first: never tried, or let go.
    unheld: VecDeque<u16>,
    /// Ports someone else held when tried, each with the time it may be
    /// tried again.
    skipped: VecDeque<(u16, Instant)>,
}

/// Held ports kept without a probe, for the next probes: beyond them, the
/// longest free is let go, so that the engine holds at most this many
/// descriptors beyond its probes in flight (each of which holds its
/// port, as a socket probe holds its socket).
pub(crate) const IDLE_PORTS: usize = 64;

/// How long a port someone else held is left alone before it is tried
/// again.
const SKIPPED_FOR: Duration = Duration::from_secs(1);

/// How many ports `range` has.
pub(super) fn range_len(range: &RangeInclusive<u16>) -> usize {
    if range.is_empty() {
        0
    } else {
        usize::from(*range.end() - *range.start()) + 1
    }
}

/// A port a probe may use, and its generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Lease {
    pub(super) port: u16,
    pub(super) generation: u32,
}

/// Why no port could be had.
#[derive(Debug)]
pub(super) enum NoPort {
    /// Every port of the range is held by a probe in flight, or by
    /// someone else.
    Exhausted { held: usize },
    /// Binding the next port failed for another reason (file
    /// descriptors, most likely).
    Bind(io::Error),
}

impl SourcePorts {
    pub(super) fn new(range: RangeInclusive<u16>) -> Self {
        let len = range_len(&range);
        Self {
            pool: Mutex::new(Pool {
                held: (0..len).map(|_| None).collect(),
                generations: vec![0; len],
                free: VecDeque::new(),
                unheld: range.clone().collect(),
                skipped: VecDeque::new(),
            }),
            range,
        }
    }

    /// The range the ports come from.
    pub(super) fn range(&self) -> RangeInclusive<u16> {
        self.range.clone()
    }

    /// The offset of `port` in the range, if it is in it.
    pub(super) fn offset(&self, port: u16) -> Option<usize> {
        self.range
            .contains(&port)
            .then(|| usize::from(port - self.range.start()))
    }

    /// How many ports are held now.
    pub(super) fn held(&self) -> usize {
        let pool = self.lock();
        pool.held.iter().filter(|socket| socket.is_some()).count()
    }

    /// A free port: the longest free of those held, else a new one held
    /// (never tried or let go first, then one someone else held a while
    /// ago). Each use is a new generation of the port.
    pub(super) fn take(&self) -> Result<Lease, NoPort> {
        let mut pool = self.lock();
        let port = match pool.free.pop_front() {
            Some(port) => port,
            None => self.hold_another(&mut pool)?,
        };
        let offset = usize::from(port - self.range.start());
        pool.generations[offset] = pool.generations[offset].wrapping_add(1);
        Ok(Lease {
            port,
            generation: pool.generations[offset],
        })
    }

    /// Holds a port no one holds: see [`take`](Self::take).
    fn hold_another(&self, pool: &mut Pool) -> Result<u16, NoPort> {
        let now = Instant::now();
        let due = pool
            .skipped
            .iter()
            .take_while(|(_, after)| *after <= now)
            .count();
        let tries = pool.unheld.len() + due;
        for _ in 0..tries {
            let port = match pool.unheld.pop_front() {
                Some(port) => port,
                None => match pool.skipped.pop_front() {
                    Some((port, _)) => port,
                    None => break,
                },
            };
            match hold(port) {
                Ok(socket) => {
                    pool.held[usize::from(port - self.range.start())] = Some(socket);
                    return Ok(port);
                }
                Err(error) if error.raw_os_error() == Some(libc::EADDRINUSE) => {
                    pool.skipped.push_back((port, now + SKIPPED_FOR));
                }
                Err(error) => {
                    pool.unheld.push_front(port);
                    return Err(NoPort::Bind(error));
                }
            }
        }
        Err(NoPort::Exhausted {
            held: pool.held.iter().filter(|socket| socket.is_some()).count(),
        })
    }

    /// Gives `port` back, to be used again after every port free now;
    /// past [`IDLE_PORTS`] free, the longest free is let go.
    pub(super) fn give_back(&self, port: u16) {
        let mut pool = self.lock();
        debug_assert!(!pool.free.contains(&port), "port {port} given back twice");
        pool.free.push_back(port);
        if pool.free.len() > IDLE_PORTS
            && let Some(oldest) = pool.free.pop_front()
        {
            pool.held[usize::from(oldest - self.range.start())] = None;
            pool.unheld.push_back(oldest);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        // The pool stays consistent whatever panicked while holding it.
        self.pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Binds a TCP socket to `port` on every address, IPv6 and IPv4 where
/// the host has IPv6, IPv4 alone where it has not; never listens.
fn hold(port: u16) -> io::Result<Socket> {
    let dual =
        Socket::new(Domain::IPV6, Type::STREAM.cloexec(), Some(Protocol::TCP)).and_then(|socket| {
            socket.set_only_v6(false)?;
            Ok(socket)
        });
    match dual {
        Ok(socket) => {
            socket.bind(&SockAddr::from(SocketAddr::from((
                Ipv6Addr::UNSPECIFIED,
                port,
            ))))?;
            Ok(socket)
        }
        Err(error) if error.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
            let socket = Socket::new(Domain::IPV4, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
            socket.bind(&SockAddr::from(SocketAddr::from((
                Ipv4Addr::UNSPECIFIED,
                port,
            ))))?;
            Ok(socket)
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A range of `len` ports that no one holds now, in the upper range
    /// the engine uses by default, found by trying to listen on them.
    fn free_range(len: u16) -> RangeInclusive<u16> {
        for start in (61000..65000).step_by(usize::from(len) + 7) {
            let range = start..=start + len - 1;
            if range
                .clone()
                .all(|port| TcpListener::bind(("::", port)).is_ok())
            {
                return range;
            }
        }
        panic!("no {len} free ports in 61000-65000");
    }

    #[test]
    fn ports_are_held_as_needed_and_reused_last_freed_last() {
        let range = free_range(3);
        let ports = SourcePorts::new(range.clone());
        assert_eq!(ports.held(), 0, "held before any probe");
        let a = ports.take().unwrap();
        let b = ports.take().unwrap();
        assert_eq!((a.port, b.port), (*range.start(), range.start() + 1));
        assert_eq!((a.generation, ports.held()), (1, 2));
        ports.give_back(a.port);
        ports.give_back(b.port);
        // A free port is reused before a new one is held, the longest free first.
        let again = ports.take().unwrap();
        assert_eq!(
            again,
            Lease {
                port: a.port,
                generation: 2
            }
        );
        assert_eq!(ports.held(), 2);
    }

    #[test]
    fn a_held_port_is_refused_to_others_for_both_families() {
        let range = free_range(1);
        let ports = SourcePorts::new(range.clone());
        let lease = ports.take().unwrap();
        for address in ["127.0.0.1", "::1"] {
            let error = TcpListener::bind((address, lease.port)).unwrap_err();
            assert_eq!(error.raw_os_error(), Some(libc::EADDRINUSE), "{address}");
        }
    }

    #[test]
    fn a_port_someone_else_holds_is_skipped_and_the_range_can_run_out() {
        let range = free_range(2);
        let _someone = TcpListener::bind(("::", *range.start())).unwrap();
        let ports = SourcePorts::new(range.clone());
        assert_eq!(ports.take().unwrap().port, *range.end());
        match ports.take() {
            Err(NoPort::Exhausted { held }) => assert_eq!(held, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn past_the_idle_ports_the_longest_free_is_let_go_and_held_again_later() {
        let range = free_range(IDLE_PORTS as u16 + 2);
        let ports = SourcePorts::new(range.clone());
        let leases: Vec<Lease> = (0..IDLE_PORTS + 2).map(|_| ports.take().unwrap()).collect();
        assert_eq!(ports.held(), IDLE_PORTS + 2);
        for lease in &leases {
            ports.give_back(lease.port);
        }
        // Two let go: the first two given back, free the longest.
        assert_eq!(ports.held(), IDLE_PORTS);
        for port in [leases[0].port, leases[1].port] {
            let listener = TcpListener::bind(("::", port));
            assert!(listener.is_ok(), "port {port} still held");
        }
        // Taken again once the held ones are in use, a new generation.
        let again: Vec<Lease> = (0..IDLE_PORTS + 1).map(|_| ports.take().unwrap()).collect();
        let last = again.last().unwrap();
        assert_eq!(last.port, leases[0].port);
        assert_eq!(last.generation, 2);
    }

    #[test]
    fn a_port_someone_else_held_is_tried_again_a_second_later() {
        let range = free_range(1);
        let someone = TcpListener::bind(("::", *range.start())).unwrap();
        let ports = SourcePorts::new(range.clone());
        assert!(matches!(ports.take(), Err(NoPort::Exhausted { held: 0 })));
        drop(someone);
        assert!(
            matches!(ports.take(), Err(NoPort::Exhausted { .. })),
            "tried again at once"
        );
        std::thread::sleep(SKIPPED_FOR + Duration::from_millis(50));
        assert_eq!(ports.take().unwrap().port, *range.start());
    }

    #[test]
    fn offsets_are_only_for_ports_of_the_range() {
        let ports = SourcePorts::new(61000..=61009);
        assert_eq!(ports.offset(61000), Some(0));
        assert_eq!(ports.offset(61009), Some(9));
        assert_eq!(ports.offset(60999), None);
        assert_eq!(ports.offset(61010), None);
        #[allow(clippy::reversed_empty_ranges, reason = "an empty range on purpose")]
        let empty = 5..=4;
        assert!(matches!(
            SourcePorts::new(empty).take(),
            Err(NoPort::Exhausted { held: 0 })
        ));
    }
}
