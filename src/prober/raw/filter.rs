//! The classic BPF programs the raw engine attaches to its sockets
//! ([`crate::sys::attach_filter`]), so that the kernel queues only the
//! answers to our SYNs and drops the rest of the host's traffic (a raw
//! `IPPROTO_TCP` socket gets a copy of every TCP segment) before it is
//! copied to us: [`tcp_answers`] and [`icmp_errors`].
//!
//! # Where a program's offset 0 is
//!
//! Found out on Linux 6.18 (the tests `offset_0_of_a_raw_ipv6_socket_*`
//! below check it on every run), and what the kernel's sources say:
//!
//! - IPv4 raw sockets (`raw_rcv` pushes the IP header back before
//!   `sock_queue_rcv_skb` runs the filter): offset 0 is the **IPv4
//!   header**, of any length, so a program finds the transport header with
//!   `ldx 4*([0]&0xf)`. Fragments are reassembled before raw delivery
//!   (`ip_local_deliver`), so the non-first-fragment check is only a guard.
//! - IPv6 raw sockets (`ip6_input_finish` pulls the IPv6 header and every
//!   extension header before `raw6_local_deliver`): offset 0 is the
//!   **transport header**, TCP or ICMPv6, after any extension headers; the
//!   IPv6 header is only reachable through the kernel's negative offsets
//!   (`SKF_NET_OFF`, -0x100000). That is also where `recvmsg` starts the
//!   packet. A filter on an IPv6 raw socket also makes the kernel check
//!   the checksum before it (`rawv6_rcv_skb`).
//!
//! Inside an ICMP error the quoted packet is plain data: for IPv4 the
//! program reads the quoted header's length; for IPv6 it reads the quoted
//! next header and, when that is an extension header, lets the packet
//! through for the parser (`packet.rs`) to judge, as classic BPF cannot
//! walk a chain.

#![forbid(unsafe_code)]

use std::ops::RangeInclusive;

use crate::sys::BpfInstruction;

// The parts of a classic BPF opcode (linux/bpf_common.h, linux/filter.h).
/// Instruction class: load into A.
const LD: u16 = 0x00;
/// Instruction class: load into X.
const LDX: u16 = 0x01;
/// Instruction class: arithmetic on A.
const ALU: u16 = 0x04;
/// Instruction class: jump.
const JMP: u16 = 0x05;
/// Instruction class: return, ending the program.
const RET: u16 = 0x06;
/// Instruction class: register moves.
const MISC: u16 = 0x07;
/// Load size: a byte.
const B: u16 = 0x10;
/// Load size: a 16-bit half word, big-endian.
const H: u16 = 0x08;
/// Load mode: at the offset `k`.
const ABS: u16 = 0x20;
/// Load mode: at the offset X + `k`.
const IND: u16 = 0x40;
/// Load mode (`LDX | B` only): X = 4 × (packet[`k`] & 0xf), an IPv4
/// header's length.
const MSH: u16 = 0xa0;
/// ALU operation: A += operand.
const ADD: u16 = 0x00;
/// ALU operation: A &= operand.
const AND: u16 = 0x50;
/// ALU operation: A <<= operand.
const LSH: u16 = 0x60;
/// Jump if A == `k`.
const JEQ: u16 = 0x10;
/// Jump if A > `k`.
const JGT: u16 = 0x20;
/// Jump if A >= `k`.
const JGE: u16 = 0x30;
/// Jump if A & `k` != 0.
const JSET: u16 = 0x40;
/// Operand: the constant `k`.
const K: u16 = 0x00;
/// Operand: the register X.
const X: u16 = 0x08;
/// MISC operation: X = A.
const TAX: u16 = 0x00;

/// What a program returns to keep a packet: the number of bytes to keep,
/// here all of them (a smaller number would make the kernel trim a cloned
/// packet, a copy).
const ACCEPT: u32 = u32::MAX;
/// What a program returns to drop a packet.
const DROP: u32 = 0;

/// TCP flags.
const RST: u32 = 0x04;
const SYN_ACK: u32 = 0x12;
/// The fragment offset bits of the IPv4 header's half word at 6.
const FRAGMENT_OFFSET: u32 = 0x1fff;

/// Where a jump goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum To {
    Next,
    Accept,
    Drop,
    Label(Label),
}

