//! Property tests of the parsers that read untrusted text: the target
//! (`/probe?target=`, the config's targets), the Prometheus duration and the
//! whole config file. Each must answer every input with a value, `Ok` or an
//! error that says what is wrong in one line, and never panic; the target
//! parser must also give back every valid target from its text.
//!
//! The query-string parser is crate-private; its properties are in
//! `src/http/query_proptest.rs`.
//!
//! Case counts are fixed (see [`cases`]) so that the file runs in a few
//! seconds of a debug build on two shared cores; `PROPTEST_CASES=100000`
//! runs a deeper search locally. Seeds are random, so every run searches
//! anew; a failure prints the shrunk input, which becomes a unit test
//! beside the parser. No failure-persistence files are written.

use proptest::prelude::*;
use proptest::sample::select;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;
use synack_exporter::{ConfigError, Exporter, Host, PromDuration, Target};

#[path = "../common/proptest_config.rs"]
mod proptest_config;
use proptest_config::cases;

/// A one-line message: what `/probe` answers and the log shows.
fn assert_one_line(message: &str, input: &str) {
    assert!(!message.is_empty(), "empty message for {input:?}");
    assert!(
        !message.contains(['\n', '\r']),
        "message for {input:?} spans lines: {message:?}"
    );
}

// ---------------------------------------------------------------- targets

/// A DNS label as the parser takes it: letters, digits, `_` and inner `-`.
fn label() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?"
}

/// A last label that no resolver would read as a number (`127.1`, `0x7f`).
fn last_label() -> impl Strategy<Value = String> {
    label().prop_filter("a numeric last label is refused as ambiguous", |label| {
        !(label.bytes().all(|b| b.is_ascii_digit())
            || (label.len() > 2 && label[..2].eq_ignore_ascii_case("0x")))
    })
}

/// A host name of one to five labels, fully qualified (`a.b.`) or not.
fn dns_name() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(label(), 0..5),
        last_label(),
        any::<bool>(),
    )
        .prop_map(|(mut labels, last, rooted)| {
            labels.push(last);
            let mut name = labels.join(".");
            if rooted {
                name.push('.');
            }
            name
        })
}

/// IPv6 addresses with runs of zero groups, so that every `::` position
/// and the IPv4-mapped form are written and read back, not only the
/// random addresses that `any::<u128>()` gives.
fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        any::<u128>().prop_map(Ipv6Addr::from),
        prop::array::uniform8(prop_oneof![Just(0u16), any::<u16>()]).prop_map(Ipv6Addr::from),
        any::<u32>().prop_map(|v4| Ipv4Addr::from(v4).to_ipv6_mapped()),
    ]
}

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        any::<u32>().prop_map(|ip| Host::Ip(IpAddr::V4(Ipv4Addr::from(ip)))),
        ipv6().prop_map(|ip| Host::Ip(IpAddr::V6(ip))),
        dns_name().prop_map(Host::Name),
    ]
}

fn valid_target() -> impl Strategy<Value = Target> {
    (host(), 1..=u16::MAX).prop_map(|(host, port)| Target { host, port })
}

