//! Application services: load a tournament, decide, append with the expected version, publish.
//! A version conflict re-loads and decides again, so concurrent requests produce one winner
//! and clean rule errors for the others.

use crate::fixtures::{Format, MatchNumber, Recorder, Score};
use crate::names::{PlayerLimit, PlayerName, PlayerSurname, TournamentName};
use crate::ports::{
    AppendRequest, EventMetadata, EventPublisher, EventStore, RecordedEvent, Snapshot, StoreError, UniqueKey,
};
use crate::team::Team;
use crate::tournament::{Assignment, Command, DomainError, TournamentEvent, TournamentState};
use std::sync::Arc;
use uuid::Uuid;

/// How often a command is re-decided after losing a race before giving up.
const MAX_ATTEMPTS: usize = 64;
/// A snapshot is saved each time a stream passes a multiple of this many events.
const SNAPSHOT_EVERY: u64 = 10;

/// Why a command or query failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Rule(#[from] DomainError),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::UniqueTaken(_) => AppError::Rule(DomainError::TournamentNameTaken),
            other => AppError::Store(other),
        }
    }
}

/// The use cases of a tournament night.
#[derive(Clone)]
pub struct TournamentService {
    store: Arc<dyn EventStore>,
    publisher: Arc<dyn EventPublisher>,
}

impl TournamentService {
    pub fn new(store: Arc<dyn EventStore>, publisher: Arc<dyn EventPublisher>) -> Self {
        Self { store, publisher }
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Current state of a tournament; `TournamentNotFound` when it was never created.
    pub async fn get(&self, id: Uuid) -> Result<TournamentState, AppError> {
        let state = self.load(id).await?;
        if state.tournament.is_none() {
            return Err(DomainError::TournamentNotFound.into());
        }
        Ok(state)
    }

    pub async fn create(
        &self,
        meta: EventMetadata,
        id: Uuid,
        name: TournamentName,
        player_limit: PlayerLimit,
    ) -> Result<TournamentState, AppError> {
        self.execute(meta, id, || Command::CreateTournament { name: name.clone(), player_limit })
            .await
            .map(|(state, _)| state)
    }

    pub async fn rename(
        &self,
        meta: EventMetadata,
        id: Uuid,
        name: TournamentName,
    ) -> Result<TournamentState, AppError> {
        self.execute(meta, id, || Command::RenameTournament { name: name.clone() }).await.map(|(s, _)| s)
    }

    pub async fn join(
        &self,
        meta: EventMetadata,
        id: Uuid,
        name: PlayerName,
        surname: PlayerSurname,
    ) -> Result<TournamentState, AppError> {
        self.execute(meta, id, || Command::JoinTournament { name: name.clone(), surname: surname.clone() })
            .await
            .map(|(s, _)| s)
    }

    pub async fn select_team(
        &self,
        meta: EventMetadata,
        id: Uuid,
        name: PlayerName,
        surname: PlayerSurname,
        team: Team,
    ) -> Result<TournamentState, AppError> {
        self.execute(meta, id, || Command::SelectTeam { name: name.clone(), surname: surname.clone(), team })
            .await
            .map(|(s, _)| s)
    }

    /// Draws once; later calls return the stored result and append nothing.
    pub async fn draw(&self, meta: EventMetadata, id: Uuid, seed: u64) -> Result<Vec<Assignment>, AppError> {
        let (state, _) = self.execute(meta, id, || Command::DrawTeams { seed }).await?;
        Ok(state.tournament.and_then(|t| t.draw).unwrap_or_default())
    }

    /// Lays out the night's matches once, after the draw; `seed` orders the players.
    pub async fn schedule_fixtures(
        &self,
        meta: EventMetadata,
        id: Uuid,
        format: Format,
        players_may_record: bool,
        seed: u64,
    ) -> Result<TournamentState, AppError> {
        self.execute(meta, id, || Command::ScheduleFixtures { format, players_may_record, seed }).await.map(|(s, _)| s)
    }

    /// Records or corrects the result of a match; the same result again appends nothing.
    pub async fn record_result(
        &self,
        meta: EventMetadata,
        id: Uuid,
        number: MatchNumber,
        score: Score,
        by: Recorder,
    ) -> Result<TournamentState, AppError> {
        self.execute(meta, id, || Command::RecordResult { number, score, by: by.clone() }).await.map(|(s, _)| s)
    }

    /// Marks the night finished once every match is played; again, it appends nothing.
    pub async fn finish_night(&self, meta: EventMetadata, id: Uuid) -> Result<TournamentState, AppError> {
        self.execute(meta, id, || Command::FinishNight).await.map(|(s, _)| s)
    }

    /// Loads from the latest snapshot, then the events after it.
    pub async fn load(&self, id: Uuid) -> Result<TournamentState, AppError> {
        let base = match self.store.load_snapshot(id).await? {
            Some(snapshot) => snapshot.state,
            None => TournamentState::default(),
        };
        let events = self.store.load(id, base.version).await?;
        Ok(base.replay(events.iter().map(|e| &e.event)))
    }

    /// Load, decide, append; on a version conflict, again. Returns the new state and the
    /// events appended (none when the command changed nothing).
    async fn execute(
        &self,
        meta: EventMetadata,
        id: Uuid,
        command: impl Fn() -> Command,
    ) -> Result<(TournamentState, Vec<RecordedEvent>), AppError> {
        for _ in 0..MAX_ATTEMPTS {
            let state = self.load(id).await?;
            let events = state.decide(command())?;
            if events.is_empty() {
                return Ok((state, Vec::new()));
            }
            let (claims, releases) = unique_changes(&state, &events);
            let request = AppendRequest {
                stream_id: id,
                expected_version: state.version,
                events: events.clone(),
                metadata: meta,
                claims,
                releases,
            };
            match self.store.append(request).await {
                Ok(recorded) => {
                    let old_version = state.version;
                    let new_state = state.replay(&events);
                    if new_state.version / SNAPSHOT_EVERY > old_version / SNAPSHOT_EVERY {
                        // A failed snapshot only costs a longer load later.
                        let _ = self.store.save_snapshot(&Snapshot { stream_id: id, state: new_state.clone() }).await;
                    }
                    self.publisher.publish(&recorded).await;
                    return Ok((new_state, recorded));
                }
                Err(StoreError::VersionConflict { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(AppError::Store(StoreError::Unavailable(format!(
            "tournament {id} stayed contended for {MAX_ATTEMPTS} attempts"
        ))))
    }
}

/// Names claimed and released by the events: a created or renamed tournament claims its new
/// name; a rename releases the old one.
fn unique_changes(state: &TournamentState, events: &[TournamentEvent]) -> (Vec<UniqueKey>, Vec<UniqueKey>) {
    let mut claims = Vec::new();
    let mut releases = Vec::new();
    for event in events {
        match event {
            TournamentEvent::TournamentCreated { name, .. } => claims.push(UniqueKey::tournament_name(name.as_str())),
            TournamentEvent::TournamentRenamed { name } => {
                claims.push(UniqueKey::tournament_name(name.as_str()));
                if let Some(t) = &state.tournament {
                    releases.push(UniqueKey::tournament_name(t.name.as_str()));
                }
            }
            _ => {}
        }
    }
    (claims, releases)
}
