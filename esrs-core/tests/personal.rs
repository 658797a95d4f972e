//! Personal data that can be forgotten, over the in-memory store and key store: nothing is
//! stored in clear, a forget redacts one subject everywhere (loads, history, projections,
//! snapshots) and leaves the others readable, and a ciphertext moved elsewhere is refused.

use std::collections::BTreeMap;

use esrs_core::error::EncodeError;
use esrs_core::personal::{self, InMemoryKeyStore, KeyStore, KeyStoreError, PersonalDataError};
use esrs_core::prelude::*;
use esrs_core::projection::InMemoryCheckpoints;
use esrs_core::store::{AppendRequest, NewEvent};
use esrs_core::{BoxError, DecodeError, Error, Position, RecordedEvent};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "MemberRegistered")]
struct MemberRegistered {
    #[event(subject)]
    member_id: String,
    #[event(personal)]
    name: Personal<String>,
    #[event(personal)]
    email: Personal<String>,
}

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(name = "BookLent")]
struct BookLent {
    member_id: String,
    book: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Member {
    name: Personal<String>,
    email: Personal<String>,
    loans: Vec<String>,
}

/// A library branch: its members and their loans, all in one stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Branch {
    members: BTreeMap<String, Member>,
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum BranchError {
    #[error("no member {0}")]
    NoMember(String),
}

#[aggregate(name = "branch", snapshot_every = 2)]
impl Branch {
    #[apply]
    fn registered(&mut self, e: &MemberRegistered) {
        self.members.insert(
            e.member_id.clone(),
            Member {
                name: e.name.clone(),
                email: e.email.clone(),
                loans: Vec::new(),
            },
        );
    }

    #[apply]
    fn lent(&mut self, e: &BookLent) {
        if let Some(member) = self.members.get_mut(&e.member_id) {
            member.loans.push(e.book.clone());
        }
    }

    fn register(&self, id: &str, name: &str, email: &str) -> Result<MemberRegistered, BranchError> {
        Ok(MemberRegistered {
            member_id: id.to_owned(),
            name: Personal::new(name.to_owned()),
            email: Personal::new(email.to_owned()),
        })
    }

    fn lend(&self, id: &str, book: &str) -> Result<BookLent, BranchError> {
        if !self.members.contains_key(id) {
            return Err(BranchError::NoMember(id.to_owned()));
        }
        Ok(BookLent {
            member_id: id.to_owned(),
            book: book.to_owned(),
        })
    }

