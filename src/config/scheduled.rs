//! The `targets:` and `groups:` sections: what the scheduler probes on its
//! own, and which sets of ports `/health/<group>` checks together.
//!
//! Everything that can be checked on one value (a target's syntax, a label
//! name, `rise` within its range, a group's size) is checked while
//! deserialising, so serde-saphyr puts the position on the error. Checks
//! that relate values (does the module exist? does a target repeat? how
//! many targets in all?) run afterwards in [`validate`] and use the
//! positions recorded by [`Spanned`].

#![forbid(unsafe_code)]

use super::{Config, ConfigError, Module, PromDuration, Unsupported};
use crate::target::Target;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::RangeInclusive;
use std::time::Duration;

/// The shortest and longest `interval` of scheduled targets. Below 1 s a
/// target is probed more often than any Prometheus scrapes the result, and
/// the exporter turns into a SYN generator against it (1 ms made 1 000
/// SYNs a second per target, and 100 targets took 83 % of a core); 1 s is
/// also the floor of Kubernetes' probes. The exporter's cost is targets ÷
/// interval probes a second: 100 000 targets at 10 s, 10 000 a second, is
/// what one exporter on two cores was measured to sustain. Above a day a
/// target is not being monitored.
pub(super) const INTERVAL_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(24 * 3600);

/// The smallest and largest `rise` and `fall`. More than 100 results in a
/// row would take over 100 intervals to change state: no longer damping
/// flaps but hiding outages.
pub(super) const RISE_FALL_RANGE: RangeInclusive<u32> = 1..=100;

/// How many members a group may have. Every `/health/<group>` request
/// probes all of them at once within `--probe.max-in-flight` (4 096 by
/// default), so 1 000 leaves room for the other probes; and a group with
/// no member would answer 200 for nothing.
pub(super) const GROUP_MEMBERS_RANGE: RangeInclusive<usize> = 1..=1000;

/// The most scheduled targets a config may list, before sharding. One
/// exporter was measured with 100 000; a million is ten such replicas
/// sharing one list with `--targets.shard`.
pub(crate) const MAX_SCHEDULED_TARGETS: usize = 1_000_000;

/// One block of scheduled targets sharing a module, intervals and labels.
///
/// The intervals follow HAProxy's `inter`, `fastinter` and `downinter`: a
/// healthy target is probed every `interval`, one whose results disagree
/// with its state (the rise/fall counters are moving) every
/// `fast_interval`, and an unhealthy one every `down_interval`. Both
/// default to `interval`, and `/config` shows the values in force.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(from = "TargetBlockInConfig")]
pub struct TargetBlock {
    /// The module, a key of `modules:`.
    pub module: Spanned<String>,
    /// How often each healthy target is probed.
    pub interval: PromDuration,
    /// How often a target is probed while its state is changing: its last
    /// result disagrees with its state, and `rise` or `fall` is counting.
    pub fast_interval: PromDuration,
    /// How often an unhealthy target is probed.
    pub down_interval: PromDuration,
    /// Successes in a row for an unhealthy target to become healthy.
    pub rise: u32,
    /// Failures in a row for a healthy target to become unhealthy.
    pub fall: u32,
    /// The targets, `host:port`.
    pub targets: Vec<Spanned<TargetSpec>>,
    /// Extra labels on every series of these targets.
    pub labels: BTreeMap<LabelName, String>,
}

/// A block as written: `fast_interval` and `down_interval` may be left
/// out, and then are `interval`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetBlockInConfig {
    module: Spanned<String>,
    #[serde(default = "default_interval", deserialize_with = "interval_in_range")]
    interval: PromDuration,
    #[serde(default, deserialize_with = "some_interval_in_range")]
    fast_interval: Option<PromDuration>,
    #[serde(default, deserialize_with = "some_interval_in_range")]
    down_interval: Option<PromDuration>,
    #[serde(default = "default_rise", deserialize_with = "rise_fall_in_range")]
    rise: u32,
    #[serde(default = "default_fall", deserialize_with = "rise_fall_in_range")]
    fall: u32,
    targets: Vec<Spanned<TargetSpec>>,
    #[serde(default)]
    labels: BTreeMap<LabelName, String>,
}

