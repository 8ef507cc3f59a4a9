//! The `--web.config.file` in force, and its reloads.
//!
//! A reload comes from SIGHUP or from a change to the file or to one of
//! the files it names (a rotated certificate), which
//! [`WebConfigState::changed`] tells by their modification time, size and
//! inode. A reload that fails keeps the settings in force, logs why, and
//! sets `synack_exporter_web_config_last_reload_successful` to 0.

#![forbid(unsafe_code)]

use super::WebConfig;
use crate::coalesce::{Coalescer, Unfinished};
use crate::config::{ConfigError, Stamp, read_stamped, stamp};
use crate::metrics::own::{LoginCounts, ReloadStatus};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

/// The web config in force, where it comes from, and how its reloads went.
#[derive(Debug)]
pub(crate) struct WebConfigState {
    path: PathBuf,
    in_force: RwLock<Arc<WebConfig>>,
    /// The stamps of the watched files when they were last read.
    stamps: Mutex<Vec<Stamp>>,
    /// One reload at a time, coalesced: SIGHUP and a change seen at once
    /// must not put the older of two reads in force last, and must not
    /// queue one read per request behind a read that hangs.
    reloads: Arc<Coalescer<Result<(), ConfigError>>>,
    /// Whether the last load worked, for `/metrics`.
    pub(crate) status: ReloadStatus,
    /// What the basic-auth check did, for `/metrics`.
    pub(crate) logins: Arc<LoginCounts>,
}

impl WebConfigState {
    /// Loads the web config at `path`, blocking.
    ///
    /// # Errors
    /// Its error, naming the file and the field.
    pub(crate) fn load(path: PathBuf) -> Result<Self, ConfigError> {
        let (config, stamps) = read_stamped(std::slice::from_ref(&path), || {
            WebConfig::load(&path).map(|config| {
                let watched = config.watched.clone();
                (config, watched)
            })
        })?;
        log_loaded(&config);
        let status = ReloadStatus::default();
        status.record(true);
        Ok(Self {
            path,
            in_force: RwLock::new(Arc::new(config)),
            stamps: Mutex::new(stamps),
            reloads: Arc::default(),
            status,
            logins: Arc::default(),
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

    /// Reads the file again on a blocking thread, coalesced with the
    /// other reloads under way as the main config's are (see
    /// [`crate::coalesce`]). On success the new settings apply to new
    /// connections and requests; on error the old ones stay, and the
    /// error is logged and counted.
    ///
    /// A read that hangs (a file on a hung network filesystem) holds up
    /// no caller longer than `wait` (the app's
    /// `App::reload_web_config` says what such a caller is
    /// answered), and no one at all on the serving path: connections take
    /// the settings in force, which a reload only swaps once it has them.
    ///
    /// # Errors
    /// Why no result came within `wait`; within it, the new file's error.
    pub(crate) async fn reload(
        self: &Arc<Self>,
        why: &'static str,
        wait: Duration,
    ) -> Result<Result<(), ConfigError>, Unfinished> {
        let state = Arc::clone(self);
        let result = self.reloads.run(move || state.reload_now(why), wait).await;
        if result == Err(Unfinished::Panicked) {
            // Not tried again until a file changes once more.
            *self.stamps.lock().unwrap_or_else(PoisonError::into_inner) = self
                .current()
                .watched
                .iter()
                .map(|file| stamp(file))
                .collect();
        }
        result
    }

    /// The file it reads.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file and those it names, and puts them in force or logs
    /// why not. Blocking: only for a blocking thread.
    fn reload_now(&self, why: &'static str) -> Result<(), ConfigError> {
        // The files of the config in force, the config's own file among them.
        let in_force = self.current().watched.clone();
        let mut expected = in_force.clone();
        if !expected.contains(&self.path) {
            expected.insert(0, self.path.clone());
        }
        // For a read that fails: the files in force as they were before
        // it, so that a fix written during it is seen.
        let in_force_before: Vec<Stamp> = in_force.iter().map(|file| stamp(file)).collect();
        let loaded = read_stamped(&expected, || {
            WebConfig::load(&self.path).map(|config| {
                let watched = config.watched.clone();
                (config, watched)
            })
        });
        match loaded {
            Ok((config, stamps)) => {
                log_loaded(&config);
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
                *self.stamps.lock().unwrap_or_else(PoisonError::into_inner) = in_force_before;
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
    // Once per process: the setting cannot change what is served, so a
    // reload has nothing new to say about it.
    static HTTP2_NOTICE_GIVEN: AtomicBool = AtomicBool::new(false);
    if config.http2_asked && !HTTP2_NOTICE_GIVEN.swap(true, Ordering::Relaxed) {
        tracing::info!(
            "http_server_config.http2 is true (its default), but synack_exporter serves HTTP/1.1 \
             only, which Prometheus uses anyway; set http2: false to silence this"
        );
    }
}
