//! blackbox_exporter's own config files, read as they are: the
//! `blackbox.yml` and `example.yml` it ships in v0.28.0 (5a059be,
//! Apache-2.0, copied byte for byte below). Their tcp modules load, each
//! module of another prober is reported once where it is written, and the
//! rest of the file still runs: `/probe` of such a module answers 400,
//! and a plain `prober: tcp` module probes half-open.

use crate::common;

use common::exporter_process::BINARY;
use common::{TempDir, TestExporter, sample};
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;
use synack_exporter::Exporter;

/// `blackbox.yml` of blackbox_exporter v0.28.0, as shipped.
const BLACKBOX_YML: &str = r##"modules:
  http_2xx:
    prober: http
    http:
      preferred_ip_protocol: "ip4"
  http_post_2xx:
    prober: http
    http:
      method: POST
  tcp_connect:
    prober: tcp
  pop3s_banner:
    prober: tcp
    tcp:
      query_response:
      - expect: "^+OK"
      tls: true
      tls_config:
        insecure_skip_verify: false
  grpc:
    prober: grpc
    grpc:
      tls: true
      preferred_ip_protocol: "ip4"
  grpc_plain:
    prober: grpc
    grpc:
      tls: false
      service: "service1"
  ssh_banner:
    prober: tcp
    tcp:
      query_response:
      - expect: "^SSH-2.0-"
      - send: "SSH-2.0-blackbox-ssh-check"
  ssh_banner_extract:
    prober: tcp
    timeout: 5s
    tcp:
      query_response:
      - expect: "^SSH-2.0-([^ -]+)(?: (.*))?$"
        labels:
        - name: ssh_version
          value: "${1}"
        - name: ssh_comments
          value: "${2}"
  irc_banner:
    prober: tcp
    tcp:
      query_response:
      - send: "NICK prober"
      - send: "USER prober prober prober :prober"
      - expect: "PING :([^ ]+)"
        send: "PONG ${1}"
      - expect: "^:[^ ]+ 001"
  icmp:
    prober: icmp
  icmp_ttl5:
    prober: icmp
    timeout: 5s
    icmp:
      ttl: 5
  http_3xx:
    prober: http
    http:
      preferred_ip_protocol: "ip4"
      enable_http3: true
      enable_http2: false
      valid_http_versions: ["HTTP/3.0"]
  postgresql:
    prober: tcp
    tcp:
      query_response:
      - send: !!binary AAAACATSFi8= # 0x00, 0x00, 0x00, 0x08, 0x04, 0xD2, 0x16, 0x2F - PostgreSQL SSLRequest
      - expect_bytes: S # 0x53 - Reply will be 'S' if SSL is enabled, and 'N' if it is not.
      - starttls: true
"##;

