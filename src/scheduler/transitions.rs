//! The log of transitions: each scheduled target's change from healthy to
//! unhealthy or back, after `rise` or `fall`, as HAProxy logs a server
//! going down and Envoy writes its health-check events.
//!
//! A change is written once, when the probe that completes it is taken
//! in: as a log line at `info`, into the last [`MAX_RECENT`] changes that
//! the landing page shows, and, with `--events.file`, handed to the
//! writer of the events file. The first probe of a target sets its state
//! without a transition (as `probe_state_changes_total` does not count
//! it): nothing changed, the exporter only learned where the target stands.
//!
//! **Bounded.** Each text of a transition is cut ([`MAX_TEXT_BYTES`] for
//! the target, module and labels, [`MAX_DETAIL_BYTES`] for the detail), so
//! the last [`MAX_RECENT`] take at most [`MAX_RECENT_BYTES`]. The events
//! file's writer runs on a thread of its own behind a channel of
//! [`EVENTS_QUEUE`] transitions: a disk that stalls never holds up a
//! probe; a transition that finds the channel full is not written to the
//! file, and counted in `synack_exporter_transition_events_dropped_total`
//! (the log line and the landing page still have it). The file grows to
//! [`EVENTS_FILE_MAX_BYTES`], then is renamed to `PATH.1` (replacing the
//! one before) and a new one started: at most twice that on disk.

#![forbid(unsafe_code)]

use super::Labels;
use crate::prober::Reason;
use crate::steplog::cut_text;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

/// How many transitions the landing page shows: the last 50.
pub(crate) const MAX_RECENT: usize = 50;

/// The most bytes of a transition's target, module and labels, each.
const MAX_TEXT_BYTES: usize = 512;

/// The most bytes of the detail of the probe that caused a transition.
const MAX_DETAIL_BYTES: usize = 1024;

/// What the last [`MAX_RECENT`] transitions take at most: their texts at
/// their limits, and the record that holds them.
pub(crate) const MAX_RECENT_BYTES: usize =
    MAX_RECENT * (3 * MAX_TEXT_BYTES + MAX_DETAIL_BYTES + size_of::<Transition>());

/// Transitions waiting for the events file's writer; more are dropped
/// and counted. A network outage that takes down 10 000 targets at once
/// fits, while the writer catches up.
pub(crate) const EVENTS_QUEUE: usize = 16_384;

/// The size at which the events file is rotated to `PATH.1`: 10 MiB,
/// some 40 000 transitions.
pub(crate) const EVENTS_FILE_MAX_BYTES: u64 = 10 << 20;

/// One change of a target's health state.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Transition {
    /// Unix time of the probe that caused it, seconds.
    pub(crate) unix: f64,
    /// The target, `host:port`.
    pub(crate) target: String,
    /// The module.
    pub(crate) module: String,
    /// The block's labels, `name="value"` joined by commas.
    pub(crate) labels: String,
    /// The new state: true for healthy; the old one is the other.
    pub(crate) healthy: bool,
    /// The failure reason of the probe that caused it; `None` for a success.
    pub(crate) reason: Option<Reason>,
    /// That probe's detail.
    pub(crate) detail: String,
    /// Probes since the last change, this one included (since the first
    /// probe, for the first change).
    pub(crate) probes: u64,
}

impl Transition {
    /// A transition of `target` by `module` with `labels`, each text cut
    /// to its bound.
    #[expect(clippy::too_many_arguments, reason = "the fields of one record")]
    pub(crate) fn new(
        unix: f64,
        target: &str,
        module: &str,
        labels: &Labels,
        healthy: bool,
        reason: Option<Reason>,
        detail: &str,
        probes: u64,
    ) -> Self {
        let cut = |text: &str, max: usize| {
            let mut text = text.to_owned();
            cut_text(&mut text, max);
            text
        };
        let labels: Vec<String> = labels
            .iter()
            .map(|(name, value)| format!("{name}={value:?}"))
            .collect();
        Self {
            unix,
            target: cut(target, MAX_TEXT_BYTES),
            module: cut(module, MAX_TEXT_BYTES),
            labels: cut(&labels.join(","), MAX_TEXT_BYTES),
            healthy,
            reason,
            detail: cut(detail, MAX_DETAIL_BYTES),
            probes,
        }
    }

