//! Many probes in flight from one `source_ip_address` (issue 12, part 5).
//!
//! A socket bound to an address with port 0 gets an ephemeral port at
//! `bind()`, for the address alone: no other socket bound to that address
//! can have it, whatever either connects to. So without
//! `IP_BIND_ADDRESS_NO_PORT` the size of `ip_local_port_range` caps the
//! probes in flight from a source address, and the ones beyond it fail at
//! `bind()` with `EADDRINUSE` (reason `local`). With the option the port
//! is chosen at `connect()` for the whole 4-tuple, so probes to different
//! targets share ports and the cap is gone.
//!
//! To make the cap small enough to reach, the child narrows the ephemeral
//! range of its namespace to [`EPHEMERAL_PORTS`] (the sysctl is per
//! network namespace; the IPv4 one also governs IPv6). It then starts
//! [`PENDING_PROBES`] probes at once, three times the range, each to its
//! own destination port whose SYN an nftables rule drops, so every probe
//! holds its socket until its timeout. Each must end `timeout`, after
//! about one timeout, and the whole batch must take about one timeout
//! too. A second batch to listeners checks that probes from the source
//! address still succeed. A third sends [`ONE_PORT_PROBES`] to one
//! pending port, more than the range: the ones beyond it must fail as
//! `local` at `connect()` (`EADDRNOTAVAIL`), naming `source_ip_address`
//! in their detail. Both families: 127.0.0.2 → 127.0.0.1 and
//! ::1 → ::1.
//!
//! The namespace, its rules and the re-executed child follow
//! `tests/netns/faults.rs` (which explains why); the namespace has only
//! `lo`, so no packet leaves it. Prerequisites (root, `ip`, `nft`, a
//! working `ip netns add`) are checked first; when one is missing the
//! test is skipped, or fails under `SYNACK_SYSTEM_TESTS=require`. The
//! child needs about [`PENDING_PROBES`] open files: it raises its soft
//! `RLIMIT_NOFILE` with `prlimit` when it is lower, and fails if the hard
//! limit is too.

use crate::common;

use crate::concurrent::{Checked, check_all_at_once};
use crate::namespace::{filter_table, listeners, namespace_test, runtime};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};
use synack_exporter::{Module, Outcome, Reason};

/// The namespace's ephemeral port range: 1000 ports, far from the others.
const EPHEMERAL_PORTS: (u16, u16) = (40000, 40999);

/// SYNs to these destination ports are dropped (see [`RULESET`]).
const PENDING_PORTS: (u16, u16) = (20000, 22999);

/// One probe per pending port, all in flight at once: three times the
/// ephemeral range.
const PENDING_PROBES: usize = (PENDING_PORTS.1 - PENDING_PORTS.0 + 1) as usize;

/// A socket per pending probe, plus the listeners, the runtime and
/// libtest's own files, with room to spare.
const OPEN_FILES_NEEDED: u64 = PENDING_PROBES as u64 + 200;

/// Probes at once to one pending port: more than the ephemeral range,
/// so that the ones beyond it find no local port at `connect()`.
const ONE_PORT_PROBES: usize = 1100;

/// Listeners for the batch that must succeed.
const OPEN_PORTS: [u16; 4] = [7101, 7102, 7103, 7104];

/// Probes per listener in the successful batch; below the ephemeral
/// range, which does cap the connections to one destination.
const PROBES_PER_OPEN_PORT: usize = 500;

/// Drops the SYNs to [`PENDING_PORTS`] (a drift between the two shows as
/// probes refused instead of timed out).
const RULESET: &str = filter_table!(
    "synack_netns_source",
    "input",
    ["tcp dport 20000-22999 drop",]
);

/// The timeout of the pending probes, which all run to it.
const PENDING_TIMEOUT: Duration = Duration::from_millis(1500);

/// The timeout of the probes to listeners, which answer at once.
const OPEN_TIMEOUT: Duration = Duration::from_secs(3);

/// A pending batch is concurrent if it ends within one timeout plus this
/// (starting a few thousand sockets on a busy machine); one after another
/// it would take thousands of timeouts.
const BATCH_SLACK: Duration = Duration::from_secs(1);

/// Source and destination address of one family's batches.
const FAMILIES: [(IpAddr, IpAddr); 2] = [
    (
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    ),
    (
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ),
];

