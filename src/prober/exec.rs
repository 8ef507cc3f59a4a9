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
//! environment (but for the `--script`s of `synack_exporter
//! health-checker`, which get it as health-checker gives it). It gets `PATH` (the exporter's, or a default PATH when
//! the exporter has none), `SYNACK_TARGET`, `SYNACK_TARGET_HOST` and
//! `SYNACK_TARGET_PORT` (the same values as the placeholders; none of
//! them when the probe has no target), and the module's `env`, which may
//! replace `PATH`. A program named without a
//! `/` is looked up in that `PATH` by the exporter itself (see
//! `crate::config::find_program`). stdin is `/dev/null`; the working
//! directory is the exporter's.
//!
//! **Outcome.** Exit 0 before the deadline is success. Another exit code,
//! or death by a signal, fails as `check_failed`. No exit by the deadline
//! fails as `timeout`. A command that cannot start fails as `local`, with
//! why: not found (or its `#!` interpreter not found), not executable, or
//! an exec format error (a script without `#!`). [`ExecDetail::exit_code`]
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
//! `/logs`), never into labels. When the probe fails, the first line of
//! stderr that is not blank, cut at [`STDERR_LINE_BYTES`], goes into the
//! failure ([`Failure::stderr`]), so that a group's answer and the log say
//! why. The rest is read and discarded, so a chatty command never blocks
//! on a full pipe.
//!
//! **Where it runs.** Not on the probe thread: starting a process forks
//! (or `vfork`s) the thread that starts it and waits for the exec, which
//! would delay the half-open closes of the probes sharing that thread. The
//! runner runs exec probes on a thread of their own, within an exec limit
//! of their own as well as the shared in-flight limit (see
//! `crate::runner`).

#![forbid(unsafe_code)]

use super::process_groups::{ProcessGroup, ProcessGroups, SpawnError};
use super::{
    Budget, Detail, Failure, Kept, Number, Outcome, Reason, STDERR_LINE_BYTES, Series, Slot,
    StepLog, TargetFamily, TargetSeries, classify,
};
use crate::config::{
    EXPORTER_PATH, ExecOptions, RESERVED_ENV_PREFIX, Values, command_path, find_program,
};
use crate::steplog::{Wording, allocated, floor_char_boundary};
use crate::target::Target;
use std::fmt::{self, Write as _};
use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// What the `exec` prober reports beside the shared part of an
/// [`Outcome`].
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecDetail {
    /// What `probe_exec_exit_code` shows: the command's exit code, or -1
    /// when it has none (killed by a signal or at the deadline, or never
    /// started).
    pub exit_code: i32,
}

impl ExecDetail {
    /// The detail of a command that never ran or has no exit code.
    pub(crate) const NOT_RUN: Self = Self { exit_code: -1 };
}

/// The `exec` prober's series in `/probe`'s answer: the exit code, -1
/// when there is none (also when the command never ran).
pub(super) fn write_series(detail: Option<&ExecDetail>, slot: Slot, out: &mut dyn Series) {
    if slot == Slot::Address {
        let exit_code = detail.map_or(-1, |detail| detail.exit_code);
        out.gauge(
            "probe_exec_exit_code",
            "Exit code of the exec module's command; -1 when it has none (killed, timed out, not started).",
            Number::Measure(f64::from(exit_code)),
        );
    }
}

/// The steps the `exec` prober logs beside the shared ones (see
/// [`crate::steplog`]), and their wording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ExecStep {
    /// The command started as process `pid`, with these arguments.
    Started { pid: u32, argv: Vec<String> },
    /// The command ended, by itself or by a signal from elsewhere.
    Exited(ExitStatus),
    /// The deadline passed: the command's process group was killed.
    Killed { pid: u32 },
    /// The first bytes the command wrote to `stream` (stdout or stderr),
    /// and how many it wrote in all.
    Output {
        stream: &'static str,
        head: Vec<u8>,
        total: u64,
    },
    /// Only the first `kept` of the `total` bytes of the command line
    /// before this step are kept (see [`Wording::bound`]).
    ArgvCut { kept: usize, total: usize },
}

