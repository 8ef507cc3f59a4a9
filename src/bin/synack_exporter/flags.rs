//! The binary's command line: the exporter's flags, the health-checker
//! mode's, and how they become an [`ExporterBuilder`].
#![forbid(unsafe_code)]

use super::listen::ListenAddress;
use super::logging::LogFormat as LineFormat;
use clap::builder::TypedValueParser;
use clap::{Parser, Subcommand, ValueEnum};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeBounds;
use std::path::PathBuf;
use std::time::Duration;
use synack_exporter::settings::{
    DEFAULT_HISTORY_LIMIT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_EXEC, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_SESSIONS, DEFAULT_RAW_SOURCE_PORTS, DEFAULT_SCRIPT_TIMEOUT_SECONDS, DEFAULT_SHARD,
    DEFAULT_SHUTDOWN_GRACE, DEFAULT_TIMEOUT_OFFSET, DEFAULT_WRITE_TIMEOUT, Shard,
};
use synack_exporter::{ExecOptions, Exporter, ExporterBuilder, HealthChecks, PromDuration, Target};

/// The default of `--web.listen-address`: every address, on the port
/// registered for the exporter in Prometheus' list of default ports.
const LISTEN_ADDRESS: &str = ":9215";

/// Prometheus exporter that checks TCP ports with half-open probes:
/// SYN, SYN-ACK, RST. The application behind the port never sees a connection.
#[derive(Debug, Parser)]
#[command(
    name = "synack_exporter",
    version,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub(crate) struct Flags {
    /// Another way to run: `health-checker` takes gruntwork
    /// health-checker's command line.
    #[command(subcommand)]
    pub(crate) mode: Option<Mode>,

    /// YAML config file. Without it, an embedded default with modules
    /// tcp_halfopen and tcp_connect (5s timeout each) is used.
    #[arg(long = "config.file", value_name = "FILE")]
    config_file: Option<PathBuf>,

    /// Validate the config and the other flags, print "ok" (stdout) or the
    /// error (stderr), and exit 0 or 1.
    #[arg(long = "config.check")]
    pub(crate) config_check: bool,

    /// Address to serve HTTP on: ":PORT" for all addresses, or HOST:PORT;
    /// repeat to serve on several.
    #[arg(
        long = "web.listen-address",
        value_name = "ADDRESS",
        default_value = LISTEN_ADDRESS
    )]
    pub(crate) listen_address: Vec<ListenAddress>,

    /// Web config file in Prometheus exporter-toolkit's format: TLS,
    /// client certificates, basic auth, response headers, rate limit.
    /// Re-read when it or a file it names changes, and on SIGHUP.
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config_file: Option<PathBuf>,

    /// Seconds subtracted from Prometheus' scrape timeout to get the probe timeout.
    #[arg(long = "timeout-offset", value_name = "SECONDS",
          default_value_t = Seconds(DEFAULT_TIMEOUT_OFFSET), value_parser = parse_seconds)]
    timeout_offset: Seconds,

    /// Only log messages of this level or above.
    #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info)]
    pub(crate) log_level: LogLevel,

    /// Log line format.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Logfmt)]
    pub(crate) log_format: LogFormat,

    /// Probes allowed at once; more wait within their own deadline, then fail as "local".
    #[arg(long = "probe.max-in-flight", value_name = "N",
          default_value_t = DEFAULT_MAX_IN_FLIGHT, value_parser = count(1..))]
    max_in_flight: usize,

    /// Commands of exec modules allowed to run at once, within
    /// --probe.max-in-flight; more wait within their own deadline, then
    /// fail as "local".
    #[arg(long = "exec.max-concurrent", value_name = "N",
          default_value_t = DEFAULT_MAX_EXEC, value_parser = count(1..))]
    max_exec: usize,

    /// prober: tcp probes with TLS or query_response allowed at once,
    /// within --probe.max-in-flight; more wait within their own
    /// deadline, then fail as "local".
    #[arg(long = "probe.max-sessions", value_name = "N",
          default_value_t = DEFAULT_MAX_SESSIONS, value_parser = count(1..))]
    max_sessions: usize,

    /// The source ports of the raw engine (modules with engine: raw), as
    /// FIRST-LAST: one per raw probe in flight, held as probes need them
    /// by sockets that never listen. The default lies above Linux's
    /// ephemeral ports; give each exporter on one host its own range.
    #[arg(long = "probe.raw-source-ports", value_name = "FIRST-LAST",
          default_value_t = PortRange(DEFAULT_RAW_SOURCE_PORTS), value_parser = parse_port_range)]
    raw_source_ports: PortRange,

    /// Probe only the scheduled targets whose stable hash mod n is i, so
    /// that n replicas split one target list without coordination.
    #[arg(long = "targets.shard", value_name = "i/n", default_value_t = DEFAULT_SHARD)]
    shard: Shard,

    /// After SIGTERM or SIGINT, how long requests in flight may take to
    /// finish before the exporter exits (Prometheus duration).
    #[arg(long = "web.shutdown-grace", value_name = "DURATION",
          default_value_t = PromDuration::new(DEFAULT_SHUTDOWN_GRACE), value_parser = PromDuration::parse)]
    shutdown_grace: PromDuration,

    /// Run the probe thread at real-time priority (SCHED_RR 1), which keeps
    /// half-open probes invisible even beside CPU hogs of higher priority.
    /// Needs an RLIMIT_RTPRIO of at least 1 (systemd: LimitRTPRIO=1) or
    /// CAP_SYS_NICE.
    #[arg(long = "probe.realtime-priority")]
    pub(crate) realtime_priority: bool,

    /// Close a connection when writing its response makes no progress for
    /// this long (a client that stopped reading), e.g. 30s or 1m.
    #[arg(long = "web.write-timeout", value_name = "DURATION",
          default_value_t = PromDuration::new(DEFAULT_WRITE_TIMEOUT), value_parser = parse_write_timeout)]
    write_timeout: PromDuration,

    /// How many recent /probe requests are kept with their logs for the
    /// landing page and /logs. A usual one takes about 610 bytes; a log
    /// longer than 64 KiB is cut, and all of them take at most 16 MiB,
    /// the oldest dropped first to make room.
    #[arg(long = "history.limit", value_name = "N", default_value_t = DEFAULT_HISTORY_LIMIT,
          value_parser = count(0..=ExporterBuilder::MAX_HISTORY_LIMIT as i64))]
    history_limit: usize,

    /// HTTP connections served at once; past it the exporter stops
    /// accepting until some close. /probe requests may hold three quarters
    /// of them; more are answered 503 at once. The default is the most
    /// descriptors kept away from probe sockets; a low open file limit
    /// lowers it.
    #[arg(long = "web.max-connections", value_name = "N",
          default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = count(1..))]
    max_connections: usize,

    /// Turn off /config, /logs, the landing page's history of /probe
    /// requests, the module and command lines shown by debug=true, and
    /// the error in a failed /-/reload's answer (it is logged): for an
    /// exporter that others can reach without authentication.
    #[arg(long = "web.hide-config-and-logs")]
    hide_config_and_logs: bool,

    /// Write each health transition of a scheduled target (after rise or
    /// fall) to this file as one JSON line, besides the log line; rotated
    /// to FILE.1 at 10 MiB.
    #[arg(long = "events.file", value_name = "FILE")]
    events_file: Option<PathBuf>,

    /// Name server to resolve targets with, instead of those in
    /// /etc/resolv.conf (whose search domains and options still apply);
    /// repeat for several. /etc/hosts is read first either way.
    #[arg(long = "dns.server", value_name = "IP:PORT", value_parser = parse_dns_server)]
    dns_servers: Vec<SocketAddr>,
}

