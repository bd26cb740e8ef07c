//! Logs, log shipping and traces of the process.
//!
//! Every event is one ECS JSON line on stdout ([`ecs`]); request logs, warnings and errors also
//! go to Elasticsearch when `LCT_ELASTICSEARCH_URL` is set ([`elasticsearch`]); spans go to
//! Elastic APM when `LCT_APM_SERVER_URL` is set ([`apm`]). No destination can slow a request:
//! each sits behind a bounded in-memory queue that drops and counts when full. Stdout is written
//! by a thread of its own, so a reader that stops reading (a stuck log collector, a full disk
//! under the container's log) blocks nothing but that thread.

pub mod apm;
pub mod clock;
pub mod ecs;
pub mod elasticsearch;

use crate::Settings;
use anyhow::Context;
use api::metrics::Metrics;
use ecs::{EcsLayer, Service};
use elasticsearch::{ShipStats, Shipper, ShipperOptions};
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How long shutdown waits for the last logs and spans to be sent.
const FLUSH_GRACE: Duration = Duration::from_secs(5);

/// Log lines waiting for stdout at most (a few MiB); more are dropped and counted.
const STDOUT_LINES: usize = 8192;

/// The running telemetry; [`Telemetry::shutdown`] flushes it.
pub struct Telemetry {
    shipper: Option<Shipper>,
    tracer: Option<SdkTracerProvider>,
    /// Writes the lines still waiting when dropped (for a second at most).
    stdout: tracing_appender::non_blocking::WorkerGuard,
}

/// The pod name: `LCT_POD_NAME`, else the host name.
pub fn node_name(settings: &Settings) -> String {
    let configured = settings.pod_name.as_deref().map(str::trim).filter(|n| !n.is_empty());
    configured
        .map(str::to_owned)
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.trim().is_empty()))
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A key or token from the environment: surrounding whitespace (the newline a secret file ends
/// with) is not part of it, and an empty one counts as unset.
fn secret(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Installs the global subscriber and starts the exporters the settings ask for; registers the
/// log-shipping counters in `metrics`. Must run inside the Tokio runtime. Fails if a key or
/// token cannot be sent in an HTTP header, or the subscriber cannot be installed.
pub fn init(settings: &Settings, metrics: &Metrics) -> anyhow::Result<Telemetry> {
    let service = Service { environment: settings.environment.clone(), node: node_name(settings) };
    let stats = Arc::new(ShipStats::default());
    {
        let stats = Arc::clone(&stats);
        metrics.register_counters(
            "lct_log_events_dropped",
            "Log documents not delivered to Elasticsearch: buffer full, failed after retries, or rejected",
            "reason",
            move || stats.dropped(),
        );
    }
    {
        let stats = Arc::clone(&stats);
        metrics.register_counters(
            "lct_log_events_shipped",
            "Log documents Elasticsearch accepted",
            "destination",
            move || vec![("elasticsearch", stats.shipped.load(Ordering::Relaxed))],
        );
    }
    let mut url_credentials_unused = false;
    let (sink, shipper) = match settings.elasticsearch_url() {
        Some(url) => {
            let mut options = ShipperOptions::new(url, &settings.environment);
            options.api_key = secret(&settings.elasticsearch_api_key).map(str::to_owned);
            url_credentials_unused = options.api_key.is_some() && elasticsearch::has_credentials(url);
            options.buffer = settings.elasticsearch_buffer.max(1);
            let (sink, shipper) = elasticsearch::start(options, stats).context("starting the Elasticsearch shipper")?;
            (Some(sink), Some(shipper))
        }
        None => (None, None),
    };
    let (stdout, stdout_guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(STDOUT_LINES)
        .thread_name("lct-stdout")
        .finish(std::io::stdout());
    let dropped = stdout.error_counter();
    metrics.register_counters(
        "lct_log_lines_dropped",
        "Log lines not written because their destination did not take them in time",
        "destination",
        move || vec![("stdout", dropped.dropped_lines() as u64)],
    );
    let filter = EnvFilter::try_new(&settings.log).context("LCT_LOG")?;
    let logs = EcsLayer::new(stdout, service.clone(), sink).with_filter(filter);
    let (traces, tracer) = match settings.apm_server_url() {
        Some(url) => {
            let (layer, provider) =
                apm::layer(url, secret(&settings.apm_secret_token), &service).context("configuring Elastic APM")?;
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };
    tracing_subscriber::registry().with(logs).with(traces).try_init().context("installing the log subscriber")?;
    tracing::info!(
        target: "lct::telemetry",
        elasticsearch = shipper.is_some(),
        apm = tracer.is_some(),
        node = %service.node,
        "telemetry started"
    );
    if url_credentials_unused {
        tracing::warn!(
            target: "lct::telemetry",
            "LCT_ELASTICSEARCH_URL has a user and password and LCT_ELASTICSEARCH_API_KEY is set: the API key is used"
        );
    }
    Ok(Telemetry { shipper, tracer, stdout: stdout_guard })
}

impl Telemetry {
    /// Sends the logs and spans still queued, within a few seconds.
    pub async fn shutdown(self) {
        if let Some(shipper) = self.shipper {
            shipper.finish(FLUSH_GRACE).await;
        }
        if let Some(provider) = self.tracer {
            // The exporter blocks on its HTTP client; keep that off the async workers.
            let flushed = tokio::task::spawn_blocking(move || provider.shutdown());
            let _ = tokio::time::timeout(FLUSH_GRACE, flushed).await;
        }
        // Last, so that the lines about the flushes above are written too. Dropping the guard
        // waits for the writing thread (a second at most).
        let stdout = self.stdout;
        let _ = tokio::task::spawn_blocking(move || drop(stdout)).await;
    }
}
