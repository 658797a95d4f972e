//! The bank account: its rules with the given/when/then harness, its history with
//! metadata, and its balance as of an earlier version and an earlier time.

use std::time::Duration;

use esrs_core::prelude::*;
use esrs_examples::bank::{Account, AccountError, Deposited, Withdrawn, statement};

#[test]
fn a_withdrawal_within_the_balance_is_accepted() {
    Account::given([Deposited { amount: 500 }])
        .when(|account| account.withdraw(200))
        .then([Withdrawn { amount: 200 }])
        .and_state(|account| account.balance() == 300);
}

#[test]
fn an_overdraft_is_refused() {
    Account::given([Deposited { amount: 300 }])
        .when(|account| account.withdraw(1000))
        .then_error(AccountError::Overdraft {
            balance: 300,
            requested: 1000,
        });
    Account::given_nothing()
        .when(|account| account.withdraw(1))
        .then_error_matching(|e| matches!(e, AccountError::Overdraft { balance: 0, .. }));
}

#[test]
fn nothing_is_not_an_amount() {
    Account::given_nothing()
        .when(|account| account.deposit(0))
        .then_error(AccountError::ZeroAmount);
    Account::given([Deposited { amount: 5 }])
        .when(|account| account.withdraw(0))
        .then_error(AccountError::ZeroAmount);
}

#[tokio::test]
async fn the_history_explains_the_balance_with_who_and_why() {
    let accounts = Repository::<Account, _>::new(InMemoryStore::new());
    let alice = StreamId::new("alice").unwrap();
    let by = |actor: &str, reason: &str| Metadata::new().with_actor(actor).with("reason", reason);

    accounts
        .execute(&alice, |a| a.deposit(500))
        .metadata(by("payroll", "salary"))
        .await
        .unwrap();
    accounts
        .execute(&alice, |a| a.withdraw(200))
        .metadata(by("alice", "rent"))
        .await
        .unwrap();
    let refused = accounts
        .execute(&alice, |a| a.withdraw(1000))
        .metadata(by("alice", "new bike"))
        .await
        .unwrap_err();
    assert_eq!(
        refused.rejected(),
        Some(&AccountError::Overdraft {
            balance: 300,
            requested: 1000
        })
    );

    let history = accounts.history(&alice).await.unwrap();
    let lines = statement(&history);
    let summary: Vec<_> = lines
        .iter()
        .map(|l| {
            (
                l.version,
                l.amount,
                l.actor.as_deref(),
                l.reason.as_deref(),
                l.balance,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, 500, Some("payroll"), Some("salary"), 500),
            (2, -200, Some("alice"), Some("rent"), 300),
        ]
    );
    assert_eq!(
        lines.last().unwrap().balance,
        accounts.load(&alice).await.unwrap().balance()
    );
    let text = lines[1].to_string();
    assert!(text.starts_with("v2  "), "{text}");
    assert!(text.contains("-200  by alice"), "{text}");
    assert!(text.contains("(rent)"), "{text}");
    assert!(text.ends_with("balance 300"), "{text}");
}

#[tokio::test]
async fn the_balance_as_of_an_earlier_version_and_time() {
    let accounts = Repository::<Account, _>::new(InMemoryStore::new());
    let bob = StreamId::new("bob").unwrap();
    for amount in [100, 200, 300] {
        accounts.execute(&bob, |a| a.deposit(amount)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    accounts.execute(&bob, |a| a.withdraw(50)).await.unwrap();

    let balances_at: Vec<_> =
        futures_util::future::join_all((0..=5).map(|v| accounts.load_at(&bob, v)))
            .await
            .into_iter()
            .map(|l| {
                let l = l.unwrap();
                (l.version, l.balance())
            })
            .collect();
    assert_eq!(
        balances_at,
        [(0, 0), (1, 100), (2, 300), (3, 600), (4, 550), (4, 550)]
    );

    let history = accounts.history(&bob).await.unwrap();
    let second = history[1].recorded.recorded_at;
    let then = accounts.load_as_of(&bob, second).await.unwrap();
    assert_eq!((then.version, then.balance()), (2, 300));
    let before = accounts
        .load_as_of(
            &bob,
            history[0].recorded.recorded_at - chrono::Duration::milliseconds(1),
        )
        .await
        .unwrap();
    assert_eq!((before.version, before.balance()), (0, 0));
}
