//! `tcp.attempts` through the exporter, on loopback: the `/probe` series
//! of a multi-attempt module, its step log, attempts left out when the
//! scrape timeout lowers the deadline, and the counters of scheduled
//! targets on `/metrics`. Loss itself needs root and nftables: see
//! `tests/netns/attempts.rs`.

use crate::common;

use common::scheduled::wait_for_scheduled;
use common::{TestExporter, closed_port, open_port, sample};
use std::time::Duration;
use synack_exporter::Exporter;

/// `ping` runs all 5 attempts 20 ms apart; `retry` stops at the first
/// success; `long` has room for 10 attempts 100 ms apart in 2 s.
const CONFIG: &str = "\
modules:
  ping:
    prober: tcp_halfopen
    timeout: 1s
    tcp: {attempts: 5, attempt_interval: 20ms, attempt_timeout: 15ms, stop_on_success: false}
  retry:
    prober: tcp_connect
    timeout: 1s
    tcp: {attempts: 5, attempt_interval: 20ms}
  long:
    prober: tcp_halfopen
    timeout: 2s
    tcp: {attempts: 10, attempt_interval: 100ms, stop_on_success: false}
";

fn value(body: &str, series: &str) -> f64 {
    sample(body, series).unwrap_or_else(|| panic!("no {series} in\n{body}"))
}

#[tokio::test]
async fn a_ping_module_reports_every_attempt_and_the_handshake_statistics() {
    let exporter = TestExporter::with_config(CONFIG, Exporter::builder()).await;
    let (_listener, port) = open_port();
    let body = exporter
        .get(&format!("/probe?target=127.0.0.1:{port}&module=ping"))
        .await
        .body;
    assert_eq!(value(&body, "probe_success"), 1.0, "{body}");
    assert_eq!(value(&body, "probe_attempts"), 5.0, "{body}");
    assert_eq!(value(&body, "probe_attempts_failed"), 0.0, "{body}");
    let [min, mean, max, stddev] = ["min", "mean", "max", "stddev"]
        .map(|stat| value(&body, &format!("probe_tcp_handshake_{stat}_seconds")));
    assert!(
        0.0 < min && min <= mean && mean <= max && max < 0.015,
        "{body}"
    );
    assert!((0.0..=max - min).contains(&stddev), "{body}");
    let first = value(&body, "probe_tcp_handshake_duration_seconds");
    assert!((min..=max).contains(&first), "the first success's: {body}");
    // Four intervals and the last attempt.
    assert!(value(&body, "probe_duration_seconds") >= 0.08, "{body}");

    // A retrying module stops at the first success.
    let body = exporter
        .get(&format!("/probe?target=127.0.0.1:{port}&module=retry"))
        .await
        .body;
    assert_eq!(value(&body, "probe_attempts"), 1.0, "{body}");
    assert_eq!(value(&body, "probe_tcp_handshake_stddev_seconds"), 0.0);

    // The half-open race guard counts every close, one per attempt of the
    // five-attempt probe (each raced the delayed ACK), and never a
    // tcp_connect one.
    let metrics = exporter.get("/metrics").await.body;
    let closes = "synack_exporter_halfopen_close_delay_seconds_count";
    assert_eq!(value(&metrics, closes), 5.0, "{metrics}");
}

#[tokio::test]
async fn refused_attempts_all_fail_and_the_step_log_shows_each() {
    let exporter = TestExporter::with_config(CONFIG, Exporter::builder()).await;
    let closed = closed_port();
    let body = exporter
        .get(&format!("/probe?target={closed}&module=retry"))
        .await
        .body;
    assert_eq!(value(&body, "probe_success"), 0.0, "{body}");
    assert_eq!(
        value(&body, "probe_failure_reason{reason=\"refused\"}"),
        1.0,
        "the last attempt's reason: {body}"
    );
    assert_eq!(value(&body, "probe_attempts"), 5.0, "{body}");
    assert_eq!(value(&body, "probe_attempts_failed"), 5.0, "{body}");
    for stat in ["min", "mean", "max", "stddev"] {
        let series = format!("probe_tcp_handshake_{stat}_seconds");
        assert_eq!(value(&body, &series), 0.0, "{body}");
    }

    let debug = exporter
        .get(&format!("/probe?target={closed}&module=retry&debug=true"))
        .await
        .body;
    for number in 1..=5 {
        let line = format!("attempt {number}/5: refused after ");
        assert!(debug.contains(&line), "missing {line:?} in\n{debug}");
    }
    assert_eq!(debug.matches("connecting to ").count(), 5, "{debug}");
    assert!(
        debug.contains("probe failed: refused: 5 of 5 attempts failed, the last: connect to"),
        "{debug}"
    );

    // The default module pays nothing for attempts: none of their series.
    let body = exporter.get(&format!("/probe?target={closed}")).await.body;
    assert_eq!(value(&body, "probe_success"), 0.0, "{body}");
    assert!(!body.contains("attempts"), "{body}");
    assert!(!body.contains("handshake_min"), "{body}");
}

#[tokio::test]
async fn attempts_that_could_not_end_before_a_lowered_deadline_are_not_started() {
    let exporter = TestExporter::with_config(CONFIG, Exporter::builder()).await;
    let closed = closed_port();
    // 1 s scrape timeout - 0.5 s offset: room for attempts starting at 0,
    // 100, 200 and 300 ms, whose 100 ms each end by 400 ms; the one at
    // 400 ms would end at 500 ms, at the deadline or after it.
    let response = exporter
        .get_with(
            &format!("/probe?target={closed}&module=long&debug=true"),
            &[("X-Prometheus-Scrape-Timeout-Seconds", "1")],
        )
        .await;
    let debug = &response.body;
    let attempts = value(debug, "probe_attempts");
    assert!((4.0..=5.0).contains(&attempts), "{debug}");
    assert!(value(debug, "probe_duration_seconds") < 0.5, "{debug}");
    assert!(
        debug.contains(&format!(
            "attempts {} to 10 not started: they could not end before the deadline",
            attempts + 1.0
        )),
        "{debug}"
    );
}

#[tokio::test]
async fn scheduled_targets_count_attempts_and_observe_every_successful_one() {
    let (_listener, port) = open_port();
    let open = format!("127.0.0.1:{port}");
    let closed = closed_port().to_string();
    let config = format!(
        "{CONFIG}targets:\n  - module: ping\n    interval: 1s\n    targets: [\"{open}\", \"{closed}\"]\n"
    );
    let exporter = TestExporter::with_config(&config, Exporter::builder()).await;
    let limit = Duration::from_secs(10);
    let up = wait_for_scheduled(&exporter, &open, limit, |state| state.probes() >= 2).await;
    assert_eq!(up.attempts, 5 * up.probes(), "{up:?}");
    assert_eq!(up.attempts_failed, 0, "{up:?}");
    assert_eq!(up.handshakes, up.attempts, "every success observed: {up:?}");
    let down = wait_for_scheduled(&exporter, &closed, limit, |state| state.probes() >= 2).await;
    assert_eq!(down.attempts, 5 * down.probes(), "{down:?}");
    assert_eq!(down.attempts_failed, down.attempts, "{down:?}");
    assert_eq!(down.handshakes, 0, "{down:?}");
}
