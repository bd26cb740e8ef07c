//! One WebSocket connection: a writer task draining the connection's bounded queue (plus its
//! own frames and pings) and a reader loop, both ending on the connection's cancellation.
//!
//! Nothing waits on a client that does not read. The feed's messages go through the bounded
//! queue of the hub; the connection's own frames (completions, close records) through its
//! [`Outbox`], bounded in frames and bytes: the reader never waits for the writer, and a full
//! outbox closes the connection as too slow. Every write must finish within [`CLIENT_TIMEOUT`],
//! or the connection is closed. What a stalled connection holds is thus bounded: the hub queue,
//! [`OUTBOX_BYTES`] of own frames, the frame being written and the read buffers.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use futures::stream::{SplitSink, SplitStream};
use futures::{Sink, SinkExt, StreamExt};
use live::messages::RECORD_SEPARATOR;
use live::{CloseReason, ConnectionControl, Protocol};
use std::sync::atomic::{AtomicUsize, Ordering};
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
/// Own frames (completions, close records) a connection may have waiting to be written.
pub const OUTBOX_FRAMES: usize = 64;
/// Bytes of own frames a connection may have waiting to be written.
pub const OUTBOX_BYTES: usize = 64 * 1024;

/// Applies the buffer and size limits chosen for many small, mostly idle connections.
pub fn configure(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
}

pub type WsSink = SplitSink<WebSocket, Message>;
pub type Stream = SplitStream<WebSocket>;

/// The outbox was full: the client does not read what it causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxFull;

/// The sending side of a connection's own frames; see the module documentation.
#[derive(Clone)]
pub struct Outbox {
    frames: mpsc::Sender<Message>,
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// The writer's side of an [`Outbox`].
pub struct OutboxReceiver {
    frames: mpsc::Receiver<Message>,
    bytes: Arc<AtomicUsize>,
}

/// An outbox of at most `max_frames` frames and `max_bytes` bytes waiting.
pub fn outbox(max_frames: usize, max_bytes: usize) -> (Outbox, OutboxReceiver) {
    let (frames, receiver) = mpsc::channel(max_frames.max(1));
    let bytes = Arc::new(AtomicUsize::new(0));
    (Outbox { frames, bytes: Arc::clone(&bytes), max_bytes }, OutboxReceiver { frames: receiver, bytes })
}

fn weight(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Binary(bytes) | Message::Ping(bytes) | Message::Pong(bytes) => bytes.len(),
        Message::Close(frame) => frame.as_ref().map_or(0, |f| f.reason.len()) + 2,
    }
}

impl Outbox {
    /// Queues `message` without waiting; `OutboxFull` when it does not fit.
    pub fn push(&self, message: Message) -> Result<(), OutboxFull> {
        let weight = weight(&message);
        let before = self.bytes.fetch_add(weight, Ordering::AcqRel);
        if before + weight > self.max_bytes {
            self.bytes.fetch_sub(weight, Ordering::AcqRel);
            return Err(OutboxFull);
        }
        self.frames.try_send(message).map_err(|_| {
            self.bytes.fetch_sub(weight, Ordering::AcqRel);
            OutboxFull
        })
    }
}

impl OutboxReceiver {
    async fn recv(&mut self) -> Option<Message> {
        let message = self.frames.recv().await?;
        self.bytes.fetch_sub(weight(&message), Ordering::AcqRel);
        Some(message)
    }
}

/// Sends one message unless `cancelled` completes first or the send does not finish within
/// [`CLIENT_TIMEOUT`]; `Err` says why it was not sent. The send is tried first: on a healthy
/// connection it completes at once and the rest is not looked at.
async fn send_or_cancel<S: Sink<Message> + Unpin>(
    sink: &mut S,
    message: Message,
    cancelled: std::pin::Pin<&mut tokio_util::sync::WaitForCancellationFuture<'_>>,
) -> Result<(), Unsent> {
    tokio::select! {
        biased;
        result = tokio::time::timeout(CLIENT_TIMEOUT, sink.send(message)) => match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Unsent::Broken),
            Err(_) => Err(Unsent::TimedOut),
        },
        () = cancelled => Err(Unsent::Cancelled),
    }
}

/// Why a message was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unsent {
    Broken,
    TimedOut,
    Cancelled,
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

