//! `/api/Team`: the team list of a tournament and team selection.

use super::{metadata, ApiVersionHeader};
use crate::context;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{parse_uuid, CiJson, CiQuery};
use crate::openapi::responses::v1;
use crate::openapi::schemas::{Name, TeamName};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use domain::{PlayerName, PlayerSurname, Team};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A team and whether a player of the tournament holds it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TeamDto {
    #[schema(value_type = TeamName)]
    pub name: &'static str,
    pub selected: bool,
}

/// Body of `POST /api/Team/select`. Property names match case-insensitively.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelectTeamRequest {
    #[schema(value_type = Name)]
    pub player_name: String,
    #[schema(value_type = Name)]
    pub player_surname: String,
    #[schema(value_type = uuid::Uuid)]
    pub tournament_id: String,
    #[schema(value_type = TeamName)]
    pub team: String,
}

/// The ten teams in order, each marked when selected in this tournament.
#[utoipa::path(get, path = "/api/Team", tag = "Team", operation_id = "v1ListTeams",
    params(("tournamentId" = Uuid, Query, description = "The tournament id"), ApiVersionHeader),
    responses(
        (status = 200, description = "The ten teams in order", body = [TeamDto]),
        (status = 400, response = v1::BadRequest),
        (status = 404, response = v1::NotFound),
        (status = 503, response = v1::Unavailable)))]
pub async fn list(State(state): State<AppState>, query: CiQuery) -> Result<Json<Vec<TeamDto>>, ApiError> {
    let id = query.uuid("tournamentid", "tournamentId")?;
    context::set_tournament(id);
    let tournament = state.service.get(id).await?.tournament;
    Ok(Json(
        Team::ALL
            .into_iter()
            .map(|team| TeamDto {
                name: team.name(),
                selected: tournament.as_ref().is_some_and(|t| t.is_selected(team)),
            })
            .collect(),
    ))
}

/// A player picks a team; a pick is final.
#[utoipa::path(post, path = "/api/Team/select", tag = "Team", operation_id = "v1SelectTeam",
    request_body = SelectTeamRequest, params(ApiVersionHeader),
    responses(
        (status = 200, description = "Selected; empty body"),
        (status = 400, response = v1::BadRequest),
        (status = 403, response = v1::Forbidden),
        (status = 404, response = v1::NotFound),
        (status = 409, description = "Not in the tournament, already selected, or the team is taken", body = ErrorBody),
        (status = 408, response = v1::RequestTimeout),
        (status = 413, response = v1::PayloadTooLarge),
        (status = 429, response = v1::TooManyRequests),
        (status = 503, response = v1::Unavailable)))]
pub async fn select(State(state): State<AppState>, CiJson(body): CiJson<SelectTeamRequest>) -> Result<(), ApiError> {
    let id = parse_uuid(&body.tournament_id, "tournamentId")?;
    context::set_tournament(id);
    let name = PlayerName::parse(&body.player_name)?;
    let surname = PlayerSurname::parse(&body.player_surname)?;
    let team = Team::parse(&body.team)?;
    state.service.select_team(metadata(&state), id, name, surname, team).await?;
    Ok(())
}
