//! The basic-auth check of the gate, with the CPU that failed logins can
//! take bounded.
//!
//! A bcrypt check takes a core for about 50 to 100 ms at cost 10. With
//! one check per request, 64 connections sending wrong passwords kept the
//! exporter at 1.89 of 2 CPUs, and a first login during the flood was
//! answered 503. So:
//!
//! - **One bcrypt check at a time**, on a blocking thread, never on the
//!   async workers, as exporter-toolkit runs one at a time: a flood takes
//!   one core at most, whatever its size.
//! - **Recent results are remembered**, as exporter-toolkit caches bcrypt
//!   results: a success for [`ACCEPTED_FOR`], a failure for
//!   [`REFUSED_FOR`], each under a keyed hash (HMAC-SHA256, with a key
//!   drawn at start) of the user, the user's bcrypt hash *and* the
//!   password (CVE-2022-46146 was exporter-toolkit's cache keyed on too
//!   little), never the password itself. A repeated wrong password is
//!   answered 401 from memory, with no new hash, and a right one is let
//!   through without one. Checks of the same credentials that were queued
//!   together run bcrypt once: each looks again when its turn comes. The
//!   caches keep at most [`ACCEPTED_ENTRIES`] and [`REFUSED_ENTRIES`]
//!   entries, the oldest dropped first.
//! - **Addresses that sent wrong credentials wait behind the others.**
//!   Checks queue in two lanes: addresses (an IPv6 /64 counts as one) with
//!   no wrong credentials in the last [`SUSPECT_FOR`] go first. So a flood
//!   from one address delays a login from another by one check at most.
//! - **In the slow lane, each user waits in a queue of their own**, and
//!   the queues take turns (names that are no user share one queue). A
//!   user behind the attacker's address (a NAT, a proxy) is not locked
//!   out by a flood against another user: with one queue, the flood kept
//!   it full and such a user's first login was answered 503 ten times out
//!   of ten. Once the right password has been seen it is remembered.
//! - **Refusals are not hurried.** A request with wrong credentials is
//!   answered no sooner than [`REFUSED_NOT_BEFORE`] after it came, checked
//!   or not, so that a flood answered from memory does not come back at
//!   HTTP speed and spend on requests the CPU saved on bcrypt.
//! - **Waits are bounded.** Each lane holds at most [`WAITING_PER_LANE`]
//!   checks, and a check waits at most [`BCRYPT_WAIT`] for its turn;
//!   beyond either it is answered 503 with `Retry-After`. The turn is held
//!   by the blocking thread, not by the request: a client that hangs up
//!   mid-check does not let another check start while its hash still runs.
//!
//! The caches and the lanes' address list hold fixed-size entries (32-byte
//! digests, addresses) in bounded numbers: together less than 512 KiB
//! however many clients and passwords come (a test fills them to check).
//! `synack_exporter_web_auth_requests_total` and
//! `synack_exporter_web_auth_bcrypt_checks_total` show what they save.

#![forbid(unsafe_code)]

use super::WebConfig;
use crate::metrics::own::LoginCounts;
use base64::Engine as _;
use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use ring::hmac;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long a check waits for its turn before it is answered 503.
pub(super) const BCRYPT_WAIT: Duration = Duration::from_secs(1);

/// The checks that may wait in the clean lane, and in each user's queue
/// of the slow lane; more are answered 503 at once. Eight checks at cost
/// 10 take well under [`BCRYPT_WAIT`].
pub(super) const WAITING_PER_LANE: usize = 8;

/// The soonest a request with credentials is refused (401 or 503) after
/// it came. A failure answered from memory, or from a full lane, costs no
/// bcrypt check, but a client answered at once comes back at once: at
/// HTTP speed, a flood of such requests took as much CPU as the checks it
/// saved. Held back this long (a timer, not a thread), each connection of
/// a flood sends a few requests a second.
pub(super) const REFUSED_NOT_BEFORE: Duration = Duration::from_millis(250);

