//! The integration tests in one binary: one link and one run instead of one
//! for each file. Each module is one area; the helpers they share are in
//! `tests/common/`.
//!
//! Elsewhere: the network-namespace tests (`tests/netns/`), the end-to-end
//! test with a real Prometheus and Alertmanager (`tests/e2e/`), the
//! deployment files (`tests/deploy/`), and `tests/slow_metrics_readers.rs`,
//! which reads this process's own resident size and so must be alone in
//! its process.

#[path = "../common/mod.rs"]
mod common;

mod abuse;
mod blackbox_yml;
mod checker;
mod cli;
mod dns;
mod expect_port;
mod health_checker;
mod history_memory;
mod http_api;
mod http_errors;
mod login_flood;
mod openmetrics;
mod overload;
mod parsers_never_panic;
mod probe_attempts;
mod probe_exec;
mod probe_tcp;
mod readme_snippets;
mod reload;
mod scheduler;
mod target_policy;
mod transitions;
mod web_config;
