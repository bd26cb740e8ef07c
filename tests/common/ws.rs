//! Real WebSocket clients of the live endpoints, for the end-to-end tests.
#![allow(dead_code)]

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Checks that a WebSocket upgrade to `url` is refused with `status` before it happens.
pub async fn expect_refused(url: &str, status: u16) {
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), status, "{url}"),
        other => panic!("{url} must be refused with {status}, got {:?}", other.map(|_| ())),
    }
}

/// How long a test waits for an expected message before failing.
pub const WAIT: Duration = Duration::from_secs(20);
/// How often the test clients ping, as the official client does.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// A SignalR JSON-protocol client, speaking the protocol frame by frame. Like the official
/// client it pings every few seconds whether or not it is reading.
pub struct SignalR {
    sink: Arc<Mutex<SplitSink<Socket, Message>>>,
    stream: SplitStream<Socket>,
    pending: Vec<Value>,
    pinger: tokio::task::JoinHandle<()>,
}

impl Drop for SignalR {
    fn drop(&mut self) {
        self.pinger.abort();
    }
}

impl SignalR {
    /// Connects to `/hubs/actions?tournamentId=` without negotiation and completes the handshake.
    pub async fn connect(base: &str, tournament: &str) -> SignalR {
        let url = format!("{}/hubs/actions?tournamentId={tournament}", base.replace("http://", "ws://"));
        Self::connect_url(&url).await
    }

    pub async fn connect_url(url: &str) -> SignalR {
        Self::connect_request(url).await
    }

    /// Connects with `request` (a URL, or a request with headers of its own) and completes the
    /// handshake.
    pub async fn connect_request(
        request: impl tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin,
    ) -> SignalR {
        let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
            .await
            .expect("connected in time")
            .expect("websocket connect");
        let (sink, stream) = socket.split();
        let sink = Arc::new(Mutex::new(sink));
        let pinger = tokio::spawn({
            let sink = Arc::clone(&sink);
            async move {
                loop {
                    tokio::time::sleep(KEEP_ALIVE).await;
                    if sink.lock().await.send(Message::text("{\"type\":6}\u{1e}")).await.is_err() {
                        return;
                    }
                }
            }
        });
        let mut client = SignalR { sink, stream, pending: Vec::new(), pinger };
        client.send_raw("{\"protocol\":\"json\",\"version\":1}\u{1e}").await;
        let first = client.next_record().await.expect("handshake answer");
        assert_eq!(first, serde_json::json!({}), "handshake answer");
        client
    }

    pub async fn send(&mut self, message: Message) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        self.sink.lock().await.send(message).await
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.send(Message::text(text)).await.expect("send");
    }

    /// The next record other than a ping, or `None` when the connection closed.
    pub async fn next_record(&mut self) -> Option<Value> {
        self.next_matching(|_| true).await
    }

    /// The first record `wanted` accepts; records it passes over stay queued for later calls
    /// (server pings are dropped on arrival). `None` when the connection closed; fails the test
    /// when none comes within `WAIT`.
    pub async fn next_matching(&mut self, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(at) = self.pending.iter().position(&wanted) {
                return Some(self.pending.remove(at));
            }
            let message = tokio::time::timeout_at(deadline, self.stream.next()).await.expect("a record in time")?;
            match message {
                Ok(Message::Text(text)) => {
                    for record in text.as_str().split('\u{1e}').filter(|r| !r.is_empty()) {
                        let record: Value = serde_json::from_str(record).expect("records are JSON");
                        if record["type"] != 6 {
                            self.pending.push(record);
                        }
                    }
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next invocation's payload (the parsed string argument), skipping pings and
    /// completions; asserts the target is the tournament.
    pub async fn next_payload(&mut self, tournament: &str) -> Value {
        let record = self.next_matching(|r| r["type"] == 1).await.expect("connection open");
        assert_eq!(record["target"], tournament);
        serde_json::from_str(record["arguments"][0].as_str().expect("string argument")).unwrap()
    }

    /// The next record that is not a ping.
    pub async fn next_non_ping(&mut self) -> Option<Value> {
        self.next_record().await
    }

    /// The next completion record, skipping pings and invocations.
    pub async fn next_completion(&mut self) -> Value {
        self.next_matching(|r| r["type"] == 3).await.expect("connection open")
    }

    pub async fn click(&mut self, invocation_id: Option<&str>, team: &str, name: &str, surname: &str) {
        let mut record = serde_json::json!({
            "type": 1, "target": "TeamClicked",
            "arguments": [{"groupKey": "ignored", "team": team, "name": name, "surname": surname}],
        });
        if let Some(id) = invocation_id {
            record["invocationId"] = id.into();
        }
        self.send_raw(&format!("{record}\u{1e}")).await;
    }
}

/// A client of the v2 live socket.
pub struct Live {
    pub socket: Socket,
    pending: Vec<Value>,
    /// The version the server said the stream is live from.
    pub live_from: u64,
}

impl Live {
    /// Connects and waits for the server's `Subscribed` message (replayed events before it are
    /// kept and returned first by `next`).
    pub async fn connect(base: &str, tournament: &str, since: Option<u64>) -> Live {
        let since = since.map(|s| format!("?since={s}")).unwrap_or_default();
        let url = format!("{}/api/v2/tournaments/{tournament}/live{since}", base.replace("http://", "ws://"));
        let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connected in time")
            .expect("websocket connect");
        let mut live = Live { socket, pending: Vec::new(), live_from: 0 };
        loop {
            let message = live.receive().await.expect("Subscribed before the socket closes");
            if message["type"] == "Subscribed" {
                live.live_from = message["version"].as_u64().expect("version");
                return live;
            }
            live.pending.push(message);
        }
    }

    /// The next JSON message, or `None` when closed; fails the test when none comes in time.
    pub async fn next(&mut self) -> Option<Value> {
        if !self.pending.is_empty() {
            return Some(self.pending.remove(0));
        }
        self.receive().await
    }

    /// The next presence list received, as player ids (other messages are passed over).
    pub async fn next_presence(&mut self) -> Vec<String> {
        loop {
            let message = self.next().await.expect("the live socket stays open");
            if message["type"] == "Presence" {
                return message["players"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["playerId"].as_str().unwrap().to_owned())
                    .collect();
            }
        }
    }

    async fn receive(&mut self) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await.expect("a message in time")? {
                Ok(Message::Text(text)) => return Some(serde_json::from_str(text.as_str()).unwrap()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}
