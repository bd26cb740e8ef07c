//! The live hub of one pod: a [feed](crate::feed) per tournament with local connections, fed by
//! this pod's commits and by the bus, delivering every event exactly once per connection in
//! version order, and within the delivery bound whatever happens to its publication.
//!
//! The bus is only a hint; the event store is the truth. Three things make sure a feed never
//! stays behind the store for long:
//! - the **periodic check**: every third of the delivery bound, one read of the current
//!   version of every stream this pod serves (an index read, not a load); a feed still behind
//!   the version the previous check saw (so the bus had a whole period to deliver) catches up
//!   from the store;
//! - **resync**: when the bus reconnects or drops messages, every feed catches up at once;
//! - **announcements**: a pod whose publications failed tells the others, once it can publish
//!   again, which version each of those streams reached, and the pods behind catch up.

use crate::clock::Clock;
use crate::connection::{CloseReason, ConnectionControl, Protocol};
use crate::feed::{self, FeedCommand, FeedShared, Subscriber, Subscription, Via};
use crate::messages::{channel, click_publication, encode_presence, tournament_of, BusPayload, Stamped, WireMessage};
use crate::ports::{Bus, BusListener, ClickList, ClickPublication, PresenceEntry};
use crate::queue::QueueReceiver;
use crate::rosters::Rosters;
use crate::stats::{ClickQueue, HubStats, RepairCause};
use crate::Frame;
use domain::ports::{EventPublisher, EventStore, RecordedEvent};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

/// How often a pod with unannounced failed publications tries to announce them.
const ANNOUNCE_RETRY: Duration = Duration::from_millis(500);

/// Tunables of the hub.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Messages queued per connection before it is cut off as too slow.
    pub queue_capacity: usize,
    /// Publishes waiting for the bus before newer ones are dropped (subscribers then recover
    /// from the store). Click lists that find it full are coalesced instead (see
    /// [`Hub::broadcast_clicks`]).
    pub publish_backlog: usize,
    /// Publications waiting for the bus (events, presence and click lists) from which clicks
    /// are refused as overloaded, so that events keep room in the publish backlog.
    pub click_refusal_backlog: usize,
    /// Clicks being recorded at once on this pod (waiting for the event store or the shared
    /// state) beyond which more are refused as overloaded.
    pub clicks_in_flight: usize,
    /// Commands queued per feed before newer ones are dropped (the feed then catches up from
    /// the store).
    pub feed_backlog: usize,
    /// Time within which a committed event reaches every subscribed connection of this pod,
    /// whatever happened to its publication (with the store reachable).
    pub delivery_bound: Duration,
    /// Most events replayed to a v2 connection resuming with `since`; one further behind is
    /// told only the stream's version, and reads the tournament again.
    pub max_replay: u64,
}

impl Default for HubOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 256,
            publish_backlog: 65_536,
            click_refusal_backlog: 8_192,
            clicks_in_flight: 1_024,
            feed_backlog: 1024,
            delivery_bound: Duration::from_secs(5),
            max_replay: 512,
        }
    }
}

impl HubOptions {
    /// Period of the check of the store's versions: a third of the bound, since a feed is
    /// repaired at the second check after the commit at the latest, leaving a third for the
    /// repair itself.
    pub fn check_period(&self) -> Duration {
        (self.delivery_bound / 3).max(Duration::from_millis(1))
    }
}

struct FeedHandle<F> {
    commands: mpsc::Sender<FeedCommand<F>>,
    /// The feed's connections, by id: the pod's drain closes them.
    connections: HashMap<u64, Arc<ConnectionControl>>,
    shared: Arc<FeedShared>,
}

/// The newest click list of each tournament that found the outbox full, in the order the
/// tournaments first had one waiting.
#[derive(Default)]
struct WaitingClicks {
    lists: HashMap<Uuid, Arc<ClickList>>,
    order: VecDeque<Uuid>,
}

