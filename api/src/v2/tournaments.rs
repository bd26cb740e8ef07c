//! `/api/v2/tournaments`: the clean API. Organiser and player tokens stop one caller from
//! acting for another; POSTs take an `Idempotency-Key`; errors are problem details.

use super::idempotency::{once, once_issuing, Answer, KeyRule, TokenField};
use super::idempotency::{IdempotencyKey, UnguessableIdempotencyKey};
use super::problem::Problem;
use super::tokens::player_id;
use crate::context;
use crate::extract::{number_or_numeric_string, CiJson, CiQuery};
use crate::openapi::responses::v2;
use crate::openapi::schemas::{Name, PlayerLimitInput, StreamVersion, TeamName};
use crate::v1::metadata;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use domain::{PlayerLimit, PlayerName, PlayerSurname, Team, TournamentName, TournamentState};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// The path's parameters; a path whose parameters cannot be read (one that is not UTF-8 once
/// decoded) is answered with a problem, as every other refusal of v2.
pub struct PathOf<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathOf<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathOf(value)),
            Err(rejection) => Err(Problem::new(StatusCode::BAD_REQUEST, "invalid-request", rejection.body_text())),
        }
    }
}

/// A JSON body (property names matched case-insensitively) and its bytes.
pub struct Body<T>(pub T, pub Bytes);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let bytes =
            Bytes::from_request(request, state).await.map_err(|r| Problem::from(crate::extract::body_error(r)))?;
        let request = Request::new(axum::body::Body::from(bytes.clone()));
        let CiJson(value) = CiJson::<T>::from_request(request, state).await.map_err(Problem::from)?;
        Ok(Body(value, bytes))
    }
}

/// Body of a new tournament. Property names match case-insensitively.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    /// Unique across tournaments.
    #[schema(value_type = Name)]
    pub name: String,
    #[serde(deserialize_with = "number_or_numeric_string")]
    #[schema(value_type = PlayerLimitInput)]
    pub player_limit: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RenameBody {
    /// Unique across tournaments.
    #[schema(value_type = Name)]
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct JoinBody {
    #[schema(value_type = Name)]
    pub name: String,
    #[schema(value_type = Name)]
    pub surname: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TeamBody {
    #[schema(value_type = TeamName)]
    pub team: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlayerView {
    pub id: Uuid,
    pub name: String,
    pub surname: String,
    #[schema(value_type = Option<TeamName>)]
    pub selected_team: Option<String>,
    #[schema(value_type = Option<TeamName>)]
    pub drawn_team: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrawLine {
    pub player_id: Uuid,
    pub name: String,
    pub surname: String,
    #[schema(value_type = TeamName)]
    pub team: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TournamentView {
    pub id: Uuid,
    pub name: String,
    #[schema(minimum = 2, maximum = 10)]
    pub player_limit: u8,
    pub version: u64,
    pub players: Vec<PlayerView>,
    pub draw: Option<Vec<DrawLine>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    pub id: Uuid,
    pub name: String,
    #[schema(minimum = 2, maximum = 10)]
    pub player_limit: u8,
    pub version: u64,
    /// Needed to rename and to draw; shown once.
    pub organiser_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    pub player_id: Uuid,
    /// Needed to select a team and to click; shown once.
    pub player_token: String,
    pub version: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamView {
    #[schema(value_type = TeamName)]
    pub name: &'static str,
    pub selected: bool,
    pub selected_by: Option<Uuid>,
}

/// The tournament of a v2 path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TournamentPath {
    /// The tournament id.
    pub id: Uuid,
}

/// The optional `Idempotency-Key` of v2 commands.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// Makes retries safe: a retry with the same key and body gets the first answer again and
    /// changes nothing; kept for a day.
    #[param(rename = "Idempotency-Key", value_type = Option<IdempotencyKey>, nullable = false)]
    pub idempotency_key: Option<String>,
}

/// The optional `Idempotency-Key` of the v2 commands answered with a token (create, join):
/// the stored answer is replayed to whoever sends the key, so it must not be guessable.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct TokenIdempotencyKeyHeader {
    /// Makes retries safe: a retry with the same key and body gets the first answer again (its
    /// token included) and changes nothing; kept for a day. Draw it from at least 128 random
    /// bits (e.g. 16 random bytes in hex); at least 22 characters of `A-Z a-z 0-9 - _`.
    #[param(rename = "Idempotency-Key", value_type = Option<UnguessableIdempotencyKey>, nullable = false)]
    pub idempotency_key: Option<String>,
}

/// A stored event as `GET /api/v2/tournaments/{id}/events` lists it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    /// Versions count from 1 per tournament.
    pub version: u64,
    #[serde(rename = "type")]
    #[schema(
        pattern = "^(TournamentCreated|TournamentRenamed|PlayerJoined|TeamSelected|TeamsDrawn|FixturesScheduled|ResultRecorded|ResultCorrected|NightFinished)$"
    )]
    pub event_type: &'static str,
    /// The event: its `type` and its camelCase fields (`name`, `playerLimit`, `surname`, `team`,
    /// `assignments`; after the draw `format`, `fixtures`, `number`, `homeGoals`, …).
    #[schema(value_type = Object)]
    pub event: Value,
    /// When it was stored, in ms since the Unix epoch.
    pub recorded_at_ms: i64,
    /// The request that caused it.
    pub request_id: Option<Uuid>,
}

