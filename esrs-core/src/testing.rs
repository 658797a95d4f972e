//! Given/when/then tests of aggregates, policies and projections: pure, with no store.
//!
//! An aggregate test states the past, runs one command and says what must happen:
//!
//! ```text
//! Cart::given([ItemAdded { item: "book".into() }])   // the events already in the stream
//!     .when(|cart| cart.check_out())                  // the command under test
//!     .then([CheckedOut]);                             // the events it must produce
//! ```
//!
//! The `then` methods of [`When`] end the test: [`then`](When::then) (exactly these events),
//! [`then_nothing`](When::then_nothing), [`then_error`](When::then_error) /
//! [`then_error_matching`](When::then_error_matching), [`then_state`](When::then_state) and
//! [`then_idempotent`](When::then_idempotent). A failure panics at the line of the test that
//! called them, with a diff of the expected and actual events as they would be stored
//! (stored name, version and JSON payload):
//!
//! ```text
//! the command produced other events than expected (- expected, + actual):
//!       ItemAdded v1 {"item":"book"}
//!     - CartCheckedOut v1 null
//!     + ItemRemoved v2 {"item":"book","reason":null}
//! ```
//!
//! Beyond the comparison, every successful `then` checks what a store would do with the
//! events: each given and produced event is encoded, decoded by stored name and version
//! (through the upcasters), and encoded again, and must come back identical; the decoded
//! events are applied to the state, which must not panic; and for an aggregate with
//! snapshots, the final state must encode as a snapshot, decode, and encode again to the same
//! payload. A missing serde attribute, a lossy upcaster or a snapshot that does not read back
//! what it wrote fails the test that produced it. (A field left out of the snapshot entirely,
//! `#[serde(skip)]`, is invisible to this check: it is neither written nor read.)
//!
//! [`PolicyTest`] (an event in, follow-up commands or events out) and [`ProjectionTest`]
//! (events in, read-model state out) have the same shape.
//!
//! A complete example:
//!
//! ```standalone_crate
//! use esrs_core::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! struct Deposited { amount: u64 }
//!
//! #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
//! struct Withdrawn { amount: u64 }
//!
//! #[derive(Debug, Default)]
//! struct Account { balance: u64 }
//!
//! #[derive(Debug, PartialEq)]
//! enum AccountError { Overdraft { balance: u64 } }
//!
//! #[aggregate(name = "account")]
//! impl Account {
//!     #[apply]
//!     fn deposited(&mut self, e: &Deposited) { self.balance += e.amount }
//!     #[apply]
//!     fn withdrawn(&mut self, e: &Withdrawn) { self.balance -= e.amount }
//!
//!     fn withdraw(&self, amount: u64) -> Result<Withdrawn, AccountError> {
//!         if amount > self.balance {
//!             return Err(AccountError::Overdraft { balance: self.balance });
//!         }
//!         Ok(Withdrawn { amount })
//!     }
//! }
//!
//! Account::given([Deposited { amount: 300 }])
//!     .when(|account| account.withdraw(100))
//!     .then([Withdrawn { amount: 100 }])
//!     .and_state(|account| account.balance == 200);
//!
//! Account::given([Deposited { amount: 300 }])
//!     .when(|account| account.withdraw(500))
//!     .then_error(AccountError::Overdraft { balance: 300 });
//! ```

use std::fmt::{self, Debug, Display, Write as _};
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::Value;

use crate::aggregate::Aggregate;
use crate::event::{EventSet, IntoEvents, Payload};

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

/// What a state or error predicate returns: `bool`, or `()` for a closure that makes its own
/// assertions (`|cart| assert_eq!(cart.items, ["book"])`).
pub trait Check: sealed::Sealed {
    /// Whether the check passed.
    fn passed(self) -> bool;
}

impl Check for bool {
    fn passed(self) -> bool {
        self
    }
}

impl Check for () {
    fn passed(self) -> bool {
        true
    }
}

mod sealed {
    #[allow(unreachable_pub)]
    pub trait Sealed {}
    impl Sealed for bool {}
    impl Sealed for () {}
}

