//! The OpenAPI document, generated from the handlers and DTOs, and Swagger UI.

use crate::{error, health, qr, v1, v2};
use axum::Router;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
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
        v2::tournaments::create,
        v2::tournaments::get,
        v2::tournaments::rename,
        v2::tournaments::join,
        v2::tournaments::select,
        v2::tournaments::click,
        v2::tournaments::draw,
        v2::tournaments::teams,
        v2::tournaments::events,
        v2::tournaments::presence,
    ),
    components(schemas(error::ErrorBody, v2::problem::ProblemBody)),
    modifiers(&BearerTokens),
    tags((name = "Tournament", description = "v1, compatible with the original front end"), (name = "Team", description = "v1"),
         (name = "v2", description = "Tokens, idempotency keys, problem details"), (name = "Health"))
)]
pub struct ApiDoc;

/// The organiser and player tokens of v2, sent as `Authorization: Bearer`.
struct BearerTokens;

impl utoipa::Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("organiser", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        components.add_security_scheme("player", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// Swagger UI at `/swagger`, the document at `/swagger/v1/swagger.json`.
pub fn swagger<S: Clone + Send + Sync + 'static>() -> Router<S> {
    SwaggerUi::new("/swagger").url("/swagger/v1/swagger.json", ApiDoc::openapi()).into()
}
