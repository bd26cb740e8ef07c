//! Given a drawn tournament, when a fixtures command, then events or the broken rule.

use super::*;
use crate::names::{PlayerLimit, TournamentName};
use crate::team::Team;
use crate::tournament::{Assignment, Command, DomainError, TournamentState};
use std::collections::BTreeSet;

const NAMES: [(&str, &str); 10] = [
    ("Anna", "Nowak"),
    ("Ben", "Okafor"),
    ("Chloé", "Durand"),
    ("Dev", "Patel"),
    ("Eva", "Lind"),
    ("Femi", "Ade"),
    ("Gus", "Berg"),
    ("Hana", "Sato"),
    ("Ida", "Moe"),
    ("Jon", "Kay"),
];

fn player(i: usize) -> PlayerRef {
    let (name, surname) = NAMES[i];
    PlayerRef { name: PlayerName::parse(name).unwrap(), surname: PlayerSurname::parse(surname).unwrap() }
}

fn as_player(p: &PlayerRef) -> Recorder {
    Recorder::Player { name: p.name.clone(), surname: p.surname.clone() }
}

/// Events of a tournament of `n` players, all joined, picked and drawn.
fn drawn(n: usize) -> Vec<TournamentEvent> {
    let mut events = vec![TournamentEvent::TournamentCreated {
        name: TournamentName::parse("Friday").unwrap(),
        player_limit: PlayerLimit::new(n as i64).unwrap(),
    }];
    for i in 0..n {
        let p = player(i);
        events.push(TournamentEvent::PlayerJoined { name: p.name.clone(), surname: p.surname.clone() });
        events.push(TournamentEvent::TeamSelected { name: p.name, surname: p.surname, team: Team::ALL[i] });
    }
    let assignments =
        (0..n).map(|i| Assignment { name: player(i).name, surname: player(i).surname, team: Team::ALL[i] }).collect();
    events.push(TournamentEvent::TeamsDrawn { assignments });
    events
}

/// A drawn tournament with its matches scheduled.
struct Given {
    events: Vec<TournamentEvent>,
}

impl Given {
    fn scheduled(n: usize, format: Format, players_may_record: bool) -> Given {
        let mut given = Given { events: drawn(n) };
        given.then_ok(Command::ScheduleFixtures { format, players_may_record, seed: 7 });
        given
    }

    fn state(&self) -> TournamentState {
        TournamentState::default().replay(&self.events)
    }

    fn night(&self) -> Night {
        self.state().tournament.unwrap().night.unwrap()
    }

    fn decide(&self, command: Command) -> Result<Vec<TournamentEvent>, DomainError> {
        self.state().decide(command)
    }

    /// Decides and appends what the command emitted.
    fn then_ok(&mut self, command: Command) -> Vec<TournamentEvent> {
        let events = self.decide(command).expect("the command is accepted");
        self.events.extend(events.clone());
        events
    }

    fn record(&mut self, number: MatchNumber, home: i64, away: i64) -> Vec<TournamentEvent> {
        self.then_ok(result(number, home, away, None, Recorder::Organiser))
    }

    fn refused(&self, command: Command) -> FixtureError {
        match self.decide(command) {
            Err(DomainError::Fixtures(rule)) => rule,
            other => panic!("expected a fixtures rule, got {other:?}"),
        }
    }
}

fn result(number: MatchNumber, home: i64, away: i64, penalty_winner: Option<Side>, by: Recorder) -> Command {
    let score = Score { home: Goals::new(home).unwrap(), away: Goals::new(away).unwrap(), penalty_winner };
    Command::RecordResult { number, score, by }
}

fn league(legs: Legs) -> Format {
    Format::League { legs }
}

#[test]
fn matches_are_scheduled_only_after_the_draw() {
    let mut events = drawn(4);
    events.pop();
    let state = TournamentState::default().replay(&events);
    let command = Command::ScheduleFixtures { format: Format::Knockout, players_may_record: false, seed: 1 };
    assert_eq!(state.decide(command), Err(DomainError::Fixtures(FixtureError::NotDrawnYet)));
}

#[test]
fn matches_are_scheduled_once() {
    let given = Given::scheduled(4, league(Legs::One), false);
    let again = Command::ScheduleFixtures { format: Format::Knockout, players_may_record: true, seed: 9 };
    assert_eq!(given.refused(again), FixtureError::FixturesAlreadyScheduled);
}