/// Texts near the valid ones, where the parser's branches are: a valid
/// target with one character inserted, replaced or removed; hosts written
/// in other forms (uppercase and uncompressed IPv6, leading zeros); and
/// strings made of the characters that matter to it.
fn target_like_text() -> impl Strategy<Value = String> {
    let edited = (
        valid_target(),
        any::<prop::sample::Index>(),
        0..3u8,
        select(vec![
            ':', '[', ']', '.', '-', '0', 'x', '%', '/', ' ', '\n', '\0', 'é', '_',
        ]),
    )
        .prop_map(|(target, at, edit, c)| {
            let mut chars: Vec<char> = target.to_string().chars().collect();
            let index = at.index(chars.len() + 1);
            match edit {
                0 => chars.insert(index, c),
                1 if index < chars.len() => chars[index] = c,
                _ if index < chars.len() => {
                    chars.remove(index);
                }
                _ => chars.push(c),
            }
            chars.into_iter().collect()
        });
    let other_forms = (
        prop::array::uniform8(any::<u16>()),
        any::<bool>(),
        "0{0,2}[1-9][0-9]{0,5}",
    )
        .prop_map(|(groups, upper, port)| {
            let full: Vec<String> = groups
                .iter()
                .map(|g| {
                    if upper {
                        format!("{g:X}")
                    } else {
                        format!("{g:04x}")
                    }
                })
                .collect();
            format!("[{}]:{port}", full.join(":"))
        });
    prop_oneof![
        edited,
        other_forms,
        "[0-9]{1,4}(\\.[0-9]{1,4}){0,4}:[0-9]{0,6}",
        "[a-zA-Z0-9:.\\[\\]_%-]{0,40}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(cases(3000))]

    /// Every target, written out, reads back as itself.
    #[test]
    fn valid_targets_round_trip(target in valid_target()) {
        let text = target.to_string();
        prop_assert_eq!(Target::parse(&text), Ok(target), "text {:?}", text);
    }

    /// Any text either fails with a one-line message, or parses to a target
    /// whose text parses to the same target; a name is kept as written.
    #[test]
    fn accepted_targets_are_stable_and_errors_are_one_line(text in target_like_text()) {
        match Target::parse(&text) {
            Ok(target) => {
                prop_assert_ne!(target.port, 0);
                let shown = target.to_string();
                let again = Target::parse(&shown);
                prop_assert_eq!(again.as_ref(), Ok(&target), "shown {:?}", shown);
                if let Host::Name(_) = target.host {
                    prop_assert_eq!(&shown, &text);
                }
            }
            Err(error) => assert_one_line(&error.to_string(), &text),
        }
    }
}

// -------------------------------------------------------------- durations

/// Prometheus' units with their length in ms, largest first: restated
/// from Prometheus' grammar rather than taken from the parser, so that the
/// model below is not the code it checks.
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// A number as written: small, any `u64` at any magnitude, near the
/// overflow of a unit, with leading zeros, or longer than a `u64`.
fn duration_number() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..1000).prop_map(|n| n.to_string()),
        (any::<u64>(), 0..64u32).prop_map(|(n, shift)| (n >> shift).to_string()),
        (select(UNITS.to_vec()), 0..3u64).prop_map(|((_, ms), delta)| {
            (u128::from(u64::MAX / ms) + u128::from(delta) - 1).to_string()
        }),
        "0{1,3}[0-9]{1,3}",
        "[1-9][0-9]{19,40}",
    ]
}

/// A unit: one of Prometheus', or a near miss. Every one is a non-empty
/// run of letters or of non-ASCII, so that pieces written one after the
/// other split where they were joined.
fn duration_unit() -> impl Strategy<Value = &'static str> {
    select(vec![
        "y", "w", "d", "h", "m", "s", "ms", "us", "µs", "ns", "M", "S", "H", "mss", "sm", "x",
        "min", "Y",
    ])
}

/// What Prometheus makes of `pieces`: the total in ms, or `None` where it
/// refuses them (no pieces, an unknown unit, units not from largest to
/// smallest, a number or total past `u64`).
fn expected_ms(pieces: &[(String, &str)]) -> Option<u64> {
    if pieces.is_empty() {
        return None;
    }
    let mut next_allowed = 0;
    let mut total: u128 = 0;
    for (number, unit) in pieces {
        let number: u64 = number.parse().ok()?;
        let index = next_allowed
            + UNITS[next_allowed..]
                .iter()
                .position(|(name, _)| name == unit)?;
        next_allowed = index + 1;
        total += u128::from(number) * u128::from(UNITS[index].1);
    }
    u64::try_from(total).ok()
}

proptest! {
    #![proptest_config(cases(3000))]

    /// Any text is a duration or a one-line error naming the text.
    #[test]
    fn durations_never_panic(text in prop_oneof![any::<String>(), "[0-9a-zµ. +-]{0,24}"]) {
        if let Err(message) = PromDuration::parse(&text) {
            assert_one_line(&message, &text);
            prop_assert!(message.contains(&format!("{text:?}")), "{}", message);
        }
    }

    /// Pieces of numbers and units parse exactly as Prometheus' rules say,
    /// with overflow an error rather than a wrap or a panic.
    #[test]
    fn durations_follow_prometheus_rules(
        pieces in prop::collection::vec((duration_number(), duration_unit()), 0..5)
    ) {
        let text: String = pieces.iter().map(|(number, unit)| format!("{number}{unit}")).collect();
        let parsed = PromDuration::parse(&text).ok().map(PromDuration::get);
        prop_assert_eq!(parsed, expected_ms(&pieces).map(Duration::from_millis), "text {:?}", text);
    }

    /// The shortest form written for any duration reads back as it.
    #[test]
    fn durations_round_trip(ms in prop_oneof![0u64..100_000_000, any::<u64>()]) {
        let duration = PromDuration::new(Duration::from_millis(ms));
        let text = duration.to_string();
        prop_assert_eq!(PromDuration::parse(&text), Ok(duration), "text {:?}", text);
    }
}

