//! The expositions are accepted by a real OpenMetrics parser: the one in
//! PyPI's prometheus-client, installed into a venv this test creates.

use crate::common;

use common::TestExporter;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use synack_exporter::Exporter;

const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0";
/// How long one python command may run before it is killed.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);
/// How long installing prometheus-client from PyPI may take.
const INSTALL_LIMIT: Duration = Duration::from_secs(300);

/// Creates (once) a venv with prometheus-client; `Err` says what is missing.
fn parser_venv() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openmetrics-venv");
    let python = venv.join("bin/python");
    let succeeds = |command: &mut Command, limit: Duration| {
        common::run_bounded(command, None, limit).is_ok_and(|finished| finished.success())
    };
    let ready = |python: &Path| {
        succeeds(
            Command::new(python).args(["-c", "import prometheus_client.openmetrics.parser"]),
            COMMAND_LIMIT,
        )
    };
    if ready(&python) {
        return Ok(python);
    }
    if !succeeds(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        COMMAND_LIMIT,
    ) {
        return Err("python3 with the venv module (Debian: python3-venv)".into());
    }
    let installed = succeeds(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "prometheus-client>=0.20",
        ]),
        INSTALL_LIMIT,
    );
    if !installed || !ready(&python) {
        return Err("pip install prometheus-client into the test venv failed".into());
    }
    Ok(python)
}

/// Waits, at most 10 s, until each of the `count` scheduled targets was
/// probed once. Before that their samples are all zeros: no fractional
/// duration or timestamp and an empty histogram, forms the parser would
/// then never check. With a 1 s interval the first probe may come a second
/// after start, or later on a loaded machine.
async fn wait_for_first_scheduled_probes(exporter: &TestExporter, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = exporter.get("/metrics").await.body;
        let stamps: Vec<f64> = metrics
            .lines()
            .filter_map(|line| line.strip_prefix("probe_last_probe_timestamp_seconds{"))
            .filter_map(|rest| rest.rsplit(' ').next()?.parse().ok())
            .collect();
        if stamps.len() == count && stamps.iter().all(|stamp| *stamp > 0.0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the {count} scheduled targets were not all probed within 10 s: {stamps:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn probe_and_metrics_pages_parse_as_openmetrics_and_as_text() {
    let python = match parser_venv() {
        Ok(python) => python,
        Err(missing) => return common::skip_or_fail(&missing),
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap();
    let (tls_server, pem) = common::tls::tls_server(2040).await;
    let dir = common::TempDir::new("openmetrics");
    let ca_file = dir.write("ca.pem", &pem);
    // Scheduled targets with a label value that needs every escape.
    let config = format!(
        "modules:\n  tcp_halfopen:\n    prober: tcp_halfopen\n  tcp_connect:\n    prober: tcp_connect\n\
         \x20 ping:\n    prober: tcp_halfopen\n    tcp: {{attempts: 3, attempt_interval: 10ms}}\n\
         \x20 tls_connect:\n    prober: tcp\n    timeout: 5s\n    tcp:\n      preferred_ip_protocol: ip4\n\
         \x20     tls: true\n      tls_config: {{ca_file: {ca_file:?}}}\n\
         targets:\n  - module: tls_connect\n    interval: 1s\n    targets: [\"{tls_server}\"]\n  - module: tcp_halfopen\n    interval: 1s\n    targets: [\"{open}\", \"127.0.0.1:1\"]\n\
         \x20   labels: {{note: \"quote \\\" backslash \\\\ newline \\n end\"}}\n"
    );
    let exporter = TestExporter::with_config(&config, Exporter::builder()).await;
    wait_for_first_scheduled_probes(&exporter, 3).await;
    let pages = [
        ("probe_success", format!("/probe?target={open}")),
        ("probe_ping", format!("/probe?target={open}&module=ping")),
        (
            "probe_tls",
            format!("/probe?target={tls_server}&module=tls_connect"),
        ),
        (
            "probe_refused",
            "/probe?target=127.0.0.1:1&module=tcp_connect".to_owned(),
        ),
        (
            "probe_dns",
            "/probe?target=no-such-host.invalid:80".to_owned(),
        ),
        ("metrics", "/metrics".to_owned()),
    ];
    // A scheduled TLS target keeps its certificate series on /metrics.
    let metrics = exporter.get("/metrics").await.body;
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("probe_ssl_earliest_cert_expiry{")
                && line.contains("module=\"tls_connect\"")
                && line.ends_with(" 2208988800")),
        "{metrics}"
    );
    let mut args = Vec::new();
    for (name, path) in &pages {
        for (kind, accept) in [("openmetrics", OPENMETRICS), ("text", "text/plain")] {
            let response = exporter.get_with(path, &[("Accept", accept)]).await;
            assert_eq!(response.status, 200, "{path}");
            let file = dir.join(format!("{name}.{kind}"));
            std::fs::write(&file, &response.body).unwrap();
            args.push(kind.to_owned());
            args.push(file.display().to_string());
        }
    }
    let output = common::run_within(
        Command::new(&python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/openmetrics_parser.py"
            ))
            .args(&args),
        COMMAND_LIMIT,
    );
    let report = output.output();
    assert!(
        output.success(),
        "the parser rejected an exposition:\n{report}"
    );
    for seen in [
        // The parser saw the series, with the right types and labels.
        "probe_failure_reason gauge",
        "synack_exporter_probes counter",
        "synack_exporter_build info",
        // Attempts: gauges on /probe, counters of scheduled targets.
        "probe_attempts_failed gauge",
        "probe_tcp_handshake_stddev_seconds gauge",
        "probe_attempts_failed counter",
        "probe_attempts counter",
        "('probe_failure_reason', {'reason': 'refused'}, 1)",
        // prober: tcp's TLS families, on /probe and for the scheduled target.
        "probe_tls_version info",
        "probe_ssl_last_chain info",
        "probe_ssl_earliest_cert_expiry gauge",
    ] {
        assert!(report.contains(seen), "no {seen:?} in\n{report}");
    }
}
