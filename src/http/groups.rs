//! `GET /health/<group>`: 200 `OK` when every member passes its check,
//! 503 with one `module target reason` line per failing member otherwise, 404 for
//! an unknown group. HEAD gets the same status without a body. What a
//! group's answer is, and when it is reused, is [`crate::groups`]'s job;
//! this only writes it.
//!
//! In the health-checker mode every request gets [`health_checker`]'s
//! answer instead: the same group answer in gruntwork health-checker's
//! words.

#![forbid(unsafe_code)]

use super::response::{HttpResponse, text};
use crate::app::App;
use crate::config::HEALTH_CHECKER_GROUP;
use crate::groups::{GroupAnswer, GroupReport};
use hyper::StatusCode;
use std::fmt::Write as _;

/// The first line of health-checker's answer when a check fails.
const HEALTH_CHECKER_FAILED: &str = "At least one health check failed";

/// The answer to every request in the health-checker mode: 200 `OK`, or
/// 504 `At least one health check failed` and a line per failing check,
/// as health-checker answers (it says only the first line).
pub(super) async fn health_checker(app: &App) -> HttpResponse {
    let mut body = format!("{HEALTH_CHECKER_FAILED}\n");
    match answer(app, HEALTH_CHECKER_GROUP).await {
        GroupAnswer::Checked(report) if report.all_up() => return text(StatusCode::OK, "OK"),
        GroupAnswer::Checked(report) => write_failing(&mut body, &report),
        // The config is built from the flags, with this group and its
        // modules: neither can be missing.
        GroupAnswer::Unknown(_) | GroupAnswer::UnknownModule(_) | GroupAnswer::Interrupted => {
            body.push_str("the checks could not run (a bug)\n");
        }
    }
    text(StatusCode::GATEWAY_TIMEOUT, &body)
}

pub(super) async fn handle(app: &App, name: &str) -> HttpResponse {
    match answer(app, name).await {
        GroupAnswer::Unknown(known) => {
            let known = if known.is_empty() {
                "none are configured".to_owned()
            } else {
                known.join(", ")
            };
            text(
                StatusCode::NOT_FOUND,
                &format!("no group {name:?}; groups: {known}\n"),
            )
        }
        GroupAnswer::UnknownModule(module) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("group {name:?} names unknown module {module:?}\n"),
        ),
        GroupAnswer::Interrupted => text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("group {name:?} was changed by reloads while it was checked; ask again\n"),
        ),
        GroupAnswer::Checked(report) if report.all_up() => text(StatusCode::OK, "OK\n"),
        GroupAnswer::Checked(report) => {
            let mut body = String::new();
            write_failing(&mut body, &report);
            text(StatusCode::SERVICE_UNAVAILABLE, &body)
        }
    }
}

/// The answer for group `name` of the config in force.
async fn answer(app: &App, name: &str) -> GroupAnswer {
    let in_force = app.in_force();
    app.groups
        .answer(
            name,
            &in_force.config,
            &in_force.modules,
            app.checker.runner(),
        )
        .await
}

/// A line per failing member of `report`.
fn write_failing(body: &mut String, report: &GroupReport) {
    for member in &report.failing {
        let _ = writeln!(body, "{member}");
    }
}
