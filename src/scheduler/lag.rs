//! How late scheduled probes start against their slot: the histogram
//! behind `synack_exporter_schedule_lag_seconds`.
//!
//! Every scheduled probe observes it on the probe thread, so it is an
//! [`AtomicHistogram`]: no lock that a scrape could hold while the probe
//! thread waits, which would delay half-open closes.

#![forbid(unsafe_code)]

use crate::histogram::AtomicHistogram;

/// Upper bounds of the lag histogram, seconds: 1 ms to 10 s.
pub(crate) const SCHEDULE_LAG_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The lag histogram, updated without locks.
pub(crate) type ScheduleLag = AtomicHistogram;

/// An empty lag histogram with [`SCHEDULE_LAG_BUCKETS`].
pub(crate) fn empty_schedule_lag() -> ScheduleLag {
    AtomicHistogram::new(&SCHEDULE_LAG_BUCKETS)
}