/// The past of an aggregate test: the state after the given events.
///
/// Made by [`AggregateTestExt::given`] and [`AggregateTestExt::given_nothing`].
#[must_use = "a given/when/then test checks nothing until a `then` method is called"]
pub struct Given<A: Aggregate> {
    state: A,
    events: usize,
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
        Self {
            state: A::default(),
            events: 0,
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
        }
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
            .map_err(|e| format!("{label}: cannot encode its payload: {e}"))
            .or_fail();
        let event = A::Event::decode(name, version, raw.get())
            .map_err(|e| format!("{label} ({name} v{version} {payload}) cannot be decoded: {e}"))
            .or_fail();
        let shown = Shown {
            name,
            version,
            payload,
        };
        apply(&mut self.state, &event, &label, &shown).or_fail();
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
    state: A,
    events: Vec<A::Event>,
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

/// A given/when/then test of a policy: a function from one event to the follow-up commands
/// or events it causes.
///
/// The policy returns anything iterable (an `Option`, a `Vec`, an array); its items are
/// compared with `PartialEq` and shown with `Debug`.
///
/// ```
/// use esrs_core::testing::PolicyTest;
///
/// #[derive(Debug)]
/// struct OrderPlaced { total: u64 }
/// #[derive(Debug, PartialEq)]
/// struct PointsAdded { points: u64 }
///
/// fn points_for(order: &OrderPlaced) -> Option<PointsAdded> {
///     (order.total >= 10).then_some(PointsAdded { points: order.total / 10 })
/// }
///
/// PolicyTest::given(OrderPlaced { total: 200 })
///     .when(points_for)
///     .then([PointsAdded { points: 20 }]);
/// PolicyTest::given(OrderPlaced { total: 5 }).when(points_for).then_nothing();
/// ```
#[must_use = "a given/when/then test checks nothing until a `then` method is called"]
#[derive(Debug)]
pub struct PolicyTest<T> {
    event: T,
}

impl<T> PolicyTest<T> {
    /// The event the policy reacts to.
    pub fn given(event: T) -> Self {
        Self { event }
    }

    /// Runs the policy on the event.
    pub fn when<P, O>(self, policy: P) -> PolicyWhen<O>
    where
        P: FnOnce(&T) -> O,
        O: IntoIterator,
    {
        PolicyWhen {
            output: policy(&self.event).into_iter().collect(),
        }
    }
}

/// What a policy produced: end the test with one of the `then` methods.
#[must_use = "a given/when/then test checks nothing until a `then` method is called"]
#[derive(Debug)]
pub struct PolicyWhen<O: IntoIterator> {
    output: Vec<O::Item>,
}

impl<O> PolicyWhen<O>
where
    O: IntoIterator,
    O::Item: PartialEq + Debug,
{
    /// The policy must produce exactly these items, in this order. Returns them.
    #[track_caller]
    pub fn then<I>(self, expected: I) -> Vec<O::Item>
    where
        I: IntoIterator,
        I::Item: Into<O::Item>,
    {
        let expected: Vec<O::Item> = expected.into_iter().map(Into::into).collect();
        if self.output != expected {
            let show = |items: &[O::Item]| {
                items
                    .iter()
                    .map(|i| DebugShown(format!("{i:?}")))
                    .collect::<Vec<_>>()
            };
            fail(format!(
                "the policy produced other output than expected (- expected, + actual):\n{}",
                diff(&show(&expected), &show(&self.output))
            ));
        }
        self.output
    }

    /// The policy must produce nothing.
    #[track_caller]
    pub fn then_nothing(self) {
        self.then(std::iter::empty::<O::Item>());
    }
}

/// A given/when/then test of a projection, written as a fold of events into a read model
/// that starts from [`Default`].
///
/// ```
/// use esrs_core::testing::ProjectionTest;
/// use std::collections::BTreeMap;
///
/// struct PlayerScored { player: &'static str, points: u64 }
///
/// #[derive(Debug, Default, PartialEq)]
/// struct Totals(BTreeMap<&'static str, u64>);
///
/// fn project(totals: &mut Totals, e: &PlayerScored) {
///     *totals.0.entry(e.player).or_default() += e.points;
/// }
///
/// ProjectionTest::given([
///     PlayerScored { player: "ada", points: 3 },
///     PlayerScored { player: "bob", points: 5 },
///     PlayerScored { player: "ada", points: 4 },
/// ])
/// .when(project)
/// .then_state(|totals| totals.0["ada"] == 7 && totals.0["bob"] == 5);
/// ```
#[must_use = "a given/when/then test checks nothing until a `then` method is called"]
#[derive(Debug)]
pub struct ProjectionTest<E> {
    events: Vec<E>,
}

impl<E> ProjectionTest<E> {
    /// The events the projection reads, in order.
    pub fn given<I>(events: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<E>,
    {
        Self {
            events: events.into_iter().map(Into::into).collect(),
        }
    }

    /// No events: the read model stays at its default.
    pub fn given_nothing() -> Self {
        Self { events: Vec::new() }
    }

    /// Folds the events into a read model that starts from `M::default()`.
    pub fn when<M, P>(self, mut project: P) -> ProjectionWhen<M>
    where
        M: Default,
        P: FnMut(&mut M, &E),
    {
        let mut model = M::default();
        for event in &self.events {
            project(&mut model, event);
        }
        ProjectionWhen {
            model,
            events: self.events.len(),
        }
    }
}

/// The read model a projection built: end the test with one of the `then` methods.
#[must_use = "a given/when/then test checks nothing until a `then` method is called"]
#[derive(Debug)]
pub struct ProjectionWhen<M> {
    model: M,
    events: usize,
}

impl<M> ProjectionWhen<M> {
    /// The read model must equal `expected`. Returns it.
    #[track_caller]
    pub fn then(self, expected: M) -> M
    where
        M: PartialEq + Debug,
    {
        if self.model != expected {
            fail(format!(
                "the read model after {} event(s) is not the expected one:\n  expected: {expected:?}\n    actual: {:?}",
                self.events, self.model
            ));
        }
        self.model
    }

