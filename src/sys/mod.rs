//! The one place where this crate calls libc directly or uses `unsafe`.
//!
//! Everything on the probe path goes through socket2's safe API. What is
//! left here has no safe wrapper in std, socket2 or tokio:
//!
//! - [`raise_nofile_limit`]: `getrlimit`/`setrlimit(RLIMIT_NOFILE)`. Every
//!   probe holds a socket, so the default soft limit of 1024 would cap the
//!   in-flight probes far below `--probe.max-in-flight`.
//! - [`nofile_limit`]: `getrlimit`, for `process_max_fds`.
//! - [`set_current_thread_realtime`]: `sched_setscheduler(SCHED_RR)`, the
//!   opt-in `--probe.realtime-priority` for the probe thread, so that a
//!   busy machine cannot delay a half-open close past the delayed ACK. It
//!   needs an `RLIMIT_RTPRIO` of at least 1 or `CAP_SYS_NICE`.
//! - [`clock_ticks_per_second`] and [`page_size`]: `sysconf`, to turn the
//!   tick and page counts of `/proc/self/stat` into seconds and bytes for
//!   the `process_*` metrics.
//! - [`open_for_reading_without_blocking`]: std's safe `custom_flags`, but
//!   with libc's flag values, which std does not name.
//! - [`kill_process_group`]: `kill(-pgid, SIGKILL)`, for the `exec`
//!   prober, which starts each command in a process group of its own and
//!   kills the whole group so that no child of the command outlives the
//!   probe. std and tokio only kill the one child they started.
//! - [`set_recv_err`] and [`read_error_queue`]: `setsockopt(IP_RECVERR /
//!   IPV6_RECVERR)` and `recvmsg(MSG_ERRQUEUE)` with its control messages
//!   (`sock_extended_err`, `SO_EE_OFFENDER`), so that a failed probe can
//!   say which router sent which ICMP error. Neither socket2 nor tokio
//!   wraps them.
//! - [`set_bind_address_no_port`], `setsockopt(IP_BIND_ADDRESS_NO_PORT)`:
//!   a probe bound to a source address then gets its port at connect
//!   time. socket2 has no setter for it either.
//! - [`handshake_info`]: `getsockopt(TCP_INFO)`, the kernel's RTT sample
//!   and retransmit count of a connection just established, read once per
//!   successful probe. socket2 and tokio have no getter for it.
//! - `enter_bench_probe_netns`: `setns(CLONE_NEWNET)`, only in builds with
//!   the `bench` feature, for `bench/halfopen_under_load.sh`: it moves the
//!   probe thread into a network namespace where the kernel's delayed-ACK
//!   counter sees probes only.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

