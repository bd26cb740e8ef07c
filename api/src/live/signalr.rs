//! The SignalR-compatible hub at `/hubs/actions`: negotiation (WebSockets only), the JSON hub
//! protocol v1 handshake, server invocations per tournament, pings, close, and the
//! `TeamClicked` hub method.

use super::records::{completion_json, ClickArgs, Record};
use super::session::{self, signalr_record, Flow, Outbox, HANDSHAKE_TIMEOUT};
use crate::context;
use crate::error::ApiError;
use crate::extract::CiQuery;
use crate::ratelimit::ClientCommands;
use crate::upgrade_guard::LiveSlot;
use crate::v2::tokens::{KeyPending, CONNECTION_PREFIX};
use crate::AppState;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use domain::{PlayerName, PlayerSurname, Team};
use futures::StreamExt;
use live::messages::RECORD_SEPARATOR;
use live::{ClickError, Protocol};
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a negotiated connection token stays valid.
const TOKEN_TTL: Duration = Duration::from_secs(60);

/// `POST /hubs/actions/negotiate`: answers a WebSockets-only transport list with a connection
/// token.
///
/// The token is signed with the pod's token key, so any pod accepts it within [`TOKEN_TTL`]
/// without shared state: negotiation works while Redis is down. It is also kept in the shared
/// store when that answers, where pods of the previous release look tokens up. A pod that does
/// not hold the token key yet issues one of those stored tokens alone.
pub async fn negotiate(State(state): State<AppState>, query: CiQuery) -> Result<Json<Value>, ApiError> {
    let version: u32 = query.get("negotiateversion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let tournament = match query.get("tournamentid") {
        Some(raw) => Some(crate::extract::parse_uuid(raw, "tournamentId")?),
        None => None,
    };
    let bound = tournament.map(|t| t.to_string()).unwrap_or_default();
    // A signed token needs the shared store only for pods of the previous release.
    let (token, signed) = match state.tokens.connection(tournament, unix_seconds() + TOKEN_TTL.as_secs()) {
        Ok(signed) => (signed, true),
        Err(KeyPending) => (Uuid::new_v4().simple().to_string(), false),
    };
    match state.live.shared.put_token(&token, &bound, TOKEN_TTL).await {
        Ok(()) => {}
        Err(error) if signed => {
            tracing::debug!(cause = %error, "a connection token is not kept for pods of the previous release");
        }
        Err(error) => {
            tracing::error!(cause = %error, "cannot store a connection token");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "A dependency is unavailable; try again shortly.",
            ));
        }
    }
    let transports = json!([{"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}]);
    Ok(Json(if version >= 1 {
        let connection_id = Uuid::new_v4().simple().to_string();
        json!({"negotiateVersion": 1, "connectionId": connection_id, "connectionToken": token, "availableTransports": transports})
    } else {
        // Version 0 clients connect with the connection id: it is the token.
        json!({"negotiateVersion": 0, "connectionId": token, "availableTransports": transports})
    }))
}

/// Whether a connection with `token` may connect to `tournament`: a signed token that has not
/// expired and binds this tournament or none, or a stored token (of a pod of the previous
/// release, or of one without the token key) taken once from the shared store.
async fn token_admits(state: &AppState, token: &str, tournament: Uuid) -> Result<bool, ApiError> {
    let unavailable = |error: &dyn std::fmt::Display| {
        tracing::error!(cause = %error, "cannot check a connection token");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "A dependency is unavailable; try again shortly.")
    };
    if token.starts_with(CONNECTION_PREFIX) {
        let grant = state.tokens.connection_grant(token).map_err(|error| unavailable(&error))?;
        return Ok(grant.is_some_and(|grant| {
            grant.expires >= unix_seconds() && grant.tournament.is_none_or(|bound| bound == tournament)
        }));
    }
    let bound = state.live.shared.take_token(token).await.map_err(|error| unavailable(&error))?;
    Ok(bound.is_some_and(|bound| bound.is_empty() || bound == tournament.to_string()))
}

/// Seconds since the Unix epoch (the clock pods share, unlike `Instant`).
fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// `GET /hubs/actions?tournamentId=` (and `&id=<token>` after negotiation), upgraded to a
/// WebSocket.
pub async fn connect(
    State(state): State<AppState>,
    query: CiQuery,
    slot: Option<Extension<LiveSlot>>,
    client: Option<Extension<ClientCommands>>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let tournament = query.uuid("tournamentid", "tournamentId")?;
    context::set_tournament(tournament);
    let upgrade = upgrade.map_err(|_| ApiError::bad_request("This endpoint expects a WebSocket upgrade."))?;
    if let Some(token) = query.get("id") {
        if !token_admits(&state, token, tournament).await? {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "Unknown or expired connection token."));
        }
    }
    state.service.get(tournament).await?;
    let hub = state.live.hub.clone();
    let tracker = hub.tracker().clone();
    let inbound = Box::new(Invocations {
        clicks: state.live.clicks.clone(),
        v1: state.v1,
        tournament,
        limiter: Limiter::new(state.live.invocations_per_second, client.map(|Extension(client)| client)),
        records: Utf8Bytes::from_static(""),
        at: 0,
        click: None,
    });
    drop(state);
    Ok(session::configure(upgrade).on_upgrade(move |socket| tracker.track_future(run(hub, inbound, socket, slot))))
}

