//! `lct`: read settings, start telemetry, bind, serve until SIGINT or SIGTERM, flush telemetry.
#![forbid(unsafe_code)]

use anyhow::Context;
use api::metrics::Metrics;
use clap::Parser;
use lct::Settings;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    let metrics = Metrics::new();
    let telemetry = lct::telemetry::init(&settings, &metrics)?;
    let served = async {
        let listener = tokio::net::TcpListener::bind(&settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        lct::run(settings.clone(), listener, metrics, lct::shutdown_signal()).await
    }
    .await;
    if let Err(error) = &served {
        tracing::error!(error = AsRef::<dyn std::error::Error>::as_ref(error), "lct stopped on an error");
    }
    telemetry.shutdown().await;
    served
}
