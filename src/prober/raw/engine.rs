//! The raw engine: one set of raw sockets for every probe, batched sends,
//! a shared receive path.
//!
//! **Where it runs.** On the probe thread, the single-threaded runtime
//! every probe runs on (`/probe`, the scheduler and the groups alike): the
//! engine starts there with the first raw probe, registers its four raw
//! sockets (TCP and ICMP, IPv4 and IPv6) with that runtime, and spawns
//! one task per socket that reads answers, and one that sends. Nothing of
//! it races the delayed ACK: the kernel answers each SYN-ACK with an RST
//! itself (see [`super::ports`]), so a probe thread that runs late makes
//! a handshake time longer, never a connection.
//!
//! **A probe's attempt** ([`RawEngine::attempt`]) takes a source port,
//! computes its sequence number ([`super::isn`]), puts itself in the
//! table of waiting probes (one slot per port of the range: the port is
//! the key, no lookup by sequence), queues its SYN and waits for an answer
//! or its deadline. Without an answer it sends the same SYN again after
//! 1 s, 2 s, 4 s…, as the kernel retransmits a SYN (its initial RTO,
//! `TCP_TIMEOUT_INIT`, doubled each time), and counts them as SYN
//! retransmits. Dropping the attempt at any point (deadline, cancelled
//! probe) frees its slot and gives the port back.
//!
//! **Sending.** SYNs queue, and the sending task sends what has queued
//! with one `sendmmsg` per family: the probes a scheduler tick starts go
//! out in one call. The send time of each SYN is read from the clock just
//! before that call; a SYN the kernel refuses (no route, a `prohibit`
//! route) ends its attempt with the kernel's error, as `connect()` would
//! have returned it (a local firewall's verdict aside: see
//! [`send_chunk`]). A SYN whose probe ended while it was queued is not
//! sent.
//!
//! **Receiving.** Each raw socket has a classic BPF filter
//! ([`super::filter`]) so that only SYN-ACKs and RSTs to the engine's port
//! range (and ICMP errors quoting a SYN from it) reach the exporter; the
//! rest of the host's traffic, the exporter's own HTTP included, is
//! dropped in the kernel. Answers are read with `recvmmsg`, with the
//! kernel's receive timestamp (`SO_TIMESTAMPNS`), and are delivered only
//! when they prove themselves: from the probe's destination address and
//! port, to its source port, acknowledging its sequence number plus one
//! (a SYN-ACK, an RST), or quoting its sequence number (an ICMP error).
//! Anything else, forged or stale, is counted and dropped.
//!
//! **Timing.** The handshake time is from the first SYN's send to the
//! kernel's receive time of the SYN-ACK: the network's and the target's
//! time, without the exporter's wake-up. Both are on the monotonic clock
//! (the kernel's wall-clock timestamp is taken back from the time the
//! packet is read by its age, see [`arrival`]), so a step of the wall
//! clock cannot bend it. The RTT is from the last SYN to
//! the SYN-ACK, and only without retransmits: after one, which SYN the
//! SYN-ACK answers is unknown (Karn's rule), and the RTT is not sampled.

#![forbid(unsafe_code)]

use super::filter;
use super::isn::IsnKey;
use super::packet::{self, AnswerKind, QuotedSyn, SYN_LEN, TcpAnswer};
use super::ports::{Lease, NoPort, SourcePorts};
use crate::config::TcpOptions;
use crate::prober::{IcmpError, classify};
use crate::sys::{self, Incoming, MAX_BATCH, Outgoing, RAW_BUFFER, RawKind};
use crate::task::AbortOnDrop;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::io::unix::AsyncFd;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

/// The first wait before a SYN is sent again: the kernel's initial RTO
/// for a SYN (`TCP_TIMEOUT_INIT`), doubled after each retransmit.
const INITIAL_RTO: Duration = Duration::from_secs(1);

/// How long the IPv4 source address the routing table picks for a
/// destination is kept ([`Sources`]), in seconds.
const SOURCE_TTL_SECONDS: u32 = 60;

/// Destinations whose IPv4 source address is kept at most: 262,144
/// entries of 12 bytes in a hash map of at most 2^19 slots of 13 bytes,
/// under 7 MiB. A schedule of more distinct IPv4 destinations than that
/// looks some up again before their time.
const MAX_SOURCES: usize = 1 << 18;

