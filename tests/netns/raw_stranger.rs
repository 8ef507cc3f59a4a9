//! A stranger's traffic beside the raw engine (issue 22): a raw TCP
//! socket receives a copy of every TCP segment to the host, and the
//! kernel answers with an RST any SYN-ACK to a port the engine holds. An
//! ordinary connection to the very port the engine probes, at a high
//! rate, must not notice: it completes, its data comes back intact, and
//! no RST touches it.
//!
//! In a network namespace of its own with only `lo` (see
//! `tests/netns/faults.rs` for why the test re-executes itself), the child
//! runs an echo server on [`PORT`] (127.0.0.1 and ::1), starts a flood of
//! raw probes of it ([`IN_FLIGHT`] at once, through a
//! [`Checker`](synack_exporter::Checker)), and while they run opens
//! [`STRANGERS`] ordinary connections per family, one after another, each
//! sending [`CHUNKS`] chunks and reading each back before the next, a
//! [`PAUSE`] apart; at least [`PROBES_BESIDE`] probes must finish
//! meanwhile.
//! nftables counters count the probes' SYNs (from the engine's source
//! ports, 61000-65535) and every RST to or from the port that is not a
//! probe's: there must be none. The echo server must have accepted the
//! strangers' connections and nothing else. A control shows that the RST
//! count can fail: one more ordinary connection, closed abortively before
//! the flood, counts one.

use crate::concurrent::check_bounded_with;
use crate::engines::Engine;
use crate::namespace::namespace_test;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use synack_exporter::Module;

/// The echo server's port, which the raw probes probe too.
const PORT: u16 = 7401;

/// Ordinary connections per family.
const STRANGERS: usize = 20;

/// Chunks each stranger sends and reads back.
const CHUNKS: usize = 64;

/// A stranger's pause between chunks, so that its connections stay open
/// through thousands of probes.
const PAUSE: Duration = Duration::from_millis(2);

/// Bytes per chunk.
const CHUNK: usize = 8192;

/// Raw probes in flight at once.
const IN_FLIGHT: usize = 256;

/// Raw probes the flood must have finished before the strangers start,
/// so that they meet it at full speed.
const PROBES_FIRST: u64 = 2000;

/// Raw probes that must finish while the strangers talk.
const PROBES_BESIDE: u64 = 10_000;

/// The raw probes' timeout.
const TIMEOUT: Duration = Duration::from_secs(2);

/// How long the flood may run at most, and each wait of the child.
const FLOOD_LIMIT: Duration = Duration::from_secs(90);

/// How long a stranger's read or write may block.
const IO_LIMIT: Duration = Duration::from_secs(5);

/// Counts the raw probes' SYNs to [`PORT`], and the RSTs to or from it
/// that are not a probe's (whose other end is not one of the engine's
/// source ports).
const RULESET: &str = "\
table inet synack_raw_stranger {
    counter probe_syn { }
    counter stranger_rst { }
    counter stranger_segments { }
    chain input_filter {
        type filter hook input priority 0; policy accept;
        tcp dport 7401 tcp sport 61000-65535 tcp flags & (syn | ack | rst) == syn counter name \"probe_syn\"
        tcp dport 7401 tcp sport != 61000-65535 counter name \"stranger_segments\"
        tcp dport 7401 tcp sport != 61000-65535 tcp flags & rst == rst counter name \"stranger_rst\"
        tcp sport 7401 tcp dport != 61000-65535 tcp flags & rst == rst counter name \"stranger_rst\"
    }
}
";

namespace_test! {
    /// The parent: builds the namespace with the counters and runs the child.
    parent: netns_a_strangers_connection_is_untouched_by_raw_probes,
    /// The child: the echo server, the flood of raw probes and the strangers.
    child: netns_raw_stranger_child_talks => talk_beside_the_flood,
    prefix: "synack-rawstranger",
    ruleset: RULESET,
    env: "SYNACK_NETNS_RAW_STRANGER_CHILD",
    limit: Duration::from_secs(240),
}

