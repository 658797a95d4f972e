//! A failing check of the given/when/then harness reports the line of the test that called
//! it, not a line inside esrs.

use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use esrs_core::DecodeError;
use esrs_core::error::EncodeError;
use esrs_core::prelude::*;
use esrs_core::store::Payload;
use esrs_core::testing::{PolicyTest, ProjectionTest};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Ticked(u64);

impl EventSet for Ticked {
    const NAMES: &'static [&'static str] = &["Ticked"];
    fn name(&self) -> &'static str {
        "Ticked"
    }
    fn schema_version(&self) -> u32 {
        1
    }
    fn encode(&self) -> Result<Payload, EncodeError> {
        esrs_core::store::encode_json("Ticked", self)
    }
    fn decode(name: &str, version: u32, payload: &str) -> Result<Self, DecodeError> {
        match name {
            // A lossy decoder: a tick of 13 reads back as 0.
            "Ticked" => DecodeError::parse("Ticked", version, payload)
                .map(|Ticked(n)| Ticked(if n == 13 { 0 } else { n })),
            _ => Err(DecodeError::UnknownName {
                name: name.to_owned(),
                known: Self::NAMES.to_vec(),
            }),
        }
    }
}

#[derive(Debug, Default)]
struct Clock(u64);

impl Aggregate for Clock {
    const NAME: &'static str = "clock";
    type Event = Ticked;
    fn apply(&mut self, event: &Ticked) {
        self.0 += event.0;
    }
}

/// Runs `check`, which must fail, and returns the file and line its failure reported.
fn failure_location(check: impl FnOnce()) -> (String, u32) {
    let seen = Arc::new(Mutex::new(None));
    let record = Arc::clone(&seen);
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let location = info.location().map(|l| (l.file().to_owned(), l.line()));
        *record.lock().unwrap() = location;
    }));
    let outcome = panic::catch_unwind(AssertUnwindSafe(check));
    panic::set_hook(previous);
    assert!(outcome.is_err(), "the check should have failed");
    let location = seen.lock().unwrap().take();
    location.expect("a location")
}

// The only test of this binary: it replaces the panic hook, which is global.
#[test]
fn failures_point_at_the_test_line() {
    let here = |line| (file!().to_owned(), line);

    let line = line!() + 1;
    let at = failure_location(|| drop(Clock::given([Ticked(13)])));
    assert_eq!(at, here(line), "a given event that does not round-trip");

    let line = line!() + 4;
    let at = failure_location(|| {
        Clock::given([Ticked(1)])
            .when(|_| Ok::<_, String>(Ticked(2)))
            .then([Ticked(3)]);
    });
    assert_eq!(at, here(line), "then");

    let line = line!() + 4;
    let at = failure_location(|| {
        Clock::given_nothing()
            .when(|_| Ok::<_, String>(Ticked(13)))
            .then_state(|_| true);
    });
    assert_eq!(at, here(line), "a produced event that does not round-trip");

    let line = line!() + 4;
    let at = failure_location(|| {
        Clock::given_nothing()
            .when(|_| Ok::<_, String>(Ticked(1)))
            .then_nothing();
    });
    assert_eq!(at, here(line), "then_nothing");

    let line = line!() + 4;
    let at = failure_location(|| {
        Clock::given_nothing()
            .when(|_| Err::<Ticked, _>("late".to_owned()))
            .then_error("early".to_owned());
    });
    assert_eq!(at, here(line), "then_error");

    let line = line!() + 4;
    let at = failure_location(|| {
        Clock::given_nothing()
            .when(|_| Ok::<_, String>(Ticked(1)))
            .then_idempotent();
    });
    assert_eq!(at, here(line), "then_idempotent");

    let line = line!() + 5;
    let at = failure_location(|| {
        Clock::given_nothing()
            .when(|_| Ok::<_, String>(Ticked(1)))
            .then([Ticked(1)])
            .and_state(|clock| clock.0 == 2);
    });
    assert_eq!(at, here(line), "and_state");

    let line = line!() + 2;
    let at = failure_location(|| {
        PolicyTest::given(150).when(|t| Some(t / 10)).then([20]);
    });
    assert_eq!(at, here(line), "a policy");

    let line = line!() + 4;
    let at = failure_location(|| {
        ProjectionTest::given([1, 2])
            .when(|sum: &mut i32, n: &i32| *sum += n)
            .then(4);
    });
    assert_eq!(at, here(line), "a projection");
}
