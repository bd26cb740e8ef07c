//! Team clicks on one pod under tokio's paused time: who may click without a read of the event
//! store, how click lists are coalesced rather than dropped when a feed or the bus falls behind,
//! and how clicks are refused, and counted, when the pod is overloaded.

mod support;

use async_trait::async_trait;
use domain::ports::{EventMetadata, NoPublisher};
use domain::service::TournamentService;
use domain::{DomainError, PlayerLimit, PlayerName, PlayerSurname, Team, TournamentName};
use live::ports::{Bus, BusListener, Click, ClickList, ClickPublication, LiveError, RecordedClick, SharedState};
use live::{ClickError, ClickQueue, Clicks, Hub, HubOptions, Overload, Protocol, PublishingStore, SystemClock};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{until, Faults, MemoryStore, Network};
use tokio::sync::Notify;
use uuid::Uuid;

/// Click lists in memory; while `held`, recording waits for `release`.
#[derive(Default)]
struct MemoryClicks {
    lists: Mutex<HashMap<Uuid, ClickList>>,
    held: AtomicBool,
    release: Notify,
    /// Recordings waiting for the release now.
    waiting: AtomicU64,
    /// Whether it publishes the lists itself, as Redis does with one server.
    publishes: AtomicBool,
    /// What it was asked to publish.
    publications: Mutex<Vec<ClickPublication>>,
    /// Records (and publishes) a click, then fails to answer, as a Redis reply lost to a
    /// timeout or a cut connection would.
    loses_answers: AtomicBool,
    /// Records (and publishes) a click, then never answers.
    never_answers: AtomicBool,
    /// Reads of a list that fail before one succeeds.
    failing_reads: AtomicU64,
    /// Reads of a list asked for.
    reads: AtomicU64,
}

#[async_trait]
impl SharedState for MemoryClicks {
    async fn record_click(&self, tournament: Uuid, click: Click, _: Duration) -> Result<ClickList, LiveError> {
        if self.held.load(Ordering::Relaxed) {
            self.waiting.fetch_add(1, Ordering::Relaxed);
            self.release.notified().await;
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        let mut lists = self.lists.lock().unwrap();
        let list = lists.entry(tournament).or_insert(ClickList { seq: 0, clicks: Vec::new() });
        list.seq += 1;
        list.clicks.retain(|c| (&c.name, &c.surname) != (&click.name, &click.surname));
        list.clicks.push(click);
        Ok(list.clone())
    }

    async fn record_and_publish_click(
        &self,
        tournament: Uuid,
        click: Click,
        ttl: Duration,
        publication: ClickPublication,
    ) -> Result<RecordedClick, LiveError> {
        let list = self.record_click(tournament, click, ttl).await?;
        let published = self.publishes.load(Ordering::Relaxed);
        if published {
            self.publications.lock().unwrap().push(publication);
        }
        if self.never_answers.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
        if self.loses_answers.load(Ordering::Relaxed) {
            return Err(LiveError("Redis did not answer in time".into()));
        }
        Ok(RecordedClick { list, published })
    }

    async fn click_list(&self, tournament: Uuid) -> Result<Option<ClickList>, LiveError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let failing = self.failing_reads.load(Ordering::Relaxed);
        if failing > 0 {
            self.failing_reads.store(failing - 1, Ordering::Relaxed);
            return Err(LiveError("Redis is not connected".into()));
        }
        Ok(self.lists.lock().unwrap().get(&tournament).cloned())
    }

    async fn put_token(&self, _: &str, _: &str, _: Duration) -> Result<(), LiveError> {
        Ok(())
    }

    async fn take_token(&self, _: &str) -> Result<Option<String>, LiveError> {
        Ok(None)
    }
}

/// A bus that, while stalled, holds every publication until released; it keeps what it
/// published.
#[derive(Default)]
struct StallingBus {
    stalled: AtomicBool,
    release: Notify,
    /// Publications waiting for the release now.
    held: AtomicU64,
    published: Mutex<Vec<(String, Value)>>,
}

