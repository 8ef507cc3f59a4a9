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
mod tests {}
