//! Presence: which players are connected to a tournament's live stream, across pods. This pod
//! counts its own connections per player and tells the shared store on the first and the last.

use crate::hub::Hub;
use crate::ports::{LiveError, PresenceEntry, PresenceStore};
use crate::Frame;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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

struct Inner<F> {
    store: Arc<dyn PresenceStore>,
    /// This pod's id, owner of its presence entries.
    pod_id: Arc<str>,
    hub: Hub<F>,
    counts: Mutex<HashMap<(Uuid, Uuid), usize>>,
}

/// Marks a player online while it lives.
pub struct Online<F: Frame> {
    presence: Presence<F>,
    tournament: Uuid,
    player: Uuid,
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
        let inner = &self.inner;
        let player = entry.player_id;
        if self.change((tournament, player), 1) == 1 {
            match inner.store.join(tournament, &entry, &inner.pod_id, PRESENCE_TTL).await {
                Ok(players) => inner.hub.broadcast_presence(tournament, players),
                Err(error) => tracing::warn!(%tournament, cause = %error, "presence not recorded"),
            }
        }
        Online { presence: self.clone(), tournament, player }
    }

    fn change(&self, key: (Uuid, Uuid), delta: isize) -> usize {
        let mut counts = self.inner.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(key).or_default();
        *count = count.saturating_add_signed(delta);
        let now = *count;
        if now == 0 {
            counts.remove(&key);
        }
        now
    }
}

impl<F: Frame> Drop for Online<F> {
    fn drop(&mut self) {
        if self.presence.change((self.tournament, self.player), -1) > 0 {
            return;
        }
        let (presence, tournament, player) = (self.presence.clone(), self.tournament, self.player);
        tokio::spawn(async move {
            let inner = &presence.inner;
            match inner.store.leave(tournament, player, &inner.pod_id).await {
                Ok(players) => inner.hub.broadcast_presence(tournament, players),
                Err(error) => tracing::warn!(%tournament, cause = %error, "presence not cleared"),
            }
        });
    }
}
