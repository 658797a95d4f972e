//! The subcommands.

use std::time::Duration;

use esrs_core::{EventStore, Position, RecordedEvent, StreamId};
use esrs_postgres::backup::{BackupSummary, verify_backup};
use esrs_postgres::{PgStore, PgStoreOptions};
use futures_util::StreamExt as _;
use serde_json::json;

use crate::output::{self, Table};
use crate::{CaptureAction, Cli, Command, Failure, Outcome, ProjectionAction};

/// How long `tail` waits for new events before it looks again.
const TAIL_WAIT: Duration = Duration::from_secs(1);

async fn connect(url: &str, schema: &str) -> Result<PgStore, Failure> {
    Ok(PgStoreOptions::new()
        .schema(schema)
        .max_connections(4)
        .connect(url)
        .await?)
}

pub(crate) async fn run(cli: Cli) -> Result<Outcome, Failure> {
    if let Command::Capture {
        action: CaptureAction::Sql { mapping },
    } = &cli.command
    {
        print_capture_sql(mapping, &cli.schema, cli.json).await?;
        return Ok(Outcome::Done);
    }
    let url = cli
        .database_url
        .clone()
        .ok_or("no database given: pass --database-url or set DATABASE_URL")?;
    let json = cli.json;
    match cli.command {
        Command::Verify { file, against } => {
            return verify(&url, &cli.schema, &file, against.as_deref(), json).await;
        }
        Command::Import { file } => {
            let store = connect(&url, &cli.schema).await?;
            let input = tokio::fs::File::open(&file)
                .await
                .map_err(|e| format!("cannot open {}: {e}", file.display()))?;
            let bar = output::progress("importing");
            let imported = store
                .import_with_progress(input, |n| bar.set_position(n))
                .await;
            bar.finish_and_clear();
            let summary = imported?;
            report(
                &format!("imported {} into schema `{}`", file.display(), cli.schema),
                &summary,
                json,
            );
        }
        Command::ImportTable { mapping } => {
            let parsed = read_mapping(&mapping).await?;
            let store = connect(&url, &cli.schema).await?;
            store.migrate().await?;
            let done = store.import_table(&parsed).await?;
            if json {
                output::json(&serde_json::to_value(done)?);
            } else if done.handed_over {
                println!(
                    "`{}` was imported into schema `{}` before and is captured since: its changes are the capture relay's, nothing imported",
                    parsed.name, cli.schema
                );
            } else {
                println!(
                    "imported `{}` into schema `{}`: {} rows read, {} events appended, {} rows imported before",
                    parsed.name, cli.schema, done.rows, done.imported, done.already_imported
                );
            }
        }
        Command::Capture { action } => capture(&url, &cli.schema, action, json).await?,
        Command::Export { to } => {
            let store = connect(&url, &cli.schema).await?;
            let out = tokio::fs::File::create(&to)
                .await
                .map_err(|e| format!("cannot create {}: {e}", to.display()))?;
            let bar = output::progress("exporting");
            let exported = store
                .export_with_progress(out, |n| bar.set_position(n))
                .await;
            bar.finish_and_clear();
            let summary = exported?;
            report(
                &format!("exported schema `{}` to {}", cli.schema, to.display()),
                &summary,
                json,
            );
        }
        Command::Streams { prefix, limit } => {
            let store = connect(&url, &cli.schema).await?;
            let streams = store.streams(&prefix, limit).await?;
            if json {
                output::json(&serde_json::to_value(&streams)?);
            } else {
                let mut table = Table::new(vec!["STREAM", "VERSION", "EVENTS", "LAST EVENT"]);
                for s in &streams {
                    table.row(vec![
                        s.stream.clone(),
                        s.version.to_string(),
                        s.events.to_string(),
                        s.last_recorded_at.to_rfc3339(),
                    ]);
                }
                table.print();
            }
        }
        Command::Show { stream, at } => {
            let store = connect(&url, &cli.schema).await?;
            let id = StreamId::new(&stream)?;
            let mut events = store.read_stream(&id, 1, at.unwrap_or(u64::MAX));
            let mut count = 0u64;
            while let Some(event) = events.next().await {
                let event = event?;
                count += 1;
                if json {
                    println!("{}", event_json(&event));
                } else {
                    show_event(&event);
                }
            }
            if count == 0 {
                return Err(format!("stream `{stream}` has no events").into());
            }
        }
        Command::Tail { from, limit } => {
            let store = connect(&url, &cli.schema).await?;
            tail(&store, from.as_deref(), limit, json).await?;
        }
        Command::Projections { action: None } => {
            let store = connect(&url, &cli.schema).await?;
            let projections = store.projections().await?;
            if json {
                let list: Vec<_> = projections
                    .iter()
                    .map(|p| {
                        json!({
                            "projection": p.projection,
                            "checkpoint": p.checkpoint.to_string(),
                            "updated_at": p.updated_at,
                            "lag_events": p.lag_events,
                            "lag_seconds": p.lag.map(|d| d.as_secs_f64()),
                            "locked": p.locked,
                        })
                    })
                    .collect();
                output::json(&json!(list));
            } else {
                let mut table = Table::new(vec![
                    "PROJECTION",
                    "CHECKPOINT",
                    "LAG EVENTS",
                    "LAG",
                    "RUNNING",
                    "UPDATED",
                ]);
                for p in &projections {
                    table.row(vec![
                        p.projection.clone(),
                        p.checkpoint.to_string(),
                        p.lag_events.to_string(),
                        p.lag.map_or_else(|| "-".to_owned(), output::duration),
                        if p.locked { "yes" } else { "no" }.to_owned(),
                        p.updated_at.to_rfc3339(),
                    ]);
                }
                table.print();
            }
        }
        Command::Projections {
            action: Some(ProjectionAction::Reset { name }),
        } => {
            let store = connect(&url, &cli.schema).await?;
            store.reset_projection(&name).await?;
            if json {
                output::json(&json!({ "reset": name }));
            } else {
                println!("projection `{name}` reset: its next run rebuilds it from the start");
            }
        }
        Command::Stats => {
            let store = connect(&url, &cli.schema).await?;
            let stats = store.stats().await?;
            let oldest = stats.oldest_open_transaction.as_ref();
            if json {
                output::json(&json!({
                    "events": stats.events,
                    "streams": stats.streams,
                    "snapshots": stats.snapshots,
                    "idempotency_keys": stats.idempotency_keys,
                    "projections": stats.projections,
                    "events_table_bytes": stats.events_table_bytes,
                    "events_index_bytes": stats.events_index_bytes,
                    "schema_bytes": stats.schema_bytes,
                    "oldest_open_transaction": oldest.map(|t| json!({
                        "pid": t.pid,
                        "age_seconds": t.age.as_secs_f64(),
                        "state": t.state,
                        "query": t.query,
                    })),
                }));
            } else {
                let mut table = Table::new(vec!["", ""]);
                for (name, value) in [
                    ("events", stats.events.to_string()),
                    ("streams", stats.streams.to_string()),
                    ("snapshots", stats.snapshots.to_string()),
                    ("idempotency keys", stats.idempotency_keys.to_string()),
                    ("projections", stats.projections.to_string()),
                    ("events table", output::bytes(stats.events_table_bytes)),
                    ("events indexes", output::bytes(stats.events_index_bytes)),
                    ("schema on disk", output::bytes(stats.schema_bytes)),
                    (
                        "oldest open transaction",
                        oldest.map_or_else(
                            || "none".to_owned(),
                            |t| {
                                format!(
                                    "{} (pid {}, {})",
                                    output::duration(t.age),
                                    t.pid,
                                    t.state.as_deref().unwrap_or("?")
                                )
                            },
                        ),
                    ),
                ] {
                    table.row(vec![name.to_owned(), value]);
                }
                table.print();
            }
        }
    }
    Ok(Outcome::Done)
}