/// The modes other than the exporter's own.
#[derive(Debug, Subcommand)]
pub(crate) enum Mode {
    // gruntwork health-checker's command line: its checks, served on every
    // path (200 OK, else 504), with half-open port checks.
    #[command(
        about = "A simple HTTP server that will return 200 OK if the configured checks are all successful.",
        after_help = "gruntwork health-checker's command line: --port checks are half-open (SYN, SYN-ACK, RST), \
                      and the 504 names each failing check and why. See the README, \"Coming from health-checker\".",
        display_name = "synack_exporter health-checker",
        version,
        disable_help_flag = true,
        disable_version_flag = true
    )]
    HealthChecker(HealthCheckerFlags),
}

/// gruntwork health-checker's flags, with its own help texts.
#[derive(Debug, clap::Args)]
pub(crate) struct HealthCheckerFlags {
    /// The port number on which a TCP connection will be attempted.
    #[arg(
        long = "port",
        value_name = "value",
        value_parser = HealthChecks::parse_port,
        help = "[One of port/script Required] The port number on which a TCP connection will be attempted. Specify one or more times. Example: 8000"
    )]
    ports: Vec<Target>,

    /// The path to script that will be run.
    #[arg(
        long = "script",
        value_name = "value",
        value_parser = HealthChecks::parse_script,
        help = "[One of port/script Required] The path to script that will be run. Specify one or more times. Example: \"/usr/local/bin/health-check.sh --http-port 8000\""
    )]
    scripts: Vec<(String, ExecOptions)>,

    /// Timeout, in seconds, to wait for the scripts to complete.
    #[arg(
        long = "script-timeout",
        value_name = "value",
        default_value_t = DEFAULT_SCRIPT_TIMEOUT_SECONDS,
        value_parser = HealthChecks::parse_script_timeout,
        help = "[Optional] Timeout, in seconds, to wait for the scripts to complete. Example: 10"
    )]
    script_timeout: u64,

    /// Enable singleflight mode.
    #[arg(
        long = "singleflight",
        num_args = 0..=1,
        default_missing_value = "true",
        default_value_t = false,
        value_name = "true|false",
        action = clap::ArgAction::Set,
        hide_default_value = true,
        hide_possible_values = true,
        help = "[Optional] Enable singleflight mode, which makes concurrent requests share the same check."
    )]
    singleflight: bool,

    /// The IP address and port on which inbound HTTP connections will be accepted.
    #[arg(
        long = "listener",
        value_name = "value",
        default_value = HEALTH_CHECKER_LISTENER,
        help = "[Optional] The IP address and port on which inbound HTTP connections will be accepted."
    )]
    pub(crate) listener: ListenAddress,

    /// Set the log level.
    #[arg(
        long = "log-level",
        value_name = "LEVEL",
        default_value = "info",
        value_parser = parse_logrus_level,
        help = "[Optional] Set the log level to LEVEL. Must be one of: [panic fatal error warning info debug trace]"
    )]
    pub(crate) log_level: LogLevel,

    #[arg(short = 'h', long = "help", action = clap::ArgAction::Help, help = "show help")]
    help: Option<bool>,

    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version, help = "print the version")]
    version: Option<bool>,
}

