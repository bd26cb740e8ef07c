//! Presence, idempotency keys, shared secrets and the pod registry over Redis, against a real `redis-server` of
//! each test's own: what several pods sharing one Redis rely on.

#[path = "../../tests/common/redis_server.rs"]
mod redis_server;

use infrastructure::live::{connect_redis, RedisBus, RedisSharedState};
use live::ports::{
    Bus, IdempotencyClaim, IdempotencyStore, PodInfo, PodRegistry, PresenceEntry, PresenceStore, SharedSecrets,
};
use redis_server::RedisServer;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Longest wait for something asynchronous (a connection, an expiry).
const DEADLINE: Duration = Duration::from_secs(10);
const TTL: Duration = Duration::from_secs(60);

/// The Redis adapters of one "pod".
struct Pod {
    _bus: Arc<RedisBus>,
    state: Arc<RedisSharedState>,
}

impl Pod {
    async fn connected(url: &str) -> Pod {
        let (bus, state) = connect_redis(url).await.expect("valid URL");
        let deadline = Instant::now() + DEADLINE;
        while !bus.is_connected() {
            assert!(Instant::now() < deadline, "the pod never connected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Pod { _bus: bus, state }
    }
}

fn entry(name: &str, surname: &str) -> PresenceEntry {
    PresenceEntry { player_id: Uuid::new_v4(), name: name.to_owned(), surname: surname.to_owned() }
}

fn names(entries: &[PresenceEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.name.as_str()).collect()
}

fn pod_info(id: &str, started_at_ms: i64) -> PodInfo {
    PodInfo {
        id: id.to_owned(),
        address: "127.0.0.1:8080".to_owned(),
        version: "0.1.0".to_owned(),
        started_at_ms,
        connections: 2,
        tournaments: 1,
        last_heartbeat_ms: started_at_ms + 10,
    }
}

fn ids(pods: &[PodInfo]) -> Vec<&str> {
    pods.iter().map(|p| p.id.as_str()).collect()
}

fn held(value: &str) -> IdempotencyClaim {
    IdempotencyClaim::Held(value.to_owned())
}

/// Waits until `key` has expired.
async fn expired(server: &RedisServer, key: &str) {
    let deadline = Instant::now() + DEADLINE;
    while server.cli(&["EXISTS", key]) != "0" {
        assert!(Instant::now() < deadline, "{key} never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that `key` still holds `value` for about a lease.
fn still_held(server: &RedisServer, key: &str, value: &str) {
    assert_eq!(server.cli(&["EXISTS", key]), "1", "{key} was deleted");
    assert_eq!(server.cli(&["GET", key]), value, "{key} was overwritten");
    let ttl_ms: i64 = server.cli(&["PTTL", key]).parse().unwrap();
    assert!(ttl_ms > 50_000 && ttl_ms <= 60_000, "PTTL {ttl_ms}");
}

#[tokio::test]
async fn an_idempotency_key_is_claimed_by_one_pod_then_held_by_its_marker_then_by_its_response() {
    let server = RedisServer::start().await;
    let (one, two) = (Pod::connected(&server.url).await, Pod::connected(&server.url).await);

    assert_eq!(one.state.claim("k1", "m-one", TTL).await.unwrap(), IdempotencyClaim::Claimed);
    still_held(&server, "lct:idem:k1", "m-one");
    assert_eq!(two.state.claim("k1", "m-two", TTL).await.unwrap(), held("m-one"));
    assert!(one.state.complete("k1", "m-one", r#"{"id":7}"#, TTL).await.unwrap());
    assert_eq!(two.state.claim("k1", "m-two", TTL).await.unwrap(), held(r#"{"id":7}"#));
    still_held(&server, "lct:idem:k1", r#"{"id":7}"#);
    assert!(!one.state.release("k1", "m-one").await.unwrap(), "a response is not a claim");
    still_held(&server, "lct:idem:k1", r#"{"id":7}"#);
}

#[tokio::test]
async fn a_released_key_runs_again_and_a_forgotten_key_is_not_completed() {
    let server = RedisServer::start().await;
    let pod = Pod::connected(&server.url).await;

    assert_eq!(pod.state.claim("k2", "m1", TTL).await.unwrap(), IdempotencyClaim::Claimed);
    assert!(pod.state.release("k2", "m1").await.unwrap());
    assert_eq!(server.cli(&["EXISTS", "lct:idem:k2"]), "0");
    // Completing a key no longer held does not bring it back.
    assert!(!pod.state.complete("k2", "m1", "late", TTL).await.unwrap());
    assert_eq!(server.cli(&["EXISTS", "lct:idem:k2"]), "0");
    assert_eq!(pod.state.claim("k2", "m2", TTL).await.unwrap(), IdempotencyClaim::Claimed);

    assert_eq!(pod.state.claim("k3", "m1", Duration::from_millis(100)).await.unwrap(), IdempotencyClaim::Claimed);
    expired(&server, "lct:idem:k3").await;
    assert_eq!(
        pod.state.claim("k3", "m2", TTL).await.unwrap(),
        IdempotencyClaim::Claimed,
        "an expired key is claimed anew"
    );
}

#[tokio::test]
async fn a_key_claimed_again_after_its_lease_is_neither_released_nor_completed_by_its_first_owner() {
    let server = RedisServer::start().await;
    let (one, two) = (Pod::connected(&server.url).await, Pod::connected(&server.url).await);

    assert_eq!(one.state.claim("k4", "first", Duration::from_millis(100)).await.unwrap(), IdempotencyClaim::Claimed);
    // The first command outlives its lease; a retry on another pod claims the key and runs.
    expired(&server, "lct:idem:k4").await;
    assert_eq!(two.state.claim("k4", "retry", TTL).await.unwrap(), IdempotencyClaim::Claimed);
    let retry = server.cli(&["GET", "lct:idem:k4"]);
    // The first command fails, or succeeds: either way the key stays the retry's.
    assert!(!one.state.release("k4", "first").await.unwrap());
    still_held(&server, "lct:idem:k4", &retry);
    assert!(!one.state.complete("k4", "first", r#"{"id":1}"#, TTL).await.unwrap());
    still_held(&server, "lct:idem:k4", &retry);
    assert_eq!(one.state.claim("k4", "third", TTL).await.unwrap(), held("retry"), "a third request would run");
    assert!(two.state.complete("k4", "retry", r#"{"id":2}"#, TTL).await.unwrap());
    assert_eq!(one.state.claim("k4", "third", TTL).await.unwrap(), held(r#"{"id":2}"#));
}

#[tokio::test]
async fn an_old_pods_claim_is_pending_for_a_new_pod_and_not_its_to_release_or_complete() {
    let server = RedisServer::start().await;
    let pod = Pod::connected(&server.url).await;

    // A pod of the previous release claims with an empty value.
    server.cli(&["SET", "lct:idem:k5", "", "PX", "60000"]);
    assert_eq!(pod.state.claim("k5", "mine", TTL).await.unwrap(), held(""));
    // A new pod whose own claim of the key lapsed earlier leaves the old pod's claim alone.
    assert!(!pod.state.release("k5", "mine").await.unwrap());
    still_held(&server, "lct:idem:k5", "");
    assert!(!pod.state.complete("k5", "mine", "late", TTL).await.unwrap());
    still_held(&server, "lct:idem:k5", "");
}

#[tokio::test]
async fn pods_agree_on_the_first_proposed_secret_and_it_does_not_expire() {
    let server = RedisServer::start().await;
    let (one, two) = (Pod::connected(&server.url).await, Pod::connected(&server.url).await);
    let (first, second) =
        tokio::join!(one.state.agree("token-key", "proposal-one"), two.state.agree("token-key", "proposal-two"));
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first, second, "both pods hold the same value");
    assert!(first == "proposal-one" || first == "proposal-two");
    assert_eq!(one.state.agree("token-key", "a later proposal").await.unwrap(), first);
    assert_eq!(server.cli(&["PTTL", "lct:secret:token-key"]), "-1");
    assert_ne!(one.state.agree("other", "x").await.unwrap(), first, "names are separate");
}

#[tokio::test]
async fn presence_lists_each_player_once_by_name_across_pods() {
    let server = RedisServer::start().await;
    let (one, two) = (Pod::connected(&server.url).await, Pod::connected(&server.url).await);
    let tournament = Uuid::new_v4();
    let (zed, amy, bob) = (entry("Zed", "Z"), entry("Amy", "A"), entry("Bob", "B"));

    one.state.join(tournament, &zed, "pod-1", TTL).await.unwrap();
    two.state.join(tournament, &bob, "pod-2", TTL).await.unwrap();
    // Zed is connected through both pods.
    two.state.join(tournament, &zed, "pod-2", TTL).await.unwrap();
    let online = one.state.join(tournament, &amy, "pod-1", TTL).await.unwrap();
    assert_eq!(names(&online), vec!["Amy", "Bob", "Zed"]);
    assert_eq!(two.state.online(tournament).await.unwrap(), online);
    assert!(one.state.online(Uuid::new_v4()).await.unwrap().is_empty(), "tournaments do not share presence");

    let online = one.state.leave(tournament, zed.player_id, "pod-1").await.unwrap();
    assert_eq!(names(&online), vec!["Amy", "Bob", "Zed"], "still connected through pod-2");
    let online = two.state.leave(tournament, zed.player_id, "pod-2").await.unwrap();
    assert_eq!(names(&online), vec!["Amy", "Bob"]);
    assert_eq!(server.cli(&["SISMEMBER", "lct:pod-presence:pod-2", &format!("{tournament}|{}", zed.player_id)]), "0");

    for key in [format!("lct:presence:{tournament}"), "lct:pod-presence:pod-1".to_owned()] {
        let ttl_ms: i64 = server.cli(&["PTTL", &key]).parse().unwrap();
        assert!(ttl_ms > 50_000 && ttl_ms <= 60_000, "PTTL of {key}: {ttl_ms}");
    }
}

#[tokio::test]
async fn clearing_a_pod_removes_only_its_entries_and_names_the_tournaments_touched() {
    let server = RedisServer::start().await;
    let (dead, alive) = (Pod::connected(&server.url).await, Pod::connected(&server.url).await);
    let (t1, t2, t3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (ann, bob) = (entry("Ann", "A"), entry("Bob", "B"));
    dead.state.join(t1, &ann, "dead-pod", TTL).await.unwrap();
    dead.state.join(t2, &bob, "dead-pod", TTL).await.unwrap();
    alive.state.join(t1, &bob, "alive-pod", TTL).await.unwrap();
    alive.state.join(t3, &ann, "alive-pod", TTL).await.unwrap();

    let mut touched = alive.state.clear_pod("dead-pod").await.unwrap();
    let mut expected = vec![t1, t2];
    expected.sort();
    touched.sort();
    assert_eq!(touched, expected);
    assert_eq!(names(&alive.state.online(t1).await.unwrap()), vec!["Bob"]);
    assert!(alive.state.online(t2).await.unwrap().is_empty());
    assert_eq!(names(&alive.state.online(t3).await.unwrap()), vec!["Ann"]);
    assert_eq!(server.cli(&["EXISTS", "lct:pod-presence:dead-pod"]), "0");
    assert_eq!(server.cli(&["EXISTS", "lct:pod-presence:alive-pod"]), "1");
    assert!(alive.state.clear_pod("dead-pod").await.unwrap().is_empty(), "nothing is left to clear");
}

/// A pod's index of its entries lives as long as the pod does: the tournaments' lists are kept
/// alive by anyone's joins, so an index that lapsed on a pod with no new join for hours would
/// leave that pod's players online for ever after it died. Keeping it also tells the pod whether
/// its entries are still there.
#[tokio::test]
async fn keeping_a_pod_keeps_the_index_of_its_presence_entries_and_says_whether_it_holds_any() {
    let server = RedisServer::start().await;
    let pod = Pod::connected(&server.url).await;
    let tournament = Uuid::new_v4();
    pod.state.join(tournament, &entry("Ann", "A"), "pod-a", Duration::from_secs(1)).await.unwrap();
    assert!(pod.state.keep_pod("pod-a", TTL).await.unwrap());
    let ttl: i64 = server.cli(&["PTTL", "lct:pod-presence:pod-a"]).parse().unwrap();
    assert!(ttl > 50_000 && ttl <= 60_000, "the index lives as long as the pod keeps it: PTTL {ttl} ms");
    // A pod with no presence entries gets no index.
    assert!(!pod.state.keep_pod("pod-b", TTL).await.unwrap());
    assert_eq!(server.cli(&["EXISTS", "lct:pod-presence:pod-b"]), "0");
    // Entries cleared by another pod are no longer held.
    pod.state.clear_pod("pod-a").await.unwrap();
    assert!(!pod.state.keep_pod("pod-a", TTL).await.unwrap());
}

#[tokio::test]
async fn pods_see_each_other_in_start_order_and_a_deregistered_pod_is_gone_at_once() {
    let server = RedisServer::start().await;
    let (one, two) = (Pod::connected(&server.url).await, Pod::connected(&server.url).await);

    assert!(two.state.heartbeat(&pod_info("b", 200), TTL).await.unwrap(), "the first heartbeat registers");
    assert!(one.state.heartbeat(&pod_info("a", 200), TTL).await.unwrap());
    assert!(one.state.heartbeat(&pod_info("c", 100), TTL).await.unwrap());
    let mut later = pod_info("a", 200);
    later.connections = 9;
    assert!(!one.state.heartbeat(&later, TTL).await.unwrap(), "a refresh is not a registration");

    let pods = two.state.live_pods().await.unwrap();
    assert_eq!(ids(&pods), vec!["c", "a", "b"], "ordered by start time, then id");
    assert_eq!(pods[1], later);

    one.state.deregister("a").await.unwrap();
    assert_eq!(ids(&two.state.live_pods().await.unwrap()), vec!["c", "b"]);
    assert_eq!(server.cli(&["EXISTS", "lct:{pods}:pod:a"]), "0");
    assert_eq!(server.cli(&["HEXISTS", "lct:{pods}", "a"]), "0");
}

#[tokio::test]
async fn a_lapsed_pod_is_no_longer_live_and_exactly_one_pruner_wins_it() {
    let server = RedisServer::start().await;
    let mut pods = Vec::new();
    for _ in 0..5 {
        pods.push(Pod::connected(&server.url).await);
    }
    pods[0].state.heartbeat(&pod_info("alive", 1), TTL).await.unwrap();
    pods[1].state.heartbeat(&pod_info("dying", 2), Duration::from_millis(150)).await.unwrap();
    assert_eq!(ids(&pods[0].state.live_pods().await.unwrap()), vec!["alive", "dying"]);
    assert!(pods[0].state.prune().await.unwrap().is_empty(), "nothing has lapsed yet");

    let deadline = Instant::now() + DEADLINE;
    while ids(&pods[0].state.live_pods().await.unwrap()) != vec!["alive"] {
        assert!(Instant::now() < deadline, "the lapsed pod is still listed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every pod notices at the same time.
    let prunes: Vec<_> = pods
        .iter()
        .map(|pod| {
            let state = Arc::clone(&pod.state);
            tokio::spawn(async move { state.prune().await.unwrap() })
        })
        .collect();
    let mut won = Vec::new();
    for prune in prunes {
        won.extend(prune.await.unwrap());
    }
    assert_eq!(won, vec!["dying".to_owned()], "exactly one pruner removes the dead pod");
    assert_eq!(server.cli(&["HEXISTS", "lct:{pods}", "dying"]), "0");
    assert_eq!(server.cli(&["HEXISTS", "lct:{pods}", "alive"]), "1");

    // A pod that was pruned while it was only late comes back with its next heartbeat, and
    // learns that it had been taken for dead.
    assert!(pods[1].state.heartbeat(&pod_info("dying", 2), TTL).await.unwrap());
    assert_eq!(ids(&pods[0].state.live_pods().await.unwrap()), vec!["alive", "dying"]);
}

#[tokio::test]
async fn every_call_fails_fast_while_redis_is_down() {
    let mut server = RedisServer::start().await;
    let pod = Pod::connected(&server.url).await;
    server.kill().await;
    let tournament = Uuid::new_v4();
    let ann = entry("Ann", "A");
    for _ in 0..2 {
        let started = Instant::now();
        assert!(pod.state.claim("k", "m", TTL).await.is_err());
        assert!(pod.state.join(tournament, &ann, "pod", TTL).await.is_err());
        assert!(pod.state.online(tournament).await.is_err());
        assert!(pod.state.clear_pod("pod").await.is_err());
        assert!(pod.state.keep_pod("pod", TTL).await.is_err());
        assert!(pod.state.heartbeat(&pod_info("p", 1), TTL).await.is_err());
        assert!(pod.state.live_pods().await.is_err());
        assert!(pod.state.prune().await.is_err());
        assert!(pod.state.agree("token-key", "proposal").await.is_err());
        assert!(started.elapsed() < Duration::from_secs(4), "the calls took {:?}", started.elapsed());
    }
}
