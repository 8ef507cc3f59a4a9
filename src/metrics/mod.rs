//! Everything the exporter exposes as metrics: the observers at the end
//! of the flow. They read what the layers below keep (outcomes, result
//! counters, target states, the lag histogram) and write it with the one
//! [`exposition::Writer`]; nothing below imports from here.
//!
//! - [`probe`]: the answer to one `/probe` request, from its outcome.
//! - [`own`]: the exporter's own series on `/metrics`.
//! - [`icmp`]: `probe_icmp_error_info`, for `/probe` and scheduled targets.
//! - [`process`]: the standard `process_*` metrics.
//! - [`scheduled`]: the series of scheduled targets, streamed.
//! - [`exposition`]: the writer, and content negotiation.

#![forbid(unsafe_code)]

pub(crate) mod exposition;
pub(crate) mod icmp;
pub(crate) mod own;
pub(crate) mod probe;
pub(crate) mod process;
pub(crate) mod scheduled;
