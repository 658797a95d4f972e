use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, schemars::JsonSchema)]
struct MemberId(u64);

#[derive(Event, Serialize, Deserialize)]
struct MemberJoined {
    #[event(subject)]
    member: MemberId,
    #[event(personal)]
    email: Personal<String>,
}

fn main() {}