/// health-checker's default `--listener`. Its README says 0.0.0.0:5000,
/// but its code (`DEFAULT_LISTENER_PORT` in commands/flags.go) listens on
/// 5500, which is where load balancers of users who kept the default look.
const HEALTH_CHECKER_LISTENER: &str = "0.0.0.0:5500";

/// health-checker's flags, and whether each takes a value.
const HEALTH_CHECKER_FLAGS: [(&str, bool); 8] = [
    ("port", true),
    ("script", true),
    ("script-timeout", true),
    ("listener", true),
    ("log-level", true),
    ("singleflight", false),
    ("help", false),
    ("version", false),
];

/// The command line with health-checker's flags written Go's way, with
/// one dash (`-port 5432`, `-port=5432`), as `--port`: health-checker
/// reads its flags with Go's flag package, which takes both, so command
/// lines written either way must work here too. Only in the
/// health-checker mode, only for its flag names, and never for a flag's
/// value (`--script -x` keeps `-x`) nor after `--`.
pub(crate) fn go_style_flags(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if args.get(1).is_none_or(|mode| mode != "health-checker") {
        return args;
    }
    let mut value_next = false;
    for arg in args.iter_mut().skip(2) {
        if std::mem::take(&mut value_next) {
            continue;
        }
        let Some(text) = arg.to_str() else {
            continue;
        };
        if text == "--" {
            break;
        }
        let Some(written) = text.strip_prefix('-') else {
            continue;
        };
        let dashed = written.strip_prefix('-');
        let (name, value) = match dashed.unwrap_or(written).split_once('=') {
            Some((name, _)) => (name, true),
            None => (dashed.unwrap_or(written), false),
        };
        let Some(&(_, takes_value)) = HEALTH_CHECKER_FLAGS.iter().find(|(flag, _)| *flag == name)
        else {
            continue;
        };
        value_next = takes_value && !value;
        if dashed.is_none() {
            *arg = format!("-{text}").into();
        }
    }
    args
}

