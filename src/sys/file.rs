//! Opening a file for reading (or appending) without blocking: std's safe
//! `custom_flags`, with libc's flag values, which std does not name. No
//! `unsafe` here but in the tests.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

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
pub(crate) fn open_for_reading_without_blocking(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// Opens `path` for appending, creating it (mode 0640) if absent, with
/// `O_NONBLOCK` and `O_NOCTTY`: a FIFO without a reader fails at once
/// (`ENXIO`) rather than waiting, and the caller then checks that it is a
/// regular file. Appends to a regular file are unaffected by either flag.
///
/// # Errors
/// The `open` error.
pub(crate) fn open_for_appending_without_blocking(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::check_errno;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    #[test]
    fn files_open_read_only_without_blocking_and_read_as_usual() {
        let mut file = open_for_reading_without_blocking(Path::new("/proc/self/stat")).unwrap();
        // SAFETY: the descriptor is open for the call; F_GETFL only reads.
        let flags = check_errno(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) }).unwrap();
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
}
