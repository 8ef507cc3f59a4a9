//! The `exec:` block of a module with `prober: exec`: the command to run
//! and the variables added to its environment.
//!
//! Everything is checked while deserialising, so that an error carries
//! the line, column and field (`modules.zk.exec.command[3]`):
//!
//! - `command` is a list of 1 to [`MAX_ARGS`] arguments, each at most
//!   [`MAX_ARG_BYTES`] bytes and without NUL. The first names the program;
//!   it may not be empty and may not hold a placeholder, so the program
//!   run always comes from the config. The command holds at most
//!   [`MAX_PLACEHOLDERS`] placeholders in all.
//! - Placeholders are `{target}`, `{host}` and `{port}`; `{{` and `}}`
//!   stand for literal braces. Any other `{...}` (a typo such as
//!   `{hots}`), and a lone `{` or `}`, are errors. A command without
//!   placeholders runs without a target too (a group member `{module}`,
//!   `/probe?module=` without `target`); one with placeholders needs one.
//! - `env` holds at most [`MAX_ENV_VARS`] variables. A name is non-empty,
//!   at most [`MAX_ENV_NAME_BYTES`] bytes, without `=` or NUL, and does
//!   not start with `SYNACK_`, which the exporter sets itself. `PATH` may
//!   be given: it replaces the exporter's own. Values are taken as written
//!   (no placeholders; the target is in `SYNACK_TARGET*`), at most
//!   [`MAX_ARG_BYTES`] bytes, without NUL.

#![forbid(unsafe_code)]

use crate::target::Target;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The most arguments a command may have, the program included.
pub(super) const MAX_ARGS: usize = 256;

/// The most placeholders a command may hold, all arguments together. A
/// placeholder becomes up to a target's length (1 KiB), so this bounds
/// what a probe's target adds to the command line: 16 KiB at most, on top
/// of the command as written. Real checks need two or three.
pub(super) const MAX_PLACEHOLDERS: usize = 16;

/// The longest argument, and the longest `env` value, in bytes. A config
/// argument longer than this is a generator's slip, not a check.
pub(super) const MAX_ARG_BYTES: usize = 4096;

/// The most variables a module's `env` may add.
pub(super) const MAX_ENV_VARS: usize = 64;

/// The longest variable name in `env`, in bytes.
pub(super) const MAX_ENV_NAME_BYTES: usize = 256;

/// The prefix of the variables the exporter sets for the command.
pub(crate) const RESERVED_ENV_PREFIX: &str = "SYNACK_";

/// The command of an `exec` module and the variables added to its
/// environment; valid by construction ([`ExecOptions::new`] or the config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExecOptions {
    command: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    env: BTreeMap<String, String>,
    /// Whether the command gets the exporter's whole environment rather
    /// than the minimal one: only for health-checker's `--script`, which
    /// health-checker runs so; a config cannot ask for it.
    #[serde(skip)]
    inherit_environment: bool,
}

impl ExecOptions {
    /// Options running `command` (the program, then its arguments, with
    /// placeholders) with `env` added to the minimal environment.
    ///
    /// # Errors
    /// A sentence saying which rule of the module docs an argument or a
    /// variable breaks.
    pub fn new(command: Vec<String>, env: BTreeMap<String, String>) -> Result<Self, String> {
        check_command(&command)?;
        if env.len() > MAX_ENV_VARS {
            return Err(too_many_vars());
        }
        for (name, value) in &env {
            check_env_name(name)?;
            check_env_value(value)?;
        }
        Ok(Self {
            command,
            env,
            inherit_environment: false,
        })
    }

    /// These options, with the command started in the exporter's own
    /// environment (then `env`) instead of the minimal one, as gruntwork
    /// health-checker starts its `--script`s.
    #[must_use]
    pub(crate) fn inheriting_environment(self) -> Self {
        Self {
            inherit_environment: true,
            ..self
        }
    }

    /// Whether the command gets the exporter's environment; see
    /// [`inheriting_environment`](Self::inheriting_environment).
    pub(crate) fn inherits_environment(&self) -> bool {
        self.inherit_environment
    }

    /// The command as written in the config, placeholders unreplaced.
    #[must_use]
    pub fn command(&self) -> &[String] {
        &self.command
    }