/// A place in a program a jump can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Label {
    /// The quoted packet of an ICMP error.
    Quoted,
    /// The quoted TCP header of an ICMPv6 error.
    QuotedTcp,
}

/// One step of a program before its jumps are resolved.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// An instruction that is not a conditional jump.
    Op(u16, u32),
    /// A conditional jump on A against `k`.
    Jump(u16, u32, To, To),
    /// A label: the next instruction's place.
    Mark(Label),
}

/// The instructions of `steps`, followed by `ret #ACCEPT` and
/// `ret #DROP`, with every jump turned into its offsets.
fn assemble(steps: &[Step]) -> Vec<BpfInstruction> {
    let mut labels = Vec::new();
    let mut count = 0;
    for step in steps {
        match step {
            Step::Mark(label) => labels.push((*label, count)),
            _ => count += 1,
        }
    }
    let (accept, drop) = (count, count + 1);
    let target = |to: To, at: usize| -> u8 {
        let index = match to {
            To::Next => at + 1,
            To::Accept => accept,
            To::Drop => drop,
            To::Label(label) => labels
                .iter()
                .find(|(name, _)| *name == label)
                .map(|(_, index)| *index)
                .expect("every label named is marked"),
        };
        u8::try_from(index - at - 1).expect("a forward jump within 255 instructions")
    };
    let mut program = Vec::with_capacity(count + 2);
    for step in steps {
        let at = program.len();
        match *step {
            Step::Op(code, k) => program.push(BpfInstruction {
                code,
                jt: 0,
                jf: 0,
                k,
            }),
            Step::Jump(code, k, jt, jf) => program.push(BpfInstruction {
                code: JMP | code | K,
                jt: target(jt, at),
                jf: target(jf, at),
                k,
            }),
            Step::Mark(_) => {}
        }
    }
    for k in [ACCEPT, DROP] {
        program.push(BpfInstruction {
            code: RET | K,
            jt: 0,
            jf: 0,
            k,
        });
    }
    program
}

/// The steps that keep A in `ports` and go on, or drop the packet.
fn in_range(ports: &RangeInclusive<u16>, then: To) -> [Step; 2] {
    [
        Step::Jump(JGE, u32::from(*ports.start()), To::Next, To::Drop),
        Step::Jump(JGT, u32::from(*ports.end()), To::Drop, then),
    ]
}

/// The program of a raw TCP socket: only segments to a destination port
/// in `ports` with RST set, or with SYN and ACK set, pass (for IPv4, only
/// first fragments). `v6` for an IPv6 socket, where offset 0 is the TCP
/// header; for IPv4 it is the IPv4 header.
pub(crate) fn tcp_answers(v6: bool, ports: RangeInclusive<u16>) -> Vec<BpfInstruction> {
    let (load_half, load_byte) = if v6 {
        (LD | H | ABS, LD | B | ABS)
    } else {
        (LD | H | IND, LD | B | IND)
    };
    let mut steps = Vec::new();
    if !v6 {
        steps.extend([
            Step::Op(LD | H | ABS, 6),
            Step::Jump(JSET, FRAGMENT_OFFSET, To::Drop, To::Next),
            Step::Op(LDX | B | MSH, 0),
        ]);
    }
    // The destination port, then the flags.
    steps.push(Step::Op(load_half, 2));
    steps.extend(in_range(&ports, To::Next));
    steps.extend([
        Step::Op(load_byte, 13),
        Step::Jump(JSET, RST, To::Accept, To::Next),
        Step::Op(ALU | AND | K, SYN_ACK),
        Step::Jump(JEQ, SYN_ACK, To::Accept, To::Drop),
    ]);
    assemble(&steps)
}

/// The extension headers an ICMPv6 error's quoted packet may have before
/// its TCP header: hop-by-hop, routing, fragment, destination options, AH.
const EXTENSION_HEADERS: [u32; 5] = [0, 43, 44, 60, 51];

