//! Side by side with the real blackbox_exporter (issue 20 item 7): Debian's
//! `prometheus-blackbox-exporter` (0.23) and ours read the same
//! `blackbox.yml` and probe the same loopback servers this test starts: TLS
//! servers with certificates the test makes (valid through a test CA,
//! expired, wrong name, self-signed), an SSH-like banner server, an
//! SMTP-like server with STARTTLS, a server with the wrong banner, a closed
//! port. For every module × target both `/probe` answers are parsed and
//! compared: `probe_success` and every series blackbox writes (name,
//! labels, value; durations by presence only), with the series only ours
//! writes named in [`OURS_ONLY`] and the differences of 0.23 in
//! [`VERSION_NOTES`]. The comparison table is printed for the closing note.

use super::common::{self, ExporterProcess, TempDir, serve};
use super::processes::find_binary;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

/// How long blackbox_exporter may take to answer on its port.
const READY_LIMIT: Duration = Duration::from_secs(20);
/// How long one `/probe` may take (the modules' timeout is 2 s).
const PROBE_LIMIT: Duration = Duration::from_secs(15);

/// Series only ours writes (prefixes of names): our reasons, kernel
/// facts, attempts, and the TLS cipher blackbox writes for `http` only.
const OURS_ONLY: [&str; 6] = [
    "probe_failure_reason",
    "probe_tcp_",
    "probe_attempts",
    "probe_tls_cipher_info",
    "probe_failed_due_to_bytes",
    "probe_healthy",
];

/// Known differences of Debian's 0.23 from 0.28 (which ours follows):
/// (series, what differs). Applied in [`compare`].
const VERSION_NOTES: [(&str, &str); 2] = [
    (
        "probe_ssl_last_chain_info",
        "0.23 has no serialnumber label: compared without it",
    ),
    (
        "probe_failed_due_to_regex",
        "0.23 writes it for every tcp probe, also on a refused port, as ours does; 0.28 only once connected: compared as 0.23",
    ),
];

/// Series whose value is a duration or a time of now: compared by presence.
fn by_presence(name: &str) -> bool {
    name == "probe_duration_seconds" || name == "probe_dns_lookup_time_seconds"
}