    /// The variables the config adds to the environment.
    #[must_use]
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// The first placeholder the command uses, as written (`{host}`), or
    /// `None` when it uses none and so runs without a target.
    #[must_use]
    pub fn first_placeholder(&self) -> Option<&'static str> {
        self.command.iter().find_map(|argument| {
            pieces(argument).ok()?.iter().find_map(|piece| match piece {
                Piece::Text(_) => None,
                Piece::Target => Some("{target}"),
                Piece::Host => Some("{host}"),
                Piece::Port => Some("{port}"),
            })
        })
    }

    /// The arguments with every placeholder replaced by `target`'s parts:
    /// `{target}` as `host:port` (IPv6 in brackets), `{host}` without
    /// brackets, `{port}` the number.
    #[must_use]
    pub fn argv(&self, target: &Target) -> Vec<String> {
        self.argv_with(&Values::of(target))
    }

    /// The arguments with the placeholders replaced by `values`.
    pub(crate) fn argv_with(&self, values: &Values) -> Vec<String> {
        self.command
            .iter()
            .map(|argument| expand(argument, values))
            .collect()
    }
}

/// What the placeholders stand for in one probe; the same values go into
/// `SYNACK_TARGET`, `SYNACK_TARGET_HOST` and `SYNACK_TARGET_PORT`.
#[derive(Debug)]
pub(crate) struct Values {
    /// `{target}`: `host:port`, an IPv6 literal in brackets.
    pub(crate) target: String,
    /// `{host}`: the host as written, an IPv6 literal without brackets.
    pub(crate) host: String,
    /// `{port}`: the port number.
    pub(crate) port: String,
}

impl Values {
    /// The values for `target`.
    pub(crate) fn of(target: &Target) -> Self {
        Self {
            target: target.to_string(),
            host: target.host.to_string(),
            port: target.port.to_string(),
        }
    }

    /// No values, for a probe without a target: only a command without
    /// placeholders runs so, and its `{{` and `}}` still become braces.
    pub(crate) fn none() -> Self {
        Self {
            target: String::new(),
            host: String::new(),
            port: String::new(),
        }
    }
}

/// A piece of an argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Target,
    Host,
    Port,
}

/// Splits `argument` into text and placeholders.
fn pieces(argument: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = argument;
    while let Some(at) = rest.find(['{', '}']) {
        if at > 0 {
            out.push(Piece::Text(&rest[..at]));
        }
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push(Piece::Text("{"));
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push(Piece::Text("}"));
            rest = after;
        } else if tail.starts_with('}') {
            return Err(format!(
                "lone '}}' in {argument:?}: write '}}}}' for a literal brace"
            ));
        } else {
            let Some(end) = tail.find('}') else {
                return Err(format!(
                    "unclosed '{{' in {argument:?}: write '{{{{' for a literal brace"
                ));
            };
            let name = &tail[1..end];
            out.push(match name {
                "target" => Piece::Target,
                "host" => Piece::Host,
                "port" => Piece::Port,
                _ => {
                    return Err(format!(
                        "unknown placeholder {{{name}}} in {argument:?}: use {{target}}, {{host}} or {{port}} \
                         (and '{{{{', '}}}}' for literal braces)"
                    ));
                }
            });
            rest = &tail[end + 1..];
        }
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// `argument` with its placeholders replaced. Arguments are checked when
/// the options are built, so an invalid one cannot reach this; it would
/// be passed on as written.
fn expand(argument: &str, values: &Values) -> String {
    let Ok(pieces) = pieces(argument) else {
        return argument.to_owned();
    };
    let mut out = String::with_capacity(argument.len() + values.target.len());
    for piece in pieces {
        out.push_str(match piece {
            Piece::Text(text) => text,
            Piece::Target => &values.target,
            Piece::Host => &values.host,
            Piece::Port => &values.port,
        });
    }
    out
}

fn check_argument(argument: &str) -> Result<(), String> {
    if argument.len() > MAX_ARG_BYTES {
        return Err(format!(
            "an argument of {} bytes is longer than the limit of {MAX_ARG_BYTES}",
            argument.len()
        ));
    }
    if argument.contains('\0') {
        return Err(format!(
            "NUL in {argument:?}: arguments cannot hold NUL bytes"
        ));
    }
    pieces(argument).map(drop)
}

/// The program, `command[0]`: non-empty and only text.
fn check_program(program: &str) -> Result<(), String> {
    if program.is_empty() {
        return Err("the program, command[0], is empty: name the program to run".to_owned());
    }
    let only_text = pieces(program)
        .is_ok_and(|pieces| pieces.iter().all(|piece| matches!(piece, Piece::Text(_))));
    if !only_text {
        return Err(format!(
            "the program, command[0] {program:?}, holds a placeholder: the program must come from the config; \
             pass the target as an argument"
        ));
    }
    Ok(())
}

fn check_command(command: &[String]) -> Result<(), String> {
    if command.len() > MAX_ARGS {
        return Err(too_many_args());
    }
    let Some(program) = command.first() else {
        return Err(no_command());
    };
    let mut placeholders = 0;
    for argument in command {
        check_argument(argument)?;
        placeholders += pieces(argument).map_or(0, |pieces| {
            pieces
                .iter()
                .filter(|piece| !matches!(piece, Piece::Text(_)))
                .count()
        });
    }
    if placeholders > MAX_PLACEHOLDERS {
        return Err(format!(
            "the command holds {placeholders} placeholders, more than the limit of {MAX_PLACEHOLDERS}: \
             each becomes up to a whole target, so the command line would grow with every one"
        ));
    }
    check_program(program)
}

fn too_many_args() -> String {
    format!("a command has at most {MAX_ARGS} arguments, the program included")
}

fn no_command() -> String {
    "command is empty: give the program and its arguments, such as [\"/usr/local/bin/check\", \"{host}\", \"{port}\"]"
        .to_owned()
}

fn too_many_vars() -> String {
    format!("env has at most {MAX_ENV_VARS} variables")
}

fn check_env_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_ENV_NAME_BYTES || name.contains(['=', '\0']) {
        return Err(format!(
            "variable name {name:?} must be 1 to {MAX_ENV_NAME_BYTES} bytes without '=' or NUL"
        ));
    }
    if name.starts_with(RESERVED_ENV_PREFIX) {
        return Err(format!(
            "variable name {name:?} is reserved: the exporter sets the {RESERVED_ENV_PREFIX}* variables itself"
        ));
    }
    Ok(())
}