#[test]
fn a_league_of_four_has_every_pair_once_in_three_rounds_with_nobody_twice_in_a_round() {
    let night = Given::scheduled(4, league(Legs::One), false).night();
    assert_eq!(night.fixtures.len(), 6);
    assert_eq!(night.rounds(), 3);
    let numbers: Vec<_> = night.numbers().collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6]);
    let pairs: BTreeSet<_> = night
        .numbers()
        .map(|n| {
            let (h, a) = night.sides(n);
            let (h, a) = (h.unwrap(), a.unwrap());
            if h < a {
                (h, a)
            } else {
                (a, h)
            }
        })
        .collect();
    assert_eq!(pairs.len(), 6, "every pair of the four exactly once");
    for round in 1..=3 {
        let playing: Vec<_> =
            night.fixtures.iter().filter(|f| f.round == round).flat_map(|f| [&f.home, &f.away]).collect();
        let distinct: BTreeSet<_> = playing.iter().collect();
        assert_eq!((playing.len(), distinct.len()), (4, 4), "round {round}");
        assert!(night.byes(round).is_empty());
    }
    let everyone: BTreeSet<_> = (0..4).map(player).collect();
    assert_eq!(night.players.iter().cloned().collect::<BTreeSet<_>>(), everyone);
    assert!(night.numbers().all(|n| night.status(n) == MatchStatus::Ready));
}

#[test]
fn a_two_legged_league_plays_each_pair_home_and_away() {
    let night = Given::scheduled(5, league(Legs::Two), false).night();
    assert_eq!(night.fixtures.len(), 20);
    assert_eq!(night.rounds(), 10, "five rounds a leg, one player resting in each");
    let games: BTreeSet<_> = night.numbers().map(|n| night.sides(n)).collect();
    assert_eq!(games.len(), 20, "no game twice with the same home side");
    for fixture in &night.fixtures {
        assert_eq!(fixture.leg, if fixture.round <= 5 { 1 } else { 2 });
    }
    for round in 1..=10 {
        assert_eq!(night.byes(round).len(), 1, "one player rests in round {round}");
    }
}

