//! Fakes of the engine's ports for its tests under tokio's paused time: an event store in
//! memory and a bus between several pods that can drop, duplicate, delay (and so reorder)
//! messages, lose publications and go away.
#![allow(dead_code)]

use async_trait::async_trait;
use domain::ports::{AppendRequest, EventMetadata, EventStore, RecordedEvent, Snapshot, StoreError};
use domain::{PlayerName, PlayerSurname, TournamentEvent};
use live::ports::{Bus, BusListener, LiveError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use uuid::Uuid;

/// Events in memory, checked for the expected version like every store.
#[derive(Default)]
pub struct MemoryStore {
    streams: Mutex<HashMap<Uuid, Vec<RecordedEvent>>>,
    /// While set, every read fails as unavailable.
    pub down: AtomicBool,
    /// Stream versions read so far by `current_versions`.
    pub versions_read: AtomicU64,
    /// Full loads so far.
    pub loads: AtomicU64,
}

impl MemoryStore {
    fn available(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::Relaxed) {
            Err(StoreError::Unavailable("down for the test".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn load(&self, stream_id: Uuid, after_version: u64) -> Result<Vec<RecordedEvent>, StoreError> {
        self.available()?;
        self.loads.fetch_add(1, Ordering::Relaxed);
        let streams = self.streams.lock().unwrap();
        Ok(streams.get(&stream_id).map(|e| e[after_version as usize..].to_vec()).unwrap_or_default())
    }

    async fn append(&self, request: AppendRequest) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut streams = self.streams.lock().unwrap();
        let stream = streams.entry(request.stream_id).or_default();
        let actual = stream.len() as u64;
        if actual != request.expected_version {
            return Err(StoreError::VersionConflict {
                stream_id: request.stream_id,
                expected: request.expected_version,
                actual,
            });
        }
        let recorded = request.recorded();
        stream.extend(recorded.iter().cloned());
        Ok(recorded)
    }

    async fn load_snapshot(&self, _: Uuid) -> Result<Option<Snapshot>, StoreError> {
        Ok(None)
    }

    async fn save_snapshot(&self, _: &Snapshot) -> Result<(), StoreError> {
        Ok(())
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.available()
    }

    async fn current_versions(&self, streams: &[Uuid]) -> Result<Vec<u64>, StoreError> {
        self.available()?;
        self.versions_read.fetch_add(streams.len() as u64, Ordering::Relaxed);
        let known = self.streams.lock().unwrap();
        Ok(streams.iter().map(|s| known.get(s).map_or(0, |e| e.len() as u64)).collect())
    }
}

/// Waits, in paused time, until `condition` holds; fails after a minute.
pub async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The append of one event at `version` (the stream must be at `version - 1`).
pub fn append_request(stream_id: Uuid, version: u64) -> AppendRequest {
    let event = TournamentEvent::PlayerJoined {
        name: PlayerName::parse(&format!("P{version}")).unwrap(),
        surname: PlayerSurname::parse("S").unwrap(),
    };
    AppendRequest {
        stream_id,
        expected_version: version - 1,
        events: vec![event],
        metadata: EventMetadata { request_id: None, recorded_at_ms: 0 },
        claims: Vec::new(),
        releases: Vec::new(),
    }
}

/// A deterministic random source (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    pub fn duration(&mut self, max: Duration) -> Duration {
        Duration::from_millis(self.below(max.as_millis() as u64 + 1))
    }
}

/// What the network does to each message.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message arrives twice.
    pub duplicate: f64,
    /// Each copy arrives after a random delay up to this (so messages overtake each other).
    pub max_delay: Duration,
}

/// The bus between the pods of a test.
pub struct Network {
    rng: Mutex<Rng>,
    pub faults: Mutex<Faults>,
    pods: Mutex<Vec<Arc<PodBus>>>,
}

impl Network {
    pub fn new(seed: u64, faults: Faults) -> Arc<Network> {
        Arc::new(Network { rng: Mutex::new(Rng::new(seed)), faults: Mutex::new(faults), pods: Mutex::default() })
    }

    /// The bus of a new pod on this network.
    pub fn bus(self: &Arc<Self>) -> Arc<PodBus> {
        let bus = Arc::new(PodBus {
            network: Arc::clone(self),
            listener: OnceLock::new(),
            channels: Mutex::default(),
            publish_fails: AtomicBool::new(false),
            deaf: AtomicBool::new(false),
            subscriptions: AtomicU64::new(0),
            unsubscriptions: AtomicU64::new(0),
        });
        self.pods.lock().unwrap().push(Arc::clone(&bus));
        bus
    }

    fn carry(&self, channel: &str, payload: &[u8]) {
        let faults = *self.faults.lock().unwrap();
        let pods = self.pods.lock().unwrap().clone();
        let mut rng = self.rng.lock().unwrap();
        for pod in pods {
            // Like Redis, the publisher hears its own publications too.
            if !pod.channels.lock().unwrap().contains_key(channel) || rng.chance(faults.drop) {
                continue;
            }
            let copies = if rng.chance(faults.duplicate) { 2 } else { 1 };
            for _ in 0..copies {
                let delay = rng.duration(faults.max_delay);
                let (pod, channel, payload) = (Arc::clone(&pod), channel.to_owned(), payload.to_vec());
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    pod.hear(&channel, &payload);
                });
            }
        }
    }
}

/// One pod's end of the network.
pub struct PodBus {
    network: Arc<Network>,
    listener: OnceLock<Arc<dyn BusListener>>,
    channels: Mutex<HashMap<String, usize>>,
    /// While set, this pod's publications fail.
    pub publish_fails: AtomicBool,
    /// While set, nothing reaches this pod (its subscriber connection is gone).
    pub deaf: AtomicBool,
    pub subscriptions: AtomicU64,
    pub unsubscriptions: AtomicU64,
}

impl PodBus {
    fn hear(&self, channel: &str, payload: &[u8]) {
        if self.deaf.load(Ordering::Relaxed) || !self.channels.lock().unwrap().contains_key(channel) {
            return;
        }
        if let Some(listener) = self.listener.get() {
            listener.on_message(channel, payload);
        }
    }

    /// The subscriber connection is back and every subscription restored.
    pub fn reconnect(&self) {
        self.deaf.store(false, Ordering::Relaxed);
        if let Some(listener) = self.listener.get() {
            listener.on_resubscribed();
        }
    }
}

#[async_trait]
impl Bus for PodBus {
    fn set_listener(&self, listener: Arc<dyn BusListener>) {
        let _ = self.listener.set(listener);
    }

    async fn publish(&self, channel: &str, payload: Vec<u8>) -> Result<(), LiveError> {
        if self.publish_fails.load(Ordering::Relaxed) {
            return Err(LiveError("the publisher is down for the test".into()));
        }
        self.network.carry(channel, &payload);
        Ok(())
    }

    async fn subscribe(&self, channel: &str) {
        self.subscriptions.fetch_add(1, Ordering::Relaxed);
        *self.channels.lock().unwrap().entry(channel.to_owned()).or_default() += 1;
    }

    async fn unsubscribe(&self, channel: &str) {
        self.unsubscriptions.fetch_add(1, Ordering::Relaxed);
        let mut channels = self.channels.lock().unwrap();
        if let Some(count) = channels.get_mut(channel) {
            *count -= 1;
            if *count == 0 {
                channels.remove(channel);
            }
        }
    }

    fn is_connected(&self) -> bool {
        !self.deaf.load(Ordering::Relaxed)
    }
}
