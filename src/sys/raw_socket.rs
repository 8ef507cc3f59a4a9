//! Raw sockets for the raw-SYN engine (`src/prober/raw/`): `socket(SOCK_RAW)`
//! with its options, `SO_ATTACH_FILTER`, `sendmmsg` with a per-packet
//! `IP_TOS` / `IPV6_TCLASS`, and `recvmmsg` with the sender and the
//! kernel's receive time (`SO_TIMESTAMPNS`). Neither std, socket2 nor
//! tokio has batched sends and receives or classic BPF filters.
//!
//! What a raw socket of each kind gets, on Linux:
//!
//! | kind | receives | a packet's buffer starts at |
//! |---|---|---|
//! | [`RawKind::Tcp4`] | a copy of every TCP segment to this host | the IPv4 header |
//! | [`RawKind::Tcp6`] | a copy of every TCP segment to this host | the TCP header (the source is [`Incoming::from`]) |
//! | [`RawKind::Icmp4`] | ICMP destination unreachable and time exceeded only (`ICMP_FILTER`) | the IPv4 header |
//! | [`RawKind::Icmp6`] | ICMPv6 destination unreachable and time exceeded only (`ICMP6_FILTER`) | the ICMPv6 header |
//!
//! A classic BPF program ([`attach_filter`]) sees the packet from the same
//! place (`src/prober/raw/filter.rs` says how that was found out).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::check_errno;
use super::socket_option::set_int_option;

/// Which raw socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RawKind {
    /// `AF_INET`, `IPPROTO_TCP`: sends SYNs, receives SYN-ACKs and RSTs.
    Tcp4,
    /// `AF_INET6`, `IPPROTO_TCP`.
    Tcp6,
    /// `AF_INET`, `IPPROTO_ICMP`: receives the ICMP errors SYNs draw.
    Icmp4,
    /// `AF_INET6`, `IPPROTO_ICMPV6`.
    Icmp6,
}

impl RawKind {
    /// The socket's address family and protocol.
    fn family_and_protocol(self) -> (libc::c_int, libc::c_int) {
        match self {
            Self::Tcp4 => (libc::AF_INET, libc::IPPROTO_TCP),
            Self::Tcp6 => (libc::AF_INET6, libc::IPPROTO_TCP),
            Self::Icmp4 => (libc::AF_INET, libc::IPPROTO_ICMP),
            Self::Icmp6 => (libc::AF_INET6, libc::IPPROTO_ICMPV6),
        }
    }
}

/// The receive buffer asked for: room for about 5,000 queued answers
/// (a small skb costs about 768 bytes of it) when the engine thread is
/// late. `SO_RCVBUFFORCE` (`CAP_NET_ADMIN`) may exceed `net.core.rmem_max`;
/// `SO_RCVBUF` is capped by it.
const RECEIVE_BUFFER: libc::c_int = 4 << 20;

/// Where the checksum of a TCP header is, for `IPV6_CHECKSUM`.
const TCP_CHECKSUM_OFFSET: libc::c_int = 16;

/// `ICMP_FILTER` at level `SOL_RAW` (linux/icmp.h), which libc lacks: a
/// `u32` whose bit `n` set blocks ICMP type `n` (types up to 31).
const ICMP_FILTER: libc::c_int = 1;

/// `ICMPV6_FILTER` at level `IPPROTO_ICMPV6` (linux/icmpv6.h), which libc
/// lacks: 256 bits, bit `n` set blocks ICMPv6 type `n`.
const ICMPV6_FILTER: libc::c_int = 1;

/// The ICMP errors a SYN can draw: destination unreachable (3) and time
/// exceeded (11).
const ICMP_ERRORS: [u8; 2] = [3, 11];

/// The ICMPv6 errors a SYN can draw: destination unreachable (1) and time
/// exceeded (3).
const ICMPV6_ERRORS: [u8; 2] = [1, 3];

/// `socket(AF_INET[6], SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol)`
/// alone: whether this process may open raw sockets (`CAP_NET_RAW`), for
/// `--config.check` and start-up. The socket is closed at once.
///
/// # Errors
/// The `socket` error: `EPERM` without `CAP_NET_RAW`.
pub(crate) fn can_open_raw() -> io::Result<()> {
    new_raw_socket(RawKind::Tcp4).map(drop)
}

/// The bare socket of `kind`, non-blocking and close-on-exec.
fn new_raw_socket(kind: RawKind) -> io::Result<OwnedFd> {
    let (family, protocol) = kind.family_and_protocol();
    // SAFETY: socket takes integers only and returns a new descriptor or -1.
    let fd = check_errno(unsafe {
        libc::socket(
            family,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            protocol,
        )
    })?;
    // SAFETY: `fd` was just returned by socket: it is open and nothing else
    // owns it, so the OwnedFd is its only owner and closes it once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the raw socket of `kind`, non-blocking and close-on-exec, with:
/// - `SO_TIMESTAMPNS` on: each packet carries the kernel's receive time
///   (`CLOCK_REALTIME`), read by [`receive_batch`];
/// - a 4 MiB receive buffer (`SO_RCVBUFFORCE`, which needs
///   `CAP_NET_ADMIN`; without it `SO_RCVBUF`, which the kernel caps at
///   `net.core.rmem_max`, 208 KiB unless raised);
/// - `Tcp6`: `IPV6_CHECKSUM` at 16, so that the kernel fills in the TCP
///   checksum of what is sent (and checks that of what is received);
/// - `Icmp4` / `Icmp6`: `ICMP_FILTER` / `ICMP6_FILTER` passing only
///   destination unreachable and time exceeded, so that the kernel does
///   not even copy the rest (echo, neighbour discovery...) to the socket.
///
/// A raw TCP socket receives a copy of every TCP segment to this host
/// until [`attach_filter`] narrows it: attach one before reading.
///
/// # Errors
/// The `socket` error as is (`EPERM` without `CAP_NET_RAW`), or that of
/// a `setsockopt`.
pub(crate) fn open_raw_socket(kind: RawKind) -> io::Result<OwnedFd> {
    let socket = new_raw_socket(kind)?;
    let fd = std::os::fd::AsFd::as_fd(&socket);
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
    if set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RECEIVE_BUFFER).is_err() {
        set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, RECEIVE_BUFFER)?;
    }
    match kind {
        RawKind::Tcp4 => {}
        RawKind::Tcp6 => {
            set_int_option(fd, libc::SOL_IPV6, libc::IPV6_CHECKSUM, TCP_CHECKSUM_OFFSET)?;
        }
        RawKind::Icmp4 => {
            let blocked = ICMP_ERRORS
                .iter()
                .fold(u32::MAX, |bits, &passed| bits & !(1 << passed));
            set_option(fd, libc::SOL_RAW, ICMP_FILTER, &blocked)?;
        }
        RawKind::Icmp6 => {
            let mut blocked = [u32::MAX; 8];
            for passed in ICMPV6_ERRORS {
                blocked[usize::from(passed / 32)] &= !(1 << (passed % 32));
            }
            set_option(fd, libc::IPPROTO_ICMPV6, ICMPV6_FILTER, &blocked)?;
        }
    }
    Ok(socket)
}