/// The raw engine; see the module docs. Dropping it stops its tasks and
/// closes its sockets and held ports.
#[derive(Debug)]
pub(crate) struct RawEngine {
    shared: Arc<Shared>,
    _tasks: Vec<AbortOnDrop>,
}

/// What the engine's tasks and the probes share.
#[derive(Debug)]
struct Shared {
    key: IsnKey,
    ports: SourcePorts,
    /// The probe waiting on each port of the range, by its offset.
    waiting: Mutex<Vec<Option<Waiting>>>,
    /// SYNs to send, and the sending task's wake-up.
    queue: Mutex<Vec<Queued>>,
    queued: Notify,
    tcp4: Option<AsyncFd<OwnedFd>>,
    tcp6: Option<AsyncFd<OwnedFd>>,
    sources: Mutex<Sources>,
    counts: Counts,
}

/// What the engine has done, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// SYNs sent, retransmits included.
    pub(crate) sent: AtomicU64,
    /// Answers that proved themselves and reached their probe.
    pub(crate) answers: AtomicU64,
    /// Packets that passed the filter but not the checks: forged, stale,
    /// for a probe that had already ended, or for another exporter on
    /// this host sharing the port range.
    pub(crate) ignored: AtomicU64,
}

/// A probe waiting for its answer.
#[derive(Debug)]
struct Waiting {
    destination: SocketAddr,
    isn: u32,
    first_sent: Option<Instant>,
    last_sent: Option<Instant>,
    retransmits: u32,
    answer: Option<oneshot::Sender<Answer>>,
}

/// A SYN to send.
#[derive(Clone, Copy, Debug)]
struct Queued {
    offset: usize,
    /// The probe's sequence number: a SYN whose probe has ended (its slot
    /// empty, or another probe's) is not sent.
    isn: u32,
    destination: SocketAddr,
    source: Option<IpAddr>,
    tos: Option<u8>,
    segment: [u8; SYN_LEN],
}

/// What came back for a probe.
#[derive(Debug)]
enum Answer {
    SynAck {
        time: Duration,
        rtt: Option<Duration>,
    },
    Rst,
    Icmp(IcmpError),
    NotSent(io::Error),
}

/// What a raw attempt found: its SYN-ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawSynAck {
    /// From the first SYN's send to the SYN-ACK's arrival.
    pub(crate) time: Duration,
    /// From the last SYN's send to the SYN-ACK's arrival; `None` after a
    /// retransmit.
    pub(crate) rtt: Option<Duration>,
    pub(crate) syn_retransmits: u32,
}

/// How a raw attempt without a SYN-ACK ended.
#[derive(Debug)]
pub(crate) enum RawFailed {
    /// Nothing was sent: the exporter's own trouble, in words.
    Local(String),
    /// The kernel's error for the SYN (refused to send it, or an RST as
    /// `ECONNREFUSED`), or an ICMP error; both `None` at the deadline.
    Answer {
        error: Option<io::Error>,
        icmp: Option<IcmpError>,
    },
}