#[test]
fn blackbox_exporter_and_ours_agree_on_the_same_blackbox_yml() {
    let Some(blackbox) = find_binary("prometheus-blackbox-exporter") else {
        common::skip_or_fail("prometheus-blackbox-exporter (Debian package)");
        return;
    };
    let dir = TempDir::new("blackbox-side-by-side");
    let servers = Servers::start(&dir);
    let config = dir.join("blackbox.yml");
    std::fs::write(
        &config,
        blackbox_yml(&dir.join("ca.pem").display().to_string()),
    )
    .expect("write blackbox.yml");
    let config = config.display().to_string();
    let theirs = Blackbox::start(&blackbox, &config);
    let ours = ExporterProcess::start(&["--config.file", &config]);

    let mut failures = Vec::new();
    let mut table = vec![(
        "module".to_owned(),
        "target".to_owned(),
        "blackbox 0.23".to_owned(),
        "ours".to_owned(),
        "series compared".to_owned(),
    )];
    // Concurrently (most failing cases wait for the 2 s module timeout),
    // one thread per case, each bounded by PROBE_LIMIT per request.
    let cases = cases();
    let answers: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(module, target)| {
                let query = format!("/probe?module={module}&target={}", servers.address(target));
                let (theirs, ours) = (theirs.address, ours.address);
                scope.spawn(move || (probe(theirs, &query), probe(ours, &query)))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("probe thread"))
            .collect()
    });
    for (&(module, target), (theirs, ours)) in cases.iter().zip(answers) {
        let (theirs, ours) = match (theirs, ours) {
            (Ok(theirs), Ok(ours)) => (theirs, ours),
            (theirs, ours) => {
                failures.push(format!(
                    "{module} {target}: blackbox {theirs:?}, ours {ours:?}"
                ));
                continue;
            }
        };
        let success = |series: &[Series]| {
            series
                .iter()
                .find(|series| series.name == "probe_success")
                .map_or("absent".to_owned(), |series| series.value.clone())
        };
        table.push((
            module.to_owned(),
            target.to_owned(),
            success(&theirs),
            success(&ours),
            theirs.len().to_string(),
        ));
        // 0.23 has no serialnumber: ours is checked against the certificate.
        if target.starts_with("tls_valid") && success(&ours) == "1" && module.starts_with("tls_") {
            let serial = ours
                .iter()
                .find(|series| series.name == "probe_ssl_last_chain_info")
                .and_then(|series| series.labels.get("serialnumber"));
            if serial.map(String::as_str) != Some("f1e2") {
                failures.push(format!(
                    "{module} {target}: serialnumber {serial:?}, want f1e2 (DER 00 f1 e2)"
                ));
            }
        }
        for difference in compare(&theirs, &ours) {
            failures.push(format!("{module} {target}: {difference}"));
        }
    }
    for (module, target, theirs, ours, compared) in &table {
        println!("| {module:<19} | {target:<17} | {theirs:<13} | {ours:<4} | {compared:<15} |");
    }
    println!("version notes (0.23 vs 0.28/ours):");
    for (series, note) in VERSION_NOTES {
        println!("  {series}: {note}");
    }
    assert!(
        failures.is_empty(),
        "{} differences:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The modules of [`blackbox_yml`] and the servers of [`Servers`]: every
/// module is probed on every target.
const MODULES: [&str; 7] = [
    "tcp_connect",
    "tcp_connect_default",
    "ssh_banner",
    "echo_expansion",
    "smtp_starttls",
    "tls_connect",
    "tls_insecure",
];
const TARGETS: [&str; 13] = [
    "tls_valid",
    "tls_expired",
    "tls_wrong_name",
    "tls_self_signed",
    "ssh",
    "echo",
    "smtp",
    "wrong_banner",
    "wrong_banner_open",
    "silent",
    "closed",
    "ssh_by_name",
    "tls_valid_by_name",
];

/// Every module × target.
fn cases() -> Vec<(&'static str, &'static str)> {
    MODULES
        .iter()
        .flat_map(|module| TARGETS.iter().map(move |target| (*module, *target)))
        .collect()
}

/// One blackbox.yml in the subset 0.23 reads (design §1: no `ca`, no
/// `expect_bytes`, no `labels`), every module on IPv4 but
/// `tcp_connect_default`, which keeps blackbox's default (ip6, falling
/// back to ip4): on `localhost` it takes ::1 where /etc/hosts has it (and
/// is refused there: the servers are on 127.0.0.1 only), else 127.0.0.1.
fn blackbox_yml(ca_file: &str) -> String {
    format!(
        r#"modules:
  tcp_connect:
    prober: tcp
    timeout: 2s
    tcp:
      preferred_ip_protocol: ip4
  tcp_connect_default:
    prober: tcp
    timeout: 2s
  ssh_banner:
    prober: tcp
    timeout: 2s
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - expect: "^SSH-2.0-"
        - send: "SSH-2.0-blackbox-ssh-check"
  echo_expansion:
    prober: tcp
    timeout: 2s
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - expect: "^SSH-2.0-([^ ]+)"
          send: "HELLO ${{1}}"
        - expect: "^ECHO HELLO OpenSSH_9.6$"
        - send: "LATER ${{1}}"
        - expect: "^ECHO LATER \\$\\{{1\\}}$"
  smtp_starttls:
    prober: tcp
    timeout: 2s
    tcp:
      preferred_ip_protocol: ip4
      tls_config:
        ca_file: "{ca_file}"
      query_response:
        - expect: "^220 ([^ ]+) ESMTP (.+)$"
        - send: "EHLO prober\r"
        - expect: "^250-STARTTLS"
        - send: "STARTTLS\r"
        - expect: "^220"
        - starttls: true
        - send: "EHLO prober\r"
        - expect: "^250-AUTH"
        - send: "QUIT\r"
  tls_connect:
    prober: tcp
    timeout: 2s
    tcp:
      preferred_ip_protocol: ip4
      tls: true
      tls_config:
        ca_file: "{ca_file}"
  tls_insecure:
    prober: tcp
    timeout: 2s
    tcp:
      preferred_ip_protocol: ip4
      tls: true
      tls_config:
        insecure_skip_verify: true
"#
    )
}

// ---------------------------------------------------------------------------
// Comparing.

/// One sample of the text format.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: String,
}

