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
//! **Held as needed**, not all at start: a port is bound the first time
//! no held port is free, and kept for the engine's life. An exporter
//! that probes a few targets at a time holds a few ports (a file
//! descriptor each), and two exporters on one host share the range: a
//! port one of them holds is skipped by the other (its bind fails).
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
    /// Held ports no probe uses, the longest free first.
    free: VecDeque<u16>,
    /// The offset of the first port never tried.
    untried: usize,
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
        let len = usize::from(*range.end()).saturating_sub(usize::from(*range.start())) + 1;
        let len = if range.is_empty() { 0 } else { len };
        Self {
            range,
            pool: Mutex::new(Pool {
                held: (0..len).map(|_| None).collect(),
                generations: vec![0; len],
                free: VecDeque::new(),
                untried: 0,
            }),
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

    /// A free port, holding a new one when none is.
    pub(super) fn take(&self) -> Result<Lease, NoPort> {
        let mut pool = self.lock();
        if let Some(port) = pool.free.pop_front() {
            let offset = usize::from(port - self.range.start());
            pool.generations[offset] = pool.generations[offset].wrapping_add(1);
            return Ok(Lease {
                port,
                generation: pool.generations[offset],
            });
        }
        while pool.untried < pool.held.len() {
            let offset = pool.untried;
            pool.untried += 1;
            let port = self.range.start() + offset as u16;
            match hold(port) {
                Ok(socket) => {
                    pool.held[offset] = Some(socket);
                    return Ok(Lease {
                        port,
                        generation: pool.generations[offset],
                    });
                }
                // Someone else's: skipped for good.
                Err(error) if error.raw_os_error() == Some(libc::EADDRINUSE) => {}
                Err(error) => {
                    // Tried again by the next probe.
                    pool.untried -= 1;
                    return Err(NoPort::Bind(error));
                }
            }
        }
        Err(NoPort::Exhausted {
            held: pool.held.iter().filter(|socket| socket.is_some()).count(),
        })
    }

    /// Gives `port` back, to be used again after every port free now.
    pub(super) fn give_back(&self, port: u16) {
        let mut pool = self.lock();
        debug_assert!(!pool.free.contains(&port), "port {port} given back twice");
        pool.free.push_back(port);
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
        assert_eq!((a.generation, ports.held()), (0, 2));
        ports.give_back(a.port);
        ports.give_back(b.port);
        // A free port is reused before a new one is held, the longest free first.
        let again = ports.take().unwrap();
        assert_eq!(
            again,
            Lease {
                port: a.port,
                generation: 1
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
    fn offsets_are_only_for_ports_of_the_range() {
        let ports = SourcePorts::new(61000..=61009);
        assert_eq!(ports.offset(61000), Some(0));
        assert_eq!(ports.offset(61009), Some(9));
        assert_eq!(ports.offset(60999), None);
        assert_eq!(ports.offset(61010), None);
        assert!(matches!(
            SourcePorts::new(5..=4).take(),
            Err(NoPort::Exhausted { held: 0 })
        ));
    }
}
