//! Fault points for the end-to-end tests, compiled into debug builds only: release builds
//! ignore the variable.
//!
//! `LCT_FAULT_AFTER_APPEND=<event type>:abort` makes the process abort right after it has
//! committed an event of that type, before anything is published (a pod dying at the worst
//! moment); `<event type>:delay-<ms>` holds the commit back for that long before it is
//! published (a window in which the client can go away mid-command).

use domain::ports::EventStore;
use std::sync::Arc;

/// The store with the fault point of `LCT_FAULT_AFTER_APPEND` on its appends, if any.
#[cfg(debug_assertions)]
pub fn after_append(store: Arc<dyn EventStore>) -> Arc<dyn EventStore> {
    match std::env::var("LCT_FAULT_AFTER_APPEND").ok().as_deref().and_then(test_only::Fault::parse) {
        Some(fault) => {
            tracing::warn!(?fault, "a test fault point is armed");
            Arc::new(test_only::Faulty { store, fault })
        }
        None => store,
    }
}

#[cfg(not(debug_assertions))]
pub fn after_append(store: Arc<dyn EventStore>) -> Arc<dyn EventStore> {
    store
}

#[cfg(debug_assertions)]
mod test_only {
    use async_trait::async_trait;
    use domain::ports::{AppendRequest, EventStore, RecordedEvent, Snapshot, StoreError};
    use std::sync::Arc;
    use std::time::Duration;
    use uuid::Uuid;

    #[derive(Debug, Clone)]
    pub struct Fault {
        event_type: String,
        action: Action,
    }

    #[derive(Debug, Clone, Copy)]
    enum Action {
        Abort,
        Delay(Duration),
    }

    impl Fault {
        pub fn parse(spec: &str) -> Option<Fault> {
            let (event_type, action) = spec.split_once(':')?;
            let action = match action {
                "abort" => Action::Abort,
                delay => Action::Delay(Duration::from_millis(delay.strip_prefix("delay-")?.parse().ok()?)),
            };
            Some(Fault { event_type: event_type.to_owned(), action })
        }
    }

    pub struct Faulty {
        pub store: Arc<dyn EventStore>,
        pub fault: Fault,
    }

    #[async_trait]
    impl EventStore for Faulty {
        async fn load(&self, stream_id: Uuid, after_version: u64) -> Result<Vec<RecordedEvent>, StoreError> {
            self.store.load(stream_id, after_version).await
        }

        async fn append(&self, request: AppendRequest) -> Result<Vec<RecordedEvent>, StoreError> {
            let recorded = self.store.append(request).await?;
            if recorded.iter().any(|e| e.event.event_type() == self.fault.event_type) {
                match self.fault.action {
                    Action::Abort => {
                        tracing::warn!("test fault point: aborting right after the append");
                        std::process::abort();
                    }
                    Action::Delay(delay) => tokio::time::sleep(delay).await,
                }
            }
            Ok(recorded)
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
}
