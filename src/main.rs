//! `lct`: read settings, start telemetry, bind, serve until SIGINT or SIGTERM, flush telemetry.
//! `lct store verify|repair` checks or repairs the embedded store instead.
#![forbid(unsafe_code)]

use anyhow::Context;
use api::metrics::Metrics;
use clap::Parser;
use lct::settings::Command;
use lct::Settings;
use std::process::ExitCode;

/// Many small, short-lived allocations per delivered message (frames, queue entries, Redis
/// replies): jemalloc spends about a seventh less CPU per delivery on them than the system
/// allocator (docs/benchmarks.md), for a little more memory than it. Without the `jemalloc`
/// feature the system allocator is used (heap profilers such as heaptrack see its calls).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let settings = Settings::parse();
    settings.check().map_err(anyhow::Error::msg)?;
    if let Some(Command::Store(command)) = settings.command {
        return Ok(lct::store_command::run(&settings.data_dir, command, settings.mongodb_uri().is_some()));
    }
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
    served.map(|()| ExitCode::SUCCESS)
}
