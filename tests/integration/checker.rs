//! The library's `Checker`: its threads start once and are shared by every
//! check from any task, its half-open checks are never accepted, its
//! in-flight limit holds, and dropping it stops its threads.
//!
//! The tests that count the process's threads (`/proc/self/task`) run
//! again alone in a child process, where no other test starts or ends a
//! thread while they count.

use crate::common;

use socket2::{Domain, Protocol, Socket, Type};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};
use synack_exporter::{Checker, ExecOptions, Module, Reason, TargetError};

#[path = "../../examples/checker.rs"]
#[allow(dead_code)] // its `main`
mod checker_example;

/// The variable that tells a child process which test it runs alone.
const ALONE: &str = "SYNACK_CHECKER_TEST_ALONE";

/// Whether this process is the child that runs test `name` alone. In any
/// other process, runs this binary again with only `name`, in a child
/// process, asserts that it ran and passed, and returns false.
fn alone_in_a_process(name: &str) -> bool {
    if std::env::var(ALONE).is_ok_and(|running| running == name) {
        return true;
    }
    // The test's path without the crate's name, as the harness spells it.
    let path = module_path!()
        .split_once("::")
        .map_or_else(|| name.to_owned(), |(_, rest)| format!("{rest}::{name}"));
    let exe = std::env::current_exe().expect("the test binary's path");
    let finished = common::run_bounded(
        Command::new(exe)
            .args([path.as_str(), "--exact", "--test-threads=1", "--nocapture"])
            .env(ALONE, name),
        None,
        Duration::from_secs(120),
    )
    .expect("run the test alone");
    assert!(
        finished.success() && finished.stdout.contains("1 passed"),
        "{name}, alone in a process:\n{}",
        finished.output()
    );
    false
}

/// How many threads this process has now.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("read /proc/self/task")
        .count()
}

/// A non-blocking listener on 127.0.0.1 with a backlog for many SYNs at
/// once, and its `host:port`.
fn listener() -> (TcpListener, String) {
    let address: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.bind(&address.into()).unwrap();
    socket.listen(1024).unwrap();
    let listener: TcpListener = socket.into();
    listener.set_nonblocking(true).unwrap();
    let target = listener.local_addr().unwrap().to_string();
    (listener, target)
}

