//! The floor of the fan-out benchmark: the least a server must do to give the harness's SignalR
//! clients what lct gives them, and nothing more. `lct-bench floor-server --listen <addr>
//! --redis-url <url>` accepts WebSockets at `/hubs/actions?tournamentId=<lobby>`, answers the
//! JSON hub protocol handshake, and for a `TeamClicked` invocation answers its completion,
//! writes the lobby's pre-encoded click list (the bytes lct sends, from
//! [`live::messages::encode_clicks`]) to every local socket of the lobby and publishes the same
//! bytes on Redis, where the other process hears them and writes them to its own sockets.
//!
//! No store, no application state beyond which sockets are in which lobby, no per-click JSON
//! parsing: a click record is scanned for its invocation id, team and player, and the list
//! frame and the Redis command for that click are encoded once and reused. The list holds the
//! clicker's latest click only, which is lct's list when one player clicks, as in the harness.
//! Redis is spoken in hand-written RESP: PUBLISH pipelined on one connection, PSUBSCRIBE on
//! another.

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};
use uuid::Uuid;

const RECORD_SEPARATOR: char = '\u{1e}';
/// Channels are `floor:<lobby>`.
const CHANNEL_PREFIX: &str = "floor:";
/// Each publication starts with its process's tag, so a process skips what it published.
const TAG_LEN: usize = 16;

/// What one click of a player on a team sends, encoded once.
struct Encoded {
    frame: Utf8Bytes,
    publish: Bytes,
}

#[derive(Default)]
struct Lobby {
    sockets: Vec<(u64, mpsc::UnboundedSender<Message>)>,
    /// Keyed by the click's team, name and surname as they appear in the record.
    clicks: HashMap<String, Arc<Encoded>>,
}

struct State {
    tag: [u8; TAG_LEN],
    lobbies: Mutex<HashMap<Uuid, Lobby>>,
    publish: mpsc::UnboundedSender<Bytes>,
    next_socket: AtomicU64,
}

impl State {
    fn deliver(&self, lobby: Uuid, frame: &Utf8Bytes) {
        let lobbies = self.lobbies.lock().unwrap();
        if let Some(lobby) = lobbies.get(&lobby) {
            for (_, socket) in &lobby.sockets {
                let _ = socket.send(Message::Text(frame.clone()));
            }
        }
    }
}

pub async fn serve(listen: &str, redis_url: &str) -> anyhow::Result<()> {
    let redis = redis_url
        .strip_prefix("redis://")
        .context("the floor speaks to one Redis: redis://host:port")?
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let (publish, outgoing) = mpsc::unbounded_channel();
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&Uuid::new_v4().simple().to_string().as_bytes()[..TAG_LEN]);
    let state = Arc::new(State { tag, lobbies: Mutex::default(), publish, next_socket: AtomicU64::new(0) });
    let publisher = TcpStream::connect(&redis).await.with_context(|| format!("connecting to Redis at {redis}"))?;
    publisher.set_nodelay(true)?;
    tokio::spawn(publish_loop(publisher, outgoing));
    let mut subscriber = TcpStream::connect(&redis).await?;
    subscriber.write_all(&command(&[b"PSUBSCRIBE", format!("{CHANNEL_PREFIX}*").as_bytes()])).await?;
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    tokio::spawn(subscribe_loop(subscriber, Arc::clone(&state), subscribed_tx));
    subscribed.await.context("the Redis subscription failed")?;

    let listener = TcpListener::bind(listen).await?;
    println!("{}", serde_json::json!({"message": "listening", "addr": listener.local_addr()?.to_string()}));
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, Arc::clone(&state)));
    }
}

