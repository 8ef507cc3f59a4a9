//! Serving under `--web.config.file`: the TLS acceptor of new
//! connections, the web gate's refusals as responses, the config's
//! headers on every answer, and the poll of its files for changes. What
//! the gate lets through is [`crate::web::Gate`]'s to decide.
//!
//! A 401 carries `WWW-Authenticate: Basic`, a 503 `Retry-After`. Every
//! answer, refusals included, carries `http_server_config.headers`.
//! Refusals (401, 429, 503) also carry `Connection: close`, and the
//! connection closes after them: a client sending refused requests on a
//! keep-alive connection would otherwise hold one of the
//! `--web.max-connections` slots for as long as it likes, since the
//! header timeout starts anew after each answer. Closing makes it
//! reconnect and wait in the backlog with everyone else.

#![forbid(unsafe_code)]

use super::response::{HttpResponse, refusal};
use crate::app::App;
use crate::web::{Refusal, WebConfig, WebConfigState};
use hyper::StatusCode;
use hyper::header::{HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

/// How often the web config's files are checked for changes.
pub(super) const POLL_INTERVAL: Duration = Duration::from_secs(3);

/// The `Retry-After` of a 503 for a busy login check, in seconds.
const BUSY_RETRY_AFTER: &str = "1";

/// The acceptor for a new connection: with the certificate in force now,
/// so that a rotated one is served from the next connection on.
pub(super) fn tls_acceptor(app: &App) -> Option<TlsAcceptor> {
    let config = app.web.as_ref()?.current();
    config.tls.clone().map(TlsAcceptor::from)
}

/// The answer to a request the gate turned away.
pub(super) fn render(refused: Refusal) -> HttpResponse {
    match refused {
        Refusal::TooManyRequests => refusal(StatusCode::TOO_MANY_REQUESTS, "too many requests\n"),
        Refusal::Unauthorized => {
            let mut response = refusal(StatusCode::UNAUTHORIZED, "unauthorized\n");
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            response
        }
        Refusal::LoginsBusy => {
            let mut response = refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many logins being checked; try again\n",
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static(BUSY_RETRY_AFTER));
            response
        }
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

/// Re-reads the web config whenever one of its files changes. The files
/// are looked at on a blocking thread, as they are read: a `stat` that
/// hangs (a hung network filesystem) stops this poll, never a thread that
/// serves.
pub(super) async fn reload_when_changed(app: Arc<App>, web: Arc<WebConfigState>) {
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        let looking = Arc::clone(&web);
        let changed = tokio::task::spawn_blocking(move || looking.changed()).await;
        if changed.unwrap_or(false) {
            // The error is logged and counted by the reload itself.
            let _ = app.reload_web_config("a file changed").await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::CONNECTION;

    #[test]
    fn every_refusal_closes_the_connection_and_says_what_to_do() {
        for (refused, status, header) in [
            (
                Refusal::TooManyRequests,
                StatusCode::TOO_MANY_REQUESTS,
                None,
            ),
            (
                Refusal::Unauthorized,
                StatusCode::UNAUTHORIZED,
                Some((WWW_AUTHENTICATE, "Basic")),
            ),
            (
                Refusal::LoginsBusy,
                StatusCode::SERVICE_UNAVAILABLE,
                Some((RETRY_AFTER, BUSY_RETRY_AFTER)),
            ),
        ] {
            let response = render(refused);
            assert_eq!(response.status(), status, "{refused:?}");
            assert_eq!(response.headers().get(CONNECTION).unwrap(), "close");
            if let Some((name, value)) = header {
                assert_eq!(response.headers().get(name).unwrap(), value, "{refused:?}");
            }
        }
    }
}
