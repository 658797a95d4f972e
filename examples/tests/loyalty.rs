//! The loyalty policy: a point per 10 spent, tested with the harness, and awarded exactly
//! once by the policy runner however often it reads the log.

use esrs_core::prelude::*;
use esrs_core::testing::PolicyTest;
use esrs_examples::loyalty::{
    Loyalty, LoyaltyPolicy, OrderError, OrderPlaced, Orders, PointsAdded, points_for,
};

#[test]
fn an_order_of_200_earns_20_points() {
    PolicyTest::given(OrderPlaced { total: 200 })
        .when(points_for)
        .then([PointsAdded { points: 20 }]);
}

#[test]
fn a_point_per_whole_10_spent() {
    PolicyTest::given(OrderPlaced { total: 35 })
        .when(points_for)
        .then([PointsAdded { points: 3 }]);
    PolicyTest::given(OrderPlaced { total: 9 })
        .when(points_for)
        .then_nothing();
}

#[test]
fn orders_and_points_are_aggregates_too() {
    Orders::given([OrderPlaced { total: 200 }])
        .when(|orders| orders.place(35))
        .then([OrderPlaced { total: 35 }])
        .and_state(|orders| orders.placed() == 2 && orders.spent() == 235);
    Orders::given_nothing()
        .when(|orders| orders.place(0))
        .then_error(OrderError::Free);
    Loyalty::given([PointsAdded { points: 20 }])
        .when(|account| account.add(PointsAdded { points: 3 }))
        .then([PointsAdded { points: 3 }])
        .and_state(|account| account.points() == 23);
}

#[tokio::test]
async fn the_policy_awards_each_order_once() {
    let store = InMemoryStore::new();
    let orders = Repository::<Orders, _>::new(store.clone());
    let loyalty = Repository::<Loyalty, _>::new(store.clone());
    let ada = StreamId::new("ada").unwrap();
    let bob = StreamId::new("bob").unwrap();
    let points = |customer: StreamId| {
        let loyalty = loyalty.clone();
        async move { loyalty.load(&customer).await.unwrap().points() }
    };

    for (customer, total) in [(&ada, 200), (&bob, 120), (&ada, 5)] {
        orders.execute(customer, |o| o.place(total)).await.unwrap();
    }
    let mut policy = LoyaltyPolicy::new(store.clone());
    assert_eq!(policy.run().await.unwrap(), 2);
    assert_eq!(
        (points(ada.clone()).await, points(bob.clone()).await),
        (20, 12)
    );

    // Nothing new: nothing to do.
    assert_eq!(policy.run().await.unwrap(), 0);

    // A new order after the last run is picked up from the position.
    orders.execute(&ada, |o| o.place(35)).await.unwrap();
    assert_eq!(policy.run().await.unwrap(), 1);
    assert_eq!(points(ada.clone()).await, 23);

    // Reading the whole log again adds nothing twice.
    policy.rewind();
    assert_eq!(policy.run().await.unwrap(), 0);
    assert_eq!(
        (points(ada.clone()).await, points(bob.clone()).await),
        (23, 12)
    );

    // Every award names the order that caused it.
    let history = loyalty.history(&ada).await.unwrap();
    assert_eq!(history.len(), 2);
    let order = &history[0].recorded.metadata.custom["order"];
    assert_eq!(order, "orders-ada@v1");
    assert_eq!(
        history[0].recorded.metadata.actor.as_deref(),
        Some("loyalty-policy")
    );
    // … by its id, as its cause and in its correlation.
    let placed = orders.history(&ada).await.unwrap();
    assert_eq!(
        history[0].recorded.metadata.causation_id,
        Some(placed[0].recorded.id)
    );
    assert_eq!(
        history[0].recorded.metadata.correlation_id,
        Some(placed[0].recorded.id)
    );
}

#[tokio::test]
async fn the_loyalty_example_prints_each_award_once() {
    let mut out = Vec::new();
    esrs_examples::loyalty::run(InMemoryStore::new(), "", &mut out)
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        out.lines().skip(4).collect::<Vec<_>>(),
        [
            "the policy added 3 award(s)",
            "ada has 23 point(s)",
            "bob has 12 point(s)",
            "run again from the start of the log: 0 new award(s)",
            "ada still has 23 point(s)",
            "bob still has 12 point(s)",
        ],
        "{out}"
    );
}
