//! The cost of personal data: encode and decode of an event with one field marked
//! `#[event(personal)]` against the same event with that field in clear, in the same run.

use std::hint::black_box;
use std::time::Instant;

use esrs_core::personal::{InMemoryKeyStore, KeyRing, Personal};
use esrs_core::store::{NewEvent, Payload};
use esrs_core::{Event, EventSet, StreamId, aggregate};
use serde::{Deserialize, Serialize};

use crate::workloads::{BoxError, ensure};

/// Events per case.
const N: u64 = 100_000;
/// Repetitions of each case; the fastest counts.
const REPS: usize = 7;

/// A member joined, e-mail address in clear.
#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[event(name = "MemberJoinedPlain")]
pub(crate) struct MemberJoinedPlain {
    member_id: String,
    email: String,
    plan: String,
}

/// The same event with the e-mail address as personal data of the member.
#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[event(name = "MemberJoinedPersonal")]
pub(crate) struct MemberJoinedPersonal {
    #[event(subject)]
    member_id: String,
    #[event(personal)]
    email: Personal<String>,
    plan: String,
}

/// Counts its members.
#[derive(Debug, Default)]
pub(crate) struct Club {
    members: u64,
}

#[aggregate(name = "club")]
impl Club {
    #[apply]
    fn plain(&mut self, _: &MemberJoinedPlain) {
        self.members += 1;
    }

    #[apply]
    fn personal(&mut self, _: &MemberJoinedPersonal) {
        self.members += 1;
    }
}

/// One line of the table: nanoseconds per event, in clear and with one personal field.
#[derive(Debug)]
pub(crate) struct Line {
    case: &'static str,
    plain_ns: f64,
    personal_ns: f64,
}

fn ns_per_event(mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..REPS {
        let start = Instant::now();
        f();
        best = best.min(start.elapsed().as_nanos() as f64 / N as f64);
    }
    best
}

/// Runs the cases: encode and decode inside a key ring's scope (the keys fetched before,
/// as the repository does), and the scan for subjects that precedes every decode.
pub(crate) fn run() -> Result<Vec<Line>, BoxError> {
    let stream = StreamId::new("club-1")?;
    let keys = InMemoryKeyStore::new();
    let subjects: Vec<String> = (0..100).map(|i| format!("member-{i}")).collect();
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let ring = runtime.block_on(KeyRing::for_writing(&keys, &stream, &subjects))?;
    let plain: Vec<ClubEvent> = (0..N)
        .map(|i| {
            ClubEvent::from(MemberJoinedPlain {
                member_id: format!("member-{}", i % 100),
                email: format!("member{i}@example.com"),
                plan: "monthly".to_owned(),
            })
        })
        .collect();
    let personal: Vec<ClubEvent> = (0..N)
        .map(|i| {
            ClubEvent::from(MemberJoinedPersonal {
                member_id: format!("member-{}", i % 100),
                email: Personal::new(format!("member{i}@example.com")),
                plan: "monthly".to_owned(),
            })
        })
        .collect();
    let encode = |events: &[ClubEvent]| -> Result<Vec<Payload>, BoxError> {
        events
            .iter()
            .map(|e| Ok(ring.encode(&stream, e)?.payload))
            .collect()
    };
    let plain_payloads = encode(&plain)?;
    let personal_payloads = encode(&personal)?;
    let decoded: ClubEvent = ring.decode_payload(
        &stream,
        MemberJoinedPersonal::NAME,
        1,
        personal_payloads[0].get(),
    )?;
    ensure(decoded == personal[0], "a personal event decodes back")?;
    ensure(
        !personal_payloads[0].get().contains("member0@example.com"),
        "the personal field is not stored in clear",
    )?;

    let mut lines = Vec::new();
    lines.push(Line {
        case: "encode",
        plain_ns: ns_per_event(|| {
            ring.scope(&stream, || {
                for e in &plain {
                    black_box(NewEvent::encode(e).ok());
                }
            })
        }),
        personal_ns: ns_per_event(|| {
            ring.scope(&stream, || {
                for e in &personal {
                    black_box(NewEvent::encode(e).ok());
                }
            })
        }),
    });
    lines.push(Line {
        case: "decode",
        plain_ns: ns_per_event(|| {
            for p in &plain_payloads {
                black_box(ClubEvent::decode(MemberJoinedPlain::NAME, 1, p.get()).ok());
            }
        }),
        personal_ns: ns_per_event(|| {
            for p in &personal_payloads {
                black_box(
                    ring.decode_payload::<ClubEvent>(
                        &stream,
                        MemberJoinedPersonal::NAME,
                        1,
                        p.get(),
                    )
                    .ok(),
                );
            }
        }),
    });
    lines.push(Line {
        case: "subjects_in (scan before decode)",
        plain_ns: ns_per_event(|| {
            for p in &plain_payloads {
                black_box(esrs_core::personal::subjects_in(p.get()));
            }
        }),
        personal_ns: ns_per_event(|| {
            for p in &personal_payloads {
                black_box(esrs_core::personal::subjects_in(p.get()));
            }
        }),
    });
    Ok(lines)
}

/// Prints the table.
pub(crate) fn print(lines: &[Line]) {
    println!();
    println!(
        "Personal data ({N} events per case, best of {REPS}), ns per event, one personal field:"
    );
    println!(
        "{:<34} {:>10} {:>14} {:>12}",
        "case", "in clear", "personal", "difference"
    );
    for l in lines {
        println!(
            "{:<34} {:>10.1} {:>14.1} {:>12.1}",
            l.case,
            l.plain_ns,
            l.personal_ns,
            l.personal_ns - l.plain_ns
        );
    }
}
