//! The OpenAPI document, generated from the handlers and DTOs, and Swagger UI.

use crate::{error, health, qr, v1};
use axum::Router;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(title = "lct", description = "Tournament lobby: players join, pick teams, the organiser draws."),
    paths(
        v1::tournament::create,
        v1::tournament::get,
        v1::tournament::assign_player,
        v1::tournament::draw,
        qr::tournament_qr,
        v1::team::list,
        v1::team::select,
        health::liveness,
        health::readiness,
    ),
    components(schemas(error::ErrorBody)),
    tags((name = "Tournament"), (name = "Team"), (name = "Health"))
)]
pub struct ApiDoc;

/// Swagger UI at `/swagger`, the document at `/swagger/v1/swagger.json`.
pub fn swagger<S: Clone + Send + Sync + 'static>() -> Router<S> {
    SwaggerUi::new("/swagger").url("/swagger/v1/swagger.json", ApiDoc::openapi()).into()
}
