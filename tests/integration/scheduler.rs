//! The background scheduler, `/health/<group>`, reload of scheduled
//! targets and the landing page, against real loopback sockets.

use crate::common;

use common::scheduled::{
    ScheduledState, scheduled_state, scheduled_states, scheduled_targets, wait_for_scheduled,
};
use common::{TestExporter, request, sample};
use std::io::ErrorKind;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};
use synack_exporter::Exporter;

/// An open port whose listener does not block the test's accepts.
fn open_listener() -> (TcpListener, String) {
    let (listener, port) = common::open_port();
    listener.set_nonblocking(true).unwrap();
    (listener, format!("127.0.0.1:{port}"))
}

fn closed_address() -> String {
    common::closed_port().to_string()
}

/// The targets `/metrics` has series for, sorted.
async fn scheduled(exporter: &TestExporter) -> Vec<String> {
    let mut targets = scheduled_targets(&exporter.get("/metrics").await.body);
    targets.sort();
    targets
}

/// An exporter with the test modules, no scheduled targets, and `groups`.
async fn exporter_with_groups(groups: &str) -> TestExporter {
    TestExporter::with_config(&config("  []\n", groups), Exporter::builder()).await
}

fn config(targets: &str, extra: &str) -> String {
    format!(
        "modules:\n  fast:\n    prober: tcp_halfopen\n    timeout: 300ms\n  grouped:\n    prober: tcp_halfopen\n    timeout: 1s\n\
         targets:\n{targets}{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_targets_show_gauges_and_reasons_and_open_ones_are_never_accepted() {
    let (listener, open) = open_listener();
    let closed = closed_address();
    let queue = common::saturated_listener();
    let slow = queue.address.to_string();
    let targets = format!(
        "  - module: fast\n    interval: 1s\n    targets: [\"{open}\", \"{closed}\", \"{slow}\"]\n    labels: {{service: demo}}\n"
    );
    let exporter = TestExporter::with_config(&config(&targets, ""), Exporter::builder()).await;
    let mut expected = vec![open.clone(), closed.clone(), slow.clone()];
    expected.sort();
    assert_eq!(scheduled(&exporter).await, expected);
    for target in [&open, &closed, &slow] {
        wait_for_scheduled(&exporter, target, Duration::from_secs(5), |state| {
            state.probes() >= 2
        })
        .await;
    }
    let metrics = exporter.get("/metrics").await.body;
    let series = |name: &str, target: &str, extra: &str| {
        sample(
            &metrics,
            &format!("{name}{{module=\"fast\",target=\"{target}\",service=\"demo\"{extra}}}"),
        )
    };
    assert_eq!(series("probe_success", &open, ""), Some(1.0), "{metrics}");
    assert_eq!(series("probe_healthy", &open, ""), Some(1.0));
    assert_eq!(series("probe_ip_protocol", &open, ""), Some(4.0));
    assert!(series("probe_tcp_handshake_latency_seconds_count", &open, "").unwrap() >= 2.0);
    let rtt = series("probe_tcp_rtt_seconds", &open, "").unwrap();
    assert!(rtt > 0.0 && rtt < 0.1, "a loopback RTT: {metrics}");
    assert_eq!(
        series("probe_tcp_syn_retransmits_total", &open, ""),
        Some(0.0)
    );
    assert_eq!(
        series("probe_failure_reason", &closed, ",reason=\"refused\""),
        Some(1.0)
    );
    assert_eq!(
        series("probe_failure_reason", &closed, ",reason=\"timeout\""),
        Some(0.0)
    );
    assert_eq!(series("probe_success", &closed, ""), Some(0.0));
    assert_eq!(series("probe_healthy", &closed, ""), Some(0.0));
    assert_eq!(
        series("probe_failure_reason", &slow, ",reason=\"timeout\""),
        Some(1.0)
    );
    assert!(series("probe_results_total", &slow, ",result=\"timeout\"").unwrap() >= 2.0);
    assert!(series("probe_last_probe_timestamp_seconds", &open, "").unwrap() > 1.7e9);
    assert!(sample(&metrics, "synack_exporter_scheduled_targets") == Some(3.0));
    assert!(metrics.contains("synack_exporter_schedule_lag_seconds_bucket{le=\"0.05\"}"));
    // Scheduled half-open successes count in the exporter's guard too.
    assert!(
        sample(
            &metrics,
            "synack_exporter_halfopen_close_delay_seconds_count"
        )
        .unwrap()
            >= 2.0
    );
    assert_eq!(
        sample(&metrics, "synack_exporter_halfopen_late_closes_total"),
        Some(0.0)
    );

    std::thread::sleep(Duration::from_millis(600)); // past any delayed ACK
    match listener.accept() {
        Err(error) if error.kind() == ErrorKind::WouldBlock => {}
        other => panic!(
            "the application behind a scheduled half-open target saw a connection: {other:?}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_exist_before_the_first_probe_and_leave_with_the_target() {
    let closed = closed_address();
    let other = closed_address();
    let targets =
        format!("  - module: fast\n    interval: 1h\n    targets: [\"{closed}\", \"{other}\"]\n");
    let exporter = TestExporter::with_config(&config(&targets, ""), Exporter::builder()).await;
    let metrics = exporter.get("/metrics").await.body;
    let labels = format!("module=\"fast\",target=\"{closed}\"");
    for series in [
        format!("probe_success{{{labels}}}"),
        format!("probe_healthy{{{labels}}}"),
        format!("probe_failure_reason{{{labels},reason=\"local\"}}"),
        format!("probe_results_total{{{labels},result=\"success\"}}"),
        format!("probe_tcp_handshake_latency_seconds_bucket{{{labels},le=\"+Inf\"}}"),
        format!("probe_state_changes_total{{{labels}}}"),
        format!("probe_tcp_rtt_seconds{{{labels}}}"),
        format!("probe_tcp_syn_retransmits_total{{{labels}}}"),
    ] {
        assert_eq!(
            sample(&metrics, &series),
            Some(0.0),
            "{series} should exist at 0 before any probe"
        );
    }
    let reloaded = exporter
        .reload_with(&config(
            &format!("  - module: fast\n    interval: 1h\n    targets: [\"{other}\"]\n"),
            "",
        ))
        .await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    let metrics = exporter.get("/metrics").await.body;
    assert!(
        !metrics.contains(&closed),
        "a removed target keeps no series"
    );
    assert!(metrics.contains(&other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rise_and_fall_damp_a_port_that_closes_and_reopens() {
    let (listener, address) = open_listener();
    let targets = format!(
        "  - module: fast\n    interval: 1s\n    rise: 2\n    fall: 3\n    targets: [\"{address}\"]\n"
    );
    let exporter = TestExporter::with_config(&config(&targets, ""), Exporter::builder()).await;
    let limit = Duration::from_secs(5);
    let wait_for =
        |check: fn(&ScheduledState) -> bool| wait_for_scheduled(&exporter, &address, limit, check);
    wait_for(|state| state.healthy && state.count("success") >= 1).await;

    drop(listener);
    let first_failure = wait_for(|state| state.count("refused") >= 1).await;
    assert!(
        !first_failure.success && first_failure.healthy,
        "one failure: probe_success 0, still healthy: {first_failure:?}"
    );
    let second_failure = wait_for(|state| state.count("refused") >= 2).await;
    assert!(second_failure.healthy, "two failures: still healthy");
    let down = wait_for(|state| state.count("refused") >= 3).await;
    assert!(!down.healthy, "unhealthy at the third (fall-th) failure");
    assert_eq!(down.state_changes, 1);

    let port = address.rsplit_once(':').unwrap().1;
    let _reopened = TcpListener::bind(format!("127.0.0.1:{port}")).expect("rebind the same port");
    let successes_before = down.count("success");
    let first_success = wait_for_scheduled(&exporter, &address, limit, |state| {
        state.count("success") > successes_before
    })
    .await;
    assert!(
        first_success.success && !first_success.healthy,
        "one success: still unhealthy: {first_success:?}"
    );
    let up = wait_for_scheduled(&exporter, &address, limit, |state| {
        state.count("success") > successes_before + 1
    })
    .await;
    assert!(up.healthy, "healthy again at the second (rise-th) success");
    assert_eq!(up.state_changes, 2);
}

/// `fast_interval` while fall counts, `down_interval` once down, measured
/// from the probes' own finish times (`probe_last_probe_timestamp_seconds`;
/// a refused probe on loopback ends within a millisecond of its start).
/// Within 15 s: the first probe comes within one 3 s interval, and the
/// gaps after it add up to 9 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_come_faster_while_falling_and_at_down_interval_once_down() {
    let (listener, address) = open_listener();
    let targets = format!(
        "  - module: fast\n    interval: 3s\n    fast_interval: 1s\n    down_interval: 2s\n    \
         fall: 3\n    targets: [\"{address}\"]\n"
    );
    let exporter = TestExporter::with_config(&config(&targets, ""), Exporter::builder()).await;
    let first = wait_for_scheduled(&exporter, &address, Duration::from_secs(5), |state| {
        state.probed()
    })
    .await;
    assert!(first.healthy, "the open port is up: {first:?}");
    drop(listener);
    // Each probe's finish time, polled every 20 ms: the gaps are 1 s or
    // more, so no probe is missed.
    let mut times = vec![first.last_probe_unix];
    let mut last = first;
    let deadline = Instant::now() + Duration::from_secs(11);
    while times.len() < 6 {
        assert!(
            Instant::now() < deadline,
            "only {} probes within 11 s: {times:?}",
            times.len()
        );
        let state = scheduled_state(&exporter, &address).await.unwrap();
        if state.probes() > last.probes() {
            assert_eq!(state.probes(), last.probes() + 1, "a probe was missed");
            times.push(state.last_probe_unix);
            last = state;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!last.healthy && last.state_changes == 1, "down: {last:?}");
    let gaps: Vec<f64> = times.windows(2).map(|pair| pair[1] - pair[0]).collect();
    // Up: 3 s to the first failure; falling (1 and 2 of 3): 1 s each;
    // down at the third: 2 s from then on.
    let expected = [3.0, 1.0, 1.0, 2.0, 2.0];
    for (gap, want) in gaps.iter().zip(expected) {
        assert!(
            (gap - want).abs() < 0.25,
            "gaps {gaps:.3?}, expected {expected:?}"
        );
    }
    // The lag is against the slot each probe was due at, whatever the
    // interval that led to it: every probe started within 250 ms of it.
    let metrics = exporter.get("/metrics").await.body;
    let count = sample(&metrics, "synack_exporter_schedule_lag_seconds_count").unwrap();
    let on_time = sample(
        &metrics,
        "synack_exporter_schedule_lag_seconds_bucket{le=\"0.25\"}",
    )
    .unwrap();
    assert!(count >= 6.0, "{count} probes observed");
    assert_eq!(
        on_time, count,
        "some probes started late against their slot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_times_spread_across_the_interval() {
    let closed = closed_address();
    let port = closed.rsplit_once(':').unwrap().1;
    // 240 targets on 127.0.1.x: different addresses, one closed port.
    let list: Vec<String> = (1..=240)
        .map(|n| format!("\"127.0.{}.{}:{port}\"", n / 200 + 1, n % 200 + 1))
        .collect();
    let targets = format!(
        "  - module: fast\n    interval: 2s\n    targets: [{}]\n",
        list.join(", ")
    );
    let exporter = TestExporter::with_config(&config(&targets, ""), Exporter::builder()).await;
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // The first probe's finish time is when its slot came, within ms.
    let mut first_probe_times = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while first_probe_times.len() < list.len() {
        assert!(
            Instant::now() < deadline,
            "only {} of {} targets probed within 5 s",
            first_probe_times.len(),
            list.len()
        );
        let metrics = exporter.get("/metrics").await.body;
        for (target, state) in scheduled_states(&metrics) {
            if state.last_probe_unix > 0.0 && !first_probe_times.contains_key(&target) {
                // Should a scrape come late, the target may have been probed
                // again since: each probe finishes an interval after the last.
                let later = 2.0 * state.probes().saturating_sub(1) as f64;
                first_probe_times.insert(target, state.last_probe_unix - later - started);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut quarters = [0usize; 4];
    for time in first_probe_times.values() {
        let quarter = ((time / 0.5).floor().max(0.0) as usize).min(3);
        quarters[quarter] += 1;
    }
    // An even spread puts 60 in each quarter; a burst puts all 240 in the
    // first. The bounds allow half of that either way: the other tests of
    // this file start their exporters in the same first half second, and
    // on two busy cores that once moved the first quarter down to 35.
    for count in quarters {
        assert!(
            (30..=90).contains(&count),
            "240 first probes over 4 quarters of the interval: {quarters:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_group_answers_200_503_404_and_head() {
    let (_a, up_a) = open_listener();
    let (_b, up_b) = open_listener();
    let closed = closed_address();
    let groups = format!(
        "groups:\n  web:\n    module: fast\n    targets: [\"{up_a}\", \"{up_b}\"]\n  mixed:\n    module: fast\n    targets: [\"{up_a}\", \"{closed}\"]\n"
    );
    let exporter = exporter_with_groups(&groups).await;
    let response = exporter.get("/health/web").await;
    assert_eq!((response.status, response.body.as_str()), (200, "OK\n"));
    let response = exporter.get("/health/mixed").await;
    assert_eq!(response.status, 503);
    assert_eq!(response.body, format!("fast {closed} refused\n"));
    let response = exporter.get("/health/nope").await;
    assert_eq!(response.status, 404);
    assert!(
        response.body.contains("web") && response.body.contains("mixed"),
        "{}",
        response.body
    );
    let head = request(exporter.address, "HEAD", "/health/mixed", &[]).await;
    assert_eq!((head.status, head.body.as_str()), (503, ""));
    assert_eq!(
        request(exporter.address, "POST", "/health/web", &[])
            .await
            .status,
        405
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_group_requests_share_one_round_of_probes() {
    let (_open, up) = open_listener();
    let queue = common::saturated_listener();
    let slow = queue.address.to_string();
    let groups =
        format!("groups:\n  edge:\n    module: grouped\n    targets: [\"{up}\", \"{slow}\"]\n");
    let exporter = Arc::new(
        TestExporter::with_config(
            &config("  []\n", &groups).replace("targets:\n  []\n", ""),
            Exporter::builder(),
        )
        .await,
    );
    let answers = ask_health(&exporter, Duration::ZERO).await;
    assert!(
        answers
            .iter()
            .all(|answer| *answer == (503, format!("grouped {slow} timeout\n"))),
        "{answers:?}"
    );
    assert_eq!(
        probes_of(&exporter, "grouped").await,
        2.0,
        "40 concurrent requests must cause one round of 2 probes"
    );
}

/// A group mixing modules: each member is probed with its own module,
/// within that module's timeout, all at once, and the 503 names module,
/// target and reason of every failing member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_mixes_modules_and_names_each_failing_member() {
    let _timed = common::load::timed().await;
    let (_open, open) = open_listener();
    let closed = closed_address();
    let (silent_listener, other_silent_listener) =
        (common::saturated_listener(), common::saturated_listener());
    let (silent, other_silent) = (silent_listener.address, other_silent_listener.address);
    let groups = format!(
        "groups:\n  up:\n    members:\n      - {{module: fast, target: \"{open}\"}}\n      - {{module: tcp_connect, target: \"{open}\"}}\n\
         \x20 mixed:\n    module: fast\n    targets: [\"{open}\", \"{silent}\"]\n    members:\n      - {{module: grouped, target: \"{silent}\"}}\n      - {{module: grouped, target: \"{other_silent}\"}}\n      - {{module: tcp_connect, target: \"{closed}\"}}\n"
    );
    let exporter = exporter_with_groups(&groups).await;
    let response = exporter.get("/health/up").await;
    assert_eq!((response.status, response.body.as_str()), (200, "OK\n"));

    let started = Instant::now();
    let response = exporter.get("/health/mixed").await;
    let took = started.elapsed();
    assert_eq!(response.status, 503, "{}", response.body);
    assert_eq!(
        response.body,
        format!(
            "fast {silent} timeout\ngrouped {silent} timeout\ngrouped {other_silent} timeout\ntcp_connect {closed} refused\n"
        ),
        "every failing member, in config order, with its module"
    );
    // fast times out after 300 ms and grouped after 1 s: one after the
    // other the members would take 2.3 s, and with fast's timeout for all
    // 0.3 s.
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_millis(1800),
        "the members ran at once, each within its own module's timeout: {took:?}"
    );
}

/// Probes the exporter ran with `module`, whatever their result.
async fn probes_of(exporter: &TestExporter, module: &str) -> f64 {
    let metrics = exporter.get("/metrics").await.body;
    // The values of the `result` label: the metric's contract.
    std::iter::once("success")
        .chain(common::REASONS)
        .filter_map(|result| {
            sample(
                &metrics,
                &format!("synack_exporter_probes_total{{module=\"{module}\",result=\"{result}\"}}"),
            )
        })
        .sum()
}

/// Forty `GET /health/edge` requests, the n-th sent n × `spacing` after
/// the first; their statuses and bodies.
async fn ask_health(exporter: &Arc<TestExporter>, spacing: Duration) -> Vec<(u16, String)> {
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..40u32 {
        let exporter = Arc::clone(exporter);
        requests.spawn(async move {
            tokio::time::sleep(spacing * n).await;
            exporter.get("/health/edge").await
        });
    }
    let mut answers = Vec::new();
    while let Some(response) = requests.join_next().await {
        let response = response.unwrap();
        answers.push((response.status, response.body));
    }
    answers
}

/// A one-member group on an open loopback port: its round of probes ends
/// in well under a millisecond, so single flight alone merges almost no
/// requests.
async fn fast_group(extra: &str) -> (TcpListener, Arc<TestExporter>) {
    let (listener, up) = open_listener();
    let groups = format!("groups:\n  edge:\n    module: grouped\n    targets: [\"{up}\"]\n{extra}");
    (listener, Arc::new(exporter_with_groups(&groups).await))
}

/// [`ask_health`] of a fresh [`fast_group`] with `extra` settings; fails
/// unless the forty requests caused exactly one round of probes (`why`
/// says why one), and returns their answers.
async fn forty_requests_in_one_round(
    extra: &str,
    spacing: Duration,
    why: &str,
) -> Vec<(u16, String)> {
    let (_listener, exporter) = fast_group(extra).await;
    let started = Instant::now();
    let answers = ask_health(&exporter, spacing).await;
    // The premise, not a timing bound: the last request was sent 39 x
    // `spacing` after the first.
    assert!(started.elapsed() >= spacing * 39);
    assert_eq!(probes_of(&exporter, "grouped").await, 1.0, "{why}");
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_to_a_fast_group_share_exactly_one_round() {
    let answers = forty_requests_in_one_round(
        "",
        Duration::ZERO,
        "40 concurrent requests to a one-member group: one probe",
    )
    .await;
    assert!(
        answers
            .iter()
            .all(|answer| *answer == (200, "OK\n".to_owned())),
        "{answers:?}"
    );
}

/// Requests spread over half a second, so that no two overlap a round,
/// still cause one round. The `min_interval` is a minute, not the default
/// second: a loaded machine may stretch the half second past one, and
/// what is tested is reuse across time, not how long reuse lasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_spread_over_half_a_second_reuse_one_answer() {
    let answers = forty_requests_in_one_round(
        "    min_interval: 1m\n",
        Duration::from_micros(12_500),
        "40 requests spread over half a second, within min_interval: one round of probes",
    )
    .await;
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
}

/// After `min_interval` a request probes again, and a reload that changes
/// the members never gets the old members' answer. The `min_interval` of
/// 2 s leaves a loaded machine ample time for two requests in a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_answer_expires_after_min_interval_and_with_its_members() {
    let (_listener, exporter) = fast_group("    min_interval: 2s\n").await;
    assert_eq!(exporter.get("/health/edge").await.status, 200);
    assert_eq!(exporter.get("/health/edge").await.status, 200);
    assert_eq!(probes_of(&exporter, "grouped").await, 1.0);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(exporter.get("/health/edge").await.status, 200);
    assert_eq!(probes_of(&exporter, "grouped").await, 2.0);

    let closed = closed_address();
    let groups = format!(
        "groups:\n  edge:\n    module: grouped\n    min_interval: 1m\n    targets: [\"{closed}\"]\n"
    );
    let reloaded = exporter.reload_with(&config("  []\n", &groups)).await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    let response = exporter.get("/health/edge").await;
    assert_eq!(
        (response.status, response.body),
        (503, format!("grouped {closed} refused\n"))
    );
    assert_eq!(probes_of(&exporter, "grouped").await, 3.0);
}

/// The adversarial run's load balancers: clients that give up after
/// 0.25 s on a group whose 20 members drop SYNs (module timeout 1 s,
/// `min_interval` 1 s). A round once started runs to its end whoever
/// leaves, so the rounds stay within one per `min_interval` after the
/// last one ended, every probe started is one that ends (and counts in
/// `synack_exporter_probes_total`), and clients that ask within
/// `min_interval` of a round's end get its answer at once. When the round
/// ran inside the requester's future, each client that hung up cancelled
/// it: the probes never ended, so never counted, and nobody got an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_hang_up_still_get_the_finished_round_within_min_interval() {
    let queue = common::saturated_listener();
    let silent = queue.address;
    let members: String = (0..20)
        .map(|_| format!("      - {{module: grouped, target: \"{silent}\"}}\n"))
        .collect();
    let groups = format!("groups:\n  edge:\n    min_interval: 1s\n    members:\n{members}");
    let exporter = Arc::new(exporter_with_groups(&groups).await);
    let started = Instant::now();
    let run_for = Duration::from_millis(3500);
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let exporter = Arc::clone(&exporter);
        clients.spawn(async move {
            let mut answers = Vec::new();
            while started.elapsed() < run_for {
                let asked = exporter.get("/health/edge");
                if let Ok(response) = tokio::time::timeout(Duration::from_millis(250), asked).await
                {
                    answers.push((response.status, response.body));
                }
            }
            answers
        });
    }
    let mut answers = Vec::new();
    while let Some(client) = clients.join_next().await {
        answers.extend(client.unwrap());
    }
    // Every round started has ended by now, and counted its 20 probes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let probes = probes_of(&exporter, "grouped").await;
    let expected = format!("grouped {silent} timeout\n").repeat(20);
    assert!(
        !answers.is_empty()
            && answers
                .iter()
                .all(|answer| *answer == (503, expected.clone())),
        "{} answers in {:?}: {:?}",
        answers.len(),
        started.elapsed(),
        answers.first()
    );
    // Round 1 from 0 to 1 s, its answer reused to 2 s; round 2 from 2 s
    // to 3 s, reused to 4 s. One more for a slow machine.
    assert!(
        [20.0, 40.0, 60.0].contains(&probes),
        "{probes} probes ended: want whole rounds of 20, at most 3"
    );
}

/// The `(id, target)` of each `/probe` history row on a landing page.
fn history_rows(html: &str) -> Vec<(u64, String)> {
    html.lines()
        .filter_map(|row| {
            let id = row
                .split("/logs?id=")
                .nth(1)?
                .split('"')
                .next()?
                .parse()
                .ok()?;
            let target = row.split("<code>").nth(1)?.split("</code>").next()?;
            Some((id, target.to_owned()))
        })
        .collect()
}

/// `/` lists a bounded page of the `/probe` history, newest first, with
/// links to older pages; `/logs?id=N` still serves every kept entry.
///
/// The 1200 entries are real `/probe` requests, each to its own loopback
/// address on a closed port, sent one after the other (under a second),
/// so that the n-th request is entry n.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landing_page_shows_one_page_of_a_long_history() {
    let settings = Exporter::builder().history_limit(1000);
    let exporter = common::TestExporter::embedded(settings).await;
    let closed = closed_address();
    let port = closed.rsplit_once(':').unwrap().1;
    let target_of = |id: u64| format!("127.0.{}.{}:{port}", id / 200 + 1, id % 200 + 1);
    for id in 1..=1200 {
        let response = exporter
            .get(&format!(
                "/probe?target={}&module=tcp_halfopen",
                target_of(id)
            ))
            .await;
        assert_eq!(
            sample(&response.body, "probe_failure_reason{reason=\"refused\"}"),
            Some(1.0),
            "probe {id}: {}",
            response.body
        );
    }
    let page = exporter.get("/").await;
    assert_eq!(page.status, 200);
    let ids_on =
        |html: &str| -> Vec<u64> { history_rows(html).into_iter().map(|(id, _)| id).collect() };
    assert_eq!(
        ids_on(&page.body),
        (1101..=1200).rev().collect::<Vec<u64>>(),
        "the newest 100"
    );
    assert!(
        page.body.contains("newest 100 of 1000") && page.body.contains("href=\"/?history_page=2\""),
        "a note and a link to older entries: {}",
        page.body
    );
    let last = exporter.get("/?history_page=10").await.body;
    assert_eq!(ids_on(&last), (201..=300).rev().collect::<Vec<u64>>());
    assert!(!last.contains("history_page=11"), "no page after the last");
    let beyond = exporter.get("/?history_page=11").await.body;
    assert!(
        ids_on(&beyond).is_empty() && beyond.contains("no entries on page 11"),
        "{beyond}"
    );
    assert_eq!(exporter.get("/?history_page=x").await.status, 400);
    let huge = exporter
        .get(&format!("/?history_page={}", usize::MAX))
        .await;
    assert_eq!(huge.status, 200);
    assert!(ids_on(&huge.body).is_empty(), "{}", huge.body);

    // The ten pages hold the 1000 newest entries, each on its probe's row.
    let mut rows = Vec::new();
    for page in 1..=10 {
        rows.extend(history_rows(
            &exporter.get(&format!("/?history_page={page}")).await.body,
        ));
    }
    let expected: Vec<(u64, String)> = (201..=1200).rev().map(|id| (id, target_of(id))).collect();
    assert_eq!(rows, expected);
    for (id, status) in [(201, 200), (777, 200), (1200, 200), (200, 404)] {
        let log = exporter.get(&format!("/logs?id={id}")).await;
        assert_eq!(log.status, status, "id {id}: {}", log.body);
        if status == 200 {
            assert!(
                log.body.contains(&target_of(id)) && log.body.contains("ECONNREFUSED"),
                "id {id} is the log of the refused probe of {}: {}",
                target_of(id),
                log.body
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_removes_and_keeps_state_of_unchanged_targets() {
    let kept = closed_address();
    let removed = closed_address();
    let added = closed_address();
    let block = |list: &str| format!("  - module: fast\n    interval: 1s\n    targets: [{list}]\n");
    let exporter = TestExporter::with_config(
        &config(&block(&format!("\"{kept}\", \"{removed}\"")), ""),
        Exporter::builder(),
    )
    .await;
    let before = wait_for_scheduled(&exporter, &kept, Duration::from_secs(5), |state| {
        state.count("refused") >= 3
    })
    .await;

    // Only the intervals of `kept` change: that too keeps its state.
    let intervals = "    fast_interval: 2s\n    down_interval: 3s\n";
    let reloaded = exporter
        .reload_with(&config(
            &(block(&format!("\"{kept}\", \"{added}\"")) + intervals),
            "",
        ))
        .await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    // Read at once: a target scheduled afresh would start again from no
    // probes and need two more seconds to get back to three.
    let kept_after = scheduled_state(&exporter, &kept)
        .await
        .expect("the unchanged target is still scheduled");
    let mut expected = vec![kept.clone(), added.clone()];
    expected.sort();
    assert_eq!(
        scheduled(&exporter).await,
        expected,
        "{removed} was removed"
    );
    assert!(
        kept_after.count("refused") >= before.count("refused")
            && kept_after.last_probe_unix >= before.last_probe_unix
            && kept_after.state_changes == before.state_changes,
        "a target whose only change is its intervals keeps its state: counters were not \
         reset and it was not probed from scratch; before {before:?}, after {kept_after:?}"
    );
    wait_for_scheduled(&exporter, &added, Duration::from_secs(5), |state| {
        state.probed()
    })
    .await;
}

/// Filed defect (issue 18, item 18): a scheduled target whose module
/// changed from `exec` to `tcp_halfopen` under the same name kept
/// `probe_exec_exit_code 1`, lacked `probe_tcp_rtt_seconds` and kept the
/// exec probes' counters until its next probe. A reload that changes the
/// definition of a target's module starts its series afresh; one that
/// changes only its interval keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_a_targets_module_starts_its_series_afresh() {
    // SYNs dropped: the TCP probe after the reload cannot finish within
    // its 5 s timeout, so what /metrics shows right after the reload is
    // what the reload left, not a new probe's result.
    let queue = common::saturated_listener();
    let target = queue.address.to_string();
    let series = |family: &str| format!("{family}{{module=\"m\",target=\"{target}\"}}");
    let block = format!("targets:\n  - module: m\n    interval: 1s\n    targets: [\"{target}\"]\n");
    let exec = format!(
        "modules:\n  m:\n    prober: exec\n    timeout: 2s\n    exec: {{command: [\"/bin/false\"]}}\n{block}"
    );
    let exporter = TestExporter::with_config(&exec, Exporter::builder()).await;
    let before = wait_for_scheduled(&exporter, &target, Duration::from_secs(10), |state| {
        state.count("check_failed") >= 1
    })
    .await;
    let metrics = exporter.get("/metrics").await.body;
    assert_eq!(sample(&metrics, &series("probe_exec_exit_code")), Some(1.0));
    assert_eq!(sample(&metrics, &series("probe_tcp_rtt_seconds")), None);

    let halfopen = format!("modules:\n  m:\n    prober: tcp_halfopen\n    timeout: 5s\n{block}");
    let reloaded = exporter.reload_with(&halfopen).await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    let metrics = exporter.get("/metrics").await.body;
    let after = scheduled_state(&exporter, &target)
        .await
        .expect("the target is still scheduled");
    assert_eq!(
        sample(&metrics, &series("probe_exec_exit_code")),
        None,
        "no exit code for a TCP module: {metrics}"
    );
    assert_eq!(
        sample(&metrics, &series("probe_tcp_rtt_seconds")),
        Some(0.0),
        "the TCP series, at 0 before the first probe: {metrics}"
    );
    assert!(
        !after.probed() && after.last_probe_unix == 0.0 && !after.healthy,
        "the exec probes' results are gone: before {before:?}, after {after:?}"
    );

    // The same module with another option is another definition too.
    wait_for_scheduled(&exporter, &target, Duration::from_secs(10), |state| {
        state.count("timeout") >= 1
    })
    .await;
    let shorter = halfopen.replace("timeout: 5s", "timeout: 4s");
    let reloaded = exporter.reload_with(&shorter).await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    let after = scheduled_state(&exporter, &target).await.unwrap();
    assert!(!after.probed(), "a new timeout starts afresh: {after:?}");

    // Only the interval: the same module, so the series carry on.
    let probed = wait_for_scheduled(&exporter, &target, Duration::from_secs(10), |state| {
        state.count("timeout") >= 1
    })
    .await;
    let reloaded = exporter
        .reload_with(&shorter.replace("interval: 1s", "interval: 2s"))
        .await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    let after = scheduled_state(&exporter, &target).await.unwrap();
    assert!(
        after.count("timeout") >= probed.count("timeout"),
        "a new interval keeps the series: before {probed:?}, after {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_split_the_targets_without_overlap() {
    let list: Vec<String> = (1..=100)
        .map(|port| format!("\"127.0.0.1:{port}\""))
        .collect();
    let yaml = config(
        &format!(
            "  - module: fast\n    interval: 1h\n    targets: [{}]\n",
            list.join(", ")
        ),
        "",
    );
    let mut seen = Vec::new();
    for index in 0..2 {
        let settings = Exporter::builder().shard(format!("{index}/2").parse().unwrap());
        let exporter = TestExporter::with_config(&yaml, settings).await;
        let texts = scheduled(&exporter).await;
        assert!(
            (20..=80).contains(&texts.len()),
            "shard {index}/2 took {}",
            texts.len()
        );
        seen.extend(texts);
    }
    seen.sort();
    let taken = seen.len();
    seen.dedup();
    assert_eq!(
        (taken, seen.len()),
        (100, 100),
        "every target on exactly one shard"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landing_page_lists_targets_and_history_and_escapes_user_text() {
    let closed = closed_address();
    let targets = format!(
        "  - module: fast\n    interval: 1s\n    down_interval: 2s\n    targets: [\"{closed}\"]\n    labels: {{team: \"<script>alert(1)</script>\"}}\n"
    );
    let exporter = TestExporter::with_config(&config(&targets, ""), Exporter::builder()).await;
    wait_for_scheduled(&exporter, &closed, Duration::from_secs(5), |state| {
        state.probed()
    })
    .await;
    assert_eq!(exporter.probe(&closed, "fast").await.status, 200);
    let page = exporter.get("/").await;
    assert_eq!(page.status, 200);
    page.assert_content_type("text/html");
    let html = &page.body;
    assert!(
        !html.contains("<script>"),
        "user text must be escaped:\n{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(
        html.contains(&closed) && html.contains("unhealthy") && html.contains("refused"),
        "{html}"
    );
    assert!(
        html.contains("fast") && html.contains("tcp_halfopen"),
        "modules are listed"
    );
    assert!(
        html.contains("<th>probed every</th>") && html.contains("<td>2s (down_interval)</td>"),
        "the interval in force, down_interval while down:\n{html}"
    );
    let id = html
        .split("/logs?id=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a history link");
    let log = exporter.get(&format!("/logs?id={id}")).await;
    assert_eq!(log.status, 200);
    assert!(log.body.contains("ECONNREFUSED"), "{}", log.body);
    assert_eq!(exporter.get("/logs?id=999999").await.status, 404);
    assert_eq!(exporter.get("/logs?id=x").await.status, 400);
}

/// The page's example probe checks this exporter's own port, wherever it
/// listens; groups link to `/health/<group>` with their last answer;
/// failed `/probe` requests stand out in the history; modules say whether
/// they are built in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn landing_page_links_its_own_port_shows_groups_and_marks_failures() {
    let (_open, open) = open_listener();
    let closed = closed_address();
    let groups = format!(
        "groups:\n  mixed:\n    module: fast\n    targets: [\"{open}\", \"{closed}\"]\n  idle:\n    module: tcp_connect\n    targets: [\"{open}\"]\n"
    );
    let exporter = exporter_with_groups(&groups).await;
    let html = exporter.get("/").await.body;
    let port = exporter.address.port();
    let example = format!("/probe?target=127.0.0.1:{port}&amp;module=tcp_halfopen&amp;debug=true");
    assert!(html.contains(&format!("href=\"{example}\"")), "{html}");
    let probe = exporter.get(&example.replace("&amp;", "&")).await;
    assert!(
        probe.body.contains("probe_success 1"),
        "the example probe finds the exporter's own port open: {}",
        probe.body
    );
    assert!(html.contains("href=\"/health/mixed\"") && html.contains("href=\"/health/idle\""));
    assert_eq!(html.matches("not checked yet").count(), 2, "{html}");
    assert!(
        html.contains("<td>tcp_connect</td><td>5s</td><td>built in</td>"),
        "{html}"
    );

    assert_eq!(exporter.get("/health/mixed").await.status, 503);
    assert_eq!(exporter.get("/health/idle").await.status, 200);
    assert_eq!(exporter.probe(&closed, "fast").await.status, 200);
    let html = exporter.get("/").await.body;
    let mixed_row = html
        .lines()
        .find(|line| line.contains("href=\"/health/mixed\""))
        .unwrap();
    assert!(
        mixed_row.contains("<td class=\"down\">503, ")
            && mixed_row.ends_with(&format!(" s ago: fast {closed} refused</td></tr>")),
        "the failing group's last answer names the member: {mixed_row}"
    );
    assert!(html.contains("<td class=\"up\">200 OK, "), "{html}");
    assert_eq!(html.matches("not checked yet").count(), 0, "{html}");
    let failed_row = html
        .lines()
        .find(|line| line.starts_with("<tr class=\"failed\">"))
        .unwrap_or_else(|| panic!("a failed row in the history: {html}"));
    assert!(
        failed_row.contains(&closed) && failed_row.contains("failed: refused"),
        "{failed_row}"
    );
    let succeeded_row = html
        .lines()
        .find(|line| line.contains("<td class=\"up\">success</td>"))
        .unwrap_or_else(|| panic!("the example probe's row: {html}"));
    assert!(!succeeded_row.starts_with("<tr class=\"failed\">"));
}
