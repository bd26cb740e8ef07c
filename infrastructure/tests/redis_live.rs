//! The Redis bus and shared state against a real `redis-server` of each test's own, which the
//! tests kill and restart to check what pods rely on during and after an outage.

#[path = "../../tests/common/proxy.rs"]
mod proxy;
#[path = "../../tests/common/redis_server.rs"]
mod redis_server;

use domain::Team;
use infrastructure::live::{connect_redis, RedisBus, RedisSharedState};
use live::messages::{self, BusPayload, WireMessage};
use live::ports::{Bus, BusListener, Click, ClickList, SharedState};
use proxy::{Mode, Proxy};
use redis_server::RedisServer;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};
use uuid::Uuid;

/// Longest wait for something asynchronous (a connection, a message, an expiry).
const DEADLINE: Duration = Duration::from_secs(10);
/// How long a test waits to be sure that something does not arrive.
const QUIET: Duration = Duration::from_millis(300);

/// Records what a bus delivers.
struct Recorder {
    messages: mpsc::UnboundedSender<(String, Vec<u8>)>,
    resubscribed: AtomicUsize,
}

impl BusListener for Recorder {
    fn on_message(&self, channel: &str, payload: &[u8]) {
        let _ = self.messages.send((channel.to_owned(), payload.to_vec()));
    }

    fn on_resubscribed(&self) {
        self.resubscribed.fetch_add(1, Ordering::SeqCst);
    }
}

/// A bus of one "pod" and what it received.
struct Pod {
    bus: Arc<RedisBus>,
    state: Arc<RedisSharedState>,
    recorder: Arc<Recorder>,
    received: Mutex<mpsc::UnboundedReceiver<(String, Vec<u8>)>>,
}

impl Pod {
    async fn connect(url: &str) -> Pod {
        let (bus, state) = connect_redis(url).await.expect("valid URL");
        let (messages, received) = mpsc::unbounded_channel();
        let recorder = Arc::new(Recorder { messages, resubscribed: AtomicUsize::new(0) });
        bus.set_listener(recorder.clone());
        Pod { bus, state, recorder, received: Mutex::new(received) }
    }

    /// A pod whose connections are up.
    async fn connected(url: &str) -> Pod {
        let pod = Pod::connect(url).await;
        eventually("the pod connects", || pod.bus.is_connected()).await;
        pod
    }

    /// The next message, failing the test after the deadline.
    async fn next_message(&self) -> (String, String) {
        let mut received = self.received.lock().await;
        let (channel, payload) = tokio::time::timeout(DEADLINE, received.recv())
            .await
            .expect("a message within the deadline")
            .expect("the listener is alive");
        (channel, String::from_utf8(payload).unwrap())
    }

    /// Whether a message arrives within [`QUIET`].
    async fn receives_nothing(&self) -> bool {
        let mut received = self.received.lock().await;
        tokio::time::timeout(QUIET, received.recv()).await.is_err()
    }

    fn resubscribed(&self) -> usize {
        self.recorder.resubscribed.load(Ordering::SeqCst)
    }
}

/// Polls `condition` until it holds, failing the test after [`DEADLINE`].
async fn eventually(what: &str, condition: impl FnMut() -> bool) {
    eventually_within(DEADLINE, what, condition).await;
}

