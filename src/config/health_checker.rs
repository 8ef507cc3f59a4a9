//! gruntwork health-checker's checks (`--port`, `--script`,
//! `--script-timeout`, `--singleflight`) as a [`Config`] of modules and
//! one group, so that `synack_exporter health-checker` is a front on the
//! group machinery rather than a second implementation.
//!
//! - `--port N` is `127.0.0.1:N` (health-checker dials `0.0.0.0:N`, which
//!   Linux sends to loopback), `--port [::1]:N` is IPv6 loopback, and any
//!   other `host:port` is accepted as an extension. Ports are probed by
//!   the module `port`: half-open, within health-checker's own 5 s TCP
//!   timeout.
//! - `--script "PROGRAM ARGS"` is split on every space, as health-checker
//!   splits it (no shell, no quoting), and run by an `exec` module without
//!   a target, named `script "PROGRAM ARGS"`, within `--script-timeout`.
//!   Braces in it are literal: they are no placeholders here. Unlike an
//!   `exec` module of a config, the script gets the environment
//!   health-checker was started with, as health-checker passes it on.
//! - All of them are the members of the group `health-checker`,
//!   ports first, each kind in command-line order. Its answer is never
//!   reused (`min_interval` 0): each request runs a round, and with
//!   `--singleflight` the requests that arrive while one is under way
//!   share it.

#![forbid(unsafe_code)]

use super::scheduled::TargetSpec;
use super::{Config, ExecOptions, Group, GroupMember, GroupName, Module, TIMEOUT_RANGE};
use crate::target::{Host, Target};
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// The name of the one group of the health-checker mode.
pub(crate) const HEALTH_CHECKER_GROUP: &str = "health-checker";

/// The module that probes `--port`s.
pub(super) const PORT_MODULE: &str = "port";

/// health-checker's TCP timeout (`defaultTimeout` in its server.go).
pub(super) const PORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The checks of a health-checker command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthChecks {
    /// `--port`s, each a target on this host (see [`HealthChecks::parse_port`]).
    pub ports: Vec<Target>,
    /// `--script`s, as written, each with its command (see
    /// [`HealthChecks::parse_script`]).
    pub scripts: Vec<(String, ExecOptions)>,
    /// `--script-timeout`.
    pub script_timeout: Duration,
    /// `--singleflight`: concurrent requests share one round of checks.
    pub single_flight: bool,
}

impl HealthChecks {
    /// A `--port`: a port number for `127.0.0.1`, or `host:port`
    /// (`[::1]:N` for IPv6 loopback).
    ///
    /// # Errors
    /// A sentence saying what a port may be.
    pub fn parse_port(text: &str) -> Result<Target, String> {
        if let Ok(port) = text.parse::<u16>() {
            if port == 0 {
                return Err(format!(
                    "{text:?} is not a port: use a number from 1 to 65535"
                ));
            }
            return Ok(Target {
                host: Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                port,
            });
        }
        if !text.contains(':') && text.chars().all(|c| c.is_ascii_digit() || c == '-') {
            return Err(format!(
                "{text:?} is not a port: use a number from 1 to 65535"
            ));
        }
        Target::parse(text).map_err(|error| {
            format!("{text:?}: {error}; use a port number, or host:port such as [::1]:5432")
        })
    }

    /// A `--script`: the program and its arguments in one string, split
    /// on every space as health-checker splits it; braces are literal.
    ///
    /// # Errors
    /// A sentence saying what is wrong with the command (an empty
    /// program, an argument over the length limit).
    pub fn parse_script(text: &str) -> Result<(String, ExecOptions), String> {
        let command = text
            .split(' ')
            .map(|argument| argument.replace('{', "{{").replace('}', "}}"))
            .collect();
        let options = ExecOptions::new(command, BTreeMap::new())
            .map_err(|error| format!("--script {text:?}: {error}"))?
            .inheriting_environment();
        Ok((text.to_owned(), options))
    }

    /// A `--script-timeout`: whole seconds, from 1 to 120 (the range of a
    /// module's timeout).
    ///
    /// # Errors
    /// A sentence giving the range.
    pub fn parse_script_timeout(text: &str) -> Result<u64, String> {
        let (low, high) = (
            TIMEOUT_RANGE.start().as_secs().max(1),
            TIMEOUT_RANGE.end().as_secs(),
        );
        text.parse::<u64>()
            .ok()
            .filter(|seconds| (low..=high).contains(seconds))
            .ok_or_else(|| format!("{text:?} is not a number of seconds from {low} to {high}"))
    }

