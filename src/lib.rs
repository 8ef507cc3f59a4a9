//! synack_exporter: half-open TCP probes for Prometheus.
//!
//! A half-open probe sends SYN, reads the SYN-ACK and answers with RST.
//! The port is proven to listen, the application behind it never sees a
//! connection, and no TIME_WAIT is left behind. This crate holds the
//! prober, the config, the metrics and the HTTP server of the
//! `synack_exporter` binary, and a small API: [`check`] for Rust programs
//! that want one probe without the server, [`Checker`] for those that
//! check many targets with the exporter's probe thread and limits, and
//! [`Exporter`] for those that want to run the server.
//!
//! ```no_run
//! use synack_exporter::{check, Module};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let outcome = check("127.0.0.1:5432", &Module::tcp_halfopen()).await?;
//! match (&outcome.failure, outcome.handshake_time()) {
//!     (None, Some(handshake)) => println!("open, SYN-ACK after {handshake:?}"),
//!     (None, None) => println!("open"),
//!     (Some(failure), _) => println!("down: {failure}"),
//! }
//! # Ok(()) }
//! ```
//!
//! # Inside
//!
//! Data flows one way: config → modules → probe → outcome → observers.
//! The crate's modules are layered in that order, and a module uses only
//! modules of lower layers (a test reads the sources and enforces it):
//!
//! | layer | modules | job |
//! |---|---|---|
//! | 0 | `clock`, `hash`, `histogram`, `sys`, `task`, `coalesce`, `episodes` | tools with no knowledge of probing; `sys` holds every `unsafe` block |
//! | 1 | `target`, `settings` | what to probe: `host:port`; the exporter's settings and their defaults |
//! | 2 | `config`, `steplog` | the YAML file, validated; the steps a probe records |
//! | 3 | `prober` | one probe: a module and a target in, an [`Outcome`] out |
//! | 4 | `modules` | the modules in force, each with its result counters |
//! | 5 | `runner` | probes under the shared rules: in-flight and exec limits, deadline, probe and exec threads |
//! | 6 | `checker`, `scheduler`, `groups`, `history` | who asks for probes ([`Checker`] owns the runner and its threads), and what they keep of the outcomes |
//! | 7 | `metrics` | the observers: read what the layers below keep, write the exposition |
//! | 8 | `web` | the `--web.config.file`: its format and TLS, the gate (rate limit, basic auth) that lets a request through or refuses it, the config in force and its reloads |
//! | 9 | `app` | the state of a running exporter, and reloads |
//! | 10 | `http` | parses requests, renders answers; decides nothing about probing |
//! | 11 | `exporter` | the public entry point |
//!
//! The layers below `metrics` report into state they own (atomic
//! counters, each target's state, the lag histogram); the observers read
//! it at scrape time. The only lock a probe and a scrape share is a
//! scheduled target's own, which a scrape holds while it writes that one
//! target's lines.

#![deny(unsafe_code)]
#![warn(unreachable_pub)] // `pub` means the public API: everything else says `pub(crate)`

mod app;
mod checker;
mod clock;
mod coalesce;
mod config;
mod episodes;
mod exporter;
mod groups;
mod hash;
mod histogram;
mod history;
mod http;
mod metrics;
mod modules;
mod prober;
mod runner;
mod scheduler;
pub mod settings;
mod steplog;
#[allow(unsafe_code)] // the one module allowed to; each block says why it is sound
mod sys;
mod target;
mod task;
mod web;

pub use app::BuildError;
pub use checker::{Checker, CheckerBuilder};
pub use config::{
    ConfigError, Engine, ExecOptions, Expect, ExpectLabel, ExpectPort, HealthChecks, IpAddresses,
    IpAddressesSuccess, IpProtocol, MAX_ADDRESSES, Module, Prober, ProberKind, PromDuration,
    QueryStep, TargetPolicy, TcpOptions, TcpProbe, TlsOptions, TlsVersion, Unsupported,
};
pub use exporter::{Exporter, ExporterBuilder};
pub use prober::{
    AddressOutcome, CertFacts, Detail, ExecDetail, Failure, HandshakeStats, IcmpError, Outcome,
    PortAnswer, Reason, STDERR_LINE_BYTES, SessionDetail, TcpDetail, TlsFacts, Trace, TraceHop,
};
pub use target::{Host, Target, TargetError};

