//! The deployment files users copy, checked in one test binary, one module
//! for each kind: the
//! Kubernetes manifests, the job names the alert rules select (with the
//! PromQL matcher scanner they need), the Prometheus and Alertmanager
//! examples checked by the real promtool and amtool, the Dockerfile, and
//! the systemd unit.

#[path = "../common/mod.rs"]
mod common;

pub mod dockerfile;
pub mod jobs;
pub mod kubernetes;
pub mod promql;
pub mod promtool;
pub mod systemd;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub const BINARY: &str = env!("CARGO_BIN_EXE_synack_exporter");
pub const CONFIG_DIR: &str = "/etc/synack_exporter";
pub const CONFIG_FILE_ARG: &str = "--config.file=/etc/synack_exporter/config.yml";
/// How long one command (the binary's `--config.check`, promtool, amtool,
/// systemd-analyze, cargo metadata) may run before it is killed.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(60);

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub fn read(relative: &str) -> String {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The non-comment lines of a Dockerfile or systemd unit, with backslash
/// continuations joined: `comment_markers` start a comment line.
pub fn logical_lines(text: &str, comment_markers: &[char]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if current.is_empty() && line.starts_with(comment_markers) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start.trim_end());
                current.push(' ');
            }
            None => {
                current.push_str(line);
                if !current.is_empty() {
                    lines.push(std::mem::take(&mut current));
                }
            }
        }
    }
    lines
}
