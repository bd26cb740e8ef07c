//! One tournament's feed on this pod: a task that owns the tournament's local connections and
//! the last version it delivered to them, so that ordering needs no lock.
//!
//! An event at or below the feed's version is a duplicate and dropped; the next one is
//! delivered; a later one means something was missed, and the feed reads what it lacks from
//! the event store, delivering in order. Whoever learns that the store may be ahead (the
//! periodic check, a bus reconnect, a pod announcing lost publications) asks the feed to catch
//! up the same way. A connection whose bounded queue is full is cut off instead of slowing the
//! others; it can reconnect and resume.

use crate::connection::{CloseReason, ConnectionControl, Protocol};
use crate::hub::HubInner;
use crate::messages::{channel, encode_clicks, encode_event, Encoded};
use crate::ports::ClickList;
use crate::queue::{Latest, QueueSender, TrySendError};
use crate::stats::{ClickQueue, HubStats, RepairCause};
use crate::Frame;
use domain::ports::RecordedEvent;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Pause between two attempts of a feed's first read of the store.
const START_RETRY: Duration = Duration::from_millis(500);

/// How an event reached the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// Committed on this pod.
    Local,
    /// From another pod, over the bus.
    Bus,
}

/// A command to a feed. Commands wait in the feed's bounded queue, which allocates room for a
/// block of them up front: the rare large ones are boxed to keep every slot small.
pub(crate) enum FeedCommand<F> {
    Subscribe(Box<Subscription<F>>),
    Unsubscribe {
        id: u64,
    },
    Event {
        event: Box<RecordedEvent>,
        via: Via,
    },
    /// The players online (no version): the latest list replaces one still queued.
    Presence(Arc<Encoded<F>>),
    /// A click list, queued behind what came before it so that a preview is not shown ahead
    /// of the events committed before the click. When the queue is full it waits in
    /// [`FeedShared`] instead.
    Clicks(Arc<ClickList>),
    /// The store may hold events past the feed's version (at least `at_least`, when known).
    CatchUp {
        cause: RepairCause,
        at_least: Option<u64>,
    },
}

/// A connection joining the feed: events after `since` are replayed first; `ready` is told
/// once it is registered.
pub(crate) struct Subscription<F> {
    pub subscriber: Subscriber<F>,
    pub since: Option<u64>,
    pub ready: oneshot::Sender<()>,
}

pub(crate) struct Subscriber<F> {
    pub id: u64,
    pub protocol: Protocol,
    pub queue: QueueSender<F>,
    pub control: Arc<ConnectionControl>,
}

/// What a feed's task shares with the hub.
#[derive(Debug)]
pub(crate) struct FeedShared {
    /// The last version delivered, read by the periodic check.
    pub version: AtomicU64,
    /// A command could not be queued: the feed catches up from the store.
    pub overflowed: AtomicBool,
    /// Stops the task: its last connection left, or the pod drains.
    pub stop: CancellationToken,
    /// Commands the task has taken from its queue.
    received: AtomicU64,
    /// Commands its queue holds at most.
    capacity: u64,
    /// The newest click list that found the command queue full. A newer one replaces it, so
    /// a busy feed delivers the latest list instead of dropping lists (a list is not an event,
    /// the store cannot give it back).
    clicks: Mutex<Option<WaitingList>>,
    /// Wakes the task when a list is waiting.
    clicks_waiting: Notify,
}

/// A click list waiting apart, and how many commands the task must have taken before it goes
/// out: by then, every command queued before it has been handled.
#[derive(Debug)]
struct WaitingList {
    list: Arc<ClickList>,
    behind: u64,
}

impl FeedShared {
    /// The shared part of a feed whose command queue holds `capacity` commands.
    pub fn new(stop: CancellationToken, capacity: usize) -> Self {
        FeedShared {
            version: AtomicU64::new(0),
            overflowed: AtomicBool::new(false),
            stop,
            received: AtomicU64::new(0),
            capacity: capacity as u64,
            clicks: Mutex::new(None),
            clicks_waiting: Notify::new(),
        }
    }

