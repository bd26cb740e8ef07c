//! Real WebSocket clients of the live endpoints, for the end-to-end tests.
#![allow(dead_code)]

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for an expected message before failing.
pub const WAIT: Duration = Duration::from_secs(20);
/// How often the test clients ping, as the official client does.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// A SignalR JSON-protocol client, speaking the protocol frame by frame.
pub struct SignalR {
    pub socket: Socket,
    pending: Vec<Value>,
    last_sent: std::time::Instant,
}

impl SignalR {
    /// Connects to `/hubs/actions?tournamentId=` without negotiation and completes the handshake.
    pub async fn connect(base: &str, tournament: &str) -> SignalR {
        let url = format!("{}/hubs/actions?tournamentId={tournament}", base.replace("http://", "ws://"));
        Self::connect_url(&url).await
    }

    pub async fn connect_url(url: &str) -> SignalR {
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connect");
        let mut client = SignalR { socket, pending: Vec::new(), last_sent: std::time::Instant::now() };
        client.send_raw("{\"protocol\":\"json\",\"version\":1}\u{1e}").await;
        let first = client.next_record().await.expect("handshake answer");
        assert_eq!(first, serde_json::json!({}), "handshake answer");
        client
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.socket.send(Message::text(text)).await.expect("send");
        self.last_sent = std::time::Instant::now();
    }

    /// The next record of any type, or `None` when the connection closed.
    pub async fn next_record(&mut self) -> Option<Value> {
        loop {
            if !self.pending.is_empty() {
                return Some(self.pending.remove(0));
            }
            // Like real clients, keep the connection alive with pings while waiting.
            let deadline = std::time::Instant::now() + WAIT;
            let message = loop {
                if self.last_sent.elapsed() > KEEP_ALIVE {
                    self.send_raw("{\"type\":6}\u{1e}").await;
                }
                match tokio::time::timeout(KEEP_ALIVE, self.socket.next()).await {
                    Ok(message) => break message?,
                    Err(_) => assert!(std::time::Instant::now() < deadline, "a record in time"),
                }
            };
            match message {
                Ok(Message::Text(text)) => {
                    for record in text.as_str().split('\u{1e}').filter(|r| !r.is_empty()) {
                        self.pending.push(serde_json::from_str(record).expect("records are JSON"));
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
        loop {
            let record = self.next_record().await.expect("connection open");
            if record["type"] == 1 {
                assert_eq!(record["target"], tournament);
                return serde_json::from_str(record["arguments"][0].as_str().expect("string argument")).unwrap();
            }
        }
    }

    /// The next record that is not a ping.
    pub async fn next_non_ping(&mut self) -> Option<Value> {
        loop {
            let record = self.next_record().await?;
            if record["type"] != 6 {
                return Some(record);
            }
        }
    }

    /// The next completion record, skipping pings and invocations.
    pub async fn next_completion(&mut self) -> Value {
        loop {
            let record = self.next_record().await.expect("connection open");
            if record["type"] == 3 {
                return record;
            }
        }
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
}

impl Live {
    pub async fn connect(base: &str, tournament: &str, since: Option<u64>) -> Live {
        let since = since.map(|s| format!("?since={s}")).unwrap_or_default();
        let url = format!("{}/api/v2/tournaments/{tournament}/live{since}", base.replace("http://", "ws://"));
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connect");
        Live { socket }
    }

    /// The next JSON message, or `None` when closed.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await.expect("a message in time")? {
                Ok(Message::Text(text)) => return Some(serde_json::from_str(text.as_str()).unwrap()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}
