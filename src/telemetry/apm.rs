//! Traces to Elastic APM: the spans of lct's own crates (requests, event-store and Redis
//! operations) exported over OTLP/HTTP (protobuf) to APM Server's `/v1/traces`, which APM
//! Server accepts natively. Spans are queued in memory and sent in batches from a background
//! thread; a full queue drops spans, so a slow APM Server never slows a request.

use super::ecs::Service;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::collections::HashMap;
use std::time::Duration;
use tracing::{Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Spans waiting for export at most, unless `OTEL_BSP_MAX_QUEUE_SIZE` says otherwise; more are
/// dropped.
const MAX_QUEUED_SPANS: usize = 8192;

/// The tracing layer that exports spans, and the provider to flush on shutdown. Fails if the
/// secret token cannot be sent in an HTTP header (the exporter would silently leave it out).
pub fn layer<S>(
    server_url: &str,
    secret_token: Option<&str>,
    service: &Service,
) -> anyhow::Result<(impl Layer<S> + Send + Sync, SdkTracerProvider)>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let mut headers = HashMap::new();
    if let Some(token) = secret_token {
        let value = format!("Bearer {token}");
        anyhow::ensure!(
            reqwest::header::HeaderValue::from_str(&value).is_ok(),
            "LCT_APM_SECRET_TOKEN cannot be sent in an HTTP header: it holds a control character or a character \
             beyond ASCII"
        );
        headers.insert("Authorization".to_owned(), value);
    }
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", server_url.trim_end_matches('/')))
        .with_timeout(Duration::from_secs(10))
        .with_headers(headers)
        .build()?;
    // The standard OTEL_BSP_* variables tune the batches; the queue is larger by default.
    let mut batches = BatchConfigBuilder::default();
    if std::env::var_os("OTEL_BSP_MAX_QUEUE_SIZE").is_none() {
        batches = batches.with_max_queue_size(MAX_QUEUED_SPANS);
    }
    let batches = batches.build();
    let processor = BatchSpanProcessor::builder(exporter).with_batch_config(batches).build();
    let resource = Resource::builder()
        .with_service_name("lct")
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", service.node.clone()),
            KeyValue::new("host.name", service.node.clone()),
            // APM Server reads the older name; newer semantic conventions use the longer one.
            KeyValue::new("deployment.environment", service.environment.clone()),
            KeyValue::new("deployment.environment.name", service.environment.clone()),
        ])
        .build();
    let provider = SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource).build();
    let tracer = provider.tracer("lct");
    // Only lct's own spans: dependencies' internals (and the exporter's own HTTP client) stay out.
    let ours = Targets::new()
        .with_target("api", Level::INFO)
        .with_target("domain", Level::INFO)
        .with_target("infrastructure", Level::INFO)
        .with_target("lct", Level::INFO);
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(ours);
    Ok((layer, provider))
}