/// How much of a command line the step log keeps: 4 KiB, enough for any
/// usual command line and for one argument of the longest allowed, where
/// a whole command may have about 1 MB.
pub(crate) const ARGV_LOG_BYTES: usize = 4096;

impl Wording for ExecStep {
    fn write(&self, f: &mut fmt::Formatter<'_>, show_commands: bool) -> fmt::Result {
        match self {
            Self::Started { pid, argv } if show_commands => {
                write!(f, "started process {pid}: {argv:?}")
            }
            Self::Started { pid, .. } => write!(
                f,
                "started process {pid} (its command line is hidden by --web.hide-config-and-logs)"
            ),
            Self::Exited(status) => write!(f, "the command ended: {status}"),
            Self::Killed { pid } => write!(
                f,
                "the command did not exit before the deadline: killed process group {pid} (SIGKILL)"
            ),
            Self::Output {
                stream,
                head,
                total,
            } => write_output(f, stream, head, *total),
            Self::ArgvCut { kept, total } => write!(
                f,
                "the command line is cut: the log keeps the first {kept} of its {total} bytes"
            ),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Self::Started { argv, .. } => {
                allocated(argv.capacity() * size_of::<String>())
                    + argv
                        .iter()
                        .map(|argument| allocated(argument.capacity()))
                        .sum::<usize>()
            }
            Self::Output { head, .. } => allocated(head.capacity()),
            _ => 0,
        }
    }

    fn compact(&mut self) {
        match self {
            Self::Started { argv, .. } => {
                *argv = argv
                    .iter()
                    .map(|argument| argument.as_str().to_owned())
                    .collect();
            }
            Self::Output { head, .. } => *head = head.as_slice().to_vec(),
            _ => {}
        }
    }

    /// A command line is kept only up to [`ARGV_LOG_BYTES`], followed by
    /// an [`ExecStep::ArgvCut`] saying so.
    fn bound(&mut self) -> Option<Self> {
        match self {
            Self::Started { argv, .. } => {
                cut_argv(argv, ARGV_LOG_BYTES).map(|total| Self::ArgvCut {
                    kept: ARGV_LOG_BYTES,
                    total,
                })
            }
            _ => None,
        }
    }
}

/// A command's output as the log shows it: a heading, then each line
/// indented by `  | `, with control characters other than tab escaped
/// (`\u{1b}`), so that output can neither forge a log line nor drive the
/// reader's terminal.
fn write_output(f: &mut fmt::Formatter<'_>, stream: &str, head: &[u8], total: u64) -> fmt::Result {
    if total == 0 {
        return write!(f, "{stream}: empty");
    }
    if head.len() as u64 == total {
        write!(f, "{stream}, {total} bytes:")?;
    } else {
        write!(f, "{stream}, the first {} of {total} bytes:", head.len())?;
    }
    let text = String::from_utf8_lossy(head);
    for line in text.strip_suffix('\n').unwrap_or(&text).split('\n') {
        f.write_str("\n  | ")?;
        for c in line.chars() {
            if c.is_control() && c != '\t' {
                write!(f, "{}", c.escape_default())?;
            } else {
                f.write_char(c)?;
            }
        }
    }
    Ok(())
}

/// Keeps the first `max_bytes` of the command line `argv` (whole
/// arguments, the last cut on a character boundary); the bytes it had
/// in all, if any were cut.
fn cut_argv(argv: &mut Vec<String>, max_bytes: usize) -> Option<usize> {
    let total: usize = argv.iter().map(String::len).sum();
    if total <= max_bytes {
        return None;
    }
    let mut room = max_bytes;
    let mut keep = 0;
    for argument in argv.iter_mut() {
        if room == 0 {
            break;
        }
        if argument.len() > room {
            argument.truncate(floor_char_boundary(argument, room));
        }
        room -= argument.len();
        keep += 1;
    }
    argv.truncate(keep);
    Some(total)
}

