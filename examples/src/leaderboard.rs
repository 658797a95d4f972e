//! A leaderboard: `PlayerScored` events projected into two ranked read models.
//!
//! - [`PgLeaderboard`], a PostgreSQL table written in the projection runner's transaction,
//!   with its checkpoint: each event counts exactly once, even across crashes.
//! - [`RedisLeaderboard`], a Redis sorted set: an external read model with at-least-once
//!   delivery, made idempotent by remembering the last stream version applied per player.
//!
//! Both rank players by score, highest first; players with the same score share a rank
//! (1, 2, 2, 4 …) and are listed by name.

use std::collections::HashMap;

use esrs_core::store::{AppendOutcome, AppendRequest, NewEvent};
use esrs_core::{
    Aggregate, BoxError, Event, EventStore, ExpectedVersion, Projection, RecordedEvent, StreamId,
    aggregate,
};
use esrs_postgres::PgTransaction;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// A player scored points in a game (negative points are penalties).
#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayerScored {
    /// The player.
    pub player: String,
    /// The points scored.
    pub points: i64,
}

/// A player: the aggregate whose stream holds the player's scores.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Player {
    /// The player's total.
    pub score: i64,
    /// How many times the player scored.
    pub games: u64,
}

#[aggregate(name = "player")]
impl Player {
    #[apply]
    fn scored(&mut self, e: &PlayerScored) {
        self.score += e.points;
        self.games += 1;
    }
}

/// The stream of a player's scores (the one a `Repository<Player>` uses); an error when
/// the player's id is too long to leave room for the category.
pub fn player_stream(player: &StreamId) -> esrs_core::Result<StreamId> {
    Ok(StreamId::in_category(<Player as Aggregate>::NAME, player)?)
}

/// The append that records that `player` scored `points`.
pub fn score(player: &StreamId, points: i64) -> esrs_core::Result<AppendRequest> {
    let event = PlayerEvent::from(PlayerScored {
        player: player.as_str().to_owned(),
        points,
    });
    Ok(AppendRequest::new(
        player_stream(player)?,
        ExpectedVersion::Any,
        vec![NewEvent::encode(&event)?],
    ))
}

/// Records that `player` scored `points`.
pub async fn record_score<S: EventStore>(
    store: &S,
    player: &StreamId,
    points: i64,
) -> esrs_core::Result<AppendOutcome> {
    store.append(score(player, points)?).await
}

/// One line of a ranking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranked {
    /// 1 for the best score; equal scores share a rank.
    pub rank: u64,
    /// The player.
    pub player: String,
    /// The player's total.
    pub score: i64,
}

/// Ranks `(player, score)` pairs: by score, highest first, then by name.
pub fn rank(mut scores: Vec<(String, i64)>) -> Vec<Ranked> {
    scores.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut ranked: Vec<Ranked> = Vec::with_capacity(scores.len());
    for (i, (player, score)) in scores.into_iter().enumerate() {
        let rank = match ranked.last() {
            Some(prev) if prev.score == score => prev.rank,
            _ => i as u64 + 1,
        };
        ranked.push(Ranked {
            rank,
            player,
            score,
        });
    }
    ranked
}

/// The leaderboard as a PostgreSQL table, written in the runner's transaction: run it with
/// [`PgCheckpoints`](esrs_postgres::PgCheckpoints).
#[derive(Debug, Clone)]
pub struct PgLeaderboard {
    name: String,
    table: String,
}

impl PgLeaderboard {
    /// A leaderboard projection named `name`, kept in `table` (a plain or schema-qualified
    /// identifier of the application's choosing, never user input).
    pub fn new(name: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            table: table.into(),
        }
    }

    /// Creates the table if it does not exist.
    pub async fn create_table(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {} (
                player text PRIMARY KEY,
                score bigint NOT NULL,
                events bigint NOT NULL
            )",
            self.table
        ))
        .execute(pool)
        .await?;
        Ok(())
    }

    /// The ranking, best first.
    pub async fn ranking(&self, pool: &PgPool) -> Result<Vec<Ranked>, sqlx::Error> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(&format!(
            "SELECT rank() OVER (ORDER BY score DESC), player, score
             FROM {} ORDER BY score DESC, player",
            self.table
        ))
        .fetch_all(pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(rank, player, score)| Ranked {
                rank: rank.max(1).unsigned_abs(),
                player,
                score,
            })
            .collect())
    }

    /// How many events were applied for each player.
    pub async fn events_applied(&self, pool: &PgPool) -> Result<HashMap<String, u64>, sqlx::Error> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as(&format!("SELECT player, events FROM {}", self.table))
                .fetch_all(pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(player, n)| (player, n.max(0).unsigned_abs()))
            .collect())
    }
}

