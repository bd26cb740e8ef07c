//! After the draw: `/api/v2/tournaments/{id}/fixtures`, `…/matches/{number}/result`, `…/finish`
//! and `…/standings`. The organiser schedules and finishes; results come from the organiser or,
//! when the organiser allowed it, from a player of the match. POSTs take an `Idempotency-Key`.

use super::idempotency::{once, KeyRule};
use super::problem::Problem;
use super::tokens::player_id;
use super::tournaments::{
    bearer, json_of, require_organiser, require_player, tournament_id, Body, IdempotencyKeyHeader, PathOf,
    TournamentPath,
};
use crate::error::ApiError;
use crate::extract::{optional_whole_number, whole_number};
use crate::openapi::responses::v2;
use crate::v1::metadata;
use crate::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use domain::fixtures::{MatchStatus, Slot};
use domain::standings::standings;
use domain::{Format, Goals, Legs, Night, PlayerRef, Recorder, Score, Side, Tournament, TournamentState};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// The format of the night.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FormatName {
    League,
    Knockout,
}

/// A side of a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SideName {
    Home,
    Away,
}

/// What became of a match: `waiting` for an earlier winner, `ready` to play, `played`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusName {
    Waiting,
    Ready,
    Played,
}

/// Body of `POST …/fixtures`. Property names match case-insensitively.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleBody {
    pub format: FormatName,
    /// League only: 1 (each pair once) or 2 (home and away). Default 1; a knockout ignores it.
    #[serde(default, deserialize_with = "optional_whole_number")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 2)]
    pub legs: Option<i64>,
    /// Whether a player may record the result of a match they play in. Default false.
    #[serde(default)]
    pub players_may_record: bool,
}

/// Body of `POST …/matches/{number}/result`. Property names match case-insensitively.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResultBody {
    #[serde(deserialize_with = "whole_number")]
    #[schema(minimum = 0, maximum = 99)]
    pub home_goals: i64,
    #[serde(deserialize_with = "whole_number")]
    #[schema(minimum = 0, maximum = 99)]
    pub away_goals: i64,
    /// Knockout only, and only when the score is level: who won the shoot-out.
    #[serde(default)]
    pub penalty_winner: Option<SideName>,
}

/// A match of a v2 path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MatchPath {
    /// The match number, from 1 in the order of the schedule.
    #[param(minimum = 1, maximum = 65535)]
    pub number: u16,
}

/// A player of the night, with the team the draw gave them.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlayerLine {
    pub player_id: Uuid,
    pub name: String,
    pub surname: String,
    pub team: Option<String>,
}

/// Who entered a result: `organiser`, or `player` with the player's id.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordedBy {
    pub kind: String,
    pub player_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResultView {
    pub home_goals: u8,
    pub away_goals: u8,
    pub penalty_winner: Option<SideName>,
    /// The player who went through (none for a level league match).
    pub winner_id: Option<Uuid>,
    pub recorded_by: RecordedBy,
    /// Whether the organiser changed the first result.
    pub corrected: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MatchView {
    pub number: u16,
    pub round: u16,
    pub leg: u8,
    /// Unknown (null) until the match named in `homeFrom` is decided.
    pub home: Option<PlayerLine>,
    pub away: Option<PlayerLine>,
    /// Knockout: the match whose winner takes this side.
    pub home_from: Option<u16>,
    pub away_from: Option<u16>,
    pub status: StatusName,
    pub result: Option<ResultView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoundView {
    pub round: u16,
    pub leg: u8,
    /// Players without a match in this round: the one resting in a league of an odd number,
    /// those with a bye in the first knockout round.
    pub byes: Vec<PlayerLine>,
}

/// The night's schedule and results.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FixturesView {
    pub version: u64,
    pub scheduled: bool,
    pub format: Option<FormatName>,
    /// League: 1 or 2.
    pub legs: Option<u8>,
    pub players_may_record: bool,
    pub finished: bool,
    pub rounds: Vec<RoundView>,
    pub matches: Vec<MatchView>,
    /// Knockout: the winner of the final, once played.
    pub champion: Option<PlayerLine>,
}

/// One line of the table.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StandingLine {
    pub position: u16,
    pub player_id: Uuid,
    pub name: String,
    pub surname: String,
    pub team: Option<String>,
    pub played: u16,
    pub won: u16,
    pub drawn: u16,
    pub lost: u16,
    pub goals_for: u16,
    pub goals_against: u16,
    pub goal_difference: i32,
    pub points: u16,
    /// Knockout: the latest round the player has a match in.
    pub reached_round: Option<u16>,
    /// Knockout: the player lost a match.
    pub eliminated: bool,
    /// Knockout: the player won the final.
    pub champion: bool,
    /// The number of the player's first match without a result, if any.
    pub next_match: Option<u16>,
}