impl RawEngine {
    /// Starts the engine on the current runtime: opens and filters its
    /// raw sockets and spawns its tasks. Source ports are held as probes
    /// need them. Fails when the exporter may not open raw sockets (no
    /// `CAP_NET_RAW`) or has no family at all.
    pub(crate) fn start(ports: RangeInclusive<u16>) -> io::Result<Self> {
        let open = |kind: RawKind, v6: bool| -> io::Result<Option<AsyncFd<OwnedFd>>> {
            let socket = match sys::open_raw_socket(kind) {
                Ok(socket) => socket,
                // A host without the family: its probes fail as local.
                Err(error) if error.raw_os_error() == Some(libc::EAFNOSUPPORT) => return Ok(None),
                Err(error) => return Err(error),
            };
            let program = match kind {
                RawKind::Tcp4 | RawKind::Tcp6 => filter::tcp_answers(v6, ports.clone()),
                RawKind::Icmp4 | RawKind::Icmp6 => filter::icmp_errors(v6, ports.clone()),
            };
            sys::attach_filter(socket.as_fd(), &program)?;
            sys::register_with_reactor(socket).map(Some)
        };
        let tcp4 = open(RawKind::Tcp4, false)?;
        let tcp6 = open(RawKind::Tcp6, true)?;
        let icmp4 = open(RawKind::Icmp4, false)?;
        let icmp6 = open(RawKind::Icmp6, true)?;
        if tcp4.is_none() && tcp6.is_none() {
            return Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT));
        }
        let len = super::ports::range_len(&ports);
        let shared = Arc::new(Shared {
            key: IsnKey::random()?,
            waiting: Mutex::new((0..len).map(|_| None).collect()),
            ports: SourcePorts::new(ports),
            queue: Mutex::default(),
            queued: Notify::new(),
            tcp4,
            tcp6,
            sources: Mutex::default(),
            counts: Counts::default(),
        });
        let mut tasks = vec![spawn(send(Arc::clone(&shared)))];
        for kind in [RawKind::Tcp4, RawKind::Tcp6] {
            if shared.socket(kind).is_some() {
                tasks.push(spawn(receive(Arc::clone(&shared), kind, None)));
            }
        }
        for (kind, socket) in [(RawKind::Icmp4, icmp4), (RawKind::Icmp6, icmp6)] {
            if let Some(socket) = socket {
                tasks.push(spawn(receive(Arc::clone(&shared), kind, Some(socket))));
            }
        }
        Ok(Self {
            shared,
            _tasks: tasks,
        })
    }

    /// The engine's counts.
    pub(crate) fn counts(&self) -> &Counts {
        &self.shared.counts
    }

    /// How many source ports the engine holds now.
    pub(crate) fn ports_held(&self) -> usize {
        self.shared.ports.held()
    }

    /// One attempt: a SYN to `destination` (and its retransmits) until
    /// an answer or `deadline`; see the module docs. `sending` is told the
    /// source port just before the first SYN is queued, and only then.
    pub(crate) async fn attempt(
        &self,
        destination: SocketAddr,
        options: &TcpOptions,
        deadline: Instant,
        sending: impl FnOnce(u16),
    ) -> Result<RawSynAck, RawFailed> {
        let shared = &*self.shared;
        let destination = SocketAddr::new(destination.ip().to_canonical(), destination.port());
        let kind = match destination {
            SocketAddr::V4(_) => RawKind::Tcp4,
            SocketAddr::V6(_) => RawKind::Tcp6,
        };
        if shared.socket(kind).is_none() {
            return Err(RawFailed::Local(format!(
                "the raw engine has no {} socket: this host has no {} (use engine: socket for it)",
                family_name(kind),
                family_name(kind)
            )));
        }
        let lease = shared
            .ports
            .take()
            .map_err(|no_port| RawFailed::Local(shared.no_port(&no_port)))?;
        let slot = Slot::new(shared, lease);
        sending(lease.port);
        let source = match (options.source_ip_address, destination.ip()) {
            (Some(source), _) => source.to_canonical(),
            (None, IpAddr::V4(ip)) => match shared.source_for(ip) {
                Ok(source) => IpAddr::V4(source),
                // No route: what connect() would have said.
                Err(error) => {
                    return Err(RawFailed::Answer {
                        error: Some(error),
                        icmp: None,
                    });
                }
            },
            // The kernel fills in the IPv6 checksum (IPV6_CHECKSUM).
            (None, IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let isn = shared.key.isn(destination, lease.port, lease.generation);
        let (answer, mut answered) = oneshot::channel();
        slot.wait(Waiting {
            destination,
            isn,
            first_sent: None,
            last_sent: None,
            retransmits: 0,
            answer: Some(answer),
        });
        let syn = Queued {
            offset: slot.offset,
            isn,
            destination,
            // The address the checksum covers, IPv4 always (so that a route
            // that changed since it was looked up cannot make the kernel
            // send the SYN from another), IPv6 when the module sets one.
            source: (options.source_ip_address.is_some() || destination.is_ipv4())
                .then_some(source),
            tos: options.dscp.map(|dscp| dscp << 2),
            segment: packet::syn(
                source,
                destination.ip(),
                lease.port,
                destination.port(),
                isn,
            ),
        };
        let mut rto = INITIAL_RTO;
        let mut next = Instant::now() + rto;
        shared.enqueue(syn);
        let answer = loop {
            tokio::select! {
                biased;
                answer = &mut answered => break answer.ok(),
                () = tokio::time::sleep_until(next.min(deadline)) => {
                    if next >= deadline {
                        break None;
                    }
                    rto *= 2;
                    next += rto;
                    shared.enqueue(syn);
                }
            }
        };
        let retransmits = slot.retransmits();
        drop(slot);
        match answer {
            Some(Answer::SynAck { time, rtt }) => Ok(RawSynAck {
                time,
                rtt,
                syn_retransmits: retransmits,
            }),
            Some(Answer::Rst) => Err(RawFailed::Answer {
                error: Some(io::Error::from_raw_os_error(libc::ECONNREFUSED)),
                icmp: None,
            }),
            Some(Answer::Icmp(icmp)) => Err(RawFailed::Answer {
                error: None,
                icmp: Some(icmp),
            }),
            Some(Answer::NotSent(error)) => Err(RawFailed::Answer {
                error: Some(error),
                icmp: None,
            }),
            None => Err(RawFailed::Answer {
                error: None,
                icmp: None,
            }),
        }
    }
}

fn family_name(kind: RawKind) -> &'static str {
    match kind {
        RawKind::Tcp4 | RawKind::Icmp4 => "IPv4",
        RawKind::Tcp6 | RawKind::Icmp6 => "IPv6",
    }
}

fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) -> AbortOnDrop {
    AbortOnDrop::new(tokio::spawn(task).abort_handle())
}

/// A probe's place in the table of waiting probes, with its port: both
/// given back when dropped, however the attempt ends.
struct Slot<'a> {
    shared: &'a Shared,
    port: u16,
    offset: usize,
}

impl<'a> Slot<'a> {
    fn new(shared: &'a Shared, lease: Lease) -> Self {
        let offset = shared
            .ports
            .offset(lease.port)
            .expect("a leased port is of the range");
        Self {
            shared,
            port: lease.port,
            offset,
        }
    }

    fn wait(&self, waiting: Waiting) {
        self.shared.waiting()[self.offset] = Some(waiting);
    }

    fn retransmits(&self) -> u32 {
        self.shared.waiting()[self.offset]
            .as_ref()
            .map_or(0, |waiting| waiting.retransmits)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.shared.waiting()[self.offset] = None;
        self.shared.ports.give_back(self.port);
    }
}

impl Shared {
    fn socket(&self, kind: RawKind) -> Option<&AsyncFd<OwnedFd>> {
        match kind {
            RawKind::Tcp4 => self.tcp4.as_ref(),
            RawKind::Tcp6 => self.tcp6.as_ref(),
            RawKind::Icmp4 | RawKind::Icmp6 => None,
        }
    }

