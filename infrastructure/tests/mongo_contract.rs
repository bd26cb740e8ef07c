//! The event store contract, and what the MongoDB adapter adds to it (indexes, document
//! layout, atomicity of claims and events), against a real replica set or the wire-protocol
//! stand-in:
//!
//! ```text
//! LCT_TEST_MONGODB_URI='mongodb://localhost:27017/?replicaSet=rs0' \
//!     cargo test -p infrastructure --test mongo_contract -- --ignored
//! LCT_TEST_MONGODB_STANDIN=tests/mongo-standin/node_modules/@jongodb/memory-server-bin-linux-x64-gnu/bin/jongodb \
//!     cargo test -p infrastructure --test mongo_contract -- --ignored --skip real_replica_set
//! ```
//!
//! The tests with `real_replica_set` in their names race transactions against each other and
//! need a real replica set: the stand-in does not detect write conflicts. Without `--ignored`
//! every test here is reported as ignored, with the reason.

mod mongo_support;

use domain::ports::{AppendRequest, EventMetadata, EventStore, StoreError, UniqueKey};
use domain::{PlayerLimit, PlayerName, PlayerSurname, TournamentEvent, TournamentName};
use infrastructure::mongo::{CLAIMS, CLAIM_INDEX, EVENTS, EVENT_VERSION_INDEX};
use mongo_support::TestDatabase;
use mongodb::bson::{doc, spec::BinarySubtype, Bson, Document};
use mongodb::Collection;
use std::sync::Arc;
use uuid::Uuid;

infrastructure::event_store_contract_tests!(basic, snapshots;
    #[ignore = "needs MongoDB or its stand-in: LCT_TEST_MONGODB_URI or LCT_TEST_MONGODB_STANDIN, and --ignored"]
    {
        let database = TestDatabase::new().await;
        let store = database.store().await;
        (Arc::new(store) as Arc<dyn EventStore>, database)
    }
);

/// Racing transactions: one winner each only where the server detects write conflicts.
mod real_replica_set {
    use super::*;

    infrastructure::event_store_contract_tests!(racing;
        #[ignore = "races transactions: needs a real replica set in LCT_TEST_MONGODB_URI, and --ignored"]
        {
            let database = TestDatabase::real_replica_set().await;
            let store = database.store().await;
            (Arc::new(store) as Arc<dyn EventStore>, database)
        }
    );
}

fn created(name: &str) -> TournamentEvent {
    TournamentEvent::TournamentCreated {
        name: TournamentName::parse(name).unwrap(),
        player_limit: PlayerLimit::new(4).unwrap(),
    }
}

fn joined(name: &str) -> TournamentEvent {
    TournamentEvent::PlayerJoined {
        name: PlayerName::parse(name).unwrap(),
        surname: PlayerSurname::parse("S").unwrap(),
    }
}

fn request(stream_id: Uuid, expected_version: u64, events: Vec<TournamentEvent>) -> AppendRequest {
    AppendRequest {
        stream_id,
        expected_version,
        events,
        metadata: EventMetadata { request_id: Some(Uuid::new_v4()), recorded_at_ms: 1_700_000_000_000 },
        claims: vec![],
        releases: vec![],
    }
}

async fn all(collection: &Collection<Document>, filter: Document) -> Vec<Document> {
    let mut cursor = collection.find(filter).sort(doc! { "_id": 1 }).await.unwrap();
    let mut found = Vec::new();
    while cursor.advance().await.unwrap() {
        found.push(cursor.deserialize_current().unwrap());
    }
    found
}

