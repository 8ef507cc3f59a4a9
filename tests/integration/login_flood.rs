//! Wrong-password floods against basic auth (issue 18, item 20): they may
//! not keep a right login out, nor cost a bcrypt check per request.
//!
//! The flood comes from 127.0.0.2, the right logins from 127.0.0.1 (another
//! client host) or from 127.0.0.2 itself (a user behind the attacker's
//! address). The tests are functional: they check who gets in and how many
//! bcrypt checks ran, not how fast. The hashes' cost makes one check take
//! well over 30 ms in a test build, so that a queue of the flood's checks
//! ahead of a login would outlast the one second a login waits, and well
//! under that second, so that a login that waits for one check gets in.

use crate::common;

use common::http::{basic, request_from};
use common::{Response, TempDir, TestExporter, sample};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use synack_exporter::Exporter;

/// Connections of the flood, as in the reproduction.
const FLOODERS: usize = 64;

/// The attacker's address.
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Another client host.
const ELSEWHERE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));

/// The users and their passwords.
const USERS: [(&str, &str); 4] = [
    ("alice", "s3cret"),
    ("bob", "hunter2"),
    ("carol", "correct horse"),
    ("dave", "battery staple"),
];

/// An exporter with [`USERS`], whose bcrypt hashes have cost 8, and the
/// lock of a heavy test: a flood's bcrypt checks load both cores.
async fn exporter() -> (TestExporter, TempDir, impl Sized) {
    let alone = common::load::heavy().await;
    let dir = TempDir::new("login-flood");
    let mut yaml = String::from("basic_auth_users:\n");
    for (user, password) in USERS {
        let hash = bcrypt::hash(password, 8).unwrap();
        yaml.push_str(&format!("  {user}: '{hash}'\n"));
    }
    let web_yml = dir.write("web.yml", &yaml);
    let exporter = TestExporter::embedded(Exporter::builder().web_config_file(&web_yml)).await;
    (exporter, dir, alone)
}

/// A flood of wrong passwords for alice from [`ATTACKER`]: [`FLOODERS`]
/// tasks, each sending one request after the other until stopped (or
/// 60 s, or 5,000 requests each). With `distinct`, each password is
/// new; otherwise all are the same.
struct Flood {
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    busy: Arc<AtomicUsize>,
    tasks: tokio::task::JoinSet<()>,
}

impl Flood {
    fn start(address: SocketAddr, distinct: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicUsize::new(0));
        let busy = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for flooder in 0..FLOODERS {
            let (stop, refused, busy) =
                (Arc::clone(&stop), Arc::clone(&refused), Arc::clone(&busy));
            tasks.spawn(async move {
                let until = Instant::now() + Duration::from_secs(60);
                for sent in 0..5_000 {
                    if stop.load(Ordering::SeqCst) || Instant::now() > until {
                        return;
                    }
                    let password = if distinct {
                        format!("wrong-{flooder}-{sent}")
                    } else {
                        "wrong".to_owned()
                    };
                    let credentials = basic("alice", &password);
                    let answer = request_from(
                        ATTACKER,
                        address,
                        "GET",
                        "/metrics",
                        &[("Authorization", &credentials)],
                    )
                    .await;
                    match answer.status {
                        401 => refused.fetch_add(1, Ordering::SeqCst),
                        503 => busy.fetch_add(1, Ordering::SeqCst),
                        status => panic!("a wrong password got {status}: {}", answer.body),
                    };
                }
            });
        }
        Self {
            stop,
            refused,
            busy,
            tasks,
        }
    }

    /// Waits until `count` wrong passwords have been answered 401, so
    /// that the flood is in full swing (and its address known for one
    /// that sends wrong passwords); fails the test after 30 s.
    async fn refused_at_least(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.refused.load(Ordering::SeqCst) < count {
            assert!(
                Instant::now() < deadline,
                "only {} wrong passwords answered 401 in 30 s ({} answered 503)",
                self.refused.load(Ordering::SeqCst),
                self.busy.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        while self.tasks.join_next().await.is_some() {}
        (
            self.refused.load(Ordering::SeqCst),
            self.busy.load(Ordering::SeqCst),
        )
    }
}

async fn get_as(
    source: IpAddr,
    exporter: &TestExporter,
    path: &str,
    user: &str,
    password: &str,
) -> Response {
    let credentials = basic(user, password);
    request_from(
        source,
        exporter.address,
        "GET",
        path,
        &[("Authorization", &credentials)],
    )
    .await
}

/// The reproduction, with one wrong password sent again and
/// again: it costs one bcrypt check, not one per request, and so a user
/// behind the attacker's own address gets in at the first try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_wrong_password_costs_one_bcrypt_check_and_locks_no_one_out() {
    let (exporter, _dir, _alone) = exporter().await;
    let flood = Flood::start(exporter.address, false);
    flood.refused_at_least(20).await;
    let login = get_as(ATTACKER, &exporter, "/-/healthy", "bob", "hunter2").await;
    let metrics = get_as(ATTACKER, &exporter, "/metrics", "bob", "hunter2").await;
    // A wrong password answered from memory is not answered at once, or
    // the flood would come back at HTTP speed.
    let started = Instant::now();
    let again = get_as(ELSEWHERE, &exporter, "/-/healthy", "alice", "wrong").await;
    let took = started.elapsed();
    let (refused, busy) = flood.stop().await;
    assert_eq!(again.status, 401);
    assert!(
        took >= Duration::from_millis(250),
        "a remembered failure took {took:?}"
    );
    assert_eq!(
        login.status, 200,
        "a right login from the flood's address, after {refused} wrong passwords (and {busy} \
         answered busy): {}",
        login.body
    );
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    // bob's login, and the wrong password once.
    let checks = sample(
        &metrics.body,
        "synack_exporter_web_auth_bcrypt_checks_total",
    );
    assert_eq!(
        checks,
        Some(2.0),
        "bcrypt checks for {refused} repeats of one wrong password and one right login"
    );
    let counted = sample(
        &metrics.body,
        "synack_exporter_web_auth_requests_total{result=\"refused\"}",
    )
    .unwrap_or_default();
    assert!(counted >= 20.0, "{counted} refusals counted");
}

