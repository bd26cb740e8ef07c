//! Counters and histograms of the engine, kept as atomics and read by whoever exposes them
//! (the `/metrics` endpoint of `api`), so the hot paths pay nothing extra.

use prometheus_client::metrics::histogram::Histogram;
use std::sync::atomic::AtomicU64;

/// Bucket bounds (seconds) of the pub/sub lag between pods.
const LAG_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Counters of the hub, for metrics and tests.
#[derive(Debug, Default)]
pub struct HubStats {
    pub connections: AtomicU64,
    pub delivered: AtomicU64,
    pub slow_disconnects: AtomicU64,
    pub gaps_repaired: AtomicU64,
    pub bus_publish_failures: AtomicU64,
    /// Time from publication by any pod to arrival here of bus messages.
    pub pubsub_lag: PubSubLag,
}

/// Delay between a message's publication on the bus and its arrival at this pod.
#[derive(Debug, Clone)]
pub struct PubSubLag(Histogram);

impl Default for PubSubLag {
    fn default() -> Self {
        PubSubLag(Histogram::new(LAG_BUCKETS))
    }
}

impl PubSubLag {
    /// Records the lag of a message published at `published_at_ms` and received at `now_ms`
    /// (ms since the Unix epoch; the publisher's clock ahead of ours counts as no lag).
    pub fn observe(&self, published_at_ms: i64, now_ms: i64) {
        self.0.observe((now_ms - published_at_ms).max(0) as f64 / 1000.0);
    }

    pub fn histogram(&self) -> &Histogram {
        &self.0
    }
}
