//! In-process presence, idempotency keys and pod registry, used when no Redis is configured: a
//! single `lct` process is then the whole deployment.
//!
//! [`MemorySharedState`] implements [`PresenceStore`] and [`IdempotencyStore`] with the tables
//! below, with the same expiry rules as the Redis adapter; [`LocalPodRegistry`] holds the one
//! pod there is.

use super::local::MemorySharedState;
use super::online_order;
use async_trait::async_trait;
use live::ports::{IdempotencyClaim, IdempotencyStore, LiveError, PodInfo, PodRegistry, PresenceEntry, PresenceStore};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How often expired entries are swept out (they are ignored when read anyway).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// A poisoned lock is still used: every update is a single insert or remove.
pub(super) fn relock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The players online in one tournament, by (player, pod); the whole list expires `ttl` after
/// the last join, like the Redis hash.
#[derive(Debug)]
struct PresenceList {
    expires_at: Instant,
    entries: HashMap<(Uuid, String), PresenceEntry>,
}

/// Presence of every tournament.
#[derive(Debug)]
pub(super) struct PresenceTable {
    tournaments: HashMap<Uuid, PresenceList>,
    last_sweep: Instant,
}

impl PresenceTable {
    pub(super) fn new() -> Self {
        Self { tournaments: HashMap::new(), last_sweep: Instant::now() }
    }

    fn join(
        &mut self,
        tournament: Uuid,
        entry: &PresenceEntry,
        pod: &str,
        ttl: Duration,
        now: Instant,
    ) -> Vec<PresenceEntry> {
        self.sweep(now);
        let list = self
            .tournaments
            .entry(tournament)
            .or_insert_with(|| PresenceList { expires_at: now + ttl, entries: HashMap::new() });
        if list.expires_at <= now {
            list.entries.clear();
        }
        list.expires_at = now + ttl;
        list.entries.insert((entry.player_id, pod.to_owned()), entry.clone());
        online_order(list.entries.values().cloned())
    }

    fn leave(&mut self, tournament: Uuid, player: Uuid, pod: &str, now: Instant) -> Vec<PresenceEntry> {
        if let Some(list) = self.tournaments.get_mut(&tournament) {
            list.entries.remove(&(player, pod.to_owned()));
        }
        self.online(tournament, now)
    }

    fn online(&self, tournament: Uuid, now: Instant) -> Vec<PresenceEntry> {
        match self.tournaments.get(&tournament) {
            Some(list) if list.expires_at > now => online_order(list.entries.values().cloned()),
            _ => Vec::new(),
        }
    }

    fn clear_pod(&mut self, pod: &str, now: Instant) -> Vec<Uuid> {
        let mut touched = Vec::new();
        for (tournament, list) in &mut self.tournaments {
            let before = list.entries.len();
            list.entries.retain(|(_, owner), _| owner != pod);
            if list.entries.len() != before && list.expires_at > now {
                touched.push(*tournament);
            }
        }
        touched.sort();
        touched
    }

    /// Whether any list still live holds an entry of `pod` (there is no index to keep: a
    /// pod's entries are found by looking through the lists).
    fn holds(&self, pod: &str, now: Instant) -> bool {
        self.tournaments
            .values()
            .any(|list| list.expires_at > now && list.entries.keys().any(|(_, owner)| owner == pod))
    }

    fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) < SWEEP_EVERY {
            return;
        }
        self.last_sweep = now;
        self.tournaments.retain(|_, list| list.expires_at > now && !list.entries.is_empty());
    }
}

/// A held key: the marker of its claim while the request runs, then the stored response.
#[derive(Debug)]
struct IdempotencyKey {
    value: String,
    expires_at: Instant,
}

/// Every idempotency key.
#[derive(Debug)]
pub(super) struct IdempotencyTable {
    keys: HashMap<String, IdempotencyKey>,
    last_sweep: Instant,
}

impl IdempotencyTable {
    pub(super) fn new() -> Self {
        Self { keys: HashMap::new(), last_sweep: Instant::now() }
    }

    fn claim(&mut self, key: &str, marker: &str, ttl: Duration, now: Instant) -> IdempotencyClaim {
        self.sweep(now);
        if let Some(held) = self.live(key, now) {
            return IdempotencyClaim::Held(held.value.clone());
        }
        self.keys.insert(key.to_owned(), IdempotencyKey { value: marker.to_owned(), expires_at: now + ttl });
        IdempotencyClaim::Claimed
    }

    /// The key, while it is held by `marker`'s claim.
    fn owned(&mut self, key: &str, marker: &str, now: Instant) -> Option<&mut IdempotencyKey> {
        self.keys.get_mut(key).filter(|held| held.expires_at > now && held.value == marker)
    }