/// What differs between blackbox's series and ours, in words.
fn compare(theirs: &[Series], ours: &[Series]) -> Vec<String> {
    let mut differences = Vec::new();
    let normalise = |series: &Series| {
        let mut series = series.clone();
        if series.name == "probe_ssl_last_chain_info" {
            series.labels.remove("serialnumber");
        }
        series
    };
    let ours: Vec<Series> = ours.iter().map(normalise).collect();
    for their in theirs {
        let found = ours
            .iter()
            .find(|our| our.name == their.name && our.labels == their.labels);
        match found {
            None => differences.push(format!("ours lacks {their:?}")),
            Some(_) if by_presence(&their.name) => {}
            Some(our) if same_value(&our.value, &their.value) => {}
            Some(our) => differences.push(format!(
                "{} {:?}: blackbox {}, ours {}",
                their.name, their.labels, their.value, our.value
            )),
        }
    }
    for our in &ours {
        let theirs_too = theirs.iter().any(|their| their.name == our.name);
        let named = OURS_ONLY.iter().any(|prefix| our.name.starts_with(prefix))
            || our.name == "probe_failed_due_to_regex";
        if !theirs_too && !named {
            differences.push(format!("only ours writes {our:?}, not in OURS_ONLY"));
        }
    }
    differences
}

fn same_value(a: &str, b: &str) -> bool {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(a), Ok(b)) => a == b || (a.is_nan() && b.is_nan()),
        _ => a == b,
    }
}

/// The samples of a text-format exposition (comments skipped).
fn parse(text: &str) -> Result<Vec<Series>, String> {
    let mut all = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        all.push(parse_line(line).ok_or_else(|| format!("cannot parse {line:?}"))?);
    }
    Ok(all)
}

fn parse_line(line: &str) -> Option<Series> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut label = String::new();
        loop {
            let (index, char) = chars.next()?;
            match char {
                '}' => {
                    rest = &inner[index + 1..];
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut label), value);
                }
                other => label.push(other),
            }
        }
    }
    let value = rest.split_whitespace().next()?.to_owned();
    Some(Series {
        name,
        labels,
        value,
    })
}

/// `/probe` with the classic text format asked for, parsed.
fn probe(address: SocketAddr, query: &str) -> Result<Vec<Series>, String> {
    let response = common::http::blocking_request(
        address,
        "GET",
        query,
        &[("Accept", "text/plain;version=0.0.4")],
        "",
        PROBE_LIMIT,
    )?;
    if response.status != 200 {
        return Err(format!("HTTP {}: {}", response.status, response.body));
    }
    parse(&response.body)
}

#[test]
fn the_comparison_sees_every_kind_of_difference() {
    let series = |text: &str| parse(text).unwrap();
    let theirs = series(
        "probe_success 1\nprobe_duration_seconds 0.1\nprobe_ssl_last_chain_info{subject=\"CN=a\"} 1\n",
    );
    let same = series(
        "probe_success 1\nprobe_duration_seconds 0.3\nprobe_ssl_last_chain_info{serialnumber=\"f1e2\",subject=\"CN=a\"} 1\nprobe_tcp_rtt_seconds 0.001\n",
    );
    assert_eq!(compare(&theirs, &same), Vec::<String>::new());
    let other_value = series(
        "probe_success 0\nprobe_duration_seconds 0.3\nprobe_ssl_last_chain_info{subject=\"CN=a\"} 1\n",
    );
    assert_eq!(compare(&theirs, &other_value).len(), 1);
    let other_label = series(
        "probe_success 1\nprobe_duration_seconds 0.3\nprobe_ssl_last_chain_info{subject=\"CN=b\"} 1\n",
    );
    assert_eq!(compare(&theirs, &other_label).len(), 1);
    let extra = series(
        "probe_success 1\nprobe_duration_seconds 0.3\nprobe_ssl_last_chain_info{subject=\"CN=a\"} 1\nprobe_new 1\n",
    );
    assert_eq!(compare(&theirs, &extra).len(), 1);
}

