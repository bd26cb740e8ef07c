//! The live hub of one pod: a feed per tournament with local connections, fed by this pod's
//! commits and by the bus, delivering every event exactly once per connection in version order.
//!
//! Each feed is one task that owns its state, so ordering needs no lock. It knows the last
//! version it delivered; an older or equal version is a duplicate, the next one is delivered, a
//! later one means something was missed and the feed reads the gap from the event store. After
//! the bus reconnects every feed re-reads the store the same way. A connection whose bounded
//! queue is full is cut off instead of slowing the others; it can reconnect and resume.

use crate::clock::Clock;
use crate::messages::{
    channel, encode_clicks, encode_event, encode_presence, tournament_of, Encoded, Received, Stamped, WireMessage,
};
use crate::ports::{Bus, BusListener, Click, PresenceEntry};
use crate::stats::HubStats;
use crate::Frame;
use domain::ports::{EventPublisher, EventStore, RecordedEvent};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

/// Which encoding a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    SignalR,
    V2,
}

/// Why a connection is being closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseReason {
    None = 0,
    /// The client did not keep up with its queue.
    TooSlow = 1,
    /// The pod is draining.
    ShuttingDown = 2,
}

/// Per-connection control shared by the connection's tasks and its feed.
#[derive(Debug)]
pub struct ConnectionControl {
    pub cancel: CancellationToken,
    /// The pod's drain token (the parent of `cancel`).
    shutdown: CancellationToken,
    reason: AtomicU8,
}

impl ConnectionControl {
    pub fn close(&self, reason: CloseReason) {
        let _ = self.reason.compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire);
        self.cancel.cancel();
    }

    pub fn reason(&self) -> CloseReason {
        match self.reason.load(Ordering::Acquire) {
            1 => CloseReason::TooSlow,
            2 => CloseReason::ShuttingDown,
            _ if self.shutdown.is_cancelled() => CloseReason::ShuttingDown,
            _ => CloseReason::None,
        }
    }
}

/// Tunables of the hub.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Messages queued per connection before it is cut off as too slow.
    pub queue_capacity: usize,
    /// Publishes waiting for the bus before newer ones are dropped (subscribers then recover
    /// from the store).
    pub publish_backlog: usize,
}

impl Default for HubOptions {
    fn default() -> Self {
        Self { queue_capacity: 256, publish_backlog: 65_536 }
    }
}

enum FeedCommand<F> {
    Subscribe {
        subscriber: Subscriber<F>,
        since: Option<u64>,
        ready: tokio::sync::oneshot::Sender<()>,
    },
    Unsubscribe {
        id: u64,
    },
    Event(RecordedEvent),
    /// A message without a version (clicks, presence), delivered as it comes.
    Unversioned(Arc<Encoded<F>>),
    Resync,
}

struct Subscriber<F> {
    id: u64,
    protocol: Protocol,
    queue: mpsc::Sender<F>,
    control: Arc<ConnectionControl>,
}

struct FeedHandle<F> {
    commands: mpsc::UnboundedSender<FeedCommand<F>>,
    connections: usize,
}

struct HubInner<F> {
    /// Names this hub's publications, so it skips them when the bus hands them back.
    origin: Uuid,
    store: Arc<dyn EventStore>,
    bus: Arc<dyn Bus>,
    clock: Arc<dyn Clock>,
    feeds: Mutex<HashMap<Uuid, FeedHandle<F>>>,
    outbox: mpsc::Sender<(String, Vec<u8>)>,
    options: HubOptions,
    next_id: AtomicU64,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    stats: HubStats,
}

/// The live hub, sending frames of the transport's type `F`; cheap to clone.
pub struct Hub<F> {
    inner: Arc<HubInner<F>>,
}

impl<F> Clone for Hub<F> {
    fn clone(&self) -> Self {
        Hub { inner: Arc::clone(&self.inner) }
    }
}

/// A connection's place in a feed; it leaves the feed when dropped.
pub struct Membership<F: Frame> {
    pub id: u64,
    pub tournament: Uuid,
    pub control: Arc<ConnectionControl>,
    hub: Weak<HubInner<F>>,
}