/// `setsockopt` of an option whose value is the plain C data `value`.
fn set_option<T: Copy>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `fd` is open for the call; `value` is a live `T` and the
    // length passed is its size, so the kernel reads only inside it; it
    // checks the length against what the option wants and fails otherwise.
    check_errno(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const *value).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// One classic BPF instruction (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BpfInstruction {
    /// The opcode: class, size, mode, operation, source.
    pub(crate) code: u16,
    /// For a conditional jump: how many instructions to skip when true.
    pub(crate) jt: u8,
    /// For a conditional jump: how many instructions to skip when false.
    pub(crate) jf: u8,
    /// The constant operand: an offset, a value, a length to keep.
    pub(crate) k: u32,
}

/// The program [`attach_filter`] puts on first: `ret #0`, drop everything.
const DROP_EVERYTHING: [BpfInstruction; 1] = [BpfInstruction {
    code: (libc::BPF_RET | libc::BPF_K) as u16,
    jt: 0,
    jf: 0,
    k: 0,
}];

/// How many queued packets [`attach_filter`] discards at most: more than
/// a 4 MiB buffer holds.
const DRAIN_LIMIT: usize = 1 << 16;

/// Puts the classic BPF `program` on the socket (`SO_ATTACH_FILTER`) so
/// that the kernel queues only the packets it accepts, replacing any
/// program before it, and makes sure no packet queued before is read
/// after: it first attaches a program that drops everything, discards
/// what the socket had queued (as libpcap does), then attaches `program`.
/// Call it before the socket's first SYN leaves: what arrives between
/// the two attachments is dropped.
///
/// The filter narrows what the kernel copies to us; it is not the check:
/// the engine still checks every packet (addresses, ports, sequence
/// numbers), as a packet the filter cannot judge may pass (see
/// `src/prober/raw/filter.rs`), and one that reached the queue in the
/// instant between `socket()` and the first attachment with a bad IPv6
/// checksum ends the discarding early (the kernel's `recvmsg` answers
/// `EAGAIN` for it).
///
/// # Errors
/// `EINVAL` for a program the kernel's checker refuses (empty, longer
/// than 4096 instructions, a jump out of it, no `ret` at the end...);
/// `InvalidInput` for one longer than 65,535; a `recv` error while
/// discarding.
pub(crate) fn attach_filter(fd: BorrowedFd<'_>, program: &[BpfInstruction]) -> io::Result<()> {
    set_filter(fd, &DROP_EVERYTHING)?;
    discard_queued(fd)?;
    set_filter(fd, program)
}

/// `SO_ATTACH_FILTER` of `program`.
fn set_filter(fd: BorrowedFd<'_>, program: &[BpfInstruction]) -> io::Result<()> {
    let len = u16::try_from(program.len()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a classic BPF program has at most 65535 instructions",
        )
    })?;
    let mut filter: Vec<libc::sock_filter> = program
        .iter()
        .map(|instruction| libc::sock_filter {
            code: instruction.code,
            jt: instruction.jt,
            jf: instruction.jf,
            k: instruction.k,
        })
        .collect();
    let fprog = libc::sock_fprog {
        len,
        filter: filter.as_mut_ptr(),
    };
    // The kernel copies the `len` instructions `fprog` points at (live in
    // `filter` until the end of this function) and checks them.
    set_option(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}

