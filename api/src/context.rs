//! Per-request context: the request id (in the `x-request-id` header, every error body and
//! the request-log line), the tournament the request concerns, and the request-log line.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use std::cell::Cell;
use std::time::Instant;
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

/// Records which tournament the current request concerns, for its log line.
pub fn set_tournament(id: Uuid) {
    let _ = CONTEXT.try_with(|c| c.tournament.set(Some(id)));
}

/// Assigns the request id, runs the request inside its context and writes one log line.
pub async fn request_context(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = Uuid::new_v4();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());
    let context = RequestContext { id, tournament: Cell::new(None) };
    let (mut response, tournament) = CONTEXT
        .scope(context, async move {
            let response = next.run(request).await;
            (response, CONTEXT.with(|c| c.tournament.get()))
        })
        .await;
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert(REQUEST_ID_HEADER.clone(), value);
    }
    let status = response.status().as_u16();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let tournament = tournament.map(|t| t.to_string());
    macro_rules! request_log {
        ($level:ident) => {
            tracing::$level!(
                RequestId = %id,
                Elapsed = elapsed_ms,
                RequestPath = %route,
                StatusCode = status,
                Method = %method,
                TournamentId = tournament.as_deref(),
                "request finished"
            )
        };
    }
    match status {
        500.. => request_log!(error),
        400..=499 => request_log!(warn),
        _ => request_log!(info),
    }
    response
}
