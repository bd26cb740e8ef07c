//! After the draw: the night's matches. The organiser schedules a league (round robin, one or two
//! legs) or a knockout (single elimination with byes); the schedule is decided once and stored in
//! `FixturesScheduled`. Results are recorded by the organiser, or by a player of the match when the
//! organiser allowed it; a changed result is a correction (`ResultCorrected`, by the organiser),
//! never an edit. Knockout matches after the first round name the matches their sides come from,
//! so they become known as winners are decided. The night ends with `NightFinished` once every
//! match is played.

use crate::names::{PlayerName, PlayerSurname};
use crate::schedule::{self, Pairing, Source};
use crate::tournament::{Tournament, TournamentEvent};
use serde::{Deserialize, Serialize};

/// Matches are numbered from 1 in the order of the schedule.
pub type MatchNumber = u16;

/// One player, as the schedule and the results name them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayerRef {
    pub name: PlayerName,
    pub surname: PlayerSurname,
}

/// How many times each pair meets in a league: once, or home and away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum Legs {
    One,
    Two,
}

impl Legs {
    pub fn new(value: i64) -> Result<Legs, FixtureInputError> {
        match value {
            1 => Ok(Legs::One),
            2 => Ok(Legs::Two),
            _ => Err(FixtureInputError::LegsOutOfRange),
        }
    }

    pub fn count(self) -> u8 {
        match self {
            Legs::One => 1,
            Legs::Two => 2,
        }
    }
}

impl TryFrom<u8> for Legs {
    type Error = FixtureInputError;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Legs::new(i64::from(value))
    }
}

impl From<Legs> for u8 {
    fn from(legs: Legs) -> u8 {
        legs.count()
    }
}

/// The format of the night.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Format {
    /// Round robin: every pair meets once per leg; the table decides.
    League { legs: Legs },
    /// Single elimination: the winner of each match goes on, the final's winner is champion.
    Knockout,
}

/// Goals of one side: a whole number from 0 to [`Goals::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Goals(u8);

impl Goals {
    /// More than this in one game of a football video game night is a typo.
    pub const MAX: u8 = 99;

    pub fn new(value: i64) -> Result<Goals, FixtureInputError> {
        u8::try_from(value).ok().filter(|g| *g <= Self::MAX).map(Goals).ok_or(FixtureInputError::GoalsOutOfRange)
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Goals {
    type Error = FixtureInputError;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Goals::new(i64::from(value))
    }
}

impl From<Goals> for u8 {
    fn from(goals: Goals) -> u8 {
        goals.0
    }
}

/// A value of a fixtures command that cannot be right, whatever the state (refused at the edge).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FixtureInputError {
    #[error("goals must be a whole number from 0 to {}", Goals::MAX)]
    GoalsOutOfRange,
    #[error("a league is played in one leg or two")]
    LegsOutOfRange,
}

/// One side of a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Side {
    Home,
    Away,
}

/// The score of a match; a level knockout match names its winner on penalties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Score {
    pub home: Goals,
    pub away: Goals,
    pub penalty_winner: Option<Side>,
}

impl Score {
    pub fn is_level(&self) -> bool {
        self.home == self.away
    }

    /// The side that goes through: more goals, or the shoot-out when level.
    pub fn winner(&self) -> Option<Side> {
        match self.home.cmp(&self.away) {
            std::cmp::Ordering::Greater => Some(Side::Home),
            std::cmp::Ordering::Less => Some(Side::Away),
            std::cmp::Ordering::Equal => self.penalty_winner,
        }
    }
}

/// Where a side of a scheduled match comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Slot {
    /// Known when scheduled.
    Player { name: PlayerName, surname: PlayerSurname },
    /// The winner of an earlier knockout match.
    WinnerOf { number: MatchNumber },
}

impl From<&PlayerRef> for Slot {
    fn from(p: &PlayerRef) -> Slot {
        Slot::Player { name: p.name.clone(), surname: p.surname.clone() }
    }
}

/// One scheduled match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fixture {
    pub number: MatchNumber,
    /// From 1 over the whole night (the second leg of a league goes on counting).
    pub round: u16,
    /// 1, or 2 for the return games of a two-legged league.
    pub leg: u8,
    pub home: Slot,
    pub away: Slot,
}

