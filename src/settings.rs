//! The exporter's settings: the default of each, declared here once and
//! taken by [`ExporterBuilder`](crate::ExporterBuilder) and by the
//! `synack_exporter` binary's flags alike, and the types they take
//! ([`Shard`]).

#![forbid(unsafe_code)]

use crate::hash::fnv1a_64;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The default of `--timeout-offset`: subtracted from the scrape timeout
/// that Prometheus announces, so that the answer arrives before
/// Prometheus gives up.
pub const DEFAULT_TIMEOUT_OFFSET: Duration = Duration::from_millis(500);

/// The default of `--probe.max-in-flight`, lowered at start when the open
/// file limit cannot hold that many sockets.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;

/// The default of `--exec.max-concurrent`.
pub const DEFAULT_MAX_EXEC: usize = 32;

/// The default of `--probe.max-sessions`: `prober: tcp` probes with TLS
/// or `query_response` at once, each holding about 100 KiB at most (a
/// 64 KiB line buffer and rustls' buffers), so about 25 MiB at the limit.
pub const DEFAULT_MAX_SESSIONS: usize = 256;

/// The default of `--probe.raw-source-ports`: the source ports of the
/// raw engine (`engine: raw`), held as probes need them. Above Linux's
/// ephemeral range (32768–60999), so the kernel never picks them for
/// outgoing connections, and 4536 of them: more than
/// [`DEFAULT_MAX_IN_FLIGHT`], one per raw probe in flight.
pub const DEFAULT_RAW_SOURCE_PORTS: std::ops::RangeInclusive<u16> = 61000..=65535;

/// The default of `--targets.shard`: one instance probing every scheduled
/// target.
pub const DEFAULT_SHARD: Shard = Shard::ALL;

/// The default of `--history.limit`.
pub const DEFAULT_HISTORY_LIMIT: usize = 100;

/// The default of `--web.shutdown-grace`.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The default of `--web.write-timeout`: long enough for any client that
/// is reading at all (the timer restarts whenever a write gets through),
/// short enough that stuck clients give back their descriptors, which
/// probes need, within a scrape interval or two.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The default of `--web.max-connections`. Prometheus servers and load
/// balancers need a few connections each; 1024 is the most descriptors
/// kept away from probe sockets, so HTTP clients cannot take the
/// descriptors that probes need, however many connect. Where the open
/// file limit cannot hold it beside the probes' sockets (below about
/// 5,200), it is lowered at start (`runner::fd_reserve` and
/// `runner::connection_slots`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The default of the health-checker mode's `--script-timeout`, in
/// seconds, as in health-checker.
pub const DEFAULT_SCRIPT_TIMEOUT_SECONDS: u64 = 5;

/// `--targets.shard=i/n`, [`ExporterBuilder::shard`](crate::ExporterBuilder::shard):
/// this instance probes the scheduled targets whose stable hash modulo `n`
/// is `i`. Parse it from `"i/n"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Which part this instance takes, `0..count`.
    pub(crate) index: u64,
    /// Into how many parts the targets are split, at least 1.
    pub(crate) count: u64,
}

impl Shard {
    /// One instance probing everything.
    pub const ALL: Self = Self { index: 0, count: 1 };

    /// Whether this shard probes `target`.
    pub(crate) fn owns(self, target: &str) -> bool {
        fnv1a_64(target.as_bytes()) % self.count == self.index
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parsed = text.split_once('/').and_then(|(index, count)| {
            Some((index.parse::<u64>().ok()?, count.parse::<u64>().ok()?))
        });
        match parsed {
            Some((index, count)) if count > 0 && index < count => Ok(Self { index, count }),
            _ => Err(format!(
                "{text:?} is not a shard: write i/n with 0 <= i < n, e.g. 0/3 for the first of three replicas"
            )),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What an [`ExporterBuilder`](crate::ExporterBuilder) sets, and the
/// handlers read. Each field is set by the builder's method of the same
/// name, whose documentation says what it does, and defaults to the
/// constant of this module named after it.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) timeout_offset: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) max_exec: usize,
    pub(crate) max_sessions: usize,
    pub(crate) raw_source_ports: std::ops::RangeInclusive<u16>,
    pub(crate) shard: Shard,
    pub(crate) history_limit: usize,
    pub(crate) shutdown_grace: Duration,
    /// Empty for those of `/etc/resolv.conf`.
    pub(crate) dns_servers: Vec<SocketAddr>,
    pub(crate) write_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) hide_config_and_logs: bool,
    /// None for plain, open HTTP.
    pub(crate) web_config_file: Option<PathBuf>,
    /// None for no events file.
    pub(crate) events_file: Option<PathBuf>,
    pub(crate) health_checker: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            timeout_offset: DEFAULT_TIMEOUT_OFFSET,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_exec: DEFAULT_MAX_EXEC,
            max_sessions: DEFAULT_MAX_SESSIONS,
            raw_source_ports: DEFAULT_RAW_SOURCE_PORTS,
            shard: DEFAULT_SHARD,
            history_limit: DEFAULT_HISTORY_LIMIT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            dns_servers: Vec::new(),
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            hide_config_and_logs: false,
            web_config_file: None,
            events_file: None,
            health_checker: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_partition() {
        assert_eq!("1/3".parse::<Shard>(), Ok(Shard { index: 1, count: 3 }));
        for bad in ["3/3", "1", "a/b", "0/0", "-1/2", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad:?}");
        }
        let shards: Vec<Shard> = (0..3).map(|index| Shard { index, count: 3 }).collect();
        for port in 1..200 {
            let target = format!("127.0.0.1:{port}");
            assert_eq!(shards.iter().filter(|shard| shard.owns(&target)).count(), 1);
        }
    }
}
