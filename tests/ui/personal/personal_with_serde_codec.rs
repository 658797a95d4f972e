use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

mod as_text {
    pub fn serialize<S: serde::Serializer>(v: &esrs_core::personal::Personal<String>, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(v, s)
    }
}

#[derive(Event, Serialize, Deserialize)]
struct MemberJoined {
    #[event(subject)]
    member_id: String,
    #[event(personal)]
    #[serde(serialize_with = "as_text::serialize")]
    email: Personal<String>,
}

fn main() {}