/// Writes queued frames, the connection's own frames and pings until cancelled or the queue
/// ends, then says goodbye in the connection's protocol. A write that does not finish within
/// [`CLIENT_TIMEOUT`] closes the connection as too slow.
///
/// SignalR records that queued up while the connection was writing go out together in one
/// frame (the protocol allows several records per frame); the v2 socket sends one message per
/// frame. The ping is due when nothing was sent for [`PING_INTERVAL`]; its timer is moved only
/// when it fires, not on every message.
pub async fn write_loop<S: Sink<Message> + Unpin>(
    mut sink: S,
    mut queue: mpsc::Receiver<Utf8Bytes>,
    mut own: OutboxReceiver,
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
            message = own.recv() => match message {
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
        match send_or_cancel(&mut sink, message, cancelled.as_mut()).await {
            Ok(()) => last_sent = tokio::time::Instant::now(),
            Err(Unsent::TimedOut) => {
                tracing::warn!("live connection did not take a write in time; disconnecting it");
                control.close(CloseReason::TooSlow);
                break;
            }
            Err(Unsent::Broken | Unsent::Cancelled) => break,
        }
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

/// Ends a connection: its queued own frames (a final close) go out, then the writer stops.
pub async fn finish(mut writer: tokio::task::JoinHandle<()>, outbox: Outbox, control: &ConnectionControl) {
    drop(outbox);
    if tokio::time::timeout(Duration::from_secs(2), &mut writer).await.is_err() {
        control.cancel.cancel();
        let _ = writer.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A client that stopped reading with every buffer full: nothing it is sent goes out.
    struct Stalled;

    impl Sink<Message> for Stalled {
        type Error = std::io::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
        fn start_send(self: Pin<&mut Self>, _: Message) -> Result<(), Self::Error> {
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Pending
        }
    }

    async fn hub() -> (super::super::Hub, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(infrastructure::EmbeddedEventStore::open(dir.path()).unwrap());
        let bus = Arc::new(infrastructure::live::LocalBus);
        let hub = super::super::Hub::new(store, bus, Arc::new(live::SystemClock), Default::default());
        (hub, dir)
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_does_not_finish_within_the_client_timeout_closes_the_connection() {
        let (hub, _dir) = hub().await;
        let (membership, queue) = hub.subscribe(uuid::Uuid::new_v4(), Protocol::SignalR, None).await;
        let (outbox, own) = outbox(OUTBOX_FRAMES, OUTBOX_BYTES);
        let started = tokio::time::Instant::now();
        let writer = tokio::spawn(write_loop(Stalled, queue, own, membership.control.clone(), Protocol::SignalR));
        outbox.push(signalr_record(r#"{"type":3,"invocationId":"1"}"#)).unwrap();
        writer.await.unwrap();
        assert_eq!(membership.control.reason(), CloseReason::TooSlow);
        assert!(membership.control.cancel.is_cancelled());
        // The write was given the whole client timeout (and the goodbye its second), no more.
        let took = started.elapsed();
        assert!(took >= CLIENT_TIMEOUT && took <= CLIENT_TIMEOUT + Duration::from_secs(2), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn pings_that_cannot_be_written_close_an_idle_connection_too() {
        let (hub, _dir) = hub().await;
        let (membership, queue) = hub.subscribe(uuid::Uuid::new_v4(), Protocol::V2, None).await;
        let (_outbox, own) = outbox(OUTBOX_FRAMES, OUTBOX_BYTES);
        // The Subscribed marker is the first write; it never goes out.
        write_loop(Stalled, queue, own, membership.control.clone(), Protocol::V2).await;
        assert_eq!(membership.control.reason(), CloseReason::TooSlow);
    }

    #[test]
    fn the_outbox_is_bounded_in_bytes_and_frames_and_frees_what_the_writer_takes() {
        let (outbox, mut own) = outbox(3, 100);
        let frame = |n: usize| Message::Text("x".repeat(n).into());
        outbox.push(frame(60)).unwrap();
        assert_eq!(outbox.push(frame(50)), Err(OutboxFull), "over the bytes");
        outbox.push(frame(30)).unwrap();
        outbox.push(frame(10)).unwrap();
        assert_eq!(outbox.push(frame(0)), Err(OutboxFull), "over the frames");
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async { own.recv().await.unwrap() });
        outbox.push(frame(50)).unwrap();
    }

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
