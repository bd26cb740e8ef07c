//! The cluster as this pod sees it: its heartbeat into the pod registry, the pruning of dead
//! pods (and the clean-up of what they left behind), its ordinal among the live pods, the
//! operations view `GET /cluster` and the `lct_cluster_*` gauges.
//!
//! Every heartbeat period the pod writes its entry (id, address, version, start time, live
//! connections, tournaments served) with a lapse of one and a half periods. A pod that misses its
//! heartbeat by half a period is no longer listed anywhere, so a pod that crashed disappears from
//! every view within two periods. On each heartbeat every pod also prunes the lapsed entries; the
//! registry hands each dead pod to exactly one of them, which clears the dead pod's presence
//! entries and re-broadcasts the presence of the tournaments touched. A pod that stops gracefully
//! deregisters at once.

use crate::live::Hub;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::ports::{PodInfo, PodRegistry, PresenceStore};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use serde_json::{json, Value};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Who this pod is, from configuration.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Unique among the pods.
    pub pod_id: String,
    /// Where the pod listens, as shown to operators.
    pub address: String,
    /// The version of lct this pod runs.
    pub version: String,
    /// Period of the heartbeat; an entry lapses after one and a half periods.
    pub heartbeat: Duration,
}

/// What the last heartbeat learnt about the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Figures {
    /// This pod's place among the live pods; `None` while it is not listed.
    ordinal: Option<usize>,
    pods: usize,
    connections: u64,
    tournaments: u64,
}

impl Figures {
    fn of(pods: &[PodInfo], me: &str) -> Figures {
        Figures {
            ordinal: pods.iter().position(|pod| pod.id == me),
            pods: pods.len(),
            connections: pods.iter().map(|pod| pod.connections).sum(),
            tournaments: pods.iter().map(|pod| pod.tournaments).sum(),
        }
    }
}

struct Inner {
    options: ClusterOptions,
    started_at_ms: i64,
    registry: Arc<dyn PodRegistry>,
    presence: Arc<dyn PresenceStore>,
    hub: Hub,
    figures: Mutex<Figures>,
    /// Dead pods this pod won but could not clean up yet; retried on the next heartbeat.
    unclean: Mutex<Vec<String>>,
    /// Whether a heartbeat has ever been recorded (a later registration means the others had
    /// taken this pod for dead).
    registered: AtomicBool,
    /// Whether the last heartbeat failed, so that an outage is logged once.
    failing: AtomicBool,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// This pod's membership of the cluster; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Cluster {
    /// This pod, not yet registered: [`Cluster::start`] begins the heartbeat.
    pub fn new(
        options: ClusterOptions,
        registry: Arc<dyn PodRegistry>,
        presence: Arc<dyn PresenceStore>,
        hub: Hub,
    ) -> Cluster {
        Cluster {
            inner: Arc::new(Inner {
                options,
                started_at_ms: now_ms(),
                registry,
                presence,
                hub,
                figures: Mutex::new(Figures::default()),
                unclean: Mutex::new(Vec::new()),
                registered: AtomicBool::new(false),
                failing: AtomicBool::new(false),
                stop: CancellationToken::new(),
                task: Mutex::new(None),
            }),
        }
    }

    /// This pod's id.
    pub fn pod_id(&self) -> &str {
        &self.inner.options.pod_id
    }

    /// How long an entry stays live after its heartbeat: one and a half periods, so that a pod
    /// may be half a period late without being taken for dead, and one that died is gone from
    /// every view within two periods.
    pub fn lapse(&self) -> Duration {
        (self.inner.options.heartbeat * 3 / 2).max(Duration::from_millis(1))
    }

    /// This pod's ordinal among the live pods and their number, as of the last heartbeat;
    /// `None` while this pod is not listed (not registered yet, or the registry unreachable).
    pub fn position(&self) -> Option<(usize, usize)> {
        let figures = *lock(&self.inner.figures);
        figures.ordinal.map(|ordinal| (ordinal, figures.pods))
    }

