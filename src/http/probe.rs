//! `GET /probe?target=host:port&module=NAME[&debug=true]`; `target` may
//! be left out for an `exec` module whose command holds no placeholder.
//!
//! Input errors are answered with 400 and one line saying what to fix,
//! and so is an IP literal that the module's family options forbid
//! (`preferred_ip_protocol: ip6` without fallback and `target=127.0.0.1:22`):
//! no probe of it could ever be sent.
//! A probe that fails is not an HTTP error: it is a 200 carrying
//! `probe_success 0`, as in blackbox_exporter, so Prometheus stores it.
//! A target that the module's `target_policy` refuses is one: 403 with
//! one line, as nothing was probed; the prober decides, and says so in
//! [`crate::prober::Outcome::denied_by_policy`].

#![forbid(unsafe_code)]

use super::query::Query;
use super::response::{HttpResponse, respond, response_format, text};
use crate::app::App;
use crate::config::{Module, ProberKind};
use crate::metrics::exposition::Format;
use crate::metrics::probe::render;
use crate::modules::LoadedModule;
use crate::prober::{Outcome, StepLog, Steps, refusal_as_written};
use crate::target::{Target, TargetError};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, StatusCode};
use std::time::Duration;

/// The module used when the request names none.
const DEFAULT_MODULE: &str = "tcp_halfopen";

/// The scrape timeout blackbox_exporter assumes when the header is
/// missing, in seconds (`getTimeout` in its `prober/handler.go`).
const BLACKBOX_SCRAPE_TIMEOUT: f64 = 120.0;

/// Header in which Prometheus announces its scrape timeout.
const SCRAPE_TIMEOUT_HEADER: &str = "x-prometheus-scrape-timeout-seconds";

/// Everything a valid request asks for; the module name is borrowed
/// from the query.
struct ProbeRequest<'a> {
    /// `None` when the request names none: only an `exec` module whose
    /// command holds no placeholder probes without one.
    target: Option<Target>,
    module_name: &'a str,
    debug: bool,
    scrape_timeout: Option<f64>,
}

pub(super) async fn handle(app: &App, request: &Request<Incoming>) -> HttpResponse {
    let query = match Query::parse(request.uri().query()) {
        Ok(query) => query,
        Err(error) => return text(StatusCode::BAD_REQUEST, &format!("{error}\n")),
    };
    let probe_request = match parse(&query, request.headers()) {
        Ok(probe_request) => probe_request,
        Err(message) => return text(StatusCode::BAD_REQUEST, &format!("{message}\n")),
    };
    let in_force = app.in_force();
    let Some(module) = in_force.modules.get(probe_request.module_name) else {
        if let Some(set_aside) = in_force.config.unsupported.get(probe_request.module_name) {
            let message = format!("module {:?} {}\n", probe_request.module_name, set_aside.why);
            return text(StatusCode::BAD_REQUEST, &message);
        }
        let message = format!(
            "unknown module {:?}; use one of {}, or define it under modules: in the config file\n",
            probe_request.module_name,
            in_force.config.module_names()
        );
        return text(StatusCode::BAD_REQUEST, &message);
    };
    if probe_request.target.is_none()
        && let Some(why) = module.module.why_a_target_is_needed()
    {
        let message = match module.module.prober().kind() {
            // The message of a missing target, as before exec modules
            // could go without one.
            ProberKind::TcpHalfopen | ProberKind::TcpConnect | ProberKind::Tcp => {
                TargetError::Empty.to_string()
            }
            ProberKind::Exec => format!(
                "module {:?} needs a target: {why}; pass target=host:port",
                probe_request.module_name
            ),
        };
        return text(StatusCode::BAD_REQUEST, &format!("{message}\n"));
    }
    if let Some(target) = &probe_request.target
        && let Some(refusal) = refusal_as_written(&module.module, target)
    {
        return text(StatusCode::BAD_REQUEST, &format!("{refusal}\n"));
    }
    let timeout = effective_timeout(
        &module.module,
        probe_request.scrape_timeout,
        app.settings.timeout_offset,
    );
    // The steps are kept for the landing page's history as well as for
    // debug=true, as blackbox_exporter does; they become text only when
    // somebody reads them.
    let mut steplog = if probe_request.debug || app.history.is_enabled() {
        StepLog::enabled()
    } else {
        StepLog::disabled()
    };
    let outcome = app
        .checker
        .runner()
        .run(module, probe_request.target.as_ref(), timeout, &mut steplog)
        .await;
    let steps = steplog.into_steps();
    let response = if outcome.denied_by_policy {
        // Nothing was sent: the one line says which entry refused what.
        let reason = outcome.failure.as_ref().map_or("", |f| f.detail.as_str());
        text(StatusCode::FORBIDDEN, &format!("{reason}\n"))
    } else if probe_request.debug {
        let body = debug_body(
            module,
            probe_request.target.as_ref(),
            &outcome,
            &steps,
            !app.settings.hide_config_and_logs,
        );
        text(StatusCode::OK, &body)
    } else {
        let format = response_format(request);
        respond(
            StatusCode::OK,
            format.content_type(),
            render(&outcome, &module.module, format),
        )
    };
    app.history
        .record(&module.name, probe_request.target, outcome, steps);
    response
}

