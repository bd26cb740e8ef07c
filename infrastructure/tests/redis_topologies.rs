//! The Redis adapters past one server, against real processes of each test's own: a Redis
//! Cluster (`redis-server --cluster-enabled yes`, joined by `redis-cli --cluster create`) and
//! Redis Sentinel (a master, a replica and three `redis-server --sentinel`). What pods rely on:
//! sharded pub/sub that only touches the shard of a channel, every shared-state command and the
//! pod registry's script on a cluster, subscriptions that follow a migrated slot or a failed-over
//! master, and the shared state following a Sentinel failover.

#[path = "../../tests/common/redis_cluster.rs"]
mod redis_cluster;
#[path = "../../tests/common/redis_sentinel.rs"]
mod redis_sentinel;
#[path = "../../tests/common/redis_server.rs"]
mod redis_server;

use infrastructure::live::{connect_redis, RedisBus, RedisSettings, RedisSharedState};
use live::messages;
use live::ports::{
    Bus, BusListener, Click, IdempotencyClaim, IdempotencyStore, PodInfo, PodRegistry, PresenceEntry, PresenceStore,
    SharedState,
};
use redis_cluster::{cli_at, RedisCluster};
use redis_sentinel::{SentinelGroup, MASTER_NAME};
use redis_server::calls_at as calls;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};
use uuid::Uuid;

/// Longest wait for something asynchronous (a connection, a message, a failover).
const DEADLINE: Duration = Duration::from_secs(30);
const TTL: Duration = Duration::from_secs(60);

struct Recorder {
    messages: mpsc::UnboundedSender<(String, String)>,
    resubscribed: AtomicUsize,
}

impl BusListener for Recorder {
    fn on_message(&self, channel: &str, payload: &[u8]) {
        let _ = self.messages.send((channel.to_owned(), String::from_utf8_lossy(payload).into_owned()));
    }

    fn on_resubscribed(&self) {
        self.resubscribed.fetch_add(1, Ordering::SeqCst);
    }
}

/// The Redis adapters of one "pod" and what its bus received.
struct Pod {
    bus: Arc<RedisBus>,
    state: Arc<RedisSharedState>,
    recorder: Arc<Recorder>,
    received: Mutex<mpsc::UnboundedReceiver<(String, String)>>,
}

impl Pod {
    async fn connected(settings: impl Into<RedisSettings>) -> Pod {
        let (bus, state) = connect_redis(settings).await.expect("valid settings");
        let (messages, received) = mpsc::unbounded_channel();
        let recorder = Arc::new(Recorder { messages, resubscribed: AtomicUsize::new(0) });
        bus.set_listener(recorder.clone());
        let pod = Pod { bus, state, recorder, received: Mutex::new(received) };
        eventually("the pod connects", || pod.bus.is_connected()).await;
        pod
    }

    async fn next_message(&self) -> (String, String) {
        let mut received = self.received.lock().await;
        tokio::time::timeout(DEADLINE, received.recv()).await.expect("a message in time").expect("listener alive")
    }

    fn resubscribed(&self) -> usize {
        self.recorder.resubscribed.load(Ordering::SeqCst)
    }

