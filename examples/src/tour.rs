//! The main example: the shopping cart and the bank account end to end, printing what
//! happens at each step — the commands, the events stored, the state rebuilt, a snapshot, a
//! refused command, a conflict resolved by retry, the history and a look back in time.
//!
//! `cargo run -p esrs-examples` runs it in memory, or on PostgreSQL when `DATABASE_URL` is
//! set.

use std::future::IntoFuture;
use std::io::Write;
use std::time::Duration;

use esrs_core::prelude::*;
use esrs_core::store::{AppendRequest, NewEvent};
use esrs_core::{RecordedEvent, Version};
use futures_util::StreamExt;

use crate::bank::{self, Account};
use crate::cart::Cart;

pub use crate::BoxError;

/// The aggregate ids the tour uses.
#[derive(Debug, Clone)]
pub struct Ids {
    /// The cart of the walk-through.
    pub cart: StreamId,
    /// A cart written with an old version of `ItemRemoved`.
    pub old_cart: StreamId,
    /// The bank account.
    pub account: StreamId,
}

impl Ids {
    /// Cart `42`, cart `7` and account `alice`: readable ids for a store of its own.
    pub fn fixed() -> Self {
        Self::with_suffix("")
    }

    /// The same ids with a random suffix, for a store that outlives the run (PostgreSQL),
    /// so that every run starts from empty streams.
    pub fn unique() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self::with_suffix(&format!("-{}", &id[..8]))
    }

    fn with_suffix(suffix: &str) -> Self {
        let id = |name: &str| StreamId::new(format!("{name}{suffix}")).expect("a valid id");
        Self {
            cart: id("42"),
            old_cart: id("7"),
            account: id("alice"),
        }
    }
}

/// Writes a line of output.
macro_rules! say {
    ($out:expr) => { writeln!($out)? };
    ($out:expr, $($arg:tt)*) => { writeln!($out, $($arg)*)? };
}

/// Runs the tour on `store`, writing what happens to `out`.
///
/// The conflict scene blocks a worker thread for a moment to make its race repeatable, so
/// the tour needs tokio's multi-thread runtime; on another it returns an error at once.
pub async fn run<S>(store: S, ids: &Ids, out: &mut dyn Write) -> Result<(), BoxError>
where
    S: EventStore + Clone,
{
    let flavor = tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor());
    if flavor.ok() != Some(tokio::runtime::RuntimeFlavor::MultiThread) {
        return Err("the tour runs on tokio's multi-thread runtime \
             (`#[tokio::main]`, or `#[tokio::test(flavor = \"multi_thread\")]`)"
            .into());
    }
    shopping_cart(store.clone(), ids, out).await?;
    say!(out);
    bank_account(store, ids, out).await?;
    Ok(())
}