#[test]
fn the_text_parser_reads_escapes_and_go_floats() {
    let series = parse_line(r#"probe_x{a="b\"c",d="e\\f\ng"} -6.21355968e+10"#).unwrap();
    assert_eq!(series.name, "probe_x");
    assert_eq!(series.labels["a"], "b\"c");
    assert_eq!(series.labels["d"], "e\\f\ng");
    assert!(same_value(&series.value, "-62135596800"));
    assert!(!same_value("1", "0"));
    assert_eq!(parse_line("probe_success 1").unwrap().value, "1");
}

// ---------------------------------------------------------------------------
// Blackbox, as a process.

/// Debian's blackbox_exporter on a free loopback port; killed on drop.
struct Blackbox {
    child: Child,
    address: SocketAddr,
}

impl Blackbox {
    fn start(binary: &std::path::Path, config: &str) -> Self {
        let address = common::closed_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={config}"))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus-blackbox-exporter");
        let blackbox = Self { child, address };
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            let ready = common::http::blocking_get(address, "/-/healthy", Duration::from_secs(2))
                .is_ok_and(|response| response.status == 200);
            if ready {
                return blackbox;
            }
            assert!(
                Instant::now() < deadline,
                "blackbox_exporter not ready on {address} within {READY_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Blackbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// The loopback servers.

/// The servers on 127.0.0.1, on a runtime of their own (dropped with it).
struct Servers {
    runtime: Option<tokio::runtime::Runtime>,
    /// Each target's `host:port`, as `/probe?target=` gets it.
    addresses: BTreeMap<&'static str, String>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// The test's certificates: a CA and leaves for localhost and 127.0.0.1.
struct Certificates {
    ca_pem: String,
    valid: Arc<rustls::ServerConfig>,
    expired: Arc<rustls::ServerConfig>,
    wrong_name: Arc<rustls::ServerConfig>,
    self_signed: Arc<rustls::ServerConfig>,
}

fn server_config(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: &rcgen::KeyPair,
) -> Arc<rustls::ServerConfig> {
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    Arc::new(
        // The process's default provider (ring): naming ring's directly
        // is deprecated in newer rustls 0.23 releases.
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

impl Certificates {
    fn make() -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "Side by side test CA");
        ca.not_before = rcgen::date_time_ymd(2020, 1, 1);
        ca.not_after = rcgen::date_time_ymd(2090, 1, 1);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let leaf = |names: &[&str], until: i32, serial: Option<&[u8]>| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(
                names
                    .iter()
                    .map(|name| (*name).to_owned())
                    .collect::<Vec<_>>(),
            )
            .unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, names[0]);
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, "Acme, Inc.");
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(until, 1, 1);
            if let Some(serial) = serial {
                params.serial_number = Some(rcgen::SerialNumber::from_slice(serial));
            }
            (params, key)
        };
        let signed = |(params, key): (rcgen::CertificateParams, rcgen::KeyPair)| {
            let cert = params.signed_by(&key, &issuer).unwrap();
            server_config(vec![cert.der().clone(), ca_cert.der().clone()], &key)
        };
        let valid = signed(leaf(
            &["localhost", "127.0.0.1"],
            2080,
            Some(&[0x00, 0xf1, 0xe2]),
        ));
        let expired = signed(leaf(&["localhost", "127.0.0.1"], 2021, None));
        let wrong_name = signed(leaf(&["wrong.example"], 2080, None));
        let (params, key) = leaf(&["localhost", "127.0.0.1"], 2080, None);
        let own = params.self_signed(&key).unwrap();
        let self_signed = server_config(vec![own.der().clone()], &key);
        Self {
            ca_pem: ca_cert.pem(),
            valid,
            expired,
            wrong_name,
            self_signed,
        }
    }
}

impl Servers {
    fn start(dir: &TempDir) -> Self {
        let certificates = Certificates::make();
        dir.write("ca.pem", &certificates.ca_pem);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let mut addresses = BTreeMap::new();
        runtime.block_on(async {
            for (name, config) in [
                ("tls_valid", &certificates.valid),
                ("tls_expired", &certificates.expired),
                ("tls_wrong_name", &certificates.wrong_name),
                ("tls_self_signed", &certificates.self_signed),
            ] {
                addresses.insert(name, common::tls::serve_tls(Arc::clone(config)).await);
            }
            addresses.insert("ssh", banner(b"SSH-2.0-OpenSSH_9.6\r\n", true).await);
            // A banner, then each line echoed back after `ECHO `: shows
            // what the prober sent (capture groups expanded, or not).
            addresses.insert(
                "echo",
                serve(|socket| async move {
                    let echo = |line: &str| (format!("ECHO {}\r\n", line.trim_end()), false);
                    converse(&mut BufReader::new(socket), "SSH-2.0-OpenSSH_9.6\r\n", echo).await;
                })
                .await,
            );
            // A wrong banner, then closing: blackbox sees EOF without a
            // match (probe_failed_due_to_regex 1).
            addresses.insert("wrong_banner", banner(WRONG_BANNER, false).await);
            // A wrong banner, then waiting: the probe times out
            // (probe_failed_due_to_regex stays 0).
            addresses.insert("wrong_banner_open", banner(WRONG_BANNER, true).await);
            // Accepts and says nothing, until the prober closes.
            addresses.insert("silent", banner(b"", true).await);
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&certificates.valid));
            addresses.insert(
                "smtp",
                serve(move |socket| smtp(socket, acceptor.clone())).await,
            );
        });
        addresses.insert("closed", common::closed_port());
        let mut addresses: BTreeMap<&'static str, String> = addresses
            .into_iter()
            .map(|(name, address)| (name, address.to_string()))
            .collect();
        // By name: SNI `localhost`, and blackbox's resolution.
        for (by_name, server) in [("ssh_by_name", "ssh"), ("tls_valid_by_name", "tls_valid")] {
            let port = addresses[server].rsplit(':').next().unwrap().to_owned();
            addresses.insert(by_name, format!("localhost:{port}"));
        }
        Self {
            runtime: Some(runtime),
            addresses,
        }
    }

    fn address(&self, name: &str) -> &str {
        &self.addresses[name]
    }
}

