//! Prometheus metrics of the pod, served at `GET /metrics` in the OpenMetrics text format.
//!
//! Request counts and latencies are recorded by the request middleware, event-store latencies and
//! version conflicts by [`crate::metered`]. The live hub keeps its own counters
//! ([`live::HubStats`]); they, the Redis connection state and any counters registered
//! with [`Metrics::register_counters`] are read at scrape time, so the hot paths pay nothing
//! extra for them.

use crate::live::Hub;
use crate::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use live::ports::Bus;
use live::{ClickQueue, Overload, RepairCause};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bucket bounds (seconds) of request and event-store latencies.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// The route label of requests that matched no route, so that scanners cannot grow the series.
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// Content type of the OpenMetrics text exposition, which Prometheus scrapes natively.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of the HTTP series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    status: u16,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The metrics of one pod; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Mutex<Registry>,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<HttpLabels, Histogram>,
    event_store: EventStoreMetrics,
}

/// What the event-store decorator records.
#[derive(Debug, Clone)]
pub struct EventStoreMetrics {
    pub append: Histogram,
    pub load: Histogram,
    /// Reads of the current versions of streams (the live feeds' periodic check).
    pub versions: Histogram,
    pub version_conflicts: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with the HTTP and event-store series; the hub, Redis and other sources are
    /// added once they exist.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_duration =
            Family::<HttpLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let event_store = EventStoreMetrics {
            append: latency_histogram(),
            load: latency_histogram(),
            versions: latency_histogram(),
            version_conflicts: Counter::default(),
        };
        registry.register(
            "lct_http_requests",
            "HTTP requests answered, by route template, method and status",
            http_requests.clone(),
        );
        registry.register(
            "lct_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template, method and status",
            http_duration.clone(),
        );
        registry.register(
            "lct_event_store_append_duration_seconds",
            "Duration of event-store appends (conflicts and failures included)",
            event_store.append.clone(),
        );
        registry.register(
            "lct_event_store_load_duration_seconds",
            "Duration of event-store stream loads",
            event_store.load.clone(),
        );
        registry.register(
            "lct_event_store_versions_duration_seconds",
            "Duration of reads of the current versions of the streams a pod serves (its periodic check)",
            event_store.versions.clone(),
        );
        registry.register(
            "lct_version_conflicts",
            "Appends refused because the stream moved on; the command is re-decided and retried",
            event_store.version_conflicts.clone(),
        );
        Metrics { inner: Arc::new(Inner { registry: Mutex::new(registry), http_requests, http_duration, event_store }) }
    }

    /// Counts one answered request. `route` is the route template (or [`UNMATCHED_ROUTE`]).
    pub fn observe_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let labels = HttpLabels { route: route.to_owned(), method: method.to_owned(), status };
        self.inner.http_requests.get_or_create(&labels).inc();
        self.inner.http_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// Handles for the event-store decorator.
    pub fn event_store(&self) -> EventStoreMetrics {
        self.inner.event_store.clone()
    }

    /// Exposes the hub's counters, read at scrape time, and its pub/sub lag histogram.
    pub fn observe_hub(&self, hub: &Hub) {
        let mut registry = self.registry();
        registry.register(
            "lct_pubsub_lag_seconds",
            "Time from a message's publication on the bus by any pod to its arrival at this pod",
            hub.stats().pubsub_lag.histogram().clone(),
        );
        registry.register(
            "lct_commit_to_delivery_seconds",
            "Time from an event's commit to its delivery to this pod's connections, for events that reached \
             this pod through the bus or a read of the event store (not its own commits)",
            hub.stats().commit_to_delivery.clone(),
        );
        registry.register_collector(Box::new(HubCollector(hub.clone())));
    }

    /// Exposes `lct_redis_connected` (1 or 0) for the bus, read at scrape time.
    pub fn observe_redis(&self, bus: Arc<dyn Bus>) {
        self.registry().register_collector(Box::new(RedisCollector(bus)));
    }

    /// Exposes a counter family `{name}_total{{label=...}}` whose values `read` returns at scrape
    /// time (for counters kept elsewhere as atomics).
    pub fn register_counters(
        &self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
        read: impl Fn() -> Vec<(&'static str, u64)> + Send + Sync + 'static,
    ) {
        self.registry().register_collector(Box::new(CounterFn { name, help, label, read: Box::new(read) }));
    }

    /// Exposes the series of `collector`, read at scrape time.
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        self.registry().register_collector(collector);
    }

    /// The whole exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry()) {
            tracing::error!(%error, "encoding metrics failed");
        }
        text
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.registry.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `GET /metrics`
#[utoipa::path(get, path = "/metrics", tag = "Operations", operation_id = "metrics",
    responses((status = 200, description = "Prometheus metrics in the OpenMetrics text format",
        body = String, content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, OPENMETRICS)], state.metrics.render()).into_response()
}

