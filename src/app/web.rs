//! The `--web.config.file` in force, and its reloads.
//!
//! A reload comes from SIGHUP or from a change to the file or to one of
//! the files it names (a rotated certificate), which
//! [`WebConfigState::changed`] tells by their modification time, size and
//! inode. A reload that fails keeps the settings in force, logs why, and
//! sets `synack_exporter_web_config_last_reload_successful` to 0.

#![forbid(unsafe_code)]

use crate::config::ConfigError;
use crate::metrics::exporter::ReloadStatus;
use crate::webconfig::WebConfig;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

/// What tells that a file changed: its modification time, size and inode
/// (a rename over it, as Kubernetes and certbot do, changes the inode even
/// when the time is the same); `None` for a file that cannot be read.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len(), metadata.ino()))
}

/// The web config in force, where it comes from, and how its reloads went.
#[derive(Debug)]
pub(crate) struct WebConfigState {
    path: PathBuf,
    in_force: RwLock<Arc<WebConfig>>,
    /// The stamps of the watched files when they were last read.
    stamps: Mutex<Vec<Stamp>>,
    /// One reload at a time: SIGHUP and a change seen at once must not
    /// put the older of two reads in force last.
    reloading: tokio::sync::Mutex<()>,
    /// Whether the last load worked, for `/metrics`.
    pub(crate) status: ReloadStatus,
}

impl WebConfigState {
    /// Loads the web config at `path`, blocking.
    ///
    /// # Errors
    /// Its error, naming the file and the field.
    pub(crate) fn load(path: PathBuf) -> Result<Self, ConfigError> {
        let stamps_before = stamp(&path);
        let config = WebConfig::load(&path)?;
        log_loaded(&config);
        let mut stamps: Vec<Stamp> = config.watched.iter().map(|file| stamp(file)).collect();
        // The file as it was before the read, so that a change during the
        // read is seen by the next poll.
        stamps[0] = stamps_before;
        let status = ReloadStatus::default();
        status.record(true);
        Ok(Self {
            path,
            in_force: RwLock::new(Arc::new(config)),
            stamps: Mutex::new(stamps),
            reloading: tokio::sync::Mutex::new(()),
            status,
        })
    }

    /// The web config in force.
    pub(crate) fn current(&self) -> Arc<WebConfig> {
        Arc::clone(&self.in_force.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether a file of the config in force changed since it was read.
    pub(crate) fn changed(&self) -> bool {
        let current = self.current();
        let stamps = self.stamps.lock().unwrap_or_else(PoisonError::into_inner);
        current
            .watched
            .iter()
            .zip(stamps.iter())
            .any(|(file, seen)| stamp(file) != *seen)
    }

    /// Reads the file again on a blocking thread. On success the new
    /// settings apply to new connections and requests; on error the old
    /// ones stay, and the error is logged and counted.
    ///
    /// # Errors
    /// The new file's error.
    pub(crate) async fn reload(self: &Arc<Self>, why: &'static str) -> Result<(), ConfigError> {
        let _one_at_a_time = self.reloading.lock().await;
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let before = stamp(&path);
            WebConfig::load(&path).map(|config| (before, config))
        })
        .await
        .unwrap_or_else(|panic| {
            Err(ConfigError::about_file(
                &self.path.display().to_string(),
                format!("the reload failed on an internal error: {panic}"),
            ))
        });
        match loaded {
            Ok((before, config)) => {
                log_loaded(&config);
                let mut stamps: Vec<Stamp> =
                    config.watched.iter().map(|file| stamp(file)).collect();
                stamps[0] = before;
                *self.stamps.lock().unwrap_or_else(PoisonError::into_inner) = stamps;
                *self
                    .in_force
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
                self.status.record(true);
                tracing::info!(file = %self.path.display(), reason = why, "web config reloaded");
                Ok(())
            }
            Err(error) => {
                // Not read again until a file changes once more.
                let current = self.current();
                *self.stamps.lock().unwrap_or_else(PoisonError::into_inner) =
                    current.watched.iter().map(|file| stamp(file)).collect();
                self.status.record(false);
                tracing::error!(
                    err = %error,
                    reason = why,
                    "web config reload failed; keeping the settings in force"
                );
                Err(error)
            }
        }
    }
}

/// Says what a web config turns on, and what of it cannot be honoured.
fn log_loaded(config: &WebConfig) {
    tracing::info!(
        file = %config.file.display(),
        tls = config.tls.is_some(),
        basic_auth_users = config.users.len(),
        rate_limit = config.rate_limit.is_some(),
        headers = config.headers.len(),
        "web config loaded"
    );
    if config.http2_asked {
        tracing::info!(
            "http_server_config.http2 is true (its default), but synack_exporter serves HTTP/1.1 \
             only, which Prometheus uses anyway; set http2: false to silence this"
        );
    }
}