impl From<TargetBlockInConfig> for TargetBlock {
    fn from(block: TargetBlockInConfig) -> Self {
        Self {
            module: block.module,
            interval: block.interval,
            fast_interval: block.fast_interval.unwrap_or(block.interval),
            down_interval: block.down_interval.unwrap_or(block.interval),
            rise: block.rise,
            fall: block.fall,
            targets: block.targets,
            labels: block.labels,
        }
    }
}

/// A set of checks that `/health/<name>` answers for together: members,
/// each a target probed with its own module, so that one answer can cover
/// TCP ports and `exec` checks alike.
///
/// In the config a group lists `members:` (`{module, target}` each), or,
/// as a shorthand for members that share a module, `module:` and
/// `targets:`; both may be given, and the shorthand's members come first.
/// `/config` shows the members.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(try_from = "GroupInConfig")]
pub struct Group {
    /// How long one round's answer is given to every request, so that many
    /// load-balancer nodes asking cause one round of probes per interval.
    pub min_interval: PromDuration,
    /// The members in config order; see [`GROUP_MEMBERS_RANGE`].
    pub members: Vec<GroupMember>,
    /// How many of `members` came from the `module:`/`targets:`
    /// shorthand, to name the field an error is about.
    #[serde(skip)]
    from_shorthand: usize,
    /// Whether requests that arrive while a round is under way join it
    /// (always, for a group of the config); without it each request runs
    /// a round of its own, as health-checker does without `--singleflight`.
    #[serde(skip)]
    pub(crate) single_flight: bool,
}

/// One check of a group: a target and the module that probes it, or an
/// `exec` module alone, whose command then takes no target.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMember {
    /// The module, a key of `modules:`.
    pub module: Spanned<String>,
    /// What it probes, `host:port`. Only an `exec` module whose command
    /// holds no placeholder may go without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetSpec>,
}

/// A group as written: either form, or both; see [`Group`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupInConfig {
    module: Option<Spanned<String>>,
    #[serde(default = "default_min_interval", deserialize_with = "min_interval")]
    min_interval: PromDuration,
    #[serde(default, deserialize_with = "some_group_list")]
    targets: Option<Vec<TargetSpec>>,
    #[serde(default, deserialize_with = "some_group_list")]
    members: Option<Vec<GroupMember>>,
}

impl TryFrom<GroupInConfig> for Group {
    type Error = String;

    fn try_from(group: GroupInConfig) -> Result<Self, String> {
        let shorthand = match (group.module, group.targets) {
            (Some(module), Some(targets)) => targets
                .into_iter()
                .map(|target| GroupMember {
                    module: module.clone(),
                    target: Some(target),
                })
                .collect(),
            (None, None) => Vec::new(),
            (Some(_), None) => {
                return Err("`module:` needs `targets:`, the members it probes".to_owned());
            }
            (None, Some(_)) => {
                return Err(
                    "`targets:` needs `module:`, or list them under `members:` as {module, target}"
                        .to_owned(),
                );
            }
        };
        let from_shorthand = shorthand.len();
        let mut members = shorthand;
        members.extend(group.members.unwrap_or_default());
        let (least, most) = (*GROUP_MEMBERS_RANGE.start(), *GROUP_MEMBERS_RANGE.end());
        if members.len() < least {
            return Err(
                "a group needs from 1 to 1000 members: list them under `members:` as {module, target}, or give `module:` and `targets:`"
                    .to_owned(),
            );
        }
        if members.len() > most {
            return Err(group_size_error(&format!("{} members", members.len())));
        }
        Ok(Self {
            min_interval: group.min_interval,
            members,
            from_shorthand,
            single_flight: true,
        })
    }
}

impl Group {
    /// A group built in code rather than read from a file: `members`,
    /// whose answers are reused for `min_interval` (zero: never, which the
    /// config does not allow), with single flight or not.
    pub(crate) fn built(
        members: Vec<GroupMember>,
        min_interval: Duration,
        single_flight: bool,
    ) -> Self {
        Self {
            min_interval: PromDuration(min_interval),
            members,
            from_shorthand: 0,
            single_flight,
        }
    }

    /// The dotted path of member `index`'s target, as the user wrote it.
    pub(super) fn target_field(&self, group: &str, index: usize) -> String {
        self.member_field(
            group,
            index,
            "target",
            format!("groups.{group}.targets[{index}]"),
        )
    }

