use chrono::Utc;
use std::time::Duration;

use crate::position::Position;

use super::*;

#[test]
fn retry_policy_backs_off_and_gives_up() {
    let policy = ErrorPolicy::Retry {
        max: 3,
        backoff: Duration::from_millis(10),
    };
    assert_eq!(policy.delay(1), Some(Duration::from_millis(10)));
    assert_eq!(policy.delay(2), Some(Duration::from_millis(20)));
    assert_eq!(policy.delay(3), Some(Duration::from_millis(40)));
    assert_eq!(policy.delay(4), None);
    assert_eq!(ErrorPolicy::Stop.delay(1), None);
    let long = ErrorPolicy::Retry {
        max: 100,
        backoff: Duration::from_secs(1),
    };
    assert_eq!(long.delay(40), Some(Duration::from_secs(60)));
}

#[test]
fn lag_is_zero_when_caught_up_and_estimated_otherwise() {
    let mut status = ProjectionStatus::new("p".into());
    status.checkpoint = Position::new(3, 10);
    status.head = Some(Position::new(9, 25));
    status.phase = Phase::CatchingUp;
    status.last_recorded_at = Some(Utc::now() - chrono::Duration::seconds(30));
    assert_eq!(status.events_behind(), Some(15));
    assert!(status.time_behind() >= Duration::from_secs(29));
    status.phase = Phase::Live;
    assert_eq!(status.events_behind(), Some(0));
    assert_eq!(status.time_behind(), Duration::ZERO);
}

#[tokio::test]
async fn in_memory_checkpoints_compare_and_set() {
    let cps = InMemoryCheckpoints::new();
    assert_eq!(cps.load("p").await.unwrap(), Position::START);
    let held = cps.try_lock("p").await.unwrap().unwrap();
    cps.save(&mut (), &held, "p", Position::START, Position::new(1, 1))
        .await
        .unwrap();
    let err = cps
        .save(&mut (), &held, "p", Position::START, Position::new(2, 2))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CheckpointError::Moved { expected, actual: Some(actual) }
            if expected == Position::START && actual == Position::new(1, 1)
    ));
    assert_eq!(cps.get("p"), Some(Position::new(1, 1)));
    drop(held);
    let lock = cps.try_lock("p").await.unwrap().unwrap();
    assert!(cps.try_lock("p").await.unwrap().is_none());
    assert!(cps.try_lock("q").await.unwrap().is_some());
    drop(lock);
    assert!(cps.try_lock("p").await.unwrap().is_some());
}