    /// The read model must satisfy `predicate`, a closure that returns `bool` or asserts by
    /// itself. Returns it.
    #[track_caller]
    pub fn then_state<P, C>(self, predicate: P) -> M
    where
        P: FnOnce(&M) -> C,
        C: Check,
    {
        if !predicate(&self.model).passed() {
            fail(format!(
                "the read model after {} event(s) does not satisfy the predicate",
                self.events
            ));
        }
        self.model
    }
}

/// Fails the test at the caller's line.
#[track_caller]
fn fail(message: String) -> ! {
    panic!("{message}")
}

/// Unwraps a check's result or fails the test at the caller's line. (A closure given to
/// `unwrap_or_else` would lose the caller's location.)
trait OrFail<T> {
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
struct Shown<'a> {
    name: &'a str,
    version: u32,
    payload: Value,
}

impl Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} v{} {}", self.name, self.version, self.payload)
    }
}

impl Shown<'static> {
    fn encode<E: EventSet>(event: &E, label: &str) -> Result<(Self, Payload), String> {
        let payload = event
            .encode()
            .map_err(|e| format!("{label} ({}) cannot be encoded: {e}", event.name()))?;
        let value = serde_json::from_str(payload.get()).map_err(|e| {
            format!(
                "{label} ({}) was encoded as invalid JSON: {e}",
                event.name()
            )
        })?;
        Ok((
            Shown {
                name: event.name(),
                version: event.version(),
                payload: value,
            },
            payload,
        ))
    }
}

/// Lines that are compared as text, for the policy diff.
#[derive(PartialEq)]
struct DebugShown(String);

impl Display for DebugShown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Encodes `event`, decodes it back by stored name and version, encodes the result again
/// and checks both encodings agree. Returns the decoded event and its display.
fn round_trip<E: EventSet>(event: &E, label: &str) -> Result<(E, Shown<'static>), String> {
    let (first, payload) = Shown::encode(event, label)?;
    let decoded = E::decode(first.name, first.version, payload.get())
        .map_err(|e| format!("{label} ({first}) does not decode back: {e}"))?;
    let (again, _) = Shown::encode(&decoded, label)?;
    if again != first {
        return Err(format!(
            "{label} does not survive a store round trip; check its serde attributes and upcasters:\n  \
             encoded:             {first}\n  decoded and encoded: {again}"
        ));
    }
    Ok((decoded, first))
}

/// Applies `event` to `state`, turning a panic of the handler into a failure that names the
/// event.
fn apply<A: Aggregate>(
    state: &mut A,
    event: &A::Event,
    label: &str,
    shown: &Shown<'_>,
) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| state.apply(event))).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-text panic".to_owned());
        format!("applying {label} ({shown}) panicked: {message}")
    })
}

/// The successful end of a command: its events round-tripped and applied.
struct Settled<A: Aggregate> {
    then: Then<A>,
    shown: Vec<Shown<'static>>,
}