/// Who entered a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Recorder {
    Organiser,
    Player { name: PlayerName, surname: PlayerSurname },
}

/// The result a match has now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchResult {
    pub home_goals: Goals,
    pub away_goals: Goals,
    pub penalty_winner: Option<Side>,
    pub recorded_by: Recorder,
    /// Whether the organiser changed the first result.
    pub corrected: bool,
}

impl MatchResult {
    pub fn score(&self) -> Score {
        Score { home: self.home_goals, away: self.away_goals, penalty_winner: self.penalty_winner }
    }
}

/// What became of a match so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchStatus {
    /// A side is the winner of a match not yet played.
    Waiting,
    /// Both sides are known; no result yet.
    Ready,
    Played,
}

/// A fixtures rule refused the command. One variant per rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FixtureError {
    #[error("matches can be scheduled only after the draw")]
    NotDrawnYet,
    #[error("the matches of this tournament are already scheduled")]
    FixturesAlreadyScheduled,
    #[error("no matches are scheduled yet")]
    FixturesNotScheduled,
    #[error("the tournament has no match with this number")]
    MatchNotFound,
    #[error("the players of this match are not known yet")]
    MatchNotReady,
    #[error("the organiser has not allowed players to record results")]
    PlayersMayNotRecord,
    #[error("a player may record only a match they play in")]
    NotAPlayerOfTheMatch,
    #[error("this match already has a result; only the organiser can correct it")]
    ResultAlreadyRecorded,
    #[error("a knockout match cannot end level without a winner on penalties")]
    PenaltyWinnerRequired,
    #[error("only a level knockout match has a winner on penalties")]
    UnexpectedPenaltyWinner,
    #[error("the winner of this match has already played the next round")]
    NextRoundAlreadyPlayed,
    #[error("the night is finished; its results are final")]
    NightAlreadyFinished,
    #[error("the night can be finished once every match has a result")]
    MatchesStillToPlay,
}

/// The night's matches and results, as the events made them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Night {
    pub format: Format,
    pub players_may_record: bool,
    /// In seed order.
    pub players: Vec<PlayerRef>,
    pub fixtures: Vec<Fixture>,
    /// The current result of each fixture, by index.
    pub results: Vec<Option<MatchResult>>,
    pub finished: bool,
}

impl Night {
    fn index(&self, number: MatchNumber) -> Option<usize> {
        let index = usize::from(number).checked_sub(1)?;
        (index < self.fixtures.len()).then_some(index)
    }

    pub fn fixture(&self, number: MatchNumber) -> Option<&Fixture> {
        self.index(number).map(|i| &self.fixtures[i])
    }

    pub fn result(&self, number: MatchNumber) -> Option<&MatchResult> {
        self.index(number).and_then(|i| self.results[i].as_ref())
    }

    /// The player a slot stands for now, if known.
    pub fn resolve(&self, slot: &Slot) -> Option<PlayerRef> {
        match slot {
            Slot::Player { name, surname } => Some(PlayerRef { name: name.clone(), surname: surname.clone() }),
            Slot::WinnerOf { number } => self.winner(*number),
        }
    }

    /// The two players of a match, each if known.
    pub fn sides(&self, number: MatchNumber) -> (Option<PlayerRef>, Option<PlayerRef>) {
        match self.fixture(number) {
            Some(f) => (self.resolve(&f.home), self.resolve(&f.away)),
            None => (None, None),
        }
    }

    /// The player who went through a played match (none for a level league match).
    pub fn winner(&self, number: MatchNumber) -> Option<PlayerRef> {
        let side = self.result(number)?.score().winner()?;
        let (home, away) = self.sides(number);
        match side {
            Side::Home => home,
            Side::Away => away,
        }
    }

    pub fn status(&self, number: MatchNumber) -> MatchStatus {
        match (self.result(number), self.sides(number)) {
            (Some(_), _) => MatchStatus::Played,
            (None, (Some(_), Some(_))) => MatchStatus::Ready,
            (None, _) => MatchStatus::Waiting,
        }
    }

