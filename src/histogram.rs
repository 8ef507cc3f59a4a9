//! A histogram of durations that any thread observes into without a lock.
//!
//! The probe thread observes into these (how late a scheduled probe
//! started, how long a half-open close took) while scrapes read them: a
//! lock that a scrape could hold while the probe thread waits would delay
//! half-open closes, so every count is an atomic of its own.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counts of durations under fixed upper bounds, updated without locks.
#[derive(Debug)]
pub(crate) struct AtomicHistogram {
    /// Upper bounds of the buckets, seconds, ascending.
    bounds: &'static [f64],
    /// Observations in each bucket alone (not cumulative), the last one
    /// for those above every bound.
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

/// What a scrape reads of a histogram: cumulative counts per bound of
/// its bucket list, the total count and the sum in seconds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HistogramValues {
    /// The upper bounds, seconds, as the histogram was made with.
    pub(crate) bounds: &'static [f64],
    /// Observations at or below each bound.
    pub(crate) cumulative: Vec<u64>,
    /// Every observation, the `+Inf` bucket.
    pub(crate) count: u64,
    /// Sum of all observations, seconds.
    pub(crate) sum: f64,
}

impl AtomicHistogram {
    /// An empty histogram with the ascending upper `bounds`, in seconds.
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Counts one observation of `duration`.
    pub(crate) fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The histogram as a scrape shows it.
    pub(crate) fn values(&self) -> HistogramValues {
        let mut running = 0;
        let cumulative = self.buckets[..self.bounds.len()]
            .iter()
            .map(|bucket| {
                running += bucket.load(Ordering::Relaxed);
                running
            })
            .collect();
        let above = self.buckets[self.bounds.len()].load(Ordering::Relaxed);
        HistogramValues {
            bounds: self.bounds,
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
        let histogram = AtomicHistogram::new(&[0.001, 0.025, 0.05, 10.0]);
        histogram.observe(Duration::from_micros(500));
        histogram.observe(Duration::from_millis(30));
        histogram.observe(Duration::from_secs(60));
        let values = histogram.values();
        assert_eq!(values.bounds, [0.001, 0.025, 0.05, 10.0]);
        assert_eq!(values.cumulative[0], 1, "500 µs is under 1 ms");
        assert_eq!(values.cumulative[1], 1, "30 ms is over 25 ms");
        assert_eq!(values.cumulative[2], 2, "and under 50 ms");
        assert_eq!(values.cumulative[3], 2, "60 s is above every bound");
        assert_eq!(values.count, 3);
        assert!((values.sum - 60.0305).abs() < 1e-9, "{}", values.sum);
    }

    #[test]
    fn an_observation_on_a_bound_counts_under_it() {
        let histogram = AtomicHistogram::new(&[0.05, 0.1]);
        histogram.observe(Duration::from_millis(50));
        assert_eq!(histogram.values().cumulative, [1, 1]);
    }
}
