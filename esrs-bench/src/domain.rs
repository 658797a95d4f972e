//! The benchmark's domain: a bank account with two events, one of them at version 2 with
//! an upcaster from version 1, written with esrs's macros; and the same decoding written by
//! hand for the raw baseline.

use esrs_core::personal::Personal;
use esrs_core::{Event, StreamId, aggregate};
use serde::{Deserialize, Serialize};

/// Money paid in.
#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Deposited {
    pub(crate) amount: i64,
}

/// Money paid out; version 2 added the reason.
#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[event(version = 2, upcast_from = WithdrawnV1)]
pub(crate) struct Withdrawn {
    pub(crate) amount: i64,
    pub(crate) reason: Option<String>,
}

/// Version 1 of [`Withdrawn`], still found in old streams.
#[derive(Event, Debug, Clone, PartialEq, Deserialize)]
#[event(name = "Withdrawn", version = 1)]
pub(crate) struct WithdrawnV1 {
    pub(crate) amount: i64,
}

impl From<WithdrawnV1> for Withdrawn {
    fn from(v1: WithdrawnV1) -> Self {
        Self {
            amount: v1.amount,
            reason: None,
        }
    }
}

/// The account: what commands decide on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Account {
    pub(crate) balance: i64,
    pub(crate) operations: u64,
}

// Generates `AccountEvent { Deposited(Deposited), Withdrawn(Withdrawn) }` and the fold.
#[aggregate(name = "account")]
impl Account {
    #[apply]
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.amount;
        self.operations += 1;
    }

    #[apply]
    fn withdrawn(&mut self, e: &Withdrawn) {
        self.balance -= e.amount;
        self.operations += 1;
    }
}

impl Account {
    /// Applies one event, as the raw baseline folds: a hand-written match.
    #[inline]
    pub(crate) fn on(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Deposited(e) => self.balance += e.amount,
            AccountEvent::Withdrawn(e) => self.balance -= e.amount,
        }
        self.operations += 1;
    }

    /// The benchmark's command: withdraw 50 when the balance allows, else deposit 30.
    pub(crate) fn decide(&self) -> AccountEvent {
        if self.balance >= 50 {
            AccountEvent::Withdrawn(Withdrawn {
                amount: 50,
                reason: None,
            })
        } else {
            AccountEvent::Deposited(Deposited { amount: 30 })
        }
    }
}

/// The same account with a snapshot every 100 events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SnapshottedAccount(pub(crate) Account);

#[aggregate(name = "account", snapshot_every = 100, event_enum = SnapshottedAccountEvent)]
impl SnapshottedAccount {
    #[apply]
    fn deposited(&mut self, e: &Deposited) {
        self.0.balance += e.amount;
        self.0.operations += 1;
    }

    #[apply]
    fn withdrawn(&mut self, e: &Withdrawn) {
        self.0.balance -= e.amount;
        self.0.operations += 1;
    }
}

/// The raw baseline's decoder: a hand-written match on the stored name and version.
pub(crate) fn decode_by_hand(
    name: &str,
    version: i32,
    payload: &str,
) -> Result<AccountEvent, serde_json::Error> {
    Ok(match (name, version) {
        ("Deposited", _) => AccountEvent::Deposited(serde_json::from_str(payload)?),
        ("Withdrawn", 1) => {
            AccountEvent::Withdrawn(serde_json::from_str::<WithdrawnV1>(payload)?.into())
        }
        _ => AccountEvent::Withdrawn(serde_json::from_str(payload)?),
    })
}

/// The stored name, version and JSON text of an event, for the raw baseline.
pub(crate) fn encode_by_hand(event: &AccountEvent) -> (&'static str, i32, String) {
    match event {
        AccountEvent::Deposited(e) => (
            "Deposited",
            1,
            serde_json::to_string(e).expect("a number encodes"),
        ),
        AccountEvent::Withdrawn(e) => (
            "Withdrawn",
            2,
            serde_json::to_string(e).expect("a number encodes"),
        ),
    }
}

