//! The safety check as compile errors: one case per rule (clocks,
//! randomness, IO, printing, threads, environment, global state, hash
//! order in methods and in fields), a type without Default, and an allow
//! without a reason; each `.stderr` holds the expected message.
//! `TRYBUILD=overwrite cargo test --test macro_ui` rewrites them.

#[test]
fn nondeterminism_and_missing_default_are_compile_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui-pass/*.rs");
}
