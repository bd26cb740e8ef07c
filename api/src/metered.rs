//! Decorators of the ports that trace every operation as a span (exported to Elastic APM when
//! tracing is configured) and measure the event store for Prometheus. They change no behaviour:
//! every call and every result passes through unchanged.

use crate::metrics::EventStoreMetrics;
use async_trait::async_trait;
use domain::ports::{AppendRequest, EventStore, RecordedEvent, Snapshot, StoreError};
use live::ports::{Bus, BusListener, Click, ClickList, ClickPublication, LiveError, RecordedClick, SharedState};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{Instrument, Span};
use uuid::Uuid;

/// Marks `span` as failed for the trace exporter.
fn record_failure(span: &Span, error: &dyn std::fmt::Display) {
    span.record("otel.status_code", "ERROR");
    span.record("error.message", tracing::field::display(error));
}

/// Whether an error is a fault rather than an expected outcome (a lost race, a name taken).
pub trait Fault {
    fn is_fault(&self) -> bool;
}

impl Fault for StoreError {
    fn is_fault(&self) -> bool {
        !matches!(self, StoreError::VersionConflict { .. } | StoreError::UniqueTaken(_))
    }
}

impl Fault for LiveError {
    fn is_fault(&self) -> bool {
        true
    }
}

/// Runs `operation` inside `span`, marking the span failed on a fault; returns the result and
/// the time it took.
async fn traced<T, E: std::fmt::Display + Fault>(
    span: Span,
    operation: impl Future<Output = Result<T, E>>,
) -> (Result<T, E>, Duration) {
    let started = Instant::now();
    let result = operation.instrument(span.clone()).await;
    let elapsed = started.elapsed();
    if let Some(error) = result.as_ref().err().filter(|e| e.is_fault()) {
        record_failure(&span, error);
    }
    (result, elapsed)
}

/// The event store, traced and measured: `lct_event_store_append_duration_seconds`,
/// `lct_event_store_load_duration_seconds` and `lct_version_conflicts_total`.
pub struct MeteredEventStore {
    inner: Arc<dyn EventStore>,
    metrics: EventStoreMetrics,
    /// The backing database, as a span attribute (`mongodb`, `embedded`).
    system: &'static str,
}

impl MeteredEventStore {
    pub fn new(inner: Arc<dyn EventStore>, metrics: EventStoreMetrics, system: &'static str) -> Self {
        Self { inner, metrics, system }
    }
}

/// A client span of the event store; span names are static, hence a macro.
macro_rules! store_span {
    ($name:literal, $system:expr, $stream:expr) => {
        tracing::info_span!(
            $name,
            otel.kind = "client",
            db.system = $system,
            stream_id = tracing::field::display($stream),
            otel.status_code = tracing::field::Empty,
            error.message = tracing::field::Empty,
        )
    };
}

/// A client span of Redis.
macro_rules! redis_span {
    ($name:literal) => {
        tracing::info_span!(
            $name,
            otel.kind = "client",
            db.system = "redis",
            channel = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            error.message = tracing::field::Empty,
        )
    };
}

#[async_trait]
impl EventStore for MeteredEventStore {
    async fn load(&self, stream_id: Uuid, after_version: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        let span = store_span!("event_store.load", self.system, stream_id);
        let (result, elapsed) = traced(span, self.inner.load(stream_id, after_version)).await;
        self.metrics.load.observe(elapsed.as_secs_f64());
        result
    }

    async fn append(&self, request: AppendRequest) -> Result<Vec<RecordedEvent>, StoreError> {
        let span = store_span!("event_store.append", self.system, request.stream_id);
        let (result, elapsed) = traced(span, self.inner.append(request)).await;
        self.metrics.append.observe(elapsed.as_secs_f64());
        if let Err(StoreError::VersionConflict { .. }) = &result {
            self.metrics.version_conflicts.inc();
        }
        result
    }

    async fn load_snapshot(&self, stream_id: Uuid) -> Result<Option<Snapshot>, StoreError> {
        let span = store_span!("event_store.load_snapshot", self.system, stream_id);
        traced(span, self.inner.load_snapshot(stream_id)).await.0
    }

    async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let span = store_span!("event_store.save_snapshot", self.system, snapshot.stream_id);
        traced(span, self.inner.save_snapshot(snapshot)).await.0
    }

    async fn check(&self) -> Result<(), StoreError> {
        let span = tracing::info_span!(
            "event_store.check",
            otel.kind = "client",
            db.system = self.system,
            otel.status_code = tracing::field::Empty,
            error.message = tracing::field::Empty,
        );
        traced(span, self.inner.check()).await.0
    }

    /// Measured, not traced: the periodic check of the live feeds calls it every few seconds
    /// outside any request, and a trace each time would only be noise.
    async fn current_versions(&self, streams: &[Uuid]) -> Result<Vec<u64>, StoreError> {
        let started = Instant::now();
        let result = self.inner.current_versions(streams).await;
        self.metrics.versions.observe(started.elapsed().as_secs_f64());
        result
    }
}

