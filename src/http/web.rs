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
//!    The slot is held by the blocking thread, not by the request: a
//!    client that hangs up mid-check does not free it while the hash
//!    still runs. A request that finds no slot free within
//!    [`BCRYPT_WAIT`] answers **503** with `Retry-After`, so that queued
//!    checks do not hold connections for ever.
//!    Successes are cached, keyed on the user, the hash *and* the
//!    password (CVE-2022-46146 was exporter-toolkit's cache keyed on too
//!    little), in a cache of at most [`AUTH_CACHE_ENTRIES`].
//!
//! Every answer, refusals included, carries `http_server_config.headers`.
//! Refusals (401, 429, 503) also carry `Connection: close`, and the
//! connection closes after them: a client sending refused requests on a
//! keep-alive connection would otherwise hold one of the
//! `--web.max-connections` slots for as long as it likes, since the
//! header timeout starts anew after each answer. Closing makes it
//! reconnect and wait in the backlog with everyone else.

#![forbid(unsafe_code)]

use super::{HttpResponse, text};
use crate::app::App;
use crate::webconfig::{RateLimit, WebConfig};
use base64::Engine as _;
use hyper::header::{
    AUTHORIZATION, CONNECTION, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
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

/// How long a request waits for one of the [`BCRYPT_AT_ONCE`] slots
/// before it is answered 503.
pub(super) const BCRYPT_WAIT: Duration = Duration::from_secs(1);

/// The `Retry-After` of that 503, in seconds.
const BUSY_RETRY_AFTER: &str = "1";

/// What a credentials check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Login {
    Accepted,
    Refused,
    /// No bcrypt slot freed within [`BCRYPT_WAIT`].
    Busy,
}

/// The [`BCRYPT_AT_ONCE`] slots for blocking work.
#[derive(Debug)]
struct BlockingSlots {
    slots: Arc<Semaphore>,
    wait: Duration,
}

/// No slot freed in time, or the slots are gone.
#[derive(Debug, PartialEq, Eq)]
struct Busy;

impl BlockingSlots {
    fn new(at_once: usize, wait: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(at_once)),
            wait,
        }
    }

    /// Runs `work` on a blocking thread once a slot is free, waiting at
    /// most `self.wait` for one. The slot moves into the blocking
    /// closure and is freed when `work` ends, not when this future is
    /// dropped: a client that disconnects cannot let more than the
    /// limit run at once. `None` if `work` panicked.
    async fn run<T, F>(&self, work: F) -> Result<Option<T>, Busy>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let slot =
            match tokio::time::timeout(self.wait, Arc::clone(&self.slots).acquire_owned()).await {
                Ok(Ok(slot)) => slot,
                Ok(Err(_)) | Err(_) => return Err(Busy),
            };
        let done = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        })
        .await;
        Ok(done.ok())
    }
}

/// A successful login: user, hash and password.
type CacheKey = (String, String, String);

/// The state the gate keeps across requests and reloads.
#[derive(Debug)]
pub(super) struct Gate {
    app: Arc<App>,
    bucket: Mutex<Option<TokenBucket>>,
    logins: Mutex<HashSet<CacheKey>>,
    bcrypt_slots: BlockingSlots,
}

