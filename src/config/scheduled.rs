//! The `targets:` and `groups:` sections: what the scheduler probes on its
//! own, and which sets of ports `/health/<group>` checks together.
//!
//! Everything that can be checked on one value (a target's syntax, a label
//! name, `rise` ≥ 1) is checked while deserialising, so serde-saphyr puts
//! the position on the error. Checks that relate values (does the module
//! exist? does a target repeat?) run afterwards in [`validate`] and use the
//! positions recorded by [`Spanned`].

use super::{ConfigError, PromDuration, positive_duration};
use crate::target::Target;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

/// One block of scheduled targets sharing a module, interval and labels.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetBlock {
    /// The module, a key of `modules:`.
    pub module: Spanned<String>,
    /// How often each target is probed.
    #[serde(default = "default_interval", deserialize_with = "positive_duration")]
    pub interval: PromDuration,
    /// Successes in a row for an unhealthy target to become healthy.
    #[serde(default = "default_rise", deserialize_with = "at_least_one")]
    pub rise: u32,
    /// Failures in a row for a healthy target to become unhealthy.
    #[serde(default = "default_fall", deserialize_with = "at_least_one")]
    pub fall: u32,
    /// The targets, `host:port`.
    pub targets: Vec<Spanned<TargetSpec>>,
    /// Extra labels on every series of these targets.
    #[serde(default)]
    pub labels: BTreeMap<LabelName, String>,
}

/// A set of targets that `/health/<name>` checks together.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// The module, a key of `modules:`.
    pub module: Spanned<String>,
    /// How long one round's answer is given to every request, so that many
    /// load-balancer nodes asking cause one round of probes per interval.
    #[serde(default = "default_min_interval", deserialize_with = "min_interval")]
    pub min_interval: PromDuration,
    /// The members, `host:port`.
    pub targets: Vec<TargetSpec>,
}

/// The bounds of a group's `min_interval`. Below 100 ms, forty load
/// balancers polling a large group could again cause ten rounds a second;
/// above a minute the answer is older than load balancers expect when they
/// poll every few seconds to take a backend out of rotation.
pub const MIN_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(60));

fn default_interval() -> PromDuration {
    PromDuration(Duration::from_secs(15))
}

fn default_min_interval() -> PromDuration {
    PromDuration(Duration::from_secs(1))
}

fn min_interval<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PromDuration, D::Error> {
    let interval = PromDuration::deserialize(deserializer)?;
    let (low, high) = MIN_INTERVAL_RANGE;
    if interval.0 < low || interval.0 > high {
        return Err(serde::de::Error::custom(format!(
            "must be between {} and {}: shorter lets load balancers multiply probe rounds, longer serves stale answers",
            PromDuration(low),
            PromDuration(high)
        )));
    }
    Ok(interval)
}

fn default_rise() -> u32 {
    2
}

fn default_fall() -> u32 {
    3
}

fn at_least_one<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let count = u32::deserialize(deserializer)?;
    if count == 0 {
        return Err(serde::de::Error::custom("must be at least 1"));
    }
    Ok(count)
}

/// A target as written in the config, parsed with the same rules as `/probe`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TargetSpec(pub Target);

impl<'de> Deserialize<'de> for TargetSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Target::parse(&text)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for TargetSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// Label names the exporter sets itself, or Prometheus does.
const RESERVED_LABELS: [&str; 7] = [
    "target", "module", "reason", "result", "le", "job", "instance",
];

/// A user label name: a valid Prometheus name that is not reserved.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct LabelName(pub String);

impl LabelName {
    fn check(name: &str) -> Result<(), String> {
        let mut chars = name.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "label name {name:?} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
            ));
        }
        if name.starts_with("__") || RESERVED_LABELS.contains(&name) {
            return Err(format!(
                "label name {name:?} is reserved; names starting with __ and {} are set by the exporter or Prometheus",
                RESERVED_LABELS.join(", ")
            ));
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for LabelName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::check(&name).map_err(serde::de::Error::custom)?;
        Ok(Self(name))
    }
}

