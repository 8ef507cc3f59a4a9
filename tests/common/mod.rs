//! Helpers shared by the integration tests: an in-process exporter on
//! loopback, a tiny HTTP client, and the rule for missing prerequisites.
#![allow(dead_code)] // each test file uses a different subset

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use synack_exporter::ExporterBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

pub mod scheduled;

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

/// A fresh, empty directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "synack-test-{}-{}-{name}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
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
}

impl Drop for TestExporter {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Sends one HTTP/1.1 request with `Connection: close` and reads the whole
/// response; `target` is sent as written, so tests can send raw bytes.
pub async fn request(
    address: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Response {
    let work = async {
        let mut stream = TcpStream::connect(address)
            .await
            .expect("connect to exporter");
        let mut head =
            format!("{method} {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("Content-Length: 0\r\n\r\n");
        stream
            .write_all(head.as_bytes())
            .await
            .expect("send request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read response");
        parse_response(&raw)
    };
    tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .expect("exporter answered within 30 s")
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("HTTP response has a header block");
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("HTTP status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked")
    });
    // Chunk sizes count bytes, and a chunk may end inside a UTF-8
    // character: decode the text only once the chunks are joined.
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Joins the chunks of a chunked body. A malformed or cut-short body fails
/// the test: a lenient decoder would hide a broken response.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|window| window == b"\r\n")
            .unwrap_or_else(|| {
                panic!(
                    "chunked body ends without its last chunk: {} bytes after {} decoded",
                    body.len(),
                    out.len()
                )
            });
        let size_line = String::from_utf8_lossy(&body[..line_end]);
        let size = usize::from_str_radix(size_line.trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size_line:?}"));
        let rest = &body[line_end + 2..];
        if size == 0 {
            return out;
        }
        assert!(
            rest.len() >= size + 2 && &rest[size..size + 2] == b"\r\n",
            "a chunk of {size} bytes is cut short or not followed by CRLF"
        );
        out.extend_from_slice(&rest[..size]);
        body = &rest[size + 2..];
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
