//! The `lct` server: configuration and wiring of the adapters behind the ports.
#![forbid(unsafe_code)]

mod faults;
pub mod settings;
pub mod store_command;
pub mod telemetry;
pub mod token_key;

use anyhow::Context;
use api::live::{Cluster, Hub, LiveState, Presence};
use api::metered::{MeteredEventStore, TracedBus, TracedSharedState};
use api::metrics::Metrics;
use api::ratelimit::RateLimits;
use api::v2::tokens::TokenKeys;
use api::{AppState, HttpOptions};
use domain::ports::{EventStore, NoPublisher};
use domain::service::TournamentService;
use infrastructure::live::{LocalBus, LocalPodRegistry, MemorySharedState};
use infrastructure::EmbeddedEventStore;
use live::ports::{Bus, IdempotencyStore, PodRegistry, PresenceStore, SharedSecrets, SharedState};
use live::{Clicks, Clock, ClusterOptions, HubOptions, PublishingStore, SystemClock};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

pub use settings::Settings;

/// Builds the adapters named by `settings` and serves on `listener` until `shutdown` resolves;
/// then stops accepting, tells live clients to reconnect elsewhere and finishes in-flight work
/// within the grace period. The adapters and the hub report to `metrics`, which `/metrics` serves.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let system = if settings.mongodb_uri().is_some() { "mongodb" } else { "embedded" };
    let store: Arc<dyn EventStore> =
        Arc::new(MeteredEventStore::new(event_store(&settings).await?, metrics.event_store(), system));
    let LiveAdapters { bus, shared, presence, idempotency, pods, secrets } = live_adapters(&settings).await?;
    let background = tokio_util::sync::CancellationToken::new();
    let tokens = token_keys(&settings, secrets, &background).await?;
    if settings.redis().is_some() {
        metrics.observe_redis(Arc::clone(&bus));
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let hub = Hub::new(Arc::clone(&store), bus, Arc::clone(&clock), hub_options(&settings));
    metrics.observe_hub(&hub);
    let pod_id = pod_id(&settings);
    let presence = Presence::new(presence, pod_id.as_str().into(), hub.clone());
    let cluster = cluster(&settings, &listener, &pod_id, pods, presence.clone(), &hub)?;
    metrics.register_collector(api::cluster::collector(&cluster));
    // Commands append through a store that publishes each commit to the hub in a task of its
    // own, so that a dropped request still publishes what it committed.
    let committing = Arc::new(PublishingStore::new(faults::after_append(store), Arc::new(hub.clone())));
    let service = TournamentService::new(committing, Arc::new(NoPublisher));
    let state = AppState {
        service: service.clone(),
        public_url: settings.public_url.trim_end_matches('/').into(),
        live: LiveState {
            hub: hub.clone(),
            clicks: Clicks::new(service, Arc::clone(&shared), hub.clone(), Arc::clone(&clock)),
            presence,
            shared,
            invocations_per_second: settings.ws_invocations_per_second,
        },
        metrics,
        tokens,
        idempotency,
        cluster: cluster.clone(),
        clock,
        v1: settings.v1,
    };
    let options = HttpOptions {
        cors_origins: settings.cors_origins(),
        rate_limits: RateLimits {
            commands_per_second: settings.rate_limit_commands,
            connections_per_second: settings.rate_limit_connections,
        },
        client_ip: api::client_ip::ClientIpSource::new(
            settings.client_ip_header.as_deref(),
            settings.trusted_proxy_hops as usize,
        )
        .context("LCT_CLIENT_IP_HEADER is not a header name")?,
        server: settings.server_options(),
    };
    raise_open_file_limit(settings.max_connections);
    let admin_stop = tokio_util::sync::CancellationToken::new();
    let admin = match settings.admin_listen() {
        Some(address) => {
            let admin_listener =
                TcpListener::bind(address).await.with_context(|| format!("binding LCT_ADMIN_LISTEN {address}"))?;
            tracing::info!(addr = %admin_listener.local_addr()?, "operators' endpoints listening");
            let (state, options, stop) = (state.clone(), options.clone(), admin_stop.clone());
            Some(tokio::spawn(async move {
                api::serve_admin(admin_listener, state, &options, async move { stop.cancelled().await }).await
            }))
        }
        None => None,
    };
    let addr = listener.local_addr()?;
    tracing::info!(addr = %addr, environment = %settings.environment, "listening");
    // One grace for the whole drain, HTTP requests and WebSockets alike, from the signal on.
    let stopping = Arc::new(std::sync::OnceLock::new());
    let draining = {
        let (hub, stopping) = (hub.clone(), Arc::clone(&stopping));
        async move {
            shutdown.await;
            let _ = stopping.set(tokio::time::Instant::now());
            hub.drain();
        }
    };
    cluster.start();
    let served = api::serve(listener, state, &options, draining).await.context("serving HTTP");
    background.cancel();
    served?;
    cluster.stop().await;
    hub.tracker().close();
    let deadline = stopping.get().copied().unwrap_or_else(tokio::time::Instant::now) + settings.shutdown_grace();
    if tokio::time::timeout_at(deadline, hub.tracker().wait()).await.is_err() {
        tracing::warn!("grace period over with live connections still open");
    }
    // The operators' endpoints last: probes are answered (not ready) throughout the drain.
    admin_stop.cancel();
    if let Some(admin) = admin {
        let _ = admin.await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The delivery engine's tunables from the settings.
fn hub_options(settings: &Settings) -> HubOptions {
    HubOptions {
        queue_capacity: settings.ws_queue.max(1),
        delivery_bound: settings.delivery_bound(),
        clicks_in_flight: usize::try_from(settings.clicks_in_flight).unwrap_or(usize::MAX),
        click_refusal_backlog: usize::try_from(settings.click_refusal_backlog).unwrap_or(usize::MAX),
        ..HubOptions::default()
    }
}

/// Raises the process's soft open-file limit to its hard limit (containers often start with a
/// soft limit of 1024, far below `LCT_MAX_CONNECTIONS`), and warns when it stays below what the
/// cap needs: past the limit new connections fail to be accepted at all instead of getting
/// their 503, probes included.
fn raise_open_file_limit(max_connections: usize) {
    // Headroom for the store, Redis, telemetry and the listeners.
    let needed = u64::try_from(max_connections).unwrap_or(u64::MAX).saturating_add(64);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(open_files) if max_connections > 0 && open_files < needed => tracing::warn!(
            open_files,
            max_connections,
            "the open-file limit is below LCT_MAX_CONNECTIONS plus headroom, even raised to its hard limit; \
             raise the hard limit or lower the cap"
        ),
        Ok(open_files) => tracing::debug!(open_files, "open-file limit"),
        Err(error) => tracing::warn!(%error, "cannot read or raise the open-file limit"),
    }
}

/// What live coordination runs on: Redis when `LCT_REDIS_URL` or `LCT_REDIS_SENTINELS` is set,
/// this process otherwise.
struct LiveAdapters {
    bus: Arc<dyn Bus>,
    shared: Arc<dyn SharedState>,
    presence: Arc<dyn PresenceStore>,
    idempotency: Arc<dyn IdempotencyStore>,
    pods: Arc<dyn PodRegistry>,
    /// Where pods agree on what they must hold alike; none within one process.
    secrets: Option<Arc<dyn SharedSecrets>>,
}

async fn live_adapters(settings: &Settings) -> anyhow::Result<LiveAdapters> {
    match settings.redis() {
        Some(redis) => {
            let (bus, shared) = infrastructure::live::connect_redis(redis).await.context("configuring Redis")?;
            tracing::info!("using Redis for fan-out and shared state");
            // Serve with the bus up when Redis is there; otherwise start anyway and catch up later.
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
            while !bus.is_connected() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            if !bus.is_connected() {
                tracing::warn!("Redis is not reachable yet; serving, live delivery across pods resumes once it is");
            }
            // Redis operations are spans of the traces sent to APM; without APM they are not
            // made at all (two spans per click otherwise, for nobody).
            let (bus, click_state): (Arc<dyn Bus>, Arc<dyn SharedState>) = match settings.apm_server_url() {
                Some(_) => (Arc::new(TracedBus(bus)), Arc::new(TracedSharedState(shared.clone()))),
                None => (bus, shared.clone()),
            };
            Ok(LiveAdapters {
                bus,
                presence: shared.clone(),
                idempotency: shared.clone(),
                pods: shared.clone(),
                secrets: Some(shared),
                shared: click_state,
            })
        }
        None => {
            let memory = Arc::new(MemorySharedState::default());
            Ok(LiveAdapters {
                bus: Arc::new(LocalBus),
                shared: memory.clone(),
                presence: memory.clone(),
                idempotency: memory,
                pods: Arc::new(LocalPodRegistry::new()),
                secrets: None,
            })
        }
    }
}

/// This pod's membership of the cluster, known to the others by `pod_id` and `LCT_POD_ADDRESS`
/// (else the bound address); its heartbeat starts with [`Cluster::start`].
fn cluster(
    settings: &Settings,
    listener: &TcpListener,
    pod_id: &str,
    registry: Arc<dyn PodRegistry>,
    presence: Presence,
    hub: &Hub,
) -> anyhow::Result<Cluster> {
    let address = match settings.pod_address.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        Some(address) => address.to_owned(),
        None => listener.local_addr()?.to_string(),
    };
    let options = ClusterOptions {
        pod_id: pod_id.to_owned(),
        address,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        heartbeat: std::time::Duration::from_millis(settings.heartbeat_ms.max(1)),
    };
    Ok(Cluster::new(options, registry, presence, hub.clone()))
}

