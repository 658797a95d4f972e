//! The shopping cart: items added and removed, a checkout, a snapshot every few events, and
//! an event whose payload changed shape (`ItemRemoved` version 1 → version 2) while old rows
//! keep loading.

use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

/// The most items a cart holds.
pub const MAX_ITEMS: usize = 20;

/// An item was put in the cart.
#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemAdded {
    /// The item.
    pub item: String,
}

/// An item was taken out of the cart.
///
/// This is version 2 of the event: version 1 had no reason. Rows stored as version 1 still
/// load, through [`ItemRemovedV1`] and its `From` conversion.
#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[event(version = 2, upcast_from = ItemRemovedV1)]
pub struct ItemRemoved {
    /// The item.
    pub item: String,
    /// Why it was removed, when the shopper said so.
    pub reason: Option<String>,
}

/// Version 1 of [`ItemRemoved`], as rows written before the reason existed store it.
#[derive(Event, Debug, Clone, PartialEq, Deserialize)]
#[event(name = "ItemRemoved", version = 1)]
pub struct ItemRemovedV1 {
    /// The item.
    pub item: String,
}

impl From<ItemRemovedV1> for ItemRemoved {
    fn from(v1: ItemRemovedV1) -> Self {
        Self {
            item: v1.item,
            reason: None,
        }
    }
}

/// The cart was checked out. Stored as `CartCheckedOut`, a name that survives a rename of
/// the Rust type.
#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[event(name = "CartCheckedOut")]
pub struct CheckedOut;

/// A shopping cart: the items in it and whether it was checked out.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cart {
    items: Vec<String>,
    checked_out: bool,
}

/// Why the cart refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CartError {
    /// The cart was already checked out: it cannot change any more.
    #[error("the cart is already checked out")]
    AlreadyCheckedOut,
    /// The item to remove is not in the cart.
    #[error("`{0}` is not in the cart")]
    NotInCart(String),
    /// The cart holds [`MAX_ITEMS`] items already.
    #[error("the cart is full: it holds at most {MAX_ITEMS} items")]
    Full,
    /// An empty cart cannot be checked out.
    #[error("an empty cart cannot be checked out")]
    Empty,
}

// `#[aggregate]` generates the event enum `CartEvent` from the `#[apply]` handlers, the
// `Aggregate` impl with the fold, and the snapshot codec.
#[aggregate(name = "cart", snapshot_every = 3)]
impl Cart {
    /// The items in the cart, in the order they were added.
    pub fn items(&self) -> &[String] {
        &self.items
    }

    /// Whether the cart was checked out.
    pub fn is_checked_out(&self) -> bool {
        self.checked_out
    }

    // The fold: one handler per event. Handlers cannot fail: an event is a fact.

    #[apply]
    fn added(&mut self, e: &ItemAdded) {
        self.items.push(e.item.clone());
    }

    #[apply]
    fn removed(&mut self, e: &ItemRemoved) {
        if let Some(at) = self.items.iter().position(|i| *i == e.item) {
            self.items.remove(at);
        }
    }

    #[apply]
    fn checked_out(&mut self, _: &CheckedOut) {
        self.checked_out = true;
    }

    // The commands: they validate and return facts, or refuse.

    /// Puts `item` in the cart.
    pub fn add_item(&self, item: &str) -> Result<ItemAdded, CartError> {
        if self.checked_out {
            return Err(CartError::AlreadyCheckedOut);
        }
        if self.items.len() >= MAX_ITEMS {
            return Err(CartError::Full);
        }
        Ok(ItemAdded { item: item.into() })
    }

    /// Takes `item` out of the cart, saying why if the shopper did.
    pub fn remove_item(&self, item: &str, reason: Option<&str>) -> Result<ItemRemoved, CartError> {
        if self.checked_out {
            return Err(CartError::AlreadyCheckedOut);
        }
        if !self.items.iter().any(|i| i == item) {
            return Err(CartError::NotInCart(item.into()));
        }
        Ok(ItemRemoved {
            item: item.into(),
            reason: reason.map(Into::into),
        })
    }

    /// Takes every item out of the cart. Idempotent: emptying an empty cart does nothing.
    pub fn empty(&self) -> Result<Vec<ItemRemoved>, CartError> {
        if self.checked_out {
            return Err(CartError::AlreadyCheckedOut);
        }
        Ok(self
            .items
            .iter()
            .map(|item| ItemRemoved {
                item: item.clone(),
                reason: Some("emptied".into()),
            })
            .collect())
    }

    /// Checks the cart out.
    pub fn check_out(&self) -> Result<Vec<CartEvent>, CartError> {
        if self.checked_out {
            return Err(CartError::AlreadyCheckedOut);
        }
        if self.items.is_empty() {
            return Err(CartError::Empty);
        }
        Ok(vec![CheckedOut.into()])
    }
}
