//! Compile-time diagnostics of `#[derive(Event)]` and `#[aggregate]`, pinned with trybuild,
//! and the forms that must compile.
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p esrs-tests --test ui`
//! and review the diff; `cargo test -p esrs-tests --test ui_messages` then checks that no
//! message shows generated internals and that the rule tables of `esrs-derive/docs/*.md`
//! quote each case's first error (it names every row to update).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/event/*.rs");
    t.compile_fail("ui/aggregate/*.rs");
    t.compile_fail("ui/personal/*.rs");
}