#[test]
fn the_seed_orders_the_players_and_the_stored_schedule_is_what_counts() {
    let schedule = |seed| {
        let state = TournamentState::default().replay(&drawn(6));
        state.decide(Command::ScheduleFixtures { format: Format::Knockout, players_may_record: false, seed }).unwrap()
    };
    assert_eq!(schedule(3), schedule(3));
    let orders: BTreeSet<_> = (0..20u64)
        .map(|seed| match &schedule(seed)[0] {
            TournamentEvent::FixturesScheduled { players, .. } => players.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(orders.len() > 1, "the seeding is not fixed by the join order");

    // Whatever the event says is the schedule: it is replayed, not laid out again.
    let mut events = drawn(2);
    let fixtures =
        vec![Fixture { number: 1, round: 1, leg: 1, home: Slot::from(&player(1)), away: Slot::from(&player(0)) }];
    events.push(TournamentEvent::FixturesScheduled {
        format: Format::Knockout,
        players_may_record: false,
        players: vec![player(1), player(0)],
        fixtures: fixtures.clone(),
    });
    let state = TournamentState::default().replay(&events);
    assert_eq!(state.tournament.unwrap().night.unwrap().fixtures, fixtures);
}

#[test]
fn a_knockout_of_five_gives_three_byes_and_fills_later_rounds_as_winners_are_decided() {
    let mut given = Given::scheduled(5, Format::Knockout, false);
    let night = given.night();
    let seeds = night.players.clone();
    assert_eq!(night.fixtures.len(), 4);
    assert_eq!(night.rounds(), 3);
    assert_eq!(night.byes(1), seeds[..3].to_vec(), "the top three seeds go straight to the semi-finals");
    assert_eq!(night.sides(1), (Some(seeds[3].clone()), Some(seeds[4].clone())));
    assert_eq!(night.status(1), MatchStatus::Ready);
    assert_eq!(night.status(2), MatchStatus::Waiting, "seed 1 waits for the first-round winner");
    assert_eq!(night.sides(2), (Some(seeds[0].clone()), None));
    assert_eq!(night.status(3), MatchStatus::Ready, "seeds 2 and 3 meet in the other semi-final");
    assert_eq!(night.status(4), MatchStatus::Waiting);
    assert_eq!(given.refused(result(2, 1, 0, None, Recorder::Organiser)), FixtureError::MatchNotReady);
    assert_eq!(given.refused(result(4, 1, 0, None, Recorder::Organiser)), FixtureError::MatchNotReady);
    assert_eq!(night.next_match_of(&seeds[4]), Some(1));
    assert_eq!(night.next_match_of(&seeds[0]), Some(2));

    given.record(1, 0, 2);
    let night = given.night();
    assert_eq!(night.sides(2), (Some(seeds[0].clone()), Some(seeds[4].clone())), "the away side won");
    assert_eq!(night.next_match_of(&seeds[3]), None, "the loser is out");
    assert_eq!(night.next_match_of(&seeds[4]), Some(2));
    given.then_ok(result(3, 1, 1, Some(Side::Away), Recorder::Organiser));
    let night = given.night();
    assert_eq!(night.winner(3), Some(seeds[2].clone()), "a shoot-out decides a level match");
    assert_eq!(night.sides(4), (None, Some(seeds[2].clone())));
    assert_eq!(night.status(4), MatchStatus::Waiting);
    given.record(2, 3, 0);
    assert_eq!(given.night().sides(4), (Some(seeds[0].clone()), Some(seeds[2].clone())));
    assert_eq!(given.night().champion(), None);
    given.record(4, 0, 1);
    assert_eq!(given.night().champion(), Some(seeds[2].clone()));
    assert!(given.night().is_complete());
}

#[test]
fn a_result_names_its_players_and_who_recorded_it() {
    let mut given = Given::scheduled(4, league(Legs::One), false);
    let (home, away) = given.night().sides(2);
    let events = given.record(2, 2, 1);
    assert_eq!(
        events,
        vec![TournamentEvent::ResultRecorded {
            number: 2,
            home: home.unwrap(),
            away: away.unwrap(),
            home_goals: Goals::new(2).unwrap(),
            away_goals: Goals::new(1).unwrap(),
            penalty_winner: None,
            recorded_by: Recorder::Organiser,
        }]
    );
    let night = given.night();
    assert_eq!(night.status(2), MatchStatus::Played);
    assert_eq!(night.result(2).map(|r| (r.home_goals.get(), r.away_goals.get(), r.corrected)), Some((2, 1, false)));
}

#[test]
fn results_need_scheduled_matches_that_exist() {
    let given = Given { events: drawn(4) };
    let record = result(1, 1, 0, None, Recorder::Organiser);
    assert_eq!(given.refused(record), FixtureError::FixturesNotScheduled);
    let given = Given::scheduled(4, league(Legs::One), false);
    assert_eq!(given.refused(result(0, 1, 0, None, Recorder::Organiser)), FixtureError::MatchNotFound);
    assert_eq!(given.refused(result(7, 1, 0, None, Recorder::Organiser)), FixtureError::MatchNotFound);
}

#[test]
fn goals_are_whole_numbers_from_nought_to_ninety_nine_and_leagues_have_one_or_two_legs() {
    assert_eq!(Goals::new(-1), Err(FixtureInputError::GoalsOutOfRange));
    assert_eq!(Goals::new(100), Err(FixtureInputError::GoalsOutOfRange));
    assert_eq!(Goals::new(256), Err(FixtureInputError::GoalsOutOfRange));
    assert_eq!(Goals::new(0).map(Goals::get), Ok(0));
    assert_eq!(Goals::new(99).map(Goals::get), Ok(99));
    assert_eq!(Legs::new(0), Err(FixtureInputError::LegsOutOfRange));
    assert_eq!(Legs::new(3), Err(FixtureInputError::LegsOutOfRange));
    assert_eq!(Legs::new(2), Ok(Legs::Two));
    // Stored values are checked again when read back.
    assert!(serde_json::from_str::<Goals>("100").is_err());
}

#[test]
fn players_record_only_when_allowed_and_only_their_own_matches() {
    let given = Given::scheduled(4, league(Legs::One), false);
    let (home, _) = given.night().sides(1);
    let home = home.unwrap();
    assert_eq!(given.refused(result(1, 1, 0, None, as_player(&home))), FixtureError::PlayersMayNotRecord);

    let mut given = Given::scheduled(4, league(Legs::One), true);
    let night = given.night();
    let (home, away) = night.sides(1);
    let (home, away) = (home.unwrap(), away.unwrap());
    let stranger = night.players.iter().find(|p| **p != home && **p != away).unwrap().clone();
    assert_eq!(given.refused(result(1, 1, 0, None, as_player(&stranger))), FixtureError::NotAPlayerOfTheMatch);
    let events = given.then_ok(result(1, 1, 0, None, as_player(&away)));
    assert!(
        matches!(&events[..], [TournamentEvent::ResultRecorded { recorded_by, .. }] if *recorded_by == as_player(&away))
    );
    // The other player of the match entering the same score changes nothing...
    assert_eq!(given.decide(result(1, 1, 0, None, as_player(&home))), Ok(vec![]));
    // ...but a different one is the organiser's to settle.
    assert_eq!(given.refused(result(1, 0, 1, None, as_player(&home))), FixtureError::ResultAlreadyRecorded);
}

#[test]
fn a_level_knockout_match_needs_a_winner_on_penalties_and_only_it_has_one() {
    let given = Given::scheduled(4, Format::Knockout, false);
    assert_eq!(given.refused(result(1, 2, 2, None, Recorder::Organiser)), FixtureError::PenaltyWinnerRequired);
    assert_eq!(
        given.refused(result(1, 2, 1, Some(Side::Away), Recorder::Organiser)),
        FixtureError::UnexpectedPenaltyWinner
    );
    assert!(given.decide(result(1, 0, 0, Some(Side::Home), Recorder::Organiser)).is_ok());
    let league = Given::scheduled(4, league(Legs::One), false);
    assert!(league.decide(result(1, 2, 2, None, Recorder::Organiser)).is_ok(), "a league match may end level");
    assert_eq!(
        league.refused(result(1, 2, 2, Some(Side::Home), Recorder::Organiser)),
        FixtureError::UnexpectedPenaltyWinner
    );
}

#[test]
fn the_organiser_corrects_a_result_with_a_new_event() {
    let mut given = Given::scheduled(4, league(Legs::One), true);
    given.record(3, 1, 1);
    assert_eq!(given.decide(result(3, 1, 1, None, Recorder::Organiser)), Ok(vec![]), "the same result again");
    let (home, away) = given.night().sides(3);
    let events = given.record(3, 2, 1);
    assert_eq!(
        events,
        vec![TournamentEvent::ResultCorrected {
            number: 3,
            home: home.unwrap(),
            away: away.unwrap(),
            home_goals: Goals::new(2).unwrap(),
            away_goals: Goals::new(1).unwrap(),
            penalty_winner: None,
        }]
    );
    let night = given.night();
    let now = night.result(3).unwrap();
    assert_eq!((now.home_goals.get(), now.away_goals.get(), now.corrected), (2, 1, true));
    let history: Vec<_> = given.events.iter().map(TournamentEvent::event_type).rev().take(2).collect();
    assert_eq!(history, ["ResultCorrected", "ResultRecorded"], "the first result stays in the history");
}

#[test]
fn a_knockout_correction_may_change_who_goes_through_until_the_next_round_is_played() {
    let mut given = Given::scheduled(4, Format::Knockout, false);
    let seeds = given.night().players.clone();
    // Four players: 1 v 4 and 2 v 3 in the semi-finals, the final after.
    assert_eq!(given.night().sides(1), (Some(seeds[0].clone()), Some(seeds[3].clone())));
    given.record(1, 2, 0);
    assert_eq!(given.night().sides(3).0, Some(seeds[0].clone()));
    given.record(1, 0, 2);
    assert_eq!(given.night().sides(3).0, Some(seeds[3].clone()), "the corrected winner goes through instead");
    given.record(2, 1, 0);
    given.record(3, 1, 0);
    assert_eq!(given.refused(result(1, 3, 0, None, Recorder::Organiser)), FixtureError::NextRoundAlreadyPlayed);
    // A correction that keeps the same winner is still fine.
    let events = given.record(1, 0, 3);
    assert!(matches!(&events[..], [TournamentEvent::ResultCorrected { number: 1, .. }]));
    // So is correcting the final itself.
    given.then_ok(result(3, 2, 2, Some(Side::Away), Recorder::Organiser));
    assert_eq!(given.night().champion(), given.night().sides(3).1);
}

#[test]
fn the_night_finishes_once_every_match_has_a_result_and_then_results_are_final() {
    let mut given = Given::scheduled(3, league(Legs::One), false);
    assert_eq!(given.refused(Command::FinishNight), FixtureError::MatchesStillToPlay);
    given.record(1, 1, 0);
    given.record(2, 0, 0);
    assert_eq!(given.refused(Command::FinishNight), FixtureError::MatchesStillToPlay);
    given.record(3, 4, 4);
    assert_eq!(given.then_ok(Command::FinishNight), vec![TournamentEvent::NightFinished]);
    assert!(given.night().finished);
    assert_eq!(given.decide(Command::FinishNight), Ok(vec![]), "finishing again changes nothing");
    assert_eq!(given.refused(result(1, 2, 0, None, Recorder::Organiser)), FixtureError::NightAlreadyFinished);
    // The score a match has, sent again (a double tap as the night ends), changes nothing.
    assert_eq!(given.decide(result(1, 1, 0, None, Recorder::Organiser)), Ok(vec![]));
    assert_eq!(Given { events: drawn(3) }.refused(Command::FinishNight), FixtureError::FixturesNotScheduled);
}

#[test]
fn after_the_night_the_same_score_from_a_player_changes_nothing_and_others_are_still_refused() {
    let mut given = Given::scheduled(2, league(Legs::One), true);
    let seeds = given.night().players.clone();
    given.then_ok(result(1, 2, 1, None, as_player(&seeds[0])));
    given.then_ok(Command::FinishNight);
    assert_eq!(given.decide(result(1, 2, 1, None, as_player(&seeds[1]))), Ok(vec![]));
    assert_eq!(given.refused(result(1, 1, 1, None, as_player(&seeds[1]))), FixtureError::NightAlreadyFinished);
}

#[test]
fn fixtures_events_have_a_stable_stored_shape() {
    let mut given = Given::scheduled(2, Format::Knockout, true);
    let seeds = given.night().players.clone();
    let recorded = given.then_ok(result(1, 3, 3, Some(Side::Home), as_player(&seeds[1])));
    let json = serde_json::to_value(&recorded[0]).unwrap();
    let (first, second) = (&seeds[0], &seeds[1]);
    assert_eq!(
        json,
        serde_json::json!({
            "type": "ResultRecorded", "number": 1,
            "home": {"name": first.name, "surname": first.surname},
            "away": {"name": second.name, "surname": second.surname},
            "homeGoals": 3, "awayGoals": 3, "penaltyWinner": "home",
            "recordedBy": {"kind": "player", "name": second.name, "surname": second.surname},
        })
    );
    let scheduled = serde_json::to_value(&given.events[given.events.len() - 2]).unwrap();
    assert_eq!(scheduled["type"], "FixturesScheduled");
    assert_eq!(scheduled["format"], serde_json::json!({"kind": "knockout"}));
    assert_eq!(
        scheduled["fixtures"][0]["home"],
        serde_json::json!({"kind": "player", "name": first.name, "surname": first.surname})
    );
    let league = serde_json::to_value(Format::League { legs: Legs::Two }).unwrap();
    assert_eq!(league, serde_json::json!({"kind": "league", "legs": 2}));
    assert_eq!(
        serde_json::to_value(TournamentEvent::NightFinished).unwrap(),
        serde_json::json!({"type": "NightFinished"})
    );
    for event in &given.events {
        let back: TournamentEvent = serde_json::from_value(serde_json::to_value(event).unwrap()).unwrap();
        assert_eq!(&back, event);
    }
    // A snapshot written before fixtures existed still loads.
    let mut old = serde_json::to_value(TournamentState::default().replay(&drawn(2))).unwrap();
    old["tournament"].as_object_mut().unwrap().remove("night");
    let state: TournamentState = serde_json::from_value(old).unwrap();
    assert_eq!(state.tournament.unwrap().night, None);
}
