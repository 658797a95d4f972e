//! A library member's loans, and an erasure request ("forget me") handled end to end.
//!
//! The member's name and e-mail address are personal data: marked `#[event(personal)]`,
//! they are stored encrypted with the member's own key, and the member id (the
//! `#[event(subject)]` field) says whose they are. The loans are not personal data and stay
//! readable. When the member asks to be forgotten, [`personal::forget`] deletes the key:
//! the stored events are not touched (they cannot be), but their personal fields can never
//! be read again. The member's aggregate still loads, the loan desk projection still
//! rebuilds, and both show the data as erased.
//!
//! `cargo run -p esrs-examples --bin erasure` runs it in memory, or on PostgreSQL (with
//! keys in `esrs_postgres::PgKeyStore`) when `DATABASE_URL` is set.

use std::collections::BTreeMap;
use std::io::Write;

use esrs_core::personal::{self, KeyStore};
use esrs_core::prelude::*;
use esrs_core::projection::InMemoryCheckpoints;
use esrs_core::{Position, RecordedEvent};
use serde::{Deserialize, Serialize};

use crate::BoxError;

/// A member joined the library. Stored in the member's `member-…` stream.
#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[event(name = "MemberRegistered")]
pub struct MemberRegistered {
    /// Whose personal data this event holds.
    #[event(subject)]
    pub member_id: String,
    /// The member's name: personal data.
    #[event(personal)]
    pub name: Personal<String>,
    /// The member's e-mail address: personal data.
    #[event(personal)]
    pub email: Personal<String>,
}

/// A member borrowed a book.
#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[event(name = "BookBorrowed")]
pub struct BookBorrowed {
    /// The book's title.
    pub book: String,
}

/// A member brought a book back.
#[derive(Event, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[event(name = "BookReturned")]
pub struct BookReturned {
    /// The book's title.
    pub book: String,
}

/// A member and the books they have out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Member {
    /// The member's name, or `Forgotten` after an erasure request.
    pub name: Option<Personal<String>>,
    /// The member's e-mail address, or `Forgotten`.
    pub email: Option<Personal<String>>,
    /// The books out, in the order borrowed.
    pub loans: Vec<String>,
    /// Every book ever borrowed.
    pub borrowed: u64,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LibraryError {
    /// The member is already registered.
    #[error("already registered")]
    AlreadyRegistered,
    /// Only registered members borrow.
    #[error("not a member")]
    NotAMember,
    /// The book is not out with this member.
    #[error("`{0}` is not on loan to this member")]
    NotOnLoan(String),
}

#[aggregate(name = "member")]
impl Member {
    #[apply]
    fn registered(&mut self, e: &MemberRegistered) {
        self.name = Some(e.name.clone());
        self.email = Some(e.email.clone());
    }

    #[apply]
    fn borrowed(&mut self, e: &BookBorrowed) {
        self.loans.push(e.book.clone());
        self.borrowed += 1;
    }

    #[apply]
    fn returned(&mut self, e: &BookReturned) {
        self.loans.retain(|b| *b != e.book);
    }

    /// Registers the member `id`.
    pub fn register(
        &self,
        id: &str,
        name: &str,
        email: &str,
    ) -> Result<MemberRegistered, LibraryError> {
        if self.name.is_some() {
            return Err(LibraryError::AlreadyRegistered);
        }
        Ok(MemberRegistered {
            member_id: id.to_owned(),
            name: Personal::new(name.to_owned()),
            email: Personal::new(email.to_owned()),
        })
    }

    /// Lends `book` to the member.
    pub fn borrow(&self, book: &str) -> Result<BookBorrowed, LibraryError> {
        if self.name.is_none() {
            return Err(LibraryError::NotAMember);
        }
        Ok(BookBorrowed {
            book: book.to_owned(),
        })
    }

    /// Takes `book` back.
    pub fn give_back(&self, book: &str) -> Result<BookReturned, LibraryError> {
        if !self.loans.iter().any(|b| b == book) {
            return Err(LibraryError::NotOnLoan(book.to_owned()));
        }
        Ok(BookReturned {
            book: book.to_owned(),
        })
    }

    /// The member's name for display: `(erased)` once forgotten.
    pub fn display_name(&self) -> String {
        shown(self.name.as_ref())
    }
}

fn shown(value: Option<&Personal<String>>) -> String {
    match value {
        Some(Personal::Known(text)) => text.clone(),
        Some(Personal::Forgotten) => "(erased)".to_owned(),
        None => "(unknown)".to_owned(),
    }
}

/// The loan desk: who has which book out, by member stream.
#[derive(Debug, Default)]
pub struct LoanDesk {
    /// For each member stream: the member's name (or `(erased)`) and the books out.
    pub members: BTreeMap<String, (String, Vec<String>)>,
}

impl Projection for LoanDesk {
    type Event = MemberEvent;

    fn name(&self) -> &str {
        "loan-desk"
    }

    async fn handle(
        &mut self,
        _: &mut (),
        event: MemberEvent,
        envelope: &RecordedEvent,
    ) -> Result<(), esrs_core::BoxError> {
        let entry = self
            .members
            .entry(envelope.stream.as_str().to_owned())
            .or_default();
        match event {
            MemberEvent::MemberRegistered(e) => entry.0 = shown(Some(&e.name)),
            MemberEvent::BookBorrowed(e) => entry.1.push(e.book),
            MemberEvent::BookReturned(e) => entry.1.retain(|b| *b != e.book),
        }
        Ok(())
    }