    pub fn numbers(&self) -> impl Iterator<Item = MatchNumber> + '_ {
        self.fixtures.iter().map(|f| f.number)
    }

    pub fn is_complete(&self) -> bool {
        self.results.iter().all(Option::is_some)
    }

    pub fn rounds(&self) -> u16 {
        self.fixtures.iter().map(|f| f.round).max().unwrap_or(0)
    }

    /// Players without a match in `round`: the one resting in a league of an odd number, the
    /// players with a bye in the first round of a knockout. Later knockout rounds have none.
    pub fn byes(&self, round: u16) -> Vec<PlayerRef> {
        if matches!(self.format, Format::Knockout) && round != 1 {
            return Vec::new();
        }
        let playing: Vec<&Slot> =
            self.fixtures.iter().filter(|f| f.round == round).flat_map(|f| [&f.home, &f.away]).collect();
        self.players.iter().filter(|p| !playing.contains(&&Slot::from(*p))).cloned().collect()
    }

    /// The first match of `player` without a result, in schedule order (a knockout match still
    /// waiting for the player's previous result counts only once the player is in it).
    pub fn next_match_of(&self, player: &PlayerRef) -> Option<MatchNumber> {
        self.numbers().find(|&n| {
            let (home, away) = self.sides(n);
            self.result(n).is_none() && (home.as_ref() == Some(player) || away.as_ref() == Some(player))
        })
    }

    /// The knockout champion, once the final is played.
    pub fn champion(&self) -> Option<PlayerRef> {
        match self.format {
            Format::Knockout => self.fixtures.last().and_then(|f| self.winner(f.number)),
            Format::League { .. } => None,
        }
    }

    /// The match a knockout winner of `number` goes on to.
    fn next_round_of(&self, number: MatchNumber) -> Option<&Fixture> {
        let from = Slot::WinnerOf { number };
        self.fixtures.iter().find(|f| f.home == from || f.away == from)
    }
}

/// `ScheduleFixtures`: the players of the draw, shuffled by `seed` into seed order, laid out by
/// the format.
pub(crate) fn schedule(
    t: &Tournament,
    format: Format,
    players_may_record: bool,
    seed: u64,
) -> Result<Vec<TournamentEvent>, FixtureError> {
    let draw = t.draw.as_ref().ok_or(FixtureError::NotDrawnYet)?;
    if t.night.is_some() {
        return Err(FixtureError::FixturesAlreadyScheduled);
    }
    let mut players: Vec<PlayerRef> =
        draw.iter().map(|a| PlayerRef { name: a.name.clone(), surname: a.surname.clone() }).collect();
    crate::tournament::shuffle(&mut players, seed);
    let number = |i: usize| MatchNumber::try_from(i + 1).expect("at most 90 matches");
    let fixtures = match format {
        Format::League { legs } => schedule::round_robin(players.len(), legs.count())
            .into_iter()
            .enumerate()
            .map(|(i, p)| fixture(number(i), p, |seat| Slot::from(&players[seat])))
            .collect(),
        Format::Knockout => schedule::knockout(players.len())
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                fixture(number(i), p, |source| match source {
                    Source::Seed(seat) => Slot::from(&players[seat]),
                    Source::Winner(earlier) => Slot::WinnerOf { number: number(earlier) },
                })
            })
            .collect(),
    };
    Ok(vec![TournamentEvent::FixturesScheduled { format, players_may_record, players, fixtures }])
}

fn fixture<S: Copy>(number: MatchNumber, p: Pairing<S>, slot: impl Fn(S) -> Slot) -> Fixture {
    Fixture { number, round: p.round, leg: p.leg, home: slot(p.home), away: slot(p.away) }
}

