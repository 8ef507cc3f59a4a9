//! Reading a file a user names, within limits: the main config, the web
//! config and the certificate, key and CA files it names all go through
//! [`read_bounded`].
//!
//! A path may name a FIFO (opening it for reading waits for a writer, for
//! ever), a device (`/dev/zero` never ends) or a file far larger than any
//! config. So the path's type and size are checked before it is opened;
//! it is opened with `O_NONBLOCK`, which makes even a FIFO put there
//! meanwhile open at once; the type and size are checked again on what
//! was opened, in case the path was replaced in between; and the read
//! takes at most one byte over the limit, which tells a file that grew.

#![forbid(unsafe_code)]

use std::fmt;
use std::io::{self, Read as _};
use std::path::Path;

const MIB: u64 = 1024 * 1024;

/// Why a file was not read.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// It could not be opened or read: missing, no permission...
    Unreadable(std::io::Error),
    /// Not a regular file: what it is instead ("a FIFO", "a device"...).
    NotRegular(&'static str),
    /// Over the limit.
    TooLarge {
        /// Its size, or the bytes read when it grew during the read.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

impl fmt::Display for Refusal {
    /// A sentence without advice; each caller adds its own.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable(error) => match error.kind() {
                io::ErrorKind::NotFound => write!(f, "cannot read the file: no such file"),
                io::ErrorKind::PermissionDenied => write!(
                    f,
                    "cannot read the file: permission denied to the exporter's user"
                ),
                // io::Error says "... (os error 5)": keep the words.
                _ => {
                    let text = error.to_string();
                    let words = text.split(" (os error").next().unwrap_or(&text);
                    write!(f, "cannot read the file: {words}")
                }
            },
            Self::NotRegular(what) => write!(f, "the path is {what}, not a regular file"),
            Self::TooLarge { size, limit } => {
                write!(
                    f,
                    "the file is {size} bytes, more than the limit of {limit} bytes"
                )?;
                if limit.is_multiple_of(MIB) {
                    write!(f, " ({})", in_mebibytes(*limit))?;
                }
                Ok(())
            }
        }
    }
}

/// `bytes` as "64 MiB", or as "N bytes" when not a whole number of MiB.
pub(crate) fn in_mebibytes(bytes: u64) -> String {
    if bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Reads the regular file at `path` of at most `limit` bytes, without
/// ever blocking on what the path names (see the module docs).
///
/// # Errors
/// Why it was not read.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, Refusal> {
    // The type and size are checked on the path first, so that a FIFO or
    // a device is not even opened, and again on what was opened, in case
    // the path was replaced in between.
    check(
        &std::fs::metadata(path).map_err(Refusal::Unreadable)?,
        limit,
    )?;
    let file = crate::sys::open_for_reading_without_blocking(path).map_err(Refusal::Unreadable)?;
    let opened = file.metadata().map_err(Refusal::Unreadable)?;
    check(&opened, limit)?;
    let mut bytes = Vec::with_capacity(usize::try_from(opened.len()).unwrap_or(0));
    // One byte more than the limit tells a file that grew since the check.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(Refusal::Unreadable)?;
    let size = bytes.len() as u64;
    if size > limit {
        return Err(Refusal::TooLarge { size, limit });
    }
    Ok(bytes)
}

/// Refuses what is not a regular file, or is over `limit`.
fn check(metadata: &std::fs::Metadata, limit: u64) -> Result<(), Refusal> {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    if kind.is_file() {
        return if metadata.len() > limit {
            Err(Refusal::TooLarge {
                size: metadata.len(),
                limit,
            })
        } else {
            Ok(())
        };
    }
    Err(Refusal::NotRegular(if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_directories_are_refused_and_a_file_within_the_limit_is_read() {
        assert!(matches!(
            read_bounded(Path::new("/dev/zero"), 1024),
            Err(Refusal::NotRegular("a device"))
        ));
        assert!(matches!(
            read_bounded(Path::new("/"), 1024),
            Err(Refusal::NotRegular("a directory"))
        ));
        let dir = std::env::temp_dir().join(format!("synack-bounded-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("file");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read_bounded(&path, 5).unwrap(), b"12345");
        let refused = read_bounded(&path, 4).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the file is 5 bytes, more than the limit of 4 bytes"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn limits_are_said_in_mebibytes_when_whole() {
        assert_eq!(in_mebibytes(64 * 1024 * 1024), "64 MiB");
        assert_eq!(in_mebibytes(1000), "1000 bytes");
    }
}
