//! The cluster as this pod sees it: its heartbeat into the pod registry, the pruning of dead
//! pods (and the clean-up of what they left behind), its ordinal among the live pods, and the
//! figures behind the operations view and the cluster gauges.
//!
//! Every heartbeat period the pod writes its entry (id, address, version, start time, live
//! connections, tournaments served) with a lapse of one and a half periods. A pod that misses its
//! heartbeat by half a period is no longer listed anywhere, so a pod that crashed disappears from
//! every view within two periods. On each heartbeat every pod also prunes the lapsed entries; the
//! registry hands each dead pod to exactly one of them, which clears the dead pod's presence
//! entries and re-broadcasts the presence of the tournaments touched; a clean-up that failed is
//! retried on the next heartbeats, unless the dead pod is listed live again by then (it clears
//! its own entries, and a late clean-up would wipe the ones it wrote since). A pod that stops
//! gracefully clears its presence entries and deregisters at once; when they cannot be cleared
//! it stays registered until its entry lapses, and the pod that prunes it clears them.
//!
//! What a heartbeat leads to, the upkeep (the clean-ups after dead pods, this pod's own presence
//! entries replaced or kept, the presence calls that failed), runs in a task of its own, woken
//! after each heartbeat: an upkeep longer than a period (a pod holding thousands of players
//! records them again one by one) never delays the next heartbeat, so a busy pod is not taken
//! for dead. Heartbeats that come while an upkeep runs lead to one more upkeep after it.
//!
//! On its first heartbeat, and when the others had taken it for dead, a pod clears whatever
//! presence entries its id owns, then records again those of the players connected to it: a
//! pod restarted under the same name leaves none of its previous run's players online. It does
//! the same when the store holds none of its entries while it holds players: a clean-up by a pod
//! that had taken it for dead landed after it had recorded them again. Every heartbeat also keeps
//! this pod's entries findable ([`PresenceStore::keep_pod`]) and settles presence calls that
//! failed.
//!
//! [`PresenceStore::keep_pod`]: crate::ports::PresenceStore::keep_pod

use crate::clock::Clock;
use crate::hub::Hub;
use crate::ports::{LiveError, PodInfo, PodRegistry};
use crate::presence::{Presence, PRESENCE_TTL};
use crate::Frame;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Who this pod is, from configuration.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Unique among the pods.
    pub pod_id: String,
    /// Where the pod listens, as shown to operators.
    pub address: String,
    /// The version of lct this pod runs.
    pub version: String,
    /// Period of the heartbeat; an entry lapses after one and a half periods.
    pub heartbeat: Duration,
}

/// What a heartbeat learnt about the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    /// This pod's place among the live pods; `None` while it is not listed.
    pub ordinal: Option<usize>,
    /// Live pods.
    pub pods: usize,
    /// Open live connections of all live pods.
    pub connections: u64,
    /// Tournaments served, summed over the live pods.
    pub tournaments: u64,
}

/// The cluster as the registry lists it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// This pod's id.
    pub pod_id: String,
    /// The live pods in the order of their ordinals.
    pub pods: Vec<PodInfo>,
    /// Their totals and this pod's place among them.
    pub figures: Figures,
    pub heartbeat: Duration,
    pub lapse: Duration,
}

impl Figures {
    pub fn of(pods: &[PodInfo], me: &str) -> Figures {
        Figures {
            ordinal: pods.iter().position(|pod| pod.id == me),
            pods: pods.len(),
            connections: pods.iter().map(|pod| pod.connections).sum(),
            tournaments: pods.iter().map(|pod| pod.tournaments).sum(),
        }
    }
}

