//! The cluster's heartbeat and what it takes care of (the clean-up of dead pods, this pod's own
//! presence entries), under tokio's paused time, with fakes of the pod registry (whose entries
//! lapse when the test says so) and of the presence store (whose clean-ups can fail). Whatever
//! befalls a pod, the presence the players see says who is connected.

mod support;

use async_trait::async_trait;
use live::ports::{LiveError, PodInfo, PodRegistry, PresenceEntry, PresenceStore};
use live::{Cluster, ClusterOptions, Hub, HubOptions, Presence, SystemClock};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Faults, MemoryStore, Network};
use tokio::time::Instant;
use uuid::Uuid;

/// The heartbeat period of the pods under test (the default one); an entry lapses after one
/// and a half periods.
const PERIOD: Duration = Duration::from_secs(2);
const LAPSE: Duration = Duration::from_secs(3);

/// The pod registry in memory, as Redis keeps it: the registered pods, and a heartbeat per pod
/// that lapses. It records when each pod sent a heartbeat and which pods were pruned.
#[derive(Default)]
struct Registry {
    state: Mutex<RegistryState>,
}

#[derive(Default)]
struct RegistryState {
    registered: BTreeMap<String, PodInfo>,
    lapses: HashMap<String, Instant>,
    beats: Vec<(String, Instant)>,
    pruned: Vec<String>,
}

impl RegistryState {
    fn alive(&self, id: &str) -> bool {
        self.lapses.get(id).is_some_and(|lapse| *lapse > Instant::now())
    }
}

impl Registry {
    /// Ends the lapse of `id` now, as when its heartbeats stop reaching the registry.
    fn expire(&self, id: &str) {
        self.state.lock().unwrap().lapses.insert(id.to_owned(), Instant::now());
    }

    /// When `id` sent its heartbeats.
    fn beats_of(&self, id: &str) -> Vec<Instant> {
        let state = self.state.lock().unwrap();
        state.beats.iter().filter(|(pod, _)| pod == id).map(|(_, at)| *at).collect()
    }

    /// How many times `id` was pruned as dead.
    fn pruned(&self, id: &str) -> usize {
        self.state.lock().unwrap().pruned.iter().filter(|pod| *pod == id).count()
    }

    fn registered(&self, id: &str) -> bool {
        self.state.lock().unwrap().registered.contains_key(id)
    }
}

#[async_trait]
impl PodRegistry for Registry {
    async fn heartbeat(&self, pod: &PodInfo, lapse: Duration) -> Result<bool, LiveError> {
        let mut state = self.state.lock().unwrap();
        let now = Instant::now();
        state.lapses.insert(pod.id.clone(), now + lapse);
        state.beats.push((pod.id.clone(), now));
        Ok(state.registered.insert(pod.id.clone(), pod.clone()).is_none())
    }

    async fn deregister(&self, id: &str) -> Result<(), LiveError> {
        let mut state = self.state.lock().unwrap();
        state.registered.remove(id);
        state.lapses.remove(id);
        Ok(())
    }

    async fn live_pods(&self) -> Result<Vec<PodInfo>, LiveError> {
        let state = self.state.lock().unwrap();
        let mut pods: Vec<PodInfo> = state.registered.values().filter(|pod| state.alive(&pod.id)).cloned().collect();
        pods.sort_by(|a, b| (a.started_at_ms, &a.id).cmp(&(b.started_at_ms, &b.id)));
        Ok(pods)
    }

    async fn prune(&self) -> Result<Vec<String>, LiveError> {
        let mut state = self.state.lock().unwrap();
        let dead: Vec<String> = state.registered.keys().filter(|id| !state.alive(id)).cloned().collect();
        for id in &dead {
            state.registered.remove(id);
        }
        state.pruned.extend(dead.iter().cloned());
        Ok(dead)
    }
}

/// A tournament's presence entries by (player, pod).
type Entries = BTreeMap<(Uuid, String), PresenceEntry>;

/// Presence in memory, by tournament. Joins can be made slow, and clean-ups of a pod's entries
/// to fail.
#[derive(Default)]
struct Store {
    tournaments: Mutex<HashMap<Uuid, Entries>>,
    /// How long each join takes.
    join_time: Mutex<Duration>,
    /// Clean-ups of a pod's entries that fail before they work again.
    failing_clears: AtomicUsize,
}

impl Store {
    fn players(&self, tournament: Uuid) -> Vec<PresenceEntry> {
        let tournaments = self.tournaments.lock().unwrap();
        let mut players: Vec<PresenceEntry> =
            tournaments.get(&tournament).into_iter().flatten().map(|(_, e)| e.clone()).collect();
        players.sort_by(|a, b| (&a.name, &a.surname, a.player_id).cmp(&(&b.name, &b.surname, b.player_id)));
        players.dedup();
        players
    }
}

