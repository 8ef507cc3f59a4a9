//! The raw engine's packets: the SYN it sends, and the answers it reads.
//!
//! Safe Rust over byte slices. Every read goes through [`slice::get`] and
//! checked arithmetic: whatever the network (or a bug elsewhere) hands
//! these functions, they return `None`, never panic, and never read out
//! of bounds. Hand-written rather than a packet crate: the five functions
//! below read a handful of fixed offsets, and the parts a crate would
//! save us are the parts it does not fit (an ICMP error quotes only 8
//! bytes of TCP, short of the 20-byte header a crate's TCP parser wants;
//! a raw IPv6 socket hands over the TCP header without the IPv6 one).
//!
//! # The SYN ([`syn`])
//!
//! The raw TCP socket is opened without `IP_HDRINCL`: the kernel writes
//! the IP header, we write the 24-byte TCP segment (RFC 9293 §3.1):
//!
//! ```text
//!  0               1               2               3
//!  0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//! +-------------------------------+-------------------------------+
//! |          Source Port          |       Destination Port        |  0
//! +-------------------------------+-------------------------------+
//! |                   Sequence Number (the ISN)                   |  4
//! +---------------------------------------------------------------+
//! |                  Acknowledgment Number (0)                    |  8
//! +-------+-------+---------------+-------------------------------+
//! |  6    |   0   | flags: SYN    |        Window (64240)         | 12
//! +-------+-------+---------------+-------------------------------+
//! |           Checksum            |      Urgent Pointer (0)       | 16
//! +---------------+---------------+-------------------------------+
//! | kind 2 (MSS)  |   length 4    |         MSS (1460)            | 20
//! +---------------+---------------+-------------------------------+
//! ```
//!
//! The window is Linux's own first window (64240 = 44 × 1460) and the MSS
//! that of a 1500-byte Ethernet link, so the SYN looks like any Linux
//! client's but for the options it leaves out (no SACK, timestamps or
//! window scale: the connection never gets past the SYN-ACK).
//!
//! The checksum covers a pseudo-header of the addresses (RFC 9293
//! §3.1 for IPv4, RFC 8200 §8.1 for IPv6), so the source address must be
//! the one the kernel puts in the IP header: for IPv4 the kernel sends
//! our checksum as it is, and a wrong one is dropped by the target (not
//! on loopback, which does not check). For IPv6 the raw socket has
//! `IPV6_CHECKSUM` set: the kernel then subtracts whatever the field
//! holds and writes its own, computed with the source it chose, so the
//! kernel's wins; ours is computed anyway, for a socket without that
//! option and for the tests. Addresses of two families give checksum 0.
//!
//! # TCP answers ([`tcp_answer_v4`], [`tcp_answer_v6`])
//!
//! A raw IPv4 socket hands over the IPv4 header (RFC 791 §3.1), then TCP:
//!
//! ```text
//! +-------+-------+---------------+-------------------------------+
//! |Vers. 4|  IHL  |  TOS / DSCP   |         Total Length          |  0
//! +-------+-------+---------------+-----+-------------------------+
//! |        Identification         |Flags|     Fragment Offset     |  4
//! +---------------+---------------+-----+-------------------------+
//! |      TTL      |  Protocol 6   |        Header Checksum        |  8
//! +---------------+---------------+-------------------------------+
//! |                        Source Address                         | 12
//! +---------------------------------------------------------------+
//! |                      Destination Address                      | 16
//! +---------------------------------------------------------------+
//! |             Options (IHL > 5: 4 × (IHL − 5) bytes)            | 20
//! +---------------------------------------------------------------+
//! |                 TCP header, at 4 × IHL bytes                  |
//! ```
//!
//! A raw IPv6 socket hands over the TCP segment alone; the source address
//! comes from `recvmsg`. The checks, and why each exists:
//!
//! - **Version 4, protocol 6**: the socket should give nothing else; the
//!   check costs nothing and keeps a misrouted buffer from being read as
//!   TCP.
//! - **IHL ≥ 5 and 4 × IHL within the packet**: IHL is the only way to
//!   find the TCP header past the IP options; below 5 the header is
//!   malformed, beyond the packet it is truncated.
//! - **Total length ≥ 4 × IHL**, and bytes past it ignored: a shorter
//!   total length is malformed; a longer one than we hold is a packet the
//!   receive buffer cut (`MSG_TRUNC`), which is fine as long as the bytes
//!   we need are there.
//! - **Fragment offset 0**: a non-first fragment has no TCP header; the
//!   bytes where it would be are the middle of a payload, and could pass
//!   for any ports and flags. (Linux reassembles before raw delivery, so
//!   this is defence in depth.)
//! - **Data offset ≥ 5 and the whole TCP header present**: the kernel's
//!   TCP drops segments that fail this (`tcp_v4_rcv`), and raw sockets see
//!   segments before TCP checks them: a segment the kernel's TCP drops
//!   gets no RST from it, so it must not count as an answer either.
//! - **No checksum check**: on loopback and veth the kernel leaves the
//!   TCP checksum to "offload", and the copy a raw socket gets holds only
//!   the pseudo-header's partial sum; checking it would drop every answer
//!   there. The IPv4 header checksum was checked before raw delivery.
//!   Forged answers are stopped by the ISN's keyed hash (the engine's
//!   `ack == isn + 1`), not by a checksum anyone can compute.
//! - **Flags**: RST wins over everything else, as in TCP's SYN-SENT
//!   processing (RFC 9293 §3.10.7.3: the RST check comes before the SYN
//!   check), and gives [`AnswerKind::Rst`] with or without ACK
//!   ([`TcpAnswer::ack_flag`] says whether `ack` means anything); SYN and
//!   ACK without RST give [`AnswerKind::SynAck`]; anything else (a SYN
//!   alone, a bare ACK, FIN, data) is not an answer to a SYN: `None`.
//!
//! # ICMP errors ([`icmp_error_v4`], [`icmp_error_v6`])
//!
//! An ICMP error (RFC 792; RFC 4443 for ICMPv6) quotes the start of the
//! datagram that caused it, our SYN:
//!
//! ```text
//! +---------------+---------------+-------------------------------+
//! |     Type      |     Code      |           Checksum            |  0
//! +---------------+---------------+-------------------------------+
//! |   unused (or the next-hop MTU, or a pointer: not read here)   |  4
//! +---------------------------------------------------------------+
//! |   quoted IP header: IPv4 with its options, or IPv6 (40 bytes) |  8
//! |   then IPv6 extension headers, if any                         |
//! +-------------------------------+-------------------------------+
//! |   quoted Source Port          |   quoted Destination Port     |
//! +-------------------------------+-------------------------------+
//! |   quoted Sequence Number                                      |
//! +---------------------------------------------------------------+
//! ```
//!
//! A raw ICMP socket hands over the outer IPv4 header first (checked as
//! above, with protocol 1; the offender is its source); a raw ICMPv6
//! socket starts at the ICMPv6 header, the offender coming from
//! `recvmsg`. The types taken are destination unreachable and time
//! exceeded (3 and 11; ICMPv6 1 and 3), the ones the socket engine's
//! `IP_RECVERR` reports as `unreachable`. The checks:
//!
//! - **The quoted IPv4 header** may carry options: any IHL ≥ 5, read
//!   from the quote; its protocol must be 6 and its fragment offset 0 (a
//!   quoted non-first fragment has no TCP header). Its total length is the
//!   original datagram's, not the quote's, so it is not checked.
//! - **8 bytes of TCP** are all RFC 792 promises, and enough: ports and
//!   sequence number, which the engine matches against the probe's ISN.
//! - **IPv6 extension headers** sit between the quoted IPv6 header and
//!   TCP, and are walked by their next-header numbers: hop-by-hop
//!   options (0), routing (43) and destination options (60) are
//!   8 × (length + 1) bytes long (RFC 8200 §4.3–4.6); the fragment header
//!   (44) is 8 bytes, and only a first fragment (offset 0) has the TCP
//!   header after it; the authentication header (51) counts in 4-byte
//!   words, minus two (RFC 4302 §2.2): 4 × (length + 2) bytes. Any other
//!   next header (ESP 50, "no next header" 59, anything unknown) hides
//!   TCP: `None`. The walk stops after [`MAX_EXTENSION_HEADERS`] headers:
//!   a chain longer than any real stack sends is not read to its end.
//! - **No ICMP checksum check**: the quote may be cut by the receive
//!   buffer, so the checksum could not always be computed; as with TCP,
//!   the quoted ISN is what tells a real error from a forged one.

