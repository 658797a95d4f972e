//! Change capture on the real PostgreSQL: a legacy table imported, then its live changes
//! (concurrent writers, a transaction that commits late, a relay failing mid-batch)
//! relayed into the store, each row's history exactly once and in order.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use esrs_postgres::capture::{self, CaptureError, CaptureRelay};
use esrs_postgres::sqlx::{self, PgPool};
use esrs_postgres::{PgStore, TableImportError, TableMapping};
use serde_json::{Value, json};

/// A legacy schema dropped at the end of the test.
struct Legacy {
    schema: String,
}

impl Drop for Legacy {
    fn drop(&mut self) {
        clean_up(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
    }
}

/// `accounts (id, owner, balance, updated_at)` with rows 1..=rows, owner `o<id>`, balance
/// `id`.
async fn legacy_accounts(pool: &PgPool, rows: i64) -> Legacy {
    let schema = unique_schema().replace("esrs_t_", "legacy_");
    for sql in [
        format!("CREATE SCHEMA {schema}"),
        format!(
            "CREATE TABLE {schema}.accounts (id bigint PRIMARY KEY, owner text NOT NULL,
                 balance bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"
        ),
        format!(
            "INSERT INTO {schema}.accounts (id, owner, balance)
             SELECT i, 'o' || i, i FROM generate_series(1, {rows}) AS i"
        ),
    ] {
        sqlx::query(&sql).execute(pool).await.unwrap();
    }
    Legacy { schema }
}

fn mapping(legacy: &Legacy) -> TableMapping {
    serde_json::from_value(json!({
        "name": "legacy-accounts",
        "query": format!("{}.accounts", legacy.schema),
        "stream": "account-{id}",
        "event": "AccountImported",
        "payload": ["owner", "balance"],
        "time": "updated_at",
        "order_by": ["id"],
        "capture": {
            "insert": "AccountOpened",
            "update": "BalanceChanged",
            "delete": "AccountClosed"
        }
    }))
    .unwrap()
}

/// Every stream's events as (name, payload), in version order.
async fn histories(store: &PgStore) -> BTreeMap<String, Vec<(String, Value)>> {
    let rows: Vec<(String, i64, String, Value)> = sqlx::query_as(&format!(
        "SELECT stream_id, version, name, payload::jsonb FROM {}.events
         ORDER BY stream_id, version",
        store.schema()
    ))
    .fetch_all(store.pool())
    .await
    .unwrap();
    let mut out: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for (stream, version, name, payload) in rows {
        let events = out.entry(stream).or_default();
        assert_eq!(version as usize, events.len() + 1, "versions without gaps");
        events.push((name, payload));
    }
    out
}

/// The expected histories: what the test did to each row, in order.
#[derive(Default)]
struct Model(BTreeMap<String, Vec<(String, Value)>>);

impl Model {
    fn push(&mut self, id: i64, name: &str, owner: &str, balance: i64) {
        self.0.entry(format!("account-{id}")).or_default().push((
            name.to_owned(),
            json!({ "owner": owner, "balance": balance }),
        ));
    }
}

async fn exec(pool: &PgPool, sql: &str) {
    sqlx::query(sql).execute(pool).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_imported_table_then_its_live_changes_are_each_rows_history_once_in_order() {
    let store = fresh_store().await;
    let pool = store.pool().clone();
    let legacy = legacy_accounts(&pool, 10_000).await;
    let table = format!("{}.accounts", legacy.schema);
    let mapping = mapping(&legacy);
    let mut model = Model::default();

    // The procedure is enforced: no import before the capture is applied.
    let refused = store.import_table(&mapping).await.unwrap_err();
    assert!(
        matches!(&refused, TableImportError::CaptureNotApplied { name } if name == "legacy-accounts"),
        "{refused}"
    );
    capture::apply(&store, &mapping).await.unwrap();
    capture::apply(&store, &mapping).await.unwrap(); // safe to repeat

    // A change committed before the import: the import holds it, the relay skips it.
    exec(
        &pool,
        &format!("UPDATE {table} SET balance = 100 WHERE id = 1"),
    )
    .await;
    // A transaction open across the import: the import does not see its change, the relay
    // appends it.
    let mut open = pool.begin().await.unwrap();
    sqlx::query(&format!("UPDATE {table} SET balance = 200 WHERE id = 2"))
        .execute(&mut *open)
        .await
        .unwrap();

    let imported = store.import_table(&mapping).await.unwrap();
    assert_eq!((imported.rows, imported.imported), (10_000, 10_000));
    for id in 1..=10_000 {
        let balance = if id == 1 { 100 } else { id };
        model.push(id, "AccountImported", &format!("o{id}"), balance);
    }
    open.commit().await.unwrap();
    model.push(2, "BalanceChanged", "o2", 200);

    // Concurrent writers, each on rows of its own (so each row's order is known).
    let writers: Vec<_> = (0..4i64)
        .map(|w| {
            let pool = pool.clone();
            let table = table.clone();
            tokio::spawn(async move {
                let mut done = Vec::new();
                for k in 0..25i64 {
                    let id = 100 + w * 100 + k % 5; // five rows per writer, five updates each
                    let balance = 1_000 * w + k;
                    exec(
                        &pool,
                        &format!("UPDATE {table} SET balance = {balance} WHERE id = {id}"),
                    )
                    .await;
                    done.push((id, balance));
                }
                done
            })
        })
        .collect();
    for writer in writers {
        for (id, balance) in writer.await.unwrap() {
            model.push(id, "BalanceChanged", &format!("o{id}"), balance);
        }
    }
    exec(
        &pool,
        &format!(
            "INSERT INTO {table} (id, owner, balance)
             SELECT i, 'o' || i, i FROM generate_series(10001, 10020) AS i"
        ),
    )
    .await;
    for id in 10_001..=10_020 {
        model.push(id, "AccountOpened", &format!("o{id}"), id);
    }
    exec(
        &pool,
        &format!("DELETE FROM {table} WHERE id > 9990 AND id <= 10000"),
    )
    .await;
    for id in 9_991..=10_000 {
        model.push(id, "AccountClosed", &format!("o{id}"), id);
    }

    // A transaction that commits late: it takes its transaction id first (writing row 7),
    // another transaction changes row 8 and commits, then the late one changes row 8 too.
    // Row 8's history is the other's change, then the late one's.
    let mut late = pool.begin().await.unwrap();
    sqlx::query(&format!("UPDATE {table} SET balance = 70 WHERE id = 7"))
        .execute(&mut *late)
        .await
        .unwrap();
    exec(
        &pool,
        &format!("UPDATE {table} SET balance = 81 WHERE id = 8"),
    )
    .await;
    model.push(7, "BalanceChanged", "o7", 70);
    model.push(8, "BalanceChanged", "o8", 81);
    // While it is open, a relay relays nothing past it.
    let relay = CaptureRelay::new(&store, &mapping)
        .unwrap()
        .batch_size(37)
        .settle_time(Duration::from_millis(300));
    let held = relay.drain().await.unwrap();
    assert!(held.held_back, "{held:?}");
    assert_eq!(held.relayed, 0);
    sqlx::query(&format!("UPDATE {table} SET balance = 82 WHERE id = 8"))
        .execute(&mut *late)
        .await
        .unwrap();
    late.commit().await.unwrap();
    model.push(8, "BalanceChanged", "o8", 82);

    // The relay fails mid-batch (an event it appends is refused): nothing of that batch is
    // kept, and the next run starts at the same row.
    exec(
        &pool,
        &format!("UPDATE {table} SET owner = 'refused' WHERE id = 9"),
    )
    .await;
    model.push(9, "BalanceChanged", "refused", 9);
    let schema = store.schema();
    exec(
        &pool,
        &format!(
            "CREATE FUNCTION {schema}.refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.payload->>'owner' = 'refused' THEN RAISE EXCEPTION 'refused'; END IF;
                 RETURN NEW;
             END $$"
        ),
    )
    .await;
    exec(
        &pool,
        &format!(
            "CREATE TRIGGER refuse_one BEFORE INSERT ON {schema}.events
             FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_one()"
        ),
    )
    .await;
    let failed = relay.drain().await.unwrap_err();
    assert!(matches!(failed, CaptureError::Database(_)), "{failed:?}");
    let partial = histories(&store).await;
    assert!(
        partial["account-8"].len() < 3,
        "batches after the failed one were not relayed"
    );
    assert_eq!(
        partial["account-9"].len(),
        1,
        "the failed batch left nothing"
    );
    exec(
        &pool,
        &format!("DROP TRIGGER refuse_one ON {schema}.events"),
    )
    .await;

    let relayed = relay.drain().await.unwrap();
    assert!(!relayed.held_back);
    let (covered, relayed_total): (i64, i64) = sqlx::query_as(&format!(
        "SELECT covered, relayed FROM {schema}.capture_relays WHERE name = 'legacy-accounts'"
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        covered, 1,
        "the change made before the import is the import's"
    );
    assert_eq!(relayed_total, 135);
    let again = relay.drain().await.unwrap();
    assert_eq!(again.relayed, 0, "a second run relays nothing twice");

    let actual = histories(&store).await;
    assert_eq!(actual.len(), model.0.len());
    for (stream, expected) in &model.0 {
        assert_eq!(actual.get(stream), Some(expected), "{stream}");
    }
    // Captured events carry the capture's name and row, and the time of the change.
    let (metadata, at): (Value, chrono::DateTime<chrono::Utc>) = sqlx::query_as(&format!(
        "SELECT metadata, recorded_at FROM {schema}.events WHERE stream_id = 'account-8'
         ORDER BY version DESC LIMIT 1"
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(metadata["custom"]["captured_from"], "legacy-accounts");
    assert!(metadata["custom"]["capture_id"].as_i64().unwrap() > 0);
    assert!(at > chrono::Utc::now() - chrono::Duration::minutes(5));
    // The capture table is a queue: relayed rows are gone.
    let left: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {schema}.capture_legacy_accounts"
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left, 0);

    // The second run of the whole procedure duplicates nothing.
    capture::apply(&store, &mapping).await.unwrap();
    let second = store.import_table(&mapping).await.unwrap();
    assert!(second.handed_over);
    assert_eq!(second.imported, 0);
    assert_eq!(relay.drain().await.unwrap().relayed, 0);
    assert_eq!(histories(&store).await, actual);
    drop(legacy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_import_every_change_is_relayed_and_a_late_import_is_refused() {
    let store = fresh_store().await;
    let pool = store.pool().clone();
    let legacy = legacy_accounts(&pool, 3).await;
    let table = format!("{}.accounts", legacy.schema);
    let mapping = mapping(&legacy);
    capture::apply(&store, &mapping).await.unwrap();
    exec(
        &pool,
        &format!("UPDATE {table} SET balance = 5 WHERE id = 1"),
    )
    .await;
    exec(&pool, &format!("DELETE FROM {table} WHERE id = 2")).await;
    let relay = CaptureRelay::new(&store, &mapping).unwrap();
    let done = relay.drain().await.unwrap();
    assert_eq!((done.relayed, done.batches), (2, 1));
    let h = histories(&store).await;
    assert_eq!(
        h["account-1"],
        [(
            "BalanceChanged".to_owned(),
            json!({"owner": "o1", "balance": 5})
        )]
    );
    assert_eq!(
        h["account-2"],
        [(
            "AccountClosed".to_owned(),
            json!({"owner": "o2", "balance": 2})
        )]
    );
    let refused = store.import_table(&mapping).await.unwrap_err();
    assert!(
        matches!(refused, TableImportError::CaptureStarted { .. }),
        "{refused}"
    );

    // `run` relays as changes come, until it is stopped.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let relay = relay.clone().poll_interval(Duration::from_millis(20));
        tokio::spawn(async move {
            relay
                .run(
                    async move {
                        let _ = stopped.await;
                    },
                    |_| {},
                )
                .await
        })
    };
    exec(
        &pool,
        &format!("INSERT INTO {table} (id, owner, balance) VALUES (4, 'o4', 4)"),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !histories(&store).await.contains_key("account-4") {
        assert!(
            std::time::Instant::now() < deadline,
            "run relays the insert"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(()).unwrap();
    let totals = running.await.unwrap().unwrap();
    assert_eq!(totals.relayed, 1);
    drop(legacy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_relays_of_one_capture_take_turns_and_append_each_change_once() {
    let store = fresh_store().await;
    let pool = store.pool().clone();
    let legacy = legacy_accounts(&pool, 0).await;
    let table = format!("{}.accounts", legacy.schema);
    let mapping = mapping(&legacy);
    capture::apply(&store, &mapping).await.unwrap();
    // Writers and two relays at once.
    let writers: Vec<_> = (0..4i64)
        .map(|w| {
            let pool = pool.clone();
            let table = table.clone();
            tokio::spawn(async move {
                for k in 0..250i64 {
                    let id = w * 1_000 + k;
                    exec(
                        &pool,
                        &format!(
                            "INSERT INTO {table} (id, owner, balance) VALUES ({id}, 'o{id}', {id})"
                        ),
                    )
                    .await;
                }
            })
        })
        .collect();
    let relays: Vec<_> = (0..2)
        .map(|_| {
            let relay = CaptureRelay::new(&store, &mapping).unwrap().batch_size(64);
            tokio::spawn(async move {
                let mut relayed = 0;
                for _ in 0..20 {
                    relayed += relay.drain().await.unwrap().relayed;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                relayed
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let mut relayed = 0;
    for relay in relays {
        relayed += relay.await.unwrap();
    }
    relayed += CaptureRelay::new(&store, &mapping)
        .unwrap()
        .drain()
        .await
        .unwrap()
        .relayed;
    assert_eq!(relayed, 1_000);
    let h = histories(&store).await;
    assert_eq!(h.len(), 1_000);
    assert!(
        h.values()
            .all(|events| events.len() == 1 && events[0].0 == "AccountOpened")
    );
    drop(legacy);
}

/// A LOGIN role dropped, with its grants, at the end of the test.
struct Role(String);

impl Drop for Role {
    fn drop(&mut self) {
        let name = &self.0;
        clean_up(format!("DROP OWNED BY {name}; DROP ROLE IF EXISTS {name}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_system_needs_no_rights_on_the_store_to_be_captured() {
    let store = fresh_store().await;
    let pool = store.pool().clone();
    let legacy = legacy_accounts(&pool, 1).await;
    let table = format!("{}.accounts", legacy.schema);
    let mapping = mapping(&legacy);
    capture::apply(&store, &mapping).await.unwrap();
    let role = Role(unique_schema().replace("esrs_t_", "legacy_app_"));
    let name = &role.0;
    exec(&pool, &format!("CREATE ROLE {name} LOGIN")).await;
    exec(
        &pool,
        &format!("GRANT USAGE ON SCHEMA {} TO {name}", legacy.schema),
    )
    .await;
    exec(
        &pool,
        &format!("GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {name}"),
    )
    .await;
    // The old system's own role: rights on its table only.
    let app = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(connect_options().username(name))
        .await
        .unwrap();
    exec(
        &app,
        &format!("INSERT INTO {table} (id, owner, balance) VALUES (2, 'o2', 2)"),
    )
    .await;
    exec(
        &app,
        &format!("UPDATE {table} SET balance = 3 WHERE id = 2"),
    )
    .await;
    let store_table = format!("SELECT count(*) FROM {}.events", store.schema());
    assert!(
        sqlx::query(&store_table).execute(&app).await.is_err(),
        "the role cannot read the store"
    );
    app.close().await;
    let done = CaptureRelay::new(&store, &mapping)
        .unwrap()
        .drain()
        .await
        .unwrap();
    assert_eq!(done.relayed, 2);
    assert_eq!(histories(&store).await["account-2"].len(), 2);
    drop(legacy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_table_or_column_is_named() {
    let store = fresh_store().await;
    let legacy = legacy_accounts(store.pool(), 1).await;
    let mut m = mapping(&legacy);
    m.query = format!("{}.nope", legacy.schema);
    let e = capture::apply(&store, &m).await.unwrap_err();
    assert!(
        matches!(&e, CaptureError::UnknownTable { table } if *table == m.query),
        "{e:?}"
    );
    assert_eq!(e.to_string(), format!("table `{}` does not exist", m.query));
    let mut m = mapping(&legacy);
    m.payload.push("colour".into());
    let e = capture::apply(&store, &m).await.unwrap_err();
    assert!(
        matches!(&e, CaptureError::UnknownColumn { column, .. } if column == "colour"),
        "{e:?}"
    );
    let mut m = mapping(&legacy);
    m.stream = "account-{number}".into();
    let e = capture::apply(&store, &m).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("table `{}.accounts` has no column `number`", legacy.schema)
    );
    // Nothing was applied: the relay says so.
    let relay = CaptureRelay::new(&store, &mapping(&legacy)).unwrap();
    let e = relay.drain().await.unwrap_err();
    assert!(matches!(e, CaptureError::NotApplied { .. }), "{e:?}");
    drop(legacy);
}

/// Relay throughput: 100,000 captured rows (inserts, then updates) appended as events, and
/// what the trigger costs the writes of the old system.
/// `cargo test --release -p esrs-postgres --test capture -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn relay_throughput() {
    let store = fresh_store().await;
    let pool = store.pool().clone();
    let legacy = legacy_accounts(&pool, 0).await;
    let table = format!("{}.accounts", legacy.schema);
    let twin = format!("{}.twin", legacy.schema);
    let mapping = mapping(&legacy);
    // The same table without the trigger.
    exec(
        &pool,
        &format!("CREATE TABLE {twin} (LIKE {table} INCLUDING ALL)"),
    )
    .await;
    capture::apply(&store, &mapping).await.unwrap();
    for target in [&twin, &table] {
        let started = std::time::Instant::now();
        exec(
            &pool,
            &format!(
                "INSERT INTO {target} (id, owner, balance)
                 SELECT i, 'o' || i, i FROM generate_series(1, 100000) AS i"
            ),
        )
        .await;
        println!(
            "one insert of 100,000 rows into {target}: {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
    for (batch, captured) in [(1_000, "inserts"), (5_000, "updates")] {
        if captured == "updates" {
            exec(&pool, &format!("UPDATE {table} SET balance = balance + 1")).await;
        }
        let relay = CaptureRelay::new(&store, &mapping)
            .unwrap()
            .batch_size(batch);
        let started = std::time::Instant::now();
        let done = relay.drain().await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(done.relayed, 100_000);
        println!(
            "{} captured {captured} relayed in batches of {batch}: {:.2} s, {:.0} events/s",
            done.relayed,
            elapsed.as_secs_f64(),
            done.relayed as f64 / elapsed.as_secs_f64()
        );
    }
    // As an application writes: one row per transaction.
    for target in [&twin, &table] {
        let started = std::time::Instant::now();
        for id in 100_001..=102_000 {
            exec(
                &pool,
                &format!("INSERT INTO {target} (id, owner, balance) VALUES ({id}, 'o', 1)"),
            )
            .await;
        }
        println!(
            "2,000 one-row inserts into {target}: {:.0} µs each",
            started.elapsed().as_secs_f64() * 1e6 / 2_000.0
        );
    }
    drop(legacy);
}