    /// A command that copies a member's name into a new registration of another id.
    fn copy_member(&self, from: &str, to: &str) -> Result<MemberRegistered, BranchError> {
        let member = self
            .members
            .get(from)
            .ok_or_else(|| BranchError::NoMember(from.to_owned()))?;
        Ok(MemberRegistered {
            member_id: to.to_owned(),
            name: member.name.clone(),
            email: member.email.clone(),
        })
    }
}

const ADA_NAME: &str = "Ada Lovelace";
const ADA_EMAIL: &str = "ada@example.com";
const BOB_NAME: &str = "Bob Babbage";

fn id(text: &str) -> StreamId {
    StreamId::new(text).unwrap()
}

/// A branch with Ada and Bob registered and a loan: three events, a snapshot at 2.
async fn branch_with_members(
    store: &InMemoryStore,
    keys: &InMemoryKeyStore,
) -> Repository<Branch, InMemoryStore> {
    let repo = Repository::<Branch, _>::new(store.clone()).with_key_store(keys.clone());
    let central = id("central");
    repo.execute(&central, |b| b.register("ada", ADA_NAME, ADA_EMAIL))
        .await
        .unwrap();
    repo.execute(&central, |b| b.register("bob", BOB_NAME, "bob@example.com"))
        .await
        .unwrap();
    repo.execute(&central, |b| {
        b.lend("ada", "Sketch of the Analytical Engine")
    })
    .await
    .unwrap();
    repo
}

/// Every stored payload of the store, as text.
async fn all_payloads(store: &InMemoryStore) -> String {
    let events: Vec<RecordedEvent> = store.read_all(Position::START).try_collect().await.unwrap();
    events
        .iter()
        .map(|e| e.payload().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn snapshot_text(store: &InMemoryStore) -> Option<String> {
    store
        .load_snapshot(&id("branch-central"), <Branch as Aggregate>::SNAPSHOT_KEY)
        .await
        .unwrap()
        .map(|s| s.payload.get().to_owned())
}

#[tokio::test]
async fn personal_fields_are_stored_encrypted_and_load_decrypted() {
    let (store, keys) = (InMemoryStore::new(), InMemoryKeyStore::new());
    let repo = branch_with_members(&store, &keys).await;
    let stored = all_payloads(&store).await;
    for plaintext in [ADA_NAME, ADA_EMAIL, BOB_NAME] {
        assert!(!stored.contains(plaintext), "{plaintext} in {stored}");
    }
    assert!(stored.contains("\"$personal\""), "{stored}");
    // The subject id is the one field in clear: it names whose data it is.
    assert!(stored.contains("\"member_id\":\"ada\""), "{stored}");

    let branch = repo.load(&id("central")).await.unwrap();
    assert_eq!(branch.version, 3);
    let ada = &branch.members["ada"];
    assert_eq!(ada.name.known().map(String::as_str), Some(ADA_NAME));
    assert_eq!(ada.email.known().map(String::as_str), Some(ADA_EMAIL));
    assert_eq!(ada.loans.len(), 1);
    // The same without the snapshot: the fold of the events decrypts too.
    store.clear_snapshots();
    assert_eq!(repo.load(&id("central")).await.unwrap().state, branch.state);
    let history = repo.history(&id("central")).await.unwrap();
    assert!(
        matches!(&history[0].event, BranchEvent::MemberRegistered(e) if e.name.known().map(String::as_str) == Some(ADA_NAME))
    );
    assert_eq!(keys.key_count(), 2);
}

#[tokio::test]
async fn forget_redacts_one_subject_everywhere_and_leaves_the_others_readable() {
    let (store, keys) = (InMemoryStore::new(), InMemoryKeyStore::new());
    let repo = branch_with_members(&store, &keys).await;
    // The snapshot at version 2 holds the state, names in clear: forget deletes it.
    let snapshot = snapshot_text(&store)
        .await
        .expect("a snapshot at version 2");
    assert!(snapshot.contains(ADA_NAME), "{snapshot}");

    let outcome = personal::forget(&keys, &store, "ada").await.unwrap();
    assert_eq!(outcome.streams, vec![id("branch-central")]);
    assert!(!outcome.already_forgotten);
    assert!(keys.is_forgotten("ada").await.unwrap());
    assert_eq!(snapshot_text(&store).await, None);
    let stored = all_payloads(&store).await;
    assert!(
        !stored.contains(ADA_NAME) && !stored.contains(ADA_EMAIL),
        "{stored}"
    );

    let branch = repo.load(&id("central")).await.unwrap();
    let ada = &branch.members["ada"];
    assert!(ada.name.is_forgotten() && ada.email.is_forgotten());
    // What is not personal data stays: the loan and the membership.
    assert_eq!(
        ada.loans,
        vec!["Sketch of the Analytical Engine".to_owned()]
    );
    let bob = &branch.members["bob"];
    assert_eq!(bob.name.known().map(String::as_str), Some(BOB_NAME));
    // Forgetting again is harmless.
    assert!(
        personal::forget(&keys, &store, "ada")
            .await
            .unwrap()
            .already_forgotten
    );
    // Commands still run on the redacted state, and the next snapshot holds no plaintext.
    repo.execute(&id("central"), |b| b.lend("bob", "Menabrea's notes"))
        .await
        .unwrap();
    let snapshot = snapshot_text(&store)
        .await
        .expect("a snapshot at version 4");
    assert!(
        !snapshot.contains(ADA_NAME) && snapshot.contains("$forgotten"),
        "{snapshot}"
    );
    let again = repo.load(&id("central")).await.unwrap();
    assert!(again.members["ada"].name.is_forgotten());
}

#[tokio::test]
async fn a_forgotten_subject_cannot_be_given_new_personal_data() {
    let (store, keys) = (InMemoryStore::new(), InMemoryKeyStore::new());
    let repo = branch_with_members(&store, &keys).await;
    personal::forget(&keys, &store, "ada").await.unwrap();
    let refused = repo
        .execute(&id("central"), |b| b.register("ada", ADA_NAME, ADA_EMAIL))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &refused,
            ExecuteError::Failed(Error::KeyStore(KeyStoreError::SubjectForgotten { subject })) if subject == "ada"
        ),
        "{refused:?}"
    );
    // A forgotten value copied into another subject's event is stored as forgotten.
    repo.execute(&id("central"), |b| b.copy_member("ada", "carol"))
        .await
        .unwrap();
    let branch = repo.load(&id("central")).await.unwrap();
    assert!(branch.members["carol"].name.is_forgotten());
    assert_eq!(branch.version, 4);
}

#[tokio::test]
async fn without_a_key_store_personal_data_is_refused_not_stored_in_clear() {
    let store = InMemoryStore::new();
    let repo = Repository::<Branch, _>::new(store.clone());
    let refused = repo
        .execute(&id("central"), |b| b.register("ada", ADA_NAME, ADA_EMAIL))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &refused,
            ExecuteError::Failed(Error::Encode(EncodeError::Personal {
                reason: PersonalDataError::NoKeys,
                ..
            }))
        ),
        "{refused:?}"
    );
    assert!(store.is_empty());

    // Events written with keys do not load without them: an error, not a redaction.
    let keys = InMemoryKeyStore::new();
    branch_with_members(&store, &keys).await;
    store.clear_snapshots();
    let error = repo.load(&id("central")).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Decode {
                source: DecodeError::PersonalData {
                    reason: PersonalDataError::NoKeys,
                    ..
                },
                ..
            }
        ),
        "{error:?}"
    );
    // And with another key store, which knows nothing of the subjects, neither.
    let other = Repository::<Branch, _>::new(store.clone()).with_key_store(InMemoryKeyStore::new());
    let error = other.load(&id("central")).await.unwrap_err();
    assert!(
        matches!(
            &error,
            Error::Decode {
                source: DecodeError::PersonalData {
                    reason: PersonalDataError::UnknownSubject,
                    ..
                },
                ..
            }
        ),
        "{error:?}"
    );
}

