//! Live coordination over Redis, for deployments of many pods.
//!
//! Redis may be one server, a master found through Sentinel, or a Redis Cluster (see
//! [`redis_config`](super::redis_config)). Each pod holds two clients: a publishing one (also
//! used for the shared state) and a subscribing one, each with one connection per server it
//! needs (per master in a cluster). Both reconnect forever with an exponential backoff (100 ms up
//! to 2 s), asking the sentinels for the master of the moment or the cluster for its slot table
//! each time, and both start in the background: a pod starts, and serves commands, while Redis
//! is down.
//!
//! In a cluster, pub/sub is sharded (`SPUBLISH`, `SSUBSCRIBE`): a tournament's messages only
//! touch the shard that owns its channel's slot, and the subscriber follows the slot when the
//! cluster moves it (see [`redis_shards`](super::redis_shards)).
//!
//! Subscriptions are counted per channel: the first interest in a channel subscribes, the last
//! one leaving unsubscribes, and no pattern is ever subscribed, so a pod receives nothing for
//! tournaments it does not serve. One task applies every subscribe and unsubscribe in the order
//! they were asked for, and the same task restores every subscription after a reconnect before
//! it tells the listener, so concurrent interests and reconnects always end in the right state.
//!
//! Publishing fails fast: when the publishing connection is down the call returns an error at
//! once, and otherwise it gives up after a short timeout, so no command of the application waits
//! on Redis. The URL may carry a password; only `host:port` is ever logged or put in errors.

use super::redis_config::{resolve, RedisSettings, Resolved, Topology};
use super::redis_script;
use super::redis_shards::{routing_now, Placement};
use async_trait::async_trait;
use fred::clients::{Client, SubscriberClient};
use fred::prelude::{
    ClientLike, ClusterInterface, EventInterface, Expiration, HashesInterface, KeysInterface, Options, PubsubInterface,
    ReconnectPolicy, SetOptions, Value,
};
use fred::types::config::UnresponsiveConfig;
use fred::types::scripts::Script;
use fred::types::{Builder, Message, MessageKind};
use live::ports::{Bus, BusListener, Click, ClickList, ClickPublication, LiveError, RecordedClick, SharedState};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Longest wait for a TCP connection (and TLS handshake) to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection with a request unanswered this long is taken for dead and replaced.
const UNRESPONSIVE_AFTER: Duration = Duration::from_secs(5);
/// Timeout of a publication: commands must not stall behind Redis.
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(300);
/// Timeout of shared-state commands, and the default of every other command.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
/// Timeout of a SUBSCRIBE or UNSUBSCRIBE.
const SUBSCRIPTION_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a failed resynchronisation of the subscriptions is tried again while connected.
const RESYNC_RETRY: Duration = Duration::from_millis(500);
/// Channels per SUBSCRIBE when restoring many subscriptions at once.
const RESUBSCRIBE_CHUNK: usize = 500;
/// Messages buffered between the subscriber connection and the listener.
const MESSAGE_BUFFER: usize = 4096;
/// How often the subscribing connection is asked for a PING. An idle subscriber sends nothing
/// else, so without it a connection whose other end died without a word (a host lost, a
/// partition) would stay "connected" and deaf.
const LIVENESS_CHECK: Duration = Duration::from_secs(2);
/// How often, in a cluster, the subscribed channels' slots are checked against the cluster's
/// slot table (a migration drops their subscriptions without closing the connection).
const SLOT_CHECK: Duration = Duration::from_secs(1);

/// Opens the Redis connections of this pod and returns the bus and the shared state over them
/// (the shared state uses the bus's publishing connection). Returns at once, even while Redis is
/// down: the connections are made in the background and retried forever.
///
/// Errors: only invalid settings (see [`RedisSettings`]).
pub async fn connect_redis(
    settings: impl Into<RedisSettings>,
) -> Result<(Arc<RedisBus>, Arc<RedisSharedState>), LiveError> {
    let bus = RedisBus::connect(settings).await?;
    let state = bus.shared_state();
    Ok((Arc::new(bus), Arc::new(state)))
}

