//! The shopping cart: items added and removed, a checkout, a snapshot every few events, and
//! an event whose payload changed shape (`ItemRemoved` version 1 → version 2) while old rows
//! keep loading.

use esrs_core::prelude::*;
use esrs_core::{DecodeError, EncodeError, Payload, SnapshotKey};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The most items a cart holds.
pub const MAX_ITEMS: usize = 20;

/// An item was put in the cart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemAdded {
    /// The item.
    pub item: String,
}

/// An item was taken out of the cart.
///
/// This is version 2 of the event: version 1 had no reason. Rows stored as version 1 still
/// load, through [`ItemRemovedV1`] and its `From` conversion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemRemoved {
    /// The item.
    pub item: String,
    /// Why it was removed, when the shopper said so.
    pub reason: Option<String>,
}

/// Version 1 of [`ItemRemoved`], as rows written before the reason existed store it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

    fn added(&mut self, e: &ItemAdded) {
        self.items.push(e.item.clone());
    }

    fn removed(&mut self, e: &ItemRemoved) {
        if let Some(at) = self.items.iter().position(|i| *i == e.item) {
            self.items.remove(at);
        }
    }

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

// ---------------------------------------------------------------------------------------
// What `#[derive(Event)]` and `#[aggregate(name = "cart", snapshot_every = 3)]` write for
// the types above: stored names and versions, the upcast of ItemRemoved v1, the event enum,
// the dispatch of the fold and the snapshot codec.
// ---------------------------------------------------------------------------------------

/// Every event of a [`Cart`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CartEvent {
    /// See [`ItemAdded`].
    ItemAdded(ItemAdded),
    /// See [`ItemRemoved`].
    ItemRemoved(ItemRemoved),
    /// See [`CheckedOut`].
    CheckedOut(CheckedOut),
}

impl Event for ItemAdded {
    const NAME: &'static str = "ItemAdded";
    const VERSION: u32 = 1;
    fn decode(version: u32, payload: &RawValue) -> Result<Self, DecodeError> {
        crate::decode_current(version, payload)
    }
}

impl Event for ItemRemovedV1 {
    const NAME: &'static str = "ItemRemoved";
    const VERSION: u32 = 1;
    fn decode(version: u32, payload: &RawValue) -> Result<Self, DecodeError> {
        crate::decode_current(version, payload)
    }
}

impl Event for ItemRemoved {
    const NAME: &'static str = "ItemRemoved";
    const VERSION: u32 = 2;
    fn known_versions() -> Vec<u32> {
        vec![1, 2]
    }
    fn decode(version: u32, payload: &RawValue) -> Result<Self, DecodeError> {
        match version {
            1 => ItemRemovedV1::decode(1, payload).map(Self::from),
            _ => crate::decode_current(version, payload),
        }
    }
}

impl Event for CheckedOut {
    const NAME: &'static str = "CartCheckedOut";
    const VERSION: u32 = 1;
    fn decode(version: u32, payload: &RawValue) -> Result<Self, DecodeError> {
        crate::decode_current(version, payload)
    }
}

crate::event_enum!(CartEvent {
    ItemAdded(ItemAdded),
    ItemRemoved(ItemRemoved),
    CheckedOut(CheckedOut)
});

impl Aggregate for Cart {
    const NAME: &'static str = "cart";
    const SNAPSHOT_EVERY: Option<u64> = Some(3);
    const SNAPSHOT_KEY: SnapshotKey = SnapshotKey::new(1, 1);
    type Event = CartEvent;

    fn apply(&mut self, event: &CartEvent) {
        match event {
            CartEvent::ItemAdded(e) => self.added(e),
            CartEvent::ItemRemoved(e) => self.removed(e),
            CartEvent::CheckedOut(e) => self.checked_out(e),
        }
    }

    fn encode_snapshot(&self) -> Option<Result<Payload, EncodeError>> {
        Some(esrs_core::encode_snapshot(Self::NAME, self))
    }

    fn decode_snapshot(payload: &RawValue) -> Option<Result<Self, serde_json::Error>> {
        Some(esrs_core::decode_snapshot(payload))
    }
}
