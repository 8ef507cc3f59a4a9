//! The raw-SYN engine (`engine: raw`): SYNs from a raw socket, answers
//! through classic BPF filters, the kernel's own RST. Minimal here, with
//! the filters only (parcel SYS); the lead's branch holds the engine.

#![forbid(unsafe_code)]

// Used by the engine (lead).
#[allow(dead_code)]
mod filter;