    /// The dotted path of member `index`'s module, as the user wrote it.
    fn module_field(&self, group: &str, index: usize) -> String {
        self.member_field(group, index, "module", format!("groups.{group}.module"))
    }

    /// `field` of member `index` under `members:`, or `shorthand` for a
    /// member of the `module:`/`targets:` shorthand.
    fn member_field(&self, group: &str, index: usize, field: &str, shorthand: String) -> String {
        if index < self.from_shorthand {
            shorthand
        } else {
            format!(
                "groups.{group}.members[{}].{field}",
                index - self.from_shorthand
            )
        }
    }
}

/// The bounds of a group's `min_interval`. Below 100 ms, forty load
/// balancers polling a large group could again cause ten rounds a second;
/// above a minute the answer is older than load balancers expect when they
/// poll every few seconds to take a backend out of rotation.
pub(super) const MIN_INTERVAL_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(60);

fn default_interval() -> PromDuration {
    PromDuration(Duration::from_secs(15))
}

fn default_min_interval() -> PromDuration {
    PromDuration(Duration::from_secs(1))
}

fn min_interval<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PromDuration, D::Error> {
    PromDuration::deserialize_within(
        deserializer,
        MIN_INTERVAL_RANGE,
        ": shorter lets load balancers multiply probe rounds, longer serves stale answers",
    )
}

fn default_rise() -> u32 {
    2
}

fn default_fall() -> u32 {
    3
}

fn interval_in_range<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PromDuration, D::Error> {
    PromDuration::deserialize_within(deserializer, INTERVAL_RANGE, "")
}

/// `fast_interval` and `down_interval`, within the bounds of `interval`:
/// a target can spend all its time changing state (a flapping one) or
/// down, so they are what it costs then.
fn some_interval_in_range<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<PromDuration>, D::Error> {
    interval_in_range(deserializer).map(Some)
}

fn rise_fall_in_range<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let count = u32::deserialize(deserializer)?;
    if !RISE_FALL_RANGE.contains(&count) {
        return Err(serde::de::Error::custom(format!(
            "{count} is out of range: use a count from {} to {}",
            RISE_FALL_RANGE.start(),
            RISE_FALL_RANGE.end()
        )));
    }
    Ok(count)
}

fn group_size_error(what: &str) -> String {
    let (least, most) = (*GROUP_MEMBERS_RANGE.start(), *GROUP_MEMBERS_RANGE.end());
    format!(
        "{what}: a group has from {least} to {most} members; split a larger one into several groups"
    )
}

/// Reads a group's `targets:` or `members:` and stops at the first one
/// past the limit. The least count is checked on the whole group, whose
/// two lists add up.
fn some_group_list<'de, D, T>(deserializer: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    fn too_many() -> String {
        let most = *GROUP_MEMBERS_RANGE.end();
        group_size_error(&format!("more than {most} members"))
    }
    super::bounded_list(
        deserializer,
        "a list of group members",
        *GROUP_MEMBERS_RANGE.end(),
        too_many,
        |_| Ok(()),
    )
    .map(Some)
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
const RESERVED_LABELS: [&str; 10] = [
    "target",
    "module",
    "reason",
    "result",
    "le",
    "icmp_type",
    "icmp_code",
    "offender",
    "job",
    "instance",
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
        if !super::is_plain_name(&name) {
            return Err(serde::de::Error::custom(super::plain_name_error(
                "group",
                &name,
                "/health/<name>",
            )));
        }
        Ok(Self(name))
    }
}

/// Checks what relates values to each other: module references, group
/// members without a target, repeated targets and the total count.
/// `modules` are the modules that exist.
pub(super) fn validate(file: &str, config: &Config) -> Result<(), ConfigError> {
    validate_parts(
        file,
        &config.modules,
        &config.unsupported,
        &config.targets,
        &config.groups,
    )
}

