use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize)]
struct Wrapped<T> {
    inner: T,
}

fn main() {}
