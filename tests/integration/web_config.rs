//! `--web.config.file`: TLS, client certificates, basic auth, headers, the
//! rate limit and reloads, on loopback, with certificates made here by
//! rcgen and tokio-rustls as the client.

use crate::common;

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
    // The process's default provider: ring, the one rustls provider
    // feature in the build.
    let builder =
        ClientConfig::builder_with_protocol_versions(versions).with_root_certificates(roots);
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

    /// `GET /-/healthy` over TLS to `address`, as a client without a
    /// certificate of its own that trusts the site's CA: see [`tls_get`].
    async fn get_healthy(
        &self,
        address: SocketAddr,
    ) -> Result<(Response, CertificateDer<'static>), String> {
        tls_get(address, default_client(&self.ca), "/-/healthy").await
    }

    /// The status of `GET /-/healthy` over TLS to `address` as the holder
    /// of `identity` (a certificate and key), or why there is none.
    async fn healthy_as(
        &self,
        address: SocketAddr,
        identity: &(String, String),
    ) -> Result<u16, String> {
        let config = client(&self.ca, rustls::DEFAULT_VERSIONS, Some(identity));
        tls_get(address, config, "/-/healthy")
            .await
            .map(|(answer, _)| answer.status)
    }
}

const TLS: &str = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";

/// What Go's net/http server writes, byte for byte, on a TLS connection
/// whose first bytes are a plain-HTTP request (src/net/http/server.go,
/// `conn.serve`): no headers, and the connection closes after it.
const GO_PLAIN_HTTP_ANSWER: &str =
    "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// Sends `head` over plain TCP and reads until the server closes.