/// How long a success is remembered.
pub(super) const ACCEPTED_FOR: Duration = Duration::from_secs(10 * 60);

/// The most successes remembered. A handful of users, each with one
/// password, need a few entries.
pub(super) const ACCEPTED_ENTRIES: usize = 256;

/// How long a failure is remembered.
pub(super) const REFUSED_FOR: Duration = Duration::from_secs(60);

/// The most failures remembered: a flood of distinct wrong passwords
/// drops the oldest, and costs a bcrypt check each, in turn.
pub(super) const REFUSED_ENTRIES: usize = 1024;

/// How long an address that sent wrong credentials waits in the slow lane.
pub(super) const SUSPECT_FOR: Duration = REFUSED_FOR;

/// The most addresses kept in the slow lane.
pub(super) const SUSPECT_ENTRIES: usize = 1024;

/// What a credentials check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Login {
    Accepted,
    Refused,
    /// No turn for a bcrypt check within [`BCRYPT_WAIT`], or a full lane.
    Busy,
}

/// A keyed hash of credentials.
type Digest = [u8; 32];

/// Which queue a check waits in; the first goes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    /// From an address with no recent wrong credentials.
    Clean,
    /// From one with some, or of unknown address.
    Suspect,
}

/// The basic-auth checks of one server: their caches and their queue.
pub(super) struct Logins {
    shared: Arc<Shared>,
    wait: Duration,
}

impl std::fmt::Debug for Logins {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Logins")
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

struct Shared {
    key: hmac::Key,
    accepted: Mutex<ExpiringSet<Digest>>,
    refused: Mutex<ExpiringSet<Digest>>,
    suspects: Mutex<ExpiringSet<IpAddr>>,
    queue: Mutex<Queue>,
    counts: Arc<LoginCounts>,
}

/// A check waiting for its turn.
type Waiter = oneshot::Sender<Turn>;

/// Who runs the bcrypt check, and who waits for it.
#[derive(Default)]
struct Queue {
    /// Whether a [`Turn`] is out.
    taken: bool,
    /// The waiters of [`Lane::Clean`], in order of arrival.
    clean: VecDeque<Waiter>,
    /// The waiters of [`Lane::Suspect`]: a queue per user (`None` for
    /// names that are no user), in the order the queues take turns. At
    /// most one more queue than there are users.
    suspect: VecDeque<(Option<String>, VecDeque<Waiter>)>,
}

impl Queue {
    /// The next waiter: the clean lane's first, else the first of the
    /// slow lane's queue whose turn it is, which then goes last.
    fn next(&mut self) -> Option<Waiter> {
        if let Some(next) = self.clean.pop_front() {
            return Some(next);
        }
        while let Some((user, mut waiters)) = self.suspect.pop_front() {
            if let Some(next) = waiters.pop_front() {
                if !waiters.is_empty() {
                    self.suspect.push_back((user, waiters));
                }
                return Some(next);
            }
        }
        None
    }

    /// Where a check of `user` from `lane` waits.
    fn waiters(&mut self, lane: Lane, user: Option<&str>) -> &mut VecDeque<Waiter> {
        if lane == Lane::Clean {
            return &mut self.clean;
        }
        let at = match self
            .suspect
            .iter()
            .position(|(waiting, _)| waiting.as_deref() == user)
        {
            Some(at) => at,
            None => {
                self.suspect
                    .push_back((user.map(str::to_owned), VecDeque::new()));
                self.suspect.len() - 1
            }
        };
        &mut self.suspect[at].1
    }

    /// How many checks wait in `lane`.
    #[cfg(test)]
    fn waiting(&self, lane: Lane) -> usize {
        match lane {
            Lane::Clean => self.clean.len(),
            Lane::Suspect => self.suspect.iter().map(|(_, waiters)| waiters.len()).sum(),
        }
    }
}

/// The right to run the one bcrypt check. Dropping it hands it to the
/// next waiter, the clean lane first.
struct Turn(Option<Arc<Shared>>);

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.pass_turn();
        }
    }
}