/// [`validate`] of a config's parts, `unsupported` its modules set aside.
fn validate_parts(
    file: &str,
    modules: &BTreeMap<String, Module>,
    unsupported: &BTreeMap<String, Unsupported>,
    blocks: &[TargetBlock],
    groups: &BTreeMap<GroupName, Group>,
) -> Result<(), ConfigError> {
    let check_module = |module: &Spanned<String>, field: String| {
        let refuse = |message| Err(located(file, Some(&module.referenced), field, message));
        match modules.get(&module.value) {
            Some(found) if found.timeout_from_scrape() => refuse(format!(
                "module {:?} takes its timeout from the scrape, as in blackbox_exporter, and a \
                 scheduled probe has no scrape: give the module a timeout, such as timeout: 5s",
                module.value
            )),
            Some(_) => Ok(()),
            None => match unsupported.get(&module.value) {
                Some(set_aside) => refuse(format!(
                    "module {:?} {}, so it cannot be scheduled",
                    module.value, set_aside.why
                )),
                None => refuse(format!(
                    "unknown module {:?}; use one of {}, or define it under modules:",
                    module.value,
                    super::module_list(modules.keys())
                )),
            },
        }
    };
    check_total(file, blocks)?;
    let mut seen: HashMap<(&str, &Target), usize> = HashMap::new();
    for (block_index, block) in blocks.iter().enumerate() {
        check_module(&block.module, format!("targets[{block_index}].module"))?;
        check_series_labels(file, block_index, block, modules)?;
        for (target_index, target) in block.targets.iter().enumerate() {
            let key = (block.module.value.as_str(), &target.value.0);
            if let Some(first_block) = seen.insert(key, block_index) {
                return Err(located(
                    file,
                    Some(&target.referenced),
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
        for (index, member) in group.members.iter().enumerate() {
            check_module(&member.module, group.module_field(&name.0, index))?;
            if member.target.is_none()
                && let Some(why) = modules
                    .get(&member.module.value)
                    .and_then(Module::why_a_target_is_needed)
            {
                return Err(located(
                    file,
                    Some(&member.module.referenced),
                    group.target_field(&name.0, index),
                    format!(
                        "module {:?} needs a target: {why}; give it a target, such as {{module: {}, target: \"127.0.0.1:2181\"}}",
                        member.module.value, member.module.value
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Refuses a label of `block` that its module's own series set, such as
/// `version` for a module with TLS (`probe_tls_version_info{version}`) or
/// `answer` for one with `expect_port` (`probe_port_answer_info{answer}`):
/// the target's label would clash with it on `/metrics`. Per module, so
/// that the targets of other modules keep such labels.
fn check_series_labels(
    file: &str,
    block_index: usize,
    block: &TargetBlock,
    modules: &BTreeMap<String, Module>,
) -> Result<(), ConfigError> {
    let Some(module) = modules.get(&block.module.value) else {
        return Ok(());
    };
    let taken = module.prober().series_label_names();
    let Some(name) = block
        .labels
        .keys()
        .find(|name| taken.contains(&name.0.as_str()))
    else {
        return Ok(());
    };
    Err(located(
        file,
        Some(&block.module.referenced),
        format!("targets[{block_index}].labels.{name}"),
        format!(
            "label name {:?} is set by the series of module {:?} (its TLS series, its \
             probe_expect_info, its probe_port_answer_info, its probe_trace_last_hop or its \
             probe_address_ series): \
             rename the label",
            name.0, block.module.value
        ),
    ))
}

/// Refuses the first target past [`MAX_SCHEDULED_TARGETS`], where it stands.
fn check_total(file: &str, blocks: &[TargetBlock]) -> Result<(), ConfigError> {
    let mut before = 0;
    for (block_index, block) in blocks.iter().enumerate() {
        let room = MAX_SCHEDULED_TARGETS - before;
        if let Some(first_over) = block.targets.get(room) {
            return Err(located(
                file,
                Some(&first_over.referenced),
                format!("targets[{block_index}].targets[{room}]"),
                format!(
                    "a config may schedule at most {MAX_SCHEDULED_TARGETS} targets and this is one more: split the list over several exporters, each with its own config file"
                ),
            ));
        }
        before += block.targets.len();
    }
    Ok(())
}

/// An error of `file` about `field`, at `at` when its place is known.
pub(crate) fn located(
    file: &str,
    at: Option<&serde_saphyr::Location>,
    field: String,
    message: String,
) -> ConfigError {
    ConfigError {
        file: file.to_owned(),
        position: at.map(|at| (at.line(), at.column())),
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
    fn fast_and_down_intervals_default_to_interval_and_config_shows_them() {
        let with = |fields: &[&str]| {
            let config = Config::parse("t.yml", &format!("{MODULES}{}", block(fields))).unwrap();
            let block = &config.targets[0];
            let shown = [block.interval, block.fast_interval, block.down_interval]
                .map(|interval| interval.to_string());
            // /config shows the values in force, and reads back the same.
            let again = Config::parse("again", &config.to_yaml()).unwrap();
            let block = &again.targets[0];
            let read_back = [block.interval, block.fast_interval, block.down_interval]
                .map(|interval| interval.to_string());
            assert_eq!(shown, read_back, "{fields:?}");
            assert!(
                config
                    .to_yaml()
                    .contains(&format!("fast_interval: {}", shown[1])),
                "{}",
                config.to_yaml()
            );
            shown
        };
        assert_eq!(with(&[]), ["15s", "15s", "15s"]);
        assert_eq!(with(&["interval: 1m"]), ["1m", "1m", "1m"]);
        assert_eq!(
            with(&["interval: 1m", "fast_interval: 2s", "down_interval: 10s"]),
            ["1m", "2s", "10s"]
        );
        assert_eq!(with(&["down_interval: 5s"]), ["15s", "15s", "5s"]);
    }

    #[test]
    fn a_group_min_interval_is_bounded() {
        let group = |interval: &str| {
            format!(
                "{MODULES}groups:\n  web:\n    module: m\n    min_interval: {interval}\n    targets: [\"127.0.0.1:80\"]\n"
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
                error.message.contains("use a duration from 100ms to 1m"),
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
        let error =
            error_of("groups:\n  web:\n    module: nope\n    targets: [\"127.0.0.1:80\"]\n");
        assert_eq!(error.field.as_deref(), Some("groups.web.module"), "{error}");
    }

    #[test]
    fn a_group_lists_members_of_any_module_or_the_shorthand_or_both() {
        let yaml = format!(
            "{MODULES}groups:\n  zk:\n    module: m\n    targets: [\"127.0.0.1:2181\"]\n    members:\n      - {{module: tcp_connect, target: \"127.0.0.1:2181\"}}\n      - {{module: m, target: \"[::1]:2182\"}}\n"
        );
        let members_of = |config: &Config| -> Vec<String> {
            config
                .groups
                .values()
                .next()
                .unwrap()
                .members
                .iter()
                .map(|member| {
                    let target = member.target.as_ref().expect("every member has a target");
                    format!("{} {}", member.module.value, target.0)
                })
                .collect()
        };
        let config = Config::parse("t.yml", &yaml).unwrap();
        assert_eq!(
            members_of(&config),
            [
                "m 127.0.0.1:2181",
                "tcp_connect 127.0.0.1:2181",
                "m [::1]:2182"
            ],
            "the shorthand's members first, then members:"
        );
        // /config shows the members, and that reads back the same.
        let again = Config::parse("again", &config.to_yaml()).unwrap();
        assert_eq!(members_of(&again), members_of(&config));
    }

    #[test]
    fn a_group_without_members_or_with_half_a_shorthand_is_refused() {
        for (rest, needle) in [
            (
                "groups:\n  web:\n    min_interval: 1s\n",
                "a group needs from 1 to 1000 members",
            ),
            (
                "groups:\n  web:\n    module: m\n",
                "`module:` needs `targets:`",
            ),
            (
                "groups:\n  web:\n    targets: [\"127.0.0.1:80\"]\n",
                "`targets:` needs `module:`",
            ),
            (
                "groups:\n  web:\n    members: []\n",
                "a group needs from 1 to 1000 members",
            ),
            (
                "groups:\n  web:\n    members: [{module: m, target: \"127.0.0.1:80\", timeout: 1s}]\n",
                "unknown field `timeout`",
            ),
        ] {
            let error = error_of(rest);
            assert!(error.message.contains(needle), "{rest:?}: {error}");
            assert!(error.position.is_some(), "{rest:?}: {error}");
            assert!(
                error
                    .field
                    .as_deref()
                    .is_some_and(|field| field.starts_with("groups.web")),
                "{rest:?}: {error}"
            );
        }
    }

    #[test]
    fn a_members_unknown_module_is_located_at_the_member() {
        let error = error_of(
            "groups:\n  zk:\n    members:\n      - {module: m, target: \"127.0.0.1:1\"}\n      - {module: nope, target: \"127.0.0.1:2\"}\n",
        );
        error.assert_says(
            "t.yml:8:18: field `groups.zk.members[1].module`",
            &["unknown module \"nope\""],
        );
    }

    /// Exec modules `plain` (no placeholder) and `uses` (`{host}`).
    const EXEC_MODULES: &str = "  plain: {prober: exec, exec: {command: [/bin/true]}}\n  uses: {prober: exec, exec: {command: [/bin/check, \"--host={host}\"]}}\n";

    #[test]
    fn a_member_without_a_target_is_an_exec_check_that_takes_none() {
        let config = Config::parse(
            "t.yml",
            &format!(
                "{MODULES}{EXEC_MODULES}groups:\n  zk:\n    members:\n      - {{module: plain}}\n      - {{module: plain, target: \"127.0.0.1:1\"}}\n"
            ),
        )
        .unwrap();
        let members = &config.groups.values().next().unwrap().members;
        assert_eq!(members[0].target, None);
        assert_eq!(
            members[1].target.as_ref().map(|t| t.0.to_string()),
            Some("127.0.0.1:1".to_owned()),
            "a target is still accepted where the command does not use it"
        );
        // /config shows the member without a target, and reads back.
        let again = Config::parse("again", &config.to_yaml()).unwrap();
        let shown = |members: &[crate::config::GroupMember]| -> Vec<_> {
            members
                .iter()
                .map(|member| (member.module.value.clone(), member.target.clone()))
                .collect()
        };
        assert_eq!(
            shown(&again.groups.values().next().unwrap().members),
            shown(members)
        );

        for (module, needle) in [
            ("uses", "its command uses {host}"),
            ("m", "probes a port (prober tcp_halfopen)"),
            ("tcp_connect", "probes a port (prober tcp_connect)"),
        ] {
            let error = error_of(&format!(
                "{EXEC_MODULES}groups:\n  zk:\n    members:\n      - {{module: plain}}\n      - {{module: {module}}}\n"
            ));
            // At the member's module, the member having no target.
            error.assert_says(
                "t.yml:10:18: field `groups.zk.members[1].target`",
                &[needle, "give it a target"],
            );
        }
    }

    #[test]
    fn a_target_repeated_within_a_module_is_an_error() {
        let error = error_of(
            "targets:\n  - module: m\n    targets: [\"127.0.0.1:80\"]\n  - module: m\n    interval: 5s\n    targets: [\"127.0.0.1:81\", \"127.0.0.1:80\"]\n",
        );
        error.assert_says("t.yml:9:31: field `targets[1].targets[1]`", &["repeats"]);
    }

    /// A block of `m` with `fields` (one `key: value` per line) and one target.
    fn block(fields: &[&str]) -> String {
        let mut yaml = "targets:\n  - module: m\n    targets: [\"127.0.0.1:80\"]\n".to_owned();
        for field in fields {
            yaml.push_str(&format!("    {field}\n"));
        }
        yaml
    }

    fn group(members: usize) -> String {
        let list: Vec<String> = (1..=members)
            .map(|port| format!("\"127.0.0.1:{port}\""))
            .collect();
        format!(
            "groups:\n  web:\n    module: m\n    targets: [{}]\n",
            list.join(", ")
        )
    }

    #[test]
    fn intervals_rise_fall_and_group_sizes_are_bounded() {
        for rest in [
            block(&["interval: 1s"]),
            block(&["interval: 1d"]),
            block(&["fast_interval: 1s", "down_interval: 1d"]),
            block(&["rise: 1", "fall: 1"]),
            block(&["rise: 100", "fall: 100"]),
            group(1),
            group(1000),
        ] {
            if let Err(error) = Config::parse("t.yml", &format!("{MODULES}{rest}")) {
                panic!("{rest:?} should be accepted: {error}");
            }
        }
        for (rest, field, needle) in [
            (
                block(&["interval: 999ms"]),
                "targets[0].interval",
                "from 1s to 1d",
            ),
            (
                block(&["interval: 1d1ms"]),
                "targets[0].interval",
                "from 1s to 1d",
            ),
            (
                block(&["interval: 1ms"]),
                "targets[0].interval",
                "from 1s to 1d",
            ),
            (
                block(&["fast_interval: 999ms"]),
                "targets[0].fast_interval",
                "from 1s to 1d",
            ),
            (
                block(&["down_interval: 1d1ms"]),
                "targets[0].down_interval",
                "from 1s to 1d",
            ),
            (block(&["rise: 0"]), "targets[0].rise", "from 1 to 100"),
            (block(&["rise: 101"]), "targets[0].rise", "from 1 to 100"),
            (
                block(&["rise: 4294967295"]),
                "targets[0].rise",
                "from 1 to 100",
            ),
            (block(&["fall: 0"]), "targets[0].fall", "from 1 to 100"),
            (block(&["fall: 101"]), "targets[0].fall", "from 1 to 100"),
            (
                group(0),
                "groups.web",
                "a group needs from 1 to 1000 members",
            ),
            (group(1001), "groups.web.targets", "from 1 to 1000"),
        ] {
            let error = error_of(&rest);
            assert!(
                error.field.as_deref().is_some_and(|f| f.starts_with(field)),
                "{rest:?}: {error}"
            );
            assert!(error.position.is_some(), "{rest:?}: {error}");
            assert!(error.message.contains(needle), "{rest:?}: {error}");
        }
    }

    /// Reading stops at the first member past the limit, with the error at
    /// the start of the list.
    #[test]
    fn a_group_past_the_limit_is_refused_at_its_list() {
        error_of(&group(1001)).assert_says(
            "t.yml:7:14: field `groups.web.targets`",
            &["more than 1000 members: a group has from 1 to 1000 members"],
        );
    }

    /// `count` distinct targets in blocks of at most 60 000 (one port each).
    fn blocks_of(count: u32) -> Vec<super::TargetBlock> {
        use super::{TargetBlock, TargetSpec};
        use crate::target::{Host, Target};
        use serde_saphyr::{Location, Spanned};
        fn spanned<T>(value: T) -> Spanned<T> {
            Spanned::new(value, Location::UNKNOWN, Location::UNKNOWN)
        }
        (0..count.div_ceil(60_000))
            .map(|block| TargetBlock {
                module: spanned("m".to_owned()),
                interval: super::default_interval(),
                fast_interval: super::default_interval(),
                down_interval: super::default_interval(),
                rise: 2,
                fall: 3,
                targets: (block * 60_000..count.min((block + 1) * 60_000))
                    .map(|n| {
                        spanned(TargetSpec(Target {
                            host: Host::Ip(std::net::Ipv4Addr::from(0x7f00_0000 + n).into()),
                            port: 80,
                        }))
                    })
                    .collect(),
                labels: std::collections::BTreeMap::new(),
            })
            .collect()
    }

    /// The checks of [`super::validate`] on parts, no module set aside.
    fn validate(
        file: &str,
        modules: &std::collections::BTreeMap<String, crate::config::Module>,
        blocks: &[super::TargetBlock],
        groups: &std::collections::BTreeMap<super::GroupName, super::Group>,
    ) -> Result<(), crate::config::ConfigError> {
        super::validate_parts(file, modules, &Default::default(), blocks, groups)
    }

    #[test]
    fn a_config_schedules_at_most_a_million_targets() {
        let modules = std::collections::BTreeMap::from([(
            "m".to_owned(),
            crate::config::Module::tcp_halfopen(),
        )]);
        let groups = std::collections::BTreeMap::new();
        let mut blocks = blocks_of(1_000_000);
        validate("t.yml", &modules, &blocks, &groups).expect("1 000 000 targets");
        let mut one_more = blocks[0].clone();
        one_more.targets.truncate(1);
        one_more.targets[0].value.0.port = 81;
        blocks.push(one_more);
        let error = validate("t.yml", &modules, &blocks, &groups).expect_err("1 000 001 targets");
        assert_eq!(
            error.field.as_deref(),
            Some("targets[17].targets[0]"),
            "{error}"
        );
        assert!(error.message.contains("at most 1000000"), "{error}");
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
                "from 1 to 100",
            ),
            (
                "targets:\n  - module: m\n    interval: 0s\n    targets: []\n",
                "targets[0].interval",
                "from 1s to 1d",
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
