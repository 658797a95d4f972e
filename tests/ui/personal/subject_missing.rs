use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
struct MemberJoined {
    member_id: String,
    #[event(personal)]
    email: Personal<String>,
}

fn main() {}
