use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
struct MemberJoined {
    #[event(subject)]
    member_id: String,
    #[event(personal = true)]
    email: Personal<String>,
}

fn main() {}
