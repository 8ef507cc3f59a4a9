//! `tcp.expect_port: closed | filtered` against loopback ports: a negative
//! check is half-open whatever the prober, so the application behind an
//! open port accepts nothing; the port's answer is exported.

use crate::common;

use common::{TestExporter, failed_reason, sample};
use std::net::TcpListener;
use std::time::Duration;
use synack_exporter::Exporter;

/// One module per TCP prober and `expect_port`, the full-handshake ones
/// included: `expect_port` makes them half-open.
const CONFIG: &str = "modules:
  halfopen_closed:
    prober: tcp_halfopen
    timeout: 2s
    tcp: {expect_port: closed}
  connect_closed:
    prober: tcp_connect
    timeout: 2s
    tcp: {expect_port: closed}
  tcp_closed:
    prober: tcp
    timeout: 2s
    tcp: {half_open: false, expect_port: closed}
  connect_filtered:
    prober: tcp_connect
    timeout: 2s
    tcp: {expect_port: filtered}
";

const CLOSED_MODULES: [&str; 3] = ["halfopen_closed", "connect_closed", "tcp_closed"];

fn answer(body: &str, answer: &str) -> Option<f64> {
    sample(
        body,
        &format!("probe_port_answer_info{{answer=\"{answer}\"}}"),
    )
}

/// A non-blocking listener on 127.0.0.1: an open port.
fn open_listener() -> TcpListener {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    listener
}

#[tokio::test]
async fn closed_against_an_open_port_fails_open_and_the_application_accepts_nothing() {
    let _timed = common::load::timed().await;
    let exporter = TestExporter::with_config(CONFIG, Exporter::builder()).await;
    let listener = open_listener();
    let target = listener.local_addr().unwrap();
    for module in CLOSED_MODULES.into_iter().chain(["connect_filtered"]) {
        for round in 0..10 {
            let body = exporter.probe(target, module).await.body;
            assert_eq!(
                failed_reason(&body),
                Some("open"),
                "{module} {round}: {body}"
            );
            assert_eq!(sample(&body, "probe_success"), Some(0.0), "{body}");
            assert_eq!(answer(&body, "syn_ack"), Some(1.0), "{body}");
        }
    }
    // Past the kernel's delayed ACK, so that a late ACK would have shown.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        common::accept_waiting(&listener),
        0,
        "a negative check must never complete a handshake"
    );
}

#[tokio::test]
async fn closed_against_a_closed_port_succeeds_and_filtered_fails_as_refused() {
    let exporter = TestExporter::with_config(CONFIG, Exporter::builder()).await;
    let target = common::closed_port();
    for module in CLOSED_MODULES {
        let body = exporter.probe(target, module).await.body;
        assert_eq!(
            sample(&body, "probe_success"),
            Some(1.0),
            "{module}: {body}"
        );
        assert_eq!(failed_reason(&body), None, "{body}");
        assert_eq!(answer(&body, "rst"), Some(1.0), "{body}");
    }
    let body = exporter.probe(target, "connect_filtered").await.body;
    assert_eq!(failed_reason(&body), Some("refused"), "{body}");
    assert_eq!(answer(&body, "rst"), Some(1.0), "{body}");

    // A name that does not resolve is no answer from the network: it
    // stays a `dns` failure, with no answer series.
    let body = exporter
        .probe("does-not-exist.invalid:22", "connect_closed")
        .await
        .body;
    assert_eq!(failed_reason(&body), Some("dns"), "{body}");
    assert!(!body.contains("probe_port_answer_info"), "{body}");
}

#[tokio::test]
async fn an_open_module_writes_no_answer_series_and_every_module_has_reason_open() {
    let exporter = TestExporter::with_config(CONFIG, Exporter::builder()).await;
    let listener = open_listener();
    let body = exporter
        .probe(listener.local_addr().unwrap(), "tcp_halfopen")
        .await
        .body;
    assert_eq!(sample(&body, "probe_success"), Some(1.0), "{body}");
    assert_eq!(
        sample(&body, "probe_failure_reason{reason=\"open\"}"),
        Some(0.0),
        "{body}"
    );
    assert!(!body.contains("probe_port_answer"), "{body}");
}

#[tokio::test]
async fn scheduled_targets_keep_the_last_answer() {
    let listener = open_listener();
    let open = listener.local_addr().unwrap();
    let closed = common::closed_port();
    let yaml = format!(
        "{CONFIG}targets:\n  - module: connect_closed\n    interval: 1s\n    targets: [\"{open}\", \"{closed}\"]\n"
    );
    let exporter = TestExporter::with_config(&yaml, Exporter::builder()).await;
    let series = |target, answer| {
        format!(
            "probe_port_answer_info{{module=\"connect_closed\",target=\"{target}\",answer=\"{answer}\"}}"
        )
    };
    let mut metrics = String::new();
    for _ in 0..50 {
        metrics = exporter.get("/metrics").await.body;
        if sample(&metrics, &series(open, "syn_ack")).is_some()
            && sample(&metrics, &series(closed, "rst")).is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        sample(&metrics, &series(open, "syn_ack")),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, &series(closed, "rst")),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metrics.contains("# HELP probe_port_answer_info "),
        "{metrics}"
    );
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(common::accept_waiting(&listener), 0);
}
