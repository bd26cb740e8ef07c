//! `/api/Team`: the team list of a tournament and team selection.

use super::metadata;
use crate::context;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{parse_uuid, CiJson, CiQuery};
use crate::AppState;
use axum::extract::State;
use axum::Json;
use domain::{PlayerName, PlayerSurname, Team};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A team and whether a player of the tournament holds it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TeamDto {
    pub name: &'static str,
    pub selected: bool,
}

/// Body of `POST /api/Team/select`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SelectTeamRequest {
    #[serde(rename = "playername")]
    #[schema(rename = "playerName")]
    pub player_name: String,
    #[serde(rename = "playersurname")]
    #[schema(rename = "playerSurname")]
    pub player_surname: String,
    #[serde(rename = "tournamentid")]
    #[schema(rename = "tournamentId")]
    pub tournament_id: String,
    /// One of the ten team names, spelled exactly.
    #[serde(rename = "team")]
    #[schema(rename = "team")]
    pub team: String,
}

/// The ten teams in order, each marked when selected in this tournament.
#[utoipa::path(get, path = "/api/Team", tag = "Team",
    params(("tournamentId" = String, Query, description = "Tournament id (UUID)"),
           ("api-version" = Option<String>, Header, description = "1 or 1.0 when present")),
    responses(
        (status = 200, body = [TeamDto]),
        (status = 400, description = "Missing or non-UUID id", body = ErrorBody),
        (status = 404, description = "Unknown tournament", body = ErrorBody),
        (status = 503, description = "The event store is unavailable", body = ErrorBody)))]
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
#[utoipa::path(post, path = "/api/Team/select", tag = "Team", request_body = SelectTeamRequest,
    params(("api-version" = Option<String>, Header, description = "1 or 1.0 when present")),
    responses(
        (status = 200, description = "Selected; empty body"),
        (status = 400, description = "Invalid name, id or an unknown team", body = ErrorBody),
        (status = 404, description = "Unknown tournament", body = ErrorBody),
        (status = 409, description = "Not in the tournament, already selected, or the team is taken", body = ErrorBody),
        (status = 503, description = "The event store is unavailable", body = ErrorBody)))]
pub async fn select(State(state): State<AppState>, CiJson(body): CiJson<SelectTeamRequest>) -> Result<(), ApiError> {
    let id = parse_uuid(&body.tournament_id, "tournamentId")?;
    context::set_tournament(id);
    let name = PlayerName::parse(&body.player_name)?;
    let surname = PlayerSurname::parse(&body.player_surname)?;
    let team = Team::parse(&body.team)?;
    state.service.select_team(metadata(&state), id, name, surname, team).await?;
    Ok(())
}
