mod shop {
    use esrs_core::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub struct ItemAdded {
        pub item: String,
    }

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub struct CheckedOut;

    #[derive(Default)]
    pub struct Cart {
        items: Vec<String>,
        done: bool,
    }

    #[aggregate(name = "cart")]
    impl Cart {
        #[apply]
        fn added(&mut self, e: &ItemAdded) {
            self.items.push(e.item.clone());
        }
    }

    #[esrs_core::aggregate(name = "cart")]
    impl Cart {
        #[apply]
        fn checked_out(&mut self, _: &CheckedOut) {
            self.done = true;
        }

        pub fn check_out(&self) -> Result<CheckedOut, String> {
            Ok(CheckedOut)
        }
    }
}

fn main() {}
