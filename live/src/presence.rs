//! Presence: which players are connected to a tournament's live stream, across pods. This pod
//! counts its own connections per player and tells the shared store on the first and the last.
//!
//! The count and the store call it leads to happen under one lock per player, taken in the
//! order the connections come and go: a player who reconnects at once is never marked offline
//! by the clean-up of the old connection landing after the new one's join.

use crate::hub::Hub;
use crate::ports::{LiveError, PresenceEntry, PresenceStore};
use crate::Frame;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use uuid::Uuid;

/// Entries expire after this long unless refreshed by a new connection; a pod that dies is
/// cleaned up by the others sooner (see the cluster registry).
pub const PRESENCE_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// This pod's view of presence: its own connections per (tournament, player), the shared store
/// and the hub that tells the connections; cheap to clone.
pub struct Presence<F> {
    inner: Arc<Inner<F>>,
}

impl<F> Clone for Presence<F> {
    fn clone(&self) -> Self {
        Presence { inner: Arc::clone(&self.inner) }
    }
}

type Key = (Uuid, Uuid);
/// A player's connections on this pod, behind the lock that orders their store calls.
type Count = Arc<tokio::sync::Mutex<usize>>;

struct Inner<F> {
    store: Arc<dyn PresenceStore>,
    /// This pod's id, owner of its presence entries.
    pod_id: Arc<str>,
    hub: Hub<F>,
    counts: Mutex<HashMap<Key, Count>>,
}

/// Marks a player online while it lives.
pub struct Online<F: Frame> {
    presence: Presence<F>,
    key: Key,
}

impl<F: Frame> Presence<F> {
    pub fn new(store: Arc<dyn PresenceStore>, pod_id: Arc<str>, hub: Hub<F>) -> Self {
        Presence { inner: Arc::new(Inner { store, pod_id, hub, counts: Mutex::default() }) }
    }

    /// Everyone online in `tournament`, across pods.
    pub async fn online(&self, tournament: Uuid) -> Result<Vec<PresenceEntry>, LiveError> {
        self.inner.store.online(tournament).await
    }

    /// Counts a connection of `entry`'s player; the first one on this pod announces them online.
    pub async fn connected(&self, tournament: Uuid, entry: PresenceEntry) -> Online<F> {
        let key = (tournament, entry.player_id);
        let count = self.count(key);
        let mut connections = count.lock().await;
        *connections += 1;
        if *connections == 1 {
            let inner = &self.inner;
            match inner.store.join(tournament, &entry, &inner.pod_id, PRESENCE_TTL).await {
                Ok(players) => inner.hub.broadcast_presence(tournament, players),
                Err(error) => tracing::warn!(%tournament, cause = %error, "presence not recorded"),
            }
        }
        drop(connections);
        Online { presence: self.clone(), key }
    }

    /// The count of `key`, created at zero.
    fn count(&self, key: Key) -> Count {
        Arc::clone(self.counts().entry(key).or_default())
    }

    fn counts(&self) -> MutexGuard<'_, HashMap<Key, Count>> {
        self.inner.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a connection gone; the last one on this pod announces the player offline.
    async fn disconnected(&self, key: Key) {
        let count = self.count(key);
        let mut connections = count.lock().await;
        *connections = connections.saturating_sub(1);
        if *connections == 0 {
            let (tournament, player) = key;
            let inner = &self.inner;
            match inner.store.leave(tournament, player, &inner.pod_id).await {
                Ok(players) => inner.hub.broadcast_presence(tournament, players),
                Err(error) => tracing::warn!(%tournament, cause = %error, "presence not cleared"),
            }
        }
        drop(connections);
        // Forget the count once nobody holds or waits for it (the map's and this one).
        let mut counts = self.counts();
        if counts.get(&key).is_some_and(|c| Arc::strong_count(c) == 2 && c.try_lock().is_ok_and(|n| *n == 0)) {
            counts.remove(&key);
        }
    }
}

impl<F: Frame> Drop for Online<F> {
    fn drop(&mut self) {
        // Whichever of this clean-up and a new connection of the player takes the player's lock
        // first, the count and the store end up agreeing.
        let (presence, key) = (self.presence.clone(), self.key);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { presence.disconnected(key).await });
        }
    }
}
