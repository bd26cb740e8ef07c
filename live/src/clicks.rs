//! The team-click preview: a player of the tournament hovers over a team; the latest click of
//! each player is kept (expiring after a day without clicks) and the whole list is broadcast to
//! every connection of the tournament, on every pod.

use crate::clock::Clock;
use crate::hub::Hub;
use crate::ports::{Click, LiveError, SharedState};
use crate::stats::Overload;
use crate::Frame;
use domain::ports::StoreError;
use domain::service::{AppError, TournamentService};
use domain::{DomainError, PlayerName, PlayerSurname, Team};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use uuid::Uuid;

/// How long a tournament's clicks live after its last click.
pub const CLICK_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Reads of a tournament's list after an unanswered click before giving up, and the pause
/// between them: a few seconds, about the delivery bound.
const READ_AGAIN_ATTEMPTS: u32 = 4;
const READ_AGAIN_PAUSE: Duration = Duration::from_secs(1);

/// Why a click was not recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClickError {
    /// A rule refuses it: the tournament does not exist, or the player has not joined it.
    #[error(transparent)]
    Refused(DomainError),
    /// The event store could not tell whether the player is in the tournament.
    #[error(transparent)]
    Store(StoreError),
    /// The shared click list cannot be reached (Redis down), or did not answer in time: the
    /// click was not recorded, or its list is read again and broadcast (see
    /// [`Clicks::record`]).
    #[error(transparent)]
    Unavailable(LiveError),
    /// The pod is overloaded: the click was not recorded, the client may retry shortly.
    #[error("too many clicks on this pod now ({})", .0.label())]
    Overloaded(Overload),
}

impl From<AppError> for ClickError {
    fn from(error: AppError) -> Self {
        match error {
            AppError::Rule(rule) => ClickError::Refused(rule),
            AppError::Store(fault) => ClickError::Store(fault),
        }
    }
}

/// Records and broadcasts clicks; cheap to clone.
pub struct Clicks<F> {
    service: TournamentService,
    shared: Arc<dyn SharedState>,
    hub: Hub<F>,
    clock: Arc<dyn Clock>,
    /// What every clone shares.
    common: Arc<Common>,
}

/// What the clones of [`Clicks`] share.
#[derive(Default)]
struct Common {
    /// Clicks being recorded now.
    in_flight: AtomicUsize,
    /// Tournaments whose list is being read again (after an unanswered click, or once the bus
    /// restored its subscriptions), with what was asked since the read began.
    rereads: Mutex<HashMap<Uuid, Reread>>,
}

/// A read of a tournament's list under way.
struct Reread {
    /// Asked again since the read began: it is read once more.
    again: bool,
    /// To be published to the other pods too, not only shown on this one.
    publish: bool,
}

/// Where a list read again goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deliver {
    /// To this pod's connections and the other pods': after an unanswered click, whose list
    /// may not have gone out.
    Everywhere,
    /// To this pod's connections: after the bus restored its subscriptions, when lists the
    /// other pods published meanwhile may have been missed here.
    Here,
}

impl<F> Clone for Clicks<F> {
    fn clone(&self) -> Self {
        Clicks {
            service: self.service.clone(),
            shared: Arc::clone(&self.shared),
            hub: self.hub.clone(),
            clock: Arc::clone(&self.clock),
            common: Arc::clone(&self.common),
        }
    }
}

impl<F: Frame> Clicks<F> {
    /// Click lists the pod may have missed while the bus was not subscribed are read again
    /// once it is, for every tournament served.
    pub fn new(service: TournamentService, shared: Arc<dyn SharedState>, hub: Hub<F>, clock: Arc<dyn Clock>) -> Self {
        let common: Arc<Common> = Arc::default();
        let (reader, rereads) = (Arc::clone(&shared), Arc::clone(&common));
        hub.on_resubscribed(Arc::new(move |hub: &Hub<F>, tournament| {
            read_again(&reader, hub, &rereads, tournament, Deliver::Here);
        }));
        Clicks { service, shared, hub, clock, common }
    }

    /// Records the click of a player of `tournament` and broadcasts the tournament's list.
    /// A player this pod knows to have joined (players never leave) is not looked up in the
    /// event store; any other is, so a click right after joining is accepted.
    ///
    /// Under overload a click is refused at once, before anything is read or recorded
    /// (`Overloaded`, counted in [`HubStats::clicks_refused`](crate::HubStats::clicks_refused)):
    /// when as many clicks as [`HubOptions::clicks_in_flight`](crate::HubOptions) are being
    /// recorded, or when the publications waiting for the bus reach
    /// [`HubOptions::click_refusal_backlog`](crate::HubOptions). A click that was accepted is
    /// always broadcast: its list, or a newer one, goes out.
    /// Errors: `Refused` when the tournament does not exist or the player is not in it; `Store`
    /// or `Unavailable` when a dependency fails. A click sent to the shared state and not
    /// answered (it failed, or this future was dropped while waiting) may have been recorded:
    /// the tournament's list is then read again, in the background, and broadcast.
    pub async fn record(
        &self,
        tournament: Uuid,
        team: Team,
        name: PlayerName,
        surname: PlayerSurname,
    ) -> Result<(), ClickError> {
        let _admitted = self.admit()?;
        if !self.hub.rosters().has_joined(tournament, &name, &surname) {
            self.check_in_store(tournament, &name, &surname).await?;
        }
        let click = Click { team, name: name.into(), surname: surname.into(), at_ms: self.clock.now_ms() };
        let publication = self.hub.click_publication(tournament);
        let unanswered = Unanswered { clicks: self, tournament, answered: false };
        let recorded = self.shared.record_and_publish_click(tournament, click, CLICK_TTL, publication).await;
        let recorded = recorded.map_err(ClickError::Unavailable)?;
        unanswered.answered();
        if recorded.published {
            self.hub.deliver_clicks(tournament, recorded.list);
        } else {
            self.hub.broadcast_clicks(tournament, recorded.list);
        }
        Ok(())
    }

