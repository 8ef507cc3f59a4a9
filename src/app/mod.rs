//! The state the HTTP handlers share: the config in force, the checker
//! that runs every probe, the scheduler, group checks, the probe history
//! and the exporter's metrics.
//!
//! A reload, from `POST /-/reload` or SIGHUP alike, goes through
//! [`App::reload`]: the file is read, parsed and applied on a blocking
//! thread, never on the async workers that answer `/-/healthy` and
//! `/probe`, and concurrent reloads coalesce into at most one run under
//! way and one after it (see [`crate::coalesce`]). The file itself is
//! read within the limits of [`Config::load`]: a FIFO or a device is
//! refused without opening it for a blocking read, and a file over
//! [`crate::config::MAX_CONFIG_BYTES`] without reading it.

#![forbid(unsafe_code)]

use crate::checker::Checker;
use crate::coalesce::{Coalescer, Unfinished};
use crate::config::{Config, ConfigError, ConfigSource};
use crate::episodes::Episodes;
use crate::groups::GroupChecker;
use crate::history::History;
use crate::metrics::exposition::{Format, Writer};
use crate::metrics::own::{ExporterView, ReloadStatus};
use crate::metrics::process::ProcessMetrics;
use crate::metrics::scheduled::ScheduledSeries;
use crate::modules::{Modules, ResultCounters};
use crate::scheduler::{EVENTS_FILE_MAX_BYTES, EventsFile, Scheduler, Transitions};
use crate::settings::Settings;
use crate::web::WebConfigState;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a reload request waits for its result. A config at the size
/// limit parses in a few seconds; a read that takes longer is stuck (a
/// hung network filesystem), and the request answers rather than hang.
pub(crate) const RELOAD_WAIT: Duration = Duration::from_secs(30);

/// The most connection slots kept from `/probe` requests for the quick
/// ones; see [`ProbeRequestSlots`].
const MAX_QUICK_RESERVE: usize = 64;

/// The connection slots that `/probe` requests may hold at once: all but
/// a quarter of them (at most [`MAX_QUICK_RESERVE`]), which stay for
/// requests answered at once (`/metrics`, `/-/healthy`, the landing
/// page...). A `/probe` holds its connection for up to its timeout; when
/// every connection held one, the accept queue stopped draining and a
/// scrape of `/metrics` waited in it behind them (7.7 s measured with
/// 1,500 `/probe` clients). A `/probe` that finds no slot is answered 503
/// at once, and its connection closes, so the queue keeps moving.
#[derive(Debug)]
pub(crate) struct ProbeRequestSlots {
    pub(crate) slots: Semaphore,
    /// How many there are.
    pub(crate) max: usize,
    /// When to log the refusals.
    pub(crate) refusing: Episodes,
}

impl ProbeRequestSlots {
    /// The share of `connections` slots that `/probe` requests may hold.
    fn new(connections: usize) -> Self {
        let max = connections
            .saturating_sub((connections / 4).min(MAX_QUICK_RESERVE))
            .max(1);
        Self {
            slots: Semaphore::new(max),
            max,
            refusing: Episodes::default(),
        }
    }
}

/// A config and its modules, put in force together, so that a request
/// never pairs one config's groups with another's modules.
#[derive(Debug)]
pub(crate) struct InForce {
    /// The config.
    pub(crate) config: Config,
    /// Its modules, with their counters.
    pub(crate) modules: Modules,
}

/// Shared state of a running exporter.
#[derive(Debug)]
pub(crate) struct App {
    source: ConfigSource,
    in_force: RwLock<Arc<InForce>>,
    /// Runs one reload at a time, so that SIGHUP and POST /-/reload at once
    /// cannot leave the reload metric describing another config than the
    /// one in force, and so that N requests never cause N parses.
    reloads: Arc<Coalescer<Result<(), ConfigError>>>,
    /// Runs every probe, from `/probe`, the scheduler and group checks,
    /// on its threads and within its limits.
    pub(crate) checker: Checker,
    /// Probes the configured `targets:`.
    pub(crate) scheduler: Scheduler,
    /// What `/metrics` writes of the scheduled targets.
    pub(crate) series: ScheduledSeries,
    /// Answers `/health/<group>`.
    pub(crate) groups: GroupChecker,
    /// The last `/probe` requests.
    pub(crate) history: History,
    /// Command-line settings.
    pub(crate) settings: Settings,
    /// `--web.max-connections` slots, shared by every listener.
    pub(crate) connection_slots: Arc<Semaphore>,
    /// How many: `--web.max-connections`, or fewer if the open file limit
    /// needs it.
    pub(crate) max_connections: usize,
    /// Of those, the ones `/probe` requests may hold.
    pub(crate) probe_requests: ProbeRequestSlots,
    /// Probe counters of every module ever loaded.
    results: ResultCounters,
    reload_status: ReloadStatus,
    process: ProcessMetrics,
    /// The `--web.config.file` in force, if one is given.
    pub(crate) web: Option<Arc<WebConfigState>>,
    /// The `--events.file` writer's thread; it ends when the scheduler,
    /// which holds its channel, is gone.
    _events_writer: Option<std::thread::JoinHandle<()>>,
}