/// `example.yml` of blackbox_exporter v0.28.0, as shipped.
const EXAMPLE_YML: &str = r##"modules:
  http_2xx_example:
    prober: http
    timeout: 5s
    http:
      valid_http_versions: ["HTTP/1.1", "HTTP/2.0"]
      valid_status_codes: []  # Defaults to 2xx
      method: GET
      headers:
        Host: vhost.example.com
        Origin: example.com
      http_headers:
        Accept-Language:
          values:
            - "en-US"
      follow_redirects: true
      fail_if_ssl: false
      fail_if_not_ssl: false
      fail_if_body_matches_regexp:
        - "Could not connect to database"
      fail_if_body_not_matches_regexp:
        - "Download the latest version here"
      fail_if_header_matches: # Verifies that no cookies are set
        - header: Set-Cookie
          allow_missing: true
          regexp: '.*'
      fail_if_header_not_matches:
        - header: Access-Control-Allow-Origin
          regexp: '(\*|example\.com)'
      tls_config:
        insecure_skip_verify: false
      preferred_ip_protocol: "ip4" # defaults to "ip6"
      ip_protocol_fallback: false  # no fallback to "ip6"
  http_with_proxy:
    prober: http
    http:
      proxy_url: "http://127.0.0.1:3128"
      skip_resolve_phase_with_proxy: true
  http_with_proxy_and_headers:
    prober: http
    http:
      proxy_url: "http://127.0.0.1:3128"
      proxy_connect_header:
        Proxy-Authorization:
          - Bearer token
  http_post_2xx:
    prober: http
    timeout: 5s
    http:
      method: POST
      headers:
        Content-Type: application/json
      body: '{}'
  http_post_body_file:
    prober: http
    timeout: 5s
    http:
      method: POST
      body_file: "/files/body.txt"
  http_basic_auth_example:
    prober: http
    timeout: 5s
    http:
      method: POST
      headers:
        Host: "login.example.com"
      basic_auth:
        username: "username"
        password: "mysecret"
  http_json_cel_match:
    prober: http
    timeout: 5s
    http:
      method: GET
      fail_if_body_json_not_matches_cel: "body.foo == 'bar' && body.baz.startsWith('q')" # { "foo": "bar", "baz": "qux" }
  http_2xx_oauth_client_credentials:
    prober: http
    timeout: 5s
    http:
      valid_http_versions: ["HTTP/1.1", "HTTP/2"]
      follow_redirects: true
      preferred_ip_protocol: "ip4"
      valid_status_codes:
        - 200
        - 201
      oauth2:
        client_id: "client_id"
        client_secret: "client_secret"
        token_url: "https://api.example.com/token"
        endpoint_params:
          grant_type: "client_credentials"
  http_custom_ca_example:
    prober: http
    http:
      method: GET
      tls_config:
        ca_file: "/certs/my_cert.crt"
  http_gzip:
    prober: http
    http:
      method: GET
      compression: gzip
  http_gzip_with_accept_encoding:
    prober: http
    http:
      method: GET
      compression: gzip
      headers:
        Accept-Encoding: gzip
  tls_connect:
    prober: tcp
    timeout: 5s
    tcp:
      tls: true
  tcp_connect_example:
    prober: tcp
    timeout: 5s
  imap_starttls:
    prober: tcp
    timeout: 5s
    tcp:
      query_response:
        - expect: "OK.*STARTTLS"
        - send: ". STARTTLS"
        - expect: "OK"
        - starttls: true
        - send: ". capability"
        - expect: "CAPABILITY IMAP4rev1"
  smtp_starttls:
    prober: tcp
    timeout: 5s
    tcp:
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
  irc_banner_example:
    prober: tcp
    timeout: 5s
    tcp:
      query_response:
        - send: "NICK prober"
        - send: "USER prober prober prober :prober"
        - expect: "PING :([^ ]+)"
          send: "PONG ${1}"
        - expect: "^:[^ ]+ 001"
  rabbitmq:
    prober: tcp
    timeout: 30s
    tcp:
      query_response:
        - send: "HELO\r"
        - send: "\r"
        - send: "\r"
        - send: "\r"
        - expect: "AMQP"
      tls: true
      tls_config:
        insecure_skip_verify: false
        ca_file: "/etc/blackbox_exporter/CA_cert.crt"
  rabbitmq_insecure:
    prober: tcp
    timeout: 30s
    tcp:
      query_response:
        - send: "HELO\r"
        - send: "\r"
        - send: "\r"
        - send: "\r"
        - expect: "AMQP"
      tls: true
      tls_config:
        insecure_skip_verify: true
        ca_file: "/etc/blackbox_exporter/CA_cert.crt"
  icmp_example:
    prober: icmp
    timeout: 5s
    icmp:
      preferred_ip_protocol: "ip4"
      source_ip_address: "127.0.0.1"
  dns_udp_example:
    prober: dns
    timeout: 5s
    dns:
      query_name: "www.prometheus.io"
      query_type: "A"
      valid_rcodes:
        - NOERROR
      validate_answer_rrs:
        fail_if_matches_regexp:
          - ".*127.0.0.1"
        fail_if_all_match_regexp:
          - ".*127.0.0.1"
        fail_if_not_matches_regexp:
          - "www.prometheus.io.\t300\tIN\tA\t127.0.0.1"
        fail_if_none_matches_regexp:
          - "127.0.0.1"
      validate_authority_rrs:
        fail_if_matches_regexp:
          - ".*127.0.0.1"
      validate_additional_rrs:
        fail_if_matches_regexp:
          - ".*127.0.0.1"
  dns_soa:
    prober: dns
    dns:
      query_name: "prometheus.io"
      query_type: "SOA"
  dns_tcp_example:
    prober: dns
    dns:
      transport_protocol: "tcp" # defaults to "udp"
      preferred_ip_protocol: "ip4" # defaults to "ip6"
      query_name: "www.prometheus.io"
  unix_socket_ping:
    prober: unix
    timeout: 5s
    unix:
      query_response:
        - send: "PING"
        - expect: "PONG"
  postgresql:
    prober: tcp
    tcp:
      query_response:
      - send: !!binary AAAACATSFi8= # 0x00, 0x00, 0x00, 0x08, 0x04, 0xD2, 0x16, 0x2F - PostgreSQL SSLRequest
      - expect_bytes: S # 0x53 - Reply will be 'S' if SSL is enabled, and 'N' if it is not.
      - starttls: true
  http_with_header_from_files:
    prober: http
    http:
      http_headers:
        X-API-Key:
          files:
            - /path/to/api-key.txt
