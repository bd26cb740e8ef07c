//! Live coordination between pods: the [`Bus`](live::ports::Bus) that carries each
//! tournament's messages to every pod serving it, the
//! [`SharedState`](live::ports::SharedState) holding team clicks and one-use tokens, the
//! [`PresenceStore`](live::ports::PresenceStore) of connected players, the
//! [`IdempotencyStore`](live::ports::IdempotencyStore) of request outcomes and the
//! [`PodRegistry`](live::ports::PodRegistry) of live pods.
//!
//! With Redis configured, [`connect_redis`] gives them all over Redis (pub/sub on one connection
//! per pod, commands on another; [`RedisSharedState`] implements every port but the bus);
//! without it, [`LocalBus`], [`MemorySharedState`] and [`LocalPodRegistry`] serve a single
//! process.

pub mod local;
pub mod local_coordination;
pub mod redis;
pub mod redis_config;
pub mod redis_coordination;
mod redis_script;
mod redis_shards;

pub use local::{LocalBus, MemorySharedState};
pub use local_coordination::LocalPodRegistry;
pub use redis::{connect_redis, RedisBus, RedisSharedState};
pub use redis_config::{RedisSettings, Topology};

use live::ports::PresenceEntry;
use std::collections::HashSet;

/// Presence as every adapter returns it: each player once, ordered by name, surname (then id,
/// so that the order never depends on storage).
pub(crate) fn online_order(entries: impl IntoIterator<Item = PresenceEntry>) -> Vec<PresenceEntry> {
    let mut entries: Vec<PresenceEntry> = entries.into_iter().collect();
    entries.sort_by(|a, b| (&a.name, &a.surname, a.player_id).cmp(&(&b.name, &b.surname, b.player_id)));
    let mut seen = HashSet::new();
    entries.retain(|entry| seen.insert(entry.player_id));
    entries
}