/// `--probe.max-in-flight` and `--web.max-connections`, lowered if the
/// open file limit needs it.
fn limits_for(settings: &Settings) -> (usize, usize) {
    let Ok((nofile, _)) = crate::sys::nofile_limit() else {
        return (settings.max_in_flight, settings.max_connections);
    };
    let probes = crate::runner::probe_slots(settings.max_in_flight, nofile);
    if probes < settings.max_in_flight {
        tracing::warn!(
            max_in_flight = probes,
            open_file_limit = nofile,
            reserved = crate::runner::fd_reserve(nofile),
            "the open file limit is too low for --probe.max-in-flight; lowering it so that \
             HTTP keeps descriptors (raise the limit, e.g. LimitNOFILE=, to allow more)"
        );
    }
    let connections = crate::runner::connection_slots(settings.max_connections, nofile, probes);
    if connections < settings.max_connections {
        tracing::warn!(
            max_connections = connections,
            open_file_limit = nofile,
            max_in_flight = probes,
            "the open file limit is too low for --web.max-connections beside the probes' \
             sockets; lowering it so that accepting never runs out of descriptors (raise \
             the limit, e.g. LimitNOFILE=, to allow more)"
        );
    }
    (probes, connections)
}

/// Why an exporter could not start.
#[non_exhaustive]
#[derive(Debug)]
pub enum BuildError {
    /// The config or the web config did not load: fix the file.
    Config(ConfigError),
    /// The operating system refused a thread the exporter probes on: raise
    /// the process's thread limit (`ulimit -u`, systemd's `TasksMax`).
    Threads(std::io::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(error) => error.fmt(f),
            Self::Threads(error) => write!(f, "cannot start the probe threads: {error}"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Config(error) => Some(error),
            Self::Threads(error) => Some(error),
        }
    }
}

impl From<ConfigError> for BuildError {
    fn from(error: ConfigError) -> Self {
        Self::Config(error)
    }
}

impl App {
    /// Loads the config from `source`, builds the state around it and
    /// starts the scheduler on the probe thread.
    ///
    /// # Errors
    /// The config error when the first load fails: with no config in force
    /// there is nothing to serve; or the operating system's when it
    /// refuses to start the probe threads.
    pub(crate) fn start(source: ConfigSource, settings: Settings) -> Result<Self, BuildError> {
        let config = source.load()?;
        let web = match &settings.web_config_file {
            Some(path) => Some(Arc::new(WebConfigState::load(path.clone())?)),
            None => None,
        };
        let (probes, connections) = limits_for(&settings);
        let checker = Checker::builder()
            .max_in_flight(probes)
            .max_exec(settings.max_exec)
            .max_sessions(settings.max_sessions)
            .raw_source_ports(settings.raw_source_ports.clone())
            .dns_servers(settings.dns_servers.clone())
            .build()
            .map_err(BuildError::Threads)?;
        let (transitions, events_writer) = match &settings.events_file {
            None => (Transitions::default(), None),
            Some(path) => {
                let file = EventsFile::open(path, EVENTS_FILE_MAX_BYTES).map_err(|message| {
                    ConfigError::about_file(&path.display().to_string(), message)
                })?;
                let (sender, thread) = file.start().map_err(BuildError::Threads)?;
                (Transitions::with_file(sender), Some(thread))
            }
        };
        let app = Self {
            source,
            in_force: RwLock::new(Arc::new(InForce {
                config: Config::default(),
                modules: Modules::default(),
            })),
            reloads: Arc::default(),
            scheduler: Scheduler::new(Arc::clone(checker.runner()), settings.shard, transitions),
            series: ScheduledSeries::default(),
            checker,
            groups: GroupChecker::default(),
            history: History::new(if settings.hide_config_and_logs {
                0
            } else {
                settings.history_limit
            }),
            connection_slots: Arc::new(Semaphore::new(connections)),
            max_connections: connections,
            probe_requests: ProbeRequestSlots::new(connections),
            settings,
            results: ResultCounters::default(),
            reload_status: ReloadStatus::default(),
            process: ProcessMetrics::new(),
            web,
            _events_writer: events_writer,
        };
        app.put_in_force(config);
        Ok(app)
    }