async fn plain_exchange(address: SocketAddr, head: &[u8]) -> (SocketAddr, Vec<u8>) {
    let mut plain = tokio::net::TcpStream::connect(address).await.unwrap();
    let local = plain.local_addr().unwrap();
    plain.write_all(head).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(REQUEST_LIMIT, plain.read_to_end(&mut raw))
        .await
        .expect("the server closes the connection")
        .unwrap_or_else(|error| panic!("read after {:?}: {error}", String::from_utf8_lossy(&raw)));
    (local, raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_works_and_plain_http_to_the_tls_port_gets_go_s_400() {
    let site = Site::new(TLS);
    let exporter = site.exporter().await;
    let (answer, _) = site.get_healthy(exporter.address).await.unwrap();
    assert_eq!((answer.status, answer.body.as_str()), (200, "OK\n"));

    // The request starts Go recognises, each answered as Go answers.
    for head in [
        "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "PUT /-/reload HTTP/1.0\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let (_, raw) = plain_exchange(exporter.address, head.as_bytes()).await;
        assert_eq!(
            String::from_utf8_lossy(&raw),
            GO_PLAIN_HTTP_ANSWER,
            "answer to {head:?}"
        );
    }
    // A request split over two segments, the first shorter than the five
    // bytes that tell, is answered the same.
    let mut split = tokio::net::TcpStream::connect(exporter.address)
        .await
        .unwrap();
    split.write_all(b"GE").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    split
        .write_all(b"T / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(REQUEST_LIMIT, split.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&raw), GO_PLAIN_HTTP_ANSWER);

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
    let anonymous = site.get_healthy(exporter.address).await;
    assert!(anonymous.is_err(), "{anonymous:?}");
    let stranger = Ca::new("another CA").leaf("prometheus", &["prometheus"]);
    let foreign = site.healthy_as(exporter.address, &stranger).await;
    assert!(foreign.is_err(), "{foreign:?}");
    let prometheus = site.ca.leaf("prometheus", &["prometheus"]);
    assert_eq!(
        site.healthy_as(exporter.address, &prometheus).await,
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
    let refused = site.healthy_as(exporter.address, &other).await;
    assert!(refused.is_err(), "{refused:?}");
    let allowed = site.ca.leaf("prometheus", &["prometheus.example.org"]);
    assert_eq!(site.healthy_as(exporter.address, &allowed).await, Ok(200));
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
    let (_, first) = site.get_healthy(exporter.address).await.unwrap();
    let (cert, key) = site.ca.leaf("server two", &["localhost"]);
    put(&site.dir, "server.key", &key);
    put(&site.dir, "server.crt", &cert);
    let rotated = certs(&cert).remove(0);
    assert_ne!(first, rotated);
    wait_until_served(exporter.address, &site.ca, &rotated, RELOAD_LIMIT).await;
}

/// Writes `contents` aside and renames it over `name` in `dir`, as
/// certificate managers do.
fn put(dir: &TempDir, name: &str, contents: &str) {
    let aside = format!("{name}.new");
    dir.write(&aside, contents);
    std::fs::rename(dir.join(&aside), dir.join(name)).unwrap();
}

/// Waits until `address` serves `cert`; fails the test after `limit`.
async fn wait_until_served(
    address: SocketAddr,
    ca: &Ca,
    cert: &CertificateDer<'static>,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    loop {
        let (_, served) = tls_get(address, default_client(ca), "/-/healthy")
            .await
            .unwrap();
        if served == *cert {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the old certificate is still served after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
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
                    // Back soon, to compete for the slot, but slower than
                    // the rate limit refills (100 a second for the two of
                    // them): back at once, they emptied the bucket on a
                    // quiet machine and the scrape got 429, which is the
                    // rate limit working, not a slot held.
                    stream = None;
                    tokio::time::sleep(Duration::from_millis(50)).await;
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

/// A FIFO put in place of a file. A reader stuck opening it (a read
/// without `O_NONBLOCK` waits for a writer) is let go by [`Fifo::release`]
/// and on drop, so that a failing test does not leave a thread blocked
/// for ever.
struct Fifo(PathBuf);

impl Fifo {
    fn replace(path: &std::path::Path) -> Self {
        let _ = std::fs::remove_file(path);
        let made = Command::new("mkfifo").arg(path).status();
        assert!(
            made.is_ok_and(|status| status.success()),
            "mkfifo {}",
            path.display()
        );
        Self(path.to_owned())
    }

    /// Opens the write end without blocking and closes it: a reader
    /// blocked in `open` gets the end of the file. Fails (ENXIO), harmlessly,
    /// when nobody reads.
    fn release(&self) {
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.0);
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        self.release();
    }
}

/// The adversarial run's case: a certificate path that was briefly a
/// FIFO blocked the web reload for ever (the read waited for a writer),
/// and a valid certificate put back was not served 7 s later. The FIFO
/// must be refused at once, naming the field, and the certificate put
/// back must be picked up by the next poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_is_briefly_a_fifo_does_not_stop_the_web_reloads() {
    let site = Site::new(TLS);
    let exporter = Exporter::builder()
        .web_config_file(&site.web_yml)
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = exporter.clone();
    tokio::spawn(async move {
        serving
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await;
    });
    let (_, first) = site.get_healthy(address).await.unwrap();

    let fifo = Fifo::replace(&site.dir.join("server.crt"));
    let reload = tokio::time::timeout(Duration::from_secs(5), exporter.reload_web_config()).await;
    fifo.release();
    let error = reload
        .expect("the web reload is stuck on the FIFO")
        .expect_err("a FIFO holds no certificate");
    let text = error.to_string();
    assert!(
        text.contains("tls_server_config.cert_file") && text.contains("a FIFO"),
        "{text}"
    );
    // The certificate in force is still served.
    let (_, served) = site.get_healthy(address).await.unwrap();
    assert_eq!(served, first);

    // A valid certificate put back is served from the next poll on (every
    // 3 s), with no one asking.
    let (cert, key) = site.ca.leaf("server two", &["localhost"]);
    put(&site.dir, "server.key", &key);
    put(&site.dir, "server.crt", &cert);
    let rotated = certs(&cert).remove(0);
    wait_until_served(address, &site.ca, &rotated, Duration::from_secs(10)).await;
}

/// The other half of the adversarial run's case: while the web reload
/// hung on the FIFO, SIGHUP stopped reloading the main config too, since
/// one loop ran both reloads in turn.
#[test]
fn sighup_reloads_the_main_config_while_a_web_certificate_is_a_fifo() {
    let site = Site::new(TLS);
    let config = site.dir.write(
        "synack.yml",
        "modules:\n  first:\n    prober: tcp_halfopen\n",
    );
    let (config_arg, web_yml) = (
        config.display().to_string(),
        site.web_yml.display().to_string(),
    );
    let exporter =
        ExporterProcess::start(&["--config.file", &config_arg, "--web.config.file", &web_yml]);
    let _fifo = Fifo::replace(&site.dir.join("server.crt"));
    exporter.signal("HUP");
    // Both reloads report, in either order.
    let mut seen = Vec::new();
    for needle in ["config reloaded on SIGHUP", "web config reload failed"] {
        if !seen.iter().any(|line: &String| line.contains(needle)) {
            seen.extend(exporter.logs_until(needle));
        }
    }
    let failure = seen
        .iter()
        .find(|line| line.contains("web config reload failed"))
        .unwrap();
    assert!(
        failure.contains("tls_server_config.cert_file") && failure.contains("a FIFO"),
        "{failure}"
    );
    // And the next SIGHUP still reloads the main config.
    std::fs::write(&config, "modules:\n  second:\n    prober: tcp_connect\n").unwrap();
    exporter.signal("HUP");
    exporter.logs_until("config reloaded on SIGHUP");
}

/// `key_file: /dev/zero` was read until memory ran out. Run in a child
/// with 1 GiB of address space and a deadline, so that such a read fails
/// this test rather than the machine.
#[test]
fn a_key_file_that_is_a_device_is_refused_naming_the_field_and_the_limit() {
    let site = Site::new("tls_server_config:\n  cert_file: server.crt\n  key_file: /dev/zero\n");
    let web_yml = site.web_yml.display().to_string();
    let finished = common::run_within(
        Command::new("bash").args([
            "-c",
            "ulimit -v 1048576 && exec \"$@\"",
            "bash",
            BINARY,
            "--config.check",
            "--web.config.file",
            &web_yml,
        ]),
        REQUEST_LIMIT,
    );
    assert_eq!(finished.code(), Some(1), "{}", finished.output());
    let stderr = finished.stderr;
    for needle in [
        "tls_server_config.key_file",
        "/dev/zero",
        "a device, not a regular file",
        "at most 4 MiB",
    ] {
        assert!(stderr.contains(needle), "{needle} in {stderr}");
    }
}

/// A file over the limit is refused before it is read: sparse, so that
/// it takes no disk space, but a read would go through every byte.
#[test]
fn a_certificate_file_over_the_limit_is_refused_naming_the_field_and_the_limit() {
    let site = Site::new(TLS);
    let limit = 4 * 1024 * 1024;
    std::fs::File::create(site.dir.join("server.crt"))
        .unwrap()
        .set_len(limit + 1)
        .unwrap();
    let error = Exporter::builder()
        .web_config_file(&site.web_yml)
        .check_config()
        .expect_err("over the limit");
    let text = error.to_string();
    for needle in [
        "tls_server_config.cert_file",
        &format!("{} bytes", limit + 1),
        "4 MiB",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
}

/// A certificate, key or client CA that is not PEM is refused naming the
/// field and what is missing, in the words the web config has always used.
#[test]
fn pem_that_holds_nothing_usable_is_refused_naming_the_field() {
    let not_pem = "-----BEGIN CERTIFICATE-----\nnot base64\n";
    for (contents, yaml, says) in [
        (
            "",
            TLS,
            "field `tls_server_config.cert_file`: holds no PEM CERTIFICATE block",
        ),
        (
            not_pem,
            TLS,
            "field `tls_server_config.cert_file`: not PEM certificates: ",
        ),
        (
            "",
            "tls_server_config:\n  cert_file: ca.crt\n  key_file: server.crt\n",
            "field `tls_server_config.key_file`: holds no PEM private key block (BEGIN PRIVATE KEY, \
             BEGIN RSA PRIVATE KEY or BEGIN EC PRIVATE KEY)",
        ),
        (
            "",
            "tls_server_config:\n  cert_file: ca.crt\n  key_file: server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: server.crt\n",
            "field `tls_server_config.client_ca_file`: holds no PEM CERTIFICATE block",
        ),
    ] {
        let site = Site::new(yaml);
        site.dir.write("server.crt", contents);
        let error = Exporter::builder()
            .web_config_file(&site.web_yml)
            .check_config()
            .expect_err(says);
        let text = error.to_string();
        assert!(text.contains(says), "{says} in {text}");
    }
}

/// A TLS record of a ClientHello too short to hold one: what a broken or
/// hostile client sends.
const MALFORMED_CLIENT_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x00, 0x08, // handshake record of 8 bytes
    0x01, 0x00, 0x00, 0x04, // ClientHello of 4 bytes
    0x03, 0x03, 0x00, 0x00, // a version, then a random cut short
];

/// A TLS connection with `config` that asks for `/-/healthy` if its
/// handshake lets it; the client's own address, which the server's log
/// names.
async fn tls_attempt(address: SocketAddr, config: Arc<ClientConfig>) -> SocketAddr {
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let server = ServerName::try_from("localhost").unwrap();
    if let Ok(Ok(mut tls)) =
        tokio::time::timeout(REQUEST_LIMIT, connector.connect(server, tcp)).await
    {
        let head = "GET /-/healthy HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        let _ = tls.write_all(head.as_bytes()).await;
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(REQUEST_LIMIT, tls.read_to_end(&mut raw)).await;
    }
    local
}

/// Each kind of failed handshake is logged at warn with the client's
/// address, as Go logs `http: TLS handshake error from ADDR: ...`; a
/// client that gets in is not.
#[test]
fn handshake_failures_are_logged_with_the_client_address() {
    let site = Site::new(&format!(
        "{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
         client_allowed_sans: [prometheus.example.org]\n  min_version: TLS13\n"
    ));
    let web_yml = site.web_yml.display().to_string();
    let exporter = ExporterProcess::start(&["--web.config.file", &web_yml]);
    let address = exporter.address;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tls13: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    let allowed = site.ca.leaf("prometheus", &["prometheus.example.org"]);
    let other = site.ca.leaf("grafana", &["grafana.example.org"]);

    let welcome = runtime.block_on(tls_attempt(
        address,
        client(&site.ca, tls13, Some(&allowed)),
    ));
    let cases = [
        (
            "plain HTTP",
            runtime
                .block_on(plain_exchange(address, b"GET / HTTP/1.1\r\n\r\n"))
                .0,
            "client sent an HTTP request to an HTTPS server",
        ),
        (
            "a malformed ClientHello",
            runtime
                .block_on(plain_exchange(address, MALFORMED_CLIENT_HELLO))
                .0,
            "corrupt message",
        ),
        (
            "no client certificate",
            runtime.block_on(tls_attempt(address, client(&site.ca, tls13, None))),
            "peer sent no certificates",
        ),
        (
            "a SAN not allowed",
            runtime.block_on(tls_attempt(address, client(&site.ca, tls13, Some(&other)))),
            "is in client_allowed_sans",
        ),
        (
            "TLS 1.2 under min_version TLS13",
            runtime.block_on(tls_attempt(
                address,
                client(&site.ca, &[&rustls::version::TLS12], Some(&allowed)),
            )),
            "peer is incompatible",
        ),
    ];
    // The lines may come in another order than the connections.
    let mut seen: Vec<String> = Vec::new();
    for (what, client, reason) in cases {
        let needle = format!("client={client} ");
        if !seen.iter().any(|line| line.contains(&needle)) {
            seen.extend(exporter.logs_until(&needle));
        }
        let line = seen.iter().find(|line| line.contains(&needle)).unwrap();
        for needle in ["level=warn", "msg=\"TLS handshake error\"", reason] {
            assert!(line.contains(needle), "{what}: {needle} in {line}");
        }
    }
    assert!(
        !exporter.log().contains(&format!("client={welcome}")),
        "a client that got in is not logged: {}",
        exporter.log()
    );
}

/// The value of `key=` in a logfmt line.
fn logfmt_number(line: &str, key: &str) -> Option<u64> {
    let (_, rest) = line.split_once(&format!("{key}="))?;
    rest.split_whitespace().next()?.parse().ok()
}

/// A scanner's flood of bad handshakes: at most 10 lines at once and one
/// per 6 s after, then a line with the count of those not logged, so that
/// every failure is accounted for.
#[test]
fn a_flood_of_bad_handshakes_is_logged_within_the_bound_and_counted() {
    const FLOOD: u64 = 300;
    const BURST: u64 = 10;
    const INTERVAL: Duration = Duration::from_secs(6);
    let site = Site::new(TLS);
    let web_yml = site.web_yml.display().to_string();
    let exporter = ExporterProcess::start(&["--web.config.file", &web_yml]);
    let address = exporter.address;
    let started = Instant::now();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        for _ in 0..FLOOD {
            plain_exchange(address, MALFORMED_CLIENT_HELLO).await;
        }
    });
    let flooded_for = started.elapsed();
    // The summary comes once a token is back, LOG_INTERVAL after the
    // first failure left out at the latest.
    let mut lines = exporter.logs_until("were not logged");
    lines.extend(exporter.new_lines());
    let errors: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains("msg=\"TLS handshake error"))
        .collect();
    let bound = BURST + flooded_for.as_secs() / INTERVAL.as_secs() + 1;
    assert!(
        (BURST..=bound).contains(&(errors.len() as u64)),
        "{} lines for {FLOOD} failures in {flooded_for:?}, bound {bound}: {errors:#?}",
        errors.len()
    );
    let not_logged: u64 = lines
        .iter()
        .filter_map(|line| logfmt_number(line, "not_logged"))
        .sum();
    assert_eq!(
        errors.len() as u64 + not_logged,
        FLOOD,
        "every failure is logged or counted: {lines:#?}"
    );
}

/// CPU seconds (user and system) that process `pid` has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The fields after the command name, which is in parentheses and may
    // hold spaces: utime and stime are the 12th and 13th of them.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on every Linux that Rust targets.
    ticks as f64 / 100.0
}

