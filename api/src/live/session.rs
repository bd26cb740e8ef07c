//! One WebSocket connection, served by one task: a loop that writes the connection's bounded
//! queue (plus its own frames and pings) and reads the client only when the socket is readable,
//! until the server closes the connection, the client leaves or it falls silent.
//!
//! Nothing waits on a client that does not read. The feed's messages go through the bounded
//! queue of the hub; the connection's own frames (completions, close records) through its
//! [`Outbox`], bounded in frames and bytes: reading never waits for writing, and a full outbox
//! closes the connection as too slow. Every write must finish within [`CLIENT_TIMEOUT`], or the
//! connection is closed. What a stalled connection holds is thus bounded: the hub queue,
//! [`OUTBOX_BYTES`] of own frames, the frame being written and the read buffer.
//!
//! An idle connection holds little: the socket with a read buffer of [`READ_BUFFER_BYTES`], the
//! task (this loop with one timer), the queue and the control state. The outbox allocates only
//! while it holds frames; work a client message starts (a hub invocation waiting for the store)
//! is boxed while it runs.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocketUpgrade};
use futures::{Sink, SinkExt, Stream};
use live::messages::RECORD_SEPARATOR;
use live::{CloseReason, ConnectionControl, Protocol, QueueReceiver};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// Server keep-alive when nothing else was sent.
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// A client silent for this long is gone.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for the SignalR handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest accepted client message and frame: clients send only small records.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Read buffer per connection. Clients send only small records (a hub invocation is about
/// 200 bytes; a larger frame grows the buffer to its size), and an idle connection reads
/// nothing: library defaults are sized for bulk transfer, not density.
pub const READ_BUFFER_BYTES: usize = 256;
/// Own frames (completions, close records) a connection may have waiting to be written.
pub const OUTBOX_FRAMES: usize = 64;
/// Bytes of own frames a connection may have waiting to be written.
pub const OUTBOX_BYTES: usize = 64 * 1024;
/// Time a closing connection is given to write its own frames waiting in the outbox.
const CLOSING_TIME: Duration = Duration::from_secs(2);

/// Applies the buffer and size limits chosen for many small, mostly idle connections.
pub fn configure(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(256 * 1024)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
}

/// The outbox was full: the client does not read what it causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxFull;

/// A connection's own frames waiting to be written; see the module documentation. It allocates
/// only while it holds frames.
pub struct Outbox {
    frames: VecDeque<Message>,
    bytes: usize,
    max_frames: usize,
    max_bytes: usize,
    /// A push did not fit: the connection is closed as too slow.
    overflowed: bool,
}

fn weight(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Binary(bytes) | Message::Ping(bytes) | Message::Pong(bytes) => bytes.len(),
        Message::Close(frame) => frame.as_ref().map_or(0, |f| f.reason.len()) + 2,
    }
}

impl Outbox {
    /// An outbox of at most `max_frames` frames and `max_bytes` bytes waiting.
    pub fn new(max_frames: usize, max_bytes: usize) -> Self {
        Self { frames: VecDeque::new(), bytes: 0, max_frames: max_frames.max(1), max_bytes, overflowed: false }
    }

    /// Queues `message`; `OutboxFull` when it does not fit.
    pub fn push(&mut self, message: Message) -> Result<(), OutboxFull> {
        let weight = weight(&message);
        if self.frames.len() >= self.max_frames || self.bytes + weight > self.max_bytes {
            self.overflowed = true;
            return Err(OutboxFull);
        }
        self.bytes += weight;
        self.frames.push_back(message);
        Ok(())
    }

    fn pop(&mut self) -> Option<Message> {
        let message = self.frames.pop_front()?;
        self.bytes -= weight(&message);
        if self.frames.is_empty() {
            // Gives the memory back: most connections send their own frames rarely.
            self.frames = VecDeque::new();
        }
        Some(message)
    }

    fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

/// What a connection does after a client message or a piece of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Write the own frames waiting, then close.
    Close,
}

/// What a connection does with what its client sends: the protocol's side of the session.
pub trait Inbound {
    /// Handles one message from the client; what it answers goes to `outbox`.
    fn receive(&mut self, message: Message, outbox: &mut Outbox) -> Flow;

