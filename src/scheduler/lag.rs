//! How late scheduled probes start against their slot: the histogram
//! behind `synack_exporter_schedule_lag_seconds`.
//!
//! Every scheduled probe observes it on the probe thread, so it is a set
//! of atomic counters: no lock that a scrape could hold while the probe
//! thread waits, which would delay half-open closes.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the lag histogram, seconds: 1 ms to 10 s.
pub(crate) const SCHEDULE_LAG_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The lag histogram, updated without locks.
#[derive(Debug, Default)]
pub(crate) struct ScheduleLag {
    /// Observations in each bucket alone (not cumulative), the last one
    /// for those above every bound.
    buckets: [AtomicU64; SCHEDULE_LAG_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// What a scrape reads of a histogram: cumulative counts per bound of
/// its bucket list, the total count and the sum in seconds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HistogramValues {
    pub(crate) cumulative: [u64; SCHEDULE_LAG_BUCKETS.len()],
    pub(crate) count: u64,
    pub(crate) sum: f64,
}

impl ScheduleLag {
    /// Counts one probe that started `lag` after its slot.
    pub(crate) fn observe(&self, lag: Duration) {
        let seconds = lag.as_secs_f64();
        let bucket = SCHEDULE_LAG_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(SCHEDULE_LAG_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(lag.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The histogram as a scrape shows it.
    pub(crate) fn values(&self) -> HistogramValues {
        let mut running = 0;
        let cumulative = std::array::from_fn(|index| {
            running += self.buckets[index].load(Ordering::Relaxed);
            running
        });
        let above = self.buckets[SCHEDULE_LAG_BUCKETS.len()].load(Ordering::Relaxed);
        HistogramValues {
            cumulative,
            count: running + above,
            sum: Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)).as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_cumulatively_under_their_bound() {
        let lag = ScheduleLag::default();
        lag.observe(Duration::from_micros(500));
        lag.observe(Duration::from_millis(30));
        lag.observe(Duration::from_secs(60));
        let values = lag.values();
        assert_eq!(values.cumulative[0], 1, "500 µs is under 1 ms");
        assert_eq!(values.cumulative[4], 1, "30 ms is over 25 ms");
        assert_eq!(values.cumulative[5], 2, "and under 50 ms");
        assert_eq!(values.cumulative[12], 2, "60 s is above every bound");
        assert_eq!(values.count, 3);
        assert!((values.sum - 60.0305).abs() < 1e-9, "{}", values.sum);
    }
}