/// What `debug=true` shows: the step log, the metrics, the module. Unless
/// `show_config` (off with `--web.hide-config-and-logs`), the module (it
/// holds the policy) and the command lines of the step log are left out.
fn debug_body(
    module: &LoadedModule,
    target: Option<&Target>,
    outcome: &Outcome,
    steps: &Steps,
    show_config: bool,
) -> String {
    let failure = outcome.failure.as_ref().map(|failure| failure as _);
    let module_yaml = if show_config {
        serde_saphyr::to_string(&module.module).unwrap_or_default()
    } else {
        "(hidden by --web.hide-config-and-logs)\n".to_owned()
    };
    format!(
        "Logs for the probe:\n{}\nMetrics that would have been returned:\n{}\nModule configuration:\n{module_yaml}",
        steps.render(target, failure, show_config),
        render(outcome, &module.module, Format::PrometheusText),
    )
}

fn parse<'a>(query: &'a Query<'_>, headers: &HeaderMap) -> Result<ProbeRequest<'a>, String> {
    let single = |name| query.single(name).map_err(|error| error.to_string());
    let target = match single("target")? {
        None | Some("") => None,
        Some(text) => Some(Target::parse(text).map_err(|error| error.to_string())?),
    };
    let module_name = single("module")?
        .filter(|name| !name.is_empty())
        .unwrap_or(DEFAULT_MODULE);
    let debug = match single("debug")? {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(format!("debug must be true or false, not {other:?}")),
    };
    let scrape_timeout = match headers.get(SCRAPE_TIMEOUT_HEADER) {
        None => None,
        Some(value) => Some(parse_scrape_timeout(value.to_str().ok())?),
    };
    Ok(ProbeRequest {
        target,
        module_name,
        debug,
        scrape_timeout,
    })
}

fn parse_scrape_timeout(value: Option<&str>) -> Result<f64, String> {
    value
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
        .ok_or_else(|| {
            format!(
                "header X-Prometheus-Scrape-Timeout-Seconds is {:?}, not a positive number of seconds",
                value.unwrap_or("<not text>")
            )
        })
}

/// The module's timeout, lowered to what the scraper will wait for.
///
/// Like blackbox_exporter, the scrape timeout minus `offset` caps the
/// module timeout. When the offset would leave nothing, blackbox_exporter
/// falls back to the module timeout, which outlives the scrape; we keep the
/// scrape timeout itself as the cap so the answer still arrives in time.
///
/// A module that takes its timeout from the scrape (blackbox's module
/// without `timeout:`) has the scrape timeout minus `offset`, and without
/// the header blackbox's 120 s minus `offset`; never more than the 2
/// minutes of [`Module::timeout`].
fn effective_timeout(module: &Module, scrape_timeout: Option<f64>, offset: Duration) -> Duration {
    let module_timeout = module.timeout();
    let scrape_timeout = match scrape_timeout {
        Some(scrape_timeout) => scrape_timeout,
        None if module.timeout_from_scrape() => BLACKBOX_SCRAPE_TIMEOUT,
        None => return module_timeout,
    };
    let with_offset = scrape_timeout - offset.as_secs_f64();
    let cap = if with_offset > 0.0 {
        with_offset
    } else {
        scrape_timeout
    };
    Duration::try_from_secs_f64(cap).map_or(module_timeout, |cap| module_timeout.min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_timeout_minus_offset_caps_the_module_timeout() {
        let module = Module::tcp_halfopen().with_timeout(Duration::from_secs(5));
        let offset = Duration::from_millis(500);
        assert_eq!(
            effective_timeout(&module, None, offset),
            Duration::from_secs(5)
        );
        assert_eq!(
            effective_timeout(&module, Some(10.0), offset),
            Duration::from_secs(5)
        );
        assert_eq!(
            effective_timeout(&module, Some(2.0), offset),
            Duration::from_millis(1500)
        );
        assert_eq!(
            effective_timeout(&module, Some(0.3), offset),
            Duration::from_millis(300)
        );
    }

    /// blackbox_exporter's rule for its module without `timeout:`: the
    /// scrape timeout less the offset, 119.5 s without the header.
    #[test]
    fn a_module_without_timeout_takes_the_scrape_timeout_less_the_offset() {
        let config = crate::config::Config::parse(
            "b.yml",
            "modules:\n  plain:\n    prober: tcp\n  set:\n    prober: tcp\n    timeout: 3s\n",
        )
        .unwrap();
        let offset = Duration::from_millis(500);
        let plain = &config.modules["plain"];
        assert_eq!(
            effective_timeout(plain, None, offset),
            Duration::from_millis(119_500)
        );
        assert_eq!(
            effective_timeout(plain, Some(10.0), offset),
            Duration::from_millis(9_500)
        );
        assert_eq!(
            effective_timeout(plain, Some(0.3), offset),
            Duration::from_millis(300)
        );
        let set = &config.modules["set"];
        assert_eq!(effective_timeout(set, None, offset), Duration::from_secs(3));
        assert_eq!(
            effective_timeout(set, Some(2.0), offset),
            Duration::from_millis(1_500)
        );
    }

    #[test]
    fn scrape_timeout_header_must_be_a_positive_number() {
        assert_eq!(parse_scrape_timeout(Some("9.5")), Ok(9.5));
        for bad in ["", "abc", "0", "-1", "NaN", "inf"] {
            assert!(parse_scrape_timeout(Some(bad)).is_err(), "{bad:?}");
        }
        assert!(parse_scrape_timeout(None).is_err());
    }
}
