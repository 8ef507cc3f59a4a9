//! The `synack_exporter` binary: flags, logging, wiring and signals.
//! Everything else lives in the library.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use synack_exporter::app::{App, Settings};
use synack_exporter::config::ConfigSource;
use synack_exporter::scheduler::Shard;
use synack_exporter::{http, sys};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Prometheus exporter that checks TCP ports with half-open probes:
/// SYN, SYN-ACK, RST. The application behind the port never sees a connection.
#[derive(Debug, Parser)]
#[command(name = "synack_exporter", version)]
struct Flags {
    /// YAML config file. Without it, an embedded default with modules
    /// tcp_halfopen and tcp_connect (5s timeout each) is used.
    #[arg(long = "config.file", value_name = "FILE")]
    config_file: Option<PathBuf>,

    /// Validate the config, print "ok" or the error, and exit.
    #[arg(long = "config.check")]
    config_check: bool,

    /// Address to serve HTTP on; ":PORT" means all addresses.
    #[arg(
        long = "web.listen-address",
        value_name = "ADDRESS",
        default_value = ":9215"
    )]
    listen_address: String,

    /// Seconds subtracted from Prometheus' scrape timeout to get the probe timeout.
    #[arg(long = "timeout-offset", value_name = "SECONDS", default_value = "0.5", value_parser = parse_seconds)]
    timeout_offset: Duration,

    /// Only log messages of this level or above.
    #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info)]
    log_level: LogLevel,

    /// Log line format.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Logfmt)]
    log_format: LogFormat,

    /// Probes allowed at once; more wait within their own deadline, then fail as "local".
    #[arg(long = "probe.max-in-flight", value_name = "N", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_in_flight: u32,

    /// Probe only the scheduled targets whose stable hash mod n is i, so
    /// that n replicas split one target list without coordination.
    #[arg(long = "targets.shard", value_name = "i/n", default_value = "0/1")]
    shard: Shard,

    /// How many recent /probe requests the landing page lists with their logs.
    #[arg(long = "history.limit", value_name = "N", default_value_t = 100)]
    history_limit: usize,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Logfmt,
    Json,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .ok_or_else(|| format!("{text:?} is not a non-negative number of seconds"))
}

fn init_logging(level: LogLevel, format: LogFormat) {
    let filter = EnvFilter::new(match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    });
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Logfmt => registry
            .with(
                tracing_logfmt::builder()
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    let source = flags
        .config_file
        .clone()
        .map_or(ConfigSource::Embedded, ConfigSource::File);
    if flags.config_check {
        return match source.load() {
            Ok(_) => {
                println!("ok");
                ExitCode::SUCCESS
            }
            Err(error) => {
                println!("{error}");
                ExitCode::FAILURE
            }
        };
    }
    init_logging(flags.log_level, flags.log_format);
    match sys::raise_nofile_limit() {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(error) => tracing::warn!(%error, "cannot raise the open file limit"),
    }
    let settings = Settings {
        timeout_offset: flags.timeout_offset,
        max_in_flight: flags.max_in_flight as usize,
        shard: flags.shard,
        history_limit: flags.history_limit,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(source, settings, &flags.listen_address));
    // Do not wait for DNS lookups still running on blocking threads.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn run(source: ConfigSource, settings: Settings, listen_address: &str) -> ExitCode {
    // Handlers come first: a SIGHUP or SIGTERM sent while the config loads
    // or right after the address is announced must not meet the default
    // action, which kills the process.
    let (hangups, terms, interrupts) = match (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(hangups), Ok(terms), Ok(interrupts)) => (hangups, terms, interrupts),
        _ => {
            eprintln!("cannot install the signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let app = match App::start(source, settings) {
        Ok(app) => Arc::new(app),
        Err(error) => {
            tracing::error!(%error, "cannot load the config");
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match http::bind(listen_address) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, address = listen_address, "cannot listen");
            eprintln!("cannot listen on {listen_address}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener
        .local_addr()
        .map_or_else(|_| listen_address.to_owned(), |a| a.to_string());
    let modules: Vec<String> = app.config().modules.keys().cloned().collect();
    tracing::info!(address = %local, config = %app.config_source(), ?modules, "synack_exporter listening");
    eprintln!(
        "synack_exporter listening on http://{local}/ (try /probe?target=127.0.0.1:{}&module=tcp_halfopen)",
        listener.local_addr().map_or(9215, |a| a.port())
    );
    tokio::spawn(reload_on_sighup(Arc::clone(&app), hangups));
    http::serve(listener, app, shutdown_signal(terms, interrupts)).await;
    tracing::info!("shutting down");
    ExitCode::SUCCESS
}

async fn reload_on_sighup(app: Arc<App>, mut hangups: Signal) {
    while hangups.recv().await.is_some() {
        match app.reload() {
            Ok(()) => tracing::info!(source = %app.config_source(), "config reloaded on SIGHUP"),
            Err(error) => {
                tracing::error!(%error, "config reload on SIGHUP failed; keeping the old config");
            }
        }
    }
}

async fn shutdown_signal(mut terms: Signal, mut interrupts: Signal) {
    tokio::select! {
        _ = terms.recv() => {},
        _ = interrupts.recv() => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        Flags::command().debug_assert();
    }
}