/// The life of a hub connection. Its task keeps this future (sized for its largest state) as
/// long as the connection is open, so it holds the socket once and what the session needs:
/// the steps before the session are boxed and borrow the socket (see `session`).
///
/// The hub side of the connection is boxed: it moves from the route to the session without
/// being copied into each future on the way.
async fn run(hub: super::Hub, mut inbound: Box<Invocations>, mut socket: WebSocket, slot: Option<Extension<LiveSlot>>) {
    let Some((membership, queue)) = Box::pin(set_up(&hub, &mut inbound, &mut socket)).await else { return };
    drop(hub);
    let outbox = Outbox::new(session::OUTBOX_FRAMES, session::OUTBOX_BYTES);
    session::serve(&mut socket, queue, outbox, inbound, &membership.control, Protocol::SignalR).await;
    drop(slot);
}

/// The handshake: reads the client's, joins the tournament's feed and answers. `None` when the
/// connection ends there (the client was told why when it can be).
async fn set_up(
    hub: &super::Hub,
    inbound: &mut Invocations,
    socket: &mut WebSocket,
) -> Option<(::live::Membership<super::Frame>, ::live::QueueReceiver<super::Frame>)> {
    let rest = match read_handshake(socket).await {
        Ok(rest) => rest,
        Err(error) => {
            let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
                socket.send(signalr_record(&json!({"error": error}).to_string())).await?;
                socket.send(Message::Close(None)).await
            })
            .await;
            return None;
        }
    };
    // Join the feed before answering, so every event committed after the client sees the
    // answer reaches it.
    let joined = hub.subscribe(inbound.tournament, Protocol::SignalR, None).await;
    let answered = tokio::time::timeout(HANDSHAKE_TIMEOUT, socket.send(signalr_record("{}"))).await;
    if !matches!(answered, Ok(Ok(()))) {
        return None;
    }
    inbound.records = rest;
    Some(joined)
}

/// A `TeamClicked` invocation waiting for its click to be recorded: its id (when the client
/// wants a completion) and the recording.
type PendingClick = (Option<String>, Pin<Box<dyn Future<Output = Result<(), String>> + Send>>);

/// The hub side of a connection: the records of the last frame not yet handled, one at a time,
/// and the click being recorded.
struct Invocations {
    /// Records clicks (the only hub method); what the loop keeps of the application.
    clicks: ::live::Clicks<super::Frame>,
    v1: crate::v1::V1Mode,
    tournament: Uuid,
    limiter: Limiter,
    /// Records of the last frame; those from `at` on are not handled yet.
    records: Utf8Bytes,
    at: usize,
    click: Option<PendingClick>,
}

impl Invocations {
    /// The next record not yet handled, if any.
    fn next_record(&mut self) -> Option<(usize, usize)> {
        let text = self.records.as_str();
        while self.at < text.len() {
            let start = self.at;
            let (end, next) = match text[start..].find(RECORD_SEPARATOR) {
                Some(i) => (start + i, start + i + RECORD_SEPARATOR.len_utf8()),
                None => (text.len(), text.len()),
            };
            self.at = next;
            if !text[start..end].trim().is_empty() {
                return Some((start, end));
            }
        }
        None
    }
}

impl session::Inbound for Invocations {
    fn receive(&mut self, message: Message, outbox: &mut Outbox) -> Flow {
        match message {
            Message::Text(text) => {
                self.records = text;
                self.at = 0;
                Flow::Continue
            }
            Message::Binary(_) => {
                let _ = outbox.push(close_with_error("Binary records are not supported by the JSON protocol."));
                Flow::Close
            }
            Message::Close(_) => Flow::Close,
            _ => Flow::Continue,
        }
    }

    fn poll_work(&mut self, cx: &mut Context<'_>, outbox: &mut Outbox) -> Poll<Flow> {
        loop {
            if let Some((_, recording)) = &mut self.click {
                let result = std::task::ready!(recording.as_mut().poll(cx));
                let (id, _) = self.click.take().expect("a click being recorded");
                if let Some(id) = id {
                    if outbox.push(completion(&id, result.err().as_deref())).is_err() {
                        return Poll::Ready(Flow::Close);
                    }
                }
            }
            let Some((start, end)) = self.next_record() else {
                self.records = Utf8Bytes::from_static("");
                self.at = 0;
                return Poll::Ready(Flow::Continue);
            };
            let reply = handle_record(
                &self.clicks,
                self.v1,
                self.tournament,
                &self.records.as_str()[start..end],
                &mut self.limiter,
            );
            let message = match reply {
                Reply::None => continue,
                Reply::Click(click) => {
                    self.click = Some(click);
                    continue;
                }
                Reply::Send(message) => message,
                Reply::Close(message) => {
                    let _ = outbox.push(message);
                    return Poll::Ready(Flow::Close);
                }
            };
            if outbox.push(message).is_err() {
                return Poll::Ready(Flow::Close);
            }
        }
    }
}

