//! Procedural macros of esrs, re-exported by `esrs-core`.
