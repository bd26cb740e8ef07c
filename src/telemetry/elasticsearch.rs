//! Ships request logs to Elasticsearch without ever holding up a request.
//!
//! The log layer offers each document to a bounded buffer and moves on; when the buffer is full
//! the document is dropped and counted. A background task takes documents in batches (by count
//! or after a short wait) and sends each batch as one `_bulk` request of `create` actions into
//! the monthly index `lct-api-{environment}-{yyyy-MM}`. A failed request is retried with
//! exponential backoff a bounded number of times, then the batch is dropped and counted. Each
//! document has an `_id` from the moment it is offered (a random prefix of the process and a
//! sequence number), so a retry of a batch Elasticsearch indexed but whose answer was lost (a
//! timeout) creates nothing twice: Elasticsearch answers 409 for what it already has. Before
//! the first batch it installs the index template `lct-api`: the very file
//! `deploy/elasticsearch/lct-api-index-template.json`, which the Kibana set-up script installs
//! too, so whichever runs first, the template is the same. The template never holds up the logs:
//! a user allowed to write to `lct-api-*` but not to manage templates is refused (401 or 403),
//! which is reported once and not asked again; any other failure is reported once and the
//! install is tried again before the next batch.

use super::clock::UtcTime;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The index template, installed as `_index_template/lct-api`.
pub const INDEX_TEMPLATE: &str = include_str!("../../deploy/elasticsearch/lct-api-index-template.json");
const TEMPLATE_NAME: &str = "lct-api";

/// How the shipper batches and retries.
#[derive(Debug, Clone)]
pub struct ShipperOptions {
    /// Base URL of Elasticsearch; credentials in it are sent as basic authentication, unless
    /// there is an API key.
    pub url: String,
    /// Sent as `Authorization: ApiKey ...` when set, instead of the URL's credentials.
    pub api_key: Option<String>,
    /// Environment name, part of the index name.
    pub environment: String,
    /// Documents held while Elasticsearch is slow or away; more are dropped.
    pub buffer: usize,
    /// Documents per `_bulk` request at most.
    pub batch_size: usize,
    /// How long a partial batch waits for more documents.
    pub flush_after: Duration,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// Attempts per batch before it is dropped.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled each time up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl ShipperOptions {
    pub fn new(url: &str, environment: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            api_key: None,
            environment: environment.to_owned(),
            buffer: 10_000,
            batch_size: 500,
            flush_after: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            max_attempts: 5,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }
}

/// What happened to the documents, for `lct_log_events_*` metrics.
#[derive(Debug, Default)]
pub struct ShipStats {
    pub shipped: AtomicU64,
    /// Offered while the buffer was full.
    pub dropped_buffer_full: AtomicU64,
    /// In a batch that still failed after every attempt.
    pub dropped_failed: AtomicU64,
    /// Refused by Elasticsearch (e.g. a mapping conflict).
    pub dropped_rejected: AtomicU64,
}

impl ShipStats {
    /// Dropped documents by reason.
    pub fn dropped(&self) -> Vec<(&'static str, u64)> {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("buffer_full", read(&self.dropped_buffer_full)),
            ("failed", read(&self.dropped_failed)),
            ("rejected", read(&self.dropped_rejected)),
        ]
    }
}

/// One log document, the month of its index and its sequence number, part of its `_id`.
#[derive(Debug, Clone)]
struct Document {
    year_month: String,
    seq: u64,
    json: String,
}

/// The log layer's end of the buffer.
#[derive(Debug, Clone)]
pub struct LogSink {
    buffer: mpsc::Sender<Document>,
    stats: Arc<ShipStats>,
    next_seq: Arc<AtomicU64>,
}