"##;

/// Each line of `yaml` with its number and the module it is in, read
/// from the text itself.
fn module_lines(yaml: &str) -> Vec<(usize, String, &str)> {
    let mut module = String::new();
    let mut lines = Vec::new();
    for (index, line) in yaml.lines().enumerate() {
        if let Some(name) = line
            .strip_prefix("  ")
            .and_then(|rest| rest.strip_suffix(':'))
            && !name.starts_with(' ')
        {
            module = name.to_owned();
        }
        lines.push((index + 1, module.clone(), line));
    }
    lines
}

/// `(line, module, prober)` of each module of `yaml` whose prober is not
/// `tcp`.
fn other_probers(yaml: &str) -> Vec<(usize, String, String)> {
    module_lines(yaml)
        .into_iter()
        .filter_map(|(number, module, line)| {
            let prober = line.strip_prefix("    prober: ")?;
            (prober != "tcp").then(|| (number, module, prober.to_owned()))
        })
        .collect()
}

/// `(line, column, module)` of each `ca_file` of `yaml` under
/// /etc/blackbox_exporter/, which this host does not have.
fn missing_ca_files(yaml: &str) -> Vec<(usize, usize, String)> {
    module_lines(yaml)
        .into_iter()
        .filter_map(|(number, module, line)| {
            let at = line.find("ca_file: \"/etc/blackbox_exporter/")?;
            Some((number, at + "ca_file: ".len() + 1, module))
        })
        .collect()
}

/// blackbox's example.yml names a CA file this host lacks (its rabbitmq
/// modules). blackbox reads it at probe time, so its config loads: here
/// too, with a located note for each (issue 20 lead: a TLS file is a
/// note, not a load error), and one line per other prober.
#[test]
fn blackbox_s_own_files_pass_the_config_check_with_each_other_prober_listed_once() {
    let dir = TempDir::new("blackbox-yml");
    for (name, yaml, others, missing) in [
        ("blackbox.yml", BLACKBOX_YML, 7, 0),
        ("example.yml", EXAMPLE_YML, 17, 2),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, yaml).unwrap();
        let path = path.display().to_string();
        let finished = common::run_within(
            Command::new(BINARY).args(["--config.check", "--config.file", &path]),
            Duration::from_secs(20),
        );
        assert_eq!(finished.code(), Some(0), "{name}: {}", finished.output());
        assert_eq!(finished.stdout, "ok\n", "{name}");
        let listed = other_probers(yaml);
        assert_eq!(listed.len(), others, "{name}: {listed:?}");
        let notes = missing_ca_files(yaml);
        assert_eq!(notes.len(), missing, "{name}: {notes:?}");
        let warnings: Vec<&str> = finished.stderr.lines().collect();
        assert_eq!(
            warnings.len(),
            others + notes.len(),
            "{name}: one line each: {}",
            finished.stderr
        );
        for (line, column, module) in notes {
            let at = format!(
                "warning: {path}:{line}:{column}: field `modules.{module}.tcp.tls_config.ca_file`: \
                 /etc/blackbox_exporter/CA_cert.crt: cannot read the file: no such file; module \
                 {module:?} loads"
            );
            assert_eq!(
                warnings.iter().filter(|w| w.starts_with(&at)).count(),
                1,
                "{name}: {at} once in {}",
                finished.stderr
            );
        }
        for (line, module, prober) in listed {
            let at = format!("warning: {path}:{line}:13: field `modules.{module}.prober`: ");
            let said: Vec<_> = warnings
                .iter()
                .filter(|warning| warning.starts_with(&at))
                .collect();
            assert_eq!(said.len(), 1, "{name}: {at} once in {}", finished.stderr);
            assert!(
                said[0].contains(&format!(
                    "uses prober {prober}, which synack_exporter does not support"
                )),
                "{}",
                said[0]
            );
        }
    }
}