impl<F: Frame> Drop for Membership<F> {
    fn drop(&mut self) {
        if let Some(inner) = self.hub.upgrade() {
            inner.leave(self.tournament, self.id);
        }
    }
}

impl<F: Frame> Hub<F> {
    /// Builds the hub and registers it as the bus listener.
    pub fn new(store: Arc<dyn EventStore>, bus: Arc<dyn Bus>, clock: Arc<dyn Clock>, options: HubOptions) -> Hub<F> {
        let (outbox, outbox_rx) = mpsc::channel(options.publish_backlog);
        let inner = Arc::new(HubInner {
            origin: Uuid::new_v4(),
            store,
            bus: Arc::clone(&bus),
            clock,
            feeds: Mutex::new(HashMap::new()),
            outbox,
            options,
            next_id: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            stats: HubStats::default(),
        });
        bus.set_listener(Arc::new(Listener(Arc::downgrade(&inner))));
        tokio::spawn(publish_loop(Arc::downgrade(&inner), outbox_rx));
        Hub { inner }
    }

    pub fn stats(&self) -> &HubStats {
        &self.inner.stats
    }

    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.inner.bus
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Tasks of live connections, awaited on shutdown.
    pub fn tracker(&self) -> &TaskTracker {
        &self.inner.tracker
    }

    /// Cancelled when the pod drains.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Joins the feed of `tournament`. With `since`, events after that version are replayed
    /// first from the store; without, delivery starts at the feed's current version. Returns
    /// the membership and the connection's queue of encoded frames once the feed is listening
    /// on the bus and has registered the connection: everything committed afterwards reaches it.
    pub async fn subscribe(
        &self,
        tournament: Uuid,
        protocol: Protocol,
        since: Option<u64>,
    ) -> (Membership<F>, mpsc::Receiver<F>) {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (queue_tx, queue) = mpsc::channel(self.inner.options.queue_capacity);
        let control = Arc::new(ConnectionControl {
            cancel: self.inner.shutdown.child_token(),
            shutdown: self.inner.shutdown.clone(),
            reason: AtomicU8::new(0),
        });
        let subscriber = Subscriber { id, protocol, queue: queue_tx, control: Arc::clone(&control) };
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        {
            let mut feeds = self.inner.feeds.lock().unwrap_or_else(|p| p.into_inner());
            let handle = feeds.entry(tournament).or_insert_with(|| {
                let (commands, rx) = mpsc::unbounded_channel();
                tokio::spawn(run_feed(Arc::clone(&self.inner), tournament, rx));
                FeedHandle { commands, connections: 0 }
            });
            handle.connections += 1;
            let _ = handle.commands.send(FeedCommand::Subscribe { subscriber, since, ready: ready_tx });
        }
        self.inner.stats.connections.fetch_add(1, Ordering::Relaxed);
        let membership = Membership { id, tournament, control, hub: Arc::downgrade(&self.inner) };
        // An error means the feed stopped (the pod is draining); the queue then just ends.
        let _ = ready.await;
        (membership, queue)
    }

    /// Delivers a team-click list to this pod's connections of the tournament and to the other
    /// pods.
    pub fn broadcast_clicks(&self, tournament: Uuid, clicks: Vec<Click>) {
        self.inner.dispatch(tournament, FeedCommand::Unversioned(Arc::new(encode_clicks(tournament, &clicks))));
        self.inner.send_to_bus(tournament, &WireMessage::Clicks { tournament_id: tournament, clicks });
    }

    /// Delivers the list of connected players to this pod's connections of the tournament and
    /// to the other pods.
    pub fn broadcast_presence(&self, tournament: Uuid, players: Vec<PresenceEntry>) {
        self.inner.dispatch(tournament, FeedCommand::Unversioned(Arc::new(encode_presence(tournament, &players))));
        self.inner.send_to_bus(tournament, &WireMessage::Presence { tournament_id: tournament, players });
    }

    /// Tells every connection to reconnect elsewhere.
    pub fn drain(&self) {
        self.inner.shutdown.cancel();
    }