impl Gate {
    pub(super) fn new(app: Arc<App>) -> Self {
        Self {
            app,
            bucket: Mutex::new(None),
            logins: Mutex::new(HashSet::new()),
            bcrypt_slots: BlockingSlots::new(BCRYPT_AT_ONCE, BCRYPT_WAIT),
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
            return Some(refusal(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests\n",
            ));
        }
        if config.users.is_empty() {
            return None;
        }
        match self.authenticated(config, headers).await {
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

    async fn authenticated(&self, config: &WebConfig, headers: &HeaderMap) -> Login {
        let Some((user, password)) = basic_credentials(headers) else {
            return Login::Refused;
        };
        let known = config.users.get(&user);
        let hash = known.unwrap_or(&config.dummy_hash).clone();
        let key = (user, hash, password);
        if known.is_some() && self.logins().contains(&key) {
            return Login::Accepted;
        }
        let (user, hash, password) = key;
        let checked = self
            .bcrypt_slots
            .run(move || {
                let right = bcrypt::verify(&password, &hash).unwrap_or(false);
                (right, (user, hash, password))
            })
            .await;
        let (right, key) = match checked {
            Ok(Some(checked)) => checked,
            Ok(None) => return Login::Refused,
            Err(Busy) => return Login::Busy,
        };
        if right && known.is_some() {
            let mut logins = self.logins();
            if logins.len() >= AUTH_CACHE_ENTRIES {
                logins.clear();
            }
            logins.insert(key);
            return Login::Accepted;
        }
        Login::Refused
    }

    fn logins(&self) -> std::sync::MutexGuard<'_, HashSet<CacheKey>> {
        self.logins.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A refusal of the gate, or of a request over a limit: `body` with
/// `status`, and `Connection: close`, which makes hyper close the
/// connection once it is sent.
pub(super) fn refusal(status: StatusCode, body: &str) -> HttpResponse {
    let mut response = text(status, body);
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
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

    /// Blocking work that counts how many of it run at once.
    #[derive(Debug, Default)]
    struct Running {
        now: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
        done: std::sync::atomic::AtomicUsize,
    }

    impl Running {
        fn work(self: &Arc<Self>, takes: Duration) -> impl FnOnce() + Send + 'static {
            use std::sync::atomic::Ordering::SeqCst;
            let running = Arc::clone(self);
            move || {
                let now = running.now.fetch_add(1, SeqCst) + 1;
                running.most.fetch_max(now, SeqCst);
                std::thread::sleep(takes);
                running.now.fetch_sub(1, SeqCst);
                running.done.fetch_add(1, SeqCst);
            }
        }
    }

    /// The review's reproduction, at the gate: callers that give up (a
    /// client that disconnects drops the request future) while their
    /// check runs must not free its slot before the check ends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_that_give_up_do_not_let_more_than_the_limit_run() {
        use std::sync::atomic::Ordering::SeqCst;
        const CALLERS: usize = 20;
        let slots = Arc::new(BlockingSlots::new(BCRYPT_AT_ONCE, Duration::from_secs(30)));
        let running = Arc::new(Running::default());
        let mut callers = tokio::task::JoinSet::new();
        for _ in 0..CALLERS {
            let slots = Arc::clone(&slots);
            let work = running.work(Duration::from_millis(200));
            callers.spawn(async move {
                // Hangs up after 30 ms, as the clients of the review did.
                let _ = tokio::time::timeout(Duration::from_millis(30), slots.run(work)).await;
            });
        }
        while callers.join_next().await.is_some() {}
        // Some time for the work already started to end, and for any that
        // escaped the limit to show.
        let deadline = Instant::now() + Duration::from_secs(5);
        while running.now.load(SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(running.now.load(SeqCst), 0, "work still running after 5 s");
        let most = running.most.load(SeqCst);
        assert!(
            most <= BCRYPT_AT_ONCE,
            "{most} checks ran at once, more than BCRYPT_AT_ONCE ({BCRYPT_AT_ONCE})"
        );
        // The callers that gave up before getting a slot started nothing.
        assert!(running.done.load(SeqCst) < CALLERS);
        // The slots are all free again.
        assert_eq!(slots.slots.available_permits(), BCRYPT_AT_ONCE);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_waits_for_a_slot_at_most_the_bound() {
        let wait = Duration::from_millis(300);
        let slots = Arc::new(BlockingSlots::new(1, wait));
        let running = Arc::new(Running::default());
        let holder = {
            let slots = Arc::clone(&slots);
            let work = running.work(Duration::from_secs(3));
            tokio::spawn(async move { slots.run(work).await })
        };
        while running.now.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let started = Instant::now();
        let refused = slots.run(|| ()).await;
        let waited = started.elapsed();
        assert_eq!(refused, Err(Busy));
        assert!(
            waited >= wait && waited < wait + Duration::from_secs(1),
            "{waited:?}"
        );
        assert_eq!(holder.await.unwrap(), Ok(Some(())));
        // Once the slot is free, work runs.
        assert_eq!(slots.run(|| 7).await, Ok(Some(7)));
    }

    #[test]
    fn refusals_close_the_connection() {
        let refused = refusal(StatusCode::TOO_MANY_REQUESTS, "too many requests\n");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers().get(CONNECTION).unwrap(), "close");
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
