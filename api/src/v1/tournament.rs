//! `/api/Tournament`: create, get, assign a player, draw.

use super::metadata;
use super::ApiVersionHeader;
use crate::context;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{parse_uuid, CiJson, CiQuery};
use crate::openapi::responses::v1;
use crate::openapi::schemas::{Name, PlayerLimitInput, TeamName};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use domain::{PlayerLimit, PlayerName, PlayerSurname, TournamentName, TournamentState};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Body of `POST /api/Tournament/create`. Property names match case-insensitively.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateTournamentRequest {
    /// Unique across tournaments.
    #[schema(value_type = Name)]
    pub name: String,
    #[serde(deserialize_with = "crate::extract::number_or_numeric_string")]
    #[schema(value_type = PlayerLimitInput)]
    pub player_limit: i64,
}

/// Body of `POST /api/Tournament/assignPlayer`. Property names match case-insensitively.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssignPlayerRequest {
    #[schema(value_type = Name)]
    pub name: String,
    #[schema(value_type = Name)]
    pub surname: String,
    #[schema(value_type = uuid::Uuid)]
    pub tournament_id: String,
}

/// A player as `GET /api/Tournament` shows them.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlayerDto {
    pub name: String,
    pub surname: String,
    #[schema(value_type = Option<TeamName>)]
    pub selected_team: Option<String>,
    #[schema(value_type = Option<TeamName>)]
    pub drawn_team: Option<String>,
}

/// `GET /api/Tournament` answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TournamentDto {
    pub id: Uuid,
    pub tournament_name: String,
    #[schema(minimum = 2, maximum = 10)]
    pub player_limit: u8,
    pub version: u64,
    /// In join order.
    pub players: Vec<PlayerDto>,
}

/// One line of the draw.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrawnTeamDto {
    pub name: String,
    pub surname: String,
    #[schema(value_type = TeamName)]
    pub team_name: String,
}

impl TournamentDto {
    pub fn from_state(id: Uuid, state: &TournamentState) -> Option<Self> {
        let t = state.tournament.as_ref()?;
        Some(Self {
            id,
            tournament_name: t.name.to_string(),
            player_limit: t.player_limit.into(),
            version: state.version,
            players: t
                .players
                .iter()
                .map(|p| PlayerDto {
                    name: p.name.to_string(),
                    surname: p.surname.to_string(),
                    selected_team: p.selected_team.map(|t| t.name().to_owned()),
                    drawn_team: p.drawn_team.map(|t| t.name().to_owned()),
                })
                .collect(),
        })
    }
}

/// Creates a tournament; the answer is its id as a bare JSON string.
#[utoipa::path(post, path = "/api/Tournament/create", tag = "Tournament", operation_id = "v1CreateTournament",
    request_body = CreateTournamentRequest, params(ApiVersionHeader),
    responses(
        (status = 200, description = "The id of the new tournament", body = Uuid, content_type = "application/json"),
        (status = 400, response = v1::BadRequest),
        (status = 403, response = v1::Forbidden),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 408, response = v1::RequestTimeout),
        (status = 413, response = v1::PayloadTooLarge),
        (status = 429, response = v1::TooManyRequests),
        (status = 503, response = v1::Unavailable)))]
pub async fn create(
    State(state): State<AppState>,
    CiJson(body): CiJson<CreateTournamentRequest>,
) -> Result<Json<Uuid>, ApiError> {
    let name = TournamentName::parse(&body.name)?;
    let player_limit = PlayerLimit::new(body.player_limit)?;
    let id = Uuid::new_v4();
    context::set_tournament(id);
    state.service.create(metadata(&state), id, name, player_limit).await?;
    Ok(Json(id))
}

/// A tournament with its players in join order.
#[utoipa::path(get, path = "/api/Tournament", tag = "Tournament", operation_id = "v1GetTournament",
    params(("id" = Uuid, Query, description = "The tournament id"), ApiVersionHeader),
    responses(
        (status = 200, description = "The tournament", body = TournamentDto),
        (status = 400, response = v1::BadRequest),
        (status = 404, response = v1::NotFound),
        (status = 503, response = v1::Unavailable)))]
