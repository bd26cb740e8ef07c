//! The Tournament aggregate: `decide` turns a command into events or refuses it by a rule,
//! `evolve` folds an event into the state. Both are pure and synchronous.

use crate::fixtures::{
    self, Fixture, FixtureError, Format, Goals, MatchNumber, Night, PlayerRef, Recorder, Score, Side,
};
use crate::names::{PlayerLimit, PlayerName, PlayerSurname, TournamentName};
use crate::team::Team;
use serde::{Deserialize, Serialize};

/// What a caller asks a tournament to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    CreateTournament {
        name: TournamentName,
        player_limit: PlayerLimit,
    },
    RenameTournament {
        name: TournamentName,
    },
    JoinTournament {
        name: PlayerName,
        surname: PlayerSurname,
    },
    SelectTeam {
        name: PlayerName,
        surname: PlayerSurname,
        team: Team,
    },
    /// `seed` is the randomness of the draw, supplied by the caller.
    DrawTeams {
        seed: u64,
    },
    /// After the draw: lay out the night's matches. `seed` orders the players (the seeds of a
    /// knockout, the seats of a league).
    ScheduleFixtures {
        format: Format,
        players_may_record: bool,
        seed: u64,
    },
    /// A result for a match, or a correction of it by the organiser.
    RecordResult {
        number: MatchNumber,
        score: Score,
        by: Recorder,
    },
    /// Every match is played: the table is final.
    FinishNight,
}

/// One team handed to one player by the draw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    pub name: PlayerName,
    pub surname: PlayerSurname,
    pub team: Team,
}

/// What happened to a tournament; stored, versioned from 1 per tournament.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all_fields = "camelCase")]
pub enum TournamentEvent {
    TournamentCreated {
        name: TournamentName,
        player_limit: PlayerLimit,
    },
    TournamentRenamed {
        name: TournamentName,
    },
    PlayerJoined {
        name: PlayerName,
        surname: PlayerSurname,
    },
    TeamSelected {
        name: PlayerName,
        surname: PlayerSurname,
        team: Team,
    },
    TeamsDrawn {
        assignments: Vec<Assignment>,
    },
    /// The whole schedule, fixed once: the players in seed order and every match.
    FixturesScheduled {
        format: Format,
        players_may_record: bool,
        players: Vec<PlayerRef>,
        fixtures: Vec<Fixture>,
    },
    /// The first result of a match, with its two players as they were when it was played.
    ResultRecorded {
        number: MatchNumber,
        home: PlayerRef,
        away: PlayerRef,
        home_goals: Goals,
        away_goals: Goals,
        penalty_winner: Option<Side>,
        recorded_by: Recorder,
    },
    /// The organiser replaced the result of a match.
    ResultCorrected {
        number: MatchNumber,
        home: PlayerRef,
        away: PlayerRef,
        home_goals: Goals,
        away_goals: Goals,
        penalty_winner: Option<Side>,
    },
    NightFinished,
}

impl TournamentEvent {
    /// The stored type name of the event.
    pub fn event_type(&self) -> &'static str {
        match self {
            TournamentEvent::TournamentCreated { .. } => "TournamentCreated",
            TournamentEvent::TournamentRenamed { .. } => "TournamentRenamed",
            TournamentEvent::PlayerJoined { .. } => "PlayerJoined",
            TournamentEvent::TeamSelected { .. } => "TeamSelected",
            TournamentEvent::TeamsDrawn { .. } => "TeamsDrawn",
            TournamentEvent::FixturesScheduled { .. } => "FixturesScheduled",
            TournamentEvent::ResultRecorded { .. } => "ResultRecorded",
            TournamentEvent::ResultCorrected { .. } => "ResultCorrected",
            TournamentEvent::NightFinished => "NightFinished",
        }
    }
}

/// A rule refused the command. One variant per rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the tournament does not exist")]
    TournamentNotFound,
    #[error("the tournament already exists")]
    TournamentAlreadyExists,
    #[error("a tournament with this name already exists")]
    TournamentNameTaken,
    #[error("the new name must differ from the current name")]
    NameUnchanged,
    #[error("a player with this name and surname has already joined the tournament")]
    PlayerAlreadyJoined,
    #[error("the tournament is full")]
    TournamentFull,
    #[error("the player has not joined the tournament")]
    PlayerNotInTournament,
    #[error("the player has already selected a team")]
    PlayerAlreadySelected,
    #[error("the team is already selected by another player")]
    TeamAlreadySelected,
    #[error("the draw needs every seat of the tournament taken")]
    NotAllSeatsTaken,
    #[error("the draw needs every player to have selected a team")]
    NotAllPlayersSelected,
    /// A rule of the matches after the draw.
    #[error(transparent)]
    Fixtures(#[from] FixtureError),
}

/// A player as the tournament knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Player {
    pub name: PlayerName,
    pub surname: PlayerSurname,
    pub selected_team: Option<Team>,
    pub drawn_team: Option<Team>,
}

/// A created tournament.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tournament {
    pub name: TournamentName,
    pub player_limit: PlayerLimit,
    /// In join order.
    pub players: Vec<Player>,
    /// The result of the draw, once drawn.
    pub draw: Option<Vec<Assignment>>,
    /// The matches after the draw, once scheduled.
    #[serde(default)]
    pub night: Option<Night>,
}

impl Tournament {
    fn player_index(&self, name: &PlayerName, surname: &PlayerSurname) -> Option<usize> {
        self.players.iter().position(|p| &p.name == name && &p.surname == surname)
    }

    /// Whether any player of this tournament holds `team`.
    pub fn is_selected(&self, team: Team) -> bool {
        self.players.iter().any(|p| p.selected_team == Some(team))
    }