/// This pod's id: `LCT_POD_NAME`, else the host name with a random suffix (two processes on one
/// host differ).
fn pod_id(settings: &Settings) -> String {
    match settings.pod_name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => name.to_owned(),
        None => format!("{}-{:06x}", telemetry::node_name(settings), rand_suffix()),
    }
}

fn rand_suffix() -> u32 {
    (uuid::Uuid::new_v4().as_u128() & 0xff_ffff) as u32
}

/// The key of the v2 tokens (see [`token_key`]): `LCT_TOKEN_SECRET`; else, with Redis, the key
/// the pods agree on through it, agreed in the background until `background` is cancelled; else
/// the key file in the data directory.
async fn token_keys(
    settings: &Settings,
    secrets: Option<Arc<dyn SharedSecrets>>,
    background: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<TokenKeys> {
    if let Some(keys) = token_key::configured(settings.token_secret.as_deref())? {
        return Ok(keys);
    }
    if let Some(secrets) = secrets {
        let keys = TokenKeys::pending();
        tokio::spawn(api::v2::tokens::agree(keys.clone(), secrets, background.clone()));
        // Serve with the key when Redis answers; otherwise start anyway (token operations answer
        // 503 until the key is agreed).
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
        while !keys.is_ready() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if !keys.is_ready() {
            tracing::warn!("the token key is not agreed yet; v2 token operations answer 503 until it is");
        }
        return Ok(keys);
    }
    if settings.mongodb_uri().is_some() {
        tracing::warn!(
            "LCT_TOKEN_SECRET and LCT_REDIS_URL are unset: v2 tokens are only valid on pods sharing this data directory"
        );
    }
    token_key::from_data_dir(&settings.data_dir)
}

/// The MongoDB event store when `LCT_MONGODB_URI` is set, the embedded one otherwise. The
/// MongoDB indexes are created in the background until the replica set answers, so the process
/// starts (and reports not ready) while it is unreachable.
async fn event_store(settings: &Settings) -> anyhow::Result<Arc<dyn EventStore>> {
    use infrastructure::{MongoEventStore, MongoSettings};
    use std::time::Duration;

    if let Some(uri) = settings.mongodb_uri() {
        let mut mongo = MongoSettings::new(uri, settings.mongodb_database.trim());
        mongo.username = settings.mongodb_username.clone();
        mongo.password = settings.mongodb_password.clone();
        mongo.auth_source = settings.mongodb_auth_source.clone();
        mongo.tls = settings.mongodb_tls;
        mongo.tls_ca_file = settings.mongodb_tls_ca_file.clone();
        mongo.tls_cert_key_file = settings.mongodb_tls_cert_key_file.clone();
        mongo.max_pool_size = settings.mongodb_max_pool_size;
        mongo.timeout = settings.mongodb_timeout_ms.map(Duration::from_millis);
        mongo.operation_timeout = Duration::from_millis(settings.mongodb_operation_timeout_ms);
        mongo.retry_writes = settings.mongodb_retry_writes;
        let store = MongoEventStore::connect(mongo).await.context("configuring the MongoDB event store")?;
        tokio::spawn(store.clone().ensure_indexes_until_done());
        return Ok(Arc::new(store));
    }
    let store = EmbeddedEventStore::open(&settings.data_dir)
        .with_context(|| format!("opening the embedded event store in {}", settings.data_dir.display()))?;
    tracing::info!(data_dir = %settings.data_dir.display(), "using the embedded event store");
    Ok(Arc::new(store))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn overload_limits_come_from_the_settings_and_default_to_the_engine_defaults() {
        let defaults = hub_options(&Settings::try_parse_from(["lct"]).unwrap());
        assert_eq!(defaults.clicks_in_flight, HubOptions::default().clicks_in_flight);
        assert_eq!(defaults.click_refusal_backlog, HubOptions::default().click_refusal_backlog);
        let settings =
            Settings::try_parse_from(["lct", "--clicks-in-flight", "3", "--click-refusal-backlog", "40"]).unwrap();
        let options = hub_options(&settings);
        assert_eq!((options.clicks_in_flight, options.click_refusal_backlog), (3, 40));
        for zero in ["--clicks-in-flight=0", "--click-refusal-backlog=0"] {
            assert!(Settings::try_parse_from(["lct", zero]).is_err(), "{zero} would refuse every click");
        }
    }
}