fn check_env_value(value: &str) -> Result<(), String> {
    if value.len() > MAX_ARG_BYTES || value.contains('\0') {
        return Err(format!(
            "a variable's value is at most {MAX_ARG_BYTES} bytes, without NUL"
        ));
    }
    Ok(())
}

/// An argument, checked as it is read so that its error is located.
struct Argument(String);

impl<'de> Deserialize<'de> for Argument {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked(deserializer, check_argument).map(Self)
    }
}

/// A string, refused with `check`'s message where it stands when it fails.
fn checked<'de, D: Deserializer<'de>>(
    deserializer: D,
    check: fn(&str) -> Result<(), String>,
) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    check(&text).map_err(serde::de::Error::custom)?;
    Ok(text)
}

/// The `command` list, read up to one argument past the limit.
fn command<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let command: Vec<Argument> = super::bounded_list(
        deserializer,
        "a list of arguments, the program first",
        MAX_ARGS,
        too_many_args,
        |Argument(program)| check_program(program),
    )?;
    if command.is_empty() {
        return Err(serde::de::Error::custom(no_command()));
    }
    Ok(command
        .into_iter()
        .map(|Argument(argument)| argument)
        .collect())
}

/// A variable name of `env`, checked as it is read.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct EnvName(String);

impl<'de> Deserialize<'de> for EnvName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked(deserializer, check_env_name).map(Self)
    }
}

/// A variable's value in `env`, checked as it is read.
struct EnvValue(String);

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        checked(deserializer, check_env_value).map(Self)
    }
}

/// The `env` map, read up to one variable past the limit.
fn env<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct Variables;

    impl<'de> Visitor<'de> for Variables {
        type Value = BTreeMap<String, String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of variable names to values")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut env = BTreeMap::new();
            while let Some((EnvName(name), EnvValue(value))) = map.next_entry()? {
                if env.len() == MAX_ENV_VARS {
                    return Err(serde::de::Error::custom(too_many_vars()));
                }
                env.insert(name, value);
            }
            Ok(env)
        }
    }

    deserializer.deserialize_map(Variables)
}

/// The fields as written, each checked by its own reader.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    #[serde(deserialize_with = "command")]
    command: Vec<String>,
    #[serde(default, deserialize_with = "env")]
    env: BTreeMap<String, String>,
}