/// No turn in time, or no room to wait.
#[derive(Debug, PartialEq, Eq)]
struct Busy;

impl Logins {
    /// Checks counted into `counts`, each waiting at most [`BCRYPT_WAIT`].
    pub(super) fn new(counts: Arc<LoginCounts>) -> Self {
        Self::with_wait(counts, BCRYPT_WAIT)
    }

    fn with_wait(counts: Arc<LoginCounts>, wait: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                key: random_key(),
                accepted: Mutex::new(ExpiringSet::new(ACCEPTED_ENTRIES, ACCEPTED_FOR)),
                refused: Mutex::new(ExpiringSet::new(REFUSED_ENTRIES, REFUSED_FOR)),
                suspects: Mutex::new(ExpiringSet::new(SUSPECT_ENTRIES, SUSPECT_FOR)),
                queue: Mutex::new(Queue::default()),
                counts,
            }),
            wait,
        }
    }

    /// Whether `headers` carry the right credentials of one of `config`'s
    /// users; `peer` is the client's address.
    pub(super) async fn check(
        &self,
        config: &WebConfig,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Login {
        let arrived = tokio::time::Instant::now();
        let login = match basic_credentials(headers) {
            Some((user, password)) => self.verify(config, user, password, peer).await,
            None => Login::Refused,
        };
        let counts = &self.shared.counts;
        let counter = match login {
            Login::Accepted => &counts.accepted,
            Login::Refused => &counts.refused,
            Login::Busy => &counts.busy,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        // A request without credentials is a browser asking for the
        // password prompt: answered at once.
        if login != Login::Accepted && headers.contains_key(AUTHORIZATION) {
            tokio::time::sleep_until(arrived + REFUSED_NOT_BEFORE).await;
        }
        login
    }

    async fn verify(
        &self,
        config: &WebConfig,
        user: String,
        password: String,
        peer: Option<IpAddr>,
    ) -> Login {
        let known = config.users.get(&user);
        // An unknown user is checked against a hash of no one's password,
        // so that it takes as long as a wrong password.
        let hash = known.unwrap_or(&config.dummy_hash).clone();
        let known = known.is_some();
        let digest = self.shared.digest(&user, &hash, &password);
        let peer = peer.map(address_key);
        if let Some(right) = self.shared.remembered(&digest) {
            return self.shared.judge(right && known, peer);
        }
        let suspect =
            peer.is_none_or(|peer| lock(&self.shared.suspects).contains(&peer, Instant::now()));
        let lane = if suspect { Lane::Suspect } else { Lane::Clean };
        let queue_of = known.then_some(user.as_str());
        let Ok(turn) = self.turn(lane, queue_of).await else {
            return Login::Busy;
        };
        let shared = Arc::clone(&self.shared);
        // The result is recorded on the blocking thread, before the turn
        // passes on: the next check of the same credentials finds it even
        // when this request's client has gone.
        let checked = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let right = match shared.remembered(&digest) {
                Some(right) => right,
                None => {
                    shared.counts.bcrypt_checks.fetch_add(1, Ordering::Relaxed);
                    let right = bcrypt::verify(&password, &hash).unwrap_or(false);
                    shared.remember(digest, right);
                    right
                }
            };
            shared.judge(right && known, peer)
        })
        .await;
        checked.unwrap_or(Login::Refused)
    }

    /// The turn to run a bcrypt check of `user` (`None`: a name that is
    /// no user), after the waiters ahead in `lane`; see the module docs.
    async fn turn(&self, lane: Lane, user: Option<&str>) -> Result<Turn, Busy> {
        let waiting = {
            let mut queue = lock(&self.shared.queue);
            if !queue.taken {
                queue.taken = true;
                return Ok(Turn(Some(Arc::clone(&self.shared))));
            }
            let waiters = queue.waiters(lane, user);
            waiters.retain(|waiter| !waiter.is_closed());
            if waiters.len() >= WAITING_PER_LANE {
                return Err(Busy);
            }
            let (sender, receiver) = oneshot::channel();
            waiters.push_back(sender);
            receiver
        };
        // A turn sent just as the wait ends is dropped with the receiver,
        // and passes on.
        match tokio::time::timeout(self.wait, waiting).await {
            Ok(Ok(turn)) => Ok(turn),
            Ok(Err(_)) | Err(_) => Err(Busy),
        }
    }
}