/// Opens `path` read-only with `O_NONBLOCK` and `O_NOCTTY`.
///
/// A plain open of a FIFO waits until something opens it for writing,
/// which is how a FIFO at the config path used to hang reloads; with
/// `O_NONBLOCK` the open returns at once and the caller can look at the
/// file type before reading. `O_NOCTTY` keeps a terminal device from
/// becoming the process's controlling terminal. Reads of a regular file
/// are unaffected by either flag.
///
/// # Errors
/// The `open` error.
pub fn open_for_reading_without_blocking(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// Sends `SIGKILL` to every process in the process group `pgid`.
///
/// # Errors
/// The `kill` error: `ESRCH` when no process is left in the group, and
/// `EINVAL` for a `pgid` of 0, 1 or over `i32::MAX`, which would name the
/// caller's own group, every process, or nothing.
pub fn kill_process_group(pgid: u32) -> io::Result<()> {
    let pgid = i32::try_from(pgid)
        .ok()
        .filter(|&pgid| pgid > 1)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: kill only sends a signal and touches no memory of ours. A
    // negative pid names a process group; `pgid > 1` rules out -1 (every
    // process we may signal) and 0 (our own group), so at worst the call
    // signals a group that no longer exists and fails with ESRCH.
    if unsafe { libc::kill(-pgid, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads the soft and hard `RLIMIT_NOFILE`.
///
/// # Errors
/// The `getrlimit` error, which Linux only returns for a bad resource id.
pub fn nofile_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` that outlives the call,
    // and RLIMIT_NOFILE is a valid resource id.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
///
/// # Errors
/// The `getrlimit` or `setrlimit` error.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let (soft, hard) = nofile_limit()?;
    if soft >= hard {
        return Ok(soft);
    }
    let limit = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: `limit` is a valid `rlimit` read for the duration of the call;
    // raising the soft limit up to the unchanged hard limit needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(hard)
}

/// Puts the calling thread under the real-time `SCHED_RR` policy at the
/// lowest real-time priority, 1: above every ordinary (CFS) thread, below
/// the kernel's own real-time threads.
///
/// # Errors
/// The `sched_setscheduler` error: `EPERM` when neither `RLIMIT_RTPRIO`
/// nor `CAP_SYS_NICE` allows it.
pub fn set_current_thread_realtime() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: `param` is a valid `sched_param` that outlives the call, and
    // pid 0 names the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &raw const param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `sysconf(_SC_CLK_TCK)`: the unit of the CPU times in `/proc/self/stat`.
#[must_use]
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value; any name is allowed
    // and an unknown one returns -1, which we replace by Linux's 100.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// `sysconf(_SC_PAGESIZE)`: the unit of the resident size in `/proc/self/stat`.
#[must_use]
pub fn page_size() -> u64 {
    // SAFETY: as above; -1 falls back to the common 4 KiB page.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// Benchmark-only, built with `--features bench` by
/// `bench/halfopen_under_load.sh`: when the environment
/// variable `SYNACK_BENCH_PROBE_NETNS` names a network namespace file
/// (`/run/netns/NAME`), moves the calling thread into it, so that the
/// probe sockets it creates from then on live there while the HTTP
/// sockets, accepted from a listener bound before, stay where they were.
/// That makes the namespace's `TcpExtDelayedACKs` count probes only: plain
/// HTTP load moves the host's counter by itself. Does nothing without the
/// variable; a failure is logged, not fatal.
#[cfg(feature = "bench")]
pub fn enter_bench_probe_netns() {
    let Some(path) = std::env::var_os("SYNACK_BENCH_PROBE_NETNS") else {
        return;
    };
    let result = File::open(&path).and_then(|file| {
        // SAFETY: the descriptor is open for the duration of the call, and
        // setns only changes the calling thread's network namespace.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    });
    match result {
        Ok(()) => tracing::warn!(
            netns = ?path,
            "benchmark: probe sockets of this thread live in this network namespace"
        ),
        Err(error) => tracing::error!(
            netns = ?path,
            err = %error,
            "benchmark: cannot enter the network namespace"
        ),
    }
}

/// Asks the kernel to queue the ICMP errors a socket receives on its
/// error queue (`IP_RECVERR`, or `IPV6_RECVERR` for an IPv6 socket), so
/// that [`read_error_queue`] can say which router sent what. socket2 has
/// no setter for either option.
///
/// # Errors
/// The `setsockopt` error.
pub fn set_recv_err(fd: BorrowedFd<'_>, ipv6: bool) -> io::Result<()> {
    let (level, name) = if ipv6 {
        (libc::SOL_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::SOL_IP, libc::IP_RECVERR)
    };
    set_int_option(fd, level, name, 1)
}

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
pub fn set_bind_address_no_port(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int_option(fd, libc::SOL_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)
}

/// `setsockopt` of a socket option whose value is a C `int`.
fn set_int_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `fd` is an open descriptor borrowed for the duration of the
    // call; `value` is a valid `c_int` that outlives it, and the length
    // passed is its size, so the kernel reads exactly that int and nothing
    // else. A level or name the kernel does not know fails with an error.
    let result = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One entry of a socket's error queue: the kernel's `sock_extended_err`
/// and, from `SO_EE_OFFENDER`, the address of the host that sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueuedError {
    /// `ee_errno`: the errno the error stands for, such as `EHOSTUNREACH`.
    pub errno: u32,
    /// `ee_origin`: `SO_EE_ORIGIN_ICMP` (2), `SO_EE_ORIGIN_ICMP6` (3),
    /// `SO_EE_ORIGIN_LOCAL` (1), ...
    pub origin: u8,
    /// `ee_type`: the ICMP or ICMPv6 type.
    pub icmp_type: u8,
    /// `ee_code`: the ICMP or ICMPv6 code.
    pub code: u8,
    /// The sender of the ICMP message, when the kernel gives one.
    pub offender: Option<IpAddr>,
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
pub fn read_error_queue(fd: BorrowedFd<'_>) -> io::Result<Option<QueuedError>> {
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
    let received = unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &raw mut message,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    };
    if received < 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::EAGAIN) {
            return Ok(None);
        }
        return Err(error);
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
    let result = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut length,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
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
    use std::io::{BufRead, BufReader, Read};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
    use std::os::fd::AsFd;
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Command, Stdio};
    use std::time::Instant;

    /// `getsockopt` of an `int` option, to see what a setter did.
    fn int_option(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = -1;
        let mut length = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `fd` is open for the call; `value` is a live, writable
        // `c_int` and `length` its size, so the kernel writes only inside it.
        let result = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (&raw mut value).cast(),
                &raw mut length,
            )
        };
        assert_eq!(result, 0, "getsockopt: {}", io::Error::last_os_error());
        value
    }

    /// `Max open files` of `/proc/self/limits`: (soft, hard), "unlimited" as `u64::MAX`.
    fn proc_nofile_limit() -> (u64, u64) {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .expect("Max open files in /proc/self/limits");
        let mut values = line["Max open files".len()..]
            .split_whitespace()
            .map(|value| value.parse().unwrap_or(u64::MAX));
        (values.next().unwrap(), values.next().unwrap())
    }

    #[test]
    fn nofile_limit_is_what_proc_self_limits_says() {
        assert_eq!(nofile_limit().unwrap(), proc_nofile_limit());
    }

    #[test]
    fn raise_nofile_limit_lifts_the_soft_limit_to_the_hard_one() {
        let (soft, hard) = nofile_limit().unwrap();
        if soft == hard {
            // Lower the soft limit by one (no privilege needed), so that
            // the raise has something to do; no test holds that many files.
            let lower = libc::rlimit {
                rlim_cur: hard - 1,
                rlim_max: hard,
            };
            // SAFETY: `lower` is a valid `rlimit` read for the duration of
            // the call; lowering the soft limit needs no privilege.
            let result = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lower) };
            assert_eq!(result, 0, "setrlimit: {}", io::Error::last_os_error());
            assert_eq!(proc_nofile_limit(), (hard - 1, hard));
        }
        assert_eq!(raise_nofile_limit().unwrap(), hard);
        assert_eq!(proc_nofile_limit(), (hard, hard));
        // At the hard limit already: nothing to do, the same answer.
        assert_eq!(raise_nofile_limit().unwrap(), hard);
        assert_eq!(proc_nofile_limit(), (hard, hard));
    }

    #[test]
    fn realtime_puts_the_calling_thread_under_sched_rr_at_priority_1_or_says_eperm() {
        // A thread of its own, which ends with the test: no other thread
        // of the test binary changes policy.
        let (result, policy, priority) = std::thread::spawn(|| {
            let result = set_current_thread_realtime();
            // SAFETY: pid 0 names the calling thread; the call only reads.
            let policy = unsafe { libc::sched_getscheduler(0) };
            let mut param = libc::sched_param { sched_priority: -1 };
            // SAFETY: `param` is a live, writable `sched_param`.
            let read = unsafe { libc::sched_getparam(0, &raw mut param) };
            assert_eq!(read, 0, "sched_getparam: {}", io::Error::last_os_error());
            (result, policy, param.sched_priority)
        })
        .join()
        .unwrap();
        match result {
            Ok(()) => assert_eq!((policy, priority), (libc::SCHED_RR, 1)),
            Err(error) => {
                assert_eq!(error.raw_os_error(), Some(libc::EPERM), "{error}");
                assert_eq!((policy, priority), (libc::SCHED_OTHER, 0));
            }
        }
    }

    /// The value of `key` in the auxiliary vector the kernel gave this process.
    fn auxv(key: libc::c_ulong) -> u64 {
        let bytes = std::fs::read("/proc/self/auxv").unwrap();
        let word = size_of::<libc::c_ulong>();
        let words: Vec<u64> = bytes
            .chunks_exact(word)
            .map(|chunk| libc::c_ulong::from_ne_bytes(chunk.try_into().unwrap()))
            .collect();
        words
            .chunks_exact(2)
            .find(|pair| pair[0] == key)
            .map(|pair| pair[1])
            .unwrap_or_else(|| panic!("no {key} in /proc/self/auxv"))
    }

    #[test]
    fn clock_ticks_and_page_size_are_the_kernels() {
        assert_eq!(clock_ticks_per_second(), auxv(libc::AT_CLKTCK));
        assert_eq!(page_size(), auxv(libc::AT_PAGESZ));
    }

    #[test]
    fn files_open_read_only_without_blocking_and_read_as_usual() {
        let mut file = open_for_reading_without_blocking(Path::new("/proc/self/stat")).unwrap();
        // SAFETY: the descriptor is open for the call; F_GETFL only reads.
        let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
        assert!(flags >= 0, "fcntl: {}", io::Error::last_os_error());
        assert_eq!(flags & libc::O_ACCMODE, libc::O_RDONLY);
        assert_eq!(flags & libc::O_NONBLOCK, libc::O_NONBLOCK);
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert!(
            text.starts_with(&format!("{} (", std::process::id())),
            "{text}"
        );
        let missing = open_for_reading_without_blocking(Path::new("/nonexistent/synack"));
        assert_eq!(missing.unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    /// Waits (at most 5 s) until `pid` has exited: gone, or a zombie.
    fn exited(pid: u32) -> bool {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(stat) if stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z')) => {
                    return true;
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        false
    }

    #[test]
    fn kill_process_group_kills_the_command_and_its_children() {
        // A shell in a group of its own that starts a child, says its
        // pid, and waits for it.
        let mut shell = Command::new("sh")
            .args(["-c", "sleep 30 & echo $!; wait"])
            .process_group(0)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(shell.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let sleeper: u32 = line.trim().parse().unwrap();
        kill_process_group(shell.id()).unwrap();
        assert_eq!(shell.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert!(
            exited(sleeper),
            "the shell's child {sleeper} outlived the kill"
        );
    }

    #[test]
    fn kill_process_group_of_a_group_that_is_gone_says_esrch() {
        let mut sleeper = Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        kill_process_group(sleeper.id()).unwrap();
        assert_eq!(sleeper.wait().unwrap().signal(), Some(libc::SIGKILL));
        // Reaped, so no process is left in the group.
        let error = kill_process_group(sleeper.id()).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ESRCH), "{error}");
    }

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
    fn the_error_queue_is_read_at_most_eight_entries_at_a_time() {
        let (socket, closed) = udp_to_a_closed_port(Ipv4Addr::LOCALHOST.into());
        // Ten datagrams, ten ICMP errors. A send may fail with the error
        // of the one before (the socket's pending error): send again.
        let mut sent = 0;
        for _ in 0..100 {
            if socket.send_to(b"synack", closed).is_ok() {
                sent += 1;
                if sent == 10 {
                    break;
                }
            }
        }
        assert_eq!(sent, 10);
        // Loopback delivers the errors as it sends; give them time anyway.
        std::thread::sleep(Duration::from_millis(100));
        assert!(read_error_queue(socket.as_fd()).unwrap().is_some());
        assert!(read_error_queue(socket.as_fd()).unwrap().is_some());
        assert_eq!(read_error_queue(socket.as_fd()).unwrap(), None);
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