impl<'de> Deserialize<'de> for ExecOptions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Fields { command, env } = Fields::deserialize(deserializer)?;
        Ok(Self {
            command,
            env,
            inherit_environment: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(command: &[&str]) -> Result<ExecOptions, String> {
        ExecOptions::new(
            command
                .iter()
                .map(|&argument| argument.to_owned())
                .collect(),
            BTreeMap::new(),
        )
    }

    #[test]
    fn placeholders_are_replaced_in_whole_or_in_part() {
        let exec = options(&[
            "/bin/check",
            "{host}",
            "--port={port}",
            "{target}",
            "{{host}} {{}}",
        ])
        .unwrap();
        let v4 = Target::parse("127.0.0.1:2181").unwrap();
        assert_eq!(
            exec.argv(&v4),
            [
                "/bin/check",
                "127.0.0.1",
                "--port=2181",
                "127.0.0.1:2181",
                "{host} {}"
            ]
        );
        let v6 = Target::parse("[::1]:443").unwrap();
        assert_eq!(exec.argv(&v6)[1..4], ["::1", "--port=443", "[::1]:443"]);
        let name = Target::parse("db.example.org.:5432").unwrap();
        assert_eq!(exec.argv(&name)[1], "db.example.org.");
    }

    #[test]
    fn bad_commands_are_refused_with_the_rule_they_break() {
        for (command, needle) in [
            (&[][..], "command is empty"),
            (&[""][..], "command[0], is empty"),
            (&["{host}"][..], "holds a placeholder"),
            (&["/bin/{port}x"][..], "holds a placeholder"),
            (&["/bin/x", "{hots}"][..], "unknown placeholder {hots}"),
            (&["/bin/x", "{host"][..], "unclosed '{'"),
            (&["/bin/x", "a}b"][..], "lone '}'"),
            (&["/bin/x", "a\0b"][..], "NUL"),
        ] {
            let error = options(command).expect_err(needle);
            assert!(error.contains(needle), "{command:?}: {error}");
        }
        let long = "x".repeat(MAX_ARG_BYTES + 1);
        assert!(options(&["/bin/x", &long]).is_err());
        let many = vec!["/bin/x"; MAX_ARGS + 1];
        assert!(options(&many).is_err());
        assert!(options(&vec!["/bin/x"; MAX_ARGS]).is_ok());
        // Placeholders are counted over the whole command.
        let sixteen = format!("{}{}", "{target}".repeat(10), "{host}".repeat(6));
        assert!(options(&["/bin/x", &sixteen]).is_ok());
        let error = options(&["/bin/x", &sixteen, "--port={port}"]).expect_err("17");
        assert!(error.contains("17 placeholders"), "{error}");
    }

    /// The checks that run while the list is read place their errors
    /// where the user wrote them.
    #[test]
    fn bad_commands_in_a_file_are_located() {
        let module = |command: &str| {
            format!("modules:\n  zk:\n    prober: exec\n    exec:\n      command: {command}\n")
        };
        let error_of =
            |command: &str| crate::config::Config::parse("zk.yml", &module(command)).unwrap_err();
        error_of("[]").assert_says(
            "zk.yml:5:16: field `modules.zk.exec.command`",
            &["command is empty"],
        );
        error_of("\n        - \"{host}\"\n        - x\n").assert_says(
            "zk.yml:6:9: field `modules.zk.exec.command`",
            &["holds a placeholder"],
        );
        let many = vec!["x"; MAX_ARGS + 1].join(", ");
        error_of(&format!("[{many}]")).assert_says(
            "zk.yml:5:16: field `modules.zk.exec.command`",
            &["at most 256 arguments"],
        );
        // Both wrong: the program is named first, as it is read first.
        error_of(&format!("[\"{{host}}\", {many}]")).assert_says(
            "zk.yml:5:16: field `modules.zk.exec.command`",
            &["holds a placeholder"],
        );
    }

    #[test]
    fn the_first_placeholder_tells_whether_a_command_needs_a_target() {
        let first = |command: &[&str]| options(command).unwrap().first_placeholder();
        assert_eq!(first(&["/bin/x", "--flag", "{{host}}"]), None);
        assert_eq!(first(&["/bin/x", "-p={port}", "{host}"]), Some("{port}"));
        assert_eq!(first(&["/bin/x", "{target}"]), Some("{target}"));
        let exec = options(&["/bin/x", "{{literal}}"]).unwrap();
        assert_eq!(exec.argv_with(&Values::none()), ["/bin/x", "{literal}"]);
    }

    #[test]
    fn env_names_are_checked_and_synack_is_reserved() {
        let with = |name: &str| {
            ExecOptions::new(
                vec!["/bin/x".to_owned()],
                BTreeMap::from([(name.to_owned(), "v".to_owned())]),
            )
        };
        assert!(with("ZK_MODE").is_ok());
        assert!(with("PATH").is_ok(), "PATH may be replaced");
        for bad in ["", "A=B", "A\0", "SYNACK_TARGET", "SYNACK_X"] {
            assert!(with(bad).is_err(), "{bad:?}");
        }
    }
}