#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The length of the SYN segment: a 20-byte TCP header and the 4-byte
/// MSS option.
pub(crate) const SYN_LEN: usize = 24;

/// The SYN's window: Linux's first window (44 segments of 1460 bytes).
const SYN_WINDOW: u16 = 64240;

/// The SYN's maximum segment size: a 1500-byte Ethernet MTU less the
/// IPv4 and TCP headers.
const SYN_MSS: u16 = 1460;

/// How many IPv6 extension headers [`icmp_error_v6`] walks before it
/// gives up: RFC 8200 §4.1's recommended order has at most 6 (hop-by-hop,
/// destination options, routing, fragment, authentication, destination
/// options), and 8 leaves room for a stack that repeats one.
pub(crate) const MAX_EXTENSION_HEADERS: usize = 8;

/// IP protocol numbers (IANA), and the ICMP types we take.
const PROTOCOL_ICMP: u8 = 1;
const PROTOCOL_TCP: u8 = 6;
const NEXT_HOP_BY_HOP: u8 = 0;
const NEXT_ROUTING: u8 = 43;
const NEXT_FRAGMENT: u8 = 44;
const NEXT_AUTHENTICATION: u8 = 51;
const NEXT_DESTINATION_OPTIONS: u8 = 60;
const ICMP4_UNREACHABLE: u8 = 3;
const ICMP4_TIME_EXCEEDED: u8 = 11;
const ICMP6_UNREACHABLE: u8 = 1;
const ICMP6_TIME_EXCEEDED: u8 = 3;

