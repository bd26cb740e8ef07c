//! `lct`: read settings, start logging, bind, serve until SIGINT or SIGTERM.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use lct::Settings;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(EnvFilter::try_new(&settings.log).unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    lct::run(settings, listener, lct::shutdown_signal()).await
}