/// Probes `target` (`host:port`) once with `module`, within its timeout.
///
/// The one-shot form of [`Checker::check`], for a few checks: it starts
/// no thread. The probe runs in the calling task, as the exporter's
/// probes do on its probe thread, but under none of the exporter's rules:
/// there is no in-flight limit (each call holds one socket while it
/// runs), no probe thread that keeps other work from delaying the
/// half-open close past the kernel's delayed ACK (about 200 ms; keep the
/// calling runtime free of long blocking work), and no counters. A
/// program that checks many targets, or the same ones again and again,
/// wants a [`Checker`]. A `Checker` or an [`Exporter`] in the same
/// process shares nothing with it, not even the resolver's cache.
///
/// An `exec` module's command runs as the exporter runs it (minimal
/// environment, own process group, killed at the deadline), started from
/// the calling task, with no limit on how many run at once.
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
    let budget = prober::Budget::new(tokio::time::Instant::now(), module.timeout());
    // A library caller has no /metrics: the guard's counts are dropped;
    // the process groups hold only this call's command, whose guard kills
    // its group when it is done.
    let context = prober::Context::new(prober::resolve::for_check());
    Ok(prober::run(
        module,
        Some(&target),
        &context,
        budget,
        &mut prober::StepLog::disabled(),
    )
    .await)
}

#[cfg(test)]
mod layering {
    //! Enforces the table in the crate docs.

    use std::path::Path;

    /// Each top-level module and its layer.
    const LAYERS: [(&str, u8); 25] = [
        ("clock", 0),
        ("hash", 0),
        ("histogram", 0),
        ("sys", 0),
        ("task", 0),
        ("steplog", 2),
        ("coalesce", 0),
        ("episodes", 0),
        ("target", 1),
        ("settings", 1),
        ("config", 2),
        ("prober", 3),
        ("modules", 4),
        ("runner", 5),
        ("checker", 6),
        ("scheduler", 6),
        ("groups", 6),
        ("history", 6),
        ("metrics", 7),
        ("web", 8),
        ("app", 9),
        ("http", 10),
        ("exporter", 11),
        // The crate root, and the binary (src/bin/), which reaches the
        // library only through its public API.
        ("lib", 12),
        ("bin", 12),
    ];

    fn layer(module: &str) -> u8 {
        LAYERS
            .iter()
            .find(|(name, _)| *name == module)
            .unwrap_or_else(|| panic!("module {module} is not in the layer table"))
            .1
    }

    /// Every `.rs` file under `dir`, with the top-level module it belongs to.
    fn sources(dir: &Path, top: Option<&str>, out: &mut Vec<(String, std::path::PathBuf)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let module = top.map_or_else(|| stem.clone(), str::to_owned);
            if path.is_dir() {
                sources(&path, Some(&module), out);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                out.push((module, path));
            }
        }
    }

    fn all_sources() -> Vec<(String, std::path::PathBuf)> {
        let mut files = Vec::new();
        sources(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            None,
            &mut files,
        );
        assert!(files.len() > 20, "found only {files:?}");
        files
    }

    #[test]
    fn modules_use_only_lower_layers() {
        let mut violations = Vec::new();
        for (module, path) in all_sources() {
            let text = std::fs::read_to_string(&path).unwrap();
            let directly_under_src = path.parent().is_some_and(|dir| dir.ends_with("src"));
            for (number, line) in text.lines().enumerate() {
                let code: String = line
                    .split("//")
                    .next()
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect();
                // Ways around `crate::` paths, which this test reads; the
                // needles are built so that this code does not contain them.
                let parent = ["super", "::"].concat();
                let around = code.contains(&[parent.as_str(), "super"].concat())
                    || code.contains(&["crate", "as"].concat())
                    || (directly_under_src
                        && code.contains(&parent)
                        && !code.contains(&[parent.as_str(), "*"].concat()));
                if around {
                    violations.push(format!(
                        "{}:{}: reach other modules by `crate::` paths, which this test checks",
                        path.display(),
                        number + 1
                    ));
                }
                for rest in code.split("crate::").skip(1) {
                    let used: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if used.is_empty() {
                        if rest.starts_with('{') {
                            violations.push(format!(
                                "{}:{}: import each module with its own `use` line, which this test can read",
                                path.display(),
                                number + 1
                            ));
                        }
                        continue;
                    }
                    if used != module && layer(&used) >= layer(&module) {
                        violations.push(format!(
                            "{}:{}: {module} (layer {}) uses {used} (layer {})",
                            path.display(),
                            number + 1,
                            layer(&module),
                            layer(&used)
                        ));
                    }
                }
            }
        }
        assert!(violations.is_empty(), "{}", violations.join("\n"));
    }

    #[test]
    fn unsafe_code_is_forbidden_everywhere_but_sys() {
        for (module, path) in all_sources() {
            let text = std::fs::read_to_string(&path).unwrap();
            let forbids = text.contains("#![forbid(unsafe_code)]");
            match (module.as_str(), path.file_stem().unwrap().to_str().unwrap()) {
                ("sys", _) => assert!(!forbids),
                ("lib", _) => assert!(text.contains("#![deny(unsafe_code)]")),
                _ => assert!(forbids, "{} lacks #![forbid(unsafe_code)]", path.display()),
            }
        }
    }
}
