//! The ports the domain needs from the outside world: an event store and an event publisher.
//! Adapters live in the `infrastructure` crate; the ports of live delivery (bus, shared state,
//! presence, pod registry) belong to the `live` crate.

use crate::tournament::{TournamentEvent, TournamentState};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Schema version written with every event of the current shape.
pub const SCHEMA_VERSION: u32 = 1;

/// Schema version of a stored snapshot: the shape of [`TournamentState`]. Raise it whenever
/// that shape changes; stores ignore snapshots of any other version (the stream is replayed).
pub const SNAPSHOT_SCHEMA_VERSION: u32 = 1;

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

    /// The latest snapshot of the stream, if any. A stored snapshot of another schema version,
    /// or one that does not decode, is answered as `None` (with a warning), so that the stream
    /// is replayed from its events. A store may keep no snapshots at all and always answer
    /// `None`.
    async fn load_snapshot(&self, stream_id: Uuid) -> Result<Option<Snapshot>, StoreError>;

    /// Stores a snapshot; a newer stored snapshot of the current schema version is kept. A
    /// store that keeps no snapshots accepts and drops it.
    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError>;

    /// Succeeds when the store can serve requests now (readiness).
    async fn check(&self) -> Result<(), StoreError>;

    /// The current version of each stream, in the order asked (0 for an unknown stream). Live
    /// feeds call it every few seconds for every tournament they serve, so adapters answer it
    /// from an index in one round trip, without reading the events; this default loads them and
    /// is only correct, not cheap. Errors: `Unavailable`, `Corrupt`.
    async fn current_versions(&self, streams: &[Uuid]) -> Result<Vec<u64>, StoreError> {
        let mut versions = Vec::with_capacity(streams.len());
        for stream in streams {
            versions.push(self.load(*stream, 0).await?.last().map_or(0, |e| e.version));
        }
        Ok(versions)
    }
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
