//! The state the HTTP handlers share: the config in force, the probe
//! runner and the exporter's metrics.

use crate::config::{Config, ConfigError, ConfigSource};
use crate::metrics::exporter::ExporterMetrics;
use crate::runner::ProbeRunner;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// Settings from the command line that the handlers need.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Subtracted from the scrape timeout that Prometheus announces.
    pub timeout_offset: Duration,
    /// How many probes may run at once.
    pub max_in_flight: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            timeout_offset: Duration::from_millis(500),
            max_in_flight: 4096,
        }
    }
}

/// Shared state of a running exporter.
#[derive(Debug)]
pub struct App {
    source: ConfigSource,
    config: RwLock<Arc<Config>>,
    /// Runs every probe.
    pub runner: ProbeRunner,
    /// Command-line settings.
    pub settings: Settings,
}

impl App {
    /// Loads the config from `source` and builds the state around it.
    ///
    /// # Errors
    /// The config error when the first load fails: with no config in force
    /// there is nothing to serve.
    pub fn start(source: ConfigSource, settings: Settings) -> Result<Self, ConfigError> {
        let config = source.load()?;
        let metrics = Arc::new(ExporterMetrics::new());
        declare_modules(&metrics, &config);
        metrics.record_reload(true);
        Ok(Self {
            source,
            config: RwLock::new(Arc::new(config)),
            runner: ProbeRunner::new(settings.max_in_flight, metrics),
            settings,
        })
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

    /// Re-reads the config. On error the old config stays in force and the
    /// reload metric drops to 0.
    ///
    /// # Errors
    /// The config error of the new file.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let loaded = self.source.load();
        self.metrics().record_reload(loaded.is_ok());
        let config = loaded?;
        declare_modules(self.metrics(), &config);
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        Ok(())
    }
}

fn declare_modules(metrics: &ExporterMetrics, config: &Config) {
    for name in config.modules.keys() {
        metrics.declare_module(name);
    }
}
