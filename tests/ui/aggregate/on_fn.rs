use esrs_core::prelude::*;

#[aggregate(name = "cart")]
fn cart() {}

fn main() {}
