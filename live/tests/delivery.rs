//! The delivery engine in isolation, under tokio's paused time: pods (hubs) sharing an event
//! store in memory and a bus that drops, duplicates, delays and reorders messages, loses
//! publications or goes deaf. For every fault, each connection gets each version exactly once,
//! in order, within the delivery bound of its commit.

mod support;

use domain::ports::{EventPublisher, EventStore};
use live::{Hub, HubOptions, Membership, Protocol, PublishingStore, RepairCause, SystemClock};
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{append_request, until, Faults, MemoryStore, Network, PodBus, Rng};
use tokio::time::Instant;
use uuid::Uuid;

const BOUND: Duration = Duration::from_secs(5);

/// What one connection received: each version with the time it was queued to it.
type Received = Arc<Mutex<Vec<(u64, Instant)>>>;

struct Pod {
    hub: Hub<String>,
    bus: Arc<PodBus>,
    /// Commands on this pod append through this.
    commands: PublishingStore,
}

struct Cluster {
    store: Arc<MemoryStore>,
    pods: Vec<Pod>,
}

impl Cluster {
    fn new(pods: usize, seed: u64, faults: Faults, options: HubOptions) -> Cluster {
        let store = Arc::new(MemoryStore::default());
        let network = Network::new(seed, faults);
        let pods = (0..pods)
            .map(|_| {
                let bus = network.bus();
                let hub = Hub::new(store.clone(), bus.clone(), Arc::new(SystemClock), options.clone());
                let commands = PublishingStore::new(store.clone(), Arc::new(hub.clone()) as Arc<dyn EventPublisher>);
                Pod { hub, bus, commands }
            })
            .collect();
        Cluster { store, pods }
    }

    /// Connects `per_pod` connections to `tournament` on every pod.
    async fn connect(&self, tournament: Uuid, per_pod: usize) -> Vec<(Membership<String>, Received)> {
        let mut connections = Vec::new();
        for pod in &self.pods {
            for _ in 0..per_pod {
                connections.push(connect(&pod.hub, tournament, None).await);
            }
        }
        connections
    }
}

/// One connection whose frames are recorded as they are queued.
async fn connect(hub: &Hub<String>, tournament: Uuid, since: Option<u64>) -> (Membership<String>, Received) {
    let (membership, mut queue) = hub.subscribe(tournament, Protocol::V2, since).await;
    let received: Received = Arc::default();
    let record = Arc::clone(&received);
    tokio::spawn(async move {
        while let Some(frame) = queue.recv().await {
            let message: Value = serde_json::from_str(&frame).unwrap();
            if let Some(version) = message["version"].as_u64().filter(|_| message["type"] != "Subscribed") {
                record.lock().unwrap().push((version, Instant::now()));
            }
        }
    });
    (membership, received)
}

/// Commits `count` events to `tournament`, each on a random pod after a random pause of up to
/// `spacing`; returns the time of each commit, by version.
async fn commit(cluster: &Cluster, tournament: Uuid, count: u64, spacing: Duration, rng: &mut Rng) -> Vec<Instant> {
    let mut committed = Vec::new();
    for version in 1..=count {
        tokio::time::sleep(rng.duration(spacing)).await;
        let pod = &cluster.pods[rng.below(cluster.pods.len() as u64) as usize];
        pod.commands.append(append_request(tournament, version)).await.unwrap();
        committed.push(Instant::now());
    }
    committed
}

/// Every connection got versions `1..=count` once, in order, each within the bound.
fn assert_delivered(connections: &[(Membership<String>, Received)], committed: &[Instant]) -> Duration {
    let mut slowest = Duration::ZERO;
    for (i, (_, received)) in connections.iter().enumerate() {
        let received = received.lock().unwrap();
        let versions: Vec<u64> = received.iter().map(|(v, _)| *v).collect();
        assert_eq!(versions, (1..=committed.len() as u64).collect::<Vec<_>>(), "connection {i}: once, in order");
        for (version, at) in received.iter() {
            let delay = *at - committed[*version as usize - 1];
            assert!(delay <= BOUND, "connection {i}: version {version} after {delay:?}");
            slowest = slowest.max(delay);
        }
    }
    slowest
}