impl StallingBus {
    fn unstall(&self) {
        self.stalled.store(false, Ordering::Relaxed);
        self.release.notify_waiters();
    }

    /// The click lists published, as (tournament, seq).
    fn click_lists(&self) -> Vec<(String, u64)> {
        let published = self.published.lock().unwrap();
        let lists = published.iter().filter(|(_, message)| message["kind"] == "clicks");
        lists.map(|(_, m)| (m["tournament_id"].as_str().unwrap().to_owned(), m["seq"].as_u64().unwrap())).collect()
    }
}

#[async_trait]
impl Bus for StallingBus {
    fn set_listener(&self, _: Arc<dyn BusListener>) {}

    async fn publish(&self, channel: &str, payload: Vec<u8>) -> Result<(), LiveError> {
        if self.stalled.load(Ordering::Relaxed) {
            self.held.fetch_add(1, Ordering::Relaxed);
            let released = self.release.notified();
            if self.stalled.load(Ordering::Relaxed) {
                released.await;
            }
            self.held.fetch_sub(1, Ordering::Relaxed);
        }
        let message = serde_json::from_slice(&payload).unwrap();
        self.published.lock().unwrap().push((channel.to_owned(), message));
        Ok(())
    }

    async fn subscribe(&self, _: &str) {}

    async fn unsubscribe(&self, _: &str) {}

    fn is_connected(&self) -> bool {
        true
    }
}

struct Pod {
    store: Arc<MemoryStore>,
    hub: Hub<String>,
    service: TournamentService,
    clicks: Clicks<String>,
    shared: Arc<MemoryClicks>,
}

fn pod(options: HubOptions) -> Pod {
    pod_on(Network::new(1, Faults::default()).bus(), options)
}

fn pod_on(bus: Arc<dyn Bus>, options: HubOptions) -> Pod {
    pod_sharing(bus, Arc::new(MemoryClicks::default()), options)
}

/// A pod whose click lists are kept in `shared`, as pods sharing one Redis.
fn pod_sharing(bus: Arc<dyn Bus>, shared: Arc<MemoryClicks>, options: HubOptions) -> Pod {
    let store = Arc::new(MemoryStore::default());
    let hub = Hub::new(store.clone(), bus, Arc::new(SystemClock), options);
    let committing = Arc::new(PublishingStore::new(store.clone(), Arc::new(hub.clone())));
    let service = TournamentService::new(committing, Arc::new(NoPublisher));
    let clicks = Clicks::new(service.clone(), shared.clone(), hub.clone(), Arc::new(SystemClock));
    Pod { store, hub, service, clicks, shared }
}

/// The connection's next frame; fails if none comes within a minute of paused time.
async fn next_frame<F>(queue: &mut live::QueueReceiver<F>) -> F {
    tokio::time::timeout(Duration::from_secs(60), queue.recv())
        .await
        .expect("no frame within a minute")
        .expect("the queue ended")
}

