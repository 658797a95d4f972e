//! Given/when/then tests of projections written as folds.

use std::fmt::Debug;

use super::Check;
use super::report::*;

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
