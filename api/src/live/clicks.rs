//! The `TeamClicked` live preview: the team is one of the ten, the player is in the
//! tournament; the latest click of each player is kept (expiring after a day without clicks)
//! and the whole list is broadcast.

use crate::AppState;
use domain::ports::Click;
use domain::{PlayerName, PlayerSurname, Team};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

/// How long a tournament's clicks live after its last click.
pub const CLICK_TTL: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Deserialize)]
struct ClickArgs {
    team: String,
    name: String,
    surname: String,
}

/// Handles the `TeamClicked` hub method with its invocation arguments; the connection's own
/// tournament is authoritative (the `groupKey` argument is ignored).
pub async fn team_clicked(state: &AppState, tournament: Uuid, arguments: &Value) -> Result<(), String> {
    let argument = arguments.get(0).cloned().ok_or("TeamClicked expects one argument.")?;
    let lowered = match argument {
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect()),
        _ => return Err("TeamClicked expects an object argument.".into()),
    };
    let args: ClickArgs = serde_json::from_value(lowered).map_err(|e| format!("Invalid TeamClicked argument: {e}."))?;
    let team = Team::parse(&args.team).map_err(|e| e.to_string())?;
    let name = PlayerName::parse(&args.name).map_err(|e| e.to_string())?;
    let surname = PlayerSurname::parse(&args.surname).map_err(|e| e.to_string())?;
    record(state, tournament, team, name, surname).await
}

/// Validates, records and broadcasts a click (shared by the hub method and the v2 API).
pub async fn record(
    state: &AppState,
    tournament: Uuid,
    team: Team,
    name: PlayerName,
    surname: PlayerSurname,
) -> Result<(), String> {
    let current = state.service.get(tournament).await.map_err(|e| e.to_string())?;
    let joined = current.tournament.as_ref().is_some_and(|t| t.has_player(&name, &surname));
    if !joined {
        return Err("The player has not joined the tournament.".into());
    }
    let click = Click { team, name: name.into(), surname: surname.into(), at_ms: crate::v1::now_ms() };
    let clicks = state.live.shared.record_click(tournament, click, CLICK_TTL).await.map_err(|e| e.to_string())?;
    state.live.hub.broadcast_clicks(tournament, clicks);
    Ok(())
}
