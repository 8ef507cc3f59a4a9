//! Property tests of the raw engine's packets, which are crate-private and
//! so tested here (see `tests/integration/parsers_never_panic.rs` for the
//! case-count policy): the parsers never panic on arbitrary bytes, on
//! every truncation of a valid packet, on corrupted length fields or
//! flipped bytes; what [`syn`] builds reads back through the parsers; and
//! its checksum verifies by an independent sum.
//!
//! The packets are built here from the RFC layouts, independently of the
//! parsers: an IPv4 header with options (RFC 791), TCP headers with
//! options (RFC 9293), ICMP errors quoting our SYN (RFC 792, RFC 4443),
//! and chains of IPv6 extension headers (RFC 8200, RFC 4302).

#![forbid(unsafe_code)]

use super::tests::{ones_complement_sum, pseudo_header};
use super::*;
use proptest::prelude::*;
use proptest::sample::{Index, select};

// The shared runner settings, included by path as `http/query_proptest.rs`
// does: `prober` may not `use` that copy (a higher layer's), and clippy's
// "loaded twice" is what one home for the settings costs here.
#[allow(clippy::duplicate_mod)]
#[path = "../../../tests/common/proptest_config.rs"]
mod proptest_config;
use proptest_config::cases;

/// An IPv4 header of `protocol` with `options` (a multiple of 4 bytes, at
/// most 40), its total length covering `payload`, then `payload`.
fn ipv4_packet(
    protocol: u8,
    source: Ipv4Addr,
    destination: Ipv4Addr,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let header_length = 20 + options.len();
    let total = u16::try_from(header_length + payload.len()).unwrap();
    let mut packet = vec![0x40 | u8::try_from(header_length / 4).unwrap(), 0];
    packet.extend(total.to_be_bytes());
    packet.extend([0x12, 0x34, 0x40, 0x00, 64, protocol, 0, 0]);
    packet.extend(source.octets());
    packet.extend(destination.octets());
    packet.extend(options);
    packet.extend(payload);
    packet
}

/// IPv4 options: 0 to 10 words of any bytes (the parsers skip them).
fn ipv4_options() -> impl Strategy<Value = Vec<u8>> {
    (0..=10usize).prop_flat_map(|words| prop::collection::vec(any::<u8>(), words * 4))
}

/// A TCP answer's header: ports, seq, ack, flags, then `options` (a
/// multiple of 4 bytes, at most 40).
fn tcp_header(answer: &TcpAnswer, flags: u8, options: &[u8]) -> Vec<u8> {
    let mut header = Vec::new();
    header.extend(answer.source_port.to_be_bytes());
    header.extend(answer.destination_port.to_be_bytes());
    header.extend(answer.seq.to_be_bytes());
    header.extend(answer.ack.to_be_bytes());
    header.push(u8::try_from(5 + options.len() / 4).unwrap() << 4);
    header.extend([flags, 0xff, 0xff, 0x12, 0x34, 0, 0]);
    header.extend(options);
    header
}

/// An answer and flags that make it: SYN+ACK with any of PSH, URG, ECE,
/// CWR; or RST with any of those, and any of SYN, ACK, FIN.
fn answer_flags() -> impl Strategy<Value = (AnswerKind, u8)> {
    prop_oneof![
        (0u8..16).prop_map(|extra| (
            AnswerKind::SynAck,
            0x12 | (extra & 1) << 3 | (extra >> 1) << 5
        )),
        any::<u8>().prop_map(|extra| (AnswerKind::Rst, 0x04 | (extra & !0x04))),
    ]
}

prop_compose! {
    fn tcp_answer_parts()(
        source_port in any::<u16>(),
        destination_port in any::<u16>(),
        seq in any::<u32>(),
        ack in any::<u32>(),
        (kind, flags) in answer_flags(),
        options in ipv4_options(),
    ) -> (TcpAnswer, u8, Vec<u8>) {
        let answer = TcpAnswer {
            from: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            source_port,
            destination_port,
            seq,
            ack,
            ack_flag: flags & 0x10 != 0,
            kind,
        };
        (answer, flags, options)
    }
}

