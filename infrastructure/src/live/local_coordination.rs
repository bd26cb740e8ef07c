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

    fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) < SWEEP_EVERY {
            return;
        }
        self.last_sweep = now;
        self.tournaments.retain(|_, list| list.expires_at > now && !list.entries.is_empty());
    }
}

/// A claimed key: no response yet while running, the stored response once done.
#[derive(Debug)]
struct IdempotencyKey {
    response: Option<String>,
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

    fn claim(&mut self, key: &str, ttl: Duration, now: Instant) -> IdempotencyClaim {
        self.sweep(now);
        match self.keys.get(key).filter(|held| held.expires_at > now) {
            Some(IdempotencyKey { response: Some(response), .. }) => IdempotencyClaim::Done(response.clone()),
            Some(IdempotencyKey { response: None, .. }) => IdempotencyClaim::Pending,
            None => {
                self.keys.insert(key.to_owned(), IdempotencyKey { response: None, expires_at: now + ttl });
                IdempotencyClaim::Claimed
            }
        }
    }

    /// Like `SET .. XX`: only a key still held is completed.
    fn complete(&mut self, key: &str, response: &str, ttl: Duration, now: Instant) {
        if let Some(held) = self.keys.get_mut(key).filter(|held| held.expires_at > now) {
            held.response = Some(response.to_owned());
            held.expires_at = now + ttl;
        }
    }

    fn release(&mut self, key: &str) {
        self.keys.remove(key);
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
}

#[async_trait]
impl IdempotencyStore for MemorySharedState {
    /// Never fails.
    async fn claim(&self, key: &str, ttl: Duration) -> Result<IdempotencyClaim, LiveError> {
        Ok(relock(&self.idempotency).claim(key, ttl, Instant::now()))
    }

    /// Never fails; a key no longer held (expired or released) stays forgotten.
    async fn complete(&self, key: &str, response: &str, ttl: Duration) -> Result<(), LiveError> {
        relock(&self.idempotency).complete(key, response, ttl, Instant::now());
        Ok(())
    }

    /// Never fails.
    async fn release(&self, key: &str) -> Result<(), LiveError> {
        relock(&self.idempotency).release(key);
        Ok(())
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
        assert_eq!(table.clear_pod("dead", now), expected);
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

    #[test]
    fn an_idempotency_key_is_claimed_once_then_pending_then_done() {
        let mut table = IdempotencyTable::new();
        let now = Instant::now();
        assert_eq!(table.claim("k", TTL, now), IdempotencyClaim::Claimed);
        assert_eq!(table.claim("k", TTL, now), IdempotencyClaim::Pending);
        table.complete("k", "{\"id\":1}", TTL, now);
        assert_eq!(table.claim("k", TTL, now), IdempotencyClaim::Done("{\"id\":1}".to_owned()));
    }

    #[test]
    fn a_released_key_can_be_claimed_again() {
        let mut table = IdempotencyTable::new();
        let now = Instant::now();
        table.claim("k", TTL, now);
        table.release("k");
        assert_eq!(table.claim("k", TTL, now), IdempotencyClaim::Claimed);
    }

    #[test]
    fn an_expired_key_is_claimed_anew_and_is_not_completed() {
        let mut table = IdempotencyTable::new();
        let start = Instant::now();
        let ttl = Duration::from_secs(5);
        table.claim("k", ttl, start);
        let later = start + ttl;
        table.complete("k", "late", ttl, later);
        assert_eq!(table.claim("k", ttl, later), IdempotencyClaim::Claimed);
    }

    #[test]
    fn expired_keys_are_swept_out_of_memory() {
        let mut table = IdempotencyTable::new();
        let start = Instant::now();
        table.claim("old", Duration::from_secs(1), start);
        table.claim("new", TTL, start + Duration::from_secs(2));
        assert_eq!(table.keys.keys().collect::<Vec<_>>(), vec!["new"]);
    }

    #[tokio::test]
    async fn the_port_methods_share_one_state() {
        let state = MemorySharedState::new();
        let t = Uuid::new_v4();
        let ann = entry("Ann", "A");
        assert_eq!(names(&state.join(t, &ann, "pod", TTL).await.unwrap()), vec!["Ann"]);
        assert_eq!(names(&state.online(t).await.unwrap()), vec!["Ann"]);
        assert_eq!(state.clear_pod("pod").await.unwrap(), vec![t]);
        assert!(state.leave(t, ann.player_id, "pod").await.unwrap().is_empty());
        assert_eq!(state.claim("k", TTL).await.unwrap(), IdempotencyClaim::Claimed);
        state.complete("k", "done", TTL).await.unwrap();
        assert_eq!(state.claim("k", TTL).await.unwrap(), IdempotencyClaim::Done("done".to_owned()));
        state.release("k").await.unwrap();
        assert_eq!(state.claim("k", TTL).await.unwrap(), IdempotencyClaim::Claimed);
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
