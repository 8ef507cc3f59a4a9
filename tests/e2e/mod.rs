//! Support for tests/e2e_prometheus.rs: the configs it derives from the
//! examples, the processes and loopback ports it runs, the dashboard's
//! queries, and a minimal HTTP client.

pub mod configs;
pub mod dashboard;
pub mod http;
pub mod processes;