/// Builds a client builder of the settings with lct's timeouts and reconnect policy. Returns it
/// with the topology and what to log for it (hosts and ports, never a password).
fn builder(settings: &RedisSettings) -> Result<(Builder, Topology, String), LiveError> {
    let Resolved { mut config, topology, endpoint } = resolve(settings)?;
    // Keep trying in the background when Redis is down at start, instead of failing.
    config.fail_fast = false;
    let mut builder = Builder::from_config(config);
    builder
        .with_connection_config(|connection| {
            connection.connection_timeout = CONNECT_TIMEOUT;
            connection.internal_command_timeout = CONNECT_TIMEOUT;
            connection.unresponsive =
                UnresponsiveConfig { max_timeout: Some(UNRESPONSIVE_AFTER), interval: Duration::from_secs(1) };
        })
        .with_performance_config(|performance| {
            performance.default_command_timeout = COMMAND_TIMEOUT;
            performance.broadcast_channel_capacity = MESSAGE_BUFFER;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
    Ok((builder, topology, endpoint))
}

fn build_error(error: fred::error::Error) -> LiveError {
    LiveError(format!("cannot set up the Redis client: {error}"))
}

/// Options of commands that must not wait for a reconnection.
fn fail_fast(timeout: Duration) -> Options {
    Options { timeout: Some(timeout), fail_fast: true, max_attempts: Some(1), ..Options::default() }
}

/// The publishing connection, shared by the bus and the shared state; closed when the last
/// holder drops it.
struct Publisher {
    client: Client,
    topology: Topology,
    endpoint: String,
}

impl Publisher {
    fn ensure_connected(&self) -> Result<(), LiveError> {
        if self.client.is_connected() {
            Ok(())
        } else {
            Err(LiveError(format!("Redis at {} is not connected", self.endpoint)))
        }
    }

    fn error(&self, what: &str, error: fred::error::Error) -> LiveError {
        LiveError(format!("Redis at {}: {what} failed: {error}", self.endpoint))
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        quit_in_background(self.client.clone());
    }
}

/// Closes a client without waiting, so that its connection task stops reconnecting.
fn quit_in_background<C: ClientLike + 'static>(client: C) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = client.quit().await;
        });
    }
}

/// A change of interest in a channel, answered once applied.
enum Interest {
    Subscribe(String, oneshot::Sender<()>),
    Unsubscribe(String, oneshot::Sender<()>),
}

/// Who gets the incoming messages; set once.
type ListenerSlot = Arc<OnceLock<Arc<dyn BusListener>>>;
/// Interest count of every channel this pod wants; read by the message task to drop messages of
/// channels no longer wanted.
type Wanted = Arc<Mutex<HashMap<String, usize>>>;

fn lock(wanted: &Wanted) -> MutexGuard<'_, HashMap<String, usize>> {
    wanted.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Pub/sub between pods over Redis. See the module documentation.
pub struct RedisBus {
    publisher: Arc<Publisher>,
    subscriber: SubscriberClient,
    interests: mpsc::UnboundedSender<Interest>,
    listener: ListenerSlot,
    tasks: Vec<JoinHandle<()>>,
}

