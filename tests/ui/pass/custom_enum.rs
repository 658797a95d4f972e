//! A custom event enum name, visibility and derive list.

use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
struct Deposited {
    cents: u64,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
struct Withdrawn {
    cents: u64,
}

#[derive(Default)]
struct Account {
    balance: i64,
}

#[aggregate(name = "account", event_enum = pub(crate) Movement, derive(Debug, Clone, PartialEq, Eq, Hash))]
impl Account {
    #[apply]
    fn deposited(&mut self, e: &Deposited) {
        self.balance += e.cents as i64;
    }

    #[apply]
    fn withdrawn(&mut self, e: &Withdrawn) {
        self.balance -= e.cents as i64;
    }
}

mod private_enum {
    use super::*;

    #[derive(Default)]
    pub(crate) struct Counter(u64);

    #[aggregate(name = "counter", event_enum = Ticks, derive())]
    impl Counter {
        #[apply]
        fn deposited(&mut self, e: &Deposited) {
            self.0 += e.cents;
        }
    }

    pub(crate) fn tick() -> u64 {
        let mut c = Counter::default();
        c.apply(&Ticks::Deposited(Deposited { cents: 2 }));
        c.0
    }
}

fn main() {
    let mut set = std::collections::HashSet::new();
    set.insert(Movement::from(Deposited { cents: 5 }));
    let mut account = Account::default();
    for m in [Movement::from(Deposited { cents: 5 }), Withdrawn { cents: 2 }.into()] {
        account.apply(&m);
    }
    assert_eq!(account.balance, 3);
    assert_eq!(private_enum::tick(), 2);
}