    fn waiting(&self) -> MutexGuard<'_, Vec<Option<Waiting>>> {
        // The table stays consistent whatever panicked while holding it.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enqueue(&self, syn: Queued) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(syn);
        self.queued.notify_one();
    }

    /// The failure's detail when no source port is free.
    fn no_port(&self, no_port: &NoPort) -> String {
        let range = self.ports.range();
        match no_port {
            NoPort::Exhausted { held } => format!(
                "no raw source port is free: the engine holds {held} of {}-{} and probes in \
                 flight use them all, or others hold the rest; widen --probe.raw-source-ports, \
                 or lower --probe.max-in-flight",
                range.start(),
                range.end()
            ),
            NoPort::Bind(error) => format!(
                "cannot hold a raw source port of {}-{}: {error}",
                range.start(),
                range.end()
            ),
        }
    }

    /// The IPv4 source address the routing table picks for
    /// `destination`, which the SYN's checksum covers, kept for
    /// [`SOURCE_TTL_SECONDS`]: the engine's UDP socket, connected to it,
    /// says which (see `sys::disconnect`).
    fn source_for(&self, destination: Ipv4Addr) -> io::Result<Ipv4Addr> {
        let mut sources = self.sources.lock().unwrap_or_else(PoisonError::into_inner);
        let now = sources.seconds();
        if let Some(&(source, until)) = sources.map.get(&destination)
            && until > now
        {
            return Ok(source);
        }
        let socket = match &sources.socket {
            Some(socket) => {
                sys::disconnect(socket.as_fd())?;
                socket
            }
            None => sources
                .socket
                .insert(std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?),
        };
        // Port 9 (discard): connect() on UDP sends nothing, it routes.
        socket.connect((destination, 9))?;
        let source = match socket.local_addr()?.ip() {
            IpAddr::V4(source) => source,
            IpAddr::V6(_) => return Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT)),
        };
        if sources.map.len() >= MAX_SOURCES {
            sources.map.retain(|_, (_, until)| *until > now);
            if sources.map.len() >= MAX_SOURCES / 4 * 3 {
                sources.map.clear();
            }
        }
        sources
            .map
            .insert(destination, (source, now + SOURCE_TTL_SECONDS));
        Ok(source)
    }

    /// Forgets every IPv4 source address kept: one of them was refused
    /// (the host lost the address).
    fn forget_sources(&self) {
        self.sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .clear();
    }

    /// Of `batch`, keeps the SYNs whose probes still wait for them, and
    /// stamps them as sent at `now`: a probe dropped after it queued its
    /// SYN (its deadline, a client that left) sends nothing.
    fn stamp(&self, batch: &mut Vec<&Queued>, now: Instant) {
        let mut waiting = self.waiting();
        batch.retain(|syn| {
            let probe = waiting
                .get_mut(syn.offset)
                .and_then(Option::as_mut)
                .filter(|probe| probe.isn == syn.isn);
            match probe {
                Some(probe) => {
                    // A SYN after the first is a retransmit, counted when
                    // it leaves, not when its timer fires.
                    if probe.first_sent.is_some() {
                        probe.retransmits += 1;
                    } else {
                        probe.first_sent = Some(now);
                    }
                    probe.last_sent = Some(now);
                    true
                }
                None => false,
            }
        });
    }

    /// Ends the attempt whose SYN had `isn` at `offset` with `answer`, if
    /// it still waits.
    fn answer(&self, offset: usize, isn: u32, answer: Answer) {
        let mut waiting = self.waiting();
        let Some(probe) = waiting.get_mut(offset).and_then(Option::as_mut) else {
            return;
        };
        if probe.isn == isn
            && let Some(sender) = probe.answer.take()
        {
            let _ = sender.send(answer);
        }
    }

    /// A TCP answer that passed the filter: delivered when it proves
    /// itself, counted as ignored when not.
    fn take_tcp(&self, answer: TcpAnswer, received: Instant) {
        let delivered = self
            .ports
            .offset(answer.destination_port)
            .is_some_and(|offset| {
                let mut waiting = self.waiting();
                let Some(probe) = waiting.get_mut(offset).and_then(Option::as_mut) else {
                    return false;
                };
                let from = SocketAddr::new(answer.from.to_canonical(), answer.source_port);
                if from != probe.destination
                    || !answer.ack_flag
                    || answer.ack != probe.isn.wrapping_add(1)
                {
                    return false;
                }
                let Some(sender) = probe.answer.take() else {
                    // A second answer (a retransmitted SYN-ACK): already delivered.
                    return true;
                };
                let since = |sent: Option<Instant>| {
                    sent.map_or(Duration::ZERO, |sent| {
                        received.saturating_duration_since(sent)
                    })
                };
                let answer = match answer.kind {
                    AnswerKind::SynAck => Answer::SynAck {
                        time: since(probe.first_sent),
                        rtt: (probe.retransmits == 0).then(|| since(probe.last_sent)),
                    },
                    AnswerKind::Rst => Answer::Rst,
                };
                let _ = sender.send(answer);
                true
            });
        self.count(delivered);
    }

    /// An ICMP error that passed the filter: delivered when it quotes a
    /// waiting probe's SYN and says something of the path.
    fn take_icmp(&self, quoted: QuotedSyn, ipv6: bool) {
        let destination =
            SocketAddr::new(quoted.destination.to_canonical(), quoted.destination_port);
        let icmp = IcmpError {
            ipv6,
            icmp_type: quoted.icmp_type,
            code: quoted.code,
            offender: Some(quoted.offender.to_canonical()),
        };
        let proves = self.ports.offset(quoted.source_port).filter(|offset| {
            self.waiting()
                .get(*offset)
                .and_then(Option::as_ref)
                .is_some_and(|probe| probe.destination == destination && probe.isn == quoted.seq)
        });
        // Too big, or an ICMP type that ends no connect: ignored, as the
        // kernel ignores it for a socket in SYN_SENT.
        let ends = classify::icmp_reason(&icmp, destination.ip()).is_some();
        match proves {
            Some(offset) if ends => {
                self.answer(offset, quoted.seq, Answer::Icmp(icmp));
                self.count(true);
            }
            _ => self.count(false),
        }
    }

    fn count(&self, delivered: bool) {
        let count = if delivered {
            &self.counts.answers
        } else {
            &self.counts.ignored
        };
        count.fetch_add(1, Ordering::Relaxed);
    }
}