    fn live(&self, key: &str, now: Instant) -> Option<&IdempotencyKey> {
        self.keys.get(key).filter(|held| held.expires_at > now)
    }

    fn complete(&mut self, key: &str, marker: &str, response: &str, ttl: Duration, now: Instant) -> bool {
        let Some(held) = self.owned(key, marker, now) else { return false };
        held.value = response.to_owned();
        held.expires_at = now + ttl;
        true
    }

    fn release(&mut self, key: &str, marker: &str, now: Instant) -> bool {
        self.owned(key, marker, now).is_some() && self.keys.remove(key).is_some()
    }

    fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) < SWEEP_EVERY {
            return;
        }
        self.last_sweep = now;
        self.keys.retain(|_, held| held.expires_at > now);
    }
}

#[async_trait]
impl PresenceStore for MemorySharedState {
    /// Never fails.
    async fn join(
        &self,
        tournament: Uuid,
        entry: &PresenceEntry,
        pod: &str,
        ttl: Duration,
    ) -> Result<Vec<PresenceEntry>, LiveError> {
        Ok(relock(&self.presence).join(tournament, entry, pod, ttl, Instant::now()))
    }

    /// Never fails.
    async fn leave(&self, tournament: Uuid, player_id: Uuid, pod: &str) -> Result<Vec<PresenceEntry>, LiveError> {
        Ok(relock(&self.presence).leave(tournament, player_id, pod, Instant::now()))
    }

    /// Never fails.
    async fn online(&self, tournament: Uuid) -> Result<Vec<PresenceEntry>, LiveError> {
        Ok(relock(&self.presence).online(tournament, Instant::now()))
    }

    /// Never fails.
    async fn clear_pod(&self, pod: &str) -> Result<Vec<Uuid>, LiveError> {
        Ok(relock(&self.presence).clear_pod(pod, Instant::now()))
    }

    /// Never fails; nothing needs keeping, as the lists are looked through to find a pod's
    /// entries.
    async fn keep_pod(&self, pod: &str, _ttl: Duration) -> Result<bool, LiveError> {
        Ok(relock(&self.presence).holds(pod, Instant::now()))
    }
}

#[async_trait]
impl IdempotencyStore for MemorySharedState {
    /// Never fails.
    async fn claim(&self, key: &str, marker: &str, ttl: Duration) -> Result<IdempotencyClaim, LiveError> {
        Ok(relock(&self.idempotency).claim(key, marker, ttl, Instant::now()))
    }

    /// Never fails; a key no longer held by `marker` (expired, released, claimed anew) is left
    /// as it is.
    async fn complete(&self, key: &str, marker: &str, response: &str, ttl: Duration) -> Result<bool, LiveError> {
        Ok(relock(&self.idempotency).complete(key, marker, response, ttl, Instant::now()))
    }

    /// Never fails; a key no longer held by `marker` is left as it is.
    async fn release(&self, key: &str, marker: &str) -> Result<bool, LiveError> {
        Ok(relock(&self.idempotency).release(key, marker, Instant::now()))
    }
}

/// The registry of a deployment of one process: it holds this pod and nothing else, so there
/// is never anything to prune.
#[derive(Debug, Default)]
pub struct LocalPodRegistry {
    pod: Mutex<Option<PodInfo>>,
}

impl LocalPodRegistry {
    /// An empty registry; the pod's first heartbeat registers it.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl PodRegistry for LocalPodRegistry {
    /// Never fails; the lapse does not matter, as a process that stops takes its registry along.
    async fn heartbeat(&self, pod: &PodInfo, _lapse: Duration) -> Result<bool, LiveError> {
        let mut held = relock(&self.pod);
        let added = held.as_ref().is_none_or(|held| held.id != pod.id);
        *held = Some(pod.clone());
        Ok(added)
    }

    /// Never fails.
    async fn deregister(&self, id: &str) -> Result<(), LiveError> {
        let mut held = relock(&self.pod);
        if held.as_ref().is_some_and(|held| held.id == id) {
            *held = None;
        }
        Ok(())
    }

    /// Never fails.
    async fn live_pods(&self) -> Result<Vec<PodInfo>, LiveError> {
        Ok(relock(&self.pod).iter().cloned().collect())
    }

    /// Never fails, and finds nothing: no other pod can die.
    async fn prune(&self) -> Result<Vec<String>, LiveError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn entry(name: &str, surname: &str) -> PresenceEntry {
        PresenceEntry { player_id: Uuid::new_v4(), name: name.to_owned(), surname: surname.to_owned() }
    }