/// A logrus level name, as health-checker's `--log-level` takes them, as
/// the nearest of ours.
fn parse_logrus_level(text: &str) -> Result<LogLevel, String> {
    match text.to_ascii_lowercase().as_str() {
        "panic" | "fatal" | "error" => Ok(LogLevel::Error),
        "warn" | "warning" => Ok(LogLevel::Warn),
        "info" => Ok(LogLevel::Info),
        "debug" | "trace" => Ok(LogLevel::Debug),
        _ => Err(format!("The log-level value \"{text}\" is invalid")),
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum LogFormat {
    Logfmt,
    Json,
}

/// `IP:PORT`, `[IPv6]:PORT`, or a bare IP for port 53.
fn parse_dns_server(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!(
        "{text:?} is not IP:PORT: write the server's address, such as 10.0.0.53:53 or [2001:db8::53]:53 \
         (a name cannot be used: it would need a name server to look it up)"
    ))
}

/// A range of ports written `FIRST-LAST`, as `--probe.raw-source-ports`
/// takes it and `--help` shows its default.
#[derive(Clone, Debug, PartialEq)]
struct PortRange(std::ops::RangeInclusive<u16>);

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0.start(), self.0.end())
    }
}

fn parse_port_range(text: &str) -> Result<PortRange, String> {
    let ports = text.split_once('-').and_then(|(first, last)| {
        Some((
            first.trim().parse::<u16>().ok()?,
            last.trim().parse::<u16>().ok()?,
        ))
    });
    match ports {
        Some((first, last)) if first >= 1 && first <= last => Ok(PortRange(first..=last)),
        _ => Err(format!(
            "{text:?} is not a range of ports: write FIRST-LAST, two ports from 1 to 65535 with \
             the first not above the last, such as 61000-65535"
        )),
    }
}

/// A count flag within `range`: read as a `u32`, as these flags always
/// were (so a bad one is told the same range), and held as the builder's
/// `usize`, so that its default is the library's constant as it is.
fn count(range: impl RangeBounds<i64>) -> impl TypedValueParser<Value = usize> {
    clap::value_parser!(u32)
        .range(range)
        .map(|count| count as usize)
}

/// A duration written in seconds, as `--timeout-offset` takes it (`0.5`),
/// and as `--help` shows its default.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

fn parse_seconds(text: &str) -> Result<Seconds, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
        .map(Seconds)
        .ok_or_else(|| format!("{text:?} is not a non-negative number of seconds"))
}

/// The bounds of `--web.write-timeout`: under a second, a client on a
/// congested link could be cut off in the middle of a scrape; over an hour,
/// a stuck client holds its descriptor and buffers for no use.
const WRITE_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(3600));

fn parse_write_timeout(text: &str) -> Result<PromDuration, String> {
    let duration = PromDuration::parse(text)?.get();
    let (low, high) = WRITE_TIMEOUT_RANGE;
    if duration < low {
        return Err(format!(
            "{text:?} is too short: use at least {}",
            PromDuration::new(low)
        ));
    }
    if duration > high {
        return Err(format!(
            "{text:?} is too long: use at most {}",
            PromDuration::new(high)
        ));
    }
    Ok(PromDuration::new(duration))
}

impl From<LogLevel> for tracing::Level {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Debug => Self::DEBUG,
            LogLevel::Info => Self::INFO,
            LogLevel::Warn => Self::WARN,
            LogLevel::Error => Self::ERROR,
        }
    }
}

impl From<LogFormat> for LineFormat {
    fn from(format: LogFormat) -> Self {
        match format {
            LogFormat::Logfmt => Self::Logfmt,
            LogFormat::Json => Self::Json,
        }
    }
}