/// A publication waiting for the bus.
struct Outgoing {
    channel: String,
    payload: Vec<u8>,
    /// The stream and version of an event, remembered when its publication fails.
    event: Option<(Uuid, u64)>,
}

pub(crate) struct HubInner<F> {
    /// Names this hub's publications, so it skips them when the bus hands them back.
    origin: Uuid,
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) bus: Arc<dyn Bus>,
    pub(crate) clock: Arc<dyn Clock>,
    feeds: Mutex<HashMap<Uuid, FeedHandle<F>>>,
    outbox: mpsc::Sender<Outgoing>,
    /// Click lists that found the outbox full; a newer list replaces a waiting one.
    waiting_clicks: Mutex<WaitingClicks>,
    /// Wakes the publisher when a click list is waiting.
    clicks_waiting: Arc<Notify>,
    /// Streams whose events did not reach the bus, with the highest version lost.
    unannounced: Mutex<HashMap<Uuid, u64>>,
    pub(crate) options: HubOptions,
    next_id: AtomicU64,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    pub(crate) stats: HubStats,
    /// Joined players learned from the events this pod delivers and commits.
    pub(crate) rosters: Rosters,
    /// Told of every tournament served once the bus restored its subscriptions.
    on_resubscribed: OnceLock<Resubscribed<F>>,
}

