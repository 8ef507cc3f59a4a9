//! The crate's boundary with the kernel: the one place where it calls
//! libc directly or uses `unsafe`, kept private to the crate as mio keeps
//! its `sys` module.
//!
//! Everything on the probe path goes through socket2's safe API. What is
//! left here has no safe wrapper in std, socket2 or tokio, one file per
//! resource:
//!
//! | file | calls | for |
//! |---|---|---|
//! | `rlimit.rs` | `getrlimit`, `setrlimit(RLIMIT_NOFILE)` | [`raise_nofile_limit`] at start, [`nofile_limit`] for the slots and `process_max_fds` |
//! | `route_source.rs` | `connect(AF_UNSPEC)` | [`disconnect`]: the raw engine's one UDP socket that asks the routing table for IPv4 source addresses |
//! | `scheduling.rs` | `sched_setscheduler(SCHED_RR)` | [`set_current_thread_realtime`], `--probe.realtime-priority` |
//! | `sysconf.rs` | `sysconf` | [`clock_ticks_per_second`] and [`page_size`], the units of `/proc/self/stat` |
//! | `file.rs` | `open` with `O_NONBLOCK`, `O_NOCTTY` | [`open_for_reading_without_blocking`], the config and web config files; [`open_for_appending_without_blocking`], `--events.file` |
//! | `process_group.rs` | `kill(-pgid, SIGKILL)` | [`kill_process_group`], the `exec` prober's deadline |
//! | `socket_option.rs` | `setsockopt(IP_BIND_ADDRESS_NO_PORT)` | [`set_bind_address_no_port`], probes from a source address |
//! | `async_fd.rs` | `AsyncFd::register` (tokio) | [`register_with_reactor`]: the raw engine's sockets, with tokio's reactor |
//! | `error_queue.rs` | `setsockopt(IP_RECVERR)`, `recvmsg(MSG_ERRQUEUE)` | [`set_recv_err`] and [`read_error_queue`], which router sent which ICMP error |
//! | `tcp_info.rs` | `getsockopt(TCP_INFO)` | [`handshake_info`], the kernel's view of a handshake |
//! | `raw_socket.rs` | `socket(SOCK_RAW)`, `setsockopt(SO_ATTACH_FILTER, ICMP6_FILTER, ...)`, `sendmmsg`, `recvmmsg` | [`open_raw_socket`], [`attach_filter`], [`send_batch`], [`receive_batch`]: the raw-SYN engine (`engine: raw`); [`can_open_raw`], its `CAP_NET_RAW` check |
//! | `netns.rs` | `setns(CLONE_NEWNET)` | `enter_bench_probe_netns`, only with the `bench` feature |
//!
//! # The rules of the boundary
//!
//! - Layer 0 (the table in the crate docs): this module uses std and
//!   libc, and nothing of the crate above it. The rest of the
//!   crate calls in through the names re-exported here
//!   (`crate::sys::nofile_limit`), never through a file, so a file can
//!   be split or renamed without its callers knowing.
//! - Nothing here is the library's API: every item is `pub(crate)` at
//!   most (`unreachable_pub` is denied below).
//! - Every function is safe to call with any argument: it takes safe
//!   types (a `BorrowedFd`, not a raw descriptor; a `u32` process group
//!   that it checks) so that no caller can break what the SAFETY notes
//!   assume.
//! - Every `unsafe` block says why it is sound in a `// SAFETY:` comment
//!   (`clippy::undocumented_unsafe_blocks` is denied below).
//! - A call that reports failure by returning -1 and setting `errno`
//!   goes through [`check_errno`], which turns it into an `io::Result`; a
//!   test fails if a file here reads `errno` itself.
//! - Each file tests what runs without privilege, against what the
//!   kernel says elsewhere (`/proc`, `getsockopt`) where it can.

#![deny(unreachable_pub, clippy::undocumented_unsafe_blocks)]

use std::io;

mod async_fd;
mod error_queue;
mod file;
#[cfg(feature = "bench")]
mod netns;
mod process_group;
mod raw_socket;
mod rlimit;
mod route_source;
mod scheduling;
mod socket_option;
mod sysconf;
mod tcp_info;

pub(crate) use async_fd::register_with_reactor;
pub(crate) use error_queue::{read_error_queue, set_recv_err};
pub(crate) use file::{open_for_appending_without_blocking, open_for_reading_without_blocking};
#[cfg(feature = "bench")]
pub(crate) use netns::enter_bench_probe_netns;
pub(crate) use process_group::kill_process_group;
#[cfg(test)]
pub(crate) use raw_socket::test_support as raw_test_support;
// Used by the engine (lead).
#[allow(unused_imports)]
pub(crate) use raw_socket::{
    BpfInstruction, Incoming, MAX_BATCH, Outgoing, RAW_BUFFER, RawKind, attach_filter,
    can_open_raw, open_raw_socket, receive_batch, send_batch,
};
pub(crate) use rlimit::{nofile_limit, raise_nofile_limit};
pub(crate) use route_source::disconnect;
pub(crate) use scheduling::set_current_thread_realtime;
pub(crate) use socket_option::set_bind_address_no_port;
pub(crate) use sysconf::{clock_ticks_per_second, page_size};
pub(crate) use tcp_info::{HandshakeInfo, handshake_info};

/// What a libc call returns when it says failure by -1 and the reason by
/// `errno`: a `c_int` for most calls, a `ssize_t` for `recvmsg`.
trait MinusOneOnError: Copy + PartialEq {
    /// The failure value, -1.
    const MINUS_ONE: Self;
}

impl MinusOneOnError for libc::c_int {
    const MINUS_ONE: Self = -1;
}

impl MinusOneOnError for libc::ssize_t {
    const MINUS_ONE: Self = -1;
}

/// The check after every libc call here that fails by -1 and `errno`
/// (std's `cvt`, mio's `syscall!`): `result` when it is anything else,
/// or else the error `errno` holds, read at once, before another call can
/// overwrite it.
///
/// A function and not a macro, so that the call itself stays at the call
/// site in an `unsafe` block of its own, under its own SAFETY note:
///
/// ```ignore
/// // SAFETY: ...
/// check_errno(unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &raw const param) })?;
/// ```
///
/// # Errors
/// The `errno` of the call, when it returned -1.
fn check_errno<T: MinusOneOnError>(result: T) -> io::Result<T> {
    if result == T::MINUS_ONE {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn check_errno_passes_results_through_and_turns_minus_one_into_errno() {
        assert_eq!(check_errno(0).unwrap(), 0);
        assert_eq!(check_errno(7_isize).unwrap(), 7);
        // SAFETY: close of a descriptor that cannot be open touches nothing.
        let error = check_errno(unsafe { libc::close(-1) }).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EBADF), "{error}");
        let mut byte = 0_u8;
        // SAFETY: `byte` is live and writable for the one byte asked.
        let error = check_errno(unsafe { libc::read(-1, (&raw mut byte).cast(), 1) }).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EBADF), "{error}");
    }

    #[test]
    fn errno_is_read_by_check_errno_alone() {
        // Built so that this line does not contain it.
        let needle = ["last_os", "_error"].concat();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sys");
        let (mut files, mut found) = (0, Vec::new());
        for entry in std::fs::read_dir(&dir).unwrap() {
            files += 1;
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for (number, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                if code.contains(&needle) {
                    found.push(format!("{}:{}", path.display(), number + 1));
                }
            }
        }
        assert!(files >= 9, "read only {files} files in {}", dir.display());
        assert!(
            found.len() == 1 && found[0].contains("mod.rs"),
            "errno read outside check_errno: {found:#?}"
        );
    }
}
