//! The bank account: deposits and withdrawals, an overdraft refused by the command, and a
//! history that explains the balance, with who did what and why.

use chrono::{DateTime, Utc};
use esrs_core::Version;
use esrs_core::prelude::*;
use esrs_core::repository::HistoryEntry;
use serde::{Deserialize, Serialize};

/// Money was paid into the account, in whole currency units.
#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deposited {
    /// The amount, in whole currency units.
    pub amount: u64,
}

/// Money was taken out of the account, in whole currency units.
#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Withdrawn {
    /// The amount, in whole currency units.
    pub amount: u64,
}

/// A bank account: its balance, in whole currency units.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    balance: u64,
}

/// Why the account refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// The withdrawal is larger than the balance.
    #[error("insufficient funds: the balance is {balance}, {requested} was requested")]
    Overdraft {
        /// The balance when the withdrawal was refused.
        balance: u64,
        /// The amount requested.
        requested: u64,
    },
    /// A deposit or withdrawal of nothing.
    #[error("the amount must be positive")]
    ZeroAmount,
}

#[aggregate(name = "account")]
impl Account {
    /// The balance, in whole currency units.
    pub fn balance(&self) -> u64 {
        self.balance
    }

    #[apply]
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
    }

    #[apply]
    fn withdrawn(&mut self, e: &Withdrawn) {
        self.balance -= e.amount;
    }

    /// Pays `amount` into the account.
    pub fn deposit(&self, amount: u64) -> Result<Deposited, AccountError> {
        if amount == 0 {
            return Err(AccountError::ZeroAmount);
        }
        Ok(Deposited { amount })
    }

    /// Takes `amount` out of the account, refusing an overdraft.
    pub fn withdraw(&self, amount: u64) -> Result<Withdrawn, AccountError> {
        if amount == 0 {
            return Err(AccountError::ZeroAmount);
        }
        if amount > self.balance {
            return Err(AccountError::Overdraft {
                balance: self.balance,
                requested: amount,
            });
        }
        Ok(Withdrawn { amount })
    }
}

/// One line of an account statement: an event of the account's history, who caused it and
/// why, and the balance right after it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StatementLine {
    /// The event's version in the account's stream.
    pub version: Version,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// The amount: positive for a deposit, negative for a withdrawal.
    pub amount: i64,
    /// Who issued the command (the metadata's actor).
    pub actor: Option<String>,
    /// Why (the metadata's custom `reason` field).
    pub reason: Option<String>,
    /// The balance after this event.
    pub balance: u64,
}

impl std::fmt::Display for StatementLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "v{}  {}  {:>+6}  by {:<8} {:<18} balance {}",
            self.version,
            self.recorded_at.format("%H:%M:%S%.3f"),
            self.amount,
            self.actor.as_deref().unwrap_or("?"),
            self.reason
                .as_deref()
                .map(|r| format!("({r})"))
                .unwrap_or_default(),
            self.balance
        )
    }
}

/// The statement of an account from its history: the answer to "why is my balance 300?".
pub fn statement(history: &[HistoryEntry<AccountEvent>]) -> Vec<StatementLine> {
    let mut account = Account::default();
    history
        .iter()
        .map(|entry| {
            account.apply(&entry.event);
            let amount = match &entry.event {
                AccountEvent::Deposited(e) => e.amount as i64,
                AccountEvent::Withdrawn(e) => -(e.amount as i64),
            };
            let metadata = &entry.recorded.metadata;
            StatementLine {
                version: entry.version(),
                recorded_at: entry.recorded.recorded_at,
                amount,
                actor: metadata.actor.clone(),
                reason: metadata
                    .custom
                    .get("reason")
                    .and_then(|r| r.as_str())
                    .map(Into::into),
                balance: account.balance,
            }
        })
        .collect()
}