/// Reads and discards what the socket has queued, up to `DRAIN_LIMIT`
/// packets, without blocking.
fn discard_queued(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut byte = 0_u8;
    for _ in 0..DRAIN_LIMIT {
        // SAFETY: `fd` is open for the call; `byte` is live and writable
        // for the one byte asked; the rest of the datagram is discarded.
        // MSG_DONTWAIT keeps the call from blocking.
        match check_errno(unsafe {
            libc::recv(
                fd.as_raw_fd(),
                (&raw mut byte).cast(),
                1,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        }) {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// One packet to send: the TCP segment (no IP header: `IP_HDRINCL` is
/// off), its destination, and the TOS / traffic class byte to send it
/// with (a control message `IP_TOS` / `IPV6_TCLASS`), if any.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Outgoing<'a> {
    /// The destination; its port is not used (a raw socket's "port" is
    /// its protocol, and 0 is written). An IPv6 scope id is.
    pub(crate) to: SocketAddr,
    /// The whole segment: for `Tcp4` with its checksum computed; for
    /// `Tcp6` the kernel fills it in (`IPV6_CHECKSUM`).
    pub(crate) segment: &'a [u8],
    /// The TOS (IPv4) or traffic class (IPv6) byte; `None` leaves the
    /// socket's, 0.
    pub(crate) tos: Option<u8>,
    /// The source address of the packet (`IP_PKTINFO`'s `ipi_spec_dst`,
    /// `IPV6_PKTINFO`'s `ipi6_addr`), of `to`'s family; `None` lets the
    /// routing table pick it. It must be an address of this host.
    pub(crate) source: Option<IpAddr>,
}

/// The most packets one [`send_batch`] or [`receive_batch`] call handles:
/// the per-message headers live on the stack.
pub(crate) const MAX_BATCH: usize = 64;

/// A socket address as the kernel reads and writes it, either family.
#[derive(Clone, Copy)]
#[repr(C)]
union RawAddress {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl RawAddress {
    /// All zeroes: an `AF_UNSPEC` address.
    fn zeroed() -> Self {
        // SAFETY: both variants are plain C structs of integers, for
        // which all zeroes is valid.
        unsafe { std::mem::zeroed() }
    }

    /// `address` with port 0, and the length of its variant.
    fn from_socket_address(address: SocketAddr) -> (Self, libc::socklen_t) {
        let mut raw = Self::zeroed();
        match address {
            SocketAddr::V4(v4) => {
                raw.v4 = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: 0,
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(v4.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                (raw, size_of::<libc::sockaddr_in>() as libc::socklen_t)
            }
            SocketAddr::V6(v6) => {
                raw.v6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: 0,
                    sin6_flowinfo: 0,
                    sin6_addr: libc::in6_addr {
                        s6_addr: v6.ip().octets(),
                    },
                    sin6_scope_id: v6.scope_id(),
                };
                (raw, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
            }
        }
    }

    /// The IP address the kernel wrote, or `None` for another family.
    fn ip(&self) -> Option<IpAddr> {
        // SAFETY: every variant starts with its `sa_family_t` family, and
        // any bytes are a valid sockaddr_in / sockaddr_in6 (plain
        // integers): the union was zeroed before the kernel wrote into it.
        let family = libc::c_int::from(unsafe { self.v4.sin_family });
        match family {
            // SAFETY: as above; the family says which variant it is.
            libc::AF_INET => Some(IpAddr::from(
                unsafe { self.v4.sin_addr.s_addr }.to_ne_bytes(),
            )),
            // SAFETY: as above.
            libc::AF_INET6 => Some(IpAddr::from(unsafe { self.v6.sin6_addr.s6_addr })),
            _ => None,
        }
    }
}

/// Control buffer of one message, aligned for `cmsghdr`: room for one
/// `timespec` (`SO_TIMESTAMPNS`) received, or for an `int` (`IP_TOS`,
/// `IPV6_TCLASS`) and a packet-info struct (`IP_PKTINFO`,
/// `IPV6_PKTINFO`) sent, each with its header.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Control([u8; CONTROL_LEN]);

/// The room of a [`Control`]: the larger of what is received and what is
/// sent.
const CONTROL_LEN: usize = {
    let received = cmsg_space(size_of::<libc::timespec>());
    let sent = cmsg_space(size_of::<libc::c_int>()) + cmsg_space(size_of::<libc::in6_pktinfo>());
    if received > sent { received } else { sent }
};

/// `CMSG_SPACE(len)`: a control message's header and `len` bytes of data,
/// padded for the next one.
const fn cmsg_space(len: usize) -> usize {
    // SAFETY: CMSG_SPACE only computes a length.
    unsafe { libc::CMSG_SPACE(len as u32) as usize }
}

/// One control message to send.
enum SentControl {
    /// `IP_TOS` / `IPV6_TCLASS`.
    Int(libc::c_int, libc::c_int, libc::c_int),
    /// `IP_PKTINFO` with the source address.
    Source4(libc::in_pktinfo),
    /// `IPV6_PKTINFO` with the source address.
    Source6(libc::in6_pktinfo),
}

impl SentControl {
    fn data_len(&self) -> usize {
        match self {
            Self::Int(..) => size_of::<libc::c_int>(),
            Self::Source4(_) => size_of::<libc::in_pktinfo>(),
            Self::Source6(_) => size_of::<libc::in6_pktinfo>(),
        }
    }
}

/// Writes `controls` (at most two) into `control` and points `header` at
/// them.
fn write_controls<'a>(
    header: &mut libc::msghdr,
    control: &mut Control,
    controls: impl Iterator<Item = &'a SentControl> + Clone,
) {
    let total: usize = controls
        .clone()
        .map(|item| cmsg_space(item.data_len()))
        .sum();
    debug_assert!(total <= CONTROL_LEN, "{total} bytes of control messages");
    if total == 0 || total > CONTROL_LEN {
        return;
    }
    header.msg_control = control.0.as_mut_ptr().cast();
    header.msg_controllen = total;
    // SAFETY: `header` points at a control buffer of `msg_controllen`
    // bytes (at most CONTROL_LEN), aligned for cmsghdr, so CMSG_FIRSTHDR
    // returns its start, not null.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(header) };
    for item in controls {
        if cmsg.is_null() {
            return;
        }
        let len = item.data_len();
        // SAFETY: `cmsg` is a non-null header inside the live, aligned
        // control buffer, which has CMSG_SPACE(len) bytes from it (the
        // total above counts each item's space); the data is written
        // unaligned; CMSG_LEN, CMSG_DATA and CMSG_NXTHDR only compute.
        unsafe {
            (*cmsg).cmsg_len = libc::CMSG_LEN(len as u32) as usize;
            let data = libc::CMSG_DATA(cmsg);
            match item {
                SentControl::Int(level, kind, value) => {
                    (*cmsg).cmsg_level = *level;
                    (*cmsg).cmsg_type = *kind;
                    data.cast::<libc::c_int>().write_unaligned(*value);
                }
                SentControl::Source4(info) => {
                    (*cmsg).cmsg_level = libc::SOL_IP;
                    (*cmsg).cmsg_type = libc::IP_PKTINFO;
                    data.cast::<libc::in_pktinfo>().write_unaligned(*info);
                }
                SentControl::Source6(info) => {
                    (*cmsg).cmsg_level = libc::SOL_IPV6;
                    (*cmsg).cmsg_type = libc::IPV6_PKTINFO;
                    data.cast::<libc::in6_pktinfo>().write_unaligned(*info);
                }
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
}

/// The per-message arrays of one `sendmmsg` / `recvmmsg`, for up to
/// [`MAX_BATCH`] messages, which the headers point into: they must not move
/// between filling and the call, so they stay in one place, boxed by
/// nobody (a local of the calling function).
struct Messages {
    headers: [libc::mmsghdr; MAX_BATCH],
    iovecs: [libc::iovec; MAX_BATCH],
    addresses: [RawAddress; MAX_BATCH],
    controls: [Control; MAX_BATCH],
}

impl Messages {
    fn new() -> Self {
        // SAFETY: mmsghdr and iovec are plain C structs for which all
        // zeroes is valid (null pointers with zero lengths); so are the
        // addresses and control bytes.
        unsafe { std::mem::zeroed() }
    }
}

/// Sends `batch` with one `sendmmsg`, at most [`MAX_BATCH`] at a time:
/// `Ok(n)` when the first `n` were sent (`n` < `batch.len()` when the
/// batch is longer than `MAX_BATCH` or a packet after the first failed:
/// call again with the rest); `Err(e)` when `batch[0]` was refused with
/// `e`: `ENETUNREACH` / `EHOSTUNREACH` (no route; for IPv6 also
/// `EADDRNOTAVAIL`, no source address towards it), `EPERM` / `EACCES` (a
/// local firewall), `EINVAL` (an address of the other family)... and the
/// caller skips it; `WouldBlock`, which says nothing about `batch[0]`:
/// the send buffer is full, try again when the socket is writable.
/// `Ok(0)` for an empty batch. A packet the queueing discipline drops
/// counts as sent: without `IP_RECVERR` (off here) the kernel hides that
/// `ENOBUFS` from a raw socket (IPv4: `raw_sendmsg`; IPv6: `ip6_send_skb`).
///
/// # Errors
/// As above: the error of `batch[0]`.
pub(crate) fn send_batch(fd: BorrowedFd<'_>, batch: &[Outgoing<'_>]) -> io::Result<usize> {
    let count = batch.len().min(MAX_BATCH);
    if count == 0 {
        return Ok(0);
    }
    let mut messages = Messages::new();
    let Messages {
        headers,
        iovecs,
        addresses,
        controls,
    } = &mut messages;
    for (index, packet) in batch.iter().take(count).enumerate() {
        let (address, address_len) = RawAddress::from_socket_address(packet.to);
        addresses[index] = address;
        iovecs[index] = libc::iovec {
            // sendmmsg only reads through it.
            iov_base: packet.segment.as_ptr().cast_mut().cast(),
            iov_len: packet.segment.len(),
        };
        let header = &mut headers[index].msg_hdr;
        header.msg_name = (&raw mut addresses[index]).cast();
        header.msg_namelen = address_len;
        header.msg_iov = &raw mut iovecs[index];
        header.msg_iovlen = 1;
        let tos = packet.tos.map(|tos| {
            let (level, kind) = match packet.to {
                SocketAddr::V4(_) => (libc::SOL_IP, libc::IP_TOS),
                SocketAddr::V6(_) => (libc::SOL_IPV6, libc::IPV6_TCLASS),
            };
            SentControl::Int(level, kind, libc::c_int::from(tos))
        });
        let source = match packet.source {
            Some(IpAddr::V4(source)) => Some(SentControl::Source4(libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from_ne_bytes(source.octets()),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            })),
            Some(IpAddr::V6(source)) => Some(SentControl::Source6(libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: source.octets(),
                },
                ipi6_ifindex: 0,
            })),
            None => None,
        };
        let sent_controls = [tos, source];
        write_controls(header, &mut controls[index], sent_controls.iter().flatten());
    }
    // SAFETY: `fd` is open for the call; each of the first `count` headers
    // points at its address (of the length given), its iovec (which points
    // at a live segment of its length, only read) and, with a TOS or a
    // source, its control buffer of the length given; all of them live in `messages`
    // until the call returns. The kernel writes only the headers' msg_len.
    let sent = check_errno(unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            headers.as_mut_ptr(),
            count as libc::c_uint,
            0,
        )
    })?;
    Ok(usize::try_from(sent).unwrap_or(0))
}

/// One received packet: how many bytes of its buffer, who sent it (for
/// `Tcp4` / `Icmp4` the buffer starts with the IPv4 header; for `Tcp6` /
/// `Icmp6` at the TCP / ICMPv6 header, the source being `from`), and the
/// kernel's receive time (`SO_TIMESTAMPNS`, `CLOCK_REALTIME`) as a
/// duration since the Unix epoch, if the kernel gave one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Incoming {
    /// The bytes of the packet in its buffer (at most [`RAW_BUFFER`]; a
    /// longer packet is cut there).
    pub(crate) len: usize,
    /// The packet's source address; `0.0.0.0` if the kernel gave none
    /// (it always does for a raw socket).
    pub(crate) from: IpAddr,
    /// When the kernel received it.
    pub(crate) kernel_time: Option<Duration>,
}

