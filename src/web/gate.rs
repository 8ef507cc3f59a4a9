//! The gate every request passes under `--web.config.file`, as in
//! exporter-toolkit's handler: the rate limit, then basic auth. It
//! decides; the HTTP layer renders its refusals.
//!
//! The gate covers every path, `/-/healthy` included, as exporter-toolkit
//! does. Its checks, in order:
//!
//! 1. The token bucket of `rate_limit`: over it, [`Refusal::TooManyRequests`]
//!    (429).
//! 2. With `basic_auth_users`, the `Authorization: Basic` header: a
//!    missing header, an unknown user or a wrong password are
//!    [`Refusal::Unauthorized`] (401); no bcrypt check could start in time,
//!    [`Refusal::LoginsBusy`] (503). The check, its caches and its bound on
//!    the CPU that failed logins take are [`super::login`]'s.

#![forbid(unsafe_code)]

use super::login::{Login, Logins};
use super::token_bucket::TokenBucket;
use super::{RateLimit, WebConfig};
use crate::metrics::own::LoginCounts;
use hyper::HeaderMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// Why the gate turned a request away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Over `rate_limit`.
    TooManyRequests,
    /// No credentials, an unknown user or a wrong password.
    Unauthorized,
    /// No bcrypt check could start in time.
    LoginsBusy,
}

/// The state the gate keeps across requests and reloads.
#[derive(Debug)]
pub(crate) struct Gate {
    bucket: Mutex<Option<TokenBucket>>,
    logins: Logins,
}

impl Gate {
    /// A gate whose logins are counted into `counts`.
    pub(crate) fn new(counts: Arc<LoginCounts>) -> Self {
        Self {
            bucket: Mutex::new(None),
            logins: Logins::new(counts),
        }
    }

    /// Lets a request with `headers` from `peer` (the client's address)
    /// through `config`, or says why not.
    ///
    /// # Errors
    /// The [`Refusal`], for the HTTP layer to answer with.
    pub(crate) async fn check(
        &self,
        config: &WebConfig,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<(), Refusal> {
        if let Some(limit) = config.rate_limit
            && !self.take_token(limit)
        {
            return Err(Refusal::TooManyRequests);
        }
        if config.users.is_empty() {
            return Ok(());
        }
        match self.logins.check(config, headers, peer).await {
            Login::Accepted => Ok(()),
            Login::Refused => Err(Refusal::Unauthorized),
            Login::Busy => Err(Refusal::LoginsBusy),
        }
    }

    /// Takes a token from the bucket of `limit`, made anew when the limit
    /// changed in a reload.
    fn take_token(&self, limit: RateLimit) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = match &mut *bucket {
            Some(bucket) if bucket.limit() == limit => bucket,
            slot => slot.insert(TokenBucket::new(limit, Instant::now())),
        };
        bucket.take(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A web config with `users` and `rate_limit`, and nothing else.
    fn config(users: &[(&str, &str)], rate_limit: Option<RateLimit>) -> WebConfig {
        WebConfig {
            file: "web.yml".into(),
            tls: None,
            users: users
                .iter()
                .map(|(user, hash)| ((*user).to_owned(), (*hash).to_owned()))
                .collect(),
            dummy_hash: String::new(),
            headers: Vec::new(),
            rate_limit,
            http2_asked: false,
            watched: Vec::new(),
        }
    }

    #[tokio::test]
    async fn the_rate_limit_refuses_once_the_burst_is_spent_and_no_users_let_the_rest_through() {
        let limit = RateLimit {
            interval: Duration::from_secs(60),
            burst: 2,
        };
        let config = config(&[], Some(limit));
        let gate = Gate::new(Arc::default());
        let headers = HeaderMap::new();
        for _ in 0..2 {
            assert_eq!(gate.check(&config, &headers, None).await, Ok(()));
        }
        assert_eq!(
            gate.check(&config, &headers, None).await,
            Err(Refusal::TooManyRequests)
        );
    }

    #[tokio::test]
    async fn with_users_a_request_without_credentials_is_unauthorized() {
        let hash = "$2y$04$2Jv9G4a6T9Zr9b0n5vFZKe0n5Uq0j6x7h8Bq3Z5zYJrWlS7v1G1mK";
        let config = config(&[("alice", hash)], None);
        let gate = Gate::new(Arc::default());
        assert_eq!(
            gate.check(&config, &HeaderMap::new(), None).await,
            Err(Refusal::Unauthorized)
        );
    }
}