// ----------------------------------------------------------------- config

/// What a config line's value is, for the values a property writes there.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Slot {
    /// A key with a block under it, no value.
    Header,
    Prober,
    ExecProber,
    Timeout,
    IpProtocol,
    Bool,
    Attempts,
    AttemptInterval,
    SourceIp,
    SourceInterface,
    Mark,
    Dscp,
    Module,
    Interval,
    RiseFall,
    MinInterval,
    LabelValue,
    /// A list item `- host:port`, with ports from this base up, so that
    /// no two items of the template name the same target.
    Target(u16),
    /// An argument after the program in an exec command.
    Argument,
    Program,
    EnvValue,
}

/// A config that uses every section and most keys: `(indent, key, slot)`,
/// `-` for a list item. [`line`] writes one line of it.
const TEMPLATE: &[(usize, &str, Slot)] = &[
    (0, "modules", Slot::Header),
    (2, "m1", Slot::Header),
    (4, "prober", Slot::Prober),
    (4, "timeout", Slot::Timeout),
    (4, "tcp", Slot::Header),
    (6, "preferred_ip_protocol", Slot::IpProtocol),
    (6, "ip_protocol_fallback", Slot::Bool),
    (6, "source_ip_address", Slot::SourceIp),
    (6, "source_interface", Slot::SourceInterface),
    (6, "mark", Slot::Mark),
    (6, "dscp", Slot::Dscp),
    (6, "attempts", Slot::Attempts),
    (6, "attempt_interval", Slot::AttemptInterval),
    (6, "stop_on_success", Slot::Bool),
    (2, "m2", Slot::Header),
    (4, "prober", Slot::ExecProber),
    (4, "timeout", Slot::Timeout),
    (4, "exec", Slot::Header),
    (6, "command", Slot::Header),
    (8, "-", Slot::Program),
    (8, "-", Slot::Argument),
    (6, "env", Slot::Header),
    (8, "CHECK_MODE", Slot::EnvValue),
    (0, "targets", Slot::Header),
    (2, "- module", Slot::Module),
    (4, "interval", Slot::Interval),
    (4, "rise", Slot::RiseFall),
    (4, "fall", Slot::RiseFall),
    (4, "targets", Slot::Header),
    (6, "-", Slot::Target(1000)),
    (6, "-", Slot::Target(2000)),
    (4, "labels", Slot::Header),
    (6, "team", Slot::LabelValue),
    (0, "groups", Slot::Header),
    (2, "g1", Slot::Header),
    (4, "module", Slot::Module),
    (4, "min_interval", Slot::MinInterval),
    (4, "targets", Slot::Header),
    (6, "-", Slot::Target(3000)),
];

/// A line of the config: `key: value`, `- value`, or `key:` for a header.
fn line(indent: usize, key: &str, value: &str) -> String {
    let pad = " ".repeat(indent);
    match (key, value) {
        ("-", _) => format!("{pad}- {value}"),
        (_, "") => format!("{pad}{key}:"),
        _ => format!("{pad}{key}: {value}"),
    }
}

/// The 1-based column where `line` puts the value.
fn value_column(indent: usize, key: &str) -> usize {
    let before = if key == "-" { 2 } else { key.len() + 2 };
    indent + before + 1
}

