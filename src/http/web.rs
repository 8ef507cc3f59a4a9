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
//!    with `WWW-Authenticate: Basic`. bcrypt runs on a blocking thread,
//!    never on the async workers, at most [`BCRYPT_AT_ONCE`] at a time.
//!    An unknown user is checked against a dummy hash of the users'
//!    highest cost, so that it takes as long as a wrong password.
//!    Successes are cached, keyed on the user, the hash *and* the
//!    password (CVE-2022-46146 was exporter-toolkit's cache keyed on too
//!    little), in a cache of at most [`AUTH_CACHE_ENTRIES`].
//!
//! Every answer, refusals included, carries `http_server_config.headers`.

#![forbid(unsafe_code)]

use super::{HttpResponse, text};
use crate::app::App;
use crate::webconfig::{RateLimit, WebConfig};
use base64::Engine as _;
use hyper::header::{AUTHORIZATION, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use hyper::{HeaderMap, StatusCode};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// How often the web config's files are checked for changes.
pub(super) const POLL_INTERVAL: Duration = Duration::from_secs(3);

/// The most successful logins remembered. A handful of users, each with
/// one password, need a few entries; the bound keeps a flood of
/// distinct right passwords (there are none) or hash changes from growing it.
pub(super) const AUTH_CACHE_ENTRIES: usize = 256;

/// bcrypt checks run at once. Each takes a core for about 100 ms at cost
/// 10; more at once would only queue on the blocking pool and starve the
/// probes of CPU.
pub(super) const BCRYPT_AT_ONCE: usize = 2;

/// A successful login: user, hash and password.
type CacheKey = (String, String, String);

/// The state the gate keeps across requests and reloads.
#[derive(Debug)]
pub(super) struct Gate {
    app: Arc<App>,
    bucket: Mutex<Option<TokenBucket>>,
    logins: Mutex<HashSet<CacheKey>>,
    bcrypt_slots: Arc<Semaphore>,
}

impl Gate {
    pub(super) fn new(app: Arc<App>) -> Self {
        Self {
            app,
            bucket: Mutex::new(None),
            logins: Mutex::new(HashSet::new()),
            bcrypt_slots: Arc::new(Semaphore::new(BCRYPT_AT_ONCE)),
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

    /// `None` to let the request through, or the refusal.
    pub(super) async fn check(
        &self,
        config: &WebConfig,
        headers: &HeaderMap,
    ) -> Option<HttpResponse> {
        if let Some(limit) = config.rate_limit
            && !self.take_token(limit)
        {
            return Some(text(StatusCode::TOO_MANY_REQUESTS, "too many requests\n"));
        }
        if config.users.is_empty() || self.authenticated(config, headers).await {
            return None;
        }
        let mut refusal = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
        refusal
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        Some(refusal)
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

    async fn authenticated(&self, config: &WebConfig, headers: &HeaderMap) -> bool {
        let Some((user, password)) = basic_credentials(headers) else {
            return false;
        };
        let known = config.users.get(&user);
        let hash = known.unwrap_or(&config.dummy_hash).clone();
        let key = (user, hash, password);
        if known.is_some() && self.logins().contains(&key) {
            return true;
        }
        let Ok(_slot) = Arc::clone(&self.bcrypt_slots).acquire_owned().await else {
            return false;
        };
        let (user, hash, password) = key;
        let checked = tokio::task::spawn_blocking(move || {
            let right = bcrypt::verify(&password, &hash).unwrap_or(false);
            (right, (user, hash, password))
        })
        .await;
        let Ok((right, key)) = checked else {
            return false;
        };
        if right && known.is_some() {
            let mut logins = self.logins();
            if logins.len() >= AUTH_CACHE_ENTRIES {
                logins.clear();
            }
            logins.insert(key);
            return true;
        }
        false
    }

    fn logins(&self) -> std::sync::MutexGuard<'_, HashSet<CacheKey>> {
        self.logins.lock().unwrap_or_else(PoisonError::into_inner)
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

/// The user and password of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// A token bucket: `burst` tokens at most, one more every `interval`.
#[derive(Debug)]
struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            updated: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
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

    #[test]
    fn basic_credentials_are_read_from_the_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(basic_credentials(&headers), None);
        // "alice:pa:ss" — a password may hold colons.
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic YWxpY2U6cGE6c3M="),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("alice".into(), "pa:ss".into()))
        );
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer YWxpY2U6cGE6c3M="),
        );
        assert_eq!(basic_credentials(&headers), None);
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(basic_credentials(&headers), None);
    }
}