    /// `"healthy"` or `"unhealthy"`.
    pub(crate) fn state_word(healthy: bool) -> &'static str {
        if healthy { "healthy" } else { "unhealthy" }
    }

    /// The probe's result: `success` or the reason.
    pub(crate) fn result(&self) -> String {
        self.reason
            .map_or_else(|| "success".to_owned(), |reason| reason.to_string())
    }

    /// One line of JSON, with its newline.
    fn json_line(&self) -> String {
        let line = serde_json::json!({
            "time_unix": self.unix,
            "target": self.target,
            "module": self.module,
            "labels": self.labels,
            "from": Self::state_word(!self.healthy),
            "to": Self::state_word(self.healthy),
            "reason": self.result(),
            "detail": self.detail,
            "probes": self.probes,
        });
        format!("{line}\n")
    }
}

/// The log of transitions the scheduler writes into.
#[derive(Debug, Default)]
pub(crate) struct Transitions {
    recent: Mutex<VecDeque<Arc<Transition>>>,
    /// To the events file's writer, with `--events.file`.
    file: Option<SyncSender<Arc<Transition>>>,
    /// Transitions the writer's channel had no room for.
    dropped: AtomicU64,
}

impl Transitions {
    /// A log that also hands each transition to `file`'s writer.
    pub(crate) fn with_file(file: SyncSender<Arc<Transition>>) -> Self {
        Self {
            file: Some(file),
            ..Self::default()
        }
    }

    /// Writes `transition` once: the log line, the landing page's list,
    /// the events file.
    pub(crate) fn record(&self, transition: Transition) {
        tracing::info!(
            target = %transition.target,
            module = %transition.module,
            labels = %transition.labels,
            from = Transition::state_word(!transition.healthy),
            to = Transition::state_word(transition.healthy),
            reason = %transition.result(),
            detail = %transition.detail,
            probes = transition.probes,
            "target {} is now {}",
            transition.target,
            Transition::state_word(transition.healthy),
        );
        let transition = Arc::new(transition);
        {
            let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
            if recent.len() == MAX_RECENT {
                recent.pop_front();
            }
            recent.push_back(Arc::clone(&transition));
        }
        if let Some(file) = &self.file
            && let Err(TrySendError::Full(_)) = file.try_send(transition)
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The last transitions, newest first.
    pub(crate) fn recent(&self) -> Vec<Arc<Transition>> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.iter().rev().cloned().collect()
    }

    /// Transitions not written to the events file for want of room.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The events file: opened, and its writer's channel.
#[derive(Debug)]
pub(crate) struct EventsFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
}

