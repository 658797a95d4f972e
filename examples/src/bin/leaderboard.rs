//! The leaderboard example: records a few scores, projects them into a PostgreSQL table and
//! a Redis sorted set, and prints both rankings.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test REDIS_URL=redis://127.0.0.1:6379 \
//!     cargo run -p esrs-examples --bin leaderboard
//! ```

use std::process::ExitCode;

use esrs_core::{ProjectionRunner, StreamId};
use esrs_examples::BoxError;
use esrs_examples::leaderboard::{PgLeaderboard, Ranked, RedisLeaderboard, record_score};
use esrs_postgres::{PgCheckpoints, PgStoreOptions};

const SCHEMA: &str = "leaderboard_example";

#[tokio::main]
async fn main() -> ExitCode {
    esrs_examples::exit_code(run().await)
}

async fn run() -> Result<(), BoxError> {
    let database_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());

    let store = PgStoreOptions::new()
        .schema(SCHEMA)
        .connect(&database_url)
        .await?;
    store.migrate().await?;

    let table = PgLeaderboard::new("leaderboard", format!("{SCHEMA}.leaderboard"));
    table.create_table(store.pool()).await?;
    let sorted_set =
        RedisLeaderboard::connect("leaderboard_redis", &redis_url, "esrs:example:leaderboard")
            .await?;

    for (player, points) in [
        ("ada", 30),
        ("grace", 25),
        ("linus", 25),
        ("ada", 5),
        ("ken", -3),
    ] {
        record_score(&store, &StreamId::new(player)?, points).await?;
    }

    println!(
        "Recorded 5 scores in schema `{SCHEMA}`; the rankings add up every run's scores, \
         since the events of earlier runs stay in the log."
    );

    // Each run of the example catches both read models up from their checkpoints.
    let checkpoints = PgCheckpoints::new(&store);
    let mut in_postgres = ProjectionRunner::new(store.clone(), checkpoints.clone(), table);
    in_postgres.catch_up().await?;
    let mut in_redis = ProjectionRunner::new(store.clone(), checkpoints, sorted_set);
    in_redis.catch_up().await?;

    print(
        "PostgreSQL",
        &in_postgres.projection().ranking(store.pool()).await?,
    );
    print("Redis", &in_redis.projection().ranking().await?);
    Ok(())
}

fn print(title: &str, ranking: &[Ranked]) {
    println!("{title}:");
    for line in ranking {
        println!("  {:>3}. {:<10} {:>6}", line.rank, line.player, line.score);
    }
}