/// One IPv6 extension header of a chain.
#[derive(Clone, Debug)]
enum Extension {
    /// Hop-by-hop (0), routing (43) or destination options (60): 8 ×
    /// (length + 1) bytes.
    Options { number: u8, length: u8, fill: u8 },
    /// A fragment header with offset 0, and its other bits.
    FirstFragment { more: bool, reserved: u8, id: u32 },
    /// An authentication header: 4 × (length + 2) bytes.
    Authentication { length: u8, fill: u8 },
}

impl Extension {
    fn number(&self) -> u8 {
        match self {
            Self::Options { number, .. } => *number,
            Self::FirstFragment { .. } => 44,
            Self::Authentication { .. } => 51,
        }
    }

    /// Its bytes, with `next` as its next header.
    fn bytes(&self, next: u8) -> Vec<u8> {
        match *self {
            Self::Options { length, fill, .. } => {
                let mut bytes = vec![next, length];
                bytes.resize(8 * (usize::from(length) + 1), fill);
                bytes
            }
            Self::FirstFragment { more, reserved, id } => {
                let mut bytes = vec![next, reserved, 0, (reserved & 0x06) | u8::from(more)];
                bytes.extend(id.to_be_bytes());
                bytes
            }
            Self::Authentication { length, fill } => {
                let mut bytes = vec![next, length, 0, 0];
                bytes.resize(4 * (usize::from(length) + 2), fill);
                bytes
            }
        }
    }
}

fn extension() -> impl Strategy<Value = Extension> {
    prop_oneof![
        (select(vec![0u8, 43, 60]), 0u8..4, any::<u8>()).prop_map(|(number, length, fill)| {
            Extension::Options {
                number,
                length,
                fill,
            }
        }),
        (any::<bool>(), any::<u8>(), any::<u32>())
            .prop_map(|(more, reserved, id)| Extension::FirstFragment { more, reserved, id }),
        (1u8..7, any::<u8>()).prop_map(|(length, fill)| Extension::Authentication { length, fill }),
    ]
}

/// The quoted IPv6 header and `chain`, then `tcp`.
fn ipv6_quote(source: Ipv6Addr, destination: Ipv6Addr, chain: &[Extension], tcp: &[u8]) -> Vec<u8> {
    let mut rest = Vec::new();
    for (index, extension) in chain.iter().enumerate() {
        let next = chain.get(index + 1).map_or(6, Extension::number);
        rest.extend(extension.bytes(next));
    }
    rest.extend(tcp);
    let mut quote = vec![0x60, 0, 0, 0];
    quote.extend(u16::try_from(rest.len()).unwrap().to_be_bytes());
    quote.push(chain.first().map_or(6, Extension::number));
    quote.push(1);
    quote.extend(source.octets());
    quote.extend(destination.octets());
    quote.extend(rest);
    quote
}

prop_compose! {
    fn probe()(
        source in any::<u32>(),
        destination in any::<u32>(),
        source_port in any::<u16>(),
        destination_port in any::<u16>(),
        isn in any::<u32>(),
    ) -> (Ipv4Addr, Ipv4Addr, u16, u16, u32) {
        (Ipv4Addr::from(source), Ipv4Addr::from(destination), source_port, destination_port, isn)
    }
}

prop_compose! {
    fn probe_v6()(
        source in any::<u128>(),
        destination in any::<u128>(),
        source_port in any::<u16>(),
        destination_port in any::<u16>(),
        isn in any::<u32>(),
    ) -> (Ipv6Addr, Ipv6Addr, u16, u16, u32) {
        (Ipv6Addr::from(source), Ipv6Addr::from(destination), source_port, destination_port, isn)
    }
}