/// The IPv4 source addresses the routing table picked, by destination,
/// each with the second (of [`Sources::seconds`]) it is kept until, and
/// the UDP socket that asks.
#[derive(Debug)]
struct Sources {
    map: HashMap<Ipv4Addr, (Ipv4Addr, u32)>,
    socket: Option<std::net::UdpSocket>,
    started: Instant,
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            socket: None,
            started: Instant::now(),
        }
    }
}

impl Sources {
    /// Whole seconds since the engine started.
    fn seconds(&self) -> u32 {
        u32::try_from(self.started.elapsed().as_secs()).unwrap_or(u32::MAX)
    }
}

/// The sending task: waits for queued SYNs, sends them per family in
/// batches, and ends the attempts whose SYN the kernel refused.
async fn send(shared: Arc<Shared>) {
    let mut batch = Vec::new();
    loop {
        shared.queued.notified().await;
        std::mem::swap(
            &mut batch,
            &mut *shared.queue.lock().unwrap_or_else(PoisonError::into_inner),
        );
        for kind in [RawKind::Tcp4, RawKind::Tcp6] {
            let Some(socket) = shared.socket(kind) else {
                continue;
            };
            let mut of_family: Vec<&Queued> = batch
                .iter()
                .filter(|syn| syn.destination.is_ipv6() == (kind == RawKind::Tcp6))
                .collect();
            shared.stamp(&mut of_family, Instant::now());
            for chunk in of_family.chunks(MAX_BATCH) {
                send_chunk(&shared, socket, chunk).await;
            }
        }
        batch.clear();
    }
}

/// Sends `chunk` with as few `sendmmsg` calls as the kernel allows.
///
/// A SYN the kernel refuses ends its attempt with the kernel's error, as
/// `connect()` returns it: no route (`ENETUNREACH`, `EHOSTUNREACH`), a
/// `prohibit` route (`EACCES`). All but `EPERM`, which a local firewall's
/// verdict (nftables `drop` or `reject` in the output path) gives the
/// sender: `connect()` does not report that one, its SYN counts as sent,
/// and the probe goes on to the firewall's ICMP error or RST, or its
/// deadline. So does the raw attempt, for the same reasons.
async fn send_chunk(shared: &Shared, socket: &AsyncFd<OwnedFd>, chunk: &[&Queued]) {
    let outgoing: Vec<Outgoing<'_>> = chunk
        .iter()
        .map(|syn| Outgoing {
            to: SocketAddr::new(syn.destination.ip(), 0),
            segment: &syn.segment,
            tos: syn.tos,
            source: syn.source,
        })
        .collect();
    let mut done = 0;
    while done < outgoing.len() {
        match sys::send_batch(socket.as_fd(), &outgoing[done..]) {
            Ok(sent) => {
                shared.counts.sent.fetch_add(sent as u64, Ordering::Relaxed);
                done += sent.max(1);
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                if let Ok(mut ready) = socket.writable().await {
                    ready.clear_ready();
                }
            }
            Err(error) if error.raw_os_error() == Some(libc::EPERM) => {
                shared.counts.sent.fetch_add(1, Ordering::Relaxed);
                done += 1;
            }
            Err(error) => {
                // A source address kept that the host no longer has.
                if matches!(
                    error.raw_os_error(),
                    Some(libc::EINVAL | libc::EADDRNOTAVAIL)
                ) {
                    shared.forget_sources();
                }
                let syn = chunk[done];
                shared.answer(syn.offset, syn.isn, Answer::NotSent(error));
                done += 1;
            }
        }
    }
}

/// When a packet arrived, on the monotonic clock the sends are stamped
/// with: the kernel's receive time (`SO_TIMESTAMPNS`, the wall clock)
/// taken back from now by its age, so that the wall clock stepping
/// between a SYN and its answer cannot bend a handshake time; now when
/// the kernel gave none.
fn arrival(kernel_time: Option<Duration>) -> Instant {
    let now = Instant::now();
    let Some(kernel_time) = kernel_time else {
        return now;
    };
    let age = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH + kernel_time)
        .unwrap_or_default();
    now.checked_sub(age).unwrap_or(now)
}

