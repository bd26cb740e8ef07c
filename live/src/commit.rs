//! Commits that finish: the event store as commands see it, whose appends run to completion in
//! a task of their own and hand the committed events to the publisher (the hub) there. A
//! command whose append has started is thus published even when its caller goes away (a client
//! that disconnects mid-request drops the request's future, not the append). A pod that dies
//! between the append and the publication is covered by the other pods' periodic check.

use async_trait::async_trait;
use domain::ports::{AppendRequest, EventPublisher, EventStore, RecordedEvent, Snapshot, StoreError};
use std::sync::Arc;
use tracing::Instrument;
use uuid::Uuid;

/// An event store that publishes what it commits; build the application service on it with
/// a publisher that does nothing, so that events are published once.
pub struct PublishingStore {
    store: Arc<dyn EventStore>,
    publisher: Arc<dyn EventPublisher>,
}

impl PublishingStore {
    pub fn new(store: Arc<dyn EventStore>, publisher: Arc<dyn EventPublisher>) -> Self {
        PublishingStore { store, publisher }
    }
}

#[async_trait]
impl EventStore for PublishingStore {
    async fn load(&self, stream_id: Uuid, after_version: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        self.store.load(stream_id, after_version).await
    }

    /// Appends and publishes in a spawned task (in the caller's trace span), which goes on if
    /// the caller stops waiting.
    async fn append(&self, request: AppendRequest) -> Result<Vec<RecordedEvent>, StoreError> {
        let (store, publisher) = (Arc::clone(&self.store), Arc::clone(&self.publisher));
        let commit = async move {
            let recorded = store.append(request).await?;
            publisher.publish(&recorded).await;
            Ok(recorded)
        };
        tokio::spawn(commit.instrument(tracing::Span::current()))
            .await
            .unwrap_or_else(|error| Err(StoreError::Unavailable(format!("the append task failed: {error}"))))
    }

    async fn load_snapshot(&self, stream_id: Uuid) -> Result<Option<Snapshot>, StoreError> {
        self.store.load_snapshot(stream_id).await
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        self.store.save_snapshot(snapshot).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.store.check().await
    }

    async fn current_versions(&self, streams: &[Uuid]) -> Result<Vec<u64>, StoreError> {
        self.store.current_versions(streams).await
    }
}
