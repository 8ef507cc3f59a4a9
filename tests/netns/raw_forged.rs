//! The raw engine takes only its own answers (issue 22): its initial
//! sequence number carries a keyed hash of the 4-tuple and of the source
//! port's use, so a SYN-ACK is the probe's only with `ack` = ISN + 1, from
//! the probed address and port. A forged SYN-ACK (a wrong `ack`, or the
//! right one from another port), a forged RST, and a stale SYN-ACK (the
//! right answer to an earlier probe of the same 4-tuple, replayed later)
//! must all be ignored: the probe of a target that never answers ends as
//! `timeout`.
//!
//! In a network namespace of its own with only `lo` (see
//! `tests/netns/faults.rs` for why the test re-executes itself), an
//! nftables rule drops every segment to [`PORT_SILENT`]: a target that
//! never answers. The child runs the exporter binary there with one raw
//! source port (`--probe.raw-source-ports=61000-61000`), so that every
//! probe has the same 4-tuple, and for each probe reads the exporter's SYN
//! (its source port and ISN) from an `AF_PACKET` socket, which sees it
//! leave before the rule drops it; then it answers from a raw socket of
//! its own, as the wire would. Per family:
//!
//! 1. a probe with no answer: `timeout` (its ISN is kept);
//! 2. a probe of the same 4-tuple answered with the first probe's right
//!    SYN-ACK: `timeout`, and the two ISNs differ;
//! 3. a probe answered with a SYN-ACK whose `ack` is wrong, a SYN-ACK
//!    with the right `ack` from another port, and an RST-ACK whose `ack`
//!    is wrong: `timeout`;
//! 4. the control: a probe answered with its right SYN-ACK succeeds, or
//!    the injected answers never reached the engine and 2 and 3 proved
//!    nothing;
//! 5. the range exhausted: a probe that starts while another holds the
//!    one port fails at once as `local`, naming the flag to widen; the
//!    other still times out.

use crate::common::{self, ExporterProcess, TempDir, http::blocking_get};
use crate::namespace::{firewall, namespace_test};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

firewall! {
    const RULESET = table "synack_raw_forged" hook "input";
    /// Every segment to this port is dropped: a target that never answers.
    const PORT_SILENT = 7301 => "drop";
}

/// The one source port the exporter may use.
const SOURCE_PORT: u16 = 61000;

/// The module's timeout: every probe but the control runs to it.
const TIMEOUT: Duration = Duration::from_secs(1);

/// How long the sniffer waits for the exporter's SYN.
const SNIFF_LIMIT: Duration = Duration::from_secs(5);

/// `ETH_P_ALL`: an `AF_PACKET` socket of this protocol sees every packet.
const ETH_P_ALL: u16 = 0x0003;

/// TCP flags.
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

namespace_test! {
    /// The parent: builds the namespace with its rule and runs the child.
    parent: netns_raw_forged_and_stale_answers_are_ignored,
    /// The child: the exporter, the sniffer and the injected answers.
    child: netns_raw_forged_child_probes => probe_and_forge,
    prefix: "synack-rawforged",
    ruleset: RULESET,
    env: "SYNACK_NETNS_RAW_FORGED_CHILD",
    limit: Duration::from_secs(120),
}

/// What the injector sends once it has seen the probe's SYN.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Nothing.
    Silence,
    /// A SYN-ACK from the target with `ack` = this earlier ISN + 1.
    Stale { earlier_isn: u32 },
    /// A SYN-ACK with `ack` = ISN + 2, a SYN-ACK with the right `ack`
    /// from the target's next port, and an RST-ACK with `ack` = ISN + 2.
    Forged,
    /// The right SYN-ACK: `ack` = ISN + 1, from the target.
    Right,
}

/// The exporter's SYN as the sniffer saw it.
#[derive(Clone, Copy, Debug)]
struct SeenSyn {
    source: IpAddr,
    source_port: u16,
    isn: u32,
}