struct Inner<F> {
    options: ClusterOptions,
    started_at_ms: i64,
    registry: Arc<dyn PodRegistry>,
    presence: Presence<F>,
    hub: Hub<F>,
    clock: Arc<dyn Clock>,
    figures: Mutex<Figures>,
    /// Dead pods this pod won and has not cleaned up yet (each one is kept until its clean-up
    /// is done, or it is live again).
    unclean: Mutex<Vec<String>>,
    /// The ids of the live pods as the last heartbeat listed them; `None` when it could not.
    live: Mutex<Option<HashSet<String>>>,
    /// Whether a heartbeat has ever been recorded (a later registration means the others had
    /// taken this pod for dead).
    registered: AtomicBool,
    /// Whether the store may hold presence entries of this pod's id that its connections do not
    /// account for (or lack some they do): set at start and when the pod registers again,
    /// cleared once this pod's entries were replaced by its own.
    reclaim: AtomicBool,
    /// Whether the last heartbeat failed, so that an outage is logged once.
    failing: AtomicBool,
    /// Wakes the upkeep after each heartbeat; the wake-ups that come while it runs make one
    /// more run.
    upkeep_due: Notify,
    stop: CancellationToken,
    /// The heartbeat and the upkeep while they run.
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// This pod's membership of the cluster; cheap to clone.
pub struct Cluster<F> {
    inner: Arc<Inner<F>>,
}

impl<F> Clone for Cluster<F> {
    fn clone(&self) -> Self {
        Cluster { inner: Arc::clone(&self.inner) }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<F: Frame> Cluster<F> {
    /// This pod, not yet registered: [`Cluster::start`] begins the heartbeat.
    pub fn new(
        options: ClusterOptions,
        registry: Arc<dyn PodRegistry>,
        presence: Presence<F>,
        hub: Hub<F>,
    ) -> Cluster<F> {
        let clock = Arc::clone(hub.clock());
        Cluster {
            inner: Arc::new(Inner {
                options,
                started_at_ms: clock.now_ms(),
                registry,
                presence,
                hub,
                clock,
                figures: Mutex::new(Figures::default()),
                unclean: Mutex::new(Vec::new()),
                live: Mutex::new(None),
                registered: AtomicBool::new(false),
                // A previous run under this id may have left entries, whether or not its
                // registry entry has lapsed yet.
                reclaim: AtomicBool::new(true),
                failing: AtomicBool::new(false),
                upkeep_due: Notify::new(),
                stop: CancellationToken::new(),
                tasks: Mutex::new(Vec::new()),
            }),
        }
    }

    /// This pod's id.
    pub fn pod_id(&self) -> &str {
        &self.inner.options.pod_id
    }

    /// How long an entry stays live after its heartbeat: one and a half periods, so that a pod
    /// may be half a period late without being taken for dead, and one that died is gone from
    /// every view within two periods.
    pub fn lapse(&self) -> Duration {
        (self.inner.options.heartbeat * 3 / 2).max(Duration::from_millis(1))
    }

    /// This pod's ordinal among the live pods and their number, as of the last heartbeat;
    /// `None` while this pod is not listed (not registered yet, or the registry unreachable).
    pub fn position(&self) -> Option<(usize, usize)> {
        let figures = *lock(&self.inner.figures);
        figures.ordinal.map(|ordinal| (ordinal, figures.pods))
    }

    /// The figures of the last heartbeat that reached the registry.
    pub fn figures(&self) -> Figures {
        *lock(&self.inner.figures)
    }

    /// Period of the heartbeat.
    pub fn heartbeat(&self) -> Duration {
        self.inner.options.heartbeat
    }

    /// Starts the heartbeat: one at once, then one every period until [`Cluster::stop`], each
    /// followed by the upkeep (the clean-ups and this pod's presence). The upkeep runs in a task
    /// of its own: however long it takes (a pod holding thousands of players records them again
    /// one by one), the heartbeat keeps its period, so the pod is not taken for dead meanwhile.
    pub fn start(&self) {
        let period = self.inner.options.heartbeat.max(Duration::from_millis(1));
        let cluster = self.clone();
        let heartbeat = tokio::spawn(async move {
            let inner = &cluster.inner;
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = inner.stop.cancelled() => break,
                    _ = ticks.tick() => {
                        cluster.send_heartbeat().await;
                        inner.upkeep_due.notify_one();
                    }
                }
            }
        });
        let cluster = self.clone();
        let upkeep = tokio::spawn(async move {
            let inner = &cluster.inner;
            loop {
                tokio::select! {
                    () = inner.stop.cancelled() => break,
                    () = inner.upkeep_due.notified() => {}
                }
                // Stopping does not wait for a long upkeep: what it leaves undone is either
                // kept for later (a dead pod's clean-up) or made moot by the stop (this pod's
                // entries are cleared).
                tokio::select! {
                    () = inner.stop.cancelled() => break,
                    () = cluster.upkeep() => {}
                }
            }
        });
        lock(&self.inner.tasks).extend([heartbeat, upkeep]);
    }