/// The table, derived from the results.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StandingsView {
    pub version: u64,
    pub scheduled: bool,
    pub format: Option<FormatName>,
    pub finished: bool,
    /// First place first.
    pub rows: Vec<StandingLine>,
}

fn side_name(side: Side) -> SideName {
    match side {
        Side::Home => SideName::Home,
        Side::Away => SideName::Away,
    }
}

fn player_line(id: Uuid, t: &Tournament, p: &PlayerRef) -> PlayerLine {
    let team = t.players.iter().find(|q| q.name == p.name && q.surname == p.surname).and_then(|q| q.drawn_team);
    PlayerLine {
        player_id: player_id(id, p.name.as_str(), p.surname.as_str()),
        name: p.name.to_string(),
        surname: p.surname.to_string(),
        team: team.map(|team| team.name().to_owned()),
    }
}

fn tournament(state: &TournamentState) -> Result<&Tournament, Problem> {
    state
        .tournament
        .as_ref()
        .ok_or_else(|| Problem::from(domain::service::AppError::Rule(domain::DomainError::TournamentNotFound)))
}

fn format_name(night: &Night) -> (FormatName, Option<u8>) {
    match night.format {
        Format::League { legs } => (FormatName::League, Some(legs.count())),
        Format::Knockout => (FormatName::Knockout, None),
    }
}

fn match_view(id: Uuid, t: &Tournament, night: &Night, number: u16) -> Option<MatchView> {
    let fixture = night.fixture(number)?;
    let (home, away) = night.sides(number);
    let from = |slot: &Slot| match slot {
        Slot::WinnerOf { number } => Some(*number),
        Slot::Player { .. } => None,
    };
    let result = night.result(number).map(|r| ResultView {
        home_goals: r.home_goals.get(),
        away_goals: r.away_goals.get(),
        penalty_winner: r.penalty_winner.map(side_name),
        winner_id: night.winner(number).map(|w| player_id(id, w.name.as_str(), w.surname.as_str())),
        recorded_by: match &r.recorded_by {
            Recorder::Organiser => RecordedBy { kind: "organiser".to_owned(), player_id: None },
            Recorder::Player { name, surname } => RecordedBy {
                kind: "player".to_owned(),
                player_id: Some(player_id(id, name.as_str(), surname.as_str())),
            },
        },
        corrected: r.corrected,
    });
    Some(MatchView {
        number,
        round: fixture.round,
        leg: fixture.leg,
        home: home.map(|p| player_line(id, t, &p)),
        away: away.map(|p| player_line(id, t, &p)),
        home_from: from(&fixture.home),
        away_from: from(&fixture.away),
        status: match night.status(number) {
            MatchStatus::Waiting => StatusName::Waiting,
            MatchStatus::Ready => StatusName::Ready,
            MatchStatus::Played => StatusName::Played,
        },
        result,
    })
}

/// The fixtures of a tournament state (unscheduled: empty, `scheduled: false`).
pub fn fixtures_view(id: Uuid, state: &TournamentState) -> Result<FixturesView, Problem> {
    let t = tournament(state)?;
    let Some(night) = t.night.as_ref() else {
        return Ok(FixturesView {
            version: state.version,
            scheduled: false,
            format: None,
            legs: None,
            players_may_record: false,
            finished: false,
            rounds: Vec::new(),
            matches: Vec::new(),
            champion: None,
        });
    };
    let (format, legs) = format_name(night);
    let rounds = (1..=night.rounds())
        .map(|round| RoundView {
            round,
            leg: night.fixtures.iter().find(|f| f.round == round).map_or(1, |f| f.leg),
            byes: night.byes(round).iter().map(|p| player_line(id, t, p)).collect(),
        })
        .collect();
    Ok(FixturesView {
        version: state.version,
        scheduled: true,
        format: Some(format),
        legs,
        players_may_record: night.players_may_record,
        finished: night.finished,
        rounds,
        matches: night.numbers().filter_map(|n| match_view(id, t, night, n)).collect(),
        champion: night.champion().map(|p| player_line(id, t, &p)),
    })
}

