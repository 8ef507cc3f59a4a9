//! Wall-clock time for what people read: timestamps on `/metrics` and
//! the landing page. Durations and deadlines use monotonic `Instant`s.

#![forbid(unsafe_code)]

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, as Prometheus timestamps are written; 0
/// for a clock set before 1970.
#[must_use]
pub(crate) fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}