namespace_test! {
    /// The parent: checks prerequisites, builds the namespace and its rules,
    /// runs the child test inside it and reports what the child printed.
    parent: netns_many_probes_share_one_source_address,
    /// The child: narrows the ephemeral range, then runs, per family, the
    /// pending batch and the successful batch from the source address.
    /// Passes at once outside the namespace.
    child: netns_source_child_probes_from_one_address => probe_from_one_address,
    prefix: "synack-source",
    ruleset: RULESET,
    env: "SYNACK_NETNS_SOURCE_CHILD",
    limit: Duration::from_secs(90),
}

fn probe_from_one_address() {
    narrow_ephemeral_range();
    common::ensure_open_file_limit(OPEN_FILES_NEEDED);
    // Half-open probes stop at the SYN-ACK.
    let _listeners =
        listeners(FAMILIES.iter().flat_map(|&(_, destination)| {
            OPEN_PORTS.map(|port| SocketAddr::new(destination, port))
        }));
    let runtime = runtime();

    let mut problems = Vec::new();
    for (source, destination) in FAMILIES {
        let pending: Vec<SocketAddr> = (PENDING_PORTS.0..=PENDING_PORTS.1)
            .map(|port| SocketAddr::new(destination, port))
            .collect();
        let batch = runtime.block_on(run_batch(&pending, source, PENDING_TIMEOUT));
        problems.extend(batch.check_all_time_out(source));

        let open: Vec<SocketAddr> = OPEN_PORTS
            .iter()
            .flat_map(|&port| {
                std::iter::repeat_n(SocketAddr::new(destination, port), PROBES_PER_OPEN_PORT)
            })
            .collect();
        let batch = runtime.block_on(run_batch(&open, source, OPEN_TIMEOUT));
        problems.extend(batch.check_all_succeed(source));

        let one_port = vec![pending[0]; ONE_PORT_PROBES];
        let batch = runtime.block_on(run_batch(&one_port, source, PENDING_TIMEOUT));
        problems.extend(batch.check_out_of_ports_names_the_source(source));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Writes [`EPHEMERAL_PORTS`] to this namespace's `ip_local_port_range`
/// and checks that it took.
fn narrow_ephemeral_range() {
    const SYSCTL: &str = "/proc/sys/net/ipv4/ip_local_port_range";
    let wanted = format!("{} {}", EPHEMERAL_PORTS.0, EPHEMERAL_PORTS.1);
    std::fs::write(SYSCTL, &wanted).unwrap_or_else(|error| panic!("write {SYSCTL}: {error}"));
    let now = std::fs::read_to_string(SYSCTL).expect("read back ip_local_port_range");
    let now: Vec<&str> = now.split_whitespace().collect();
    assert_eq!(now.join(" "), wanted, "{SYSCTL} did not take the value");
    let size = usize::from(EPHEMERAL_PORTS.1 - EPHEMERAL_PORTS.0 + 1);
    assert!(
        PENDING_PROBES >= 3 * size,
        "the pending batch must be well beyond the ephemeral range to test anything"
    );
    println!("ip_local_port_range {wanted} ({size} ports), {PENDING_PROBES} pending probes");
}

/// A batch of probes that ran at once, with how long the batch took.
struct Batch {
    timeout: Duration,
    results: Vec<Checked>,
    took: Duration,
}

/// Starts a half-open probe to every address at once, all from `source`,
/// and waits for them all.
async fn run_batch(addresses: &[SocketAddr], source: IpAddr, timeout: Duration) -> Batch {
    let mut module = Module::tcp_halfopen().with_timeout(timeout);
    module.tcp_mut().expect("a TCP module").source_ip_address = Some(source);
    let started = Instant::now();
    // "[::1]:20000" for IPv6
    let probes = addresses
        .iter()
        .map(|address| (address.to_string(), module.clone()));
    let results = check_all_at_once(probes).await;
    Batch {
        timeout,
        results,
        took: started.elapsed(),
    }
}

impl Batch {
    /// Problems unless every probe timed out after about its timeout, and
    /// the batch took about one timeout.
    fn check_all_time_out(&self, source: IpAddr) -> Vec<String> {
        self.report("pending", source);
        let low = self.timeout.mul_f64(0.9);
        let high = self.timeout + Duration::from_secs(1);
        let mut problems = self.problems(source, |outcome| {
            if outcome.reason() != Some(Reason::Timeout) {
                return Some("expected reason timeout".to_owned());
            }
            (outcome.duration < low || outcome.duration >= high).then(|| {
                format!(
                    "a timeout should take [{low:?}, {high:?}), took {:?}",
                    outcome.duration
                )
            })
        });
        if self.took >= self.timeout + BATCH_SLACK {
            problems.push(format!(
                "from {source}: {} pending probes took {:?}, more than one timeout ({:?}) plus {BATCH_SLACK:?}",
                self.results.len(),
                self.took,
                self.timeout
            ));
        }
        problems
    }

    /// Problems unless the probes beyond the ephemeral range failed as
    /// `local` with a detail that names `source_ip_address`, and the
    /// others timed out.
    fn check_out_of_ports_names_the_source(&self, source: IpAddr) -> Vec<String> {
        self.report("1 port", source);
        let named = format!(
            "EADDRNOTAVAIL (Cannot assign requested address): no local port is free from source_ip_address {source}"
        );
        let mut problems = self.problems(source, |outcome| match outcome.reason() {
            Some(Reason::Timeout) => None,
            Some(Reason::Local)
                if outcome
                    .failure
                    .as_ref()
                    .is_some_and(|failure| failure.detail.contains(&named)) =>
            {
                None
            }
            _ => Some(format!("expected timeout, or local naming {named:?}")),
        });
        let range = usize::from(EPHEMERAL_PORTS.1 - EPHEMERAL_PORTS.0 + 1);
        let out_of_ports = self
            .results
            .iter()
            .filter(|result| matches!(result, Ok(Ok(outcome)) if outcome.reason() == Some(Reason::Local)))
            .count();
        if out_of_ports < ONE_PORT_PROBES - range {
            problems.push(format!(
                "from {source}: {out_of_ports} of {ONE_PORT_PROBES} probes to one port found no local port; \
                 at least {} should have, the range being {range}",
                ONE_PORT_PROBES - range
            ));
        }
        problems
    }

    /// Problems unless every probe succeeded.
    fn check_all_succeed(&self, source: IpAddr) -> Vec<String> {
        self.report("open", source);
        self.problems(source, |outcome| {
            (!outcome.is_success()).then(|| "expected success".to_owned())
        })
    }

    /// One line per probe that `wrong` (or a lost or rejected probe)
    /// fails, at most 10, and a count of the rest.
    fn problems(&self, source: IpAddr, wrong: impl Fn(&Outcome) -> Option<String>) -> Vec<String> {
        let all: Vec<String> = self
            .results
            .iter()
            .filter_map(|result| match result {
                Err(bound) => Some(format!("a probe ignored its deadline ({bound:?})")),
                Ok(Err(error)) => Some(format!("a target was rejected: {error}")),
                Ok(Ok(outcome)) => {
                    wrong(outcome).map(|problem| format!("{} => {problem}", describe(outcome)))
                }
            })
            .collect();
        let mut shown: Vec<String> = all
            .iter()
            .take(10)
            .map(|line| format!("from {source}: {line}"))
            .collect();
        if all.len() > shown.len() {
            shown.push(format!(
                "from {source}: ... {} of {} probes wrong in all",
                all.len(),
                self.results.len()
            ));
        }
        shown
    }

    /// Prints how many probes ended how, the longest probe, and the batch's time.
    fn report(&self, what: &str, source: IpAddr) {
        let mut ends: BTreeMap<String, usize> = BTreeMap::new();
        let mut longest = Duration::ZERO;
        for result in &self.results {
            let end = match result {
                Err(_) => "no outcome".to_owned(),
                Ok(Err(_)) => "target rejected".to_owned(),
                Ok(Ok(outcome)) => {
                    longest = longest.max(outcome.duration);
                    outcome
                        .reason()
                        .map_or_else(|| "success".to_owned(), |reason| reason.to_string())
                }
            };
            *ends.entry(end).or_default() += 1;
        }
        println!(
            "{what:<7} from {source:<9}: {} probes, timeout {:?}: {ends:?}; longest probe {:.3}s, batch {:.3}s",
            self.results.len(),
            self.timeout,
            longest.as_secs_f64(),
            self.took.as_secs_f64()
        );
    }
}

/// The probe's address, reason and detail, and how long it took.
fn describe(outcome: &Outcome) -> String {
    let address = outcome
        .address
        .map_or_else(|| "?".to_owned(), |address| address.to_string());
    format!(
        "{address}: {} in {:.3}s",
        crate::concurrent::verdict(outcome),
        outcome.duration.as_secs_f64()
    )
}
