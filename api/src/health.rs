//! Liveness (the process answers) and readiness (the event store answers; a bus outage is
//! reported as degraded).

use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::time::Duration;

/// How long readiness waits for the event store.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[utoipa::path(get, path = "/liveness", tag = "Health", responses((status = 200, body = String, example = "Healthy")))]
pub async fn liveness() -> &'static str {
    "Healthy"
}

/// 200 when the event store answers, 503 otherwise; the body reports each dependency.
#[utoipa::path(get, path = "/readiness", tag = "Health", responses((status = 200), (status = 503)))]
pub async fn readiness(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let store = match tokio::time::timeout(CHECK_TIMEOUT, state.service.store().check()).await {
        Ok(Ok(())) => json!({"status": "Healthy"}),
        Ok(Err(error)) => json!({"status": "Unhealthy", "error": error.to_string()}),
        Err(_) => json!({"status": "Unhealthy", "error": "timed out"}),
    };
    let bus = if state.live.hub.bus().is_connected() {
        json!({"status": "Healthy"})
    } else {
        json!({"status": "Degraded", "error": "pub/sub disconnected; live delivery to other pods resumes on reconnect"})
    };
    let healthy = store["status"] == "Healthy";
    let status = match (healthy, bus["status"] == "Healthy") {
        (false, _) => "Unhealthy",
        (true, false) => "Degraded",
        (true, true) => "Healthy",
    };
    // Only the event store takes a pod out of service: a bus outage affects every pod alike.
    let code = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(json!({"status": status, "dependencies": {"eventStore": store, "bus": bus}})))
}
