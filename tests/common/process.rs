//! Running a command to its end with a deadline: the one process runner
//! of the tests.

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a finished command printed, and how it ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code; None when a signal ended it.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Standard output, then standard error.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `command` with `stdin` fed in (none: /dev/null), collecting its
/// output, and kills it if it still runs after `limit`: then the error,
/// of kind `TimedOut`, carries the output so far. Output is read on
/// threads, so a chatty child never blocks on a full pipe while this one
/// waits.
pub fn run_bounded(
    command: &mut Command,
    stdin: Option<&str>,
    limit: Duration,
) -> std::io::Result<Finished> {
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A child that exits without reading its input breaks the pipe;
        // its status and output tell what happened.
        let _ = pipe.write_all(text.as_bytes());
        // Dropping the pipe closes it: end of input.
    }
    let deadline = Instant::now() + limit;
    let status = loop {
        let waited = child.try_wait();
        let failed = match waited {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => None,
            Ok(None) => Some(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{command:?} did not finish within {limit:?}; killed it"),
            )),
            Err(error) => Some(error),
        };
        if let Some(error) = failed {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                error.kind(),
                format!(
                    "{error}. Output so far:\n{}{}",
                    collect(stdout),
                    collect(stderr)
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Finished {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

/// [`run_bounded`] with no input, failing the test when the command cannot
/// start or outlives `limit`.
pub fn run_within(command: &mut Command, limit: Duration) -> Finished {
    let shown = format!("{command:?}");
    run_bounded(command, None, limit).unwrap_or_else(|error| panic!("{shown}: {error}"))
}

/// Reads a pipe to its end on a thread.
fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn collect(reader: JoinHandle<String>) -> String {
    reader
        .join()
        .unwrap_or_else(|_| "<output reader panicked>".to_owned())
}

/// Raises the soft `RLIMIT_NOFILE` of this process to the hard limit with
/// `prlimit` when it is below `needed` (the tests may not use `unsafe`),
/// and fails when even the hard limit is below it.
pub fn ensure_open_file_limit(needed: u64) {
    let (soft, hard) = open_file_limits();
    if soft >= needed {
        return;
    }
    assert!(
        hard >= needed,
        "the test needs {needed} open files but the hard limit is {hard}; raise it (ulimit -Hn)"
    );
    let pid = std::process::id().to_string();
    let raise = run_within(
        Command::new("prlimit").args(["--pid", &pid, &format!("--nofile={hard}:{hard}")]),
        Duration::from_secs(10),
    );
    assert!(raise.success(), "prlimit failed: {}", raise.output());
    let (raised, _) = open_file_limits();
    assert!(raised >= needed, "prlimit left the soft limit at {raised}");
    println!("raised the soft open file limit from {soft} to {raised}");
}

/// The soft and hard open file limits, from `/proc/self/limits`
/// ("unlimited" as `u64::MAX`).
fn open_file_limits() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits");
    let line = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .expect("a Max open files line");
    let mut values = line
        .split_whitespace()
        .map(|value| value.parse().unwrap_or(u64::MAX));
    let soft = values.next().expect("soft limit");
    let hard = values.next().expect("hard limit");
    (soft, hard)
}
