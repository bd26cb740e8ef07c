//! Whole tournament nights through the application service on the MongoDB event store, with
//! two stores (two clients) standing for two pods on one replica set:
//!
//! ```text
//! LCT_TEST_MONGODB_URI='mongodb://localhost:27017/?replicaSet=rs0' \
//!     cargo test -p infrastructure --test mongo_tournament -- --ignored
//! LCT_TEST_MONGODB_STANDIN=tests/mongo-standin/node_modules/@jongodb/memory-server-bin-linux-x64-gnu/bin/jongodb \
//!     cargo test -p infrastructure --test mongo_tournament -- --ignored --skip real_replica_set
//! ```
//!
//! The tests with `real_replica_set` in their names race the pods against each other and need a
//! real replica set: the wire-protocol stand-in does not detect write conflicts. Without
//! `--ignored` every test here is reported as ignored, with the reason.

mod mongo_support;

use domain::ports::{EventMetadata, EventStore, NoPublisher, Snapshot};
use domain::service::{AppError, TournamentService};
use domain::{DomainError, PlayerLimit, PlayerName, PlayerSurname, Team, TournamentName};
use infrastructure::mongo::SNAPSHOTS;
use mongo_support::TestDatabase;
use mongodb::bson::{doc, spec::BinarySubtype, Binary};
use std::collections::HashSet;
use std::sync::Arc;
use uuid::Uuid;

fn meta() -> EventMetadata {
    EventMetadata { request_id: Some(Uuid::new_v4()), recorded_at_ms: 1_700_000_000_000 }
}

fn name(prefix: &str) -> TournamentName {
    TournamentName::parse(&format!("{prefix} {}", &Uuid::new_v4().simple().to_string()[..8])).unwrap()
}

fn player(i: usize) -> (PlayerName, PlayerSurname) {
    (PlayerName::parse(&format!("Player{i}")).unwrap(), PlayerSurname::parse("Test").unwrap())
}