/// A player connected to the tournament's live stream.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnlinePlayer {
    pub player_id: Uuid,
    pub name: String,
    pub surname: String,
}

/// The players connected now, across pods.
#[derive(Debug, Serialize, ToSchema)]
pub struct Presence {
    pub players: Vec<OnlinePlayer>,
}

fn view(id: Uuid, state: &TournamentState) -> Result<TournamentView, Problem> {
    let t = state
        .tournament
        .as_ref()
        .ok_or_else(|| Problem::from(domain::service::AppError::Rule(domain::DomainError::TournamentNotFound)))?;
    Ok(TournamentView {
        id,
        name: t.name.to_string(),
        player_limit: t.player_limit.into(),
        version: state.version,
        players: t
            .players
            .iter()
            .map(|p| PlayerView {
                id: player_id(id, p.name.as_str(), p.surname.as_str()),
                name: p.name.to_string(),
                surname: p.surname.to_string(),
                selected_team: p.selected_team.map(|t| t.name().to_owned()),
                drawn_team: p.drawn_team.map(|t| t.name().to_owned()),
            })
            .collect(),
        draw: t.draw.as_ref().map(|lines| lines.iter().map(|a| draw_line(id, a)).collect()),
    })
}

fn draw_line(id: Uuid, a: &domain::Assignment) -> DrawLine {
    DrawLine {
        player_id: player_id(id, a.name.as_str(), a.surname.as_str()),
        name: a.name.to_string(),
        surname: a.surname.to_string(),
        team: a.team.name().to_owned(),
    }
}

pub(super) fn tournament_id(raw: &str) -> Result<Uuid, Problem> {
    let id = crate::extract::parse_uuid(raw, "The tournament id").map_err(Problem::from)?;
    context::set_tournament(id);
    Ok(id)
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub(super) fn require_organiser(state: &AppState, id: Uuid, headers: &HeaderMap) -> Result<(), Problem> {
    let token = bearer(headers)
        .ok_or_else(|| Problem::unauthorized("The organiser token is required (Authorization: Bearer)."))?;
    if state.tokens.is_organiser(id, token)? {
        Ok(())
    } else {
        Err(Problem::forbidden("This token is not the organiser token of this tournament."))
    }
}

/// The player a player token stands for, looked up in the tournament.
pub(super) async fn require_player(
    state: &AppState,
    id: Uuid,
    headers: &HeaderMap,
) -> Result<(PlayerName, PlayerSurname), Problem> {
    let token =
        bearer(headers).ok_or_else(|| Problem::unauthorized("A player token is required (Authorization: Bearer)."))?;
    let player = state
        .tokens
        .player_of(id, token)?
        .ok_or_else(|| Problem::forbidden("This token is not a player token of this tournament."))?;
    let current = state.service.get(id).await?;
    let t = current.tournament.as_ref().ok_or_else(|| Problem::forbidden("Unknown player."))?;
    t.players
        .iter()
        .find(|p| player_id(id, p.name.as_str(), p.surname.as_str()) == player)
        .map(|p| (p.name.clone(), p.surname.clone()))
        .ok_or_else(|| Problem::forbidden("This token's player is not in the tournament."))
}

pub(super) fn json_of<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Creates a tournament; the answer carries the organiser token.
#[utoipa::path(post, path = "/api/v2/tournaments", tag = "v2", operation_id = "v2CreateTournament",
    request_body = CreateBody, params(TokenIdempotencyKeyHeader),
    responses(
        (status = 201, description = "Created; the organiser token is shown only here", body = Created),
        (status = 400, response = v2::BadRequest),
        (status = 408, response = v2::RequestTimeout),
        (status = 409, response = v2::Conflict),
        (status = 413, response = v2::PayloadTooLarge),
        (status = 422, response = v2::KeyReused),
        (status = 429, response = v2::TooManyRequests),
        (status = 503, response = v2::Unavailable)))]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(body, raw): Body<CreateBody>,
) -> Result<Response, Problem> {
    let id = Uuid::new_v4();
    context::set_tournament(id);
    let command = {
        let state = state.clone();
        async move {
            let name = TournamentName::parse(&body.name).map_err(crate::error::ApiError::from)?;
            let limit = PlayerLimit::new(body.player_limit).map_err(crate::error::ApiError::from)?;
            // Issued before the command runs: a pod without the key yet changes nothing.
            let organiser_token = state.tokens.organiser(id)?;
            let created = state.service.create(metadata(&state), id, name, limit).await?;
            let t = created.tournament.as_ref().expect("a created tournament exists");
            let answer = Created {
                id,
                name: t.name.to_string(),
                player_limit: t.player_limit.into(),
                version: created.version,
                organiser_token,
            };
            Ok::<Answer, Problem>((StatusCode::CREATED, json_of(&answer)))
        }
    };
    let tokens = state.tokens.clone();
    let token = TokenField {
        field: "organiserToken",
        again: Box::new(move |answer| Ok(tokens.organiser(stored_uuid(answer, "id")?)?)),
    };
    once_issuing(&state, &headers, "create", &raw, token, command).await
}