fn uuid(id: Uuid) -> Bson {
    Bson::Binary(mongodb::bson::Binary { subtype: BinarySubtype::Uuid, bytes: id.as_bytes().to_vec() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MongoDB or its stand-in: LCT_TEST_MONGODB_URI or LCT_TEST_MONGODB_STANDIN, and --ignored"]
async fn indexes_are_created_idempotently_with_the_documented_specifications() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    store.ensure_indexes().await.expect("creating the indexes again changes nothing");
    for (collection, name, keys) in [
        (EVENTS, EVENT_VERSION_INDEX, doc! { "streamId": 1, "version": 1 }),
        (CLAIMS, CLAIM_INDEX, doc! { "scope": 1, "value": 1 }),
    ] {
        let mut cursor = database.collection(collection).list_indexes().await.unwrap();
        let mut found = None;
        while cursor.advance().await.unwrap() {
            let model = cursor.deserialize_current().unwrap();
            if model.options.as_ref().and_then(|o| o.name.as_deref()) == Some(name) {
                found = Some(model);
            }
        }
        let model = found.unwrap_or_else(|| panic!("index {name} on {collection}"));
        assert_eq!(model.keys, keys);
        assert_eq!(model.options.unwrap().unique, Some(true));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MongoDB or its stand-in: LCT_TEST_MONGODB_URI or LCT_TEST_MONGODB_STANDIN, and --ignored"]
async fn events_and_claims_are_stored_as_documented() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let id = Uuid::new_v4();
    let name = format!("Layout {}", Uuid::new_v4().simple());
    let mut first = request(id, 0, vec![created(&name), joined("Anna")]);
    first.claims.push(UniqueKey::tournament_name(&name));
    store.append(first.clone()).await.unwrap();

    let events = all(&database.collection(EVENTS), doc! { "streamId": uuid(id) }).await;
    assert_eq!(events.len(), 2, "one document per event");
    let doc = &events[0];
    assert_eq!(doc.get("version"), Some(&Bson::Int64(1)));
    assert_eq!(doc.get_str("type").unwrap(), "TournamentCreated");
    assert_eq!(doc.get("requestId"), Some(&uuid(first.metadata.request_id.unwrap())));
    assert_eq!(doc.get_datetime("recordedAt").unwrap().timestamp_millis(), first.metadata.recorded_at_ms);
    assert_eq!(doc.get_document("data").unwrap().get_str("name").unwrap(), name);

    let claims = all(&database.collection(CLAIMS), doc! { "value": &name }).await;
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].get("owner"), Some(&uuid(id)));
    assert_eq!(claims[0].get_str("scope").unwrap(), domain::ports::TOURNAMENT_NAME_SCOPE);

    let renamed = format!("Renamed {}", Uuid::new_v4().simple());
    let mut rename =
        request(id, 2, vec![TournamentEvent::TournamentRenamed { name: TournamentName::parse(&renamed).unwrap() }]);
    rename.claims.push(UniqueKey::tournament_name(&renamed));
    rename.releases.push(UniqueKey::tournament_name(&name));
    store.append(rename).await.unwrap();
    assert!(all(&database.collection(CLAIMS), doc! { "value": &name }).await.is_empty(), "the old name is released");
    assert_eq!(all(&database.collection(CLAIMS), doc! { "value": &renamed }).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MongoDB or its stand-in: LCT_TEST_MONGODB_URI or LCT_TEST_MONGODB_STANDIN, and --ignored"]
async fn a_refused_claim_leaves_neither_events_nor_the_other_claims_of_the_append() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let held = format!("Held {}", Uuid::new_v4().simple());
    let mut first = request(Uuid::new_v4(), 0, vec![created(&held)]);
    first.claims.push(UniqueKey::tournament_name(&held));
    store.append(first).await.unwrap();

    // The free claim comes first, so it is written before the taken one is found.
    let free = format!("Free {}", Uuid::new_v4().simple());
    let second = Uuid::new_v4();
    let mut both = request(second, 0, vec![created(&free)]);
    both.claims.push(UniqueKey::tournament_name(&free));
    both.claims.push(UniqueKey::tournament_name(&held));
    assert_eq!(store.append(both).await.unwrap_err(), StoreError::UniqueTaken(UniqueKey::tournament_name(&held)));
    assert!(all(&database.collection(CLAIMS), doc! { "value": &free }).await.is_empty());
    assert!(all(&database.collection(EVENTS), doc! { "streamId": uuid(second) }).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MongoDB or its stand-in: LCT_TEST_MONGODB_URI or LCT_TEST_MONGODB_STANDIN, and --ignored"]
async fn an_expected_version_below_the_current_one_is_a_conflict_with_the_actual_version() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let id = Uuid::new_v4();
    store
        .append(request(id, 0, vec![created(&format!("Behind {}", Uuid::new_v4().simple())), joined("A"), joined("B")]))
        .await
        .unwrap();
    for expected in [0, 1, 2] {
        let err = store.append(request(id, expected, vec![joined("C")])).await.unwrap_err();
        assert_eq!(err, StoreError::VersionConflict { stream_id: id, expected, actual: 3 });
    }
    // The unique index holds even for a writer that bypasses the store.
    let duplicate = database
        .collection(EVENTS)
        .insert_one(doc! { "streamId": uuid(id), "version": 2_i64, "type": "PlayerJoined", "data": {} })
        .await
        .unwrap_err();
    assert!(duplicate.to_string().contains("E11000"), "{duplicate}");
    assert_eq!(store.load(id, 0).await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "races transactions: needs a real replica set in LCT_TEST_MONGODB_URI, and --ignored"]
async fn two_clients_racing_on_one_stream_have_one_winner_on_a_real_replica_set() {
    // Two stores with their own clients stand for two pods.
    let database = TestDatabase::real_replica_set().await;
    let pods = [database.store().await, database.store().await];
    let id = Uuid::new_v4();
    pods[0].append(request(id, 0, vec![created(&format!("Pods {}", Uuid::new_v4().simple()))])).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = pods[i % 2].clone();
            tokio::spawn(async move { store.append(request(id, 1, vec![joined(&format!("P{i}"))])).await })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::VersionConflict { actual: 2, .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(pods[1].load(id, 0).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MongoDB or its stand-in: LCT_TEST_MONGODB_URI or LCT_TEST_MONGODB_STANDIN, and --ignored"]
async fn one_stream_whose_version_does_not_decode_leaves_the_others_versions_readable() {
    let database = TestDatabase::new().await;
    let store = database.store().await;
    let (sound, damaged) = (Uuid::new_v4(), Uuid::new_v4());
    store
        .append(request(sound, 0, vec![created(&format!("Sound {}", Uuid::new_v4().simple())), joined("A")]))
        .await
        .unwrap();
    // Written by hand, with a 32-bit version: no pod writes that.
    database
        .collection(EVENTS)
        .insert_one(doc! { "streamId": uuid(damaged), "version": 1_i32, "type": "TournamentCreated", "data": {} })
        .await
        .unwrap();
    // The periodic check of every stream a pod serves goes on for the sound one.
    assert_eq!(store.current_versions(&[sound, damaged]).await.unwrap(), vec![2, 0]);
}