/// Two services on one database, as on two pods.
async fn two_pods(database: &TestDatabase) -> [TournamentService; 2] {
    let mut pods = Vec::new();
    for _ in 0..2 {
        let store: Arc<dyn EventStore> = Arc::new(database.store().await);
        pods.push(TournamentService::new(store, Arc::new(NoPublisher)));
    }
    pods.try_into().unwrap_or_else(|_| unreachable!())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MongoDB or its stand-in: LCT_TEST_MONGODB_URI or LCT_TEST_MONGODB_STANDIN, and --ignored"]
async fn a_tournament_night_from_creation_to_a_repeatable_draw() {
    let database = TestDatabase::new().await;
    let [pod_a, pod_b] = two_pods(&database).await;
    let id = Uuid::new_v4();
    pod_a.create(meta(), id, name("Friday"), PlayerLimit::new(4).unwrap()).await.unwrap();
    for i in 0..4 {
        let (n, s) = player(i);
        let pod = if i % 2 == 0 { &pod_a } else { &pod_b };
        pod.join(meta(), id, n.clone(), s.clone()).await.unwrap();
        pod.select_team(meta(), id, n, s, Team::ALL[i]).await.unwrap();
    }
    let draw = pod_a.draw(meta(), id, 42).await.unwrap();
    assert_eq!(draw.len(), 4);
    let drawn: HashSet<Team> = draw.iter().map(|a| a.team).collect();
    assert_eq!(drawn, Team::ALL[..4].iter().copied().collect());
    assert_eq!(pod_b.draw(meta(), id, 7).await.unwrap(), draw, "drawing again returns the stored result");

    let state = pod_b.get(id).await.unwrap();
    assert_eq!(state.version, 1 + 4 + 4 + 1);
    assert_eq!(state.tournament.unwrap().players.len(), 4);
    let (n, s) = player(9);
    assert_eq!(pod_a.join(meta(), id, n, s).await.unwrap_err(), AppError::Rule(DomainError::TournamentFull));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "races transactions: needs a real replica set in LCT_TEST_MONGODB_URI, and --ignored"]
async fn racing_joins_and_picks_never_overfill_or_double_book_on_a_real_replica_set() {
    let database = TestDatabase::real_replica_set().await;
    let pods = two_pods(&database).await;
    let id = Uuid::new_v4();
    pods[0].create(meta(), id, name("Race"), PlayerLimit::new(3).unwrap()).await.unwrap();

    let joins: Vec<_> = (0..8)
        .map(|i| {
            let pod = pods[i % 2].clone();
            tokio::spawn(async move {
                let (n, s) = player(i);
                pod.join(meta(), id, n, s).await
            })
        })
        .collect();
    let mut joined = Vec::new();
    for (i, task) in joins.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(_) => joined.push(i),
            Err(AppError::Rule(DomainError::TournamentFull)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(joined.len(), 3);

    let picks: Vec<_> = joined
        .iter()
        .map(|&i| {
            let pod = pods[i % 2].clone();
            tokio::spawn(async move {
                let (n, s) = player(i);
                pod.select_team(meta(), id, n, s, Team::Liverpool).await
            })
        })
        .collect();
    let mut winners = 0;
    for task in picks {
        match task.await.unwrap() {
            Ok(_) => winners += 1,
            Err(AppError::Rule(DomainError::TeamAlreadySelected)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(winners, 1);
    let players = pods[1].get(id).await.unwrap().tournament.unwrap().players;
    assert_eq!(players.len(), 3);
    assert_eq!(players.iter().filter(|p| p.selected_team == Some(Team::Liverpool)).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "races transactions: needs a real replica set in LCT_TEST_MONGODB_URI, and --ignored"]
async fn racing_creates_of_one_name_across_pods_have_one_winner_on_a_real_replica_set() {
    let database = TestDatabase::real_replica_set().await;
    let pods = two_pods(&database).await;
    let contested = name("Contested");
    let creates: Vec<_> = (0..6)
        .map(|i| {
            let pod = pods[i % 2].clone();
            let contested = contested.clone();
            tokio::spawn(
                async move { pod.create(meta(), Uuid::new_v4(), contested, PlayerLimit::new(2).unwrap()).await },
            )
        })
        .collect();
    let mut created = 0;
    for task in creates {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(AppError::Rule(DomainError::TournamentNameTaken)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MongoDB or its stand-in: LCT_TEST_MONGODB_URI or LCT_TEST_MONGODB_STANDIN, and --ignored"]
async fn tournament_names_are_unique_across_pods_and_a_rename_frees_the_old_one() {
    let database = TestDatabase::new().await;
    let pods = two_pods(&database).await;
    let taken = name("Taken");
    pods[0].create(meta(), Uuid::new_v4(), taken.clone(), PlayerLimit::new(2).unwrap()).await.unwrap();
    assert_eq!(
        pods[1].create(meta(), Uuid::new_v4(), taken.clone(), PlayerLimit::new(2).unwrap()).await.unwrap_err(),
        AppError::Rule(DomainError::TournamentNameTaken)
    );

    let id = Uuid::new_v4();
    let old = name("Old");
    pods[0].create(meta(), id, old.clone(), PlayerLimit::new(2).unwrap()).await.unwrap();
    pods[1].rename(meta(), id, name("New")).await.unwrap();
    pods[1]
        .create(meta(), Uuid::new_v4(), old, PlayerLimit::new(2).unwrap())
        .await
        .expect("the old name is free again");
    assert_eq!(pods[0].rename(meta(), id, taken).await.unwrap_err(), AppError::Rule(DomainError::TournamentNameTaken));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MongoDB or its stand-in: LCT_TEST_MONGODB_URI or LCT_TEST_MONGODB_STANDIN, and --ignored"]
async fn a_snapshot_that_does_not_decode_or_has_another_schema_version_is_ignored_and_the_stream_replayed() {
    let database = TestDatabase::new().await;
    let [pod, _] = two_pods(&database).await;
    let id = Uuid::new_v4();
    pod.create(meta(), id, name("Snapshots"), PlayerLimit::new(10).unwrap()).await.unwrap();
    for i in 0..9 {
        let (n, s) = player(i);
        pod.join(meta(), id, n, s).await.unwrap();
    }
    // Ten events: the service saved a snapshot at version 10.
    let expected = pod.get(id).await.unwrap();
    assert_eq!(expected.version, 10);
    let store = database.store().await;
    assert_eq!(store.load_snapshot(id).await.unwrap(), Some(Snapshot { stream_id: id, state: expected.clone() }));

    let snapshots = database.collection(SNAPSHOTS);
    let stream = Binary { subtype: BinarySubtype::Uuid, bytes: id.as_bytes().to_vec() };
    let garbled = doc! { "$set": { "state": { "version": "ten", "tournament": [1, 2, 3] } } };
    snapshots.update_one(doc! { "_id": stream.clone() }, garbled).await.unwrap();
    assert_eq!(store.load_snapshot(id).await.unwrap(), None, "a snapshot that does not decode is ignored");
    assert_eq!(pod.get(id).await.unwrap(), expected, "the stream is replayed from its events");

    // A state of a future shape is ignored as well, even if it happens to decode.
    let valid_state = mongodb::bson::to_document(&expected).unwrap();
    let future = doc! { "$set": { "state": valid_state, "schemaVersion": 99_i64 } };
    snapshots.update_one(doc! { "_id": stream.clone() }, future).await.unwrap();
    assert_eq!(store.load_snapshot(id).await.unwrap(), None);
    assert_eq!(pod.get(id).await.unwrap(), expected);

    // The next snapshot replaces the unusable one even though its version is not newer.
    store.save_snapshot(&Snapshot { stream_id: id, state: expected.clone() }).await.unwrap();
    assert_eq!(store.load_snapshot(id).await.unwrap(), Some(Snapshot { stream_id: id, state: expected }));
}