    /// Starts the heartbeat: one at once, then one every period until [`Cluster::stop`].
    pub fn start(&self) {
        let cluster = self.clone();
        let period = self.inner.options.heartbeat.max(Duration::from_millis(1));
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = cluster.inner.stop.cancelled() => break,
                    _ = ticks.tick() => cluster.beat().await,
                }
            }
        });
        *lock(&self.inner.task) = Some(task);
    }

    /// Stops the heartbeat and leaves the cluster at once: deregisters this pod and removes its
    /// presence entries (telling the other pods), instead of letting them lapse.
    pub async fn stop(&self) {
        self.inner.stop.cancel();
        let task = lock(&self.inner.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        let id = self.pod_id();
        match self.inner.registry.deregister(id).await {
            Ok(()) => tracing::info!(pod = %id, "left the cluster"),
            Err(error) => {
                tracing::warn!(pod = %id, cause = %error, "could not leave the cluster; this pod's entry will lapse")
            }
        }
        self.clean_up(id).await;
    }

    /// One heartbeat: refreshes this pod's entry, prunes the dead pods (cleaning up after those
    /// this pod won) and updates the figures.
    pub async fn beat(&self) {
        let inner = &self.inner;
        let me = PodInfo {
            id: inner.options.pod_id.clone(),
            address: inner.options.address.clone(),
            version: inner.options.version.clone(),
            started_at_ms: inner.started_at_ms,
            connections: inner.hub.stats().connections.load(Ordering::Relaxed),
            tournaments: inner.hub.tournaments_served() as u64,
            last_heartbeat_ms: now_ms(),
        };
        let result = async {
            let added = inner.registry.heartbeat(&me, self.lapse()).await?;
            if added && inner.registered.swap(true, Ordering::AcqRel) {
                // Its presence entries were cleared by the pod that pruned it; they come back as
                // players reconnect, or expire.
                tracing::warn!(pod = %me.id, "the other pods had taken this pod for dead; registered it again");
            }
            let pruned = inner.registry.prune().await?;
            lock(&inner.unclean).extend(pruned);
            inner.registry.live_pods().await
        }
        .await;
        match result {
            Ok(pods) => {
                if inner.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!(pod = %me.id, "the pod registry is reachable again");
                }
                self.update(Figures::of(&pods, &me.id));
            }
            Err(error) => {
                // The figures of the last heartbeat that worked are kept meanwhile.
                if !inner.failing.swap(true, Ordering::AcqRel) {
                    tracing::warn!(pod = %me.id, cause = %error, "heartbeat failed; retrying every period");
                }
            }
        }
        let unclean = std::mem::take(&mut *lock(&inner.unclean));
        for dead in unclean {
            tracing::info!(pod = %dead, "a pod stopped sending heartbeats; removed it from the cluster");
            self.clean_up(&dead).await;
        }
    }

    /// Removes what `pod` owned (its presence entries) and tells the connections of the
    /// tournaments touched who is still online. Kept for the next heartbeat when it fails.
    async fn clean_up(&self, pod: &str) {
        let inner = &self.inner;
        let tournaments = match inner.presence.clear_pod(pod).await {
            Ok(tournaments) => tournaments,
            Err(error) => {
                tracing::warn!(pod, cause = %error, "could not clear a departed pod's presence; will retry");
                if pod != self.pod_id() {
                    lock(&inner.unclean).push(pod.to_owned());
                }
                return;
            }
        };
        for tournament in tournaments {
            match inner.presence.online(tournament).await {
                Ok(players) => inner.hub.broadcast_presence(tournament, players),
                Err(error) => tracing::warn!(%tournament, cause = %error, "presence not re-broadcast after a pod left"),
            }
        }
    }

    fn update(&self, figures: Figures) {
        let previous = std::mem::replace(&mut *lock(&self.inner.figures), figures);
        if (previous.ordinal, previous.pods) != (figures.ordinal, figures.pods) {
            tracing::info!(
                pod = %self.pod_id(),
                ordinal = figures.ordinal,
                pods = figures.pods,
                "cluster membership changed"
            );
        }
    }

    /// The cluster as the registry lists it now, as served by `GET /cluster`.
    async fn view(&self) -> Result<Value, domain::ports::LiveError> {
        let pods = self.inner.registry.live_pods().await?;
        let figures = Figures::of(&pods, self.pod_id());
        let listed: Vec<Value> = pods
            .iter()
            .enumerate()
            .map(|(ordinal, pod)| {
                json!({
                    "id": pod.id,
                    "address": pod.address,
                    "version": pod.version,
                    "startedAt": pod.started_at_ms,
                    "connections": pod.connections,
                    "tournaments": pod.tournaments,
                    "ordinal": ordinal,
                    "lastHeartbeat": pod.last_heartbeat_ms,
                })
            })
            .collect();
        Ok(json!({
            "self": { "id": self.pod_id(), "ordinal": figures.ordinal },
            "pods": listed,
            "totals": { "pods": figures.pods, "connections": figures.connections, "tournaments": figures.tournaments },
            "heartbeatMs": self.inner.options.heartbeat.as_millis() as u64,
            "lapseMs": self.lapse().as_millis() as u64,
        }))
    }

    /// The `lct_cluster_*` gauges, read at scrape time from the last heartbeat.
    pub fn collector(&self) -> Box<dyn Collector> {
        Box::new(ClusterCollector(self.clone()))
    }
}

