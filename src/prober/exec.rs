//! The `exec` prober: runs a command from the config, and the command's
//! exit says whether the target is healthy.
//!
//! **What runs.** The module's `command` is an argument list, started
//! directly (never through a shell) with `{target}`, `{host}` and `{port}`
//! replaced by the probe's target, which the target parser has already
//! validated: a host holds only letters, digits, `.`, `-`, `_` (or is an
//! IP literal) and never starts with `-`, so it can neither carry shell
//! syntax nor pass for an option. The program itself, `command[0]`, never
//! holds a placeholder. Nothing else from the request reaches the command.
//!
//! **Environment.** The command does not inherit the exporter's
//! environment. It gets `PATH` (the exporter's, or a default PATH when
//! the exporter has none), `SYNACK_TARGET`, `SYNACK_TARGET_HOST` and
//! `SYNACK_TARGET_PORT` (the same values as the placeholders), and the
//! module's `env`, which may replace `PATH`. A program named without a
//! `/` is looked up in that `PATH` by the exporter itself (see
//! `crate::config::find_program`). stdin is `/dev/null`; the working
//! directory is the exporter's.
//!
//! **Outcome.** Exit 0 before the deadline is success. Another exit code,
//! or death by a signal, fails as `check_failed`. No exit by the deadline
//! fails as `timeout`. A command that cannot start fails as `local`, with
//! why: not found (or its `#!` interpreter not found), not executable, or
//! an exec format error (a script without `#!`). [`Outcome::exit_code`]
//! is the exit code, -1 when there is none.
//!
//! **No child outlives the probe.** The command starts in a process group
//! of its own (`process_group(0)`), and the whole group gets `SIGKILL`: at
//! the deadline, right after the command exits (so that a background
//! child it left behind dies with it), and when the probe is cancelled
//! (its HTTP client went away). At shutdown the runner kills every group
//! still running and starts no more (see [`super::process_groups`]), so
//! no command outlives the exporter either. The command itself
//! is always reaped: waited for after the kill, or, if the probe is
//! cancelled, by tokio's orphan reaping (`kill_on_drop`). Its own
//! children are re-parented to the init process (or the nearest
//! subreaper), which reaps them; in a container where the exporter is
//! PID 1, give it an init (`docker run --init`, tini) to do that. A child
//! that leaves the group on purpose (`setsid`) is beyond the reach of a
//! group kill.
//!
//! **Output.** stdout and stderr are read while the command runs; the
//! first [`OUTPUT_HEAD_BYTES`] of each go to the step log (`debug=true`,
//! `/logs`), never into labels or the failure's detail. The rest is read
//! and discarded, so a chatty command never blocks on a full pipe.
//!
//! **Where it runs.** Not on the probe thread: starting a process forks
//! (or `vfork`s) the thread that starts it and waits for the exec, which
//! would delay the half-open closes of the probes sharing that thread. The
//! runner runs exec probes on a thread of their own, within an exec limit
//! of their own as well as the shared in-flight limit (see
//! `crate::runner`).

#![forbid(unsafe_code)]

use super::process_groups::{ProcessGroup, ProcessGroups, SpawnError};
use super::{Budget, Failure, Outcome, Reason, classify};
use crate::config::{
    EXPORTER_PATH, ExecOptions, RESERVED_ENV_PREFIX, Values, command_path, find_program,
};
use crate::target::Target;
use crate::trace::{Step, Trace};
use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How much of stdout and of stderr the step log keeps.
pub(crate) const OUTPUT_HEAD_BYTES: usize = 4096;

/// How long a killed command may take to be reaped before the probe
/// answers anyway; tokio reaps it later. A `SIGKILL`ed process ends at
/// once unless it is stuck in the kernel (a hung network filesystem).
const REAP_WAIT: Duration = Duration::from_millis(500);

/// For tests: the target and the thread of every exec probe started, so
/// that the runner's tests can tell where exec probes run.
#[cfg(test)]
pub(crate) static STARTED_ON: std::sync::Mutex<Vec<(Target, Option<String>)>> =
    std::sync::Mutex::new(Vec::new());

/// Runs the command of `options` for `target` within `budget`, its
/// process group entered in `groups`; see the module docs.
pub(super) async fn probe(
    options: &ExecOptions,
    target: &Target,
    groups: &ProcessGroups,
    budget: Budget,
    trace: &mut Trace,
) -> Outcome {
    #[cfg(test)]
    STARTED_ON
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((
            target.clone(),
            std::thread::current().name().map(str::to_owned),
        ));
    let mut outcome = Outcome::not_started(Failure::new(Reason::Local, ""), Duration::ZERO);
    outcome.exit_code = Some(-1);
    let values = Values::of(target);
    let argv = options.argv_with(&values);
    let program = argv[0].clone();
    let (mut child, group) = match start(options, &values, &argv, groups) {
        Ok(started) => started,
        Err(failure) => {
            outcome.failure = Some(failure);
            return outcome;
        }
    };
    let pid = group.pgid();
    trace.log(|| Step::ExecStarted { pid, argv });
    let (mut stdout, mut stderr) = (Output::default(), Output::default());
    let ended = run(
        &mut child,
        &group,
        budget.deadline,
        &mut stdout,
        &mut stderr,
    )
    .await;
    outcome.failure = match ended {
        Some(Ok(status)) => {
            trace.log(|| Step::ExecExited(status));
            outcome.exit_code = Some(status.code().unwrap_or(-1));
            judge(&program, status)
        }
        Some(Err(error)) => Some(Failure::new(
            Reason::Local,
            format!("cannot wait for {program}: {}", classify::describe(&error)),
        )),
        None => {
            group.kill();
            trace.log(|| Step::ExecKilled { pid });
            // Reap it now, so that no zombie is left; tokio does it later
            // if the kernel takes longer.
            let _ = tokio::time::timeout(REAP_WAIT, child.wait()).await;
            Some(Failure::new(
                Reason::Timeout,
                format!(
                    "{program} did not exit within the {:.3}s timeout: killed its process group",
                    budget.timeout.as_secs_f64()
                ),
            ))
        }
    };
    trace.log(|| stdout.into_step("stdout"));
    trace.log(|| stderr.into_step("stderr"));
    outcome
}

