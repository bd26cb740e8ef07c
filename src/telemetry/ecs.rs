//! The log format: one JSON object per line with Elastic Common Schema field names
//! (`@timestamp`, `log.level`, `message`, `service.*`, `trace.id`, `error.*`, ...) next to the
//! event's own fields, written to stdout and handed to the Elasticsearch shipper.
//!
//! Event fields keep their names (the request log's PascalCase fields, `addr` of the
//! "listening" line). Fields of the enclosing spans are added where the event has no field of
//! that name, so a fault logged inside a request carries its `RequestId`. A field named `error`
//! becomes `error.message`, and a `dyn Error` value also `error.stack_trace` with its cause chain,
//! so that no document holds both `error` as a value and `error.*` as an object, which
//! Elasticsearch would reject. Any other name that is a value while other names continue it
//! with a dot (a field `log` beside `log.level`, `url` beside a request's `url.path`) is renamed
//! the same way: the event's value moves into the object as `log.value`, and an event's field
//! inside one of the layer's own values (`log.level.x`) becomes `log.level_x`.

use super::clock::UtcTime;
use super::elasticsearch::LogSink;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::fmt;
use std::io::Write;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Record};
use tracing::{Event, Id, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The ECS version the field names follow.
const ECS_VERSION: &str = "8.11.0";
/// Target of the request-log line (see `api::context`).
const REQUEST_LOG_TARGET: &str = "api::context";
/// Target of the telemetry's own reports, never shipped (a failing shipper must not feed itself).
const OWN_TARGET: &str = "lct::telemetry";
/// The fields the layer writes itself; they keep their names.
const OWN_FIELDS: [&str; 12] = [
    "@timestamp",
    "log.level",
    "log.logger",
    "message",
    "service.name",
    "service.version",
    "service.environment",
    "service.node.name",
    "ecs.version",
    "trace.id",
    "transaction.id",
    "span.id",
];

/// Who writes the logs: constant fields of every line.
#[derive(Debug, Clone)]
pub struct Service {
    pub environment: String,
    /// The pod (or host) name.
    pub node: String,
}

/// The layer that formats every event; see the module documentation.
pub struct EcsLayer<W> {
    writer: W,
    service: Service,
    sink: Option<LogSink>,
}

impl<W> EcsLayer<W> {
    pub fn new(writer: W, service: Service, sink: Option<LogSink>) -> Self {
        Self { writer, service, sink }
    }
}

/// Whether an event goes to Elasticsearch: request logs, and warnings and errors (faults with
/// their cause chain), except the telemetry's own.
pub fn is_shipped(target: &str, level: Level) -> bool {
    !target.starts_with(OWN_TARGET) && (target == REQUEST_LOG_TARGET || level <= Level::WARN)
}

/// Fields recorded on a span, kept in its extensions.
#[derive(Debug, Default)]
struct SpanFields(Map<String, Value>);

/// Collects fields as JSON values, applying the `error` renaming.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl JsonVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = match field.name() {
            "error" => "error.message",
            name => name,
        };
        self.0.insert(name.to_owned(), value);
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut chain = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            chain.push_str("\ncaused by: ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        if field.name() == "error" {
            self.0.insert("error.stack_trace".to_owned(), chain.into());
        }
        self.put(field, value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

impl<S, W> Layer<S> for EcsLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields::default();
        attrs.record(&mut JsonVisitor(&mut fields.0));
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(fields) = extensions.get_mut::<SpanFields>() {
            values.record(&mut JsonVisitor(&mut fields.0));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let now = UtcTime::now();
        let document = self.document(event, &ctx, &now);
        let Ok(mut line) = serde_json::to_string(&document) else { return };
        if let Some(sink) =
            self.sink.as_ref().filter(|_| is_shipped(event.metadata().target(), *event.metadata().level()))
        {
            sink.offer(&now, line.clone());
        }
        line.push('\n');
        let _ = self.writer.make_writer().write_all(line.as_bytes());
    }
}

