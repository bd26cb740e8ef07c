//! Per-request context: the request id (in the `x-request-id` header, every error body and
//! the request-log line), the tournament the request concerns, the request's trace span, its
//! HTTP metrics and the request-log line.

use crate::metrics::{Metrics, UNMATCHED_ROUTE};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use std::cell::Cell;
use std::time::Instant;
use tracing::Instrument;
use uuid::Uuid;

pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Debug)]
struct RequestContext {
    id: Uuid,
    tournament: Cell<Option<Uuid>>,
}

tokio::task_local! {
    static CONTEXT: RequestContext;
}

/// The id of the request being handled (a fresh one outside a request).
pub fn request_id() -> Uuid {
    CONTEXT.try_with(|c| c.id).unwrap_or_else(|_| Uuid::new_v4())
}

/// `future` in the current request's context (its id and tournament) and trace span, for a task
/// of its own that may outlive the request: what it logs and stores still names the request.
pub fn detached<F: std::future::Future>(future: F) -> impl std::future::Future<Output = F::Output> {
    let (id, tournament) = CONTEXT.try_with(|c| (c.id, c.tournament.get())).unwrap_or_else(|_| (Uuid::new_v4(), None));
    CONTEXT.scope(RequestContext { id, tournament: Cell::new(tournament) }, future).instrument(tracing::Span::current())
}

/// Records which tournament the current request concerns, for its log line.
pub fn set_tournament(id: Uuid) {
    let _ = CONTEXT.try_with(|c| c.tournament.set(Some(id)));
}

/// Longest path written to a request's span and log line.
const MAX_LOGGED_PATH: usize = 512;

/// The request's method as metrics, spans and logs name it: one of HTTP's own, or `_OTHER` (as
/// OpenTelemetry names a method it does not know) for any a client makes up, so that clients
/// cannot add series or fill log lines at will.
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// `path` cut to [`MAX_LOGGED_PATH`] bytes at most (a client chooses a path no route matches).
fn clipped(path: &str) -> &str {
    if path.len() <= MAX_LOGGED_PATH {
        return path;
    }
    let end = (0..=MAX_LOGGED_PATH).rev().find(|&i| path.is_char_boundary(i)).unwrap_or(0);
    &path[..end]
}

/// Assigns the request id, runs the request inside its context and its trace span, counts it in
/// the metrics and writes one log line.
///
/// The log line keeps the PascalCase fields of the original dashboards (`RequestId`, `Elapsed`
/// in ms, `RequestPath` as the route template, `StatusCode`, `Method`, `TournamentId`) next to
/// their Elastic Common Schema names. It is written inside the request span, so it carries the
/// trace ids when tracing is on. 5xx log at error, 4xx at warn, the rest at info. A request whose
/// client went away before its answer (its connection closed, so the server dropped it) is
/// counted and logged too, with status 499 ("client closed request", as nginx logs it).
pub async fn request_context(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = Uuid::new_v4();
    let method = method_name(request.method());
    let matched = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let path = clipped(request.uri().path()).to_owned();
    // A transaction is named by its route, or by its method alone when no route matched (as
    // OpenTelemetry names them): a client choosing paths must not make a name per path.
    let transaction = matched.as_deref().map_or_else(|| method.to_owned(), |matched| format!("{method} {matched}"));
    let context = RequestContext { id, tournament: Cell::new(None) };
    // At error level, so that the span is on whatever level `LCT_LOG` lets through: it writes
    // nothing itself, and every line inside it carries its request and trace ids.
    let span = tracing::error_span!(
        "request",
        RequestId = %id,
        otel.name = %transaction,
        otel.kind = "server",
        http.request.method = %method,
        http.route = matched.as_deref(),
        url.path = %path,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let mut ending = Ending { metrics, id, method, matched, path, started, span: span.clone(), written: false };
    let (mut response, tournament) = CONTEXT
        .scope(context, async move {
            let response = next.run(request).await;
            (response, CONTEXT.with(|c| c.tournament.get()))
        })
        .instrument(span)
        .await;
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert(REQUEST_ID_HEADER.clone(), value);
    }
    ending.write(response.status().as_u16(), tournament);
    response
}

/// The status a request is counted and logged with when its client went away before the answer.
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// What the end of a request is counted and logged with; when dropped unwritten (the request
/// was dropped with its connection), it is written with [`CLIENT_CLOSED_REQUEST`].
struct Ending {
    metrics: Metrics,
    id: Uuid,
    method: &'static str,
    matched: Option<String>,
    path: String,
    started: Instant,
    span: tracing::Span,
    written: bool,
}

impl Ending {
    fn write(&mut self, status: u16, tournament: Option<Uuid>) {
        self.written = true;
        let Self { metrics, id, method, matched, path, started, span, .. } = &*self;
        // The route template, or the path when no route matched.
        let route = matched.as_deref().unwrap_or(path);
        let elapsed = started.elapsed();
        metrics.observe_request(matched.as_deref().unwrap_or(UNMATCHED_ROUTE), method, status, elapsed);
        span.record("http.response.status_code", status);
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
        let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
        let duration_ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let tournament = tournament.map(|t| t.to_string());
        let message =
            if status == CLIENT_CLOSED_REQUEST { "request abandoned by its client" } else { "request finished" };
        macro_rules! request_log {
            ($level:ident) => {
                tracing::$level!(
                    RequestId = %id,
                    Elapsed = elapsed_ms,
                    RequestPath = %route,
                    StatusCode = status,
                    Method = %method,
                    TournamentId = tournament.as_deref(),
                    http.request.method = %method,
                    http.response.status_code = status,
                    url.path = %path,
                    event.duration = duration_ns,
                    "{message}"
                )
            };
        }
        span.in_scope(|| match status {
            500.. => request_log!(error),
            400..=499 => request_log!(warn),
            _ => request_log!(info),
        });
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        if !self.written {
            self.write(CLIENT_CLOSED_REQUEST, None);
        }
    }
}