#[async_trait]
impl PresenceStore for Store {
    async fn join(
        &self,
        tournament: Uuid,
        entry: &PresenceEntry,
        pod: &str,
        _: Duration,
    ) -> Result<Vec<PresenceEntry>, LiveError> {
        let join_time = *self.join_time.lock().unwrap();
        if !join_time.is_zero() {
            tokio::time::sleep(join_time).await;
        }
        let mut tournaments = self.tournaments.lock().unwrap();
        tournaments.entry(tournament).or_default().insert((entry.player_id, pod.to_owned()), entry.clone());
        drop(tournaments);
        Ok(self.players(tournament))
    }

    async fn leave(&self, tournament: Uuid, player_id: Uuid, pod: &str) -> Result<Vec<PresenceEntry>, LiveError> {
        if let Some(entries) = self.tournaments.lock().unwrap().get_mut(&tournament) {
            entries.remove(&(player_id, pod.to_owned()));
        }
        Ok(self.players(tournament))
    }

    async fn online(&self, tournament: Uuid) -> Result<Vec<PresenceEntry>, LiveError> {
        Ok(self.players(tournament))
    }

    async fn clear_pod(&self, pod: &str) -> Result<Vec<Uuid>, LiveError> {
        let failing = self.failing_clears.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            return Err(LiveError("the presence store did not answer".into()));
        }
        let mut touched = Vec::new();
        for (tournament, entries) in self.tournaments.lock().unwrap().iter_mut() {
            let before = entries.len();
            entries.retain(|(_, owner), _| owner != pod);
            if entries.len() != before {
                touched.push(*tournament);
            }
        }
        touched.sort();
        Ok(touched)
    }

    async fn keep_pod(&self, pod: &str, _: Duration) -> Result<bool, LiveError> {
        let tournaments = self.tournaments.lock().unwrap();
        Ok(tournaments.values().flat_map(|entries| entries.keys()).any(|(_, owner)| owner == pod))
    }
}

/// One pod: its membership of the cluster and its presence.
struct Pod {
    cluster: Cluster<String>,
    presence: Presence<String>,
}

fn pod(id: &str, registry: &Arc<Registry>, store: &Arc<Store>) -> Pod {
    let hub = Hub::new(
        Arc::new(MemoryStore::default()),
        Network::new(1, Faults::default()).bus(),
        Arc::new(SystemClock),
        HubOptions::default(),
    );
    let presence = Presence::new(store.clone(), id.into(), hub.clone());
    let options = ClusterOptions {
        pod_id: id.to_owned(),
        address: format!("{id}:8080"),
        version: "0.1.0".to_owned(),
        heartbeat: PERIOD,
    };
    Pod { cluster: Cluster::new(options, registry.clone(), presence.clone(), hub), presence }
}

fn player(name: &str) -> PresenceEntry {
    PresenceEntry { player_id: Uuid::new_v4(), name: name.to_owned(), surname: "Player".to_owned() }
}

#[tokio::test(start_paused = true)]
async fn a_late_clean_up_leaves_the_players_of_a_pod_that_came_back_online() {
    let (registry, store) = (Arc::new(Registry::default()), Arc::new(Store::default()));
    let (x, y) = (pod("pod-x", &registry, &store), pod("pod-y", &registry, &store));
    x.cluster.beat().await;
    y.cluster.beat().await;
    let (tournament, ann) = (Uuid::new_v4(), player("Ann"));
    let _ann = x.presence.connected(tournament, ann.clone()).await;
    assert_eq!(store.players(tournament), vec![ann.clone()]);

    // Pod X's heartbeats stop reaching the registry for longer than its lapse (a Redis outage):
    // pod Y takes it for dead, but cannot clear its presence entries yet.
    registry.expire("pod-x");
    store.failing_clears.store(1, Ordering::SeqCst);
    y.cluster.beat().await;
    assert_eq!(registry.pruned("pod-x"), 1);
    // Pod X registers again, clears its entries and records its players anew.
    x.cluster.beat().await;
    assert!(registry.registered("pod-x"));
    assert_eq!(store.players(tournament), vec![ann.clone()]);

    // Pod Y's next heartbeat does not clean up after a pod that is back.
    y.cluster.beat().await;
    assert_eq!(store.players(tournament), vec![ann], "Ann is still online");
}

#[tokio::test(start_paused = true)]
async fn a_pod_that_stops_without_clearing_its_presence_is_cleaned_up_by_another() {
    let (registry, store) = (Arc::new(Registry::default()), Arc::new(Store::default()));
    let (x, y) = (pod("pod-x", &registry, &store), pod("pod-y", &registry, &store));
    x.cluster.beat().await;
    y.cluster.beat().await;
    let (tournament, ann) = (Uuid::new_v4(), player("Ann"));
    let _ann = x.presence.connected(tournament, ann.clone()).await;

    // Pod X stops while the store does not answer: its entry is left to lapse.
    store.failing_clears.store(1, Ordering::SeqCst);
    x.cluster.stop().await;
    assert!(registry.registered("pod-x"), "pod X is left to lapse");
    assert_eq!(store.players(tournament), vec![ann]);

    // Past its lapse pod Y prunes it and clears what it left.
    tokio::time::advance(LAPSE).await;
    y.cluster.beat().await;
    assert_eq!(registry.pruned("pod-x"), 1);
    assert_eq!(store.players(tournament), vec![], "Ann is not online");
}