/// The id in field `field` of a stored answer.
fn stored_uuid(answer: &Value, field: &str) -> Result<Uuid, Problem> {
    answer.get(field).and_then(Value::as_str).and_then(|id| Uuid::try_parse(id).ok()).ok_or_else(|| {
        tracing::error!(field, "a stored answer lacks the id its token is made from");
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal-error", "An internal error occurred.")
    })
}

/// A tournament with its players (with their ids) and the draw.
#[utoipa::path(get, path = "/api/v2/tournaments/{id}", tag = "v2", operation_id = "v2GetTournament", params(TournamentPath),
    responses(
        (status = 200, description = "The tournament", body = TournamentView),
        (status = 400, response = v2::BadRequest),
        (status = 404, response = v2::NotFound),
        (status = 503, response = v2::Unavailable)))]
pub async fn get(State(state): State<AppState>, PathOf(id): PathOf<String>) -> Result<Json<TournamentView>, Problem> {
    let id = tournament_id(&id)?;
    Ok(Json(view(id, &state.service.get(id).await?)?))
}

/// Renames a tournament (organiser).
#[utoipa::path(post, path = "/api/v2/tournaments/{id}/rename", tag = "v2", operation_id = "v2RenameTournament",
    params(TournamentPath, IdempotencyKeyHeader), request_body = RenameBody, security(("organiser" = [])),
    responses(
        (status = 200, description = "Renamed", body = TournamentView),
        (status = 400, response = v2::BadRequest),
        (status = 401, response = v2::Unauthorized),
        (status = 403, response = v2::Forbidden),
        (status = 404, response = v2::NotFound),
        (status = 408, response = v2::RequestTimeout),
        (status = 409, response = v2::Conflict),
        (status = 413, response = v2::PayloadTooLarge),
        (status = 422, response = v2::KeyReused),
        (status = 429, response = v2::TooManyRequests),
        (status = 503, response = v2::Unavailable)))]
pub async fn rename(
    State(state): State<AppState>,
    PathOf(id): PathOf<String>,
    headers: HeaderMap,
    Body(body, raw): Body<RenameBody>,
) -> Result<Response, Problem> {
    let id = tournament_id(&id)?;
    require_organiser(&state, id, &headers)?;
    let command = {
        let state = state.clone();
        async move {
            let name = TournamentName::parse(&body.name).map_err(crate::error::ApiError::from)?;
            let renamed = state.service.rename(metadata(&state), id, name).await?;
            Ok((StatusCode::OK, json_of(&view(id, &renamed)?)))
        }
    };
    once(&state, &headers, &format!("rename|{id}"), KeyRule::Any, &raw, command).await
}

/// Joins a player; the answer carries the player's id and token.
#[utoipa::path(post, path = "/api/v2/tournaments/{id}/players", tag = "v2", operation_id = "v2JoinTournament",
    params(TournamentPath, TokenIdempotencyKeyHeader), request_body = JoinBody,
    responses(
        (status = 201, description = "Joined; the player token is shown only here", body = Joined),
        (status = 400, response = v2::BadRequest),
        (status = 404, response = v2::NotFound),
        (status = 408, response = v2::RequestTimeout),
        (status = 409, response = v2::Conflict),
        (status = 413, response = v2::PayloadTooLarge),
        (status = 422, response = v2::KeyReused),
        (status = 429, response = v2::TooManyRequests),
        (status = 503, response = v2::Unavailable)))]