/// The table mapping in the file `path`.
async fn read_mapping(path: &std::path::Path) -> Result<esrs_postgres::TableMapping, Failure> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a table mapping: {e}", path.display()))?)
}

/// `esrs capture sql`: needs no database.
async fn print_capture_sql(
    mapping: &std::path::Path,
    schema: &str,
    json: bool,
) -> Result<(), Failure> {
    let parsed = read_mapping(mapping).await?;
    let sql = esrs_postgres::capture::generate_for_schema(schema, &parsed)?;
    if json {
        output::json(&json!({ "sql": sql }));
    } else {
        print!("{sql}");
    }
    Ok(())
}

/// `esrs capture`.
async fn capture(
    url: &str,
    schema: &str,
    action: CaptureAction,
    json: bool,
) -> Result<(), Failure> {
    use esrs_postgres::capture::{self, CaptureProgress, CaptureRelay};

    match action {
        CaptureAction::Sql { mapping } => print_capture_sql(&mapping, schema, json).await?,
        CaptureAction::Apply { mapping } => {
            let parsed = read_mapping(&mapping).await?;
            let store = connect(url, schema).await?;
            store.migrate().await?;
            capture::apply(&store, &parsed).await?;
            if json {
                output::json(&json!({ "applied": parsed.name, "schema": schema }));
            } else {
                println!(
                    "capture `{}` applied: changes are recorded from now on; import the table (`esrs import-table`), then run the relay (`esrs capture run`)",
                    parsed.name
                );
            }
        }
        CaptureAction::Run {
            mapping,
            once,
            batch,
        } => {
            let parsed = read_mapping(&mapping).await?;
            let store = connect(url, schema).await?;
            store.migrate().await?;
            let relay = CaptureRelay::new(&store, &parsed)?.batch_size(batch);
            let bar = output::progress("relaying");
            let show = |done: &CaptureProgress| {
                bar.set_position(done.relayed);
            };
            let done = if once {
                relay.drain_with_progress(show).await
            } else {
                relay.run(interrupted(), show).await
            };
            bar.finish_and_clear();
            let done = done?;
            if json {
                output::json(&serde_json::to_value(done)?);
            } else {
                println!(
                    "capture `{}`: {} appended, {} already held by the import, {}, at capture id {}{}",
                    parsed.name,
                    output::count(done.relayed, "change"),
                    done.covered_by_import,
                    output::count(done.batches, "batch"),
                    done.last_id,
                    if done.held_back {
                        "; transactions writing the table are still open, their changes are left for the next run"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    Ok(())
}

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM: how a service manager stops a
/// long-running relay.
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn event_json(event: &RecordedEvent) -> serde_json::Value {
    let payload: serde_json::Value = serde_json::from_str(event.payload())
        .unwrap_or_else(|_| serde_json::Value::String(event.payload().to_owned()));
    json!({
        "id": event.id,
        "position": event.position.to_string(),
        "stream": event.stream.as_str(),
        "version": event.version,
        "name": event.name,
        "schema_version": event.schema_version,
        "recorded_at": event.recorded_at,
        "metadata": event.metadata,
        "payload": payload,
    })
}

fn show_event(event: &RecordedEvent) {
    println!(
        "{} #{} {} (v{}) at {} [position {}]",
        event.stream.as_str(),
        event.version,
        event.name,
        event.schema_version,
        event.recorded_at.to_rfc3339(),
        event.position
    );
    println!("  id: {}", event.id);
    if event.metadata != esrs_core::Metadata::default() {
        if let Ok(metadata) = serde_json::to_string(&event.metadata) {
            println!("  metadata: {metadata}");
        }
    }
    let pretty = serde_json::from_str::<serde_json::Value>(event.payload())
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| event.payload().to_owned());
    for line in pretty.lines() {
        println!("  {line}");
    }
}

fn parse_position(text: &str) -> Result<Position, Failure> {
    if text == "start" {
        return Ok(Position::START);
    }
    let (transaction, sequence) = text
        .split_once(':')
        .ok_or_else(|| format!("position `{text}` is not TRANSACTION:SEQUENCE or `start`"))?;
    Ok(Position::new(
        transaction
            .parse()
            .map_err(|_| format!("position `{text}`: `{transaction}` is not a number"))?,
        sequence
            .parse()
            .map_err(|_| format!("position `{text}`: `{sequence}` is not a number"))?,
    ))
}

async fn tail(
    store: &PgStore,
    from: Option<&str>,
    limit: Option<u64>,
    json: bool,
) -> Result<(), Failure> {
    let mut after = match from {
        Some(text) => parse_position(text)?,
        None => store.head_position().await?.unwrap_or(Position::START),
    };
    let mut seen = 0u64;
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let mut events = store.read_all(after);
        while let Some(event) = events.next().await {
            let event = event?;
            after = event.position;
            if json {
                println!("{}", event_json(&event));
            } else {
                println!(
                    "{}  {} #{}  {}",
                    event.position,
                    event.stream.as_str(),
                    event.version,
                    event.name
                );
            }
            seen += 1;
            if limit.is_some_and(|limit| seen >= limit) {
                return Ok(());
            }
        }
        tokio::select! {
            waited = store.wait_for_events(after, TAIL_WAIT) => waited?,
            _ = &mut interrupted => return Ok(()),
        }
    }
}

fn report(what: &str, summary: &BackupSummary, json: bool) {
    if json {
        output::json(&summary_json(summary));
    } else {
        println!(
            "{what}: {} events in {} streams, {} snapshots, {} idempotency keys, {} checkpoints; digest {}",
            summary.events,
            summary.streams.len(),
            summary.snapshots,
            summary.idempotency_keys,
            summary.checkpoints.len(),
            summary.digest
        );
    }
}

fn summary_json(summary: &BackupSummary) -> serde_json::Value {
    json!({
        "events": summary.events,
        "streams": summary.streams.len(),
        "snapshots": summary.snapshots,
        "idempotency_keys": summary.idempotency_keys,
        "checkpoints": summary.checkpoints,
        "digest": summary.digest,
    })
}

async fn verify(
    url: &str,
    schema: &str,
    file: &std::path::Path,
    against: Option<&str>,
    json: bool,
) -> Result<Outcome, Failure> {
    let open = || async {
        tokio::fs::File::open(file)
            .await
            .map_err(|e| format!("cannot open {}: {e}", file.display()))
    };
    let bar = output::progress("checking");
    let checked = verify_backup(open().await?).await;
    bar.finish_and_clear();
    let in_file = checked?;

    let (compared_with, live) = match against {
        Some(against) => {
            let store = connect(against, schema).await?;
            (
                format!("schema `{schema}` of the live store"),
                store.summary().await?,
            )
        }
        None => {
            let scratch = format!(
                "esrs_verify_{}_{}",
                std::process::id(),
                chrono::Utc::now().timestamp_micros()
            );
            let store = connect(url, &scratch).await?;
            let bar = output::progress("importing");
            let restored = async {
                store
                    .import_with_progress(open().await?, |n| bar.set_position(n))
                    .await?;
                Ok::<_, Failure>(store.summary().await?)
            }
            .await;
            bar.finish_and_clear();
            let dropped = sqlx_drop_schema(&store, &scratch).await;
            let restored = restored?;
            dropped?;
            (
                format!("a restore into scratch schema `{scratch}`"),
                restored,
            )
        }
    };
    let differences = in_file.differences(&live);
    if json {
        output::json(&json!({
            "file": file.display().to_string(),
            "compared_with": compared_with,
            "backup": summary_json(&in_file),
            "differences": differences,
        }));
    } else if differences.is_empty() {
        report(
            &format!("verified {} against {compared_with}", file.display()),
            &in_file,
            false,
        );
    } else {
        println!(
            "{} differs from {compared_with} ({} differences):",
            file.display(),
            differences.len()
        );
        for difference in &differences {
            println!("  {difference}");
        }
    }
    Ok(if differences.is_empty() {
        Outcome::Done
    } else {
        Outcome::Differences
    })
}

async fn sqlx_drop_schema(store: &PgStore, schema: &str) -> Result<(), Failure> {
    esrs_postgres::sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(store.pool())
        .await?;
    Ok(())
}