/// Reads `{"protocol":"json","version":1}␞` within the handshake timeout; returns what followed
/// it in the same frame, or the error to answer.
async fn read_handshake(stream: &mut WebSocket) -> Result<Utf8Bytes, String> {
    let first = match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.next()).await {
        Ok(Some(Ok(message))) => message,
        Ok(_) => return Err("The connection closed before the handshake.".into()),
        Err(_) => return Err("No handshake was received in time.".into()),
    };
    let text = match first {
        Message::Text(text) => text.as_str().to_owned(),
        Message::Binary(bytes) => String::from_utf8(bytes.to_vec()).map_err(|_| "The handshake is not text.")?,
        _ => return Err("The handshake request is invalid.".into()),
    };
    let (request, rest) = text.split_once(RECORD_SEPARATOR).unwrap_or((&text, ""));
    match serde_json::from_str::<Value>(request) {
        Ok(v) if v["protocol"] == "json" && v["version"] == 1 => Ok(rest.to_owned().into()),
        Ok(v) if v.get("protocol").is_some() => Err(format!(
            "The protocol '{}' version {} is not supported; use json version 1.",
            v["protocol"].as_str().unwrap_or("?"),
            v["version"]
        )),
        _ => Err("The handshake request is invalid.".into()),
    }
}

enum Reply {
    None,
    Send(Message),
    Close(Message),
    /// A click to record, then to complete.
    Click(PendingClick),
}

fn close_with_error(error: &str) -> Message {
    signalr_record(&json!({"type": 7, "error": error}).to_string())
}

fn completion(invocation_id: &str, error: Option<&str>) -> Message {
    signalr_record(&completion_json(invocation_id, error))
}

/// Handles one record: answers it at once, or starts the recording of a click.
fn handle_record(
    clicks: &::live::Clicks<super::Frame>,
    v1: crate::v1::V1Mode,
    tournament: Uuid,
    record: &str,
    limiter: &mut Limiter,
) -> Reply {
    let Some(record) = Record::parse(record) else {
        return Reply::Close(close_with_error("A record is not valid JSON."));
    };
    match record.kind {
        Some(1) => {
            let invocation_id = record.invocation_id;
            let result = if !v1.allows_writes() {
                Err(v1.write_refusal().message)
            } else if !limiter.allow() {
                Err("Too many invocations; slow down.".to_owned())
            } else if record.target.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("TeamClicked")) {
                let clicks = clicks.clone();
                let arguments = ClickArgs::from_arguments(record.arguments);
                let recording = Box::pin(async move { team_clicked(&clicks, tournament, arguments?).await });
                return Reply::Click((invocation_id, recording));
            } else {
                Err(format!("Unknown hub method '{}'.", record.target.unwrap_or_default()))
            };
            match (invocation_id, result) {
                (Some(id), Ok(())) => Reply::Send(completion(&id, None)),
                (Some(id), Err(error)) => Reply::Send(completion(&id, Some(&error))),
                (None, _) => Reply::None,
            }
        }
        Some(7) => Reply::Close(Message::Close(None)),
        _ => Reply::None,
    }
}

/// The `TeamClicked` hub method with its invocation arguments; the connection's own tournament
/// is authoritative (the `groupKey` argument is ignored). The error is the completion's sentence.
async fn team_clicked(clicks: &::live::Clicks<super::Frame>, tournament: Uuid, args: ClickArgs) -> Result<(), String> {
    let invalid = |error: ApiError| error.message;
    let team = Team::parse(&args.team).map_err(|e| invalid(e.into()))?;
    let name = PlayerName::parse(&args.name).map_err(|e| invalid(e.into()))?;
    let surname = PlayerSurname::parse(&args.surname).map_err(|e| invalid(e.into()))?;
    clicks.record(tournament, team, name, surname).await.map_err(|error: ClickError| ApiError::from(error).message)
}

/// A token bucket of hub invocations per connection, drawing on its client's command rate too.
struct Limiter {
    rate: f64,
    tokens: f64,
    last: Instant,
    /// The client's command rate, shared by all its connections and its POSTs.
    client: Option<ClientCommands>,
}

impl Limiter {
    fn new(rate: f64, client: Option<ClientCommands>) -> Self {
        Self { rate, tokens: 2.0 * rate, last: Instant::now(), client }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(2.0 * self.rate);
        self.last = now;
        if self.tokens < 1.0 || !self.client.as_ref().is_none_or(ClientCommands::allow) {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}