    /// Publishes until Redis takes it (while a failover is under way publishing fails fast).
    async fn publish_when_possible(&self, channel: &str, payload: &str) {
        let deadline = Instant::now() + DEADLINE;
        while self.bus.publish(channel, payload.as_bytes().to_vec()).await.is_err() {
            assert!(Instant::now() < deadline, "publishing never succeeded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn channel() -> String {
    format!("lct:tournament:{}", Uuid::new_v4())
}

/// Channels until every master of the cluster owns at least one, by master.
fn channels_on_every_master(cluster: &RedisCluster) -> BTreeMap<u16, Vec<String>> {
    let masters = cluster.masters();
    let mut by_master: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for _ in 0..200 {
        let channel = channel();
        by_master.entry(cluster.owner(cluster.keyslot(&channel))).or_default().push(channel);
        if masters.iter().all(|m| by_master.contains_key(m)) {
            return by_master;
        }
    }
    panic!("200 random channels did not cover the masters {masters:?}");
}

#[tokio::test]
async fn in_a_cluster_a_publication_touches_only_the_shard_of_its_channel() {
    let cluster = RedisCluster::start(3, 0).await;
    let (publisher, subscriber) = (Pod::connected(&cluster.url()).await, Pod::connected(&cluster.url()).await);
    let by_master = channels_on_every_master(&cluster);
    let all: Vec<&String> = by_master.values().flatten().collect();
    for channel in &all {
        subscriber.bus.subscribe(channel).await;
    }
    for (master, channels) in &by_master {
        let mut expected = channels.clone();
        expected.sort();
        assert_eq!(cluster.shard_channels(*master), expected, "master {master} holds its channels only");
        assert_eq!(cli_at(*master, &["PUBSUB", "CHANNELS"]), "", "no classic subscription on {master}");
    }
    for channel in &all {
        assert_eq!(cluster.shard_subscribers(channel), 1);
    }

    let before: BTreeMap<u16, u64> = by_master.keys().map(|m| (*m, calls(*m, "spublish"))).collect();
    for (n, channel) in all.iter().enumerate() {
        publisher.bus.publish(channel, format!("m{n}").into_bytes()).await.unwrap();
        assert_eq!(subscriber.next_message().await, ((*channel).clone(), format!("m{n}")));
    }
    for (master, channels) in &by_master {
        assert_eq!(
            calls(*master, "spublish") - before[master],
            channels.len() as u64,
            "master {master} saw the publications of its own channels only"
        );
        assert_eq!(calls(*master, "publish"), 0, "no classic PUBLISH, which every node would relay");
    }

    for channel in &all {
        subscriber.bus.unsubscribe(channel).await;
    }
    for channel in &all {
        assert_eq!(cluster.shard_subscribers(channel), 0, "{channel} was dropped on its shard");
    }
    assert_eq!(subscriber.resubscribed(), 0, "nothing was missed");
}

fn entry(name: &str) -> PresenceEntry {
    PresenceEntry { player_id: Uuid::new_v4(), name: name.to_owned(), surname: "S".to_owned() }
}

fn pod_info(id: &str, started_at_ms: i64) -> PodInfo {
    PodInfo {
        id: id.to_owned(),
        address: "127.0.0.1:8080".to_owned(),
        version: "0.1.0".to_owned(),
        started_at_ms,
        connections: 0,
        tournaments: 0,
        last_heartbeat_ms: started_at_ms,
    }
}

#[tokio::test]
async fn the_shared_state_and_the_pod_registry_work_across_the_shards_of_a_cluster() {
    let cluster = RedisCluster::start(3, 0).await;
    let (one, two) = (Pod::connected(&cluster.url()).await, Pod::connected(&cluster.url()).await);

    // Tokens and idempotency keys of many slots.
    for n in 0..12 {
        let token = format!("token-{n}");
        one.state.put_token(&token, "v", TTL).await.unwrap();
        assert_eq!(two.state.take_token(&token).await.unwrap(), Some("v".to_owned()));
        let key = format!("join|{n}|key");
        assert_eq!(one.state.claim(&key, "one", TTL).await.unwrap(), IdempotencyClaim::Claimed);
        assert_eq!(two.state.claim(&key, "two", TTL).await.unwrap(), IdempotencyClaim::Held("one".to_owned()));
        assert!(!two.state.release(&key, "two").await.unwrap(), "only the claimant frees its key");
        assert!(one.state.complete(&key, "one", "done", TTL).await.unwrap());
        assert_eq!(two.state.claim(&key, "two", TTL).await.unwrap(), IdempotencyClaim::Held("done".to_owned()));
    }

    // Clicks of tournaments on every shard: recorded, but never published by the script (the
    // channel's slot is not the key's; the hub publishes with SPUBLISH instead).
    for n in 0..6 {
        let tournament = Uuid::new_v4();
        let publication = messages::click_publication(tournament, Uuid::new_v4(), 1);
        let click = Click { team: domain::Team::Psg, name: format!("P{n}"), surname: "S".into(), at_ms: n };
        let recorded =
            one.state.record_and_publish_click(tournament, click.clone(), TTL, publication.clone()).await.unwrap();
        assert!(!recorded.published);
        assert_eq!(recorded.list.clicks, vec![click]);
    }
    for master in cluster.masters() {
        assert_eq!(calls(master, "publish"), 0, "no classic PUBLISH, which every node would relay");
    }

    // Presence of tournaments on every shard, owned by pods whose sets are elsewhere: the
    // pipelines span slots.
    let tournaments: Vec<Uuid> = (0..9).map(|_| Uuid::new_v4()).collect();
    let slots: BTreeSet<u16> =
        tournaments.iter().map(|t| cluster.owner(cluster.keyslot(&format!("lct:presence:{t}")))).collect();
    assert!(slots.len() > 1, "the presence keys spread over shards");
    for (n, tournament) in tournaments.iter().enumerate() {
        one.state.join(*tournament, &entry(&format!("A{n}")), "dead-pod", TTL).await.unwrap();
        let online = two.state.join(*tournament, &entry(&format!("B{n}")), "alive-pod", TTL).await.unwrap();
        assert_eq!(online.len(), 2);
    }
    let mut touched = two.state.clear_pod("dead-pod").await.unwrap();
    touched.sort();
    let mut expected = tournaments.clone();
    expected.sort();
    assert_eq!(touched, expected);
    for (n, tournament) in tournaments.iter().enumerate() {
        let online = one.state.online(*tournament).await.unwrap();
        assert_eq!(online.iter().map(|e| e.name.clone()).collect::<Vec<_>>(), vec![format!("B{n}")]);
    }

    // The registry: MGET of the heartbeats and the pruning script stay on one slot.
    assert!(one.state.heartbeat(&pod_info("alive", 1), TTL).await.unwrap());
    assert!(two.state.heartbeat(&pod_info("dying", 2), Duration::from_millis(100)).await.unwrap());
    assert!(one.state.heartbeat(&pod_info("other", 3), TTL).await.unwrap());
    let deadline = Instant::now() + DEADLINE;
    loop {
        let live: Vec<String> = one.state.live_pods().await.unwrap().into_iter().map(|p| p.id).collect();
        if live == ["alive", "other"] {
            break;
        }
        assert!(Instant::now() < deadline, "the lapsed pod is still listed: {live:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(two.state.prune().await.unwrap(), vec!["dying".to_owned()]);
    assert!(one.state.prune().await.unwrap().is_empty());
    one.state.deregister("other").await.unwrap();
    let live: Vec<String> = two.state.live_pods().await.unwrap().into_iter().map(|p| p.id).collect();
    assert_eq!(live, ["alive"]);
}

#[tokio::test]
async fn the_subscriber_follows_a_slot_the_cluster_migrates() {
    let cluster = RedisCluster::start(3, 0).await;
    let (publisher, subscriber) = (Pod::connected(&cluster.url()).await, Pod::connected(&cluster.url()).await);
    let channel = channel();
    let slot = cluster.keyslot(&channel);
    subscriber.bus.subscribe(&channel).await;
    publisher.bus.publish(&channel, b"before".to_vec()).await.unwrap();
    assert_eq!(subscriber.next_message().await.1, "before");

    let from = cluster.owner(slot);
    let to = *cluster.masters().iter().find(|m| **m != from).unwrap();
    cluster.migrate(slot, to).await;
    // The old owner dropped the subscription with the slot; the bus notices, subscribes on the
    // new owner and tells its listener that messages may have been missed.
    eventually("the subscriber re-subscribed", || subscriber.resubscribed() >= 1).await;
    assert_eq!(cluster.shard_subscribers(&channel), 1, "subscribed on the new owner");
    assert!(cluster.shard_channels(from).is_empty(), "nothing left on the old owner");
    publisher.publish_when_possible(&channel, "after").await;
    assert_eq!(subscriber.next_message().await.1, "after");

    subscriber.bus.unsubscribe(&channel).await;
    assert_eq!(cluster.shard_subscribers(&channel), 0);
}

#[tokio::test]
async fn the_subscriber_follows_a_replica_that_takes_over_a_killed_master() {
    let mut cluster = RedisCluster::start(3, 1).await;
    let (publisher, subscriber) = (Pod::connected(&cluster.url()).await, Pod::connected(&cluster.url()).await);
    let by_master = channels_on_every_master(&cluster);
    for channel in by_master.values().flatten() {
        subscriber.bus.subscribe(channel).await;
    }
    // The node the pods were given is the one that dies: they find the cluster through the
    // nodes they have seen since.
    let seed = cluster.nodes[0].port;
    let victim = if by_master.contains_key(&seed) { seed } else { *by_master.keys().next().unwrap() };
    let killed_at = Instant::now();
    cluster.kill(victim).await;
    cluster.wait_until_healthy().await;
    eventually("the subscriber re-subscribed", || subscriber.resubscribed() >= 1 && subscriber.bus.is_connected())
        .await;
    for (n, channel) in by_master.values().flatten().enumerate() {
        assert_eq!(cluster.shard_subscribers(channel), 1, "{channel} subscribed on its master of now");
        publisher.publish_when_possible(channel, &format!("after {n}")).await;
        assert_eq!(subscriber.next_message().await, (channel.clone(), format!("after {n}")));
    }
    println!("cluster failover: the bus published and received again {:?} after the kill", killed_at.elapsed());
    cluster.restart(victim).await;
    cluster.wait_until_healthy().await;
}

#[tokio::test]
async fn the_bus_and_the_shared_state_follow_a_sentinel_failover() {
    let mut group = SentinelGroup::start().await;
    // Both forms of the settings: the URL, and dedicated sentinels with a master name.
    let publisher = Pod::connected(&group.url()).await;
    let subscriber = Pod::connected(RedisSettings {
        sentinels: group.sentinel_addresses(),
        sentinel_master: Some(MASTER_NAME.to_owned()),
        ..RedisSettings::default()
    })
    .await;
    let channel = channel();
    subscriber.bus.subscribe(&channel).await;
    publisher.bus.publish(&channel, b"before".to_vec()).await.unwrap();
    assert_eq!(subscriber.next_message().await.1, "before");
    publisher.state.put_token("kept", "v", TTL).await.unwrap();
    assert!(publisher.state.heartbeat(&pod_info("pod-a", 1), TTL).await.unwrap());
    // Writes are replicated asynchronously; only what the replica holds survives a failover.
    let old = group.master_port();
    assert_eq!(cli_at(old, &["WAIT", "1", "5000"]), "1");

    let killed_at = Instant::now();
    group.kill_master().await;
    let new = group.wait_for_failover(old).await;
    eventually("both pods reconnected", || publisher.bus.is_connected() && subscriber.bus.is_connected()).await;
    eventually("the subscriber re-subscribed", || subscriber.resubscribed() >= 1).await;
    assert_eq!(cli_at(new, &["PUBSUB", "NUMSUB", &channel]).lines().nth(1), Some("1"), "subscribed on the new master");
    publisher.publish_when_possible(&channel, "after").await;
    assert_eq!(subscriber.next_message().await.1, "after");
    println!("sentinel failover: the bus published and received again {:?} after the kill", killed_at.elapsed());

    assert_eq!(subscriber.state.take_token("kept").await.unwrap(), Some("v".to_owned()), "replicated state kept");
    subscriber.state.put_token("new", "w", TTL).await.unwrap();
    assert_eq!(publisher.state.take_token("new").await.unwrap(), Some("w".to_owned()));
    assert!(!subscriber.state.heartbeat(&pod_info("pod-a", 1), TTL).await.unwrap(), "the registry was kept");
    assert_eq!(publisher.state.live_pods().await.unwrap().len(), 1);

    // On the new master, a click's list is published by the script that records it.
    let tournament = Uuid::new_v4();
    let channel = messages::channel(tournament);
    subscriber.bus.subscribe(&channel).await;
    let publication = messages::click_publication(tournament, Uuid::new_v4(), 1);
    let click = Click { team: domain::Team::Bayern, name: "Ann".into(), surname: "A".into(), at_ms: 1 };
    let recorded = publisher.state.record_and_publish_click(tournament, click, TTL, publication.clone()).await.unwrap();
    assert!(recorded.published);
    let (heard_on, payload) = subscriber.next_message().await;
    assert_eq!(heard_on, channel);
    assert!(payload.contains(r#""name":"Ann""#), "{payload}");
}
