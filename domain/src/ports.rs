//! The ports the application needs from the outside world: an event store and an event
//! publisher. Adapters live in the `infrastructure` crate.

use crate::tournament::{TournamentEvent, TournamentState};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Schema version written with every event of the current shape.
pub const SCHEMA_VERSION: u32 = 1;

/// Scope of tournament-name claims.
pub const TOURNAMENT_NAME_SCOPE: &str = "tournament-name";

/// Facts about the request that caused an append, stored with each event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventMetadata {
    pub request_id: Option<Uuid>,
    /// Milliseconds since the Unix epoch.
    pub recorded_at_ms: i64,
}

/// The stored envelope of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedEvent {
    pub stream_id: Uuid,
    pub version: u64,
    pub schema_version: u32,
    pub recorded_at_ms: i64,
    pub request_id: Option<Uuid>,
    pub event: TournamentEvent,
}

/// A value that must be unique within its scope across all streams (e.g. a tournament name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UniqueKey {
    pub scope: String,
    pub value: String,
}

impl UniqueKey {
    pub fn tournament_name(name: &str) -> Self {
        Self { scope: TOURNAMENT_NAME_SCOPE.to_owned(), value: name.to_owned() }
    }
}

/// One atomic append: events at `expected_version + 1 ..`, plus unique values claimed and
/// released by this stream in the same commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    pub stream_id: Uuid,
    /// The version of the stream the events were decided on (0 for a new stream).
    pub expected_version: u64,
    pub events: Vec<TournamentEvent>,
    pub metadata: EventMetadata,
    pub claims: Vec<UniqueKey>,
    pub releases: Vec<UniqueKey>,
}

impl AppendRequest {
    /// The events as a store records them when the append succeeds: numbered on from the
    /// expected version and stamped with the request's metadata.
    pub fn recorded(&self) -> Vec<RecordedEvent> {
        self.events
            .iter()
            .zip(self.expected_version + 1..)
            .map(|(event, version)| RecordedEvent {
                stream_id: self.stream_id,
                version,
                schema_version: SCHEMA_VERSION,
                recorded_at_ms: self.metadata.recorded_at_ms,
                request_id: self.metadata.request_id,
                event: event.clone(),
            })
            .collect()
    }
}

/// State of a stream at a version, to shortcut loading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub stream_id: Uuid,
    pub state: TournamentState,
}

/// Why the event store could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The stream is no longer at the expected version: re-load and decide again.
    #[error("stream {stream_id} is at version {actual}, expected {expected}")]
    VersionConflict { stream_id: Uuid, expected: u64, actual: u64 },
    /// A claimed unique value is held by another stream.
    #[error("{} '{}' is already taken", .0.scope, .0.value)]
    UniqueTaken(UniqueKey),
    /// The store cannot be reached now; nothing was written.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be read back; a bug or corruption.
    #[error("event store data is corrupt: {0}")]
    Corrupt(String),
}

/// Durable, versioned storage of tournament events.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Events of the stream with a version above `after_version`, in version order; empty for
    /// an unknown stream. Errors: `Unavailable`, `Corrupt`.
    async fn load(&self, stream_id: Uuid, after_version: u64) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Appends atomically: either every event and every claim and release is stored, or
    /// nothing is. Errors: `VersionConflict` when the stream is not at `expected_version`,
    /// `UniqueTaken` when a claim is held by another stream, `Unavailable`.
    async fn append(&self, request: AppendRequest) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The latest snapshot of the stream, if any.
    async fn load_snapshot(&self, stream_id: Uuid) -> Result<Option<Snapshot>, StoreError>;

    /// Stores a snapshot; a newer stored snapshot is kept.
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError>;

    /// Succeeds when the store can serve requests now (readiness).
    async fn check(&self) -> Result<(), StoreError>;
}

/// Hands committed events to whatever delivers them live. Called after each commit; it never
/// fails a command (delivery is made gapless by the subscribers reading the store).
#[async_trait]
pub trait EventPublisher: Send + Sync {
    async fn publish(&self, events: &[RecordedEvent]);
}

/// A publisher that delivers nowhere.
pub struct NoPublisher;

#[async_trait]
impl EventPublisher for NoPublisher {
    async fn publish(&self, _events: &[RecordedEvent]) {}
}

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
    pub team: crate::Team,
    pub name: String,
    pub surname: String,
    /// When the click was recorded, ms since the Unix epoch; lists are ordered by it.
    pub at_ms: i64,
}

/// Short-lived state shared by all pods: team clicks and one-use connection tokens.
#[async_trait]
pub trait SharedState: Send + Sync {
    /// Keeps `click` as the latest of its player in `tournament` (the whole list expires after
    /// `ttl` without clicks) and returns every current click, oldest first.
    async fn record_click(
        &self,
        tournament: Uuid,
        click: Click,
        ttl: std::time::Duration,
    ) -> Result<Vec<Click>, LiveError>;
    /// Stores a one-use token with its value for `ttl`.
    async fn put_token(&self, token: &str, value: &str, ttl: std::time::Duration) -> Result<(), LiveError>;
    /// Takes a token: its value the first time, `None` when unknown, expired or already taken.
    async fn take_token(&self, token: &str) -> Result<Option<String>, LiveError>;
}

/// The state of an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// First use: the caller runs the request and then completes or releases the key.
    Claimed,
    /// Another request with this key is running now.
    Pending,
    /// A request with this key finished; its stored response.
    Done(String),
}

/// Remembers the outcome of requests sent with an `Idempotency-Key`, across pods.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for `ttl` unless it is already claimed or done.
    async fn claim(&self, key: &str, ttl: std::time::Duration) -> Result<IdempotencyClaim, LiveError>;
    /// Stores the response of a claimed key for `ttl`.
    async fn complete(&self, key: &str, response: &str, ttl: std::time::Duration) -> Result<(), LiveError>;
    /// Forgets a claimed key whose request failed, so a retry runs again.
    async fn release(&self, key: &str) -> Result<(), LiveError>;
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
