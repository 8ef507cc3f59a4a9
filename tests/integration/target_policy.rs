//! A module's `target_policy` through `/probe`: refused targets answer 403
//! with one line, are counted by module, and send nothing; `localhost` is
//! refused after resolution when its address is denied; scheduled
//! targets that resolve into a denied network fail as `local`, never
//! probed.

use crate::common;

use common::scheduled::wait_for_scheduled;
use common::{TestExporter, accept_waiting, open_port, sample};
use std::time::Duration;
use synack_exporter::Exporter;

/// Modules with policies around the open port `port`.
fn config(port: u16) -> String {
    let low = port.saturating_sub(5).max(1);
    format!(
        "modules:
  ranged:
    prober: tcp_halfopen
    timeout: 2s
    target_policy:
      allow: [\"127.0.0.0/8:{low}-{port}\", \"localhost:{port}\", \"*.internal.invalid:{port}\"]
      deny: [\"127.0.0.2\", \"*.secret.internal.invalid\"]
  no_loopback:
    prober: tcp_connect
    timeout: 2s
    target_policy:
      deny: [\"127.0.0.0/8\", \"::1\"]
"
    )
}

async fn probe(exporter: &TestExporter, module: &str, target: &str) -> common::Response {
    exporter
        .get(&format!("/probe?module={module}&target={target}"))
        .await
}

fn denied_total(metrics: &str, module: &str) -> Option<f64> {
    sample(
        metrics,
        &format!("synack_exporter_probes_denied_total{{module=\"{module}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_outside_the_policy_answer_403_and_are_counted() {
    let (_listener, port) = open_port();
    let exporter = TestExporter::with_config(&config(port), Exporter::builder()).await;

    let allowed = probe(&exporter, "ranged", &format!("127.0.0.1:{port}")).await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(sample(&allowed.body, "probe_success"), Some(1.0));
    let by_name = probe(&exporter, "ranged", &format!("localhost:{port}")).await;
    assert_eq!(by_name.status, 200, "{}", by_name.body);

    let cases = [
        // Outside the port range.
        (format!("127.0.0.1:{}", port + 1), "matches no allow entry"),
        // In the range, but denied.
        (format!("127.0.0.2:{port}"), "deny entry 127.0.0.2"),
        (format!("[::ffff:127.0.0.2]:{port}"), "deny entry 127.0.0.2"),
        // Names: refused before any lookup.
        (
            format!("db.secret.internal.invalid:{port}"),
            "deny entry *.secret.internal.invalid",
        ),
        (
            "example.invalid:80".to_owned(),
            "example.invalid:80 matches no allow entry",
        ),
    ];
    for (target, needle) in &cases {
        let answer = probe(&exporter, "ranged", target).await;
        assert_eq!(answer.status, 403, "{target}: {}", answer.body);
        assert!(answer.body.contains(needle), "{target}: {}", answer.body);
        assert!(
            answer
                .body
                .starts_with("refused by the module's target_policy: ")
                && answer.body.ends_with('\n')
                && answer.body.lines().count() == 1,
            "{target}: one line: {:?}",
            answer.body
        );
        let debug = probe(&exporter, "ranged", &format!("{target}&debug=true")).await;
        assert_eq!(debug.status, 403, "debug=true too: {}", debug.body);
    }
    let metrics = exporter.get("/metrics").await.body;
    assert_eq!(
        denied_total(&metrics, "ranged"),
        Some(2.0 * cases.len() as f64),
        "{metrics}"
    );
    assert_eq!(denied_total(&metrics, "tcp_halfopen"), Some(0.0));
    assert_eq!(
        sample(
            &metrics,
            "synack_exporter_probes_total{module=\"ranged\",result=\"local\"}"
        ),
        Some(0.0),
        "a refusal is not a probe"
    );

    // The counter survives a reload, as the probe counters do.
    let reloaded = exporter.reload_with(&config(port)).await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    let metrics = exporter.get("/metrics").await.body;
    assert_eq!(
        denied_total(&metrics, "ranged"),
        Some(2.0 * cases.len() as f64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_is_refused_after_resolution_and_no_syn_is_sent() {
    let (listener, port) = open_port();
    listener.set_nonblocking(true).unwrap();
    let exporter = TestExporter::with_config(&config(port), Exporter::builder()).await;

    // tcp_connect completes the handshake, so a probe that sent its SYN
    // leaves a connection for accept().
    for target in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
    ] {
        let answer = probe(&exporter, "no_loopback", &target).await;
        assert_eq!(answer.status, 403, "{target}: {}", answer.body);
        assert!(
            answer
                .body
                .contains(&format!("127.0.0.1:{port} is in deny entry 127.0.0.0/8")),
            "the resolved address is named: {}",
            answer.body
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        accept_waiting(&listener),
        0,
        "a refused probe reached the listener"
    );

    // The same probe without a policy does reach it: the check can fail.
    let control = probe(&exporter, "tcp_connect", &format!("localhost:{port}")).await;
    assert_eq!(
        sample(&control.body, "probe_success"),
        Some(1.0),
        "{}",
        control.body
    );
    let mut seen = 0;
    for _ in 0..50 {
        seen += accept_waiting(&listener);
        if seen > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, 1, "the control probe's connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_name_that_resolves_into_a_denied_network_fails_as_local() {
    let (listener, port) = open_port();
    listener.set_nonblocking(true).unwrap();
    let yaml = format!(
        "{}targets:\n  - module: no_loopback\n    interval: 1s\n    targets: [\"localhost:{port}\"]\n",
        config(port)
    );
    let exporter = TestExporter::with_config(&yaml, Exporter::builder()).await;
    let target = format!("localhost:{port}");
    let state = wait_for_scheduled(&exporter, &target, Duration::from_secs(10), |state| {
        state.count("local") >= 2
    })
    .await;
    assert!(!state.success && state.count("success") == 0, "{state:#?}");
    assert_eq!(state.attempts, 0, "never probed: {state:#?}");
    assert_eq!(accept_waiting(&listener), 0, "nothing reached the listener");
    let metrics = exporter.get("/metrics").await.body;
    assert!(
        denied_total(&metrics, "no_loopback").is_some_and(|n| n >= 2.0),
        "{metrics}"
    );
}
