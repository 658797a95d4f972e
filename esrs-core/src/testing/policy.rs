//! Given/when/then tests of policies.

use std::fmt::Debug;

use super::report::*;

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
