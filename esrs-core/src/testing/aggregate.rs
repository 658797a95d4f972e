//! Given/when/then tests of aggregates.

use std::fmt::{self, Debug};

use serde_json::Value;

use crate::aggregate::Aggregate;
use crate::error::ErrorChain;
use crate::event::{EventSet, IntoEvents};

use super::Check;
use super::report::*;
use super::round_trip::*;

/// Starts a given/when/then test of an aggregate: `Cart::given([...])`.
///
/// Implemented for every [`Aggregate`]; in the [`prelude`](crate::prelude).
pub trait AggregateTestExt: Aggregate {
    /// The aggregate after these past events, in order. Each one is passed through a store
    /// round trip (encode, decode, compare) before it is applied.
    ///
    /// The items may be the aggregate's event enum or any event type that converts into it.
    #[track_caller]
    fn given<I>(events: I) -> Given<Self>
    where
        I: IntoIterator,
        I::Item: Into<Self::Event>,
    {
        Given::nothing().and(events)
    }

    /// A new aggregate, with no event in its stream.
    fn given_nothing() -> Given<Self> {
        Given::nothing()
    }
}

impl<A: Aggregate> AggregateTestExt for A {}

/// The past of an aggregate test: the state after the given events.
///
/// Made by [`AggregateTestExt::given`] and [`AggregateTestExt::given_nothing`].
#[must_use = "a given/when/then test checks nothing until a `then` method is called"]
pub struct Given<A: Aggregate> {
    state: A,
    events: usize,
    /// The given events as stored (name, version, payload), refolded by
    /// [`and_forget`](Given::and_forget).
    stored: Vec<(String, u32, Value)>,
}

