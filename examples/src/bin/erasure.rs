//! A library member's erasure request, end to end: personal data encrypted per member,
//! forgotten on request, with loans, states and the loan desk carrying on.
//!
//! ```sh
//! cargo run -p esrs-examples --bin erasure                            # in memory
//! DATABASE_URL=postgres://… ESRS_MASTER_KEY=<64 hex digits> \
//!     cargo run -p esrs-examples --bin erasure                        # PostgreSQL
//! ```
//!
//! On PostgreSQL the keys are kept in `esrs_postgres::PgKeyStore`, wrapped by the master key
//! of `ESRS_MASTER_KEY`. Without it the example uses a fixed demonstration key, and says so:
//! a real program reads its master key from a secret store, and the schema refuses any other
//! master key from its first use on.

use std::process::ExitCode;

use esrs_core::InMemoryStore;
use esrs_core::personal::{InMemoryKeyStore, MasterKey};
use esrs_examples::{BoxError, library};
use esrs_postgres::{PgKeyStore, PgStore};

/// The master key of this demonstration, for a database that holds nothing of value.
const DEMO_MASTER_KEY: [u8; 32] = *b"esrs erasure example master key!";

#[tokio::main]
async fn main() -> ExitCode {
    esrs_examples::exit_code(run().await)
}

async fn run() -> Result<(), BoxError> {
    let mut out = std::io::stdout();
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => {
            let store = PgStore::connect(&url).await?;
            store.migrate().await?;
            let master = match std::env::var("ESRS_MASTER_KEY") {
                Ok(hex) if !hex.is_empty() => MasterKey::from_hex(&hex)?,
                _ => {
                    println!(
                        "ESRS_MASTER_KEY is not set: using the example's demonstration master key, which is public.\n"
                    );
                    MasterKey::from_bytes(DEMO_MASTER_KEY)
                }
            };
            let keys = PgKeyStore::open(&store, master).await?;
            let suffix = format!("-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
            library::run(store, keys, &suffix, &mut out).await?;
        }
        _ => {
            library::run(InMemoryStore::new(), InMemoryKeyStore::new(), "", &mut out).await?;
        }
    }
    Ok(())
}
