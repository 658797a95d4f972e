use esrs_core::prelude::*;

#[derive(Event)]
union Payload {
    number: u64,
    float: f64,
}

fn main() {}