/// An ICMPv4 error (type 3 or 11) from `offender` quoting `syn` (cut to
/// `quoted_tcp` bytes) behind an IPv4 header with `quoted_options`, inside
/// an IPv4 packet with `outer_options`.
fn icmp_v4(
    offender: Ipv4Addr,
    probe: (Ipv4Addr, Ipv4Addr, u16, u16, u32),
    icmp: (u8, u8),
    quoted_tcp: usize,
    quoted_options: &[u8],
    outer_options: &[u8],
) -> (Vec<u8>, QuotedSyn, usize) {
    let (source, destination, source_port, destination_port, isn) = probe;
    let segment = syn(
        IpAddr::V4(source),
        IpAddr::V4(destination),
        source_port,
        destination_port,
        isn,
    );
    let mut quote = ipv4_packet(6, source, destination, quoted_options, &segment);
    quote.truncate(20 + quoted_options.len() + quoted_tcp);
    let mut message = vec![icmp.0, icmp.1, 0, 0, 0, 0, 0, 0];
    message.extend(quote);
    let packet = ipv4_packet(1, offender, source, outer_options, &message);
    let needed = 20 + outer_options.len() + 8 + 20 + quoted_options.len() + 8;
    let quoted = QuotedSyn {
        icmp_type: icmp.0,
        code: icmp.1,
        offender: IpAddr::V4(offender),
        destination: IpAddr::V4(destination),
        source_port,
        destination_port,
        seq: isn,
    };
    (packet, quoted, needed)
}

/// Overwrites `bytes` at each `(index, value)`.
fn flip(bytes: &mut [u8], flips: &[(Index, u8)]) {
    if bytes.is_empty() {
        return;
    }
    for (index, value) in flips {
        let at = index.index(bytes.len());
        bytes[at] = *value;
    }
}

/// Runs every parser on `bytes`: none may panic.
fn parse_all(bytes: &[u8]) {
    let from = Ipv6Addr::LOCALHOST;
    let _ = tcp_answer_v4(bytes);
    let _ = tcp_answer_v6(from, bytes);
    let _ = icmp_error_v4(bytes);
    let _ = icmp_error_v6(from, bytes);
}

