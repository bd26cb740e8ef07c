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
        .route("/api/tournament/draw", get(tournament::draw).post(tournament::draw_by_post))
        .route("/api/tournament/qr", get(crate::qr::tournament_qr))
        .route("/api/team", get(team::list))
        .route("/api/team/select", post(team::select))
        .layer(axum::middleware::from_fn(crate::extract::require_api_version_1))
}

/// The optional `api-version` header every v1 operation reads.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct ApiVersionHeader {
    /// Absent, `1` or `1.0`; anything else is refused.
    #[param(rename = "api-version", value_type = Option<crate::openapi::schemas::ApiVersion>, nullable = false)]
    pub api_version: Option<String>,
}

/// Metadata for events appended by the current request, stamped by the state's clock.
pub(crate) fn metadata(state: &AppState) -> domain::ports::EventMetadata {
    domain::ports::EventMetadata {
        request_id: Some(crate::context::request_id()),
        recorded_at_ms: state.clock.now_ms(),
    }
}
