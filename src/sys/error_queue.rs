//! The socket error queue: `setsockopt(IP_RECVERR / IPV6_RECVERR)` and
//! `recvmsg(MSG_ERRQUEUE)` with its control messages
//! (`sock_extended_err`, `SO_EE_OFFENDER`), so that a failed probe can say
//! which router sent which ICMP error. Neither socket2 nor tokio wraps
//! them.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::check_errno;
use super::socket_option::set_int_option;

/// Asks the kernel to queue the ICMP errors a socket receives on its
/// error queue (`IP_RECVERR`, or `IPV6_RECVERR` for an IPv6 socket), so
/// that [`read_error_queue`] can say which router sent what. socket2 has
/// no setter for either option.
///
/// # Errors
/// The `setsockopt` error.
pub(crate) fn set_recv_err(fd: BorrowedFd<'_>, ipv6: bool) -> io::Result<()> {
    let (level, name) = if ipv6 {
        (libc::SOL_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::SOL_IP, libc::IP_RECVERR)
    };
    set_int_option(fd, level, name, 1)
}

/// One entry of a socket's error queue: the kernel's `sock_extended_err`
/// and, from `SO_EE_OFFENDER`, the address of the host that sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueuedError {
    /// `ee_errno`: the errno the error stands for, such as `EHOSTUNREACH`.
    pub(crate) errno: u32,
    /// `ee_origin`: `SO_EE_ORIGIN_ICMP` (2), `SO_EE_ORIGIN_ICMP6` (3),
    /// `SO_EE_ORIGIN_LOCAL` (1), ...
    pub(crate) origin: u8,
    /// `ee_type`: the ICMP or ICMPv6 type.
    pub(crate) icmp_type: u8,
    /// `ee_code`: the ICMP or ICMPv6 code.
    pub(crate) code: u8,
    /// The sender of the ICMP message, when the kernel gives one.
    pub(crate) offender: Option<IpAddr>,
}

/// How many entries [`read_error_queue`] takes off the queue at most: a
/// SYN retransmitted a few times can have drawn as many ICMP errors.
const ERROR_QUEUE_READS: usize = 8;

/// Takes up to `ERROR_QUEUE_READS` (8) entries off the socket's error queue
/// (`recvmsg(MSG_ERRQUEUE | MSG_DONTWAIT)`) and returns the last of them,
/// whatever its origin, or `None` when it is empty; entries beyond that
/// many stay queued. Never blocks.
///
/// # Errors
/// A `recvmsg` error other than `EAGAIN`, which means the queue is empty.
pub(crate) fn read_error_queue(fd: BorrowedFd<'_>) -> io::Result<Option<QueuedError>> {
    let mut last = None;
    for _ in 0..ERROR_QUEUE_READS {
        match read_one_queued_error(fd)? {
            Some(Some(entry)) => last = Some(entry),
            // An entry without an extended error: look at the next one.
            Some(None) => {}
            None => break,
        }
    }
    Ok(last)
}

/// Control buffer for one `recvmsg`, aligned for `cmsghdr`: room for a
/// `sock_extended_err` followed by a `sockaddr_in6`, with headers.
#[repr(C, align(8))]
struct ControlBuffer([u8; 256]);