impl LogSink {
    /// Queues a document without waiting; a full buffer drops it.
    pub fn offer(&self, at: &UtcTime, json: String) {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let document = Document { year_month: at.year_month(), seq, json };
        if self.buffer.try_send(document).is_err() {
            self.stats.dropped_buffer_full.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The background task; [`Shipper::finish`] sends what is buffered and stops it.
pub struct Shipper {
    task: JoinHandle<()>,
    stop: CancellationToken,
}

/// Starts the shipper on the current Tokio runtime. Fails if the API key cannot be sent in a
/// header.
pub fn start(mut options: ShipperOptions, stats: Arc<ShipStats>) -> anyhow::Result<(LogSink, Shipper)> {
    let mut headers = HeaderMap::new();
    if let Some(key) = options.api_key.as_deref() {
        let mut value = HeaderValue::from_str(&format!("ApiKey {key}")).map_err(|_| {
            anyhow::anyhow!(
                "LCT_ELASTICSEARCH_API_KEY cannot be sent in an HTTP header: it holds a control character or a \
                 character beyond ASCII"
            )
        })?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
        // reqwest would send the URL's credentials as a second `Authorization`.
        options.url = without_credentials(&options.url);
    }
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(options.request_timeout)
        .connect_timeout(options.request_timeout.min(Duration::from_secs(3)))
        .build()?;
    let (buffer, documents) = mpsc::channel(options.buffer.max(1));
    let stop = CancellationToken::new();
    let index_prefix = format!("lct-api-{}", index_safe(&options.environment));
    // 62 random bits: two processes share a prefix once in billions of billions of pairs.
    let id_prefix = format!("{:016x}", uuid::Uuid::new_v4().as_u64_pair().1);
    let worker = Worker {
        client,
        options,
        index_prefix,
        id_prefix,
        stats: Arc::clone(&stats),
        template: Template::Pending,
        template_warned: false,
        failing: false,
    };
    let task = tokio::spawn(worker.run(documents, stop.clone()));
    Ok((LogSink { buffer, stats, next_seq: Arc::default() }, Shipper { task, stop }))
}

impl Shipper {
    /// Sends what is still buffered (one attempt per batch) and stops, within `grace`.
    pub async fn finish(self, grace: Duration) {
        self.stop.cancel();
        let abort = self.task.abort_handle();
        if tokio::time::timeout(grace, self.task).await.is_err() {
            abort.abort();
        }
    }
}

/// Whether `url` carries a user name or password.
pub fn has_credentials(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|url| !url.username().is_empty() || url.password().is_some())
}

/// `url` without its user name and password.
fn without_credentials(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if has_credentials(url) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.as_str().trim_end_matches('/').to_owned()
        }
        _ => url.to_owned(),
    }
}

/// An environment name as index names allow it: lowercase, no separators or wildcards.
pub fn index_safe(environment: &str) -> String {
    let cleaned: String = environment
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' })
        .collect();
    let cleaned = cleaned.trim_start_matches(['-', '_']);
    if cleaned.is_empty() {
        "default".to_owned()
    } else {
        cleaned.to_owned()
    }
}