impl Shared {
    fn digest(&self, user: &str, hash: &str, password: &str) -> Digest {
        let mut context = hmac::Context::with_key(&self.key);
        // Lengths first, so that no two triples give the same bytes.
        for part in [user, hash] {
            context.update(&(part.len() as u64).to_le_bytes());
            context.update(part.as_bytes());
        }
        context.update(password.as_bytes());
        let mut digest = [0; 32];
        digest.copy_from_slice(context.sign().as_ref());
        digest
    }

    /// Whether these credentials were found right or wrong lately.
    fn remembered(&self, digest: &Digest) -> Option<bool> {
        let now = Instant::now();
        if lock(&self.accepted).contains(digest, now) {
            Some(true)
        } else if lock(&self.refused).contains(digest, now) {
            Some(false)
        } else {
            None
        }
    }

    fn remember(&self, digest: Digest, right: bool) {
        let cache = if right { &self.accepted } else { &self.refused };
        lock(cache).insert(digest, Instant::now());
    }

    /// The verdict; a refusal puts `peer` in the slow lane.
    fn judge(&self, accepted: bool, peer: Option<IpAddr>) -> Login {
        if accepted {
            return Login::Accepted;
        }
        if let Some(peer) = peer {
            lock(&self.suspects).insert(peer, Instant::now());
        }
        Login::Refused
    }

    /// Hands the turn to the first waiter still waiting, or puts it back.
    fn pass_turn(self: Arc<Self>) {
        loop {
            let next = {
                let mut queue = lock(&self.queue);
                match queue.next() {
                    Some(next) => next,
                    None => {
                        queue.taken = false;
                        return;
                    }
                }
            };
            match next.send(Turn(Some(Arc::clone(&self)))) {
                Ok(()) => return,
                // That waiter gave up: take the turn back, for the next.
                Err(mut unsent) => unsent.0 = None,
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fresh HMAC key. Should the system's random source fail, a key
/// from the standard library's hash seeds (random too) does.
fn random_key() -> hmac::Key {
    let rng = ring::rand::SystemRandom::new();
    hmac::Key::generate(hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
        use std::hash::{BuildHasher, Hasher};
        let mut bytes = Vec::with_capacity(32);
        for part in 0..4_u8 {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u8(part);
            bytes.extend_from_slice(&hasher.finish().to_le_bytes());
        }
        hmac::Key::new(hmac::HMAC_SHA256, &bytes)
    })
}

/// The address as the lanes count it: IPv4 addresses (mapped ones
/// included) one by one, IPv6 by /64, the least a host is given.
fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

/// The user and password of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// A set whose keys expire `ttl` after they were last inserted, and which
/// keeps at most `capacity` insertions, dropping the oldest first.
struct ExpiringSet<K> {
    capacity: usize,
    ttl: Duration,
    /// Each key and when it expires.
    expiry: HashMap<K, Instant>,
    /// The insertions, oldest first; a key inserted again has an older
    /// entry here too, which no longer matches `expiry` and removes
    /// nothing when it goes.
    order: VecDeque<(K, Instant)>,
}

impl<K: Copy + Eq + Hash> ExpiringSet<K> {
    fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            capacity,
            ttl,
            expiry: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn contains(&mut self, key: &K, now: Instant) -> bool {
        self.expire(now);
        self.expiry.contains_key(key)
    }

    fn insert(&mut self, key: K, now: Instant) {
        self.expire(now);
        if self.order.len() >= self.capacity {
            self.drop_oldest();
        }
        let until = now + self.ttl;
        self.expiry.insert(key, until);
        self.order.push_back((key, until));
    }

    fn expire(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(_, until)| *until <= now) {
            self.drop_oldest();
        }
    }

    /// The bytes its tables take, about: the hash table's buckets (one
    /// control byte each, 8 for every 7 entries it can hold) and the queue.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        let entry = std::mem::size_of::<(K, Instant)>();
        self.expiry.capacity() * 8 / 7 * (entry + 1) + self.order.capacity() * entry
    }

    fn drop_oldest(&mut self) {
        if let Some((key, until)) = self.order.pop_front()
            && self.expiry.get(&key) == Some(&until)
        {
            self.expiry.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn basic_credentials_are_read_from_the_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(basic_credentials(&headers), None);
        // "alice:pa:ss" — a password may hold colons.
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic YWxpY2U6cGE6c3M="),
        );
        assert_eq!(
            basic_credentials(&headers),
            Some(("alice".into(), "pa:ss".into()))
        );
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer YWxpY2U6cGE6c3M="),
        );
        assert_eq!(basic_credentials(&headers), None);
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(basic_credentials(&headers), None);
    }

