//! Running the exporter from Rust: [`Exporter::builder`], then
//! [`Exporter::serve`]. The `synack_exporter` binary is this plus flags,
//! logging and signals.
//!
//! ```no_run
//! use synack_exporter::Exporter;
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let exporter = Exporter::builder().config_file("synack.yml").build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9215").await?;
//! exporter.serve(listener, std::future::pending()).await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

use crate::app::{App, BuildError};
use crate::config::{ConfigError, ConfigSource, HealthChecks};
use crate::settings::{Settings, Shard};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The settings of an exporter, before it starts. Every one has the
/// default of the binary's flag of the same name, a constant of
/// [`settings`](crate::settings).
#[derive(Clone, Debug)]
#[must_use]
pub struct ExporterBuilder {
    source: ConfigSource,
    settings: Settings,
}

impl ExporterBuilder {
    /// The most `/probe` requests [`history_limit`](Self::history_limit) may keep.
    pub const MAX_HISTORY_LIMIT: usize = crate::history::MAX_LIMIT as usize;

    /// The most memory the remembered `/probe` requests take together, in
    /// bytes (16 MiB, the allocator's slack included), whatever
    /// [`history_limit`](Self::history_limit) says and whatever the probes
    /// were: the oldest are dropped to make room.
    pub const MAX_HISTORY_BYTES: usize = crate::history::MAX_MEMORY;

    /// The most memory one remembered `/probe` request takes, in bytes
    /// (64 KiB): a longer step log is cut, with a line saying so.
    pub const MAX_HISTORY_RECORD_BYTES: usize = crate::history::MAX_RECORD_BYTES;

    /// What a usual remembered `/probe` request takes, in bytes: a
    /// successful half-open probe of an IP address.
    pub const USUAL_HISTORY_RECORD_BYTES: usize = crate::history::USUAL_RECORD_BYTES;