/// One `recvmsg(MSG_ERRQUEUE)`: `None` when the queue is empty,
/// `Some(None)` for an entry that carried no extended error.
fn read_one_queued_error(fd: BorrowedFd<'_>) -> io::Result<Option<Option<QueuedError>>> {
    // The payload is the header of the packet that drew the error; we only
    // want the control messages, so a small buffer that may truncate it.
    let mut payload = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    let mut control = ControlBuffer([0; 256]);
    // SAFETY: msghdr is a plain C struct for which all zeroes is valid
    // (null pointers with zero lengths).
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &raw mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.0.as_mut_ptr().cast();
    message.msg_controllen = control.0.len();
    // SAFETY: `fd` is open for the call; `message` points at `iov`, which
    // points at `payload`, and at `control`, all live, writable and of the
    // lengths given, so the kernel writes only inside them. MSG_DONTWAIT
    // keeps the call from blocking.
    match check_errno(unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &raw mut message,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    }) {
        Ok(_) => {}
        Err(error) if error.raw_os_error() == Some(libc::EAGAIN) => return Ok(None),
        Err(error) => return Err(error),
    }
    let mut found = None;
    // SAFETY: `message` was filled in by a successful recvmsg, so its
    // control pointer and (possibly shortened) length describe initialised
    // bytes inside `control`; CMSG_FIRSTHDR and CMSG_NXTHDR stay within
    // that length and return null past it.
    let mut header = unsafe { libc::CMSG_FIRSTHDR(&raw const message) };
    while !header.is_null() {
        // SAFETY: a non-null header from CMSG_FIRSTHDR/NXTHDR lies wholly
        // inside the control buffer; read_unaligned copies it out.
        let cmsg = unsafe { header.read_unaligned() };
        let is_recverr = (cmsg.cmsg_level == libc::SOL_IP && cmsg.cmsg_type == libc::IP_RECVERR)
            || (cmsg.cmsg_level == libc::SOL_IPV6 && cmsg.cmsg_type == libc::IPV6_RECVERR);
        // SAFETY: CMSG_LEN only computes a length.
        let minimum = unsafe { libc::CMSG_LEN(size_of::<libc::sock_extended_err>() as u32) };
        if is_recverr && cmsg.cmsg_len >= minimum as usize {
            // SAFETY: CMSG_DATA only computes the address of the data of a
            // header that lies inside the buffer.
            let data = unsafe { libc::CMSG_DATA(header) };
            // SAFETY: CMSG_LEN only computes a length.
            let data_len = cmsg.cmsg_len - unsafe { libc::CMSG_LEN(0) } as usize;
            // SAFETY: the message's data, `cmsg_len` minus the header, lies
            // inside the control buffer, which recvmsg initialised up to
            // msg_controllen; it lives as long as `control`.
            let bytes = unsafe { std::slice::from_raw_parts(data.cast_const(), data_len) };
            let (extended, offender) = bytes.split_at(size_of::<libc::sock_extended_err>());
            // SAFETY: `extended` holds exactly a `sock_extended_err` (checked
            // against cmsg_len above), a plain C struct valid for any bytes;
            // read_unaligned copies it without assuming alignment.
            let extended = unsafe {
                extended
                    .as_ptr()
                    .cast::<libc::sock_extended_err>()
                    .read_unaligned()
            };
            found = Some(QueuedError {
                errno: extended.ee_errno,
                origin: extended.ee_origin,
                icmp_type: extended.ee_type,
                code: extended.ee_code,
                offender: read_offender(offender),
            });
        }
        // SAFETY: as for CMSG_FIRSTHDR; `header` came from this message.
        header = unsafe { libc::CMSG_NXTHDR(&raw const message, header) };
    }
    Ok(Some(found))
}