    /// Stops the heartbeat and the upkeep and leaves the cluster at once: cleans up after the
    /// dead pods this pod won and has not cleaned up yet (nobody else will), removes this pod's
    /// presence entries (telling the other pods), then deregisters it, instead of letting them
    /// lapse. When the entries cannot be removed the pod stays registered until its entry
    /// lapses, so that another pod prunes it and removes them (the pruning only sees
    /// registered pods).
    pub async fn stop(&self) {
        self.inner.stop.cancel();
        let tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        for task in tasks {
            let _ = task.await;
        }
        self.clean_up_dead().await;
        let id = self.pod_id();
        if let Err(error) = self.clean_up(id).await {
            tracing::warn!(pod = %id, cause = %error, "could not clear this pod's presence entries; its entry is left to lapse, and the pod that prunes it will clear them");
            return;
        }
        match self.inner.registry.deregister(id).await {
            Ok(()) => tracing::info!(pod = %id, "left the cluster"),
            Err(error) => {
                tracing::warn!(pod = %id, cause = %error, "could not leave the cluster; this pod's entry will lapse")
            }
        }
    }

    /// One heartbeat followed by its upkeep, in one go (a started pod runs them in two tasks).
    pub async fn beat(&self) {
        self.send_heartbeat().await;
        self.upkeep().await;
    }

    /// The heartbeat proper, a few round trips to the registry: refreshes this pod's entry,
    /// prunes the dead pods (keeping those this pod won for the upkeep to clean up after) and
    /// updates the figures and the list of live pods.
    async fn send_heartbeat(&self) {
        let inner = &self.inner;
        let me = PodInfo {
            id: inner.options.pod_id.clone(),
            address: inner.options.address.clone(),
            version: inner.options.version.clone(),
            started_at_ms: inner.started_at_ms,
            connections: inner.hub.stats().connections.load(Ordering::Relaxed),
            tournaments: inner.hub.tournaments_served() as u64,
            last_heartbeat_ms: inner.clock.now_ms(),
        };
        let result = async {
            let added = inner.registry.heartbeat(&me, self.lapse()).await?;
            let had_registered = inner.registered.swap(true, Ordering::AcqRel);
            if added && had_registered {
                // The pod that pruned it cleared its presence entries: they are recorded again.
                inner.reclaim.store(true, Ordering::Release);
                tracing::warn!(pod = %me.id, "the other pods had taken this pod for dead; registered it again");
            }
            let pruned = inner.registry.prune().await?;
            for dead in &pruned {
                tracing::info!(pod = %dead, "a pod stopped sending heartbeats; removed it from the cluster");
            }
            lock(&inner.unclean).extend(pruned);
            inner.registry.live_pods().await
        }
        .await;
        let live = match result {
            Ok(pods) => {
                if inner.failing.swap(false, Ordering::AcqRel) {
                    tracing::info!(pod = %me.id, "the pod registry is reachable again");
                }
                self.update(Figures::of(&pods, &me.id));
                Some(pods.into_iter().map(|pod| pod.id).collect())
            }
            Err(error) => {
                // The figures of the last heartbeat that worked are kept meanwhile.
                if !inner.failing.swap(true, Ordering::AcqRel) {
                    tracing::warn!(pod = %me.id, cause = %error, "heartbeat failed; retrying every period");
                }
                None
            }
        };
        *lock(&inner.live) = live;
    }

    /// What each heartbeat leads to, for as long as it takes: the clean-up of the dead pods
    /// this pod won, then this pod's own presence entries (replaced by those of its players
    /// after it was taken for dead, kept otherwise) and the presence calls that failed.
    async fn upkeep(&self) {
        self.clean_up_dead().await;
        let inner = &self.inner;
        let id = self.pod_id();
        if !inner.reclaim.load(Ordering::Acquire) {
            self.keep_own_entries().await;
        }
        // Taken (not read) first: a heartbeat that finds this pod taken for dead again while
        // its players are recorded sets it for the next upkeep.
        if inner.reclaim.swap(false, Ordering::AcqRel) {
            match self.clean_up(id).await {
                Ok(()) => {
                    inner.presence.reassert().await;
                    return;
                }
                Err(error) => {
                    inner.reclaim.store(true, Ordering::Release);
                    tracing::warn!(pod = %id, cause = %error, "could not clear this pod's earlier presence entries; will retry");
                }
            }
        }
        inner.presence.settle().await;
    }

