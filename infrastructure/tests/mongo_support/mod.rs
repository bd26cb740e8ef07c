//! Shared by the MongoDB test suites: where the tests' MongoDB comes from, and a fresh database
//! per test.
//!
//! - `LCT_TEST_MONGODB_URI` names a real replica set; each test gets a database of its own
//!   (`lct_test_<uuid>`), dropped when the test ends.
//! - Otherwise `LCT_TEST_MONGODB_STANDIN` names the binary of the wire-protocol stand-in
//!   (`jongodb`, see `standin.rs`); each test starts a stand-in of its own. It is not MongoDB.
//!
//! Tests whose meaning depends on MongoDB's write-conflict and transaction-abort semantics (racing
//! appends, claims, joins and picks) use [`TestDatabase::real_replica_set`] and have
//! `real_replica_set` in their names; they fail rather than pass without a real replica set.
//!
//! The suites are `#[ignore]`d so that a plain `cargo test` reports them as not run; run them
//! with `-- --ignored` and one of the variables set (`--skip real_replica_set` with the stand-in).
#![allow(dead_code)]

pub mod standin;

use infrastructure::{MongoEventStore, MongoSettings};
use mongodb::bson::Document;
use mongodb::{Client, Collection};
pub use standin::{StandIn, STANDIN_VARIABLE};
use uuid::Uuid;

pub const URI_VARIABLE: &str = "LCT_TEST_MONGODB_URI";

/// The connection string of the real test replica set, if one is configured.
pub fn real_uri() -> Option<String> {
    std::env::var(URI_VARIABLE).ok().filter(|uri| !uri.trim().is_empty())
}

/// A database of its own for one test.
pub struct TestDatabase {
    pub client: Client,
    pub name: String,
    pub uri: String,
    /// The stand-in serving this test, when no real replica set is configured.
    pub standin: Option<StandIn>,
}

impl TestDatabase {
    /// A database on the real replica set when `LCT_TEST_MONGODB_URI` is set, else on a
    /// stand-in of its own (`LCT_TEST_MONGODB_STANDIN`).
    pub async fn new() -> Self {
        match real_uri() {
            Some(uri) => Self::on(uri, None).await,
            None if standin::binary().is_some() => {
                let standin = StandIn::start();
                Self::on(standin.uri.clone(), Some(standin)).await
            }
            None => panic!(
                "{URI_VARIABLE} must name a MongoDB replica set (e.g. mongodb://localhost:27017/?replicaSet=rs0), or \
                 {STANDIN_VARIABLE} the wire-protocol stand-in's bin/jongodb (see docs/mongodb.md)"
            ),
        }
    }

    /// A database on a real replica set, for tests whose meaning depends on MongoDB's
    /// write-conflict and transaction-abort semantics, which the stand-in does not have.
    pub async fn real_replica_set() -> Self {
        let uri = real_uri().unwrap_or_else(|| {
            panic!(
                "this test needs a real MongoDB replica set in {URI_VARIABLE}: the wire-protocol stand-in detects no \
                 write conflicts, so it cannot show what this test checks"
            )
        });
        Self::on(uri, None).await
    }

    async fn on(uri: String, standin: Option<StandIn>) -> Self {
        let client = Client::with_uri_str(&uri).await.expect("a valid MongoDB connection string");
        Self { client, name: format!("lct_test_{}", Uuid::new_v4().simple()), uri, standin }
    }

    /// A store on this database with its indexes in place, as after start-up.
    pub async fn store(&self) -> MongoEventStore {
        let store = MongoEventStore::connect(MongoSettings::new(&self.uri, &self.name)).await.expect("connecting");
        store.ensure_indexes().await.expect("creating the indexes");
        store
    }

    pub fn collection(&self, name: &str) -> Collection<Document> {
        self.client.database(&self.name).collection(name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // A stand-in goes with its data (it has no `dropDatabase`); a real replica set's test
        // database is dropped. Dropping needs the runtime; the suites run on the
        // multi-threaded one.
        if self.standin.is_some() {
            return;
        }
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
