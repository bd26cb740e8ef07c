//! One WebSocket connection: a writer task draining the connection's bounded queue (plus
//! pings and control records) and a reader loop, both ending on the connection's cancellation.

use super::hub::{CloseReason, ConnectionControl, Protocol};
use super::messages::RECORD_SEPARATOR;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Server keep-alive when nothing else was sent.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// A client silent for this long is gone.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for the SignalR handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest accepted client message and frame: clients send only small records.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Read buffer per connection; library defaults are sized for bulk transfer, not density.
pub const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Applies the buffer and size limits chosen for many small, mostly idle connections.
pub fn configure(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
}

pub type Sink = SplitSink<WebSocket, Message>;
pub type Stream = SplitStream<WebSocket>;

/// Sends one message unless the connection is cancelled first.
pub async fn send_or_cancel(sink: &mut Sink, message: Message, control: &ConnectionControl) -> bool {
    tokio::select! {
        result = sink.send(message) => result.is_ok(),
        () = control.cancel.cancelled() => false,
    }
}

pub fn signalr_record(json: &str) -> Message {
    let mut record = String::with_capacity(json.len() + 1);
    record.push_str(json);
    record.push(RECORD_SEPARATOR);
    Message::Text(record.into())
}

/// Writes queued frames, control messages and pings until cancelled or the queue ends, then
/// says goodbye in the connection's protocol.
pub async fn write_loop(
    mut sink: Sink,
    mut queue: mpsc::Receiver<Utf8Bytes>,
    mut control_rx: mpsc::Receiver<Message>,
    control: Arc<ConnectionControl>,
    protocol: Protocol,
) {
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            biased;
            () = control.cancel.cancelled() => break,
            message = control_rx.recv() => match message {
                Some(message) => message,
                None => break,
            },
            frame = queue.recv() => match frame {
                Some(frame) => Message::Text(frame),
                None => break,
            },
            _ = ping.tick() => match protocol {
                Protocol::SignalR => signalr_record(r#"{"type":6}"#),
                Protocol::V2 => Message::Ping(Default::default()),
            },
        };
        if !send_or_cancel(&mut sink, message, &control).await {
            break;
        }
        ping.reset();
    }
    control.cancel.cancel();
    let goodbye = match (protocol, control.reason()) {
        (Protocol::SignalR, CloseReason::TooSlow) => Some(signalr_record(
            r#"{"type":7,"error":"The connection fell behind; reconnect to catch up.","allowReconnect":true}"#,
        )),
        (Protocol::SignalR, CloseReason::ShuttingDown) => {
            Some(signalr_record(r#"{"type":7,"error":"Server is shutting down.","allowReconnect":true}"#))
        }
        _ => None,
    };
    let code = match control.reason() {
        CloseReason::TooSlow => 1008,
        CloseReason::ShuttingDown => 1012,
        CloseReason::None => 1000,
    };
    // A client that stopped reading gets a second at most.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        if let Some(goodbye) = goodbye {
            sink.send(goodbye).await?;
        }
        sink.send(Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static("") }))).await?;
        sink.close().await
    })
    .await;
}

/// The next message from the client, or `None` when it left, timed out or was cancelled.
pub async fn next_message(stream: &mut Stream, control: &ConnectionControl) -> Option<Message> {
    tokio::select! {
        () = control.cancel.cancelled() => None,
        next = tokio::time::timeout(CLIENT_TIMEOUT, stream.next()) => match next {
            Ok(Some(Ok(message))) => Some(message),
            _ => None,
        },
    }
}

/// Ends a connection: queued control records (a final close) go out, then the writer stops.
pub async fn finish(
    mut writer: tokio::task::JoinHandle<()>,
    control_tx: mpsc::Sender<Message>,
    control: &ConnectionControl,
) {
    drop(control_tx);
    if tokio::time::timeout(Duration::from_secs(2), &mut writer).await.is_err() {
        control.cancel.cancel();
        let _ = writer.await;
    }
}
