//! The error responses operations share, as components: v1 answers `application/json` with
//! `ErrorBody`, v2 `application/problem+json` with `ProblemBody`. An operation lists the ones
//! it can answer, e.g. `(status = 404, response = v2::NotFound)`.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Ref, Type};
use utoipa::openapi::{ContentBuilder, RefOr};

fn error(media_type: &str, schema: &str, description: &str) -> ResponseBuilder {
    ResponseBuilder::new()
        .description(description)
        .content(media_type, ContentBuilder::new().schema(Some(Ref::from_schema_name(schema))).build())
}

/// A 429 carries the seconds to wait in `Retry-After`.
fn with_retry_after(response: ResponseBuilder) -> ResponseBuilder {
    let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1));
    response.header(
        "Retry-After",
        HeaderBuilder::new().schema(seconds).description(Some("Seconds until a request is allowed again")).build(),
    )
}

/// Declares response components: `Name => "component name", "description"`, optionally
/// followed by `retry_after`.
macro_rules! responses {
    ($media_type:literal, $schema:literal: $($name:ident => $component:literal, $description:literal $(, $extra:ident)?;)*) => {
        $(
            #[doc = $description]
            pub struct $name;

            impl<'r> utoipa::ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    let response = super::error($media_type, $schema, $description);
                    $(let response = super::$extra(response);)?
                    ($component, response.build().into())
                }
            }
        )*
    };
}

/// v1 errors: `{"RequestId", "ErrorMessage"}` as `application/json`.
pub mod v1 {
    use super::*;

    responses! { "application/json", "ErrorBody":
        BadRequest => "v1BadRequest",
            "Malformed JSON, a missing or ill-typed property, a value that breaks its rule (name, \
             player limit, team), an id that is not a UUID, or an api-version other than 1 or 1.0.";
        Forbidden => "v1Forbidden",
            "v1 is read-only on this server (`LCT_V1=read-only`): changes go through the v2 API.";
        NotFound => "v1NotFound",
            "The tournament does not exist, or the v1 API is turned off on this server (`LCT_V1=off`).";
        RequestTimeout => "v1RequestTimeout",
            "The request body stopped arriving (`LCT_BODY_READ_TIMEOUT_MS`), or the request took longer than \
             `LCT_REQUEST_TIMEOUT_MS` (then without a body).";
        Conflict => "v1Conflict", "A rule of the tournament refused the command; the message names it.";
        PayloadTooLarge => "v1PayloadTooLarge", "The request body is larger than 16 KiB.";
        TooManyRequests => "v1TooManyRequests",
            "Too many commands from this client address; retry after `Retry-After` seconds.", with_retry_after;
        Unavailable => "v1Unavailable", "A dependency (the event store) is unavailable; retry shortly.";
    }
}

/// v2 errors: RFC 9457 problem details as `application/problem+json`.
pub mod v2 {
    use super::*;

    responses! { "application/problem+json", "ProblemBody":
        BadRequest => "v2BadRequest",
            "Malformed JSON, a missing or ill-typed property, a value that breaks its rule (name, \
             player limit, team, version), a tournament id that is not a UUID, or an invalid \
             Idempotency-Key.";
        Unauthorized => "v2Unauthorized", "No bearer token was sent.";
        Forbidden => "v2Forbidden", "The bearer token is not the one this operation needs for this tournament.";
        NotFound => "v2NotFound", "The tournament does not exist.";
        RequestTimeout => "v2RequestTimeout",
            "The request body stopped arriving (`LCT_BODY_READ_TIMEOUT_MS`), or the request took longer than \
             `LCT_REQUEST_TIMEOUT_MS` (then without a body).";
        Conflict => "v2Conflict",
            "A rule of the tournament refused the command (its kind is in `type`), or a request with \
             the same Idempotency-Key is still running.";
        PayloadTooLarge => "v2PayloadTooLarge", "The request body is larger than 16 KiB.";
        KeyReused => "v2IdempotencyKeyReused", "This Idempotency-Key was used with a different request body.";
        TooManyRequests => "v2TooManyRequests",
            "Too many commands from this client address; retry after `Retry-After` seconds.", with_retry_after;
        Unavailable => "v2Unavailable",
            "A dependency (the event store, Redis) is unavailable, or this pod has not agreed on the token key \
             yet; retry shortly.";
    }
}