    async fn reset(&mut self, _: &mut ()) -> Result<(), esrs_core::BoxError> {
        self.members.clear();
        Ok(())
    }
}

/// What the walk-through ends with, for its tests.
#[derive(Debug)]
pub struct Outcome {
    /// Ada's state after her erasure request.
    pub ada: Member,
    /// Bob's state.
    pub bob: Member,
    /// The loan desk rebuilt after the erasure.
    pub desk: LoanDesk,
    /// Whether any stored event still held Ada's name or e-mail address in clear.
    pub plaintext_stored: bool,
}

/// Writes a line of output.
macro_rules! say {
    ($out:expr) => { writeln!($out)? };
    ($out:expr, $($arg:tt)*) => { writeln!($out, $($arg)*)? };
}

/// The walk-through: members borrow books, Ada asks to be forgotten, and the loans, the
/// member's state and the loan desk carry on without her personal data. `suffix` makes the
/// member ids unique in a store that outlives the run.
pub async fn run<S, K>(
    store: S,
    keys: K,
    suffix: &str,
    out: &mut impl Write,
) -> Result<Outcome, BoxError>
where
    S: EventStore + Clone,
    K: KeyStore + Clone,
{
    let members = Repository::<Member, _>::new(store.clone()).with_key_store(keys.clone());
    let ada_id = format!("ada{suffix}");
    let bob_id = format!("bob{suffix}");
    let (ada, bob) = (StreamId::new(&ada_id)?, StreamId::new(&bob_id)?);

    say!(
        out,
        "1. Ada and Bob join; their names and e-mail addresses are stored encrypted."
    );
    members
        .execute(&ada, |m| {
            m.register(&ada_id, "Ada Lovelace", "ada@example.com")
        })
        .await?;
    members
        .execute(&bob, |m| {
            m.register(&bob_id, "Bob Babbage", "bob@example.com")
        })
        .await?;
    for book in [
        "Sketch of the Analytical Engine",
        "Passages from the Life of a Philosopher",
    ] {
        members.execute(&ada, |m| m.borrow(book)).await?;
    }
    members
        .execute(&ada, |m| {
            m.give_back("Passages from the Life of a Philosopher")
        })
        .await?;
    members
        .execute(&bob, |m| m.borrow("On the Economy of Machinery"))
        .await?;

    let stream = members.stream_of(&ada)?;
    let first: Vec<RecordedEvent> = store.read_stream(&stream, 1, 1).try_collect().await?;
    if let Some(stored) = first.first() {
        say!(out, "   stored: {} {}", stored.name, stored.payload());
    }
    let loaded = members.load(&ada).await?;
    say!(
        out,
        "   loaded: {} has {:?} out",
        loaded.display_name(),
        loaded.loans
    );

    let mut desk = ProjectionRunner::new(
        store.clone(),
        InMemoryCheckpoints::new(),
        LoanDesk::default(),
    )
    .with_key_store(keys.clone());
    desk.catch_up().await?;
    say!(out, "   loan desk: {:?}", desk.projection().members);

    say!(out);
    say!(
        out,
        "2. Ada asks to be forgotten: her key is deleted and the snapshots of her streams with it."
    );
    let forgotten = personal::forget(&keys, &store, &ada_id).await?;
    say!(
        out,
        "   forgotten; streams that held her data: {:?}",
        forgotten
            .streams
            .iter()
            .map(StreamId::as_str)
            .collect::<Vec<_>>()
    );

    say!(out);
    say!(
        out,
        "3. The history is unchanged, and unreadable where it was hers."
    );
    let ada_state = members.load(&ada).await?.state;
    say!(
        out,
        "   loaded: {} (e-mail {}) has {:?} out, {} borrowed in all",
        ada_state.display_name(),
        shown(ada_state.email.as_ref()),
        ada_state.loans,
        ada_state.borrowed
    );
    let bob_state = members.load(&bob).await?.state;
    say!(out, "   Bob is untouched: {}", bob_state.display_name());
    desk.rebuild().await?;
    say!(out, "   loan desk rebuilt: {:?}", desk.projection().members);

    let again = members
        .execute(&ada, |m| m.borrow("Menabrea's notes"))
        .await;
    say!(
        out,
        "   Ada's loans go on: {}",
        if again.is_ok() {
            "a new loan is recorded"
        } else {
            "refused"
        }
    );
    again?;

    let mut events = store.read_all(Position::START);
    let mut plaintext_stored = false;
    while let Some(event) = events.try_next().await? {
        let payload = event.payload();
        plaintext_stored |= payload.contains("Ada Lovelace") || payload.contains("ada@example.com");
    }
    say!(
        out,
        "   Ada's name or address in any stored event: {}",
        if plaintext_stored { "yes" } else { "no" }
    );
    Ok(Outcome {
        ada: members.load(&ada).await?.state,
        bob: bob_state,
        desk: desk.into_projection(),
        plaintext_stored,
    })
}
