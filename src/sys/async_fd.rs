//! Registering a file descriptor with tokio's reactor: the raw engine's
//! sockets, which no tokio type wraps.
//!
//! tokio 1.54 deprecated the safe `AsyncFd::new` as unsound for a type
//! whose `as_raw_fd` may change or close under it, and made
//! `AsyncFd::register` `unsafe` instead; its contract holds for an
//! `OwnedFd`, so the one call lives here, with the reason.

use std::io;
use std::os::fd::OwnedFd;
use tokio::io::unix::AsyncFd;

/// `fd` registered with the current runtime's reactor, for readiness.
/// Must be called on a tokio runtime (it panics otherwise, as tokio does).
pub(crate) fn register_with_reactor(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is a valid, open descriptor that it alone
    // closes, when dropped; it returns the same descriptor from every
    // `as_raw_fd` call, and the `AsyncFd` owns it until it is dropped, so
    // it stays open and the same for the `AsyncFd`'s whole life.
    unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[tokio::test]
    async fn a_registered_descriptor_stays_the_same_and_reports_readiness() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let raw = b.as_raw_fd();
        let registered = register_with_reactor(OwnedFd::from(b)).unwrap();
        assert_eq!(registered.as_raw_fd(), raw);
        std::io::Write::write_all(&mut &a, b"x").unwrap();
        let ready = tokio::time::timeout(std::time::Duration::from_secs(5), registered.readable())
            .await
            .expect("readable within 5 s")
            .unwrap();
        drop(ready);
    }
}