/// A receiving task: reads what passed `kind`'s filter, in batches, and
/// hands each packet to the probe it answers.
async fn receive(shared: Arc<Shared>, kind: RawKind, own: Option<AsyncFd<OwnedFd>>) {
    let socket = match (&own, shared.socket(kind)) {
        (Some(own), _) => own,
        (None, Some(socket)) => socket,
        (None, None) => return,
    };
    let mut buffers = vec![[0_u8; RAW_BUFFER]; MAX_BATCH];
    let mut incoming: Vec<Incoming> = Vec::with_capacity(MAX_BATCH);
    loop {
        let Ok(mut ready) = socket.readable().await else {
            return;
        };
        let read = ready.try_io(|socket| {
            sys::receive_batch(socket.get_ref().as_fd(), &mut buffers, &mut incoming)
        });
        match read {
            Ok(Ok(_)) => {}
            // Nothing queued: readiness cleared, wait for the next packet.
            Err(_would_block) => continue,
            // Another error (a signal, memory): logged, and the socket
            // read again at the next packet rather than at once, so that
            // an error that stays cannot spin the probe thread.
            Ok(Err(error)) => {
                tracing::warn!(%error, socket = ?kind, "the raw engine could not read its socket");
                ready.clear_ready();
                continue;
            }
        }
        for (packet, buffer) in incoming.iter().zip(&buffers) {
            let bytes = buffer.get(..packet.len).unwrap_or(buffer);
            let received = arrival(packet.kernel_time);
            match (kind, packet.from) {
                (RawKind::Tcp4, _) => match packet::tcp_answer_v4(bytes) {
                    Some(answer) => shared.take_tcp(answer, received),
                    None => shared.count(false),
                },
                (RawKind::Tcp6, IpAddr::V6(from)) => match packet::tcp_answer_v6(from, bytes) {
                    Some(answer) => shared.take_tcp(answer, received),
                    None => shared.count(false),
                },
                (RawKind::Icmp4, _) => match packet::icmp_error_v4(bytes) {
                    Some(quoted) => shared.take_icmp(quoted, false),
                    None => shared.count(false),
                },
                (RawKind::Icmp6, IpAddr::V6(from)) => match packet::icmp_error_v6(from, bytes) {
                    Some(quoted) => shared.take_icmp(quoted, true),
                    None => shared.count(false),
                },
                _ => shared.count(false),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::raw_test_support::raw_socket_or_skip;
    use std::net::TcpListener;

    /// `len` source ports in 61000–65000 that nothing holds now.
    fn free_ports(len: u16) -> RangeInclusive<u16> {
        for start in (61000..=65535 - len).rev().step_by(usize::from(len) + 11) {
            let range = start..=start + len - 1;
            if range
                .clone()
                .all(|port| TcpListener::bind(("::", port)).is_ok())
            {
                return range;
            }
        }
        panic!("no {len} free ports in 61000-65535");
    }

    fn deadline() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    /// Accepts nothing it would not report: `accepted()` says how many
    /// connections reached the application.
    fn listener(address: &str) -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind(address).unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        (listener, address)
    }

    fn accepted(listener: &TcpListener) -> usize {
        std::iter::from_fn(|| listener.accept().ok())
            .take(1000)
            .count()
    }

    #[tokio::test]
    async fn an_open_port_answers_and_the_application_accepts_nothing_v4_and_v6() {
        if raw_socket_or_skip(RawKind::Tcp4).is_none() {
            return;
        }
        let engine = RawEngine::start(free_ports(8)).unwrap();
        for address in ["127.0.0.1:0", "[::1]:0"] {
            let (listener, target) = listener(address);
            for _ in 0..50 {
                let syn_ack = engine
                    .attempt(target, &TcpOptions::default(), deadline(), |_| {})
                    .await
                    .unwrap_or_else(|failed| panic!("{target}: {failed:?}"));
                assert!(syn_ack.time > Duration::ZERO, "{syn_ack:?}");
                assert!(syn_ack.time < Duration::from_secs(1), "{syn_ack:?}");
                assert_eq!(
                    (syn_ack.rtt, syn_ack.syn_retransmits),
                    (Some(syn_ack.time), 0)
                );
            }
            // Past the delayed ACK: a completed handshake would be queued by now.
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(accepted(&listener), 0, "{target}");
        }
        let counts = engine.counts();
        assert_eq!(counts.sent.load(Ordering::Relaxed), 100);
        assert_eq!(counts.answers.load(Ordering::Relaxed), 100);
        // One port at a time: each probe gave its port back.
        assert_eq!(engine.ports_held(), 1);
    }

    #[tokio::test]
    async fn a_closed_port_answers_with_rst_as_connect_would_say() {
        if raw_socket_or_skip(RawKind::Tcp4).is_none() {
            return;
        }
        let engine = RawEngine::start(free_ports(2)).unwrap();
        for address in ["127.0.0.1:0", "[::1]:0"] {
            // A port that was open a moment ago and is closed now.
            let target = listener(address).1;
            match engine
                .attempt(target, &TcpOptions::default(), deadline(), |_| {})
                .await
            {
                Err(RawFailed::Answer {
                    error: Some(error),
                    icmp: None,
                }) => assert_eq!(error.raw_os_error(), Some(libc::ECONNREFUSED), "{target}"),
                other => panic!("{target}: {other:?}"),
            }
        }
    }

    /// A probe dropped after it queued its SYN (a `/probe` client that
    /// left) sends nothing: its SYN would otherwise go out for a probe that
    /// no longer exists, on a port the next probe already uses.
    #[tokio::test]
    async fn a_syn_whose_attempt_ended_before_it_left_is_not_sent() {
        if raw_socket_or_skip(RawKind::Tcp4).is_none() {
            return;
        }
        // One port: the second attempt reuses the first's.
        let engine = RawEngine::start(free_ports(1)).unwrap();
        let (_listener, target) = listener("127.0.0.1:0");
        let options = TcpOptions::default();
        let mut first = Box::pin(engine.attempt(target, &options, deadline(), |_| {}));
        // Polled once, the SYN is queued; the sending task has not run.
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(first.as_mut().poll(&mut context).is_pending());
        drop(first);
        engine
            .attempt(target, &options, deadline(), |_| {})
            .await
            .unwrap_or_else(|failed| panic!("{failed:?}"));
        let counts = engine.counts();
        let [sent, answers, ignored] = [&counts.sent, &counts.answers, &counts.ignored]
            .map(|count| count.load(Ordering::Relaxed));
        assert_eq!((sent, answers, ignored), (1, 1, 0));
    }

    #[tokio::test]
    async fn probes_in_flight_each_hold_a_port_and_find_none_when_all_are_held() {
        if raw_socket_or_skip(RawKind::Tcp4).is_none() {
            return;
        }
        let ports = free_ports(2);
        // Someone else holds every port of the range.
        let _others: Vec<TcpListener> = ports
            .clone()
            .map(|port| TcpListener::bind(("::", port)).unwrap())
            .collect();
        let engine = RawEngine::start(ports).unwrap();
        let (_listener, target) = listener("127.0.0.1:0");
        match engine
            .attempt(target, &TcpOptions::default(), deadline(), |_| {})
            .await
        {
            Err(RawFailed::Local(why)) => assert!(
                why.contains("no raw source port is free")
                    && why.contains("--probe.raw-source-ports"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn many_probes_at_once_go_out_in_batches_and_all_get_their_answer() {
        if raw_socket_or_skip(RawKind::Tcp4).is_none() {
            return;
        }
        // The whole default range: ports others hold are skipped.
        let engine = Arc::new(RawEngine::start(crate::settings::DEFAULT_RAW_SOURCE_PORTS).unwrap());
        let (listener, target) = listener("127.0.0.1:0");
        let options = TcpOptions::default();
        let attempts = (0..300).map(|_| engine.attempt(target, &options, deadline(), |_| {}));
        let results = futures_util::future::join_all(attempts).await;
        let failed: Vec<_> = results.iter().filter(|result| result.is_err()).collect();
        assert!(
            failed.is_empty(),
            "{} failed: {:?}",
            failed.len(),
            failed.first()
        );
        assert!(
            engine.ports_held() >= 2,
            "not in flight together: {}",
            engine.ports_held()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(accepted(&listener), 0);
    }
}