/// `RecordResult`: a first result, a correction by the organiser, or nothing when the match
/// already has exactly this result (two players entering the same score), even once the night
/// is finished.
pub(crate) fn record(
    t: &Tournament,
    number: MatchNumber,
    score: Score,
    by: Recorder,
) -> Result<Vec<TournamentEvent>, FixtureError> {
    let night = t.night.as_ref().ok_or(FixtureError::FixturesNotScheduled)?;
    night.fixture(number).ok_or(FixtureError::MatchNotFound)?;
    let (Some(home), Some(away)) = night.sides(number) else {
        return Err(FixtureError::MatchNotReady);
    };
    if let Recorder::Player { name, surname } = &by {
        if !night.players_may_record {
            return Err(FixtureError::PlayersMayNotRecord);
        }
        let player = PlayerRef { name: name.clone(), surname: surname.clone() };
        if player != home && player != away {
            return Err(FixtureError::NotAPlayerOfTheMatch);
        }
    }
    let knockout = matches!(night.format, Format::Knockout);
    match (knockout && score.is_level(), score.penalty_winner.is_some()) {
        (true, false) => return Err(FixtureError::PenaltyWinnerRequired),
        (false, true) => return Err(FixtureError::UnexpectedPenaltyWinner),
        _ => {}
    }
    let (home_goals, away_goals, penalty_winner) = (score.home, score.away, score.penalty_winner);
    let Some(current) = night.result(number) else {
        // A finished night has every result: this only guards the rule.
        if night.finished {
            return Err(FixtureError::NightAlreadyFinished);
        }
        let recorded = TournamentEvent::ResultRecorded {
            number,
            home,
            away,
            home_goals,
            away_goals,
            penalty_winner,
            recorded_by: by,
        };
        return Ok(vec![recorded]);
    };
    if current.score() == score {
        return Ok(Vec::new());
    }
    if night.finished {
        return Err(FixtureError::NightAlreadyFinished);
    }
    if by != Recorder::Organiser {
        return Err(FixtureError::ResultAlreadyRecorded);
    }
    if knockout && current.score().winner() != score.winner() {
        let next = night.next_round_of(number);
        if next.is_some_and(|f| night.result(f.number).is_some()) {
            return Err(FixtureError::NextRoundAlreadyPlayed);
        }
    }
    Ok(vec![TournamentEvent::ResultCorrected { number, home, away, home_goals, away_goals, penalty_winner }])
}

/// `FinishNight`: once every match is played; finishing again changes nothing.
pub(crate) fn finish(t: &Tournament) -> Result<Vec<TournamentEvent>, FixtureError> {
    let night = t.night.as_ref().ok_or(FixtureError::FixturesNotScheduled)?;
    if night.finished {
        return Ok(Vec::new());
    }
    if !night.is_complete() {
        return Err(FixtureError::MatchesStillToPlay);
    }
    Ok(vec![TournamentEvent::NightFinished])
}

/// Folds a fixtures event into the tournament.
pub(crate) fn evolve(t: &mut Tournament, event: &TournamentEvent) {
    match event {
        TournamentEvent::FixturesScheduled { format, players_may_record, players, fixtures } => {
            t.night = Some(Night {
                format: *format,
                players_may_record: *players_may_record,
                players: players.clone(),
                fixtures: fixtures.clone(),
                results: vec![None; fixtures.len()],
                finished: false,
            });
        }
        TournamentEvent::ResultRecorded { number, home_goals, away_goals, penalty_winner, recorded_by, .. } => {
            set_result(
                t,
                *number,
                MatchResult {
                    home_goals: *home_goals,
                    away_goals: *away_goals,
                    penalty_winner: *penalty_winner,
                    recorded_by: recorded_by.clone(),
                    corrected: false,
                },
            );
        }
        TournamentEvent::ResultCorrected { number, home_goals, away_goals, penalty_winner, .. } => {
            set_result(
                t,
                *number,
                MatchResult {
                    home_goals: *home_goals,
                    away_goals: *away_goals,
                    penalty_winner: *penalty_winner,
                    recorded_by: Recorder::Organiser,
                    corrected: true,
                },
            );
        }
        TournamentEvent::NightFinished => {
            if let Some(night) = t.night.as_mut() {
                night.finished = true;
            }
        }
        _ => {}
    }
}

fn set_result(t: &mut Tournament, number: MatchNumber, result: MatchResult) {
    if let Some(night) = t.night.as_mut() {
        if let Some(i) = night.index(number) {
            night.results[i] = Some(result);
        }
    }
}

#[cfg(test)]
#[path = "fixtures_tests.rs"]
mod tests;
