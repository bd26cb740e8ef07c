//! The MongoDB event store, used in production against a replica set.
//!
//! An append is one multi-document transaction (snapshot read concern, majority write
//! concern): it reads the stream's current version, releases and claims unique values in
//! `claims`, and inserts one document per event in `events`. The unique indexes
//! `{streamId, version}` and `{scope, value}` make a lost race fail rather than double-book;
//! a duplicate key, reported as a write error or as a command error, becomes the port's
//! `VersionConflict` or `UniqueTaken`. Transactions that the server labels transient are
//! retried whole; a commit with an unknown result is retried, and when its outcome stays unknown
//! (no answer within the operation timeout, a connection lost) the stream is read before
//! answering: the events there mean it committed.
//!
//! Nothing here needs a server to be constructed: the driver connects lazily, so while the
//! replica set is unreachable every operation fails with `Unavailable` after the server
//! selection timeout, and the process recovers by itself when it is back. The unique indexes
//! are created by [`MongoEventStore::ensure_indexes`] (at start-up, in the background until it
//! succeeds, and again after any outage); appends refuse to run before they exist, since
//! correctness depends on them.

mod append;
mod config;
mod documents;
mod errors;
mod indexes;

pub use config::{redact_uri, ConfigError, MongoSettings, Secret, DEFAULT_OPERATION_TIMEOUT, DEFAULT_TIMEOUT};
pub use documents::{CLAIMS, EVENTS, SNAPSHOTS};
pub use indexes::{CLAIM_INDEX, EVENT_VERSION_INDEX};

use async_trait::async_trait;
use domain::ports::{AppendRequest, EventStore, RecordedEvent, Snapshot, StoreError};
use errors::{class_of, store_error, Class};
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::ErrorKind;
use mongodb::options::{DatabaseOptions, ReadConcern, ReadPreference, SelectionCriteria, WriteConcern};
use mongodb::{Client, Database};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use uuid::Uuid;

/// Streams per query of [`EventStore::current_versions`].
const VERSIONS_PER_QUERY: usize = 500;

/// Longest pause between two attempts of the start-up index creation.
const MAX_INDEX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Event store in a MongoDB replica set. Cheap to clone; clones share one client.
#[derive(Clone)]
pub struct MongoEventStore {
    inner: Arc<Inner>,
}

struct Inner {
    settings: MongoSettings,
    client: OnceCell<Client>,
    indexes_ready: AtomicBool,
}

impl MongoEventStore {
    /// Builds the client from `settings` without contacting any server (an SRV connection
    /// string is resolved now if DNS answers, otherwise on first use). Fails only when the
    /// configuration cannot work.
    pub async fn connect(settings: MongoSettings) -> Result<Self, ConfigError> {
        settings.validate()?;
        let store = Self {
            inner: Arc::new(Inner { settings, client: OnceCell::new(), indexes_ready: AtomicBool::new(false) }),
        };
        if let Err(error) = store.inner.client.get_or_try_init(|| store.build_client()).await {
            let resolvable_later = matches!(*error.kind, ErrorKind::DnsResolve { .. } | ErrorKind::Io(_));
            if !(store.inner.settings.uses_srv() && resolvable_later) {
                return Err(ConfigError(format!("configuring the MongoDB client: {}", error.kind)));
            }
            tracing::warn!(error = %error.kind, "MongoDB SRV record not resolved yet; retrying on use");
        }
        Ok(store)
    }

    async fn build_client(&self) -> mongodb::error::Result<Client> {
        let options = self.inner.settings.client_options().await?;
        let description = config::describe(&options);
        let client = Client::with_options(options)?;
        tracing::info!(database = %self.inner.settings.database, mongodb = %description, "using the MongoDB event store");
        Ok(client)
    }

    async fn client(&self) -> Result<&Client, StoreError> {
        self.inner.client.get_or_try_init(|| self.build_client()).await.map_err(|e| store_error("connecting", &e))
    }

    /// The database, with majority read and write concerns and the primary for everything.
    async fn database(&self) -> Result<Database, StoreError> {
        let mut options = DatabaseOptions::default();
        options.read_concern = Some(ReadConcern::majority());
        options.write_concern = Some(WriteConcern::majority());
        options.selection_criteria = Some(SelectionCriteria::ReadPreference(ReadPreference::Primary));
        Ok(self.client().await?.database_with_options(&self.inner.settings.database, options))
    }

