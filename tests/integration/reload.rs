//! `POST /-/reload` under abuse: a FIFO at the config path, many reloads of
//! a large config at once, and config errors carrying control characters.
//! The other endpoints must keep answering throughout.
//!
//! The clients here are plain threads with blocking sockets, not tasks of
//! the test's runtime: if the exporter stalls its async workers, a client
//! on those workers would stall with it and measure nothing.

use crate::common;

use common::scheduled::scheduled_targets;
use common::{TestExporter, sample};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use synack_exporter::Exporter;

/// One answer: the status (None when none came within the limit), the
/// body, and how long it took.
#[derive(Debug)]
struct Answer {
    status: Option<u16>,
    body: String,
    took: Duration,
}

/// One HTTP/1.1 request on a new connection, waiting at most `limit`.
fn blocking_request(address: SocketAddr, method: &str, path: &str, limit: Duration) -> Answer {
    let started = Instant::now();
    let (status, body) = match common::http::blocking_request(address, method, path, &[], "", limit)
    {
        Ok(response) => (Some(response.status), response.body),
        Err(error) => (None, format!("no answer: {error}")),
    };
    Answer {
        status,
        body,
        took: started.elapsed(),
    }
}

/// Starts `count` reloads at once, each on its own thread.
fn reloads(address: SocketAddr, count: usize, limit: Duration) -> Vec<JoinHandle<Answer>> {
    (0..count)
        .map(|_| std::thread::spawn(move || blocking_request(address, "POST", "/-/reload", limit)))
        .collect()
}

/// GETs a path over and over on a thread of its own, 10 ms apart, until
/// [`Sampler::finish`] or `max_requests`, keeping every answer's status
/// and latency.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(Option<u16>, Duration)>>,
}

impl Sampler {
    fn start(address: SocketAddr, path: String, max_requests: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut latencies = Vec::new();
            while !stopped.load(Ordering::Relaxed) && latencies.len() < max_requests {
                let answer = blocking_request(address, "GET", &path, Duration::from_secs(30));
                latencies.push((answer.status, answer.took));
                std::thread::sleep(Duration::from_millis(10));
            }
            latencies
        });
        Self { stop, thread }
    }

    /// Stops after the request under way and returns the latencies.
    fn finish(self) -> Vec<(Option<u16>, Duration)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status();
    assert!(
        made.is_ok_and(|status| status.success()),
        "mkfifo {}",
        path.display()
    );
}

