//! Two state types of one name, each with its #[aggregate] block, in two modules of one file.

mod shop {
    use esrs_core::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    pub struct ItemAdded {
        pub item: String,
    }

    #[derive(Default)]
    pub struct Cart {
        pub items: Vec<String>,
    }

    #[aggregate(name = "cart")]
    impl Cart {
        #[apply]
        fn added(&mut self, e: &ItemAdded) {
            self.items.push(e.item.clone());
        }
    }
}

mod warehouse {
    use esrs_core::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
    #[event(name = "WarehouseItemLoaded")]
    pub struct ItemLoaded {
        pub item: String,
    }

    #[derive(Default)]
    pub struct Cart {
        pub load: Vec<String>,
    }

    #[aggregate(name = "warehouse_cart")]
    impl Cart {
        #[apply]
        fn loaded(&mut self, e: &ItemLoaded) {
            self.load.push(e.item.clone());
        }
    }
}

fn main() {
    use esrs_core::prelude::*;

    shop::Cart::given_nothing()
        .when(|_| {
            Ok::<_, String>(shop::ItemAdded {
                item: "tea".into(),
            })
        })
        .then([shop::ItemAdded { item: "tea".into() }]);
    let loaded = warehouse::Cart::given([warehouse::ItemLoaded { item: "tea".into() }]);
    assert_eq!(loaded.state().load, ["tea"]);
}
