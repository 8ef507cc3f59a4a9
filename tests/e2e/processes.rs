//! What the end-to-end test runs on loopback: the exporter binary,
//! Prometheus and Alertmanager, an open and a closed port and a TLS server
//! to probe, and a webhook receiver that records Alertmanager's
//! notifications.

use super::http;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long Prometheus or Alertmanager may take to become ready.
const READY_LIMIT: Duration = Duration::from_secs(30);
/// Log lines, and webhook notifications, kept at most.
const MAX_RECORDS: usize = 10_000;

/// `name` in /usr/bin (Debian's packages) or else on the PATH.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let standard = Path::new("/usr/bin").join(name);
    if standard.is_file() {
        return Some(standard);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Calls `on_connection` for every connection to `listener`, on a thread of
/// its own, until dropped.
struct AcceptLoop {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AcceptLoop {
    fn spawn(
        listener: TcpListener,
        mut on_connection: impl FnMut(TcpStream) + Send + 'static,
    ) -> Self {
        // Non-blocking, so the thread sees `stop` within one nap.
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((connection, _)) => {
                        let _ = connection.set_nonblocking(false);
                        on_connection(connection);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for AcceptLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A listening loopback port that accepts and drops connections, so
/// `tcp_connect` probes never fill its backlog.
pub struct OpenPort {
    pub address: SocketAddr,
    _acceptor: AcceptLoop,
}

impl OpenPort {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the open port");
        Self {
            address: listener.local_addr().expect("local address"),
            _acceptor: AcceptLoop::spawn(listener, drop),
        }
    }
}

/// The year until which [`TlsServer`]'s certificate is valid: far enough
/// that SynackCertificateExpiringSoon has nothing to say about it.
pub const TLS_VALID_UNTIL: i32 = 2040;

/// A TLS server on loopback (tests/common/tls.rs) with a self-signed
/// certificate for 127.0.0.1, valid until [`TLS_VALID_UNTIL`], served on a
/// runtime of its own until dropped. It accepts
/// [`crate::common::ports::SERVE_CONNECTIONS`] connections.
pub struct TlsServer {
    pub address: SocketAddr,
    /// The certificate's PEM, for a module's `ca_file`.
    pub pem: String,
    _runtime: tokio::runtime::Runtime,
}

impl TlsServer {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the TLS server");
        let (address, pem) = runtime.block_on(crate::common::tls::tls_server(TLS_VALID_UNTIL));
        Self {
            address,
            pem,
            _runtime: runtime,
        }
    }
}

/// One notification Alertmanager posted: the receiver is the URL path the
/// test gave it (see `configs::derive_alertmanager_config`).
#[derive(Clone, Debug)]
pub struct Delivery {
    pub receiver: String,
    pub body: String,
}

/// A webhook receiver on loopback that records every POST and answers 200.
pub struct Webhook {
    pub address: SocketAddr,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    _acceptor: AcceptLoop,
}

impl Webhook {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the webhook");
        let address = listener.local_addr().expect("local address");
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&deliveries);
        let acceptor = AcceptLoop::spawn(listener, move |mut connection| {
            let delivery = match http::read_request(&mut connection) {
                Ok((path, body)) => Delivery {
                    receiver: path.trim_start_matches('/').to_owned(),
                    body,
                },
                Err(error) => Delivery {
                    receiver: "(unreadable request)".to_owned(),
                    body: error,
                },
            };
            http::respond_ok(&mut connection);
            let mut deliveries = recorded.lock().unwrap();
            if deliveries.len() < MAX_RECORDS {
                deliveries.push(delivery);
            }
        });
        Self {
            address,
            deliveries,
            _acceptor: acceptor,
        }
    }

    /// What Alertmanager has posted so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }
}

/// Prometheus or Alertmanager on a loopback port, logging into the test's
/// directory; killed on drop.
pub struct Server {
    child: Child,
    pub address: SocketAddr,
    log_path: PathBuf,
}

impl Server {
    /// Starts `binary args... --web.listen-address=127.0.0.1:PORT` (the
    /// flag both take) and waits until `/-/ready` answers 200.
    pub fn start(name: &str, binary: &Path, args: &[String], dir: &Path) -> Self {
        let address = crate::common::closed_port();
        let log_path = dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path).expect("create the log file");
        let child = Command::new(binary)
            .args(args)
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("{}: {error}", binary.display()));
        let mut server = Self {
            child,
            address,
            log_path,
        };
        server.wait_ready(name);
        server
    }

    fn wait_ready(&mut self, name: &str) {
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            if let Some(status) = self.exited() {
                panic!("{name} exited ({status}):\n{}", self.log());
            }
            if matches!(http::get(self.address, "/-/ready"), Ok((200, _))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} not ready within {READY_LIMIT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The exporter binary on 127.0.0.1:0; killed on drop or by
/// [`Exporter::stop`].
pub use crate::common::ExporterProcess as Exporter;