    /// The config in force with its modules. Holding it keeps it alive
    /// across a reload.
    pub(crate) fn in_force(&self) -> Arc<InForce> {
        Arc::clone(&self.in_force.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Where the config comes from.
    pub(crate) fn config_source(&self) -> &ConfigSource {
        &self.source
    }

    /// The exporter's own series in `format`, without the closing `# EOF`.
    pub(crate) fn exporter_families(&self, format: Format) -> String {
        let view = ExporterView {
            probe_results: self.results.snapshot(),
            probes_denied: self.results.denied_snapshot(),
            in_flight: self.checker.runner().in_flight(),
            reload: &self.reload_status,
            schedule_lag: self.scheduler.schedule_lag().values(),
            half_open_closes: self.checker.runner().half_open_closes().values(),
            raw_engine: self.checker.runner().raw_engine(),
            // The list this scrape writes, which a reload publishes just
            // after the scheduler's own.
            scheduled_targets: self.series.len(),
            events_dropped: self.scheduler.transitions().dropped(),
            process: &self.process,
            web_config: self.web.as_ref().map(|web| (&web.status, &*web.logins)),
        };
        let mut text = String::with_capacity(4096);
        view.write(&mut Writer::new(&mut text, format));
        text
    }

    /// Re-reads the config on a blocking thread, coalesced with the other
    /// reloads under way. On error the old config stays in force and the
    /// reload metric drops to 0.
    ///
    /// # Errors
    /// The config error of the new file, or why no result came within
    /// [`RELOAD_WAIT`].
    pub(crate) async fn reload(self: &Arc<Self>) -> Result<(), ConfigError> {
        let app = Arc::clone(self);
        self.reloads
            .run(move || app.reload_now(), RELOAD_WAIT)
            .await
            .unwrap_or_else(|unfinished| {
                Err(unfinished_reload(
                    &self.source.to_string(),
                    unfinished,
                    &self.reload_status,
                    "synack_exporter_config_last_reload_successful",
                ))
            })
    }

    /// Re-reads the `--web.config.file`, if one is given, as
    /// [`Self::reload`] does the config: on a blocking thread, coalesced
    /// with the other reloads of it, and waiting at most [`RELOAD_WAIT`].
    /// On error the settings in force stay, and the reload metric drops
    /// to 0.
    ///
    /// # Errors
    /// The new web config's error, naming the file and the field, or why
    /// no result came within [`RELOAD_WAIT`].
    pub(crate) async fn reload_web_config(&self, why: &'static str) -> Result<(), ConfigError> {
        let Some(web) = &self.web else {
            return Ok(());
        };
        web.reload(why, RELOAD_WAIT)
            .await
            .unwrap_or_else(|unfinished| {
                Err(unfinished_reload(
                    &web.path().display().to_string(),
                    unfinished,
                    &web.status,
                    "synack_exporter_web_config_last_reload_successful",
                ))
            })
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
                self.reload_status.record(false);
                Err(error)
            }
        }
    }

    fn put_in_force(&self, config: Config) {
        let modules = Modules::load(&config, &self.results);
        if let Some(targets) = self.scheduler.apply(&config, &modules) {
            self.series.publish(targets);
        }
        let in_force = Arc::new(InForce { config, modules });
        *self
            .in_force
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::clone(&in_force);
        // After the swap: requests from now on see only the new groups, so
        // only one that read the old config before it can bring a gone
        // group back, and then only until the next reload.
        self.groups.forget_groups_not_in(&in_force.config);
        self.checker.runner().forget_tls_setups();
        self.reload_status.record(true);
    }
}

/// The error of a reload of `file` that gave no result: still running
/// after [`RELOAD_WAIT`] (it goes on, and `metric` will tell how it
/// ended), or panicked, which `status` records as a failure.
fn unfinished_reload(
    file: &str,
    unfinished: Unfinished,
    status: &ReloadStatus,
    metric: &str,
) -> ConfigError {
    let message = match unfinished {
        Unfinished::TimedOut => format!(
            "the reload did not finish within {}s (a slow or stuck read of the file?); it goes on, and {metric} will show how it ended",
            RELOAD_WAIT.as_secs()
        ),
        Unfinished::Panicked => {
            status.record(false);
            "the reload failed on an internal error (a bug; the log has the panic); the old config stays in force".to_owned()
        }
    };
    ConfigError::about_file(file, message)
}
