//! The ports of live delivery: the bus between pods, the state they share (team clicks, one-use
//! tokens, idempotency keys), presence and the pod registry. Adapters (Redis, in-process) live
//! in the `infrastructure` crate.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a shared-state or bus operation failed; callers degrade (the event store stays the
/// source of truth).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("live coordination unavailable: {0}")]
pub struct LiveError(pub String);

/// Receives what arrives on the bus. Implementations must return quickly (hand off to a queue).
pub trait BusListener: Send + Sync {
    /// A payload published on `channel` by any pod (this one included).
    fn on_message(&self, channel: &str, payload: &[u8]);
    /// The bus connection was re-established and every subscription restored: messages may have
    /// been missed meanwhile.
    fn on_resubscribed(&self);
}

/// Pub/sub between pods: one channel per tournament, subscribed only while this pod serves it.
#[async_trait]
pub trait Bus: Send + Sync {
    /// Registers the listener of incoming messages; called once, before any subscription.
    fn set_listener(&self, listener: std::sync::Arc<dyn BusListener>);
    /// Publishes to every pod subscribed to `channel`. Fails fast when the bus is down.
    async fn publish(&self, channel: &str, payload: Vec<u8>) -> Result<(), LiveError>;
    /// Adds one interest in `channel`; the first subscribes. Returns once subscribed, or at
    /// once when the bus is down (the subscription is made on reconnect).
    async fn subscribe(&self, channel: &str);
    /// Drops one interest; the last unsubscribes.
    async fn unsubscribe(&self, channel: &str);
    /// Whether the bus is connected now (readiness reports it as degraded otherwise).
    fn is_connected(&self) -> bool;
}

/// A player's latest "team clicked" preview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Click {
    pub team: domain::Team,
    pub name: String,
    pub surname: String,
    /// When the click was recorded, ms since the Unix epoch; lists are ordered by it.
    pub at_ms: i64,
}

/// A tournament's team clicks after a click was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickList {
    /// Grows with every click recorded in the tournament, on any pod: of two lists, the one with
    /// the higher `seq` is the newer.
    pub seq: u64,
    /// Every current click, oldest first.
    pub clicks: Vec<Click>,
}

impl ClickList {
    /// The list of `clicks` in any order, put oldest first (ties by name, then surname).
    pub fn new(seq: u64, mut clicks: Vec<Click>) -> ClickList {
        clicks.sort_by(|a, b| (a.at_ms, &a.name, &a.surname).cmp(&(b.at_ms, &b.name, &b.surname)));
        ClickList { seq, clicks }
    }
}

/// The bus publication of a click list, for a shared state that publishes the list itself, in
/// the same step as it records the click. The payload is `opening`, then the JSON of each click
/// of the list (as [`Click`] serializes) joined by commas, in any order, then `middle`, then the
/// list's sequence number in decimal, then `closing`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickPublication {
    pub channel: String,
    pub opening: String,
    pub middle: String,
    pub closing: String,
}

/// A click recorded, and whether the shared state published its list too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedClick {
    pub list: ClickList,
    /// The list went out on the bus with the recording: the caller must not publish it again.
    pub published: bool,
}

/// Short-lived state shared by all pods: team clicks and one-use connection tokens.
#[async_trait]
pub trait SharedState: Send + Sync {
    /// Keeps `click` as the latest of its player in `tournament` (the whole list expires after
    /// `ttl` without clicks) and returns the list as it stands right after, atomically with the
    /// click, with its sequence number.
    async fn record_click(
        &self,
        tournament: Uuid,
        click: Click,
        ttl: std::time::Duration,
    ) -> Result<ClickList, LiveError>;
    /// Records like [`record_click`](Self::record_click) and, where this shared state lives
    /// with the bus it was made with, also publishes the list there as `publication` says,
    /// atomically with the click: one round trip instead of two, and no list of a recorded click
    /// lost between recording and publishing. `published` is `false` where it cannot (the
    /// caller publishes then); by default it never does.
    async fn record_and_publish_click(
        &self,
        tournament: Uuid,
        click: Click,
        ttl: std::time::Duration,
        publication: ClickPublication,
    ) -> Result<RecordedClick, LiveError> {
        drop(publication);
        Ok(RecordedClick { list: self.record_click(tournament, click, ttl).await?, published: false })
    }
    /// The tournament's clicks as they stand, with the sequence number of the latest; `None`
    /// when it has none (no click yet, or they expired). Read again after a click whose
    /// recording was not answered, which may have been recorded all the same.
    async fn click_list(&self, tournament: Uuid) -> Result<Option<ClickList>, LiveError>;
    /// Stores a one-use token with its value for `ttl`.
    async fn put_token(&self, token: &str, value: &str, ttl: std::time::Duration) -> Result<(), LiveError>;
    /// Takes a token: its value the first time, `None` when unknown, expired or already taken.
    async fn take_token(&self, token: &str) -> Result<Option<String>, LiveError>;
}

/// The state of an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// First use: the key now holds the caller's marker; the caller runs the request and then
    /// completes or releases the key with that marker.
    Claimed,
    /// The key is held: its value, the marker of a request still running or the stored response
    /// of one that finished. Which one is for the caller to tell, as it wrote both.
    Held(String),
}

