//! The metrics example's endpoint: after a few commands of the cart under load on
//! PostgreSQL (`DATABASE_URL`, else the local server, in a schema of its own), a scrape of
//! `/metrics` over HTTP finds the documented metrics, with their help text.

use std::time::Duration;

use esrs_examples::load::{self, Load};
use esrs_postgres::PgStoreOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `GET /metrics` on `port`: the response, headers and body.
async fn scrape(port: u16) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the endpoint accepts connections");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("the endpoint answers")
        .unwrap();
    String::from_utf8(response).expect("the exposition format is text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_serves_the_documented_metrics() {
    let port = free_port();
    load::serve_metrics(([127, 0, 0, 1], port).into()).expect("the exporter starts");

    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!(
        "esrs_metrics_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let store = PgStoreOptions::new()
        .schema(&schema)
        .max_connections(4)
        .connect(&url)
        .await
        .expect("the test database is reachable (set DATABASE_URL)");
    store.migrate().await.expect("migrations apply");
    // Four writers on one cart: they conflict and retry.
    let load = Load {
        writers: 4,
        carts: 1,
        commands: 30,
        repeat_every: 10,
        prefix: "endpoint-".into(),
    };
    let summary = load::run(store.clone(), &load).await;
    let health = store.sample_health().await;
    esrs_postgres::sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(store.pool())
        .await
        .expect("the test schema is dropped");
    let summary = summary.expect("the load runs");
    health.expect("the health is sampled");
    assert_eq!(
        summary.appended + summary.replayed + summary.rejected + summary.gave_up,
        4 * (30 + 3),
        "every command ran"
    );
    assert!(summary.replayed > 0, "repeats are replayed: {summary:?}");

    let response = scrape(port).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    for line in [
        "# HELP esrs_append_duration_seconds Duration of one append",
        "# TYPE esrs_append_duration_seconds histogram",
        r#"esrs_append_duration_seconds_bucket{store="postgres",outcome="appended",le="0.05"}"#,
        r#"esrs_append_duration_seconds_count{store="postgres",outcome="conflict"}"#,
        r#"esrs_append_events_count{store="postgres"}"#,
        r#"esrs_payload_bytes_count{store="postgres"}"#,
        r#"esrs_load_duration_seconds_bucket{aggregate="cart",snapshot="hit""#,
        r#"esrs_conflicts_total{aggregate="cart"}"#,
        r#"esrs_command_retries_total{aggregate="cart"}"#,
        r#"esrs_idempotent_replays_total{aggregate="cart"}"#,
        r#"esrs_snapshot_saves_total{aggregate="cart"}"#,
        r#"esrs_cache_total{aggregate="cart",result="hit"}"#,
        r#"esrs_projection_events_total{projection="items_counted",result="handled"}"#,
        r#"esrs_projection_batch_duration_seconds_count{projection="items_counted"}"#,
        r#"esrs_projection_checkpoint_position{projection="items_counted"}"#,
        r#"esrs_projection_lag_events{projection="items_counted"} 0"#,
        r#"esrs_projection_lag_seconds{projection="items_counted"} 0"#,
        r#"esrs_projection_lock_held{projection="items_counted"} 0"#,
        "esrs_pg_oldest_open_transaction_seconds ",
        r#"esrs_pg_pool_connections{state="in_use"}"#,
        r#"esrs_pg_pool_connections{state="idle"}"#,
    ] {
        assert!(
            response.contains(line),
            "{line:?} missing from:\n{response}"
        );
    }
    for name in esrs_core::metrics::names() {
        if name == esrs_core::metrics::SNAPSHOT_MISSES_TOTAL
            || name == esrs_core::metrics::PROJECTION_ERRORS_TOTAL
        {
            // Recorded only when a snapshot is missing or a batch fails: neither happens here.
            continue;
        }
        assert!(response.contains(&format!("\n{name}")), "{name} missing");
    }
}

/// Every query of the dashboard beside the example graphs a documented metric (or a series
/// Prometheus derives from a histogram: `_bucket`, `_count`, `_sum`), and the panels a team
/// wants first are there, the append latency against the 50 ms line among them.
#[test]
fn the_dashboard_graphs_documented_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../grafana/esrs.json")).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in [
        "Append latency p50 / p99 (50 ms line)",
        "Conflicts and retries per second",
        "Projection lag (events)",
        "Projection lag (seconds)",
    ] {
        assert!(titles.contains(&wanted), "{wanted:?} not in {titles:?}");
    }
    let latency = &panels[0];
    assert_eq!(
        latency["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"],
        0.05
    );
    let names: Vec<&str> = esrs_core::metrics::names().collect();
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("a query");
            let used: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|word| word.starts_with("esrs_"))
                .collect();
            assert!(!used.is_empty(), "{expr} graphs no esrs metric");
            for metric in used {
                let base = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|suffix| metric.strip_suffix(suffix))
                    .unwrap_or(metric);
                assert!(
                    names.contains(&base),
                    "{metric} in {expr} is not documented"
                );
            }
        }
    }
}