/// `GET /cluster`: the live pods with their figures and the cluster totals (operations JSON,
/// not part of the public API). 503 while the registry cannot be read.
pub async fn cluster(State(state): State<AppState>) -> Response {
    match state.cluster.view().await {
        Ok(view) => Json(view).into_response(),
        Err(error) => {
            tracing::warn!(cause = %error, "the pod registry cannot be read");
            crate::error::ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The pod registry is unavailable; try again shortly.",
            )
            .into_response()
        }
    }
}

struct ClusterCollector(Cluster);

impl fmt::Debug for ClusterCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterCollector")
    }
}

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let figures = *lock(&self.0.inner.figures);
        let gauges = [
            ("lct_cluster_pods", "Live pods in the cluster, as of this pod's last heartbeat", figures.pods as u64),
            ("lct_cluster_connections", "Open live connections of all live pods", figures.connections),
            ("lct_cluster_tournaments", "Tournaments served, summed over the live pods", figures.tournaments),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::HubOptions;
    use infrastructure::live::{LocalBus, LocalPodRegistry, MemorySharedState};
    use infrastructure::EmbeddedEventStore;

    fn cluster(registry: Arc<dyn PodRegistry>, presence: Arc<dyn PresenceStore>) -> (Cluster, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("lct-cluster-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Arc::new(EmbeddedEventStore::open(&dir).unwrap());
        let hub = Hub::new(store, Arc::new(LocalBus), HubOptions::default());
        let options = ClusterOptions {
            pod_id: "pod-a".to_owned(),
            address: "127.0.0.1:1".to_owned(),
            version: "9.9.9".to_owned(),
            heartbeat: Duration::from_millis(200),
        };
        (Cluster::new(options, registry, presence, hub), dir)
    }

    fn pod(id: &str, started_at_ms: i64, connections: u64) -> PodInfo {
        PodInfo {
            id: id.to_owned(),
            address: String::new(),
            version: String::new(),
            started_at_ms,
            connections,
            tournaments: 1,
            last_heartbeat_ms: 0,
        }
    }

    #[test]
    fn figures_sum_the_pods_and_place_this_one() {
        let pods = [pod("a", 1, 2), pod("b", 2, 3)];
        assert_eq!(Figures::of(&pods, "b"), Figures { ordinal: Some(1), pods: 2, connections: 5, tournaments: 2 });
        assert_eq!(Figures::of(&pods, "z").ordinal, None);
    }

    #[tokio::test]
    async fn an_entry_lapses_after_one_and_a_half_periods() {
        let memory = Arc::new(MemorySharedState::new());
        let (cluster, dir) = cluster(Arc::new(LocalPodRegistry::new()), memory);
        assert_eq!(cluster.lapse(), Duration::from_millis(300));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_lone_pod_is_ordinal_zero_of_one_and_leaves_with_its_presence() {
        let memory = Arc::new(MemorySharedState::new());
        let registry = Arc::new(LocalPodRegistry::new());
        let (cluster, dir) = cluster(registry.clone(), memory.clone());
        assert_eq!(cluster.position(), None);
        cluster.beat().await;
        assert_eq!(cluster.position(), Some((0, 1)));

        let view = cluster.view().await.unwrap();
        assert_eq!(view["self"], json!({"id": "pod-a", "ordinal": 0}));
        assert_eq!(view["pods"][0]["version"], "9.9.9");
        assert_eq!(view["pods"][0]["ordinal"], 0);
        assert_eq!(view["totals"], json!({"pods": 1, "connections": 0, "tournaments": 0}));

        let tournament = uuid::Uuid::new_v4();
        let entry =
            domain::ports::PresenceEntry { player_id: uuid::Uuid::new_v4(), name: "Ann".into(), surname: "A".into() };
        memory.join(tournament, &entry, "pod-a", Duration::from_secs(60)).await.unwrap();
        cluster.start();
        cluster.stop().await;
        assert!(registry.live_pods().await.unwrap().is_empty(), "deregistered");
        assert!(memory.online(tournament).await.unwrap().is_empty(), "its presence is gone");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn the_gauges_show_the_last_heartbeat() {
        let (cluster, dir) = cluster(Arc::new(LocalPodRegistry::new()), Arc::new(MemorySharedState::new()));
        cluster.beat().await;
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(cluster.collector());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("lct_cluster_pods 1\n"), "{text}");
        assert!(text.contains("lct_cluster_connections 0\n"), "{text}");
        assert!(text.contains("lct_cluster_tournaments 0\n"), "{text}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
