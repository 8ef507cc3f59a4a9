//! The exporter's own pages: `/metrics`, `/config` and `/-/reload`.

#![forbid(unsafe_code)]

use super::response::{HttpResponse, respond_with, response_format, text};
use super::stream::MetricsBody;
use crate::app::App;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use std::sync::Arc;

/// The exporter's metrics, then the scheduled targets' series, streamed.
pub(super) fn metrics(app: &App, request: &Request<Incoming>) -> HttpResponse {
    let format = response_format(request);
    let head = app.exporter_families(format);
    let scheduled = app.series.exposition(format);
    let body = MetricsBody::new(head, scheduled, format.end());
    respond_with(StatusCode::OK, format.content_type(), body.boxed_unsync())
}

pub(super) fn config(app: &App) -> HttpResponse {
    text(StatusCode::OK, &app.in_force().config.to_yaml())
}

/// Re-reads the config; a bad file keeps the old one and answers 500, as
/// Prometheus and blackbox_exporter do. The work happens off this worker
/// and is shared with concurrent reloads (see [`App::reload`]). The error
/// quotes the file, so with `--web.hide-config-and-logs` the answer only
/// says where to read it: the log, which always has it.
pub(super) async fn reload(app: &Arc<App>) -> HttpResponse {
    match app.reload().await {
        Ok(()) => {
            tracing::info!(source = %app.config_source(), "config reloaded");
            text(StatusCode::OK, "config reloaded\n")
        }
        Err(error) => {
            tracing::error!(err = %error, "config reload failed; keeping the old config");
            let body = if app.settings.hide_config_and_logs {
                "config reload failed, the old config stays in force; the exporter's log says why\n"
                    .to_owned()
            } else {
                format!("config reload failed, the old config stays in force: {error}\n")
            };
            text(StatusCode::INTERNAL_SERVER_ERROR, &body)
        }
    }
}
