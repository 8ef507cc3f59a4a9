//! Attempts under packet loss (`tcp.attempts`, a TCP ping): nftables
//! rules on the loopback of a network namespace that the test creates drop
//! every second SYN to one port and every SYN to another. Run as
//! `tests/netns/faults.rs` runs, and for the same reasons: the parent
//! ([`netns_attempts_count_loss`]) re-executes this binary in the
//! namespace for the child ([`netns_child_counts_lost_attempts`]).
//!
//! The rules match SYNs only (`tcp flags syn / syn,ack`: SYN set, ACK
//! clear) to the port, so the SYN-ACK coming back and the RST that closes
//! a half-open probe pass, and `numgen inc` counts exactly one SYN per
//! attempt: an attempt's timeout is well under the kernel's first SYN
//! retransmission (1 s), which therefore never happens.
//!
//! The half-open cases run with the raw engine too (`tcp: {engine: raw}`,
//! issue 22), whose attempts are its own SYNs: the same counts, the same
//! reasons, and no accept either.

use crate::concurrent::check_valid_with;
use crate::engines::Engine;
use crate::namespace::{current_thread_runtime, firewall, namespace_test};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use synack_exporter::{Module, Outcome, Prober, Reason, TcpOptions};

firewall! {
    const RULESET = table "synack_netns_attempts" hook "input";
    /// Every second SYN to this port is dropped; a listener answers the
    /// others, and counts what it accepts.
    const PORT_HALF_LOST = 7101 => "tcp flags syn / syn,ack numgen inc mod 2 == 0 drop";
    /// Every SYN to this port is dropped.
    const PORT_ALL_LOST = 7102 => "tcp flags syn / syn,ack drop";
    /// As [`PORT_HALF_LOST`], for `tcp_connect`, whose handshakes complete
    /// and would be counted by the listener of the half-open port.
    const PORT_HALF_LOST_CONNECT = 7103 => "tcp flags syn / syn,ack numgen inc mod 2 == 0 drop";
}

namespace_test! {
    parent: netns_attempts_count_loss,
    child: netns_child_counts_lost_attempts => count_lost_attempts,
    prefix: "synack-attempts",
    ruleset: RULESET,
    env: "SYNACK_NETNS_ATTEMPTS_CHILD",
    limit: Duration::from_secs(60),
}

/// A module of `prober` with `attempts` every `interval`, each with
/// `attempt_timeout`, within `timeout`.
fn ping(
    prober: &Prober,
    attempts: u32,
    interval_ms: u64,
    attempt_timeout_ms: u64,
    stop_on_success: bool,
    timeout: Duration,
) -> Module {
    let mut module = Module::new(prober.clone()).with_timeout(timeout);
    let tcp = module.tcp_mut().expect("a TCP module");
    tcp.attempts = attempts;
    tcp.attempt_interval = Duration::from_millis(interval_ms).into();
    tcp.attempt_timeout = Some(synack_exporter::PromDuration::new(Duration::from_millis(
        attempt_timeout_ms,
    )));
    tcp.stop_on_success = stop_on_success;
    module
}

/// Probes `port` on 127.0.0.1 with `module` (of `engine`), bounded in
/// case the prober ever ignored its deadline; returns the outcome and the
/// wall time.
async fn probe(engine: Engine, port: u16, module: &Module) -> (Outcome, Duration) {
    let target = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port).to_string();
    let started = Instant::now();
    let outcome = check_valid_with(engine, target, module.clone()).await;
    (outcome, started.elapsed())
}

fn describe(case: &str, outcome: &Outcome, took: Duration) -> String {
    format!(
        "{case}: {} attempts, {} failed, reason {:?}, handshakes {:?}, {:.3}s",
        outcome.tcp().map_or(0, |tcp| tcp.attempts),
        outcome.tcp().map_or(0, |tcp| tcp.attempts_failed),
        outcome.reason(),
        outcome
            .tcp()
            .expect("a TCP outcome")
            .handshake_times()
            .collect::<Vec<_>>(),
        took.as_secs_f64()
    )
}