/// The size of one receive buffer: an IPv4 header with options (60), a
/// TCP header with options (60), or an ICMP error's IPv4 header, ICMP
/// header, quoted IPv4 header with options and 8 bytes of TCP (136), or
/// an ICMPv6 error quoting an IPv6 header with extension headers.
pub(crate) const RAW_BUFFER: usize = 256;

/// Receives what the socket has queued, without blocking, with one
/// `recvmmsg(MSG_DONTWAIT)`: at most `buffers.len()` and [`MAX_BATCH`]
/// packets, the `i`th into `buffers[i]` and described by `out[i]`
/// (`out` is cleared first). Returns how many, at least 1.
///
/// # Errors
/// `WouldBlock` when nothing is queued (what tokio's `AsyncFd::try_io`
/// wants to see to wait again), or the `recvmmsg` error; `Ok(0)` only
/// when `buffers` is empty.
pub(crate) fn receive_batch(
    fd: BorrowedFd<'_>,
    buffers: &mut [[u8; RAW_BUFFER]],
    out: &mut Vec<Incoming>,
) -> io::Result<usize> {
    out.clear();
    let count = buffers.len().min(MAX_BATCH);
    if count == 0 {
        return Ok(0);
    }
    let mut messages = Messages::new();
    let Messages {
        headers,
        iovecs,
        addresses,
        controls,
    } = &mut messages;
    for (index, buffer) in buffers.iter_mut().take(count).enumerate() {
        iovecs[index] = libc::iovec {
            iov_base: buffer.as_mut_ptr().cast(),
            iov_len: RAW_BUFFER,
        };
        let header = &mut headers[index].msg_hdr;
        header.msg_name = (&raw mut addresses[index]).cast();
        header.msg_namelen = size_of::<RawAddress>() as libc::socklen_t;
        header.msg_iov = &raw mut iovecs[index];
        header.msg_iovlen = 1;
        header.msg_control = controls[index].0.as_mut_ptr().cast();
        header.msg_controllen = CONTROL_LEN;
    }
    // SAFETY: `fd` is open for the call; each of the first `count` headers
    // points at its writable address of the length given, its iovec
    // (pointing at a live, writable buffer of RAW_BUFFER bytes, borrowed
    // mutably for this function) and its control buffer of CONTROL_LEN
    // bytes, all living in `messages` or `buffers` until the call returns,
    // so the kernel writes only inside them. MSG_DONTWAIT keeps it from
    // blocking; a null timeout is allowed.
    let received = check_errno(unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            headers.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    })?;
    let received = usize::try_from(received).unwrap_or(0).min(count);
    for (index, message) in headers.iter().take(received).enumerate() {
        out.push(Incoming {
            len: (message.msg_len as usize).min(RAW_BUFFER),
            from: addresses[index]
                .ip()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            kernel_time: kernel_time(&message.msg_hdr),
        });
    }
    Ok(received)
}

/// The `SO_TIMESTAMPNS` control message of a message `recvmmsg` filled in.
fn kernel_time(header: &libc::msghdr) -> Option<Duration> {
    let mut found = None;
    // SAFETY: `header` was filled in by a successful recvmmsg, so its
    // control pointer and (possibly shortened) length describe initialised
    // bytes inside its live control buffer; CMSG_FIRSTHDR and CMSG_NXTHDR
    // stay within that length and return null past it.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(header) };
    while !cmsg.is_null() {
        // SAFETY: a non-null header from CMSG_FIRSTHDR/NXTHDR lies wholly
        // inside the control buffer; read_unaligned copies it out.
        let control = unsafe { cmsg.read_unaligned() };
        // SAFETY: CMSG_LEN only computes a length.
        let minimum = unsafe { libc::CMSG_LEN(size_of::<libc::timespec>() as u32) } as usize;
        if control.cmsg_level == libc::SOL_SOCKET
            && control.cmsg_type == libc::SCM_TIMESTAMPNS
            && control.cmsg_len >= minimum
        {
            // SAFETY: the message's data holds a whole timespec (checked
            // against cmsg_len above) inside the control buffer; a timespec
            // is plain integers, valid for any bytes; read_unaligned
            // copies it without assuming alignment.
            let time = unsafe {
                libc::CMSG_DATA(cmsg)
                    .cast::<libc::timespec>()
                    .read_unaligned()
            };
            found = u64::try_from(time.tv_sec)
                .ok()
                .zip(u32::try_from(time.tv_nsec).ok())
                .filter(|&(_, nanos)| nanos < 1_000_000_000)
                .map(|(seconds, nanos)| Duration::new(seconds, nanos));
        }
        // SAFETY: as for CMSG_FIRSTHDR; `cmsg` came from this header.
        cmsg = unsafe { libc::CMSG_NXTHDR(header, cmsg) };
    }
    found
}

