//! synack_exporter: half-open TCP probes for Prometheus.
//!
//! A half-open probe sends SYN, reads the SYN-ACK and answers with RST.
//! The port is proven to listen, the application behind it never sees a
//! connection, and no TIME_WAIT is left behind. This crate holds the
//! prober, the config, the metrics and the HTTP server of the
//! `synack_exporter` binary, and a small API for Rust programs that want
//! the probe without the server:
//!
//! ```no_run
//! use synack_exporter::{check, Module, ProberKind};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let outcome = check("127.0.0.1:5432", &Module::new(ProberKind::TcpHalfopen)).await?;
//! match outcome.failure {
//!     None => println!("open, SYN-ACK after {:?}", outcome.handshake_time),
//!     Some(failure) => println!("down: {failure}"),
//! }
//! # Ok(()) }
//! ```
//!
//! Data flows one way: [`config`] → [`prober`] → [`Outcome`] → [`metrics`].
//! The [`http`] layer parses requests into targets and modules and renders
//! outcomes; it decides nothing about probing.

#![deny(unsafe_code)]

mod app;
mod clock;
mod coalesce;
mod config;
mod exporter;
mod hash;
mod health;
mod history;
mod http;
mod metrics;
mod modules;
mod prober;
mod runner;
mod scheduler;
#[allow(unsafe_code)] // the one module allowed to; each block says why it is sound
mod sys;
mod target;
mod task;
mod trace;

pub use config::{ConfigError, IpProtocol, Module, ProberKind, PromDuration, TcpOptions};
pub use exporter::{Exporter, ExporterBuilder};
pub use http::ListenAddress;
pub use prober::{Failure, Outcome, Reason};
pub use scheduler::Shard;
pub use target::{Target, TargetError};

/// Probes `target` (`host:port`) once with `module`, within its timeout.
///
/// Names are resolved as the exporter does (`/etc/hosts`, then the name
/// servers of `/etc/resolv.conf`, answers cached for their TTL), with a
/// resolver shared by the calls made on one tokio runtime and built on the
/// first of them, which reads those two files.
///
/// # Errors
/// A [`TargetError`] when `target` is not a valid `host:port`. A port that
/// is down is not an error: it is an [`Outcome`] with a failure.
pub async fn check(target: &str, module: &Module) -> Result<Outcome, TargetError> {
    let target = Target::parse(target)?;
    let budget = prober::Budget::new(tokio::time::Instant::now(), module.timeout.0);
    let resolver = prober::resolve::for_check();
    Ok(prober::run(
        module,
        &target,
        &resolver,
        budget,
        &mut trace::Trace::disabled(),
    )
    .await)
}