    /// Keeps this pod's presence entries findable while it lives, and has them recorded again
    /// when the store holds none while this pod holds players: another pod cleared them, a
    /// clean-up by a pod that had taken this one for dead landing after this one registered
    /// again and recorded its players anew.
    async fn keep_own_entries(&self) {
        let inner = &self.inner;
        let id = self.pod_id();
        match inner.presence.store().keep_pod(id, PRESENCE_TTL).await {
            Ok(false) if inner.presence.holds_players() => {
                tracing::warn!(pod = %id, "this pod's presence entries were cleared by another pod; recording them again");
                inner.reclaim.store(true, Ordering::Release);
            }
            Ok(_) => {}
            // The store is likely down: the presence calls that follow say so.
            Err(error) => tracing::debug!(pod = %id, cause = %error, "could not keep this pod's presence entries"),
        }
    }

    /// Cleans up after the dead pods this pod won, except those the last heartbeat listed live
    /// again: a pod taken for dead that registered again clears its entries itself and records
    /// its players anew, which a late clean-up would wipe. (While the registry cannot be read,
    /// whether a dead pod is back is unknown: its clean-up waits for a heartbeat that reads it.)
    /// A clean-up that fails is kept for the next upkeep.
    async fn clean_up_dead(&self) {
        let inner = &self.inner;
        let dead = lock(&inner.unclean).clone();
        for pod in dead {
            // Read for each pod: heartbeats go on while a clean-up takes its time.
            let back = match lock(&inner.live).as_ref() {
                Some(live) => live.contains(&pod),
                None => return,
            };
            if back {
                tracing::info!(pod = %pod, "a pod taken for dead is back; it clears its own presence entries");
            } else if let Err(error) = self.clean_up(&pod).await {
                tracing::warn!(pod = %pod, cause = %error, "could not clear a dead pod's presence entries; will retry");
                continue;
            }
            let mut unclean = lock(&inner.unclean);
            if let Some(done) = unclean.iter().position(|unclean| *unclean == pod) {
                unclean.remove(done);
            }
        }
    }

    /// Removes what `pod` owned (its presence entries) and tells the connections of the
    /// tournaments touched who is still online. Errors: the entries could not be removed.
    async fn clean_up(&self, pod: &str) -> Result<(), LiveError> {
        let inner = &self.inner;
        let store = inner.presence.store();
        let tournaments = store.clear_pod(pod).await?;
        for tournament in tournaments {
            match store.online(tournament).await {
                Ok(players) => inner.hub.broadcast_presence(tournament, players),
                Err(error) => tracing::warn!(%tournament, cause = %error, "presence not re-broadcast after a pod left"),
            }
        }
        Ok(())
    }

    fn update(&self, figures: Figures) {
        let previous = std::mem::replace(&mut *lock(&self.inner.figures), figures);
        if (previous.ordinal, previous.pods) != (figures.ordinal, figures.pods) {
            tracing::info!(
                pod = %self.pod_id(),
                ordinal = figures.ordinal,
                pods = figures.pods,
                "cluster membership changed"
            );
        }
    }

    /// The cluster as the registry lists it now. Errors: the registry cannot be read.
    pub async fn view(&self) -> Result<ClusterView, LiveError> {
        let pods = self.inner.registry.live_pods().await?;
        let figures = Figures::of(&pods, self.pod_id());
        Ok(ClusterView {
            pod_id: self.pod_id().to_owned(),
            pods,
            figures,
            heartbeat: self.inner.options.heartbeat,
            lapse: self.lapse(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(id: &str, started_at_ms: i64, connections: u64) -> PodInfo {
        PodInfo {
            id: id.to_owned(),
            address: String::new(),
            version: String::new(),
            started_at_ms,
            connections,
            tournaments: 1,
            last_heartbeat_ms: 0,
        }
    }

    #[test]
    fn figures_sum_the_pods_and_place_this_one() {
        let pods = [pod("a", 1, 2), pod("b", 2, 3)];
        assert_eq!(Figures::of(&pods, "b"), Figures { ordinal: Some(1), pods: 2, connections: 5, tournaments: 2 });
        assert_eq!(Figures::of(&pods, "z").ordinal, None);
    }
}