#[tokio::test]
async fn a_module_of_another_prober_answers_400_and_plain_tcp_probes_half_open() {
    let exporter = TestExporter::with_config(BLACKBOX_YML, Exporter::builder()).await;
    let refused = exporter.probe("127.0.0.1:9", "http_2xx").await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let body = refused.body.trim_end();
    assert!(!body.contains('\n'), "one line: {body}");
    assert!(
        body.contains(
            "module \"http_2xx\" uses prober http, which synack_exporter does not support"
        ),
        "{body}"
    );
    // blackbox's tcp_connect (prober: tcp, nothing more) is half-open
    // here: the port answers, and the application accepts nothing.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let target = listener.local_addr().unwrap();
    for round in 0..5 {
        let probed = exporter.probe(target, "tcp_connect").await;
        assert_eq!(probed.status, 200, "{}", probed.body);
        assert_eq!(
            sample(&probed.body, "probe_success"),
            Some(1.0),
            "round {round}: {}",
            probed.body
        );
    }
    // Past the delayed-ACK timer, so that a late ACK would have been seen.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        common::accept_waiting(&listener),
        0,
        "half-open probes are never accepted"
    );
}

/// blackbox's tls_connect, trusting the test's certificate by ca_file,
/// writes blackbox's certificate series on /probe; its rabbitmq module,
/// whose ca_file this host lacks, loads and fails each probe as `tls`,
/// naming the file (as blackbox, which reads it at probe time).
#[tokio::test]
async fn a_tls_module_writes_the_certificate_series_and_a_missing_ca_file_fails_as_tls() {
    let (address, pem) = common::tls::tls_server(2040).await;
    let dir = TempDir::new("blackbox-tls");
    let ca_file = dir.write("ca.pem", &pem);
    let yaml = format!(
        "modules:
  tls_connect:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
      tls: true
      tls_config:
        ca_file: {ca_file:?}
  rabbitmq:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
      tls: true
      tls_config:
        ca_file: \"/etc/blackbox_exporter/CA_cert.crt\"
"
    );
    let exporter = TestExporter::with_config(&yaml, Exporter::builder()).await;
    let probed = exporter.probe(address, "tls_connect").await;
    assert_eq!(probed.status, 200, "{}", probed.body);
    let body = &probed.body;
    // 2208988800 is 2040-01-01, the certificate's notAfter; pinned by
    // ca_file, it is its own chain.
    for (series, value) in [
        ("probe_success", 1.0),
        ("probe_ssl_earliest_cert_expiry", 2_208_988_800.0),
        (
            "probe_ssl_last_chain_expiry_timestamp_seconds",
            2_208_988_800.0,
        ),
        ("probe_tls_version_info{version=\"TLS 1.3\"}", 1.0),
    ] {
        assert_eq!(sample(body, series), Some(value), "{series}: {body}");
    }
    assert!(
        body.lines().any(|line| line
            .starts_with("probe_ssl_last_chain_info{fingerprint_sha256=\"")
            && line.contains("subject=\"CN=localhost\",issuer=\"CN=localhost\"")
            && line.contains("subjectalternative=\"localhost\"")
            && line.ends_with("} 1")),
        "{body}"
    );

    let failed = exporter.probe(address, "rabbitmq").await;
    assert_eq!(failed.status, 200, "{}", failed.body);
    let body = &failed.body;
    for (series, value) in [
        ("probe_success", 0.0),
        ("probe_failure_reason{reason=\"tls\"}", 1.0),
    ] {
        assert_eq!(sample(body, series), Some(value), "{series}: {body}");
    }
    assert!(!body.contains("probe_ssl_"), "no TLS series: {body}");
    let logged = exporter
        .get(&format!(
            "/probe?target={address}&module=rabbitmq&debug=true"
        ))
        .await;
    assert!(
        logged
            .body
            .contains("/etc/blackbox_exporter/CA_cert.crt: cannot read the file: no such file"),
        "{}",
        logged.body
    );
}