impl RedisBus {
    /// Starts the publishing and the subscribing connections in the background and returns at
    /// once, also while Redis is down (the bus then reports not connected, and subscriptions
    /// are made once it connects).
    ///
    /// Errors: only invalid settings (see [`RedisSettings`]).
    pub async fn connect(settings: impl Into<RedisSettings>) -> Result<RedisBus, LiveError> {
        let (builder, topology, endpoint) = builder(&settings.into())?;
        let publisher = builder.build().map_err(build_error)?;
        let subscriber = builder.build_subscriber_client().map_err(build_error)?;
        tracing::info!(redis = %endpoint, ?topology, "connecting to Redis");

        // Take the event streams before connecting so that no connection or message is missed.
        let messages = subscriber.message_rx();
        let connections = subscriber.reconnect_rx();
        let wanted: Wanted = Arc::default();
        let listener: ListenerSlot = Arc::default();
        let (interests, interest_rx) = mpsc::unbounded_channel();
        let subscriptions = Subscriptions {
            subscriber: subscriber.clone(),
            shards: (topology == Topology::Cluster)
                .then(|| Shards { publisher: publisher.clone(), placement: Placement::default() }),
            wanted: Arc::clone(&wanted),
            stale: HashSet::new(),
            listener: Arc::clone(&listener),
            endpoint: endpoint.clone(),
            needs_resync: false,
            missed_messages: false,
        };
        let mut tasks = vec![
            tokio::spawn(subscriptions.run(interest_rx, connections)),
            tokio::spawn(forward_messages(messages, wanted, Arc::clone(&listener), endpoint.clone())),
        ];
        if topology != Topology::Cluster {
            // In a cluster the check of the subscribed slots finds a master gone.
            tasks.push(tokio::spawn(watch_liveness(subscriber.clone(), endpoint.clone())));
        }
        // The connection tasks run until `quit`; their handles are not needed.
        drop(publisher.connect());
        drop(subscriber.connect());

        Ok(RedisBus {
            publisher: Arc::new(Publisher { client: publisher, topology, endpoint }),
            subscriber,
            interests,
            listener,
            tasks,
        })
    }

    /// The shared state over this bus's publishing connection.
    pub fn shared_state(&self) -> RedisSharedState {
        RedisSharedState { publisher: Arc::clone(&self.publisher), publishes: true }
    }

    /// Asks the channels' interest task for a change and waits until it is applied.
    async fn change(&self, interest: impl FnOnce(oneshot::Sender<()>) -> Interest) {
        let (done, applied) = oneshot::channel();
        if self.interests.send(interest(done)).is_ok() {
            let _ = applied.await;
        }
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        quit_in_background(self.subscriber.clone());
    }
}

#[async_trait]
impl Bus for RedisBus {
    /// Only the first listener is kept.
    fn set_listener(&self, listener: Arc<dyn BusListener>) {
        if self.listener.set(listener).is_err() {
            tracing::warn!("the Redis bus already has a listener; the new one is ignored");
        }
    }

    /// Errors at once when the publishing connection is down, and after a short timeout when
    /// Redis does not answer.
    async fn publish(&self, channel: &str, payload: Vec<u8>) -> Result<(), LiveError> {
        self.publisher.ensure_connected()?;
        let client = self.publisher.client.with_options(&fail_fast(PUBLISH_TIMEOUT));
        let payload = Value::Bytes(payload.into());
        let _receivers: i64 = match self.publisher.topology {
            Topology::Cluster => client.spublish(channel, payload).await,
            Topology::Single | Topology::Sentinel => client.publish(channel, payload).await,
        }
        .map_err(|error| self.publisher.error("PUBLISH", error))?;
        Ok(())
    }

    async fn subscribe(&self, channel: &str) {
        self.change(|done| Interest::Subscribe(channel.to_owned(), done)).await;
    }

    async fn unsubscribe(&self, channel: &str) {
        self.change(|done| Interest::Unsubscribe(channel.to_owned(), done)).await;
    }

    fn is_connected(&self) -> bool {
        self.publisher.client.is_connected() && self.subscriber.is_connected()
    }
}

/// The task that owns the subscriptions: it applies interests in order and restores every
/// subscription after each (re)connection of the subscribing connection (in a cluster, of any
/// of its connections, and after the cluster moved a subscribed channel's slot).
///
/// fred's own re-subscription (`manage_subscriptions`) is not used: it runs beside the caller's
/// subscribe and unsubscribe calls, so a restore could re-subscribe a channel just dropped.
struct Subscriptions {
    subscriber: SubscriberClient,
    /// In a cluster: where the channels are subscribed, and a client to read the slot table.
    shards: Option<Shards>,
    wanted: Wanted,
    /// Channels no longer wanted whose UNSUBSCRIBE failed on the current connection.
    stale: HashSet<String>,
    listener: ListenerSlot,
    endpoint: String,
    /// The current connection may lack some wanted channel (or hold a stale one).
    needs_resync: bool,
    /// Messages may have been missed: tell the listener once the subscriptions are restored.
    missed_messages: bool,
}