    /// Leaves a click list that found the command queue full for the feed, replacing the one
    /// still waiting (counted as coalesced) unless that one is newer, and wakes the feed. The
    /// list goes out behind the commands queued before it, which the queue's capacity bounds:
    /// once the queue is empty, or once the task has taken that many more commands.
    pub fn offer_clicks(&self, list: Arc<ClickList>, stats: &HubStats) {
        let behind = self.received.load(Ordering::Acquire) + self.capacity;
        let mut waiting = self.lock_clicks();
        match waiting.as_mut() {
            Some(current) => {
                stats.coalesced(ClickQueue::Feed);
                if list.seq == 0 || list.seq > current.list.seq {
                    *current = WaitingList { list, behind };
                }
            }
            None => *waiting = Some(WaitingList { list, behind }),
        }
        drop(waiting);
        self.clicks_waiting.notify_one();
    }

    /// The waiting click list if the commands queued before it have been handled; `Err` while
    /// it must still wait, `Ok(None)` when none waits.
    fn take_clicks(&self, queue_empty: bool) -> Result<Option<Arc<ClickList>>, ()> {
        let received = self.received.load(Ordering::Acquire);
        let mut waiting = self.lock_clicks();
        match waiting.as_ref() {
            Some(w) if !queue_empty && received < w.behind => Err(()),
            _ => Ok(waiting.take().map(|w| w.list)),
        }
    }

    fn lock_clicks(&self) -> std::sync::MutexGuard<'_, Option<WaitingList>> {
        self.clicks.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct Feed<F> {
    tournament: Uuid,
    version: u64,
    /// Sequence number of the last click list delivered.
    clicks_seq: u64,
    subscribers: Vec<Subscriber<F>>,
    inner: Arc<HubInner<F>>,
    shared: Arc<FeedShared>,
}

/// The task of a feed: listens on the tournament's bus channel, learns the stream's version,
/// then handles commands until stopped or the hub lets go of it.
pub(crate) async fn run<F: Frame>(
    inner: Arc<HubInner<F>>,
    tournament: Uuid,
    mut commands: mpsc::Receiver<FeedCommand<F>>,
    shared: Arc<FeedShared>,
) {
    let channel = channel(tournament);
    // Subscribe before reading the version, so nothing committed in between is missed.
    inner.bus.subscribe(&channel).await;
    if let Some(version) = start_version(&inner, tournament, &shared.stop).await {
        shared.version.store(version, Ordering::Release);
        let mut feed = Feed {
            tournament,
            version,
            clicks_seq: 0,
            subscribers: Vec::new(),
            inner: Arc::clone(&inner),
            shared: Arc::clone(&shared),
        };
        // Whether a click list may be waiting apart.
        let mut list_waiting = false;
        loop {
            tokio::select! {
                biased;
                () = shared.stop.cancelled() => break,
                () = shared.clicks_waiting.notified() => list_waiting = true,
                command = commands.recv() => match command {
                    Some(command) => {
                        shared.received.fetch_add(1, Ordering::AcqRel);
                        feed.handle(command).await;
                    }
                    None => break,
                },
            }
            if shared.overflowed.swap(false, Ordering::AcqRel) {
                feed.catch_up(Some(RepairCause::Overflow)).await;
            }
            // A list waiting apart goes out behind the commands queued before it, never ahead
            // of an event committed before its click.
            if list_waiting {
                if let Ok(taken) = shared.take_clicks(commands.is_empty()) {
                    list_waiting = false;
                    if let Some(list) = taken {
                        feed.deliver_clicks(&list);
                    }
                }
            }
        }
    }
    inner.bus.unsubscribe(&channel).await;
}

/// The stream's version as the feed starts, read until it succeeds or the feed is stopped.
async fn start_version<F: Frame>(inner: &HubInner<F>, tournament: Uuid, stop: &CancellationToken) -> Option<u64> {
    let stream = [tournament];
    loop {
        let read = tokio::select! {
            () = stop.cancelled() => return None,
            read = inner.store.current_versions(&stream) => read,
        };
        match read {
            Ok(versions) => return Some(versions.first().copied().unwrap_or(0)),
            Err(error) => {
                tracing::warn!(%tournament, %error, "live feed cannot read the event store; retrying");
                tokio::select! {
                    () = tokio::time::sleep(START_RETRY) => {}
                    () = stop.cancelled() => return None,
                }
            }
        }
    }
}

impl<F: Frame> Feed<F> {
    async fn handle(&mut self, command: FeedCommand<F>) {
        match command {
            FeedCommand::Subscribe(subscription) => {
                let Subscription { subscriber, since, ready } = *subscription;
                self.add(subscriber, since).await;
                let _ = ready.send(());
            }
            FeedCommand::Unsubscribe { id } => self.subscribers.retain(|s| s.id != id),
            FeedCommand::Event { event, via } => self.on_event(*event, via).await,
            FeedCommand::Presence(encoded) => self.send_presence(&encoded),
            FeedCommand::Clicks(list) => self.deliver_clicks(&list),
            FeedCommand::CatchUp { cause, at_least } => {
                if at_least.is_none_or(|version| version > self.version) {
                    self.catch_up(Some(cause)).await;
                }
            }
        }
    }

