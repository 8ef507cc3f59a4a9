//! Serving under `--web.config.file`: the TLS acceptor of new
//! connections, and the gate every request passes (rate limit, then
//! basic auth), as in exporter-toolkit's handler.
//!
//! The gate covers every path, `/-/healthy` included, as exporter-toolkit
//! does. Its checks, in order:
//!
//! 1. The token bucket of `rate_limit`: over it, **429**.
//! 2. With `basic_auth_users`, the `Authorization: Basic` header: a
//!    missing header, an unknown user or a wrong password answer **401**
//!    with `WWW-Authenticate: Basic`; no bcrypt check could start in time,
//!    **503** with `Retry-After`. The check, its caches and its bound on
//!    the CPU that failed logins take are [`crate::web::login`]'s.
//!
//! Every answer, refusals included, carries `http_server_config.headers`.
//! Refusals (401, 429, 503) also carry `Connection: close`, and the
//! connection closes after them: a client sending refused requests on a
//! keep-alive connection would otherwise hold one of the
//! `--web.max-connections` slots for as long as it likes, since the
//! header timeout starts anew after each answer. Closing makes it
//! reconnect and wait in the backlog with everyone else.

#![forbid(unsafe_code)]

use super::response::{HttpResponse, refusal};
use crate::app::App;
use crate::web::login::{Login, Logins};
use crate::web::{RateLimit, WebConfig};
use hyper::header::{HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{HeaderMap, StatusCode};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio_rustls::TlsAcceptor;

/// How often the web config's files are checked for changes.
pub(super) const POLL_INTERVAL: Duration = Duration::from_secs(3);

/// The `Retry-After` of a 503 for a busy login check, in seconds.
const BUSY_RETRY_AFTER: &str = "1";

/// The state the gate keeps across requests and reloads.
#[derive(Debug)]
pub(super) struct Gate {
    app: Arc<App>,
    bucket: Mutex<Option<TokenBucket>>,
    logins: Logins,
}

impl Gate {
    pub(super) fn new(app: Arc<App>) -> Self {
        let counts = app
            .web
            .as_ref()
            .map(|web| Arc::clone(&web.logins))
            .unwrap_or_default();
        Self {
            app,
            bucket: Mutex::new(None),
            logins: Logins::new(counts),
        }
    }

    /// The web config in force, if any.
    pub(super) fn config(&self) -> Option<Arc<WebConfig>> {
        self.app.web.as_ref().map(|web| web.current())
    }

    /// The acceptor for a new connection: with the certificate in force
    /// now, so that a rotated one is served from the next connection on.
    pub(super) fn tls_acceptor(&self) -> Option<TlsAcceptor> {
        let config = self.config()?;
        config.tls.clone().map(TlsAcceptor::from)
    }

    /// `None` to let the request through, or the refusal; `peer` is the
    /// client's address.
    pub(super) async fn check(
        &self,
        config: &WebConfig,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Option<HttpResponse> {
        if let Some(limit) = config.rate_limit
            && !self.take_token(limit)
        {
            return Some(refusal(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests\n",
            ));
        }
        if config.users.is_empty() {
            return None;
        }
        match self.logins.check(config, headers, peer).await {
            Login::Accepted => None,
            Login::Refused => {
                let mut refused = refusal(StatusCode::UNAUTHORIZED, "unauthorized\n");
                refused
                    .headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
                Some(refused)
            }
            Login::Busy => {
                let mut refused = refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many logins being checked; try again\n",
                );
                refused
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static(BUSY_RETRY_AFTER));
                Some(refused)
            }
        }
    }

    /// Takes a token from the bucket of `limit`, made anew when the limit
    /// changed in a reload.
    fn take_token(&self, limit: RateLimit) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = match &mut *bucket {
            Some(bucket) if bucket.limit == limit => bucket,
            slot => slot.insert(TokenBucket::new(limit, Instant::now())),
        };
        bucket.take(Instant::now())
    }
}

/// Adds `http_server_config.headers` to a response.
pub(super) fn add_headers(config: &WebConfig, response: &mut HttpResponse) {
    for (name, value) in &config.headers {
        if value.is_empty() {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
}

/// A token bucket: `burst` tokens at most, one more every `interval`.
/// Also the limit of the TLS handshake log ([`super::tls`]).
#[derive(Debug)]
pub(super) struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    pub(super) fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            updated: now,
        }
    }

    pub(super) fn take(&mut self, now: Instant) -> bool {
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
