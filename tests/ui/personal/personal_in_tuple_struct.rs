use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
struct MemberJoined(#[event(subject)] String, #[event(personal)] Personal<String>);

fn main() {}
