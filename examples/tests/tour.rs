//! The main example runs end to end against the in-memory store and prints every scene.

use esrs_core::InMemoryStore;
use esrs_examples::tour::{self, Ids};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tour_walks_through_the_cart_and_the_bank_account() {
    let mut out = Vec::new();
    tour::run(InMemoryStore::new(), &Ids::fixed(), &mut out)
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let has = |wanted: &str| {
        assert!(
            lines.iter().any(|l| l.starts_with(wanted)),
            "no line starts with {wanted:?} in:\n{out}"
        )
    };

    // The cart: commands, events stored, a snapshot, the state rebuilt, a refusal, the upcast.
    has(r#"stored v1  ItemAdded v1 {"item":"book"}"#);
    has("nothing stored: the first click's outcome came back (v2, 2 item(s) in the cart)");
    has(r#"snapshot taken at v3: {"items":["book","pen","lamp"],"checked_out":false}"#);
    has(r#"stored v4  ItemRemoved v2 {"item":"lamp","reason":"too big"}"#);
    has("stored v5  CartCheckedOut v1 null");
    has(
        r#"State rebuilt from the snapshot at v3 and the 2 event(s) after it: items ["book", "pen"], checked out: true, at v5"#,
    );
    has("refused: the cart is already checked out");
    has(r#"stored v2  ItemRemoved v1 {"item":"pen"}"#);
    has(
        r#"v2 loads through the upcaster as ItemRemoved(ItemRemoved { item: "pen", reason: None })"#,
    );

    // The bank account: a refusal, the race, the history, the look back.
    has("refused: insufficient funds: the balance is 300, 1000 was requested");
    has("teller A decides withdraw(100) by alice (groceries) on a balance of 300");
    has(r#"stored v3  Deposited v1 {"amount":100}"#);
    has("teller A's append conflicts; it reloads and decides again on a balance of 400:");
    has(r#"stored v4  Withdrawn v1 {"amount":100}"#);
    has("teller A's command ran 2 times; the balance is 300");
    has(
        "A writer that does not reload gets a typed error: concurrency conflict on stream `account-alice`: expected version 2, but it is at version 4",
    );
    has("Why is my balance 300? The account's history:");
    let history: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with('v') && l.contains(" balance "))
        .collect();
    assert_eq!(history.len(), 4, "{out}");
    assert!(history[3].contains("by alice") && history[3].contains("(groceries)"));
    has("at v3 the balance was 400");
    assert!(
        lines
            .iter()
            .any(|l| l.ends_with("(when v1 was recorded) the balance was 500")),
        "{out}"
    );
}

#[tokio::test]
async fn the_tour_says_which_runtime_it_needs() {
    let mut out = Vec::new();
    let error = tour::run(InMemoryStore::new(), &Ids::fixed(), &mut out)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("multi-thread runtime"),
        "{}",
        esrs_core::error::ErrorChain::new(&*error)
    );
    assert!(out.is_empty());
}
