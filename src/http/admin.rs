//! The exporter's own pages: `/metrics`, `/config`, `/-/reload` and `/`.

use super::{HttpResponse, respond, text};
use crate::app::App;
use crate::metrics::exposition::Format;
use hyper::body::Incoming;
use hyper::header::ACCEPT;
use hyper::{Request, StatusCode};

pub(super) fn metrics(app: &App, request: &Request<Incoming>) -> HttpResponse {
    let accept = request
        .headers()
        .get(ACCEPT)
        .and_then(|value| value.to_str().ok());
    let format = Format::negotiate(accept);
    respond(
        StatusCode::OK,
        format.content_type(),
        app.metrics().encode(format),
    )
}

pub(super) fn config(app: &App) -> HttpResponse {
    text(StatusCode::OK, &app.config().to_yaml())
}

/// Re-reads the config; a bad file keeps the old one and answers 500, as
/// Prometheus and blackbox_exporter do.
pub(super) fn reload(app: &App) -> HttpResponse {
    match app.reload() {
        Ok(()) => {
            tracing::info!(source = %app.config_source(), "config reloaded");
            text(StatusCode::OK, "config reloaded\n")
        }
        Err(error) => {
            tracing::error!(%error, "config reload failed; keeping the old config");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("config reload failed, the old config stays in force: {error}\n"),
            )
        }
    }
}

/// A minimal page of links, so that a browser pointed at the port finds its way.
pub(super) fn landing(app: &App) -> HttpResponse {
    let modules: String = app
        .config()
        .modules
        .keys()
        .map(|name| format!("<li><code>{}</code></li>", html_escape(name)))
        .collect();
    let page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>synack_exporter</title></head><body>\n\
         <h1>synack_exporter {}</h1>\n\
         <p>Half-open TCP probes for Prometheus.</p>\n\
         <ul><li><a href=\"/probe?target=127.0.0.1:9215&amp;module=tcp_halfopen&amp;debug=true\">Probe 127.0.0.1:9215 with debug output</a></li>\n\
         <li><a href=\"/metrics\">Exporter metrics</a></li><li><a href=\"/config\">Config in force</a></li></ul>\n\
         <h2>Modules</h2><ul>{modules}</ul>\n</body></html>\n",
        env!("CARGO_PKG_VERSION")
    );
    respond(StatusCode::OK, "text/html; charset=utf-8", page)
}

fn html_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}