    /// The YAML config file (`--config.file`). Without one, the embedded
    /// default, with the built-in modules `tcp_halfopen` and `tcp_connect`.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.source = ConfigSource::File(path.into());
        self
    }

    /// A config given as text; `name` stands for the file in error messages.
    /// A reload parses the same text again.
    pub fn config_text(mut self, name: &str, yaml: &str) -> Self {
        self.source = ConfigSource::Text {
            name: name.to_owned(),
            yaml: yaml.to_owned(),
        };
        self
    }

    /// Subtracted from the scrape timeout Prometheus announces
    /// (`--timeout-offset`,
    /// [`DEFAULT_TIMEOUT_OFFSET`](crate::settings::DEFAULT_TIMEOUT_OFFSET)).
    pub fn timeout_offset(mut self, offset: Duration) -> Self {
        self.settings.timeout_offset = offset;
        self
    }

    /// Probes allowed at once (`--probe.max-in-flight`,
    /// [`DEFAULT_MAX_IN_FLIGHT`](crate::settings::DEFAULT_MAX_IN_FLIGHT)),
    /// lowered at start when the open file limit cannot hold that many
    /// sockets.
    pub fn max_in_flight(mut self, probes: usize) -> Self {
        self.settings.max_in_flight = probes.max(1);
        self
    }

    /// Commands of `exec` modules allowed to run at once
    /// (`--exec.max-concurrent`,
    /// [`DEFAULT_MAX_EXEC`](crate::settings::DEFAULT_MAX_EXEC)), within
    /// [`max_in_flight`](Self::max_in_flight).
    pub fn max_exec(mut self, commands: usize) -> Self {
        self.settings.max_exec = commands.max(1);
        self
    }

    /// Sessions allowed at once, `prober: tcp` probes with TLS or
    /// `query_response` (`--probe.max-sessions`,
    /// [`DEFAULT_MAX_SESSIONS`](crate::settings::DEFAULT_MAX_SESSIONS)),
    /// within [`max_in_flight`](Self::max_in_flight).
    pub fn max_sessions(mut self, sessions: usize) -> Self {
        self.settings.max_sessions = sessions.max(1);
        self
    }

    /// The source ports of the raw engine, the modules with `engine: raw`
    /// (`--probe.raw-source-ports`,
    /// [`DEFAULT_RAW_SOURCE_PORTS`](crate::settings::DEFAULT_RAW_SOURCE_PORTS)):
    /// one per raw probe in flight, held as probes need them.
    pub fn raw_source_ports(mut self, ports: std::ops::RangeInclusive<u16>) -> Self {
        self.settings.raw_source_ports = ports;
        self
    }

    /// Which part of the scheduled targets this instance probes
    /// (`--targets.shard`, [`DEFAULT_SHARD`](crate::settings::DEFAULT_SHARD):
    /// all of them).
    pub fn shard(mut self, shard: Shard) -> Self {
        self.settings.shard = shard;
        self
    }

    /// How many `/probe` requests the landing page and `/logs` remember
    /// (`--history.limit`,
    /// [`DEFAULT_HISTORY_LIMIT`](crate::settings::DEFAULT_HISTORY_LIMIT)),
    /// at most [`Self::MAX_HISTORY_LIMIT`], and within
    /// [`Self::MAX_HISTORY_BYTES`] in all.
    pub fn history_limit(mut self, records: usize) -> Self {
        self.settings.history_limit = records.min(Self::MAX_HISTORY_LIMIT);
        self
    }

    /// How long requests in flight may take to finish once the shutdown
    /// future given to [`Exporter::serve`] completes (`--web.shutdown-grace`,
    /// [`DEFAULT_SHUTDOWN_GRACE`](crate::settings::DEFAULT_SHUTDOWN_GRACE)).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.settings.shutdown_grace = grace;
        self
    }

    /// Name servers that replace those of `/etc/resolv.conf`
    /// (`--dns.server`); empty for resolv.conf's own.
    pub fn dns_servers(mut self, servers: Vec<SocketAddr>) -> Self {
        self.settings.dns_servers = servers;
        self
    }

    /// How long writing a response may make no progress before the
    /// connection is closed (`--web.write-timeout`,
    /// [`DEFAULT_WRITE_TIMEOUT`](crate::settings::DEFAULT_WRITE_TIMEOUT)).
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.settings.write_timeout = timeout;
        self
    }

    /// HTTP connections served at once (`--web.max-connections`,
    /// [`DEFAULT_MAX_CONNECTIONS`](crate::settings::DEFAULT_MAX_CONNECTIONS),
    /// at least 1). Past it the exporter stops accepting until some close.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.settings.max_connections = connections.max(1);
        self
    }

    /// Turns off `/config`, `/logs`, the landing page's history, the
    /// module and command lines shown by `debug=true`, and the error in a
    /// failed `/-/reload`'s answer (`--web.hide-config-and-logs`), for an
    /// exporter that strangers can reach without authentication.
    pub fn hide_config_and_logs(mut self, hide: bool) -> Self {
        self.settings.hide_config_and_logs = hide;
        self
    }

    /// The web config file (`--web.config.file`), in exporter-toolkit's
    /// format: TLS, client certificates, basic auth, response headers and
    /// a rate limit. Without one, plain HTTP open to all.
    pub fn web_config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.settings.web_config_file = Some(path.into());
        self
    }

    /// Writes every health transition of a scheduled target to `path`
    /// (`--events.file`), one JSON line each, besides the log line; the
    /// file is opened at [`build`](Self::build) (a regular file, created
    /// if absent) and rotated to `PATH.1` at 10 MiB.
    pub fn events_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.settings.events_file = Some(path.into());
        self
    }

    /// The health-checker mode (`synack_exporter health-checker`): the
    /// config is `checks` as modules and one group, and every request,
    /// whatever its path, gets that group's answer in gruntwork
    /// health-checker's words: 200 `OK`, or 504 `At least one health check
    /// failed` followed by a line per failing check. Nothing else is
    /// served. Replaces the config file or text given before.
    pub fn health_checker(mut self, checks: &HealthChecks) -> Self {
        self.source = ConfigSource::Built {
            name: "the health-checker flags".to_owned(),
            config: Box::new(checks.config()),
        };
        self.settings.health_checker = true;
        self
    }

    /// Loads and checks the config, and the web config if one is given,
    /// without starting anything.
    ///
    /// # Errors
    /// The config error, with file, line, column and field.
    pub fn check_config(&self) -> Result<(), ConfigError> {
        self.check_config_with_warnings().map(drop)
    }

    /// [`check_config`](Self::check_config), returning what the load
    /// reports without refusing the config (`--config.check` lists it):
    /// each module of a blackbox_exporter file that this exporter leaves
    /// out, located.
    ///
    /// # Errors
    /// The config error, with file, line, column and field.
    pub fn check_config_with_warnings(&self) -> Result<Vec<ConfigError>, ConfigError> {
        let config = self.source.load()?;
        if let Some(path) = &self.settings.web_config_file {
            crate::web::WebConfig::load(path)?;
        }
        Ok(config.warnings(&self.source.to_string()))
    }

    /// Loads the config and starts the probe thread, the DNS thread and
    /// the scheduler. Raises the process's soft open file limit to its
    /// hard limit first: every probe in flight holds a socket.
    ///
    /// # Errors
    /// [`BuildError::Config`] when the config or the web config does not
    /// load; [`BuildError::Threads`] when the operating system refuses to
    /// start a thread.
    pub fn build(self) -> Result<Exporter, BuildError> {
        match crate::sys::raise_nofile_limit() {
            Ok(limit) => tracing::debug!(limit, "open file limit"),
            Err(error) => tracing::warn!(err = %error, "cannot raise the open file limit"),
        }
        let app = App::start(self.source, self.settings)?;
        Ok(Exporter { app: Arc::new(app) })
    }
}

