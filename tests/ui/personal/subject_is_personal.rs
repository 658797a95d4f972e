use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
struct MemberJoined {
    #[event(subject, personal)]
    member_id: Personal<String>,
    #[event(personal)]
    email: Personal<String>,
}

fn main() {}