proptest! {
    #![proptest_config(cases(2000))]

    /// Arbitrary bytes, and bytes that start like what each parser wants
    /// (so they get past the first checks), never panic.
    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(
        mut bytes in prop::collection::vec(any::<u8>(), 0..300),
        start in select(vec![None, Some([0x45, 6]), Some([0x4f, 1]), Some([0x01, 0x60]), Some([0x03, 0x6f])]),
    ) {
        if let (Some([first, second]), Some(head)) = (start, bytes.get_mut(..10)) {
            head[0] = first;
            head[9] = second; // IPv4's protocol
            head[8] = second; // ICMPv6's quoted version
        }
        parse_all(&bytes);
    }

    /// The checksum of any SYN verifies by an independent sum over the
    /// pseudo-header and the segment.
    #[test]
    fn syn_checksum_verifies(
        v4 in probe(),
        v6 in probe_v6(),
    ) {
        let (source, destination, source_port, destination_port, isn) = v4;
        let (source, destination) = (IpAddr::V4(source), IpAddr::V4(destination));
        let segment = syn(source, destination, source_port, destination_port, isn);
        prop_assert_eq!(ones_complement_sum(&[&pseudo_header(source, destination, 24), &segment]), 0xffff);
        let (source, destination, source_port, destination_port, isn) = v6;
        let (source, destination) = (IpAddr::V6(source), IpAddr::V6(destination));
        let segment = syn(source, destination, source_port, destination_port, isn);
        prop_assert_eq!(ones_complement_sum(&[&pseudo_header(source, destination, 24), &segment]), 0xffff);
    }

    /// A SYN read back as an answer (its flags made SYN+ACK or RST) gives
    /// its own ports and sequence number: the parsers read the fields
    /// where the builder writes them.
    #[test]
    fn syn_reads_back_as_an_answer((source, destination, source_port, destination_port, isn) in probe_v6(), rst in any::<bool>()) {
        let mut segment = syn(IpAddr::V6(source), IpAddr::V6(destination), source_port, destination_port, isn);
        segment[13] = if rst { 0x04 } else { 0x12 };
        let answer = tcp_answer_v6(destination, &segment).unwrap();
        prop_assert_eq!(
            (answer.source_port, answer.destination_port, answer.seq, answer.ack_flag),
            (source_port, destination_port, isn, !rst)
        );
        prop_assert_eq!(answer.kind, if rst { AnswerKind::Rst } else { AnswerKind::SynAck });
    }

    /// An IPv4 answer with any IP and TCP options parses to what was
    /// built; every truncation parses to nothing while it cuts the TCP
    /// header, and to the same answer once the header is whole; and
    /// likewise for the IPv6 socket's bare segment.
    #[test]
    fn tcp_answers_parse_and_truncate(
        (answer, flags, tcp_options) in tcp_answer_parts(),
        ip_options in ipv4_options(),
        from in any::<u32>(),
        payload in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let from = Ipv4Addr::from(from);
        let mut segment = tcp_header(&answer, flags, &tcp_options);
        let needed_tcp = segment.len();
        segment.extend(&payload);
        let packet = ipv4_packet(6, from, Ipv4Addr::LOCALHOST, &ip_options, &segment);
        let expected = TcpAnswer { from: IpAddr::V4(from), ..answer };
        prop_assert_eq!(tcp_answer_v4(&packet), Some(expected));
        let needed = 20 + ip_options.len() + needed_tcp;
        for cut in 0..packet.len() {
            let parsed = tcp_answer_v4(&packet[..cut]);
            prop_assert_eq!(parsed, (cut >= needed).then_some(expected), "cut at {}", cut);
        }
        let from = Ipv6Addr::from(u128::from(u32::from(from)));
        let expected = TcpAnswer { from: IpAddr::V6(from), ..answer };
        for cut in 0..=segment.len() {
            let parsed = tcp_answer_v6(from, &segment[..cut]);
            prop_assert_eq!(parsed, (cut >= needed_tcp).then_some(expected), "cut at {}", cut);
        }
    }

    /// An ICMPv4 error quoting a SYN of [`syn`] (behind a quoted header
    /// with any options, cut anywhere past 8 bytes of TCP) gives back the
    /// SYN's destination, ports and ISN; every truncation short of the 8
    /// quoted TCP bytes gives nothing.
    #[test]
    fn icmp_v4_quotes_read_back_and_truncate(
        probe in probe(),
        offender in any::<u32>(),
        icmp in (select(vec![3u8, 11]), any::<u8>()),
        quoted_tcp in 8..=SYN_LEN,
        quoted_options in ipv4_options(),
        outer_options in ipv4_options(),
    ) {
        let (packet, quoted, needed) =
            icmp_v4(Ipv4Addr::from(offender), probe, icmp, quoted_tcp, &quoted_options, &outer_options);
        prop_assert_eq!(icmp_error_v4(&packet), Some(quoted));
        for cut in 0..packet.len() {
            prop_assert_eq!(icmp_error_v4(&packet[..cut]), (cut >= needed).then_some(quoted), "cut at {}", cut);
        }
    }

    /// An ICMPv6 error quoting a SYN of [`syn`] behind any chain of
    /// extension headers (up to the walk's bound) gives back the SYN's
    /// destination, ports and ISN; every truncation short of the 8
    /// quoted TCP bytes gives nothing; a non-first fragment anywhere in
    /// the chain hides TCP.
    #[test]
    fn icmp_v6_quotes_walk_extension_chains(
        (source, destination, source_port, destination_port, isn) in probe_v6(),
        offender in any::<u128>(),
        icmp in (select(vec![1u8, 3]), any::<u8>()),
        chain in prop::collection::vec(extension(), 0..=MAX_EXTENSION_HEADERS),
        quoted_tcp in 8..=SYN_LEN,
        fragment_at in any::<Index>(),
        fragment_offset in 1u16..0x2000,
    ) {
        let offender = Ipv6Addr::from(offender);
        let segment = syn(IpAddr::V6(source), IpAddr::V6(destination), source_port, destination_port, isn);
        let quote = ipv6_quote(source, destination, &chain, &segment[..quoted_tcp]);
        let mut message = vec![icmp.0, icmp.1, 0, 0, 0, 0, 0, 0];
        message.extend(&quote);
        let quoted = QuotedSyn {
            icmp_type: icmp.0,
            code: icmp.1,
            offender: IpAddr::V6(offender),
            destination: IpAddr::V6(destination),
            source_port,
            destination_port,
            seq: isn,
        };
        prop_assert_eq!(icmp_error_v6(offender, &message), Some(quoted));
        let needed = message.len() - quoted_tcp + 8;
        for cut in 0..message.len() {
            prop_assert_eq!(icmp_error_v6(offender, &message[..cut]), (cut >= needed).then_some(quoted), "cut at {}", cut);
        }
        // The same chain with one fragment header moved past offset 0.
        let mut chain = chain;
        let at = fragment_at.index(chain.len() + 1);
        chain.insert(at, Extension::FirstFragment { more: false, reserved: 0, id: 1 });
        let mut message = vec![icmp.0, icmp.1, 0, 0, 0, 0, 0, 0];
        let start = 8 + 40 + chain[..at].iter().map(|extension| extension.bytes(0).len()).sum::<usize>();
        message.extend(ipv6_quote(source, destination, &chain, &segment[..quoted_tcp]));
        message[start + 2..start + 4].copy_from_slice(&(fragment_offset << 3).to_be_bytes());
        prop_assert_eq!(icmp_error_v6(offender, &message), None);
    }

    /// Valid packets with a length field set to any value (IPv4 IHL and
    /// total length, TCP data offset, quoted IHL, an IPv6 extension
    /// header's length) or any bytes flipped never panic, and an IHL or
    /// data offset below 5 is always refused.
    #[test]
    fn corrupted_lengths_never_panic(
        (answer, flags, tcp_options) in tcp_answer_parts(),
        ip_options in ipv4_options(),
        probe in probe(),
        (source, destination, source_port, destination_port, isn) in probe_v6(),
        chain in prop::collection::vec(extension(), 1..=MAX_EXTENSION_HEADERS),
        nibble in 0u8..16,
        total in any::<u16>(),
        length in any::<u8>(),
        which in any::<Index>(),
        flips in prop::collection::vec((any::<Index>(), any::<u8>()), 0..6),
    ) {
        // TCP answer: IHL, total length, data offset.
        let segment = tcp_header(&answer, flags, &tcp_options);
        let packet = ipv4_packet(6, Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, &ip_options, &segment);
        let tcp_at = 20 + ip_options.len();
        let mut bad_ihl = packet.clone();
        bad_ihl[0] = 0x40 | nibble;
        let parsed = tcp_answer_v4(&bad_ihl);
        prop_assert!(nibble >= 5 || parsed.is_none());
        let mut bad_total = packet.clone();
        bad_total[2..4].copy_from_slice(&total.to_be_bytes());
        let parsed = tcp_answer_v4(&bad_total);
        prop_assert!(usize::from(total) >= packet.len() || parsed.is_none());
        let mut bad_offset = packet.clone();
        bad_offset[tcp_at + 12] = nibble << 4;
        let parsed = tcp_answer_v4(&bad_offset);
        prop_assert!(nibble >= 5 || parsed.is_none());
        prop_assert!(nibble >= 5 || tcp_answer_v6(Ipv6Addr::LOCALHOST, &bad_offset[tcp_at..]).is_none());
        // ICMPv4: outer and quoted IHL, outer total length.
        let (packet, _, _) = icmp_v4(Ipv4Addr::LOCALHOST, probe, (3, 1), SYN_LEN, &ip_options, &tcp_options);
        let quote_at = 20 + tcp_options.len() + 8;
        let mut bad_quoted_ihl = packet.clone();
        bad_quoted_ihl[quote_at] = 0x40 | nibble;
        let parsed = icmp_error_v4(&bad_quoted_ihl);
        prop_assert!(nibble >= 5 || parsed.is_none());
        let mut bad_total = packet.clone();
        bad_total[2..4].copy_from_slice(&total.to_be_bytes());
        parse_all(&bad_total);
        let mut flipped = packet.clone();
        flip(&mut flipped, &flips);
        parse_all(&flipped);
        // ICMPv6: one extension header's length.
        let segment = syn(IpAddr::V6(source), IpAddr::V6(destination), source_port, destination_port, isn);
        let mut message = vec![1, 0, 0, 0, 0, 0, 0, 0];
        message.extend(ipv6_quote(source, destination, &chain, &segment));
        let header = which.index(chain.len());
        let at = 8 + 40 + chain[..header].iter().map(|extension| extension.bytes(0).len()).sum::<usize>();
        message[at + 1] = length;
        parse_all(&message);
        flip(&mut message, &flips);
        parse_all(&message);
    }
}
