use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
struct MemberJoined {
    #[event(subject)]
    member_id: String,
    #[event(subject)]
    account_id: String,
    #[event(personal)]
    email: Personal<String>,
}

fn main() {}
