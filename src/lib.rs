//! The `lct` server: configuration and wiring of the adapters behind the ports.
#![forbid(unsafe_code)]

pub mod settings;

use anyhow::Context;
use api::{AppState, HttpOptions};
use domain::ports::{EventPublisher, EventStore, NoPublisher};
use domain::service::TournamentService;
use infrastructure::EmbeddedEventStore;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

pub use settings::Settings;

/// Builds the adapters named by `settings` and serves on `listener` until `shutdown` resolves.
pub async fn run(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = event_store(&settings)?;
    let publisher: Arc<dyn EventPublisher> = Arc::new(NoPublisher);
    let state = AppState {
        service: TournamentService::new(store, publisher),
        public_url: settings.public_url.trim_end_matches('/').into(),
    };
    let options = HttpOptions { cors_origins: settings.cors_origins() };
    let addr = listener.local_addr()?;
    tracing::info!(addr = %addr, environment = %settings.environment, "listening");
    api::serve(listener, state, &options, shutdown).await.context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(())
}

fn event_store(settings: &Settings) -> anyhow::Result<Arc<dyn EventStore>> {
    if settings.mongodb_uri().is_some() {
        anyhow::bail!(
            "LCT_MONGODB_URI is set, but this build has no MongoDB event store yet; unset it to use the embedded store"
        );
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