/// Remembers the outcome of requests sent with an `Idempotency-Key`, across pods.
///
/// A claim writes the claimant's `marker`, a value unique to that claim (it carries a random
/// token), for a lease of `ttl`. The claimant's later calls act only while the key still holds
/// its marker: once the lease ended and someone else claimed the key, the key is theirs. Each
/// call returns [`LiveError`] when the store does not answer.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Sets `key` to `marker` for `ttl` unless it holds a value (a live claim or a response):
    /// `Claimed`, or `Held` with that value. `marker` must be unique to this claim, so never
    /// `""`, which pods of an earlier release claim with.
    async fn claim(&self, key: &str, marker: &str, ttl: std::time::Duration) -> Result<IdempotencyClaim, LiveError>;
    /// Replaces `marker` with `response` for `ttl`, only while `key` still holds `marker`.
    /// Returns whether it did (`false`: the claim's lease ended meanwhile).
    async fn complete(
        &self,
        key: &str,
        marker: &str,
        response: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, LiveError>;
    /// Forgets `key`, whose request failed, so that a retry runs again; only while it still
    /// holds `marker`. Returns whether it did.
    async fn release(&self, key: &str, marker: &str) -> Result<bool, LiveError>;
}

/// A player connected to a tournament's live stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceEntry {
    pub player_id: Uuid,
    pub name: String,
    pub surname: String,
}

/// Which players are connected now, across pods. Entries are owned by the pod that holds the
/// connection, so a dead pod's entries can be removed by the survivors.
#[async_trait]
pub trait PresenceStore: Send + Sync {
    /// Marks `entry` online in `tournament` through `pod` (entries expire after `ttl` without
    /// refresh) and returns everyone online there, each player once, ordered by name.
    async fn join(
        &self,
        tournament: Uuid,
        entry: &PresenceEntry,
        pod: &str,
        ttl: std::time::Duration,
    ) -> Result<Vec<PresenceEntry>, LiveError>;
    /// Removes the player's entry of `pod` and returns everyone still online.
    async fn leave(&self, tournament: Uuid, player_id: Uuid, pod: &str) -> Result<Vec<PresenceEntry>, LiveError>;
    /// Everyone online in `tournament`, each player once, ordered by name.
    async fn online(&self, tournament: Uuid) -> Result<Vec<PresenceEntry>, LiveError>;
    /// Removes every entry owned by `pod` (a pod that died); returns the tournaments touched.
    async fn clear_pod(&self, pod: &str) -> Result<Vec<Uuid>, LiveError>;
    /// Keeps the entries of `pod`, a live pod, findable by [`clear_pod`](Self::clear_pod) for
    /// `ttl` more (what finds them, such as an index, must not expire while the pod lives), and
    /// says whether the store holds any entry of `pod`: false when it holds none (none was
    /// recorded, its players all left, or another pod cleared them).
    async fn keep_pod(&self, pod: &str, ttl: std::time::Duration) -> Result<bool, LiveError>;
}

/// One pod as the cluster registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodInfo {
    /// Unique among the pods (`LCT_POD_NAME`, or the host name with a random suffix).
    pub id: String,
    /// Where the pod listens, for operators.
    pub address: String,
    /// The version of lct the pod runs.
    pub version: String,
    /// When the pod started, ms since the Unix epoch.
    pub started_at_ms: i64,
    /// Its open live connections at the last heartbeat.
    pub connections: u64,
    /// Tournaments it served at the last heartbeat.
    pub tournaments: u64,
    /// When it sent its last heartbeat, ms since the Unix epoch (by its own clock).
    pub last_heartbeat_ms: i64,
}

/// Which pods are alive. Each pod refreshes its entry on a heartbeat; an entry not refreshed
/// within its lapse is dead, and exactly one of the pods that notice prunes it and cleans up
/// what the dead pod owned.
#[async_trait]
pub trait PodRegistry: Send + Sync {
    /// Records `pod` as alive until `lapse` from now. Returns `true` when the registry did not
    /// hold it: its first heartbeat, or it had been pruned as dead meanwhile.
    /// Errors: the registry cannot be reached (the pod stays listed until its lapse ends).
    async fn heartbeat(&self, pod: &PodInfo, lapse: std::time::Duration) -> Result<bool, LiveError>;
    /// Removes the pod at once (graceful shutdown).
    async fn deregister(&self, id: &str) -> Result<(), LiveError>;
    /// The pods alive now, ordered by start time then id (the order of their ordinals).
    async fn live_pods(&self) -> Result<Vec<PodInfo>, LiveError>;
    /// Removes the entries whose lapse has ended and returns the ids of those this caller
    /// removed: when several pods prune at once each dead pod is returned to exactly one of
    /// them, which then cleans up after it.
    async fn prune(&self) -> Result<Vec<String>, LiveError>;
}

/// Values every pod must hold alike (the key of the v2 tokens when none is configured), agreed
/// through the store all pods share.
#[async_trait]
pub trait SharedSecrets: Send + Sync {
    /// Stores `proposal` under `name` unless a value is stored there already, and returns the
    /// value stored now: every pod that asks gets the same one. Values do not expire.
    /// Errors: the store cannot be reached now.
    async fn agree(&self, name: &str, proposal: &str) -> Result<String, LiveError>;
}
