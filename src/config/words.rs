//! Config errors in the user's words.
//!
//! serde-saphyr's own messages are written for the programmer who calls
//! it: `expected sequence start`, `invalid u32`, `duplicate mapping key:
//! a, set DuplicateKeyPolicy in Options if acceptable`. The user who
//! wrote the file knows lists, maps, numbers and keys, and has no
//! `Options` to set. [`UserWords`] is a serde-saphyr `MessageFormatter`
//! that says the same in those terms; messages it does not know it leaves
//! to the crate's own user-facing formatter. The YAML parser's messages
//! (`while parsing a block mapping, did not find expected key`) are said
//! by their kind: a line that does not line up, a quote not closed.
//!
//! The field path comes from serde_path_to_error, which knows the
//! structs rather than the file: [`user_field`] drops the `.value` that a
//! position-keeping wrapper adds and names the key that a duplicate-key
//! error could not (`modules.?` becomes `modules.web`).

#![forbid(unsafe_code)]

use serde_saphyr::granit_parser::ErrorKind;
use serde_saphyr::localizer::ExternalMessageSource;
use serde_saphyr::{Error, MessageFormatter, UserMessageFormatter};
use std::borrow::Cow;

/// The value `word` names in `words` (each word with its value), or why
/// it names none, in the user's words.
pub(super) fn one_of<T: Copy>(word: &str, words: &[(&str, T)]) -> Result<T, String> {
    words
        .iter()
        .find(|(known, _)| *known == word)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let expected: Vec<&str> = words.iter().map(|(known, _)| *known).collect();
            unknown_value(word, &expected)
        })
}

/// A word that is none of `expected`, in the user's words.
pub(super) fn unknown_value(word: &str, expected: &[&str]) -> String {
    match word {
        // How saphyr names an empty value (`prober:` and no more).
        "~" | "" | "null" => {
            format!("the value is missing: use one of {}", expected.join(", "))
        }
        _ => format!("unknown value {word:?}: use one of {}", expected.join(", ")),
    }
}

/// serde-saphyr's formatter, in the user's words; see the module docs.
pub(super) struct UserWords;

impl MessageFormatter for UserWords {
    fn format_message<'a>(&self, err: &'a Error) -> Cow<'a, str> {
        match err {
            Error::Unexpected { expected, .. } => Cow::Borrowed(match *expected {
                "sequence start" => {
                    "expected a list here: [a, b], or one \"- item\" per line below the key"
                }
                "mapping start" => {
                    "expected a map here: \"key: value\" lines below the key, or {key: value}"
                }
                "string scalar" | "scalar" => {
                    "expected a single value here (text or a number), not a list or a map"
                }
                _ => "this value does not fit here: check the indentation and the brackets",
            }),
            Error::DuplicateMappingKey { key, .. } => match key {
                Some(key) => {
                    Cow::Owned(format!("key `{key}` is given twice in this map: keep one"))
                }
                None => Cow::Borrowed("a key is given twice in this map: keep one"),
            },
            Error::InvalidScalar { ty, .. } => {
                Cow::Owned(format!("expected {}", kind_in_words(ty)))
            }
            Error::InvalidBooleanStrict { .. } => Cow::Borrowed("expected true or false"),
            Error::NullIntoString { .. } | Error::InvalidCharNull { .. } => {
                Cow::Borrowed("the value is missing: write one after the colon")
            }
            Error::SerdeUnknownVariant {
                variant, expected, ..
            } => Cow::Owned(unknown_value(variant, expected)),
            Error::SerdeInvalidType {
                unexpected,
                expected,
                ..
            }
            | Error::SerdeInvalidValue {
                unexpected,
                expected,
                ..
            } => Cow::Owned(format!(
                "expected {}, not {}",
                kind_in_words(expected),
                found_in_words(unexpected)
            )),
            Error::SerdeInvalidLength { len, expected, .. } => Cow::Owned(format!(
                "expected {}, not {len} items",
                kind_in_words(expected)
            )),
            Error::UnknownAnchor { .. } => {
                Cow::Borrowed("this alias (*name) refers to no anchor (&name) defined before it")
            }
            Error::MultipleDocuments { .. } => Cow::Borrowed(
                "the file holds more than one YAML document (separated by ---): keep one",
            ),
            Error::Eof { .. } => Cow::Borrowed("the file ends in the middle of a value"),
            Error::Message { msg, .. } if msg == "invalid IP address syntax" => {
                Cow::Borrowed("expected an IP address, such as 192.0.2.10 or 2001:db8::10")
            }
            Error::ExternalMessage { source, .. } => match &**source {
                ExternalMessageSource::Parser(scan) => syntax_in_words(scan.kind()),
                _ => UserMessageFormatter.format_message(err),
            },
            other => UserMessageFormatter.format_message(other),
        }
    }
}

