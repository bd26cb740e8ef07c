//! Shared by the MongoDB test suites: the replica set named by `LCT_TEST_MONGODB_URI`, and a
//! fresh database per test that is dropped when the test ends.
//!
//! These suites are `#[ignore]`d so that a plain `cargo test` reports them as not run; run
//! them with `-- --ignored` and the variable set. Run that way without the variable, they fail
//! rather than pass.
#![allow(dead_code)]

use infrastructure::{MongoEventStore, MongoSettings};
use mongodb::bson::Document;
use mongodb::{Client, Collection};
use uuid::Uuid;

pub const URI_VARIABLE: &str = "LCT_TEST_MONGODB_URI";

/// The connection string of the test replica set.
pub fn uri() -> String {
    match std::env::var(URI_VARIABLE) {
        Ok(uri) if !uri.trim().is_empty() => uri,
        _ => panic!(
            "{URI_VARIABLE} must name a MongoDB replica set, e.g. \
             mongodb://localhost:27017/?replicaSet=rs0 (see docs/mongodb.md)"
        ),
    }
}

/// A database of its own for one test; dropped at the end of the test.
pub struct TestDatabase {
    pub client: Client,
    pub name: String,
}

impl TestDatabase {
    pub async fn new() -> Self {
        let client = Client::with_uri_str(uri()).await.expect("a valid LCT_TEST_MONGODB_URI");
        Self { client, name: format!("lct_test_{}", Uuid::new_v4().simple()) }
    }

    /// A store on this database with its indexes in place, as after start-up.
    pub async fn store(&self) -> MongoEventStore {
        let store = MongoEventStore::connect(MongoSettings::new(uri(), &self.name)).await.expect("connecting");
        store.ensure_indexes().await.expect("creating the indexes");
        store
    }

    pub fn collection(&self, name: &str) -> Collection<Document> {
        self.client.database(&self.name).collection(name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Dropping needs the runtime; the suites run on the multi-threaded one.
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return;
        }
        let database = self.client.database(&self.name);
        tokio::task::block_in_place(|| {
            let _ = handle.block_on(async { database.drop().await });
        });
    }
}