pub async fn join(
    State(state): State<AppState>,
    PathOf(id): PathOf<String>,
    headers: HeaderMap,
    Body(body, raw): Body<JoinBody>,
) -> Result<Response, Problem> {
    let id = tournament_id(&id)?;
    let command = {
        let state = state.clone();
        async move {
            let name = PlayerName::parse(&body.name).map_err(crate::error::ApiError::from)?;
            let surname = PlayerSurname::parse(&body.surname).map_err(crate::error::ApiError::from)?;
            let player = player_id(id, name.as_str(), surname.as_str());
            let player_token = state.tokens.player(id, player)?;
            let joined = state.service.join(metadata(&state), id, name, surname).await?;
            let answer = Joined { player_id: player, player_token, version: joined.version };
            Ok((StatusCode::CREATED, json_of(&answer)))
        }
    };
    let tokens = state.tokens.clone();
    let token = TokenField {
        field: "playerToken",
        again: Box::new(move |answer| Ok(tokens.player(id, stored_uuid(answer, "playerId")?)?)),
    };
    once_issuing(&state, &headers, &format!("join|{id}"), &raw, token, command).await
}

/// The token's player picks a team (final).
#[utoipa::path(post, path = "/api/v2/tournaments/{id}/selection", tag = "v2", operation_id = "v2SelectTeam",
    params(TournamentPath, IdempotencyKeyHeader), request_body = TeamBody, security(("player" = [])),
    responses(
        (status = 200, description = "Selected", body = TournamentView),
        (status = 400, response = v2::BadRequest),
        (status = 401, response = v2::Unauthorized),
        (status = 403, response = v2::Forbidden),
        (status = 404, response = v2::NotFound),
        (status = 408, response = v2::RequestTimeout),
        (status = 409, response = v2::Conflict),
        (status = 413, response = v2::PayloadTooLarge),
        (status = 422, response = v2::KeyReused),
        (status = 429, response = v2::TooManyRequests),
        (status = 503, response = v2::Unavailable)))]
pub async fn select(
    State(state): State<AppState>,
    PathOf(id): PathOf<String>,
    headers: HeaderMap,
    Body(body, raw): Body<TeamBody>,
) -> Result<Response, Problem> {
    let id = tournament_id(&id)?;
    let (name, surname) = require_player(&state, id, &headers).await?;
    // By the player's id: names may hold '|', so joined with it two players could read alike.
    let route = format!("select|{id}|{}", player_id(id, name.as_str(), surname.as_str()));
    let command = {
        let state = state.clone();
        async move {
            let team = Team::parse(&body.team).map_err(crate::error::ApiError::from)?;
            let selected = state.service.select_team(metadata(&state), id, name, surname, team).await?;
            Ok((StatusCode::OK, json_of(&view(id, &selected)?)))
        }
    };
    once(&state, &headers, &route, KeyRule::Any, &raw, command).await
}

/// The token's player hovers over a team: everyone sees it live.
#[utoipa::path(post, path = "/api/v2/tournaments/{id}/clicks", tag = "v2", operation_id = "v2ClickTeam",
    params(TournamentPath), request_body = TeamBody, security(("player" = [])),
    responses(
        (status = 204, description = "Shown to everyone watching the tournament"),
        (status = 400, response = v2::BadRequest),
        (status = 401, response = v2::Unauthorized),
        (status = 403, response = v2::Forbidden),
        (status = 404, response = v2::NotFound),
        (status = 408, response = v2::RequestTimeout),
        (status = 409, response = v2::Conflict),
        (status = 413, response = v2::PayloadTooLarge),
        (status = 429, response = v2::TooManyRequests),
        (status = 503, response = v2::Unavailable)))]
pub async fn click(
    State(state): State<AppState>,
    PathOf(id): PathOf<String>,
    headers: HeaderMap,
    Body(body, _): Body<TeamBody>,
) -> Result<StatusCode, Problem> {
    let id = tournament_id(&id)?;
    let (name, surname) = require_player(&state, id, &headers).await?;
    let team = Team::parse(&body.team).map_err(crate::error::ApiError::from)?;
    state.live.clicks.record(id, team, name, surname).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Draws (organiser); repeatable, answering the stored result.
#[utoipa::path(post, path = "/api/v2/tournaments/{id}/draw", tag = "v2", operation_id = "v2Draw",
    params(TournamentPath, IdempotencyKeyHeader), security(("organiser" = [])),
    responses(
        (status = 200, description = "Who got which team", body = [DrawLine]),
        (status = 400, response = v2::BadRequest),
        (status = 401, response = v2::Unauthorized),
        (status = 403, response = v2::Forbidden),
        (status = 404, response = v2::NotFound),
        (status = 409, response = v2::Conflict),
        (status = 429, response = v2::TooManyRequests),
        (status = 503, response = v2::Unavailable)))]