/// The program of a raw ICMP socket: only destination unreachable (3) and
/// time exceeded (11) (ICMPv6: 1 and 3) quoting a TCP segment whose
/// source port is in `ports` pass. IPv4: the quoted header of any length
/// (first fragments of the outer packet only). IPv6: a quoted IPv6 header
/// followed by TCP is judged; one followed by an extension header passes,
/// for the parser to judge; any other protocol is dropped.
pub(crate) fn icmp_errors(v6: bool, ports: RangeInclusive<u16>) -> Vec<BpfInstruction> {
    let mut steps = Vec::new();
    if v6 {
        steps.extend([
            Step::Op(LD | B | ABS, 0),
            Step::Jump(JEQ, 1, To::Label(Label::Quoted), To::Next),
            Step::Jump(JEQ, 3, To::Next, To::Drop),
            Step::Mark(Label::Quoted),
            // ICMPv6 header (8), then the quoted IPv6 header's next header (6).
            Step::Op(LD | B | ABS, 8 + 6),
            Step::Jump(JEQ, 6, To::Label(Label::QuotedTcp), To::Next),
        ]);
        for (index, header) in EXTENSION_HEADERS.into_iter().enumerate() {
            let otherwise = if index + 1 == EXTENSION_HEADERS.len() {
                To::Drop
            } else {
                To::Next
            };
            steps.push(Step::Jump(JEQ, header, To::Accept, otherwise));
        }
        steps.extend([
            Step::Mark(Label::QuotedTcp),
            // After the 40-byte quoted IPv6 header: the source port.
            Step::Op(LD | H | ABS, 8 + 40),
        ]);
    } else {
        steps.extend([
            Step::Op(LD | H | ABS, 6),
            Step::Jump(JSET, FRAGMENT_OFFSET, To::Drop, To::Next),
            Step::Op(LDX | B | MSH, 0),
            Step::Op(LD | B | IND, 0),
            Step::Jump(JEQ, 3, To::Label(Label::Quoted), To::Next),
            Step::Jump(JEQ, 11, To::Next, To::Drop),
            Step::Mark(Label::Quoted),
            // ICMP header (8), then the quoted IPv4 header's protocol (9).
            Step::Op(LD | B | IND, 8 + 9),
            Step::Jump(JEQ, 6, To::Next, To::Drop),
            // X = outer header + ICMP header + quoted header's length.
            Step::Op(LD | B | IND, 8),
            Step::Op(ALU | AND | K, 0x0f),
            Step::Op(ALU | LSH | K, 2),
            Step::Op(ALU | ADD | X, 0),
            Step::Op(ALU | ADD | K, 8),
            Step::Op(MISC | TAX, 0),
            Step::Op(LD | H | IND, 0),
        ]);
    }
    steps.extend(in_range(&ports, To::Accept));
    assemble(&steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::raw_test_support::{
        held_port, internet_checksum, now, raw_socket_or_skip, receive, tcp_segment,
    };
    use crate::sys::{Incoming, Outgoing, RawKind, attach_filter, send_batch};
    use std::collections::BTreeSet;
    use std::io::{self, Read, Write};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
    use std::os::fd::{AsFd, OwnedFd};
    use std::time::Duration;

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

    #[test]
    fn the_opcodes_are_linuxs() {
        let ours = [
            LD, LDX, ALU, JMP, RET, MISC, B, H, ABS, IND, MSH, ADD, AND, LSH, JEQ, JGT, JGE, JSET,
            K, X, TAX,
        ];
        let linux = [
            libc::BPF_LD,
            libc::BPF_LDX,
            libc::BPF_ALU,
            libc::BPF_JMP,
            libc::BPF_RET,
            libc::BPF_MISC,
            libc::BPF_B,
            libc::BPF_H,
            libc::BPF_ABS,
            libc::BPF_IND,
            libc::BPF_MSH,
            libc::BPF_ADD,
            libc::BPF_AND,
            libc::BPF_LSH,
            libc::BPF_JEQ,
            libc::BPF_JGT,
            libc::BPF_JGE,
            libc::BPF_JSET,
            libc::BPF_K,
            libc::BPF_X,
            libc::BPF_TAX,
        ];
        assert_eq!(ours.map(u32::from), linux);
    }

    #[test]
    fn the_v4_tcp_program_reads_as_tcpdump_would_print_it() {
        let expected = [
            (0x28, 0, 0, 6),        // ldh [6]
            (0x45, 9, 0, 0x1fff),   // jset #0x1fff, drop, next
            (0xb1, 0, 0, 0),        // ldxb 4*([0]&0xf)
            (0x48, 0, 0, 2),        // ldh [x+2]
            (0x35, 0, 6, 61000),    // jge #61000, next, drop
            (0x25, 5, 0, 65535),    // jgt #65535, drop, next
            (0x50, 0, 0, 13),       // ldb [x+13]
            (0x45, 2, 0, 4),        // jset #4, accept, next
            (0x54, 0, 0, 0x12),     // and #0x12
            (0x15, 0, 1, 0x12),     // jeq #0x12, accept, drop
            (0x06, 0, 0, u32::MAX), // ret accept
            (0x06, 0, 0, 0),        // ret drop
        ];
        let program: Vec<_> = tcp_answers(false, 61000..=65535)
            .into_iter()
            .map(|i| (i.code, i.jt, i.jf, i.k))
            .collect();
        assert_eq!(program, expected);
    }

    #[test]
    fn every_jump_lands_inside_the_program_and_it_ends_with_returns() {
        for v6 in [false, true] {
            for program in [tcp_answers(v6, 1..=2), icmp_errors(v6, 1..=2)] {
                let last = program.len() - 1;
                for (at, instruction) in program.iter().enumerate() {
                    if instruction.code & 0x07 == JMP {
                        let longest = instruction.jt.max(instruction.jf);
                        assert!(at + 1 + usize::from(longest) <= last, "{program:?}");
                    }
                }
                assert_eq!(
                    program[last - 1],
                    BpfInstruction {
                        code: RET | K,
                        jt: 0,
                        jf: 0,
                        k: ACCEPT
                    }
                );
                assert_eq!(
                    program[last],
                    BpfInstruction {
                        code: RET | K,
                        jt: 0,
                        jf: 0,
                        k: DROP
                    }
                );
            }
        }
    }

    fn tcp_kind(ip: IpAddr) -> RawKind {
        if ip.is_ipv4() {
            RawKind::Tcp4
        } else {
            RawKind::Tcp6
        }
    }

    /// The raw TCP socket of `ip`'s family with `tcp_answers(ports)` on.
    fn tcp_socket(ip: IpAddr, ports: RangeInclusive<u16>) -> Option<OwnedFd> {
        let socket = raw_socket_or_skip(tcp_kind(ip))?;
        attach_filter(socket.as_fd(), &tcp_answers(ip.is_ipv6(), ports)).unwrap();
        Some(socket)
    }

    /// The TCP header in a packet of a raw socket of `ip`'s family.
    fn tcp_header(ip: IpAddr, packet: &[u8]) -> &[u8] {
        if ip.is_ipv4() {
            &packet[usize::from(packet[0] & 0xf) * 4..]
        } else {
            packet
        }
    }

    /// How long a test waits for what should come: long, as loopback
    /// delivers within the send call, unless the machine is very busy.
    const COMES: Duration = Duration::from_secs(2);
    /// How long a test waits to see that nothing more comes.
    const NOTHING_MORE: Duration = Duration::from_millis(100);

    /// This test run's sequence numbers: a tag in the top 24 bits.
    fn tag() -> u32 {
        (0xa5 << 24) | ((std::process::id() & 0xffff) << 8)
    }

    fn to_loopback(ip: IpAddr, segment: &[u8]) -> Outgoing<'_> {
        Outgoing {
            to: SocketAddr::new(ip, 0),
            segment,
            tos: None,
            source: None,
        }
    }

    #[test]
    fn tcp_answers_pass_only_syn_acks_and_rsts_to_the_ports_in_range() {
        for ip in [V4, V6] {
            let (_held, remote) = held_port(ip);
            let (_low, low) = held_port(ip);
            let ports = low..=low + 1;
            let Some(socket) = tcp_socket(ip, ports.clone()) else {
                return;
            };
            // SYN, SYN-ACK, RST, RST-ACK, ACK, FIN-ACK, SYN-ACK-ECE, PSH-ACK.
            let flags: [u8; 8] = [0x02, 0x12, 0x04, 0x14, 0x10, 0x11, 0x52, 0x18];
            let mut segments = Vec::new();
            let mut expected = BTreeSet::new();
            for port in [low - 1, low, low + 1, low + 2] {
                for flag in flags {
                    let index = segments.len() as u32;
                    segments.push(tcp_segment(
                        (ip, remote),
                        (ip, port),
                        tag() | index,
                        0,
                        flag,
                    ));
                    let answer = flag & 0x04 != 0 || flag & 0x12 == 0x12;
                    if ports.contains(&port) && answer {
                        expected.insert(index);
                    }
                }
            }
            let batch: Vec<_> = segments.iter().map(|s| to_loopback(ip, s)).collect();
            assert_eq!(send_batch(socket.as_fd(), &batch).unwrap(), batch.len());
            let mut passed = BTreeSet::new();
            let mut seen = receive(socket.as_fd(), COMES, |_, packet| {
                let header = tcp_header(ip, packet);
                let seq = u32::from_be_bytes(header[4..8].try_into().unwrap());
                if seq & !0xff == tag() {
                    passed.insert(seq & 0xff);
                }
                passed == expected
            });
            seen.extend(receive(socket.as_fd(), NOTHING_MORE, |_, _| false));
            assert_eq!(passed, expected, "{ip}");
            // Nothing else passed either: every packet was to a port in range.
            for (incoming, packet) in seen {
                let header = tcp_header(ip, &packet);
                let port = u16::from_be_bytes([header[2], header[3]]);
                assert!(ports.contains(&port), "{ip}: {incoming:?} {packet:x?}");
            }
        }
    }

    #[test]
    fn a_half_open_probe_gets_its_answer_through_the_filter_and_nothing_of_a_strangers_traffic() {
        for ip in [V4, V6] {
            let listener = TcpListener::bind((ip, 0)).unwrap();
            listener.set_nonblocking(true).unwrap();
            let target = listener.local_addr().unwrap().port();
            let (_held, source) = held_port(ip);
            let (_closed_socket, closed) = held_port(ip);
            let Some(socket) = tcp_socket(ip, source..=source) else {
                return;
            };
            // Sees every TCP segment, the kernel's RST among them.
            let everything = raw_socket_or_skip(tcp_kind(ip)).unwrap();
            let isn = tag() | 7;
            let syn = |port| tcp_segment((ip, source), (ip, port), isn, 0, 0x02);
            let (open_syn, closed_syn) = (syn(target), syn(closed));
            let before = now();
            let batch = [to_loopback(ip, &open_syn), to_loopback(ip, &closed_syn)];
            assert_eq!(send_batch(socket.as_fd(), &batch).unwrap(), 2);
            let mut answers = Vec::new();
            let mut seen = receive(socket.as_fd(), COMES, |incoming, packet| {
                let header = tcp_header(ip, packet);
                let from_port = u16::from_be_bytes([header[0], header[1]]);
                let ack = u32::from_be_bytes(header[8..12].try_into().unwrap());
                answers.push((incoming.from, from_port, ack, header[13]));
                answers.len() == 2
            });
            let after = now();
            seen.extend(receive(socket.as_fd(), NOTHING_MORE, |incoming, packet| {
                answers.push((incoming.from, 0, 0, tcp_header(ip, packet)[13]));
                false
            }));
            answers.sort_unstable();
            let mut expected = [(ip, target, isn + 1, 0x12), (ip, closed, isn + 1, 0x14)];
            expected.sort_unstable();
            assert_eq!(
                answers, expected,
                "{ip}: the listener's SYN-ACK and the closed port's RST-ACK, and nothing else"
            );
            for (incoming, _) in &seen {
                let time = incoming.kernel_time.expect("a kernel timestamp");
                assert!(
                    before <= time && time <= after,
                    "{ip}: {before:?} {time:?} {after:?}"
                );
            }
            // The kernel answered the SYN-ACK with its own RST, seq isn + 1.
            let mut rst = false;
            receive(everything.as_fd(), COMES, |_, packet| {
                let header = tcp_header(ip, packet);
                rst |= header[0..2] == source.to_be_bytes()
                    && header[2..4] == target.to_be_bytes()
                    && header[4..8] == (isn + 1).to_be_bytes()
                    && header[13] & 0x04 != 0;
                rst
            });
            assert!(rst, "{ip}: no RST from the kernel");
            assert_eq!(
                listener.accept().map(drop).map_err(|error| error.kind()),
                Err(io::ErrorKind::WouldBlock),
                "{ip}: the listener accepted the probe"
            );
            // A stranger's connection to the same port: its traffic both
            // ways stays out of the filtered socket.
            let mut stranger = TcpStream::connect((ip, target)).unwrap();
            let (mut served, peer) = listener.accept().unwrap();
            assert_eq!(peer, stranger.local_addr().unwrap());
            served.set_nonblocking(false).unwrap();
            let mut buffer = [0_u8; 4];
            stranger.write_all(b"ping").unwrap();
            served.read_exact(&mut buffer).unwrap();
            served.write_all(b"pong").unwrap();
            stranger.read_exact(&mut buffer).unwrap();
            drop((stranger, served));
            std::thread::sleep(Duration::from_millis(20));
            let leaked = receive(socket.as_fd(), NOTHING_MORE, |_, _| true);
            assert!(leaked.is_empty(), "{ip}: passed the filter: {leaked:x?}");
            assert_eq!(
                listener.accept().map(drop).map_err(|error| error.kind()),
                Err(io::ErrorKind::WouldBlock),
                "{ip}"
            );
        }
    }

    /// An ICMP error of `icmp_type` (code 1) quoting an IP packet of
    /// `protocol` from `source`:`source_port` to `destination` port 9,
    /// with `seq`: for IPv4 the quoted header carries a 4-byte option when
    /// `options`; for IPv6, `protocol` 0 is a hop-by-hop header before TCP.
    fn icmp_error(
        icmp_type: u8,
        (source, source_port): (IpAddr, u16),
        destination: IpAddr,
        (protocol, options): (u8, bool),
        seq: u32,
    ) -> Vec<u8> {
        let mut message = vec![icmp_type, 1, 0, 0, 0, 0, 0, 0];
        match (source, destination) {
            (IpAddr::V4(source), IpAddr::V4(destination)) => {
                let ihl = if options { 6 } else { 5 };
                message.extend_from_slice(&[0x40 | ihl, 0, 0, 60, 0, 1, 0x40, 0, 64, protocol]);
                message.extend_from_slice(&[0, 0]);
                message.extend_from_slice(&source.octets());
                message.extend_from_slice(&destination.octets());
                if options {
                    message.extend_from_slice(&[1, 1, 1, 1]);
                }
            }
            (IpAddr::V6(source), IpAddr::V6(destination)) => {
                message.extend_from_slice(&[0x60, 0, 0, 0, 0, 32, protocol, 64]);
                message.extend_from_slice(&source.octets());
                message.extend_from_slice(&destination.octets());
                if protocol == 0 {
                    // Hop-by-hop: next header TCP, 8 bytes, a PadN option.
                    message.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
                }
            }
            _ => unreachable!("one family"),
        }
        message.extend_from_slice(&source_port.to_be_bytes());
        message.extend_from_slice(&9_u16.to_be_bytes());
        message.extend_from_slice(&seq.to_be_bytes());
        if source.is_ipv4() {
            // ICMP's checksum is ours to fill; the kernel fills ICMPv6's.
            let checksum = internet_checksum(&[&message]);
            message[2..4].copy_from_slice(&checksum.to_be_bytes());
        }
        message
    }

    #[test]
    fn icmp_errors_pass_only_errors_quoting_tcp_from_the_ports_in_range() {
        for ip in [V4, V6] {
            let kind = if ip.is_ipv4() {
                RawKind::Icmp4
            } else {
                RawKind::Icmp6
            };
            let Some(socket) = raw_socket_or_skip(kind) else {
                return;
            };
            let (_held, low) = held_port(ip);
            let ports = low..=low + 1;
            attach_filter(socket.as_fd(), &icmp_errors(ip.is_ipv6(), ports)).unwrap();
            let (unreachable, exceeded, echo) = if ip.is_ipv4() {
                (3, 11, 8)
            } else {
                (1, 3, 128)
            };
            // IPv6: a hop-by-hop header, which the filter cannot see past,
            // passes for the parser; IPv4: TCP again.
            let hop_by_hop = if ip.is_ipv4() { 6 } else { 0 };
            // (type, (quoted protocol, IPv4 options), quoted source port, passes)
            let cases = [
                (unreachable, (6, false), low, true),
                (exceeded, (6, false), low + 1, true),
                (unreachable, (6, true), low + 1, true),
                (exceeded, (6, true), low, true),
                (unreachable, (hop_by_hop, false), low, true),
                (unreachable, (6, false), low - 1, false),
                (exceeded, (6, true), low + 2, false),
                (unreachable, (17, false), low, false),
                (echo, (6, false), low, false),
                (4, (6, false), low, false),
            ];
            let mut messages = Vec::new();
            let mut expected = BTreeSet::new();
            for (icmp_type, quoted, port, passes) in cases {
                let index = messages.len() as u32;
                messages.push(icmp_error(icmp_type, (ip, port), ip, quoted, tag() | index));
                if passes {
                    expected.insert(index);
                }
            }
            let batch: Vec<_> = messages.iter().map(|m| to_loopback(ip, m)).collect();
            assert_eq!(send_batch(socket.as_fd(), &batch).unwrap(), batch.len());
            let mut passed = BTreeSet::new();
            let check = |incoming: &Incoming, packet: &[u8]| {
                assert_eq!(incoming.from, ip);
                let seq = &packet[packet.len() - 4..];
                let seq = u32::from_be_bytes(seq.try_into().unwrap());
                (seq & !0xff == tag()).then_some(seq & 0xff)
            };
            receive(socket.as_fd(), COMES, |incoming, packet| {
                passed.extend(check(incoming, packet));
                passed == expected
            });
            receive(socket.as_fd(), NOTHING_MORE, |incoming, packet| {
                passed.extend(check(incoming, packet));
                false
            });
            assert_eq!(passed, expected, "{ip}");
        }
    }

    #[test]
    fn offset_0_of_a_raw_ipv6_socket_is_the_tcp_header_and_the_ipv6_header_is_at_skf_net_off() {
        let ip = V6;
        let (_held, source) = held_port(ip);
        let (_other, destination) = held_port(ip);
        let seq = tag() | 0x60;
        let segment = tcp_segment((ip, source), (ip, destination), seq, 0, 0x10);
        let load = |size: u16, offset: i32| BpfInstruction {
            code: LD | size | ABS,
            jt: 0,
            jf: 0,
            k: offset as u32,
        };
        let net = libc::SKF_NET_OFF;
        // (what the program checks, its load, the value, whether it passes)
        let cases = [
            ("TCP source port at 0", load(H, 0), u32::from(source), true),
            ("TCP sequence number at 4", load(H, 6), seq & 0xffff, true),
            ("IPv6 version at 0", load(B, 0), 0x60, false),
            ("IPv6 next header at 6", load(B, 6), 6, false),
            ("IPv6 version at SKF_NET_OFF", load(B, net), 0x60, true),
            (
                "IPv6 next header at SKF_NET_OFF + 6",
                load(B, net + 6),
                6,
                true,
            ),
        ];
        for (what, load_it, value, passes) in cases {
            let Some(socket) = raw_socket_or_skip(RawKind::Tcp6) else {
                return;
            };
            let ret = |k| BpfInstruction {
                code: RET | K,
                jt: 0,
                jf: 0,
                k,
            };
            let program = [
                // Only this test's segment (by its destination port, at 2:
                // proven by the first case), then the check.
                load(H, 2),
                BpfInstruction {
                    code: JMP | JEQ | K,
                    jt: 1,
                    jf: 0,
                    k: u32::from(destination),
                },
                ret(DROP),
                load_it,
                BpfInstruction {
                    code: JMP | JEQ | K,
                    jt: 0,
                    jf: 1,
                    k: value,
                },
                ret(ACCEPT),
                ret(DROP),
            ];
            let program = if what.starts_with("TCP source") {
                // Without the port check, which this one proves.
                vec![load_it, program[4], ret(ACCEPT), ret(DROP)]
            } else {
                program.to_vec()
            };
            attach_filter(socket.as_fd(), &program).unwrap();
            let batch = [to_loopback(ip, &segment)];
            assert_eq!(send_batch(socket.as_fd(), &batch).unwrap(), 1);
            let ours = |packet: &[u8]| packet.get(4..8) == Some(&seq.to_be_bytes()[..]);
            let limit = if passes { COMES } else { NOTHING_MORE };
            let seen = receive(socket.as_fd(), limit, |_, packet| ours(packet));
            let got = seen.iter().any(|(_, packet)| ours(packet));
            assert_eq!(got, passes, "{what}");
        }
    }
}