/// The payload of the event at `version` of `stream`.
async fn payload_at(store: &InMemoryStore, stream: &str, version: u64) -> String {
    let events: Vec<RecordedEvent> = store
        .read_stream(&id(stream), version, version)
        .try_collect()
        .await
        .unwrap();
    events[0].payload().to_owned()
}

async fn append_raw(store: &InMemoryStore, stream: &str, name: &'static str, payload: &str) {
    let payload: Box<RawValue> = RawValue::from_string(payload.to_owned()).unwrap();
    store
        .append(AppendRequest::new(
            id(stream),
            ExpectedVersion::Any,
            vec![NewEvent::new(name, 1, payload)],
        ))
        .await
        .unwrap();
}

fn personal_reason(error: &Error) -> Option<&PersonalDataError> {
    match error {
        Error::Decode {
            source: DecodeError::PersonalData { reason, .. },
            ..
        } => Some(reason),
        _ => None,
    }
}

#[tokio::test]
async fn a_ciphertext_copied_into_another_event_fails_authentication() {
    let (store, keys) = (InMemoryStore::new(), InMemoryKeyStore::new());
    let repo = branch_with_members(&store, &keys).await;
    let ada = payload_at(&store, "branch-central", 1).await;

    // Ada's registration, byte for byte, in another branch's stream.
    append_raw(&store, "branch-north", "MemberRegistered", &ada).await;
    let error = repo.load(&id("north")).await.unwrap_err();
    assert_eq!(
        personal_reason(&error),
        Some(&PersonalDataError::AuthenticationFailed),
        "{error:?}"
    );

    let value: serde_json::Value = serde_json::from_str(&ada).unwrap();

    // Ada's name sealed into Bob's registration, same stream and event name.
    let bob = payload_at(&store, "branch-central", 2).await;
    let mut bob: serde_json::Value = serde_json::from_str(&bob).unwrap();
    bob["name"] = value["name"].clone();
    append_raw(
        &store,
        "branch-central",
        "MemberRegistered",
        &bob.to_string(),
    )
    .await;
    store.clear_snapshots();
    let error = repo.load(&id("central")).await.unwrap_err();
    assert_eq!(
        personal_reason(&error),
        Some(&PersonalDataError::Misplaced),
        "{error:?}"
    );
}

/// A registration's payload with its two personal fields' envelopes swapped.
fn with_name_and_email_swapped(payload: &serde_json::Value) -> serde_json::Value {
    let mut swapped = payload.clone();
    swapped["name"] = payload["email"].clone();
    swapped["email"] = payload["name"].clone();
    swapped
}

