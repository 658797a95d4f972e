//! Micro-benchmarks: the fold, the decode with upcasting and the encode of esrs's event
//! code, against a hand-written match and plain serde doing the same work.

use std::hint::black_box;
use std::time::Instant;

use esrs_core::store::{NewEvent, Payload};
use esrs_core::{Aggregate, EventSet};
use serde_json::value::RawValue;

use crate::domain::{Account, AccountEvent, Withdrawn, decode_by_hand, encode_by_hand, generated};
use crate::workloads::{BoxError, batch_events, ensure};

/// Events per case.
const N: u64 = 100_000;
/// Repetitions of each case; the fastest counts.
const REPS: usize = 7;

/// One line of the micro-benchmark table: nanoseconds per event.
#[derive(Debug)]
pub(crate) struct Line {
    pub(crate) case: &'static str,
    pub(crate) esrs_ns: f64,
    pub(crate) hand_ns: f64,
    pub(crate) serde_ns: Option<f64>,
}

/// The fastest of [`REPS`] runs of `f`, in nanoseconds per event.
fn ns_per_event(mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..REPS {
        let start = Instant::now();
        f();
        best = best.min(start.elapsed().as_nanos() as f64 / N as f64);
    }
    best
}

/// Generic, as the repository folds.
fn fold<A: Aggregate>(events: &[A::Event]) -> A {
    let mut state = A::default();
    for e in events {
        state.apply(e);
    }
    state
}

/// Runs every case.
pub(crate) fn run() -> Result<Vec<Line>, BoxError> {
    let stored: Vec<(&'static str, u32, Payload)> = (0..N)
        .map(|i| {
            let (name, version, json) = generated(i);
            Ok::<_, BoxError>((name, version, RawValue::from_string(json)?))
        })
        .collect::<Result<_, _>>()?;
    let current: Vec<Payload> = (0..N)
        .map(|i| {
            let json = format!(r#"{{"amount":{},"reason":null}}"#, 1 + i % 5);
            Ok::<_, BoxError>(RawValue::from_string(json)?)
        })
        .collect::<Result<_, _>>()?;
    let decoded: Vec<AccountEvent> = stored
        .iter()
        .map(|(name, version, payload)| AccountEvent::decode(name, *version, payload.get()))
        .collect::<Result<_, _>>()?;
    let typed = batch_events(N);

    // The decoders agree before they are timed.
    let by_esrs = fold::<Account>(&decoded);
    let mut by_hand = Account::default();
    for (name, version, payload) in &stored {
        by_hand.on(&decode_by_hand(name, *version as i32, payload.get())?);
    }
    ensure(
        by_esrs == by_hand,
        "esrs and the hand-written decoder agree",
    )?;

    let mut lines = Vec::new();

    lines.push(Line {
        case: "decode (25% upcast from v1)",
        esrs_ns: ns_per_event(|| {
            for (name, version, payload) in &stored {
                black_box(AccountEvent::decode(name, *version, payload.get()).ok());
            }
        }),
        hand_ns: ns_per_event(|| {
            for (name, version, payload) in &stored {
                black_box(decode_by_hand(name, *version as i32, payload.get()).ok());
            }
        }),
        serde_ns: None,
    });

    let old: Vec<Payload> = (0..N)
        .map(|i| {
            let json = format!(r#"{{"amount":{}}}"#, 1 + i % 5);
            Ok::<_, BoxError>(RawValue::from_string(json)?)
        })
        .collect::<Result<_, _>>()?;
    lines.push(Line {
        case: "decode old version only (upcast)",
        esrs_ns: ns_per_event(|| {
            for payload in &old {
                black_box(AccountEvent::decode("Withdrawn", 1, payload.get()).ok());
            }
        }),
        hand_ns: ns_per_event(|| {
            for payload in &old {
                black_box(decode_by_hand("Withdrawn", 1, payload.get()).ok());
            }
        }),
        serde_ns: None,
    });

    lines.push(Line {
        case: "decode current version only",
        esrs_ns: ns_per_event(|| {
            for payload in &current {
                black_box(AccountEvent::decode("Withdrawn", 2, payload.get()).ok());
            }
        }),
        hand_ns: ns_per_event(|| {
            for payload in &current {
                black_box(decode_by_hand("Withdrawn", 2, payload.get()).ok());
            }
        }),
        serde_ns: Some(ns_per_event(|| {
            for payload in &current {
                black_box(serde_json::from_str::<Withdrawn>(payload.get()).ok());
            }
        })),
    });

    // What a store does to every row it reads before the event is decoded: copy the payload
    // text out of the row (it is not parsed until the decode).
    let texts: Vec<&str> = stored.iter().map(|(_, _, p)| p.get()).collect();
    lines.push(Line {
        case: "payload text out of the row",
        esrs_ns: ns_per_event(|| {
            for text in &texts {
                black_box(Box::<str>::from(*text));
            }
        }),
        hand_ns: ns_per_event(|| {
            for text in &texts {
                black_box(text.to_string());
            }
        }),
        serde_ns: None,
    });

    lines.push(Line {
        case: "fold (apply)",
        esrs_ns: ns_per_event(|| {
            black_box(fold::<Account>(black_box(&decoded)));
        }),
        hand_ns: ns_per_event(|| {
            let mut balance = 0i64;
            let mut operations = 0u64;
            for e in black_box(&decoded) {
                match e {
                    AccountEvent::Deposited(d) => balance += d.amount,
                    AccountEvent::Withdrawn(w) => balance -= w.amount,
                }
                operations += 1;
            }
            black_box((balance, operations));
        }),
        serde_ns: None,
    });

    lines.push(Line {
        case: "encode",
        esrs_ns: ns_per_event(|| {
            for e in &typed {
                black_box(NewEvent::encode(e).ok());
            }
        }),
        hand_ns: ns_per_event(|| {
            for e in &typed {
                black_box(encode_by_hand(e));
            }
        }),
        serde_ns: Some(ns_per_event(|| {
            for e in &typed {
                match e {
                    AccountEvent::Deposited(d) => black_box(serde_json::to_vec(d).ok()),
                    AccountEvent::Withdrawn(w) => black_box(serde_json::to_vec(w).ok()),
                };
            }
        })),
    });
    Ok(lines)
}

/// Prints the table.
pub(crate) fn print(lines: &[Line]) {
    println!();
    println!("Micro-benchmarks ({N} events per case, best of {REPS}), ns per event:");
    println!(
        "{:<34} {:>10} {:>14} {:>12} {:>11}",
        "case", "esrs", "hand-written", "plain serde", "esrs/hand"
    );
    for l in lines {
        println!(
            "{:<34} {:>10.1} {:>14.1} {:>12} {:>11.2}",
            l.case,
            l.esrs_ns,
            l.hand_ns,
            l.serde_ns.map_or("-".to_owned(), |n| format!("{n:.1}")),
            l.esrs_ns / l.hand_ns
        );
    }
}
