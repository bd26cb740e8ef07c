//! In-process live coordination, used when no Redis is configured: a single `lct` process is
//! then the whole deployment, so there is nobody to publish to and nothing to share.
//!
//! - [`LocalBus`] accepts every publication and delivers it nowhere: the hub of this process has
//!   already delivered the message to its own connections before publishing, and there are no
//!   other pods.
//! - [`MemorySharedState`] keeps team clicks and one-use tokens in memory, with the same expiry
//!   rules as the Redis adapter (and presence and idempotency keys, see
//!   [`local_coordination`](super::local_coordination)).

use super::local_coordination::{IdempotencyTable, PresenceTable};
use async_trait::async_trait;
use live::ports::{Bus, BusListener, Click, ClickList as Clicks, LiveError, SharedState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How often expired tournaments and tokens are swept out (they are ignored when read anyway).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The bus of a single process: nothing to publish to, nothing to subscribe from.
#[derive(Debug, Default)]
pub struct LocalBus;

impl LocalBus {
    /// A bus for a deployment of one process.
    pub fn new() -> Self {
        Self
    }
}

#[async_trait]
impl Bus for LocalBus {
    /// Nothing ever arrives, so the listener is not kept.
    fn set_listener(&self, _listener: Arc<dyn BusListener>) {}

    /// Always `Ok`: the hub of this process delivers to its own connections itself, and there is
    /// no other process to reach.
    async fn publish(&self, _channel: &str, _payload: Vec<u8>) -> Result<(), LiveError> {
        Ok(())
    }

    async fn subscribe(&self, _channel: &str) {}

    async fn unsubscribe(&self, _channel: &str) {}

    /// Always connected: there is no connection to lose.
    fn is_connected(&self) -> bool {
        true
    }
}

/// The clicks of one tournament.
#[derive(Debug)]
struct ClickList {
    expires_at: Instant,
    /// The latest click of each player with the order it was recorded in (for ties of `at_ms`).
    by_player: HashMap<(String, String), (u64, Click)>,
}

impl ClickList {
    /// The clicks oldest first, numbered after the latest. The sequence of the whole process
    /// grows with every click, so it orders each list too.
    fn current(&self) -> Clicks {
        let mut ordered: Vec<&(u64, Click)> = self.by_player.values().collect();
        ordered.sort_by_key(|(seq, click)| (click.at_ms, *seq));
        let latest = self.by_player.values().map(|(seq, _)| *seq).max().unwrap_or_default();
        Clicks { seq: latest + 1, clicks: ordered.into_iter().map(|(_, click)| click.clone()).collect() }
    }
}

/// A stored token.
#[derive(Debug)]
struct Token {
    value: String,
    expires_at: Instant,
}

#[derive(Debug)]
struct Inner {
    clicks: HashMap<Uuid, ClickList>,
    tokens: HashMap<String, Token>,
    next_seq: u64,
    last_sweep: Instant,
}

/// Team clicks, one-use tokens, presence and idempotency keys kept in this process's memory.
#[derive(Debug)]
pub struct MemorySharedState {
    inner: Mutex<Inner>,
    pub(super) presence: Mutex<PresenceTable>,
    pub(super) idempotency: Mutex<IdempotencyTable>,
}

impl Default for MemorySharedState {
    fn default() -> Self {
        Self::new()
    }
}

impl MemorySharedState {
    /// An empty state.
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner {
                clicks: HashMap::new(),
                tokens: HashMap::new(),
                next_seq: 0,
                last_sweep: Instant::now(),
            }),
            presence: Mutex::new(PresenceTable::new()),
            idempotency: Mutex::new(IdempotencyTable::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters (every update is a single insert or remove), so a poisoned lock is still used.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record_click_at(&self, tournament: Uuid, click: Click, ttl: Duration, now: Instant) -> Clicks {
        let mut inner = self.lock();
        inner.sweep(now);
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let list = inner
            .clicks
            .entry(tournament)
            .or_insert_with(|| ClickList { expires_at: now + ttl, by_player: HashMap::new() });
        if list.expires_at <= now {
            list.by_player.clear();
        }
        list.expires_at = now + ttl;
        list.by_player.insert((click.name.clone(), click.surname.clone()), (seq, click));
        list.current()
    }

    fn click_list_at(&self, tournament: Uuid, now: Instant) -> Option<Clicks> {
        let inner = self.lock();
        inner
            .clicks
            .get(&tournament)
            .filter(|list| list.expires_at > now && !list.by_player.is_empty())
            .map(ClickList::current)
    }

    fn put_token_at(&self, token: &str, value: &str, ttl: Duration, now: Instant) -> Result<(), LiveError> {
        let mut inner = self.lock();
        inner.sweep(now);
        if inner.tokens.get(token).is_some_and(|held| held.expires_at > now) {
            return Err(LiveError("the token is already in use".to_owned()));
        }
        inner.tokens.insert(token.to_owned(), Token { value: value.to_owned(), expires_at: now + ttl });
        Ok(())
    }

    fn take_token_at(&self, token: &str, now: Instant) -> Option<String> {
        let mut inner = self.lock();
        inner.tokens.remove(token).filter(|held| held.expires_at > now).map(|held| held.value)
    }
}

impl Inner {
    /// Drops expired entries, at most once per [`SWEEP_EVERY`], so memory stays bounded.
    fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) < SWEEP_EVERY {
            return;
        }
        self.last_sweep = now;
        self.clicks.retain(|_, list| list.expires_at > now);
        self.tokens.retain(|_, token| token.expires_at > now);
    }
}

