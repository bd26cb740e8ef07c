//! Whole tournament nights through the application service on the MongoDB event store, with
//! two stores (two clients) standing for two pods racing on one replica set:
//!
//! ```text
//! LCT_TEST_MONGODB_URI='mongodb://localhost:27017/?replicaSet=rs0' \
//!     cargo test -p infrastructure --test mongo_tournament -- --ignored
//! ```
//!
//! Without `--ignored` every test here is reported as ignored, with the reason.

mod mongo_support;

use domain::ports::{EventMetadata, EventStore, NoPublisher};
use domain::service::{AppError, TournamentService};
use domain::{DomainError, PlayerLimit, PlayerName, PlayerSurname, Team, TournamentName};
use mongo_support::TestDatabase;
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
#[ignore = "needs a MongoDB replica set: set LCT_TEST_MONGODB_URI and run with --ignored"]
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
#[ignore = "needs a MongoDB replica set: set LCT_TEST_MONGODB_URI and run with --ignored"]
async fn racing_joins_and_picks_never_overfill_or_double_book() {
    let database = TestDatabase::new().await;
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
#[ignore = "needs a MongoDB replica set: set LCT_TEST_MONGODB_URI and run with --ignored"]
async fn tournament_names_are_unique_across_pods_and_a_rename_frees_the_old_one() {
    let database = TestDatabase::new().await;
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

    let id = Uuid::new_v4();
    let old = name("Old");
    pods[0].create(meta(), id, old.clone(), PlayerLimit::new(2).unwrap()).await.unwrap();
    pods[1].rename(meta(), id, name("New")).await.unwrap();
    pods[1]
        .create(meta(), Uuid::new_v4(), old, PlayerLimit::new(2).unwrap())
        .await
        .expect("the old name is free again");
    assert_eq!(
        pods[0].rename(meta(), id, contested).await.unwrap_err(),
        AppError::Rule(DomainError::TournamentNameTaken)
    );
}
