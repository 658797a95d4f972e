//! Every subcommand of `esrs`, run as a process against the real PostgreSQL: its output,
//! JSON and human, and its exit code.

mod common;

use std::time::Duration;

use common::*;
use esrs_core::{BoxError, Projection, ProjectionRunner, RecordedEvent};
use esrs_postgres::{PgCheckpoints, PgStore, PgTransaction};
use serde_json::Value;

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

fn failure(output: &std::process::Output, code: i32) -> String {
    assert_eq!(
        output.status.code(),
        Some(code),
        "exit code; stdout: {}; stderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn seeded() -> (PgStore, String) {
    let schema = unique("esrs_cli");
    let store = store_at(&database_url(), &schema).await;
    append(&store, "cart-1", "ItemAdded", 3).await;
    append(&store, "cart-2", "ItemAdded", 2).await;
    append(&store, "order-1", "OrderPlaced", 1).await;
    (store, schema)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_show_stats_and_tail_print_what_the_store_holds() {
    let (store, schema) = seeded().await;
    let s = schema.as_str();

    let streams: Value =
        serde_json::from_str(&ok(&esrs(&["--schema", s, "--json", "streams"]))).expect("JSON");
    let listed: Vec<(String, u64)> = streams
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stream"].as_str().unwrap().to_owned(),
                s["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("cart-1".to_owned(), 3),
            ("cart-2".to_owned(), 2),
            ("order-1".to_owned(), 1)
        ]
    );
    let table = ok(&esrs(&["--schema", s, "streams", "--prefix", "cart-"]));
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("STREAM"), "{table}");
    assert_eq!(rows.len(), 3, "the header and two carts: {table}");
    assert!(
        rows[1].starts_with("cart-1 ") && rows[1].contains(" 3 "),
        "{table}"
    );

    let shown = lines(&ok(&esrs(&["--schema", s, "--json", "show", "cart-1"])));
    assert_eq!(shown.len(), 3);
    for (i, event) in shown.iter().enumerate() {
        assert_eq!(event["version"], i as u64 + 1);
        assert_eq!(event["name"], "ItemAdded");
        assert_eq!(event["payload"]["n"], i as u64);
        assert_eq!(event["metadata"]["actor"], "tester");
    }
    let at = lines(&ok(&esrs(&[
        "--schema", s, "--json", "show", "cart-1", "--at", "2",
    ])));
    assert_eq!(at.len(), 2, "the stream as it was at version 2");
    let human = ok(&esrs(&["--schema", s, "show", "cart-2"]));
    assert!(human.contains("cart-2 #1 ItemAdded (v1)"), "{human}");
    assert!(
        human.contains("  metadata: {\"actor\":\"tester\"}"),
        "{human}"
    );
    assert!(human.contains("    \"n\": 1,"), "pretty payload: {human}");
    let missing = failure(&esrs(&["--schema", s, "show", "cart-9"]), 1);
    assert!(
        missing.contains("stream `cart-9` has no events"),
        "{missing}"
    );
    let invalid = failure(&esrs(&["--schema", s, "show", ""]), 1);
    assert!(invalid.starts_with("error: "), "{invalid}");

    // The whole log in order, then stop.
    let tailed = lines(&ok(&esrs(&[
        "--schema", s, "--json", "tail", "--from", "start", "--limit", "6",
    ])));
    let order: Vec<(String, u64)> = tailed
        .iter()
        .map(|e| {
            (
                e["stream"].as_str().unwrap().to_owned(),
                e["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("cart-1".to_owned(), 1),
            ("cart-1".to_owned(), 2),
            ("cart-1".to_owned(), 3),
            ("cart-2".to_owned(), 1),
            ("cart-2".to_owned(), 2),
            ("order-1".to_owned(), 1)
        ]
    );
    // Live: from the head, the next event appended.
    let url = database_url();
    let schema_arg = schema.clone();
    let follower = tokio::task::spawn_blocking(move || {
        esrs_at(&url, &["--schema", &schema_arg, "tail", "--limit", "1"])
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    append(&store, "order-2", "OrderPlaced", 1).await;
    let followed = ok(&tokio::time::timeout(Duration::from_secs(20), follower)
        .await
        .expect("tail sees the new event")
        .unwrap());
    assert!(followed.contains("order-2 #1  OrderPlaced"), "{followed}");
    let bad = failure(&esrs(&["--schema", s, "tail", "--from", "12"]), 1);
    assert!(bad.contains("is not TRANSACTION:SEQUENCE"), "{bad}");

    let stats: Value =
        serde_json::from_str(&ok(&esrs(&["--schema", s, "--json", "stats"]))).unwrap();
    assert_eq!(stats["events"], 7);
    assert_eq!(stats["streams"], 4);
    assert!(stats["events_table_bytes"].as_u64().unwrap() > 0);
    let human = ok(&esrs(&["--schema", s, "stats"]));
    assert!(human.contains("oldest open transaction"), "{human}");
    drop_schema(&store, &schema).await;
}

/// Counts what it is handed.
struct Count(u64);

impl Projection<PgTransaction> for Count {
    type Event = Value;
    fn name(&self) -> &str {
        "count"
    }
    async fn handle(
        &mut self,
        _: &mut PgTransaction,
        _: Value,
        _: &RecordedEvent,
    ) -> Result<(), BoxError> {
        self.0 += 1;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_show_lag_and_lock_and_reset_refuses_a_running_one() {
    let (store, schema) = seeded().await;
    let s = schema.as_str();
    let mut runner = ProjectionRunner::new(store.clone(), PgCheckpoints::new(&store), Count(0));
    runner.catch_up().await.unwrap();
    append(&store, "cart-1", "ItemAdded", 2).await;

    let listed: Value =
        serde_json::from_str(&ok(&esrs(&["--schema", s, "--json", "projections"]))).unwrap();
    assert_eq!(listed[0]["projection"], "count");
    assert_eq!(listed[0]["lag_events"], 2);
    assert!(listed[0]["lag_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(listed[0]["locked"], false);

    let lock = store.try_lock_projection("count").await.unwrap().unwrap();
    let table = ok(&esrs(&["--schema", s, "projections"]));
    assert!(table.lines().nth(1).unwrap().contains(" yes "), "{table}");
    let refused = failure(&esrs(&["--schema", s, "projections", "reset", "count"]), 1);
    assert!(
        refused.contains("projection `count` is running"),
        "{refused}"
    );
    lock.release().await.unwrap();

    ok(&esrs(&["--schema", s, "projections", "reset", "count"]));
    let listed: Value =
        serde_json::from_str(&ok(&esrs(&["--schema", s, "--json", "projections"]))).unwrap();
    assert_eq!(listed, serde_json::json!([]));
    let unknown = failure(&esrs(&["--schema", s, "projections", "reset", "count"]), 1);
    assert!(unknown.contains("has no checkpoint"), "{unknown}");
    // The next run rebuilds from the start.
    let mut runner = ProjectionRunner::new(store.clone(), PgCheckpoints::new(&store), Count(0));
    runner.catch_up().await.unwrap();
    assert_eq!(runner.projection().0, 8);
    drop_schema(&store, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_and_verify_find_every_difference() {
    let (store, schema) = seeded().await;
    let target = unique("esrs_cli_t");
    let dir = std::env::temp_dir().join(unique("esrs_cli_backup"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("store.esrs.zst");
    let file_arg = file.to_str().unwrap();

    let exported: Value = serde_json::from_str(&ok(&esrs(&[
        "--schema", &schema, "--json", "export", "--to", file_arg,
    ])))
    .unwrap();
    assert_eq!(exported["events"], 6);
    assert_eq!(exported["streams"], 3);
    let imported = ok(&esrs(&["--schema", &target, "import", file_arg]));
    assert!(
        imported.contains(&format!("into schema `{target}`: 6 events in 3 streams")),
        "{imported}"
    );
    let again = failure(&esrs(&["--schema", &target, "import", file_arg]), 1);
    assert!(
        again.contains(&format!("schema `{target}` is not empty")),
        "{again}"
    );

    // The restore test: a scratch import, and a comparison with the live store.
    let verified = ok(&esrs(&["verify", file_arg]));
    assert!(
        verified.contains("against a restore into scratch schema"),
        "{verified}"
    );
    let url = database_url();
    ok(&esrs(&[
        "--schema",
        &target,
        "verify",
        file_arg,
        "--against",
        &url,
    ]));
    // The live source moves on: the comparison names the stream and exits with 3.
    append(&store, "cart-2", "ItemAdded", 1).await;
    let out = esrs(&["--schema", &schema, "verify", file_arg, "--against", &url]);
    assert_eq!(out.status.code(), Some(3));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("stream `cart-2`: version 2 against 3"),
        "{report}"
    );
    assert!(report.contains("events: 6 against 7"), "{report}");

    // A file cut short is refused, not half-restored.
    let bytes = std::fs::read(&file).unwrap();
    let cut = dir.join("cut.esrs.zst");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let refused = failure(&esrs(&["verify", cut.to_str().unwrap()]), 1);
    assert!(refused.starts_with("error: "), "{refused}");
    let partial = unique("esrs_cli_p");
    failure(
        &esrs(&["--schema", &partial, "import", cut.to_str().unwrap()]),
        1,
    );
    let left: i64 =
        esrs_postgres::sqlx::query_scalar(&format!("SELECT count(*) FROM {partial}.events"))
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(left, 0, "a failed import leaves the schema empty");

    for s in [&schema, &target, &partial] {
        drop_schema(&store, s).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_a_database_the_command_says_how_to_give_one() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_esrs"))
        .arg("streams")
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: no database given: pass --database-url or set DATABASE_URL"
    );
}

#[test]
fn help_lists_every_subcommand_and_usage_errors_exit_with_2() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_esrs"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for command in [
        "streams",
        "show",
        "tail",
        "projections",
        "stats",
        "export",
        "import",
        "import-table",
        "capture",
        "verify",
    ] {
        assert!(help.contains(&format!("  {command} ")), "{command}: {help}");
    }
    assert!(help.contains("Exit codes: 0 success"), "{help}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_esrs"))
        .arg("show")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing argument is a usage error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_table_turns_rows_into_events_once_with_their_times() {
    let schema = unique("esrs_cli_legacy");
    let legacy = unique("legacy");
    let store = store_at(&database_url(), &schema).await;
    let pool = store.pool();
    for sql in [
        format!("CREATE SCHEMA {legacy}"),
        format!(
            "CREATE TABLE {legacy}.invoices (id bigint PRIMARY KEY, customer text NOT NULL,
                 amount_cents bigint NOT NULL, issued_at timestamptz NOT NULL)"
        ),
        format!(
            "INSERT INTO {legacy}.invoices
             SELECT i, 'customer' || (i % 100), i * 10,
                    timestamptz '2020-01-01 00:00:00+00' + i * interval '1 minute'
             FROM generate_series(1, 10000) AS i"
        ),
    ] {
        esrs_postgres::sqlx::query(&sql)
            .execute(pool)
            .await
            .unwrap();
    }
    let dir = std::env::temp_dir().join(unique("esrs_cli_mapping"));
    std::fs::create_dir_all(&dir).unwrap();
    let mapping = dir.join("invoices.json");
    std::fs::write(
        &mapping,
        serde_json::json!({
            "name": "legacy-invoices",
            "query": format!("{legacy}.invoices"),
            "stream": "invoice-{customer}",
            "event": "InvoiceIssued",
            "payload": ["id", "amount_cents"],
            "time": "issued_at",
            "order_by": ["issued_at", "id"]
        })
        .to_string(),
    )
    .unwrap();
    let mapping_arg = mapping.to_str().unwrap();
    let run = || -> Value {
        serde_json::from_str(&ok(&esrs(&[
            "--schema",
            &schema,
            "--json",
            "import-table",
            mapping_arg,
        ])))
        .unwrap()
    };
    let first = run();
    assert_eq!(first["rows"], 10_000);
    assert_eq!(first["imported"], 10_000);
    // Run again: nothing twice.
    let second = run();
    assert_eq!(second["imported"], 0);
    assert_eq!(second["already_imported"], 10_000);
    // Rows added to the legacy table since are imported on the next run.
    esrs_postgres::sqlx::query(&format!(
        "INSERT INTO {legacy}.invoices
         SELECT i, 'customer' || (i % 100), i * 10,
                timestamptz '2020-01-01 00:00:00+00' + i * interval '1 minute'
         FROM generate_series(10001, 10050) AS i"
    ))
    .execute(pool)
    .await
    .unwrap();
    let third = run();
    assert_eq!(third["imported"], 50);
    assert_eq!(third["already_imported"], 10_000);

    // Customer 7's invoices: ids 7, 107, …, 10007, in order, each at its original time.
    let shown = lines(&ok(&esrs(&[
        "--schema",
        &schema,
        "--json",
        "show",
        "invoice-customer7",
    ])));
    assert_eq!(shown.len(), 101);
    for (k, event) in shown.iter().enumerate() {
        let id = 7 + 100 * k as u64;
        assert_eq!(event["version"], k as u64 + 1);
        assert_eq!(event["name"], "InvoiceIssued");
        assert_eq!(
            event["payload"],
            serde_json::json!({ "id": id, "amount_cents": id * 10 })
        );
        assert_eq!(
            event["metadata"]["custom"]["imported_from"], "legacy-invoices",
            "{event}"
        );
        let at: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(event["recorded_at"].clone()).unwrap();
        assert_eq!(
            at,
            chrono::DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z").unwrap()
                + chrono::Duration::minutes(id as i64)
        );
    }

    // A mapping that does not fit is refused before anything is written.
    let broken = dir.join("broken.json");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&mapping)
            .unwrap()
            .replace("\"amount_cents\"]", "\"amount\"]"),
    )
    .unwrap();
    let other = unique("esrs_cli_legacy_b");
    let refused = failure(
        &esrs(&["--schema", &other, "import-table", broken.to_str().unwrap()]),
        1,
    );
    assert!(
        refused.contains("row 1 does not fit the mapping: no column `amount`"),
        "{refused}"
    );

    esrs_postgres::sqlx::query(&format!("DROP SCHEMA {legacy} CASCADE"))
        .execute(pool)
        .await
        .unwrap();
    drop_schema(&store, &schema).await;
    drop_schema(&store, &other).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn capture_help_lists_its_subcommands() {
    let out = esrs(&["capture", "--help"]);
    let help = ok(&out);
    for command in ["sql", "apply", "run"] {
        assert!(help.contains(&format!("  {command} ")), "{command}: {help}");
    }
    let run = ok(&esrs(&["capture", "run", "--help"]));
    assert!(
        run.contains("--once") && run.contains("--batch <ROWS>"),
        "{run}"
    );
    let out = esrs(&["capture", "run"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing mapping is a usage error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_hands_over_from_the_import_and_relays_live_changes_once() {
    let schema = unique("esrs_cli_capture");
    let legacy = unique("legacy");
    let store = store_at(&database_url(), &schema).await;
    let pool = store.pool();
    let exec = move |sql: String| async move {
        esrs_postgres::sqlx::query(&sql)
            .execute(pool)
            .await
            .unwrap();
    };
    exec(format!("CREATE SCHEMA {legacy}")).await;
    exec(format!(
        "CREATE TABLE {legacy}.customers (id bigint PRIMARY KEY, name text NOT NULL,
             tier text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"
    ))
    .await;
    exec(format!(
        "INSERT INTO {legacy}.customers (id, name, tier)
         SELECT i, 'customer ' || i, 'basic' FROM generate_series(1, 10000) AS i"
    ))
    .await;
    let dir = std::env::temp_dir().join(unique("esrs_cli_capture"));
    std::fs::create_dir_all(&dir).unwrap();
    let mapping = dir.join("customers.json");
    let spec = serde_json::json!({
        "name": "legacy-customers",
        "query": format!("{legacy}.customers"),
        "stream": "customer-{id}",
        "event": "CustomerImported",
        "payload": ["name", "tier"],
        "time": "updated_at",
        "order_by": ["id"],
        "capture": {
            "insert": "CustomerRegistered",
            "update": "CustomerChanged",
            "delete": "CustomerLeft"
        }
    });
    std::fs::write(&mapping, spec.to_string()).unwrap();
    let m = mapping.to_str().unwrap();
    let s = schema.as_str();

    // The SQL, without a database.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_esrs"))
        .args(["--schema", s, "capture", "sql", m])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let sql = ok(&out);
    assert!(
        sql.contains(&format!(
            "CREATE TABLE IF NOT EXISTS {s}.capture_legacy_customers ("
        )),
        "{sql}"
    );
    assert!(
        sql.contains(&format!(
            "AFTER INSERT OR UPDATE OR DELETE ON {legacy}.customers\n    FOR EACH ROW"
        )),
        "{sql}"
    );
    let as_json: Value =
        serde_json::from_str(&ok(&esrs(&["--schema", s, "--json", "capture", "sql", m]))).unwrap();
    assert_eq!(as_json["sql"].as_str(), Some(sql.as_str()));

    // The order is enforced: the import refuses to run before the capture is applied.
    let refused = failure(&esrs(&["--schema", s, "import-table", m]), 1);
    assert!(
        refused.contains("the capture `legacy-customers` is not applied: apply it first"),
        "{refused}"
    );
    for _ in 0..2 {
        let applied = ok(&esrs(&["--schema", s, "capture", "apply", m]));
        assert!(
            applied.starts_with("capture `legacy-customers` applied"),
            "{applied}"
        );
    }
    let imported: Value =
        serde_json::from_str(&ok(&esrs(&["--schema", s, "--json", "import-table", m]))).unwrap();
    assert_eq!(imported["imported"], 10_000);
    assert_eq!(imported["handed_over"], false);

    // Live changes after the import.
    exec(format!(
        "UPDATE {legacy}.customers SET tier = 'gold' WHERE id <= 100"
    ))
    .await;
    exec(format!(
        "INSERT INTO {legacy}.customers (id, name, tier)
         SELECT i, 'customer ' || i, 'basic' FROM generate_series(10001, 10010) AS i"
    ))
    .await;
    exec(format!(
        "DELETE FROM {legacy}.customers WHERE id > 9995 AND id <= 10000"
    ))
    .await;

    let run_once = || -> Value {
        serde_json::from_str(&ok(&esrs(&[
            "--schema", s, "--json", "capture", "run", m, "--once", "--batch", "30",
        ])))
        .unwrap()
    };
    let first = run_once();
    assert_eq!(first["relayed"], 115, "{first}");
    assert_eq!(first["batches"], 4, "{first}");
    assert_eq!(first["held_back"], false, "{first}");
    let second = run_once();
    assert_eq!(second["relayed"], 0, "{second}");
    let human = ok(&esrs(&["--schema", s, "capture", "run", m, "--once"]));
    assert!(
        human.starts_with("capture `legacy-customers`: 0 changes appended, 0 already held by the import, 0 batches, at capture id 115"),
        "{human}"
    );
    // A second import is the relay's: nothing twice.
    let again = ok(&esrs(&["--schema", s, "import-table", m]));
    assert!(again.contains("is captured since"), "{again}");

    let history = |stream: &str| -> Vec<(u64, String, Value)> {
        lines(&ok(&esrs(&["--schema", s, "--json", "show", stream])))
            .into_iter()
            .map(|e| {
                (
                    e["version"].as_u64().unwrap(),
                    e["name"].as_str().unwrap().to_owned(),
                    e["payload"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(
        history("customer-7"),
        [
            (
                1,
                "CustomerImported".to_owned(),
                serde_json::json!({"name": "customer 7", "tier": "basic"})
            ),
            (
                2,
                "CustomerChanged".to_owned(),
                serde_json::json!({"name": "customer 7", "tier": "gold"})
            )
        ]
    );
    assert_eq!(history("customer-9999").len(), 2);
    assert_eq!(history("customer-9999")[1].1, "CustomerLeft");
    assert_eq!(
        history("customer-10005"),
        [(
            1,
            "CustomerRegistered".to_owned(),
            serde_json::json!({"name": "customer 10005", "tier": "basic"})
        )]
    );
    let stats: Value =
        serde_json::from_str(&ok(&esrs(&["--schema", s, "--json", "stats"]))).unwrap();
    assert_eq!(stats["events"], 10_000 + 115);

    // `run` follows live changes until interrupted, then prints its totals and exits 0.
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_esrs"))
        .args(["--schema", s, "capture", "run", m])
        .env("DATABASE_URL", database_url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    exec(format!(
        "UPDATE {legacy}.customers SET tier = 'silver' WHERE id = 7"
    ))
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while history("customer-7").len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "run relays the change"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let out = child.wait_with_output().unwrap();
    let printed = ok(&out);
    assert!(
        printed.starts_with("capture `legacy-customers`: 1 change appended"),
        "{printed}"
    );

    // A mapping without a capture section cannot be captured.
    let plain = dir.join("plain.json");
    let mut without = spec.clone();
    without.as_object_mut().unwrap().remove("capture");
    std::fs::write(&plain, without.to_string()).unwrap();
    let refused = failure(
        &esrs(&["--schema", s, "capture", "sql", plain.to_str().unwrap()]),
        1,
    );
    assert!(
        refused.contains("mapping `legacy-customers` has no `capture` section"),
        "{refused}"
    );

    // A mapping naming a column the table lacks is refused, with the column's name.
    let broken = dir.join("broken.json");
    std::fs::write(&broken, spec.to_string().replace("\"tier\"]", "\"level\"]")).unwrap();
    let refused = failure(
        &esrs(&["--schema", s, "capture", "apply", broken.to_str().unwrap()]),
        1,
    );
    assert!(
        refused.contains(&format!("table `{legacy}.customers` has no column `level`")),
        "{refused}"
    );

    exec(format!("DROP SCHEMA {legacy} CASCADE")).await;
    drop_schema(&store, &schema).await;
    let _ = std::fs::remove_dir_all(&dir);
}
