//! `GET /health/<group>`: 200 `OK` when every member accepts a handshake,
//! 503 with one `target reason` line per failing member otherwise, 404 for
//! an unknown group. HEAD gets the same status without a body.

use super::{HttpResponse, text};
use crate::app::App;
use crate::target::Target;
use hyper::StatusCode;
use std::fmt::Write as _;

pub(super) async fn handle(app: &App, name: &str) -> HttpResponse {
    let config = app.config();
    let Some(group) = config.groups.get(name) else {
        let known: Vec<&str> = config.groups.keys().map(|group| group.0.as_str()).collect();
        let known = if known.is_empty() {
            "none are configured".to_owned()
        } else {
            known.join(", ")
        };
        return text(
            StatusCode::NOT_FOUND,
            &format!("no group {name:?}; groups: {known}\n"),
        );
    };
    let module_name = &group.module.value;
    let Some(module) = config.modules.get(module_name) else {
        // Config validation rules this out; answer rather than panic.
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("group {name:?} names unknown module {module_name:?}\n"),
        );
    };
    let members: Vec<Target> = group
        .targets
        .iter()
        .map(|member| member.0.clone())
        .collect();
    let report = app
        .groups
        .check(
            name,
            module_name,
            module,
            &members,
            group.min_interval.0,
            &app.runner,
        )
        .await;
    if report.all_up() {
        return text(StatusCode::OK, "OK\n");
    }
    let mut body = String::new();
    for (member, failure) in &report.failing {
        let _ = writeln!(body, "{member} {}", failure.reason);
    }
    text(StatusCode::SERVICE_UNAVAILABLE, &body)
}