/// Starts `argv`, the command of `options` with its placeholders replaced
/// by `values`, in a process group of its own entered in `groups`, and
/// with the minimal environment; see the module docs.
fn start<'a>(
    options: &ExecOptions,
    values: &Values,
    argv: &[String],
    groups: &'a ProcessGroups,
) -> Result<(Child, ProcessGroup<'a>), Failure> {
    let path = command_path(options);
    let program = &argv[0];
    let cannot_start = |error: io::Error| cannot_start(program, &path.to_string_lossy(), &error);
    let executable = find_program(program, &path).map_err(cannot_start)?;
    let mut command = Command::new(executable);
    command
        .arg0(program)
        .args(&argv[1..])
        .env_clear()
        .env("PATH", &*EXPORTER_PATH)
        .env(format!("{RESERVED_ENV_PREFIX}TARGET"), &values.target)
        .env(format!("{RESERVED_ENV_PREFIX}TARGET_HOST"), &values.host)
        .env(format!("{RESERVED_ENV_PREFIX}TARGET_PORT"), &values.port)
        .envs(options.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    groups.spawn(&mut command).map_err(|error| match error {
        SpawnError::Io(error) => cannot_start(error),
        SpawnError::Stopped => Failure::new(
            Reason::Local,
            format!("{program} was not started: the exporter is shutting down"),
        ),
    })
}

/// Waits for the command to exit and reads its output until `deadline`.
/// Returns its exit status, or `None` if it did not exit in time; the
/// output read so far is in `stdout` and `stderr` either way.
async fn run(
    child: &mut Child,
    group: &ProcessGroup<'_>,
    deadline: Instant,
    stdout: &mut Output,
    stderr: &mut Output,
) -> Option<io::Result<ExitStatus>> {
    let (out_pipe, err_pipe) = (child.stdout.take(), child.stderr.take());
    let mut status = None;
    let exited = async {
        let result = child.wait().await;
        // Whatever the command left running in the background goes too,
        // which also closes the pipes it may hold.
        group.kill();
        status = Some(result);
    };
    let all = async {
        tokio::join!(exited, stdout.drain(out_pipe), stderr.drain(err_pipe));
    };
    // On time out, `status` still tells whether the command had exited:
    // then only a child that left the group kept a pipe open.
    let _ = tokio::time::timeout_at(deadline, all).await;
    status
}

/// Success for exit 0; `check_failed` for any other exit or a signal.
fn judge(program: &str, status: ExitStatus) -> Option<Failure> {
    if status.success() {
        return None;
    }
    let detail = match status.code() {
        Some(code) => format!("{program} exited with code {code}"),
        // `ExitStatus` names the signal: "signal: 9 (SIGKILL)".
        None => format!("{program} was killed by a {status}"),
    };
    Some(Failure::new(Reason::CheckFailed, detail))
}

/// Why the command could not start, as a `local` failure; `path` is the
/// `PATH` it was looked up in.
fn cannot_start(program: &str, path: &str, error: &io::Error) -> Failure {
    let why = match error.raw_os_error() {
        Some(libc::ENOENT) if program.contains('/') => {
            "not found: no such file, or the interpreter its #! line names does not exist"
                .to_owned()
        }
        Some(libc::ENOENT) => format!(
            "not found in PATH ({path}), or the interpreter its #! line names does not exist"
        ),
        Some(libc::EACCES) => {
            "not executable: permission denied (is it chmod +x, on a filesystem mounted without noexec?)"
                .to_owned()
        }
        Some(libc::ENOEXEC) => {
            "exec format error: neither a program for this machine nor a script starting with #!"
                .to_owned()
        }
        _ => classify::describe(error),
    };
    Failure::new(Reason::Local, format!("cannot start {program}: {why}"))
}

/// The first [`OUTPUT_HEAD_BYTES`] a command wrote to one pipe, and how
/// many bytes it wrote in all.
#[derive(Debug, Default)]
struct Output {
    head: Vec<u8>,
    total: u64,
}

impl Output {
    /// Reads `pipe` to its end, keeping the head and counting the rest.
    async fn drain(&mut self, pipe: Option<impl AsyncRead + Unpin>) {
        let Some(mut pipe) = pipe else {
            return;
        };
        let mut buffer = vec![0; 8192];
        // A read error ends the output as its end would.
        while let Ok(read @ 1..) = pipe.read(&mut buffer).await {
            let room = OUTPUT_HEAD_BYTES - self.head.len();
            self.head.extend_from_slice(&buffer[..read.min(room)]);
            self.total += read as u64;
        }
    }

    fn into_step(self, stream: &'static str) -> Step {
        Step::ExecOutput {
            stream,
            head: self.head,
            total: self.total,
        }
    }
}