/// Connections that send the start of a plain-HTTP request line ("GE",
/// which could still be `GET /`) and then nothing cost the exporter no
/// CPU while it waits for the rest (at most the header timeout). Peeking
/// again every 10 ms, 300 such connections kept it at about a fifth of a
/// core (900 at 57 %), each for 10 s, and a client that reconnects keeps
/// that up as long as it likes; idle connections cost 0.2 %.
#[test]
fn half_sent_request_lines_on_the_tls_port_cost_no_cpu_while_they_wait() {
    const CLIENTS: usize = 300;
    common::ensure_open_file_limit(CLIENTS as u64 + 64);
    let site = Site::new(TLS);
    let web_yml = site.web_yml.display().to_string();
    let exporter = ExporterProcess::start(&["--web.config.file", &web_yml]);
    let mut stalled = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let mut client = std::net::TcpStream::connect(exporter.address).unwrap();
        std::io::Write::write_all(&mut client, b"GE").unwrap();
        stalled.push(client);
    }
    // Past the connections' start-up; well within the 10 s header timeout.
    std::thread::sleep(Duration::from_millis(500));
    let (before, started) = (cpu_seconds(exporter.pid()), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let used = (cpu_seconds(exporter.pid()) - before) / started.elapsed().as_secs_f64();
    assert!(
        used < 0.05,
        "{CLIENTS} stalled connections kept the exporter at {:.1} % of a core",
        used * 100.0
    );
    // They are still answered when the rest comes.
    for client in stalled.iter_mut().take(3) {
        std::io::Write::write_all(client, b"T / HTTP/1.1\r\n\r\n").unwrap();
        client.set_read_timeout(Some(REQUEST_LIMIT)).unwrap();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(client, &mut raw).unwrap();
        assert_eq!(String::from_utf8_lossy(&raw), GO_PLAIN_HTTP_ANSWER);
    }
}