/// What a scheduled target of an `exec` module keeps between probes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ExecKept {
    /// The last probe's exit code (see [`ExecDetail::exit_code`]); `None`
    /// before any.
    last_exit_code: Option<i32>,
}

impl ExecKept {
    /// Takes in the detail of one probe.
    pub(super) fn record(&mut self, detail: Option<&ExecDetail>) {
        self.last_exit_code = detail.map(|detail| detail.exit_code);
    }
}

/// `probe_exec_exit_code` of scheduled targets, from their first probe on.
pub(super) const EXIT_CODE_SERIES: TargetSeries = TargetSeries {
    family: TargetFamily::Gauge {
        name: "probe_exec_exit_code",
        help: "Exit code of the last scheduled probe's command, exec modules only; -1 when it has none.",
    },
    sample: |kept, out| {
        if let Kept::Exec(ExecKept {
            last_exit_code: Some(code),
        }) = kept
        {
            out.number(Number::Measure(f64::from(*code)));
        }
    },
};

/// How much of stdout and of stderr the step log keeps.
pub(crate) const OUTPUT_HEAD_BYTES: usize = 4096;

/// How long a killed command may take to be reaped before the probe
/// answers anyway; tokio reaps it later. A `SIGKILL`ed process ends at
/// once unless it is stuck in the kernel (a hung network filesystem).
const REAP_WAIT: Duration = Duration::from_millis(500);

/// For tests: the target and the thread of every exec probe started, so
/// that the runner's tests can tell where exec probes run.
#[cfg(test)]
pub(crate) static STARTED_ON: std::sync::Mutex<Vec<(Option<Target>, Option<String>)>> =
    std::sync::Mutex::new(Vec::new());

/// Runs the command of `options` for `target` within `budget`, its
/// process group entered in `groups`; see the module docs. Without a
/// target (only for a command without placeholders) no `SYNACK_TARGET*`
/// variable is set.
pub(super) async fn probe(
    options: &ExecOptions,
    target: Option<&Target>,
    groups: &ProcessGroups,
    budget: Budget,
    steplog: &mut StepLog,
) -> Outcome {
    #[cfg(test)]
    STARTED_ON
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((
            target.cloned(),
            std::thread::current().name().map(str::to_owned),
        ));
    let mut outcome = Outcome::new(None, Detail::Exec(ExecDetail::NOT_RUN));
    let values = target.map(Values::of);
    let argv = options.argv_with(values.as_ref().unwrap_or(&Values::none()));
    let program = argv[0].clone();
    let (mut child, group) = match start(options, values.as_ref(), &argv, groups) {
        Ok(started) => started,
        Err(failure) => {
            outcome.failure = Some(failure);
            return outcome;
        }
    };
    let pid = group.pgid();
    steplog.log(|| ExecStep::Started { pid, argv });
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
            steplog.log(|| ExecStep::Exited(status));
            let exit_code = status.code().unwrap_or(-1);
            outcome.detail = Detail::Exec(ExecDetail { exit_code });
            judge(&program, status)
        }
        Some(Err(error)) => Some(Failure::new(
            Reason::Local,
            format!("cannot wait for {program}: {}", classify::describe(&error)),
        )),
        None => {
            group.kill();
            steplog.log(|| ExecStep::Killed { pid });
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
    if let Some(failure) = &mut outcome.failure {
        failure.stderr = stderr.first_line().map(String::into_boxed_str);
    }
    steplog.log(|| stdout.into_step("stdout"));
    steplog.log(|| stderr.into_step("stderr"));
    outcome
}

