//! `--web.config.file`: TLS, client certificates, basic auth, headers, the
//! rate limit and reloads, on loopback, with certificates made here by
//! rcgen and tokio-rustls as the client.

mod common;

use common::exporter_process::BINARY;
use common::http::{basic, parse_response};
use common::{ExporterProcess, Response, TempDir, TestExporter, closed_port, request, sample};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use synack_exporter::Exporter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one TLS request may take.
const REQUEST_LIMIT: Duration = Duration::from_secs(20);
/// How long a change to the web config's files may take to be seen: the
/// poll runs every 3 s.
const RELOAD_LIMIT: Duration = Duration::from_secs(20);

/// A certificate authority made for one test.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `sans` (and the common name `name`) and its key,
    /// both PEM.
    fn leaf(&self, name: &str, sans: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|san| (*san).to_owned()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn certs(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A TLS client trusting `ca`, of `versions`, with a client certificate
/// if `identity` is given.
fn client(
    ca: &Ca,
    versions: &[&'static rustls::SupportedProtocolVersion],
    identity: Option<&(String, String)>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in certs(&ca.pem) {
        roots.add(cert).unwrap();
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
    Arc::new(match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                certs(cert),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    })
}

fn default_client(ca: &Ca) -> Arc<ClientConfig> {
    client(ca, rustls::DEFAULT_VERSIONS, None)
}

/// The status of `GET /-/healthy` over TLS as the holder of `identity`
/// (a certificate and key), or why there is none.
async fn healthy_as(
    address: SocketAddr,
    ca: &Ca,
    identity: &(String, String),
) -> Result<u16, String> {
    let config = client(ca, rustls::DEFAULT_VERSIONS, Some(identity));
    tls_get(address, config, "/-/healthy")
        .await
        .map(|(answer, _)| answer.status)
}

/// `GET path` over TLS to `localhost` at `address`; the answer and the
/// server's certificate, or why there is none.
async fn tls_get(
    address: SocketAddr,
    config: Arc<ClientConfig>,
    path: &str,
) -> Result<(Response, CertificateDer<'static>), String> {
    let work = async {
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|error| format!("connect: {error}"))?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let mut tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .map_err(|error| format!("handshake: {error}"))?;
        let server_cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        tls.write_all(head.as_bytes())
            .await
            .map_err(|error| format!("send: {error}"))?;
        let mut raw = Vec::new();
        // A TLS 1.3 server refuses a client certificate after the
        // handshake, so the refusal shows up here.
        tls.read_to_end(&mut raw)
            .await
            .map_err(|error| format!("read: {error}"))?;
        Ok((parse_response(&raw)?, server_cert))
    };
    tokio::time::timeout(REQUEST_LIMIT, work)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_LIMIT:?}")))
}

/// A directory with a CA, a server certificate for `localhost` and
/// `web.yml` holding `yaml` (which may name `server.crt`, `server.key`
/// and `ca.crt`, relative to it).
struct Site {
    dir: TempDir,
    ca: Ca,
    web_yml: PathBuf,
}

impl Site {
    fn new(yaml: &str) -> Self {
        let dir = TempDir::new("web-config");
        let ca = Ca::new("test CA");
        let (cert, key) = ca.leaf("server one", &["localhost"]);
        dir.write("server.crt", &cert);
        dir.write("server.key", &key);
        dir.write("ca.crt", &ca.pem);
        let web_yml = dir.write("web.yml", yaml);
        Self { dir, ca, web_yml }
    }

    async fn exporter(&self) -> TestExporter {
        TestExporter::embedded(Exporter::builder().web_config_file(&self.web_yml)).await
    }
}

const TLS: &str = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_works_and_plain_http_to_the_tls_port_fails_cleanly() {
    let site = Site::new(TLS);
    let exporter = site.exporter().await;
    let (answer, _) = tls_get(exporter.address, default_client(&site.ca), "/-/healthy")
        .await
        .unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "OK\n"));

    // Plain HTTP: no HTTP answer, the connection closes, within the limit.
    let mut plain = tokio::net::TcpStream::connect(exporter.address)
        .await
        .unwrap();
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(REQUEST_LIMIT, plain.read_to_end(&mut raw))
        .await
        .expect("the server closes a plain-HTTP connection");
    assert!(
        !raw.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    // And goes on serving TLS.
    let (answer, _) = tls_get(exporter.address, default_client(&site.ca), "/metrics")
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_tls13_refuses_a_tls12_client() {
    let site = Site::new(&format!("{TLS}  min_version: TLS13\n"));
    let exporter = site.exporter().await;
    let tls12 = client(&site.ca, &[&rustls::version::TLS12], None);
    let error = tls_get(exporter.address, tls12, "/-/healthy")
        .await
        .unwrap_err();
    assert!(error.starts_with("handshake"), "{error}");
    let tls13 = client(&site.ca, &[&rustls::version::TLS13], None);
    assert_eq!(
        tls_get(exporter.address, tls13, "/-/healthy")
            .await
            .unwrap()
            .0
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_refuses_a_client_without_a_certificate_and_accepts_one_signed_by_the_ca() {
    let site = Site::new(&format!(
        "{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
    ));
    let exporter = site.exporter().await;
    let anonymous = tls_get(exporter.address, default_client(&site.ca), "/-/healthy").await;
    assert!(anonymous.is_err(), "{anonymous:?}");
    let stranger = Ca::new("another CA").leaf("prometheus", &["prometheus"]);
    let foreign = healthy_as(exporter.address, &site.ca, &stranger).await;
    assert!(foreign.is_err(), "{foreign:?}");
    let prometheus = site.ca.leaf("prometheus", &["prometheus"]);
    assert_eq!(
        healthy_as(exporter.address, &site.ca, &prometheus).await,
        Ok(200)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_allowed_sans_refuses_a_certificate_with_another_san() {
    let site = Site::new(&format!(
        "{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
         client_allowed_sans: [prometheus.example.org]\n"
    ));
    let exporter = site.exporter().await;
    let other = site.ca.leaf("other", &["grafana.example.org"]);
    let refused = healthy_as(exporter.address, &site.ca, &other).await;
    assert!(refused.is_err(), "{refused:?}");
    let allowed = site.ca.leaf("prometheus", &["prometheus.example.org"]);
    assert_eq!(
        healthy_as(exporter.address, &site.ca, &allowed).await,
        Ok(200)
    );
}

/// rustls asks the verifier only about certificates that come: under a
/// mode where a client may send none, `client_allowed_sans` would let
/// anonymous clients in, so such a file is refused, as exporter-toolkit
/// refuses it; with a mode that requires a certificate it loads.
#[test]
fn client_allowed_sans_needs_a_mode_that_requires_a_certificate() {
    for (mode, loads) in [
        ("VerifyClientCertIfGiven", false),
        ("RequestClientCert", false),
        ("RequireAnyClientCert", true),
        ("RequireAndVerifyClientCert", true),
    ] {
        let site = Site::new(&format!(
            "{TLS}  client_auth_type: {mode}\n  client_ca_file: ca.crt\n  \
             client_allowed_sans: [prometheus.example.org]\n"
        ));
        let checked = Exporter::builder()
            .web_config_file(&site.web_yml)
            .check_config();
        match (checked, loads) {
            (Ok(()), true) => {}
            (Err(error), false) => {
                let text = error.to_string();
                assert!(
                    text.contains("client_allowed_sans")
                        && text.contains("RequireAndVerifyClientCert"),
                    "{mode}: {text}"
                );
            }
            (result, _) => panic!("{mode}: want loads={loads}, got {result:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_after_the_file_changes() {
    let site = Site::new(TLS);
    let exporter = site.exporter().await;
    let (_, first) = tls_get(exporter.address, default_client(&site.ca), "/-/healthy")
        .await
        .unwrap();
    let (cert, key) = site.ca.leaf("server two", &["localhost"]);
    // Written aside and renamed over, as certificate managers do.
    std::fs::write(site.dir.join("server.key.new"), key).unwrap();
    std::fs::write(site.dir.join("server.crt.new"), &cert).unwrap();
    std::fs::rename(site.dir.join("server.key.new"), site.dir.join("server.key")).unwrap();
    std::fs::rename(site.dir.join("server.crt.new"), site.dir.join("server.crt")).unwrap();
    let rotated = certs(&cert).remove(0);
    assert_ne!(first, rotated);
    let deadline = Instant::now() + RELOAD_LIMIT;
    loop {
        let (_, served) = tls_get(exporter.address, default_client(&site.ca), "/-/healthy")
            .await
            .unwrap();
        if served == rotated {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old certificate is still served after {RELOAD_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn users_yaml() -> String {
    // Cost 4, the lowest, keeps the test fast; the cost changes nothing else.
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    format!("basic_auth_users:\n  alice: '{hash}'\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_guards_probe_metrics_and_reload() {
    let site = Site::new(&users_yaml());
    let exporter = site.exporter().await;
    let probe = format!("/probe?target={}&module=tcp_halfopen", closed_port());
    let right = basic("alice", "s3cret");
    for (method, path) in [
        ("GET", probe.as_str()),
        ("GET", "/metrics"),
        ("POST", "/-/reload"),
    ] {
        for wrong in [
            None,
            Some(basic("alice", "wrong")),
            Some(basic("mallory", "s3cret")),
        ] {
            let headers: Vec<(&str, &str)> = wrong
                .iter()
                .map(|value| ("Authorization", value.as_str()))
                .collect();
            let answer = request(exporter.address, method, path, &headers).await;
            assert_eq!(answer.status, 401, "{method} {path} with {wrong:?}");
            assert_eq!(answer.header("WWW-Authenticate"), Some("Basic"));
        }
        let answer = request(
            exporter.address,
            method,
            path,
            &[("Authorization", right.as_str())],
        )
        .await;
        assert_eq!(answer.status, 200, "{method} {path}: {}", answer.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_right_password_does_not_let_a_wrong_one_in() {
    let site = Site::new(&users_yaml());
    let exporter = site.exporter().await;
    let right = basic("alice", "s3cret");
    let wrong = basic("alice", "s3cret-not");
    for _ in 0..2 {
        let answer = exporter
            .get_with("/-/healthy", &[("Authorization", &right)])
            .await;
        assert_eq!(answer.status, 200);
        let answer = exporter
            .get_with("/-/healthy", &[("Authorization", &wrong)])
            .await;
        assert_eq!(answer.status, 401, "the cache let a wrong password in");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_answers_429_and_headers_are_added() {
    let site = Site::new(
        "rate_limit: {interval: 1m, burst: 2}\nhttp_server_config:\n  headers:\n    \
         X-Frame-Options: deny\n    Content-Security-Policy: \"default-src 'self'\"\n",
    );
    let exporter = site.exporter().await;
    for _ in 0..2 {
        let answer = exporter.get("/-/healthy").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("X-Frame-Options"), Some("deny"));
        assert_eq!(
            answer.header("Content-Security-Policy"),
            Some("default-src 'self'")
        );
    }
    let answer = exporter.get("/-/healthy").await;
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert_eq!(answer.header("X-Frame-Options"), Some("deny"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_web_config_later_keeps_the_old_settings_and_sets_the_metric() {
    let site = Site::new(&users_yaml());
    let exporter = site.exporter().await;
    let right = basic("alice", "s3cret");
    let metrics = exporter
        .get_with("/metrics", &[("Authorization", &right)])
        .await
        .body;
    assert_eq!(
        sample(
            &metrics,
            "synack_exporter_web_config_last_reload_successful"
        ),
        Some(1.0)
    );
    std::fs::write(&site.web_yml, "basic_auth_users: {}\nrate_limt: {}\n").unwrap();
    let deadline = Instant::now() + RELOAD_LIMIT;
    loop {
        let metrics = exporter
            .get_with("/metrics", &[("Authorization", &right)])
            .await;
        assert_eq!(metrics.status, 200, "the old users still apply");
        if sample(
            &metrics.body,
            "synack_exporter_web_config_last_reload_successful",
        ) == Some(0.0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the failed reload is not shown after {RELOAD_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(exporter.get("/metrics").await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_is_served() {
    let exporter = Exporter::builder().build().unwrap();
    let mut listeners = Vec::new();
    let mut addresses = Vec::new();
    for _ in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addresses.push(listener.local_addr().unwrap());
        listeners.push(listener);
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        exporter
            .serve_all(listeners, async {
                let _ = stopped.await;
            })
            .await;
    });
    for address in addresses {
        assert_eq!(request(address, "GET", "/-/healthy", &[]).await.status, 200);
    }
    let _ = stop.send(());
    tokio::time::timeout(REQUEST_LIMIT, served)
        .await
        .expect("serve_all returns after shutdown")
        .unwrap();
}

#[test]
fn a_bad_web_config_at_start_up_is_a_located_error() {
    let site = Site::new(&format!("{TLS}  min_version: TLS10\n"));
    let web_yml = site.web_yml.display().to_string();
    for args in [
        vec![
            "--web.listen-address",
            "127.0.0.1:0",
            "--web.config.file",
            &web_yml,
        ],
        vec!["--config.check", "--web.config.file", &web_yml],
    ] {
        let finished = common::run_within(Command::new(BINARY).args(&args), REQUEST_LIMIT);
        assert_eq!(finished.code(), Some(1), "{args:?}: {}", finished.output());
        let stderr = finished.stderr;
        assert_eq!(
            stderr.matches("TLS10").count(),
            1,
            "{args:?}: the error once: {stderr}"
        );
        for needle in [
            format!("{web_yml}:4:"),
            "tls_server_config.min_version".to_owned(),
            "rustls implements only TLS 1.2 and 1.3".to_owned(),
        ] {
            assert!(stderr.contains(&needle), "{args:?}: {needle} in {stderr}");
        }
    }
}

#[test]
fn sighup_rereads_the_web_config_and_two_addresses_are_served() {
    let site = Site::new(&users_yaml());
    let web_yml = site.web_yml.display().to_string();
    let exporter = ExporterProcess::start(&[
        "--web.listen-address",
        "127.0.0.1:0",
        "--web.config.file",
        &web_yml,
    ]);
    let second = exporter
        .logs_until("synack_exporter listening")
        .iter()
        .find_map(|line| common::listen_address(line))
        .expect("a second address is announced");
    assert_ne!(second, exporter.address);
    std::fs::write(&site.web_yml, "tls_server_config: {}\n").unwrap();
    exporter.signal("HUP");
    let lines = exporter.logs_until("web config reload failed");
    let failure = lines.last().unwrap();
    assert!(failure.contains("tls_server_config.cert_file"), "{failure}");
}

/// Sends `GET path` on `stream` without `Connection: close`, as a
/// keep-alive client does, and reads what comes within 5 s: the answer's
/// bytes, and whether the server then closed the connection.
async fn keep_alive_get(
    stream: &mut tokio::net::TcpStream,
    path: &str,
    headers: &[(&str, &str)],
) -> (Vec<u8>, bool) {
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return (Vec::new(), true);
    }
    let mut raw = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return (raw, true),
            Ok(Ok(read)) => raw.extend_from_slice(&buffer[..read]),
            // Still open when the time is up: kept alive.
            Err(_) => return (raw, false),
        }
        // A whole small answer read: give the server a moment to close.
        if raw.windows(4).any(|window| window == b"\r\n\r\n") {
            let mut more = [0u8; 4096];
            return match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut more))
                .await
            {
                Ok(Ok(0) | Err(_)) => (raw, true),
                Ok(Ok(read)) => {
                    raw.extend_from_slice(&more[..read]);
                    (raw, false)
                }
                Err(_) => (raw, false),
            };
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_of_the_gate_close_the_connection() {
    let site = Site::new(&format!(
        "{}rate_limit: {{interval: 1h, burst: 1}}\n",
        users_yaml()
    ));
    let exporter = site.exporter().await;
    // The first request takes the one token and is refused by basic
    // auth; the second is over the rate limit.
    for (status, what) in [(401, "no credentials"), (429, "over the rate limit")] {
        let mut stream = tokio::net::TcpStream::connect(exporter.address)
            .await
            .unwrap();
        let (raw, closed) = keep_alive_get(&mut stream, "/metrics", &[]).await;
        let answer = parse_response(&raw).unwrap();
        assert_eq!(answer.status, status, "{what}: {}", answer.body);
        assert_eq!(answer.header("Connection"), Some("close"), "{what}");
        assert!(closed, "{what}: the connection stays open after a refusal");
    }
}

/// The review's abuse: clients sending refused requests on keep-alive
/// connections held every `--web.max-connections` slot, since each answer
/// restarted the header timeout, and a legitimate scrape waited in the
/// backlog for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_abusers_do_not_hold_the_connection_slots() {
    const MAX: usize = 2;
    let site = Site::new(&format!(
        "{}rate_limit: {{interval: 10ms, burst: 100}}\n",
        users_yaml()
    ));
    let exporter = TestExporter::embedded(
        Exporter::builder()
            .web_config_file(&site.web_yml)
            .max_connections(MAX),
    )
    .await;
    let address = exporter.address;
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut abusers = tokio::task::JoinSet::new();
    for _ in 0..MAX {
        let answered = Arc::clone(&answered);
        let stop = Arc::clone(&stop);
        abusers.spawn(async move {
            let mut stream = None;
            let until = Instant::now() + Duration::from_secs(30);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < until {
                let connection = match &mut stream {
                    Some(connection) => connection,
                    None => match tokio::net::TcpStream::connect(address).await {
                        Ok(connection) => stream.insert(connection),
                        Err(_) => continue,
                    },
                };
                // No credentials: refused at once, without bcrypt.
                let (raw, closed) = keep_alive_get(connection, "/metrics", &[]).await;
                if raw.starts_with(b"HTTP/1.1 ") {
                    answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                if closed {
                    // Back at once, to compete for the slot.
                    stream = None;
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }
    // The abusers have the slots.
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered.load(std::sync::atomic::Ordering::SeqCst) < MAX {
        assert!(Instant::now() < deadline, "the abusers were never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let right = basic("alice", "s3cret");
    let started = Instant::now();
    let scrape = tokio::time::timeout(Duration::from_secs(5), async {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let head = format!(
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: {right}\r\n\
             Connection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        parse_response(&raw)
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let answer = scrape
        .unwrap_or_else(|_| {
            panic!("the scrape was not served within 5 s: the abusers hold the connection slots")
        })
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(started.elapsed() < Duration::from_secs(5));
    while abusers.join_next().await.is_some() {}
}