/// What the subscriptions need in a Redis Cluster.
struct Shards {
    /// Reads the slot table over its existing connections.
    publisher: Client,
    placement: Placement,
}

impl Subscriptions {
    async fn run(
        mut self,
        mut interests: mpsc::UnboundedReceiver<Interest>,
        mut connections: broadcast::Receiver<fred::types::config::Server>,
    ) {
        let mut retry = tokio::time::interval(RESYNC_RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut slot_check = tokio::time::interval(SLOT_CHECK);
        slot_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                connection = connections.recv() => match connection {
                    Ok(_) | Err(RecvError::Lagged(_)) => self.on_connection().await,
                    Err(RecvError::Closed) => break,
                },
                interest = interests.recv() => match interest {
                    Some(Interest::Subscribe(channel, done)) => {
                        self.subscribe(channel).await;
                        let _ = done.send(());
                    }
                    Some(Interest::Unsubscribe(channel, done)) => {
                        self.unsubscribe(channel).await;
                        let _ = done.send(());
                    }
                    None => break,
                },
                _ = retry.tick(), if self.needs_resync && self.subscriber.is_connected() => self.resync().await,
                _ = slot_check.tick(), if self.watches_slots() => self.follow_slots().await,
            }
        }
    }

    /// A new connection has no subscriptions: restore them all, then tell the listener.
    async fn on_connection(&mut self) {
        tracing::info!(redis = %self.endpoint, "Redis subscriber connected");
        if self.shards.is_none() {
            // A new connection holds no subscription. (In a cluster only one master's connection
            // is new: the others keep theirs, stale ones included.)
            self.stale.clear();
        }
        // Messages of the wanted channels may have been missed meanwhile; with none wanted (as on
        // the first connection, or each master's first connection in a cluster) there is nothing
        // to repair.
        if !lock(&self.wanted).is_empty() {
            self.missed_messages = true;
        }
        self.needs_resync = true;
        self.resync().await;
    }

    /// Subscribes the current connection to every wanted channel and unsubscribes the stale
    /// ones; tells the listener when messages may have been missed.
    async fn resync(&mut self) {
        let channels: Vec<String> = lock(&self.wanted).keys().cloned().collect();
        for chunk in channels.chunks(RESUBSCRIBE_CHUNK) {
            if let Err(error) = self.send_subscribe(chunk.to_vec()).await {
                tracing::warn!(redis = %self.endpoint, %error, "restoring Redis subscriptions failed; will retry");
                return;
            }
        }
        let stale: Vec<String> = self.stale.iter().cloned().collect();
        if !stale.is_empty() {
            if let Err(error) = self.send_unsubscribe(stale).await {
                tracing::warn!(redis = %self.endpoint, %error, "dropping stale Redis subscriptions failed; will retry");
                return;
            }
            self.stale.clear();
        }
        self.needs_resync = false;
        if std::mem::take(&mut self.missed_messages) {
            tracing::info!(redis = %self.endpoint, channels = channels.len(), "Redis subscriptions restored");
            if let Some(listener) = self.listener.get() {
                listener.on_resubscribed();
            }
        }
    }

    async fn subscribe(&mut self, channel: String) {
        let first = {
            let mut wanted = lock(&self.wanted);
            let count = wanted.entry(channel.clone()).or_insert(0);
            *count += 1;
            *count == 1
        };
        if !first {
            return;
        }
        self.stale.remove(&channel);
        if !self.subscriber.is_connected() {
            // Made when the connection is back (see `on_connection`).
            self.needs_resync = true;
            self.missed_messages = true;
            return;
        }
        if let Err(error) = self.send_subscribe(vec![channel]).await {
            tracing::warn!(redis = %self.endpoint, %error, "Redis SUBSCRIBE failed; will retry");
            self.needs_resync = true;
            self.missed_messages = true;
        }
    }

    async fn unsubscribe(&mut self, channel: String) {
        let last = {
            let mut wanted = lock(&self.wanted);
            match wanted.get_mut(&channel) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    false
                }
                Some(_) => {
                    wanted.remove(&channel);
                    true
                }
                None => {
                    tracing::debug!(%channel, "unsubscribe without a subscription ignored");
                    false
                }
            }
        };
        if !last {
            return;
        }
        if !self.subscriber.is_connected() {
            // A connection that is down holds no subscription, and the next one will not get
            // this one; but in a cluster the other masters' connections may hold it.
            if self.shards.is_some() {
                self.stale.insert(channel);
                self.needs_resync = true;
            }
            return;
        }
        if let Err(error) = self.send_unsubscribe(vec![channel.clone()]).await {
            tracing::warn!(redis = %self.endpoint, %error, "Redis UNSUBSCRIBE failed; will retry");
            self.stale.insert(channel);
            self.needs_resync = true;
        }
    }

    async fn send_subscribe(&mut self, channels: Vec<String>) -> Result<(), fred::error::Error> {
        if channels.is_empty() {
            return Ok(());
        }
        let subscriber = self.subscriber.with_options(&fail_fast(SUBSCRIPTION_TIMEOUT));
        let Some(shards) = &mut self.shards else {
            subscriber.subscribe(channels).await?;
            return in_force(&subscriber).await;
        };
        // One channel per SSUBSCRIBE: each is answered once, which fred needs to follow the
        // cluster's redirections (and channels of several slots cannot share one anyway).
        for channel in channels {
            subscriber.ssubscribe(channel.as_str()).await?;
            shards.placement.record(&self.subscriber, &channel);
        }
        Ok(())
    }

    async fn send_unsubscribe(&mut self, channels: Vec<String>) -> Result<(), fred::error::Error> {
        let subscriber = self.subscriber.with_options(&fail_fast(SUBSCRIPTION_TIMEOUT));
        let Some(shards) = &mut self.shards else {
            subscriber.unsubscribe(channels).await?;
            return in_force(&subscriber).await;
        };
        for channel in channels {
            // A channel whose slot has moved is no longer subscribed anywhere.
            if let Some(node) = shards.placement.forget(&self.subscriber, &channel) {
                subscriber.sunsubscribe(channel.as_str()).await?;
                let on_node = Options { cluster_node: Some(node), ..fail_fast(SUBSCRIPTION_TIMEOUT) };
                in_force(&self.subscriber.with_options(&on_node)).await?;
            }
        }
        Ok(())
    }

    /// In a cluster with subscriptions, while connected.
    fn watches_slots(&self) -> bool {
        self.shards.as_ref().is_some_and(|shards| !shards.placement.is_empty()) && self.subscriber.is_connected()
    }

    /// Compares where the channels are subscribed with the cluster's slot table; when the
    /// cluster has moved some, refreshes the subscriber's table, subscribes every channel again
    /// (on their slots' masters of now) and tells the listener, which repairs from the store.
    async fn follow_slots(&mut self) {
        let Some(shards) = &self.shards else { return };
        // The cheap check, on a connection the publisher already has.
        match routing_now(&shards.publisher, &fail_fast(COMMAND_TIMEOUT)).await {
            Ok(routing) if shards.placement.moved(&routing).is_empty() => return,
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(redis = %self.endpoint, %error, "reading the cluster's slots failed; will retry");
                return;
            }
        }
        // The node asked may know better, or worse, than the subscriber: refresh the
        // subscriber's own table and decide on it.
        // Bounded: the task applies every subscription, so it must not wait on an unreachable
        // node for as long as the reconnect policy would.
        match tokio::time::timeout(UNRESPONSIVE_AFTER, self.subscriber.sync_cluster()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(redis = %self.endpoint, %error, "refreshing the cluster's slots failed; will retry");
                return;
            }
            Err(_) => {
                tracing::warn!(redis = %self.endpoint, "refreshing the cluster's slots timed out; will retry");
                return;
            }
        }
        let moved = self.subscriber.cached_cluster_state().map(|routing| shards.placement.moved(&routing));
        let Some(moved) = moved.filter(|moved| !moved.is_empty()) else { return };
        tracing::info!(redis = %self.endpoint, channels = moved.len(), "Redis Cluster moved subscribed channels; following them");
        self.missed_messages = true;
        self.needs_resync = true;
        self.resync().await;
    }
}

