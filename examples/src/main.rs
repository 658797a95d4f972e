//! The main example: a walk through the shopping cart and the bank account.
//!
//! ```sh
//! cargo run -p esrs-examples                                            # in memory
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run -p esrs-examples
//! ```

use esrs_core::InMemoryStore;
use esrs_examples::tour::{self, BoxError, Ids};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut out = std::io::stdout();
    println!("In memory (set DATABASE_URL to run on PostgreSQL).\n");
    tour::run(InMemoryStore::new(), &Ids::fixed(), &mut out).await
}