    #[test]
    fn the_expiring_set_forgets_after_its_ttl_and_beyond_its_capacity() {
        let start = Instant::now();
        let ttl = Duration::from_secs(60);
        let mut set = ExpiringSet::new(3, ttl);
        set.insert(1, start);
        assert!(set.contains(&1, start + ttl - Duration::from_millis(1)));
        assert!(!set.contains(&1, start + ttl), "expired");
        // Inserting again renews the key.
        set.insert(2, start);
        set.insert(2, start + Duration::from_secs(30));
        assert!(set.contains(&2, start + ttl + Duration::from_secs(1)));
        // A flood keeps the newest `capacity` insertions, never more.
        let later = start + Duration::from_secs(120);
        for key in 10..10_000 {
            set.insert(key, later);
            assert!(set.order.len() <= 3 && set.expiry.len() <= 3);
        }
        assert!(set.contains(&9_999, later) && set.contains(&9_997, later));
        assert!(!set.contains(&9_996, later));
        assert!(!set.contains(&2, later), "pushed out");
    }

    /// Distinct passwords from ever new addresses fill every table to
    /// its bound, and no further.
    #[test]
    fn the_caches_stay_under_512_kib_whatever_comes() {
        let logins = Logins::new(Arc::default());
        let shared = &logins.shared;
        let now = Instant::now();
        for n in 0_u32..20_000 {
            let digest = shared.digest("alice", "$2b$hash", &n.to_string());
            shared.remember(digest, n % 2 == 0);
            let address = IpAddr::V6(Ipv6Addr::from(u128::from(n) << 64));
            lock(&shared.suspects).insert(address_key(address), now);
        }
        let sets = [
            lock(&shared.accepted).bytes(),
            lock(&shared.refused).bytes(),
            lock(&shared.suspects).bytes(),
        ];
        assert_eq!(lock(&shared.accepted).expiry.len(), ACCEPTED_ENTRIES);
        assert_eq!(lock(&shared.refused).expiry.len(), REFUSED_ENTRIES);
        assert_eq!(lock(&shared.suspects).expiry.len(), SUSPECT_ENTRIES);
        let total: usize = sets.iter().sum();
        assert!(total < 512 << 10, "{sets:?} bytes");
    }

    #[test]
    fn the_digest_covers_user_hash_and_password_and_hides_the_password() {
        let logins = Logins::new(Arc::default());
        let shared = &logins.shared;
        let digest = shared.digest("alice", "$2b$hash", "s3cret");
        assert_eq!(digest, shared.digest("alice", "$2b$hash", "s3cret"));
        for other in [
            shared.digest("alic", "e$2b$hash", "s3cret"),
            shared.digest("alice", "$2b$other", "s3cret"),
            shared.digest("alice", "$2b$hash", "s3cre"),
            shared.digest("bob", "$2b$hash", "s3cret"),
        ] {
            assert_ne!(digest, other);
        }
        // Another server's key gives another digest.
        let elsewhere = Logins::new(Arc::default());
        assert_ne!(
            digest,
            elsewhere.shared.digest("alice", "$2b$hash", "s3cret")
        );
        assert!(!digest.windows(6).any(|window| window == b"s3cret"));
    }