/// Waits until Redis has applied the (un)subscriptions sent before on this connection. The
/// client answers `SUBSCRIBE`, `UNSUBSCRIBE` and `SUNSUBSCRIBE` as soon as they are queued, before
/// they are even written; Redis answers a connection's commands in order, so once a `PING`
/// sent behind them is answered they are in force: what is published from then on arrives, or
/// no longer does. (`SSUBSCRIBE` is answered by Redis itself.)
async fn in_force<C: ClientLike>(connection: &C) -> Result<(), fred::error::Error> {
    connection.ping::<Value>(None).await.map(drop)
}

/// Pings the subscribing connection every [`LIVENESS_CHECK`] while it is connected, and
/// replaces one that does not answer within [`UNRESPONSIVE_AFTER`]: its subscriptions are then
/// restored, and the listener told, as after any reconnection.
async fn watch_liveness(subscriber: SubscriberClient, endpoint: String) {
    let mut ticks = tokio::time::interval(LIVENESS_CHECK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !subscriber.is_connected() {
            continue;
        }
        let Err(error) = in_force(&subscriber.with_options(&fail_fast(UNRESPONSIVE_AFTER))).await else { continue };
        if subscriber.is_connected() {
            tracing::warn!(redis = %endpoint, %error, "the Redis subscriber did not answer a PING; connecting again");
            // Answered once the new connection is made or its first attempt failed; the
            // reconnect policy takes it from there.
            let _ = tokio::time::timeout(UNRESPONSIVE_AFTER, subscriber.force_reconnection()).await;
        }
    }
}