/// Polls `condition` until it holds, failing the test after `limit`.
async fn eventually_within(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes until Redis accepts it (after a restart the publisher may still be reconnecting).
async fn publish_when_possible(bus: &RedisBus, channel: &str, payload: &str) {
    let deadline = Instant::now() + DEADLINE;
    while bus.publish(channel, payload.as_bytes().to_vec()).await.is_err() {
        assert!(Instant::now() < deadline, "publishing never succeeded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Number of subscribers of `channel` according to Redis.
fn subscribers(server: &RedisServer, channel: &str) -> u32 {
    let output = server.cli(&["PUBSUB", "NUMSUB", channel]);
    output
        .lines()
        .last()
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("NUMSUB said {output:?}"))
}

/// A shared state with a connection of its own, once it answers.
async fn shared_state_of_its_own(url: &str) -> RedisSharedState {
    let state = RedisSharedState::connect(url).await.unwrap();
    let deadline = Instant::now() + DEADLINE;
    while let Err(error) = state.take_token("never-issued").await {
        assert!(Instant::now() < deadline, "the shared state never connected: {error}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    state
}

fn channel() -> String {
    format!("lct:tournament:{}", Uuid::new_v4())
}

fn click(name: &str, team: Team, at_ms: i64) -> Click {
    Click { team, name: name.to_owned(), surname: format!("{name}son"), at_ms }
}

#[tokio::test]
async fn a_message_published_on_one_pod_reaches_a_subscribed_pod() {
    let server = RedisServer::start().await;
    let (publisher, subscriber) = (Pod::connected(&server.url).await, Pod::connected(&server.url).await);
    let channel = channel();

    subscriber.bus.subscribe(&channel).await;
    publisher.bus.publish(&channel, b"{\"version\":1}".to_vec()).await.unwrap();

    assert_eq!(subscriber.next_message().await, (channel.clone(), "{\"version\":1}".to_owned()));
    assert!(publisher.receives_nothing().await, "the publisher did not subscribe");
}

/// A feed subscribes, then reads the stream's version: anything published once `subscribe`
/// has returned must reach it, however slow the way to Redis is. (The Redis client answers a
/// SUBSCRIBE before it is even written; the bus must wait for Redis to have it.) Likewise a
/// channel left is left at Redis once `unsubscribe` returns.
#[tokio::test]
async fn a_subscription_is_in_force_at_redis_when_subscribe_returns() {
    let server = RedisServer::start().await;
    let slow_road = Proxy::start(server.port).await;
    let subscriber = Pod::connected(&slow_road.url).await;
    let publisher = Pod::connected(&server.url).await;
    // From now on every byte between the subscriber and Redis takes a while each way.
    slow_road.set(Mode::Delay(Duration::from_millis(150)));

    for n in 0..3 {
        let channel = channel();
        subscriber.bus.subscribe(&channel).await;
        assert_eq!(subscribers(&server, &channel), 1, "subscribed at Redis once subscribe returned");
        publisher.bus.publish(&channel, format!("right after {n}").into_bytes()).await.unwrap();
        assert_eq!(subscriber.next_message().await, (channel.clone(), format!("right after {n}")));
        subscriber.bus.unsubscribe(&channel).await;
        assert_eq!(subscribers(&server, &channel), 0, "left at Redis once unsubscribe returned");
    }
}

#[tokio::test]
async fn a_pod_receives_nothing_from_channels_it_did_not_subscribe_to() {
    let server = RedisServer::start().await;
    let (publisher, subscriber) = (Pod::connected(&server.url).await, Pod::connected(&server.url).await);
    let (served, other) = (channel(), channel());
    subscriber.bus.subscribe(&served).await;

    publisher.bus.publish(&other, b"not for you".to_vec()).await.unwrap();
    publisher.bus.publish(&served, b"for you".to_vec()).await.unwrap();

    // Messages of one publisher arrive in order, so the other channel's would have come first.
    assert_eq!(subscriber.next_message().await, (served, "for you".to_owned()));
    assert_eq!(subscribers(&server, &other), 0);
    assert_eq!(server.cli(&["PUBSUB", "NUMPAT"]), "0", "no pattern subscription");
}

#[tokio::test]
async fn a_channel_stays_subscribed_until_its_last_interest_leaves() {
    let server = RedisServer::start().await;
    let (publisher, pod) = (Pod::connected(&server.url).await, Pod::connected(&server.url).await);
    let channel = channel();

    pod.bus.subscribe(&channel).await;
    pod.bus.subscribe(&channel).await;
    assert_eq!(subscribers(&server, &channel), 1);

    pod.bus.unsubscribe(&channel).await;
    assert_eq!(subscribers(&server, &channel), 1, "one interest is left");
    publisher.bus.publish(&channel, b"still here".to_vec()).await.unwrap();
    assert_eq!(pod.next_message().await.1, "still here");

    pod.bus.unsubscribe(&channel).await;
    assert_eq!(subscribers(&server, &channel), 0);
    publisher.bus.publish(&channel, b"gone".to_vec()).await.unwrap();
    assert!(pod.receives_nothing().await);
}

#[tokio::test]
async fn concurrent_interests_in_a_channel_end_in_the_right_state() {
    let server = RedisServer::start().await;
    let pod = Pod::connected(&server.url).await;
    let channel = channel();

    let churn = |bus: Arc<RedisBus>, channel: String| async move {
        bus.subscribe(&channel).await;
        tokio::task::yield_now().await;
        bus.unsubscribe(&channel).await;
    };
    let tasks: Vec<_> = (0..50).map(|_| tokio::spawn(churn(pod.bus.clone(), channel.clone()))).collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(subscribers(&server, &channel), 0, "every interest left");

    let mut tasks: Vec<_> = (0..50).map(|_| tokio::spawn(churn(pod.bus.clone(), channel.clone()))).collect();
    let bus = pod.bus.clone();
    let kept = channel.clone();
    tasks.push(tokio::spawn(async move { bus.subscribe(&kept).await }));
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(subscribers(&server, &channel), 1, "one interest is left");
}

#[tokio::test]
async fn publishing_fails_fast_while_redis_is_down_and_subscriptions_come_back_after() {
    let mut server = RedisServer::start().await;
    let (publisher, subscriber) = (Pod::connected(&server.url).await, Pod::connected(&server.url).await);
    let channel = channel();
    subscriber.bus.subscribe(&channel).await;
    assert_eq!(subscriber.resubscribed(), 0);

    server.kill().await;
    // Right after the kill, before the client may have noticed, and once it has.
    for _ in 0..2 {
        let started = Instant::now();
        let result = publisher.bus.publish(&channel, b"lost".to_vec()).await;
        assert!(result.is_err(), "publishing succeeded with Redis down");
        assert!(started.elapsed() < Duration::from_secs(1), "publishing took {:?}", started.elapsed());
        eventually("the bus reports the outage", || !publisher.bus.is_connected()).await;
    }
    assert!(publisher.state.take_token("any").await.is_err(), "the shared state fails while Redis is down");

    server.restart().await;
    eventually("the subscriber restored its subscription", || subscriber.resubscribed() >= 1).await;
    assert_eq!(subscribers(&server, &channel), 1);
    publish_when_possible(&publisher.bus, &channel, "after restart").await;
    assert_eq!(subscriber.next_message().await, (channel, "after restart".to_owned()));
    eventually("both connections are back", || publisher.bus.is_connected() && subscriber.bus.is_connected()).await;
}

/// The host on the other side dies without a word (power lost, a partition): the connections
/// stay open on the pod's side and nothing comes. An idle subscriber sends nothing that could
/// go unanswered, so only a check of its own finds out; then it connects again and restores
/// its subscriptions.
#[tokio::test]
async fn a_subscriber_whose_connection_died_silently_connects_again_and_hears_its_channels() {
    let server = RedisServer::start().await;
    let road = Proxy::start(server.port).await;
    let subscriber = Pod::connected(&road.url).await;
    let publisher = Pod::connected(&server.url).await;
    let channel = channel();
    subscriber.bus.subscribe(&channel).await;
    assert_eq!(subscribers(&server, &channel), 1);

    road.set(Mode::Vanish);
    eventually("Redis dropped the subscriber's connection", || subscribers(&server, &channel) == 0).await;
    // Found within a PING's period and timeout (seconds), then connected again.
    eventually_within(Duration::from_secs(30), "the subscriber noticed its connection was dead", || {
        subscriber.resubscribed() > 0
    })
    .await;
    assert_eq!(subscribers(&server, &channel), 1);
    publisher.bus.publish(&channel, b"heard again".to_vec()).await.unwrap();
    assert_eq!(subscriber.next_message().await, (channel, "heard again".to_owned()));
}

#[tokio::test]
async fn a_bus_started_while_redis_is_down_works_once_redis_starts() {
    let mut server = RedisServer::start().await;
    server.kill().await;

    let started = Instant::now();
    let pod = Pod::connect(&server.url).await;
    let channel = channel();
    pod.bus.subscribe(&channel).await;
    assert!(started.elapsed() < Duration::from_secs(1), "starting took {:?}", started.elapsed());
    assert!(!pod.bus.is_connected());
    assert!(pod.bus.publish(&channel, b"lost".to_vec()).await.is_err());

    server.restart().await;
    eventually("the bus connects", || pod.bus.is_connected()).await;
    eventually("the subscription made while down is in place", || pod.resubscribed() >= 1).await;
    assert_eq!(subscribers(&server, &channel), 1);
    let publisher = Pod::connected(&server.url).await;
    publisher.bus.publish(&channel, b"hello".to_vec()).await.unwrap();
    assert_eq!(pod.next_message().await, (channel, "hello".to_owned()));
}

#[tokio::test]
async fn clicks_keep_the_latest_of_each_player_in_time_order_across_pods() {
    let server = RedisServer::start().await;
    let (one, two) = (Pod::connected(&server.url).await, Pod::connected(&server.url).await);
    let tournament = Uuid::new_v4();
    let ttl = Duration::from_secs(60);

    let first = one.state.record_click(tournament, click("Ann", Team::Bayern, 30), ttl).await.unwrap();
    let second = two.state.record_click(tournament, click("Bob", Team::Psg, 10), ttl).await.unwrap();
    let list = one.state.record_click(tournament, click("Ann", Team::Chelsea, 40), ttl).await.unwrap();

    assert_eq!(list.clicks, vec![click("Bob", Team::Psg, 10), click("Ann", Team::Chelsea, 40)]);
    assert!(first.seq < second.seq && second.seq < list.seq, "each list numbered after the one before, on any pod");
    let other = two.state.record_click(Uuid::new_v4(), click("Cid", Team::Juventus, 1), ttl).await.unwrap();
    assert_eq!(other.clicks, vec![click("Cid", Team::Juventus, 1)], "tournaments do not share clicks");
}

/// A failover may lose the last writes (replication is asynchronous): the new master's list
/// number is behind what the pods delivered, and lists numbered at or below that are never
/// shown. A click is numbered after every click recorded before it in time.
#[tokio::test]
async fn a_click_after_a_failover_lost_the_last_numbers_is_numbered_after_them() {
    let server = RedisServer::start().await;
    let pod = Pod::connected(&server.url).await;
    let tournament = Uuid::new_v4();
    let ttl = Duration::from_secs(60);
    let first = pod.state.record_click(tournament, click("Ann", Team::Bayern, 1_000), ttl).await.unwrap();
    pod.state.record_click(tournament, click("Bob", Team::Psg, 1_000), ttl).await.unwrap();
    let last = pod.state.record_click(tournament, click("Cid", Team::Juventus, 1_001), ttl).await.unwrap();
    // The replica that takes over holds the list as it was after the first click.
    server.cli(&["HSET", &format!("lct:clicks:{tournament}"), "\u{1f}seq", &first.seq.to_string()]);
    let after = pod.state.record_click(tournament, click("Dan", Team::Chelsea, 1_002), ttl).await.unwrap();
    assert!(after.seq > last.seq, "numbered {} after {} was delivered", after.seq, last.seq);
}

#[tokio::test]
async fn a_click_list_read_again_is_the_last_one_recorded_with_its_number() {
    let server = RedisServer::start().await;
    let (one, two) = (Pod::connected(&server.url).await, Pod::connected(&server.url).await);
    let tournament = Uuid::new_v4();
    assert_eq!(two.state.click_list(tournament).await.unwrap(), None, "no click yet");
    let ttl = Duration::from_secs(60);
    one.state.record_click(tournament, click("Ann", Team::Bayern, 30), ttl).await.unwrap();
    let recorded = one.state.record_click(tournament, click("Bob", Team::Psg, 10), ttl).await.unwrap();
    assert_eq!(two.state.click_list(tournament).await.unwrap(), Some(recorded));
}

#[tokio::test]
async fn a_click_list_is_published_with_its_recording_and_leaves_out_what_cannot_be_read() {
    let server = RedisServer::start().await;
    let (one, two) = (Pod::connected(&server.url).await, Pod::connected(&server.url).await);
    let tournament = Uuid::new_v4();
    let ttl = Duration::from_secs(60);
    let channel = messages::channel(tournament);
    two.bus.subscribe(&channel).await;
    let origin = Uuid::new_v4();
    let publication = messages::click_publication(tournament, origin, 1_234);

    // Clicks of today: sequence numbers of today (ms × 1024), which Lua holds as doubles.
    let now_ms = 1_796_578_155_568;
    let first = one
        .state
        .record_and_publish_click(tournament, click("Bob", Team::Psg, now_ms + 20), ttl, publication.clone())
        .await;
    assert!(first.unwrap().published);
    // A field that does not hold a click (damaged, or written by something else) is left out
    // of the lists, on the bus as in the answer.
    let key = format!("lct:clicks:{tournament}");
    assert_eq!(server.cli(&["HSET", &key, "Eve\u{1f}Evans", "{not json"]), "1");
    assert_eq!(server.cli(&["HSET", &key, "Zed\u{1f}Zedson", "17"]), "1");
    let recorded = one
        .state
        .record_and_publish_click(tournament, click("Ann", Team::Bayern, now_ms + 10), ttl, publication.clone())
        .await
        .unwrap();
    assert!(recorded.published);
    let expected = vec![click("Ann", Team::Bayern, now_ms + 10), click("Bob", Team::Psg, now_ms + 20)];
    assert_eq!(recorded.list.clicks, expected);

    for expected in [1, 2] {
        let (heard_on, payload) = two.next_message().await;
        assert_eq!(heard_on, channel);
        // Read as receiving pods read it.
        let read: BusPayload = serde_json::from_str(&payload).unwrap();
        assert_eq!((read.origin, read.published_at_ms), (Some(origin), Some(1_234)), "{payload}");
        let Ok(WireMessage::Clicks { tournament_id, clicks, seq }) = read.message() else {
            panic!("not a click list: {payload}")
        };
        assert_eq!(tournament_id, tournament);
        if expected == 2 {
            assert_eq!(ClickList::new(seq, clicks), recorded.list, "the list published is the list answered");
        } else {
            assert_eq!(clicks, vec![click("Bob", Team::Psg, now_ms + 20)]);
            assert!(seq > 1_000_000_000_000_000, "numbered from the click's time: {seq}");
        }
    }

    // A shared state of its own is not a bus: it records and leaves publishing to the caller.
    let alone = shared_state_of_its_own(&server.url).await;
    let recorded =
        alone.record_and_publish_click(tournament, click("Cid", Team::Chelsea, 30), ttl, publication).await.unwrap();
    assert!(!recorded.published);
    assert_eq!(recorded.list.clicks.len(), 3);
    assert!(two.receives_nothing().await, "nothing published");
}

#[tokio::test]
async fn the_click_list_expires_ttl_after_the_last_click() {
    let server = RedisServer::start().await;
    let pod = Pod::connected(&server.url).await;
    let tournament = Uuid::new_v4();
    let key = format!("lct:clicks:{tournament}");

    pod.state.record_click(tournament, click("Ann", Team::Bayern, 1), Duration::from_secs(60)).await.unwrap();
    let ttl_ms: i64 = server.cli(&["PTTL", &key]).parse().unwrap();
    assert!(ttl_ms > 50_000 && ttl_ms <= 60_000, "PTTL {ttl_ms}");

    let second =
        pod.state.record_click(tournament, click("Bob", Team::Psg, 2), Duration::from_millis(200)).await.unwrap();
    eventually("the list expires", || server.cli(&["EXISTS", &key]) == "0").await;
    let list =
        pod.state.record_click(tournament, click("Cid", Team::Chelsea, 3), Duration::from_secs(60)).await.unwrap();
    assert_eq!(list.clicks, vec![click("Cid", Team::Chelsea, 3)]);
    assert!(list.seq > second.seq, "a list started over is still numbered after the expired one");
}

#[tokio::test]
async fn a_token_is_taken_once_by_any_pod() {
    let server = RedisServer::start().await;
    let (one, two) = (Pod::connected(&server.url).await, Pod::connected(&server.url).await);
    let ttl = Duration::from_secs(60);

    one.state.put_token("tok-1", "player-a", ttl).await.unwrap();
    assert!(one.state.put_token("tok-1", "player-b", ttl).await.is_err(), "a live token is not overwritten");
    assert_eq!(two.state.take_token("tok-1").await.unwrap(), Some("player-a".to_owned()));
    assert_eq!(one.state.take_token("tok-1").await.unwrap(), None);
    assert_eq!(one.state.take_token("never-issued").await.unwrap(), None);
}

#[tokio::test]
async fn an_expired_token_cannot_be_taken() {
    let server = RedisServer::start().await;
    let pod = Pod::connected(&server.url).await;

    pod.state.put_token("tok-2", "player-a", Duration::from_millis(100)).await.unwrap();
    eventually("the token expires", || server.cli(&["EXISTS", "lct:token:tok-2"]) == "0").await;
    assert_eq!(pod.state.take_token("tok-2").await.unwrap(), None);
}

#[tokio::test]
async fn a_shared_state_of_its_own_works_like_the_shared_one() {
    let server = RedisServer::start().await;
    let state = shared_state_of_its_own(&server.url).await;
    state.put_token("tok-3", "v", Duration::from_secs(60)).await.unwrap();
    assert_eq!(state.take_token("tok-3").await.unwrap(), Some("v".to_owned()));
}

#[tokio::test]
async fn a_password_protected_redis_is_reached_with_the_password_in_the_url() {
    let server = RedisServer::start().await;
    assert_eq!(server.cli(&["CONFIG", "SET", "requirepass", "s3cret"]), "OK");
    let pod = Pod::connected(&format!("redis://:s3cret@127.0.0.1:{}", server.port)).await;
    pod.state.put_token("tok-4", "v", Duration::from_secs(60)).await.unwrap();
    assert_eq!(pod.state.take_token("tok-4").await.unwrap(), Some("v".to_owned()));
}

#[tokio::test]
async fn a_click_sends_the_record_script_by_its_digest_and_reloads_it_when_redis_lost_it() {
    let server = RedisServer::start().await;
    let pod = Pod::connected(&server.url).await;
    let tournament = Uuid::new_v4();
    let ttl = Duration::from_secs(60);
    for (at, name) in [(1, "Ann"), (2, "Bob"), (3, "Cid")] {
        pod.state.record_click(tournament, click(name, Team::Bayern, at), ttl).await.unwrap();
    }
    assert!(server.calls("evalsha") >= 3, "every click by its digest: {}", server.cli(&["INFO", "commandstats"]));
    assert!(
        server.calls("eval") <= 1,
        "the script's text is sent at most once: {}",
        server.cli(&["INFO", "commandstats"])
    );

    // A restarted or failed-over Redis has lost its scripts: the click is still recorded.
    server.cli(&["SCRIPT", "FLUSH"]);
    let list = pod.state.record_click(tournament, click("Dan", Team::Psg, 4), ttl).await.unwrap();
    assert_eq!(list.clicks.len(), 4);
    assert_eq!(list.clicks.last(), Some(&click("Dan", Team::Psg, 4)));
    let again = pod.state.record_click(tournament, click("Eve", Team::Psg, 5), ttl).await.unwrap();
    assert_eq!(again.clicks.len(), 5);
    assert!(server.calls("eval") <= 2, "reloaded once: {}", server.cli(&["INFO", "commandstats"]));
}
