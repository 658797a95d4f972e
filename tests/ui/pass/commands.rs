//! Every accepted command shape: one event type, several, none, the enum, and queries
//! that return a `Result` of something else.

use esrs_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Added(u32);

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Reset;

#[derive(Default)]
struct Counter(u32);

#[aggregate(name = "counter")]
impl Counter {
    #[apply]
    fn added(&mut self, e: &Added) {
        self.0 += e.0;
    }

    #[apply]
    fn reset(&mut self, _: &Reset) {
        self.0 = 0;
    }

    fn one(&self) -> Result<Added, String> {
        Ok(Added(1))
    }
    fn many(&self) -> Result<Vec<Added>, String> {
        Ok(vec![Added(1), Added(2)])
    }
    fn maybe(&self) -> Result<Option<Reset>, String> {
        Ok((self.0 > 0).then_some(Reset))
    }
    fn mixed(&self) -> Result<Vec<CounterEvent>, String> {
        Ok(vec![Reset.into(), Added(1).into()])
    }
    fn array(&self) -> Result<[CounterEvent; 1], String> {
        Ok([Reset.into()])
    }
    fn nothing(&self) -> Result<(), String> {
        Ok(())
    }
    fn total(&self) -> Result<u32, String> {
        Ok(self.0)
    }
    fn this(&self) -> Result<Self, String> {
        Ok(Self(self.0))
    }
    // A lifetime of the method's own, even under a name the generated code might use.
    fn text<'state>(&'state self, s: &'state str) -> Result<&'state str, String> {
        Ok(s)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let repo = Repository::<Counter, _>::new(InMemoryStore::new());
    let id = StreamId::new("1").unwrap();
    repo.execute(&id, Counter::one).await.unwrap();
    repo.execute(&id, Counter::many).await.unwrap();
    repo.execute(&id, Counter::maybe).await.unwrap();
    repo.execute(&id, Counter::mixed).await.unwrap();
    repo.execute(&id, Counter::array).await.unwrap();
    repo.execute(&id, Counter::nothing).await.unwrap();
    let c = repo.load(&id).await.unwrap();
    assert_eq!((c.total().unwrap(), c.version), (0, 7));
    let _ = (c.this(), c.text("x"));
}
