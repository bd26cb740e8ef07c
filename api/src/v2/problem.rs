//! RFC 9457 problem details, the error body of the v2 API, with the request id.

use crate::context;
use crate::error::ApiError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::service::AppError;
use domain::{DomainError, FixtureError};
use serde::Serialize;

/// An error of the v2 API.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    /// A short kebab-case name of the problem, part of the `type` URI.
    pub kind: &'static str,
    pub detail: String,
    pub retry_after: Option<u64>,
}

/// The body of a problem response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProblemBody {
    /// `urn:lct:problem:{kind}`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub request_id: uuid::Uuid,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self { status, kind, detail: detail.into(), retry_after: None }
    }

    pub fn forbidden(detail: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn unauthorized(detail: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }
}

fn rule_kind(rule: &DomainError) -> &'static str {
    match rule {
        DomainError::TournamentNotFound => "tournament-not-found",
        DomainError::TournamentAlreadyExists => "tournament-already-exists",
        DomainError::TournamentNameTaken => "tournament-name-taken",
        DomainError::NameUnchanged => "name-unchanged",
        DomainError::PlayerAlreadyJoined => "player-already-joined",
        DomainError::TournamentFull => "tournament-full",
        DomainError::PlayerNotInTournament => "player-not-in-tournament",
        DomainError::PlayerAlreadySelected => "player-already-selected",
        DomainError::TeamAlreadySelected => "team-already-selected",
        DomainError::NotAllSeatsTaken => "not-all-seats-taken",
        DomainError::NotAllPlayersSelected => "not-all-players-selected",
        DomainError::Fixtures(rule) => fixture_rule_kind(rule),
    }
}

fn fixture_rule_kind(rule: &FixtureError) -> &'static str {
    match rule {
        FixtureError::NotDrawnYet => "not-drawn-yet",
        FixtureError::FixturesAlreadyScheduled => "fixtures-already-scheduled",
        FixtureError::FixturesNotScheduled => "fixtures-not-scheduled",
        FixtureError::MatchNotFound => "match-not-found",
        FixtureError::MatchNotReady => "match-not-ready",
        FixtureError::PlayersMayNotRecord => "players-may-not-record",
        FixtureError::NotAPlayerOfTheMatch => "not-a-player-of-the-match",
        FixtureError::ResultAlreadyRecorded => "result-already-recorded",
        FixtureError::PenaltyWinnerRequired => "penalty-winner-required",
        FixtureError::UnexpectedPenaltyWinner => "unexpected-penalty-winner",
        FixtureError::NextRoundAlreadyPlayed => "next-round-already-played",
        FixtureError::NightAlreadyFinished => "night-already-finished",
        FixtureError::MatchesStillToPlay => "matches-still-to-play",
    }
}

impl From<AppError> for Problem {
    fn from(error: AppError) -> Self {
        match &error {
            AppError::Rule(rule) => {
                let api = ApiError::from(error.clone());
                Problem::new(api.status, rule_kind(rule), api.message)
            }
            AppError::Store(_) => ApiError::from(error).into(),
        }
    }
}

impl From<live::ClickError> for Problem {
    fn from(error: live::ClickError) -> Self {
        match error {
            live::ClickError::Refused(rule) => AppError::Rule(rule).into(),
            overloaded @ live::ClickError::Overloaded(_) => {
                let api = ApiError::from(overloaded);
                Problem { retry_after: api.retry_after, ..Problem::new(api.status, "overloaded", api.message) }
            }
            other => ApiError::from(other).into(),
        }
    }
}

impl From<super::tokens::KeyPending> for Problem {
    fn from(_: super::tokens::KeyPending) -> Self {
        ApiError::from(super::tokens::KeyPending).into()
    }
}

impl From<ApiError> for Problem {
    fn from(error: ApiError) -> Self {
        let kind = match error.status {
            StatusCode::BAD_REQUEST => "invalid-request",
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "body-too-large",
            StatusCode::REQUEST_TIMEOUT => "request-timeout",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::TOO_MANY_REQUESTS => "rate-limited",
            StatusCode::SERVICE_UNAVAILABLE => "dependency-unavailable",
            _ => "internal-error",
        };
        Problem { retry_after: error.retry_after, ..Problem::new(error.status, kind, error.message) }
    }
}

impl Problem {
    /// The body of its response, naming the current request.
    pub fn body(&self) -> ProblemBody {
        ProblemBody {
            problem_type: format!("urn:lct:problem:{}", self.kind),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            request_id: context::request_id(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use live::ports::LiveError;
    use live::ClickError;

    #[test]
    fn clicks_refused_by_a_rule_name_the_rule_and_an_outage_is_a_dependency_problem() {
        let refused = Problem::from(ClickError::Refused(DomainError::PlayerNotInTournament));
        assert_eq!((refused.status, refused.kind), (StatusCode::CONFLICT, "player-not-in-tournament"));
        let outage = Problem::from(ClickError::Unavailable(LiveError("Redis down".into())));
        assert_eq!((outage.status, outage.kind), (StatusCode::SERVICE_UNAVAILABLE, "dependency-unavailable"));
        assert!(!outage.detail.contains("Redis"), "{}", outage.detail);
    }

    #[test]
    fn a_click_refused_as_overloaded_has_its_own_problem_type_and_retry_after() {
        let busy = Problem::from(ClickError::Overloaded(live::Overload::PublishBacklog));
        assert_eq!(
            (busy.status, busy.kind, busy.retry_after),
            (StatusCode::SERVICE_UNAVAILABLE, "overloaded", Some(1))
        );
        let response = busy.into_response();
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
