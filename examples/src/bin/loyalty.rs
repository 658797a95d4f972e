//! The loyalty policy: orders earn a point per 10 spent, exactly once.
//!
//! ```sh
//! cargo run -p esrs-examples --bin loyalty
//! ```

use esrs_core::prelude::*;
use esrs_examples::loyalty::{Loyalty, LoyaltyPolicy, Orders};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let store = InMemoryStore::new();
    let orders = Repository::<Orders, _>::new(store.clone());
    let loyalty = Repository::<Loyalty, _>::new(store.clone());
    let ada = StreamId::new("ada")?;
    let bob = StreamId::new("bob")?;

    for (customer, total) in [(&ada, 200), (&bob, 120), (&ada, 35), (&ada, 5)] {
        orders
            .execute(customer, |orders| orders.place(total))
            .await?;
        println!("{customer} placed an order of {total}");
    }

    let mut policy = LoyaltyPolicy::new(store.clone());
    let added = policy.run().await?;
    println!(
        "the policy added {added} award(s), up to position {}",
        policy.position()
    );
    for customer in [&ada, &bob] {
        let account = loyalty.load(customer).await?;
        println!("{customer} has {} point(s)", account.points());
    }

    // A restart that lost the policy's position reads every order again: the idempotency
    // keys keep it from adding any award twice.
    policy.rewind();
    let added = policy.run().await?;
    println!("run again from the start: {added} new award(s)");
    for customer in [&ada, &bob] {
        let account = loyalty.load(customer).await?;
        println!("{customer} still has {} point(s)", account.points());
    }
    Ok(())
}
