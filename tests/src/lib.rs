//! Cross-crate integration tests and compile-fail suites of esrs.