impl Flags {
    /// The exporter these flags describe.
    pub(crate) fn exporter(&self) -> ExporterBuilder {
        let builder = Exporter::builder()
            .timeout_offset(self.timeout_offset.0)
            .max_in_flight(self.max_in_flight)
            .max_exec(self.max_exec)
            .max_sessions(self.max_sessions)
            .raw_source_ports(self.raw_source_ports.0.clone())
            .shard(self.shard)
            .history_limit(self.history_limit)
            .shutdown_grace(self.shutdown_grace.get())
            .dns_servers(self.dns_servers.clone())
            .write_timeout(self.write_timeout.get())
            .max_connections(self.max_connections)
            .hide_config_and_logs(self.hide_config_and_logs);
        let builder = match &self.web_config_file {
            Some(path) => builder.web_config_file(path),
            None => builder,
        };
        let builder = match &self.events_file {
            Some(path) => builder.events_file(path),
            None => builder,
        };
        match &self.config_file {
            Some(path) => builder.config_file(path),
            None => builder,
        }
    }
}

impl HealthCheckerFlags {
    /// The checks these flags describe.
    pub(crate) fn checks(&self) -> HealthChecks {
        HealthChecks {
            ports: self.ports.clone(),
            scripts: self.scripts.clone(),
            script_timeout: Duration::from_secs(self.script_timeout),
            single_flight: self.singleflight,
        }
    }
}