impl Projection<PgTransaction> for PgLeaderboard {
    type Event = PlayerEvent;

    fn name(&self) -> &str {
        &self.name
    }

    async fn handle(
        &mut self,
        tx: &mut PgTransaction,
        event: PlayerEvent,
        _envelope: &RecordedEvent,
    ) -> Result<(), BoxError> {
        let PlayerEvent::PlayerScored(e) = event;
        sqlx::query(&format!(
            "INSERT INTO {t} (player, score, events) VALUES ($1, $2, 1)
             ON CONFLICT (player) DO UPDATE
             SET score = {t}.score + EXCLUDED.score, events = {t}.events + 1",
            t = self.table
        ))
        .bind(&e.player)
        .bind(e.points)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    async fn reset(&mut self, tx: &mut PgTransaction) -> Result<(), BoxError> {
        sqlx::query(&format!("DELETE FROM {}", self.table))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// Adds the points unless this player's stream version was already applied, then records
/// the version: redelivered events change nothing.
const APPLY_ONCE: &str = r"
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if tonumber(ARGV[2]) <= last then
  return 0
end
redis.call('ZINCRBY', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
";

/// The leaderboard as a Redis sorted set, with a hash of the last stream version applied per
/// player. It runs with any checkpoint store; its delivery is at-least-once, and applying
/// an event twice is a no-op.
#[derive(Clone)]
pub struct RedisLeaderboard {
    name: String,
    conn: redis::aio::MultiplexedConnection,
    scores_key: String,
    versions_key: String,
    script: redis::Script,
}

impl std::fmt::Debug for RedisLeaderboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLeaderboard")
            .field("name", &self.name)
            .field("scores_key", &self.scores_key)
            .finish_non_exhaustive()
    }
}

impl RedisLeaderboard {
    /// A leaderboard projection named `name`, kept under the keys `{key}` (the sorted set)
    /// and `{key}:versions` (the hash).
    pub async fn connect(
        name: impl Into<String>,
        redis_url: &str,
        key: &str,
    ) -> redis::RedisResult<Self> {
        let client = redis::Client::open(redis_url)?;
        let conn = client.get_multiplexed_async_connection().await?;
        Ok(Self {
            name: name.into(),
            conn,
            scores_key: key.to_owned(),
            versions_key: format!("{key}:versions"),
            script: redis::Script::new(APPLY_ONCE),
        })
    }

    /// The ranking, best first.
    pub async fn ranking(&self) -> redis::RedisResult<Vec<Ranked>> {
        let mut conn = self.conn.clone();
        let scores: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(&self.scores_key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        // Scores are sums of integers far below 2^53, so they are exact in an f64.
        Ok(rank(
            scores
                .into_iter()
                .map(|(player, score)| (player, score as i64))
                .collect(),
        ))
    }

    /// Deletes the read model's keys.
    pub async fn delete(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(&self.scores_key)
            .arg(&self.versions_key)
            .query_async::<()>(&mut conn)
            .await
    }
}

impl<Tx: Send> Projection<Tx> for RedisLeaderboard {
    type Event = PlayerEvent;

    fn name(&self) -> &str {
        &self.name
    }

    async fn handle(
        &mut self,
        _tx: &mut Tx,
        event: PlayerEvent,
        envelope: &RecordedEvent,
    ) -> Result<(), BoxError> {
        let PlayerEvent::PlayerScored(e) = event;
        let _applied: i64 = self
            .script
            .key(&self.scores_key)
            .key(&self.versions_key)
            .arg(&e.player)
            .arg(envelope.version)
            .arg(e.points)
            .invoke_async(&mut self.conn)
            .await?;
        Ok(())
    }

    async fn reset(&mut self, _tx: &mut Tx) -> Result<(), BoxError> {
        self.delete().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_scores_share_a_rank() {
        let ranked = rank(vec![
            ("bob".into(), 5),
            ("eve".into(), 9),
            ("al".into(), 5),
            ("zed".into(), 1),
        ]);
        let lines: Vec<_> = ranked
            .iter()
            .map(|r| (r.rank, r.player.as_str(), r.score))
            .collect();
        assert_eq!(
            lines,
            vec![(1, "eve", 9), (2, "al", 5), (2, "bob", 5), (4, "zed", 1)]
        );
    }
}