/// A mistake that the YAML parser found, in the user's words: the
/// parser names its grammar ("while parsing a block mapping, did not
/// find expected key"), the user wrote lines, keys, lists, quotes and
/// brackets. Mistakes users rarely make (tags, directives, anchors) get
/// one sentence that points at the usual causes.
fn syntax_in_words(kind: &ErrorKind) -> Cow<'static, str> {
    Cow::Borrowed(match kind {
        ErrorKind::ExpectedBlockMappingKey => {
            "this line does not line up with the keys above it: check its indentation"
        }
        ErrorKind::ExpectedBlockSequenceEntry => {
            "this line does not line up with the \"- \" items above it: check its indentation"
        }
        ErrorKind::InvalidIndentation
        | ErrorKind::InvalidFlowScalarIndent
        | ErrorKind::InvalidBlockScalarIndent
        | ErrorKind::BlockSequenceEntryNotAllowed
        | ErrorKind::MappingKeyNotAllowed
        | ErrorKind::MappingValueNotAllowed => {
            "this line is not where its indentation puts it: check its indentation, and quote a \
             value that holds \": \""
        }
        ErrorKind::TabNotAllowed
        | ErrorKind::TabInBlockIndentation
        | ErrorKind::TabInIndentation
        | ErrorKind::TabAtBlockScalarStart
        | ErrorKind::TabInPlainScalar => {
            "a tab indents this line: YAML is indented with spaces only"
        }
        ErrorKind::UnclosedQuotedScalar
        | ErrorKind::InvalidQuotedScalarIndent
        | ErrorKind::DocumentIndicatorInQuotedScalar => {
            "a quoted value is not closed (it may start on a line above): end it with the quote \
             it starts with"
        }
        ErrorKind::InvalidTrailingSingleQuotedScalar
        | ErrorKind::InvalidTrailingDoubleQuotedScalar => {
            "text follows the closing quote: put the whole value inside the quotes, and separate \
             list items with commas"
        }
        ErrorKind::UnknownQuotedScalarEscape
        | ErrorKind::InvalidQuotedScalarHexEscape
        | ErrorKind::InvalidLowSurrogateHexEscape
        | ErrorKind::InvalidLowSurrogate
        | ErrorKind::MissingLowSurrogate
        | ErrorKind::UnpairedLowSurrogate
        | ErrorKind::InvalidUnicodeEscape => {
            "a backslash in double quotes starts an escape that YAML does not know: write \\\\ \
             for a backslash, or use single quotes"
        }
        ErrorKind::ExpectedFlowMappingSeparator => {
            "a {map} needs a comma between its entries and } at its end"
        }
        ErrorKind::ExpectedFlowSequenceSeparator => {
            "a [list] needs a comma between its items and ] at its end"
        }
        ErrorKind::UnclosedFlowCollection { open: '[' } => {
            "this [ is not closed: end the list with ]"
        }
        ErrorKind::UnclosedFlowCollection { .. } => "this { is not closed: end the map with }",
        ErrorKind::MisplacedFlowCollectionEnd | ErrorKind::MismatchedFlowCollectionEnd { .. } => {
            "this bracket closes none that is open: pair each [ with ] and each { with }"
        }
        ErrorKind::SimpleKeyExpected | ErrorKind::InvalidSimpleKey => {
            "a key needs \": \" after it (a colon, then a space)"
        }
        ErrorKind::InvalidMappingValueWhitespace => "a key's colon needs a space after it",
        ErrorKind::UnexpectedCharacter { character: '@' } => {
            "`@` cannot start a value: put the value in quotes"
        }
        ErrorKind::UnexpectedCharacter { character: '`' } => {
            "a backquote (`) cannot start a value: put the value in quotes"
        }
        ErrorKind::UnexpectedCharacter { .. } => {
            "this character cannot start a value: put the value in quotes"
        }
        ErrorKind::ExpectedNodeContent | ErrorKind::UnexpectedEndOfPlainScalar => {
            "a value is missing here"
        }
        ErrorKind::UnexpectedEof
        | ErrorKind::UnexpectedEofBlockMapping
        | ErrorKind::UnexpectedEofBlockSequence
        | ErrorKind::UnexpectedEofFlowMapping
        | ErrorKind::UnexpectedEofFlowSequence
        | ErrorKind::UnexpectedEofImplicitFlowMapping => "the file ends in the middle of a value",
        _ => {
            "this is not valid YAML: check the indentation, quotes and brackets here and on the \
             lines above"
        }
    })
}