/// The `SO_EE_OFFENDER` address in `bytes`, what follows the
/// `sock_extended_err`: an IPv4 or IPv6 address, or `None` (`AF_UNSPEC`,
/// or too short).
fn read_offender(bytes: &[u8]) -> Option<IpAddr> {
    let family_bytes = bytes.get(..size_of::<libc::sa_family_t>())?;
    let family = libc::sa_family_t::from_ne_bytes(family_bytes.try_into().ok()?);
    match libc::c_int::from(family) {
        libc::AF_INET if bytes.len() >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: `bytes` holds a whole `sockaddr_in` (checked above), a
            // plain C struct valid for any bytes; read_unaligned copies it.
            let address = unsafe { bytes.as_ptr().cast::<libc::sockaddr_in>().read_unaligned() };
            Some(IpAddr::from(address.sin_addr.s_addr.to_ne_bytes()))
        }
        libc::AF_INET6 if bytes.len() >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a whole `sockaddr_in6`.
            let address = unsafe { bytes.as_ptr().cast::<libc::sockaddr_in6>().read_unaligned() };
            Some(IpAddr::from(address.sin6_addr.s6_addr))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::socket_option::int_option;
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
    use std::os::fd::AsFd;
    use std::time::{Duration, Instant};

    #[test]
    fn set_recv_err_turns_on_ip_recverr_or_ipv6_recverr() {
        let v4 = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        assert_eq!(int_option(v4.as_fd(), libc::SOL_IP, libc::IP_RECVERR), 0);
        set_recv_err(v4.as_fd(), false).unwrap();
        assert_eq!(int_option(v4.as_fd(), libc::SOL_IP, libc::IP_RECVERR), 1);
        let v6 = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
        assert_eq!(
            int_option(v6.as_fd(), libc::SOL_IPV6, libc::IPV6_RECVERR),
            0
        );
        set_recv_err(v6.as_fd(), true).unwrap();
        assert_eq!(
            int_option(v6.as_fd(), libc::SOL_IPV6, libc::IPV6_RECVERR),
            1
        );
    }

    #[test]
    fn an_empty_error_queue_reads_as_none_without_blocking() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        set_recv_err(stream.as_fd(), false).unwrap();
        let started = Instant::now();
        assert_eq!(read_error_queue(stream.as_fd()).unwrap(), None);
        // Without the option too.
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        assert_eq!(read_error_queue(udp.as_fd()).unwrap(), None);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    /// A UDP port on `ip` that nothing listens on (it was bound a moment
    /// ago and let go), and a socket with `set_recv_err` on.
    fn udp_to_a_closed_port(ip: std::net::IpAddr) -> (UdpSocket, SocketAddr) {
        let closed = UdpSocket::bind((ip, 0)).unwrap().local_addr().unwrap();
        let socket = UdpSocket::bind((ip, 0)).unwrap();
        set_recv_err(socket.as_fd(), ip.is_ipv6()).unwrap();
        (socket, closed)
    }

    /// Polls the error queue for at most 2 s until it yields an entry.
    fn next_queued_error(socket: &UdpSocket) -> Option<QueuedError> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(2) {
            if let Some(entry) = read_error_queue(socket.as_fd()).unwrap() {
                return Some(entry);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    #[test]
    fn a_port_unreachable_is_read_off_the_error_queue_with_its_sender() {
        for (ip, origin, icmp_type, code) in [
            // SO_EE_ORIGIN_ICMP, destination unreachable, port unreachable.
            (std::net::IpAddr::from(Ipv4Addr::LOCALHOST), 2, 3, 3),
            // SO_EE_ORIGIN_ICMP6, destination unreachable, port unreachable.
            (std::net::IpAddr::from(Ipv6Addr::LOCALHOST), 3, 1, 4),
        ] {
            let (socket, closed) = udp_to_a_closed_port(ip);
            socket.send_to(b"synack", closed).unwrap();
            assert_eq!(
                next_queued_error(&socket),
                Some(QueuedError {
                    errno: libc::ECONNREFUSED as u32,
                    origin,
                    icmp_type,
                    code,
                    offender: Some(ip),
                }),
                "{ip}"
            );
            assert_eq!(read_error_queue(socket.as_fd()).unwrap(), None, "{ip}");
        }
    }

    #[test]
    fn the_error_queue_is_read_eight_entries_at_a_time() {
        // Eight errors go in one read, nine take two.
        for (errors, reads_with_an_entry) in [(8, 1), (9, 2)] {
            let (socket, closed) = udp_to_a_closed_port(Ipv4Addr::LOCALHOST.into());
            // One datagram, one ICMP error. A send may fail with the error
            // of the one before (the socket's pending error): send again.
            let mut sent = 0;
            for _ in 0..100 {
                if sent < errors && socket.send_to(b"synack", closed).is_ok() {
                    sent += 1;
                }
            }
            assert_eq!(sent, errors);
            // Loopback delivers the errors as it sends; give them time anyway.
            std::thread::sleep(Duration::from_millis(100));
            for read in 0..reads_with_an_entry {
                let entry = read_error_queue(socket.as_fd()).unwrap();
                assert!(entry.is_some(), "{errors} errors: read {read} found none");
            }
            let rest = read_error_queue(socket.as_fd()).unwrap();
            assert_eq!(rest, None, "{errors} errors: one read too many");
        }
    }

    /// The bytes of a C struct, as the kernel would write them.
    fn bytes_of<T>(value: &T) -> Vec<u8> {
        // SAFETY: `value` is a live `T` of `size_of::<T>()` bytes; the
        // socket address structs read here have no padding.
        unsafe { std::slice::from_raw_parts((&raw const *value).cast::<u8>(), size_of::<T>()) }
            .to_vec()
    }

    #[test]
    fn offenders_are_read_from_ipv4_and_ipv6_addresses_and_nothing_else() {
        // SAFETY: all zeroes is a valid sockaddr_in and sockaddr_in6.
        let (mut v4, mut v6): (libc::sockaddr_in, libc::sockaddr_in6) =
            unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        v4.sin_family = libc::AF_INET as libc::sa_family_t;
        v4.sin_addr.s_addr = u32::from_ne_bytes([192, 0, 2, 1]);
        v6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        v6.sin6_addr.s6_addr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        let (v4, v6) = (bytes_of(&v4), bytes_of(&v6));
        assert_eq!(read_offender(&v4), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(read_offender(&v6), Some("2001:db8::1".parse().unwrap()));
        // Cut short, AF_UNSPEC, or nothing at all.
        assert_eq!(read_offender(&v4[..v4.len() - 1]), None);
        assert_eq!(read_offender(&v6[..size_of::<libc::sockaddr_in>()]), None);
        assert_eq!(read_offender(&[0; 32]), None);
        assert_eq!(read_offender(&[]), None);
    }
}