    /// The module name of a script written as `script`.
    #[must_use]
    pub fn script_module(script: &str) -> String {
        format!("script {script:?}")
    }

    /// These checks as a config: the port module, a module per script, and
    /// the group `health-checker` of them all.
    #[must_use]
    pub fn config(&self) -> Config {
        let member = |module: &str, target: Option<&Target>| GroupMember {
            module: Spanned::new(module.to_owned(), Location::UNKNOWN, Location::UNKNOWN),
            target: target.cloned().map(TargetSpec),
        };
        let mut modules = BTreeMap::new();
        let mut members = Vec::with_capacity(self.ports.len() + self.scripts.len());
        if !self.ports.is_empty() {
            modules.insert(
                PORT_MODULE.to_owned(),
                Module::tcp_halfopen().with_timeout(PORT_TIMEOUT),
            );
            members.extend(
                self.ports
                    .iter()
                    .map(|port| member(PORT_MODULE, Some(port))),
            );
        }
        for (script, options) in &self.scripts {
            let name = Self::script_module(script);
            members.push(member(&name, None));
            modules.insert(
                name,
                Module::exec(options.clone()).with_timeout(self.script_timeout),
            );
        }
        Config {
            modules,
            unsupported: BTreeMap::new(),
            notes: Vec::new(),
            targets: Vec::new(),
            groups: BTreeMap::from([(
                GroupName(HEALTH_CHECKER_GROUP.to_owned()),
                Group::built(members, Duration::ZERO, self.single_flight),
            )]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_on_loopback_unless_a_host_is_given() {
        let port = |text| HealthChecks::parse_port(text).map(|target| target.to_string());
        assert_eq!(port("5432").as_deref(), Ok("127.0.0.1:5432"));
        assert_eq!(port("[::1]:5432").as_deref(), Ok("[::1]:5432"));
        assert_eq!(port("db.internal:5432").as_deref(), Ok("db.internal:5432"));
        for bad in ["0", "70000", "-1", "", "[::1]", "a b:1"] {
            assert!(port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn scripts_split_on_every_space_with_literal_braces() {
        let (written, options) =
            HealthChecks::parse_script("/bin/check --json={\"a\":1}  x").unwrap();
        assert_eq!(written, "/bin/check --json={\"a\":1}  x");
        assert_eq!(options.first_placeholder(), None);
        assert_eq!(
            options.argv_with(&crate::config::Values::none()),
            ["/bin/check", "--json={\"a\":1}", "", "x"],
            "as Go's strings.Split(s, \" \") gives them"
        );
        assert!(HealthChecks::parse_script(" /bin/check").is_err());
        assert!(HealthChecks::parse_script("").is_err());
    }

    #[test]
    fn the_config_is_one_group_of_ports_then_scripts_never_reused() {
        let checks = HealthChecks {
            ports: vec![HealthChecks::parse_port("5432").unwrap()],
            scripts: vec![HealthChecks::parse_script("/bin/zk --zk-port 2191").unwrap()],
            script_timeout: Duration::from_secs(10),
            single_flight: true,
        };
        let config = checks.config();
        let group = &config.groups[HEALTH_CHECKER_GROUP];
        assert_eq!(group.min_interval.0, Duration::ZERO);
        assert!(group.single_flight);
        let members: Vec<(String, Option<String>)> = group
            .members
            .iter()
            .map(|member| {
                (
                    member.module.value.clone(),
                    member.target.as_ref().map(|target| target.0.to_string()),
                )
            })
            .collect();
        assert_eq!(
            members,
            [
                ("port".to_owned(), Some("127.0.0.1:5432".to_owned())),
                ("script \"/bin/zk --zk-port 2191\"".to_owned(), None),
            ]
        );
        assert_eq!(config.modules["port"].timeout(), PORT_TIMEOUT);
        assert_eq!(
            config.modules["port"].prober().kind(),
            crate::config::ProberKind::TcpHalfopen
        );
        let script = &config.modules["script \"/bin/zk --zk-port 2191\""];
        assert_eq!(script.timeout(), Duration::from_secs(10));
        assert_eq!(script.why_a_target_is_needed(), None);
    }
}