/// Values the config accepts in `slot`, alone and together: attempts stay
/// at 1 so that no pair of fields can disagree.
fn good_value(slot: Slot) -> BoxedStrategy<String> {
    let duration = |low: u64, high: u64| {
        (low..=high)
            .prop_map(|ms| PromDuration::new(Duration::from_millis(ms)).to_string())
            .boxed()
    };
    match slot {
        Slot::Header => Just(String::new()).boxed(),
        Slot::Prober => select(vec!["tcp_halfopen", "tcp_connect"])
            .prop_map(str::to_owned)
            .boxed(),
        Slot::ExecProber => Just("exec".to_owned()).boxed(),
        Slot::Timeout => duration(1, 120_000),
        Slot::IpProtocol => select(vec!["ip4", "ip6", "ipv4", "ipv6"])
            .prop_map(str::to_owned)
            .boxed(),
        Slot::Bool => select(vec!["true", "false"])
            .prop_map(str::to_owned)
            .boxed(),
        Slot::Attempts => Just("1".to_owned()).boxed(),
        Slot::AttemptInterval => duration(10, 60_000),
        // Addresses every host has: a load binds the source address.
        Slot::SourceIp => select(vec!["127.0.0.1", "\"::1\"", "127.1.2.3"])
            .prop_map(str::to_owned)
            .boxed(),
        // The interface every host has; a missing one is only a warning.
        Slot::SourceInterface => Just("lo".to_owned()).boxed(),
        // Without CAP_NET_ADMIN a mark is a warning, not an error.
        Slot::Mark => prop_oneof![
            any::<u32>().prop_map(|mark| mark.to_string()),
            any::<u32>().prop_map(|mark| format!("{mark:#x}")),
        ]
        .boxed(),
        Slot::Dscp => (0u8..=63).prop_map(|dscp| dscp.to_string()).boxed(),
        Slot::Module => select(vec!["m1", "tcp_halfopen", "tcp_connect", "m2"])
            .prop_map(str::to_owned)
            .boxed(),
        Slot::Interval => duration(1000, 24 * 3_600_000),
        Slot::RiseFall => (1..=100u32).prop_map(|n| n.to_string()).boxed(),
        Slot::MinInterval => duration(100, 60_000),
        Slot::LabelValue => "[a-z][a-z0-9 -]{0,10}[a-z]".boxed(),
        Slot::Target(base) => (host(), 0..1000u16)
            .prop_map(move |(host, offset)| {
                format!(
                    "\"{}\"",
                    Target {
                        host,
                        port: base + offset
                    }
                )
            })
            .boxed(),
        Slot::Argument => select(vec![
            "\"{host}\"",
            "\"--port={port}\"",
            "\"{{literal}}\"",
            "-v",
        ])
        .prop_map(str::to_owned)
        .boxed(),
        // Programs every host has: a load checks that the program runs.
        Slot::Program => select(vec!["/bin/true", "true", "\"/bin/sh\""])
            .prop_map(str::to_owned)
            .boxed(),
        Slot::EnvValue => "[a-z]{0,8}".prop_map(|v| format!("\"{v}\"")).boxed(),
    }
}