/// The `_bulk` body of `documents`: a `create` action with the document's `_id` and the
/// document, each on its own line.
fn bulk_body(index_prefix: &str, id_prefix: &str, documents: &[Document]) -> String {
    let mut body = String::with_capacity(documents.iter().map(|d| d.json.len() + 96).sum());
    for document in documents {
        body.push_str(r#"{"create":{"_index":""#);
        body.push_str(index_prefix);
        body.push('-');
        body.push_str(&document.year_month);
        body.push_str(r#"","_id":""#);
        body.push_str(id_prefix);
        body.push('-');
        body.push_str(&document.seq.to_string());
        body.push_str("\"}}\n");
        body.push_str(&document.json);
        body.push('\n');
    }
    body
}

/// Where the index template stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Template {
    /// Not installed yet; tried before the next batch.
    Pending,
    Installed,
    /// Elasticsearch does not let this user install it; not asked again.
    Refused,
}

/// Why installing the template failed.
enum TemplateFailure {
    /// 401 or 403: the credentials may not manage index templates.
    Refused(reqwest::StatusCode),
    /// Anything else (unreachable, 5xx, ...): worth trying again.
    Failed(String),
}

/// Counts the outcome of each document of a bulk answer; returns those to retry.
fn settle(stats: &ShipStats, batch: &[Document], answer: &Value) -> Vec<Document> {
    if answer["errors"] != Value::Bool(true) {
        stats.shipped.fetch_add(batch.len() as u64, Ordering::Relaxed);
        return Vec::new();
    }
    let items = answer["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut retry = Vec::new();
    for (index, document) in batch.iter().enumerate() {
        let status = items.get(index).and_then(|item| item["create"]["status"].as_u64()).unwrap_or(0);
        match status {
            // 409: its `_id` is there already, from an attempt whose answer was lost.
            200..=299 | 409 => {
                stats.shipped.fetch_add(1, Ordering::Relaxed);
            }
            429 => retry.push(document.clone()),
            _ => {
                stats.dropped_rejected.fetch_add(1, Ordering::Relaxed);
                let reason = items.get(index).map(|item| item["create"]["error"]["type"].to_string());
                tracing::warn!(target: "lct::telemetry", status, reason, "Elasticsearch rejected a log document");
            }
        }
    }
    retry
}

struct Worker {
    client: reqwest::Client,
    options: ShipperOptions,
    index_prefix: String,
    /// The process's part of every `_id`.
    id_prefix: String,
    stats: Arc<ShipStats>,
    template: Template,
    /// Whether a failed template install was reported, to report it once.
    template_warned: bool,
    /// Whether the last attempt failed, to report outages and recoveries once.
    failing: bool,
}

impl Worker {
    async fn run(mut self, mut documents: mpsc::Receiver<Document>, stop: CancellationToken) {
        loop {
            let first = tokio::select! {
                document = documents.recv() => document,
                () = stop.cancelled() => None,
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            let deadline = Instant::now() + self.options.flush_after;
            while batch.len() < self.options.batch_size {
                tokio::select! {
                    document = documents.recv() => match document {
                        Some(document) => batch.push(document),
                        None => break,
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                    () = stop.cancelled() => break,
                }
            }
            self.deliver(batch, &stop).await;
        }
        // Stopping: one attempt for whatever is still buffered.
        documents.close();
        self.options.max_attempts = 1;
        let mut rest = Vec::new();
        while let Ok(document) = documents.try_recv() {
            rest.push(document);
        }
        while !rest.is_empty() {
            let batch: Vec<Document> = rest.drain(..rest.len().min(self.options.batch_size.max(1))).collect();
            self.deliver(batch, &stop).await;
        }
    }

    /// Sends `batch`, retrying with backoff; what cannot be delivered is counted as dropped.
    async fn deliver(&mut self, mut batch: Vec<Document>, stop: &CancellationToken) {
        self.ensure_template().await;
        let mut backoff = self.options.first_backoff;
        for attempt in 1..=self.options.max_attempts {
            match self.attempt(&batch).await {
                Ok(retry) => {
                    self.recovered();
                    if retry.is_empty() {
                        return;
                    }
                    batch = retry;
                }
                Err(reason) => self.failed(&reason),
            }
            if attempt < self.options.max_attempts {
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => {}
                }
                backoff = (backoff * 2).min(self.options.max_backoff);
            }
        }
        self.stats.dropped_failed.fetch_add(batch.len() as u64, Ordering::Relaxed);
    }

    /// One bulk request. Returns the documents to send again (those Elasticsearch turned away
    /// for now with 429), or why the whole attempt failed.
    async fn attempt(&mut self, batch: &[Document]) -> Result<Vec<Document>, String> {
        let body = bulk_body(&self.index_prefix, &self.id_prefix, batch);
        let url = format!("{}/_bulk", self.options.url);
        let request = self.client.post(url).header(CONTENT_TYPE, "application/x-ndjson").body(body);
        let response = request.send().await.map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("_bulk answered {status}"));
        }
        let answer: Value = response.json().await.map_err(|e| e.without_url().to_string())?;
        Ok(settle(&self.stats, batch, &answer))
    }

    /// Installs the index template unless it is there or refused. A failure is reported once
    /// and does not stop the batch: documents are shipped without the template rather than not
    /// at all.
    async fn ensure_template(&mut self) {
        if self.template != Template::Pending {
            return;
        }
        match self.install_template().await {
            Ok(()) => {
                self.template = Template::Installed;
                tracing::info!(target: "lct::telemetry", template = TEMPLATE_NAME, "Elasticsearch index template installed");
            }
            Err(TemplateFailure::Refused(status)) => {
                self.template = Template::Refused;
                self.template_warned = true;
                tracing::warn!(
                    target: "lct::telemetry",
                    template = TEMPLATE_NAME,
                    status = status.as_u16(),
                    "Elasticsearch does not let these credentials install the index template; logs are shipped \
                     without installing it (install it with deploy/kibana/import-saved-objects.sh)"
                );
            }
            Err(TemplateFailure::Failed(reason)) => {
                if !self.template_warned {
                    self.template_warned = true;
                    tracing::warn!(
                        target: "lct::telemetry",
                        template = TEMPLATE_NAME,
                        error = reason,
                        "installing the Elasticsearch index template failed; logs are shipped anyway and the \
                         install is tried again before the next batch"
                    );
                }
            }
        }
    }

    async fn install_template(&self) -> Result<(), TemplateFailure> {
        let url = format!("{}/_index_template/{TEMPLATE_NAME}", self.options.url);
        let request = self.client.put(url).header(CONTENT_TYPE, "application/json").body(INDEX_TEMPLATE);
        let response = request.send().await.map_err(|e| TemplateFailure::Failed(e.without_url().to_string()))?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status @ (reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN) => {
                Err(TemplateFailure::Refused(status))
            }
            status => Err(TemplateFailure::Failed(format!("installing the index template answered {status}"))),
        }
    }

    fn failed(&mut self, reason: &str) {
        if !self.failing {
            self.failing = true;
            tracing::warn!(
                target: "lct::telemetry",
                error = reason,
                "Elasticsearch does not take request logs; they are buffered, retried and dropped when the buffer is full"
            );
        }
    }

    fn recovered(&mut self) {
        if self.failing {
            self.failing = false;
            tracing::info!(target: "lct::telemetry", "Elasticsearch takes request logs again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bulk_body_creates_each_document_in_its_monthly_index() {
        let documents = vec![
            Document { year_month: "2025-01".into(), seq: 7, json: r#"{"a":1}"#.into() },
            Document { year_month: "2025-02".into(), seq: 8, json: r#"{"b":2}"#.into() },
        ];
        assert_eq!(
            bulk_body("lct-api-prod", "0123abcd", &documents),
            "{\"create\":{\"_index\":\"lct-api-prod-2025-01\",\"_id\":\"0123abcd-7\"}}\n{\"a\":1}\n\
             {\"create\":{\"_index\":\"lct-api-prod-2025-02\",\"_id\":\"0123abcd-8\"}}\n{\"b\":2}\n"
        );
    }

    #[test]
    fn credentials_are_taken_out_of_the_url_and_nothing_else() {
        assert!(has_credentials("https://lct:pw@es:9200"));
        assert!(has_credentials("https://lct@es:9200"));
        assert!(!has_credentials("https://es:9200"));
        assert_eq!(without_credentials("https://lct:p%40ss@es:9200/base"), "https://es:9200/base");
        assert_eq!(without_credentials("https://lct:pw@es:9200"), "https://es:9200");
        assert_eq!(without_credentials("https://es:9200/"), "https://es:9200/");
    }

    #[test]
    fn a_document_already_there_counts_as_shipped_and_a_refused_one_as_rejected() {
        let stats = ShipStats::default();
        let batch: Vec<Document> =
            (0..3).map(|seq| Document { year_month: "2025-01".into(), seq, json: "{}".into() }).collect();
        // A retry of a batch that was indexed though its answer was lost: 409 for what is there.
        let answer = serde_json::json!({"errors": true, "items": [
            {"create": {"status": 201}},
            {"create": {"status": 409, "error": {"type": "version_conflict_engine_exception"}}},
            {"create": {"status": 400, "error": {"type": "document_parsing_exception"}}},
        ]});
        assert!(settle(&stats, &batch, &answer).is_empty());
        assert_eq!(stats.shipped.load(Ordering::Relaxed), 2);
        assert_eq!(stats.dropped_rejected.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn environment_names_are_made_index_safe() {
        assert_eq!(index_safe("Production"), "production");
        assert_eq!(index_safe("eu west/1"), "eu-west-1");
        assert_eq!(index_safe("_x"), "x");
        assert_eq!(index_safe("  "), "default");
    }

    #[test]
    fn the_index_template_is_the_deployed_one_and_covers_the_log_fields() {
        let template: Value = serde_json::from_str(INDEX_TEMPLATE).unwrap();
        assert_eq!(template["index_patterns"], serde_json::json!(["lct-api-*"]));
        let properties = &template["template"]["mappings"]["properties"];
        for field in ["@timestamp", "RequestId", "StatusCode", "Elapsed", "event.duration", "error.stack_trace"] {
            assert!(properties.get(field).is_some(), "no mapping for {field}");
        }
    }

    #[tokio::test]
    async fn a_full_buffer_drops_and_counts_instead_of_waiting() {
        let stats = Arc::new(ShipStats::default());
        let (buffer, _documents) = mpsc::channel(2);
        let sink = LogSink { buffer, stats: Arc::clone(&stats), next_seq: Arc::default() };
        let now = UtcTime::now();
        for _ in 0..5 {
            sink.offer(&now, "{}".into());
        }
        assert_eq!(stats.dropped_buffer_full.load(Ordering::Relaxed), 3);
    }
}
