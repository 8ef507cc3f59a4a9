//! The HTTP API: `/probe` answers, every bad input's 400, routing, the
//! exporter's own metrics, `/config` and reload.

use crate::common;

use common::{TestExporter, closed_port, open_port, request, sample};
use std::sync::Arc;
use std::time::Duration;
use synack_exporter::Exporter;

const OPENMETRICS: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";

#[tokio::test]
async fn open_port_gives_probe_success_in_openmetrics() {
    let exporter = TestExporter::embedded(Exporter::builder()).await;
    let (_listener, port) = open_port();
    let response = exporter
        .get_with(
            &format!("/probe?target=127.0.0.1:{port}&module=tcp_halfopen"),
            &[("Accept", OPENMETRICS)],
        )
        .await;
    assert_eq!(response.status, 200);
    response.assert_content_type("application/openmetrics-text; version=1.0.0");
    let body = &response.body;
    assert_eq!(sample(body, "probe_success"), Some(1.0), "{body}");
    assert_eq!(sample(body, "probe_ip_protocol"), Some(4.0));
    assert!(sample(body, "probe_duration_seconds").unwrap() > 0.0);
    let handshake = sample(body, "probe_tcp_handshake_duration_seconds").unwrap();
    assert!(handshake > 0.0, "{body}");
    // The kernel's sample leaves out the exporter's wake-up: on loopback
    // it is above 0 and at most the handshake time (plus clock slack).
    let rtt = sample(body, "probe_tcp_rtt_seconds").unwrap();
    assert!(rtt > 0.0 && rtt <= handshake + 0.000_1, "{body}");
    assert_eq!(
        sample(body, "probe_tcp_syn_retransmits"),
        Some(0.0),
        "{body}"
    );
    assert!(sample(body, "probe_dns_lookup_time_seconds").is_some());
    assert!(sample(body, "probe_ip_addr_hash").unwrap() > 0.0);
    for reason in common::REASONS {
        assert_eq!(
            sample(
                body,
                &format!("probe_failure_reason{{reason=\"{reason}\"}}")
            ),
            Some(0.0),
            "{reason}"
        );
    }
    assert!(body.ends_with("# EOF\n"));
}

