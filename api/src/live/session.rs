//! One WebSocket connection: a writer task draining the connection's bounded queue (plus
//! pings and control records) and a reader loop, both ending on the connection's cancellation.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use live::messages::RECORD_SEPARATOR;
use live::{CloseReason, ConnectionControl, Protocol};
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

/// Sends one message unless `cancelled` completes first. The send is tried first: on a
/// healthy connection it completes at once and the cancellation is not looked at.
async fn send_or_cancel(
    sink: &mut Sink,
    message: Message,
    cancelled: std::pin::Pin<&mut tokio_util::sync::WaitForCancellationFuture<'_>>,
) -> bool {
    tokio::select! {
        biased;
        result = sink.send(message) => result.is_ok(),
        () = cancelled => false,
    }
}

pub fn signalr_record(json: &str) -> Message {
    let mut record = String::with_capacity(json.len() + 1);
    record.push_str(json);
    record.push(RECORD_SEPARATOR);
    Message::Text(record.into())
}

/// Most queued messages one write takes: a connection that fell behind catches up in few
/// writes, and one write stays small.
const COALESCE_MESSAGES: usize = 32;
const COALESCE_BYTES: usize = 16 * 1024;

/// Writes queued frames, control messages and pings until cancelled or the queue ends, then
/// says goodbye in the connection's protocol.
///
/// SignalR records that queued up while the connection was writing go out together in one
/// frame (the protocol allows several records per frame); the v2 socket sends one message per
/// frame. The ping is due when nothing was sent for [`PING_INTERVAL`]; its timer is moved only
/// when it fires, not on every message.
pub async fn write_loop(
    mut sink: Sink,
    mut queue: mpsc::Receiver<Utf8Bytes>,
    mut control_rx: mpsc::Receiver<Message>,
    control: Arc<ConnectionControl>,
    protocol: Protocol,
) {
    let ping = tokio::time::sleep(PING_INTERVAL);
    tokio::pin!(ping);
    // One cancellation future for the connection's life, rather than one per message.
    let cancelled = control.cancel.cancelled();
    tokio::pin!(cancelled);
    let mut last_sent = tokio::time::Instant::now();
    loop {
        let message = tokio::select! {
            biased;
            () = &mut cancelled => break,
            message = control_rx.recv() => match message {
                Some(message) => message,
                None => break,
            },
            frame = queue.recv() => match frame {
                Some(frame) if protocol == Protocol::SignalR => coalesce(frame, &mut queue),
                Some(frame) => Message::Text(frame),
                None => break,
            },
            () = &mut ping => {
                let due = last_sent + PING_INTERVAL;
                if tokio::time::Instant::now() < due {
                    ping.as_mut().reset(due);
                    continue;
                }
                ping.as_mut().reset(tokio::time::Instant::now() + PING_INTERVAL);
                match protocol {
                    Protocol::SignalR => signalr_record(r#"{"type":6}"#),
                    Protocol::V2 => Message::Ping(Default::default()),
                }
            }
        };
        if !send_or_cancel(&mut sink, message, cancelled.as_mut()).await {
            break;
        }
        last_sent = tokio::time::Instant::now();
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

/// One text frame with `first` and the SignalR records queued behind it, within the coalescing
/// limits.
fn coalesce(first: Utf8Bytes, queue: &mut mpsc::Receiver<Utf8Bytes>) -> Message {
    let Ok(second) = queue.try_recv() else { return Message::Text(first) };
    let mut joined = String::with_capacity(COALESCE_BYTES.min(4 * (first.len() + second.len())));
    joined.push_str(first.as_str());
    joined.push_str(second.as_str());
    for _ in 2..COALESCE_MESSAGES {
        if joined.len() >= COALESCE_BYTES {
            break;
        }
        match queue.try_recv() {
            Ok(next) => joined.push_str(next.as_str()),
            Err(_) => break,
        }
    }
    Message::Text(joined.into())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn text(message: Message) -> String {
        match message {
            Message::Text(text) => text.as_str().to_owned(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn queued_signalr_records_go_out_together_within_the_limits() {
        let (tx, mut rx) = mpsc::channel(64);
        for i in 0..40 {
            tx.try_send(Utf8Bytes::from(format!("{{\"type\":1,\"n\":{i}}}\u{1e}"))).unwrap();
        }
        let first = rx.recv().await.unwrap();
        let frame = text(coalesce(first, &mut rx));
        let records: Vec<&str> = frame.split('\u{1e}').filter(|r| !r.is_empty()).collect();
        assert_eq!(records.len(), COALESCE_MESSAGES);
        assert_eq!(records[0], "{\"type\":1,\"n\":0}");
        assert_eq!(records[31], "{\"type\":1,\"n\":31}");
        // The rest follow, in order, in the next frame.
        let next = rx.recv().await.unwrap();
        let frame = text(coalesce(next, &mut rx));
        assert!(frame.starts_with("{\"type\":1,\"n\":32}\u{1e}") && frame.ends_with("{\"type\":1,\"n\":39}\u{1e}"));
        // A lone record is sent as it is.
        tx.try_send(Utf8Bytes::from_static("{\"type\":6}\u{1e}")).unwrap();
        let lone = rx.recv().await.unwrap();
        assert_eq!(text(coalesce(lone, &mut rx)), "{\"type\":6}\u{1e}");
    }

    #[tokio::test]
    async fn a_frame_stops_growing_at_the_byte_limit() {
        let (tx, mut rx) = mpsc::channel(64);
        let big = format!("{{\"pad\":\"{}\"}}\u{1e}", "x".repeat(6000));
        for _ in 0..5 {
            tx.try_send(Utf8Bytes::from(big.clone())).unwrap();
        }
        let first = rx.recv().await.unwrap();
        let frame = text(coalesce(first, &mut rx));
        assert_eq!(frame.len(), 3 * big.len(), "stops once past {COALESCE_BYTES} bytes");
    }
}