/// What else than events a pod may have missed while the bus was not subscribed (click
/// lists) is read again by this hook, called for every tournament served once the bus
/// restored its subscriptions. It gets the hub, so it need not hold one.
pub type Resubscribed<F> = Arc<dyn Fn(&Hub<F>, Uuid) + Send + Sync>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
    /// Builds the hub, registers it as the bus listener and starts its publisher and its
    /// periodic check (both stop when the last clone of the hub is dropped).
    pub fn new(store: Arc<dyn EventStore>, bus: Arc<dyn Bus>, clock: Arc<dyn Clock>, options: HubOptions) -> Hub<F> {
        let (outbox, outbox_rx) = mpsc::channel(options.publish_backlog.max(1));
        let check_period = options.check_period();
        let clicks_waiting = Arc::new(Notify::new());
        let inner = Arc::new(HubInner {
            origin: Uuid::new_v4(),
            store,
            bus: Arc::clone(&bus),
            clock,
            feeds: Mutex::new(HashMap::new()),
            outbox,
            waiting_clicks: Mutex::default(),
            clicks_waiting: Arc::clone(&clicks_waiting),
            unannounced: Mutex::new(HashMap::new()),
            options,
            next_id: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            stats: HubStats::default(),
            rosters: Rosters::default(),
            on_resubscribed: OnceLock::new(),
        });
        bus.set_listener(Arc::new(Listener(Arc::downgrade(&inner))));
        tokio::spawn(publish_loop(Arc::downgrade(&inner), outbox_rx, clicks_waiting));
        tokio::spawn(check_loop(Arc::downgrade(&inner), check_period));
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

    pub fn options(&self) -> &HubOptions {
        &self.inner.options
    }

    /// Sets the hook called for every tournament served once the bus restored its
    /// subscriptions; only the first one set is kept.
    pub fn on_resubscribed(&self, hook: Resubscribed<F>) {
        let _ = self.inner.on_resubscribed.set(hook);
    }

    /// The joined players this pod knows of, from the events it delivered or committed.
    pub fn rosters(&self) -> &Rosters {
        &self.inner.rosters
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
    ) -> (Membership<F>, QueueReceiver<F>) {
        let inner = &self.inner;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (queue_tx, queue) = crate::queue::queue(inner.options.queue_capacity);
        let control = Arc::new(ConnectionControl::new(&inner.shutdown));
        let subscriber = Subscriber { id, protocol, queue: queue_tx, control: Arc::clone(&control) };
        let commands = {
            let mut feeds = lock(&inner.feeds);
            let handle = feeds.entry(tournament).or_insert_with(|| {
                let capacity = inner.options.feed_backlog.max(1);
                let (commands, rx) = mpsc::channel(capacity);
                let shared = Arc::new(FeedShared::new(inner.shutdown.child_token(), capacity));
                tokio::spawn(feed::run(Arc::clone(inner), tournament, rx, Arc::clone(&shared)));
                FeedHandle { commands, connections: HashMap::new(), shared }
            });
            handle.connections.insert(id, Arc::clone(&control));
            // Looked at under the lock the drain takes to close the connections listed.
            if inner.shutdown.is_cancelled() {
                control.close(CloseReason::ShuttingDown);
            }
            handle.commands.clone()
        };
        inner.stats.connections.fetch_add(1, Ordering::Relaxed);
        let membership = Membership { id, tournament, control, hub: Arc::downgrade(inner) };
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        // Waits for room in the feed's queue. An error means the feed stopped (the pod is
        // draining); the connection's queue then just ends.
        if commands
            .send(FeedCommand::Subscribe(Box::new(Subscription { subscriber, since, ready: ready_tx })))
            .await
            .is_ok()
        {
            let _ = ready.await;
        }
        (membership, queue)
    }

    /// Delivers a team-click list to this pod's connections of the tournament and to the other
    /// pods, without waiting. Lists are queued like other messages, but never dropped: one that
    /// finds the feed's queue or the bus outbox full waits apart, and a newer list of the
    /// tournament replaces it there, so the latest list always goes out (counted in
    /// [`HubStats::click_lists_coalesced`]). The list is encoded once for this pod's
    /// connections, by the feed, and once for the bus.
    pub fn broadcast_clicks(&self, tournament: Uuid, list: ClickList) {
        let list = Arc::new(list);
        self.inner.offer_clicks(tournament, Arc::clone(&list));
        self.inner.queue_clicks(tournament, list);
    }

    /// Delivers a team-click list to this pod's connections of the tournament only: the list
    /// went out to the other pods with its recording (see
    /// [`SharedState::record_and_publish_click`](crate::ports::SharedState::record_and_publish_click)).
    pub fn deliver_clicks(&self, tournament: Uuid, list: ClickList) {
        self.inner.offer_clicks(tournament, Arc::new(list));
    }

    /// How a click list of `tournament` goes on the bus, stamped by this pod now, for a shared
    /// state that publishes it itself.
    pub fn click_publication(&self, tournament: Uuid) -> ClickPublication {
        click_publication(tournament, self.inner.origin, self.inner.clock.now_ms())
    }

    /// Publications waiting for the bus: events and presence lists in the outbox, and the
    /// tournaments with a click list waiting.
    pub fn publish_backlog(&self) -> usize {
        let outbox = self.inner.outbox.max_capacity() - self.inner.outbox.capacity();
        outbox + lock(&self.inner.waiting_clicks).lists.len()
    }

    /// Delivers the list of connected players to this pod's connections of the tournament and
    /// to the other pods.
    pub fn broadcast_presence(&self, tournament: Uuid, players: Vec<PresenceEntry>) {
        self.inner.dispatch(tournament, FeedCommand::Presence(Arc::new(encode_presence(tournament, &players))));
        self.inner.send_to_bus(tournament, &WireMessage::Presence { tournament_id: tournament, players }, None);
    }

    /// Whether [`Hub::drain`] has been called.
    pub fn is_draining(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// Tells every connection to reconnect elsewhere, and stops every feed.
    pub fn drain(&self) {
        self.inner.shutdown.cancel();
        for handle in lock(&self.inner.feeds).values() {
            for control in handle.connections.values() {
                control.close(CloseReason::ShuttingDown);
            }
        }
    }

    /// Tournaments this pod serves now.
    pub fn tournaments_served(&self) -> usize {
        lock(&self.inner.feeds).len()
    }
}

#[async_trait::async_trait]
impl<F: Frame> EventPublisher for Hub<F> {
    async fn publish(&self, events: &[RecordedEvent]) {
        for event in events {
            self.inner.rosters.learn_event(event);
            self.inner
                .dispatch(event.stream_id, FeedCommand::Event { event: Box::new(event.clone()), via: Via::Local });
            let message = WireMessage::Event { event: event.clone() };
            self.inner.send_to_bus(event.stream_id, &message, Some(event.version));
        }
    }
}

impl<F: Frame> HubInner<F> {
    /// Queues a command for the tournament's feed, if this pod serves it; when the feed's
    /// queue is full the command is dropped and the feed catches up from the store instead.
    fn dispatch(&self, tournament: Uuid, command: FeedCommand<F>) {
        let feeds = lock(&self.feeds);
        if let Some(handle) = feeds.get(&tournament) {
            if let Err(TrySendError::Full(_)) = handle.commands.try_send(command) {
                handle.shared.overflowed.store(true, Ordering::Release);
            }
        }
    }

    /// Hands a click list to the tournament's feed, if this pod serves it: queued behind the
    /// commands before it, or, when the feed's queue is full, left to replace the list waiting
    /// there.
    fn offer_clicks(&self, tournament: Uuid, list: Arc<ClickList>) {
        if let Some(handle) = lock(&self.feeds).get(&tournament) {
            if let Err(TrySendError::Full(FeedCommand::Clicks(list))) =
                handle.commands.try_send(FeedCommand::Clicks(list))
            {
                handle.shared.offer_clicks(list, &self.stats);
            }
        }
    }

    /// Queues a click list for the bus in the outbox; when the outbox is full, leaves it to
    /// replace the tournament's waiting list (unless that one is newer).
    fn queue_clicks(&self, tournament: Uuid, list: Arc<ClickList>) {
        if let Ok(room) = self.outbox.try_reserve() {
            if let Some(payload) = self.clicks_payload(tournament, &list) {
                room.send(Outgoing { channel: channel(tournament), payload, event: None });
            }
            return;
        }
        let mut waiting = lock(&self.waiting_clicks);
        let WaitingClicks { lists, order } = &mut *waiting;
        match lists.get_mut(&tournament) {
            Some(current) => {
                self.stats.coalesced(ClickQueue::Bus);
                if list.seq == 0 || list.seq > current.seq {
                    *current = list;
                }
            }
            None => {
                lists.insert(tournament, list);
                order.push_back(tournament);
            }
        }
        drop(waiting);
        self.clicks_waiting.notify_one();
    }

    /// The bus payload of a click list.
    fn clicks_payload(&self, tournament: Uuid, list: &ClickList) -> Option<Vec<u8>> {
        let message = WireMessage::Clicks { tournament_id: tournament, clicks: list.clicks.clone(), seq: list.seq };
        let stamped = Stamped { message: &message, origin: self.origin, published_at_ms: self.clock.now_ms() };
        serde_json::to_vec(&stamped).ok()
    }

    /// Publishes the click list that has waited longest; `false` when none waits.
    async fn publish_waiting_clicks(&self) -> bool {
        let next = {
            let mut waiting = lock(&self.waiting_clicks);
            let WaitingClicks { lists, order } = &mut *waiting;
            order.pop_front().and_then(|tournament| lists.remove(&tournament).map(|list| (tournament, list)))
        };
        let Some((tournament, list)) = next else { return false };
        let Some(payload) = self.clicks_payload(tournament, &list) else { return true };
        if let Err(error) = self.bus.publish(&channel(tournament), payload).await {
            self.stats.bus_publish_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%error, %tournament, "a click list could not be published; the next click replaces it");
        }
        true
    }

    /// Queues a publication; `version` names the event it carries, remembered when it cannot
    /// be published.
    fn send_to_bus(&self, tournament: Uuid, message: &WireMessage, version: Option<u64>) {
        let stamped = Stamped { message, origin: self.origin, published_at_ms: self.clock.now_ms() };
        let Ok(payload) = serde_json::to_vec(&stamped) else { return };
        let outgoing = Outgoing { channel: channel(tournament), payload, event: version.map(|v| (tournament, v)) };
        if self.outbox.try_send(outgoing).is_err() {
            self.stats.bus_outbox_full.fetch_add(1, Ordering::Relaxed);
            if let Some(version) = version {
                self.unannounced(tournament, version);
            }
        }
    }

    fn unannounced(&self, tournament: Uuid, version: u64) {
        let mut lost = lock(&self.unannounced);
        let highest = lost.entry(tournament).or_default();
        *highest = (*highest).max(version);
    }

    /// Tells the other pods the version of every stream whose publications failed, stopping
    /// at the first that cannot be published (the bus is still down; the next try follows).
    async fn announce(&self) {
        let pending: Vec<(Uuid, u64)> = lock(&self.unannounced).iter().map(|(t, v)| (*t, *v)).collect();
        for (tournament, version) in pending {
            let message = WireMessage::Head { tournament_id: tournament, version };
            let stamped = Stamped { message: &message, origin: self.origin, published_at_ms: self.clock.now_ms() };
            let Ok(payload) = serde_json::to_vec(&stamped) else { continue };
            if self.bus.publish(&channel(tournament), payload).await.is_err() {
                return;
            }
            let mut lost = lock(&self.unannounced);
            if lost.get(&tournament) == Some(&version) {
                lost.remove(&tournament);
            }
        }
    }

    fn leave(&self, tournament: Uuid, id: u64) {
        self.stats.connections.fetch_sub(1, Ordering::Relaxed);
        let mut feeds = lock(&self.feeds);
        if let Some(handle) = feeds.get_mut(&tournament) {
            handle.connections.remove(&id);
            // When the queue is full the connection stays listed until the feed next writes to
            // its closed queue.
            let _ = handle.commands.try_send(FeedCommand::Unsubscribe { id });
            if handle.connections.is_empty() {
                handle.shared.stop.cancel();
                feeds.remove(&tournament);
            }
        }
    }

    /// Asks every feed to catch up from the store.
    fn resync_all(&self) {
        for handle in lock(&self.feeds).values() {
            let command = FeedCommand::CatchUp { cause: RepairCause::Resync, at_least: None };
            if let Err(TrySendError::Full(_)) = handle.commands.try_send(command) {
                handle.shared.overflowed.store(true, Ordering::Release);
            }
        }
    }
}