fn settle<A: Aggregate>(mut state: A, events: Vec<A::Event>) -> Result<Settled<A>, String> {
    let mut shown = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let label = format!("event {} produced by the command", i + 1);
        let (decoded, display) = round_trip(event, &label)?;
        apply(&mut state, &decoded, &label, &display)?;
        shown.push(display);
    }
    check_snapshot(&state)?;
    Ok(Settled {
        then: Then { state, events },
        shown,
    })
}

/// For an aggregate with snapshots: the state must encode, decode and encode again to the
/// same payload, or a load from a snapshot would differ from a load of the events.
fn check_snapshot<A: Aggregate>(state: &A) -> Result<(), String> {
    if A::SNAPSHOT_EVERY.is_none() {
        return Ok(());
    }
    let payload = match state.encode_snapshot() {
        None => return Ok(()),
        Some(Ok(payload)) => payload,
        Some(Err(e)) => return Err(format!("the state cannot be encoded as a snapshot: {e}")),
    };
    let decoded = match A::decode_snapshot(&payload) {
        None => return Ok(()),
        Some(Ok(decoded)) => decoded,
        Some(Err(e)) => {
            return Err(format!(
                "the snapshot of the state does not decode back: {e}\n  snapshot: {}",
                payload.get()
            ));
        }
    };
    let again = match decoded.encode_snapshot() {
        Some(Ok(again)) => again,
        Some(Err(e)) => return Err(format!("the decoded snapshot cannot be encoded: {e}")),
        None => return Ok(()),
    };
    let parse = |p: &Payload| serde_json::from_str::<Value>(p.get()).ok();
    if parse(&payload) != parse(&again) {
        return Err(format!(
            "the state does not survive a snapshot round trip; check its serde attributes:\n  \
             encoded:             {}\n  decoded and encoded: {}",
            payload.get(),
            again.get()
        ));
    }
    Ok(())
}

/// "no event", "1 event: X" or "2 events:" and a numbered list.
fn list(events: &[Shown<'_>]) -> String {
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
fn list_lossy<E: EventSet>(events: &[E]) -> String {
    let shown: Vec<Shown<'static>> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            Shown::encode(e, &format!("event {}", i + 1))
                .map(|(s, _)| s)
                .unwrap_or_else(|m| Shown {
                    name: e.name(),
                    version: e.version(),
                    payload: Value::String(m),
                })
        })
        .collect();
    list(&shown)
}