    /// Delivers a click list, encoded once for every connection. Lists of two clicks recorded
    /// at once can arrive in either order; the older one must not replace the newer.
    fn deliver_clicks(&mut self, list: &ClickList) {
        if list.seq == 0 || list.seq > self.clicks_seq {
            self.clicks_seq = self.clicks_seq.max(list.seq);
            if !self.subscribers.is_empty() {
                // Each list holds every click of the tournament: a newer one replaces one still
                // queued to a connection, so that clicks alone never fill a queue.
                let encoded = encode_clicks(self.tournament, &list.clicks);
                let stats = &self.inner.stats;
                self.subscribers.retain(|s| {
                    let Some(frame) = frame_for(s, &encoded) else { return true };
                    match s.queue.send_latest(Latest::Clicks, frame) {
                        Ok(true) => {
                            stats.coalesced(ClickQueue::Connection);
                            true
                        }
                        sent => queued(s, sent.map(|_| ()), stats),
                    }
                });
            }
        }
    }

    async fn add(&mut self, subscriber: Subscriber<F>, since: Option<u64>) {
        if let Some(since) = since {
            // Deliver what the store has beyond our version to everyone first, then replay the
            // missed part to the newcomer: no gap and no duplicate at the seam.
            self.catch_up(None).await;
            if self.version.saturating_sub(since) > self.inner.options.max_replay {
                // Too far behind to replay (what one connection holds stays bounded, however
                // long the stream): `Subscribed` alone, with a version past `since`, tells the
                // client to read the tournament again.
                tracing::debug!(tournament = %self.tournament, since, version = self.version, "resumption too far back to replay");
            } else if since < self.version {
                match self.inner.store.load(self.tournament, since).await {
                    Ok(events) => {
                        // Queued beyond the queue's capacity (up to the replay's bound): a
                        // client asleep through a night still resumes, and live messages keep
                        // the queue's room behind it.
                        for event in events.iter().filter(|e| e.version <= self.version) {
                            let Some(frame) = frame_for(&subscriber, &encode_event(event)) else { continue };
                            if subscriber.queue.send_replayed(frame).is_err() {
                                return;
                            }
                            self.inner.stats.delivered.fetch_add(1, Ordering::Relaxed);
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

    async fn on_event(&mut self, event: RecordedEvent, via: Via) {
        if event.version <= self.version {
            return;
        }
        if event.version == self.version + 1 {
            self.deliver(&event, via == Via::Bus);
        } else {
            self.catch_up(Some(RepairCause::BusGap)).await;
        }
    }

    /// Reads and delivers whatever the store has after our version; counts a repair of `cause`
    /// when that was anything. A failed read is retried by the next periodic check.
    async fn catch_up(&mut self, cause: Option<RepairCause>) {
        let before = self.version;
        match self.inner.store.load(self.tournament, self.version).await {
            Ok(events) => {
                for event in &events {
                    if event.version == self.version + 1 {
                        self.deliver(event, true);
                    }
                }
            }
            Err(error) => tracing::warn!(tournament = %self.tournament, %error, "live feed could not catch up"),
        }
        if let Some(cause) = cause.filter(|_| self.version > before) {
            self.inner.stats.repaired(cause);
        }
    }

    /// Delivers the next version to every connection; `remote` when it was not committed on
    /// this pod just now (its commit-to-delivery time is measured).
    fn deliver(&mut self, event: &RecordedEvent, remote: bool) {
        self.version = event.version;
        self.shared.version.store(event.version, Ordering::Release);
        if remote {
            // This pod's own commits were learned as they were published.
            self.inner.rosters.learn_event(event);
        }
        if !self.subscribers.is_empty() {
            if remote {
                let delay_ms = (self.inner.clock.now_ms() - event.recorded_at_ms).max(0);
                self.inner.stats.commit_to_delivery.observe(delay_ms as f64 / 1000.0);
            }
            self.send_all(&encode_event(event));
        }
    }

    fn send_all(&mut self, encoded: &Encoded<F>) {
        let stats = &self.inner.stats;
        self.subscribers.retain(|s| send(s, encoded, stats));
    }

    /// Delivers a list of the players online. Each list is whole: a newer one replaces one
    /// still queued to a connection, so that a player coming and going in a loop never fills a
    /// queue.
    fn send_presence(&mut self, encoded: &Encoded<F>) {
        let stats = &self.inner.stats;
        self.subscribers.retain(|s| {
            let Some(frame) = frame_for(s, encoded) else { return true };
            match s.queue.send_latest(Latest::Presence, frame) {
                Ok(true) => {
                    stats.presence_lists_coalesced.fetch_add(1, Ordering::Relaxed);
                    true
                }
                sent => queued(s, sent.map(|_| ()), stats),
            }
        });
    }
}

/// The frame of a message in the connection's protocol; none when the protocol has no such
/// message.
fn frame_for<F: Frame>(subscriber: &Subscriber<F>, encoded: &Encoded<F>) -> Option<F> {
    match subscriber.protocol {
        Protocol::SignalR => encoded.signalr.clone(),
        Protocol::V2 => Some(encoded.v2.clone()),
    }
}

/// Queues a message for one connection; a full queue cuts the connection off (what it still
/// had queued is lost to it, and counted).
fn send<F: Frame>(subscriber: &Subscriber<F>, encoded: &Encoded<F>, stats: &HubStats) -> bool {
    let Some(frame) = frame_for(subscriber, encoded) else { return true };
    queued(subscriber, subscriber.queue.try_send(frame), stats)
}

/// Counts a frame queued to a connection, or cuts the connection off when its queue was full;
/// `false` when the connection is gone.
fn queued<F>(subscriber: &Subscriber<F>, sent: Result<(), TrySendError<F>>, stats: &HubStats) -> bool {
    match sent {
        Ok(()) => {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(TrySendError::Full(_)) => {
            let queued = subscriber.queue.len();
            stats.slow_disconnects.fetch_add(1, Ordering::Relaxed);
            stats.slow_consumer_messages_dropped.fetch_add(1 + queued as u64, Ordering::Relaxed);
            tracing::warn!(connection = subscriber.id, "live connection fell behind its queue; disconnecting it");
            subscriber.control.close(CloseReason::TooSlow);
            false
        }
        Err(TrySendError::Closed(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Click;

    fn list(seq: u64) -> Arc<ClickList> {
        let click = Click { team: domain::Team::Bayern, name: format!("P{seq}"), surname: "S".into(), at_ms: 0 };
        Arc::new(ClickList { seq, clicks: vec![click] })
    }

    #[test]
    fn a_waiting_list_goes_out_once_the_commands_queued_before_it_are_taken_or_the_queue_is_empty() {
        let stats = HubStats::default();
        let shared = FeedShared::new(CancellationToken::new(), 2);
        assert_eq!(shared.take_clicks(false), Ok(None), "none waits");
        shared.received.store(5, Ordering::Release);
        // Two commands at most were queued before it: the 6th and the 7th.
        shared.offer_clicks(list(1), &stats);
        assert_eq!(shared.take_clicks(false), Err(()));
        shared.received.store(6, Ordering::Release);
        assert_eq!(shared.take_clicks(false), Err(()));
        shared.received.store(7, Ordering::Release);
        assert_eq!(shared.take_clicks(false).map(|l| l.map(|l| l.seq)), Ok(Some(1)));
        // A queue found empty has nothing before the list, however few commands were taken.
        shared.offer_clicks(list(2), &stats);
        assert_eq!(shared.take_clicks(false), Err(()));
        assert_eq!(shared.take_clicks(true).map(|l| l.map(|l| l.seq)), Ok(Some(2)));
    }

    #[test]
    fn a_newer_waiting_list_replaces_an_older_one_and_waits_behind_what_came_before_it() {
        let stats = HubStats::default();
        let shared = FeedShared::new(CancellationToken::new(), 2);
        shared.offer_clicks(list(2), &stats);
        shared.received.store(1, Ordering::Release);
        shared.offer_clicks(list(1), &stats);
        shared.offer_clicks(list(3), &stats);
        assert_eq!(stats.click_lists_coalesced(ClickQueue::Feed), 2);
        // List 3 came after the first command was taken: it waits for the third.
        shared.received.store(2, Ordering::Release);
        assert_eq!(shared.take_clicks(false), Err(()));
        shared.received.store(3, Ordering::Release);
        assert_eq!(shared.take_clicks(false).map(|l| l.map(|l| l.seq)), Ok(Some(3)));
    }
}