    /// Drives the work earlier messages started (a hub invocation waiting for the store);
    /// `Ready` once there is none left and the next message may be read.
    fn poll_work(&mut self, cx: &mut Context<'_>, outbox: &mut Outbox) -> Poll<Flow>;
}

impl<T: Inbound + ?Sized> Inbound for Box<T> {
    fn receive(&mut self, message: Message, outbox: &mut Outbox) -> Flow {
        (**self).receive(message, outbox)
    }

    fn poll_work(&mut self, cx: &mut Context<'_>, outbox: &mut Outbox) -> Poll<Flow> {
        (**self).poll_work(cx, outbox)
    }
}

/// A client that sends nothing but pongs and close.
pub struct ListenOnly;

impl Inbound for ListenOnly {
    fn receive(&mut self, message: Message, _: &mut Outbox) -> Flow {
        match message {
            Message::Close(_) => Flow::Close,
            _ => Flow::Continue,
        }
    }

    fn poll_work(&mut self, _: &mut Context<'_>, _: &mut Outbox) -> Poll<Flow> {
        Poll::Ready(Flow::Continue)
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

/// How the loop of a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Closed by the server, or the client left, or everything was said.
    Done,
    /// A write did not finish within the client timeout, or the outbox overflowed.
    TooSlow,
}

/// The state of the loop of one connection.
struct Session<'a, S, I> {
    socket: S,
    queue: QueueReceiver<Utf8Bytes>,
    outbox: Outbox,
    inbound: I,
    control: &'a ConnectionControl,
    protocol: Protocol,
    /// A message waiting for the socket to take it.
    unsent: Option<Message>,
    /// A message was handed to the socket and is being flushed.
    flushing: bool,
    /// When the write in progress must have finished.
    write_deadline: Option<Instant>,
    last_sent: Instant,
    last_heard: Instant,
    /// Work started by client messages is still running: nothing more is read until it is done.
    working: bool,
    /// Closing: only the own frames waiting are written, until this deadline.
    closing: Option<Instant>,
    /// The server closed the connection while work was running: that work's answer is written,
    /// and nothing more is read or taken from the queue.
    finishing: bool,
}

impl<S, I> Session<'_, S, I>
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message> + Unpin,
    I: Inbound,
{
    /// The next message to write: own frames first, then the queue, then a ping when due.
    fn next_message(&mut self, now: Instant) -> Option<Message> {
        if let Some(message) = self.outbox.pop() {
            return Some(message);
        }
        if self.closing.is_some() {
            return None;
        }
        match self.queue.try_recv() {
            Ok(frame) if self.protocol == Protocol::SignalR => return Some(coalesce(frame, &mut self.queue)),
            Ok(frame) => return Some(Message::Text(frame)),
            Err(_) => {}
        }
        if now >= self.last_sent + PING_INTERVAL {
            return Some(match self.protocol {
                Protocol::SignalR => signalr_record(r#"{"type":6}"#),
                Protocol::V2 => Message::Ping(Default::default()),
            });
        }
        None
    }

    /// Writes what there is to write; `Ready(Ok(()))` when nothing is left or the queue
    /// ended, `Err` when the socket broke.
    fn poll_write(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<Result<(), End>> {
        loop {
            if self.flushing {
                match Pin::new(&mut self.socket).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        self.flushing = false;
                        self.write_deadline = None;
                        self.last_sent = now;
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(Err(End::Done)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if self.unsent.is_none() {
                self.unsent = self.next_message(now);
                match &self.unsent {
                    Some(_) => self.write_deadline = Some(now + CLIENT_TIMEOUT),
                    None => {
                        // Registers for the queue's next message (or learns that it ended).
                        if self.closing.is_none() && !self.finishing {
                            match self.queue.poll_recv(cx) {
                                Poll::Ready(Some(frame)) => {
                                    self.unsent = Some(match self.protocol {
                                        Protocol::SignalR => coalesce(frame, &mut self.queue),
                                        Protocol::V2 => Message::Text(frame),
                                    });
                                    self.write_deadline = Some(now + CLIENT_TIMEOUT);
                                }
                                Poll::Ready(None) => return Poll::Ready(Err(End::Done)),
                                Poll::Pending => return Poll::Ready(Ok(())),
                            }
                        } else {
                            return Poll::Ready(Ok(()));
                        }
                    }
                }
            }
            match Pin::new(&mut self.socket).poll_ready(cx) {
                Poll::Ready(Ok(())) => {
                    let message = self.unsent.take().expect("a message to send");
                    if Pin::new(&mut self.socket).start_send(message).is_err() {
                        return Poll::Ready(Err(End::Done));
                    }
                    self.flushing = true;
                }
                Poll::Ready(Err(_)) => return Poll::Ready(Err(End::Done)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Runs the connection until it ends; `timer` is its one timer, moved to whichever deadline
    /// comes first (the write's, the next ping, the client's silence, the end of closing).
    fn poll_run(
        &mut self,
        cx: &mut Context<'_>,
        mut timer: Pin<&mut tokio::time::Sleep>,
        closed: &mut live::Closed<'_>,
    ) -> Poll<End> {
        loop {
            if !self.finishing && Pin::new(&mut *closed).poll(cx).is_ready() {
                if !self.working {
                    return Poll::Ready(End::Done);
                }
                // A command under way (waiting for the store) is answered before the goodbye, so
                // that its client knows what became of it.
                self.finishing = true;
            }
            if self.finishing && !self.working && self.outbox.is_empty() && self.write_deadline.is_none() {
                return Poll::Ready(End::Done);
            }
            let now = Instant::now();
            let mut progressed = false;
            if self.working {
                if let Poll::Ready(flow) = self.inbound.poll_work(cx, &mut self.outbox) {
                    self.working = false;
                    self.last_heard = now;
                    if flow == Flow::Close {
                        self.close(now);
                    }
                }
            }
            if self.outbox.overflowed {
                // The client does not read its completions: it cannot keep up.
                tracing::warn!("live connection does not read its own answers; disconnecting it");
                return Poll::Ready(End::TooSlow);
            }
            if let Poll::Ready(Err(end)) = self.poll_write(cx, now) {
                return Poll::Ready(end);
            }
            if self.closing.is_some() && self.outbox.is_empty() && self.write_deadline.is_none() {
                return Poll::Ready(End::Done);
            }
            if !self.working && self.closing.is_none() && !self.finishing {
                match Pin::new(&mut self.socket).poll_next(cx) {
                    Poll::Ready(Some(Ok(message))) => {
                        self.last_heard = now;
                        self.working = true;
                        if self.inbound.receive(message, &mut self.outbox) == Flow::Close {
                            self.close(now);
                        }
                        progressed = true;
                    }
                    Poll::Ready(Some(Err(_)) | None) => self.close(now),
                    Poll::Pending => {}
                }
            }
            if progressed {
                continue;
            }
            let mut deadline = match (self.write_deadline, self.closing) {
                (Some(write), Some(closing)) => write.min(closing),
                (Some(write), None) => write,
                (None, Some(closing)) => closing,
                (None, None) => self.last_sent + PING_INTERVAL,
            };
            if !self.working && self.closing.is_none() {
                deadline = deadline.min(self.last_heard + CLIENT_TIMEOUT);
            }
            if now >= deadline {
                if self.write_deadline.is_some_and(|d| now >= d) {
                    tracing::warn!("live connection did not take a write in time; disconnecting it");
                    return Poll::Ready(End::TooSlow);
                }
                if self.closing.is_some_and(|c| now >= c) {
                    return Poll::Ready(End::Done);
                }
                if !self.working && self.closing.is_none() && now >= self.last_heard + CLIENT_TIMEOUT {
                    // The client went silent.
                    self.close(now);
                }
                // Otherwise a ping is due: the next write takes it.
                continue;
            }
            // A timer due earlier than needed is left alone: when it fires the deadline is
            // looked at again. It is not moved on every message.
            if timer.deadline() > deadline || timer.deadline() <= now {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    fn close(&mut self, now: Instant) {
        if self.closing.is_none() {
            self.closing = Some(now + CLOSING_TIME);
        }
    }
}

/// Serves a connection after its handshake until it ends, then says goodbye in its protocol:
/// writes the queue, own frames and pings, and hands what the client sends to `inbound`. A write
/// that does not finish within [`CLIENT_TIMEOUT`] closes the connection as too slow.
///
/// SignalR records that queued up while the connection was writing go out together in one
/// frame (the protocol allows several records per frame); the v2 socket sends one message per
/// frame. The ping is due when nothing was sent for [`PING_INTERVAL`].
///
/// The future is what a connection's task keeps for the connection's life (sized for its largest
/// state), so it holds the session's state once: the arguments go straight into it.
pub fn serve<'a, S, I>(
    socket: S,
    queue: QueueReceiver<Utf8Bytes>,
    outbox: Outbox,
    inbound: I,
    control: &'a ConnectionControl,
    protocol: Protocol,
) -> impl Future<Output = ()> + 'a
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message> + Unpin + 'a,
    I: Inbound + 'a,
{
    let now = Instant::now();
    drive(Session {
        socket,
        queue,
        outbox,
        inbound,
        control,
        protocol,
        unsent: None,
        flushing: false,
        write_deadline: None,
        last_sent: now,
        last_heard: now,
        working: true,
        closing: None,
        finishing: false,
    })
}

async fn drive<S, I>(mut session: Session<'_, S, I>)
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message> + Unpin,
    I: Inbound,
{
    let control = session.control;
    let end = {
        let timer = tokio::time::sleep(PING_INTERVAL);
        tokio::pin!(timer);
        // One wait for the close for the connection's life, rather than one per message.
        let mut closed = control.closed();
        std::future::poll_fn(|cx| session.poll_run(cx, timer.as_mut(), &mut closed)).await
    };
    if end == End::TooSlow {
        control.close(CloseReason::TooSlow);
    }
    let protocol = session.protocol;
    Box::pin(goodbye(session.socket, control, protocol)).await;
}

/// Tells the client why it is being closed; a client that stopped reading gets a second at most.
async fn goodbye<S: Sink<Message> + Unpin>(mut socket: S, control: &ConnectionControl, protocol: Protocol) {
    control.close(CloseReason::None);
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
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        if let Some(goodbye) = goodbye {
            socket.send(goodbye).await?;
        }
        socket.send(Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static("") }))).await?;
        socket.close().await
    })
    .await;
}

/// One text frame with `first` and the SignalR records queued behind it, within the coalescing
/// limits.
fn coalesce(first: Utf8Bytes, queue: &mut QueueReceiver<Utf8Bytes>) -> Message {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::sync::mpsc;

    /// A test client: what it sends comes from `incoming`; what it is sent is recorded, or,
    /// stalled, never taken (a client that stopped reading with every buffer full).
    struct Client {
        incoming: mpsc::UnboundedReceiver<Message>,
        sent: Arc<Mutex<Vec<Message>>>,
        stalled: bool,
    }

    /// A client, the sender of what it sends and the record of what it was sent.
    fn client(stalled: bool) -> (Client, mpsc::UnboundedSender<Message>, Arc<Mutex<Vec<Message>>>) {
        let (tx, incoming) = mpsc::unbounded_channel();
        let sent = Arc::new(Mutex::new(Vec::new()));
        (Client { incoming, sent: Arc::clone(&sent), stalled }, tx, sent)
    }

    impl Stream for Client {
        type Item = Result<Message, axum::Error>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.incoming.poll_recv(cx).map(|message| message.map(Ok))
        }
    }

    impl Sink<Message> for Client {
        type Error = std::io::Error;
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            if self.stalled {
                Poll::Pending
            } else {
                Poll::Ready(Ok(()))
            }
        }
        fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Self::Error> {
            self.sent.lock().unwrap().push(message);
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.poll_ready(cx)
        }
        fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.poll_ready(cx)
        }
    }

    async fn hub() -> (super::super::Hub, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(infrastructure::EmbeddedEventStore::open(dir.path()).unwrap());
        let bus = Arc::new(infrastructure::live::LocalBus);
        let hub = super::super::Hub::new(store, bus, Arc::new(live::SystemClock), Default::default());
        (hub, dir)
    }

    /// Answers every text message with a frame of `reply_bytes` bytes.
    struct Echo {
        reply_bytes: usize,
    }

    impl Inbound for Echo {
        fn receive(&mut self, message: Message, outbox: &mut Outbox) -> Flow {
            match message {
                Message::Text(_) => {
                    let _ = outbox.push(Message::Text("x".repeat(self.reply_bytes).into()));
                    Flow::Continue
                }
                Message::Close(_) => Flow::Close,
                _ => Flow::Continue,
            }
        }

        fn poll_work(&mut self, _: &mut Context<'_>, _: &mut Outbox) -> Poll<Flow> {
            Poll::Ready(Flow::Continue)
        }
    }

    fn text(message: &Message) -> String {
        match message {
            Message::Text(text) => text.as_str().to_owned(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_does_not_finish_within_the_client_timeout_closes_the_connection() {
        let (hub, _dir) = hub().await;
        let (membership, queue) = hub.subscribe(uuid::Uuid::new_v4(), Protocol::SignalR, None).await;
        let (client, _tx, _) = client(true);
        let mut outbox = Outbox::new(OUTBOX_FRAMES, OUTBOX_BYTES);
        outbox.push(signalr_record(r#"{"type":3,"invocationId":"1"}"#)).unwrap();
        let started = tokio::time::Instant::now();
        serve(client, queue, outbox, ListenOnly, &membership.control, Protocol::SignalR).await;
        assert_eq!(membership.control.reason(), CloseReason::TooSlow);
        assert!(membership.control.is_closed());
        // The write was given the whole client timeout (and the goodbye its second), no more.
        let took = started.elapsed();
        assert!(took >= CLIENT_TIMEOUT && took <= CLIENT_TIMEOUT + Duration::from_secs(2), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn pings_that_cannot_be_written_close_an_idle_connection_too() {
        let (hub, _dir) = hub().await;
        let (membership, queue) = hub.subscribe(uuid::Uuid::new_v4(), Protocol::V2, None).await;
        let (client, _tx, _) = client(true);
        // The Subscribed marker is the first write; it never goes out.
        serve(client, queue, Outbox::new(4, 1024), ListenOnly, &membership.control, Protocol::V2).await;
        assert_eq!(membership.control.reason(), CloseReason::TooSlow);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_pinged_and_closed_when_its_client_goes_silent() {
        let (hub, _dir) = hub().await;
        let (membership, queue) = hub.subscribe(uuid::Uuid::new_v4(), Protocol::SignalR, None).await;
        let (client, tx, sent) = client(false);
        let started = tokio::time::Instant::now();
        let control = Arc::clone(&membership.control);
        let connection = tokio::spawn(async move {
            serve(client, queue, Outbox::new(4, 1024), ListenOnly, &control, Protocol::SignalR).await;
        });
        // The client pings at 10 s, then says nothing more.
        tokio::time::sleep(Duration::from_secs(10)).await;
        tx.send(Message::Text(Utf8Bytes::from_static("{\"type\":6}\u{1e}"))).unwrap();
        connection.await.unwrap();
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(40) && took <= Duration::from_secs(41), "{took:?}");
        assert_eq!(membership.control.reason(), CloseReason::None);
        let sent = sent.lock().unwrap();
        // Pings at 15 s and 30 s, then the close.
        assert_eq!(sent.len(), 3, "{sent:?}");
        assert_eq!(text(&sent[0]), "{\"type\":6}\u{1e}");
        assert_eq!(text(&sent[1]), "{\"type\":6}\u{1e}");
        assert!(matches!(&sent[2], Message::Close(Some(frame)) if frame.code == 1000), "{sent:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn queued_messages_and_answers_go_out_and_the_client_s_close_ends_the_connection() {
        let (hub, _dir) = hub().await;
        let (membership, queue) = hub.subscribe(uuid::Uuid::new_v4(), Protocol::V2, None).await;
        let (client, tx, sent) = client(false);
        tx.send(Message::Text(Utf8Bytes::from_static("hello"))).unwrap();
        tx.send(Message::Close(None)).unwrap();
        serve(client, queue, Outbox::new(4, 1024), Echo { reply_bytes: 3 }, &membership.control, Protocol::V2).await;
        let sent = sent.lock().unwrap();
        assert_eq!(sent.len(), 3, "{sent:?}");
        assert!(text(&sent[0]).contains("\"Subscribed\""));
        assert_eq!(text(&sent[1]), "xxx");
        assert!(matches!(&sent[2], Message::Close(Some(frame)) if frame.code == 1000), "{sent:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_but_does_not_read_its_answers_is_closed_as_too_slow_at_once() {
        let (hub, _dir) = hub().await;
        let (membership, queue) = hub.subscribe(uuid::Uuid::new_v4(), Protocol::SignalR, None).await;
        let (client, tx, _) = client(true);
        for _ in 0..10 {
            tx.send(Message::Text(Utf8Bytes::from_static("{}"))).unwrap();
        }
        let started = tokio::time::Instant::now();
        let outbox = Outbox::new(OUTBOX_FRAMES, OUTBOX_BYTES);
        serve(client, queue, outbox, Echo { reply_bytes: 30_000 }, &membership.control, Protocol::SignalR).await;
        assert_eq!(membership.control.reason(), CloseReason::TooSlow);
        // Reading went on while the first answer could not be written: the outbox overflowed
        // long before the write's timeout.
        assert!(started.elapsed() <= Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn the_feed_s_cutting_off_ends_the_connection_with_a_reconnect_hint() {
        let (hub, _dir) = hub().await;
        let (membership, queue) = hub.subscribe(uuid::Uuid::new_v4(), Protocol::SignalR, None).await;
        let (client, _tx, sent) = client(false);
        membership.control.close(CloseReason::TooSlow);
        serve(client, queue, Outbox::new(4, 1024), ListenOnly, &membership.control, Protocol::SignalR).await;
        let sent = sent.lock().unwrap();
        assert!(text(&sent[0]).contains("fell behind"), "{sent:?}");
        assert!(matches!(&sent[1], Message::Close(Some(frame)) if frame.code == 1008), "{sent:?}");
    }

    /// Starts a command on every text message, which answers once `gate` opens; tells
    /// `started` when the first one is under way.
    struct Gated {
        started: Option<tokio::sync::oneshot::Sender<()>>,
        gate: Option<tokio::sync::oneshot::Receiver<()>>,
        running: bool,
    }

    impl Inbound for Gated {
        fn receive(&mut self, message: Message, _: &mut Outbox) -> Flow {
            match message {
                Message::Text(_) => {
                    self.running = true;
                    if let Some(started) = self.started.take() {
                        let _ = started.send(());
                    }
                    Flow::Continue
                }
                _ => Flow::Close,
            }
        }

        fn poll_work(&mut self, cx: &mut Context<'_>, outbox: &mut Outbox) -> Poll<Flow> {
            if !self.running {
                return Poll::Ready(Flow::Continue);
            }
            if let Some(gate) = &mut self.gate {
                if Pin::new(gate).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.gate = None;
            }
            self.running = false;
            let _ = outbox.push(signalr_record(r#"{"type":3,"invocationId":"1","result":null}"#));
            Poll::Ready(Flow::Continue)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_under_way_when_the_pod_drains_is_answered_before_the_goodbye() {
        let (hub, _dir) = hub().await;
        let (membership, queue) = hub.subscribe(uuid::Uuid::new_v4(), Protocol::SignalR, None).await;
        let (client, tx, sent) = client(false);
        let (started, under_way) = tokio::sync::oneshot::channel();
        let (open, gate) = tokio::sync::oneshot::channel();
        let inbound = Gated { started: Some(started), gate: Some(gate), running: false };
        tx.send(Message::Text(r#"{"type":1,"invocationId":"1","target":"SelectTeam","arguments":[]}"#.into())).unwrap();
        let serving = serve(client, queue, Outbox::new(4, 1024), inbound, &membership.control, Protocol::SignalR);
        tokio::pin!(serving);
        tokio::select! {
            () = &mut serving => panic!("the connection ended before its command started"),
            _ = under_way => {}
        }
        // The pod drains while the command waits for the store; the store then answers.
        membership.control.close(CloseReason::ShuttingDown);
        let ended = tokio::select! {
            () = &mut serving => true,
            () = tokio::time::sleep(Duration::from_millis(100)) => false,
        };
        if !ended {
            open.send(()).unwrap();
            tokio::time::timeout(Duration::from_secs(60), serving).await.expect("the connection ends");
        }
        let sent = sent.lock().unwrap();
        let texts: Vec<String> = sent.iter().filter(|m| matches!(m, Message::Text(_))).map(text).collect();
        assert!(texts.first().is_some_and(|t| t.contains(r#""type":3"#)), "the command's answer first: {texts:?}");
        assert!(texts.last().is_some_and(|t| t.contains("shutting down")), "then the goodbye: {texts:?}");
        assert!(matches!(sent.last(), Some(Message::Close(Some(frame))) if frame.code == 1012), "{sent:?}");
    }

    #[test]
    fn the_outbox_is_bounded_in_bytes_and_frames_and_frees_what_the_writer_takes() {
        let mut outbox = Outbox::new(3, 100);
        let frame = |n: usize| Message::Text("x".repeat(n).into());
        outbox.push(frame(60)).unwrap();
        assert_eq!(outbox.push(frame(50)), Err(OutboxFull), "over the bytes");
        outbox.push(frame(30)).unwrap();
        outbox.push(frame(10)).unwrap();
        assert_eq!(outbox.push(frame(0)), Err(OutboxFull), "over the frames");
        outbox.pop().unwrap();
        outbox.push(frame(50)).unwrap();
        while outbox.pop().is_some() {}
        assert_eq!(outbox.frames.capacity(), 0, "an empty outbox holds no memory");
        assert!(outbox.overflowed);
    }

    /// The connection's task: what an idle connection holds besides its socket and queue.
    #[tokio::test]
    async fn the_connection_s_loop_is_small() {
        let (hub, _dir) = hub().await;
        let (membership, queue) = hub.subscribe(uuid::Uuid::new_v4(), Protocol::SignalR, None).await;
        let (client, _tx, _) = client(false);
        let client_bytes = std::mem::size_of_val(&client);
        let serving = serve(client, queue, Outbox::new(4, 1024), ListenOnly, &membership.control, Protocol::SignalR);
        let bytes = std::mem::size_of_val(&serving);
        println!("the loop of a connection: {bytes} bytes, {client_bytes} of them the socket");
        assert!(bytes - client_bytes <= 768, "{bytes} bytes");
    }

    #[tokio::test]
    async fn queued_signalr_records_go_out_together_within_the_limits() {
        let (tx, mut rx) = live::queue::queue(64);
        for i in 0..40 {
            tx.try_send(Utf8Bytes::from(format!("{{\"type\":1,\"n\":{i}}}\u{1e}"))).unwrap();
        }
        let first = rx.recv().await.unwrap();
        let frame = text(&coalesce(first, &mut rx));
        let records: Vec<&str> = frame.split('\u{1e}').filter(|r| !r.is_empty()).collect();
        assert_eq!(records.len(), COALESCE_MESSAGES);
        assert_eq!(records[0], "{\"type\":1,\"n\":0}");
        assert_eq!(records[31], "{\"type\":1,\"n\":31}");
        // The rest follow, in order, in the next frame.
        let next = rx.recv().await.unwrap();
        let frame = text(&coalesce(next, &mut rx));
        assert!(frame.starts_with("{\"type\":1,\"n\":32}\u{1e}") && frame.ends_with("{\"type\":1,\"n\":39}\u{1e}"));
        // A lone record is sent as it is.
        tx.try_send(Utf8Bytes::from_static("{\"type\":6}\u{1e}")).unwrap();
        let lone = rx.recv().await.unwrap();
        assert_eq!(text(&coalesce(lone, &mut rx)), "{\"type\":6}\u{1e}");
    }

    #[tokio::test]
    async fn a_frame_stops_growing_at_the_byte_limit() {
        let (tx, mut rx) = live::queue::queue(64);
        let big = format!("{{\"pad\":\"{}\"}}\u{1e}", "x".repeat(6000));
        for _ in 0..5 {
            tx.try_send(Utf8Bytes::from(big.clone())).unwrap();
        }
        let first = rx.recv().await.unwrap();
        let frame = text(&coalesce(first, &mut rx));
        assert_eq!(frame.len(), 3 * big.len(), "stops once past {COALESCE_BYTES} bytes");
    }
}