fn halfopen() -> Module {
    Module::tcp_halfopen().with_timeout(Duration::from_secs(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_from_many_tasks_share_the_checkers_threads() {
    if !alone_in_a_process("checks_from_many_tasks_share_the_checkers_threads") {
        return;
    }
    let (_listener, target) = listener();
    let before = threads();
    let checker = Checker::builder().max_in_flight(64).build().unwrap();
    let with_checker = threads();
    assert_eq!(
        with_checker,
        before + 4,
        "the probe, exec, sessions and DNS threads start with the checker"
    );
    let checks: Vec<_> = (0..200)
        .map(|_| {
            let (checker, target) = (checker.clone(), target.clone());
            tokio::spawn(async move { checker.check(&target, &halfopen()).await })
        })
        .collect();
    let mut most = with_checker;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !checks.iter().all(tokio::task::JoinHandle::is_finished) {
        assert!(
            Instant::now() < deadline,
            "200 checks of loopback took 30 s"
        );
        most = most.max(threads());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for (index, check) in checks.into_iter().enumerate() {
        let outcome = check.await.unwrap().unwrap();
        assert!(outcome.is_success(), "check {index}: {:?}", outcome.failure);
    }
    assert_eq!(
        (most, threads()),
        (with_checker, with_checker),
        "200 checks started no thread"
    );
}

#[tokio::test]
async fn half_open_checks_are_never_accepted() {
    let (listener, target) = listener();
    let checker = Checker::new().unwrap();
    for round in 0..100 {
        let outcome = checker.check(&target, &halfopen()).await.unwrap();
        assert!(outcome.is_success(), "check {round}: {:?}", outcome.failure);
        assert!(outcome.handshake_time().is_some(), "check {round}");
    }
    // Past the kernel's delayed ACK (about 200 ms), a late one would show.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        common::accept_waiting(&listener),
        0,
        "half-open checks must never be accepted"
    );
}

#[tokio::test]
async fn the_in_flight_limit_holds() {
    let checker = Checker::builder().max_in_flight(1).build().unwrap();
    // Two commands that outlast half the timeout: the second cannot start
    // in time behind the first.
    let sleep = ExecOptions::new(vec!["/bin/sleep".into(), "2".into()], BTreeMap::new()).unwrap();
    let module = Module::exec(sleep).with_timeout(Duration::from_secs(3));
    let asked = Instant::now();
    let (first, second) = tokio::join!(
        checker.check("127.0.0.1:1", &module),
        checker.check("127.0.0.1:2", &module)
    );
    let mut outcomes = [first.unwrap(), second.unwrap()];
    outcomes.sort_by_key(|outcome| !outcome.is_success());
    let [ran, waited] = outcomes;
    assert!(ran.is_success(), "{:?}", ran.failure);
    let failure = waited.failure.expect("the second check could not start");
    assert_eq!(failure.reason, Reason::Local, "{failure}");
    assert!(
        failure.detail.contains("the only probe slot was busy"),
        "{failure}"
    );
    assert!(
        waited.duration >= Duration::from_millis(1400),
        "it waited for a slot until half its timeout was gone: {:?}",
        waited.duration
    );
    assert!(asked.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_checker_refuses_what_is_not_a_target() {
    let checker = Checker::new().unwrap();
    let error = checker.check("localhost", &halfopen()).await.unwrap_err();
    assert!(matches!(error, TargetError::MissingPort), "{error:?}");
}

#[tokio::test]
async fn dropping_the_checker_in_a_runtime_stops_its_threads() {
    if !alone_in_a_process("dropping_the_checker_in_a_runtime_stops_its_threads") {
        return;
    }
    let (_listener, target) = listener();
    let before = threads();
    let checker = Checker::new().unwrap();
    assert!(threads() > before, "the checker started its threads");
    let outcome = checker.check(&target, &halfopen()).await.unwrap();
    assert!(outcome.is_success(), "{:?}", outcome.failure);
    drop(checker);
    // Inside a runtime the threads are not joined; they end on their own.
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads() != before {
        assert!(
            Instant::now() < deadline,
            "{} threads 5 s after the drop, {before} before the checker",
            threads()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn dropping_the_checker_outside_a_runtime_joins_its_threads() {
    if !alone_in_a_process("dropping_the_checker_outside_a_runtime_joins_its_threads") {
        return;
    }
    let (_listener, target) = listener();
    let before = threads();
    let checker = Checker::new().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime
        .block_on(checker.check(&target, &halfopen()))
        .unwrap();
    assert!(outcome.is_success(), "{:?}", outcome.failure);
    assert!(threads() > before, "the checker's threads run");
    drop(checker);
    assert_eq!(threads(), before, "the drop joined the checker's threads");
}

#[tokio::test]
async fn the_checker_example_counts_each_target_and_is_never_accepted() {
    let (listener, open) = listener();
    let targets = [open.clone(), "127.0.0.1:1".to_owned(), "no-port".to_owned()];
    let checker = Checker::builder().max_in_flight(50).build().unwrap();
    let mut out = Vec::new();
    checker_example::run(&checker, &halfopen(), &targets, 100, &mut out)
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], format!("{open}: open 100 of 100 times"), "{out}");
    assert!(
        lines[1].starts_with("127.0.0.1:1: open 0 of 100 times; first failure: refused: "),
        "{out}"
    );
    assert_eq!(
        lines[2],
        "no-port: open 0 of 100 times; first failure: not a target: \
         target has no port: write it as host:port"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(common::accept_waiting(&listener), 0, "{out}");
}