async fn shopping_cart<S>(store: S, ids: &Ids, out: &mut dyn Write) -> Result<(), BoxError>
where
    S: EventStore + Clone,
{
    let carts = Repository::<Cart, _>::new(store.clone());
    let id = &ids.cart;
    let stream = carts.stream_of(id)?;
    say!(out, "== The shopping cart ({stream}) ==");
    say!(
        out,
        "A snapshot is taken every {} events.",
        Cart::SNAPSHOT_EVERY.unwrap_or_default()
    );

    say!(out, "> add_item(\"book\")");
    let done = carts.execute(id, |cart| cart.add_item("book")).await?;
    stored(
        &store,
        &stream,
        done.outcome.first_version,
        done.version(),
        out,
    )
    .await?;

    let request = IdempotencyKey::from(uuid::Uuid::new_v4());
    say!(out, "> add_item(\"pen\") with idempotency key {request}");
    let done = carts
        .execute(id, |cart| cart.add_item("pen"))
        .idempotency_key(request.clone())
        .await?;
    stored(
        &store,
        &stream,
        done.outcome.first_version,
        done.version(),
        out,
    )
    .await?;

    say!(
        out,
        "> add_item(\"pen\") with the same key again: a double click"
    );
    let again = carts
        .execute(id, |cart| cart.add_item("pen"))
        .idempotency_key(request)
        .await?;
    if again.outcome.deduplicated {
        say!(
            out,
            "  nothing stored: the first click's outcome came back (v{}, {} item(s) in the cart)",
            again.version(),
            again.state.items().len()
        );
    }

    say!(out, "> add_item(\"lamp\")");
    let done = carts.execute(id, |cart| cart.add_item("lamp")).await?;
    stored(
        &store,
        &stream,
        done.outcome.first_version,
        done.version(),
        out,
    )
    .await?;
    if let Some(snapshot) = store.load_snapshot(&stream, Cart::SNAPSHOT_KEY).await? {
        say!(
            out,
            "  snapshot taken at v{}: {}",
            snapshot.version,
            snapshot.payload.get()
        );
    }

    say!(out, "> remove_item(\"lamp\", Some(\"too big\"))");
    let done = carts
        .execute(id, |cart| cart.remove_item("lamp", Some("too big")))
        .await?;
    stored(
        &store,
        &stream,
        done.outcome.first_version,
        done.version(),
        out,
    )
    .await?;

    say!(out, "> check_out()");
    let done = carts.execute(id, |cart| cart.check_out()).await?;
    stored(
        &store,
        &stream,
        done.outcome.first_version,
        done.version(),
        out,
    )
    .await?;

    let cart = carts.load(id).await?;
    let from = match store.load_snapshot(&stream, Cart::SNAPSHOT_KEY).await? {
        Some(s) => format!(
            "the snapshot at v{} and the {} event(s) after it",
            s.version,
            cart.version - s.version
        ),
        None => format!("its {} events", cart.version),
    };
    say!(
        out,
        "State rebuilt from {from}: items {:?}, checked out: {}, at v{}",
        cart.items(),
        cart.is_checked_out(),
        cart.version
    );

    say!(out, "> add_item(\"mug\")");
    match carts.execute(id, |cart| cart.add_item("mug")).await {
        Err(ExecuteError::Rejected(error)) => say!(out, "  refused: {error}"),
        Err(error) => return Err(error.into()),
        Ok(done) => say!(out, "  unexpectedly accepted at v{}", done.version()),
    }

    say!(out, "Events stored in {stream}:");
    stored(&store, &stream, 1, Version::MAX, out).await?;

    // A cart written by an older version of the program, when ItemRemoved had no reason.
    let old = carts.stream_of(&ids.old_cart)?;
    say!(out);
    say!(
        out,
        "{old} was written by an older program, whose ItemRemoved (version 1) had no reason:"
    );
    let rows = vec![
        NewEvent::new("ItemAdded", 1, json(serde_json::json!({ "item": "pen" }))?),
        NewEvent::new(
            "ItemRemoved",
            1,
            json(serde_json::json!({ "item": "pen" }))?,
        ),
    ];
    store
        .append(AppendRequest::new(
            old.clone(),
            ExpectedVersion::NoStream,
            rows,
        ))
        .await?;
    stored(&store, &old, 1, Version::MAX, out).await?;
    let history = carts.history(&ids.old_cart).await?;
    if let Some(last) = history.last() {
        say!(out, "  v2 loads through the upcaster as {:?}", last.event);
    }
    let old_cart = carts.load(&ids.old_cart).await?;
    say!(
        out,
        "  {old} holds {:?} at v{}",
        old_cart.items(),
        old_cart.version
    );
    Ok(())
}

