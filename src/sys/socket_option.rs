//! `setsockopt` of the `int` options socket2 has no setter for:
//! `IP_BIND_ADDRESS_NO_PORT` here, and the shared setter that
//! `error_queue.rs` uses for `IP_RECVERR`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::check_errno;

/// Sets `IP_BIND_ADDRESS_NO_PORT`, for a socket that is about to be bound
/// to a source address with port 0 and then connected.
///
/// Without it, `bind()` reserves an ephemeral port for the address alone,
/// so no two sockets bound to one address can share a port, and the
/// `ip_local_port_range` caps the sockets bound to it at once, whatever
/// they connect to. With it, `bind()` only records the address and
/// `connect()` picks the port for the whole 4-tuple, as it does for an
/// unbound socket: a port is then shared by connections to different
/// destinations. The option is at the `SOL_IP` level but Linux (4.2 and
/// later) honours it on IPv6 sockets too, since `ipv6_setsockopt` passes
/// `SOL_IP` options on to IPv4's handler; older kernels fail with
/// `ENOPROTOOPT`.
///
/// # Errors
/// The `setsockopt` error.
pub(crate) fn set_bind_address_no_port(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int_option(fd, libc::SOL_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)
}

/// `setsockopt` of a socket option whose value is a C `int`.
pub(super) fn set_int_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `fd` is an open descriptor borrowed for the duration of the
    // call; `value` is a valid `c_int` that outlives it, and the length
    // passed is its size, so the kernel reads exactly that int and nothing
    // else. A level or name the kernel does not know fails with an error.
    check_errno(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

/// `getsockopt` of a socket option whose value is a C `int`, for the
/// tests to see what a setter did.
#[cfg(test)]
pub(super) fn int_option(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int) -> libc::c_int {
    let mut value: libc::c_int = -1;
    let mut length = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is open for the call; `value` is a live, writable
    // `c_int` and `length` its size, so the kernel writes only inside it.
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
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr, TcpListener};
    use std::os::fd::AsFd;

    #[test]
    fn bind_address_no_port_leaves_the_port_to_connect() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let port =
            |socket: &socket2::Socket| socket.local_addr().unwrap().as_socket().unwrap().port();
        let new =
            || socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        // Without the option, bind picks a port at once.
        let plain = new();
        plain.bind(&local.into()).unwrap();
        assert_ne!(port(&plain), 0);
        let deferred = new();
        set_bind_address_no_port(deferred.as_fd()).unwrap();
        assert_eq!(
            int_option(
                deferred.as_fd(),
                libc::SOL_IP,
                libc::IP_BIND_ADDRESS_NO_PORT
            ),
            1
        );
        deferred.bind(&local.into()).unwrap();
        assert_eq!(port(&deferred), 0);
        deferred
            .connect(&listener.local_addr().unwrap().into())
            .unwrap();
        assert_ne!(port(&deferred), 0);
    }
}
