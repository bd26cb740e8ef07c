//! The v2 live socket `/api/v2/tournaments/{id}/live?since={version}`: plain JSON messages
//! carrying the stream version; events after `since` are replayed from the store, then the
//! stream goes on live without a gap or a duplicate at the seam.

use super::session::{self, ListenOnly, Outbox};
use crate::context;
use crate::error::ApiError;
use crate::extract::{parse_uuid, CiQuery};
use crate::upgrade_guard::LiveSlot;
use crate::AppState;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Path, State};
use axum::response::Response;
use live::ports::PresenceEntry;
use live::Protocol;
use uuid::Uuid;

pub async fn live(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: CiQuery,
    slot: Option<Extension<LiveSlot>>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let tournament = parse_uuid(&id, "The tournament id")?;
    context::set_tournament(tournament);
    let since = match query.get("since") {
        Some(raw) => {
            Some(raw.trim().parse::<u64>().map_err(|_| ApiError::bad_request("since must be a version number."))?)
        }
        None => None,
    };
    let upgrade = upgrade.map_err(|_| ApiError::bad_request("This endpoint expects a WebSocket upgrade."))?;
    let current = state.service.get(tournament).await?;
    // With a player token the player counts as online while connected.
    let online_as = match query.get("token") {
        Some(token) => {
            let player = state.tokens.player_of(tournament, token)?.ok_or_else(|| {
                ApiError::new(axum::http::StatusCode::FORBIDDEN, "This token is not a player token of this tournament.")
            })?;
            let t = current.tournament.as_ref();
            let found = t.and_then(|t| {
                t.players
                    .iter()
                    .find(|p| crate::v2::tokens::player_id(tournament, p.name.as_str(), p.surname.as_str()) == player)
            });
            let p = found.ok_or_else(|| {
                ApiError::new(axum::http::StatusCode::FORBIDDEN, "This token's player is not in the tournament.")
            })?;
            Some(PresenceEntry { player_id: player, name: p.name.to_string(), surname: p.surname.to_string() })
        }
        None => None,
    };
    let tracker = state.live.hub.tracker().clone();
    Ok(session::configure(upgrade).on_upgrade(move |socket| {
        tracker.track_future(async move {
            run(state, tournament, since, online_as, socket).await;
            drop(slot);
        })
    }))
}

async fn run(
    state: AppState,
    tournament: Uuid,
    since: Option<u64>,
    online_as: Option<PresenceEntry>,
    socket: WebSocket,
) {
    let (membership, queue) = state.live.hub.subscribe(tournament, Protocol::V2, since).await;
    let _online = match online_as {
        Some(entry) => Some(state.live.presence.connected(tournament, entry).await),
        None => None,
    };
    drop(state);
    // Clients send nothing but pongs and close; reading keeps the timeout honest.
    let outbox = Outbox::new(4, 1024);
    session::serve(socket, queue, outbox, ListenOnly, &membership.control, Protocol::V2).await;
}