impl<W> EcsLayer<W> {
    fn document<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>, now: &UtcTime) -> Map<String, Value>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let meta = event.metadata();
        let mut document = Map::new();
        // Written first so they lead the line, and again last so no field can replace them.
        let timestamp = Value::from(now.rfc3339());
        let level = Value::from(meta.level().as_str().to_ascii_lowercase());
        document.insert("@timestamp".into(), timestamp.clone());
        document.insert("log.level".into(), level.clone());
        document.insert("message".into(), Value::Null);
        document.insert("service.name".into(), "lct".into());
        document.insert("service.version".into(), env!("CARGO_PKG_VERSION").into());
        document.insert("service.environment".into(), self.service.environment.as_str().into());
        document.insert("service.node.name".into(), self.service.node.as_str().into());
        document.insert("ecs.version".into(), ECS_VERSION.into());
        if let Some(scope) = ctx.event_scope(event) {
            let mut trace = TraceIds::default();
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<SpanFields>() {
                    for (name, value) in &fields.0 {
                        if !name.starts_with("otel.") {
                            document.insert(name.clone(), value.clone());
                        }
                    }
                }
                trace.visit(extensions.get::<tracing_opentelemetry::OtelData>());
            }
            trace.write(&mut document);
        }
        event.record(&mut JsonVisitor(&mut document));
        if document["message"].is_null() {
            document.remove("message");
        }
        document.insert("@timestamp".into(), timestamp);
        document.insert("log.level".into(), level);
        document.insert("log.logger".into(), meta.target().into());
        untangle(&mut document);
        document
    }
}

/// Renames fields until no name is both a value and an object (`log` beside `log.level`): an
/// event's value moves to `{name}.value`; an event's fields inside one of [`OWN_FIELDS`] are
/// joined to it with `_` instead of `.`.
fn untangle(document: &mut Map<String, Value>) {
    // Each round settles one name and tangles none, so this many rounds always suffice.
    for _ in 0..document.len() {
        let Some(tangled) = first_tangled(document) else { return };
        let moves: Vec<(String, String)> = if OWN_FIELDS.contains(&tangled.as_str()) {
            let inside = format!("{tangled}.");
            document
                .keys()
                .filter_map(|name| Some((name.clone(), format!("{tangled}_{}", name.strip_prefix(&inside)?))))
                .collect()
        } else {
            vec![(tangled.clone(), format!("{tangled}.value"))]
        };
        for (from, mut to) in moves {
            let value = document.shift_remove(&from).unwrap_or_default();
            while !is_free(document, &to) {
                to.push('_');
            }
            document.insert(to, value);
        }
    }
}

/// The first name that holds a value while another name continues it with a dot.
fn first_tangled(document: &Map<String, Value>) -> Option<String> {
    let objects: HashSet<&str> =
        document.keys().flat_map(|name| name.match_indices('.').map(move |(at, _)| &name[..at])).collect();
    document.keys().find(|name| objects.contains(name.as_str())).cloned()
}

/// Whether `name` can be added without tangling: not taken, no name continues it, and it
/// continues no name.
fn is_free(document: &Map<String, Value>, name: &str) -> bool {
    let continues =
        |longer: &str, shorter: &str| longer.strip_prefix(shorter).is_some_and(|rest| rest.starts_with('.'));
    document.keys().all(|other| other != name && !continues(other, name) && !continues(name, other))
}

/// The APM ids of an event inside traced spans: `trace.id`, `transaction.id` (the outermost
/// span, which APM shows as the transaction) and `span.id` (the innermost).
#[derive(Default)]
struct TraceIds {
    trace: Option<String>,
    transaction: Option<String>,
    span: Option<String>,
}

impl TraceIds {
    fn visit(&mut self, data: Option<&tracing_opentelemetry::OtelData>) {
        let Some(data) = data else { return };
        if let (Some(trace), Some(span)) = (data.trace_id(), data.span_id()) {
            if trace == opentelemetry::TraceId::INVALID {
                return;
            }
            self.trace.get_or_insert_with(|| trace.to_string());
            self.transaction.get_or_insert_with(|| span.to_string());
            self.span = Some(span.to_string());
        }
    }