#[tokio::test]
async fn swapped_fields_and_altered_ciphertexts_are_refused() {
    let (store, keys) = (InMemoryStore::new(), InMemoryKeyStore::new());
    let repo = branch_with_members(&store, &keys).await;
    let ada: serde_json::Value =
        serde_json::from_str(&payload_at(&store, "branch-central", 1).await).unwrap();

    let swapped = with_name_and_email_swapped(&ada);
    append_raw(
        &store,
        "branch-east",
        "MemberRegistered",
        &swapped.to_string(),
    )
    .await;
    // Another stream, so authentication fails first; in the same stream the envelope's
    // own field name is authenticated and the swap is seen as misplaced.
    assert!(personal_reason(&repo.load(&id("east")).await.unwrap_err()).is_some());

    let mut altered = ada.clone();
    let c = altered["name"]["$personal"]["c"]
        .as_str()
        .unwrap()
        .to_owned();
    // One base64 digit of the ciphertext changed.
    let flipped = match c.strip_prefix('A') {
        Some(rest) => format!("B{rest}"),
        None => format!("A{}", &c[1..]),
    };
    altered["name"]["$personal"]["c"] = serde_json::Value::String(flipped);
    let swapped_here = with_name_and_email_swapped(&ada);
    append_raw(
        &store,
        "branch-central",
        "MemberRegistered",
        &swapped_here.to_string(),
    )
    .await;
    store.clear_snapshots();
    let error = repo.load(&id("central")).await.unwrap_err();
    assert_eq!(
        personal_reason(&error),
        Some(&PersonalDataError::Misplaced),
        "{error:?}"
    );

    append_raw(
        &store,
        "branch-west",
        "MemberRegistered",
        &altered.to_string(),
    )
    .await;
    let error = repo.load(&id("west")).await.unwrap_err();
    assert_eq!(
        personal_reason(&error),
        Some(&PersonalDataError::AuthenticationFailed),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_swap_spelled_with_escaped_keys_is_refused_too() {
    let (store, keys) = (InMemoryStore::new(), InMemoryKeyStore::new());
    let repo = branch_with_members(&store, &keys).await;
    let ada: serde_json::Value =
        serde_json::from_str(&payload_at(&store, "branch-central", 1).await).unwrap();
    let swapped = with_name_and_email_swapped(&ada);
    // The same JSON value, with both envelope keys written as `"\u0024personal"`.
    let text = swapped
        .to_string()
        .replace("\"$personal\"", "\"\\u0024personal\"");
    assert_eq!(text.matches("\\u0024personal").count(), 2, "{text}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        swapped
    );
    append_raw(&store, "branch-central", "MemberRegistered", &text).await;
    store.clear_snapshots();
    let error = repo.load(&id("central")).await.unwrap_err();
    assert_eq!(
        personal_reason(&error),
        Some(&PersonalDataError::Misplaced),
        "{error:?}"
    );
}

#[tokio::test]
async fn values_stored_in_clear_before_a_field_was_marked_personal_still_load() {
    let (store, keys) = (InMemoryStore::new(), InMemoryKeyStore::new());
    let repo = Repository::<Branch, _>::new(store.clone()).with_key_store(keys.clone());
    // Written when `name` and `email` were plain strings; one email is an object-shaped
    // value that only looks like a forgotten mark.
    append_raw(
        &store,
        "branch-old",
        "MemberRegistered",
        r#"{"member_id":"cy","name":"Cy Clear","email":"cy@example.com"}"#,
    )
    .await;
    append_raw(
        &store,
        "branch-old",
        "MemberRegistered",
        r#"{"member_id":"di","name":"Di Gone","email":{"$forgotten":true}}"#,
    )
    .await;
    let branch = repo.load(&id("old")).await.unwrap().state;
    let cy = &branch.members["cy"];
    assert_eq!(cy.name.known().map(String::as_str), Some("Cy Clear"));
    assert_eq!(cy.email.known().map(String::as_str), Some("cy@example.com"));
    assert!(branch.members["di"].email.is_forgotten());
    assert_eq!(
        branch.members["di"].name.known().map(String::as_str),
        Some("Di Gone")
    );
}

/// A member directory: names by member id, `None` once forgotten.
#[derive(Debug, Default)]
struct Directory {
    names: BTreeMap<String, Option<String>>,
}

impl Projection for Directory {
    type Event = BranchEvent;

    fn name(&self) -> &str {
        "directory"
    }

    async fn handle(
        &mut self,
        _: &mut (),
        event: BranchEvent,
        _: &RecordedEvent,
    ) -> Result<(), BoxError> {
        if let BranchEvent::MemberRegistered(e) = event {
            self.names.insert(e.member_id, e.name.into_known());
        }
        Ok(())
    }

    async fn reset(&mut self, _: &mut ()) -> Result<(), BoxError> {
        self.names.clear();
        Ok(())
    }
}

#[tokio::test]
async fn a_rebuilt_projection_shows_the_redaction() {
    let (store, keys) = (InMemoryStore::new(), InMemoryKeyStore::new());
    branch_with_members(&store, &keys).await;
    let mut runner = ProjectionRunner::new(
        store.clone(),
        InMemoryCheckpoints::new(),
        Directory::default(),
    )
    .with_key_store(keys.clone());
    runner.catch_up().await.unwrap();
    assert_eq!(runner.projection().names["ada"].as_deref(), Some(ADA_NAME));

    personal::forget(&keys, &store, "ada").await.unwrap();
    runner.rebuild().await.unwrap();
    assert_eq!(runner.projection().names["ada"], None);
    assert_eq!(runner.projection().names["bob"].as_deref(), Some(BOB_NAME));

    // Without the key store the runner stops at the first personal event, with the reason.
    let mut blind = ProjectionRunner::new(
        store.clone(),
        InMemoryCheckpoints::new(),
        Directory::default(),
    );
    let error = blind.catch_up().await.unwrap_err();
    assert!(format!("{:?}", error).contains("NoKeys"), "{error:?}");
}

#[tokio::test]
async fn recorded_events_decode_with_a_ring_fetched_for_their_payload() {
    let (store, keys) = (InMemoryStore::new(), InMemoryKeyStore::new());
    branch_with_members(&store, &keys).await;
    let events: Vec<RecordedEvent> = store.read_all(Position::START).try_collect().await.unwrap();
    assert_eq!(
        personal::subjects_in(events[0].payload()),
        vec!["ada".to_owned()]
    );
    assert!(personal::subjects_in(events[2].payload()).is_empty());
    let ring = personal::KeyRing::for_payload(&keys, events[0].payload())
        .await
        .unwrap();
    let event: BranchEvent = ring.decode(&events[0]).unwrap();
    assert!(
        matches!(event, BranchEvent::MemberRegistered(e) if e.email.known().map(String::as_str) == Some(ADA_EMAIL))
    );
    // Without a ring, the plain decode refuses with the reason.
    assert!(matches!(
        events[0].decode::<BranchEvent>(),
        Err(DecodeError::PersonalData {
            reason: PersonalDataError::NoKeys,
            ..
        })
    ));
}

#[tokio::test]
async fn subject_ids_are_checked() {
    let (store, keys) = (InMemoryStore::new(), InMemoryKeyStore::new());
    let repo = Repository::<Branch, _>::new(store.clone()).with_key_store(keys.clone());
    let refused = repo
        .execute(&id("central"), |b| b.register("", ADA_NAME, ADA_EMAIL))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &refused,
            ExecuteError::Failed(Error::KeyStore(KeyStoreError::InvalidSubject { .. }))
        ),
        "{refused:?}"
    );
    assert!(matches!(
        keys.forget("a\0b").await,
        Err(KeyStoreError::InvalidSubject { .. })
    ));
    assert!(store.is_empty());
}