    /// Creates the unique indexes; creating them again changes nothing. Errors: `Unavailable`
    /// while the replica set cannot be reached (or refuses the specification).
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let database = self.database().await?;
        self.bounded(async {
            for (collection, models) in indexes::specifications() {
                database
                    .collection::<Document>(collection)
                    .create_indexes(models)
                    .await
                    .map_err(|e| store_error(&format!("creating the indexes of {collection}"), &e))?;
            }
            Ok(())
        })
        .await?;
        if !self.inner.indexes_ready.swap(true, Ordering::SeqCst) {
            tracing::info!(database = %self.inner.settings.database, "MongoDB indexes are in place");
        }
        Ok(())
    }

    /// Calls [`Self::ensure_indexes`] until it succeeds, waiting longer after each failure (up
    /// to 30 s). Meant to be spawned at start-up so that a pod started before its replica set
    /// becomes ready by itself.
    pub async fn ensure_indexes_until_done(self) {
        let mut delay = Duration::from_millis(500);
        loop {
            match self.ensure_indexes().await {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "MongoDB indexes not created yet");
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_INDEX_RETRY_DELAY);
        }
    }

    async fn require_indexes(&self) -> Result<(), StoreError> {
        if self.inner.indexes_ready.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.ensure_indexes().await
    }

    /// Runs `operation` within the operation timeout; past it the answer is `Unavailable`.
    async fn bounded<T>(&self, operation: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let limit = self.inner.settings.operation_timeout;
        // An operation dropped before its end (its caller gave up first, as a readiness probe
        // does after 2 s) may have met an outage that nobody else saw.
        let mut guard = OutageUnlessFinished { indexes_ready: &self.inner.indexes_ready, finished: false };
        let outcome = tokio::time::timeout(limit, operation).await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!("MongoDB did not answer within {} ms", limit.as_millis())))
        });
        guard.finished = true;
        self.note_outage(&outcome);
        outcome
    }

    /// After an outage the server may have come back without our indexes (a new or restored
    /// deployment): check them again before the next append.
    fn note_outage<T>(&self, outcome: &Result<T, StoreError>) {
        if matches!(outcome, Err(StoreError::Unavailable(_))) {
            self.inner.indexes_ready.store(false, Ordering::SeqCst);
        }
    }
}

/// Takes the indexes for unchecked when its operation is dropped before it finished.
struct OutageUnlessFinished<'a> {
    indexes_ready: &'a AtomicBool,
    finished: bool,
}

