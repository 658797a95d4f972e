//! An `#[aggregate]` block written by a `macro_rules!`, with the state type, the stream
//! category, the snapshot cadence, the event enum's name, the handlers' names and the
//! event types passed in as fragments; the generated fold, encode and decode do not meet
//! the fragments' hygiene, and the fold's fingerprint is the one of the block written out.

use esrs_core::prelude::*;
use esrs_core::EventSet;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Deposited {
    pub cents: u64,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Withdrawn {
    pub cents: u64,
}

#[derive(Default, Serialize, Deserialize, Debug)]
pub struct Account {
    balance: u64,
}

macro_rules! account {
    (
        $state:ty = $category:literal every $every:literal as $events:ident;
        $deposit:ident($deposited:ty), $withdraw:ident($withdrawn:path);
        $command:ident
    ) => {
        #[aggregate(name = $category, snapshot_every = $every, event_enum = $events)]
        impl $state {
            #[apply]
            fn $deposit(&mut self, event: &$deposited) {
                self.balance += event.cents;
            }

            #[apply]
            fn $withdraw(&mut self, event: &$withdrawn) {
                self.balance -= event.cents;
            }

            pub fn $command(&self, withdrawal: $withdrawn) -> Result<$withdrawn, String> {
                if withdrawal.cents > self.balance {
                    return Err(format!("{} is more than the balance", withdrawal.cents));
                }
                Ok(withdrawal)
            }
        }
    };
}

account! {
    Account = "account" every 10 as Ledger;
    deposited(Deposited), withdrawn(Withdrawn);
    withdraw
}

// The same fold written out: the same snapshot key, since the fingerprint reads the
// handlers through their fragments.
#[derive(Default, Serialize, Deserialize, Debug)]
pub struct WrittenOut {
    balance: u64,
}

#[aggregate(name = "written_out", snapshot_every = 10)]
impl WrittenOut {
    #[apply]
    fn deposited(&mut self, event: &Deposited) {
        self.balance += event.cents;
    }

    #[apply]
    fn withdrawn(&mut self, event: &Withdrawn) {
        self.balance -= event.cents;
    }
}

fn main() {
    assert_eq!(<Account as Aggregate>::NAME, "account");
    assert_eq!(<Account as Aggregate>::SNAPSHOT_EVERY, Some(10));
    Account::given([Deposited { cents: 10 }])
        .when(|account| account.withdraw(Withdrawn { cents: 3 }))
        .then([Withdrawn { cents: 3 }]);
    Account::given([Deposited { cents: 1 }])
        .when(|account| account.withdraw(Withdrawn { cents: 3 }))
        .then_error("3 is more than the balance".to_owned());

    let event = <Ledger as EventSet>::decode("Withdrawn", 1, r#"{"cents":2}"#).unwrap();
    assert_eq!(event, Ledger::Withdrawn(Withdrawn { cents: 2 }));
    assert_eq!(format!("{event:?}"), "Withdrawn(Withdrawn { cents: 2 })");
    let mut account = Account { balance: 5 };
    account.apply(&event.clone());
    assert_eq!(account.balance, 3);
    assert!(account.encode_snapshot().unwrap().is_ok());
    assert_eq!(<Account as Aggregate>::SNAPSHOT_KEY, <WrittenOut as Aggregate>::SNAPSHOT_KEY);
}
