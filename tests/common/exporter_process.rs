//! The exporter binary as a child process on an ephemeral loopback port:
//! the one launcher of the tests that run the real binary.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

pub const BINARY: &str = env!("CARGO_BIN_EXE_synack_exporter");
/// How long the exporter may take to announce its address.
const START_LIMIT: Duration = Duration::from_secs(20);
/// Log lines kept at most, and lines read before the announcement.
const MAX_LINES: usize = 10_000;

/// A running exporter; killed (and reaped) on drop.
pub struct ExporterProcess {
    child: Child,
    pub address: SocketAddr,
    /// Log lines before the announcement of the listen address.
    pub startup_log: Vec<String>,
    /// Log lines after it, in order, as they come.
    lines: mpsc::Receiver<String>,
    /// Every log line so far, the first [`MAX_LINES`].
    log: Arc<Mutex<Vec<String>>>,
}

impl ExporterProcess {
    /// `synack_exporter --web.listen-address 127.0.0.1:0 args...`.
    pub fn start(args: &[&str]) -> Self {
        Self::spawn(Command::new(BINARY), args)
    }

    /// `synack_exporter args...`, for a mode that takes its listen address
    /// from `args` (`health-checker --listener 127.0.0.1:0`).
    pub fn start_exactly(args: &[&str]) -> Self {
        let mut command = Command::new(BINARY);
        command.args(args);
        Self::launch(command)
    }

    /// `command` as it is (the binary with its arguments and environment),
    /// for a mode that takes its listen address from its arguments.
    pub fn start_command(command: Command) -> Self {
        Self::launch(command)
    }

    /// Starts the exporter with soft and hard `RLIMIT_NOFILE` set to `limit`.
    pub fn start_with_open_file_limit(limit: u32, args: &[&str]) -> Self {
        let mut command = Command::new("bash");
        command.args([
            "-c",
            &format!("ulimit -n {limit} && exec \"$@\""),
            "bash",
            BINARY,
        ]);
        Self::spawn(command, args)
    }

    /// Runs `command` (the binary, or a wrapper that execs it) with
    /// `--web.listen-address 127.0.0.1:0` and `args`, and waits for the
    /// "listening" log line. Stderr is drained for the process's whole
    /// life, so logging never blocks it.
    pub fn spawn(mut command: Command, args: &[&str]) -> Self {
        command
            .args(["--web.listen-address", "127.0.0.1:0"])
            .args(args);
        Self::launch(command)
    }

    /// Runs `command` as it is and waits for the "listening" log line.
    fn launch(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("start {command:?}: {error}"));
        let (sender, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&log);
        let pipe = BufReader::new(child.stderr.take().expect("stderr piped"));
        std::thread::spawn(move || {
            for line in pipe.lines().map_while(Result::ok) {
                {
                    let mut kept = kept.lock().unwrap();
                    if kept.len() < MAX_LINES {
                        kept.push(line.clone());
                    }
                }
                // The receiver is gone once the test is done with the
                // lines: keep draining all the same.
                let _ = sender.send(line);
            }
        });
        let mut exporter = Self {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            startup_log: Vec::new(),
            lines,
            log,
        };
        exporter.address = exporter.wait_for_address();
        exporter
    }

    fn wait_for_address(&mut self) -> SocketAddr {
        while self.startup_log.len() < MAX_LINES {
            let line = self.lines.recv_timeout(START_LIMIT).unwrap_or_else(|_| {
                panic!(
                    "no 'listening' log line within {START_LIMIT:?} (exit status {:?}); \
                     stderr so far: {:#?}",
                    self.child.try_wait().ok().flatten(),
                    self.startup_log
                )
            });
            if let Some(address) = super::listen_address(&line) {
                return address;
            }
            self.startup_log.push(line);
        }
        panic!("no 'listening' log line in the first {MAX_LINES} lines");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends signal `name` (as `kill -s` spells it).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} {}", self.pid());
    }

    /// The log lines from here on, up to and with the first containing
    /// `needle`; fails the test when none comes within 10 s of the last.
    pub fn logs_until(&self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        while seen.len() < MAX_LINES {
            let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) else {
                break;
            };
            let found = line.contains(needle);
            seen.push(line);
            if found {
                return seen;
            }
        }
        panic!("log never contained {needle:?}: {seen:#?}");
    }

    /// The log lines that came since the last look, without waiting.
    pub fn new_lines(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Every log line so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Kills the exporter, as a crash would, and reaps it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits at most `limit` for the exporter to exit by itself; None if it
    /// still runs then.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How it ended, once it has.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for ExporterProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
