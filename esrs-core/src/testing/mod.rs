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

mod aggregate;
mod policy;
mod projection;
mod report;
mod round_trip;
#[cfg(test)]
mod tests;

pub use aggregate::{AggregateTestExt, Given, Then, When};
pub use policy::{PolicyTest, PolicyWhen};
pub use projection::{ProjectionTest, ProjectionWhen};

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