/// A TLS module and a banner module (`query_response`) serve as members
/// of `/health/<group>` and as scheduled targets: the group answers 200
/// when both pass and names each failing member with its reason (`tls`
/// for an untrusted certificate, `check_failed` for the wrong banner);
/// the scheduled banner target's `/metrics` series say which failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_banner_modules_serve_in_groups_and_as_scheduled_targets() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (tls, pem) = common::tls::tls_server(2040).await;
    let dir = TempDir::new("blackbox-groups");
    let ca_file = dir.write("ca.pem", &pem);
    // Greets, then reads until the prober closes, or closes at once (a
    // wrong banner that stayed open would end in `timeout`, as in blackbox).
    let banner = |greeting: &'static [u8], stay_open: bool| {
        common::serve(move |mut socket| async move {
            let _ = socket.write_all(greeting).await;
            let mut rest = [0u8; 256];
            while stay_open && matches!(socket.read(&mut rest).await, Ok(read) if read > 0) {}
        })
    };
    let ssh = banner(b"SSH-2.0-OpenSSH_9.6\r\n", true).await;
    let smtp = banner(b"220 mail ESMTP ready\r\n", false).await;
    let yaml = format!(
        "modules:
  tls_connect:
    prober: tcp
    timeout: 2s
    tcp: {{preferred_ip_protocol: ip4, tls: true, tls_config: {{ca_file: {ca_file:?}}}}}
  tls_other_ca:
    prober: tcp
    timeout: 2s
    tcp: {{preferred_ip_protocol: ip4, tls: true, tls_config: {{ca_file: {ca_file:?}, server_name: other.test}}}}
  ssh_banner:
    prober: tcp
    timeout: 2s
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - expect: \"^SSH-2.0-\"
        - send: \"SSH-2.0-blackbox-ssh-check\"
targets:
  - module: ssh_banner
    interval: 1s
    targets: [\"{ssh}\", \"{smtp}\"]
groups:
  up:
    members:
      - {{module: tls_connect, target: \"{tls}\"}}
      - {{module: ssh_banner, target: \"{ssh}\"}}
  down:
    members:
      - {{module: tls_other_ca, target: \"{tls}\"}}
      - {{module: ssh_banner, target: \"{smtp}\"}}
      - {{module: ssh_banner, target: \"{ssh}\"}}
"
    );
    let exporter = TestExporter::with_config(&yaml, Exporter::builder()).await;
    let up = exporter.get("/health/up").await;
    assert_eq!((up.status, up.body.as_str()), (200, "OK\n"));
    let down = exporter.get("/health/down").await;
    assert_eq!(
        (down.status, down.body.as_str()),
        (
            503,
            format!("tls_other_ca {tls} tls\nssh_banner {smtp} check_failed\n").as_str()
        )
    );

    // Scheduled: both banner targets probed (at most 10 s), the wrong
    // one down for its regex.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = exporter.get("/metrics").await.body;
        let probed = metrics
            .lines()
            .filter(|line| line.starts_with("probe_last_probe_timestamp_seconds{"))
            .filter(|line| !line.ends_with(" 0"))
            .count();
        if probed == 2 {
            break metrics;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the 2 banner targets were not probed within 10 s:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (target, success, regex) in [(ssh, 1.0, 0.0), (smtp, 0.0, 1.0)] {
        let labels = format!("{{module=\"ssh_banner\",target=\"{target}\"}}");
        assert_eq!(
            sample(&metrics, &format!("probe_success{labels}")),
            Some(success),
            "{target}: {metrics}"
        );
        assert_eq!(
            sample(&metrics, &format!("probe_failed_due_to_regex{labels}")),
            Some(regex),
            "{target}: {metrics}"
        );
    }
}
