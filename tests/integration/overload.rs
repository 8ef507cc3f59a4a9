//! When the exporter itself is the bottleneck, it must say so: a probe
//! that queued for a slot until too little time was left fails as `local`,
//! never as a `timeout` that blames a healthy target; and a `/probe` whose
//! client went away gives its slot and socket back at once.

use crate::common;

use common::{TestExporter, sample};
use std::net::TcpListener;
use std::time::{Duration, Instant};
use synack_exporter::{Exporter, ExporterBuilder};
use tokio::io::AsyncWriteExt;

const ONE_SECOND_MODULE: &str = "modules:\n  slow:\n    prober: tcp_halfopen\n    timeout: 1s\n";

fn one_slot() -> ExporterBuilder {
    Exporter::builder().max_in_flight(1)
}

fn reason_of(body: &str) -> &'static str {
    common::failed_reason(body).unwrap_or("success")
}

/// Filed defect: with `--probe.max-in-flight 1`, probes of an open port
/// queued behind probes of a dropping port got their slot at (or near) the
/// deadline, sent a SYN with no time left, and were reported `timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_port_starved_of_slots_fails_as_local_not_timeout() {
    let dropping = common::saturated_listener();
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = open.local_addr().unwrap();
    let exporter =
        std::sync::Arc::new(TestExporter::with_config(ONE_SECOND_MODULE, one_slot()).await);
    let mut probes = Vec::new();
    for (index, target) in [dropping.address, dropping.address, open, open, open]
        .into_iter()
        .enumerate()
    {
        let exporter = std::sync::Arc::clone(&exporter);
        probes.push(tokio::spawn(async move {
            // Keep the order in which they reach the queue.
            tokio::time::sleep(Duration::from_millis(30 * index as u64)).await;
            let body = exporter
                .get(&format!("/probe?target={target}&module=slow"))
                .await
                .body;
            (target, reason_of(&body).to_owned(), body)
        }));
    }
    let mut results = Vec::new();
    for probe in probes {
        results.push(probe.await.unwrap());
    }
    for (target, reason, body) in &results {
        if *target == open {
            assert!(
                reason == "success" || reason == "local",
                "an open port must never be reported {reason}: {body}"
            );
        }
    }
    for (_, reason, body) in &results {
        let duration = sample(body, "probe_duration_seconds").unwrap();
        assert!(
            reason != "timeout" || duration >= 0.5,
            "a timeout after only {duration}s of a 1s probe blames the target for the exporter's queue: {body}"
        );
    }
    let (_, reason, body) = &results[0];
    assert_eq!(
        reason, "timeout",
        "the first dropping probe had its full second: {body}"
    );
    assert!(
        results.iter().any(|(_, reason, _)| reason == "local"),
        "the queued probes say the exporter was the bottleneck: {results:?}"
    );
    let local_detail = exporter.get("/").await.body;
    assert!(local_detail.contains("failed: local"), "{local_detail}");
}

/// Filed defect: an aborted `/probe` kept its slot (and socket) until its
/// deadline. Now the probe is cancelled when its client goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_whose_client_left_frees_its_slot_at_once() {
    let _timed = common::load::timed().await;
    let dropping = common::saturated_listener();
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = open.local_addr().unwrap();
    let exporter = TestExporter::with_config(
        "modules:\n  patient:\n    prober: tcp_halfopen\n    timeout: 20s\n",
        one_slot(),
    )
    .await;
    let mut abandoned = tokio::net::TcpStream::connect(exporter.address)
        .await
        .unwrap();
    abandoned
        .write_all(
            format!(
                "GET /probe?target={}&module=patient HTTP/1.1\r\nHost: x\r\n\r\n",
                dropping.address
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    exporter.wait_for_in_flight(1.0).await;
    drop(abandoned);
    exporter.wait_for_in_flight(0.0).await;

    let started = Instant::now();
    let body = exporter
        .get(&format!("/probe?target={open}&module=patient"))
        .await
        .body;
    assert_eq!(reason_of(&body), "success", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the slot was free: took {:?}",
        started.elapsed()
    );
}

/// Issue 18, item 12, at `--web.max-connections`: `/probe` requests may
/// hold all but a quarter of the connection slots. One more is answered
/// 503 at once, saying why, with `Retry-After` and `Connection: close`,
/// and `/metrics` is answered beside them. Before, at the limit every new
/// connection waited in the backlog until a probe ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_requests_leave_a_quarter_of_the_connections_to_the_quick_ones() {
    let _timed = common::load::timed().await;
    const MAX: usize = 8;
    const PROBES: usize = MAX - MAX / 4;
    let dropping = common::saturated_listener();
    let exporter = TestExporter::with_config(
        "modules:\n  patient:\n    prober: tcp_halfopen\n    timeout: 20s\n",
        Exporter::builder().max_connections(MAX),
    )
    .await;
    let path = format!("/probe?target={}&module=patient", dropping.address);
    let mut held = Vec::new();
    for _ in 0..PROBES {
        let mut stream = tokio::net::TcpStream::connect(exporter.address)
            .await
            .unwrap();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        held.push(stream);
    }
    exporter.wait_for_in_flight(PROBES as f64).await;
    for _ in 0..3 {
        let started = Instant::now();
        let refused = exporter.get(&path).await;
        assert_eq!(refused.status, 503, "{}", refused.body);
        assert!(
            refused
                .body
                .starts_with("too many /probe requests at once: all 6 are in flight"),
            "{}",
            refused.body
        );
        assert_eq!(refused.header("retry-after"), Some("1"));
        assert_eq!(refused.header("connection"), Some("close"));
        let metrics = exporter.get("/metrics").await;
        assert_eq!(metrics.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "answered at once: {:?}",
            started.elapsed()
        );
    }
    // A slot that frees serves the next /probe.
    drop(held.pop());
    exporter.wait_for_in_flight((PROBES - 1) as f64).await;
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let body = exporter
        .get(&format!(
            "/probe?target={}&module=patient",
            open.local_addr().unwrap()
        ))
        .await
        .body;
    assert_eq!(reason_of(&body), "success", "{body}");
}
