//! `GET /health/<group>`: 200 `OK` when every member passes its check,
//! 503 with one `module target reason` line per failing member otherwise, 404 for
//! an unknown group. HEAD gets the same status without a body. What a
//! group's answer is, and when it is reused, is [`crate::health`]'s job;
//! this only writes it.

#![forbid(unsafe_code)]

use super::{HttpResponse, text};
use crate::app::App;
use crate::health::GroupAnswer;
use hyper::StatusCode;
use std::fmt::Write as _;

pub(super) async fn handle(app: &App, name: &str) -> HttpResponse {
    let in_force = app.in_force();
    let answer = app
        .groups
        .answer(name, &in_force.config, &in_force.modules, &app.runner)
        .await;
    match answer {
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
            for member in &report.failing {
                let _ = writeln!(body, "{member}");
            }
            text(StatusCode::SERVICE_UNAVAILABLE, &body)
        }
    }
}
