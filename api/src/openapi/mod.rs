//! The OpenAPI document, generated from the handlers and DTOs, and Swagger UI.
//!
//! The document is held to the server by schemathesis (`scripts/schemathesis.sh`): every
//! operation, every check, links followed. It covers the REST API; the live WebSocket protocols
//! (`/hubs/actions`, `/api/v2/tournaments/{id}/live`), the web client's pages and `/cluster`
//! are described in the README instead.

pub mod links;
pub mod responses;
pub mod schemas;

use crate::{error, health, metrics, qr, v1, v2};
use axum::Router;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

#[derive(OpenApi)]
#[openapi(
    info(title = "lct", description = "Tournament lobby: players join, pick teams, the organiser draws; then the night's matches, results and table.\n\n\
        Paths of v1 match case-insensitively, and so do the property names of request bodies and \
        query parameters of v1 and v2. The live WebSocket protocols (`/hubs/actions`, SignalR JSON \
        hub protocol; `/api/v2/tournaments/{id}/live`) are described in the README."),
    paths(
        v1::tournament::create,
        v1::tournament::get,
        v1::tournament::assign_player,
        v1::tournament::draw,
        v1::tournament::draw_by_post,
        qr::tournament_qr,
        v1::team::list,
        v1::team::select,
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
        qr::tournament_qr_v2,
        v2::fixtures::schedule,
        v2::fixtures::fixtures,
        v2::fixtures::record,
        v2::fixtures::finish,
        v2::fixtures::table,
        health::liveness,
        health::readiness,
        metrics::metrics,
    ),
    components(
        // Parameter schemas are not collected from the operations; the rest is.
        schemas(
            error::ErrorBody,
            v2::problem::ProblemBody,
            schemas::ApiVersion,
            qr::QrFormat,
            schemas::StreamVersion,
            v2::idempotency::IdempotencyKey,
            v2::idempotency::UnguessableIdempotencyKey,
        ),
        responses(
            responses::v1::BadRequest,
            responses::v1::Forbidden,
            responses::v1::NotFound,
            responses::v1::RequestTimeout,
            responses::v1::Conflict,
            responses::v1::PayloadTooLarge,
            responses::v1::TooManyRequests,
            responses::v1::Unavailable,
            responses::v2::BadRequest,
            responses::v2::Unauthorized,
            responses::v2::Forbidden,
            responses::v2::NotFound,
            responses::v2::RequestTimeout,
            responses::v2::Conflict,
            responses::v2::PayloadTooLarge,
            responses::v2::KeyReused,
            responses::v2::TooManyRequests,
            responses::v2::Unavailable,
        ),
    ),
    modifiers(&BearerTokens),
    tags((name = "Tournament", description = "v1, compatible with the original front end"), (name = "Team", description = "v1"),
         (name = "v2", description = "Tokens, idempotency keys, problem details"), (name = "Health"), (name = "Operations"))
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

/// The document served at `/swagger/v1/swagger.json`: the generated one with its links.
pub fn document() -> serde_json::Value {
    let mut document = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
    links::add(&mut document);
    document
}

/// Swagger UI at `/swagger`, the document at `/swagger/v1/swagger.json`.
pub fn swagger<S: Clone + Send + Sync + 'static>() -> Router<S> {
    SwaggerUi::new("/swagger").external_url_unchecked("/swagger/v1/swagger.json", document()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Every operation of the document with its path and method.
    fn operations(document: &Value) -> Vec<(String, String, &Value)> {
        let mut all = Vec::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                all.push((path.clone(), method.clone(), operation));
            }
        }
        all
    }

    /// A response, following a `$ref` to the shared responses.
    fn resolve<'a>(document: &'a Value, response: &'a Value) -> &'a Value {
        match response["$ref"].as_str() {
            Some(reference) => document.pointer(reference.trim_start_matches('#')).unwrap(),
            None => response,
        }
    }

    #[test]
    fn every_operation_has_its_own_operation_id() {
        let document = document();
        let mut ids: Vec<&str> = operations(&document)
            .iter()
            .map(|(path, method, op)| op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}")))
            .collect();
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count, "duplicate operationIds among {ids:?}");
    }

    #[test]
    fn v2_errors_are_problem_details_and_v1_errors_json() {
        let document = document();
        for (path, method, operation) in operations(&document) {
            for (status, response) in operation["responses"].as_object().unwrap() {
                if !status.starts_with('4') && !status.starts_with('5') {
                    continue;
                }
                let response = resolve(&document, response);
                let media: Vec<&String> = response["content"].as_object().unwrap().keys().collect();
                let expected =
                    if path.starts_with("/api/v2/") { "application/problem+json" } else { "application/json" };
                assert_eq!(media, [expected], "{method} {path} {status}");
            }
        }
    }

    #[test]
    fn request_properties_are_named_as_clients_send_them() {
        let document = document();
        let schemas = &document["components"]["schemas"];
        for (schema, names) in [
            ("CreateTournamentRequest", &["name", "playerLimit"][..]),
            ("AssignPlayerRequest", &["name", "surname", "tournamentId"]),
            ("SelectTeamRequest", &["playerName", "playerSurname", "team", "tournamentId"]),
            ("CreateBody", &["name", "playerLimit"]),
        ] {
            let properties: Vec<&String> = schemas[schema]["properties"].as_object().unwrap().keys().collect();
            assert_eq!(properties, names, "{schema}");
        }
    }

    #[test]
    fn every_command_documents_the_rate_limit_and_every_body_its_size_limit() {
        let document = document();
        for (path, method, operation) in operations(&document) {
            let responses = &operation["responses"];
            if method == "post" {
                assert!(responses.get("429").is_some(), "{method} {path} documents 429");
            }
            if operation.get("requestBody").is_some() {
                assert!(responses.get("413").is_some(), "{method} {path} documents 413");
                assert!(responses.get("400").is_some(), "{method} {path} documents 400");
            }
        }
    }

    #[test]
    fn links_name_operations_of_the_document_in_openapi_spelling() {
        let document = document();
        let ids: Vec<&str> = operations(&document).iter().filter_map(|(_, _, op)| op["operationId"].as_str()).collect();
        let mut links = 0;
        for (_, _, operation) in operations(&document) {
            for response in operation["responses"].as_object().unwrap().values() {
                for link in response["links"].as_object().into_iter().flat_map(|l| l.values()) {
                    assert!(ids.contains(&link["operationId"].as_str().unwrap()), "{link}");
                    links += 1;
                }
            }
        }
        assert!(links >= 10, "the flow create, join, select, draw is linked");
    }
}