/// TCP flag bits (byte 13 of the header).
const FLAG_SYN: u8 = 0x02;
const FLAG_RST: u8 = 0x04;
const FLAG_ACK: u8 = 0x10;

/// The fixed parts' lengths: TCP and IPv4 headers without options, the
/// IPv6 header, the ICMP header before the quote, the TCP bytes an ICMP
/// error is sure to quote.
const TCP_HEADER: usize = 20;
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const ICMP_HEADER: usize = 8;
const QUOTED_TCP: usize = 8;

/// The SYN segment (layout in the module docs): `source_port` →
/// `destination_port`, sequence number `isn`, ack 0, data offset 6, flag
/// SYN, window 64240, MSS 1460. The checksum is computed with the
/// pseudo-header of `source` and `destination`, which must be the
/// addresses the IP header will carry; for IPv6 the kernel overwrites it
/// (`IPV6_CHECKSUM`); addresses of two families leave it 0.
pub(crate) fn syn(
    source: IpAddr,
    destination: IpAddr,
    source_port: u16,
    destination_port: u16,
    isn: u32,
) -> [u8; SYN_LEN] {
    let [sp0, sp1] = source_port.to_be_bytes();
    let [dp0, dp1] = destination_port.to_be_bytes();
    let [s0, s1, s2, s3] = isn.to_be_bytes();
    let [w0, w1] = SYN_WINDOW.to_be_bytes();
    let [m0, m1] = SYN_MSS.to_be_bytes();
    let data_offset = u8::try_from(SYN_LEN / 4).unwrap_or(0) << 4;
    let mut segment = [
        sp0,
        sp1,
        dp0,
        dp1,
        s0,
        s1,
        s2,
        s3,
        0,
        0,
        0,
        0,
        data_offset,
        FLAG_SYN,
        w0,
        w1,
        0, // checksum, below
        0,
        0, // urgent pointer
        0,
        2, // option kind: maximum segment size
        4, // option length
        m0,
        m1,
    ];
    let checksum = match (source, destination) {
        (IpAddr::V4(source), IpAddr::V4(destination)) => {
            tcp_checksum_v4(source, destination, &segment)
        }
        (IpAddr::V6(source), IpAddr::V6(destination)) => {
            tcp_checksum_v6(source, destination, &segment)
        }
        _ => 0,
    };
    let [c0, c1] = checksum.to_be_bytes();
    segment[16] = c0;
    segment[17] = c1;
    segment
}