impl Flags {
    /// Exits as clap does for a bad flag (status 2) when two
    /// `--web.listen-address` name the same address, in check mode too:
    /// the second bind would fail as if another process held the port.
    pub(crate) fn check_listen_addresses(&self) {
        if let Err(message) = ListenAddress::check_distinct(&self.listen_address) {
            use clap::CommandFactory as _;
            Self::command()
                .error(clap::error::ErrorKind::ArgumentConflict, message)
                .exit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_checker_flags_may_be_written_with_one_dash_as_go_takes_them() {
        let rewritten = |args: &[&str]| -> Vec<String> {
            go_style_flags(args.iter().map(Into::into).collect())
                .into_iter()
                .map(|arg| arg.into_string().unwrap())
                .collect()
        };
        assert_eq!(
            rewritten(&[
                "x",
                "health-checker",
                "-port",
                "-1",
                "-script=/bin/a -b",
                "--script",
                "-port",
                "-singleflight",
                "-h",
                "-other",
                "--",
                "-port"
            ]),
            [
                "x",
                "health-checker",
                "--port",
                "-1",
                "--script=/bin/a -b",
                "--script",
                "-port",
                "--singleflight",
                "-h",
                "-other",
                "--",
                "-port"
            ]
        );
        assert_eq!(rewritten(&["x", "-port", "1"]), ["x", "-port", "1"]);
    }

    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        Flags::command().debug_assert();
        let defaults = Flags::parse_from(["synack_exporter"]);
        assert_eq!(
            defaults.write_timeout,
            PromDuration::new(Duration::from_secs(30))
        );
        assert_eq!(defaults.listen_address, [":9215".parse().unwrap()]);
        let two = Flags::parse_from([
            "synack_exporter",
            "--web.listen-address=127.0.0.1:9215",
            "--web.listen-address",
            "[::1]:9215",
        ]);
        assert_eq!(two.listen_address.len(), 2, "repeated, not replaced");
    }

    /// The flags that set the exporter, each with a value other than its
    /// default.
    const SETTING_FLAGS: [&str; 15] = [
        "--config.file=other.yml",
        "--web.config.file=web.yml",
        "--timeout-offset=1.5",
        "--probe.max-in-flight=7",
        "--exec.max-concurrent=7",
        "--probe.max-sessions=7",
        "--probe.raw-source-ports=62000-62999",
        "--targets.shard=1/2",
        "--web.shutdown-grace=7s",
        "--web.write-timeout=7s",
        "--history.limit=7",
        "--web.max-connections=7",
        "--web.hide-config-and-logs",
        "--dns.server=127.0.0.1:53",
        "--events.file=events.jsonl",
    ];

    /// The flags that are the binary's own: not the exporter's settings.
    const OWN_FLAGS: [&str; 7] = [
        "config.check",
        "web.listen-address",
        "log.level",
        "log.format",
        "probe.realtime-priority",
        "help",
        "version",
    ];

    /// Each flag's default is the builder's: no flags give the exporter
    /// that `Exporter::builder()` gives, setting for setting (the
    /// builder's `Debug` shows every one).
    #[test]
    fn every_flags_default_is_the_builders() {
        let flags = Flags::try_parse_from(["synack_exporter"]).unwrap();
        assert_eq!(
            format!("{:#?}", flags.exporter()),
            format!("{:#?}", Exporter::builder()),
            "a flag's default differs from the builder's: give both the constant of \
             synack_exporter::settings"
        );
    }

    /// Each setting's flag reaches the builder, and every flag is either a
    /// setting or the binary's own, so that a new flag is one or the other.
    #[test]
    fn every_setting_flag_reaches_the_builder() {
        use clap::CommandFactory;
        let default = format!("{:?}", Exporter::builder());
        for flag in SETTING_FLAGS {
            let flags = Flags::try_parse_from(["synack_exporter", flag]).unwrap();
            assert_ne!(
                format!("{:?}", flags.exporter()),
                default,
                "{flag} does not reach the builder"
            );
        }
        let mut command = Flags::command();
        command.build();
        for argument in command.get_arguments() {
            let Some(long) = argument.get_long() else {
                continue;
            };
            let setting = SETTING_FLAGS
                .iter()
                .any(|flag| flag.strip_prefix("--").unwrap().split('=').next() == Some(long));
            assert!(
                setting || OWN_FLAGS.contains(&long),
                "--{long} is neither in SETTING_FLAGS nor in OWN_FLAGS"
            );
        }
    }

    #[test]
    fn raw_source_ports_are_a_range_first_to_last_and_a_bad_one_says_how_to_write_it() {
        assert_eq!(
            parse_port_range("62000-62999"),
            Ok(PortRange(62000..=62999))
        );
        assert_eq!(parse_port_range("7-7"), Ok(PortRange(7..=7)));
        for bad in ["65535-61000", "0-10", "61000", "61000-70000", "a-b", ""] {
            let error = parse_port_range(bad).unwrap_err();
            assert!(
                error.contains("write FIRST-LAST") && error.contains(&format!("{bad:?}")),
                "{bad}: {error}"
            );
        }
        assert_eq!(
            PortRange(DEFAULT_RAW_SOURCE_PORTS).to_string(),
            "61000-65535"
        );
    }

    #[test]
    fn the_history_limit_help_states_the_library_figures() {
        use clap::CommandFactory;
        let help = Flags::command().render_long_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        let usual = ExporterBuilder::USUAL_HISTORY_RECORD_BYTES;
        let about = format!("about {} bytes", (usual + 5) / 10 * 10);
        let record = format!("{} KiB", ExporterBuilder::MAX_HISTORY_RECORD_BYTES >> 10);
        let all = format!("at most {} MiB", ExporterBuilder::MAX_HISTORY_BYTES >> 20);
        for figure in [about, record, all] {
            assert!(help.contains(&figure), "--help lacks {figure:?}: {help}");
        }
    }

    #[test]
    fn dns_servers_are_ip_and_port_and_repeatable() {
        let flags = Flags::try_parse_from([
            "synack_exporter",
            "--dns.server=127.0.0.1:5353",
            "--dns.server",
            "[::1]:53",
            "--dns.server=10.0.0.53",
        ])
        .unwrap();
        let expected: Vec<SocketAddr> = ["127.0.0.1:5353", "[::1]:53", "10.0.0.53:53"]
            .iter()
            .map(|text| text.parse().unwrap())
            .collect();
        assert_eq!(flags.dns_servers, expected);
        let error = parse_dns_server("ns1.example.org:53").unwrap_err();
        assert!(error.contains("such as 10.0.0.53:53"), "{error}");
        assert!(
            Flags::try_parse_from(["synack_exporter"])
                .unwrap()
                .dns_servers
                .is_empty(),
            "resolv.conf's servers by default"
        );
    }
}