    /// Counts the click in flight, or refuses it when the pod is overloaded.
    fn admit(&self) -> Result<Admitted<'_>, ClickError> {
        let options = self.hub.options();
        let refuse = |reason: Overload| {
            self.hub.stats().refused_click(reason);
            Err(ClickError::Overloaded(reason))
        };
        if self.hub.publish_backlog() >= options.click_refusal_backlog.max(1) {
            return refuse(Overload::PublishBacklog);
        }
        if self.common.in_flight.fetch_add(1, Ordering::AcqRel) >= options.clicks_in_flight.max(1) {
            self.common.in_flight.fetch_sub(1, Ordering::AcqRel);
            return refuse(Overload::InFlight);
        }
        Ok(Admitted(&self.common.in_flight))
    }

    /// Reads the tournament to check a player this pod does not know to have joined (the
    /// event may not have reached it yet); the players read are remembered.
    async fn check_in_store(
        &self,
        tournament: Uuid,
        name: &PlayerName,
        surname: &PlayerSurname,
    ) -> Result<(), ClickError> {
        let current = self.service.get(tournament).await?;
        let Some(read) = current.tournament.as_ref() else {
            return Err(ClickError::Refused(DomainError::TournamentNotFound));
        };
        self.hub.rosters().learn_tournament(tournament, read);
        if read.has_player(name, surname) {
            Ok(())
        } else {
            Err(ClickError::Refused(DomainError::PlayerNotInTournament))
        }
    }
}

/// Reads the tournament's list again and delivers it, in the background: after a click that
/// may have been recorded (and its list published to the other pods) without this pod, which
/// leaves its own publications to the answer, hearing of it; or after the bus restored its
/// subscriptions. A read that fails is tried again a few times (a reply lost to a moment's
/// trouble), until the pod drains; one read at a time per tournament, once more if asked again
/// meanwhile.
fn read_again<F: Frame>(
    shared: &Arc<dyn SharedState>,
    hub: &Hub<F>,
    common: &Arc<Common>,
    tournament: Uuid,
    deliver: Deliver,
) {
    {
        let mut rereads = lock(&common.rereads);
        if let Some(reread) = rereads.get_mut(&tournament) {
            reread.again = true;
            reread.publish |= deliver == Deliver::Everywhere;
            return;
        }
        rereads.insert(tournament, Reread { again: false, publish: deliver == Deliver::Everywhere });
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        lock(&common.rereads).remove(&tournament);
        return;
    };
    let (shared, reader, common) = (Arc::clone(shared), hub.clone(), Arc::clone(common));
    let draining = hub.shutdown_token().clone();
    let read = async move {
        let mut failures = 0;
        loop {
            match shared.click_list(tournament).await {
                Ok(list) => {
                    let publish = lock(&common.rereads).get(&tournament).is_some_and(|reread| reread.publish);
                    // Older than what the connections hold, it is not shown (lists are numbered).
                    match list {
                        Some(list) if publish => reader.broadcast_clicks(tournament, list),
                        Some(list) => reader.deliver_clicks(tournament, list),
                        None => {}
                    }
                    failures = 0;
                    let mut rereads = lock(&common.rereads);
                    match rereads.get_mut(&tournament) {
                        Some(reread) if reread.again => reread.again = false,
                        _ => {
                            rereads.remove(&tournament);
                            return;
                        }
                    }
                }
                Err(error) => {
                    failures += 1;
                    let give_up = failures == READ_AGAIN_ATTEMPTS;
                    if give_up {
                        // The shared state is unreachable: no pod can read the list either.
                        tracing::debug!(%tournament, %error, "a click list could not be read again");
                    }
                    if give_up || tokio::time::timeout(READ_AGAIN_PAUSE, draining.cancelled()).await.is_ok() {
                        lock(&common.rereads).remove(&tournament);
                        return;
                    }
                }
            }
        }
    };
    hub.tracker().spawn_on(read, &runtime);
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A click sent to the shared state and not answered yet. Dropped unanswered (the call failed,
/// timed out, or its caller went away), the click may have been recorded all the same: its
/// list is read again and broadcast, so that no pod misses it.
struct Unanswered<'a, F: Frame> {
    clicks: &'a Clicks<F>,
    tournament: Uuid,
    answered: bool,
}

impl<F: Frame> Unanswered<'_, F> {
    fn answered(mut self) {
        self.answered = true;
    }
}

impl<F: Frame> Drop for Unanswered<'_, F> {
    fn drop(&mut self) {
        if !self.answered {
            let clicks = self.clicks;
            read_again(&clicks.shared, &clicks.hub, &clicks.common, self.tournament, Deliver::Everywhere);
        }
    }
}

/// A click in flight; no longer counted once dropped.
struct Admitted<'a>(&'a AtomicUsize);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