#[tokio::test]
async fn module_defaults_to_tcp_halfopen_and_plain_clients_get_text_0_0_4() {
    let exporter = TestExporter::embedded(Exporter::builder()).await;
    let (_listener, port) = open_port();
    let response = exporter
        .get(&format!("/probe?target=127.0.0.1:{port}"))
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(sample(&response.body, "probe_success"), Some(1.0));
    assert!(!response.body.contains("# EOF"));
    let metrics = exporter.get("/metrics").await.body;
    assert_eq!(
        sample(
            &metrics,
            "synack_exporter_probes_total{module=\"tcp_halfopen\",result=\"success\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
}

#[tokio::test]
async fn failed_probe_is_still_200_with_its_reason() {
    let exporter = TestExporter::embedded(Exporter::builder()).await;
    let port = closed_port().port();
    let response = exporter
        .get(&format!(
            "/probe?target=127.0.0.1:{port}&module=tcp_connect"
        ))
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(sample(&response.body, "probe_success"), Some(0.0));
    assert_eq!(
        sample(&response.body, "probe_failure_reason{reason=\"refused\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&response.body, "probe_failure_reason{reason=\"timeout\"}"),
        Some(0.0)
    );
    // No SYN-ACK: the kernel timing series are there, at 0.
    for series in ["probe_tcp_rtt_seconds", "probe_tcp_syn_retransmits"] {
        assert_eq!(sample(&response.body, series), Some(0.0), "{series}");
    }
    let metrics = exporter.get("/metrics").await.body;
    assert_eq!(
        sample(
            &metrics,
            "synack_exporter_probes_total{module=\"tcp_connect\",result=\"refused\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn debug_shows_the_steps_errno_and_metrics() {
    let exporter = TestExporter::embedded(Exporter::builder()).await;
    let port = closed_port().port();
    let response = exporter
        .get(&format!("/probe?target=localhost:{port}&debug=true"))
        .await;
    assert_eq!(response.status, 200);
    response.assert_content_type("text/plain");
    let body = &response.body;
    for expected in [
        "resolving localhost",
        "chose address 127.0.0.1",
        "connecting to 127.0.0.1",
        "ECONNREFUSED (Connection refused)",
        "Metrics that would have been returned:",
        "probe_failure_reason{reason=\"refused\"} 1",
        "prober: tcp_halfopen",
    ] {
        assert!(body.contains(expected), "missing {expected:?} in\n{body}");
    }
}

#[tokio::test]
async fn debug_of_a_success_shows_the_kernel_timing_and_the_close() {
    let exporter = TestExporter::embedded(Exporter::builder()).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = listener.local_addr().expect("local address");
    for (module, close) in [
        ("tcp_halfopen", "closed with RST 0.0"),
        ("tcp_connect", "SYN retransmits); closed with RST\n"),
    ] {
        let body = exporter
            .get(&format!(
                "/probe?target={target}&module={module}&debug=true"
            ))
            .await
            .body;
        for expected in [
            format!("{target} answered with SYN-ACK after 0.0"),
            "(kernel RTT 0.0".to_owned(),
            ", 0 SYN retransmits); closed with RST".to_owned(),
            close.to_owned(),
        ] {
            assert!(
                body.contains(&expected),
                "{module}: missing {expected:?} in\n{body}"
            );
        }
    }
}

#[tokio::test]
async fn scrape_timeout_header_minus_offset_bounds_the_probe() {
    let exporter = TestExporter::embedded(Exporter::builder()).await;
    // A full accept queue drops SYNs, so the probe runs into its deadline.
    let queue = common::saturated_listener();
    let address = queue.address;
    let response = exporter
        .get_with(
            &format!("/probe?target={address}"),
            &[("X-Prometheus-Scrape-Timeout-Seconds", "1.2")],
        )
        .await;
    let duration = sample(&response.body, "probe_duration_seconds").unwrap();
    assert_eq!(
        sample(&response.body, "probe_failure_reason{reason=\"timeout\"}"),
        Some(1.0)
    );
    assert!(
        (0.65..1.1).contains(&duration),
        "1.2 s scrape timeout - 0.5 s offset, got {duration}"
    );
}

/// A form refused by the CSRF rules is named in plain English: "a request
/// body of type application/x-www-form-urlencoded", not "a
/// application/...".
#[tokio::test]
async fn a_refused_form_is_named_in_plain_english() {
    let exporter = TestExporter::with_config("", Exporter::builder()).await;
    for kind in [
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "text/plain",
    ] {
        let answer = request(
            exporter.address,
            "POST",
            "/-/reload",
            &[("Content-Type", kind)],
        )
        .await;
        assert_eq!(answer.status, 403, "{}", answer.body);
        let want = format!("refused: a request body of type {kind} is what a browser form sends");
        assert!(answer.body.starts_with(&want), "{}", answer.body);
    }
}

/// An IP literal of a family that the module forbids could never be
/// probed: `/probe` answers 400 with one line saying which option forbids
/// it, with the families spelt as in the config; a group member fails as
/// `local` (not `dns`: nothing was looked up).
#[tokio::test]
async fn an_ip_literal_the_module_forbids_is_a_400_for_probe_and_local_for_a_group() {
    let exporter = TestExporter::with_config(
        "modules:\n  v6:\n    prober: tcp_halfopen\n    timeout: 1s\n    tcp:\n      \
         preferred_ip_protocol: ip6\n      ip_protocol_fallback: false\n\
         groups:\n  g:\n    module: v6\n    targets: [\"127.0.0.1:9\"]\n",
        Exporter::builder(),
    )
    .await;
    let why = "target 127.0.0.1 is an ip4 address and the module allows only ip6 \
               (preferred_ip_protocol: ip6, ip_protocol_fallback: false): use a module that allows ip4\n";
    let response = exporter.get("/probe?module=v6&target=127.0.0.1:9").await;
    assert_eq!((response.status, response.body.as_str()), (400, why));

    // The member's detail is the prober's (tests/integration/probe_tcp.rs checks it).
    let response = exporter.get("/health/g").await;
    assert_eq!(response.status, 503, "{}", response.body);
    assert!(
        response
            .body
            .lines()
            .any(|line| line == "v6 127.0.0.1:9 local"),
        "{}",
        response.body
    );
}

#[tokio::test]
async fn every_bad_input_gets_a_one_line_400_and_the_exporter_keeps_answering() {
    let exporter = TestExporter::embedded(Exporter::builder()).await;
    let long_target = format!("{}:80", "a".repeat(1100));
    let long_path = format!("/probe?target={long_target}");
    let cases = [
        ("/probe", "missing or empty"),
        ("/probe?target=", "missing or empty"),
        ("/probe?module=tcp_halfopen", "missing or empty"),
        ("/probe?target=localhost", "no port"),
        ("/probe?target=localhost:", "no port"),
        ("/probe?target=localhost:0", "not a number from 1 to 65535"),
        ("/probe?target=localhost:-5", "not a number from 1 to 65535"),
        (
            "/probe?target=localhost:65536",
            "not a number from 1 to 65535",
        ),
        (
            "/probe?target=localhost:http",
            "not a number from 1 to 65535",
        ),
        ("/probe?target=:80", "empty host"),
        ("/probe?target=%5B::1:80", "unbalanced bracket"),
        ("/probe?target=::1%5D:80", "unbalanced bracket"),
        ("/probe?target=::1:80", "without brackets"),
        ("/probe?target=a%20b:80", "contains ' '"),
        ("/probe?target=a+b:80", "contains ' '"),
        (
            "/probe?target=%09host:80",
            "control character U+0009 in target",
        ),
        ("/probe?target=%22host%22:80", "contains '\"'"),
        ("/probe?target=%27host%27:80", "contains '\\''"),
        (
            "/probe?target=host%00:80",
            "control character U+0000 in target",
        ),
        (
            "/probe?target=host%0a:80",
            "control character U+000A in target",
        ),
        (
            "/probe?target=a%0D%0AX-Injected:%20b:80",
            "control character U+000D in target",
        ),
        (
            "/probe?target=%1B%5B31mred:80",
            "control character U+001B in target",
        ),
        (
            "/probe?target=localhost:000000000000000008080",
            "has a leading zero: write it without, as 8080",
        ),
        ("/probe?target=db..example.org:80", "empty label"),
        (long_path.as_str(), "more than the limit of 1024"),
        ("/probe?target=127.1:80", "not a dotted-quad IPv4 address"),
        ("/probe?target=%5Bnope%5D:80", "is not an IPv6 address"),
        ("/probe?target=%zz", "bad percent-encoding"),
        ("/probe?target=host:8%", "bad percent-encoding"),
        ("/probe?target=%ff:80", "UTF-8"),
        ("/probe?target=a:1&target=b:2", "more than once"),
        (
            "/probe?target=127.0.0.1:80&module=nope",
            "unknown module \"nope\"",
        ),
        ("/probe?target=127.0.0.1:80&debug=yes", "debug must be"),
        ("/probe?target=tcp://127.0.0.1:80", "without a scheme"),
        (
            "/probe?target=256.1.1.1:80",
            "target host \"256.1.1.1\": 256 is out of range: each part of an IPv4 address is 0 to 255",
        ),
        (
            "/probe?target=%5Bfe80::1%25lo%5D:80",
            "target host \"fe80::1%lo\" has a zone ID: zone IDs are not supported",
        ),
    ];
    for (path, expected) in cases {
        let response = exporter.get(path).await;
        assert_eq!(
            response.status, 400,
            "{path} gave {} {:?}",
            response.status, response.body
        );
        assert!(
            response.body.contains(expected),
            "{path}: {:?} should mention {expected:?}",
            response.body
        );
        assert_eq!(
            response.body.trim_end().lines().count(),
            1,
            "{path}: not one line: {:?}",
            response.body
        );
    }
    for bad_header in ["abc", "-1", "0", "NaN"] {
        let response = exporter
            .get_with(
                "/probe?target=127.0.0.1:80",
                &[("X-Prometheus-Scrape-Timeout-Seconds", bad_header)],
            )
            .await;
        assert_eq!(response.status, 400, "header {bad_header:?}");
        assert!(
            response
                .body
                .contains("X-Prometheus-Scrape-Timeout-Seconds"),
            "{:?}",
            response.body
        );
    }
    assert_eq!(
        exporter.get("/-/healthy").await.status,
        200,
        "the exporter survived bad input"
    );
    let metrics = exporter.get("/metrics").await.body;
    assert_eq!(
        sample(&metrics, "synack_exporter_probes_in_flight"),
        Some(0.0)
    );
}

#[tokio::test]
async fn routing_gives_404_405_and_health() {
    let exporter = TestExporter::embedded(Exporter::builder()).await;
    assert_eq!(exporter.get("/nope").await.status, 404);
    assert_eq!(exporter.get("/probe/extra").await.status, 404);
    let response = request(exporter.address, "POST", "/probe?target=127.0.0.1:1", &[]).await;
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD"));
    assert_eq!(
        request(exporter.address, "DELETE", "/metrics", &[])
            .await
            .status,
        405
    );
    assert_eq!(exporter.get("/-/reload").await.status, 405);
    assert_eq!(exporter.get("/-/healthy").await.status, 200);
    assert_eq!(exporter.get("/-/ready").await.status, 200);
    assert_eq!(exporter.get("/").await.status, 200);
}

#[tokio::test]
async fn metrics_page_has_the_exporter_and_process_series() {
    let exporter = TestExporter::embedded(Exporter::builder()).await;
    let body = exporter
        .get_with("/metrics", &[("Accept", OPENMETRICS)])
        .await
        .body;
    for expected in [
        "synack_exporter_build_info{version=\"",
        "synack_exporter_probes_total{module=\"tcp_halfopen\",result=\"timeout\"} 0",
        "synack_exporter_probes_in_flight 0",
        "synack_exporter_config_last_reload_successful 1",
        "synack_exporter_config_last_reload_success_timestamp_seconds ",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(body.contains(expected), "missing {expected:?} in\n{body}");
    }
    assert!(sample(&body, "process_resident_memory_bytes").unwrap() > 1e6);
}

#[tokio::test]
async fn config_page_shows_the_config_in_force() {
    let exporter = TestExporter::embedded(Exporter::builder()).await;
    let body = exporter.get("/config").await.body;
    assert!(
        body.contains("tcp_halfopen:")
            && body.contains("prober: tcp_connect")
            && body.contains("timeout: 5s"),
        "{body}"
    );
}

const ONE_MODULE: &str = "modules:\n  quick:\n    prober: tcp_halfopen\n    timeout: 1s\n";

#[tokio::test]
async fn reload_applies_a_good_file_and_keeps_the_old_config_on_a_bad_one() {
    let exporter = TestExporter::with_config(ONE_MODULE, Exporter::builder()).await;
    let path = exporter.config_path.clone().unwrap();
    let port = closed_port().port();
    let probe_extra = format!("/probe?target=127.0.0.1:{port}&module=extra");
    assert_eq!(exporter.get(&probe_extra).await.status, 400);

    std::fs::write(
        &path,
        format!("{ONE_MODULE}  extra:\n    prober: tcp_connect\n"),
    )
    .unwrap();
    let response = request(exporter.address, "POST", "/-/reload", &[]).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(exporter.get(&probe_extra).await.status, 200);
    assert!(exporter.get("/config").await.body.contains("extra:"));

    std::fs::write(
        &path,
        format!("{ONE_MODULE}  extra:\n    prober: tcp_connect\n    timout: 5s\n"),
    )
    .unwrap();
    let response = request(exporter.address, "POST", "/-/reload", &[]).await;
    assert_eq!(response.status, 500);
    let expected = format!(
        "{}:7:5: field `modules.extra.timout`: unknown field `timout`",
        path.display()
    );
    assert!(
        response.body.contains(&expected),
        "{:?} should contain {expected:?}",
        response.body
    );
    let metrics = exporter.get("/metrics").await.body;
    assert_eq!(
        sample(&metrics, "synack_exporter_config_last_reload_successful"),
        Some(0.0)
    );
    assert_eq!(
        exporter.get(&probe_extra).await.status,
        200,
        "the old config stays in force"
    );
}

/// The half-open close must beat the kernel's ~200 ms delayed ACK even when
/// the HTTP side is swamped: here 1 000 concurrent clients share the
/// test's two worker threads with the exporter. The application behind the
/// probed port must still accept nothing, and the exporter's own guard
/// must have seen every close and found none late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halfopen_stays_invisible_under_heavy_http_concurrency() {
    let _alone = common::load::heavy().await;
    // Building the exporter raises this process's open file limit, which
    // the 1 000 client connections below need too. `/probe` requests may
    // hold all but 64 of the connections (more get a quick 503), so 1 000
    // at once need 1 064; and 1 024 probe slots leave the descriptors for
    // them under any open file limit above about 2 200.
    let builder = Exporter::builder()
        .max_in_flight(1024)
        .max_connections(1100);
    let exporter = Arc::new(TestExporter::embedded(builder).await);
    let before = exporter.get("/metrics").await.body;
    assert_eq!(sample(&before, CLOSE_DELAYS), Some(0.0), "{before}");
    assert_eq!(sample(&before, LATE_CLOSES), Some(0.0), "{before}");
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    listener.listen(4096).unwrap();
    listener.set_nonblocking(true).unwrap();
    let target = listener.local_addr().unwrap().as_socket().unwrap();
    let path = Arc::new(format!("/probe?target={target}"));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let (exporter, path) = (Arc::clone(&exporter), Arc::clone(&path));
        clients.spawn(async move {
            let mut successes = 0;
            for _ in 0..4 {
                let response = exporter.get(&path).await;
                successes += usize::from(sample(&response.body, "probe_success") == Some(1.0));
            }
            successes
        });
    }
    let mut successes = 0;
    while let Some(done) = clients.join_next().await {
        successes += done.unwrap();
    }
    assert_eq!(successes, 4000);
    std::thread::sleep(Duration::from_millis(600)); // past any delayed ACK
    let mut accepted = 0;
    while listener.accept().is_ok() {
        accepted += 1;
    }
    assert_eq!(
        accepted, 0,
        "half-open probes completed handshakes under HTTP load"
    );
    let after = exporter.get("/metrics").await.body;
    let delays: Vec<&str> = after
        .lines()
        .filter(|line| line.starts_with("synack_exporter_halfopen_"))
        .collect();
    println!("after the load:\n{}", delays.join("\n"));
    assert_eq!(sample(&after, CLOSE_DELAYS), Some(4000.0), "{after}");
    assert_eq!(sample(&after, LATE_CLOSES), Some(0.0), "{after}");
}

/// Every half-open success's close delay: the series the test above reads.
const CLOSE_DELAYS: &str = "synack_exporter_halfopen_close_delay_seconds_count";
/// Half-open closes past the 50 ms margin.
const LATE_CLOSES: &str = "synack_exporter_halfopen_late_closes_total";

/// A file without `modules:` (the README's `targets:` snippet, say) serves
/// the built-in modules; an unknown module's 400 lists those that exist.
#[tokio::test]
async fn a_config_without_modules_serves_the_builtin_ones() {
    let exporter = TestExporter::with_config("", Exporter::builder()).await;
    let port = closed_port().port();
    for module in ["tcp_halfopen", "tcp_connect"] {
        let response = exporter
            .get(&format!("/probe?target=127.0.0.1:{port}&module={module}"))
            .await;
        assert_eq!(response.status, 200, "{module}: {}", response.body);
        assert_eq!(
            sample(&response.body, "probe_failure_reason{reason=\"refused\"}"),
            Some(1.0),
            "{module}"
        );
    }
    let response = exporter
        .get(&format!("/probe?target=127.0.0.1:{port}&module=nope"))
        .await;
    assert_eq!(
        (response.status, response.body.as_str()),
        (
            400,
            "unknown module \"nope\"; use one of tcp_connect, tcp_halfopen, or define it under modules: in the config file\n"
        )
    );
    let config = exporter.get("/config").await.body;
    assert!(
        config.contains("tcp_halfopen:") && config.contains("tcp_connect:"),
        "/config shows the modules in force: {config}"
    );
}