/// The `i`-th event of a generated history: deposits and withdrawals, some of them stored at
/// the old version of `Withdrawn` (so loads and replays pay for upcasting).
pub(crate) fn generated(i: u64) -> (&'static str, u32, String) {
    match i % 4 {
        0 | 1 => ("Deposited", 1, format!(r#"{{"amount":{}}}"#, 10 + i % 7)),
        2 => ("Withdrawn", 1, format!(r#"{{"amount":{}}}"#, 1 + i % 5)),
        _ => (
            "Withdrawn",
            2,
            format!(r#"{{"amount":{},"reason":null}}"#, 1 + i % 5),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use esrs_core::{Aggregate, EventSet};

    #[test]
    fn esrs_and_hand_written_decoding_agree_on_every_generated_event() {
        let mut by_esrs = Account::default();
        let mut by_hand = Account::default();
        for i in 0..40 {
            let (name, version, json) = generated(i);
            Aggregate::apply(
                &mut by_esrs,
                &AccountEvent::decode(name, version, &json).unwrap(),
            );
            by_hand.on(&decode_by_hand(name, version as i32, &json).unwrap());
        }
        assert_eq!(by_esrs, by_hand);
        assert_eq!(by_esrs.operations, 40);
        assert_ne!(by_esrs.balance, 0);
    }

    #[test]
    fn encodings_agree() {
        for event in [
            AccountEvent::Deposited(Deposited { amount: 3 }),
            AccountEvent::Withdrawn(Withdrawn {
                amount: 4,
                reason: None,
            }),
        ] {
            let (name, version, json) = encode_by_hand(&event);
            assert_eq!(name, event.name());
            assert_eq!(version as u32, event.schema_version());
            assert_eq!(json, event.encode().unwrap().get());
        }
    }
}

/// Money paid in by a named payer: the payer's name is personal data of the account
/// holder (the benchmark's stream id), encrypted with the holder's key.
#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PaidIn {
    #[event(subject)]
    pub(crate) holder: String,
    #[event(personal)]
    pub(crate) payer: Personal<String>,
    pub(crate) amount: i64,
}

/// Money paid out to a named payee, personal data of the holder.
#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PaidOut {
    #[event(subject)]
    pub(crate) holder: String,
    #[event(personal)]
    pub(crate) payee: Personal<String>,
    pub(crate) amount: i64,
}

/// The account of W1 and W2 with personal data: the same decisions as [`Account`], each
/// event carrying one encrypted field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct PersonalAccount(pub(crate) Account);

#[aggregate(name = "account")]
impl PersonalAccount {
    #[apply]
    fn paid_in(&mut self, e: &PaidIn) {
        self.0.balance += e.amount;
        self.0.operations += 1;
    }

    #[apply]
    fn paid_out(&mut self, e: &PaidOut) {
        self.0.balance -= e.amount;
        self.0.operations += 1;
    }
}

/// What a workload's command decides, given the state and the stream.
pub(crate) trait Decide: esrs_core::Aggregate {
    /// The one event the command returns.
    fn decide_on(&self, stream: &StreamId) -> Self::Event;
}

impl Decide for Account {
    fn decide_on(&self, _: &StreamId) -> AccountEvent {
        self.decide()
    }
}

impl Decide for PersonalAccount {
    fn decide_on(&self, stream: &StreamId) -> PersonalAccountEvent {
        let holder = stream.as_str().to_owned();
        if self.0.balance >= 50 {
            PersonalAccountEvent::PaidOut(PaidOut {
                holder,
                payee: Personal::new("Ada Lovelace".to_owned()),
                amount: 50,
            })
        } else {
            PersonalAccountEvent::PaidIn(PaidIn {
                holder,
                payer: Personal::new("Grace Hopper".to_owned()),
                amount: 30,
            })
        }
    }
}
