//! Helpers shared by the integration tests: an in-process exporter on
//! loopback, the exporter binary as a process ([`ExporterProcess`]), a tiny
//! HTTP client ([`http`]), a process runner with a deadline ([`process`]),
//! temporary directories removed on drop ([`TempDir`]), loopback ports
//! ([`closed_port`]), the lock that keeps heavy and timed tests apart
//! ([`load`]), and the rule for missing prerequisites.
#![allow(dead_code, unused_imports)] // each test file uses a different subset

pub mod exporter_process;
pub mod http;
pub mod load;
pub mod ports;
pub mod process;
pub mod tempdir;
pub mod tls;

pub use exporter_process::ExporterProcess;
pub use http::{Response, request};
pub use ports::{accept_waiting, closed_port, open_port, serve};
pub use process::{Finished, ensure_open_file_limit, run_bounded, run_within};
pub use tempdir::TempDir;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use synack_exporter::ExporterBuilder;
use tokio::sync::oneshot;

pub mod scheduled;

/// The values of `probe_failure_reason`'s `reason` label, in export
/// order: the metrics' contract, written out rather than taken from the
/// crate, so that a change to the crate's list fails the tests.
pub const REASONS: [&str; 8] = [
    "refused",
    "timeout",
    "unreachable",
    "dns",
    "local",
    "check_failed",
    "tls",
    "open",
];

/// `VmRSS` of process `pid`, in bytes.
pub fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// The reason at 1 in a `/probe` answer; `None` for a success.
pub fn failed_reason(body: &str) -> Option<&'static str> {
    REASONS.into_iter().find(|reason| {
        sample(
            body,
            &format!("probe_failure_reason{{reason=\"{reason}\"}}"),
        ) == Some(1.0)
    })
}

/// Whether CI demanded that system tests run (`SYNACK_SYSTEM_TESTS=require`).
pub fn system_tests_required() -> bool {
    std::env::var("SYNACK_SYSTEM_TESTS").is_ok_and(|value| value == "require")
}

/// Skips the calling test with a message, or fails it when system tests
/// are required. Returns so the caller can `return` right after.
///
/// The message is written straight to the process's stderr, not through
/// `eprintln!`: the test harness captures the print macros of passing
/// tests, which would hide the skip behind an `ok`. Written this way it
/// shows in plain `cargo test` output, with the test's name.
pub fn skip_or_fail(missing: &str) {
    use std::io::Write;
    assert!(
        !system_tests_required(),
        "SYNACK_SYSTEM_TESTS=require but a prerequisite is missing: {missing}"
    );
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let line = format!(
        "SKIPPED {test}: missing {missing} (the README lists the prerequisites; \
         SYNACK_SYSTEM_TESTS=require makes this a failure)\n"
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// A fresh, empty directory that outlives this call: whoever holds the
/// path removes it (a [`TestExporter`] with a config file does, on drop).
/// Tests use [`TempDir`], which removes itself.
pub fn temp_dir(name: &str) -> PathBuf {
    TempDir::new(name).keep()
}

/// An exporter served in-process on 127.0.0.1 with an ephemeral port.
pub struct TestExporter {
    pub address: SocketAddr,
    pub config_path: Option<PathBuf>,
    stop: Option<oneshot::Sender<()>>,
}

impl TestExporter {
    /// Serves the config `builder` has (the embedded default unless set).
    pub async fn embedded(builder: ExporterBuilder) -> Self {
        Self::start(builder, None).await
    }

    /// Serves `yaml`, written to a temp file so that reloads can change it.
    pub async fn with_config(yaml: &str, builder: ExporterBuilder) -> Self {
        let path = temp_dir("config").join("synack.yml");
        std::fs::write(&path, yaml).expect("write config");
        Self::start(builder.config_file(&path), Some(path)).await
    }

    async fn start(builder: ExporterBuilder, config_path: Option<PathBuf>) -> Self {
        let exporter = builder.build().expect("config loads");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            exporter
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            address,
            config_path,
            stop: Some(stop),
        }
    }

    /// `GET path` with extra headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        request(self.address, "GET", path, headers).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Response {
        self.get_with(path, &[]).await
    }

    /// `GET /probe` of `target` with `module`.
    pub async fn probe(&self, target: impl std::fmt::Display, module: &str) -> Response {
        self.get(&format!("/probe?target={target}&module={module}"))
            .await
    }
}

impl Drop for TestExporter {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // The config file sits alone in a directory of `temp_dir`.
        if let Some(dir) = self.config_path.as_ref().and_then(|path| path.parent()) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The value of an unlabelled or exactly-labelled sample in an exposition,
/// e.g. `sample(text, "probe_failure_reason{reason=\"refused\"}")`.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        let value = rest.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// A loopback listener whose full accept queue drops new SYNs: a target
/// that times out, without root. Keep it alive as long as it is probed.
pub struct SaturatedListener {
    pub address: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<std::net::TcpStream>,
}

pub fn saturated_listener() -> SaturatedListener {
    use socket2::{Domain, Protocol, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(0).unwrap();
    let address = listener.local_addr().unwrap().as_socket().unwrap();
    // Connections that complete fill the queue; the first that cannot shows it is full.
    let fillers = (0..8)
        .map_while(|_| {
            std::net::TcpStream::connect_timeout(&address, Duration::from_millis(300)).ok()
        })
        .collect();
    SaturatedListener {
        address,
        _listener: listener,
        _fillers: fillers,
    }
}

impl TestExporter {
    /// Polls `synack_exporter_probes_in_flight` every 10 ms until it is
    /// `want`; fails the test after 5 s.
    pub async fn wait_for_in_flight(&self, want: f64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let metrics = self.get("/metrics").await.body;
            let now = sample(&metrics, "synack_exporter_probes_in_flight");
            if now == Some(want) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "probes in flight stayed {now:?}, want {want}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Rewrites the config file and asks for a reload; returns the answer.
    pub async fn reload_with(&self, yaml: &str) -> Response {
        let path = self
            .config_path
            .as_ref()
            .expect("started with a config file");
        std::fs::write(path, yaml).expect("rewrite config");
        request(self.address, "POST", "/-/reload", &[]).await
    }
}

/// The address the exporter announces on stderr when it starts listening,
/// if `line` is that announcement: the log line
/// `... msg="synack_exporter listening" address=127.0.0.1:9215 ...`
/// (logfmt) or `{"msg":"synack_exporter listening","address":"..."}` (JSON).
pub fn listen_address(line: &str) -> Option<SocketAddr> {
    if !line.contains("synack_exporter listening") {
        return None;
    }
    let (_, rest) = line
        .split_once("address=")
        .or_else(|| line.split_once("\"address\":\""))?;
    rest.split(|c: char| c == '"' || c.is_whitespace())
        .next()?
        .parse()
        .ok()
}