/// Hands bus traffic to the feeds.
struct Listener<F>(Weak<HubInner<F>>);

impl<F: Frame> BusListener for Listener<F> {
    fn on_message(&self, channel: &str, payload: &[u8]) {
        let (Some(inner), Some(tournament)) = (self.0.upgrade(), tournament_of(channel)) else { return };
        let read: BusPayload = match serde_json::from_slice(payload) {
            Ok(read) => read,
            Err(error) => return tracing::warn!(channel, %error, "undecodable bus message ignored"),
        };
        if let Some(at) = read.published_at_ms {
            inner.stats.pubsub_lag.observe(at, inner.clock.now_ms());
        }
        if read.origin == Some(inner.origin) {
            // Delivered locally when it was published; unversioned messages would otherwise
            // reach this pod's connections twice. Not decoded any further.
            return;
        }
        let message = match read.message() {
            Ok(message) => message,
            Err(error) => return tracing::warn!(channel, %error, "undecodable bus message ignored"),
        };
        let command = match message {
            WireMessage::Event { event } if event.stream_id == tournament => {
                FeedCommand::Event { event: Box::new(event), via: Via::Bus }
            }
            WireMessage::Presence { tournament_id, players } if tournament_id == tournament => {
                FeedCommand::Presence(Arc::new(encode_presence(tournament, &players)))
            }
            WireMessage::Clicks { tournament_id, clicks, seq } if tournament_id == tournament => {
                // Lists published by a shared state hold their clicks in its order.
                return inner.offer_clicks(tournament, Arc::new(ClickList::new(seq, clicks)));
            }
            WireMessage::Head { tournament_id, version } if tournament_id == tournament => {
                FeedCommand::CatchUp { cause: RepairCause::Resync, at_least: Some(version) }
            }
            _ => return tracing::warn!(channel, "bus message for another tournament ignored"),
        };
        inner.dispatch(tournament, command);
    }