fn probe_and_forge() {
    let dir = TempDir::new("raw-forged");
    let config = dir.join("raw.yml");
    std::fs::write(
        &config,
        format!(
            "modules:\n  raw:\n    prober: tcp_halfopen\n    timeout: {}ms\n    tcp: {{engine: raw}}\n",
            TIMEOUT.as_millis()
        ),
    )
    .expect("write the config");
    let exporter = ExporterProcess::start(&[
        "--config.file",
        config.to_str().expect("a UTF-8 path"),
        &format!("--probe.raw-source-ports={SOURCE_PORT}-{SOURCE_PORT}"),
    ]);

    let mut problems = Vec::new();
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let target = SocketAddr::new(ip, PORT_SILENT);
        let (first, body) = probe(&exporter, target, Answer::Silence);
        problems.extend(wrong(target, "no answer", &body, Some("timeout")));
        let (second, body) = probe(
            &exporter,
            target,
            Answer::Stale {
                earlier_isn: first.isn,
            },
        );
        problems.extend(wrong(
            target,
            "the earlier probe's SYN-ACK, replayed",
            &body,
            Some("timeout"),
        ));
        if (second.source, second.source_port) != (first.source, first.source_port)
            || second.source_port != SOURCE_PORT
        {
            problems.push(format!(
                "{target}: the probes came from {first:?} and {second:?}, not both from port \
                 {SOURCE_PORT}: the stale answer was not one of the same 4-tuple"
            ));
        }
        if second.isn == first.isn {
            problems.push(format!(
                "{target}: two probes of the same 4-tuple had the same ISN {:#010x}: a stale \
                 answer cannot be told from a new one",
                first.isn
            ));
        }
        let (_, body) = probe(&exporter, target, Answer::Forged);
        problems.extend(wrong(
            target,
            "forged SYN-ACKs and RST",
            &body,
            Some("timeout"),
        ));
        let (_, body) = probe(&exporter, target, Answer::Right);
        problems.extend(wrong(
            target,
            "the right SYN-ACK (the control)",
            &body,
            None,
        ));
        problems.extend(out_of_ports(&exporter, target));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Two probes of `target` at once with one source port: the second,
/// started while the first holds the port, must fail at once as `local`
/// saying that no raw source port is free and naming
/// `--probe.raw-source-ports`; the first must time out. What is wrong.
fn out_of_ports(exporter: &ExporterProcess, target: SocketAddr) -> Vec<String> {
    let path = format!("/probe?module=raw&target={target}&debug=true");
    let address = exporter.address;
    let first = {
        let path = path.clone();
        std::thread::spawn(move || blocking_get(address, &path, TIMEOUT + Duration::from_secs(10)))
    };
    // Well inside the first probe's second.
    std::thread::sleep(TIMEOUT / 4);
    let started = Instant::now();
    let second = blocking_get(address, &path, TIMEOUT + Duration::from_secs(10))
        .unwrap_or_else(|error| panic!("/probe of {target}: {error}"))
        .body;
    let took = started.elapsed();
    let first = first
        .join()
        .expect("the first probe's thread")
        .unwrap_or_else(|error| panic!("/probe of {target}: {error}"))
        .body;
    let mut problems: Vec<String> = wrong(target, "holding the one port", &first, Some("timeout"))
        .into_iter()
        .chain(wrong(target, "with no port free", &second, Some("local")))
        .collect();
    let named = second.lines().any(|line| {
        line.contains("probe failed: local: ")
            && line.contains("no raw source port is free")
            && line.contains("--probe.raw-source-ports")
    });
    if !named || took >= TIMEOUT / 2 {
        problems.push(format!(
            "{target}: with no port free, the probe should fail at once naming \
             --probe.raw-source-ports; it took {took:?}:\n{second}"
        ));
    }
    problems
}

/// What is wrong with a `/probe` answer that should have ended with
/// `reason` (`None`: success), if anything.
fn wrong(target: SocketAddr, case: &str, body: &str, reason: Option<&str>) -> Option<String> {
    let got = common::failed_reason(body);
    println!("{target} {case}: {}", got.unwrap_or("success"));
    (got != reason).then(|| {
        format!(
            "{target} {case}: wanted {}, got {}:\n{body}",
            reason.unwrap_or("success"),
            got.unwrap_or("success")
        )
    })
}

/// Probes `target` through the exporter while a thread sniffs the probe's
/// SYN and sends `answer`; what it saw of the SYN, and the `/probe`
/// answer (with `debug=true`).
fn probe(exporter: &ExporterProcess, target: SocketAddr, answer: Answer) -> (SeenSyn, String) {
    // Opened before the probe starts, so that it sees the SYN.
    let sniffer = Socket::new(
        Domain::PACKET,
        Type::DGRAM,
        Some(Protocol::from(i32::from(ETH_P_ALL.to_be()))),
    )
    .expect("an AF_PACKET socket");
    sniffer
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("SO_RCVTIMEO");
    let injector = std::thread::spawn(move || {
        let seen = sniff_syn(&sniffer, target);
        if let Some(seen) = seen {
            inject(target, seen, answer);
        }
        seen
    });
    let body = blocking_get(
        exporter.address,
        &format!("/probe?module=raw&target={target}&debug=true"),
        TIMEOUT + Duration::from_secs(10),
    )
    .unwrap_or_else(|error| panic!("/probe of {target}: {error}"))
    .body;
    let seen = injector
        .join()
        .expect("the sniffer thread")
        .unwrap_or_else(|| panic!("no SYN to {target} seen within {SNIFF_LIMIT:?}:\n{body}"));
    println!("{target} {answer:?}: the SYN came from {seen:?}");
    (seen, body)
}

/// The first SYN to `target` the sniffer sees within [`SNIFF_LIMIT`].
fn sniff_syn(sniffer: &Socket, target: SocketAddr) -> Option<SeenSyn> {
    let started = Instant::now();
    let mut buffer = [0u8; 2048];
    while started.elapsed() < SNIFF_LIMIT {
        let Ok(length) = (&*sniffer).read(&mut buffer) else {
            continue; // the read timeout: look at the clock again
        };
        let Some((source, destination, tcp)) = ip_packet(&buffer[..length]) else {
            continue;
        };
        if tcp.len() < 20 || destination != target.ip() {
            continue;
        }
        let destination_port = u16::from_be_bytes([tcp[2], tcp[3]]);
        if destination_port == target.port() && tcp[13] & (SYN | ACK) == SYN {
            return Some(SeenSyn {
                source,
                source_port: u16::from_be_bytes([tcp[0], tcp[1]]),
                isn: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
            });
        }
    }
    None
}

/// The source, destination and TCP segment of an IPv4 or IPv6 packet (an
/// IPv6 one without extension headers) that carries TCP.
fn ip_packet(packet: &[u8]) -> Option<(IpAddr, IpAddr, &[u8])> {
    match packet.first()? >> 4 {
        4 => {
            let header = usize::from(packet[0] & 0x0f) * 4;
            if packet.len() < header.max(20) || packet[9] != 6 {
                return None;
            }
            let address = |at: usize| {
                IpAddr::from(<[u8; 4]>::try_from(&packet[at..at + 4]).expect("4 bytes"))
            };
            Some((address(12), address(16), &packet[header..]))
        }
        6 => {
            if packet.len() < 40 || packet[6] != 6 {
                return None;
            }
            let address = |at: usize| {
                IpAddr::from(<[u8; 16]>::try_from(&packet[at..at + 16]).expect("16 bytes"))
            };
            Some((address(8), address(24), &packet[40..]))
        }
        _ => None,
    }
}

/// Sends `answer` to the probe `seen` made of `target`, from a raw
/// socket: the kernel adds the IP header, from `target`'s address (the
/// namespace's own).
fn inject(target: SocketAddr, seen: SeenSyn, answer: Answer) {
    let from = target.ip();
    let segments: Vec<Vec<u8>> = match answer {
        Answer::Silence => Vec::new(),
        Answer::Stale { earlier_isn } => vec![segment(
            from,
            target.port(),
            seen,
            earlier_isn.wrapping_add(1),
            SYN | ACK,
        )],
        Answer::Forged => vec![
            segment(
                from,
                target.port(),
                seen,
                seen.isn.wrapping_add(2),
                SYN | ACK,
            ),
            segment(
                from,
                target.port() + 1,
                seen,
                seen.isn.wrapping_add(1),
                SYN | ACK,
            ),
            segment(
                from,
                target.port(),
                seen,
                seen.isn.wrapping_add(2),
                RST | ACK,
            ),
        ],
        Answer::Right => vec![segment(
            from,
            target.port(),
            seen,
            seen.isn.wrapping_add(1),
            SYN | ACK,
        )],
    };
    if segments.is_empty() {
        return;
    }
    let socket = Socket::new(Domain::for_address(target), Type::RAW, Some(Protocol::TCP))
        .expect("a raw TCP socket");
    let to = SockAddr::from(SocketAddr::new(seen.source, 0));
    for segment in &segments {
        socket
            .send_to(segment, &to)
            .unwrap_or_else(|error| panic!("inject {answer:?} to {seen:?}: {error}"));
    }
}

/// A 20-byte TCP segment from `from`:`from_port` to the probe's source
/// address and port, with `flags` and `ack`, and its checksum over the
/// pseudo-header of its family.
fn segment(from: IpAddr, from_port: u16, to: SeenSyn, ack: u32, flags: u8) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&from_port.to_be_bytes());
    tcp[2..4].copy_from_slice(&to.source_port.to_be_bytes());
    tcp[4..8].copy_from_slice(&0x5eed_1234u32.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = 5 << 4; // data offset: 5 words, no options
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    let length = u16::try_from(tcp.len()).expect("a short segment");
    let mut pseudo = Vec::new();
    match (from, to.source) {
        (IpAddr::V4(from), IpAddr::V4(to)) => {
            pseudo.extend_from_slice(&from.octets());
            pseudo.extend_from_slice(&to.octets());
            pseudo.extend_from_slice(&[0, 6]);
            pseudo.extend_from_slice(&length.to_be_bytes());
        }
        (IpAddr::V6(from), IpAddr::V6(to)) => {
            pseudo.extend_from_slice(&from.octets());
            pseudo.extend_from_slice(&to.octets());
            pseudo.extend_from_slice(&u32::from(length).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 6]);
        }
        _ => panic!("{from} and {to:?} are of different families"),
    }
    pseudo.extend_from_slice(&tcp);
    let checksum = internet_checksum(&pseudo);
    tcp[16..18].copy_from_slice(&checksum.to_be_bytes());
    tcp
}

/// The one's complement of the one's complement sum of `bytes` as 16-bit
/// words (RFC 1071).
fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[test]
fn the_checksum_is_rfc_1071s() {
    // RFC 1071's example: 0001 f203 f4f5 f6f7 sums to ddf2.
    assert_eq!(
        internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
        !0xddf2
    );
    // A segment with its checksum in place sums to 0xffff: checks to 0.
    let seen = SeenSyn {
        source: IpAddr::V4(Ipv4Addr::LOCALHOST),
        source_port: 61000,
        isn: 7,
    };
    let segment = segment(IpAddr::V4(Ipv4Addr::LOCALHOST), 80, seen, 8, SYN | ACK);
    let mut whole = vec![127, 0, 0, 1, 127, 0, 0, 1, 0, 6, 0, 20];
    whole.extend_from_slice(&segment);
    assert_eq!(internet_checksum(&whole), 0);
}