/// A click list of one click by `P{seq}`.
fn list(seq: u64) -> ClickList {
    let click = Click { team: Team::Bayern, name: format!("P{seq}"), surname: "S".into(), at_ms: seq as i64 };
    ClickList { seq, clicks: vec![click] }
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

#[tokio::test(start_paused = true)]
async fn a_list_the_shared_state_published_with_the_click_reaches_this_pods_connections_and_is_not_published_again() {
    let bus = Arc::new(StallingBus::default());
    let pod = pod_on(bus.clone(), HubOptions::default());
    pod.shared.publishes.store(true, Ordering::Relaxed);
    let id = tournament_with(&pod, &["Anna"]).await;
    let (_membership, mut queue) = pod.hub.subscribe(id, Protocol::V2, None).await;
    click(&pod, id, "Anna").await.unwrap();
    loop {
        let message: Value = serde_json::from_str(&next_frame(&mut queue).await).unwrap();
        if message["type"] == "TeamClicked" {
            assert_eq!(message["clickedTeams"][0]["name"], "Anna");
            break;
        }
    }
    until("the joins are published", || pod.hub.publish_backlog() == 0).await;
    assert!(bus.click_lists().is_empty(), "the hub published the list again: {:?}", bus.click_lists());
    let channels: Vec<String> = pod.shared.publications.lock().unwrap().iter().map(|p| p.channel.clone()).collect();
    assert_eq!(channels, [live::messages::channel(id)]);
    // Without it, the hub publishes.
    pod.shared.publishes.store(false, Ordering::Relaxed);
    click(&pod, id, "Anna").await.unwrap();
    until("the hub published the list", || bus.click_lists().len() == 1).await;
}

/// The next click list queued to a connection, as the names of its players.
async fn next_click_list(queue: &mut live::QueueReceiver<String>) -> Vec<String> {
    loop {
        let message: Value = serde_json::from_str(&next_frame(queue).await).unwrap();
        if message["type"] == "TeamClicked" {
            let clicks = message["clickedTeams"].as_array().unwrap();
            return clicks.iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect();
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_click_recorded_whose_answer_was_lost_still_reaches_this_pods_connections() {
    let pod = pod(HubOptions::default());
    pod.shared.publishes.store(true, Ordering::Relaxed);
    let id = tournament_with(&pod, &["Anna", "Ben"]).await;
    let (_membership, mut queue) = pod.hub.subscribe(id, Protocol::V2, None).await;
    pod.shared.loses_answers.store(true, Ordering::Relaxed);
    // The clicker is told it failed (it may retry); the lobby sees the list the other pods got.
    assert!(matches!(click(&pod, id, "Anna").await, Err(ClickError::Unavailable(_))));
    assert_eq!(next_click_list(&mut queue).await, ["Anna"]);

    // So does a click whose caller went away before the answer.
    pod.shared.loses_answers.store(false, Ordering::Relaxed);
    pod.shared.never_answers.store(true, Ordering::Relaxed);
    let clicks = pod.clicks.clone();
    let (name, surname) = player("Ben");
    let clicking = tokio::spawn(async move { clicks.record(id, Team::Psg, name, surname).await });
    let recorded = |shared: &MemoryClicks| shared.lists.lock().unwrap()[&id].clicks.len() == 2;
    until("the second click is recorded", || recorded(&pod.shared)).await;
    clicking.abort();
    assert!(clicking.await.unwrap_err().is_cancelled());
    assert_eq!(next_click_list(&mut queue).await, ["Anna", "Ben"]);
}

#[tokio::test(start_paused = true)]
async fn the_list_of_an_unanswered_click_is_read_again_until_the_shared_state_answers() {
    let pod = pod(HubOptions::default());
    pod.shared.publishes.store(true, Ordering::Relaxed);
    let id = tournament_with(&pod, &["Anna"]).await;
    let (_membership, mut queue) = pod.hub.subscribe(id, Protocol::V2, None).await;
    pod.shared.loses_answers.store(true, Ordering::Relaxed);
    pod.shared.failing_reads.store(2, Ordering::Relaxed);
    assert!(matches!(click(&pod, id, "Anna").await, Err(ClickError::Unavailable(_))));
    assert_eq!(next_click_list(&mut queue).await, ["Anna"]);
    assert_eq!(pod.shared.reads.load(Ordering::Relaxed), 3, "two failed reads, then one that answered");

    // A shared state that stays unreachable is given up on after a few reads.
    pod.shared.failing_reads.store(u64::MAX, Ordering::Relaxed);
    assert!(matches!(click(&pod, id, "Anna").await, Err(ClickError::Unavailable(_))));
    until("four reads", || pod.shared.reads.load(Ordering::Relaxed) == 3 + 4).await;
    // A minute of paused time: no fifth read comes.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(pod.shared.reads.load(Ordering::Relaxed), 3 + 4);
}

/// The event that joins `name` as version `version` of the tournament.
fn joined(tournament: Uuid, version: u64, name: &str) -> domain::ports::RecordedEvent {
    let (name, surname) = player(name);
    domain::ports::RecordedEvent {
        stream_id: tournament,
        version,
        schema_version: 1,
        recorded_at_ms: 0,
        request_id: None,
        event: domain::TournamentEvent::PlayerJoined { name, surname },
    }
}

/// The `type` of a frame, and the first clicker's name when it is a click list.
fn kind_of(frame: &str) -> String {
    let message: Value = serde_json::from_str(frame).unwrap();
    match message["clickedTeams"][0]["name"].as_str() {
        Some(name) => format!("TeamClicked {name}"),
        None => message["type"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test(start_paused = true)]
async fn full_feed_and_outbox_coalesce_click_lists_and_the_latest_goes_out_behind_the_event_before_it() {
    let options = HubOptions { feed_backlog: 1, publish_backlog: 1, ..HubOptions::default() };
    let pod = pod(options);
    let id = Uuid::new_v4();
    let (_membership, mut queue) = pod.hub.subscribe(id, Protocol::V2, None).await;
    assert_eq!(kind_of(&next_frame(&mut queue).await), "Subscribed");
    // An event takes the feed's one place and the outbox's; fifty clicks come before the feed
    // or the publisher get to run.
    domain::ports::EventPublisher::publish(&pod.hub, &[joined(id, 1, "Anna")]).await;
    for seq in 1..=50 {
        pod.hub.broadcast_clicks(id, list(seq));
    }
    let mut shown = Vec::new();
    while shown.last().map(String::as_str) != Some("TeamClicked P50") {
        shown.push(kind_of(&next_frame(&mut queue).await));
    }
    // Nothing follows the latest list.
    assert!(queue.try_recv().is_err(), "after the latest: {shown:?}");
    assert_eq!(shown, ["PlayerJoined", "TeamClicked P50"], "the event, then the latest list only");
    let stats = pod.hub.stats();
    assert_eq!(stats.click_lists_coalesced(ClickQueue::Feed), 49);
    assert_eq!(stats.click_lists_coalesced(ClickQueue::Bus), 49);
    assert_eq!(stats.bus_outbox_full.load(Ordering::Relaxed), 0, "nothing dropped");
}

#[tokio::test(start_paused = true)]
async fn a_connection_holds_one_click_list_at_most_so_a_flood_of_clicks_never_cuts_it_off() {
    let pod = pod(HubOptions { queue_capacity: 8, ..HubOptions::default() });
    let id = Uuid::new_v4();
    let (membership, mut queue) = pod.hub.subscribe(id, Protocol::V2, None).await;
    assert_eq!(kind_of(&next_frame(&mut queue).await), "Subscribed");
    // The connection reads nothing while an event and fifty click lists come, many more than
    // its queue of eight holds.
    domain::ports::EventPublisher::publish(&pod.hub, &[joined(id, 1, "Anna")]).await;
    for seq in 1..=50 {
        pod.hub.broadcast_clicks(id, list(seq));
    }
    let stats = pod.hub.stats();
    let handled = || {
        stats.click_lists_coalesced(ClickQueue::Connection) + stats.click_lists_coalesced(ClickQueue::Feed) == 49
            || membership.control.is_closed()
    };
    until("the feed handled every list", handled).await;
    assert!(!membership.control.is_closed(), "cut off as too slow by click lists");
    let mut shown = Vec::new();
    while let Ok(frame) = queue.try_recv() {
        shown.push(kind_of(&frame));
    }
    assert_eq!(shown, ["PlayerJoined", "TeamClicked P50"], "the event, then the latest list only");
    assert_eq!(stats.slow_disconnects.load(Ordering::Relaxed), 0);
    // Later lists and events still come, in order.
    domain::ports::EventPublisher::publish(&pod.hub, &[joined(id, 2, "Ben")]).await;
    pod.hub.broadcast_clicks(id, list(51));
    assert_eq!(kind_of(&next_frame(&mut queue).await), "PlayerJoined");
    assert_eq!(kind_of(&next_frame(&mut queue).await), "TeamClicked P51");
}

/// Who is online, as the hub hands it over.
fn online(count: usize) -> Vec<live::ports::PresenceEntry> {
    (0..count)
        .map(|i| live::ports::PresenceEntry { player_id: Uuid::new_v4(), name: format!("P{i}"), surname: "S".into() })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_connection_holds_one_presence_list_at_most_so_a_player_reconnecting_in_a_loop_never_cuts_it_off() {
    let pod = pod(HubOptions { queue_capacity: 8, ..HubOptions::default() });
    let id = Uuid::new_v4();
    let (membership, mut queue) = pod.hub.subscribe(id, Protocol::V2, None).await;
    assert_eq!(kind_of(&next_frame(&mut queue).await), "Subscribed");
    // The connection reads nothing while a player comes and goes forty times (a presence list
    // each time), with an event and click lists in between.
    domain::ports::EventPublisher::publish(&pod.hub, &[joined(id, 1, "Anna")]).await;
    for round in 1..=40 {
        pod.hub.broadcast_presence(id, online(round % 2 + 1));
        if round % 10 == 0 {
            pod.hub.broadcast_clicks(id, list(round as u64));
        }
    }
    pod.hub.broadcast_presence(id, online(3));
    // Each presence list after the first replaces the one queued, or the connection is cut off.
    let stats = pod.hub.stats();
    let handled = || stats.presence_lists_coalesced.load(Ordering::Relaxed) == 40 || membership.control.is_closed();
    until("the feed handled every message", handled).await;
    assert!(!membership.control.is_closed(), "cut off as too slow by presence lists");
    assert_eq!(stats.slow_disconnects.load(Ordering::Relaxed), 0);
    let mut shown = Vec::new();
    while let Ok(frame) = queue.try_recv() {
        shown.push(frame);
    }
    let kinds: Vec<String> = shown.iter().map(|f| kind_of(f)).collect();
    assert_eq!(kinds, ["PlayerJoined", "TeamClicked P40", "Presence"], "the event, then the latest of each list");
    let presence: Value = serde_json::from_str(shown.last().unwrap()).unwrap();
    assert_eq!(presence["players"].as_array().unwrap().len(), 3, "the latest presence list");
}

#[tokio::test(start_paused = true)]
async fn a_stalled_bus_publishes_the_latest_list_of_each_tournament_once_it_moves() {
    let bus = Arc::new(StallingBus::default());
    let pod = pod_on(bus.clone(), HubOptions { publish_backlog: 1, ..HubOptions::default() });
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    bus.stalled.store(true, Ordering::Relaxed);
    pod.hub.broadcast_clicks(first, list(1));
    until("the publisher holds the first list", || bus.held.load(Ordering::Relaxed) == 1).await;
    for seq in 2..=10 {
        pod.hub.broadcast_clicks(first, list(seq));
    }
    for seq in 1..=3 {
        pod.hub.broadcast_clicks(second, list(seq));
    }
    // List 2 of the first tournament took the outbox's one place; the others wait apart, one
    // per tournament.
    assert_eq!(pod.hub.publish_backlog(), 1 + 2);
    bus.unstall();
    until("every list went out", || pod.hub.publish_backlog() == 0 && bus.click_lists().len() == 4).await;
    let (a, b) = (first.to_string(), second.to_string());
    // Waiting lists take turns with the outbox; a receiver drops list 2 after list 10.
    assert_eq!(bus.click_lists(), [(a.clone(), 1), (a.clone(), 10), (a, 2), (b, 3)]);
    assert_eq!(pod.hub.stats().click_lists_coalesced(ClickQueue::Bus), 7 + 2);
}

#[tokio::test(start_paused = true)]
async fn clicks_are_refused_while_the_publications_waiting_for_the_bus_reach_the_limit() {
    let bus = Arc::new(StallingBus::default());
    let pod = pod_on(bus.clone(), HubOptions { click_refusal_backlog: 2, ..HubOptions::default() });
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(tournament_with(&pod, &["Anna"]).await);
    }
    until("the joins are published", || pod.hub.publish_backlog() == 0).await;
    bus.stalled.store(true, Ordering::Relaxed);
    click(&pod, ids[0], "Anna").await.unwrap();
    until("the publisher holds the first list", || bus.held.load(Ordering::Relaxed) == 1).await;
    click(&pod, ids[1], "Anna").await.unwrap();
    click(&pod, ids[2], "Anna").await.unwrap();
    assert_eq!(pod.hub.publish_backlog(), 2);
    assert_eq!(click(&pod, ids[0], "Anna").await, Err(ClickError::Overloaded(Overload::PublishBacklog)));
    assert_eq!(pod.hub.stats().clicks_refused(Overload::PublishBacklog), 1);
    bus.unstall();
    until("the backlog is gone", || pod.hub.publish_backlog() == 0).await;
    click(&pod, ids[0], "Anna").await.unwrap();
    until("every accepted click went out", || bus.click_lists().len() == 4).await;
    assert_eq!(pod.hub.stats().clicks_refused(Overload::InFlight), 0);
}

#[tokio::test(start_paused = true)]
async fn clicks_beyond_the_in_flight_limit_are_refused_until_one_finishes() {
    let pod = pod(HubOptions { clicks_in_flight: 1, ..HubOptions::default() });
    let id = tournament_with(&pod, &["Anna", "Ben"]).await;
    pod.shared.held.store(true, Ordering::Relaxed);
    let clicks = pod.clicks.clone();
    let (name, surname) = player("Anna");
    let first = tokio::spawn(async move { clicks.record(id, Team::Chelsea, name, surname).await });
    until("the first click waits for the shared state", || pod.shared.waiting.load(Ordering::Relaxed) == 1).await;
    assert_eq!(click(&pod, id, "Ben").await, Err(ClickError::Overloaded(Overload::InFlight)));
    assert_eq!(pod.hub.stats().clicks_refused(Overload::InFlight), 1);
    pod.shared.held.store(false, Ordering::Relaxed);
    pod.shared.release.notify_waiters();
    first.await.unwrap().unwrap();
    click(&pod, id, "Ben").await.unwrap();
    assert_eq!(pod.hub.stats().clicks_refused(Overload::PublishBacklog), 0);
}

#[tokio::test(start_paused = true)]
async fn a_click_list_is_not_shown_ahead_of_an_event_committed_before_it() {
    let pod = pod(HubOptions::default());
    let id = Uuid::new_v4();
    let (_membership, mut queue) = pod.hub.subscribe(id, Protocol::V2, None).await;
    domain::ports::EventPublisher::publish(&pod.hub, &[joined(id, 1, "Anna")]).await;
    pod.hub.broadcast_clicks(id, list(1));
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        kinds.push(kind_of(&next_frame(&mut queue).await));
    }
    assert_eq!(kinds, ["Subscribed", "PlayerJoined", "TeamClicked P1"]);
}

#[tokio::test(start_paused = true)]
async fn a_pod_that_was_deaf_to_the_bus_shows_the_click_list_it_missed_once_subscribed_again() {
    let network = Network::new(1, Faults::default());
    let shared = Arc::new(MemoryClicks::default());
    let a = pod_sharing(network.bus(), shared.clone(), HubOptions::default());
    let b_bus = network.bus();
    let b = pod_sharing(b_bus.clone(), shared, HubOptions::default());
    let id = tournament_with(&a, &["Anna"]).await;
    let (_membership, mut queue) = b.hub.subscribe(id, Protocol::V2, None).await;
    assert_eq!(kind_of(&next_frame(&mut queue).await), "Subscribed");

    // Pod B's subscriber connection is gone while Anna clicks on pod A: B misses the list.
    b_bus.deaf.store(true, Ordering::Relaxed);
    click(&a, id, "Anna").await.unwrap();
    b_bus.reconnect();
    assert_eq!(kind_of(&next_frame(&mut queue).await), "TeamClicked Anna");
    // Read once, and shown here only: the other pods heard it when it was published.
    assert_eq!(a.shared.reads.load(Ordering::Relaxed), 1);
}
