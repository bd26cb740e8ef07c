//! The v2 live socket `/api/v2/tournaments/{id}/live?since={version}`: plain JSON messages
//! carrying the stream version; events after `since` are replayed from the store, then the
//! stream goes on live without a gap or a duplicate at the seam.
//!
//! A player token makes the connection count as that player being online. It goes in the
//! `Sec-WebSocket-Protocol` header (subprotocols `lct.v2, lct.token.<token>`, the server
//! answering `lct.v2`), which proxies do not log as they log a URL; `?token=` is still read.

use super::session::{self, ListenOnly, Outbox};
use crate::context;
use crate::error::ApiError;
use crate::extract::{parse_uuid, CiQuery};
use crate::upgrade_guard::LiveSlot;
use crate::v2::problem::Problem;
use crate::v2::tournaments::PathOf;
use crate::AppState;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::Response;
use live::ports::PresenceEntry;
use live::Protocol;
use uuid::Uuid;

/// The subprotocol the server answers a client that offers it.
const SUBPROTOCOL: &str = "lct.v2";
/// The prefix of the subprotocol that carries a player token.
const TOKEN_SUBPROTOCOL: &str = "lct.token.";

/// The player token offered as a subprotocol, if any.
fn offered_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|protocol| protocol.trim().strip_prefix(TOKEN_SUBPROTOCOL))
}

pub async fn live(
    State(state): State<AppState>,
    PathOf(id): PathOf<String>,
    query: CiQuery,
    headers: HeaderMap,
    slot: Option<Extension<LiveSlot>>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, Problem> {
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
    let online_as = match offered_token(&headers).or(query.get("token")) {
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
    let (hub, presence) = (state.live.hub.clone(), state.live.presence.clone());
    drop(state);
    let tracker = hub.tracker().clone();
    Ok(session::configure(upgrade).protocols([SUBPROTOCOL]).on_upgrade(move |socket| {
        let joining = Box::pin(join(hub, presence, tournament, since, online_as));
        tracker.track_future(run(joining, socket, slot))
    }))
}

/// What a live connection holds while it is open: its membership of the feed, and of the
/// players online when it connects with a player token.
type Joined =
    (::live::Membership<super::Frame>, ::live::QueueReceiver<super::Frame>, Option<::live::Online<super::Frame>>);

async fn join(
    hub: super::Hub,
    presence: ::live::Presence<super::Frame>,
    tournament: Uuid,
    since: Option<u64>,
    online_as: Option<PresenceEntry>,
) -> Joined {
    let (membership, queue) = hub.subscribe(tournament, Protocol::V2, since).await;
    let online = match online_as {
        Some(entry) => Some(presence.connected(tournament, entry).await),
        None => None,
    };
    (membership, queue, online)
}

/// The life of a live connection. Its task keeps this future (sized for its largest state) as
/// long as the connection is open, so it holds the socket once and what the session needs:
/// joining is boxed, and the session borrows the socket (see `session`).
async fn run(
    joining: std::pin::Pin<Box<dyn std::future::Future<Output = Joined> + Send>>,
    mut socket: WebSocket,
    slot: Option<Extension<LiveSlot>>,
) {
    let (membership, queue, _online) = joining.await;
    // Clients send nothing but pongs and close; reading keeps the timeout honest.
    let outbox = Outbox::new(4, 1024);
    session::serve(&mut socket, queue, outbox, ListenOnly, &membership.control, Protocol::V2).await;
    drop(slot);
}
