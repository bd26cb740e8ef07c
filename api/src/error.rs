//! The one error type of the HTTP surface and its response: a status and
//! `{"RequestId": "<uuid>", "ErrorMessage": "<sentence>"}`.

use crate::context;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::names::NameError;
use domain::ports::StoreError;
use domain::service::AppError;
use domain::{DomainError, FixtureError, FixtureInputError, UnknownTeam};
use live::ClickError;
use serde::Serialize;

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds after which the client may retry, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

/// The error body of the v1 API.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    #[serde(rename = "RequestId")]
    pub request_id: uuid::Uuid,
    #[serde(rename = "ErrorMessage")]
    pub error_message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), retry_after: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { request_id: context::request_id(), error_message: self.message };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
        }
        response
    }
}

impl From<AppError> for ApiError {
    fn from(error: AppError) -> Self {
        match error {
            AppError::Rule(DomainError::TournamentNotFound) => {
                ApiError::new(StatusCode::NOT_FOUND, "The tournament does not exist.")
            }
            AppError::Rule(rule @ DomainError::Fixtures(FixtureError::MatchNotFound)) => {
                ApiError::new(StatusCode::NOT_FOUND, sentence(&rule.to_string()))
            }
            AppError::Rule(
                rule @ DomainError::Fixtures(FixtureError::PlayersMayNotRecord | FixtureError::NotAPlayerOfTheMatch),
            ) => ApiError::new(StatusCode::FORBIDDEN, sentence(&rule.to_string())),
            AppError::Rule(rule) => ApiError::new(StatusCode::CONFLICT, sentence(&rule.to_string())),
            AppError::Store(fault @ StoreError::Unavailable(_)) => {
                tracing::error!(error = &fault as &dyn std::error::Error, "event store unavailable");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "A dependency is unavailable; try again shortly.")
            }
            AppError::Store(fault) => {
                tracing::error!(error = &fault as &dyn std::error::Error, "internal error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "An internal error occurred.")
            }
        }
    }
}

impl From<ClickError> for ApiError {
    fn from(error: ClickError) -> Self {
        match error {
            ClickError::Refused(rule) => AppError::Rule(rule).into(),
            ClickError::Store(fault) => AppError::Store(fault).into(),
            ClickError::Unavailable(fault) => {
                tracing::error!(error = &fault as &dyn std::error::Error, "shared state unavailable");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "A dependency is unavailable; try again shortly.")
            }
            ClickError::Overloaded(_) => ApiError {
                retry_after: Some(CLICK_RETRY_AFTER),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The server is busy: the click was not recorded; try again shortly.",
                )
            },
        }
    }
}

/// Seconds a client waits before clicking again after a click was refused as overloaded.
pub const CLICK_RETRY_AFTER: u64 = 1;

impl From<NameError> for ApiError {
    fn from(error: NameError) -> Self {
        ApiError::bad_request(sentence(&error.to_string()))
    }
}

impl From<crate::v2::tokens::KeyPending> for ApiError {
    fn from(_: crate::v2::tokens::KeyPending) -> Self {
        tracing::warn!("a token was needed before the pods agreed on the token key");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "A dependency is unavailable; try again shortly.")
    }
}

impl From<FixtureInputError> for ApiError {
    fn from(error: FixtureInputError) -> Self {
        ApiError::bad_request(sentence(&error.to_string()))
    }
}

impl From<UnknownTeam> for ApiError {
    fn from(error: UnknownTeam) -> Self {
        ApiError::bad_request(sentence(&error.to_string()))
    }
}

/// Capitalises and ends with a full stop.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars.next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
    out.push_str(chars.as_str());
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// The router's own refusals: problem details under `/api/v2/`, the v1 body elsewhere.
fn refusal(uri: &Uri, error: ApiError) -> Response {
    if uri.path().starts_with("/api/v2/") {
        crate::v2::problem::Problem::from(error).into_response()
    } else {
        error.into_response()
    }
}

/// 404 for a path nothing answers.
pub fn no_such_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "No such route.")
}

pub async fn not_found(uri: Uri) -> Response {
    refusal(&uri, no_such_route())
}

/// Answers 408, with the error body of the request's API, when a request's answer has not
/// started within `limit` (its body still arriving, or its handler still running).
pub async fn time_limit(
    axum::extract::State(limit): axum::extract::State<std::time::Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let uri = request.uri().clone();
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => refusal(&uri, ApiError::new(StatusCode::REQUEST_TIMEOUT, "The request did not complete in time.")),
    }
}

/// Keeps the operators' endpoints (metrics, the pods of the cluster) to requests that reach the
/// pod directly: behind trusted proxies, one that came through them is answered 404, as if the
/// route did not exist.
pub async fn operators_only(
    axum::extract::State(source): axum::extract::State<crate::client_ip::ClientIpSource>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if source.proxied(request.headers()) {
        return refusal(request.uri(), no_such_route());
    }
    next.run(request).await
}

pub async fn method_not_allowed(uri: Uri) -> Response {
    refusal(&uri, ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "This method is not allowed on this route."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use live::ports::LiveError;

    #[test]
    fn a_refused_click_is_a_conflict_with_the_rule_and_an_outage_an_opaque_503() {
        let refused = ApiError::from(ClickError::Refused(DomainError::PlayerNotInTournament));
        assert_eq!(
            (refused.status, refused.message.as_str()),
            (StatusCode::CONFLICT, "The player has not joined the tournament.")
        );
        let missing = ApiError::from(ClickError::Refused(DomainError::TournamentNotFound));
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        let outage = ApiError::from(ClickError::Unavailable(LiveError("Redis at 10.0.0.7:6379: EVAL failed".into())));
        assert_eq!(outage.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!outage.message.contains("Redis") && !outage.message.contains("10.0.0.7"), "{}", outage.message);
        let store = ApiError::from(ClickError::Store(StoreError::Unavailable("mongo down".into())));
        assert_eq!(store.status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn a_click_refused_as_overloaded_is_a_503_with_retry_after_saying_it_was_not_recorded() {
        let busy = ApiError::from(ClickError::Overloaded(live::Overload::InFlight));
        assert_eq!((busy.status, busy.retry_after), (StatusCode::SERVICE_UNAVAILABLE, Some(1)));
        assert!(busy.message.contains("not recorded"), "{}", busy.message);
        let response = busy.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "1");
    }
}
