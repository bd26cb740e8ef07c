//! Presence on one pod under tokio's paused time, with a presence store whose clean-up is slow:
//! a player who reconnects at once stays online whichever of the old connection's clean-up and
//! the new connection's join reaches the store first. The store may also fail for a while: what
//! it missed is told again once it is back.

mod support;

use async_trait::async_trait;
use live::ports::{LiveError, PresenceEntry, PresenceStore};
use live::{Hub, HubOptions, Presence, SystemClock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{until, MemoryStore, Network};
use uuid::Uuid;

/// Presence in memory; a leave takes a while to land. While `failing`, every call fails (and
/// is counted).
#[derive(Default)]
struct SlowLeaves {
    online: Mutex<HashMap<(Uuid, Uuid), PresenceEntry>>,
    failing: AtomicBool,
    failed: AtomicUsize,
}

impl SlowLeaves {
    fn check(&self) -> Result<(), LiveError> {
        if self.failing.load(Ordering::SeqCst) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(LiveError("the presence store is down".into()));
        }
        Ok(())
    }

    fn players(&self, tournament: Uuid) -> Vec<PresenceEntry> {
        let online = self.online.lock().unwrap();
        online.iter().filter(|((t, _), _)| *t == tournament).map(|(_, e)| e.clone()).collect()
    }
}

#[async_trait]
impl PresenceStore for SlowLeaves {
    async fn join(
        &self,
        tournament: Uuid,
        entry: &PresenceEntry,
        _: &str,
        _: Duration,
    ) -> Result<Vec<PresenceEntry>, LiveError> {
        self.check()?;
        self.online.lock().unwrap().insert((tournament, entry.player_id), entry.clone());
        Ok(self.players(tournament))
    }

    async fn leave(&self, tournament: Uuid, player_id: Uuid, _: &str) -> Result<Vec<PresenceEntry>, LiveError> {
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.check()?;
        self.online.lock().unwrap().remove(&(tournament, player_id));
        Ok(self.players(tournament))
    }

    async fn online(&self, tournament: Uuid) -> Result<Vec<PresenceEntry>, LiveError> {
        Ok(self.players(tournament))
    }

    async fn clear_pod(&self, _: &str) -> Result<Vec<Uuid>, LiveError> {
        Ok(Vec::new())
    }

    async fn keep_pod(&self, _: &str, _: Duration) -> Result<bool, LiveError> {
        Ok(!self.online.lock().unwrap().is_empty())
    }
}

fn presence() -> (Presence<String>, Arc<SlowLeaves>) {
    let store = Arc::new(SlowLeaves::default());
    let hub = Hub::new(
        Arc::new(MemoryStore::default()),
        Network::new(1, Default::default()).bus(),
        Arc::new(SystemClock),
        HubOptions::default(),
    );
    (Presence::new(store.clone(), "pod-a".into(), hub), store)
}

fn ann() -> PresenceEntry {
    PresenceEntry { player_id: Uuid::new_v4(), name: "Ann".into(), surname: "A".into() }
}

#[tokio::test(start_paused = true)]
async fn a_player_who_reconnects_at_once_stays_online() {
    let (presence, store) = presence();
    let (tournament, ann) = (Uuid::new_v4(), ann());
    let first = presence.connected(tournament, ann.clone()).await;
    drop(first);
    let _second = presence.connected(tournament, ann.clone()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(store.players(tournament), vec![ann]);
}

#[tokio::test(start_paused = true)]
async fn a_player_who_reconnects_while_the_old_clean_up_runs_stays_online() {
    let (presence, store) = presence();
    let (tournament, ann) = (Uuid::new_v4(), ann());
    let first = presence.connected(tournament, ann.clone()).await;
    drop(first);
    // The clean-up has started its slow leave when the new connection joins.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let _second = presence.connected(tournament, ann.clone()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(store.players(tournament), vec![ann]);
}

#[tokio::test(start_paused = true)]
async fn the_last_connection_gone_takes_the_player_offline() {
    let (presence, store) = presence();
    let (tournament, ann) = (Uuid::new_v4(), ann());
    let first = presence.connected(tournament, ann.clone()).await;
    let second = presence.connected(tournament, ann.clone()).await;
    drop(first);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(store.players(tournament), vec![ann.clone()], "one connection left");
    drop(second);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(store.players(tournament), vec![]);
}

#[tokio::test(start_paused = true)]
async fn a_leave_the_store_missed_is_told_again_until_it_agrees() {
    let (presence, store) = presence();
    let (tournament, ann) = (Uuid::new_v4(), ann());
    let connection = presence.connected(tournament, ann.clone()).await;
    store.failing.store(true, Ordering::SeqCst);
    drop(connection);
    until("the leave was tried", || store.failed.load(Ordering::SeqCst) == 1).await;
    // A heartbeat while the store is still down changes nothing, and loses nothing.
    presence.settle().await;
    assert_eq!(store.failed.load(Ordering::SeqCst), 2);
    assert_eq!(store.players(tournament), vec![ann]);

    store.failing.store(false, Ordering::SeqCst);
    presence.settle().await;
    assert_eq!(store.players(tournament), vec![], "the player left");
    // Settled: the next heartbeats have nothing to tell.
    store.failing.store(true, Ordering::SeqCst);
    presence.settle().await;
    assert_eq!(store.failed.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_join_the_store_missed_is_told_again_while_the_player_stays() {
    let (presence, store) = presence();
    let (tournament, ann) = (Uuid::new_v4(), ann());
    store.failing.store(true, Ordering::SeqCst);
    let _connection = presence.connected(tournament, ann.clone()).await;
    assert_eq!(store.failed.load(Ordering::SeqCst), 1);
    store.failing.store(false, Ordering::SeqCst);
    presence.settle().await;
    assert_eq!(store.players(tournament), vec![ann]);
}

#[tokio::test(start_paused = true)]
async fn a_player_gone_before_the_store_is_back_is_not_told_online() {
    let (presence, store) = presence();
    let (tournament, ann) = (Uuid::new_v4(), ann());
    store.failing.store(true, Ordering::SeqCst);
    let connection = presence.connected(tournament, ann.clone()).await;
    drop(connection);
    until("the join and the leave were tried", || store.failed.load(Ordering::SeqCst) == 2).await;
    store.failing.store(false, Ordering::SeqCst);
    presence.settle().await;
    assert_eq!(store.players(tournament), vec![]);
}

#[tokio::test(start_paused = true)]
async fn reasserting_records_again_every_player_this_pod_holds() {
    let (presence, store) = presence();
    let (tournament, ann) = (Uuid::new_v4(), ann());
    let _connection = presence.connected(tournament, ann.clone()).await;
    // The store lost this pod's entries (the other pods took it for dead and cleared them).
    store.online.lock().unwrap().clear();
    presence.reassert().await;
    assert_eq!(store.players(tournament), vec![ann]);
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_tries_a_store_still_down_once_not_once_per_player() {
    let (presence, store) = presence();
    let tournament = Uuid::new_v4();
    store.failing.store(true, Ordering::SeqCst);
    let _ann = presence.connected(tournament, ann()).await;
    let _bob = presence.connected(tournament, ann()).await;
    assert_eq!(store.failed.load(Ordering::SeqCst), 2);
    presence.settle().await;
    assert_eq!(store.failed.load(Ordering::SeqCst), 3, "the heartbeat is not held up player by player");
    store.failing.store(false, Ordering::SeqCst);
    presence.settle().await;
    assert_eq!(store.players(tournament).len(), 2);
}
