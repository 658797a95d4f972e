//! Compile-time diagnostics of `#[derive(Event)]` and `#[aggregate]`, pinned with trybuild,
//! and the forms that must compile.
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p esrs-tests --test ui`
//! and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/event/*.rs");
    t.compile_fail("ui/aggregate/*.rs");
    t.compile_fail("ui/personal/*.rs");
}