/// The table of a tournament state (unscheduled: no rows, `scheduled: false`).
pub fn standings_view(id: Uuid, state: &TournamentState) -> Result<StandingsView, Problem> {
    let t = tournament(state)?;
    let Some(night) = t.night.as_ref() else {
        return Ok(StandingsView {
            version: state.version,
            scheduled: false,
            format: None,
            finished: false,
            rows: vec![],
        });
    };
    let rows = standings(night)
        .into_iter()
        .zip(1..)
        .map(|(s, position)| {
            let line = player_line(id, t, &s.player);
            StandingLine {
                position,
                player_id: line.player_id,
                name: line.name,
                surname: line.surname,
                team: line.team,
                played: s.played,
                won: s.won,
                drawn: s.drawn,
                lost: s.lost,
                goals_for: s.goals_for,
                goals_against: s.goals_against,
                goal_difference: s.goal_difference(),
                points: s.points,
                reached_round: s.reached_round,
                eliminated: s.eliminated,
                champion: s.champion,
                next_match: night.next_match_of(&s.player),
            }
        })
        .collect();
    Ok(StandingsView {
        version: state.version,
        scheduled: true,
        format: Some(format_name(night).0),
        finished: night.finished,
        rows,
    })
}

fn format_of(body: &ScheduleBody) -> Result<Format, ApiError> {
    // Checked whatever the format, so a value out of range is never silently taken.
    let legs = Legs::new(body.legs.unwrap_or(1))?;
    match body.format {
        FormatName::League => Ok(Format::League { legs }),
        FormatName::Knockout => Ok(Format::Knockout),
    }
}

fn score_of(body: &ResultBody) -> Result<Score, ApiError> {
    Ok(Score {
        home: Goals::new(body.home_goals)?,
        away: Goals::new(body.away_goals)?,
        penalty_winner: body.penalty_winner.map(|side| match side {
            SideName::Home => Side::Home,
            SideName::Away => Side::Away,
        }),
    })
}

fn match_number(raw: &str) -> Result<u16, Problem> {
    raw.trim().parse::<u16>().ok().filter(|n| *n >= 1).ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "The match number must be a whole number from 1 to 65535.",
        )
    })
}

/// Who a result comes from: the organiser token, or a player token of this tournament.
async fn recorder(state: &AppState, id: Uuid, headers: &HeaderMap) -> Result<Recorder, Problem> {
    let token = bearer(headers).ok_or_else(|| {
        Problem::unauthorized("The organiser token or a player token is required (Authorization: Bearer).")
    })?;
    if state.tokens.is_organiser(id, token)? {
        return Ok(Recorder::Organiser);
    }
    let (name, surname) = require_player(state, id, headers).await?;
    Ok(Recorder::Player { name, surname })
}

/// Schedules the night's matches once, after the draw (organiser).
#[utoipa::path(post, path = "/api/v2/tournaments/{id}/fixtures", tag = "v2", operation_id = "v2ScheduleFixtures",
    params(TournamentPath, IdempotencyKeyHeader), request_body = ScheduleBody, security(("organiser" = [])),
    responses(
        (status = 201, description = "Scheduled: every match of the night", body = FixturesView),
        (status = 400, response = v2::BadRequest),
        (status = 401, response = v2::Unauthorized),
        (status = 403, response = v2::Forbidden),
        (status = 404, response = v2::NotFound),
        (status = 409, response = v2::Conflict),
        (status = 413, response = v2::PayloadTooLarge),
        (status = 422, response = v2::KeyReused),
        (status = 429, response = v2::TooManyRequests),
        (status = 503, response = v2::Unavailable)))]
pub async fn schedule(
    State(state): State<AppState>,
    PathOf(id): PathOf<String>,
    headers: HeaderMap,
    Body(body, raw): Body<ScheduleBody>,
) -> Result<Response, Problem> {
    let id = tournament_id(&id)?;
    require_organiser(&state, id, &headers)?;
    let command = {
        let state = state.clone();
        async move {
            let format = format_of(&body)?;
            let scheduled = state
                .service
                .schedule_fixtures(metadata(&state), id, format, body.players_may_record, rand::random())
                .await?;
            Ok((StatusCode::CREATED, json_of(&fixtures_view(id, &scheduled)?)))
        }
    };
    once(&state, &headers, &format!("fixtures|{id}"), KeyRule::Any, &raw, command).await
}

/// The schedule with every match's players, status and result.
#[utoipa::path(get, path = "/api/v2/tournaments/{id}/fixtures", tag = "v2", operation_id = "v2GetFixtures",
    params(TournamentPath),
    responses(
        (status = 200, description = "The fixtures (`scheduled` is false before the organiser schedules)", body = FixturesView),
        (status = 400, response = v2::BadRequest),
        (status = 404, response = v2::NotFound),
        (status = 503, response = v2::Unavailable)))]