/// What a serde "expected" names, in the user's words: `u32` is a whole
/// number, `a sequence` a list.
fn kind_in_words(expected: &str) -> Cow<'_, str> {
    Cow::Borrowed(match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" | "floating point" => "a number",
        "boolean" | "a boolean" | "bool" => "true or false",
        "a string" | "string" | "a borrowed string" => "text",
        "a sequence" | "sequence" => "a list",
        "a map" | "map" => "a map",
        "char" | "a character" => "a single character",
        other if other.starts_with("struct ") || other.starts_with("a map of") => {
            return Cow::Owned(other.replacen("struct ", "a map of the fields of ", 1));
        }
        other => other,
    })
}

/// What serde found instead, as its `Unexpected` says it: `sequence` is
/// a list, `integer \`-1\`` the number -1.
fn found_in_words(unexpected: &str) -> Cow<'_, str> {
    match unexpected {
        "sequence" => Cow::Borrowed("a list"),
        "map" => Cow::Borrowed("a map"),
        "unit value" | "option" => Cow::Borrowed("an empty value"),
        other => {
            let number = other
                .strip_prefix("integer ")
                .or_else(|| other.strip_prefix("floating point "));
            if let Some(number) = number {
                return Cow::Owned(format!("the number {}", number.trim_matches('`')));
            }
            if let Some(text) = other.strip_prefix("string ") {
                return Cow::Owned(format!("the text {text}"));
            }
            match other.strip_prefix("boolean ") {
                Some(boolean) => Cow::Owned(boolean.trim_matches('`').to_owned()),
                None => Cow::Borrowed(other),
            }
        }
    }
}

/// The innermost error: an alias or a snippet only wraps it.
fn innermost(mut error: &Error) -> &Error {
    while let Error::AliasError { error: inner, .. } | Error::WithSnippet { error: inner, .. } =
        error
    {
        error = inner;
    }
    error
}

/// `error`'s message in the user's words.
pub(super) fn message(error: &Error) -> String {
    UserWords.format_message(innermost(error)).into_owned()
}