    /// Tournaments this pod serves now.
    pub fn tournaments_served(&self) -> usize {
        self.inner.feeds.lock().map(|f| f.len()).unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl<F: Frame> EventPublisher for Hub<F> {
    async fn publish(&self, events: &[RecordedEvent]) {
        for event in events {
            self.inner.dispatch(event.stream_id, FeedCommand::Event(event.clone()));
            self.inner.send_to_bus(event.stream_id, &WireMessage::Event { event: event.clone() });
        }
    }
}

impl<F: Frame> HubInner<F> {
    fn dispatch(&self, tournament: Uuid, command: FeedCommand<F>) {
        let feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = feeds.get(&tournament) {
            let _ = handle.commands.send(command);
        }
    }

    fn send_to_bus(&self, tournament: Uuid, message: &WireMessage) {
        let stamped = Stamped { message, origin: self.origin, published_at_ms: self.clock.now_ms() };
        let Ok(payload) = serde_json::to_vec(&stamped) else { return };
        if self.outbox.try_send((channel(tournament), payload)).is_err() {
            self.stats.bus_publish_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn leave(&self, tournament: Uuid, id: u64) {
        self.stats.connections.fetch_sub(1, Ordering::Relaxed);
        let mut feeds = self.feeds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(handle) = feeds.get_mut(&tournament) {
            handle.connections -= 1;
            let _ = handle.commands.send(FeedCommand::Unsubscribe { id });
            if handle.connections == 0 {
                // Dropping the sender ends the feed task once it has drained its commands.
                feeds.remove(&tournament);
            }
        }
    }
}

/// Hands bus traffic to the feeds.
struct Listener<F>(Weak<HubInner<F>>);

impl<F: Frame> BusListener for Listener<F> {
    fn on_message(&self, channel: &str, payload: &[u8]) {
        let (Some(inner), Some(tournament)) = (self.0.upgrade(), tournament_of(channel)) else { return };
        let Received { message, stamp } = match serde_json::from_slice(payload) {
            Ok(received) => received,
            Err(error) => return tracing::warn!(channel, %error, "undecodable bus message ignored"),
        };
        if let Some(at) = stamp.published_at_ms {
            inner.stats.pubsub_lag.observe(at, inner.clock.now_ms());
        }
        if stamp.origin == Some(inner.origin) {
            // Delivered locally when it was published; unversioned messages would otherwise
            // reach this pod's connections twice.
            return;
        }
        match message {
            WireMessage::Event { event } if event.stream_id == tournament => {
                inner.dispatch(tournament, FeedCommand::Event(event))
            }
            WireMessage::Presence { tournament_id, players } if tournament_id == tournament => {
                inner.dispatch(tournament, FeedCommand::Unversioned(Arc::new(encode_presence(tournament, &players))))
            }
            WireMessage::Clicks { tournament_id, clicks } if tournament_id == tournament => {
                inner.dispatch(tournament, FeedCommand::Unversioned(Arc::new(encode_clicks(tournament, &clicks))))
            }
            _ => tracing::warn!(channel, "bus message for another tournament ignored"),
        }
    }

    fn on_resubscribed(&self) {
        let Some(inner) = self.0.upgrade() else { return };
        let feeds = inner.feeds.lock().unwrap_or_else(|p| p.into_inner());
        for handle in feeds.values() {
            let _ = handle.commands.send(FeedCommand::Resync);
        }
    }
}

/// Publishes to the bus in commit order, off the command path.
async fn publish_loop<F: Frame>(hub: Weak<HubInner<F>>, mut outbox: mpsc::Receiver<(String, Vec<u8>)>) {
    while let Some((channel, payload)) = outbox.recv().await {
        let Some(inner) = hub.upgrade() else { return };
        if let Err(error) = inner.bus.publish(&channel, payload).await {
            inner.stats.bus_publish_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%error, channel, "bus publish failed; subscribers will recover from the store");
        }
    }
}

struct Feed<F> {
    tournament: Uuid,
    version: u64,
    subscribers: Vec<Subscriber<F>>,
    inner: Arc<HubInner<F>>,
}

async fn run_feed<F: Frame>(
    inner: Arc<HubInner<F>>,
    tournament: Uuid,
    mut commands: mpsc::UnboundedReceiver<FeedCommand<F>>,
) {
    let channel = channel(tournament);
    // Subscribe before reading the version, so nothing committed in between is missed.
    inner.bus.subscribe(&channel).await;
    let mut feed = Feed { tournament, version: 0, subscribers: Vec::new(), inner: Arc::clone(&inner) };
    feed.version = loop {
        match inner.store.load(tournament, 0).await {
            Ok(events) => break events.last().map_or(0, |e| e.version),
            Err(error) => {
                tracing::warn!(%tournament, %error, "live feed cannot read the event store; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    () = inner.shutdown.cancelled() => return,
                }
            }
        }
    };
    while let Some(command) = commands.recv().await {
        match command {
            FeedCommand::Subscribe { subscriber, since, ready } => {
                feed.add(subscriber, since).await;
                let _ = ready.send(());
            }
            FeedCommand::Unsubscribe { id } => feed.subscribers.retain(|s| s.id != id),
            FeedCommand::Event(event) => feed.on_event(event).await,
            FeedCommand::Unversioned(encoded) => feed.send_all(&encoded),
            FeedCommand::Resync => feed.catch_up().await,
        }
    }
    inner.bus.unsubscribe(&channel).await;
}

impl<F: Frame> Feed<F> {
    async fn add(&mut self, subscriber: Subscriber<F>, since: Option<u64>) {
        if let Some(since) = since {
            // Deliver what the store has beyond our version to everyone first, then replay the
            // missed part to the newcomer: no gap and no duplicate at the seam.
            self.catch_up().await;
            if since < self.version {
                match self.inner.store.load(self.tournament, since).await {
                    Ok(events) => {
                        for event in events.iter().filter(|e| e.version <= self.version) {
                            if !send(&subscriber, &encode_event(event), &self.inner.stats) {
                                return;
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(tournament = %self.tournament, %error, "replay failed; closing the connection");
                        subscriber.control.close(CloseReason::TooSlow);
                        return;
                    }
                }
            }
        }
        if subscriber.protocol == Protocol::V2 {
            // Tells the client it is live: everything after this version will reach it.
            let subscribed =
                serde_json::json!({"type": "Subscribed", "tournamentId": self.tournament, "version": self.version});
            // A marker, not a delivered message: it is not counted.
            if subscriber.queue.try_send(subscribed.to_string().into()).is_err() {
                subscriber.control.close(CloseReason::TooSlow);
                return;
            }
        }
        self.subscribers.push(subscriber);
    }

    async fn on_event(&mut self, event: RecordedEvent) {
        if event.version <= self.version {
            return;
        }
        if event.version == self.version + 1 {
            self.deliver(&event);
        } else {
            self.inner.stats.gaps_repaired.fetch_add(1, Ordering::Relaxed);
            self.catch_up().await;
        }
    }

    /// Reads and delivers whatever the store has after our version.
    async fn catch_up(&mut self) {
        match self.inner.store.load(self.tournament, self.version).await {
            Ok(events) => {
                for event in &events {
                    if event.version == self.version + 1 {
                        self.deliver(event);
                    }
                }
            }
            Err(error) => tracing::warn!(tournament = %self.tournament, %error, "live feed could not catch up"),
        }
    }

    fn deliver(&mut self, event: &RecordedEvent) {
        self.version = event.version;
        if !self.subscribers.is_empty() {
            self.send_all(&encode_event(event));
        }
    }

    fn send_all(&mut self, encoded: &Encoded<F>) {
        let stats = &self.inner.stats;
        self.subscribers.retain(|s| send(s, encoded, stats));
    }
}

/// Queues a message for one connection; a full queue cuts the connection off.
fn send<F: Frame>(subscriber: &Subscriber<F>, encoded: &Encoded<F>, stats: &HubStats) -> bool {
    let frame = match subscriber.protocol {
        Protocol::SignalR => match &encoded.signalr {
            Some(frame) => frame.clone(),
            None => return true,
        },
        Protocol::V2 => encoded.v2.clone(),
    };
    match subscriber.queue.try_send(frame) {
        Ok(()) => {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            stats.slow_disconnects.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(connection = subscriber.id, "live connection fell behind its queue; disconnecting it");
            subscriber.control.close(CloseReason::TooSlow);
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}