async fn bank_account<S>(store: S, ids: &Ids, out: &mut dyn Write) -> Result<(), BoxError>
where
    S: EventStore + Clone,
{
    let accounts = Repository::<Account, _>::new(store.clone());
    let id = &ids.account;
    let stream = accounts.stream_of(id)?;
    say!(out, "== The bank account ({stream}) ==");
    let by = |actor: &str, reason: &str| Metadata::new().with_actor(actor).with("reason", reason);

    say!(out, "> deposit(500) by payroll (salary)");
    let done = accounts
        .execute(id, |account| account.deposit(500))
        .metadata(by("payroll", "salary"))
        .await?;
    stored(
        &store,
        &stream,
        done.outcome.first_version,
        done.version(),
        out,
    )
    .await?;
    // Later events are recorded strictly later, for the look back in time below.
    tokio::time::sleep(Duration::from_millis(5)).await;

    say!(out, "> withdraw(200) by alice (rent)");
    let done = accounts
        .execute(id, |account| account.withdraw(200))
        .metadata(by("alice", "rent"))
        .await?;
    stored(
        &store,
        &stream,
        done.outcome.first_version,
        done.version(),
        out,
    )
    .await?;

    say!(out, "> withdraw(1000) by alice (new bike)");
    match accounts
        .execute(id, |account| account.withdraw(1000))
        .metadata(by("alice", "new bike"))
        .await
    {
        Err(ExecuteError::Rejected(error)) => say!(out, "  refused: {error}"),
        Err(error) => return Err(error.into()),
        Ok(done) => say!(out, "  unexpectedly accepted at v{}", done.version()),
    }

    // Two tellers, two repositories, one account. Teller B's deposit lands while teller A is
    // deciding, so teller A's append meets a conflict; its repository reloads the account and
    // runs the command again.
    say!(out, "Two tellers race on the account:");
    let teller_a = Repository::<Account, _>::new(store.clone()).with_retries(3);
    let teller_b = Repository::<Account, _>::new(store.clone());
    let mut attempts = Vec::new();
    let mut teller_b_failed = None;
    let done = teller_a
        .execute(id, |account| {
            attempts.push(account.balance());
            if attempts.len() == 1 {
                let deposit = teller_b
                    .execute(id, |account| account.deposit(100))
                    .metadata(by("bob", "refund"));
                let handle = tokio::runtime::Handle::current();
                let deposited =
                    tokio::task::block_in_place(|| handle.block_on(deposit.into_future()));
                teller_b_failed = deposited.err();
            }
            account.withdraw(100)
        })
        .metadata(by("alice", "groceries"))
        .await?;
    if let Some(error) = teller_b_failed {
        return Err(error.into());
    }
    say!(
        out,
        "  teller A decides withdraw(100) by alice (groceries) on a balance of {}",
        attempts[0]
    );
    say!(
        out,
        "  meanwhile teller B stores deposit(100) by bob (refund):"
    );
    stored(
        &store,
        &stream,
        done.outcome.first_version - 1,
        done.outcome.first_version - 1,
        out,
    )
    .await?;
    say!(
        out,
        "  teller A's append conflicts; it reloads and decides again on a balance of {}:",
        attempts[attempts.len() - 1]
    );
    stored(
        &store,
        &stream,
        done.outcome.first_version,
        done.version(),
        out,
    )
    .await?;
    say!(
        out,
        "  teller A's command ran {} times; the balance is {}",
        attempts.len(),
        done.state.balance()
    );

    let stale = AppendRequest::new(
        stream.clone(),
        ExpectedVersion::Exact(2),
        vec![NewEvent::encode(&bank::AccountEvent::from(
            bank::Withdrawn { amount: 1 },
        ))?],
    );
    match store.append(stale).await {
        Err(esrs_core::Error::Conflict(conflict)) => {
            say!(
                out,
                "A writer that does not reload gets a typed error: {conflict}"
            )
        }
        Err(error) => return Err(error.into()),
        Ok(outcome) => say!(out, "  unexpectedly appended at v{}", outcome.last_version),
    }

    let account = accounts.load(id).await?;
    say!(
        out,
        "Why is my balance {}? The account's history:",
        account.balance()
    );
    let history = accounts.history(id).await?;
    for line in bank::statement(&history) {
        say!(out, "  {line}");
    }

    say!(out, "Looking back:");
    let at_v3 = accounts.load_at(id, 3).await?;
    say!(out, "  at v3 the balance was {}", at_v3.balance());
    if let Some(first) = history.first() {
        let then = first.recorded.recorded_at;
        let past = accounts.load_as_of(id, then).await?;
        say!(
            out,
            "  at {} (when v1 was recorded) the balance was {}",
            then.format("%H:%M:%S%.3f"),
            past.balance()
        );
    }
    Ok(())
}

/// Prints the events of `stream` with versions `from..=to` as the store holds them.
async fn stored<S: EventStore>(
    store: &S,
    stream: &StreamId,
    from: Version,
    to: Version,
    out: &mut dyn Write,
) -> Result<(), BoxError> {
    let mut events = store.read_stream(stream, from, to);
    while let Some(event) = events.next().await {
        say!(out, "  stored {}", show(&event?));
    }
    Ok(())
}

/// `v3  ItemAdded v1 {"item":"lamp"}`: an event's stream version, stored name, payload
/// version and payload.
fn show(event: &RecordedEvent) -> String {
    format!(
        "v{}  {} v{} {}",
        event.version,
        event.name,
        event.schema_version,
        event.payload()
    )
}

fn json(value: serde_json::Value) -> Result<esrs_core::store::Payload, serde_json::Error> {
    serde_json::value::to_raw_value(&value)
}