fn repairs(cluster: &Cluster, cause: RepairCause) -> u64 {
    cluster.pods.iter().map(|p| p.hub.stats().gaps_repaired(cause)).sum()
}

async fn run_with(faults: Faults, seed: u64) -> (Cluster, Duration) {
    let cluster = Cluster::new(3, seed, faults, HubOptions::default());
    let tournament = Uuid::new_v4();
    let connections = cluster.connect(tournament, 2).await;
    let committed = commit(&cluster, tournament, 40, Duration::from_millis(400), &mut Rng::new(seed)).await;
    tokio::time::sleep(BOUND * 2).await;
    let slowest = assert_delivered(&connections, &committed);
    (cluster, slowest)
}

#[tokio::test(start_paused = true)]
async fn a_bus_that_loses_every_message_still_delivers_within_the_bound() {
    for seed in 1..=3 {
        let (cluster, slowest) = run_with(Faults { drop: 1.0, ..Faults::default() }, seed).await;
        assert!(repairs(&cluster, RepairCause::PeriodicCheck) > 0, "the periodic check did it");
        assert!(slowest > Duration::from_secs(1), "nothing came by the bus: {slowest:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_bus_that_drops_duplicates_and_reorders_delivers_each_version_once_in_order() {
    for seed in 1..=5 {
        let faults = Faults { drop: 0.3, duplicate: 0.3, max_delay: Duration::from_millis(800) };
        let (cluster, _) = run_with(faults, seed).await;
        assert!(repairs(&cluster, RepairCause::BusGap) > 0, "gaps were seen and repaired");
    }
}

#[tokio::test(start_paused = true)]
async fn messages_later_than_the_bound_are_overtaken_by_the_store_and_not_delivered_twice() {
    for seed in 1..=3 {
        let faults = Faults { drop: 0.0, duplicate: 0.5, max_delay: Duration::from_secs(12) };
        let (cluster, _) = run_with(faults, seed).await;
        assert!(repairs(&cluster, RepairCause::PeriodicCheck) + repairs(&cluster, RepairCause::BusGap) > 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_pod_that_could_not_publish_tells_the_others_as_soon_as_it_can() {
    let cluster = Cluster::new(2, 7, Faults::default(), HubOptions::default());
    let tournament = Uuid::new_v4();
    let connections = cluster.connect(tournament, 1).await;
    let (a, b) = (&cluster.pods[0], &cluster.pods[1]);
    a.bus.publish_fails.store(true, Ordering::Relaxed);
    a.commands.append(append_request(tournament, 1)).await.unwrap();
    let committed = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.bus.publish_fails.store(false, Ordering::Relaxed);
    tokio::time::sleep(BOUND).await;

    assert_delivered(&connections, &[committed]);
    let (_, on_b) = &connections[1];
    let delay = on_b.lock().unwrap()[0].1 - committed;
    // Sooner than the periodic check could have done it (two checks apart).
    assert!(delay < HubOptions::default().check_period(), "announced and repaired after {delay:?}");
    assert_eq!(b.hub.stats().gaps_repaired(RepairCause::Resync), 1);
    assert_eq!(b.hub.stats().gaps_repaired(RepairCause::PeriodicCheck), 0);
}

#[tokio::test(start_paused = true)]
async fn a_pod_whose_bus_reconnects_catches_up_at_once() {
    let cluster = Cluster::new(2, 11, Faults::default(), HubOptions::default());
    let tournament = Uuid::new_v4();
    let connections = cluster.connect(tournament, 1).await;
    let (a, b) = (&cluster.pods[0], &cluster.pods[1]);
    b.bus.deaf.store(true, Ordering::Relaxed);
    a.commands.append(append_request(tournament, 1)).await.unwrap();
    let committed = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.bus.reconnect();
    tokio::time::sleep(BOUND).await;

    assert_delivered(&connections, &[committed]);
    let delay = connections[1].1.lock().unwrap()[0].1 - committed;
    assert!(delay <= Duration::from_millis(200), "caught up on reconnect, after {delay:?}");
    assert_eq!(b.hub.stats().gaps_repaired(RepairCause::Resync), 1);
}

#[tokio::test(start_paused = true)]
async fn a_feed_whose_queue_overflows_catches_up_from_the_store() {
    let options = HubOptions { feed_backlog: 2, ..HubOptions::default() };
    let cluster = Cluster::new(1, 3, Faults::default(), options);
    let tournament = Uuid::new_v4();
    let connections = cluster.connect(tournament, 1).await;
    let pod = &cluster.pods[0];
    // Twenty commits handed to the hub at once, more than the feed's queue holds.
    let mut committed = Vec::new();
    for version in 1..=20 {
        let recorded = cluster.store.append(append_request(tournament, version)).await.unwrap();
        pod.hub.publish(&recorded).await;
        committed.push(Instant::now());
    }
    tokio::time::sleep(BOUND).await;
    assert_delivered(&connections, &committed);
    assert!(
        pod.hub.stats().gaps_repaired(RepairCause::Overflow) + pod.hub.stats().gaps_repaired(RepairCause::BusGap) > 0
    );
}

#[tokio::test(start_paused = true)]
async fn a_connection_resuming_from_a_version_gets_the_rest_once() {
    let cluster = Cluster::new(
        2,
        5,
        Faults { drop: 0.5, duplicate: 0.2, max_delay: Duration::from_millis(500) },
        HubOptions::default(),
    );
    let tournament = Uuid::new_v4();
    let mut connections = cluster.connect(tournament, 1).await;
    let mut rng = Rng::new(5);
    let mut committed = commit(&cluster, tournament, 10, Duration::from_millis(200), &mut rng).await;
    // A client that saw up to version 4 on a pod that died resumes on pod B.
    let resumed = connect(&cluster.pods[1].hub, tournament, Some(4)).await;
    for version in 11..=15 {
        cluster.pods[0].commands.append(append_request(tournament, version)).await.unwrap();
        committed.push(Instant::now());
    }
    tokio::time::sleep(BOUND * 2).await;
    assert_delivered(&connections, &committed);
    let versions: Vec<u64> = resumed.1.lock().unwrap().iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, (5..=15).collect::<Vec<_>>());
    connections.push(resumed);
}

#[tokio::test(start_paused = true)]
async fn a_connection_resuming_further_back_than_its_queue_holds_gets_every_missed_event() {
    let options = HubOptions { queue_capacity: 8, ..HubOptions::default() };
    let cluster = Cluster::new(1, 1, Faults::default(), options);
    let tournament = Uuid::new_v4();
    let pod = &cluster.pods[0];
    for version in 1..=30 {
        pod.commands.append(append_request(tournament, version)).await.unwrap();
    }
    // A phone asleep for the whole night comes back with version 0: thirty events to replay
    // into a queue of eight.
    let resumed = connect(&pod.hub, tournament, Some(0)).await;
    let received = |connection: &(Membership<String>, Received)| connection.1.lock().unwrap().len() as u64;
    until("the replay is read", || received(&resumed) == 30).await;
    for version in 31..=45 {
        pod.commands.append(append_request(tournament, version)).await.unwrap();
        until("the live event is read", || received(&resumed) == version).await;
    }
    assert!(!resumed.0.control.is_closed(), "the replay is not a slow client");
    let versions: Vec<u64> = resumed.1.lock().unwrap().iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, (1..=45).collect::<Vec<_>>());
    assert_eq!(pod.hub.stats().slow_disconnects.load(Ordering::Relaxed), 0);

    // Live messages still may not pile up past the queue behind a replay nobody reads. Each is
    // queued to both connections at once: once the reading one has it, so has the other.
    let (stalled, _queue) = pod.hub.subscribe(tournament, live::Protocol::V2, Some(0)).await;
    assert!(!stalled.control.is_closed(), "45 replayed events and the marker are queued");
    for version in 46..=52 {
        pod.commands.append(append_request(tournament, version)).await.unwrap();
        until("the live event is delivered", || received(&resumed) == version).await;
    }
    assert!(!stalled.control.is_closed(), "seven live events fit beside the marker");
    pod.commands.append(append_request(tournament, 53)).await.unwrap();
    until("the live event is delivered", || received(&resumed) == 53).await;
    assert!(stalled.control.is_closed(), "the eighth live message found the queue full");
}

#[tokio::test(start_paused = true)]
async fn a_resumption_further_back_than_a_replay_may_go_is_told_to_read_the_tournament_again() {
    let options = HubOptions { queue_capacity: 8, ..HubOptions::default() };
    let max_replay = options.max_replay;
    let cluster = Cluster::new(1, 1, Faults::default(), options);
    let tournament = Uuid::new_v4();
    let pod = &cluster.pods[0];
    let last = max_replay + 40;
    for version in 1..=last {
        pod.commands.append(append_request(tournament, version)).await.unwrap();
    }
    // What a resuming connection is sent before it is live: the replayed versions, then the
    // version of `Subscribed`.
    let resume = |since: u64| async move {
        let (membership, mut queue) = pod.hub.subscribe(tournament, Protocol::V2, Some(since)).await;
        let mut replayed = Vec::new();
        loop {
            let frame = queue.recv().await.expect("the connection is live");
            let message: Value = serde_json::from_str(&frame).unwrap();
            let version = message["version"].as_u64().unwrap();
            if message["type"] == "Subscribed" {
                return (membership, replayed, version);
            }
            replayed.push(version);
        }
    };
    // A replay as long as a replay may be is sent whole.
    let (_kept, replayed, subscribed) = resume(last - max_replay).await;
    assert_eq!(replayed, (last - max_replay + 1..=last).collect::<Vec<_>>());
    assert_eq!(subscribed, last);
    // One event longer, nothing is replayed (however long the stream, what a connection holds
    // stays bounded): `Subscribed` says the stream is further on, and the client reads the
    // tournament again.
    let (_told, replayed, subscribed) = resume(last - max_replay - 1).await;
    assert!(replayed.is_empty(), "{} events replayed", replayed.len());
    assert_eq!(subscribed, last);
    let (_asleep, replayed, subscribed) = resume(0).await;
    assert!(replayed.is_empty(), "{} events replayed", replayed.len());
    assert_eq!(subscribed, last);
}

#[tokio::test(start_paused = true)]
async fn the_periodic_check_reads_versions_in_one_call_per_period_not_events() {
    let cluster = Cluster::new(1, 1, Faults::default(), HubOptions::default());
    let tournaments: Vec<Uuid> = (0..50).map(|_| Uuid::new_v4()).collect();
    let mut connections = Vec::new();
    for tournament in &tournaments {
        connections.push(connect(&cluster.pods[0].hub, *tournament, None).await);
    }
    let (loads, read) =
        (cluster.store.loads.load(Ordering::Relaxed), cluster.store.versions_read.load(Ordering::Relaxed));
    let (periods, period) = (6, HubOptions::default().check_period());
    // Half a period past the sixth check (the checks run at whole periods from the start).
    tokio::time::sleep(period * periods + period / 2).await;
    let read = cluster.store.versions_read.load(Ordering::Relaxed) - read;
    assert_eq!(read, 50 * u64::from(periods), "each served stream once per period");
    assert_eq!(cluster.store.loads.load(Ordering::Relaxed), loads, "no events loaded while nothing changes");
}

#[tokio::test(start_paused = true)]
async fn a_feed_stops_while_still_retrying_its_first_read_when_its_connection_leaves() {
    let cluster = Cluster::new(1, 1, Faults::default(), HubOptions::default());
    cluster.store.down.store(true, Ordering::Relaxed);
    let pod = &cluster.pods[0];
    let tournament = Uuid::new_v4();
    // The connection gives up before the feed could read the store.
    let subscribing = tokio::time::timeout(Duration::from_secs(3), pod.hub.subscribe(tournament, Protocol::V2, None));
    assert!(subscribing.await.is_err());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pod.hub.tournaments_served(), 0);
    assert_eq!(pod.bus.unsubscriptions.load(Ordering::Relaxed), 1, "the feed stopped and left the channel");
    let tries = cluster.store.versions_read.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(cluster.store.versions_read.load(Ordering::Relaxed), tries, "and reads no more");
}

#[tokio::test(start_paused = true)]
async fn an_older_click_list_never_replaces_a_newer_one() {
    let cluster = Cluster::new(2, 9, Faults::default(), HubOptions::default());
    let tournament = Uuid::new_v4();
    let (membership, mut queue) = cluster.pods[1].hub.subscribe(tournament, Protocol::V2, None).await;
    let list = |seq: u64, team: domain::Team| live::ports::ClickList {
        seq,
        clicks: vec![live::ports::Click { team, name: "Ann".into(), surname: "A".into(), at_ms: seq as i64 }],
    };
    // Pod B delivers list 2 itself; list 1 from pod A arrives afterwards over the bus.
    cluster.pods[0].hub.broadcast_clicks(tournament, list(1, domain::Team::Bayern));
    cluster.pods[1].hub.broadcast_clicks(tournament, list(2, domain::Team::Chelsea));
    cluster.pods[0].hub.broadcast_clicks(tournament, list(3, domain::Team::Juventus));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut teams = Vec::new();
    while let Ok(frame) = queue.try_recv() {
        let message: Value = serde_json::from_str(&frame).unwrap();
        if message["type"] == "TeamClicked" {
            teams.push(message["clickedTeams"][0]["team"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(teams.last().map(String::as_str), Some("Juventus"), "{teams:?}");
    assert!(!teams.windows(2).any(|w| w[0] == "Chelsea" && w[1] == "Bayern"), "an older list came after: {teams:?}");
    drop(membership);
}

#[tokio::test(start_paused = true)]
async fn draining_closes_every_connection_of_the_pod_and_any_that_joins_afterwards() {
    let cluster = Cluster::new(1, 4, Faults::default(), HubOptions::default());
    let hub = &cluster.pods[0].hub;
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    let mut open = Vec::new();
    for (tournament, protocol) in [(first, Protocol::V2), (first, Protocol::SignalR), (second, Protocol::V2)] {
        open.push(hub.subscribe(tournament, protocol, None).await);
    }
    let waiting: Vec<_> = open
        .iter()
        .map(|(membership, _)| {
            let control = Arc::clone(&membership.control);
            tokio::spawn(async move { control.closed().await })
        })
        .collect();
    tokio::task::yield_now().await;
    assert!(open.iter().all(|(membership, _)| !membership.control.is_closed()));

    hub.drain();
    for task in waiting {
        tokio::time::timeout(Duration::from_secs(1), task).await.expect("woken by the drain").unwrap();
    }
    for (membership, _) in &open {
        assert_eq!(membership.control.reason(), live::CloseReason::ShuttingDown);
    }
    let (late, mut queue) = hub.subscribe(first, Protocol::V2, None).await;
    assert!(late.control.is_closed());
    assert_eq!(late.control.reason(), live::CloseReason::ShuttingDown);
    assert_eq!(tokio::time::timeout(Duration::from_secs(1), queue.recv()).await.unwrap(), None, "its queue ended");
}