impl<A: Aggregate> Debug for Given<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Given")
            .field("aggregate", &A::NAME)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate> Given<A> {
    fn nothing() -> Self {
        crate::personal::harness_reset();
        Self {
            state: A::default(),
            events: 0,
            stored: Vec::new(),
        }
    }

    /// More past events, applied after the previous ones.
    #[track_caller]
    pub fn and<I>(mut self, events: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<A::Event>,
    {
        for event in events {
            self.events += 1;
            let label = format!("given event {}", self.events);
            let (decoded, shown) = round_trip(&event.into(), &label).or_fail();
            apply(&mut self.state, &decoded, &label, &shown).or_fail();
            self.stored
                .push((shown.name.to_owned(), shown.version, shown.payload.clone()));
        }
        self
    }

    /// The subject's key is deleted: the state is folded again from the given events as a
    /// load after [`forget`](crate::personal::forget) would see them, with the subject's
    /// personal fields [`Forgotten`](crate::personal::Personal::Forgotten), and so are the events
    /// given after this. A command that stores new personal data of the subject fails, as
    /// it would with a key store. The given/when/then harness encrypts with test keys
    /// derived from the subject ids; the forgotten subjects are those of the test running
    /// on this thread, and a new [`given`](AggregateTestExt::given) starts with none.
    #[track_caller]
    pub fn and_forget(mut self, subject: &str) -> Self {
        crate::personal::harness_forget(subject);
        let mut state = A::default();
        for (i, (name, version, payload)) in self.stored.iter().enumerate() {
            let label = format!("given event {}", i + 1);
            let event = decode_given::<A>(&label, name, *version, payload).or_fail();
            let shown = Shown {
                name,
                version: *version,
                payload: payload.clone(),
            };
            apply(&mut state, &event, &label, &shown).or_fail();
        }
        self.state = state;
        self
    }

    /// A past event as a store holds it: its stored name, the version of its payload and the
    /// payload. It is decoded like a stored row, through the upcasters of older versions, so
    /// a test can prove that old rows still load.
    #[track_caller]
    pub fn and_stored(mut self, name: &str, version: u32, payload: Value) -> Self {
        self.events += 1;
        let label = format!("given event {}", self.events);
        let raw = serde_json::value::to_raw_value(&payload)
            .map_err(|e| {
                format!(
                    "{label}: cannot encode its payload: {}",
                    ErrorChain::new(&e)
                )
            })
            .or_fail();
        let event =
            crate::personal::in_harness_decode(name, || A::Event::decode(name, version, raw.get()))
                .map_err(|e| {
                    format!(
                        "{label} ({name} v{version} {payload}) cannot be decoded: {}",
                        ErrorChain::new(&e)
                    )
                })
                .or_fail();
        let shown = Shown {
            name,
            version,
            payload: payload.clone(),
        };
        apply(&mut self.state, &event, &label, &shown).or_fail();
        self.stored.push((name.to_owned(), version, payload));
        self
    }

    /// The state after the given events.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// The command under test: a closure that receives the state and returns the command's
    /// result, `Ok` with its events or `Err` with the domain error, exactly like the command
    /// given to [`Repository::execute`](crate::Repository::execute). It runs when a `then`
    /// method is called.
    pub fn when<F, R, E>(self, command: F) -> When<A, F>
    where
        F: FnMut(&A) -> Result<R, E>,
        R: IntoEvents<A::Event>,
    {
        When {
            given: self,
            command,
        }
    }
}

/// Decodes a given event as the harness stored it.
fn decode_given<A: Aggregate>(
    label: &str,
    name: &str,
    version: u32,
    payload: &Value,
) -> Result<A::Event, String> {
    let raw = serde_json::value::to_raw_value(payload).map_err(|e| {
        format!(
            "{label}: cannot encode its payload: {}",
            ErrorChain::new(&e)
        )
    })?;
    crate::personal::in_harness_decode(name, || A::Event::decode(name, version, raw.get())).map_err(
        |e| {
            format!(
                "{label} ({name} v{version} {payload}) cannot be decoded: {}",
                ErrorChain::new(&e)
            )
        },
    )
}

/// An aggregate test with its command: end it with one of the `then` methods.
///
/// Made by [`Given::when`].
#[must_use = "a given/when/then test checks nothing until a `then` method is called"]
pub struct When<A: Aggregate, F> {
    given: Given<A>,
    command: F,
}

impl<A: Aggregate, F> Debug for When<A, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("When")
            .field("given", &self.given)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate, F> When<A, F> {
    /// The command must succeed with exactly these events, in this order.
    ///
    /// Events are compared as they would be stored (name, version and JSON payload), so the
    /// event types need neither `PartialEq` nor `Debug`.
    #[track_caller]
    pub fn then<R, E, I>(self, expected: I) -> Then<A>
    where
        F: FnOnce(&A) -> Result<R, E>,
        R: IntoEvents<A::Event>,
        E: Debug,
        I: IntoIterator,
        I::Item: Into<A::Event>,
    {
        let expected = expected
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                Shown::encode(&e.into(), &format!("expected event {}", i + 1)).map(|(s, _)| s)
            })
            .collect::<Result<Vec<_>, _>>()
            .or_fail();
        let Given { state, .. } = self.given;
        let events = match (self.command)(&state) {
            Ok(events) => events.into_events(),
            Err(error) => fail(format!(
                "the command was refused with {error:?}, but it should have produced {}",
                list(&expected)
            )),
        };
        let settled = settle(state, events).or_fail();
        if expected.is_empty() && !settled.shown.is_empty() {
            fail(format!(
                "the command should have produced no event, but it produced {}",
                list(&settled.shown)
            ));
        }
        if settled.shown != expected {
            fail(format!(
                "the command produced other events than expected (- expected, + actual):\n{}",
                diff(&expected, &settled.shown)
            ));
        }
        settled.then
    }

    /// The command must succeed and produce no event.
    #[track_caller]
    pub fn then_nothing<R, E>(self) -> Then<A>
    where
        F: FnOnce(&A) -> Result<R, E>,
        R: IntoEvents<A::Event>,
        E: Debug,
    {
        self.then(std::iter::empty::<A::Event>())
    }

    /// The command must be refused with exactly this error.
    #[track_caller]
    pub fn then_error<R, E>(self, expected: E)
    where
        F: FnOnce(&A) -> Result<R, E>,
        R: IntoEvents<A::Event>,
        E: Debug + PartialEq,
    {
        let Given { state, .. } = self.given;
        match (self.command)(&state) {
            Ok(events) => fail(format!(
                "the command should have been refused with {expected:?}, but it succeeded and produced {}",
                list_lossy(&events.into_events())
            )),
            Err(error) if error == expected => {}
            Err(error) => fail(format!(
                "the command was refused with another error than expected:\n  expected: {expected:?}\n    actual: {error:?}"
            )),
        }
    }

    /// The command must be refused with an error that satisfies `predicate`, a closure that
    /// returns `bool` (`|e| matches!(e, CartError::Empty)`) or asserts by itself.
    #[track_caller]
    pub fn then_error_matching<R, E, P, C>(self, predicate: P)
    where
        F: FnOnce(&A) -> Result<R, E>,
        R: IntoEvents<A::Event>,
        E: Debug,
        P: FnOnce(&E) -> C,
        C: Check,
    {
        let Given { state, .. } = self.given;
        match (self.command)(&state) {
            Ok(events) => fail(format!(
                "the command should have been refused, but it succeeded and produced {}",
                list_lossy(&events.into_events())
            )),
            Err(error) => {
                let text = format!("{error:?}");
                if !predicate(&error).passed() {
                    fail(format!(
                        "the command was refused with {text}, which does not satisfy the predicate"
                    ));
                }
            }
        }
    }

    /// The command must succeed, and the state after its events must satisfy `predicate`,
    /// a closure that returns `bool` or asserts by itself. Whatever events it produced are
    /// accepted (and round-tripped); chain [`Then::and_state`] after [`When::then`] to check
    /// both.
    #[track_caller]
    pub fn then_state<R, E, P, C>(self, predicate: P) -> Then<A>
    where
        F: FnOnce(&A) -> Result<R, E>,
        R: IntoEvents<A::Event>,
        E: Debug,
        P: FnOnce(&A) -> C,
        C: Check,
    {
        let Given { state, .. } = self.given;
        let events = match (self.command)(&state) {
            Ok(events) => events.into_events(),
            Err(error) => fail(format!("the command was refused with {error:?}")),
        };
        let settled = settle(state, events).or_fail();
        settled.then.and_state(predicate)
    }

    /// The command must be idempotent: it succeeds, and run again on the state after its own
    /// events it succeeds with no event. Returns the events and state of the first run.
    #[track_caller]
    pub fn then_idempotent<R, E>(mut self) -> Then<A>
    where
        F: FnMut(&A) -> Result<R, E>,
        R: IntoEvents<A::Event>,
        E: Debug,
    {
        let Given { state, .. } = self.given;
        let events = match (self.command)(&state) {
            Ok(events) => events.into_events(),
            Err(error) => fail(format!("the command was refused with {error:?}")),
        };
        let settled = settle(state, events).or_fail();
        match (self.command)(&settled.then.state) {
            Ok(again) => {
                let again = again.into_events();
                if !again.is_empty() {
                    fail(format!(
                        "the command is not idempotent: it produced {}, and repeated after them it produced {}",
                        list(&settled.shown),
                        list_lossy(&again)
                    ));
                }
            }
            Err(error) => fail(format!(
                "the command is not idempotent: it produced {}, and repeated after them it was refused with {error:?}",
                list(&settled.shown)
            )),
        }
        settled.then
    }
}

/// The outcome of a successful aggregate test: the events the command produced and the
/// state after them, for further checks.
pub struct Then<A: Aggregate> {
    pub(super) state: A,
    pub(super) events: Vec<A::Event>,
}

impl<A: Aggregate> Debug for Then<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Then")
            .field("aggregate", &A::NAME)
            .field("events", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate> Then<A> {
    /// The state after the command's events must also satisfy `predicate`, a closure that
    /// returns `bool` or asserts by itself.
    #[track_caller]
    pub fn and_state<P, C>(self, predicate: P) -> Self
    where
        P: FnOnce(&A) -> C,
        C: Check,
    {
        if !predicate(&self.state).passed() {
            fail(format!(
                "the state after {} does not satisfy the predicate",
                list_lossy(&self.events)
            ));
        }
        self
    }

    /// The state after the command's events.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// The events the command produced.
    pub fn events(&self) -> &[A::Event] {
        &self.events
    }

    /// The state after the command's events.
    pub fn into_state(self) -> A {
        self.state
    }
}
