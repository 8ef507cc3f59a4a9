//! The raw-SYN engine of `tcp.engine: raw`: half-open probes without a
//! socket per probe.
//!
//! The socket engine (`tcp.rs`) opens a kernel socket per probe and must
//! close it before the kernel's delayed ACK completes the handshake. This
//! engine sends SYNs from raw sockets instead, from source ports it holds
//! with sockets that never listen, and reads the answers from a shared,
//! filtered receive path, as masscan and ZMap do. The kernel, finding no
//! connection for the SYN-ACK, answers it with an RST itself, at once:
//! there is no close to race, whatever the exporter's threads are doing.
//!
//! - [`engine`]: the engine, its tasks and an attempt's life;
//! - [`isn`]: sequence numbers that prove an answer is ours;
//! - [`ports`]: the source ports, and why they are held;
//! - [`packet`]: building the SYN, parsing answers, safe Rust over bytes;
//! - [`filter`]: the kernel-side filters of the receive path.
//!
//! What only a kernel socket knows is not reported: the RTT and the SYN
//! retransmits come from the engine's own timestamps and retransmits, and
//! the half-open close guard (`synack_exporter_halfopen_close_delay_seconds`)
//! counts no raw probe, since no close races anything.

#![forbid(unsafe_code)]

mod engine;
mod filter;
mod isn;
mod packet;
mod ports;

pub(crate) use engine::{RawEngine, RawFailed};

/// Descriptors the raw engine holds beside its probes in flight (each of
/// which holds its source port, as a socket probe holds its socket): its
/// four raw sockets, a route lookup's socket, and the held ports no probe
/// uses ([`ports::IDLE_PORTS`]).
pub(crate) const RAW_ENGINE_DESCRIPTORS: u64 = 4 + 1 + ports::IDLE_PORTS as u64;

use std::ops::RangeInclusive;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

/// What a runner keeps of its raw engine: the source ports it may use,
/// and the engine once the first raw probe started it. The engine stays
/// until the runner goes (reloads keep it: the ports stay held).
#[derive(Debug)]
pub(crate) struct RawEngineSlot {
    ports: RangeInclusive<u16>,
    engine: Mutex<Option<Arc<RawEngine>>>,
}

impl RawEngineSlot {
    pub(crate) fn new(ports: RangeInclusive<u16>) -> Self {
        Self {
            ports,
            engine: Mutex::new(None),
        }
    }

    /// The engine, started on the current runtime by the first call; the
    /// error in words when it cannot start (most often: no
    /// `CAP_NET_RAW`), tried again by the next probe.
    pub(crate) fn engine(&self) -> Result<Arc<RawEngine>, String> {
        let mut engine = self.engine.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(engine) = &*engine {
            return Ok(Arc::clone(engine));
        }
        let started =
            RawEngine::start(self.ports.clone()).map_err(|error| match error.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => format!(
                    "the raw engine cannot start: this host refuses the exporter a raw socket: {}",
                    crate::config::RAW_ENGINE_CAPABILITY
                ),
                _ => format!("the raw engine cannot start: {error}"),
            })?;
        let started = Arc::new(started);
        *engine = Some(Arc::clone(&started));
        Ok(started)
    }

    /// What the engine has done, for `/metrics`: zeros before a raw probe
    /// started it.
    pub(crate) fn values(&self) -> RawEngineValues {
        let engine = self
            .engine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut values = RawEngineValues {
            ports: ports::range_len(&self.ports),
            ..RawEngineValues::default()
        };
        if let Some(engine) = engine {
            let counts = engine.counts();
            values.sent = counts.sent.load(Ordering::Relaxed);
            values.answers = counts.answers.load(Ordering::Relaxed);
            values.ignored = counts.ignored.load(Ordering::Relaxed);
            values.ports_held = engine.ports_held();
        }
        values
    }
}

/// A copy of the raw engine's counts, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RawEngineValues {
    /// SYNs sent, retransmits included.
    pub(crate) sent: u64,
    /// Answers that proved themselves and reached their probe.
    pub(crate) answers: u64,
    /// Packets that passed the kernel's filter but not the engine's checks.
    pub(crate) ignored: u64,
    /// Source ports held now.
    pub(crate) ports_held: usize,
    /// Ports of `--probe.raw-source-ports`.
    pub(crate) ports: usize,
}