/// The TCP checksum of `segment` (its checksum field zero) over the IPv4
/// pseudo-header: source, destination, zero, protocol, TCP length.
fn tcp_checksum_v4(source: Ipv4Addr, destination: Ipv4Addr, segment: &[u8]) -> u16 {
    let length = u16::try_from(segment.len()).unwrap_or(u16::MAX);
    let mut sum = Sum::default();
    sum.add(&source.octets());
    sum.add(&destination.octets());
    sum.add(&[0, PROTOCOL_TCP]);
    sum.add(&length.to_be_bytes());
    sum.add(segment);
    sum.checksum()
}

/// The TCP checksum of `segment` (its checksum field zero) over the IPv6
/// pseudo-header: source, destination, 32-bit upper-layer length, three
/// zero bytes, next header.
fn tcp_checksum_v6(source: Ipv6Addr, destination: Ipv6Addr, segment: &[u8]) -> u16 {
    let length = u32::try_from(segment.len()).unwrap_or(u32::MAX);
    let mut sum = Sum::default();
    sum.add(&source.octets());
    sum.add(&destination.octets());
    sum.add(&length.to_be_bytes());
    sum.add(&[0, 0, 0, PROTOCOL_TCP]);
    sum.add(segment);
    sum.checksum()
}

/// The Internet checksum's running sum (RFC 1071): big-endian 16-bit
/// words added in a wide accumulator, the carries folded back at the end.
/// Every piece added here has an even length, so words never straddle
/// two pieces; an odd last byte is padded with zero all the same.
#[derive(Default)]
struct Sum(u64);

impl Sum {
    fn add(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(2);
        for word in &mut words {
            if let [high, low] = *word {
                self.0 += u64::from(u16::from_be_bytes([high, low]));
            }
        }
        if let [last] = *words.remainder() {
            self.0 += u64::from(u16::from_be_bytes([last, 0]));
        }
    }

    fn checksum(&self) -> u16 {
        let mut sum = self.0;
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !u16::try_from(sum).unwrap_or(u16::MAX)
    }
}

/// What an answer to a SYN says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AnswerKind {
    /// SYN and ACK, no RST: the port listens.
    SynAck,
    /// RST (with or without other flags): nothing listens there.
    Rst,
}

/// A TCP segment that may answer one of our SYNs. The ports are the
/// segment's own: its `destination_port` is our probe's source port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TcpAnswer {
    /// The segment's source address: the probed host, if it is an answer.
    pub(crate) from: IpAddr,
    /// The segment's source port: the probed port.
    pub(crate) source_port: u16,
    /// The segment's destination port: our probe's source port.
    pub(crate) destination_port: u16,
    /// The segment's sequence number.
    pub(crate) seq: u32,
    /// The segment's acknowledgment number: our ISN + 1 for an answer to
    /// our SYN, if [`Self::ack_flag`] is set; meaningless otherwise.
    pub(crate) ack: u32,
    /// Whether the ACK flag is set (always for [`AnswerKind::SynAck`]).
    pub(crate) ack_flag: bool,
    /// SYN-ACK or RST.
    pub(crate) kind: AnswerKind,
}

/// A raw IPv4 TCP socket's packet: the IPv4 header (any IHL ≥ 5, fragment
/// offset 0, protocol 6), then a whole TCP header. `None` for anything
/// else, and for flags that are neither RST nor SYN+ACK (module docs).
pub(crate) fn tcp_answer_v4(packet: &[u8]) -> Option<TcpAnswer> {
    let (header, segment) = ipv4(packet, PROTOCOL_TCP, true)?;
    tcp_answer(IpAddr::V4(header.source), segment)
}