    #[test]
    fn ipv6_addresses_count_by_64() {
        let key = |text: &str| address_key(text.parse().unwrap());
        assert_eq!(key("2001:db8::1"), key("2001:db8::ffff:1"));
        assert_ne!(key("2001:db8::1"), key("2001:db8:0:1::1"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
    }

    /// Blocking work that counts how many of it run at once.
    #[derive(Debug, Default)]
    struct Running {
        now: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
        done: std::sync::atomic::AtomicUsize,
    }

    impl Running {
        /// Takes a turn in `lane`, then holds it on a blocking thread for
        /// `takes`, as a bcrypt check does.
        async fn run(
            self: &Arc<Self>,
            logins: &Logins,
            lane: Lane,
            takes: Duration,
        ) -> Result<(), Busy> {
            use std::sync::atomic::Ordering::SeqCst;
            let turn = logins.turn(lane, None).await?;
            let running = Arc::clone(self);
            tokio::task::spawn_blocking(move || {
                let _turn = turn;
                let now = running.now.fetch_add(1, SeqCst) + 1;
                running.most.fetch_max(now, SeqCst);
                std::thread::sleep(takes);
                running.now.fetch_sub(1, SeqCst);
                running.done.fetch_add(1, SeqCst);
            })
            .await
            .unwrap();
            Ok(())
        }
    }

    /// The review's reproduction: callers that give up (a client that
    /// disconnects drops the request future) while their check runs must
    /// not let another check start before theirs ends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_that_give_up_do_not_let_two_checks_run_at_once() {
        use std::sync::atomic::Ordering::SeqCst;
        const CALLERS: usize = 20;
        let logins = Arc::new(Logins::with_wait(Arc::default(), Duration::from_secs(30)));
        let running = Arc::new(Running::default());
        let mut callers = tokio::task::JoinSet::new();
        for caller in 0..CALLERS {
            let logins = Arc::clone(&logins);
            let running = Arc::clone(&running);
            let lane = if caller % 2 == 0 {
                Lane::Clean
            } else {
                Lane::Suspect
            };
            callers.spawn(async move {
                // Hangs up after 30 ms, as the clients of the review did.
                let _ = tokio::time::timeout(
                    Duration::from_millis(30),
                    running.run(&logins, lane, Duration::from_millis(200)),
                )
                .await;
            });
        }
        while callers.join_next().await.is_some() {}
        let deadline = Instant::now() + Duration::from_secs(5);
        while running.now.load(SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(running.now.load(SeqCst), 0, "work still running after 5 s");
        assert_eq!(running.most.load(SeqCst), 1, "checks ran at once");
        assert!(running.done.load(SeqCst) < CALLERS);
        // The turn is free again.
        assert!(!lock(&logins.shared.queue).taken);
        assert_eq!(
            running.run(&logins, Lane::Suspect, Duration::ZERO).await,
            Ok(())
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_waits_for_its_turn_at_most_the_bound_and_a_full_lane_refuses_at_once() {
        let wait = Duration::from_millis(300);
        let logins = Arc::new(Logins::with_wait(Arc::default(), wait));
        let running = Arc::new(Running::default());
        let holder = {
            let logins = Arc::clone(&logins);
            let running = Arc::clone(&running);
            tokio::spawn(async move {
                running
                    .run(&logins, Lane::Clean, Duration::from_secs(3))
                    .await
            })
        };
        while running.now.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let started = Instant::now();
        let refused = logins.turn(Lane::Clean, None).await.map(drop);
        let waited = started.elapsed();
        assert_eq!(refused, Err(Busy));
        assert!(
            waited >= wait && waited < wait + Duration::from_secs(1),
            "{waited:?}"
        );
        // A full lane refuses at once; the other lane still has room.
        let mut waiters = tokio::task::JoinSet::new();
        for _ in 0..WAITING_PER_LANE {
            let logins = Arc::clone(&logins);
            waiters.spawn(async move { logins.turn(Lane::Suspect, None).await.map(drop) });
        }
        while lock(&logins.shared.queue).waiting(Lane::Suspect) < WAITING_PER_LANE {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = Instant::now();
        assert_eq!(logins.turn(Lane::Suspect, None).await.map(drop), Err(Busy));
        assert!(started.elapsed() < wait / 2, "{:?}", started.elapsed());
        // The clean lane has room still: a check there waits its time.
        let started = Instant::now();
        assert_eq!(logins.turn(Lane::Clean, None).await.map(drop), Err(Busy));
        assert!(started.elapsed() >= wait, "{:?}", started.elapsed());
        while waiters.join_next().await.is_some() {}
        assert_eq!(holder.await.unwrap(), Ok(()));
        // Once the turn is free, work runs.
        assert_eq!(
            running.run(&logins, Lane::Suspect, Duration::ZERO).await,
            Ok(())
        );
    }

    /// The clean lane goes first; in the slow lane each user's queue takes
    /// its turn: with a check running, alice's three checks and carol's
    /// one waiting there, carol is second, not last.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_clean_lane_goes_first_and_the_slow_lane_s_users_take_turns() {
        let logins = Arc::new(Logins::with_wait(Arc::default(), Duration::from_secs(30)));
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = logins.turn(Lane::Suspect, None).await.unwrap();
        let mut waiters = tokio::task::JoinSet::new();
        for (arrived, (name, lane, user)) in [
            ("alice 1", Lane::Suspect, Some("alice")),
            ("alice 2", Lane::Suspect, Some("alice")),
            ("alice 3", Lane::Suspect, Some("alice")),
            ("carol", Lane::Suspect, Some("carol")),
            ("no user", Lane::Suspect, None),
            ("clean", Lane::Clean, Some("alice")),
        ]
        .into_iter()
        .enumerate()
        {
            let waiter = Arc::clone(&logins);
            let order = Arc::clone(&order);
            waiters.spawn(async move {
                let turn = waiter.turn(lane, user).await.unwrap();
                order.lock().unwrap().push(name);
                drop(turn);
            });
            // In this order of arrival.
            while {
                let queue = lock(&logins.shared.queue);
                queue.waiting(Lane::Clean) + queue.waiting(Lane::Suspect)
            } <= arrived
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        drop(first);
        while waiters.join_next().await.is_some() {}
        assert_eq!(
            *order.lock().unwrap(),
            ["clean", "alice 1", "carol", "no user", "alice 2", "alice 3"]
        );
    }

    /// A flood against one user fills that user's queue only: a check of
    /// another user from the same (suspect) address still gets a place.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_of_one_user_leaves_room_for_the_others() {
        let logins = Arc::new(Logins::with_wait(Arc::default(), Duration::from_secs(30)));
        let first = logins.turn(Lane::Suspect, None).await.unwrap();
        let mut waiters = tokio::task::JoinSet::new();
        for _ in 0..WAITING_PER_LANE {
            let logins = Arc::clone(&logins);
            waiters.spawn(async move { logins.turn(Lane::Suspect, Some("alice")).await.map(drop) });
        }
        while lock(&logins.shared.queue).waiting(Lane::Suspect) < WAITING_PER_LANE {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            logins.turn(Lane::Suspect, Some("alice")).await.map(drop),
            Err(Busy),
            "alice's queue is full"
        );
        let carol = {
            let logins = Arc::clone(&logins);
            tokio::spawn(async move { logins.turn(Lane::Suspect, Some("carol")).await.map(drop) })
        };
        while lock(&logins.shared.queue).waiting(Lane::Suspect) < WAITING_PER_LANE + 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(first);
        assert_eq!(carol.await.unwrap(), Ok(()));
        while let Some(waiter) = waiters.join_next().await {
            assert_eq!(waiter.unwrap(), Ok(()));
        }
        assert!(!lock(&logins.shared.queue).taken);
    }
}
