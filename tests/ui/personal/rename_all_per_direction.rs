use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
#[serde(rename_all(serialize = "camelCase", deserialize = "camelCase"))]
struct MemberJoined {
    #[event(subject)]
    member_id: String,
    #[event(personal)]
    email_address: Personal<String>,
}

fn main() {}