/// Distinct wrong passwords each cost a check, one at a time, but a first
/// login from another address waits for one check at most, and a login
/// seen before (a scrape) needs none. Three first logins, as the issue's
/// user tried three times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_logins_from_elsewhere_get_in_during_a_flood_of_distinct_wrong_passwords() {
    let (exporter, _dir, _alone) = exporter().await;
    // bob scrapes before the flood, as Prometheus would have.
    let before = get_as(ELSEWHERE, &exporter, "/metrics", "bob", "hunter2").await;
    assert_eq!(before.status, 200, "{}", before.body);
    let flood = Flood::start(exporter.address, true);
    // Past the first checks, which came before the attacker's address had
    // sent a wrong password.
    flood.refused_at_least(20).await;
    let mut logins = Vec::new();
    for (user, password) in [USERS[0], USERS[2], USERS[3]] {
        let login = get_as(ELSEWHERE, &exporter, "/-/healthy", user, password).await;
        logins.push((user, login.status));
    }
    let scrape = get_as(ELSEWHERE, &exporter, "/metrics", "bob", "hunter2").await;
    let (refused, busy) = flood.stop().await;
    assert_eq!(
        logins,
        [("alice", 200), ("carol", 200), ("dave", 200)],
        "first logins during the flood ({refused} wrong passwords answered 401, {busy} 503)"
    );
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    // Every 401 of a distinct password took a check, as did bob's first
    // scrape and the three first logins; nothing else did.
    let after = get_as(ELSEWHERE, &exporter, "/metrics", "bob", "hunter2").await;
    let checks = sample(&after.body, "synack_exporter_web_auth_bcrypt_checks_total");
    assert_eq!(
        checks,
        Some(refused as f64 + 4.0),
        "bcrypt checks for {refused} distinct wrong passwords and four first logins"
    );
}

/// A user behind the attacker's own address (a NAT, a proxy) whose first
/// login comes during a flood of distinct wrong passwords for another
/// user: the flood keeps the slow lane full, and when any check from that
/// address that found it full was answered 503 at once, carol got 503 ten
/// times out of ten over three seconds. Checks of each user wait in a
/// queue of their own, taken in turn, so the flood against alice delays
/// carol by a check or so, and she gets in at the first or second try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_login_behind_the_attackers_address_gets_in_during_a_flood_for_another_user() {
    let (exporter, _dir, _alone) = exporter().await;
    let flood = Flood::start(exporter.address, true);
    flood.refused_at_least(20).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let login = get_as(ATTACKER, &exporter, "/-/healthy", "carol", "correct horse").await;
        statuses.push(login.status);
        if login.status == 200 {
            break;
        }
    }
    let (refused, busy) = flood.stop().await;
    assert_eq!(
        statuses.last(),
        Some(&200),
        "carol's logins from the flood's address: {statuses:?} (flood: {refused} answered 401, \
         {busy} 503)"
    );
    assert!(statuses.len() <= 2, "{statuses:?}");
}
