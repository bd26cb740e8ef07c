//! The contract every `EventStore` adapter must honour, written once. Each scenario takes a
//! fresh store; `event_store_contract_tests!` turns them into one test per scenario for an
//! adapter. Keeping snapshots is optional (a store may answer `None` to every
//! `load_snapshot`); a store that keeps them passes the `snapshots` group too.

use domain::ports::{AppendRequest, EventMetadata, EventStore, Snapshot, StoreError, UniqueKey};
use domain::{
    Assignment, PlayerLimit, PlayerName, PlayerSurname, Team, TournamentEvent, TournamentName, TournamentState,
};
use std::sync::Arc;
use uuid::Uuid;

fn name(s: &str) -> TournamentName {
    TournamentName::parse(s).unwrap()
}

fn created(s: &str) -> TournamentEvent {
    TournamentEvent::TournamentCreated { name: name(s), player_limit: PlayerLimit::new(2).unwrap() }
}

fn joined(n: &str) -> TournamentEvent {
    TournamentEvent::PlayerJoined { name: PlayerName::parse(n).unwrap(), surname: PlayerSurname::parse("S").unwrap() }
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

/// A unique value no other test run uses, so stores that outlive a test stay clean.
fn unique(prefix: &str) -> String {
    format!("{prefix} {}", &Uuid::new_v4().simple().to_string()[..12])
}

pub async fn an_unknown_stream_loads_empty(store: Arc<dyn EventStore>) {
    assert_eq!(store.load(Uuid::new_v4(), 0).await.unwrap(), vec![]);
}

pub async fn appended_events_load_back_in_order_with_their_envelope(store: Arc<dyn EventStore>) {
    let id = Uuid::new_v4();
    let all = vec![
        created(&unique("Round trip")),
        TournamentEvent::TournamentRenamed { name: name(&unique("Renamed")) },
        joined("Anna"),
        joined("Ben"),
        TournamentEvent::TeamSelected {
            name: PlayerName::parse("Anna").unwrap(),
            surname: PlayerSurname::parse("S").unwrap(),
            team: Team::ManchasterCity,
        },
        TournamentEvent::TeamsDrawn {
            assignments: vec![Assignment {
                name: PlayerName::parse("Anna").unwrap(),
                surname: PlayerSurname::parse("S").unwrap(),
                team: Team::MachesterUnited,
            }],
        },
    ];
    let req = request(id, 0, all.clone());
    let recorded = store.append(req.clone()).await.unwrap();
    assert_eq!(recorded.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    let loaded = store.load(id, 0).await.unwrap();
    assert_eq!(loaded, recorded);
    assert_eq!(loaded.iter().map(|e| e.event.clone()).collect::<Vec<_>>(), all);
    let first = &loaded[0];
    assert_eq!(first.stream_id, id);
    assert_eq!(first.schema_version, domain::ports::SCHEMA_VERSION);
    assert_eq!(first.request_id, req.metadata.request_id);
    assert_eq!(first.recorded_at_ms, req.metadata.recorded_at_ms);
}

pub async fn load_after_a_version_returns_only_later_events(store: Arc<dyn EventStore>) {
    let id = Uuid::new_v4();
    store.append(request(id, 0, vec![created(&unique("After")), joined("A")])).await.unwrap();
    store.append(request(id, 2, vec![joined("B")])).await.unwrap();
    let later = store.load(id, 2).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].version, 3);
    assert_eq!(store.load(id, 3).await.unwrap(), vec![]);
    // A version no stream reaches (a client's guess) loads nothing rather than failing.
    assert_eq!(store.load(id, u64::MAX).await.unwrap(), vec![]);
}

pub async fn a_stale_expected_version_is_a_conflict_and_writes_nothing(store: Arc<dyn EventStore>) {
    let id = Uuid::new_v4();
    store.append(request(id, 0, vec![created(&unique("Stale"))])).await.unwrap();
    let err = store.append(request(id, 0, vec![joined("A")])).await.unwrap_err();
    assert_eq!(err, StoreError::VersionConflict { stream_id: id, expected: 0, actual: 1 });
    let err = store.append(request(id, 5, vec![joined("A")])).await.unwrap_err();
    assert!(matches!(err, StoreError::VersionConflict { actual: 1, .. }), "{err:?}");
    assert_eq!(store.load(id, 0).await.unwrap().len(), 1);
}

pub async fn concurrent_appends_at_one_version_have_one_winner(store: Arc<dyn EventStore>) {
    let id = Uuid::new_v4();
    store.append(request(id, 0, vec![created(&unique("Race"))])).await.unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.append(request(id, 1, vec![joined(&format!("P{i}"))])).await })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::VersionConflict { .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(store.load(id, 0).await.unwrap().len(), 2);
}

pub async fn a_claimed_value_is_refused_to_another_stream_and_nothing_is_written(store: Arc<dyn EventStore>) {
    let taken = unique("Taken");
    let first = Uuid::new_v4();
    let mut req = request(first, 0, vec![created(&taken)]);
    req.claims.push(UniqueKey::tournament_name(&taken));
    store.append(req).await.unwrap();

    let second = Uuid::new_v4();
    let mut req = request(second, 0, vec![created(&taken)]);
    req.claims.push(UniqueKey::tournament_name(&taken));
    assert_eq!(store.append(req).await.unwrap_err(), StoreError::UniqueTaken(UniqueKey::tournament_name(&taken)));
    assert_eq!(store.load(second, 0).await.unwrap(), vec![]);
}