/// Starts `argv`, the command of `options` with its placeholders replaced
/// by `values` (`None` without a target), in a process group of its own
/// entered in `groups`, and with the minimal environment; see the module
/// docs.
fn start<'a>(
    options: &ExecOptions,
    values: Option<&Values>,
    argv: &[String],
    groups: &'a ProcessGroups,
) -> Result<(Child, ProcessGroup<'a>), Failure> {
    let path = command_path(options);
    let program = &argv[0];
    let cannot_start = |error: io::Error| cannot_start(program, &path.to_string_lossy(), &error);
    let executable = find_program(program, &path).map_err(cannot_start)?;
    let mut command = Command::new(executable);
    command.arg0(program).args(&argv[1..]);
    if !options.inherits_environment() {
        command.env_clear().env("PATH", &*EXPORTER_PATH);
    }
    if let Some(values) = values {
        command
            .env(format!("{RESERVED_ENV_PREFIX}TARGET"), &values.target)
            .env(format!("{RESERVED_ENV_PREFIX}TARGET_HOST"), &values.host)
            .env(format!("{RESERVED_ENV_PREFIX}TARGET_PORT"), &values.port);
    }
    command
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

    /// The first line of the output that is not blank, trimmed, cut at
    /// [`STDERR_LINE_BYTES`] on a character boundary and then marked `…`;
    /// invalid UTF-8 becomes U+FFFD.
    fn first_line(&self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.head);
        let line = text.lines().map(str::trim).find(|line| !line.is_empty())?;
        if line.len() <= STDERR_LINE_BYTES {
            return Some(line.to_owned());
        }
        let end = floor_char_boundary(line, STDERR_LINE_BYTES);
        Some(format!("{}…", &line[..end]))
    }

    fn into_step(self, stream: &'static str) -> ExecStep {
        ExecStep::Output {
            stream,
            head: self.head,
            total: self.total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_output_is_indented_escaped_and_says_when_it_was_cut() {
        let mut steplog = StepLog::enabled();
        steplog.log(|| ExecStep::Output {
            stream: "stdout",
            head: b"ok\n\x1b[2Jfake 0.1s line\r\n".to_vec(),
            total: 9000,
        });
        steplog.log(|| ExecStep::Output {
            stream: "stderr",
            head: Vec::new(),
            total: 0,
        });
        let target = Target::parse("127.0.0.1:1").unwrap();
        let text = steplog.into_steps().render(Some(&target), None, true);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].ends_with("s stdout, the first 23 of 9000 bytes:"),
            "{text}"
        );
        assert_eq!(lines[1], "  | ok");
        assert_eq!(lines[2], "  | \\u{1b}[2Jfake 0.1s line\\r");
        assert!(lines[3].ends_with("s stderr: empty"), "{text}");
    }

    #[test]
    fn a_command_line_is_shown_only_when_commands_are() {
        let mut steplog = StepLog::enabled();
        steplog.log(|| ExecStep::Started {
            pid: 7,
            argv: vec!["/bin/true".to_owned(), "--password=x".to_owned()],
        });
        let steps = steplog.into_steps();
        let target = Target::parse("127.0.0.1:1").unwrap();
        let shown = steps.render(Some(&target), None, true);
        assert!(
            shown.ends_with("s started process 7: [\"/bin/true\", \"--password=x\"]\n"),
            "{shown}"
        );
        let hidden = steps.render(Some(&target), None, false);
        assert!(
            hidden.ends_with(
                "s started process 7 (its command line is hidden by --web.hide-config-and-logs)\n"
            ),
            "{hidden}"
        );
    }

    fn first_line(bytes: &[u8]) -> Option<String> {
        Output {
            head: bytes.to_vec(),
            total: bytes.len() as u64,
        }
        .first_line()
    }

    #[test]
    fn the_stderr_line_is_the_first_not_blank_trimmed_and_cut_on_a_character() {
        assert_eq!(first_line(b""), None);
        assert_eq!(first_line(b"\n \r\n\t\n"), None);
        assert_eq!(
            first_line(b"\r\n  why: \xff down \r\nmore\n").as_deref(),
            Some("why: \u{fffd} down")
        );
        // 199 bytes, then a 2-byte character that would end past 200.
        let long = format!("{}é{}", "a".repeat(199), "b".repeat(50));
        assert_eq!(
            first_line(long.as_bytes()),
            Some(format!("{}…", "a".repeat(199)))
        );
        let exact = "c".repeat(STDERR_LINE_BYTES);
        assert_eq!(first_line(exact.as_bytes()), Some(exact));
    }
}
