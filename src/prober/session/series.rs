//! The series of `prober: tcp` sessions, on `/probe` and for scheduled
//! targets.

#![forbid(unsafe_code)]

use super::SessionDetail;
use crate::config::TcpProbe;
use crate::prober::TcpKept;
use crate::prober::{Series, Slot};

/// Writes a session's own series that go in `slot`.
pub(crate) fn write_series(
    probe: &TcpProbe,
    detail: Option<&SessionDetail>,
    slot: Slot,
    out: &mut dyn Series,
) {
    let _ = (probe, detail, slot, out);
}

/// What a scheduled target of a session module keeps between probes.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct SessionKept {
    /// What its connection's handshakes leave, as for a TCP module.
    pub(crate) tcp: TcpKept,
}

impl SessionKept {
    /// Takes in the detail of one probe, none if it never started.
    pub(crate) fn record(&mut self, detail: Option<&SessionDetail>) {
        self.tcp.record(detail.map(|detail| &detail.tcp));
    }
}