/// Values that `slot` refuses on their own, each a scalar or a flow
/// collection on the key's line, so that the error is located there.
fn bad_value(slot: Slot) -> BoxedStrategy<String> {
    let any_of = |values: &[&'static str]| select(values.to_vec()).prop_map(str::to_owned).boxed();
    let bad_duration = [
        "5x",
        "1.5s",
        "-1s",
        "30s1m",
        "18446744073709551616ms",
        "[1s]",
        "{a: 1}",
    ];
    match slot {
        Slot::Header => unreachable!("headers have no value"),
        // Not icmp, http and the like: blackbox_exporter's other probers
        // load, their modules set aside with a warning (issue 20).
        Slot::Prober => any_of(&["udp", "tcp-halfopen", "1", "ping", "[tcp_connect]"]),
        Slot::ExecProber => any_of(&["execute", "1", "EXEC"]),
        Slot::Timeout => any_of(&[&bad_duration[..], &["0s", "2m1ms", "1000y"]].concat()),
        Slot::IpProtocol => any_of(&["ip5", "IPv4", "4", "{}"]),
        Slot::Bool => any_of(&["maybe", "2", "tru", "[true]"]),
        Slot::Attempts => any_of(&["0", "101", "-1", "4294967296", "many", "1.5"]),
        Slot::AttemptInterval => any_of(&[&bad_duration[..], &["9ms", "1m1ms"]].concat()),
        Slot::SourceIp => any_of(&["1.2.3", "localhost", "\"::g\"", "256.0.0.1"]),
        Slot::SourceInterface => {
            any_of(&["\"eth0:1\"", "abcdefghijklmnop", "\"\"", "\"a/b\"", "[lo]"])
        }
        Slot::Mark => any_of(&["-1", "4294967296", "0x1g", "mark", "1.5"]),
        Slot::Dscp => any_of(&["64", "-1", "256", "ef", "1.5"]),
        Slot::Module => any_of(&["nope", "\"\"", "\"a b\"", "[m1]"]),
        Slot::Interval => any_of(&[&bad_duration[..], &["999ms", "1d1ms"]].concat()),
        Slot::RiseFall => any_of(&["0", "101", "x", "-3", "1e3"]),
        Slot::MinInterval => any_of(&[&bad_duration[..], &["99ms", "1m1ms"]].concat()),
        Slot::LabelValue => any_of(&["[1, 2]", "{a: b}"]),
        Slot::Target(_) => any_of(&[
            "\"h:0\"",
            "localhost",
            "\"::1:80\"",
            "\"127.1:80\"",
            "\"-rf:80\"",
            "\"a..b:1\"",
            "\"[x]:1\"",
        ]),
        Slot::Argument => any_of(&["\"{hots}\"", "\"a{b\"", "\"}\"", "\"{target\""]),
        Slot::Program => any_of(&["\"\"", "\"{host}\""]),
        Slot::EnvValue => any_of(&["[a]", "{a: b}"]),
    }
}

/// Anything at all in a value's place: good, bad, YAML's own syntax
/// (anchors, aliases, tags, block scalars, unclosed quotes and brackets)
/// and random text.
fn any_value(slot: Slot) -> BoxedStrategy<String> {
    let syntax = select(vec![
        "",
        "~",
        "null",
        "&a 1",
        "*a",
        "*nope",
        "!custom x",
        "!!str 5s",
        "|",
        ">-",
        "'open",
        "\"open",
        "[",
        "{",
        "]",
        "}",
        "- x",
        "? x",
        ":",
        "#",
        "%TAG",
        "@x",
        "`x",
        "0x1F",
        "1e400",
        "-.inf",
        ".nan",
        "<<: *a",
        "\"\\u0000\"",
        "\"\\x1b[31m\"",
        "\"a\\nb\"",
    ])
    .prop_map(str::to_owned);
    let mut options = vec![
        syntax.boxed(),
        "\\PC{0,12}".boxed(),
        any::<String>().boxed(),
    ];
    if slot != Slot::Header {
        options.push(good_value(slot));
        options.push(bad_value(slot));
    }
    prop::strategy::Union::new(options).boxed()
}

/// A good config with the value of line `at` replaced by `bad`.
fn config_with_bad_value() -> impl Strategy<Value = (String, usize)> {
    let values: Vec<_> = TEMPLATE
        .iter()
        .map(|&(_, _, slot)| good_value(slot))
        .collect();
    let bad_lines: Vec<usize> = (0..TEMPLATE.len())
        .filter(|&index| TEMPLATE[index].2 != Slot::Header)
        .collect();
    (values, select(bad_lines))
        .prop_flat_map(|(values, at)| (Just(values), Just(at), bad_value(TEMPLATE[at].2)))
        .prop_map(|(mut values, at, bad)| {
            values[at] = bad;
            (render(&values), at)
        })
}

/// The template's lines with `values`.
fn template_lines(values: &[String]) -> Vec<String> {
    TEMPLATE
        .iter()
        .zip(values)
        .map(|(&(indent, key, _), value)| line(indent, key, value))
        .collect()
}

fn render(values: &[String]) -> String {
    template_lines(values).join("\n") + "\n"
}

/// One line of a YAML-ish document from the template: as it is, dropped,
/// doubled, shifted left or right, or with its key replaced.
fn mangled_line(index: usize) -> impl Strategy<Value = String> {
    let (indent, key, slot) = TEMPLATE[index];
    (any_value(slot), 0..8u8, 0..4usize, "[a-z_]{1,8}").prop_map(
        move |(value, how, shift, other_key)| match how {
            0 => String::new(),
            1 => format!(
                "{}\n{}",
                line(indent, key, &value),
                line(indent, key, &value)
            ),
            2 => line(indent.saturating_sub(shift), key, &value),
            3 => line(indent + shift, key, &value),
            4 => line(indent, &other_key, &value),
            _ => line(indent, key, &value),
        },
    )
}

/// A good config with one to four of its lines mangled, so that the
/// loader reads deep into the document before it meets them.
fn yamlish_config() -> impl Strategy<Value = String> {
    let values: Vec<_> = TEMPLATE
        .iter()
        .map(|&(_, _, slot)| good_value(slot))
        .collect();
    let edit = (0..TEMPLATE.len()).prop_flat_map(|index| (Just(index), mangled_line(index)));
    (values, prop::collection::vec(edit, 1..5)).prop_map(|(values, edits)| {
        let mut lines = template_lines(&values);
        for (index, replacement) in edits {
            lines[index] = replacement;
        }
        lines.join("\n")
    })
}

/// Loads `yaml` as the public API does, as a file named `fuzz.yml`.
fn check(yaml: &str) -> Result<(), ConfigError> {
    Exporter::builder()
        .config_text("fuzz.yml", yaml)
        .check_config()
}

/// A config error is one line (control characters escaped) and, when it
/// has a position, starts with `file:line:column` within the text.
fn assert_config_error_well_formed(error: &ConfigError, yaml: &str) {
    let shown = error.to_string();
    assert_one_line(&shown, yaml);
    if let Some((line, column)) = error.position {
        assert!(
            shown.starts_with(&format!("fuzz.yml:{line}:{column}: ")),
            "{shown}"
        );
        let lines = yaml.lines().count() as u64;
        assert!(
            (1..=lines + 1).contains(&line),
            "line {line} of {lines}: {shown}"
        );
    } else {
        assert!(shown.starts_with("fuzz.yml: "), "{shown}");
    }
}

proptest! {
    #![proptest_config(cases(400))]

    /// The template with good values loads: the generators below start
    /// from a config that works, so their errors come from what they change.
    #[test]
    fn template_with_good_values_loads(
        values in TEMPLATE.iter().map(|&(_, _, slot)| good_value(slot)).collect::<Vec<_>>()
    ) {
        let yaml = render(&values);
        if let Err(error) = check(&yaml) {
            panic!("{yaml}\nis refused: {error}");
        }
    }

    /// One bad value in a good config is reported at its line and column,
    /// with the file name first.
    #[test]
    fn a_bad_value_is_located((yaml, at) in config_with_bad_value()) {
        let (indent, key, slot) = TEMPLATE[at];
        let error = match check(&yaml) {
            Ok(()) => panic!("{yaml}\nis accepted with a bad value on line {}", at + 1),
            Err(error) => error,
        };
        assert_config_error_well_formed(&error, &yaml);
        // The error points into the bad value: at its start, or for a flow
        // collection (`{}`) at the token inside it that is wrong. The
        // program is checked once the command list is read, so its error
        // points at the list, which starts on the program's line.
        let first = if slot == Slot::Program { indent + 1 } else { value_column(indent, key) };
        let last = yaml.lines().nth(at).map_or(0, str::len) + 1;
        let (line, column) = error.position.unwrap_or_else(|| panic!("{yaml}\nunlocated: {error}"));
        prop_assert_eq!(line, (at + 1) as u64, "{}\n{}", yaml, error);
        prop_assert!((first as u64..=last as u64).contains(&column), "{}\n{}", yaml, error);
    }

    /// YAML-ish documents made of the config's keys with lines dropped,
    /// doubled, shifted or renamed and any values: loaded or refused with a
    /// well-formed error, never a panic.
    #[test]
    fn yamlish_configs_never_panic(yaml in yamlish_config()) {
        if let Err(error) = check(&yaml) {
            assert_config_error_well_formed(&error, &yaml);
        }
    }

    /// Any text at all, control characters included.
    #[test]
    fn arbitrary_configs_never_panic(yaml in prop_oneof![any::<String>(), "[a-z:\\-\\[\\]{}&*!|>'\" \n]{0,200}"]) {
        if let Err(error) = check(&yaml) {
            assert_config_error_well_formed(&error, &yaml);
        }
    }
}