/// One RESP command of bulk strings.
fn command(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Writes the queued PUBLISH commands, as many at once as are queued, and discards the replies.
async fn publish_loop(stream: TcpStream, mut outgoing: mpsc::UnboundedReceiver<Bytes>) {
    let (mut reader, mut writer) = stream.into_split();
    tokio::spawn(async move {
        let mut sink = vec![0u8; 16 * 1024];
        while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    let mut batch = Vec::with_capacity(64 * 1024);
    while let Some(first) = outgoing.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < 256 * 1024 {
            match outgoing.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if writer.write_all(&batch).await.is_err() {
            eprintln!("the Redis publishing connection closed");
            std::process::exit(1);
        }
    }
}

/// A RESP value, as far as the subscriber needs one.
#[derive(Debug, PartialEq)]
enum Resp {
    Bulk(Vec<u8>),
    Array(Vec<Resp>),
    Other,
}

/// Parses one RESP value at the start of `input`: the value and the bytes it took, `None` when
/// more bytes are needed.
fn parse(input: &[u8]) -> anyhow::Result<Option<(Resp, usize)>> {
    let Some(end) = input.windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
    let line = std::str::from_utf8(&input[1..end])?;
    let after = end + 2;
    match input[0] {
        b'$' => {
            let len: i64 = line.parse()?;
            if len < 0 {
                return Ok(Some((Resp::Other, after)));
            }
            let len = len as usize;
            if input.len() < after + len + 2 {
                return Ok(None);
            }
            Ok(Some((Resp::Bulk(input[after..after + len].to_vec()), after + len + 2)))
        }
        b'*' | b'>' => {
            let count: i64 = line.parse()?;
            let mut items = Vec::new();
            let mut at = after;
            for _ in 0..count.max(0) {
                match parse(&input[at..])? {
                    Some((item, used)) => {
                        items.push(item);
                        at += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Resp::Array(items), at)))
        }
        b'+' | b':' => Ok(Some((Resp::Other, after))),
        b'-' => bail!("Redis answered an error: {line}"),
        other => bail!("unexpected RESP type byte {other}"),
    }
}

/// Reads the pattern subscription's messages and writes each other process's frame to the
/// local sockets of its lobby.
async fn subscribe_loop(mut stream: TcpStream, state: Arc<State>, subscribed: tokio::sync::oneshot::Sender<()>) {
    let mut subscribed = Some(subscribed);
    let mut buffer = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("the Redis subscription closed");
                std::process::exit(1);
            }
        };
        buffer.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        loop {
            let (value, used) = match parse(&buffer[at..]) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => break,
                Err(error) => {
                    eprintln!("the Redis subscription failed: {error}");
                    std::process::exit(1);
                }
            };
            at += used;
            let Resp::Array(items) = value else { continue };
            match items.as_slice() {
                [Resp::Bulk(kind), ..] if kind == b"psubscribe" => {
                    if let Some(subscribed) = subscribed.take() {
                        let _ = subscribed.send(());
                    }
                }
                [Resp::Bulk(kind), _, Resp::Bulk(channel), Resp::Bulk(payload)] if kind == b"pmessage" => {
                    on_publication(&state, channel, payload);
                }
                _ => {}
            }
        }
        buffer.drain(..at);
    }
}

fn on_publication(state: &State, channel: &[u8], payload: &[u8]) {
    if payload.len() < TAG_LEN || payload[..TAG_LEN] == state.tag {
        return;
    }
    let lobby = std::str::from_utf8(channel)
        .ok()
        .and_then(|c| c.strip_prefix(CHANNEL_PREFIX))
        .and_then(|id| Uuid::parse_str(id).ok());
    let (Some(lobby), Ok(frame)) = (lobby, Utf8Bytes::try_from(Bytes::copy_from_slice(&payload[TAG_LEN..]))) else {
        return;
    };
    state.deliver(lobby, &frame);
}

/// The lobby named by `tournamentId` in the request's query.
fn lobby_of(request: &Request) -> Option<Uuid> {
    if request.uri().path() != "/hubs/actions" {
        return None;
    }
    request.uri().query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.eq_ignore_ascii_case("tournamentId").then(|| Uuid::parse_str(value).ok()).flatten()
    })
}

