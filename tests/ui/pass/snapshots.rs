//! Snapshot settings: cadence, version, and a fingerprint that follows the fold's code.

use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Ticked;

#[derive(Default, Serialize, Deserialize)]
struct A(u64);

#[aggregate(name = "a", snapshot_every = 50, snapshot_version = 3)]
impl A {
    #[apply]
    fn ticked(&mut self, _: &Ticked) {
        self.0 += 1;
    }
}

#[derive(Default, Serialize, Deserialize)]
struct B(u64);

// The same fold, spaced differently: the same fingerprint.
#[aggregate(name = "b", snapshot_every = 50)]
impl B {
    #[apply]
    fn ticked( &mut self , _ : &Ticked ) { self.0+=1; }
}

#[derive(Default, Serialize, Deserialize)]
struct C(u64);

// Another fold: another fingerprint.
#[aggregate(name = "c", snapshot_every = 50)]
impl C {
    #[apply]
    fn ticked(&mut self, _: &Ticked) {
        self.0 += 2;
    }
}

#[derive(Default)]
struct NoSnapshots(u64);

#[aggregate(name = "no_snapshots")]
impl NoSnapshots {
    #[apply]
    fn ticked(&mut self, _: &Ticked) {
        self.0 += 1;
    }
}

fn main() {
    assert_eq!(A::SNAPSHOT_EVERY, Some(50));
    assert_eq!(A::SNAPSHOT_KEY.schema_version, 3);
    assert_eq!(B::SNAPSHOT_KEY.schema_version, 1);
    assert_eq!(A::SNAPSHOT_KEY.fingerprint, B::SNAPSHOT_KEY.fingerprint);
    assert_ne!(A::SNAPSHOT_KEY.fingerprint, C::SNAPSHOT_KEY.fingerprint);
    assert_eq!(NoSnapshots::SNAPSHOT_EVERY, None);
    assert!(NoSnapshots::default().encode_snapshot().is_none());
    assert!(A(4).encode_snapshot().unwrap().unwrap().get() == "4");
}