fn talk_beside_the_flood() {
    let runtime = crate::namespace::runtime();
    let mut problems = Vec::new();
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let address = SocketAddr::new(ip, PORT);
        let server = EchoServer::start(address);
        problems.extend(control(address));
        let counters_before = counters();
        let flood = Flood::start(&runtime, address);
        flood.wait_for(PROBES_FIRST);
        let probes_before = flood.finished();
        let started = Instant::now();
        let talked = talk(address);
        let took = started.elapsed();
        let probes_beside = flood.finished() - probes_before;
        let (finished, successes) = runtime.block_on(flood.stop());
        let accepted = server.stop();
        let wire = crate::namespace::counters_gained(&counters_before, &counters());
        println!(
            "{address}: {STRANGERS} connections of {CHUNKS} x {CHUNK} bytes in {:.3}s beside \
             {probes_beside} raw probes ({:.0}/s); flood: {successes} of {finished} succeeded; \
             accepted {accepted}; on the wire {wire:?}",
            took.as_secs_f64(),
            probes_beside as f64 / took.as_secs_f64()
        );
        problems.extend(
            talked
                .into_iter()
                .map(|problem| format!("{address}: {problem}")),
        );
        if wire["stranger_rst"] != 0 {
            problems.push(format!(
                "{address}: {} RSTs touched the strangers' connections",
                wire["stranger_rst"]
            ));
        }
        if probes_beside < PROBES_BESIDE {
            problems.push(format!(
                "{address}: only {probes_beside} raw probes ran beside the strangers: not a flood"
            ));
        }
        if successes != finished || wire["probe_syn"] < finished {
            problems.push(format!(
                "{address}: {successes} of {finished} raw probes succeeded, with {} SYNs on the wire",
                wire["probe_syn"]
            ));
        }
        if accepted != STRANGERS + 1 {
            problems.push(format!(
                "{address}: the server accepted {accepted} connections, not the control's and \
                 the {STRANGERS} strangers'"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// One ordinary connection to `address`, closed with an RST (`SO_LINGER
/// {on, 0}`): the counters must count that RST, or their 0 beside the
/// flood proves nothing.
fn control(address: SocketAddr) -> Option<String> {
    let before = counters();
    let stream = TcpStream::connect_timeout(&address, IO_LIMIT)
        .unwrap_or_else(|error| panic!("the control connects to {address}: {error}"));
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(stream);
    std::thread::sleep(Duration::from_millis(100));
    let rst = crate::namespace::counters_gained(&before, &counters())["stranger_rst"];
    println!("{address}: control: an abortive close counted {rst} RST");
    (rst != 1).then(|| format!("{address}: the control's abortive close counted {rst} RSTs, not 1"))
}

/// [`STRANGERS`] connections to `address`, one after another, each
/// sending [`CHUNKS`] chunks and reading each back, then closing with a
/// FIN and reading to the end; what went wrong.
fn talk(address: SocketAddr) -> Vec<String> {
    let mut problems = Vec::new();
    for stranger in 0..STRANGERS {
        if let Err(problem) = talk_once(address, stranger) {
            problems.push(format!("stranger {stranger}: {problem}"));
        }
    }
    problems
}

fn talk_once(address: SocketAddr, stranger: usize) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&address, IO_LIMIT)
        .map_err(|error| format!("connect: {error}"))?;
    let local = stream.local_addr().map_err(|error| error.to_string())?;
    if (61000..=65535).contains(&local.port()) {
        return Err(format!(
            "its port {} is one of the engine's, which the counters leave out",
            local.port()
        ));
    }
    stream
        .set_read_timeout(Some(IO_LIMIT))
        .and_then(|()| stream.set_write_timeout(Some(IO_LIMIT)))
        .map_err(|error| error.to_string())?;
    let mut echoed = vec![0u8; CHUNK];
    for chunk in 0..CHUNKS {
        let sent: Vec<u8> = (0..CHUNK)
            .map(|at| (at * 31 + chunk * 7 + stranger) as u8)
            .collect();
        stream
            .write_all(&sent)
            .map_err(|error| format!("chunk {chunk}: send: {error}"))?;
        stream
            .read_exact(&mut echoed)
            .map_err(|error| format!("chunk {chunk}: read back: {error}"))?;
        if echoed != sent {
            return Err(format!("chunk {chunk} came back changed"));
        }
        std::thread::sleep(PAUSE);
    }
    stream
        .shutdown(Shutdown::Write)
        .map_err(|error| format!("shutdown: {error}"))?;
    let mut rest = Vec::new();
    stream
        .read_to_end(&mut rest)
        .map_err(|error| format!("read to the end: {error}"))?;
    if !rest.is_empty() {
        return Err(format!("{} bytes more than were sent", rest.len()));
    }
    Ok(())
}

/// An echo server on a thread: accepts connections one at a time and
/// sends back what each sends until it closes; counts them.
struct EchoServer {
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl EchoServer {
    fn start(address: SocketAddr) -> Self {
        let listener =
            TcpListener::bind(address).unwrap_or_else(|error| panic!("bind {address}: {error}"));
        listener.set_nonblocking(true).expect("non-blocking");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopping) = (Arc::clone(&accepted), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            // Bounded by the stop flag and by the flood's limit.
            while !stopping.load(Ordering::Relaxed) && started.elapsed() < FLOOD_LIMIT {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        echo(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        Self {
            accepted,
            stop,
            thread,
        }
    }

    /// Stops the server, after a last look at its queue, and returns how
    /// many connections it accepted.
    fn stop(self) -> usize {
        std::thread::sleep(Duration::from_millis(300));
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the echo server");
        self.accepted.load(Ordering::Relaxed)
    }
}

/// Sends back what `stream` sends until it closes (or stalls past
/// [`IO_LIMIT`]), then closes.
fn echo(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(IO_LIMIT));
    let mut buffer = vec![0u8; CHUNK];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(read) => {
                if stream.write_all(&buffer[..read]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Raw probes of one address, [`IN_FLIGHT`] at once, until stopped.
struct Flood {
    finished: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, u64)>,
}

impl Flood {
    fn start(runtime: &tokio::runtime::Runtime, address: SocketAddr) -> Self {
        let finished = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopping) = (Arc::clone(&finished), Arc::clone(&stop));
        let module = Module::new(Engine::Raw.halfopen()).with_timeout(TIMEOUT);
        let target = address.to_string();
        let task = runtime.spawn(async move {
            let started = Instant::now();
            let mut successes = 0;
            let mut running = tokio::task::JoinSet::new();
            loop {
                let going = !stopping.load(Ordering::Relaxed) && started.elapsed() < FLOOD_LIMIT;
                while going && running.len() < IN_FLIGHT {
                    running.spawn(check_bounded_with(
                        Engine::Raw,
                        target.clone(),
                        module.clone(),
                    ));
                }
                let Some(done) = running.join_next().await else {
                    break;
                };
                if matches!(done, Ok(Ok(Ok(outcome))) if outcome.is_success()) {
                    successes += 1;
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
            (count.load(Ordering::Relaxed), successes)
        });
        Self {
            finished,
            stop,
            task,
        }
    }

    /// Probes finished so far.
    fn finished(&self) -> u64 {
        self.finished.load(Ordering::Relaxed)
    }

    /// Waits until `probes` have finished; fails after [`FLOOD_LIMIT`].
    fn wait_for(&self, probes: u64) {
        let started = Instant::now();
        while self.finished() < probes {
            assert!(
                started.elapsed() < FLOOD_LIMIT,
                "only {} raw probes finished within {FLOOD_LIMIT:?}",
                self.finished()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops starting probes, waits for those in flight; how many
    /// finished, and how many of them succeeded.
    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the flood")
    }
}

/// The namespace's counters, by name.
fn counters() -> std::collections::BTreeMap<String, u64> {
    let counters = crate::namespace::named_counters(None, "synack_raw_stranger");
    assert_eq!(counters.len(), 3, "{counters:?}");
    counters
}
