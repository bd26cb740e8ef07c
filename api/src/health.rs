//! Liveness (the process answers) and readiness (the event store answers; a bus outage is
//! reported as degraded).

use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

/// How long readiness waits for the event store.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// 200 while the process answers.
#[utoipa::path(get, path = "/liveness", tag = "Health", operation_id = "liveness",
    responses((status = 200, description = "Always `Healthy`", body = String, content_type = "text/plain", example = "Healthy")))]
pub async fn liveness() -> &'static str {
    "Healthy"
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum Status {
    Healthy,
    Degraded,
    Unhealthy,
}

/// The state of one dependency.
#[derive(Debug, Serialize, ToSchema)]
pub struct DependencyHealth {
    pub status: Status,
    /// Why it is not healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dependencies {
    pub event_store: DependencyHealth,
    pub bus: DependencyHealth,
}

/// The body of `GET /readiness`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub status: Status,
    pub dependencies: Dependencies,
    /// Present, and true, once the pod has been told to stop: it takes no new clients.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
}

/// 200 when the event store answers and the pod is not draining, 503 otherwise; the body
/// reports each dependency.
#[utoipa::path(get, path = "/readiness", tag = "Health", operation_id = "readiness",
    responses(
        (status = 200, description = "The event store answers; `Degraded` while the bus (Redis) is unreachable", body = Readiness),
        (status = 503, description = "The event store does not answer, or the pod is draining", body = Readiness)))]
pub async fn readiness(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let unhealthy = |error: String| DependencyHealth { status: Status::Unhealthy, error: Some(error) };
    let store = match tokio::time::timeout(CHECK_TIMEOUT, state.service.store().check()).await {
        Ok(Ok(())) => DependencyHealth { status: Status::Healthy, error: None },
        Ok(Err(error)) => unhealthy(error.to_string()),
        Err(_) => unhealthy("timed out".to_owned()),
    };
    let bus = if state.live.hub.bus().is_connected() {
        DependencyHealth { status: Status::Healthy, error: None }
    } else {
        DependencyHealth {
            status: Status::Degraded,
            error: Some("pub/sub disconnected; live delivery to other pods resumes on reconnect".to_owned()),
        }
    };
    let healthy = store.status == Status::Healthy;
    let status = match (healthy, bus.status == Status::Healthy) {
        (false, _) => Status::Unhealthy,
        (true, false) => Status::Degraded,
        (true, true) => Status::Healthy,
    };
    // Only the event store, or the drain, takes a pod out of service: a bus outage affects
    // every pod alike.
    let draining = state.live.hub.is_draining();
    let code = if healthy && !draining { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(Readiness { status, dependencies: Dependencies { event_store: store, bus }, draining }))
}
