//! Runnable examples of esrs.

pub mod leaderboard;
