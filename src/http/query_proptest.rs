//! Property tests of the query-string parser, which is crate-private and
//! so tested here rather than beside the public parsers in
//! `tests/integration/parsers_never_panic.rs` (see there for the case-count policy).

#![forbid(unsafe_code)]

use super::*;
use proptest::prelude::*;
use proptest::sample::select;

#[path = "../../tests/common/proptest_config.rs"]
mod proptest_config;
use proptest_config::cases;

/// `bytes` written as a query part: unreserved bytes as they are, a space
/// as `+` or `%20`, anything else as `%XX` in either case of hex.
fn encode(bytes: &[u8], choices: &[u8]) -> String {
    let mut out = String::new();
    for (index, &byte) in bytes.iter().enumerate() {
        let choice = choices.get(index).copied().unwrap_or(0);
        match byte {
            b' ' if choice % 2 == 0 => out.push('+'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':'
                if choice % 3 != 0 =>
            {
                out.push(char::from(byte));
            }
            _ if choice % 5 == 0 => out.push_str(&format!("%{byte:02x}")),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// A name or value: text, or bytes that need not be UTF-8.
fn part() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "\\PC{0,12}".prop_map(String::into_bytes),
        "[a-z:.\\[\\] ]{0,12}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..12),
    ]
}

/// Raw query text with escapes broken in every way: `%` at the end, one
/// hex digit, non-hex, `%` before a multi-byte character.
fn broken_query() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z=&+]{0,4}",
        select(vec![
            "%", "%4", "%zz", "%+1", "%%", "%é1", "%0", "%ff", "%C3", "%c3%a9", "%E2%82"
        ])
        .prop_map(str::to_owned),
        "%[0-9a-fA-F]{2}",
    ];
    prop::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(cases(2000))]

    /// Any text decodes or fails with a value, never a panic; an error is
    /// one line, as it becomes a 400 answer's body.
    #[test]
    fn any_query_decodes_or_fails_cleanly(raw in prop_oneof![any::<String>(), broken_query()]) {
        match Query::parse(Some(&raw)) {
            Ok(query) => {
                let _ = query.single("target");
            }
            Err(error) => prop_assert!(!error.to_string().contains(['\n', '\r'])),
        }
    }

    /// Encoded pairs decode to what was encoded, in order; bytes that are
    /// not UTF-8 are refused as such, never replaced.
    #[test]
    fn encoded_pairs_decode_back(
        pairs in prop::collection::vec((part(), part(), prop::collection::vec(any::<u8>(), 12)), 0..6),
        separators in prop::collection::vec(0..3usize, 6),
    ) {
        let mut raw = String::new();
        for (index, (name, value, choices)) in pairs.iter().enumerate() {
            // `&&` and a trailing `&` are empty parts, which are skipped.
            raw.push_str(["&", "&&", "&"][separators[index]]);
            raw.push_str(&encode(name, choices));
            raw.push('=');
            raw.push_str(&encode(value, &choices[6..]));
        }
        let text: Option<Vec<(String, String)>> = pairs
            .iter()
            .map(|(name, value, _)| {
                Some((String::from_utf8(name.clone()).ok()?, String::from_utf8(value.clone()).ok()?))
            })
            .collect();
        match (Query::parse(Some(&raw)), text) {
            (Ok(Query(decoded)), Some(expected)) => {
                let decoded: Vec<(String, String)> = decoded
                    .into_iter()
                    .map(|(name, value)| (name.into_owned(), value.into_owned()))
                    .collect();
                prop_assert_eq!(decoded, expected, "raw {:?}", raw);
            }
            (Err(QueryError::NotUtf8(_)), None) => {}
            (result, expected) => prop_assert!(false, "raw {:?}: {:?}, expected {:?}", raw, result, expected),
        }
    }

    /// `single` finds a name given once, and refuses one given twice.
    #[test]
    fn single_sees_repeats(names in prop::collection::vec(select(vec!["target", "module", "debug"]), 0..5)) {
        let raw = names.iter().map(|name| format!("{name}=x")).collect::<Vec<_>>().join("&");
        let query = Query::parse(Some(&raw)).unwrap();
        for name in ["target", "module", "debug"] {
            let count = names.iter().filter(|&&given| given == name).count();
            let expected = match count {
                0 => Ok(None),
                1 => Ok(Some("x")),
                _ => Err(QueryError::Repeated(name.to_owned())),
            };
            prop_assert_eq!(query.single(name), expected);
        }
    }
}
