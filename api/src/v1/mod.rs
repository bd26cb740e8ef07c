//! The v1 API of the original LetChooseTeams front end.

pub mod team;
pub mod tournament;

use crate::AppState;
use axum::routing::{get, post};
use axum::Router;

/// v1 routes, in lowercase (requests are lowered before routing).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/tournament/create", post(tournament::create))
        .route("/api/tournament", get(tournament::get))
        .route("/api/tournament/assignplayer", post(tournament::assign_player))
        .route("/api/tournament/draw", get(tournament::draw).post(tournament::draw))
        .route("/api/tournament/qr", get(crate::qr::tournament_qr))
        .route("/api/team", get(team::list))
        .route("/api/team/select", post(team::select))
        .layer(axum::middleware::from_fn(crate::extract::require_api_version_1))
}

/// Milliseconds since the Unix epoch, for event metadata.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// Metadata for events appended by the current request.
pub(crate) fn metadata() -> domain::ports::EventMetadata {
    domain::ports::EventMetadata { request_id: Some(crate::context::request_id()), recorded_at_ms: now_ms() }
}
