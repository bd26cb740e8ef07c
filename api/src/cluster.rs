//! The cluster for operators: `GET /cluster` and the `lct_cluster_*` gauges, both from this
//! pod's membership of the cluster (its heartbeat and pruning run in the engine, see
//! [`live::cluster`]).

use crate::live::Cluster;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use live::ClusterView;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use serde_json::{json, Value};
use std::fmt;

/// The JSON of `GET /cluster`.
fn render(view: &ClusterView) -> Value {
    let listed: Vec<Value> = view
        .pods
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
    let figures = view.figures;
    json!({
        "self": { "id": view.pod_id, "ordinal": figures.ordinal },
        "pods": listed,
        "totals": { "pods": figures.pods, "connections": figures.connections, "tournaments": figures.tournaments },
        "heartbeatMs": view.heartbeat.as_millis() as u64,
        "lapseMs": view.lapse.as_millis() as u64,
    })
}

/// `GET /cluster`: the live pods with their figures and the cluster totals (operations JSON,
/// not part of the public API). 503 while the registry cannot be read.
pub async fn cluster(State(state): State<AppState>) -> Response {
    match state.cluster.view().await {
        Ok(view) => Json(render(&view)).into_response(),
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

/// The `lct_cluster_*` gauges, read at scrape time from the last heartbeat.
pub fn collector(cluster: &Cluster) -> Box<dyn Collector> {
    Box::new(ClusterCollector(cluster.clone()))
}

struct ClusterCollector(Cluster);

impl fmt::Debug for ClusterCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterCollector")
    }
}

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let figures = self.0.figures();
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
    use infrastructure::live::{LocalBus, LocalPodRegistry, MemorySharedState};
    use infrastructure::EmbeddedEventStore;
    use live::ports::{PodRegistry, PresenceEntry, PresenceStore};
    use live::{ClusterOptions, HubOptions, SystemClock};
    use std::sync::Arc;
    use std::time::Duration;

    fn cluster(registry: Arc<dyn PodRegistry>, presence: Arc<dyn PresenceStore>) -> (Cluster, tempfile::TempDir) {
        let (cluster, _, dir) = cluster_with_presence(registry, presence);
        (cluster, dir)
    }

    fn cluster_with_presence(
        registry: Arc<dyn PodRegistry>,
        presence: Arc<dyn PresenceStore>,
    ) -> (Cluster, crate::live::Presence, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedEventStore::open(dir.path()).unwrap());
        let hub = crate::live::Hub::new(store, Arc::new(LocalBus), Arc::new(SystemClock), HubOptions::default());
        let options = ClusterOptions {
            pod_id: "pod-a".to_owned(),
            address: "127.0.0.1:1".to_owned(),
            version: "9.9.9".to_owned(),
            heartbeat: Duration::from_millis(200),
        };
        let presence = crate::live::Presence::new(presence, "pod-a".into(), hub.clone());
        (Cluster::new(options, registry, presence.clone(), hub), presence, dir)
    }

    #[tokio::test]
    async fn an_entry_lapses_after_one_and_a_half_periods() {
        let (cluster, _dir) = cluster(Arc::new(LocalPodRegistry::new()), Arc::new(MemorySharedState::new()));
        assert_eq!(cluster.lapse(), Duration::from_millis(300));
    }

    #[tokio::test]
    async fn a_lone_pod_is_ordinal_zero_of_one_and_leaves_with_its_presence() {
        let memory = Arc::new(MemorySharedState::new());
        let registry = Arc::new(LocalPodRegistry::new());
        let (cluster, _dir) = cluster(registry.clone(), memory.clone());
        assert_eq!(cluster.position(), None);
        cluster.beat().await;
        assert_eq!(cluster.position(), Some((0, 1)));

        let view = render(&cluster.view().await.unwrap());
        assert_eq!(view["self"], json!({"id": "pod-a", "ordinal": 0}));
        assert_eq!(view["pods"][0]["version"], "9.9.9");
        assert_eq!(view["pods"][0]["ordinal"], 0);
        assert_eq!(view["totals"], json!({"pods": 1, "connections": 0, "tournaments": 0}));
        assert_eq!((view["heartbeatMs"].as_u64(), view["lapseMs"].as_u64()), (Some(200), Some(300)));

        let tournament = uuid::Uuid::new_v4();
        let entry = PresenceEntry { player_id: uuid::Uuid::new_v4(), name: "Ann".into(), surname: "A".into() };
        memory.join(tournament, &entry, "pod-a", Duration::from_secs(60)).await.unwrap();
        cluster.start();
        cluster.stop().await;
        assert!(registry.live_pods().await.unwrap().is_empty(), "deregistered");
        assert!(memory.online(tournament).await.unwrap().is_empty(), "its presence is gone");
    }

    #[tokio::test]
    async fn a_pod_taken_for_dead_records_its_players_again_when_it_registers_again() {
        let memory = Arc::new(MemorySharedState::new());
        let registry = Arc::new(LocalPodRegistry::new());
        let (cluster, presence, _dir) = cluster_with_presence(registry.clone(), memory.clone());
        cluster.beat().await;
        let tournament = uuid::Uuid::new_v4();
        let entry = PresenceEntry { player_id: uuid::Uuid::new_v4(), name: "Ann".into(), surname: "A".into() };
        let _online = presence.connected(tournament, entry.clone()).await;
        assert_eq!(memory.online(tournament).await.unwrap(), vec![entry.clone()]);

        // The others took it for dead: its entry pruned, its presence cleared.
        registry.deregister("pod-a").await.unwrap();
        memory.clear_pod("pod-a").await.unwrap();
        cluster.beat().await;
        assert_eq!(memory.online(tournament).await.unwrap(), vec![entry], "Ann is online again");
    }

    #[tokio::test]
    async fn the_gauges_show_the_last_heartbeat() {
        let (cluster, _dir) = cluster(Arc::new(LocalPodRegistry::new()), Arc::new(MemorySharedState::new()));
        cluster.beat().await;
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(collector(&cluster));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("lct_cluster_pods 1\n"), "{text}");
        assert!(text.contains("lct_cluster_connections 0\n"), "{text}");
        assert!(text.contains("lct_cluster_tournaments 0\n"), "{text}");
    }
}
