use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
struct MemberLeft {
    #[event(subject)]
    member_id: String,
}

fn main() {}