impl EventsFile {
    /// Opens `path` for appending, as a regular file (created if absent),
    /// without waiting on a FIFO; rotated at `max_bytes`.
    ///
    /// # Errors
    /// What keeps it from being opened, in words for the user.
    pub(crate) fn open(path: &Path, max_bytes: u64) -> Result<Self, String> {
        let file = crate::sys::open_for_appending_without_blocking(path)
            .map_err(|error| format!("cannot open the events file: {error}"))?;
        let metadata = file
            .metadata()
            .map_err(|error| format!("cannot read the events file's metadata: {error}"))?;
        if !metadata.is_file() {
            return Err(
                "the events file is not a regular file: give the path of a file".to_owned(),
            );
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            size: metadata.len(),
            max_bytes,
        })
    }

    /// Starts the writer on a thread of its own; it ends when every
    /// sender of the returned channel is gone.
    ///
    /// # Errors
    /// The operating system's, when it refuses the thread.
    pub(crate) fn start(
        self,
    ) -> io::Result<(SyncSender<Arc<Transition>>, std::thread::JoinHandle<()>)> {
        let (sender, receiver) = sync_channel(EVENTS_QUEUE);
        let thread = std::thread::Builder::new()
            .name("synack-events".to_owned())
            .spawn(move || self.write_all(&receiver))?;
        Ok((sender, thread))
    }

    fn write_all(mut self, receiver: &Receiver<Arc<Transition>>) {
        for transition in receiver {
            if let Err(error) = self.write(&transition) {
                tracing::warn!(
                    path = %self.path.display(),
                    err = %error,
                    "cannot write a transition to the events file"
                );
            }
        }
    }

    /// Appends one line, first rotating the file if the line would take
    /// it past its bound.
    fn write(&mut self, transition: &Transition) -> io::Result<()> {
        let line = transition.json_line();
        let length = line.len() as u64;
        if self.size > 0 && self.size + length > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())?;
        self.size += length;
        Ok(())
    }

    /// `PATH` becomes `PATH.1`, and a new `PATH` is started.
    fn rotate(&mut self) -> io::Result<()> {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, old)?;
        let reopened = Self::open(&self.path, self.max_bytes).map_err(io::Error::other)?;
        *self = reopened;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn transition(healthy: bool, detail: &str) -> Transition {
        let labels: Labels = Arc::new(BTreeMap::new());
        Transition::new(
            1.5,
            "127.0.0.1:80",
            "m",
            &labels,
            healthy,
            (!healthy).then_some(Reason::Refused),
            detail,
            3,
        )
    }

    #[test]
    fn the_landing_page_list_keeps_the_last_ones_newest_first() {
        let log = Transitions::default();
        for n in 0..(MAX_RECENT + 5) {
            log.record(transition(n % 2 == 0, &n.to_string()));
        }
        let recent = log.recent();
        assert_eq!(recent.len(), MAX_RECENT);
        assert_eq!(recent[0].detail, (MAX_RECENT + 4).to_string());
        assert_eq!(recent[MAX_RECENT - 1].detail, "5");
    }

    #[test]
    fn texts_are_cut_to_their_bounds() {
        let long = "x".repeat(100_000);
        let cut = transition(false, &long);
        assert!(cut.detail.len() <= MAX_DETAIL_BYTES, "{}", cut.detail.len());
        assert!(cut.detail.ends_with('…'));
    }

    #[test]
    fn a_full_channel_drops_and_counts() {
        let (sender, receiver) = sync_channel(1);
        let log = Transitions::with_file(sender);
        log.record(transition(false, "a"));
        log.record(transition(true, "b"));
        log.record(transition(false, "c"));
        assert_eq!(log.dropped(), 2, "one fits in the channel");
        assert_eq!(receiver.try_recv().unwrap().detail, "a");
        assert_eq!(log.recent().len(), 3, "the page has them all");
    }

    #[test]
    fn the_file_rotates_once_at_its_bound() {
        let dir = std::env::temp_dir().join(format!("synack-events-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        let line = transition(false, "RST").json_line();
        let length = line.len() as u64;
        // Room for three lines a file.
        let mut file = EventsFile::open(&path, 3 * length).unwrap();
        for _ in 0..7 {
            file.write(&transition(false, "RST")).unwrap();
        }
        let read = |path: &Path| std::fs::read_to_string(path).unwrap();
        let rotated = dir.join("events.jsonl.1");
        assert_eq!(
            read(&path).lines().count(),
            1,
            "the 7th line starts a new file"
        );
        assert_eq!(read(&rotated).lines().count(), 3, "one rotation kept");
        assert!(read(&path).len() as u64 <= 3 * length);
        let parsed: serde_json::Value = serde_json::from_str(read(&path).trim_end()).unwrap();
        assert_eq!(parsed["from"], "healthy");
        assert_eq!(parsed["to"], "unhealthy");
        assert_eq!(parsed["reason"], "refused");
        assert_eq!(parsed["probes"], 3);
        // Reopened, it goes on from its size.
        drop(file);
        let mut file = EventsFile::open(&path, 3 * length).unwrap();
        file.write(&transition(true, "")).unwrap();
        file.write(&transition(true, "")).unwrap();
        file.write(&transition(true, "")).unwrap();
        assert_eq!(read(&path).lines().count(), 1);
        assert_eq!(read(&rotated).lines().count(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_events_file_must_be_a_regular_file() {
        let error = EventsFile::open(Path::new("/dev/null"), 100).unwrap_err();
        assert!(error.contains("not a regular file"), "{error}");
        let error = EventsFile::open(Path::new("/nonexistent/dir/events"), 100).unwrap_err();
        assert!(error.contains("cannot open"), "{error}");
    }
}
