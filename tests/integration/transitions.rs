//! The log of transitions: each health change of a scheduled target,
//! once, as a log line, in `--events.file` and on the landing page.

use crate::common;

use common::ExporterProcess;
use common::http::blocking_get;
use common::scheduled::scheduled_states;
use common::tempdir::TempDir;
use std::net::TcpListener;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(5);

/// `target`'s probes so far and whether it is healthy, from `/metrics`.
fn probes_and_health(exporter: &ExporterProcess, target: &str) -> (u64, bool) {
    let metrics = blocking_get(exporter.address, "/metrics", LIMIT)
        .unwrap()
        .body;
    let state = scheduled_states(&metrics)
        .remove(target)
        .unwrap_or_default();
    (state.probes(), state.healthy)
}

/// Polls until `target` has had more than `probes` probes; the count then.
fn wait_for_probes(exporter: &ExporterProcess, target: &str, probes: u64) -> (u64, bool) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let now = probes_and_health(exporter, target);
        if now.0 > probes {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{target}: no probe past {probes} in {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A target flipped up → down → up: exactly two transitions, each once in
/// the log and once in the events file, none for the first probe, and the
/// landing page shows both.
#[test]
fn each_change_is_written_once_to_the_log_the_events_file_and_the_page() {
    let (listener, port) = common::open_port();
    let target = format!("127.0.0.1:{port}");
    let dir = TempDir::new("transitions");
    let config = dir.write(
        "synack.yml",
        &format!(
            "modules:\n  fast:\n    prober: tcp_halfopen\n    timeout: 300ms\ntargets:\n  - module: fast\n    \
             interval: 1s\n    rise: 1\n    fall: 1\n    targets: [\"{target}\"]\n    labels: {{team: db}}\n"
        ),
    );
    let events = dir.join("events.jsonl");
    let exporter = ExporterProcess::start(&[
        "--config.file",
        config.to_str().unwrap(),
        "--events.file",
        events.to_str().unwrap(),
    ]);
    let (probes, healthy) = wait_for_probes(&exporter, &target, 0);
    assert!(healthy, "the first probe finds the port open");

    drop(listener);
    let unhealthy = exporter.logs_until("is now unhealthy");
    let (probes, healthy) = wait_for_probes(&exporter, &target, probes);
    assert!(!healthy);
    let _reopened = TcpListener::bind(("127.0.0.1", port)).expect("rebind the same port");
    let healthy_again = exporter.logs_until("is now healthy");
    // Two more probes that change nothing.
    let (probes, healthy) = wait_for_probes(&exporter, &target, probes);
    assert!(healthy);
    wait_for_probes(&exporter, &target, probes + 1);

    let log = exporter.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(" is now "))
        .collect();
    assert_eq!(lines.len(), 2, "one log line per change: {lines:#?}");
    let down = unhealthy.last().unwrap();
    for field in [
        "level=info",
        &format!("target={target}"),
        "module=fast",
        "from=healthy",
        "to=unhealthy",
        "reason=refused",
        "probes=",
        "team=",
    ] {
        assert!(down.contains(field), "{field} in {down}");
    }
    let up = healthy_again.last().unwrap();
    assert!(
        up.contains("from=unhealthy") && up.contains("reason=success"),
        "{up}"
    );

    let text = std::fs::read_to_string(&events).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "one line per change:\n{text}");
    assert_eq!(
        (
            &records[0]["from"],
            &records[0]["to"],
            &records[0]["reason"]
        ),
        (&"healthy".into(), &"unhealthy".into(), &"refused".into())
    );
    assert_eq!(
        (
            &records[1]["from"],
            &records[1]["to"],
            &records[1]["reason"]
        ),
        (&"unhealthy".into(), &"healthy".into(), &"success".into())
    );
    assert_eq!(records[0]["target"], target.as_str());
    assert_eq!(records[0]["module"], "fast");
    assert_eq!(records[0]["labels"], "team=\"db\"");
    assert_eq!(
        records[1]["probes"], 1,
        "rise 1: the change came at its first probe"
    );

    let page = blocking_get(exporter.address, "/", LIMIT).unwrap().body;
    let section = page
        .split("<h2>Last transitions")
        .nth(1)
        .expect("a transitions section");
    assert!(section.starts_with(" (2 of at most 50"), "{section}");
    let healthy_at = section.find("unhealthy → healthy").expect("the way up");
    let unhealthy_at = section.find("healthy → unhealthy").expect("the way down");
    assert!(healthy_at < unhealthy_at, "newest first:\n{section}");
}

/// A path that is not a regular file is refused at start-up, naming it.
#[test]
fn an_events_file_that_is_not_a_regular_file_stops_the_start() {
    let output = std::process::Command::new(common::exporter_process::BINARY)
        .args([
            "--events.file",
            "/dev/null",
            "--web.listen-address",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/dev/null") && stderr.contains("not a regular file"),
        "{stderr}"
    );
}