    fn write(self, document: &mut Map<String, Value>) {
        for (name, value) in [("trace.id", self.trace), ("transaction.id", self.transaction), ("span.id", self.span)] {
            if let Some(value) = value {
                document.insert(name.into(), value.into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    /// Collects written lines.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    fn capture(emit: impl FnOnce()) -> Vec<Value> {
        let lines = Lines::default();
        let service = Service { environment: "test".into(), node: "pod-7".into() };
        let subscriber = tracing_subscriber::registry().with(EcsLayer::new(lines.clone(), service, None));
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = lines.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[derive(Debug)]
    struct Failure(&'static str, Option<Box<Failure>>);

    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Failure {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn every_line_has_the_ecs_fields_and_keeps_its_own() {
        let lines = capture(|| tracing::info!(addr = "127.0.0.1:1", Elapsed = 1.5, StatusCode = 200u16, "listening"));
        let line = &lines[0];
        assert_eq!(line["message"], "listening");
        assert_eq!(line["addr"], "127.0.0.1:1");
        assert_eq!(line["Elapsed"], 1.5);
        assert_eq!(line["StatusCode"], 200);
        assert_eq!(line["log.level"], "info");
        assert_eq!(line["service.name"], "lct");
        assert_eq!(line["service.environment"], "test");
        assert_eq!(line["service.node.name"], "pod-7");
        assert_eq!(line["ecs.version"], ECS_VERSION);
        let timestamp = line["@timestamp"].as_str().unwrap();
        assert_eq!(timestamp.len(), "2025-01-01T00:00:00.000Z".len(), "{timestamp}");
        assert!(timestamp.ends_with('Z'));
        assert!(line.get("trace.id").is_none(), "no trace ids without tracing");
    }

    #[test]
    fn faults_carry_their_cause_chain_and_the_fields_of_their_span() {
        let error = Failure("append failed", Some(Box::new(Failure("connection reset", None))));
        let lines = capture(|| {
            let span = tracing::info_span!("request", RequestId = "r-1", otel.kind = "server");
            span.in_scope(|| tracing::error!(error = &error as &dyn std::error::Error, "internal error"));
        });
        let line = &lines[0];
        assert_eq!(line["log.level"], "error");
        assert_eq!(line["RequestId"], "r-1");
        assert_eq!(line["error.message"], "append failed");
        assert_eq!(line["error.stack_trace"], "append failed\ncaused by: connection reset");
        assert!(line.get("error").is_none());
        assert!(line.get("otel.kind").is_none());
    }

    #[test]
    fn a_plain_error_field_becomes_error_message() {
        let lines = capture(|| tracing::warn!(error = %"timed out", "retrying"));
        assert_eq!(lines[0]["error.message"], "timed out");
        assert_eq!(lines[0]["log.level"], "warn");
        assert!(lines[0].get("error").is_none());
    }

    /// Names that are a value while other names continue them with a dot (`log` beside
    /// `log.level`): Elasticsearch refuses such a document.
    fn tangles(line: &Value) -> Vec<String> {
        let keys: Vec<&String> = line.as_object().unwrap().keys().collect();
        let tangled = |k: &&&String| keys.iter().any(|other| other.starts_with(&format!("{k}.")));
        keys.iter().filter(tangled).map(|k| k.to_string()).collect()
    }

    #[test]
    fn a_field_named_like_an_ecs_object_is_renamed_rather_than_tangled_with_it() {
        let lines = capture(|| {
            tracing::warn!(log = "x", "m");
            let span = tracing::info_span!("request", RequestId = "r-1", url.path = "/a", http.route = "/r");
            span.in_scope(|| tracing::warn!(url = "u", service = 7, http = true, "inside a request"));
            tracing::warn!(log.level.detail = "d", message.text = "t", "below the layer's own fields");
        });
        for line in &lines {
            assert_eq!(tangles(line), Vec::<String>::new(), "{line}");
        }
        assert_eq!(lines[0]["log.value"], "x");
        assert_eq!(lines[0]["log.level"], "warn");
        assert_eq!(lines[0]["message"], "m");
        assert_eq!(lines[1]["url.value"], "u");
        assert_eq!(lines[1]["url.path"], "/a");
        assert_eq!(lines[1]["service.value"], 7);
        assert_eq!(lines[1]["service.name"], "lct");
        assert_eq!(lines[1]["http.value"], true);
        assert_eq!(lines[1]["http.route"], "/r");
        assert_eq!(lines[1]["RequestId"], "r-1");
        assert_eq!(lines[2]["log.level"], "warn", "the layer's own fields keep their names");
        assert_eq!(lines[2]["log.level_detail"], "d");
        assert_eq!(lines[2]["message"], "below the layer's own fields");
        assert_eq!(lines[2]["message_text"], "t");
    }

    #[test]
    fn request_logs_and_problems_are_shipped_but_not_chatter_nor_the_shippers_own_reports() {
        assert!(is_shipped("api::context", Level::INFO));
        assert!(is_shipped("api::error", Level::ERROR));
        assert!(is_shipped("infrastructure::live::redis", Level::WARN));
        assert!(!is_shipped("lct", Level::INFO));
        assert!(!is_shipped("lct::telemetry::elasticsearch", Level::WARN));
    }
}