/// Hands every message of a wanted channel to the listener.
async fn forward_messages(
    mut messages: broadcast::Receiver<Message>,
    wanted: Wanted,
    listener: ListenerSlot,
    endpoint: String,
) {
    loop {
        match messages.recv().await {
            Ok(message) => {
                let published = matches!(message.kind, MessageKind::Message | MessageKind::SMessage);
                if !published || !lock(&wanted).contains_key(&*message.channel) {
                    continue;
                }
                let payload: &[u8] = match &message.value {
                    Value::Null => &[],
                    value => match value.as_bytes() {
                        Some(bytes) => bytes,
                        None => {
                            tracing::warn!(channel = %message.channel, "a Redis message that is not a string was dropped");
                            continue;
                        }
                    },
                };
                if let Some(listener) = listener.get() {
                    listener.on_message(&message.channel, payload);
                }
            }
            Err(RecvError::Lagged(missed)) => {
                // Some messages were dropped before they could be read: same as an outage for
                // the listener, which catches up from the event store.
                tracing::warn!(redis = %endpoint, missed, "Redis messages were dropped: listener too slow");
                if let Some(listener) = listener.get() {
                    listener.on_resubscribed();
                }
            }
            Err(RecvError::Closed) => break,
        }
    }
}

/// Team clicks and one-use tokens in Redis, shared by all pods (and presence, idempotency keys
/// and the pod registry, see [`redis_coordination`](super::redis_coordination)).
///
/// Clicks of a tournament are the hash `lct:clicks:{tournament}` (field `{name}\u{1f}{surname}`,
/// value the click as JSON) expiring `ttl` after the last click; a token is the key
/// `lct:token:{token}`. Every call fails fast while Redis is down.
pub struct RedisSharedState {
    publisher: Arc<Publisher>,
    /// Made with a bus (over its publishing connection): click lists can be published with
    /// their recording.
    publishes: bool,
}

impl RedisSharedState {
    /// Opens its own connection in the background and returns at once, also while Redis is
    /// down. Prefer [`connect_redis`], which shares the bus's publishing connection.
    ///
    /// Errors: only invalid settings (see [`RedisSettings`]).
    pub async fn connect(settings: impl Into<RedisSettings>) -> Result<RedisSharedState, LiveError> {
        let (builder, topology, endpoint) = builder(&settings.into())?;
        let client = builder.build().map_err(build_error)?;
        drop(client.connect());
        Ok(RedisSharedState { publisher: Arc::new(Publisher { client, topology, endpoint }), publishes: false })
    }

