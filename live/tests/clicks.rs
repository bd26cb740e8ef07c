//! Team clicks on one pod under tokio's paused time: who may click without a read of the event
//! store.

mod support;

use async_trait::async_trait;
use domain::ports::{EventMetadata, NoPublisher};
use domain::service::TournamentService;
use domain::{DomainError, PlayerLimit, PlayerName, PlayerSurname, Team, TournamentName};
use live::ports::{Click, ClickList, LiveError, SharedState};
use live::{ClickError, Clicks, Hub, HubOptions, PublishingStore, SystemClock};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Faults, MemoryStore, Network};
use uuid::Uuid;

/// Click lists in memory.
#[derive(Default)]
struct MemoryClicks {
    lists: Mutex<HashMap<Uuid, ClickList>>,
}

#[async_trait]
impl SharedState for MemoryClicks {
    async fn record_click(&self, tournament: Uuid, click: Click, _: Duration) -> Result<ClickList, LiveError> {
        let mut lists = self.lists.lock().unwrap();
        let list = lists.entry(tournament).or_insert(ClickList { seq: 0, clicks: Vec::new() });
        list.seq += 1;
        list.clicks.retain(|c| (&c.name, &c.surname) != (&click.name, &click.surname));
        list.clicks.push(click);
        Ok(list.clone())
    }

    async fn put_token(&self, _: &str, _: &str, _: Duration) -> Result<(), LiveError> {
        Ok(())
    }

    async fn take_token(&self, _: &str) -> Result<Option<String>, LiveError> {
        Ok(None)
    }
}

struct Pod {
    store: Arc<MemoryStore>,
    hub: Hub<String>,
    service: TournamentService,
    clicks: Clicks<String>,
}

fn pod(options: HubOptions) -> Pod {
    let store = Arc::new(MemoryStore::default());
    let bus = Network::new(1, Faults::default()).bus();
    let hub = Hub::new(store.clone(), bus, Arc::new(SystemClock), options);
    let committing = Arc::new(PublishingStore::new(store.clone(), Arc::new(hub.clone())));
    let service = TournamentService::new(committing, Arc::new(NoPublisher));
    let clicks = Clicks::new(service.clone(), Arc::new(MemoryClicks::default()), hub.clone(), Arc::new(SystemClock));
    Pod { store, hub, service, clicks }
}

fn meta() -> EventMetadata {
    EventMetadata { request_id: None, recorded_at_ms: 0 }
}

fn player(name: &str) -> (PlayerName, PlayerSurname) {
    (PlayerName::parse(name).unwrap(), PlayerSurname::parse("Nowak").unwrap())
}

async fn click(pod: &Pod, tournament: Uuid, name: &str) -> Result<(), ClickError> {
    let (name, surname) = player(name);
    pod.clicks.record(tournament, Team::Bayern, name, surname).await
}

/// A tournament with `players` joined through the pod, once the pod has learned of them.
async fn tournament_with(pod: &Pod, players: &[&str]) -> Uuid {
    let id = Uuid::new_v4();
    let name = TournamentName::parse(&format!("Cup {id}")).unwrap();
    pod.service.create(meta(), id, name, PlayerLimit::new(10).unwrap()).await.unwrap();
    for name in players {
        let (name, surname) = player(name);
        pod.service.join(meta(), id, name, surname).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for name in players {
        let (name, surname) = player(name);
        while !pod.hub.rosters().has_joined(id, &name, &surname) {
            assert!(tokio::time::Instant::now() < deadline, "the pod never learned that {name} joined");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    id
}

#[tokio::test(start_paused = true)]
async fn a_click_by_a_player_the_pod_saw_join_reads_nothing_from_the_store() {
    let pod = pod(HubOptions::default());
    let id = tournament_with(&pod, &["Anna"]).await;
    let loads = pod.store.loads.load(Ordering::Relaxed);
    for _ in 0..3 {
        click(&pod, id, "Anna").await.unwrap();
    }
    assert_eq!(pod.store.loads.load(Ordering::Relaxed), loads, "no store read for a known player");
}

#[tokio::test(start_paused = true)]
async fn a_click_by_a_player_who_never_joined_is_still_refused() {
    let pod = pod(HubOptions::default());
    let id = tournament_with(&pod, &["Anna"]).await;
    let loads = pod.store.loads.load(Ordering::Relaxed);
    assert_eq!(click(&pod, id, "Ben").await, Err(ClickError::Refused(DomainError::PlayerNotInTournament)));
    assert_eq!(pod.store.loads.load(Ordering::Relaxed), loads + 1, "an unknown player is looked up");
    assert_eq!(
        click(&pod, Uuid::new_v4(), "Anna").await,
        Err(ClickError::Refused(DomainError::TournamentNotFound)),
        "a known player of another tournament"
    );
}

#[tokio::test(start_paused = true)]
async fn a_player_whose_join_the_pod_has_not_seen_yet_is_accepted_from_the_store_then_remembered() {
    let pod = pod(HubOptions::default());
    let id = tournament_with(&pod, &["Anna"]).await;
    // Committed by another pod: this one has not heard of it.
    let (name, surname) = player("Carl");
    let elsewhere = TournamentService::new(pod.store.clone(), Arc::new(NoPublisher));
    elsewhere.join(meta(), id, name.clone(), surname.clone()).await.unwrap();
    assert!(!pod.hub.rosters().has_joined(id, &name, &surname));
    let loads = pod.store.loads.load(Ordering::Relaxed);
    click(&pod, id, "Carl").await.unwrap();
    assert_eq!(pod.store.loads.load(Ordering::Relaxed), loads + 1, "the store told");
    click(&pod, id, "Carl").await.unwrap();
    assert_eq!(pod.store.loads.load(Ordering::Relaxed), loads + 1, "and the answer is remembered");
}

#[tokio::test(start_paused = true)]
async fn a_player_joined_on_another_pod_is_learned_from_the_feed() {
    let pod = pod(HubOptions::default());
    let id = tournament_with(&pod, &["Anna"]).await;
    let (_membership, _queue) = pod.hub.subscribe(id, live::Protocol::V2, None).await;
    let (name, surname) = player("Dora");
    let elsewhere = TournamentService::new(pod.store.clone(), Arc::new(NoPublisher));
    elsewhere.join(meta(), id, name.clone(), surname.clone()).await.unwrap();
    // Nothing published it: the periodic check finds it in the store within the bound.
    let deadline = tokio::time::Instant::now() + HubOptions::default().delivery_bound * 2;
    while !pod.hub.rosters().has_joined(id, &name, &surname) {
        assert!(tokio::time::Instant::now() < deadline, "the feed never delivered the join");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let loads = pod.store.loads.load(Ordering::Relaxed);
    click(&pod, id, "Dora").await.unwrap();
    assert_eq!(pod.store.loads.load(Ordering::Relaxed), loads);
}
