//! `GET /`: a plain HTML page of what the exporter is doing, and
//! `GET /logs?id=N`: the step log of one recent `/probe` request.
//!
//! No JavaScript: tables rendered on the server, readable in any browser
//! and in `curl`. Every value that comes from the config or a request is
//! HTML-escaped, since labels and targets are user text.
//!
//! The page stays small whatever the exporter holds: at most
//! [`MAX_TARGET_ROWS`] scheduled targets, and one page of
//! [`HISTORY_PAGE_ROWS`] `/probe` requests, older ones on
//! `/?history_page=N`. Rendering all of a long history made `/` tens of
//! megabytes and slowed `/probe` for everyone while it was built.

#![forbid(unsafe_code)]

use super::query::Query;
use super::response::{HttpResponse, respond, text};
use crate::app::App;
use crate::config::{Config, Group, builtin_modules};
use crate::groups::LastAnswer;
use crate::history::{MAX_MEMORY, ProbeRecord};
use crate::scheduler::{
    MAX_RECENT, MAX_RECENT_BYTES, Phase, ScheduledTarget, TargetState, Transition,
};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

/// More rows than this make a page no one reads; the rest stay on /metrics.
const MAX_TARGET_ROWS: usize = 1000;

/// `/probe` requests per page of the history.
const HISTORY_PAGE_ROWS: usize = 100;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin-bottom:2em}th,td{border:1px solid #ccc;padding:4px 10px;text-align:left}\
th{background:#f0f0f0}.up{color:#1a7f37;font-weight:bold}.down{color:#cf222e;font-weight:bold}\
.pending{color:#777}code{background:#f6f8fa;padding:1px 4px}tr.failed td{background:#ffebe9}";

/// `GET /` and `GET /?history_page=N`. `local` is the address the client
/// reached, so the example probe checks this very exporter's port,
/// whatever it listens on.
pub(super) fn page(
    app: &App,
    request: &Request<Incoming>,
    local: Option<SocketAddr>,
) -> HttpResponse {
    let history_page = match history_page(request) {
        Ok(page) => page,
        Err(message) => return text(StatusCode::BAD_REQUEST, &message),
    };
    let now = crate::clock::unix_seconds();
    let in_force = app.in_force();
    let config = &in_force.config;
    let mut html = String::with_capacity(16 * 1024);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>synack_exporter</title>\
         <style>{STYLE}</style></head><body>\n<h1>synack_exporter {}</h1>\n\
         <p>Half-open TCP probes for Prometheus. <a href=\"/metrics\">Metrics</a>",
        env!("CARGO_PKG_VERSION")
    );
    let hidden = app.settings.hide_config_and_logs;
    if !hidden {
        html.push_str(" · <a href=\"/config\">Configuration</a>");
    }
    if let Some(local) = local {
        let _ = write!(
            html,
            " · <a href=\"{}\">Example probe of this exporter's own port</a>",
            escape(&example_probe_path(local))
        );
    }
    html.push_str("</p>\n");
    write_modules(&mut html, config);
    write_targets(&mut html, &app.scheduler.targets(), now);
    write_transitions(&mut html, &app.scheduler.transitions().recent(), now);
    write_groups(&mut html, app, config, now);
    if hidden {
        html.push_str(
            "<p>The history of /probe requests, their logs and /config are turned off \
             (--web.hide-config-and-logs).</p>\n</body></html>\n",
        );
        return respond(StatusCode::OK, "text/html; charset=utf-8", html);
    }
    let (records, kept) = app
        .history
        // Saturating: the page number is the client's, and may be huge.
        .newest(
            (history_page - 1).saturating_mul(HISTORY_PAGE_ROWS),
            HISTORY_PAGE_ROWS,
        );
    write_history(&mut html, &records, kept, history_page, now);
    html.push_str("</body></html>\n");
    respond(StatusCode::OK, "text/html; charset=utf-8", html)
}

/// `/probe` of `local` itself with `debug=true`: a port that is surely open.
fn example_probe_path(local: SocketAddr) -> String {
    let target = local.to_string().replace('[', "%5B").replace(']', "%5D");
    format!("/probe?target={target}&module=tcp_halfopen&debug=true")
}

fn write_modules(html: &mut String, config: &Config) {
    html.push_str(
        "<h2>Modules</h2>\n<table><tr><th>name</th><th>prober</th><th>timeout</th><th>defined by</th></tr>\n",
    );
    for (name, module) in &config.modules {
        let source = if config.is_builtin(name) {
            "built in"
        } else if builtin_modules().contains_key(name) {
            "config file (redefines the built-in module)"
        } else {
            "config file"
        };
        let _ = writeln!(
            html,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{source}</td></tr>",
            escape(name),
            module.prober().name(),
            crate::config::PromDuration(module.timeout())
        );
    }
    html.push_str("</table>\n");
}

fn write_groups(html: &mut String, app: &App, config: &Config, now: f64) {
    let _ = writeln!(html, "<h2>Groups ({})</h2>", config.groups.len());
    if config.groups.is_empty() {
        html.push_str(
            "<p>None. Add a <code>groups:</code> section to the config for <code>/health/&lt;group&gt;</code>.</p>\n",
        );
        return;
    }
    html.push_str(
        "<table><tr><th>group</th><th>modules</th><th>members</th><th>last answer</th></tr>\n",
    );
    for (name, group) in &config.groups {
        let last = app.groups.last_answer(&name.0).map_or_else(
            || "<td class=\"pending\">not checked yet</td>".to_owned(),
            |answer| last_answer_cell(&answer, now),
        );
        let _ = writeln!(
            html,
            "<tr><td><a href=\"/health/{0}\"><code>/health/{0}</code></a></td><td>{1}</td><td>{2}</td>{last}</tr>",
            escape(&name.0),
            escape(&group_modules(group)),
            group.members.len()
        );
    }
    html.push_str("</table>\n");
}

/// A group's modules, each once, in the order members first use them.
fn group_modules(group: &Group) -> String {
    let mut names: Vec<&str> = Vec::new();
    for member in &group.members {
        if !names.contains(&member.module.value.as_str()) {
            names.push(&member.module.value);
        }
    }
    names.join(", ")
}

fn last_answer_cell(answer: &LastAnswer, now: f64) -> String {
    let when = ago(now, answer.finished_unix);
    if answer.report.all_up() {
        return format!("<td class=\"up\">200 OK, {when}</td>");
    }
    let failing: Vec<String> = answer
        .report
        .failing
        .iter()
        .map(|member| escape(&member.to_string()))
        .collect();
    format!(
        "<td class=\"down\">503, {when}: {}</td>",
        failing.join(", ")
    )
}

fn write_targets(html: &mut String, targets: &[std::sync::Arc<ScheduledTarget>], now: f64) {
    let _ = writeln!(html, "<h2>Scheduled targets ({})</h2>", targets.len());
    if targets.is_empty() {
        html.push_str("<p>None. Add a <code>targets:</code> section to the config.</p>\n");
        return;
    }
    html.push_str(
        "<table><tr><th>target</th><th>module</th><th>labels</th><th>state</th><th>last result</th>\
         <th>last handshake</th><th>last change</th><th>probed every</th></tr>\n",
    );
    for target in targets.iter().take(MAX_TARGET_ROWS) {
        let labels: Vec<String> = target
            .labels
            .iter()
            .map(|(name, value)| format!("{}={}", escape(&name.0), escape(value)))
            .collect();
        let row = target.with_state(|state| state_cells(state, now));
        let _ = writeln!(
            html,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td>{row}</tr>",
            escape(&target.target_text),
            escape(&target.module),
            labels.join(", ")
        );
    }
    html.push_str("</table>\n");
    if targets.len() > MAX_TARGET_ROWS {
        let _ = writeln!(
            html,
            "<p>Showing the first {MAX_TARGET_ROWS}; all are on /metrics.</p>"
        );
    }
}

fn state_cells(state: &TargetState, now: f64) -> String {
    let interval = interval_cell(state);
    if !state.probed {
        return format!(
            "<td class=\"pending\">not probed yet</td><td></td><td></td><td></td>{interval}"
        );
    }
    let (class, word) = if state.healthy {
        ("up", "healthy")
    } else {
        ("down", "unhealthy")
    };
    let result = match state.last_reason {
        None => "success".to_owned(),
        Some(reason) => format!("{reason}: {}", escape(&state.last_detail)),
    };
    let handshake = state
        .last_handshake
        .map_or_else(String::new, |seconds| format!("{:.3} ms", seconds * 1000.0));
    format!(
        "<td class=\"{class}\">{word}</td><td>{result}</td><td>{handshake}</td><td>{}</td>{interval}",
        ago(now, state.last_change_unix)
    )
}

/// The last health changes of scheduled targets, newest first.
fn write_transitions(html: &mut String, transitions: &[Arc<Transition>], now: f64) {
    let _ = writeln!(
        html,
        "<h2>Last transitions ({} of at most {MAX_RECENT}, {} KiB)</h2>",
        transitions.len(),
        MAX_RECENT_BYTES / 1024
    );
    if transitions.is_empty() {
        html.push_str(
            "<p>None yet: a scheduled target's change of health, after rise or fall, shows here.</p>\n",
        );
        return;
    }
    html.push_str(
        "<table><tr><th>when</th><th>target</th><th>module</th><th>labels</th><th>change</th>\
         <th>probe that caused it</th><th>probes since the last change</th></tr>\n",
    );
    for transition in transitions {
        let (class, to) = if transition.healthy {
            ("up", "healthy")
        } else {
            ("down", "unhealthy")
        };
        let mut result = transition.result();
        if !transition.detail.is_empty() {
            let _ = write!(result, ": {}", transition.detail);
        }
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td>\
             <td class=\"{class}\">{} → {to}</td><td>{}</td><td>{}</td></tr>",
            ago(now, transition.unix),
            escape(&transition.target),
            escape(&transition.module),
            escape(&transition.labels),
            Transition::state_word(!transition.healthy),
            escape(&result),
            transition.probes
        );
    }
    html.push_str("</table>\n");
}

/// The interval the target is probed at now, and which of its intervals
/// that is when not `interval`.
fn interval_cell(state: &TargetState) -> String {
    let which = match state.phase() {
        Phase::Up => "",
        Phase::Changing => " (fast_interval: changing)",
        Phase::Down => " (down_interval)",
    };
    format!(
        "<td>{}{which}</td>",
        crate::config::PromDuration::from(state.interval)
    )
}

/// The `history_page` parameter: 1, the newest entries, when absent.
fn history_page(request: &Request<Incoming>) -> Result<usize, String> {
    let query = Query::parse(request.uri().query()).map_err(|error| format!("{error}\n"))?;
    let page = query
        .single("history_page")
        .map_err(|error| format!("{error}\n"))?;
    match page {
        None => Ok(1),
        Some(text) => text.parse::<usize>().ok().filter(|&page| page >= 1).ok_or_else(|| {
            format!("history_page={text:?} is not a page number; pass 1 for the newest entries, 2 for older ones, and so on\n")
        }),
    }
}

/// One page of the history: `records`, the `page`-th of `kept` in all.
fn write_history(
    html: &mut String,
    records: &[Arc<ProbeRecord>],
    kept: usize,
    page: usize,
    now: f64,
) {
    html.push_str("<h2>Recent /probe requests</h2>\n");
    let pages = kept.div_ceil(HISTORY_PAGE_ROWS);
    if records.is_empty() {
        if kept == 0 {
            html.push_str("<p>None yet.</p>\n");
        } else {
            let _ = writeln!(
                html,
                "<p>There are no entries on page {page}; the {kept} kept fill {pages} page(s). \
                 <a href=\"/\">Newest</a></p>"
            );
        }
        return;
    }
    if pages > 1 {
        let first = (page - 1) * HISTORY_PAGE_ROWS + 1;
        let mut note = if page == 1 {
            format!("<p>The newest {} of {kept} kept.", records.len())
        } else {
            format!(
                "<p>Entries {first} to {} of {kept} kept, newest first. <a href=\"{}\">Newer</a>",
                first + records.len() - 1,
                history_link(page - 1)
            )
        };
        if page < pages {
            let _ = write!(note, " <a href=\"{}\">Older</a>", history_link(page + 1));
        }
        note.push_str(" Each links to its log at <code>/logs?id=N</code>.</p>\n");
        html.push_str(&note);
    }
    html.push_str("<table><tr><th>when</th><th>module</th><th>target</th><th>result</th><th>duration</th><th>log</th></tr>\n");
    for record in records {
        let (row_class, result) = match record.reason() {
            None => ("", "<td class=\"up\">success</td>".to_owned()),
            Some(reason) => (
                " class=\"failed\"",
                format!("<td class=\"down\">✗ failed: {reason}</td>"),
            ),
        };
        let _ = writeln!(
            html,
            "<tr{row_class}><td>{}</td><td>{}</td><td><code>{}</code></td>{result}<td>{:.3} ms</td>\
             <td><a href=\"/logs?id={}\">log</a></td></tr>",
            ago(now, record.finished_unix),
            escape(&record.module),
            record.target.as_ref().map_or_else(
                || "(no target)".to_owned(),
                |target| escape(&target.to_string())
            ),
            record.duration * 1000.0,
            record.id
        );
    }
    html.push_str("</table>\n");
}

fn history_link(page: usize) -> String {
    if page == 1 {
        "/".to_owned()
    } else {
        format!("/?history_page={page}")
    }
}

/// `GET /logs?id=N`.
pub(super) fn log(app: &App, request: &Request<Incoming>) -> HttpResponse {
    let id = Query::parse(request.uri().query()).ok().and_then(|query| {
        query
            .single("id")
            .ok()
            .flatten()
            .and_then(|id| id.parse::<u64>().ok())
    });
    let Some(id) = id else {
        return text(
            StatusCode::BAD_REQUEST,
            "pass id=N, a number from the landing page\n",
        );
    };
    match app.history.get(id) {
        Some(record) => text(StatusCode::OK, &record.log()),
        None => text(
            StatusCode::NOT_FOUND,
            &format!(
                "no probe log with id {id}; only the last --history.limit probes are kept, \
                 within {} MiB\n",
                MAX_MEMORY >> 20
            ),
        ),
    }
}

fn ago(now: f64, then: f64) -> String {
    format!("{:.1} s ago", (now - then).max(0.0))
}

/// Escapes text for HTML element content and quoted attribute values.
fn escape(text: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }
}