async fn connection(stream: TcpStream, state: Arc<State>) {
    let mut lobby = None;
    // lct's WebSocket settings, so memory per connection compares like with like.
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(Some(32 * 1024))
        .max_frame_size(Some(32 * 1024));
    // The handshake library's own callback signature returns its error response unboxed.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        lobby = lobby_of(request);
        match lobby {
            Some(_) => Ok(response),
            None => {
                let mut refusal = ErrorResponse::new(Some("expected /hubs/actions?tournamentId=<uuid>".into()));
                *refusal.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::NOT_FOUND;
                Err(refusal)
            }
        }
    };
    let accepted = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await;
    let (Ok(socket), Some(lobby)) = (accepted, lobby) else { return };
    let (mut sink, mut stream) = socket.split();
    // The handshake: `{"protocol":"json","version":1}␞`, answered `{}␞`.
    let rest = match stream.next().await {
        Some(Ok(Message::Text(text))) => match text.as_str().split_once(RECORD_SEPARATOR) {
            Some((request, rest)) if request.contains("\"protocol\":\"json\"") => rest.to_owned(),
            _ => return,
        },
        _ => return,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = state.next_socket.fetch_add(1, Ordering::Relaxed);
    state.lobbies.lock().unwrap().entry(lobby).or_default().sockets.push((id, tx.clone()));
    if sink.send(Message::text("{}\u{1e}")).await.is_err() {
        forget(&state, lobby, id);
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.feed(message).await.is_err() {
                return;
            }
            while let Ok(more) = rx.try_recv() {
                if sink.feed(more).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let mut pending = rest;
    loop {
        for record in pending.split(RECORD_SEPARATOR).filter(|r| !r.is_empty()) {
            if let Some(reply) = on_record(&state, lobby, record) {
                let _ = tx.send(Message::text(reply));
            }
        }
        pending = match stream.next().await {
            Some(Ok(Message::Text(text))) => text.as_str().to_owned(),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => String::new(),
        };
    }
    forget(&state, lobby, id);
    drop(tx);
    let _ = writer.await;
}

fn forget(state: &State, lobby: Uuid, id: u64) {
    let mut lobbies = state.lobbies.lock().unwrap();
    if let Some(entry) = lobbies.get_mut(&lobby) {
        entry.sockets.retain(|(socket, _)| *socket != id);
        if entry.sockets.is_empty() {
            lobbies.remove(&lobby);
        }
    }
}

/// The string value of `"key":"…"` in a record, without unescaping.
fn field<'a>(record: &'a str, key: &str) -> Option<&'a str> {
    let start = record.find(key)? + key.len();
    let rest = &record[start..];
    Some(&rest[..rest.find('"')?])
}

/// A hub record: a click is delivered locally and published, and answered with its completion
/// when it has an invocation id (pings and anything else need no answer).
fn on_record(state: &State, lobby: Uuid, record: &str) -> Option<String> {
    if !record.starts_with("{\"type\":1,") {
        return None;
    }
    let id = field(record, "\"invocationId\":\"");
    let completion = |error: Option<&str>| {
        let id = id?;
        Some(match error {
            Some(error) => format!("{{\"type\":3,\"invocationId\":\"{id}\",\"error\":\"{error}\"}}\u{1e}"),
            None => format!("{{\"type\":3,\"invocationId\":\"{id}\"}}\u{1e}"),
        })
    };
    let click = (field(record, "\"team\":\""), field(record, "\"name\":\""), field(record, "\"surname\":\""));
    let (Some(team), Some(name), Some(surname)) = click else {
        return completion(Some("A click names a team and a player."));
    };
    let encoded = {
        let mut lobbies = state.lobbies.lock().unwrap();
        let entry = lobbies.entry(lobby).or_default();
        let key = format!("{team}\u{1f}{name}\u{1f}{surname}");
        match entry.clicks.get(&key) {
            Some(encoded) => Arc::clone(encoded),
            None => {
                let Ok(team) = domain::Team::parse(team) else {
                    return completion(Some("Unknown team."));
                };
                let encoded = Arc::new(encode(state, lobby, team, name, surname));
                entry.clicks.insert(key, Arc::clone(&encoded));
                encoded
            }
        }
    };
    state.deliver(lobby, &encoded.frame);
    let _ = state.publish.send(encoded.publish.clone());
    completion(None)
}

