//! The property tests' runner settings, shared by `tests/parsers_never_panic.rs`
//! and the crate's own `src/http/query_proptest.rs` (which includes this
//! file by path, as it cannot reach `tests/`' modules).

use proptest::test_runner::Config;

/// `default` cases unless `PROPTEST_CASES` says otherwise, and no failure
/// persistence: no `proptest-regressions/` files appear in the tree; a
/// shrunk failure is printed, and becomes a unit test beside the parser.
pub(crate) fn cases(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}