#[async_trait]
impl SharedState for MemorySharedState {
    /// Never fails.
    async fn record_click(&self, tournament: Uuid, click: Click, ttl: Duration) -> Result<Clicks, LiveError> {
        Ok(self.record_click_at(tournament, click, ttl, Instant::now()))
    }

    /// Never fails.
    async fn click_list(&self, tournament: Uuid) -> Result<Option<Clicks>, LiveError> {
        Ok(self.click_list_at(tournament, Instant::now()))
    }

    /// Fails only when the same token is already stored and not expired.
    async fn put_token(&self, token: &str, value: &str, ttl: Duration) -> Result<(), LiveError> {
        self.put_token_at(token, value, ttl, Instant::now())
    }

    /// Never fails.
    async fn take_token(&self, token: &str) -> Result<Option<String>, LiveError> {
        Ok(self.take_token_at(token, Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Team;

    const TTL: Duration = Duration::from_secs(60);

    fn click(name: &str, surname: &str, team: Team, at_ms: i64) -> Click {
        Click { team, name: name.to_owned(), surname: surname.to_owned(), at_ms }
    }

    fn players(clicks: &[Click]) -> Vec<(&str, Team)> {
        clicks.iter().map(|c| (c.name.as_str(), c.team)).collect()
    }

    #[tokio::test]
    async fn the_local_bus_accepts_publications_and_is_always_connected() {
        let bus = LocalBus::new();
        bus.subscribe("lct:tournament:x").await;
        assert_eq!(bus.publish("lct:tournament:x", b"payload".to_vec()).await, Ok(()));
        bus.unsubscribe("lct:tournament:x").await;
        assert!(bus.is_connected());
    }

    #[test]
    fn only_the_latest_click_of_each_player_is_kept_ordered_by_time() {
        let state = MemorySharedState::new();
        let t = Uuid::new_v4();
        let now = Instant::now();
        state.record_click_at(t, click("Ann", "A", Team::Bayern, 10), TTL, now);
        state.record_click_at(t, click("Bob", "B", Team::Psg, 20), TTL, now);
        let list = state.record_click_at(t, click("Ann", "A", Team::Chelsea, 30), TTL, now);
        assert_eq!(players(&list.clicks), vec![("Bob", Team::Psg), ("Ann", Team::Chelsea)]);
    }

    #[test]
    fn each_list_is_numbered_after_the_one_before() {
        let state = MemorySharedState::new();
        let (t, now) = (Uuid::new_v4(), Instant::now());
        let first = state.record_click_at(t, click("Ann", "A", Team::Bayern, 10), TTL, now);
        state.record_click_at(Uuid::new_v4(), click("Bob", "B", Team::Psg, 20), TTL, now);
        let third = state.record_click_at(t, click("Cid", "C", Team::Chelsea, 30), TTL, now);
        assert!(first.seq > 0 && third.seq > first.seq, "{} then {}", first.seq, third.seq);
    }

    #[test]
    fn players_are_told_apart_by_name_and_surname() {
        let state = MemorySharedState::new();
        let t = Uuid::new_v4();
        let now = Instant::now();
        state.record_click_at(t, click("Ann", "A", Team::Bayern, 10), TTL, now);
        let list = state.record_click_at(t, click("Ann", "B", Team::Psg, 20), TTL, now);
        assert_eq!(list.clicks.len(), 2);
    }

    #[test]
    fn clicks_at_the_same_time_keep_the_order_they_were_recorded_in() {
        let state = MemorySharedState::new();
        let t = Uuid::new_v4();
        let now = Instant::now();
        state.record_click_at(t, click("Zed", "Z", Team::Bayern, 5), TTL, now);
        state.record_click_at(t, click("Amy", "A", Team::Psg, 5), TTL, now);
        let list = state.record_click_at(t, click("Kim", "K", Team::Juventus, 5), TTL, now);
        assert_eq!(players(&list.clicks), vec![("Zed", Team::Bayern), ("Amy", Team::Psg), ("Kim", Team::Juventus)]);
    }

    #[test]
    fn tournaments_do_not_share_clicks() {
        let state = MemorySharedState::new();
        let now = Instant::now();
        state.record_click_at(Uuid::new_v4(), click("Ann", "A", Team::Bayern, 1), TTL, now);
        let list = state.record_click_at(Uuid::new_v4(), click("Bob", "B", Team::Psg, 2), TTL, now);
        assert_eq!(players(&list.clicks), vec![("Bob", Team::Psg)]);
    }

    #[test]
    fn the_list_expires_ttl_after_the_last_click() {
        let state = MemorySharedState::new();
        let t = Uuid::new_v4();
        let start = Instant::now();
        let ttl = Duration::from_secs(10);
        state.record_click_at(t, click("Ann", "A", Team::Bayern, 1), ttl, start);
        // A click before expiry extends the whole list.
        let list = state.record_click_at(t, click("Bob", "B", Team::Psg, 2), ttl, start + Duration::from_secs(9));
        assert_eq!(list.clicks.len(), 2);
        let list = state.record_click_at(t, click("Cid", "C", Team::Chelsea, 3), ttl, start + Duration::from_secs(18));
        assert_eq!(list.clicks.len(), 3);
        // Nothing for a whole ttl: the list starts over.
        let list = state.record_click_at(t, click("Dan", "D", Team::Juventus, 4), ttl, start + Duration::from_secs(29));
        assert_eq!(players(&list.clicks), vec![("Dan", Team::Juventus)]);
    }

    #[test]
    fn the_list_read_again_is_the_last_one_recorded_until_it_expires() {
        let state = MemorySharedState::new();
        let (t, start, ttl) = (Uuid::new_v4(), Instant::now(), Duration::from_secs(10));
        assert_eq!(state.click_list_at(t, start), None);
        state.record_click_at(t, click("Ann", "A", Team::Bayern, 1), ttl, start);
        let recorded = state.record_click_at(t, click("Bob", "B", Team::Psg, 2), ttl, start);
        state.record_click_at(Uuid::new_v4(), click("Cid", "C", Team::Chelsea, 3), ttl, start);
        assert_eq!(state.click_list_at(t, start + Duration::from_secs(9)), Some(recorded));
        assert_eq!(state.click_list_at(t, start + Duration::from_secs(10)), None);
    }

    #[test]
    fn a_token_is_taken_once() {
        let state = MemorySharedState::new();
        let now = Instant::now();
        state.put_token_at("tok", "player", TTL, now).unwrap();
        assert_eq!(state.take_token_at("tok", now), Some("player".to_owned()));
        assert_eq!(state.take_token_at("tok", now), None);
        assert_eq!(state.take_token_at("unknown", now), None);
    }

    #[test]
    fn an_expired_token_is_gone() {
        let state = MemorySharedState::new();
        let now = Instant::now();
        state.put_token_at("tok", "player", Duration::from_secs(5), now).unwrap();
        assert_eq!(state.take_token_at("tok", now + Duration::from_secs(5)), None);
    }

    #[test]
    fn a_live_token_is_not_overwritten_but_an_expired_one_is() {
        let state = MemorySharedState::new();
        let now = Instant::now();
        state.put_token_at("tok", "first", Duration::from_secs(5), now).unwrap();
        assert!(state.put_token_at("tok", "second", Duration::from_secs(5), now).is_err());
        let later = now + Duration::from_secs(6);
        state.put_token_at("tok", "third", Duration::from_secs(5), later).unwrap();
        assert_eq!(state.take_token_at("tok", later), Some("third".to_owned()));
    }

    #[test]
    fn expired_entries_are_swept_out_of_memory() {
        let state = MemorySharedState::new();
        let start = Instant::now();
        state.record_click_at(Uuid::new_v4(), click("Ann", "A", Team::Bayern, 1), Duration::from_secs(2), start);
        state.put_token_at("old", "v", Duration::from_secs(2), start).unwrap();
        let later = start + Duration::from_secs(3);
        state.put_token_at("new", "v", TTL, later).unwrap();
        let inner = state.lock();
        assert!(inner.clicks.is_empty());
        assert_eq!(inner.tokens.keys().collect::<Vec<_>>(), vec!["new"]);
    }

    #[tokio::test]
    async fn the_port_methods_use_the_clock() {
        let state: Arc<dyn SharedState> = Arc::new(MemorySharedState::new());
        let t = Uuid::new_v4();
        let list = state.record_click(t, click("Ann", "A", Team::Bayern, 1), TTL).await.unwrap();
        assert_eq!(list.clicks.len(), 1);
        state.put_token("tok", "v", TTL).await.unwrap();
        assert_eq!(state.take_token("tok").await.unwrap(), Some("v".to_owned()));
        assert_eq!(state.take_token("tok").await.unwrap(), None);
    }
}
