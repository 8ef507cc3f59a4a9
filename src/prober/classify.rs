//! From an OS error to a [`Reason`](super::Reason) and a readable errno name.
//!
//! The mapping is what the kernel reports after a non-blocking connect
//! (measured on Linux 6.x, see the README's reasons table): an RST gives
//! `ECONNREFUSED`; ICMP and routing answers give `EHOSTUNREACH`,
//! `ENETUNREACH`, `EACCES` (ICMPv6 admin-prohibited), `EPERM` (a local
//! firewall) or `EINVAL` (a blackhole route). Anything else is the
//! exporter's own trouble (`EMFILE`, `EADDRNOTAVAIL`, ...) and counts as
//! `local`, so that it never looks like the target's fault.

#![forbid(unsafe_code)]

use super::Reason;
use std::io;

/// Which reason an OS error from socket, bind or connect stands for.
#[must_use]
pub fn reason_for(error: &io::Error) -> Reason {
    match error.raw_os_error() {
        Some(libc::ECONNREFUSED | libc::ECONNRESET) => Reason::Refused,
        Some(libc::ETIMEDOUT) => Reason::Timeout,
        Some(
            libc::EHOSTUNREACH
            | libc::ENETUNREACH
            | libc::EACCES
            | libc::EPERM
            | libc::EINVAL
            | libc::ENETDOWN
            | libc::EHOSTDOWN
            | libc::ENONET
            | libc::EPROTO,
        ) => Reason::Unreachable,
        _ => Reason::Local,
    }
}

/// The symbolic name and the description of an OS error, as
/// `ECONNREFUSED (Connection refused)`.
#[must_use]
pub fn describe(error: &io::Error) -> String {
    let Some(code) = error.raw_os_error() else {
        return error.to_string();
    };
    // io::Error's text is "Connection refused (os error 111)"; keep the words.
    let text = io::Error::from_raw_os_error(code).to_string();
    let meaning = text.split(" (os error").next().unwrap_or(&text);
    format!("{} ({meaning})", errno_name(code))
}

fn errno_name(code: i32) -> String {
    let name = match code {
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::EINVAL => "EINVAL",
        libc::ENETDOWN => "ENETDOWN",
        libc::EHOSTDOWN => "EHOSTDOWN",
        libc::ENONET => "ENONET",
        libc::EPROTO => "EPROTO",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::ENOBUFS => "ENOBUFS",
        libc::ENOMEM => "ENOMEM",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        _ => return format!("errno {code}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn kernel_answers_map_to_reasons() {
        assert_eq!(reason_for(&os(libc::ECONNREFUSED)), Reason::Refused);
        assert_eq!(reason_for(&os(libc::ETIMEDOUT)), Reason::Timeout);
        for code in [
            libc::EHOSTUNREACH,
            libc::ENETUNREACH,
            libc::EACCES,
            libc::EINVAL,
        ] {
            assert_eq!(reason_for(&os(code)), Reason::Unreachable, "errno {code}");
        }
        for code in [
            libc::EMFILE,
            libc::ENFILE,
            libc::EADDRNOTAVAIL,
            libc::ENOBUFS,
        ] {
            assert_eq!(reason_for(&os(code)), Reason::Local, "errno {code}");
        }
    }

    #[test]
    fn describe_names_the_errno_and_its_meaning() {
        assert_eq!(
            describe(&os(libc::ECONNREFUSED)),
            "ECONNREFUSED (Connection refused)"
        );
    }
}