/// Accepts, without blocking, whatever reaches the listener's queue
/// until told to stop; counts it. A half-open probe must leave it at 0.
struct AcceptCounter {
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AcceptCounter {
    fn start(listener: TcpListener) -> Self {
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopping) = (Arc::clone(&accepted), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            // Bounded by the stop flag, which the child sets when done.
            while !stopping.load(Ordering::Relaxed) {
                if listener.accept().is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                } else {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        Self {
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the thread, after a last look at the queue, and returns the count.
    fn finish(mut self) -> usize {
        // A connection the delayed ACK completed would be queued by now.
        std::thread::sleep(Duration::from_millis(300));
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("accept thread");
        }
        self.accepted.load(Ordering::Relaxed)
    }
}

fn count_lost_attempts() {
    let bind = |port| {
        let address = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        TcpListener::bind(address).unwrap_or_else(|error| panic!("bind {address}: {error}"))
    };
    let accepts = AcceptCounter::start(bind(PORT_HALF_LOST));
    // Never accepted from: the kernel queues the completed handshakes.
    let _connect_listener = bind(PORT_HALF_LOST_CONNECT);
    let runtime = current_thread_runtime();
    let mut problems = Vec::new();
    let mut check = |ok: bool, line: &str, what: &str| {
        println!("{line}: {what}: {}", if ok { "ok" } else { "FAILED" });
        if !ok {
            problems.push(format!("{line}\n    => {what}"));
        }
    };
    runtime.block_on(async {
        // Every second SYN lost, all attempts run: half fail, with
        // `timeout`, and the probe succeeds.
        for (prober, engine, port) in [
            (
                Prober::TcpHalfopen(TcpOptions::default()),
                Engine::Socket,
                PORT_HALF_LOST,
            ),
            (
                Prober::TcpConnect(TcpOptions::default()),
                Engine::Socket,
                PORT_HALF_LOST_CONNECT,
            ),
            (Engine::Raw.halfopen(), Engine::Raw, PORT_HALF_LOST),
        ] {
            let module = ping(&prober, 10, 50, 40, false, Duration::from_secs(1));
            let (outcome, took) = probe(engine, port, &module).await;
            let line = describe(
                &format!("{} half lost", crate::engines::label(&prober, engine)),
                &outcome,
                took,
            );
            check(
                outcome.is_success()
                    && outcome.tcp().map_or(0, |tcp| tcp.attempts) == 10
                    && (4..=6).contains(&outcome.tcp().map_or(0, |tcp| tcp.attempts_failed))
                    && outcome
                        .tcp()
                        .expect("a TCP outcome")
                        .handshake_times()
                        .count()
                        == 10 - outcome.tcp().map_or(0, |tcp| tcp.attempts_failed) as usize,
                &line,
                "want success, 10 attempts, about 5 failed, a handshake time per success",
            );
            // 9 intervals and the last attempt: 450 ms and at most 40 ms.
            check(
                took >= Duration::from_millis(450) && took < module.timeout(),
                &line,
                "the attempts run one interval apart, within the timeout",
            );
            check(
                crate::engines::wrong_engine(engine, &prober, &outcome).is_none(),
                &line,
                "the probe ran on its engine (a socket's close delay, none for raw)",
            );
        }

        // Every SYN lost: every attempt fails as `timeout`, within the deadline.
        for engine in [Engine::Socket, Engine::Raw] {
            let module = ping(
                &engine.halfopen(),
                5,
                100,
                100,
                false,
                Duration::from_millis(600),
            );
            let (outcome, took) = probe(engine, PORT_ALL_LOST, &module).await;
            let line = describe(&format!("{} all lost", engine.name()), &outcome, took);
            check(
                outcome.reason() == Some(Reason::Timeout)
                    && (
                        outcome.tcp().map_or(0, |tcp| tcp.attempts),
                        outcome.tcp().map_or(0, |tcp| tcp.attempts_failed),
                    ) == (5, 5)
                    && outcome.handshake_time().is_none(),
                &line,
                "want reason timeout with 5 of 5 attempts failed",
            );
            check(
                took >= Duration::from_millis(480) && took < module.timeout(),
                &line,
                "all 5 attempts run to their own timeout, and the answer comes before the deadline",
            );
        }

        // Retries: the first success ends the probe. Whichever of two SYNs
        // is dropped, one of the first two attempts succeeds.
        for engine in [Engine::Socket, Engine::Raw] {
            let module = ping(&engine.halfopen(), 10, 50, 40, true, Duration::from_secs(1));
            for round in 1..=4 {
                let (outcome, took) = probe(engine, PORT_HALF_LOST, &module).await;
                let line = describe(
                    &format!("{} stop on success, round {round}", engine.name()),
                    &outcome,
                    took,
                );
                check(
                    outcome.is_success()
                        && (1..=2).contains(&outcome.tcp().map_or(0, |tcp| tcp.attempts))
                        && outcome.tcp().map_or(0, |tcp| tcp.attempts_failed)
                            == outcome.tcp().map_or(0, |tcp| tcp.attempts) - 1
                        && outcome
                            .tcp()
                            .expect("a TCP outcome")
                            .later_handshake_times
                            .is_empty(),
                    &line,
                    "want success at the first or second attempt, and no attempt after it",
                );
            }
        }
    });
    let accepted = accepts.finish();
    check(
        accepted == 0,
        &format!("the half-open port's listener accepted {accepted} connections"),
        "half-open attempts must never reach accept()",
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