/// A raw IPv6 TCP socket's packet, which starts at the TCP header; its
/// source is `from` (from `recvmsg`). `None` as for [`tcp_answer_v4`].
pub(crate) fn tcp_answer_v6(from: Ipv6Addr, segment: &[u8]) -> Option<TcpAnswer> {
    tcp_answer(IpAddr::V6(from), segment)
}

/// The TCP header at the start of `segment`: a whole header (data offset
/// ≥ 5, all of it present), RST or SYN+ACK.
fn tcp_answer(from: IpAddr, segment: &[u8]) -> Option<TcpAnswer> {
    let (source_port, destination_port, seq) = tcp_start(segment)?;
    let ack = be32(segment, 8)?;
    let header_length = usize::from(byte(segment, 12)? >> 4).checked_mul(4)?;
    if header_length < TCP_HEADER || header_length > segment.len() {
        return None;
    }
    let flags = byte(segment, 13)?;
    let ack_flag = flags & FLAG_ACK != 0;
    let kind = if flags & FLAG_RST != 0 {
        AnswerKind::Rst
    } else if flags & FLAG_SYN != 0 && ack_flag {
        AnswerKind::SynAck
    } else {
        return None;
    };
    Some(TcpAnswer {
        from,
        source_port,
        destination_port,
        seq,
        ack,
        ack_flag,
        kind,
    })
}

/// An ICMP error that quotes the start of one of our SYNs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QuotedSyn {
    /// ICMP type: 3 or 11 (ICMPv6: 1 or 3).
    pub(crate) icmp_type: u8,
    /// ICMP code.
    pub(crate) code: u8,
    /// Who sent the error: the outer packet's source.
    pub(crate) offender: IpAddr,
    /// The quoted datagram's destination: the probed host.
    pub(crate) destination: IpAddr,
    /// The quoted segment's source port: our probe's.
    pub(crate) source_port: u16,
    /// The quoted segment's destination port: the probed port.
    pub(crate) destination_port: u16,
    /// The quoted segment's sequence number: our ISN, if it is ours.
    pub(crate) seq: u32,
}

/// A raw ICMP socket's packet: the outer IPv4 header (protocol 1), ICMP
/// type 3 or 11, the quoted IPv4 header (any IHL ≥ 5, protocol 6,
/// fragment offset 0), then at least 8 bytes of TCP. The offender is the
/// outer source.
pub(crate) fn icmp_error_v4(packet: &[u8]) -> Option<QuotedSyn> {
    let (outer, message) = ipv4(packet, PROTOCOL_ICMP, true)?;
    let icmp_type = byte(message, 0)?;
    if icmp_type != ICMP4_UNREACHABLE && icmp_type != ICMP4_TIME_EXCEEDED {
        return None;
    }
    let code = byte(message, 1)?;
    let quote = message.get(ICMP_HEADER..)?;
    let (quoted, segment) = ipv4(quote, PROTOCOL_TCP, false)?;
    let (source_port, destination_port, seq) = tcp_start(segment)?;
    Some(QuotedSyn {
        icmp_type,
        code,
        offender: IpAddr::V4(outer.source),
        destination: IpAddr::V4(quoted.destination),
        source_port,
        destination_port,
        seq,
    })
}

/// A raw ICMPv6 socket's message, which starts at the ICMPv6 header; the
/// offender is `from` (from `recvmsg`). Type 1 or 3, the quoted IPv6
/// header, its extension headers walked (module docs) up to TCP, then at
/// least 8 bytes of TCP.
pub(crate) fn icmp_error_v6(from: Ipv6Addr, message: &[u8]) -> Option<QuotedSyn> {
    let icmp_type = byte(message, 0)?;
    if icmp_type != ICMP6_UNREACHABLE && icmp_type != ICMP6_TIME_EXCEEDED {
        return None;
    }
    let code = byte(message, 1)?;
    let quote = message.get(ICMP_HEADER..)?;
    if byte(quote, 0)? >> 4 != 6 {
        return None;
    }
    let destination = address_v6(quote, 24)?;
    let segment = tcp_after_extensions(byte(quote, 6)?, quote.get(IPV6_HEADER..)?)?;
    let (source_port, destination_port, seq) = tcp_start(segment)?;
    Some(QuotedSyn {
        icmp_type,
        code,
        offender: IpAddr::V6(from),
        destination: IpAddr::V6(destination),
        source_port,
        destination_port,
        seq,
    })
}