    /// Whether a player with this name and surname has joined.
    pub fn has_player(&self, name: &PlayerName, surname: &PlayerSurname) -> bool {
        self.player_index(name, surname).is_some()
    }
}

/// The state of one tournament stream, with the version of its last event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TournamentState {
    pub version: u64,
    pub tournament: Option<Tournament>,
}

impl TournamentState {
    /// Folds events in order.
    pub fn replay<'a>(mut self, events: impl IntoIterator<Item = &'a TournamentEvent>) -> Self {
        for event in events {
            self = self.evolve(event);
        }
        self
    }

    /// Applies one event; the version advances by one.
    pub fn evolve(mut self, event: &TournamentEvent) -> Self {
        self.version += 1;
        match (event, self.tournament.as_mut()) {
            (TournamentEvent::TournamentCreated { name, player_limit }, _) => {
                self.tournament = Some(Tournament {
                    name: name.clone(),
                    player_limit: *player_limit,
                    players: Vec::new(),
                    draw: None,
                    night: None,
                });
            }
            (TournamentEvent::TournamentRenamed { name }, Some(t)) => t.name = name.clone(),
            (TournamentEvent::PlayerJoined { name, surname }, Some(t)) => t.players.push(Player {
                name: name.clone(),
                surname: surname.clone(),
                selected_team: None,
                drawn_team: None,
            }),
            (TournamentEvent::TeamSelected { name, surname, team }, Some(t)) => {
                if let Some(i) = t.player_index(name, surname) {
                    t.players[i].selected_team = Some(*team);
                }
            }
            (TournamentEvent::TeamsDrawn { assignments }, Some(t)) => {
                for a in assignments {
                    if let Some(i) = t.player_index(&a.name, &a.surname) {
                        t.players[i].drawn_team = Some(a.team);
                    }
                }
                t.draw = Some(assignments.clone());
            }
            (
                TournamentEvent::FixturesScheduled { .. }
                | TournamentEvent::ResultRecorded { .. }
                | TournamentEvent::ResultCorrected { .. }
                | TournamentEvent::NightFinished,
                Some(t),
            ) => fixtures::evolve(t, event),
            // An event for a tournament that was never created cannot come from `decide`.
            (_, None) => {}
        }
        self
    }

    /// Decides what a command does to this state, without changing it.
    pub fn decide(&self, command: Command) -> Result<Vec<TournamentEvent>, DomainError> {
        let tournament = match (&self.tournament, command) {
            (None, Command::CreateTournament { name, player_limit }) => {
                return Ok(vec![TournamentEvent::TournamentCreated { name, player_limit }]);
            }
            (Some(_), Command::CreateTournament { .. }) => return Err(DomainError::TournamentAlreadyExists),
            (None, _) => return Err(DomainError::TournamentNotFound),
            (Some(t), command) => (t, command),
        };
        match tournament {
            (t, Command::RenameTournament { name }) => {
                if name == t.name {
                    return Err(DomainError::NameUnchanged);
                }
                Ok(vec![TournamentEvent::TournamentRenamed { name }])
            }
            (t, Command::JoinTournament { name, surname }) => {
                if t.has_player(&name, &surname) {
                    return Err(DomainError::PlayerAlreadyJoined);
                }
                if t.players.len() >= t.player_limit.get() {
                    return Err(DomainError::TournamentFull);
                }
                Ok(vec![TournamentEvent::PlayerJoined { name, surname }])
            }
            (t, Command::SelectTeam { name, surname, team }) => {
                let index = t.player_index(&name, &surname).ok_or(DomainError::PlayerNotInTournament)?;
                if t.players[index].selected_team.is_some() {
                    return Err(DomainError::PlayerAlreadySelected);
                }
                if t.is_selected(team) {
                    return Err(DomainError::TeamAlreadySelected);
                }
                Ok(vec![TournamentEvent::TeamSelected { name, surname, team }])
            }
            (t, Command::DrawTeams { seed }) => {
                if t.draw.is_some() {
                    return Ok(Vec::new());
                }
                if t.players.len() < t.player_limit.get() {
                    return Err(DomainError::NotAllSeatsTaken);
                }
                let mut teams = t
                    .players
                    .iter()
                    .map(|p| p.selected_team.ok_or(DomainError::NotAllPlayersSelected))
                    .collect::<Result<Vec<_>, _>>()?;
                shuffle(&mut teams, seed);
                let assignments = t
                    .players
                    .iter()
                    .zip(teams)
                    .map(|(p, team)| Assignment { name: p.name.clone(), surname: p.surname.clone(), team })
                    .collect();
                Ok(vec![TournamentEvent::TeamsDrawn { assignments }])
            }
            (t, Command::ScheduleFixtures { format, players_may_record, seed }) => {
                Ok(fixtures::schedule(t, format, players_may_record, seed)?)
            }
            (t, Command::RecordResult { number, score, by }) => Ok(fixtures::record(t, number, score, by)?),
            (t, Command::FinishNight) => Ok(fixtures::finish(t)?),
            (_, Command::CreateTournament { .. }) => unreachable!("handled above"),
        }
    }
}

/// Fisher–Yates driven by SplitMix64 from `seed`, with unbiased bounded draws, so every
/// permutation is equally likely for a uniformly random seed.
pub(crate) fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let bound = (i + 1) as u64;
        // Rejection sampling removes the modulo bias.
        let zone = u64::MAX - (u64::MAX % bound);
        let j = loop {
            let r = next();
            if r < zone {
                break (r % bound) as usize;
            }
        };
        items.swap(i, j);
    }
}

#[cfg(test)]
#[path = "tournament_tests.rs"]
mod tests;
