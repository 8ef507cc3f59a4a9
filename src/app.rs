//! The state the HTTP handlers share: the config in force, the probe
//! runner, the scheduler, group checks, the probe history and the
//! exporter's metrics.
//!
//! A reload, from `POST /-/reload` or SIGHUP alike, goes through
//! [`App::reload`]: the file is read, parsed and applied on a blocking
//! thread, never on the async workers that answer `/-/healthy` and
//! `/probe`, and concurrent reloads coalesce into at most one run under
//! way and one after it (see [`crate::coalesce`]). The file itself is
//! read within the limits of [`Config::load`]: a FIFO or a device is
//! refused without opening it for a blocking read, and a file over
//! [`crate::config::MAX_CONFIG_BYTES`] without reading it.

use crate::coalesce::{Coalescer, Unfinished};
use crate::config::{Config, ConfigError, ConfigSource};
use crate::health::GroupChecker;
use crate::history::History;
use crate::metrics::exporter::ExporterMetrics;
use crate::prober::Resolver;
use crate::runner::ProbeRunner;
use crate::scheduler::{Scheduler, Shard};
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// How long a reload request waits for its result. A config at the size
/// limit parses in a few seconds; a read that takes longer is stuck (a
/// hung network filesystem), and the request answers rather than hang.
pub const RELOAD_WAIT: Duration = Duration::from_secs(30);

/// Settings from the command line that the handlers need.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Subtracted from the scrape timeout that Prometheus announces.
    pub timeout_offset: Duration,
    /// How many probes may run at once.
    pub max_in_flight: usize,
    /// Which part of the scheduled targets this instance probes.
    pub shard: Shard,
    /// How many `/probe` requests the landing page remembers.
    pub history_limit: usize,
    /// How long requests in flight may take to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// Name servers that replace those of `/etc/resolv.conf`; empty for
    /// resolv.conf's own.
    pub dns_servers: Vec<SocketAddr>,
    /// How long a response write may make no progress before the
    /// connection is closed (`--web.write-timeout`).
    pub write_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            timeout_offset: Duration::from_millis(500),
            max_in_flight: 4096,
            shard: Shard::ALL,
            history_limit: 100,
            shutdown_grace: Duration::from_secs(5),
            dns_servers: Vec::new(),
            write_timeout: crate::http::DEFAULT_WRITE_TIMEOUT,
        }
    }
}

/// Shared state of a running exporter.
#[derive(Debug)]
pub struct App {
    source: ConfigSource,
    config: RwLock<Arc<Config>>,
    /// Runs one reload at a time, so that SIGHUP and POST /-/reload at once
    /// cannot leave the reload metric describing another config than the
    /// one in force, and so that N requests never cause N parses.
    reloads: Arc<Coalescer<Result<(), ConfigError>>>,
    /// Runs every probe, from `/probe`, the scheduler and group checks.
    pub runner: Arc<ProbeRunner>,
    /// Probes the configured `targets:`.
    pub scheduler: Scheduler,
    /// Answers `/health/<group>`.
    pub groups: GroupChecker,
    /// The last `/probe` requests.
    pub history: History,
    /// Command-line settings.
    pub settings: Settings,
}

/// `--probe.max-in-flight`, lowered if the open file limit needs it.
fn probe_slots_for(settings: &Settings) -> usize {
    let Ok((nofile, _)) = crate::sys::nofile_limit() else {
        return settings.max_in_flight;
    };
    let slots = crate::runner::probe_slots(settings.max_in_flight, nofile);
    if slots < settings.max_in_flight {
        tracing::warn!(
            max_in_flight = slots,
            open_file_limit = nofile,
            reserved = crate::runner::fd_reserve(nofile),
            "the open file limit is too low for --probe.max-in-flight; lowering it so that \
             HTTP keeps descriptors (raise the limit, e.g. LimitNOFILE=, to allow more)"
        );
    }
    slots
}

impl App {
    /// Loads the config from `source`, builds the state around it and
    /// starts the scheduler on the probe thread.
    ///
    /// # Errors
    /// The config error when the first load fails: with no config in force
    /// there is nothing to serve.
    pub fn start(source: ConfigSource, settings: Settings) -> Result<Self, ConfigError> {
        let config = source.load()?;
        let metrics = Arc::new(ExporterMetrics::new());
        let resolver = Resolver::from_system(&settings.dns_servers);
        let runner = Arc::new(ProbeRunner::with_resolver(
            probe_slots_for(&settings),
            metrics,
            resolver,
        ));
        let app = Self {
            source,
            config: RwLock::new(Arc::new(Config::default())),
            reloads: Arc::default(),
            scheduler: Scheduler::new(Arc::clone(&runner), settings.shard),
            runner,
            groups: GroupChecker::default(),
            history: History::new(settings.history_limit),
            settings,
        };
        app.put_in_force(config);
        Ok(app)
    }

    /// The config in force. Holding it keeps it alive across a reload.
    #[must_use]
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Where the config comes from.
    #[must_use]
    pub fn config_source(&self) -> &ConfigSource {
        &self.source
    }

    /// The exporter's own metrics.
    #[must_use]
    pub fn metrics(&self) -> &ExporterMetrics {
        self.runner.metrics()
    }

    /// Re-reads the config on a blocking thread, coalesced with the other
    /// reloads under way. On error the old config stays in force and the
    /// reload metric drops to 0.
    ///
    /// # Errors
    /// The config error of the new file, or why no result came within
    /// [`RELOAD_WAIT`].
    pub async fn reload(self: &Arc<Self>) -> Result<(), ConfigError> {
        let app = Arc::clone(self);
        match self
            .reloads
            .run(move || app.reload_now(), RELOAD_WAIT)
            .await
        {
            Ok(result) => result,
            Err(Unfinished::TimedOut) => Err(ConfigError::about_file(
                &self.source.to_string(),
                format!(
                    "the reload did not finish within {}s (a slow or stuck read of the file?); it goes on, and synack_exporter_config_last_reload_successful will show how it ended",
                    RELOAD_WAIT.as_secs()
                ),
            )),
            Err(Unfinished::Panicked) => {
                self.metrics().record_reload(false);
                Err(ConfigError::about_file(
                    &self.source.to_string(),
                    "the reload failed on an internal error (a bug; the log has the panic); the old config stays in force".to_owned(),
                ))
            }
        }
    }

    /// Reads, parses and applies the config, blocking: only for a
    /// blocking thread.
    fn reload_now(&self) -> Result<(), ConfigError> {
        match self.source.load() {
            Ok(config) => {
                self.put_in_force(config);
                Ok(())
            }
            Err(error) => {
                self.metrics().record_reload(false);
                Err(error)
            }
        }
    }

    fn put_in_force(&self, config: Config) {
        for name in config.modules.keys() {
            self.metrics().declare_module(name);
        }
        self.scheduler.apply(&config);
        self.metrics()
            .set_scheduled_targets(self.scheduler.targets().len());
        let config = Arc::new(config);
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&config);
        // After the swap: requests from now on see only the new groups, so
        // only one that read the old config before it can bring a gone
        // group back, and then only until the next reload.
        self.groups.forget_groups_not_in(&config);
        self.metrics().record_reload(true);
    }
}