    fn on_resubscribed(&self) {
        if let Some(inner) = self.0.upgrade() {
            inner.resync_all();
            if let Some(hook) = inner.on_resubscribed.get().cloned() {
                let served: Vec<Uuid> = lock(&inner.feeds).keys().copied().collect();
                let hub = Hub { inner };
                for tournament in served {
                    hook(&hub, tournament);
                }
            }
        }
    }
}

/// Publishes to the bus in commit order, off the command path, and announces the streams
/// whose publications failed once the bus takes publications again. Waiting click lists take
/// turns with the outbox, one after each publication from it, so neither starves the other.
async fn publish_loop<F: Frame>(
    hub: Weak<HubInner<F>>,
    mut outbox: mpsc::Receiver<Outgoing>,
    clicks_waiting: Arc<Notify>,
) {
    let mut retry = tokio::time::interval(ANNOUNCE_RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            outgoing = outbox.recv() => {
                let (Some(outgoing), Some(inner)) = (outgoing, hub.upgrade()) else { return };
                if let Err(error) = inner.bus.publish(&outgoing.channel, outgoing.payload).await {
                    inner.stats.bus_publish_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%error, channel = outgoing.channel, "bus publish failed; subscribers will recover from the store");
                    if let Some((tournament, version)) = outgoing.event {
                        inner.unannounced(tournament, version);
                    }
                }
                inner.publish_waiting_clicks().await;
            }
            () = clicks_waiting.notified() => {
                let Some(inner) = hub.upgrade() else { return };
                // Those waiting now; lists queued meanwhile wait for the next turn.
                let waiting = lock(&inner.waiting_clicks).order.len();
                for _ in 0..waiting {
                    if !inner.publish_waiting_clicks().await {
                        break;
                    }
                }
            }
            _ = retry.tick() => {
                let Some(inner) = hub.upgrade() else { return };
                if !lock(&inner.unannounced).is_empty() {
                    inner.announce().await;
                }
            }
        }
    }
}