impl Drop for OutageUnlessFinished<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.indexes_ready.store(false, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl EventStore for MongoEventStore {
    async fn load(&self, stream_id: Uuid, after_version: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        // Versions are stored as 64-bit signed integers: none comes after one beyond them.
        if i64::try_from(after_version).is_err() {
            return Ok(Vec::new());
        }
        let events = self.database().await?.collection::<Document>(EVENTS);
        self.bounded(async {
            let mut filter = documents::stream_filter(stream_id);
            filter.insert("version", doc! { "$gt": documents::version_bson(after_version)? });
            let mut cursor =
                events.find(filter).sort(doc! { "version": 1 }).await.map_err(|e| store_error("loading", &e))?;
            let mut loaded = Vec::new();
            while cursor.advance().await.map_err(|e| store_error("loading", &e))? {
                let document = cursor.deserialize_current().map_err(|e| store_error("loading", &e))?;
                let event = documents::recorded_event(&document)?;
                let expected = after_version + loaded.len() as u64 + 1;
                if event.version != expected || event.stream_id != stream_id {
                    return Err(StoreError::Corrupt(format!(
                        "stream {stream_id}: found version {} where {expected} was expected",
                        event.version
                    )));
                }
                loaded.push(event);
            }
            Ok(loaded)
        })
        .await
    }

    async fn append(&self, request: AppendRequest) -> Result<Vec<RecordedEvent>, StoreError> {
        self.append_resolving_unknown_commits(request).await
    }

    async fn load_snapshot(&self, stream_id: Uuid) -> Result<Option<Snapshot>, StoreError> {
        let snapshots = self.database().await?.collection::<Document>(SNAPSHOTS);
        self.bounded(async {
            let found = snapshots
                .find_one(doc! { "_id": documents::uuid_bson(stream_id) })
                .await
                .map_err(|e| store_error("loading a snapshot", &e))?;
            Ok(found.and_then(|document| match documents::snapshot_from_document(&document) {
                Ok(snapshot) => Some(snapshot),
                Err(reason) => {
                    tracing::warn!(%stream_id, %reason, "ignoring a stored snapshot; replaying the stream's events");
                    None
                }
            }))
        })
        .await
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let snapshots = self.database().await?.collection::<Document>(SNAPSHOTS);
        let mut document = documents::snapshot_document(snapshot)?;
        let id = document.remove("_id").unwrap_or_default();
        let version = documents::version_bson(snapshot.state.version)?;
        let schema = i64::from(domain::ports::SNAPSHOT_SCHEMA_VERSION);
        // An older snapshot, or one of another schema version, is replaced.
        let filter =
            doc! { "_id": id, "$or": [{ "version": { "$lt": version } }, { "schemaVersion": { "$ne": schema } }] };
        let update = doc! { "$set": document };
        self.bounded(async {
            // Only an older (or unreadable) snapshot matches. When none matches because a newer one is stored,
            // the upsert collides with its `_id` and the newer one is kept; when it collides with
            // a snapshot saved concurrently, the update without upsert replaces it if older.
            let saved = snapshots.update_one(filter.clone(), update.clone()).upsert(true).await;
            match saved {
                Ok(_) => Ok(()),
                Err(e) if matches!(class_of(&e), Class::Duplicate(_)) => {
                    snapshots.update_one(filter, update).await.map_err(|e| store_error("saving a snapshot", &e))?;
                    Ok(())
                }
                Err(e) => Err(store_error("saving a snapshot", &e)),
            }
        })
        .await
    }

    async fn check(&self) -> Result<(), StoreError> {
        let database = self.database().await?;
        let hello = self
            .bounded(async { database.run_command(doc! { "hello": 1 }).await.map_err(|e| store_error("hello", &e)) })
            .await?;
        if !runs_transactions(&hello) {
            return Err(StoreError::Unavailable(
                "MongoDB is a standalone server: appends are transactions, which need a replica set (a single-node \
                 one will do) or a sharded cluster"
                    .into(),
            ));
        }
        // Ready means able to append, which needs the unique indexes.
        self.require_indexes().await
    }

    /// One aggregation per few hundred streams that reads the top entry of each stream in the
    /// `{streamId, version}` index, not the events.
    async fn current_versions(&self, streams: &[Uuid]) -> Result<Vec<u64>, StoreError> {
        let events = self.database().await?.collection::<Document>(EVENTS);
        let mut found = std::collections::HashMap::with_capacity(streams.len());
        for chunk in streams.chunks(VERSIONS_PER_QUERY) {
            let pipeline = versions_pipeline(chunk.iter().map(|id| documents::uuid_bson(*id)).collect());
            self.bounded(async {
                let mut cursor =
                    events.aggregate(pipeline).await.map_err(|e| store_error("reading stream versions", &e))?;
                while cursor.advance().await.map_err(|e| store_error("reading stream versions", &e))? {
                    let document =
                        cursor.deserialize_current().map_err(|e| store_error("reading stream versions", &e))?;
                    // One stream's damage must not stop the check of every stream the pod
                    // serves: it is left out. (Its own reads report the damage; this check runs
                    // every few seconds, so it says so at debug level only.)
                    match documents::stream_version(&document) {
                        Ok((stream, version)) => {
                            found.insert(stream, version);
                        }
                        Err(error) => tracing::debug!(
                            stream = ?document.get("_id"),
                            cause = %error,
                            "a stream's last version does not decode; the periodic check leaves it out"
                        ),
                    }
                }
                Ok(())
            })
            .await?;
        }
        Ok(streams.iter().map(|stream| found.get(stream).copied().unwrap_or(0)).collect())
    }
}

/// Whether the server that answered `hello` runs multi-document transactions: a replica set's
/// member (it names its set) or a sharded cluster's router.
fn runs_transactions(hello: &Document) -> bool {
    hello.get_str("setName").is_ok() || hello.get_str("msg") == Ok("isdbgrid")
}

/// The aggregation of the last version of each of `streams`: the `{streamId, version}` index
/// walked backwards, its first entry per stream.
fn versions_pipeline(streams: Vec<Bson>) -> [Document; 3] {
    [
        doc! { "$match": { "streamId": { "$in": streams } } },
        doc! { "$sort": { "streamId": -1, "version": -1 } },
        doc! { "$group": { "_id": "$streamId", "version": { "$first": "$version" } } },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ports::{EventMetadata, UniqueKey};
    use domain::{PlayerLimit, TournamentEvent, TournamentName};
    use std::time::Instant;

    /// A replica set on loopback ports where nothing listens: no MongoDB server is involved.
    async fn unreachable_store() -> MongoEventStore {
        let mut settings = MongoSettings::new(
            "mongodb://127.0.0.1:1,127.0.0.1:2/?replicaSet=rs0",
            format!("lct_{}", Uuid::new_v4().simple()),
        );
        settings.timeout = Some(Duration::from_millis(300));
        MongoEventStore::connect(settings).await.expect("building the client needs no server")
    }

    fn create_request() -> AppendRequest {
        AppendRequest {
            stream_id: Uuid::new_v4(),
            expected_version: 0,
            events: vec![TournamentEvent::TournamentCreated {
                name: TournamentName::parse("Friday").unwrap(),
                player_limit: PlayerLimit::new(4).unwrap(),
            }],
            metadata: EventMetadata { request_id: None, recorded_at_ms: 1 },
            claims: vec![UniqueKey::tournament_name("Friday")],
            releases: vec![],
        }
    }

    #[tokio::test]
    async fn every_operation_on_an_unreachable_replica_set_is_unavailable_within_the_timeout() {
        let store = unreachable_store().await;
        let started = Instant::now();
        let id = Uuid::new_v4();
        assert!(matches!(store.check().await, Err(StoreError::Unavailable(_))));
        assert!(matches!(store.load(id, 0).await, Err(StoreError::Unavailable(_))));
        assert!(matches!(store.load_snapshot(id).await, Err(StoreError::Unavailable(_))));
        assert!(matches!(store.append(create_request()).await, Err(StoreError::Unavailable(_))));
        assert!(matches!(store.ensure_indexes().await, Err(StoreError::Unavailable(_))));
        let snapshot = Snapshot { stream_id: id, state: Default::default() };
        assert!(matches!(store.save_snapshot(&snapshot).await, Err(StoreError::Unavailable(_))));
        // Six operations, each bounded by the 300 ms server selection timeout.
        assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn an_operation_whose_caller_gave_up_has_the_indexes_checked_again() {
        // A readiness probe gives up (its own time limit) before the server selection does: the
        // outage it met is seen by nobody else, and the set may come back restored empty.
        let store = unreachable_store().await;
        store.inner.indexes_ready.store(true, Ordering::SeqCst);
        let gave_up = tokio::time::timeout(Duration::from_millis(50), store.check()).await;
        assert!(gave_up.is_err(), "the probe gave up first");
        assert!(!store.inner.indexes_ready.load(Ordering::SeqCst), "the indexes are taken as unchecked");
    }

    #[test]
    fn only_replica_sets_and_sharded_clusters_run_the_appends_transactions() {
        assert!(runs_transactions(&doc! { "isWritablePrimary": true, "setName": "rs0", "ok": 1.0 }));
        assert!(runs_transactions(&doc! { "isWritablePrimary": true, "msg": "isdbgrid", "ok": 1.0 }));
        assert!(!runs_transactions(&doc! { "isWritablePrimary": true, "maxWireVersion": 21, "ok": 1.0 }));
    }

    #[test]
    fn stream_versions_are_read_in_the_order_of_the_version_index_walked_backwards() {
        // So that MongoDB reads one index entry per stream (a distinct scan) instead of sorting
        // every entry of the streams asked for.
        let pipeline = versions_pipeline(vec![]);
        let (_, indexes) = indexes::specifications().into_iter().find(|(name, _)| *name == EVENTS).unwrap();
        let backwards: Document =
            indexes[0].keys.iter().map(|(key, order)| (key.clone(), Bson::Int32(-order.as_i32().unwrap()))).collect();
        assert_eq!(pipeline[1], doc! { "$sort": backwards });
        assert_eq!(pipeline[2], doc! { "$group": { "_id": "$streamId", "version": { "$first": "$version" } } });
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_server_selection_error_classified_unavailable() {
        let store = unreachable_store().await;
        let error = store.client().await.unwrap().database("admin").run_command(doc! { "ping": 1 }).await.unwrap_err();
        assert_eq!(errors::parts(&error).origin, errors::Origin::ServerSelection);
        assert_eq!(class_of(&error), Class::Unavailable);
    }

    #[tokio::test]
    async fn an_invalid_configuration_is_refused_at_start_up() {
        assert!(MongoEventStore::connect(MongoSettings::new("mongodb://", "lct")).await.is_err());
        assert!(MongoEventStore::connect(MongoSettings::new("mongodb://a/?replicaSet=", "")).await.is_err());
    }
}