/// Walks IPv6 extension headers from `next` (the IPv6 header's next
/// header) over `rest` (what follows the IPv6 header) to the TCP header:
/// what follows the last extension header, if it is TCP (module docs).
fn tcp_after_extensions(mut next: u8, mut rest: &[u8]) -> Option<&[u8]> {
    for _ in 0..=MAX_EXTENSION_HEADERS {
        let length = match next {
            PROTOCOL_TCP => return Some(rest),
            NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_DESTINATION_OPTIONS => {
                usize::from(byte(rest, 1)?).checked_add(1)?.checked_mul(8)?
            }
            NEXT_FRAGMENT => {
                if be16(rest, 2)? >> 3 != 0 {
                    return None; // a non-first fragment: no TCP header here
                }
                8
            }
            NEXT_AUTHENTICATION => usize::from(byte(rest, 1)?).checked_add(2)?.checked_mul(4)?,
            _ => return None,
        };
        next = byte(rest, 0)?;
        rest = rest.get(length..)?;
    }
    None
}

/// The parts of an IPv4 header the parsers use.
struct Ipv4Header {
    source: Ipv4Addr,
    destination: Ipv4Addr,
}

/// The IPv4 header at the start of `packet` and its payload: version 4,
/// IHL ≥ 5 and within `packet`, fragment offset 0, `protocol`. With
/// `whole` (a packet as received, not a quote in an ICMP error), the
/// total length must cover the header, and the payload ends there or at
/// the end of `packet`, whichever is first.
fn ipv4(packet: &[u8], protocol: u8, whole: bool) -> Option<(Ipv4Header, &[u8])> {
    let first = byte(packet, 0)?;
    if first >> 4 != 4 || byte(packet, 9)? != protocol || be16(packet, 6)? & 0x1fff != 0 {
        return None;
    }
    let header_length = usize::from(first & 0x0f).checked_mul(4)?;
    if header_length < IPV4_HEADER {
        return None;
    }
    let end = if whole {
        let total = usize::from(be16(packet, 2)?);
        if total < header_length {
            return None;
        }
        total.min(packet.len())
    } else {
        packet.len()
    };
    let payload = packet.get(header_length..end)?;
    let header = Ipv4Header {
        source: Ipv4Addr::from(be32(packet, 12)?),
        destination: Ipv4Addr::from(be32(packet, 16)?),
    };
    Some((header, payload))
}

/// The first 8 bytes of a TCP header, all an ICMP error is sure to
/// quote: source port, destination port, sequence number.
fn tcp_start(segment: &[u8]) -> Option<(u16, u16, u32)> {
    if segment.len() < QUOTED_TCP {
        return None;
    }
    Some((be16(segment, 0)?, be16(segment, 2)?, be32(segment, 4)?))
}

/// The byte at `at`, if there is one.
fn byte(bytes: &[u8], at: usize) -> Option<u8> {
    bytes.get(at).copied()
}

/// The big-endian 16-bit number at `at`, if both bytes are there.
fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(array(bytes, at)?))
}

/// The big-endian 32-bit number at `at`, if all four bytes are there.
fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(array(bytes, at)?))
}

/// The IPv6 address at `at`, if all 16 bytes are there.
fn address_v6(bytes: &[u8], at: usize) -> Option<Ipv6Addr> {
    Some(Ipv6Addr::from(array::<16>(bytes, at)?))
}

/// The `N` bytes at `at`, if they are all there.
fn array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}
