//! The v2 API: resources under `/api/v2/tournaments`, tokens, idempotency keys, problem details.

pub mod fixtures;
pub mod idempotency;
pub mod problem;
pub mod tokens;
pub mod tournaments;

use crate::AppState;
use axum::routing::{get, post};
use axum::Router;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v2/tournaments", post(tournaments::create))
        .route("/api/v2/tournaments/{id}", get(tournaments::get))
        .route("/api/v2/tournaments/{id}/rename", post(tournaments::rename))
        .route("/api/v2/tournaments/{id}/players", post(tournaments::join))
        .route("/api/v2/tournaments/{id}/selection", post(tournaments::select))
        .route("/api/v2/tournaments/{id}/clicks", post(tournaments::click))
        .route("/api/v2/tournaments/{id}/draw", post(tournaments::draw))
        .route("/api/v2/tournaments/{id}/teams", get(tournaments::teams))
        .route("/api/v2/tournaments/{id}/events", get(tournaments::events))
        .route("/api/v2/tournaments/{id}/presence", get(tournaments::presence))
        .route("/api/v2/tournaments/{id}/live", get(crate::live::v2::live))
        .route("/api/v2/tournaments/{id}/qr", get(crate::qr::tournament_qr_v2))
        .route("/api/v2/tournaments/{id}/fixtures", get(fixtures::fixtures).post(fixtures::schedule))
        .route("/api/v2/tournaments/{id}/matches/{number}/result", post(fixtures::record))
        .route("/api/v2/tournaments/{id}/finish", post(fixtures::finish))
        .route("/api/v2/tournaments/{id}/standings", get(fixtures::table))
}