pub async fn get(State(state): State<AppState>, query: CiQuery) -> Result<Json<TournamentDto>, ApiError> {
    let id = query.uuid("id", "id")?;
    context::set_tournament(id);
    let tournament = state.service.get(id).await?;
    TournamentDto::from_state(id, &tournament)
        .map(Json)
        .ok_or_else(|| ApiError::from(domain::service::AppError::Rule(domain::DomainError::TournamentNotFound)))
}

/// Joins a player to a tournament.
#[utoipa::path(post, path = "/api/Tournament/assignPlayer", tag = "Tournament", operation_id = "v1AssignPlayer",
    request_body = AssignPlayerRequest, params(ApiVersionHeader),
    responses(
        (status = 200, description = "Joined; empty body"),
        (status = 400, response = v1::BadRequest),
        (status = 403, response = v1::Forbidden),
        (status = 404, response = v1::NotFound),
        (status = 409, description = "Already joined, or the tournament is full", body = ErrorBody),
        (status = 408, response = v1::RequestTimeout),
        (status = 413, response = v1::PayloadTooLarge),
        (status = 429, response = v1::TooManyRequests),
        (status = 503, response = v1::Unavailable)))]
pub async fn assign_player(
    State(state): State<AppState>,
    CiJson(body): CiJson<AssignPlayerRequest>,
) -> Result<(), ApiError> {
    let id = parse_uuid(&body.tournament_id, "tournamentId")?;
    context::set_tournament(id);
    let name = PlayerName::parse(&body.name)?;
    let surname = PlayerSurname::parse(&body.surname)?;
    state.service.join(metadata(&state), id, name, surname).await?;
    Ok(())
}

/// Draws the selected teams among the players; repeatable, answering the stored result.
#[utoipa::path(get, path = "/api/Tournament/draw", tag = "Tournament", operation_id = "v1Draw",
    params(("tournamentId" = Uuid, Query, description = "The tournament id"), ApiVersionHeader),
    responses(
        (status = 200, description = "Who got which team", body = [DrawnTeamDto]),
        (status = 400, response = v1::BadRequest),
        (status = 403, response = v1::Forbidden),
        (status = 404, response = v1::NotFound),
        (status = 409, description = "Seats left or players without a team", body = ErrorBody),
        (status = 503, response = v1::Unavailable)))]
pub async fn draw(State(state): State<AppState>, query: CiQuery) -> Result<Json<Vec<DrawnTeamDto>>, ApiError> {
    let id = query.uuid("tournamentid", "tournamentId")?;
    context::set_tournament(id);
    let assignments = if state.v1.allows_writes() {
        state.service.draw(metadata(&state), id, rand::random()).await?
    } else {
        // Read-only: a draw already made is answered, a new one is refused.
        let current = state.service.get(id).await?;
        let t = current
            .tournament
            .ok_or_else(|| ApiError::from(domain::service::AppError::Rule(domain::DomainError::TournamentNotFound)))?;
        t.draw.ok_or_else(|| state.v1.write_refusal())?
    };
    Ok(Json(
        assignments
            .into_iter()
            .map(|a| DrawnTeamDto {
                name: a.name.into(),
                surname: a.surname.into(),
                team_name: a.team.name().to_owned(),
            })
            .collect(),
    ))
}

/// The draw, for clients that send it as a POST (the body is ignored); a command, so it counts
/// toward the rate limit.
#[utoipa::path(post, path = "/api/Tournament/draw", tag = "Tournament", operation_id = "v1DrawByPost",
    params(("tournamentId" = Uuid, Query, description = "The tournament id"), ApiVersionHeader),
    responses(
        (status = 200, description = "Who got which team", body = [DrawnTeamDto]),
        (status = 400, response = v1::BadRequest),
        (status = 403, response = v1::Forbidden),
        (status = 404, response = v1::NotFound),
        (status = 409, description = "Seats left or players without a team", body = ErrorBody),
        (status = 429, response = v1::TooManyRequests),
        (status = 503, response = v1::Unavailable)))]
pub async fn draw_by_post(state: State<AppState>, query: CiQuery) -> Result<Json<Vec<DrawnTeamDto>>, ApiError> {
    draw(state, query).await
}
