//! The HTTP server: accepting connections, and routing each request to
//! its handler. What handlers answer with is [`response`]'s.
//!
//! One hyper HTTP/1.1 connection task per client, keep-alive on. Handlers
//! never fail: every request gets a response, and nothing a client sends
//! can produce a 500 (only a failed config reload does, as Prometheus does).

#![forbid(unsafe_code)]

mod accept;
mod admin;
mod connection;
mod csrf;
mod error_bodies;
mod gate;
mod groups;
mod landing;
mod limit;
mod probe;
mod query;
mod response;
mod stream;
mod tls;
mod write_timeout;

use crate::app::App;
use accept::AcceptTrouble;
use hyper::body::Incoming;
use hyper::header::{ALLOW, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioTimer;
use hyper_util::server::graceful::GracefulShutdown;
use response::{HttpBody, HttpResponse, text};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Serves `app` on every one of `listeners` until `shutdown` completes,
/// then drains: the listeners close (new connections are refused),
/// requests in flight get up to the shutdown grace period to finish, and
/// idle keep-alive connections close.
///
/// Under a `--web.config.file`, new connections use its TLS settings in
/// force when they are accepted (through the front door of [`tls`]: Go's
/// 400 for plain HTTP, and failed handshakes logged within a limit),
/// every request passes its [`crate::web::Gate`], and its files are
/// checked for changes every [`gate::POLL_INTERVAL`].
pub(crate) async fn serve(
    listeners: Vec<TcpListener>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) {
    let connections = GracefulShutdown::new();
    let mut trouble = AcceptTrouble::default();
    let mut spare = accept::SpareDescriptor::new();
    let mut limit =
        limit::ConnectionLimit::new(Arc::clone(&app.connection_slots), app.max_connections);
    let counts = app
        .web
        .as_ref()
        .map(|web| Arc::clone(&web.logins))
        .unwrap_or_default();
    let gate = Arc::new(crate::web::Gate::new(counts));
    let handshakes = Arc::new(tls::HandshakeLog::default());
    let _poller = app.web.clone().map(|web| {
        let poll = gate::reload_when_changed(Arc::clone(&app), web);
        crate::task::AbortOnDrop::new(tokio::spawn(poll).abort_handle())
    });
    let mut next = 0;
    tokio::pin!(shutdown);
    loop {
        // A slot first: at the limit, connections wait in the backlog.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = limit.admit() => slot,
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept_any(&listeners, &mut next) => accepted,
        };
        let (stream, client) = match accepted {
            Ok(accepted) => {
                trouble.recovered();
                accepted
            }
            Err(error) if accept::is_exhaustion(&error) => {
                let pause = trouble.failed(&error);
                // `next` is one past the listener that failed.
                let failed = listeners.get(next.wrapping_sub(1));
                if accept::is_out_of_descriptors(&error)
                    && failed.is_some_and(|listener| spare.shed(listener))
                {
                    trouble.shed();
                } else {
                    tokio::time::sleep(pause).await;
                }
                continue;
            }
            Err(error) => {
                tracing::debug!(err = %error, "accept failed for one connection");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // The address the client reached, for links back to this exporter.
        let local = stream
            .local_addr()
            .ok()
            .map(|address| SocketAddr::new(address.ip().to_canonical(), address.port()));
        // The client's, for the web config's login check.
        let peer = stream.peer_addr().ok().map(|address| address.ip());
        let write_timeout = app.settings.write_timeout;
        let service_app = Arc::clone(&app);
        let service_gate = Arc::clone(&gate);
        let service = service_fn(move |request| {
            let app = Arc::clone(&service_app);
            let gate = Arc::clone(&service_gate);
            async move { Ok::<_, Infallible>(answer(&app, &gate, request, local, peer).await) }
        });
        let tls = gate::tls_acceptor(&app);
        let watcher = connections.watcher();
        let handshakes = Arc::clone(&handshakes);
        tokio::spawn(async move {
            let _slot = slot;
            let Some(tls) = tls else {
                serve_connection(connection::io(stream, write_timeout), service, watcher).await;
                return;
            };
            if let Some(session) = tls::accept(tls, stream, client, &handshakes).await {
                serve_connection(connection::io(session, write_timeout), service, watcher).await;
            }
        });
    }
    drop(listeners);
    drain(connections, app.settings.shutdown_grace).await;
}

/// Accepts a connection from whichever listener has one, starting the
/// search after the last that had one, so that no listener starves.
async fn accept_any(
    listeners: &[TcpListener],
    next: &mut usize,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    std::future::poll_fn(|cx| {
        for offset in 0..listeners.len() {
            let at = (*next + offset) % listeners.len();
            if let std::task::Poll::Ready(accepted) = listeners[at].poll_accept(cx) {
                *next = at + 1;
                return std::task::Poll::Ready(accepted);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Serves HTTP/1.1 on one connection until it closes.
async fn serve_connection<T, S>(
    io: connection::ConnectionIo<T>,
    service: S,
    watcher: hyper_util::server::graceful::Watcher,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = HttpBody> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Without a timer hyper enforces no header timeout, and idle
    // half-sent requests would pin file descriptors that probes need.
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(connection::HEADER_READ_TIMEOUT)
        .max_buf_size(connection::WRITE_BUFFER_BYTES)
        .max_header_size(connection::MAX_HEAD_BYTES)
        .serve_connection(io, service);
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(err = %error, "HTTP connection ended with an error");
    }
}

/// Answers one request: through the web config's gate, if there is one,
/// and with its headers. `peer` is the client's address.
async fn answer(
    app: &Arc<App>,
    gate: &crate::web::Gate,
    request: Request<Incoming>,
    local: Option<SocketAddr>,
    peer: Option<IpAddr>,
) -> HttpResponse {
    let Some(config) = app.web.as_ref().map(|web| web.current()) else {
        return route(app, request, local).await;
    };
    let mut response = match gate.check(&config, request.headers(), peer).await {
        Err(refused) => gate::render(refused),
        Ok(()) => route(app, request, local).await,
    };
    gate::add_headers(&config, &mut response);
    response
}

/// Lets the connections still open finish their requests, for at most `grace`.
async fn drain(connections: GracefulShutdown, grace: std::time::Duration) {
    let open = connections.count();
    tracing::info!(
        connections = open,
        grace_seconds = grace.as_secs_f64(),
        "stopped accepting; letting requests in flight finish"
    );
    if tokio::time::timeout(grace, connections.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_seconds = grace.as_secs_f64(),
            "requests still in flight after the shutdown grace period; closing them"
        );
    }
}

/// Dispatches one request by path, then by method. `local` is the address
/// the client connected to.
async fn route(
    app: &Arc<App>,
    request: Request<Incoming>,
    local: Option<SocketAddr>,
) -> HttpResponse {
    if app.settings.health_checker {
        // Every path and method, as health-checker serves them.
        return groups::health_checker(app).await;
    }
    let read_only = [Method::GET, Method::HEAD];
    let path = request.uri().path();
    if let Some(group) = path.strip_prefix("/health/") {
        return if is_one_of(&request, &read_only) {
            groups::handle(app, group).await
        } else {
            method_not_allowed(&read_only)
        };
    }
    match path {
        "/probe" if is_one_of(&request, &read_only) => {
            match limit::probe_request_slot(&app.probe_requests) {
                Some(_slot) => probe::handle(app, &request).await,
                None => limit::too_many_probe_requests(&app.probe_requests),
            }
        }
        "/metrics" if is_one_of(&request, &read_only) => admin::metrics(app, &request),
        "/-/healthy" | "/-/ready" if is_one_of(&request, &read_only) => {
            text(StatusCode::OK, "OK\n")
        }
        "/-/reload" if is_one_of(&request, &[Method::POST, Method::PUT]) => {
            match csrf::refusal(&request) {
                Some(refusal) => text(StatusCode::FORBIDDEN, &format!("{refusal}\n")),
                None => admin::reload(app).await,
            }
        }
        "/config" | "/logs"
            if app.settings.hide_config_and_logs && is_one_of(&request, &read_only) =>
        {
            text(
                StatusCode::FORBIDDEN,
                &format!("{path} is turned off by --web.hide-config-and-logs\n"),
            )
        }
        "/config" if is_one_of(&request, &read_only) => admin::config(app),
        "/logs" if is_one_of(&request, &read_only) => landing::log(app, &request),
        "/" if is_one_of(&request, &read_only) => landing::page(app, &request, local),
        "/probe" | "/metrics" | "/-/healthy" | "/-/ready" | "/config" | "/logs" | "/" => {
            method_not_allowed(&read_only)
        }
        "/-/reload" => method_not_allowed(&[Method::POST, Method::PUT]),
        path => text(StatusCode::NOT_FOUND, &format!("no such page: {path}\n")),
    }
}

fn is_one_of(request: &Request<Incoming>, methods: &[Method]) -> bool {
    methods.contains(request.method())
}

fn method_not_allowed(allowed: &[Method]) -> HttpResponse {
    let allow = allowed
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut response = text(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method not allowed here; use {allow}\n"),
    );
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(ALLOW, value);
    }
    response
}
