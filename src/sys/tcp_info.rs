//! `getsockopt(TCP_INFO)`, the kernel's RTT sample and retransmit count of
//! a connection just established, read once per successful probe. socket2
//! and tokio have no getter for it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use super::check_errno;

/// What `TCP_INFO` says about a connection right after its SYN-ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HandshakeInfo {
    /// The kernel's smoothed RTT (`tcpi_rtt`), which right after the
    /// handshake is its one sample, the SYN/SYN-ACK exchange. `None` when
    /// the kernel took no sample. Microsecond resolution, except after a
    /// retransmitted SYN: Karn's rule forbids timing the exchange, and the
    /// sample then comes from TCP timestamps, in whole milliseconds, at
    /// least 1 ms (measured on 6.18 over loopback: 1000 µs, against 6–8 µs
    /// without the retransmit); without timestamps there is none.
    pub(crate) rtt: Option<Duration>,
    /// How many times the SYN was sent again before the SYN-ACK came
    /// (`tcpi_total_retrans`). Measured on 6.18 with the first SYN
    /// dropped: `tcpi_total_retrans` is 1 and `tcpi_retransmits` is 0,
    /// because the ACK of the SYN resets the latter (it counts the
    /// retransmits of the segment now outstanding, not of the connection).
    pub(crate) syn_retransmits: u32,
    /// Time since the SYN-ACK (`tcpi_last_data_sent`): read at the
    /// wake-up, it says how late the exporter woke up. The kernel stamps
    /// `lsndtime` when the SYN-ACK completes the connect
    /// (`tcp_finish_connect`) and again only when data is sent, which a
    /// probe never does; so, unlike `tcpi_last_ack_recv`, it keeps the
    /// SYN-ACK's age when a starved probe's delayed ACK has completed the
    /// handshake and the target then greets or closes (measured on 6.18:
    /// read 300 ms after the SYN-ACK, `tcpi_last_ack_recv` said 96 ms, the
    /// time since the target's greeting). Whole milliseconds (jiffies),
    /// and 0 when read at once.
    pub(crate) since_syn_ack: Duration,
    /// TCP segments received so far (`tcpi_segs_in`, Linux 4.2 and later;
    /// 0 on older kernels, whose shorter struct leaves it unwritten). At a
    /// half-open probe's wake-up it is 1, the SYN-ACK; more means the
    /// target sent again, which it does only after this host's ACK (sent
    /// by the delayed-ACK timer) or when that ACK never came for a second
    /// (a repeated SYN-ACK, which this host then ACKs at once): either way
    /// the target completed the handshake.
    pub(crate) segments_in: u32,
    /// A SYN-ACK came: the connection is established on this side, or
    /// was and the target has closed its side since (`tcpi_state` is
    /// `TCP_ESTABLISHED` or `TCP_CLOSE_WAIT`, as after a starved probe's
    /// delayed ACK let the target accept, greet and close).
    pub(crate) got_syn_ack: bool,
}

/// `tcpi_state` of an established connection (linux/tcp_states.h); the
/// libc crate defines these for Hurd only.
const TCP_ESTABLISHED: u8 = 1;
/// `tcpi_state` once the peer closed its side of an established connection.
const TCP_CLOSE_WAIT: u8 = 8;

/// Reads `TCP_INFO` of a TCP socket: see [`HandshakeInfo`].
///
/// # Errors
/// The `getsockopt` error, such as `EBADF`, or for a socket that is not
/// TCP `EOPNOTSUPP` (a UDP socket on Linux 6.18) or `ENOPROTOOPT`.
pub(crate) fn handshake_info(fd: BorrowedFd<'_>) -> io::Result<HandshakeInfo> {
    // SAFETY: tcp_info is a plain C struct of integers, valid when zeroed.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut length = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `fd` is open for the duration of the call; `info` is live and
    // writable for `length` bytes, which the kernel never exceeds (it
    // copies the smaller of that and its own struct's size, and returns
    // the length it wrote in `length`).
    check_errno(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut length,
        )
    })?;
    Ok(HandshakeInfo {
        rtt: (info.tcpi_rtt > 0).then(|| Duration::from_micros(info.tcpi_rtt.into())),
        syn_retransmits: info.tcpi_total_retrans,
        since_syn_ack: Duration::from_millis(info.tcpi_last_data_sent.into()),
        segments_in: info.tcpi_segs_in,
        got_syn_ack: matches!(info.tcpi_state, TCP_ESTABLISHED | TCP_CLOSE_WAIT),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{Ipv4Addr, TcpListener, TcpStream, UdpSocket};
    use std::os::fd::AsFd;

    #[test]
    fn tcp_info_of_a_loopback_connection_says_syn_ack_with_one_rtt_sample() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let info = handshake_info(stream.as_fd()).unwrap();
        assert!(info.got_syn_ack, "{info:?}");
        assert_eq!(info.syn_retransmits, 0, "{info:?}");
        assert_eq!(info.segments_in, 1, "{info:?}");
        assert!(
            info.rtt.is_some_and(|rtt| rtt < Duration::from_secs(1)),
            "{info:?}"
        );
        assert!(info.since_syn_ack < Duration::from_secs(5), "{info:?}");
    }

    #[test]
    fn tcp_info_still_says_syn_ack_once_the_peer_has_closed() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let mut stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        drop(listener.accept().unwrap());
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        // End of stream: the peer's FIN came, this side is in CLOSE_WAIT.
        assert_eq!(stream.read(&mut [0; 1]).unwrap(), 0);
        let info = handshake_info(stream.as_fd()).unwrap();
        assert!(info.got_syn_ack, "{info:?}");
        assert!(info.segments_in >= 2, "{info:?}");
    }

    #[test]
    fn tcp_info_of_sockets_that_got_no_syn_ack_says_so_and_of_udp_fails() {
        let unconnected =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        for fd in [unconnected.as_fd(), listener.as_fd()] {
            let info = handshake_info(fd).unwrap();
            assert!(!info.got_syn_ack, "{info:?}");
            assert_eq!((info.rtt, info.segments_in), (None, 0), "{info:?}");
        }
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let error = handshake_info(udp.as_fd()).unwrap_err();
        // EOPNOTSUPP on 6.18; ENOPROTOOPT on kernels whose UDP passed
        // unknown levels on to IPv4's handler.
        assert!(
            matches!(
                error.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::ENOPROTOOPT)
            ),
            "{error}"
        );
    }
}
