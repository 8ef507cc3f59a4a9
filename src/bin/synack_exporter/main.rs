//! The `synack_exporter` binary: flags, logging, wiring and signals.
//! Everything else lives in the library, reached through its public API.
#![forbid(unsafe_code)]

mod flags;
mod listen;
mod logging;

use flags::{Flags, HealthCheckerFlags, Mode, go_style_flags};
use listen::ListenAddress;

use logging::LogFormat as LineFormat;

use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;
use synack_exporter::{BuildError, Exporter, ExporterBuilder};
use tokio::signal::unix::{Signal, SignalKind, signal};

fn main() -> ExitCode {
    // Every flag, the listen address included, is checked here, so
    // --config.check refuses what start-up would refuse.
    let flags = Flags::parse_from(go_style_flags(std::env::args_os().collect()));
    if let Some(Mode::HealthChecker(checker)) = flags.mode {
        return health_checker(&checker);
    }
    flags.check_listen_addresses();
    let builder = flags.exporter();
    if flags.config_check {
        return check_config(&builder);
    }
    logging::init(flags.log_level.into(), flags.log_format.into());
    serve(builder, &flags.listen_address, flags.realtime_priority)
}

/// Runs the exporter `builder` describes on `listen` until a signal
/// stops it, on a runtime of its own; see [`run`].
fn serve(builder: ExporterBuilder, listen: &[ListenAddress], realtime_priority: bool) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(err = %error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(builder, listen, realtime_priority));
    // Do not wait long for anything still running, such as a slow scrape.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// `synack_exporter health-checker [FLAGS]`: health-checker's checks
/// served by the group machinery, on `--listener`. Without any flag, the
/// help, as health-checker does.
fn health_checker(flags: &HealthCheckerFlags) -> ExitCode {
    // The program name and the subcommand: nothing else was given. Asking
    // clap for the help prints it and exits 0.
    if std::env::args_os().len() <= 2 {
        Flags::parse_from(["synack_exporter", "health-checker", "--help"]);
    }
    let checks = flags.checks();
    if checks.ports.is_empty() && checks.scripts.is_empty() {
        eprintln!("error: Missing required parameter, one of --port / --script required");
        return ExitCode::FAILURE;
    }
    logging::init(flags.log_level.into(), LineFormat::Logfmt);
    let builder = Exporter::builder().health_checker(&checks);
    serve(builder, std::slice::from_ref(&flags.listener), false)
}

/// `--config.check`: "ok" on stdout, or the located error on stderr.
/// Modules left out (of blackbox_exporter's other probers) are listed
/// on stderr first, and the check still passes: the exporter would start.
fn check_config(builder: &ExporterBuilder) -> ExitCode {
    match builder.check_config_with_warnings() {
        Ok(warnings) => {
            for warning in warnings {
                eprintln!("warning: {warning}");
            }
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    builder: ExporterBuilder,
    listen_addresses: &[ListenAddress],
    realtime_priority: bool,
) -> ExitCode {
    // Handlers come first: a SIGHUP or SIGTERM sent while the config loads
    // or right after the address is announced must not meet the default
    // action, which kills the process.
    // Two listeners of SIGHUP, each told of every one: one per reload.
    let (hangups, web_hangups, terms, interrupts) = match (
        signal(SignalKind::hangup()),
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(hangups), Ok(web_hangups), Ok(terms), Ok(interrupts)) => {
            (hangups, web_hangups, terms, interrupts)
        }
        _ => {
            tracing::error!("cannot install the signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let exporter = match builder.build() {
        Ok(exporter) => exporter,
        Err(BuildError::Config(error)) => {
            tracing::error!(
                err = %error,
                "cannot load the config; fix it and check it with --config.check"
            );
            return ExitCode::FAILURE;
        }
        Err(error) => {
            tracing::error!(
                err = %error,
                "cannot start; raise the process's thread limit (ulimit -u, systemd's TasksMax)"
            );
            return ExitCode::FAILURE;
        }
    };
    if realtime_priority && let Err(error) = exporter.make_probe_thread_realtime().await {
        tracing::error!(
            err = %error,
            "cannot give the probe thread real-time priority: allow it with an RLIMIT_RTPRIO of \
             at least 1 (systemd: LimitRTPRIO=1 and RestrictRealtime=no) or CAP_SYS_NICE, \
             or drop --probe.realtime-priority"
        );
        return ExitCode::FAILURE;
    }
    let mut listeners = Vec::with_capacity(listen_addresses.len());
    for listen_address in listen_addresses {
        match listen_address.bind() {
            Ok(listener) => listeners.push(listener),
            Err(error) => {
                tracing::error!(
                    address = %listen_address,
                    err = %error,
                    "cannot listen; {}",
                    listen_hint(&error)
                );
                return ExitCode::FAILURE;
            }
        }
    }
    tokio::spawn(reload_on_sighup(exporter.clone(), hangups));
    tokio::spawn(reload_web_config_on_sighup(exporter.clone(), web_hangups));
    exporter
        .serve_all(listeners, shutdown_signal(terms, interrupts))
        .await;
    tracing::info!("shutting down");
    ExitCode::SUCCESS
}

/// What to do about a failed bind.
fn listen_hint(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            "another process uses the port: stop it or pick another port with --web.listen-address"
        }
        std::io::ErrorKind::PermissionDenied => {
            "ports below 1024 need privileges: pick a port such as :9215"
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "the address is not one of this host's: use one it has, or :PORT for all"
        }
        _ => "check --web.listen-address",
    }
}

/// Reloads the main config on each SIGHUP. The web config has a loop of
/// its own, [`reload_web_config_on_sighup`], so that neither reload waits
/// for the other: a web reload stuck on a certificate file must not stop
/// SIGHUP from reloading the main config, nor the other way round.
async fn reload_on_sighup(exporter: Exporter, mut hangups: Signal) {
    while hangups.recv().await.is_some() {
        match exporter.reload().await {
            Ok(()) => {
                tracing::info!(source = %exporter.config_source(), "config reloaded on SIGHUP")
            }
            Err(error) => {
                tracing::error!(err = %error, "config reload on SIGHUP failed; keeping the old config");
            }
        }
    }
}

/// Reloads the `--web.config.file` on each SIGHUP (without one, does
/// nothing), on its own; see [`reload_on_sighup`].
async fn reload_web_config_on_sighup(exporter: Exporter, mut hangups: Signal) {
    while hangups.recv().await.is_some() {
        // Logged and counted by the reload itself.
        let _ = exporter.reload_web_config().await;
    }
}

async fn shutdown_signal(mut terms: Signal, mut interrupts: Signal) {
    tokio::select! {
        _ = terms.recv() => {},
        _ = interrupts.recv() => {},
    }
}
