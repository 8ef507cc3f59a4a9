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
//! the one the kernel puts in the IP header. For IPv4 the kernel sends
//! our checksum as it is, and the target's TCP drops a wrong one (on
//! loopback and veth too: a raw socket's segment carries no offload
//! promise), so an unspecified IPv4 source (`0.0.0.0`, no
//! `source_ip_address`) will not do: the engine passes the address the
//! route gives (a UDP socket connected to the target, say). For IPv6 the
//! raw socket has `IPV6_CHECKSUM` set: the kernel then subtracts whatever
//! the field holds and writes its own, computed with the source it chose,
//! so the kernel's wins (a SYN with its checksum flipped or zeroed was
//! answered, one sent without that option was not); ours is computed
//! anyway, for a socket without the option and for the tests. Addresses
//! of two families give checksum 0.
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
/// IPv6 header, the ICMP header before the quote.
const TCP_HEADER: usize = 20;
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const ICMP_HEADER: usize = 8;

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
/// quote: source port, destination port, sequence number (`None` if any
/// of the 8 is missing).
fn tcp_start(segment: &[u8]) -> Option<(u16, u16, u32)> {
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

#[cfg(test)]
#[path = "packet_proptest.rs"]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    /// The one's-complement sum of `bytes` as RFC 1071 §1 states it, written
    /// unlike [`Sum`]: 16 bits at a time, each carry added back at once.
    /// A segment whose checksum field is right sums, with its
    /// pseudo-header, to 0xffff.
    pub(super) fn ones_complement_sum(pieces: &[&[u8]]) -> u16 {
        let bytes: Vec<u8> = pieces.concat();
        let mut sum: u16 = 0;
        let mut index = 0;
        while index < bytes.len() {
            let high = bytes.get(index).copied().unwrap_or(0);
            let low = bytes.get(index + 1).copied().unwrap_or(0);
            let (added, carry) = sum.overflowing_add(u16::from(high) << 8 | u16::from(low));
            sum = added + u16::from(carry);
            index += 2;
        }
        sum
    }

    /// The pseudo-header (RFC 9293 §3.1 for IPv4, RFC 8200 §8.1 for
    /// IPv6) of a `length`-byte TCP segment, written out field by field.
    pub(super) fn pseudo_header(source: IpAddr, destination: IpAddr, length: u8) -> Vec<u8> {
        match (source, destination) {
            (IpAddr::V4(source), IpAddr::V4(destination)) => {
                let mut header = source.octets().to_vec();
                header.extend(destination.octets());
                header.extend([0, 6, 0, length]);
                header
            }
            (IpAddr::V6(source), IpAddr::V6(destination)) => {
                let mut header = source.octets().to_vec();
                header.extend(destination.octets());
                header.extend([0, 0, 0, length, 0, 0, 0, 6]);
                header
            }
            _ => panic!("mixed families"),
        }
    }

    fn v4(text: &str) -> IpAddr {
        IpAddr::V4(text.parse().unwrap())
    }

    fn v6(text: &str) -> Ipv6Addr {
        text.parse().unwrap()
    }

    /// The SYNs the kernel took: built by an independent Python
    /// implementation of the RFC layout and sent from a raw socket over a
    /// veth pair between two network namespaces, they were answered with
    /// a SYN-ACK, and the same SYNs with their checksum flipped were not
    /// (IPv6 without `IPV6_CHECKSUM`); the listener accepted nothing.
    #[test]
    fn syn_is_the_segment_the_kernel_answered() {
        let expected_v4 = [
            0xee, 0x48, 0x1f, 0x90, // ports 61000 → 8080
            0x12, 0x34, 0x56, 0x78, // seq: the ISN
            0x00, 0x00, 0x00, 0x00, // ack 0
            0x60, 0x02, 0xfa, 0xf0, // data offset 6, SYN, window 64240
            0x10, 0xf2, 0x00, 0x00, // checksum, urgent pointer 0
            0x02, 0x04, 0x05, 0xb4, // MSS 1460
        ];
        let built = syn(v4("10.222.0.1"), v4("10.222.0.2"), 61000, 8080, 0x1234_5678);
        assert_eq!(built, expected_v4);
        let expected_v6 = [
            0xee, 0x49, 0x1f, 0x90, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x00, 0x60, 0x02,
            0xfa, 0xf0, 0x28, 0x67, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4,
        ];
        let built = syn(
            IpAddr::V6(v6("fd00:222::1")),
            IpAddr::V6(v6("fd00:222::2")),
            61001,
            8080,
            0x1234_5678,
        );
        assert_eq!(built, expected_v6);
    }

    #[test]
    fn syn_checksum_verifies_independently() {
        for (source, destination) in [
            (v4("192.0.2.1"), v4("198.51.100.7")),
            (v4("255.255.255.255"), v4("255.255.255.255")),
            (v4("0.0.0.0"), v4("0.0.0.0")),
            (IpAddr::V6(v6("2001:db8::1")), IpAddr::V6(v6("2001:db8::2"))),
            (
                IpAddr::V6(v6("ffff::ffff")),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ),
        ] {
            // 40254 → 65535 with ISN 2³² − 1 from and to 255.255.255.255
            // sums to 0x8ffff: folding the carries once gives 0x10007,
            // which needs a second fold.
            for (port, isn) in [
                (0, 0),
                (65535, u32::MAX),
                (61000, 0x8000_0001),
                (40254, u32::MAX),
            ] {
                let segment = syn(source, destination, port, 65535, isn);
                let header = pseudo_header(source, destination, 24);
                assert_eq!(
                    ones_complement_sum(&[&header, &segment]),
                    0xffff,
                    "{source} → {destination}, {port}, {isn}"
                );
            }
        }
    }

    /// An odd last byte counts as a word padded with zero (RFC 1071
    /// §1), however the bytes are split into pieces of even length.
    #[test]
    fn sum_pads_an_odd_last_byte() {
        for bytes in [&[0xab][..], &[0x12, 0x34, 0xff], &[0xff; 7], &[]] {
            let mut sum = Sum::default();
            sum.add(bytes);
            assert_eq!(
                !sum.checksum(),
                ones_complement_sum(&[bytes, &[0]]),
                "{bytes:?}"
            );
        }
        let mut split = Sum::default();
        split.add(&[0x01, 0x02]);
        split.add(&[0x03]);
        assert_eq!(
            !split.checksum(),
            ones_complement_sum(&[&[0x01, 0x02, 0x03]])
        );
    }

    #[test]
    fn syn_of_two_families_has_checksum_zero() {
        let segment = syn(v4("192.0.2.1"), IpAddr::V6(v6("::1")), 61000, 443, 7);
        assert_eq!(segment.get(16..18), Some(&[0, 0][..]));
        assert_eq!(
            segment.get(..16),
            syn(v4("192.0.2.1"), v4("192.0.2.2"), 61000, 443, 7).get(..16)
        );
    }

    /// A SYN-ACK from 192.0.2.7:443 to our port 61000, with 8 bytes of IPv4
    /// options (record route with one empty slot, end of list).
    const SYN_ACK_WITH_OPTIONS: [u8; 48] = [
        0x47, 0x00, 0x00, 0x30, // version 4, IHL 7, TOS, total length 48
        0x12, 0x34, 0x40, 0x00, // identification, DF, fragment offset 0
        0x40, 0x06, 0x00, 0x00, // TTL 64, protocol 6, header checksum
        192, 0, 2, 7, // source
        192, 0, 2, 1, // destination
        0x07, 0x07, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, // record route, end of options
        0x01, 0xbb, 0xee, 0x48, // ports 443 → 61000
        0xaa, 0xbb, 0xcc, 0xdd, // seq
        0x12, 0x34, 0x56, 0x79, // ack: ISN 0x12345678 + 1
        0x50, 0x12, 0xff, 0xff, // data offset 5, SYN+ACK, window
        0x00, 0x00, 0x00, 0x00, // checksum (not checked), urgent pointer
    ];

    fn with(packet: &[u8], changes: &[(usize, u8)]) -> Vec<u8> {
        let mut changed = packet.to_vec();
        for &(at, value) in changes {
            changed[at] = value;
        }
        changed
    }

    #[test]
    fn tcp_answer_v4_reads_past_ip_options() {
        let answer = TcpAnswer {
            from: v4("192.0.2.7"),
            source_port: 443,
            destination_port: 61000,
            seq: 0xaabb_ccdd,
            ack: 0x1234_5679,
            ack_flag: true,
            kind: AnswerKind::SynAck,
        };
        assert_eq!(tcp_answer_v4(&SYN_ACK_WITH_OPTIONS), Some(answer));
        // A first fragment (MF, offset 0) has the TCP header; bytes past
        // the total length, and a total length the buffer cut, are fine.
        assert_eq!(
            tcp_answer_v4(&with(&SYN_ACK_WITH_OPTIONS, &[(6, 0x20)])),
            Some(answer)
        );
        let mut padded = SYN_ACK_WITH_OPTIONS.to_vec();
        padded.extend([0xff; 12]);
        assert_eq!(tcp_answer_v4(&padded), Some(answer));
        assert_eq!(
            tcp_answer_v4(&with(&SYN_ACK_WITH_OPTIONS, &[(3, 0xff)])),
            Some(answer)
        );
    }

    #[test]
    fn tcp_answer_v4_refuses_malformed_headers() {
        for (why, changes) in [
            ("a non-first fragment", &[(6, 0x20), (7, 0x01)][..]),
            ("a fragment offset in the high bits", &[(6, 0x10)]),
            ("IHL below 5", &[(0, 0x44)]),
            ("IHL beyond the packet", &[(0, 0x4f)]),
            ("version 6", &[(0, 0x67)]),
            ("protocol UDP", &[(9, 17)]),
            ("total length shorter than the IP header", &[(3, 27)]),
            ("total length cutting the TCP header", &[(3, 47)]),
            ("data offset below 5", &[(40, 0x40)]),
            ("data offset beyond the segment", &[(40, 0x60)]),
        ] {
            let packet = with(&SYN_ACK_WITH_OPTIONS, changes);
            assert_eq!(tcp_answer_v4(&packet), None, "{why}");
        }
    }

    #[test]
    fn tcp_answer_flags() {
        for (flags, expected) in [
            (0x12, Some((AnswerKind::SynAck, true))),
            (0x1a, Some((AnswerKind::SynAck, true))), // with PSH
            (0x14, Some((AnswerKind::Rst, true))),
            (0x04, Some((AnswerKind::Rst, false))),
            (0x16, Some((AnswerKind::Rst, true))), // RST wins over SYN
            (0x06, Some((AnswerKind::Rst, false))),
            (0x02, None), // a SYN alone: someone's open, not an answer
            (0x10, None),
            (0x11, None),
            (0x18, None),
            (0x00, None),
        ] {
            let packet = with(&SYN_ACK_WITH_OPTIONS, &[(41, flags)]);
            let got = tcp_answer_v4(&packet).map(|answer| (answer.kind, answer.ack_flag));
            assert_eq!(got, expected, "flags {flags:#04x}");
            let segment = packet.get(28..).unwrap();
            let got = tcp_answer_v6(v6("2001:db8::7"), segment)
                .map(|answer| (answer.kind, answer.ack_flag));
            assert_eq!(got, expected, "v6 flags {flags:#04x}");
        }
    }

    /// Answers the kernel sent to SYNs of [`syn`] (ISN 0x12345678) over
    /// veth between two namespaces, read from raw sockets: a SYN-ACK (MSS
    /// option) and an RST-ACK from a closed port, IPv4 and IPv6. Their
    /// TCP checksum fields hold only the pseudo-header's sum (veth's
    /// checksum offload), which is why the parsers do not check it.
    #[test]
    fn kernel_answers_parse() {
        let syn_ack_v4 = [
            0x45, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x25, 0x0e, 0x0a, 0xde,
            0x00, 0x02, 0x0a, 0xde, 0x00, 0x01, 0x1f, 0x90, 0xee, 0x48, 0x76, 0xf6, 0x4a, 0xd9,
            0x12, 0x34, 0x56, 0x79, 0x60, 0x12, 0xfa, 0xf0, 0x15, 0xdd, 0x00, 0x00, 0x02, 0x04,
            0x05, 0xb4,
        ];
        assert_eq!(
            tcp_answer_v4(&syn_ack_v4),
            Some(TcpAnswer {
                from: v4("10.222.0.2"),
                source_port: 8080,
                destination_port: 61000,
                seq: 0x76f6_4ad9,
                ack: 0x1234_5679,
                ack_flag: true,
                kind: AnswerKind::SynAck,
            })
        );
        let rst_v4 = [
            0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x25, 0x12, 0x0a, 0xde,
            0x00, 0x02, 0x0a, 0xde, 0x00, 0x01, 0x1f, 0x91, 0xee, 0x4a, 0x00, 0x00, 0x00, 0x00,
            0x12, 0x34, 0x56, 0x79, 0x50, 0x14, 0x00, 0x00, 0x23, 0x89, 0x00, 0x00,
        ];
        assert_eq!(
            tcp_answer_v4(&rst_v4),
            Some(TcpAnswer {
                from: v4("10.222.0.2"),
                source_port: 8081,
                destination_port: 61002,
                seq: 0,
                ack: 0x1234_5679,
                ack_flag: true,
                kind: AnswerKind::Rst,
            })
        );
        let from = v6("fd00:222::2");
        let syn_ack_v6 = [
            0x1f, 0x90, 0xee, 0x49, 0x50, 0x38, 0xc0, 0xb8, 0x12, 0x34, 0x56, 0x79, 0x60, 0x12,
            0xfd, 0x20, 0xfe, 0x66, 0x00, 0x00, 0x02, 0x04, 0x05, 0xa0,
        ];
        assert_eq!(
            tcp_answer_v6(from, &syn_ack_v6),
            Some(TcpAnswer {
                from: IpAddr::V6(from),
                source_port: 8080,
                destination_port: 61001,
                seq: 0x5038_c0b8,
                ack: 0x1234_5679,
                ack_flag: true,
                kind: AnswerKind::SynAck,
            })
        );
        let rst_v6 = [
            0x1f, 0x91, 0xee, 0x4b, 0x00, 0x00, 0x00, 0x00, 0x12, 0x34, 0x56, 0x79, 0x50, 0x14,
            0x00, 0x00, 0xfe, 0x62, 0x00, 0x00,
        ];
        assert_eq!(
            tcp_answer_v6(from, &rst_v6).map(|answer| (answer.kind, answer.destination_port)),
            Some((AnswerKind::Rst, 61003))
        );
        // One byte short of its header.
        assert_eq!(tcp_answer_v6(from, rst_v6.get(..19).unwrap()), None);
    }

    /// ICMP errors the kernel sent (nftables `reject with icmp type
    /// host-unreachable` / `icmpv6 type admin-prohibited` in the target's
    /// namespace) for SYNs of [`syn`]: each quotes the whole SYN.
    #[test]
    fn kernel_icmp_errors_parse() {
        let host_unreachable = [
            0x45, 0xc0, 0x00, 0x48, 0x77, 0xbe, 0x00, 0x00, 0x40, 0x01, 0xec, 0x78, 0x0a, 0xde,
            0x00, 0x02, 0x0a, 0xde, 0x00, 0x01, 0x03, 0x01, 0x12, 0xdc, 0x00, 0x00, 0x00, 0x00,
            0x45, 0x00, 0x00, 0x2c, 0xd8, 0xe9, 0x40, 0x00, 0x40, 0x06, 0x4c, 0x24, 0x0a, 0xde,
            0x00, 0x01, 0x0a, 0xde, 0x00, 0x02, 0xee, 0x4c, 0x1f, 0x92, 0x12, 0x34, 0x56, 0x78,
            0x00, 0x00, 0x00, 0x00, 0x60, 0x02, 0xfa, 0xf0, 0x10, 0xec, 0x00, 0x00, 0x02, 0x04,
            0x05, 0xb4,
        ];
        assert_eq!(
            icmp_error_v4(&host_unreachable),
            Some(QuotedSyn {
                icmp_type: 3,
                code: 1,
                offender: v4("10.222.0.2"),
                destination: v4("10.222.0.2"),
                source_port: 61004,
                destination_port: 8082,
                seq: 0x1234_5678,
            })
        );
        let admin_prohibited = [
            0x01, 0x01, 0x79, 0xd4, 0x00, 0x00, 0x00, 0x00, 0x60, 0x03, 0x20, 0x22, 0x00, 0x18,
            0x06, 0x40, 0xfd, 0x00, 0x02, 0x22, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x01, 0xfd, 0x00, 0x02, 0x22, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xee, 0x4d, 0x1f, 0x92, 0x12, 0x34, 0x56, 0x78,
            0x00, 0x00, 0x00, 0x00, 0x60, 0x02, 0xfa, 0xf0, 0x28, 0x61, 0x00, 0x00, 0x02, 0x04,
            0x05, 0xb4,
        ];
        let from = v6("fd00:222::2");
        assert_eq!(
            icmp_error_v6(from, &admin_prohibited),
            Some(QuotedSyn {
                icmp_type: 1,
                code: 1,
                offender: IpAddr::V6(from),
                destination: IpAddr::V6(from),
                source_port: 61005,
                destination_port: 8082,
                seq: 0x1234_5678,
            })
        );
    }

    /// Time exceeded from router 198.51.100.254, quoting our SYN's IPv4
    /// header with a 4-byte option (router alert: IHL 6) and the 8 bytes
    /// of TCP RFC 792 promises.
    const TIME_EXCEEDED_QUOTING_OPTIONS: [u8; 60] = [
        0x45, 0xc0, 0x00, 0x3c, // version 4, IHL 5, TOS, total length 60
        0x00, 0x01, 0x00, 0x00, // identification, fragment offset 0
        0x40, 0x01, 0x00, 0x00, // TTL, protocol 1 (ICMP), checksum
        198, 51, 100, 254, // source: the router
        192, 0, 2, 1, // destination: us
        0x0b, 0x00, 0x00, 0x00, // type 11 (time exceeded), code 0, checksum
        0x00, 0x00, 0x00, 0x00, // unused
        0x46, 0x00, 0x00, 0x30, // quoted: version 4, IHL 6, total length 48
        0xbe, 0xef, 0x40, 0x00, // identification, DF, fragment offset 0
        0x01, 0x06, 0x00, 0x00, // TTL 1, protocol 6, checksum
        192, 0, 2, 1, // source: us
        198, 51, 100, 7, // destination: the target
        0x94, 0x04, 0x00, 0x00, // router alert option
        0xee, 0x48, 0x01, 0xbb, // quoted ports 61000 → 443
        0x12, 0x34, 0x56, 0x78, // quoted seq: the ISN
    ];

    #[test]
    fn icmp_error_v4_reads_a_quoted_header_with_options() {
        let quoted = QuotedSyn {
            icmp_type: 11,
            code: 0,
            offender: v4("198.51.100.254"),
            destination: v4("198.51.100.7"),
            source_port: 61000,
            destination_port: 443,
            seq: 0x1234_5678,
        };
        assert_eq!(icmp_error_v4(&TIME_EXCEEDED_QUOTING_OPTIONS), Some(quoted));
        let unreachable = with(&TIME_EXCEEDED_QUOTING_OPTIONS, &[(20, 3), (21, 13)]);
        assert_eq!(
            icmp_error_v4(&unreachable),
            Some(QuotedSyn {
                icmp_type: 3,
                code: 13,
                ..quoted
            })
        );
        for (why, changes) in [
            ("echo reply", &[(20, 0)][..]),
            ("redirect", &[(20, 5)]),
            ("parameter problem", &[(20, 12)]),
            ("outer protocol TCP", &[(9, 6)]),
            ("outer non-first fragment", &[(7, 1)]),
            ("quoted protocol UDP", &[(37, 17)]),
            ("quoted non-first fragment", &[(34, 0x40), (35, 0x02)]),
            ("quoted IHL below 5", &[(28, 0x44)]),
            ("quoted IHL past the quote", &[(28, 0x48)]),
            ("quoted version 6", &[(28, 0x66)]),
            ("outer total length cutting the quote", &[(3, 59)]),
        ] {
            let packet = with(&TIME_EXCEEDED_QUOTING_OPTIONS, changes);
            assert_eq!(icmp_error_v4(&packet), None, "{why}");
        }
        assert_eq!(
            icmp_error_v4(TIME_EXCEEDED_QUOTING_OPTIONS.get(..59).unwrap()),
            None
        );
    }

    /// ICMPv6 address unreachable from router 2001:db8::fe, quoting our
    /// SYN's IPv6 header, a hop-by-hop header (router alert), a fragment
    /// header (first fragment, more to come), and 8 bytes of TCP.
    const UNREACHABLE_V6_HOP_BY_HOP_FRAGMENT: [u8; 72] = [
        0x01, 0x03, 0x00, 0x00, // type 1 (unreachable), code 3 (address), checksum
        0x00, 0x00, 0x00, 0x00, // unused
        0x60, 0x00, 0x00, 0x00, // quoted: version 6, traffic class, flow label
        0x00, 0x28, 0x00, 0x40, // payload length 40, next header 0 (hop-by-hop), hop limit
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // source 2001:db8::1
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0x07, // destination 2001:db8::7
        0x2c, 0x00, 0x05, 0x02, // hop-by-hop: next 44, length 0 (8 bytes), router alert
        0x00, 0x00, 0x01, 0x00, // router alert value, PadN of 0 bytes
        0x06, 0x00, 0x00, 0x01, // fragment: next 6, reserved, offset 0, M
        0xde, 0xad, 0xbe, 0xef, // identification
        0xee, 0x48, 0x01, 0xbb, // quoted ports 61000 → 443
        0x12, 0x34, 0x56, 0x78, // quoted seq: the ISN
    ];

    #[test]
    fn icmp_error_v6_walks_hop_by_hop_and_fragment_headers() {
        let router = v6("2001:db8::fe");
        let quoted = QuotedSyn {
            icmp_type: 1,
            code: 3,
            offender: IpAddr::V6(router),
            destination: IpAddr::V6(v6("2001:db8::7")),
            source_port: 61000,
            destination_port: 443,
            seq: 0x1234_5678,
        };
        assert_eq!(
            icmp_error_v6(router, &UNREACHABLE_V6_HOP_BY_HOP_FRAGMENT),
            Some(quoted)
        );
        let time_exceeded = with(&UNREACHABLE_V6_HOP_BY_HOP_FRAGMENT, &[(0, 3), (1, 0)]);
        assert_eq!(
            icmp_error_v6(router, &time_exceeded),
            Some(QuotedSyn {
                icmp_type: 3,
                code: 0,
                ..quoted
            })
        );
        for (why, changes) in [
            ("packet too big", &[(0, 2)][..]),
            ("parameter problem", &[(0, 4)]),
            ("echo reply", &[(0, 129)]),
            ("quoted version 4", &[(8, 0x45)]),
            ("a non-first fragment", &[(58, 0x08)]),
            ("fragment offset 1", &[(59, 0x09)]),
            ("hop-by-hop longer than the quote", &[(49, 0x02)]),
            ("ESP hides the rest", &[(48, 50)]),
            ("no next header", &[(56, 59)]),
            ("UDP", &[(56, 17)]),
        ] {
            let message = with(&UNREACHABLE_V6_HOP_BY_HOP_FRAGMENT, changes);
            assert_eq!(icmp_error_v6(router, &message), None, "{why}");
        }
        assert_eq!(
            icmp_error_v6(
                router,
                UNREACHABLE_V6_HOP_BY_HOP_FRAGMENT.get(..71).unwrap()
            ),
            None
        );
    }

    /// Routing (8 × (2 + 1) bytes), destination options (8 bytes) and an
    /// authentication header whose length counts 4-byte words less two:
    /// payload length 4 is 24 bytes (12 fixed, a 12-byte ICV).
    #[test]
    fn icmp_error_v6_walks_routing_options_and_authentication() {
        let mut message = vec![0x01, 0x00, 0, 0, 0, 0, 0, 0];
        message.extend([0x60, 0, 0, 0, 0x00, 0x50, 43, 0x40]); // next header 43
        message.extend([
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
        ]);
        message.extend([
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07,
        ]);
        message.extend([60, 2, 0, 0]); // routing: next 60, length 2, type 0, segments left 0
        message.extend([0; 20]);
        message.extend([51, 0, 0x01, 0x04, 0, 0, 0, 0]); // destination options: next 51, PadN
        message.extend([6, 4, 0, 0]); // AH: next 6, payload length 4, reserved
        message.extend([0; 20]); // SPI, sequence number, ICV
        message.extend([0xee, 0x48, 0x01, 0xbb, 0x12, 0x34, 0x56, 0x78]);
        let router = v6("2001:db8::fe");
        let quoted = icmp_error_v6(router, &message).unwrap();
        assert_eq!(
            (quoted.source_port, quoted.destination_port, quoted.seq),
            (61000, 443, 0x1234_5678)
        );
        // The AH rule read as the others' (8 × (4 + 1) = 40 bytes) would
        // land past the quote.
        message.truncate(message.len() - 8);
        assert_eq!(icmp_error_v6(router, &message), None);
    }

    /// [`MAX_EXTENSION_HEADERS`] destination options headers are read;
    /// one more, and the walk gives up.
    #[test]
    fn icmp_error_v6_bounds_the_extension_walk() {
        let message = |headers: usize| {
            let mut message = vec![0x01, 0x00, 0, 0, 0, 0, 0, 0];
            message.extend([0x60, 0, 0, 0, 0, 0, 60, 0x40]);
            message.extend([0; 32]);
            for index in 0..headers {
                let next = if index + 1 == headers { 6 } else { 60 };
                message.extend([next, 0, 0x01, 0x04, 0, 0, 0, 0]);
            }
            message.extend([0xee, 0x48, 0x01, 0xbb, 0x12, 0x34, 0x56, 0x78]);
            message
        };
        let router = v6("2001:db8::fe");
        assert!(icmp_error_v6(router, &message(MAX_EXTENSION_HEADERS)).is_some());
        assert_eq!(
            icmp_error_v6(router, &message(MAX_EXTENSION_HEADERS + 1)),
            None
        );
    }
}