pub async fn draw(
    State(state): State<AppState>,
    PathOf(id): PathOf<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let id = tournament_id(&id)?;
    require_organiser(&state, id, &headers)?;
    let command = {
        let state = state.clone();
        async move {
            let lines = state.service.draw(metadata(&state), id, rand::random()).await?;
            let lines: Vec<DrawLine> = lines.iter().map(|a| draw_line(id, a)).collect();
            Ok((StatusCode::OK, json_of(&lines)))
        }
    };
    once(&state, &headers, &format!("draw|{id}"), KeyRule::Any, b"", command).await
}

/// The ten teams, each with the player holding it.
#[utoipa::path(get, path = "/api/v2/tournaments/{id}/teams", tag = "v2", operation_id = "v2ListTeams", params(TournamentPath),
    responses(
        (status = 200, description = "The ten teams in order", body = [TeamView]),
        (status = 400, response = v2::BadRequest),
        (status = 404, response = v2::NotFound),
        (status = 503, response = v2::Unavailable)))]
pub async fn teams(State(state): State<AppState>, PathOf(id): PathOf<String>) -> Result<Json<Vec<TeamView>>, Problem> {
    let id = tournament_id(&id)?;
    let current = state.service.get(id).await?;
    let t = current.tournament.as_ref();
    Ok(Json(
        Team::ALL
            .into_iter()
            .map(|team| {
                let holder = t.and_then(|t| t.players.iter().find(|p| p.selected_team == Some(team)));
                TeamView {
                    name: team.name(),
                    selected: holder.is_some(),
                    selected_by: holder.map(|p| player_id(id, p.name.as_str(), p.surname.as_str())),
                }
            })
            .collect(),
    ))
}

/// The stored events after a version.
#[utoipa::path(get, path = "/api/v2/tournaments/{id}/events", tag = "v2", operation_id = "v2ListEvents",
    params(TournamentPath, ("after" = Option<StreamVersion>, Query, description = "Only events with a higher version (default 0)")),
    responses(
        (status = 200, description = "The events in version order", body = [EventRecord]),
        (status = 400, response = v2::BadRequest),
        (status = 404, response = v2::NotFound),
        (status = 503, response = v2::Unavailable)))]
pub async fn events(
    State(state): State<AppState>,
    PathOf(id): PathOf<String>,
    query: CiQuery,
) -> Result<Json<Vec<EventRecord>>, Problem> {
    let id = tournament_id(&id)?;
    let after = match query.get("after") {
        Some(raw) => raw
            .trim()
            .parse::<u64>()
            .map_err(|_| Problem::new(StatusCode::BAD_REQUEST, "invalid-request", "after must be a version number."))?,
        None => 0,
    };
    state.service.get(id).await?;
    let events = state.service.store().load(id, after).await.map_err(domain::service::AppError::from)?;
    Ok(Json(
        events
            .iter()
            .map(|e| EventRecord {
                version: e.version,
                event_type: e.event.event_type(),
                event: json_of(&e.event),
                recorded_at_ms: e.recorded_at_ms,
                request_id: e.request_id,
            })
            .collect(),
    ))
}

/// Players connected to the tournament's live stream now, across pods.
#[utoipa::path(get, path = "/api/v2/tournaments/{id}/presence", tag = "v2", operation_id = "v2Presence", params(TournamentPath),
    responses(
        (status = 200, description = "The players online now", body = Presence),
        (status = 400, response = v2::BadRequest),
        (status = 404, response = v2::NotFound),
        (status = 503, response = v2::Unavailable)))]
pub async fn presence(State(state): State<AppState>, PathOf(id): PathOf<String>) -> Result<Json<Presence>, Problem> {
    let id = tournament_id(&id)?;
    state.service.get(id).await?;
    let players = state.live.presence.online(id).await.map_err(|error| {
        tracing::error!(cause = %error, "presence unavailable");
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "dependency-unavailable",
            "A dependency is unavailable; try again shortly.",
        )
    })?;
    let players = players
        .into_iter()
        .map(|p| OnlinePlayer { player_id: p.player_id, name: p.name, surname: p.surname })
        .collect();
    Ok(Json(Presence { players }))
}