/// Opens the FIFO for writing `times` times, 100 ms apart, on a detached
/// thread: each open waits for a reader and releases one blocked in
/// open(), which then reads EOF. The pause lets that reader finish, so
/// the next open meets the next reader.
fn release_fifo_readers(path: &Path, times: usize) {
    let path = path.to_owned();
    std::thread::spawn(move || {
        for _ in 0..times {
            let _ = std::fs::OpenOptions::new().write(true).open(&path);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

/// As filed: with a FIFO at the config path two reloads hung `/-/healthy`,
/// `/probe` and `/metrics` until something wrote to the FIFO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_at_the_config_path_fails_the_reload_at_once_and_nothing_stalls() {
    // Bounds the other endpoints' latency under a reload storm of its own
    // (seconds of CPU on both cores): beside another heavy test, the
    // bounds would measure the neighbour.
    let _alone = common::load::heavy().await;
    let exporter = TestExporter::with_config("", Exporter::builder()).await;
    let path = exporter.config_path.clone().unwrap();
    std::fs::remove_file(&path).unwrap();
    mkfifo(&path);
    let address = exporter.address;
    let healthy = Sampler::start(address, "/-/healthy".into(), 100);
    let answers: Vec<Answer> = reloads(address, 2, Duration::from_secs(5))
        .into_iter()
        .map(|reload| reload.join().unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let latencies = healthy.finish();
    if answers.iter().any(|answer| answer.status.is_none()) {
        release_fifo_readers(&path, 4);
    }
    let slowest = latencies.iter().map(|(_, took)| *took).max().unwrap();
    for answer in &answers {
        assert_eq!(
            answer.status,
            Some(500),
            "reload with a FIFO at the config path: {answer:?}"
        );
        assert!(answer.took < Duration::from_secs(2), "{answer:?}");
        assert!(
            answer.body.contains("is a FIFO"),
            "the error says what is wrong: {answer:?}"
        );
    }
    assert!(
        latencies.iter().all(|(status, _)| *status == Some(200)),
        "{latencies:?}"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "/-/healthy took {slowest:?} during the reloads"
    );
    let metrics = exporter.get("/metrics").await.body;
    assert_eq!(
        common::sample(&metrics, "synack_exporter_config_last_reload_successful"),
        Some(0.0)
    );
}

/// `count` scheduled targets on 127.A.B.C:`port`, probed once an hour so
/// that probing adds nothing to the measurement.
fn large_config(count: u32, port: u16) -> String {
    let mut yaml =
        String::from("targets:\n  - module: tcp_halfopen\n    interval: 1h\n    targets:\n");
    for n in 0..count {
        let (block, host) = (n / 254, 1 + n % 254);
        yaml.push_str(&format!(
            "      - \"127.{}.{}.{host}:{port}\"\n",
            1 + block / 256,
            block % 256
        ));
    }
    yaml
}

/// The bound stated in the README: while reloads of a large config run,
/// `/-/healthy` and `/probe` answer within this.
const STALL_BOUND: Duration = Duration::from_millis(500);

/// As filed: 20 parallel reloads of a 200k-target config stalled
/// `/-/healthy` for 8.7 s. Here 20 parallel reloads of 30 000 targets,
/// first unchanged, then with every target replaced (a full diff), while
/// `/-/healthy` and `/probe` are sampled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_reloads_of_a_large_config_do_not_stall_the_other_endpoints() {
    const TARGETS: u32 = 30_000;
    // Bounds the other endpoints' latency under a reload storm of its own
    // (seconds of CPU on both cores): beside another heavy test, the
    // bounds would measure the neighbour.
    let _alone = common::load::heavy().await;
    let closed = || common::closed_port().port();
    let (first_port, second_port) = (closed(), closed());
    let exporter =
        TestExporter::with_config(&large_config(TARGETS, first_port), Exporter::builder()).await;
    let path = exporter.config_path.clone().unwrap();
    let address = exporter.address;
    for (storm, port) in [("unchanged", first_port), ("replaced", second_port)] {
        std::fs::write(&path, large_config(TARGETS, port)).unwrap();
        let healthy = Sampler::start(address, "/-/healthy".into(), 3000);
        let probe = Sampler::start(
            address,
            format!("/probe?target=127.0.0.1:{first_port}"),
            3000,
        );
        let started = Instant::now();
        let answers: Vec<Answer> = reloads(address, 20, Duration::from_secs(60))
            .into_iter()
            .map(|reload| reload.join().unwrap())
            .collect();
        let storm_took = started.elapsed();
        std::thread::sleep(Duration::from_millis(200));
        let (healthy, probe) = (healthy.finish(), probe.finish());
        for answer in &answers {
            assert_eq!(answer.status, Some(200), "{storm}: {answer:?}");
        }
        for (name, latencies) in [("/-/healthy", &healthy), ("/probe", &probe)] {
            let slowest = latencies.iter().map(|(_, took)| *took).max().unwrap();
            // The figures, for `cargo test --test integration reload:: -- --nocapture`.
            println!(
                "{storm}: 20 reloads of {TARGETS} targets took {storm_took:?}; {name}: {} requests, slowest {slowest:?}",
                latencies.len()
            );
            assert!(
                latencies.iter().all(|(status, _)| *status == Some(200)),
                "{storm}: {name}: {latencies:?}"
            );
            assert!(
                slowest < STALL_BOUND,
                "{storm}: {name} took up to {slowest:?} ({} requests) while 20 reloads of {TARGETS} targets ran for {storm_took:?}",
                latencies.len()
            );
        }
        let metrics = exporter.get("/metrics").await.body;
        assert_eq!(
            sample(&metrics, "synack_exporter_scheduled_targets"),
            Some(f64::from(TARGETS)),
            "{storm}"
        );
        let scheduled = scheduled_targets(&metrics);
        assert_eq!(scheduled.len(), TARGETS as usize, "{storm}");
        assert!(
            scheduled
                .iter()
                .all(|target| target.ends_with(&format!(":{port}"))),
            "{storm}: the new config is in force"
        );
    }
}

/// A config key with ESC and a newline (YAML's `\e` and `\n` escapes)
/// must not reach the client raw: the answer stays one line of text.
#[tokio::test]
async fn control_characters_of_a_config_error_are_escaped_in_the_reload_answer() {
    let exporter = TestExporter::with_config("", Exporter::builder()).await;
    let response = exporter
        .reload_with("modules:\n  a:\n    prober: tcp_halfopen\n    \"x\\e]0;owned\\ay\\nz\": 1\n")
        .await;
    assert_eq!(response.status, 500, "{:?}", response.body);
    let body = response.body.trim_end_matches('\n');
    assert!(!body.chars().any(char::is_control), "{body:?}");
    assert!(body.contains("x\\u{1b}]0;owned\\u{7}y\\nz"), "{body:?}");
}
