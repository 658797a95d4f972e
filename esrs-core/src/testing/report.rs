//! How a failed test reports itself: the caller's line, events as stored, diffs.

use std::fmt::{self, Debug, Display, Write as _};

use serde_json::Value;

use crate::error::ErrorChain;
use crate::event::{EventSet, Payload};

/// Fails the test at the caller's line.
#[track_caller]
pub(super) fn fail(message: String) -> ! {
    panic!("{message}")
}

/// Unwraps a check's result or fails the test at the caller's line. (A closure given to
/// `unwrap_or_else` would lose the caller's location.)
pub(super) trait OrFail<T> {
    #[track_caller]
    fn or_fail(self) -> T;
}

impl<T> OrFail<T> for Result<T, String> {
    #[track_caller]
    fn or_fail(self) -> T {
        match self {
            Ok(value) => value,
            Err(message) => fail(message),
        }
    }
}

/// An event as a store would hold it, for comparison and display.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Shown<'a> {
    pub(super) name: &'a str,
    pub(super) version: u32,
    pub(super) payload: Value,
}

impl Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} v{} {}", self.name, self.version, self.payload)
    }
}

impl Shown<'static> {
    pub(super) fn encode<E: EventSet>(event: &E, label: &str) -> Result<(Self, Payload), String> {
        let payload = crate::personal::in_harness(|| event.encode()).map_err(|e| {
            format!(
                "{label} ({}) cannot be encoded: {}",
                event.name(),
                ErrorChain::new(&e)
            )
        })?;
        let value = serde_json::from_str(payload.get()).map_err(|e| {
            format!(
                "{label} ({}) was encoded as invalid JSON: {}",
                event.name(),
                ErrorChain::new(&e)
            )
        })?;
        Ok((
            Shown {
                name: event.name(),
                version: event.schema_version(),
                payload: value,
            },
            payload,
        ))
    }
}

/// Lines that are compared as text, for the policy diff.
#[derive(PartialEq)]
pub(super) struct DebugShown(pub(super) String);

impl Display for DebugShown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// "no event", "1 event: X" or "2 events:" and a numbered list.
pub(super) fn list(events: &[Shown<'_>]) -> String {
    match events {
        [] => "no event".to_owned(),
        [one] => format!("1 event: {one}"),
        many => {
            let mut s = format!("{} events:", many.len());
            for (i, e) in many.iter().enumerate() {
                let _ = write!(s, "\n  {}. {e}", i + 1);
            }
            s
        }
    }
}

/// Like [`list`], for events that were not round-tripped; an event that cannot be encoded
/// shows its encoding error.
pub(super) fn list_lossy<E: EventSet>(events: &[E]) -> String {
    let shown: Vec<Shown<'static>> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            Shown::encode(e, &format!("event {}", i + 1))
                .map(|(s, _)| s)
                .unwrap_or_else(|m| Shown {
                    name: e.name(),
                    version: e.schema_version(),
                    payload: Value::String(m),
                })
        })
        .collect();
    list(&shown)
}

/// A line diff of `expected` and `actual` along their longest common subsequence: common
/// items are indented, missing ones marked `-`, unexpected ones `+`.
pub(super) fn diff<T: PartialEq + Display>(expected: &[T], actual: &[T]) -> String {
    let (n, m) = (expected.len(), actual.len());
    // lcs[i][j]: the length of the longest common subsequence of expected[i..] and actual[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            let _ = writeln!(out, "      {}", expected[i]);
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            let _ = writeln!(out, "    - {}", expected[i]);
            i += 1;
        } else {
            let _ = writeln!(out, "    + {}", actual[j]);
            j += 1;
        }
    }
    if n == 0 && m == 0 {
        out.push_str("    (no event on either side)\n");
    }
    out.pop();
    out
}
