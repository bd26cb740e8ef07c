//! `Idempotency-Key` on v2 POSTs: the first request with a key runs and its response is kept
//! for a day; a retry with the same key gets that response and changes nothing. A key reused
//! with another body is refused (422); a retry while the first is still running gets 409.

use super::problem::Problem;
use crate::AppState;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use live::ports::IdempotencyClaim;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::time::Duration;

/// How long a finished request's response is kept for retries.
const KEEP: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest accepted key.
const MAX_KEY_CHARS: usize = 200;

/// The `Idempotency-Key` header's schema: 1 to 200 visible ASCII characters, spaces and tabs
/// allowed between them (HTTP drops blanks around a header value).
pub struct IdempotencyKey;

impl utoipa::PartialSchema for IdempotencyKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let visible = "[\\u0021-\\u007E]";
        let inner = "[\\u0009\\u0020-\\u007E]";
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_KEY_CHARS))
            .pattern(Some(format!("^{visible}(?:{inner}{{0,{}}}{visible})?$", MAX_KEY_CHARS - 2)))
            .into()
    }
}

impl utoipa::ToSchema for IdempotencyKey {}

#[derive(Serialize, Deserialize)]
struct Stored {
    fingerprint: String,
    status: u16,
    body: Value,
}

/// A v2 answer: a status and a JSON body (`Value::Null` for none).
pub type Answer = (StatusCode, Value);

fn into_response((status, body): Answer) -> Response {
    if body.is_null() {
        status.into_response()
    } else {
        (status, axum::Json(body)).into_response()
    }
}

fn unavailable(error: live::ports::LiveError) -> Problem {
    tracing::error!(cause = %error, "idempotency store unavailable");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "dependency-unavailable",
        "A dependency is unavailable; try again shortly.",
    )
}

/// Runs `run` at most once per `Idempotency-Key` of this route (each call when there is no
/// key). `fingerprint` identifies the request body.
pub async fn once<F, Fut>(
    state: &AppState,
    headers: &HeaderMap,
    route: &str,
    fingerprint: &[u8],
    run: F,
) -> Result<Response, Problem>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Answer, Problem>>,
{
    let Some(key) = headers.get("idempotency-key") else {
        return run().await.map(into_response);
    };
    let key = key.to_str().ok().map(str::trim).filter(|k| !k.is_empty() && k.chars().count() <= MAX_KEY_CHARS);
    let Some(key) = key else {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Idempotency-Key must be 1 to 200 visible characters.",
        ));
    };
    let scoped = format!("{route}|{key}");
    let fingerprint: String = Sha256::digest(fingerprint).iter().map(|b| format!("{b:02x}")).collect();
    let store = &state.idempotency;
    match store.claim(&scoped, KEEP).await.map_err(unavailable)? {
        IdempotencyClaim::Claimed => match run().await {
            Ok((status, body)) => {
                let stored = Stored { fingerprint, status: status.as_u16(), body: body.clone() };
                let text = serde_json::to_string(&stored).unwrap_or_default();
                if let Err(error) = store.complete(&scoped, &text, KEEP).await {
                    tracing::warn!(cause = %error, "could not keep an idempotent response");
                }
                Ok(into_response((status, body)))
            }
            Err(problem) => {
                let _ = store.release(&scoped).await;
                Err(problem)
            }
        },
        IdempotencyClaim::Pending => Err(Problem::new(
            StatusCode::CONFLICT,
            "request-in-progress",
            "A request with this Idempotency-Key is still running.",
        )),
        IdempotencyClaim::Done(text) => {
            let stored: Stored = serde_json::from_str(&text).map_err(|_| {
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal-error", "An internal error occurred.")
            })?;
            if stored.fingerprint != fingerprint {
                return Err(Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency-key-reused",
                    "This Idempotency-Key was used with a different request.",
                ));
            }
            let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
            let mut response = into_response((status, stored.body));
            response.headers_mut().insert("idempotent-replayed", axum::http::HeaderValue::from_static("true"));
            Ok(response)
        }
    }
}