/// The periodic check: every `period`, feeds still behind the version the store had at the
/// previous check catch up, then the store's versions of every served stream are read again.
async fn check_loop<F: Frame>(hub: Weak<HubInner<F>>, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen: HashMap<Uuid, u64> = HashMap::new();
    let mut failing = false;
    loop {
        ticks.tick().await;
        let Some(inner) = hub.upgrade() else { return };
        let served: Vec<(Uuid, u64)> = {
            let feeds = lock(&inner.feeds);
            let mut served = Vec::with_capacity(feeds.len());
            for (tournament, handle) in feeds.iter() {
                let delivered = handle.shared.version.load(Ordering::Acquire);
                if let Some(&stored) = seen.get(tournament).filter(|&&stored| stored > delivered) {
                    let command = FeedCommand::CatchUp { cause: RepairCause::PeriodicCheck, at_least: Some(stored) };
                    if let Err(TrySendError::Full(_)) = handle.commands.try_send(command) {
                        handle.shared.overflowed.store(true, Ordering::Release);
                    }
                }
                served.push((*tournament, delivered));
            }
            served
        };
        if served.is_empty() {
            seen.clear();
            continue;
        }
        let streams: Vec<Uuid> = served.iter().map(|(tournament, _)| *tournament).collect();
        match inner.store.current_versions(&streams).await {
            Ok(versions) => {
                inner.stats.versions_checked.fetch_add(streams.len() as u64, Ordering::Relaxed);
                seen = streams.into_iter().zip(versions).collect();
                if std::mem::take(&mut failing) {
                    tracing::info!("the periodic check of the live feeds reads the event store again");
                }
            }
            Err(error) => {
                // The versions seen last stay: feeds behind them are still repaired.
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(%error, "the periodic check of the live feeds cannot read the event store");
                }
            }
        }
    }
}