/// A running exporter: its config, probe thread and scheduler. Clones
/// share them.
#[derive(Clone, Debug)]
pub struct Exporter {
    app: Arc<App>,
}

impl Exporter {
    /// Settings at their defaults, with the embedded default config.
    pub fn builder() -> ExporterBuilder {
        ExporterBuilder {
            source: ConfigSource::Embedded,
            settings: Settings::default(),
        }
    }

    /// Serves HTTP on `listener` until `shutdown` completes, then lets
    /// requests in flight finish within the shutdown grace period; see
    /// [`serve_all`](Self::serve_all), also for the `exec` commands.
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        self.serve_all(vec![listener], shutdown).await;
    }

    /// Serves HTTP on every one of `listeners` (`--web.listen-address`
    /// given more than once) until `shutdown` completes, then lets
    /// requests in flight finish within the shutdown grace period. With
    /// no listener, waits for `shutdown` alone.
    ///
    /// Before it returns, it kills the process group of every `exec`
    /// command still running, and the exporter starts no command after
    /// that (an `exec` probe then fails as `local`): the process may exit
    /// as soon as this returns, and no command outlives it.
    pub async fn serve_all(&self, listeners: Vec<TcpListener>, shutdown: impl Future<Output = ()>) {
        for listener in &listeners {
            self.announce(listener);
        }
        crate::http::serve(listeners, Arc::clone(&self.app), shutdown).await;
        let killed = self.app.checker.runner().stop_commands();
        if killed > 0 {
            tracing::info!(
                commands = killed,
                "killed the process groups of exec commands still running"
            );
        }
    }

    /// Logs the address served, a URL a browser can open, and what is in force.
    fn announce(&self, listener: &TcpListener) {
        let Ok(local) = listener.local_addr() else {
            return;
        };
        if self.app.settings.health_checker {
            let in_force = self.app.in_force();
            let checks = in_force.config.groups.values().flat_map(|group| {
                group.members.iter().map(|member| match &member.target {
                    Some(target) => format!("{} {}", member.module.value, target.0),
                    None => member.module.value.clone(),
                })
            });
            tracing::info!(
                address = %local,
                mode = "health-checker",
                checks = %checks.collect::<Vec<_>>().join(", "),
                "synack_exporter listening; every path answers the checks"
            );
            return;
        }
        let web = self.app.web.as_ref().map(|web| web.current());
        let scheme = if web.as_ref().is_some_and(|web| web.tls.is_some()) {
            "https"
        } else {
            "http"
        };
        // A browser cannot open http://[::]:9215/; on every address, this
        // host's own name for itself is the one to offer.
        let reachable = if local.ip().is_unspecified() {
            format!("localhost:{}", local.port())
        } else {
            local.to_string()
        };
        tracing::info!(
            address = %local,
            url = %format_args!("{scheme}://{reachable}/"),
            example = %format_args!(
                "{scheme}://{reachable}/probe?target=127.0.0.1:{}&module=tcp_halfopen",
                local.port()
            ),
            config = %self.app.config_source(),
            web_config = %web.map_or_else(|| "none".to_owned(), |web| web.file.display().to_string()),
            modules = %self.app.in_force().config.module_names(),
            dns_servers = %self.app.checker.runner().resolver().servers(),
            "synack_exporter listening"
        );
    }

    /// Reads the config again, as `POST /-/reload` and SIGHUP do. On error
    /// the old config stays in force.
    ///
    /// # Errors
    /// The new config's error, or why the reload gave no result in time.
    pub async fn reload(&self) -> Result<(), ConfigError> {
        self.app.reload().await
    }

    /// Reads the `--web.config.file` again, as SIGHUP does (a change to
    /// the file or the files it names is seen on its own within seconds).
    /// On error the settings in force stay; the error is logged and
    /// `synack_exporter_web_config_last_reload_successful` drops to 0.
    /// Without a web config, does nothing.
    ///
    /// # Errors
    /// The new web config's error, naming the file and the field.
    pub async fn reload_web_config(&self) -> Result<(), ConfigError> {
        self.app.reload_web_config("asked for").await
    }

    /// Gives the probe thread real-time priority (`SCHED_RR` 1,
    /// `--probe.realtime-priority`), so that no ordinary thread can delay
    /// a half-open close past the delayed ACK.
    ///
    /// # Errors
    /// `EPERM` when neither `RLIMIT_RTPRIO` nor `CAP_SYS_NICE` allows it.
    pub async fn make_probe_thread_realtime(&self) -> std::io::Result<()> {
        self.app.checker.runner().make_probe_thread_realtime().await
    }

    /// Where the config comes from: its path, or a name for the others.
    #[must_use]
    pub fn config_source(&self) -> String {
        self.app.config_source().to_string()
    }
}