/// The dotted field path of `error` as the user wrote it, `None` for the
/// file as a whole: see the module docs.
pub(super) fn user_field(path: &str, error: &Error) -> Option<String> {
    // serde_saphyr::Spanned reads its value as a field `value`: in the
    // config, `module` and the items of a target block's `targets`.
    let path = match path.strip_suffix(".value") {
        Some(inner) if inner.ends_with(".module") || inner.ends_with(']') => inner,
        _ => path,
    };
    // `?` stands for a map key that failed to be read, as a duplicate does.
    let path = match path.strip_suffix('?') {
        None => path.to_owned(),
        Some(map) => match innermost(error) {
            Error::DuplicateMappingKey { key: Some(key), .. } => format!("{map}{key}"),
            _ => map.strip_suffix('.').unwrap_or(map).to_owned(),
        },
    };
    (!path.is_empty()).then_some(path)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    /// Words of the YAML library and of Rust that a user never wrote.
    const JARGON: [&str; 12] = [
        "DuplicateKeyPolicy",
        "Options",
        "sequence",
        "mapping",
        "scalar",
        "variant",
        "u32",
        "struct",
        "invalid type",
        ".value",
        "?",
        "~",
    ];

    #[test]
    fn each_bad_input_is_located_and_said_in_the_users_words() {
        let module = "modules:\n  a:\n    prober: tcp_halfopen\n";
        let tcp = |line: &str| format!("{module}    tcp:\n      {line}\n");
        let block = |line: &str| {
            format!(
                "targets:\n  - module: tcp_halfopen\n    {line}\n    targets: [\"127.0.0.1:22\"]\n"
            )
        };
        let cases: [(String, (u64, u64), &str, &str); 17] = [
            (
                format!("{module}    prober: tcp_connect\n"),
                (4, 5),
                "modules.a.prober",
                "key `prober` is given twice in this map: keep one",
            ),
            (
                format!("{module}  a:\n    prober: tcp_connect\n"),
                (4, 3),
                "modules.a",
                "key `a` is given twice",
            ),
            (
                "targets:\n  - module: tcp_halfopen\n    targets: 127.0.0.1:22\n".to_owned(),
                (3, 14),
                "targets[0].targets",
                "expected a list here",
            ),
            (
                format!("{module}    timeout: {{a: 1}}\n"),
                (4, 14),
                "modules.a.timeout",
                "expected a single value here (text or a number), not a list or a map",
            ),
            (
                "modules: [a]\n".to_owned(),
                (1, 10),
                "modules",
                "expected a map here",
            ),
            (
                "modules:\n  a:\n    prober: exec\n    exec:\n      command: [/bin/true]\n      env: [A]\n"
                    .to_owned(),
                (6, 12),
                "modules.a.exec.env",
                "expected a map here",
            ),
            (
                tcp("ip_protocol_fallback: maybe"),
                (5, 29),
                "modules.a.tcp.ip_protocol_fallback",
                "expected true or false",
            ),
            (
                tcp("attempts: many"),
                (5, 17),
                "modules.a.tcp.attempts",
                "expected a whole number",
            ),
            (
                tcp("source_ip_address: 1.2.3"),
                (5, 26),
                "modules.a.tcp.source_ip_address",
                "expected an IP address, such as 192.0.2.10",
            ),
            (
                "modules:\n  a:\n    prober: ping\n".to_owned(),
                (3, 13),
                "modules.a.prober",
                "unknown value \"ping\": use one of tcp_halfopen, tcp_connect, exec, tcp",
            ),
            (
                "modules:\n  a:\n    prober:\n".to_owned(),
                (3, 11),
                "modules.a.prober",
                "the value is missing: use one of",
            ),
            (
                "targets:\n  - module: [x]\n    targets: [\"127.0.0.1:22\"]\n".to_owned(),
                (2, 13),
                "targets[0].module",
                "expected a single value",
            ),
            (
                "targets:\n  - module: tcp_halfopen\n    targets: [{a: 1}]\n".to_owned(),
                (3, 15),
                "targets[0].targets[0]",
                "expected a single value",
            ),
            (
                "groups:\n  g:\n    members:\n      - {module: [x], target: \"127.0.0.1:1\"}\n"
                    .to_owned(),
                (4, 18),
                "groups.g.members[0].module",
                "expected a single value",
            ),
            (
                block("rise: x"),
                (3, 11),
                "targets[0].rise",
                "expected a whole number",
            ),
            (
                "modules:\n  a: *x\n".to_owned(),
                (2, 6),
                "modules",
                "refers to no anchor",
            ),
            (
                "modules:\n\ta: 1\n".to_owned(),
                (2, 2),
                "",
                "a tab indents this line: YAML is indented with spaces only",
            ),
        ];
        for (yaml, position, field, needle) in cases {
            let error = Config::parse("bad.yml", &yaml).expect_err(&yaml);
            let text = error.to_string();
            let start = if field.is_empty() {
                format!("bad.yml:{}:{}: ", position.0, position.1)
            } else {
                format!("bad.yml:{}:{}: field `{field}`: ", position.0, position.1)
            };
            assert!(
                text.starts_with(&start),
                "{yaml:?}: want {start:?}, got {text}"
            );
            assert!(text.contains(needle), "{yaml:?}: want {needle:?} in {text}");
            for jargon in JARGON {
                assert!(!text.contains(jargon), "{yaml:?}: {jargon:?} in {text}");
            }
        }
    }

    /// Words of the YAML parser's own messages, which name its grammar
    /// rather than what the user wrote.
    const PARSER_JARGON: [&str; 14] = [
        "while parsing",
        "while scanning",
        "scalar",
        "mapping",
        "sequence",
        "node",
        "block",
        "flow",
        "indicator",
        "directive",
        "simple key",
        "context",
        "tag",
        "EOF",
    ];

    /// Mistakes that the YAML parser itself finds (indentation, quotes,
    /// brackets, escapes) are located and said in the user's words too,
    /// not as "while parsing a block mapping, did not find expected key".
    #[test]
    fn yaml_syntax_mistakes_are_said_in_the_users_words() {
        let module = "modules:\n  x:\n";
        let cases: [(String, (u64, u64), &str); 13] = [
            (
                format!("{module}    prober: tcp_connect\n   timeout: 5s\n"),
                (4, 4),
                "this line does not line up with the keys above it: check its indentation",
            ),
            (
                "targets:\n  - module: tcp_connect\n    targets:\n    - \"127.0.0.1:1\"\n   - \"127.0.0.1:2\"\n"
                    .to_owned(),
                (5, 4),
                "this line does not line up with the \"- \" items above it: check its indentation",
            ),
            (
                format!("{module}    prober: tcp_connect\n    timeout: 5s\n  - y\n"),
                (5, 5),
                "check its indentation",
            ),
            (
                format!("{module}    prober: 'tcp_connect\n"),
                (4, 1),
                "a quoted value is not closed",
            ),
            (
                format!("{module}    prober: \"tcp_connect\" extra\n"),
                (3, 27),
                "text follows the closing quote",
            ),
            (
                "targets:\n  - module: tcp_connect\n    targets: [\"127.0.0.1:1\" \"127.0.0.1:2\"]\n"
                    .to_owned(),
                (3, 29),
                "text follows the closing quote",
            ),
            (
                format!("{module}    prober: \"tcp\\q\"\n"),
                (3, 13),
                "a backslash in double quotes",
            ),
            (
                format!("{module}    prober: \"tcp\\x4\"\n"),
                (3, 13),
                "a backslash in double quotes",
            ),
            (
                "modules: {x: {prober: tcp_connect} y: 1}\n".to_owned(),
                (1, 36),
                "a {map} needs a comma between its entries",
            ),
            (
                format!("{module}    prober: tcp_connect\n    timeout:5s\n"),
                (4, 5),
                "a key needs \": \" after it",
            ),
            (
                format!("{module}    prober: tcp_connect\n  @x: 1\n"),
                (4, 3),
                "`@` cannot start a value: put the value in quotes",
            ),
            ("modules: !<abc\n".to_owned(), (1, 10), "is not valid YAML"),
            (
                "%YAML 1.1\n%YAML 1.1\n---\n".to_owned(),
                (2, 1),
                "is not valid YAML",
            ),
        ];
        for (yaml, position, needle) in cases {
            let error = Config::parse("bad.yml", &yaml).expect_err(&yaml);
            let text = error.to_string();
            let start = format!("bad.yml:{}:{}: ", position.0, position.1);
            assert!(
                text.starts_with(&start),
                "{yaml:?}: want {start:?}, got {text}"
            );
            assert!(text.contains(needle), "{yaml:?}: want {needle:?} in {text}");
            for jargon in JARGON.iter().chain(&PARSER_JARGON) {
                assert!(!text.contains(jargon), "{yaml:?}: {jargon:?} in {text}");
            }
        }
    }

    #[test]
    fn a_key_given_twice_at_the_top_is_named_as_the_field() {
        let error = Config::parse("bad.yml", "modules: {}\nmodules: {}\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "bad.yml:2:1: field `modules`: key `modules` is given twice in this map: keep one"
        );
    }

    #[test]
    fn a_label_named_value_keeps_its_name_in_the_path() {
        let error = Config::parse(
            "bad.yml",
            "targets:\n  - module: tcp_halfopen\n    targets: [\"127.0.0.1:22\"]\n    labels: {value: [1]}\n",
        )
        .unwrap_err();
        assert_eq!(
            error.field.as_deref(),
            Some("targets[0].labels.value"),
            "{error}"
        );
    }
}