fn encode(state: &State, lobby: Uuid, team: domain::Team, name: &str, surname: &str) -> Encoded {
    let click = live::ports::Click { team, name: name.to_owned(), surname: surname.to_owned(), at_ms: 0 };
    let frame: String =
        live::messages::encode_clicks(lobby, &[click]).signalr.expect("click lists have a SignalR record");
    let mut payload = state.tag.to_vec();
    payload.extend_from_slice(frame.as_bytes());
    let channel = format!("{CHANNEL_PREFIX}{lobby}");
    Encoded { frame: frame.into(), publish: command(&[b"PUBLISH", channel.as_bytes(), &payload]).into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_values_are_read_whole_or_not_at_all() {
        let message = b"*4\r\n$8\r\npmessage\r\n$7\r\nfloor:*\r\n$7\r\nfloor:x\r\n$3\r\nabc\r\n";
        let (value, used) = parse(message).unwrap().unwrap();
        assert_eq!(used, message.len());
        let bulk = |s: &[u8]| Resp::Bulk(s.to_vec());
        assert_eq!(value, Resp::Array(vec![bulk(b"pmessage"), bulk(b"floor:*"), bulk(b"floor:x"), bulk(b"abc")]));
        for cut in 0..message.len() {
            assert!(parse(&message[..cut]).unwrap().is_none(), "{cut} bytes are not a whole message");
        }
        assert_eq!(parse(b":1\r\n").unwrap(), Some((Resp::Other, 4)));
        assert!(parse(b"-ERR no\r\n").is_err());
    }

    #[test]
    fn a_click_reaches_local_sockets_and_redis_as_the_bytes_lct_sends() {
        let (publish, mut published) = mpsc::unbounded_channel();
        let state =
            State { tag: *b"0123456789abcdef", lobbies: Mutex::default(), publish, next_socket: AtomicU64::new(0) };
        let lobby = Uuid::new_v4();
        let (socket, mut frames) = mpsc::unbounded_channel();
        state.lobbies.lock().unwrap().entry(lobby).or_default().sockets.push((0, socket));
        let record = format!(
            r#"{{"type":1,"target":"TeamClicked","invocationId":"4","arguments":[{{"groupKey":"{lobby}","team":"PSG","name":"Driver","surname":"L1"}}]}}"#
        );
        for _ in 0..2 {
            assert_eq!(on_record(&state, lobby, &record).as_deref(), Some("{\"type\":3,\"invocationId\":\"4\"}\u{1e}"));
            let click =
                live::ports::Click { team: domain::Team::Psg, name: "Driver".into(), surname: "L1".into(), at_ms: 0 };
            let lct: String = live::messages::encode_clicks(lobby, &[click]).signalr.unwrap();
            assert_eq!(frames.try_recv().unwrap(), Message::text(lct.clone()));
            let mut payload = b"0123456789abcdef".to_vec();
            payload.extend_from_slice(lct.as_bytes());
            let channel = format!("floor:{lobby}");
            assert_eq!(published.try_recv().unwrap(), command(&[b"PUBLISH", channel.as_bytes(), &payload]));
        }
        let unknown = record.replace("PSG", "Nobody FC");
        let answer = on_record(&state, lobby, &unknown).unwrap();
        assert!(answer.contains("\"error\""), "{answer}");
        assert!(frames.try_recv().is_err() && published.try_recv().is_err(), "a refused click is not sent");
        assert_eq!(on_record(&state, lobby, "{\"type\":6}"), None);
    }

    #[test]
    fn a_click_record_is_read_without_parsing_its_json() {
        let record = r#"{"type":1,"target":"TeamClicked","invocationId":"7","arguments":[{"groupKey":"g","team":"Real Madrid","name":"Driver","surname":"L3"}]}"#;
        assert_eq!(field(record, "\"invocationId\":\""), Some("7"));
        assert_eq!(field(record, "\"team\":\""), Some("Real Madrid"));
        assert_eq!(field(record, "\"name\":\""), Some("Driver"));
        assert_eq!(field(record, "\"surname\":\""), Some("L3"));
    }
}