fn encode_counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn encode_gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn encode_labelled_counters(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, count) in values {
        let labels = [(label, *value)];
        ConstCounter::new(*count).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// The hub's atomics, read at scrape time.
struct HubCollector(Hub);

impl fmt::Debug for HubCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HubCollector")
    }
}

impl Collector for HubCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let stats = self.0.stats();
        let read = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        let connections = i64::try_from(read(&stats.connections)).unwrap_or(i64::MAX);

        encode_gauge(
            &mut encoder,
            "lct_ws_connections",
            "Open live connections (SignalR and v2 WebSockets)",
            connections,
        )?;
        encode_gauge(
            &mut encoder,
            "lct_tournaments_served",
            "Tournaments with at least one live connection on this pod",
            i64::try_from(self.0.tournaments_served()).unwrap_or(i64::MAX),
        )?;
        encode_counter(
            &mut encoder,
            "lct_messages_delivered",
            "Messages queued to live connections",
            read(&stats.delivered),
        )?;
        encode_labelled_counters(
            &mut encoder,
            "lct_messages_dropped",
            "Messages that did not reach their destination: those lost to a connection cut off as too slow \
             (slow_consumer: the one that found its queue full and those still queued), publications to \
             the other pods that failed (bus_publish_failed) or found the queue to the bus full \
             (bus_outbox_full); the other pods' clients get those events from the event store",
            "reason",
            &[
                ("slow_consumer", read(&stats.slow_consumer_messages_dropped)),
                ("bus_publish_failed", read(&stats.bus_publish_failures)),
                ("bus_outbox_full", read(&stats.bus_outbox_full)),
            ],
        )?;
        encode_counter(
            &mut encoder,
            "lct_slow_consumer_disconnects",
            "Live connections cut off because their queue was full",
            read(&stats.slow_disconnects),
        )?;
        let repairs: Vec<(&str, u64)> =
            RepairCause::ALL.iter().map(|cause| (cause.label(), stats.gaps_repaired(*cause))).collect();
        encode_labelled_counters(
            &mut encoder,
            "lct_gaps_repaired",
            "Reads of the event store by a live feed that delivered events it had missed, by what prompted \
             them: a version gap on the bus (bus_gap), the periodic check (periodic_check), a bus reconnect \
             or a pod announcing failed publications (resync), a full feed queue (overflow)",
            "cause",
            &repairs,
        )?;
        let refused: Vec<(&str, u64)> =
            Overload::ALL.iter().map(|reason| (reason.label(), stats.clicks_refused(*reason))).collect();
        encode_labelled_counters(
            &mut encoder,
            "lct_clicks_refused",
            "Team clicks refused as overloaded, before anything was recorded (the client is told to \
             retry): as many clicks as allowed were being recorded on this pod (in_flight), or the \
             publications waiting for Redis reached their limit (publish_backlog)",
            "reason",
            &refused,
        )?;
        let coalesced: Vec<(&str, u64)> =
            ClickQueue::ALL.iter().map(|queue| (queue.label(), stats.click_lists_coalesced(*queue))).collect();
        encode_labelled_counters(
            &mut encoder,
            "lct_click_lists_coalesced",
            "Team-click lists replaced by a newer list of their tournament while they waited for Redis \
             (bus), for a live feed (feed) or in a connection's queue (connection); the newer list went \
             out instead",
            "queue",
            &coalesced,
        )?;
        encode_counter(
            &mut encoder,
            "lct_presence_lists_coalesced",
            "Lists of the players online replaced in a connection's queue by a newer list of their \
             tournament; the newer list went out instead",
            stats.presence_lists_coalesced.load(Ordering::Relaxed),
        )?;
        encode_counter(
            &mut encoder,
            "lct_stream_versions_checked",
            "Stream versions read by the periodic check of the live feeds",
            read(&stats.versions_checked),
        )
    }
}

/// Whether the Redis bus is connected, read at scrape time.
struct RedisCollector(Arc<dyn Bus>);

impl fmt::Debug for RedisCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedisCollector")
    }
}

impl Collector for RedisCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let connected = i64::from(self.0.is_connected());
        encode_gauge(
            &mut encoder,
            "lct_redis_connected",
            "1 while the Redis pub/sub connection is up, 0 otherwise",
            connected,
        )
    }
}

type ReadCounters = Box<dyn Fn() -> Vec<(&'static str, u64)> + Send + Sync>;

/// A labelled counter family kept elsewhere, read at scrape time.
struct CounterFn {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    read: ReadCounters,
}

impl fmt::Debug for CounterFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CounterFn").field("name", &self.name).finish()
    }
}

impl Collector for CounterFn {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        encode_labelled_counters(&mut encoder, self.name, self.help, self.label, &(self.read)())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use infrastructure::live::LocalBus;
    use infrastructure::EmbeddedEventStore;
    use live::{Clock, HubOptions, SystemClock};