#[tokio::test(start_paused = true)]
async fn a_pod_whose_presence_another_pod_cleared_records_its_players_again() {
    let (registry, store) = (Arc::new(Registry::default()), Arc::new(Store::default()));
    let (x, y) = (pod("pod-x", &registry, &store), pod("pod-y", &registry, &store));
    x.cluster.beat().await;
    y.cluster.beat().await;
    let (tournament, ann) = (Uuid::new_v4(), player("Ann"));
    let _ann = x.presence.connected(tournament, ann.clone()).await;

    // The clean-up of pod X by a pod that had taken it for dead lands after pod X registered
    // again and recorded its players anew.
    store.clear_pod("pod-x").await.unwrap();
    assert_eq!(store.players(tournament), vec![]);
    x.cluster.beat().await;
    assert_eq!(store.players(tournament), vec![ann], "Ann is online again");
}

#[tokio::test(start_paused = true)]
async fn a_pod_taken_for_dead_keeps_its_heartbeat_while_it_records_its_players_again() {
    let (registry, store) = (Arc::new(Registry::default()), Arc::new(Store::default()));
    let (x, y) = (pod("pod-x", &registry, &store), pod("pod-y", &registry, &store));
    let tournaments: Vec<Uuid> = (0..50).map(|_| Uuid::new_v4()).collect();
    let mut connections = Vec::new();
    for (i, tournament) in tournaments.iter().cycle().take(1000).enumerate() {
        connections.push(x.presence.connected(*tournament, player(&format!("Player {i}"))).await);
    }
    // Each join takes 10 ms from now on: recording pod X's 1000 players takes 10 s, more than
    // three lapses.
    *store.join_time.lock().unwrap() = Duration::from_millis(10);
    let start = Instant::now();
    x.cluster.start();
    y.cluster.start();

    // Pod X records its players on its first heartbeat (as after a restart). Later, between two
    // of its heartbeats, it is taken for dead: pod Y prunes it and clears its entries, and pod X
    // records them all again.
    tokio::time::sleep(Duration::from_secs(15) + PERIOD / 4).await;
    registry.expire("pod-x");
    y.cluster.beat().await;
    tokio::time::sleep(Duration::from_secs(30)).await;

    let beats = registry.beats_of("pod-x");
    assert_eq!(beats.first(), Some(&start));
    for pair in beats.windows(2) {
        let (gap, at) = (pair[1] - pair[0], pair[0] - start);
        assert!(gap <= PERIOD, "pod X sent no heartbeat for {gap:?} after the one at {at:?}");
    }
    assert!(Instant::now() - *beats.last().unwrap() <= PERIOD);
    assert_eq!(registry.pruned("pod-x"), 1, "pod X was taken for dead once only");
    assert_eq!(online(&store, &tournaments), 1000, "every player of pod X is online again");
    x.cluster.stop().await;
    y.cluster.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_pod_stops_at_once_while_it_records_its_players_again() {
    let (registry, store) = (Arc::new(Registry::default()), Arc::new(Store::default()));
    let x = pod("pod-x", &registry, &store);
    let tournaments: Vec<Uuid> = (0..50).map(|_| Uuid::new_v4()).collect();
    let mut connections = Vec::new();
    for (i, tournament) in tournaments.iter().cycle().take(1000).enumerate() {
        connections.push(x.presence.connected(*tournament, player(&format!("Player {i}"))).await);
    }
    *store.join_time.lock().unwrap() = Duration::from_millis(10);
    x.cluster.start();
    // Pod X is recording its players again (for 10 s) when it is stopped.
    tokio::time::sleep(PERIOD + PERIOD / 4).await;
    let (stopping, beats) = (Instant::now(), registry.beats_of("pod-x").len());
    x.cluster.stop().await;
    assert_eq!(Instant::now(), stopping, "the stop did not wait for the recording to end");
    assert!(!registry.registered("pod-x"), "pod X left the cluster");
    assert_eq!(online(&store, &tournaments), 0, "pod X took its presence along");
    tokio::time::sleep(PERIOD * 3).await;
    assert_eq!(registry.beats_of("pod-x").len(), beats, "no heartbeat after the stop");
    assert_eq!(online(&store, &tournaments), 0, "no player recorded after the stop");
}

/// The players online in `tournaments`, counted once per tournament.
fn online(store: &Store, tournaments: &[Uuid]) -> usize {
    tournaments.iter().map(|tournament| store.players(*tournament).len()).sum()
}
