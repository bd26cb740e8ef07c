//! Presence: which players are connected to a tournament's live stream, across pods. This pod
//! counts its own connections per player and tells the shared store on the first and the last.
//!
//! The count and the store call it leads to happen under one lock per player, taken in the
//! order the connections come and go: a player who reconnects at once is never marked offline
//! by the clean-up of the old connection landing after the new one's join.
//!
//! A store call that fails leaves the player unsettled: the store may not say what this pod's
//! count says. [`Presence::settle`], run after every cluster heartbeat, tells the store again
//! until it agrees, so a leave lost to a Redis blip does not keep a player online all night. When
//! the store may have lost or kept entries of this pod wholesale (a previous run under the same
//! pod id, the other pods taking this one for dead or clearing its entries late),
//! [`Presence::reassert`] settles every player this pod holds.

use crate::hub::Hub;
use crate::ports::{LiveError, PresenceEntry, PresenceStore};
use crate::Frame;
use std::collections::{HashMap, HashSet};
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
type Count = Arc<tokio::sync::Mutex<Slot>>;

/// What this pod holds of one player.
#[derive(Default)]
struct Slot {
    connections: usize,
    /// The player as the last connection named them (what a join tells the store again).
    entry: Option<PresenceEntry>,
}

struct Inner<F> {
    store: Arc<dyn PresenceStore>,
    /// This pod's id, owner of its presence entries.
    pod_id: Arc<str>,
    hub: Hub<F>,
    counts: Mutex<HashMap<Key, Count>>,
    /// Players whose last store call failed, to be told again by [`Presence::settle`].
    unsettled: Mutex<HashSet<Key>>,
}

/// Marks a player online while it lives.
pub struct Online<F: Frame> {
    presence: Presence<F>,
    key: Key,
}

impl<F: Frame> Presence<F> {
    pub fn new(store: Arc<dyn PresenceStore>, pod_id: Arc<str>, hub: Hub<F>) -> Self {
        Presence {
            inner: Arc::new(Inner { store, pod_id, hub, counts: Mutex::default(), unsettled: Mutex::default() }),
        }
    }

    /// The shared store behind this pod's presence.
    pub fn store(&self) -> &Arc<dyn PresenceStore> {
        &self.inner.store
    }

    /// Everyone online in `tournament`, across pods.
    pub async fn online(&self, tournament: Uuid) -> Result<Vec<PresenceEntry>, LiveError> {
        self.inner.store.online(tournament).await
    }

    /// Counts a connection of `entry`'s player; the first one on this pod announces them online.
    pub async fn connected(&self, tournament: Uuid, entry: PresenceEntry) -> Online<F> {
        let key = (tournament, entry.player_id);
        let count = self.count(key);
        let mut slot = count.lock().await;
        slot.connections += 1;
        slot.entry = Some(entry);
        if slot.connections == 1 {
            self.tell_store(key, &slot).await;
        }
        drop(slot);
        Online { presence: self.clone(), key }
    }

    /// The count of `key`, created at zero.
    fn count(&self, key: Key) -> Count {
        Arc::clone(self.counts().entry(key).or_default())
    }

    fn counts(&self) -> MutexGuard<'_, HashMap<Key, Count>> {
        self.inner.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn unsettled(&self) -> MutexGuard<'_, HashSet<Key>> {
        self.inner.unsettled.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a connection gone; the last one on this pod announces the player offline.
    async fn disconnected(&self, key: Key) {
        let count = self.count(key);
        let mut slot = count.lock().await;
        slot.connections = slot.connections.saturating_sub(1);
        if slot.connections == 0 {
            self.tell_store(key, &slot).await;
        }
        drop(slot);
        drop(count);
        self.forget_if_idle(key);
    }

    /// Tells the store what `slot` (held locked) says of the player, and the tournament's
    /// connections who is online now; on failure the player is left unsettled (and false).
    async fn tell_store(&self, key: Key, slot: &Slot) -> bool {
        let (tournament, player) = key;
        let inner = &self.inner;
        let told = match (&slot.entry, slot.connections) {
            (Some(entry), 1..) => inner.store.join(tournament, entry, &inner.pod_id, PRESENCE_TTL).await,
            _ => inner.store.leave(tournament, player, &inner.pod_id).await,
        };
        match told {
            Ok(players) => {
                self.unsettled().remove(&key);
                inner.hub.broadcast_presence(tournament, players);
                true
            }
            Err(error) => {
                let unsettled = self.unsettled().insert(key);
                if unsettled {
                    let online = slot.connections > 0;
                    tracing::warn!(%tournament, online, cause = %error, "presence not recorded; retrying every heartbeat");
                }
                false
            }
        }
    }

    /// Forgets the count of `key` once nobody but the map holds or waits for it and the store
    /// agrees with it.
    fn forget_if_idle(&self, key: Key) {
        let mut counts = self.counts();
        let idle = counts
            .get(&key)
            .is_some_and(|c| Arc::strong_count(c) == 1 && c.try_lock().is_ok_and(|s| s.connections == 0));
        if idle && !self.unsettled().contains(&key) {
            counts.remove(&key);
        }
    }

    /// Tells the store again about every player whose last store call failed. It stops at the
    /// first call that fails again (the store is likely still down; the rest wait for the next
    /// heartbeat), so a heartbeat is never held up by a store that does not answer.
    pub async fn settle(&self) {
        let keys: Vec<Key> = self.unsettled().iter().copied().collect();
        for key in keys {
            let count = self.count(key);
            let slot = count.lock().await;
            let told = !self.unsettled().contains(&key) || self.tell_store(key, &slot).await;
            drop(slot);
            drop(count);
            self.forget_if_idle(key);
            if !told {
                return;
            }
        }
    }

    /// Whether this pod holds a player online (a count being changed counts as held).
    pub fn holds_players(&self) -> bool {
        self.counts().values().any(|count| !count.try_lock().is_ok_and(|slot| slot.connections == 0))
    }

    /// Tells the store again about every player this pod holds online, after its entries of
    /// this pod may have been removed wholesale.
    pub async fn reassert(&self) {
        let online: Vec<Key> = self.counts().keys().copied().collect();
        self.unsettled().extend(online);
        self.settle().await;
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
