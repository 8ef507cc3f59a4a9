//! The raw-SYN engine (issue 22): half-open probes sent from a raw
//! socket, answered by the kernel's own RST.
//!
//! Minimal on this branch: the packets' module only; the engine is the
//! lead's (branch i22).

#![forbid(unsafe_code)]

#[allow(dead_code)] // used by the engine (lead)
mod packet;