pub async fn concurrent_claims_of_one_value_have_one_winner(store: Arc<dyn EventStore>) {
    let contested = unique("Contested");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = Arc::clone(&store);
            let contested = contested.clone();
            tokio::spawn(async move {
                let mut req = request(Uuid::new_v4(), 0, vec![created(&contested)]);
                req.claims.push(UniqueKey::tournament_name(&contested));
                store.append(req).await
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::UniqueTaken(_)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(wins, 1);
}

pub async fn a_released_value_can_be_claimed_by_another_stream(store: Arc<dyn EventStore>) {
    let old = unique("Old");
    let new = unique("New");
    let first = Uuid::new_v4();
    let mut req = request(first, 0, vec![created(&old)]);
    req.claims.push(UniqueKey::tournament_name(&old));
    store.append(req).await.unwrap();
    let mut rename = request(first, 1, vec![TournamentEvent::TournamentRenamed { name: name(&new) }]);
    rename.claims.push(UniqueKey::tournament_name(&new));
    rename.releases.push(UniqueKey::tournament_name(&old));
    store.append(rename).await.unwrap();

    let second = Uuid::new_v4();
    let mut req = request(second, 0, vec![created(&old)]);
    req.claims.push(UniqueKey::tournament_name(&old));
    store.append(req).await.unwrap();
    let mut req = request(Uuid::new_v4(), 0, vec![created(&new)]);
    req.claims.push(UniqueKey::tournament_name(&new));
    assert!(matches!(store.append(req).await, Err(StoreError::UniqueTaken(_))));
}

pub async fn snapshots_keep_the_newest_state(store: Arc<dyn EventStore>) {
    let id = Uuid::new_v4();
    assert_eq!(store.load_snapshot(id).await.unwrap(), None);
    let events = [created(&unique("Snap")), joined("A"), joined("B")];
    let newer = Snapshot { stream_id: id, state: TournamentState::default().replay(&events) };
    let older = Snapshot { stream_id: id, state: TournamentState::default().replay(&events[..1]) };
    store.save_snapshot(&newer).await.unwrap();
    store.save_snapshot(&older).await.unwrap();
    assert_eq!(store.load_snapshot(id).await.unwrap(), Some(newer));
}

pub async fn current_versions_answer_each_stream_in_the_order_asked(store: Arc<dyn EventStore>) {
    let (first, second, unknown) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    store.append(request(first, 0, vec![created(&unique("Versions")), joined("A")])).await.unwrap();
    store.append(request(second, 0, vec![created(&unique("Versions"))])).await.unwrap();
    store.append(request(first, 2, vec![joined("B")])).await.unwrap();
    assert_eq!(store.current_versions(&[second, unknown, first]).await.unwrap(), [1, 0, 3]);
    assert_eq!(store.current_versions(&[]).await.unwrap(), Vec::<u64>::new());
    // Many streams at once, as a pod serving many tournaments asks.
    let mut many = vec![unknown; 600];
    many[599] = first;
    let versions = store.current_versions(&many).await.unwrap();
    assert_eq!((versions.len(), versions[0], versions[599]), (600, 0, 3));
}

pub async fn a_reachable_store_passes_its_check(store: Arc<dyn EventStore>) {
    store.check().await.unwrap();
}

/// Expands to one `#[tokio::test]` per contract scenario of the groups named, in a module
/// `event_store_contract::<group>`:
/// - `basic`: appends, loads, conflicts and claims one at a time, and the readiness check;
/// - `racing`: concurrent appends and claims, one winner each;
/// - `snapshots`: for stores that keep snapshots, the newest is kept.
///
/// `$factory` is a block that yields `(Arc<dyn EventStore>, guard)`; the guard lives as long
/// as the test. Attributes given before it (e.g. `#[ignore = "why"]`) are put on every test.
/// (A block, not any expression, so that a leading attribute cannot be read as part of it.)
#[macro_export]
macro_rules! event_store_contract_tests {
    ($($group:ident),+ ; $(#[$attr:meta])* $factory:block) => {
        $crate::event_store_contract_tests!(@groups [$($group),+] [$(#[$attr])*] $factory);
    };
    (@groups [$($group:ident),+] $attrs:tt $factory:expr) => {
        mod event_store_contract {
            #[allow(unused_imports)]
            use super::*;
            $( $crate::event_store_contract_tests!(@group $group $attrs $factory); )+
        }
    };
    (@group basic $attrs:tt $factory:expr) => {
        $crate::event_store_contract_tests!(@each basic $attrs $factory;
            an_unknown_stream_loads_empty,
            appended_events_load_back_in_order_with_their_envelope,
            load_after_a_version_returns_only_later_events,
            a_stale_expected_version_is_a_conflict_and_writes_nothing,
            a_claimed_value_is_refused_to_another_stream_and_nothing_is_written,
            a_released_value_can_be_claimed_by_another_stream,
            current_versions_answer_each_stream_in_the_order_asked,
            a_reachable_store_passes_its_check);
    };
    (@group racing $attrs:tt $factory:expr) => {
        $crate::event_store_contract_tests!(@each racing $attrs $factory;
            concurrent_appends_at_one_version_have_one_winner,
            concurrent_claims_of_one_value_have_one_winner);
    };
    (@group snapshots $attrs:tt $factory:expr) => {
        $crate::event_store_contract_tests!(@each snapshots $attrs $factory; snapshots_keep_the_newest_state);
    };
    (@each $group:ident $attrs:tt $factory:expr; $($scenario:ident),*) => {
        mod $group {
            #[allow(unused_imports)]
            use super::*;
            $( $crate::event_store_contract_tests!(@one $attrs $factory; $scenario); )*
        }
    };
    (@one [$(#[$attr:meta])*] $factory:expr; $scenario:ident) => {
        $(#[$attr])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $scenario() {
            let (store, _guard) = $factory;
            $crate::contract::$scenario(store).await;
        }
    };
}