const WRONG_BANNER: &[u8] = b"HTTP/1.0 400 Bad Request\r\n";

/// A server that writes `text` to each connection, then closes it, or
/// reads until the prober closes when `wait`.
async fn banner(text: &'static [u8], wait: bool) -> SocketAddr {
    serve(move |mut socket| async move {
        let _ = socket.write_all(text).await;
        if wait {
            let mut rest = Vec::new();
            let _ = socket.read_to_end(&mut rest).await;
        }
    })
    .await
}

/// Writes `greeting`, then answers each line (at most 8) with what
/// `answer` says, until it says that was the last; whether it did.
async fn converse<S>(
    stream: &mut BufReader<S>,
    greeting: &str,
    answer: impl Fn(&str) -> (String, bool),
) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut text = greeting.to_owned();
    let mut line = String::new();
    for _ in 0..8 {
        if stream.get_mut().write_all(text.as_bytes()).await.is_err()
            || stream.get_mut().flush().await.is_err()
        {
            return false;
        }
        line.clear();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return false;
        }
        let last;
        (text, last) = answer(&line);
        if last {
            return stream.get_mut().write_all(text.as_bytes()).await.is_ok()
                && stream.get_mut().flush().await.is_ok();
        }
    }
    false
}

/// An SMTP-like dialogue: banner, EHLO offering STARTTLS, the upgrade,
/// EHLO offering AUTH over TLS, QUIT.
async fn smtp(socket: tokio::net::TcpStream, acceptor: tokio_rustls::TlsAcceptor) {
    let reply = |offer: &'static str, last_command: &'static str| {
        move |line: &str| {
            let text = if line.starts_with("EHLO") {
                format!("250-mail.example\r\n250-{offer}\r\n250 OK\r\n")
            } else if line.starts_with(last_command) {
                last_reply(last_command).to_owned()
            } else {
                "500 what\r\n".to_owned()
            };
            (text, line.starts_with(last_command))
        }
    };
    let mut plain = BufReader::new(socket);
    let greeting = "220 mail.example ESMTP test\r\n";
    if !converse(&mut plain, greeting, reply("STARTTLS", "STARTTLS")).await {
        return;
    }
    let Ok(tls) = acceptor.accept(plain.into_inner()).await else {
        return;
    };
    let mut tls = BufReader::new(tls);
    // No greeting after the upgrade: the client speaks first.
    if converse(&mut tls, "", reply("AUTH PLAIN", "QUIT")).await {
        let _ = tls.get_mut().shutdown().await;
    }
}

fn last_reply(command: &str) -> &'static str {
    if command == "QUIT" {
        "221 Bye\r\n"
    } else {
        "220 Ready to start TLS\r\n"
    }
}
