//! The erasure walk-through: after Ada's erasure request her name and address are
//! unreadable in her state and the rebuilt loan desk, her loans carry on, Bob is untouched,
//! and no stored event ever held her data in clear.

use esrs_core::InMemoryStore;
use esrs_core::personal::InMemoryKeyStore;
use esrs_core::personal::Personal;
use esrs_core::prelude::*;
use esrs_examples::library::{self, Member, MemberRegistered};

#[tokio::test]
async fn an_erasure_request_end_to_end() {
    let mut out = Vec::new();
    let outcome = library::run(InMemoryStore::new(), InMemoryKeyStore::new(), "", &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!outcome.plaintext_stored, "{text}");
    assert_eq!(outcome.ada.display_name(), "(erased)");
    assert_eq!(outcome.ada.email, Some(Personal::Forgotten));
    assert_eq!(
        outcome.ada.loans,
        ["Sketch of the Analytical Engine", "Menabrea's notes"]
    );
    assert_eq!(outcome.ada.borrowed, 3);
    assert_eq!(outcome.bob.display_name(), "Bob Babbage");
    assert_eq!(outcome.desk.members["member-ada"].0, "(erased)");
    assert_eq!(outcome.desk.members["member-bob"].0, "Bob Babbage");
    // Before the erasure, the walk-through showed Ada's name as it was loaded.
    assert!(text.contains("loaded: Ada Lovelace has"), "{text}");
}

#[test]
fn the_member_rules_hold_whether_the_member_is_known_or_forgotten() {
    let joined = MemberRegistered {
        member_id: "ada".into(),
        name: Personal::new("Ada Lovelace".into()),
        email: Personal::new("ada@example.com".into()),
    };
    Member::given([joined.clone()])
        .when(|m| m.borrow("Notes"))
        .then_state(|m| m.display_name() == "Ada Lovelace" && m.loans == ["Notes"]);
    Member::given([joined])
        .and_forget("ada")
        .when(|m| m.borrow("Notes"))
        .then_state(|m| m.display_name() == "(erased)" && m.loans == ["Notes"]);
}
