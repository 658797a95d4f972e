//! What a store would do with the events: encode, decode, encode again, apply, snapshot.

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::Value;

use crate::aggregate::Aggregate;
use crate::error::ErrorChain;
use crate::event::{EventSet, Payload};

use super::aggregate::Then;

use super::report::*;

/// Encodes `event`, decodes it back by stored name and version, encodes the result again
/// and checks both encodings agree. Returns the decoded event and its display.
pub(super) fn round_trip<E: EventSet>(
    event: &E,
    label: &str,
) -> Result<(E, Shown<'static>), String> {
    let (first, payload) = Shown::encode(event, label)?;
    let decoded = crate::personal::in_harness_decode(first.name, || {
        E::decode(first.name, first.version, payload.get())
    })
    .map_err(|e| {
        format!(
            "{label} ({first}) does not decode back: {}",
            ErrorChain::new(&e)
        )
    })?;
    let (again, _) = Shown::encode(&decoded, label)?;
    if again != first {
        return Err(format!(
            "{label} does not survive a store round trip; check its serde attributes and upcasters:\n  \
             encoded:             {first}\n  decoded and encoded: {again}"
        ));
    }
    Ok((decoded, first))
}

/// Applies `event` to `state`, turning a panic of the handler into a failure that names the
/// event.
pub(super) fn apply<A: Aggregate>(
    state: &mut A,
    event: &A::Event,
    label: &str,
    shown: &Shown<'_>,
) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| state.apply(event))).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-text panic".to_owned());
        format!("applying {label} ({shown}) panicked: {message}")
    })
}

/// The successful end of a command: its events round-tripped and applied.
pub(super) struct Settled<A: Aggregate> {
    pub(super) then: Then<A>,
    pub(super) shown: Vec<Shown<'static>>,
}

pub(super) fn settle<A: Aggregate>(
    mut state: A,
    events: Vec<A::Event>,
) -> Result<Settled<A>, String> {
    let mut shown = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let label = format!("event {} produced by the command", i + 1);
        let (decoded, display) = round_trip(event, &label)?;
        apply(&mut state, &decoded, &label, &display)?;
        shown.push(display);
    }
    check_snapshot(&state)?;
    Ok(Settled {
        then: Then { state, events },
        shown,
    })
}

/// For an aggregate with snapshots: the state must encode, decode and encode again to the
/// same payload, or a load from a snapshot would differ from a load of the events.
pub(super) fn check_snapshot<A: Aggregate>(state: &A) -> Result<(), String> {
    if A::SNAPSHOT_EVERY.is_none() {
        return Ok(());
    }
    let payload = match state.encode_snapshot() {
        None => return Ok(()),
        Some(Ok(payload)) => payload,
        Some(Err(e)) => {
            return Err(format!(
                "the state cannot be encoded as a snapshot: {}",
                ErrorChain::new(&e)
            ));
        }
    };
    let decoded = match A::decode_snapshot(&payload) {
        None => return Ok(()),
        Some(Ok(decoded)) => decoded,
        Some(Err(e)) => {
            return Err(format!(
                "the snapshot of the state does not decode back: {}\n  snapshot: {}",
                ErrorChain::new(&e),
                payload.get()
            ));
        }
    };
    let again = match decoded.encode_snapshot() {
        Some(Ok(again)) => again,
        Some(Err(e)) => {
            return Err(format!(
                "the decoded snapshot cannot be encoded: {}",
                ErrorChain::new(&e)
            ));
        }
        None => return Ok(()),
    };
    let parse = |p: &Payload| serde_json::from_str::<Value>(p.get()).ok();
    if parse(&payload) != parse(&again) {
        return Err(format!(
            "the state does not survive a snapshot round trip; check its serde attributes:\n  \
             encoded:             {}\n  decoded and encoded: {}",
            payload.get(),
            again.get()
        ));
    }
    Ok(())
}
