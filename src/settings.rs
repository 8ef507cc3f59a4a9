//! The exporter's settings, the home of each one's default: the binary's
//! flags and [`ExporterBuilder`](crate::ExporterBuilder) both take their
//! defaults from here.

#![forbid(unsafe_code)]

use crate::hash::fnv1a_64;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The default of `--exec.max-concurrent`.
pub(crate) const DEFAULT_MAX_EXEC: usize = 32;

/// The default of `--web.max-connections`. Prometheus servers and load
/// balancers need a few connections each; 1024 is the most descriptors
/// [`crate::runner::fd_reserve`] keeps away from probe sockets, so HTTP
/// clients cannot take the descriptors that probes need, however many
/// connect. Where the limit cannot hold it beside the probes' sockets
/// (below about 5,200), it is lowered at start
/// ([`crate::runner::connection_slots`]).
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The default of `--web.write-timeout`: long enough for any client that
/// is reading at all (the timer restarts whenever a write gets through),
/// short enough that stuck clients give back their descriptors, which
/// probes need, within a scrape interval or two.
pub(crate) const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The default of `--script-timeout`, in seconds, as in health-checker.
pub const DEFAULT_SCRIPT_TIMEOUT_SECONDS: u64 = 5;

/// `--targets.shard=i/n`: this instance probes the targets whose stable
/// hash modulo `count` is `index`. Parse it from `"i/n"`.
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

/// Settings from the command line that the handlers need.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Subtracted from the scrape timeout that Prometheus announces.
    pub(crate) timeout_offset: Duration,
    /// How many probes may run at once.
    pub(crate) max_in_flight: usize,
    /// How many `exec` commands may run at once.
    pub(crate) max_exec: usize,
    /// Which part of the scheduled targets this instance probes.
    pub(crate) shard: Shard,
    /// How many `/probe` requests the landing page remembers.
    pub(crate) history_limit: usize,
    /// How long requests in flight may take to finish after SIGTERM.
    pub(crate) shutdown_grace: Duration,
    /// Name servers that replace those of `/etc/resolv.conf`; empty for
    /// resolv.conf's own.
    pub(crate) dns_servers: Vec<SocketAddr>,
    /// How long a response write may make no progress before the
    /// connection is closed (`--web.write-timeout`).
    pub(crate) write_timeout: Duration,
    /// HTTP connections served at once (`--web.max-connections`).
    pub(crate) max_connections: usize,
    /// Whether `/config`, `/logs` and the landing page's history are off
    /// (`--web.hide-config-and-logs`).
    pub(crate) hide_config_and_logs: bool,
    /// `--web.config.file`: TLS, basic auth, headers and a rate limit;
    /// none for plain, open HTTP.
    pub(crate) web_config_file: Option<PathBuf>,
    /// The health-checker mode: every request, whatever its path, gets the
    /// answer of the group [`crate::config::HEALTH_CHECKER_GROUP`] in
    /// health-checker's words, and nothing else is served.
    pub(crate) health_checker: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            timeout_offset: Duration::from_millis(500),
            max_in_flight: 4096,
            max_exec: DEFAULT_MAX_EXEC,
            shard: Shard::ALL,
            history_limit: 100,
            shutdown_grace: Duration::from_secs(5),
            dns_servers: Vec::new(),
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            hide_config_and_logs: false,
            web_config_file: None,
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