pub async fn fixtures(
    State(state): State<AppState>,
    PathOf(id): PathOf<String>,
) -> Result<Json<FixturesView>, Problem> {
    let id = tournament_id(&id)?;
    Ok(Json(fixtures_view(id, &state.service.get(id).await?)?))
}

/// Records the result of a match, or corrects it (organiser). A player token records only the
/// player's own matches, and only when the organiser allowed it; the same result again changes
/// nothing.
#[utoipa::path(post, path = "/api/v2/tournaments/{id}/matches/{number}/result", tag = "v2", operation_id = "v2RecordResult",
    params(TournamentPath, MatchPath, IdempotencyKeyHeader), request_body = ResultBody,
    security(("organiser" = []), ("player" = [])),
    responses(
        (status = 200, description = "Recorded, corrected, or already this result: the fixtures", body = FixturesView),
        (status = 400, response = v2::BadRequest),
        (status = 401, response = v2::Unauthorized),
        (status = 403, response = v2::Forbidden),
        (status = 404, response = v2::NotFound),
        (status = 409, response = v2::Conflict),
        (status = 413, response = v2::PayloadTooLarge),
        (status = 422, response = v2::KeyReused),
        (status = 429, response = v2::TooManyRequests),
        (status = 503, response = v2::Unavailable)))]
pub async fn record(
    State(state): State<AppState>,
    PathOf((id, number)): PathOf<(String, String)>,
    headers: HeaderMap,
    Body(body, raw): Body<ResultBody>,
) -> Result<Response, Problem> {
    let id = tournament_id(&id)?;
    let number = match_number(&number)?;
    let by = recorder(&state, id, &headers).await?;
    let who = match &by {
        Recorder::Organiser => "organiser".to_owned(),
        Recorder::Player { name, surname } => player_id(id, name.as_str(), surname.as_str()).to_string(),
    };
    let command = {
        let state = state.clone();
        async move {
            let score = score_of(&body)?;
            let recorded = state.service.record_result(metadata(&state), id, number, score, by).await?;
            Ok((StatusCode::OK, json_of(&fixtures_view(id, &recorded)?)))
        }
    };
    once(&state, &headers, &format!("result|{id}|{number}|{who}"), KeyRule::Any, &raw, command).await
}

/// Marks the night finished once every match has a result (organiser); answers the final
/// table. Repeatable.
#[utoipa::path(post, path = "/api/v2/tournaments/{id}/finish", tag = "v2", operation_id = "v2FinishNight",
    params(TournamentPath, IdempotencyKeyHeader), security(("organiser" = [])),
    responses(
        (status = 200, description = "Finished: the final table", body = StandingsView),
        (status = 400, response = v2::BadRequest),
        (status = 401, response = v2::Unauthorized),
        (status = 403, response = v2::Forbidden),
        (status = 404, response = v2::NotFound),
        (status = 409, response = v2::Conflict),
        (status = 422, response = v2::KeyReused),
        (status = 429, response = v2::TooManyRequests),
        (status = 503, response = v2::Unavailable)))]
pub async fn finish(
    State(state): State<AppState>,
    PathOf(id): PathOf<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let id = tournament_id(&id)?;
    require_organiser(&state, id, &headers)?;
    let command = {
        let state = state.clone();
        async move {
            let finished = state.service.finish_night(metadata(&state), id).await?;
            Ok((StatusCode::OK, json_of(&standings_view(id, &finished)?)))
        }
    };
    once(&state, &headers, &format!("finish|{id}"), KeyRule::Any, b"", command).await
}

/// The table: league by points, goal difference, goals scored, head-to-head, name; knockout by
/// how far each player got. Each line names the player's next match.
#[utoipa::path(get, path = "/api/v2/tournaments/{id}/standings", tag = "v2", operation_id = "v2GetStandings",
    params(TournamentPath),
    responses(
        (status = 200, description = "The table (no rows before the organiser schedules)", body = StandingsView),
        (status = 400, response = v2::BadRequest),
        (status = 404, response = v2::NotFound),
        (status = 503, response = v2::Unavailable)))]
pub async fn table(State(state): State<AppState>, PathOf(id): PathOf<String>) -> Result<Json<StandingsView>, Problem> {
    let id = tournament_id(&id)?;
    Ok(Json(standings_view(id, &state.service.get(id).await?)?))
}