/// What the tests of the raw engine share: a segment built by hand (the
/// engine's own builder is `src/prober/raw/packet.rs`) and the decision
/// to run or skip a test that needs `CAP_NET_RAW`.
#[cfg(test)]
pub(crate) mod test_support {
    use super::{Incoming, MAX_BATCH, RAW_BUFFER, RawKind, open_raw_socket, receive_batch};
    use std::io;
    use std::net::{IpAddr, SocketAddr};
    use std::os::fd::{BorrowedFd, OwnedFd};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    /// The one's-complement sum of `bytes` (RFC 1071), not yet inverted.
    fn sum(bytes: &[u8], mut total: u32) -> u32 {
        for pair in bytes.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            total += u32::from(word);
        }
        total
    }

    /// The Internet checksum of `parts` laid end to end (each of even
    /// length but the last).
    pub(crate) fn internet_checksum(parts: &[&[u8]]) -> u16 {
        let mut total = parts.iter().fold(0, |total, part| sum(part, total));
        while total > 0xffff {
            total = (total & 0xffff) + (total >> 16);
        }
        !(total as u16)
    }

    /// A 20-byte TCP header with `flags`, window 64240, checksum computed
    /// over the pseudo-header of `source` and `destination` (of one family).
    pub(crate) fn tcp_segment(
        (source, source_port): (IpAddr, u16),
        (destination, destination_port): (IpAddr, u16),
        seq: u32,
        ack: u32,
        flags: u8,
    ) -> Vec<u8> {
        let mut segment = Vec::with_capacity(20);
        segment.extend_from_slice(&source_port.to_be_bytes());
        segment.extend_from_slice(&destination_port.to_be_bytes());
        segment.extend_from_slice(&seq.to_be_bytes());
        segment.extend_from_slice(&ack.to_be_bytes());
        segment.extend_from_slice(&[5 << 4, flags]);
        segment.extend_from_slice(&64240_u16.to_be_bytes());
        segment.extend_from_slice(&[0, 0, 0, 0]);
        let checksum =
            pseudo_header_checksum(source, destination, libc::IPPROTO_TCP as u8, &segment);
        segment[16..18].copy_from_slice(&checksum.to_be_bytes());
        segment
    }

    /// The checksum of `payload` of `protocol` with the pseudo-header of
    /// `source` and `destination`.
    pub(crate) fn pseudo_header_checksum(
        source: IpAddr,
        destination: IpAddr,
        protocol: u8,
        payload: &[u8],
    ) -> u16 {
        let length = payload.len() as u32;
        match (source, destination) {
            (IpAddr::V4(source), IpAddr::V4(destination)) => internet_checksum(&[
                &source.octets(),
                &destination.octets(),
                &[0, protocol],
                &(length as u16).to_be_bytes(),
                payload,
            ]),
            (IpAddr::V6(source), IpAddr::V6(destination)) => internet_checksum(&[
                &source.octets(),
                &destination.octets(),
                &length.to_be_bytes(),
                &[0, 0, 0, protocol],
                payload,
            ]),
            _ => panic!("{source} and {destination} are of two families"),
        }
    }

    /// A port of this host that nothing listens on, held by a bound TCP
    /// socket that neither listens nor connects, as the raw engine holds
    /// its source ports: the kernel answers a segment to it with an RST.
    pub(crate) fn held_port(ip: IpAddr) -> (socket2::Socket, u16) {
        let domain = if ip.is_ipv4() {
            socket2::Domain::IPV4
        } else {
            socket2::Domain::IPV6
        };
        let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
        socket.bind(&SocketAddr::new(ip, 0).into()).unwrap();
        let port = socket.local_addr().unwrap().as_socket().unwrap().port();
        (socket, port)
    }

    /// The time now as the kernel's timestamps give it: since the epoch.
    pub(crate) fn now() -> Duration {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
    }

    /// Receives from `fd` until `done` says it has all it wants, or for
    /// `limit`; returns every packet seen, with its bytes.
    pub(crate) fn receive(
        fd: BorrowedFd<'_>,
        limit: Duration,
        mut done: impl FnMut(&Incoming, &[u8]) -> bool,
    ) -> Vec<(Incoming, Vec<u8>)> {
        let mut buffers = vec![[0_u8; RAW_BUFFER]; MAX_BATCH];
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let started = Instant::now();
        while started.elapsed() < limit {
            match receive_batch(fd, &mut buffers, &mut out) {
                Ok(count) => {
                    assert_eq!(count, out.len());
                    let mut finished = false;
                    for (incoming, buffer) in out.iter().zip(&buffers) {
                        let bytes = buffer[..incoming.len].to_vec();
                        finished |= done(incoming, &bytes);
                        seen.push((*incoming, bytes));
                    }
                    if finished {
                        break;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(error) => panic!("{error}"),
            }
        }
        seen
    }

    /// Whether CI demanded that system tests run
    /// (`SYNACK_SYSTEM_TESTS=require`, as tests/common/mod.rs reads it).
    fn required() -> bool {
        std::env::var("SYNACK_SYSTEM_TESTS").is_ok_and(|value| value == "require")
    }

    /// The raw socket of `kind`, or `None` when this process may not open
    /// one (`EPERM`: no `CAP_NET_RAW`): then the test says it skipped, or
    /// fails under `SYNACK_SYSTEM_TESTS=require`, as tests/common does.
    pub(crate) fn raw_socket_or_skip(kind: RawKind) -> Option<OwnedFd> {
        use std::io::Write;
        match open_raw_socket(kind) {
            Ok(socket) => Some(socket),
            Err(error) if error.raw_os_error() == Some(libc::EPERM) => {
                assert!(
                    !required(),
                    "SYNACK_SYSTEM_TESTS=require but raw sockets are refused: {error}"
                );
                let test = std::thread::current().name().unwrap_or("a test").to_owned();
                let line = format!(
                    "SKIPPED {test}: missing CAP_NET_RAW (SYNACK_SYSTEM_TESTS=require makes this a failure)\n"
                );
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
                None
            }
            Err(error) => panic!("{kind:?}: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{held_port, now, raw_socket_or_skip, receive, tcp_segment};
    use super::*;
    use crate::sys::socket_option::int_option;
    use std::net::{Ipv6Addr, TcpListener, UdpSocket};
    use std::os::fd::AsFd;
    use std::time::Instant;

    const KINDS: [RawKind; 4] = [RawKind::Tcp4, RawKind::Tcp6, RawKind::Icmp4, RawKind::Icmp6];

    /// `getsockopt` of an option whose value is the plain C data `T`.
    fn option<T: Copy>(
        fd: BorrowedFd<'_>,
        level: libc::c_int,
        name: libc::c_int,
        mut value: T,
    ) -> T {
        let mut length = size_of::<T>() as libc::socklen_t;
        // SAFETY: `fd` is open; `value` is a live, writable `T` and
        // `length` its size, so the kernel writes only inside it.
        check_errno(unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (&raw mut value).cast(),
                &raw mut length,
            )
        })
        .expect("getsockopt");
        assert_eq!(length as usize, size_of::<T>());
        value
    }

    #[test]
    fn can_open_raw_says_what_open_raw_socket_would() {
        match (can_open_raw(), open_raw_socket(RawKind::Tcp4)) {
            (Ok(()), Ok(_)) => {}
            (Err(checked), Err(opened)) => {
                assert_eq!(checked.raw_os_error(), Some(libc::EPERM), "{checked}");
                assert_eq!(opened.raw_os_error(), Some(libc::EPERM), "{opened}");
            }
            (checked, opened) => panic!("can_open_raw {checked:?}, open_raw_socket {opened:?}"),
        }
    }

    #[test]
    fn every_kind_opens_with_its_family_protocol_and_options() {
        for kind in KINDS {
            let Some(socket) = raw_socket_or_skip(kind) else {
                return;
            };
            let fd = socket.as_fd();
            let (family, protocol) = kind.family_and_protocol();
            assert_eq!(int_option(fd, libc::SOL_SOCKET, libc::SO_DOMAIN), family);
            assert_eq!(
                int_option(fd, libc::SOL_SOCKET, libc::SO_TYPE),
                libc::SOCK_RAW
            );
            assert_eq!(
                int_option(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL),
                protocol
            );
            assert_eq!(
                int_option(fd, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS),
                1,
                "{kind:?}"
            );
            // The kernel doubles what it was asked for (its own overhead);
            // without CAP_NET_ADMIN, SO_RCVBUF caps it at rmem_max first.
            let buffer = int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF);
            let rmem_max: libc::c_int = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let least = 2 * RECEIVE_BUFFER.min(rmem_max);
            assert!(buffer >= least, "{kind:?}: SO_RCVBUF {buffer} < {least}");
            // SAFETY: F_GETFL only reads the descriptor's flags.
            let flags = check_errno(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) }).unwrap();
            assert_ne!(flags & libc::O_NONBLOCK, 0, "{kind:?}");
            // SAFETY: F_GETFD only reads the descriptor's flags.
            let flags = check_errno(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) }).unwrap();
            assert_ne!(flags & libc::FD_CLOEXEC, 0, "{kind:?}");
            match kind {
                RawKind::Tcp4 => {}
                RawKind::Tcp6 => assert_eq!(
                    int_option(fd, libc::SOL_IPV6, libc::IPV6_CHECKSUM),
                    TCP_CHECKSUM_OFFSET
                ),
                RawKind::Icmp4 => {
                    let blocked = option(fd, libc::SOL_RAW, ICMP_FILTER, 0_u32);
                    assert_eq!(blocked, !((1 << 3) | (1 << 11)), "{blocked:#x}");
                }
                RawKind::Icmp6 => {
                    let blocked = option(fd, libc::IPPROTO_ICMPV6, ICMPV6_FILTER, [0_u32; 8]);
                    let mut expected = [u32::MAX; 8];
                    expected[0] = !((1 << 1) | (1 << 3));
                    assert_eq!(blocked, expected, "{blocked:x?}");
                }
            }
        }
        can_open_raw().unwrap();
    }

    #[test]
    fn a_batch_leaves_with_each_packets_tos_and_source_and_arrives_with_its_kernel_time() {
        let Some(sender) = raw_socket_or_skip(RawKind::Tcp4) else {
            return;
        };
        let receiver = open_raw_socket(RawKind::Tcp4).unwrap();
        let ip = IpAddr::from(Ipv4Addr::LOCALHOST);
        let (_held, source_port) = held_port(ip);
        let (_closed, destination_port) = held_port(ip);
        let tag = std::process::id() << 8;
        let segments: Vec<Vec<u8>> = (0..3)
            .map(|n| tcp_segment((ip, source_port), (ip, destination_port), tag + n, 0, 0x02))
            .collect();
        let toses = [Some(0x28), None, Some(0xb8)];
        // The last from another address of this host (IP_PKTINFO).
        let other = IpAddr::from([127, 0, 0, 3]);
        let sources = [None, None, Some(other)];
        let batch: Vec<Outgoing<'_>> = segments
            .iter()
            .zip(toses)
            .zip(sources)
            .map(|((segment, tos), source)| Outgoing {
                to: SocketAddr::new(ip, 4242),
                segment,
                tos,
                source,
            })
            .collect();
        let before = now();
        assert_eq!(send_batch(sender.as_fd(), &batch).unwrap(), 3);
        let mut found = Vec::new();
        receive(
            receiver.as_fd(),
            Duration::from_secs(2),
            |incoming, bytes| {
                // IPv4 header (20 bytes, no options), then the segment.
                if bytes.len() >= 40 && bytes[20..40] == segments[found.len().min(2)][..] {
                    found.push((*incoming, bytes[1]));
                }
                found.len() == 3
            },
        );
        let after = now();
        assert_eq!(found.len(), 3, "{found:?}");
        for (((incoming, tos), sent), source) in found.iter().zip(toses).zip(sources) {
            assert_eq!(*tos, sent.unwrap_or(0));
            assert_eq!(incoming.from, source.unwrap_or(ip));
            assert_eq!(incoming.len, 40);
            let time = incoming.kernel_time.expect("a kernel timestamp");
            assert!(
                before <= time && time <= after,
                "{before:?} {time:?} {after:?}"
            );
        }
    }

    #[test]
    fn a_tcp6_segment_gets_its_checksum_from_the_kernel_and_its_traffic_class() {
        let Some(sender) = raw_socket_or_skip(RawKind::Tcp6) else {
            return;
        };
        let receiver = open_raw_socket(RawKind::Tcp6).unwrap();
        let packets = packet_socket(libc::ETH_P_IPV6);
        let ip = IpAddr::from(Ipv6Addr::LOCALHOST);
        let (_held, source_port) = held_port(ip);
        let (_closed, destination_port) = held_port(ip);
        let seq = std::process::id();
        let mut segment = tcp_segment((ip, source_port), (ip, destination_port), seq, 0, 0x02);
        let checksum = [segment[16], segment[17]];
        segment[16..18].copy_from_slice(&[0, 0]);
        let batch = [Outgoing {
            to: SocketAddr::new(ip, 0),
            segment: &segment,
            tos: Some(0xb8),
            source: None,
        }];
        assert_eq!(send_batch(sender.as_fd(), &batch).unwrap(), 1);
        let ours = |bytes: &[u8]| bytes.len() == 20 && bytes[4..8] == seq.to_be_bytes();
        let seen = receive(receiver.as_fd(), Duration::from_secs(2), |_, bytes| {
            ours(bytes)
        });
        let (incoming, bytes) = seen
            .iter()
            .find(|(_, bytes)| ours(bytes))
            .expect("the segment");
        assert_eq!(incoming.from, ip);
        assert!(incoming.kernel_time.is_some());
        assert_eq!(bytes[..16], segment[..16]);
        assert_eq!(
            bytes[16..18],
            checksum,
            "the kernel's checksum is the one computed here"
        );
        // The IPv6 header, as a packet socket on `lo` sees it: traffic
        // class 0xb8 spans the first two bytes (version 6, then the class).
        let started = Instant::now();
        let mut buffer = [0_u8; 256];
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "no IPv6 header seen"
            );
            let Ok(length) = packets.recv(&mut buffer) else {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            };
            if length >= 60 && buffer[6] == 6 && buffer[44..48] == seq.to_be_bytes() {
                let class = (u16::from_be_bytes([buffer[0], buffer[1]]) >> 4) as u8;
                assert_eq!(class, 0xb8);
                break;
            }
        }
    }

    /// A non-blocking `AF_PACKET` / `SOCK_DGRAM` socket for `protocol`, on
    /// every interface: it reads packets from their network header. A
    /// UdpSocket for its plain `recv`.
    fn packet_socket(protocol: libc::c_int) -> UdpSocket {
        // SAFETY: socket takes integers only.
        let fd = check_errno(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::c_int::from((protocol as u16).to_be()),
            )
        })
        .unwrap();
        // SAFETY: `fd` was just returned by socket and nothing else owns it.
        UdpSocket::from(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    #[test]
    fn attach_filter_discards_what_was_queued_before_and_filters_what_comes_after() {
        let Some(socket) = raw_socket_or_skip(RawKind::Tcp4) else {
            return;
        };
        let fd = socket.as_fd();
        // Queue some TCP traffic of this host's loopback.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let _stream = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let mut buffers = vec![[0_u8; RAW_BUFFER]; 4];
        let mut out = Vec::new();
        let queued = receive_batch(fd, &mut buffers, &mut out).unwrap();
        assert!(queued >= 1 && out.len() == queued);
        // Accept the segments to or from the listener's port (and none of
        // the other tests' traffic), but only from now on.
        let port = u32::from(listener.local_addr().unwrap().port());
        let op = |code: u32, jt: u8, jf: u8, k: u32| BpfInstruction {
            code: code as u16,
            jt,
            jf,
            k,
        };
        let listeners = [
            op(libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH, 0, 0, 0),
            op(libc::BPF_LD | libc::BPF_H | libc::BPF_IND, 0, 0, 0),
            op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 2, 0, port),
            op(libc::BPF_LD | libc::BPF_H | libc::BPF_IND, 0, 0, 2),
            op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, port),
            op(libc::BPF_RET | libc::BPF_K, 0, 0, u32::MAX),
            op(libc::BPF_RET | libc::BPF_K, 0, 0, 0),
        ];
        let _more = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        attach_filter(fd, &listeners).unwrap();
        let error = receive_batch(fd, &mut buffers, &mut out).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
        assert!(out.is_empty());
        let _after = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(receive_batch(fd, &mut buffers, &mut out).unwrap() >= 1);
        // Drop everything again: then nothing arrives.
        attach_filter(fd, &DROP_EVERYTHING).unwrap();
        let _dropped = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let error = receive_batch(fd, &mut buffers, &mut out).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn attach_filter_refuses_a_program_the_kernel_refuses() {
        let Some(socket) = raw_socket_or_skip(RawKind::Tcp4) else {
            return;
        };
        let jump_out = [BpfInstruction {
            code: (libc::BPF_JMP | libc::BPF_JA) as u16,
            jt: 0,
            jf: 0,
            k: 5,
        }];
        for program in [&[][..], &jump_out[..]] {
            let error = attach_filter(socket.as_fd(), program).unwrap_err();
            assert_eq!(error.raw_os_error(), Some(libc::EINVAL), "{program:?}");
        }
        let long = vec![DROP_EVERYTHING[0]; 70_000];
        let error = attach_filter(socket.as_fd(), &long).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn empty_batches_and_empty_queues_do_not_block() {
        let Some(socket) = raw_socket_or_skip(RawKind::Icmp6) else {
            return;
        };
        attach_filter(socket.as_fd(), &DROP_EVERYTHING).unwrap();
        let started = Instant::now();
        assert_eq!(send_batch(socket.as_fd(), &[]).unwrap(), 0);
        let mut out = vec![Incoming {
            len: 1,
            from: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            kernel_time: None,
        }];
        assert_eq!(receive_batch(socket.as_fd(), &mut [], &mut out).unwrap(), 0);
        assert!(out.is_empty());
        let mut buffers = [[0_u8; RAW_BUFFER]; 2];
        let error = receive_batch(socket.as_fd(), &mut buffers, &mut out).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn batches_longer_than_max_batch_go_max_batch_at_a_time() {
        let Some(sender) = raw_socket_or_skip(RawKind::Tcp4) else {
            return;
        };
        let receiver = open_raw_socket(RawKind::Tcp4).unwrap();
        let ip = IpAddr::from(Ipv4Addr::LOCALHOST);
        let (_held, source_port) = held_port(ip);
        let (_closed, destination_port) = held_port(ip);
        let segment = tcp_segment((ip, source_port), (ip, destination_port), 1, 0, 0x10);
        let batch = vec![
            Outgoing {
                to: SocketAddr::new(ip, 0),
                segment: &segment,
                tos: None,
                source: None,
            };
            MAX_BATCH + 36
        ];
        assert_eq!(send_batch(sender.as_fd(), &batch).unwrap(), MAX_BATCH);
        assert_eq!(send_batch(sender.as_fd(), &batch[MAX_BATCH..]).unwrap(), 36);
        let mut got = 0;
        let mut largest = 0;
        let mut buffers = vec![[0_u8; RAW_BUFFER]; 100];
        let mut out = Vec::new();
        let started = Instant::now();
        while got < MAX_BATCH + 36 && started.elapsed() < Duration::from_secs(2) {
            match receive_batch(receiver.as_fd(), &mut buffers, &mut out) {
                Ok(count) => {
                    largest = largest.max(count);
                    got += out
                        .iter()
                        .zip(&buffers)
                        .filter(|(incoming, buffer)| {
                            buffer.get(20..incoming.len) == Some(&segment[..])
                        })
                        .count();
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(error) => panic!("{error}"),
            }
        }
        assert_eq!(got, MAX_BATCH + 36);
        assert!(largest <= MAX_BATCH, "{largest}");
    }

    /// Runs `test` on a thread of its own in a new network namespace
    /// (`unshare(CLONE_NEWNET)` moves only the calling thread), whose only
    /// interface, `lo`, is down: it has no route at all.
    fn in_a_namespace_without_routes<T: Send + 'static>(
        test: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        std::thread::spawn(move || {
            // SAFETY: unshare takes a flag only and changes the calling
            // thread's network namespace, which no other thread shares.
            match check_errno(unsafe { libc::unshare(libc::CLONE_NEWNET) }) {
                Ok(_) => Some(test()),
                Err(error) if error.raw_os_error() == Some(libc::EPERM) => None,
                Err(error) => panic!("unshare: {error}"),
            }
        })
        .join()
        .unwrap()
    }

    #[test]
    fn send_batch_says_why_a_destination_has_no_route_and_sends_the_rest() {
        if raw_socket_or_skip(RawKind::Tcp4).is_none() {
            return;
        }
        let results = in_a_namespace_without_routes(|| {
            let mut results = Vec::new();
            for (kind, no_route, local) in [
                (RawKind::Tcp4, "192.0.2.1", "127.0.0.1"),
                (RawKind::Tcp6, "2001:db8::1", "::1"),
            ] {
                let socket = open_raw_socket(kind).unwrap();
                let (no_route, local): (IpAddr, IpAddr) =
                    (no_route.parse().unwrap(), local.parse().unwrap());
                let segment = tcp_segment((local, 40000), (no_route, 9), 1, 0, 0x02);
                let to = |ip| Outgoing {
                    to: SocketAddr::new(ip, 0),
                    segment: &segment,
                    tos: None,
                    source: None,
                };
                results.push(
                    send_batch(socket.as_fd(), &[to(no_route), to(no_route)])
                        .map_err(|e| e.raw_os_error()),
                );
                // Bring `lo` up: the local address has a route, the other
                // still none.
                let status = std::process::Command::new("ip")
                    .args(["link", "set", "lo", "up"])
                    .status()
                    .unwrap();
                assert!(status.success());
                let batch = [to(local), to(no_route), to(local)];
                results.push(send_batch(socket.as_fd(), &batch).map_err(|e| e.raw_os_error()));
                results.push(send_batch(socket.as_fd(), &batch[1..]).map_err(|e| e.raw_os_error()));
                results.push(send_batch(socket.as_fd(), &batch[2..]).map_err(|e| e.raw_os_error()));
                // Down again for the next family.
                let status = std::process::Command::new("ip")
                    .args(["link", "set", "lo", "down"])
                    .status()
                    .unwrap();
                assert!(status.success());
            }
            results
        });
        let Some(results) = results else {
            panic!("unshare(CLONE_NEWNET) refused, though raw sockets are allowed");
        };
        // IPv4 says ENETUNREACH. IPv6 says so too with `lo` up; with no
        // interface up it has no source address at all: EADDRNOTAVAIL.
        let (unreachable, no_source) =
            (Err(Some(libc::ENETUNREACH)), Err(Some(libc::EADDRNOTAVAIL)));
        assert_eq!(
            results,
            [
                unreachable,
                Ok(1),
                unreachable,
                Ok(1),
                no_source,
                Ok(1),
                unreachable,
                Ok(1)
            ]
        );
    }

    /// The cost of the calls per packet, for the report of issue 22:
    /// `cargo test --release --lib cost_per_packet -- --ignored --nocapture`.
    /// Sends go out of a veth in a namespace of the test's own, to a
    /// static neighbour (the packets take the whole output path; the
    /// other end drops them, addressed to another host: nothing answers),
    /// and to loopback, where the send
    /// call also runs the receiving side (the kernel's RST). Receives read
    /// a queue filled beforehand, `MAX_BATCH` buffers at a time.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn cost_per_packet_of_send_and_receive_batches() {
        const PACKETS: usize = 64 * 300;
        const ROUNDS: usize = 5;
        let per_packet =
            |elapsed: Duration, packets: usize| elapsed.as_nanos() as f64 / packets as f64 / 1000.0;
        let send = move |socket: BorrowedFd<'_>, ip: IpAddr, to: IpAddr, batch: usize| -> f64 {
            let (_held, port) = held_port(ip);
            let segment = tcp_segment((ip, port), (to, 9), 1, 0, 0x02);
            let packets = vec![
                Outgoing {
                    to: SocketAddr::new(to, 0),
                    segment: &segment,
                    tos: None,
                    source: None,
                };
                batch
            ];
            let started = Instant::now();
            let mut sent = 0;
            while sent < PACKETS {
                match send_batch(socket, &packets) {
                    Ok(count) => sent += count,
                    Err(error)
                        if error.raw_os_error() == Some(libc::ENOBUFS)
                            || error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => panic!("{error}"),
                }
            }
            per_packet(started.elapsed(), sent)
        };
        let figures = in_a_namespace_without_routes(move || {
            for command in [
                "link set lo up",
                "link add v0 type veth peer name v1",
                "addr add 10.0.0.1/24 dev v0",
                "neigh add 10.0.0.2 lladdr 02:00:00:00:00:02 dev v0",
                "link set v0 up",
                "link set v1 up",
            ] {
                let status = std::process::Command::new("ip")
                    .args(command.split(' '))
                    .status()
                    .unwrap();
                assert!(status.success(), "ip {command}");
            }
            let socket = open_raw_socket(RawKind::Tcp4).unwrap();
            attach_filter(socket.as_fd(), &DROP_EVERYTHING).unwrap();
            let local: IpAddr = Ipv4Addr::new(10, 0, 0, 1).into();
            let veth: IpAddr = Ipv4Addr::new(10, 0, 0, 2).into();
            let loopback: IpAddr = Ipv4Addr::LOCALHOST.into();
            let mut lines = Vec::new();
            for (name, from, to) in [("veth", local, veth), ("loopback", loopback, loopback)] {
                for batch in [1, 64] {
                    let rounds: Vec<f64> = (0..ROUNDS)
                        .map(|_| send(socket.as_fd(), from, to, batch))
                        .collect();
                    lines.push(format!(
                        "send_batch to {name}, batches of {batch}: {rounds:.2?} µs per packet"
                    ));
                }
            }
            // Receive: a queue of PACKETS / 4 (the 4 MiB buffer holds about
            // 5,000), filled by sends to this socket's own filter.
            let receiver = open_raw_socket(RawKind::Tcp4).unwrap();
            let everything = [BpfInstruction {
                code: (libc::BPF_RET | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: u32::MAX,
            }];
            let (_held, port) = held_port(loopback);
            let segment = tcp_segment((loopback, 9), (loopback, port), 1, 0, 0x12);
            let packets = vec![
                Outgoing {
                    to: SocketAddr::new(loopback, 0),
                    segment: &segment,
                    tos: None,
                    source: None,
                };
                64
            ];
            let mut buffers = vec![[0_u8; RAW_BUFFER]; MAX_BATCH];
            let mut out = Vec::new();
            let mut rounds = Vec::new();
            for _ in 0..ROUNDS {
                attach_filter(receiver.as_fd(), &everything).unwrap();
                let mut sent = 0;
                while sent < PACKETS / 8 {
                    sent += send_batch(socket.as_fd(), &packets).unwrap();
                }
                let started = Instant::now();
                let mut received = 0;
                loop {
                    match receive_batch(receiver.as_fd(), &mut buffers, &mut out) {
                        Ok(count) => received += count,
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                        Err(error) => panic!("{error}"),
                    }
                }
                let elapsed = started.elapsed();
                // Each segment draws the kernel's RST, which the socket sees too.
                assert!(received >= sent, "{received} of {sent}");
                rounds.push(per_packet(elapsed, received));
            }
            lines.push(format!(
                "receive_batch of {MAX_BATCH} buffers, a queue of {}: {rounds:.2?} µs per packet",
                PACKETS / 8 * 2
            ));
            lines
        })
        .expect("a namespace");
        for line in figures {
            println!("{line}");
        }
    }
}