#[test]
fn the_harness_tests_the_known_and_the_forgotten_state() {
    let registered = MemberRegistered {
        member_id: "ada".into(),
        name: Personal::new(ADA_NAME.into()),
        email: Personal::new(ADA_EMAIL.into()),
    };
    Branch::given([registered.clone()])
        .when(|b| b.lend("ada", "Notes"))
        .then([BookLent {
            member_id: "ada".into(),
            book: "Notes".into(),
        }])
        .and_state(|b| b.members["ada"].name.known().map(String::as_str) == Some(ADA_NAME));

    Branch::given([registered.clone()])
        .and_forget("ada")
        .when(|b| b.lend("ada", "Notes"))
        .then_state(|b| b.members["ada"].name.is_forgotten() && b.members["ada"].loans.len() == 1);

    // A command storing new personal data of a forgotten subject fails, as with a key store.
    let failed = std::panic::catch_unwind(|| {
        Branch::given([registered.clone()])
            .and_forget("ada")
            .when(|b| b.register("ada", ADA_NAME, ADA_EMAIL))
            .then_state(|_| true);
    });
    let message = failed.unwrap_err();
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("forgotten"), "{message}");
}

#[test]
fn debug_output_never_shows_personal_values() {
    let registered = MemberRegistered {
        member_id: "ada".into(),
        name: Personal::new(ADA_NAME.into()),
        email: Personal::Forgotten,
    };
    let shown = format!("{registered:?}");
    assert!(
        !shown.contains(ADA_NAME) && shown.contains("Forgotten"),
        "{shown}"
    );
}