/// The Redis bus, traced.
pub struct TracedBus(pub Arc<dyn Bus>);

#[async_trait]
impl Bus for TracedBus {
    fn set_listener(&self, listener: Arc<dyn BusListener>) {
        self.0.set_listener(listener);
    }

    async fn publish(&self, channel: &str, payload: Vec<u8>) -> Result<(), LiveError> {
        let span = redis_span!("redis.publish");
        span.record("channel", channel);
        traced(span, self.0.publish(channel, payload)).await.0
    }

    async fn subscribe(&self, channel: &str) {
        let span = redis_span!("redis.subscribe");
        span.record("channel", channel);
        self.0.subscribe(channel).instrument(span).await;
    }

    async fn unsubscribe(&self, channel: &str) {
        let span = redis_span!("redis.unsubscribe");
        span.record("channel", channel);
        self.0.unsubscribe(channel).instrument(span).await;
    }

    fn is_connected(&self) -> bool {
        self.0.is_connected()
    }
}

/// Redis shared state, traced. Token values never reach a span.
pub struct TracedSharedState(pub Arc<dyn SharedState>);

#[async_trait]
impl SharedState for TracedSharedState {
    async fn record_click(&self, tournament: Uuid, click: Click, ttl: Duration) -> Result<ClickList, LiveError> {
        traced(redis_span!("redis.record_click"), self.0.record_click(tournament, click, ttl)).await.0
    }

    async fn record_and_publish_click(
        &self,
        tournament: Uuid,
        click: Click,
        ttl: Duration,
        publication: ClickPublication,
    ) -> Result<RecordedClick, LiveError> {
        let span = redis_span!("redis.record_click");
        span.record("channel", publication.channel.as_str());
        traced(span, self.0.record_and_publish_click(tournament, click, ttl, publication)).await.0
    }

    async fn click_list(&self, tournament: Uuid) -> Result<Option<ClickList>, LiveError> {
        traced(redis_span!("redis.click_list"), self.0.click_list(tournament)).await.0
    }

    async fn put_token(&self, token: &str, value: &str, ttl: Duration) -> Result<(), LiveError> {
        traced(redis_span!("redis.put_token"), self.0.put_token(token, value, ttl)).await.0
    }

    async fn take_token(&self, token: &str) -> Result<Option<String>, LiveError> {
        traced(redis_span!("redis.take_token"), self.0.take_token(token)).await.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use domain::ports::EventMetadata;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A store whose appends conflict a given number of times, then succeed.
    struct Conflicting {
        conflicts_left: AtomicUsize,
    }

    #[async_trait]
    impl EventStore for Conflicting {
        async fn load(&self, _: Uuid, _: u64) -> Result<Vec<RecordedEvent>, StoreError> {
            Ok(Vec::new())
        }
        async fn append(&self, request: AppendRequest) -> Result<Vec<RecordedEvent>, StoreError> {
            if self.conflicts_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                return Err(StoreError::VersionConflict { stream_id: request.stream_id, expected: 0, actual: 1 });
            }
            Ok(Vec::new())
        }
        async fn load_snapshot(&self, _: Uuid) -> Result<Option<Snapshot>, StoreError> {
            Ok(None)
        }
        async fn save_snapshot(&self, _: &Snapshot) -> Result<(), StoreError> {
            Ok(())
        }
        async fn check(&self) -> Result<(), StoreError> {
            Err(StoreError::Unavailable("down".into()))
        }
    }

    fn append_request() -> AppendRequest {
        AppendRequest {
            stream_id: Uuid::new_v4(),
            expected_version: 0,
            events: Vec::new(),
            metadata: EventMetadata { request_id: None, recorded_at_ms: 0 },
            claims: Vec::new(),
            releases: Vec::new(),
        }
    }

    #[tokio::test]
    async fn appends_and_loads_are_timed_and_conflicts_counted_with_results_unchanged() {
        let metrics = Metrics::new();
        let store = MeteredEventStore::new(
            Arc::new(Conflicting { conflicts_left: AtomicUsize::new(2) }),
            metrics.event_store(),
            "test",
        );
        for _ in 0..2 {
            assert!(matches!(store.append(append_request()).await, Err(StoreError::VersionConflict { .. })));
        }
        assert_eq!(store.append(append_request()).await, Ok(Vec::new()));
        assert_eq!(store.load(Uuid::new_v4(), 0).await, Ok(Vec::new()));
        assert_eq!(store.check().await, Err(StoreError::Unavailable("down".into())));
        let text = metrics.render();
        let sample = |series| crate::metrics::tests::sample(&text, series);
        assert_eq!(sample("lct_version_conflicts_total"), Some(2.0), "{text}");
        assert_eq!(sample("lct_event_store_append_duration_seconds_count"), Some(3.0));
        assert_eq!(sample("lct_event_store_load_duration_seconds_count"), Some(1.0));
    }
}