    /// The shared connection with fail-fast options; an error at once while it is down.
    pub(super) fn client(&self) -> Result<fred::clients::WithOptions<Client>, LiveError> {
        self.publisher.ensure_connected()?;
        Ok(self.publisher.client.with_options(&fail_fast(COMMAND_TIMEOUT)))
    }

    /// The error of a failed command, naming Redis by `host:port` only.
    pub(super) fn error(&self, what: &str, error: fred::error::Error) -> LiveError {
        self.publisher.error(what, error)
    }
}

/// The field of a clicks hash holding the list's sequence number; no player's field starts
/// with the unit separator, since names are never empty.
const CLICKS_SEQ_FIELD: &str = "\u{1f}seq";

/// Records a click and answers the list as it stands, atomically: KEYS[1] the tournament's
/// clicks hash; ARGV the player's field, the click, the ttl in ms, the click's time as a
/// sequence number (its ms times 1024) and the sequence field. The sequence grows by one per
/// click, and never stays below the click's time: it stays above any number of a list that
/// expired or was lost before, and of the clicks a failover lost (the new master's count is
/// behind what the pods were shown). Answers `{seq, HGETALL}`.
///
/// With ARGV 6 to 9 (a channel, and the opening, middle and closing of a payload) it also
/// publishes the list on that channel, in the same step: the opening, the clicks that read as
/// JSON objects joined by commas, the middle, the sequence number, the closing (see
/// [`ClickPublication`]).
const RECORD_CLICK_SCRIPT: &str = r"
local seq = redis.call('HINCRBY', KEYS[1], ARGV[5], 1)
local floor = tonumber(ARGV[4])
if seq <= floor then
  seq = floor + 1
  redis.call('HSET', KEYS[1], ARGV[5], string.format('%d', seq))
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local all = redis.call('HGETALL', KEYS[1])
if ARGV[6] then
  local clicks = {}
  for i = 1, #all, 2 do
    if all[i] ~= ARGV[5] then
      local ok, click = pcall(cjson.decode, all[i + 1])
      if ok and type(click) == 'table' then
        clicks[#clicks + 1] = all[i + 1]
      end
    end
  end
  -- Lua numbers are doubles and print large ones as 1.8e+15: the sequence is written as an integer.
  local number = string.format('%d', seq)
  redis.call('PUBLISH', ARGV[6], ARGV[7] .. table.concat(clicks, ',') .. ARGV[8] .. number .. ARGV[9])
end
return {seq, all}
";

static RECORD_CLICK: LazyLock<Script> = LazyLock::new(|| Script::from_lua(RECORD_CLICK_SCRIPT));

fn clicks_key(tournament: Uuid) -> String {
    format!("lct:clicks:{tournament}")
}

fn token_key(token: &str) -> String {
    format!("lct:token:{token}")
}

pub(super) fn millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1)
}

impl RedisSharedState {
    /// Runs the record script, publishing the list as `publication` says when there is one.
    async fn record(
        &self,
        tournament: Uuid,
        click: Click,
        ttl: Duration,
        publication: Option<ClickPublication>,
    ) -> Result<ClickList, LiveError> {
        let key = clicks_key(tournament);
        let field = format!("{}\u{1f}{}", click.name, click.surname);
        let json = serde_json::to_string(&click).map_err(|error| LiveError(format!("encoding a click: {error}")))?;
        let floor = click.at_ms.max(0).saturating_mul(1024).to_string();
        let mut args = vec![field, json, millis(ttl).to_string(), floor, CLICKS_SEQ_FIELD.to_owned()];
        if let Some(ClickPublication { channel, opening, middle, closing }) = publication {
            args.extend([channel, opening, middle, closing]);
        }
        let (seq, stored): (i64, HashMap<String, String>) =
            redis_script::run(&self.client()?, &RECORD_CLICK, vec![key], args)
                .await
                .map_err(|error| self.publisher.error("recording a click", error))?;
        Ok(click_list(tournament, u64::try_from(seq).unwrap_or_default(), stored))
    }
}

