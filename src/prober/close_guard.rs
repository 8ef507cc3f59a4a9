//! The guard on the half-open race: how long each half-open socket took
//! from its SYN-ACK to its RST, and how many took too long.
//!
//! A half-open probe is invisible to the target's application only while
//! its RST leaves before this host's kernel acknowledges the SYN-ACK.
//! With `TCP_QUICKACK` off, that delayed ACK is sent `TCP_DELACK_MAX`
//! (200 ms) after the SYN-ACK arrived; past it the handshake completes
//! and the application accepts a connection. Nothing on the wire tells
//! the exporter that this happened, so it watches its own margin instead:
//! the close delay of every half-open socket that reached SYN-ACK (see
//! `ProbeSocket` in `tcp.rs`: successes, and sockets dropped with a
//! SYN-ACK their probe did not see in time), counted here
//! for `synack_exporter_halfopen_close_delay_seconds` and
//! `synack_exporter_halfopen_late_closes_total`.

#![forbid(unsafe_code)]

use crate::histogram::{AtomicHistogram, HistogramValues};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A close later than this after the SYN-ACK counts as late.
///
/// A quarter of the kernel's delayed-ACK timer (`TCP_DELACK_MAX`, 200 ms):
/// the kernel's part of the delay (how long the SYN-ACK waited for the
/// wake-up) has jiffy resolution, up to 10 ms, and a probe thread that
/// needs 50 ms to answer one SYN-ACK is starved enough that the next
/// ones can take the other 150 ms. Closes this late have not leaked a
/// connection yet, but the guard fires while there is still margin.
pub(crate) const LATE_CLOSE_THRESHOLD: Duration = Duration::from_millis(50);

/// How long this host's kernel holds back the ACK of a SYN-ACK when quick
/// ACKs are off (`TCP_DELACK_MAX`): the margin a half-open close has.
pub(crate) const DELAYED_ACK: Duration = Duration::from_millis(200);

/// Upper bounds of the close-delay histogram, seconds: 100 µs (most
/// closes, even under HTTP load) to 1 s, with 50 ms
/// ([`LATE_CLOSE_THRESHOLD`]) and 200 ms (the delayed ACK) among them.
/// None below 100 µs: smaller bounds would be written as `le="5e-5"`.
pub(crate) const CLOSE_DELAY_BUCKETS: [f64; 13] = [
    0.0001, 0.000_25, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0,
];

/// The close delays of every half-open success the exporter ran, kept
/// with atomics only: the probe thread observes into it for each probe.
#[derive(Debug)]
pub(crate) struct HalfOpenCloses {
    delays: AtomicHistogram,
    /// Delays above [`LATE_CLOSE_THRESHOLD`].
    late: AtomicU64,
}

/// What a scrape reads of [`HalfOpenCloses`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HalfOpenCloseValues {
    /// Every close delay, under [`CLOSE_DELAY_BUCKETS`].
    pub(crate) delays: HistogramValues,
    /// How many were above [`LATE_CLOSE_THRESHOLD`].
    pub(crate) late: u64,
}

impl Default for HalfOpenCloses {
    fn default() -> Self {
        Self {
            delays: AtomicHistogram::new(&CLOSE_DELAY_BUCKETS),
            late: AtomicU64::new(0),
        }
    }
}

impl HalfOpenCloses {
    /// Counts the close of one half-open socket `delay` after its SYN-ACK.
    pub(crate) fn observe(&self, delay: Duration) {
        self.delays.observe(delay);
        if delay > LATE_CLOSE_THRESHOLD {
            self.late.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts as a scrape shows them.
    pub(crate) fn values(&self) -> HalfOpenCloseValues {
        HalfOpenCloseValues {
            delays: self.delays.values(),
            late: self.late.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_closes_past_the_threshold_count_as_late() {
        let closes = HalfOpenCloses::default();
        closes.observe(Duration::from_micros(20));
        closes.observe(LATE_CLOSE_THRESHOLD);
        assert_eq!(closes.values().late, 0, "50 ms itself is not late");
        closes.observe(LATE_CLOSE_THRESHOLD + Duration::from_micros(1));
        closes.observe(Duration::from_millis(250));
        closes.observe(Duration::from_secs(3));
        assert_eq!(closes.values().late, 3);
    }

    #[test]
    fn every_close_lands_under_its_bound() {
        let closes = HalfOpenCloses::default();
        for micros in [20, 50, 300, 50_000, 50_001, 150_000, 250_000, 3_000_000] {
            closes.observe(Duration::from_micros(micros));
        }
        let delays = closes.values().delays;
        assert_eq!(delays.bounds, CLOSE_DELAY_BUCKETS);
        let under = |bound: f64| {
            let index = CLOSE_DELAY_BUCKETS.iter().position(|b| *b == bound);
            delays.cumulative[index.expect("a bound of the histogram")]
        };
        assert_eq!(under(0.0001), 2, "20 µs and 50 µs");
        assert_eq!(under(0.0005), 3, "and 300 µs");
        assert_eq!(under(0.05), 4, "and exactly 50 ms");
        assert_eq!(under(0.1), 5, "and 50.001 ms");
        assert_eq!(under(0.2), 6, "and 150 ms");
        assert_eq!(under(0.5), 7, "and 250 ms");
        assert_eq!(under(1.0), 7, "3 s is above every bound");
        assert_eq!(delays.count, 8);
        assert!((delays.sum - 3.500_371).abs() < 1e-9, "{}", delays.sum);
    }
}
