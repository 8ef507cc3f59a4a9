//! Which source address the routing table gives a destination: the raw
//! engine's IPv4 SYNs need it for their checksum, which covers it.
//!
//! A UDP socket connected to the destination has the source address the
//! route gives it (`getsockname`); connecting sends nothing. One socket
//! serves every lookup: it is disconnected (`connect` to an `AF_UNSPEC`
//! address) before each, since a UDP socket keeps the source address of
//! its first connect otherwise. That is three system calls a lookup
//! instead of five, and no descriptor made and closed each time.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::check_errno;

/// Disconnects a connected datagram socket: its peer and the source
/// address its connect chose are forgotten (an address it was bound to
/// stays).
///
/// # Errors
/// The `connect` error.
pub(crate) fn disconnect(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: all zeroes is a valid `sockaddr` (family AF_UNSPEC, 0).
    let mut unspecified: libc::sockaddr = unsafe { std::mem::zeroed() };
    unspecified.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    // SAFETY: `fd` is open for the call; the address is a live `sockaddr`
    // of the length passed, which the kernel only reads.
    check_errno(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &raw const unspecified,
            size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, UdpSocket};
    use std::os::fd::AsFd;

    #[test]
    fn a_disconnected_socket_takes_the_source_of_its_next_destination() {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        socket.connect(("127.0.0.1", 9)).unwrap();
        let first = socket.local_addr().unwrap().ip();
        assert_eq!(first, Ipv4Addr::LOCALHOST);
        // Disconnected, it has neither peer nor source address left.
        disconnect(socket.as_fd()).unwrap();
        assert!(socket.peer_addr().is_err(), "still connected");
        assert_eq!(
            socket.local_addr().unwrap().ip(),
            Ipv4Addr::UNSPECIFIED,
            "the source stayed"
        );
        socket.connect(("127.0.0.1", 9)).unwrap();
        assert_eq!(socket.local_addr().unwrap().ip(), Ipv4Addr::LOCALHOST);
    }
}