/// The list of a clicks hash read whole (the sequence field left out).
fn click_list(tournament: Uuid, seq: u64, stored: HashMap<String, String>) -> ClickList {
    let mut clicks = Vec::with_capacity(stored.len());
    for (field, json) in stored.into_iter().filter(|(field, _)| field != CLICKS_SEQ_FIELD) {
        match serde_json::from_str::<Click>(&json) {
            Ok(click) => clicks.push(click),
            Err(error) => {
                tracing::warn!(%tournament, field = %field.replace('\u{1f}', " "), %error, "an unreadable click was skipped")
            }
        }
    }
    ClickList::new(seq, clicks)
}

#[async_trait]
impl SharedState for RedisSharedState {
    /// Errors: Redis is down or does not answer in time, or the stored list cannot be read.
    async fn record_click(&self, tournament: Uuid, click: Click, ttl: Duration) -> Result<ClickList, LiveError> {
        self.record(tournament, click, ttl, None).await
    }

    /// Publishes with one Redis server or a Sentinel's master, on the bus this shared state
    /// was made with ([`RedisBus::shared_state`]); not in a cluster, where a script may only
    /// touch its key's slot and the channel is elsewhere, nor as a shared state of its own.
    /// Errors: as [`record_click`](SharedState::record_click); nothing was published then.
    async fn record_and_publish_click(
        &self,
        tournament: Uuid,
        click: Click,
        ttl: Duration,
        publication: ClickPublication,
    ) -> Result<RecordedClick, LiveError> {
        let published = self.publishes && self.publisher.topology != Topology::Cluster;
        let list = self.record(tournament, click, ttl, published.then_some(publication)).await?;
        Ok(RecordedClick { list, published })
    }

    /// Errors: Redis is down or does not answer in time.
    async fn click_list(&self, tournament: Uuid) -> Result<Option<ClickList>, LiveError> {
        let stored: HashMap<String, String> = self
            .client()?
            .hgetall(clicks_key(tournament))
            .await
            .map_err(|error| self.publisher.error("reading clicks", error))?;
        // A hash without its sequence is not one the record script wrote.
        let Some(seq) = stored.get(CLICKS_SEQ_FIELD).and_then(|seq| seq.parse::<u64>().ok()) else {
            return Ok(None);
        };
        Ok(Some(click_list(tournament, seq, stored)))
    }

    /// Errors: Redis is down or does not answer in time, or the token is already stored.
    async fn put_token(&self, token: &str, value: &str, ttl: Duration) -> Result<(), LiveError> {
        let stored: Option<String> = self
            .client()?
            .set(token_key(token), value, Some(Expiration::PX(millis(ttl))), Some(SetOptions::NX), false)
            .await
            .map_err(|error| self.publisher.error("storing a token", error))?;
        match stored {
            Some(_) => Ok(()),
            None => Err(LiveError("the token is already in use".to_owned())),
        }
    }

    /// Errors: Redis is down or does not answer in time.
    async fn take_token(&self, token: &str) -> Result<Option<String>, LiveError> {
        self.client()?.getdel(token_key(token)).await.map_err(|error| self.publisher.error("taking a token", error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_url_is_refused_without_echoing_it() {
        let error = builder(&"not a url with secret".into()).err().unwrap();
        assert!(!error.0.contains("secret"), "{error}");
    }

    #[test]
    fn only_host_and_port_of_the_url_are_kept_for_logs() {
        let (_, topology, endpoint) = builder(&"redis://:secret@redis.example:6390/0".into()).unwrap();
        assert_eq!((topology, endpoint.as_str()), (Topology::Single, "redis.example:6390"));
    }

    #[test]
    fn a_ttl_is_sent_as_at_least_one_millisecond() {
        assert_eq!(millis(Duration::from_micros(10)), 1);
        assert_eq!(millis(Duration::from_secs(2)), 2_000);
    }
}
