//! Named, tuple and unit structs as events, in nested modules, used by an aggregate in
//! another module.

use serde::{Deserialize, Serialize};

mod events {
    pub mod cart {
        use esrs_core::Event;
        use serde::{Deserialize, Serialize};

        #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
        pub struct ItemAdded {
            pub item: String,
        }

        #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
        #[event(name = "QuantityChanged")]
        pub struct QuantityChanged(pub String, pub u32);

        #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
        pub struct Emptied;
    }
}

mod state {
    use super::events::cart::{Emptied, ItemAdded};
    use super::*;

    #[derive(Default, Serialize, Deserialize)]
    pub struct Cart {
        pub items: Vec<(String, u32)>,
    }

    #[esrs_core::aggregate(name = "cart")]
    impl Cart {
        #[apply]
        fn added(&mut self, e: &ItemAdded) {
            self.items.push((e.item.clone(), 1));
        }

        #[apply]
        fn changed(&mut self, e: &crate::events::cart::QuantityChanged) {
            for (item, n) in &mut self.items {
                if *item == e.0 {
                    *n = e.1;
                }
            }
        }

        #[apply]
        fn emptied(&mut self, _: &Emptied) {
            self.items.clear();
        }
    }
}

fn main() {
    use esrs_core::{Aggregate, EventSet};
    use events::cart::*;
    let mut cart = state::Cart::default();
    for event in [
        state::CartEvent::from(ItemAdded { item: "a".into() }),
        QuantityChanged("a".into(), 3).into(),
    ] {
        cart.apply(&event);
    }
    assert_eq!(cart.items, [("a".to_owned(), 3)]);
    cart.apply(&Emptied.into());
    assert!(cart.items.is_empty());
    assert_eq!(
        <state::CartEvent as EventSet>::NAMES,
        ["ItemAdded", "QuantityChanged", "Emptied"]
    );
}