    fn names(entries: &[PresenceEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn players_online_are_listed_once_ordered_by_name() {
        let mut table = PresenceTable::new();
        let t = Uuid::new_v4();
        let now = Instant::now();
        let (zed, amy) = (entry("Zed", "Z"), entry("Amy", "A"));
        table.join(t, &zed, "pod-a", TTL, now);
        table.join(t, &amy, "pod-a", TTL, now);
        // The same player connected through another pod too.
        let online = table.join(t, &zed, "pod-b", TTL, now);
        assert_eq!(names(&online), vec!["Amy", "Zed"]);
    }

    #[test]
    fn same_first_names_are_ordered_by_surname() {
        let mut table = PresenceTable::new();
        let t = Uuid::new_v4();
        let now = Instant::now();
        table.join(t, &entry("Ann", "Zulu"), "pod", TTL, now);
        let online = table.join(t, &entry("Ann", "Alpha"), "pod", TTL, now);
        let surnames: Vec<&str> = online.iter().map(|e| e.surname.as_str()).collect();
        assert_eq!(surnames, vec!["Alpha", "Zulu"]);
    }

    #[test]
    fn a_player_stays_online_until_it_left_every_pod() {
        let mut table = PresenceTable::new();
        let t = Uuid::new_v4();
        let now = Instant::now();
        let ann = entry("Ann", "A");
        table.join(t, &ann, "pod-a", TTL, now);
        table.join(t, &ann, "pod-b", TTL, now);
        assert_eq!(names(&table.leave(t, ann.player_id, "pod-a", now)), vec!["Ann"]);
        assert!(table.leave(t, ann.player_id, "pod-b", now).is_empty());
    }

    #[test]
    fn clearing_a_pod_removes_only_its_entries_and_names_the_tournaments() {
        let mut table = PresenceTable::new();
        let (t1, t2, t3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let now = Instant::now();
        let (ann, bob) = (entry("Ann", "A"), entry("Bob", "B"));
        table.join(t1, &ann, "dead", TTL, now);
        table.join(t1, &bob, "alive", TTL, now);
        table.join(t2, &bob, "dead", TTL, now);
        table.join(t3, &ann, "alive", TTL, now);
        let mut expected = vec![t1, t2];
        expected.sort();
        assert!(table.holds("dead", now));
        assert_eq!(table.clear_pod("dead", now), expected);
        assert!(!table.holds("dead", now), "the pod holds nothing once cleared");
        assert!(table.holds("alive", now));
        assert_eq!(names(&table.online(t1, now)), vec!["Bob"]);
        assert!(table.online(t2, now).is_empty());
        assert_eq!(names(&table.online(t3, now)), vec!["Ann"]);
        assert!(table.clear_pod("dead", now).is_empty(), "nothing left to clear");
    }

    #[test]
    fn presence_expires_ttl_after_the_last_join() {
        let mut table = PresenceTable::new();
        let t = Uuid::new_v4();
        let start = Instant::now();
        let ttl = Duration::from_secs(10);
        table.join(t, &entry("Ann", "A"), "pod", ttl, start);
        assert_eq!(table.online(t, start + Duration::from_secs(9)).len(), 1);
        assert!(table.online(t, start + Duration::from_secs(10)).is_empty());
        let online = table.join(t, &entry("Bob", "B"), "pod", ttl, start + Duration::from_secs(11));
        assert_eq!(names(&online), vec!["Bob"], "the expired list starts over");
    }

    fn held(value: &str) -> IdempotencyClaim {
        IdempotencyClaim::Held(value.to_owned())
    }

    #[test]
    fn an_idempotency_key_is_claimed_once_then_held_by_its_marker_then_by_its_response() {
        let mut table = IdempotencyTable::new();
        let now = Instant::now();
        assert_eq!(table.claim("k", "m1", TTL, now), IdempotencyClaim::Claimed);
        assert_eq!(table.claim("k", "m2", TTL, now), held("m1"));
        assert!(table.complete("k", "m1", "{\"id\":1}", TTL, now));
        assert_eq!(table.claim("k", "m3", TTL, now), held("{\"id\":1}"));
        assert!(!table.release("k", "m1", now), "a response is not a claim");
        assert_eq!(table.claim("k", "m3", TTL, now), held("{\"id\":1}"));
    }

    #[test]
    fn a_released_key_can_be_claimed_again() {
        let mut table = IdempotencyTable::new();
        let now = Instant::now();
        table.claim("k", "m1", TTL, now);
        assert!(table.release("k", "m1", now));
        assert_eq!(table.claim("k", "m2", TTL, now), IdempotencyClaim::Claimed);
    }

    #[test]
    fn an_expired_key_is_claimed_anew_and_is_not_completed() {
        let mut table = IdempotencyTable::new();
        let start = Instant::now();
        let ttl = Duration::from_secs(5);
        table.claim("k", "m1", ttl, start);
        let later = start + ttl;
        assert!(!table.complete("k", "m1", "late", ttl, later));
        assert_eq!(table.claim("k", "m2", ttl, later), IdempotencyClaim::Claimed);
    }

    #[test]
    fn a_key_claimed_again_after_its_lease_is_not_released_by_its_first_owner() {
        let mut table = IdempotencyTable::new();
        let start = Instant::now();
        let lease = Duration::from_secs(5);
        table.claim("k", "first", lease, start);
        // The first command outlives its lease; a retry claims the key and runs.
        let later = start + lease;
        assert_eq!(table.claim("k", "retry", TTL, later), IdempotencyClaim::Claimed);
        // The first command fails: it lets go of its own claim, not of the retry's.
        assert!(!table.release("k", "first", later));
        assert_eq!(table.claim("k", "third", TTL, later), held("retry"), "a third request would run too");
    }

    #[test]
    fn a_key_claimed_again_after_its_lease_is_not_completed_by_its_first_owner() {
        let mut table = IdempotencyTable::new();
        let start = Instant::now();
        let lease = Duration::from_secs(5);
        table.claim("k", "first", lease, start);
        let later = start + lease;
        assert_eq!(table.claim("k", "retry", TTL, later), IdempotencyClaim::Claimed);
        // The first command succeeds while the retry still runs: the key stays the retry's.
        assert!(!table.complete("k", "first", "{\"id\":1}", TTL, later));
        assert_eq!(table.claim("k", "third", TTL, later), held("retry"));
        assert!(table.complete("k", "retry", "{\"id\":2}", TTL, later));
        assert_eq!(table.claim("k", "third", TTL, later), held("{\"id\":2}"));
    }

    #[test]
    fn expired_keys_are_swept_out_of_memory() {
        let mut table = IdempotencyTable::new();
        let start = Instant::now();
        table.claim("old", "m1", Duration::from_secs(1), start);
        table.claim("new", "m2", TTL, start + Duration::from_secs(2));
        assert_eq!(table.keys.keys().collect::<Vec<_>>(), vec!["new"]);
    }

    #[tokio::test]
    async fn the_port_methods_share_one_state() {
        let state = MemorySharedState::new();
        let t = Uuid::new_v4();
        let ann = entry("Ann", "A");
        assert_eq!(names(&state.join(t, &ann, "pod", TTL).await.unwrap()), vec!["Ann"]);
        assert_eq!(names(&state.online(t).await.unwrap()), vec!["Ann"]);
        assert!(state.keep_pod("pod", TTL).await.unwrap());
        assert!(!state.keep_pod("other-pod", TTL).await.unwrap());
        assert_eq!(state.clear_pod("pod").await.unwrap(), vec![t]);
        assert!(!state.keep_pod("pod", TTL).await.unwrap());
        assert!(state.leave(t, ann.player_id, "pod").await.unwrap().is_empty());
        assert_eq!(state.claim("k", "m1", TTL).await.unwrap(), IdempotencyClaim::Claimed);
        assert!(state.release("k", "m1").await.unwrap());
        assert_eq!(state.claim("k", "m2", TTL).await.unwrap(), IdempotencyClaim::Claimed);
        assert!(state.complete("k", "m2", "done", TTL).await.unwrap());
        assert_eq!(state.claim("k", "m3", TTL).await.unwrap(), held("done"));
    }

    fn pod(id: &str) -> PodInfo {
        PodInfo {
            id: id.to_owned(),
            address: "127.0.0.1:8080".to_owned(),
            version: "0.1.0".to_owned(),
            started_at_ms: 1,
            connections: 0,
            tournaments: 0,
            last_heartbeat_ms: 2,
        }
    }

    #[tokio::test]
    async fn the_local_registry_holds_the_one_pod() {
        let registry = LocalPodRegistry::new();
        assert!(registry.live_pods().await.unwrap().is_empty());
        assert!(registry.heartbeat(&pod("me"), TTL).await.unwrap(), "the first heartbeat registers");
        let mut later = pod("me");
        later.connections = 3;
        assert!(!registry.heartbeat(&later, TTL).await.unwrap());
        assert_eq!(registry.live_pods().await.unwrap(), vec![later]);
        assert!(registry.prune().await.unwrap().is_empty());
        registry.deregister("someone-else").await.unwrap();
        assert_eq!(registry.live_pods().await.unwrap().len(), 1);
        registry.deregister("me").await.unwrap();
        assert!(registry.live_pods().await.unwrap().is_empty());
    }
}