impl fmt::Display for LabelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A group name, used as the last segment of `/health/<name>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct GroupName(pub String);

impl std::borrow::Borrow<str> for GroupName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for GroupName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(serde::de::Error::custom(format!(
                "group name {name:?} must be non-empty and use only letters, digits, '-', '_' and '.', as it appears in /health/<name>"
            )));
        }
        Ok(Self(name))
    }
}

/// Checks what relates values to each other: module references and
/// repeated targets. `modules` are the names that exist.
pub(super) fn validate<'a>(
    file: &str,
    modules: impl Iterator<Item = &'a String> + Clone,
    blocks: &[TargetBlock],
    groups: &BTreeMap<GroupName, Group>,
) -> Result<(), ConfigError> {
    let check_module = |module: &Spanned<String>, field: String| {
        if modules.clone().any(|name| *name == module.value) {
            return Ok(());
        }
        Err(located(
            file,
            &module.referenced,
            field,
            format!(
                "unknown module {:?}; use one of {}, or define it under modules:",
                module.value,
                super::module_list(modules.clone())
            ),
        ))
    };
    let mut seen: HashMap<(&str, &Target), usize> = HashMap::new();
    for (block_index, block) in blocks.iter().enumerate() {
        check_module(&block.module, format!("targets[{block_index}].module"))?;
        for (target_index, target) in block.targets.iter().enumerate() {
            let key = (block.module.value.as_str(), &target.value.0);
            if let Some(first_block) = seen.insert(key, block_index) {
                return Err(located(
                    file,
                    &target.referenced,
                    format!("targets[{block_index}].targets[{target_index}]"),
                    format!(
                        "target {} repeats for module {:?} (first in targets[{first_block}]); each target may appear once per module",
                        target.value.0, block.module.value
                    ),
                ));
            }
        }
    }
    for (name, group) in groups {
        check_module(&group.module, format!("groups.{}.module", name.0))?;
    }
    Ok(())
}

fn located(file: &str, at: &serde_saphyr::Location, field: String, message: String) -> ConfigError {
    ConfigError {
        file: file.to_owned(),
        position: Some((at.line(), at.column())),
        field: Some(field),
        message,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const MODULES: &str = "modules:\n  m:\n    prober: tcp_halfopen\n";

    fn error_of(rest: &str) -> crate::config::ConfigError {
        Config::parse("t.yml", &format!("{MODULES}{rest}")).expect_err("should be rejected")
    }

    #[test]
    fn targets_and_groups_are_read_with_defaults() {
        let yaml = format!(
            "{MODULES}targets:\n  - module: m\n    targets: [\"127.0.0.1:80\", \"[::1]:6379\"]\n    labels: {{service: db}}\ngroups:\n  web:\n    module: m\n    targets: [\"127.0.0.1:8080\"]\n"
        );
        let config = Config::parse("t.yml", &yaml).unwrap();
        let block = &config.targets[0];
        assert_eq!(
            (block.interval.0.as_secs(), block.rise, block.fall),
            (15, 2, 3)
        );
        assert_eq!(block.targets[1].value.0.to_string(), "[::1]:6379");
        assert_eq!(config.groups.len(), 1);
        let group = config.groups.values().next().unwrap();
        assert_eq!(group.min_interval.0.as_secs(), 1);
    }

    #[test]
    fn a_group_min_interval_is_bounded() {
        let group = |interval: &str| {
            format!(
                "{MODULES}groups:\n  web:\n    module: m\n    min_interval: {interval}\n    targets: []\n"
            )
        };
        for fits in ["100ms", "5s", "1m"] {
            let config = Config::parse("t.yml", &group(fits)).unwrap();
            assert_eq!(
                config
                    .groups
                    .values()
                    .next()
                    .unwrap()
                    .min_interval
                    .to_string(),
                fits
            );
        }
        for outside in ["0s", "99ms", "1m1s"] {
            let error = Config::parse("t.yml", &group(outside)).expect_err(outside);
            assert_eq!(
                error.field.as_deref(),
                Some("groups.web.min_interval"),
                "{error}"
            );
            assert!(
                error.message.contains("between 100ms and 1m"),
                "{outside}: {error}"
            );
            assert!(error.position.is_some(), "{error}");
        }
    }

    #[test]
    fn unknown_module_is_located() {
        let error = error_of("targets:\n  - module: nope\n    targets: [\"127.0.0.1:80\"]\n");
        assert_eq!(error.position, Some((5, 13)), "{error}");
        assert_eq!(error.field.as_deref(), Some("targets[0].module"));
        let error = error_of("groups:\n  web:\n    module: nope\n    targets: []\n");
        assert_eq!(error.field.as_deref(), Some("groups.web.module"), "{error}");
    }

    #[test]
    fn a_target_repeated_within_a_module_is_an_error() {
        let error = error_of(
            "targets:\n  - module: m\n    targets: [\"127.0.0.1:80\"]\n  - module: m\n    interval: 5s\n    targets: [\"127.0.0.1:81\", \"127.0.0.1:80\"]\n",
        );
        assert_eq!(
            error.field.as_deref(),
            Some("targets[1].targets[1]"),
            "{error}"
        );
        assert_eq!(error.position.map(|p| p.0), Some(9), "{error}");
        assert!(error.message.contains("repeats"), "{error}");
    }

    #[test]
    fn bad_values_are_rejected_where_they_stand() {
        for (rest, field, needle) in [
            (
                "targets:\n  - module: m\n    targets: [\"nope\"]\n",
                "targets[0].targets[0]",
                "no port",
            ),
            (
                "targets:\n  - module: m\n    rise: 0\n    targets: []\n",
                "targets[0].rise",
                "at least 1",
            ),
            (
                "targets:\n  - module: m\n    interval: 0s\n    targets: []\n",
                "targets[0].interval",
                "greater than 0s",
            ),
            (
                "targets:\n  - module: m\n    targets: []\n    labels: {\"bad-name\": x}\n",
                "targets[0].labels",
                "not a valid",
            ),
            (
                "targets:\n  - module: m\n    targets: []\n    labels: {target: x}\n",
                "targets[0].labels",
                "reserved",
            ),
            (
                "targets:\n  - module: m\n    targets: []\n    labels: {__x: x}\n",
                "targets[0].labels",
                "reserved",
            ),
            (
                "groups:\n  \"a/b\":\n    module: m\n    targets: []\n",
                "groups",
                "group name",
            ),
        ] {
            let error = error_of(rest);
            assert!(
                error.field.as_deref().is_some_and(|f| f.starts_with(field)),
                "{rest}: {error}"
            );
            assert!(error.message.contains(needle), "{rest}: {error}");
            assert!(error.position.is_some(), "{rest}: {error}");
        }
    }
}
