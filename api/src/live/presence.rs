//! Presence: which players are connected to a tournament's live stream, across pods. This pod
//! counts its own connections per player and tells the shared store on the first and the last.

use super::LiveState;
use domain::ports::PresenceEntry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Entries expire after this long unless refreshed by a new connection; a pod that dies is
/// cleaned up by the others sooner (see the cluster registry).
pub const PRESENCE_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// This pod's live connections per (tournament, player).
#[derive(Default)]
pub struct LocalPresence {
    counts: Mutex<HashMap<(Uuid, Uuid), usize>>,
}

/// Marks a player online while it lives.
pub struct Online {
    live: LiveState,
    tournament: Uuid,
    player: Uuid,
}

impl LocalPresence {
    fn change(&self, key: (Uuid, Uuid), delta: isize) -> usize {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(key).or_default();
        *count = count.saturating_add_signed(delta);
        let now = *count;
        if now == 0 {
            counts.remove(&key);
        }
        now
    }
}

/// Counts a connection of `entry`'s player; the first one on this pod announces them online.
pub async fn connected(live: &LiveState, tournament: Uuid, entry: PresenceEntry) -> Online {
    let player = entry.player_id;
    if live.local_presence.change((tournament, player), 1) == 1 {
        match live.presence.join(tournament, &entry, &live.pod_id, PRESENCE_TTL).await {
            Ok(players) => live.hub.broadcast_presence(tournament, players),
            Err(error) => tracing::warn!(%tournament, cause = %error, "presence not recorded"),
        }
    }
    Online { live: live.clone(), tournament, player }
}

impl Drop for Online {
    fn drop(&mut self) {
        if self.live.local_presence.change((self.tournament, self.player), -1) > 0 {
            return;
        }
        let (live, tournament, player) = (self.live.clone(), self.tournament, self.player);
        tokio::spawn(async move {
            match live.presence.leave(tournament, player, &live.pod_id).await {
                Ok(players) => live.hub.broadcast_presence(tournament, players),
                Err(error) => tracing::warn!(%tournament, cause = %error, "presence not cleared"),
            }
        });
    }
}

pub type SharedLocalPresence = Arc<LocalPresence>;
