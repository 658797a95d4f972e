//! The loyalty policy: every order placed earns its customer a point per 10 spent, added to
//! the customer's loyalty account exactly once, however often the policy runs over the log.

use std::convert::Infallible;

use esrs_core::prelude::*;
use esrs_core::{Position, RecordedEvent};

use crate::BoxError;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

/// A customer placed an order. Stored in the customer's `orders-…` stream.
#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    /// What the order cost, in whole currency units.
    pub total: u64,
}

/// Loyalty points were added to a customer's account. Stored in its `loyalty-…` stream.
#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointsAdded {
    /// The points added.
    pub points: u64,
}

/// The policy: a point per 10 spent; an order under 10 earns nothing.
pub fn points_for(order: &OrderPlaced) -> Option<PointsAdded> {
    let points = order.total / 10;
    (points > 0).then_some(PointsAdded { points })
}

/// A customer's orders.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Orders {
    placed: u64,
    spent: u64,
}

/// Why an order was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OrderError {
    /// An order of nothing.
    #[error("an order must cost something")]
    Free,
}

#[aggregate(name = "orders")]
impl Orders {
    /// How many orders were placed.
    pub fn placed(&self) -> u64 {
        self.placed
    }

    /// What they cost together.
    pub fn spent(&self) -> u64 {
        self.spent
    }

    #[apply]
    fn order_placed(&mut self, e: &OrderPlaced) {
        self.placed += 1;
        self.spent += e.total;
    }

    /// Places an order of `total`.
    pub fn place(&self, total: u64) -> Result<OrderPlaced, OrderError> {
        if total == 0 {
            return Err(OrderError::Free);
        }
        Ok(OrderPlaced { total })
    }
}

/// A customer's loyalty account.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Loyalty {
    points: u64,
}

#[aggregate(name = "loyalty")]
impl Loyalty {
    /// The points earned.
    pub fn points(&self) -> u64 {
        self.points
    }

    #[apply]
    fn points_added(&mut self, e: &PointsAdded) {
        self.points += e.points;
    }

    /// Adds the points a policy awarded.
    pub fn add(&self, award: PointsAdded) -> Result<PointsAdded, Infallible> {
        Ok(award)
    }
}

/// Runs [`points_for`] over the store's global log: for each `OrderPlaced` after its
/// position, it adds the points to the customer's loyalty account.
///
/// Each award is appended with an idempotency key made of the order event's position, so
/// running the policy again over events it already handled (after a restart that lost its
/// position, say) adds nothing twice.
#[derive(Debug)]
pub struct LoyaltyPolicy<S> {
    loyalty: Repository<Loyalty, S>,
    position: Position,
}

impl<S: EventStore> LoyaltyPolicy<S> {
    /// A policy that starts at the beginning of the log.
    pub fn new(store: S) -> Self {
        Self {
            loyalty: Repository::new(store).with_retries(3),
            position: Position::START,
        }
    }

    /// The position of the last event handled.
    pub fn position(&self) -> Position {
        self.position
    }

    /// Forgets the position: the next run starts from the beginning of the log again.
    pub fn rewind(&mut self) {
        self.position = Position::START;
    }

    /// Handles every event after the current position that the store holds now, and
    /// returns how many awards were added (repeats of earlier awards are not counted).
    pub async fn run(&mut self) -> esrs_core::Result<usize> {
        let mut added = 0;
        let mut events = self.loyalty.store().read_all(self.position);
        let mut handled = Vec::new();
        while let Some(event) = events.next().await {
            handled.push(event?);
        }
        drop(events);
        for event in handled {
            if let Some((customer, award)) = Self::award_for(&event)? {
                let key = IdempotencyKey::new(format!("loyalty/{}", event.position))
                    .expect("a position makes a short, non-empty key");
                // Caused by the order event, in its correlation: the award's history names
                // the event that led to it.
                let metadata = Metadata::caused_by(&event)
                    .with_actor("loyalty-policy")
                    .with("order", format!("{}@v{}", event.stream, event.version));
                let executed = self
                    .loyalty
                    .execute(&customer, |account| account.add(award.clone()))
                    .idempotency_key(key)
                    .metadata(metadata)
                    .await
                    .map_err(|e| match e {
                        ExecuteError::Failed(e) => e,
                        ExecuteError::Rejected(never) => match never {},
                    })?;
                if !executed.outcome.deduplicated {
                    added += 1;
                }
            }
            self.position = event.position;
        }
        Ok(added)
    }

    /// The customer and the points of an `OrderPlaced` event of an `orders` stream.
    fn award_for(event: &RecordedEvent) -> esrs_core::Result<Option<(StreamId, PointsAdded)>> {
        let Some(customer) = event.stream.as_str().strip_prefix("orders-") else {
            return Ok(None);
        };
        if event.name != OrderPlaced::NAME {
            return Ok(None);
        }
        let order =
            OrderPlaced::decode(event.schema_version, event.payload()).map_err(|source| {
                esrs_core::Error::Decode {
                    stream: event.stream.clone(),
                    version: event.version,
                    source,
                }
            })?;
        let Ok(customer) = StreamId::new(customer) else {
            return Ok(None);
        };
        Ok(points_for(&order).map(|award| (customer, award)))
    }
}

/// The loyalty example (`cargo run -p esrs-examples --bin loyalty`): orders for two
/// customers, the policy run twice over the log, and the points each customer has.
///
/// `suffix` is appended to the customer ids, so that a run on a store that outlives it
/// (PostgreSQL) starts from empty streams.
pub async fn run<S>(store: S, suffix: &str, out: &mut dyn std::io::Write) -> Result<(), BoxError>
where
    S: EventStore + Clone,
{
    let orders = Repository::<Orders, _>::new(store.clone());
    let loyalty = Repository::<Loyalty, _>::new(store.clone());
    let ada = StreamId::new(format!("ada{suffix}"))?;
    let bob = StreamId::new(format!("bob{suffix}"))?;

    for (customer, total) in [(&ada, 200), (&bob, 120), (&ada, 35), (&ada, 5)] {
        orders.execute(customer, |o| o.place(total)).await?;
        writeln!(out, "{customer} placed an order of {total}")?;
    }

    let mut policy = LoyaltyPolicy::new(store);
    let added = policy.run().await?;
    writeln!(out, "the policy added {added} award(s)")?;
    for customer in [&ada, &bob] {
        let points = loyalty.load(customer).await?.points();
        writeln!(out, "{customer} has {points} point(s)")?;
    }

    // A restart that lost the policy's position reads every order again: the idempotency
    // keys keep it from adding any award twice.
    policy.rewind();
    let added = policy.run().await?;
    writeln!(
        out,
        "run again from the start of the log: {added} new award(s)"
    )?;
    for customer in [&ada, &bob] {
        let points = loyalty.load(customer).await?.points();
        writeln!(out, "{customer} still has {points} point(s)")?;
    }
    Ok(())
}