/// A line diff of `expected` and `actual` along their longest common subsequence: common
/// items are indented, missing ones marked `-`, unexpected ones `+`.
fn diff<T: PartialEq + Display>(expected: &[T], actual: &[T]) -> String {
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

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use serde::{Deserialize, Serialize};
    use serde_json::json;
    use serde_json::value::RawValue;

    use super::*;
    use crate::{DecodeError, EncodeError, SnapshotKey, encode_json};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct ItemAdded {
        item: String,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct ItemRemoved {
        item: String,
        reason: Option<String>,
    }

    #[derive(Deserialize)]
    struct ItemRemovedV1 {
        item: String,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct CheckedOut;

    /// An event whose serde attributes lose a field: it does not survive a round trip.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Noted {
        text: String,
        #[serde(skip_deserializing)]
        by: String,
    }

    #[derive(Debug, Clone, PartialEq)]
    enum CartEvent {
        ItemAdded(ItemAdded),
        ItemRemoved(ItemRemoved),
        CheckedOut(CheckedOut),
        Noted(Noted),
    }

    impl From<ItemAdded> for CartEvent {
        fn from(e: ItemAdded) -> Self {
            Self::ItemAdded(e)
        }
    }
    impl From<ItemRemoved> for CartEvent {
        fn from(e: ItemRemoved) -> Self {
            Self::ItemRemoved(e)
        }
    }
    impl From<CheckedOut> for CartEvent {
        fn from(e: CheckedOut) -> Self {
            Self::CheckedOut(e)
        }
    }
    impl From<Noted> for CartEvent {
        fn from(e: Noted) -> Self {
            Self::Noted(e)
        }
    }
    impl IntoEvents<CartEvent> for ItemAdded {
        fn into_events(self) -> Vec<CartEvent> {
            vec![self.into()]
        }
    }

    impl EventSet for CartEvent {
        const NAMES: &'static [&'static str] =
            &["ItemAdded", "ItemRemoved", "CartCheckedOut", "Noted"];
        fn name(&self) -> &'static str {
            match self {
                Self::ItemAdded(_) => "ItemAdded",
                Self::ItemRemoved(_) => "ItemRemoved",
                Self::CheckedOut(_) => "CartCheckedOut",
                Self::Noted(_) => "Noted",
            }
        }
        fn version(&self) -> u32 {
            match self {
                Self::ItemRemoved(_) => 2,
                _ => 1,
            }
        }
        fn encode(&self) -> Result<Payload, EncodeError> {
            match self {
                Self::ItemAdded(e) => encode_json("ItemAdded", e),
                Self::ItemRemoved(e) => encode_json("ItemRemoved", e),
                Self::CheckedOut(e) => encode_json("CartCheckedOut", e),
                Self::Noted(e) => encode_json("Noted", e),
            }
        }
        fn decode(name: &str, version: u32, payload: &str) -> Result<Self, DecodeError> {
            Ok(match (name, version) {
                ("ItemAdded", 1) => Self::ItemAdded(DecodeError::parse("ItemAdded", 1, payload)?),
                ("ItemRemoved", 2) => {
                    Self::ItemRemoved(DecodeError::parse("ItemRemoved", 2, payload)?)
                }
                ("ItemRemoved", 1) => {
                    let v1: ItemRemovedV1 = DecodeError::parse("ItemRemoved", 1, payload)?;
                    Self::ItemRemoved(ItemRemoved {
                        item: v1.item,
                        reason: None,
                    })
                }
                ("ItemRemoved", v) => {
                    return Err(DecodeError::UnknownVersion {
                        name: "ItemRemoved",
                        version: v,
                        known: vec![1, 2],
                    });
                }
                ("CartCheckedOut", _) => {
                    Self::CheckedOut(DecodeError::parse("CartCheckedOut", 1, payload)?)
                }
                ("Noted", _) => Self::Noted(DecodeError::parse("Noted", 1, payload)?),
                _ => {
                    return Err(DecodeError::UnknownName {
                        name: name.to_owned(),
                        known: Self::NAMES.to_vec(),
                    });
                }
            })
        }
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    struct Cart {
        items: Vec<String>,
        checked_out: bool,
    }

    #[derive(Debug, PartialEq)]
    enum CartError {
        Empty,
        AlreadyCheckedOut,
    }

    impl Aggregate for Cart {
        const NAME: &'static str = "cart";
        type Event = CartEvent;
        fn apply(&mut self, event: &CartEvent) {
            match event {
                CartEvent::ItemAdded(e) => self.items.push(e.item.clone()),
                CartEvent::ItemRemoved(e) => {
                    let at = self.items.iter().position(|i| *i == e.item);
                    self.items
                        .remove(at.expect("removed an item that is in the cart"));
                }
                CartEvent::CheckedOut(_) => self.checked_out = true,
                CartEvent::Noted(_) => {}
            }
        }
    }

    impl Cart {
        fn add_item(&self, item: &str) -> Result<ItemAdded, CartError> {
            if self.checked_out {
                return Err(CartError::AlreadyCheckedOut);
            }
            Ok(ItemAdded { item: item.into() })
        }

        /// Adds the item unless the cart already holds it: idempotent.
        fn ensure_item(&self, item: &str) -> Result<Option<CartEvent>, CartError> {
            if self.items.iter().any(|i| i == item) {
                return Ok(None);
            }
            self.add_item(item).map(|e| Some(e.into()))
        }

        fn check_out(&self) -> Result<Vec<CartEvent>, CartError> {
            if self.checked_out {
                return Err(CartError::AlreadyCheckedOut);
            }
            if self.items.is_empty() {
                return Err(CartError::Empty);
            }
            Ok(vec![CheckedOut.into()])
        }

        fn empty_out(&self) -> Result<Vec<CartEvent>, CartError> {
            Ok(self
                .items
                .iter()
                .map(|item| {
                    ItemRemoved {
                        item: item.clone(),
                        reason: Some("emptied".into()),
                    }
                    .into()
                })
                .collect())
        }
    }

    fn added(item: &str) -> ItemAdded {
        ItemAdded { item: item.into() }
    }

    /// Runs `f`, which must fail, and returns its failure message.
    fn failure(f: impl FnOnce()) -> String {
        let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("the test should have failed");
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .expect("a text message")
    }

    #[test]
    fn then_accepts_the_expected_events_and_returns_the_state() {
        let then = Cart::given([added("book")])
            .when(|cart| cart.check_out())
            .then([CheckedOut])
            .and_state(|cart| cart.checked_out && cart.items == ["book"]);
        assert_eq!(then.events(), [CartEvent::CheckedOut(CheckedOut)]);
        assert!(then.into_state().checked_out);

        Cart::given_nothing()
            .when(|cart| cart.add_item("pen"))
            .then([added("pen")])
            .and_state(|cart| assert_eq!(cart.items, ["pen"]));
    }

    #[test]
    fn then_shows_a_diff_of_stored_names_and_payloads() {
        let message = failure(|| {
            Cart::given([added("book"), added("pen")])
                .when(|cart| cart.empty_out())
                .then([
                    CartEvent::from(ItemRemoved {
                        item: "book".into(),
                        reason: Some("emptied".into()),
                    }),
                    CheckedOut.into(),
                ]);
        });
        assert_eq!(
            message,
            "the command produced other events than expected (- expected, + actual):\n      \
             ItemRemoved v2 {\"item\":\"book\",\"reason\":\"emptied\"}\n    \
             - CartCheckedOut v1 null\n    \
             + ItemRemoved v2 {\"item\":\"pen\",\"reason\":\"emptied\"}"
        );
    }

    #[test]
    fn then_reports_a_refused_command() {
        let message = failure(|| {
            Cart::given_nothing()
                .when(|cart| cart.check_out())
                .then([CheckedOut]);
        });
        assert_eq!(
            message,
            "the command was refused with Empty, but it should have produced 1 event: CartCheckedOut v1 null"
        );
    }

    #[test]
    fn then_nothing_accepts_no_event_and_reports_any() {
        Cart::given([added("book")])
            .when(|cart| cart.ensure_item("book"))
            .then_nothing()
            .and_state(|cart| cart.items.len() == 1);
        let message = failure(|| {
            Cart::given([added("book")])
                .when(|cart| cart.empty_out())
                .then_nothing();
        });
        assert_eq!(
            message,
            "the command should have produced no event, but it produced 1 event: \
             ItemRemoved v2 {\"item\":\"book\",\"reason\":\"emptied\"}"
        );
    }

    #[test]
    fn then_error_compares_the_domain_error() {
        Cart::given_nothing()
            .when(|cart| cart.check_out())
            .then_error(CartError::Empty);
        Cart::given([CartEvent::from(added("book")), CheckedOut.into()])
            .when(|cart| cart.add_item("pen"))
            .then_error(CartError::AlreadyCheckedOut);

        let message = failure(|| {
            Cart::given([CartEvent::from(added("book")), CheckedOut.into()])
                .when(|cart| cart.check_out())
                .then_error(CartError::Empty);
        });
        assert_eq!(
            message,
            "the command was refused with another error than expected:\n  \
             expected: Empty\n    actual: AlreadyCheckedOut"
        );

        let message = failure(|| {
            Cart::given([added("book"), added("pen")])
                .when(|cart| cart.check_out())
                .then_error(CartError::Empty);
        });
        assert_eq!(
            message,
            "the command should have been refused with Empty, but it succeeded and produced \
             1 event: CartCheckedOut v1 null"
        );
    }

    #[test]
    fn then_error_matching_takes_a_predicate() {
        Cart::given_nothing()
            .when(|cart| cart.check_out())
            .then_error_matching(|e| matches!(e, CartError::Empty));
        Cart::given_nothing()
            .when(|cart| cart.check_out())
            .then_error_matching(|e| assert_eq!(*e, CartError::Empty));
        let message = failure(|| {
            Cart::given_nothing()
                .when(|cart| cart.check_out())
                .then_error_matching(|e| matches!(e, CartError::AlreadyCheckedOut));
        });
        assert_eq!(
            message,
            "the command was refused with Empty, which does not satisfy the predicate"
        );
        let message = failure(|| {
            Cart::given_nothing()
                .when(|cart| cart.add_item("book"))
                .then_error_matching(|_| true);
        });
        assert_eq!(
            message,
            "the command should have been refused, but it succeeded and produced 1 event: \
             ItemAdded v1 {\"item\":\"book\"}"
        );
    }

    #[test]
    fn then_state_checks_the_state_after_the_events() {
        Cart::given([added("book")])
            .when(|cart| cart.add_item("pen"))
            .then_state(|cart| cart.items == ["book", "pen"]);
        let message = failure(|| {
            Cart::given([added("book")])
                .when(|cart| cart.add_item("pen"))
                .then_state(|cart| cart.items.is_empty());
        });
        assert_eq!(
            message,
            "the state after 1 event: ItemAdded v1 {\"item\":\"pen\"} does not satisfy the predicate"
        );
        let message = failure(|| {
            Cart::given_nothing()
                .when(|cart| cart.check_out())
                .then_state(|_| true);
        });
        assert_eq!(message, "the command was refused with Empty");
    }

    #[test]
    fn then_idempotent_repeats_the_command_after_its_own_events() {
        let then = Cart::given_nothing()
            .when(|cart| cart.ensure_item("book"))
            .then_idempotent();
        assert_eq!(then.events(), [CartEvent::ItemAdded(added("book"))]);

        let message = failure(|| {
            Cart::given_nothing()
                .when(|cart| cart.add_item("book"))
                .then_idempotent();
        });
        assert_eq!(
            message,
            "the command is not idempotent: it produced 1 event: ItemAdded v1 {\"item\":\"book\"}, \
             and repeated after them it produced 1 event: ItemAdded v1 {\"item\":\"book\"}"
        );
        let message = failure(|| {
            Cart::given([added("book")])
                .when(|cart| cart.check_out())
                .then_idempotent();
        });
        assert_eq!(
            message,
            "the command is not idempotent: it produced 1 event: CartCheckedOut v1 null, \
             and repeated after them it was refused with AlreadyCheckedOut"
        );
    }

    #[test]
    fn produced_events_must_survive_a_store_round_trip() {
        let message = failure(|| {
            Cart::given_nothing()
                .when(|_| {
                    Ok::<_, CartError>(CartEvent::Noted(Noted {
                        text: "gift".into(),
                        by: "ada".into(),
                    }))
                })
                .then_state(|_| true);
        });
        assert_eq!(
            message,
            "event 1 produced by the command does not survive a store round trip; check its \
             serde attributes and upcasters:\n  \
             encoded:             Noted v1 {\"by\":\"ada\",\"text\":\"gift\"}\n  \
             decoded and encoded: Noted v1 {\"by\":\"\",\"text\":\"gift\"}"
        );
    }

    #[test]
    fn given_events_must_survive_a_store_round_trip() {
        let message = failure(|| {
            let _ = Cart::given([
                CartEvent::from(added("book")),
                Noted {
                    text: "gift".into(),
                    by: "ada".into(),
                }
                .into(),
            ]);
        });
        assert!(
            message.starts_with("given event 2 does not survive a store round trip"),
            "{message}"
        );
    }

    #[test]
    fn a_panicking_handler_names_the_event() {
        let message = failure(|| {
            Cart::given_nothing()
                .when(|cart| cart.add_item("book"))
                .then([added("book")])
                .and_state(|_| true);
            let _ = Cart::given([ItemRemoved {
                item: "book".into(),
                reason: None,
            }]);
        });
        assert_eq!(
            message,
            "applying given event 1 (ItemRemoved v2 {\"item\":\"book\",\"reason\":null}) \
             panicked: removed an item that is in the cart"
        );
    }

    #[test]
    fn stored_rows_load_through_the_upcasters() {
        Cart::given([added("book"), added("pen")])
            .and_stored("ItemRemoved", 1, json!({ "item": "book" }))
            .when(|cart| cart.check_out())
            .then([CheckedOut])
            .and_state(|cart| cart.items == ["pen"]);
        let given = Cart::given_nothing().and([added("pen")]);
        assert_eq!(given.state().items, ["pen"]);

        let message = failure(|| {
            let _ = Cart::given_nothing().and_stored("ItemRemoved", 3, json!({ "item": "book" }));
        });
        assert_eq!(
            message,
            "given event 1 (ItemRemoved v3 {\"item\":\"book\"}) cannot be decoded: event \
             `ItemRemoved` is stored at version 3, which this program cannot read; it knows \
             versions [1, 2]"
        );
    }

    /// An aggregate whose snapshot loses a field.
    #[derive(Debug, Default, Serialize, Deserialize)]
    struct Counter {
        count: u64,
        #[serde(skip_deserializing)]
        last: Option<String>,
    }

    impl Aggregate for Counter {
        const NAME: &'static str = "counter";
        const SNAPSHOT_EVERY: Option<u64> = Some(10);
        const SNAPSHOT_KEY: SnapshotKey = SnapshotKey {
            version: 1,
            fingerprint: 7,
        };
        type Event = CartEvent;
        fn apply(&mut self, event: &CartEvent) {
            self.count += 1;
            if let CartEvent::ItemAdded(e) = event {
                self.last = Some(e.item.clone());
            }
        }
        fn encode_snapshot(&self) -> Option<Result<Payload, EncodeError>> {
            Some(crate::encode_snapshot("counter", self))
        }
        fn decode_snapshot(payload: &RawValue) -> Option<Result<Self, serde_json::Error>> {
            Some(crate::decode_snapshot(payload))
        }
    }

    #[test]
    fn the_state_must_survive_a_snapshot_round_trip() {
        Counter::given_nothing()
            .when(|_| Ok::<_, CartError>(CartEvent::from(CheckedOut)))
            .then([CheckedOut]);
        let message = failure(|| {
            Counter::given_nothing()
                .when(|_| Ok::<_, CartError>(added("book")))
                .then([added("book")]);
        });
        assert_eq!(
            message,
            "the state does not survive a snapshot round trip; check its serde attributes:\n  \
             encoded:             {\"count\":1,\"last\":\"book\"}\n  \
             decoded and encoded: {\"count\":1,\"last\":null}"
        );
    }

    #[derive(Debug)]
    struct OrderPlaced {
        total: u64,
    }

    #[derive(Debug, PartialEq)]
    struct PointsAdded {
        points: u64,
    }

    fn points_for(order: &OrderPlaced) -> Option<PointsAdded> {
        (order.total >= 10).then_some(PointsAdded {
            points: order.total / 10,
        })
    }

    #[test]
    fn policies_have_the_same_shape() {
        let out = PolicyTest::given(OrderPlaced { total: 200 })
            .when(points_for)
            .then([PointsAdded { points: 20 }]);
        assert_eq!(out, [PointsAdded { points: 20 }]);
        PolicyTest::given(OrderPlaced { total: 9 })
            .when(points_for)
            .then_nothing();
        let message = failure(|| {
            PolicyTest::given(OrderPlaced { total: 150 })
                .when(points_for)
                .then([PointsAdded { points: 20 }]);
        });
        assert_eq!(
            message,
            "the policy produced other output than expected (- expected, + actual):\n    \
             - PointsAdded { points: 20 }\n    + PointsAdded { points: 15 }"
        );
    }

    #[derive(Debug, Default, PartialEq)]
    struct Shelf(Vec<String>);

    fn shelve(shelf: &mut Shelf, e: &CartEvent) {
        if let CartEvent::ItemAdded(e) = e {
            shelf.0.push(e.item.clone());
        }
    }

    #[test]
    fn projections_have_the_same_shape() {
        let shelf = ProjectionTest::given([added("book"), added("pen")])
            .when(shelve)
            .then(Shelf(vec!["book".into(), "pen".into()]));
        assert_eq!(shelf.0.len(), 2);
        ProjectionTest::<CartEvent>::given_nothing()
            .when(shelve)
            .then_state(|shelf| shelf.0.is_empty());
        let message = failure(|| {
            ProjectionTest::given([added("book")])
                .when(shelve)
                .then(Shelf(vec![]));
        });
        assert_eq!(
            message,
            "the read model after 1 event(s) is not the expected one:\n  \
             expected: Shelf([])\n    actual: Shelf([\"book\"])"
        );
        let message = failure(|| {
            ProjectionTest::given([added("book")])
                .when(|shelf: &mut Shelf, e: &CartEvent| shelve(shelf, e))
                .then_state(|shelf| shelf.0.is_empty());
        });
        assert_eq!(
            message,
            "the read model after 1 event(s) does not satisfy the predicate"
        );
    }

    #[test]
    fn the_diff_follows_the_longest_common_subsequence() {
        let d = diff(&["a", "b", "c"], &["x", "a", "c", "d"]);
        assert_eq!(d, "    + x\n      a\n    - b\n      c\n    + d");
        assert_eq!(diff::<&str>(&[], &[]), "    (no event on either side)");
    }
}