    /// The value of the sample `series` (name and labels exactly as exposed).
    pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn requests_are_counted_and_timed_by_route_method_and_status() {
        let metrics = Metrics::new();
        metrics.observe_request("/api/tournament", "GET", 200, Duration::from_millis(3));
        metrics.observe_request("/api/tournament", "GET", 200, Duration::from_millis(30));
        metrics.observe_request("/api/tournament", "GET", 404, Duration::from_millis(1));
        let text = metrics.render();
        let ok = r#"{route="/api/tournament",method="GET",status="200"}"#;
        assert_eq!(sample(&text, &format!("lct_http_requests_total{ok}")), Some(2.0), "{text}");
        assert_eq!(sample(&text, &format!("lct_http_request_duration_seconds_count{ok}")), Some(2.0));
        let sum = sample(&text, &format!("lct_http_request_duration_seconds_sum{ok}")).unwrap();
        assert!((sum - 0.033).abs() < 1e-9, "{sum}");
        let bucket =
            r#"lct_http_request_duration_seconds_bucket{le="0.005",route="/api/tournament",method="GET",status="200"}"#;
        assert_eq!(sample(&text, bucket), Some(1.0), "{text}");
        let missing = r#"lct_http_requests_total{route="/api/tournament",method="GET",status="404"}"#;
        assert_eq!(sample(&text, missing), Some(1.0));
        assert!(text.trim_end().ends_with("# EOF"));
    }

    #[tokio::test]
    async fn the_hub_counters_and_the_redis_state_are_read_at_scrape_time() {
        let dir = tempfile_dir();
        let store = Arc::new(EmbeddedEventStore::open(&dir).unwrap());
        let hub = Hub::new(store, Arc::new(LocalBus), Arc::new(SystemClock), HubOptions::default());
        let metrics = Metrics::new();
        metrics.observe_hub(&hub);
        metrics.observe_redis(Arc::new(LocalBus));
        metrics.register_counters("lct_log_events_dropped", "test", "reason", || vec![("buffer_full", 7)]);
        hub.stats().delivered.fetch_add(5, Ordering::Relaxed);
        hub.stats().slow_disconnects.fetch_add(2, Ordering::Relaxed);
        hub.stats().slow_consumer_messages_dropped.fetch_add(9, Ordering::Relaxed);
        hub.stats().bus_publish_failures.fetch_add(1, Ordering::Relaxed);
        hub.stats().bus_outbox_full.fetch_add(3, Ordering::Relaxed);
        hub.stats().commit_to_delivery.observe(0.2);
        hub.stats().pubsub_lag.observe(0, SystemClock.now_ms());
        let (_membership, _queue) = hub.subscribe(uuid::Uuid::new_v4(), live::Protocol::V2, None).await;
        let text = metrics.render();
        assert_eq!(sample(&text, "lct_ws_connections"), Some(1.0), "{text}");
        assert_eq!(sample(&text, "lct_messages_delivered_total"), Some(5.0));
        assert_eq!(sample(&text, "lct_slow_consumer_disconnects_total"), Some(2.0));
        assert_eq!(sample(&text, r#"lct_messages_dropped_total{reason="slow_consumer"}"#), Some(9.0));
        assert_eq!(sample(&text, r#"lct_messages_dropped_total{reason="bus_publish_failed"}"#), Some(1.0));
        assert_eq!(sample(&text, r#"lct_messages_dropped_total{reason="bus_outbox_full"}"#), Some(3.0));
        for cause in ["bus_gap", "periodic_check", "resync", "overflow"] {
            assert_eq!(sample(&text, &format!("lct_gaps_repaired_total{{cause=\"{cause}\"}}")), Some(0.0));
        }
        for reason in ["in_flight", "publish_backlog"] {
            assert_eq!(sample(&text, &format!("lct_clicks_refused_total{{reason=\"{reason}\"}}")), Some(0.0));
        }
        for queue in ["bus", "feed"] {
            assert_eq!(sample(&text, &format!("lct_click_lists_coalesced_total{{queue=\"{queue}\"}}")), Some(0.0));
        }
        assert_eq!(sample(&text, r#"lct_commit_to_delivery_seconds_bucket{le="0.25"}"#), Some(1.0));
        assert_eq!(sample(&text, r#"lct_commit_to_delivery_seconds_bucket{le="0.1"}"#), Some(0.0));
        assert_eq!(sample(&text, "lct_redis_connected"), Some(1.0));
        assert_eq!(sample(&text, "lct_pubsub_lag_seconds_count"), Some(1.0));
        assert_eq!(
            sample(&text, r#"lct_pubsub_lag_seconds_bucket{le="5.0"}"#),
            Some(0.0),
            "an epoch-old message is late"
        );
        assert_eq!(sample(&text, r#"lct_log_events_dropped_total{reason="buffer_full"}"#), Some(7.0));
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("lct-metrics-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
