//! A token bucket: the gate's `rate_limit`, and the limit of the HTTP
//! layer's log of failed TLS handshakes.

#![forbid(unsafe_code)]

use super::RateLimit;
use std::time::Instant;

/// `burst` tokens at most, one more every `interval`.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket of `limit` at `now`.
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            updated: now,
        }
    }

    /// The limit it was made with.
    pub(crate) fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes a token at `now`, if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let earned = now.saturating_duration_since(self.updated).as_secs_f64()
            / self.limit.interval.as_secs_f64();
        self.tokens = (self.tokens + earned).min(f64::from(self.limit.burst));
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_bucket_allows_a_burst_then_one_per_interval() {
        let limit = RateLimit {
            interval: Duration::from_millis(100),
            burst: 3,
        };
        let start = Instant::now();
        let mut bucket = TokenBucket::new(limit, start);
        assert!((0..3).all(|_| bucket.take(start)));
        assert!(!bucket.take(start), "the burst is spent");
        assert!(!bucket.take(start + Duration::from_millis(50)));
        assert!(bucket.take(start + Duration::from_millis(110)));
        assert!(!bucket.take(start + Duration::from_millis(120)));
        // A long pause refills to the burst, not beyond.
        let later = start + Duration::from_secs(60);
        assert!((0..3).all(|_| bucket.take(later)));
        assert!(!bucket.take(later));
    }
}
