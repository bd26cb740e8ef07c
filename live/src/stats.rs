//! Counters and histograms of the engine, kept as atomics and read by whoever exposes them
//! (the `/metrics` endpoint of `api`), so the hot paths pay nothing extra.

use prometheus_client::metrics::histogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bucket bounds (seconds) of the pub/sub lag between pods.
const LAG_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
/// Bucket bounds (seconds) of the time from commit to delivery, up to past the delivery bound.
const DELIVERY_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0];

/// Why a feed read the event store for events it had not received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairCause {
    /// A bus message carried a version past the next one.
    BusGap,
    /// The periodic check found the store a period ahead of the feed.
    PeriodicCheck,
    /// The bus reconnected, dropped messages, or a pod announced publications it could not make.
    Resync,
    /// The feed's command queue was full and something was dropped.
    Overflow,
}

impl RepairCause {
    pub const ALL: [RepairCause; 4] =
        [RepairCause::BusGap, RepairCause::PeriodicCheck, RepairCause::Resync, RepairCause::Overflow];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            RepairCause::BusGap => "bus_gap",
            RepairCause::PeriodicCheck => "periodic_check",
            RepairCause::Resync => "resync",
            RepairCause::Overflow => "overflow",
        }
    }
}

/// Why a click was refused because the pod is overloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overload {
    /// As many clicks as allowed are being recorded on this pod now.
    InFlight,
    /// The publications waiting for the bus reached the limit.
    PublishBacklog,
}

impl Overload {
    pub const ALL: [Overload; 2] = [Overload::InFlight, Overload::PublishBacklog];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Overload::InFlight => "in_flight",
            Overload::PublishBacklog => "publish_backlog",
        }
    }
}

/// Where a click list waited when a newer one replaced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClickQueue {
    /// Waiting for the bus.
    Bus,
    /// Waiting for a feed to deliver it to this pod's connections.
    Feed,
    /// Queued to a connection, not yet written to it.
    Connection,
}

impl ClickQueue {
    pub const ALL: [ClickQueue; 3] = [ClickQueue::Bus, ClickQueue::Feed, ClickQueue::Connection];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            ClickQueue::Bus => "bus",
            ClickQueue::Feed => "feed",
            ClickQueue::Connection => "connection",
        }
    }
}

/// Counters of the hub, for metrics and tests.
#[derive(Debug)]
pub struct HubStats {
    pub connections: AtomicU64,
    /// Messages queued to connections.
    pub delivered: AtomicU64,
    /// Connections cut off because their queue was full.
    pub slow_disconnects: AtomicU64,
    /// Messages lost to connections cut off as too slow: the one that found the queue full and
    /// those still queued (the client reconnects and resumes).
    pub slow_consumer_messages_dropped: AtomicU64,
    /// Publications to the other pods that failed.
    pub bus_publish_failures: AtomicU64,
    /// Publications dropped because the queue to the bus was full.
    pub bus_outbox_full: AtomicU64,
    /// Stream versions read by the periodic check.
    pub versions_checked: AtomicU64,
    repairs: [AtomicU64; 4],
    /// Clicks refused because the pod was overloaded, by [`Overload`].
    clicks_refused: [AtomicU64; 2],
    /// Click lists replaced by a newer list of their tournament before they went out, by
    /// [`ClickQueue`]: the newer one goes out instead.
    click_lists_coalesced: [AtomicU64; 3],
    /// Lists of the players online replaced in a connection's queue by a newer list of their
    /// tournament before they went out.
    pub presence_lists_coalesced: AtomicU64,
    /// Time from publication by any pod to arrival here of bus messages.
    pub pubsub_lag: PubSubLag,
    /// Time from an event's commit (its recorded time) to its delivery here, for events that
    /// reached this pod through the bus or a store read (not this pod's own commits).
    pub commit_to_delivery: Histogram,
}

impl Default for HubStats {
    fn default() -> Self {
        HubStats {
            connections: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            slow_disconnects: AtomicU64::new(0),
            slow_consumer_messages_dropped: AtomicU64::new(0),
            bus_publish_failures: AtomicU64::new(0),
            bus_outbox_full: AtomicU64::new(0),
            versions_checked: AtomicU64::new(0),
            repairs: Default::default(),
            clicks_refused: Default::default(),
            click_lists_coalesced: Default::default(),
            presence_lists_coalesced: AtomicU64::new(0),
            pubsub_lag: PubSubLag::default(),
            commit_to_delivery: Histogram::new(DELIVERY_BUCKETS),
        }
    }
}

impl HubStats {
    /// Store reads that delivered at least one missed event, by cause.
    pub fn gaps_repaired(&self, cause: RepairCause) -> u64 {
        self.repairs[cause as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn repaired(&self, cause: RepairCause) {
        self.repairs[cause as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Clicks refused for overload, by reason.
    pub fn clicks_refused(&self, reason: Overload) -> u64 {
        self.clicks_refused[reason as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn refused_click(&self, reason: Overload) {
        self.clicks_refused[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Click lists replaced by a newer one while waiting in `queue`.
    pub fn click_lists_coalesced(&self, queue: ClickQueue) -> u64 {
        self.click_lists_coalesced[queue as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn coalesced(&self, queue: ClickQueue) {
        self.click_lists_coalesced[queue as usize].fetch_add(1, Ordering::Relaxed);
    }
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
