//! The table from results: points, goal difference, goals scored, head-to-head, name; and how far
//! each player got in a knockout.

use super::*;
use crate::fixtures::{Fixture, Legs, MatchResult, Recorder, Side, Slot};
use crate::names::{PlayerName, PlayerSurname};

fn p(name: &str) -> PlayerRef {
    PlayerRef { name: PlayerName::parse(name).unwrap(), surname: PlayerSurname::parse("X").unwrap() }
}

/// A match by its players' names, with its score when played.
type Game<'a> = (&'a str, &'a str, Option<(i64, i64)>);

/// A night of `players` (in seed order) with these matches.
fn night(format: Format, players: &[&str], games: &[Game]) -> Night {
    let fixtures: Vec<Fixture> = games
        .iter()
        .enumerate()
        .map(|(i, (home, away, _))| Fixture {
            number: i as u16 + 1,
            round: i as u16 + 1,
            leg: 1,
            home: Slot::from(&p(home)),
            away: Slot::from(&p(away)),
        })
        .collect();
    let results = games.iter().map(|(_, _, score)| score.map(|(h, a)| played(h, a, None))).collect();
    Night {
        format,
        players_may_record: false,
        players: players.iter().map(|n| p(n)).collect(),
        fixtures,
        results,
        finished: false,
    }
}

fn played(home: i64, away: i64, penalty_winner: Option<Side>) -> MatchResult {
    MatchResult {
        home_goals: Goals::new(home).unwrap(),
        away_goals: Goals::new(away).unwrap(),
        penalty_winner,
        recorded_by: Recorder::Organiser,
        corrected: false,
    }
}

fn league(players: &[&str], games: &[Game]) -> Night {
    night(Format::League { legs: Legs::One }, players, games)
}

fn order(night: &Night) -> Vec<String> {
    standings(night).into_iter().map(|s| s.player.name.to_string()).collect()
}

#[test]
fn a_win_is_worth_three_points_a_draw_one_a_loss_none() {
    let night = league(
        &["Anna", "Ben", "Cleo"],
        &[("Anna", "Ben", Some((2, 0))), ("Ben", "Cleo", Some((1, 1))), ("Cleo", "Anna", None)],
    );
    let table = standings(&night);
    let line = |name: &str| table.iter().find(|s| s.player == p(name)).unwrap().clone();
    let anna = line("Anna");
    assert_eq!((anna.played, anna.won, anna.drawn, anna.lost, anna.points), (1, 1, 0, 0, 3));
    assert_eq!((anna.goals_for, anna.goals_against, anna.goal_difference()), (2, 0, 2));
    let ben = line("Ben");
    assert_eq!((ben.played, ben.won, ben.drawn, ben.lost, ben.points), (2, 0, 1, 1, 1));
    assert_eq!((ben.goals_for, ben.goals_against, ben.goal_difference()), (1, 3, -2));
    let cleo = line("Cleo");
    assert_eq!((cleo.played, cleo.points), (1, 1), "an unplayed match counts for nothing");
    assert_eq!(order(&night), ["Anna", "Cleo", "Ben"], "Cleo and Ben level on points: goal difference");
    assert!(table.iter().all(|s| s.reached_round.is_none() && !s.eliminated && !s.champion));
}

#[test]
fn level_on_points_goal_difference_decides() {
    // Everyone wins once: Anna +2, Cleo 0, Ben -2.
    let night = league(
        &["Anna", "Ben", "Cleo"],
        &[("Anna", "Ben", Some((3, 0))), ("Ben", "Cleo", Some((1, 0))), ("Cleo", "Anna", Some((1, 0)))],
    );
    assert_eq!(order(&night), ["Anna", "Cleo", "Ben"]);
}

#[test]
fn level_on_points_and_goal_difference_goals_scored_then_head_to_head_decide() {
    // Everyone wins once with goal difference 0. Ben scored 3; Anna and Cleo 2 each, and Cleo
    // beat Anna: head-to-head puts Cleo above Anna, against the order of names.
    let night = league(
        &["Anna", "Ben", "Cleo"],
        &[("Anna", "Ben", Some((2, 1))), ("Ben", "Cleo", Some((2, 1))), ("Cleo", "Anna", Some((1, 0)))],
    );
    let table = standings(&night);
    assert!(table.iter().all(|s| s.points == 3 && s.goal_difference() == 0));
    assert_eq!(order(&night), ["Ben", "Cleo", "Anna"]);
}

#[test]
fn level_on_everything_including_head_to_head_the_name_decides() {
    // Anna and Ben draw each other and have the same record otherwise; they were seeded Ben
    // first, the table lists Anna first.
    let night = league(
        &["Ben", "Anna", "Cleo", "Dina"],
        &[
            ("Anna", "Ben", Some((1, 1))),
            ("Anna", "Cleo", Some((1, 0))),
            ("Ben", "Cleo", Some((1, 0))),
            ("Dina", "Anna", Some((1, 0))),
            ("Dina", "Ben", Some((1, 0))),
            ("Cleo", "Dina", Some((0, 0))),
        ],
    );
    assert_eq!(order(&night), ["Dina", "Anna", "Ben", "Cleo"]);
    let table = standings(&night);
    assert_eq!((table[1].points, table[2].points), (4, 4));
}

#[test]
fn head_to_head_counts_both_legs_among_the_players_still_level() {
    // Ben and Anna finish level on points, goal difference and goals scored (5, 0, 2); over
    // their two games Ben took 4 points to Anna's 1. Cleo has 5 points too, but scored less.
    let night = league(
        &["Anna", "Ben", "Cleo"],
        &[
            ("Anna", "Ben", Some((0, 0))),
            ("Ben", "Anna", Some((2, 1))),
            ("Anna", "Cleo", Some((1, 0))),
            ("Cleo", "Anna", Some((0, 0))),
            ("Ben", "Cleo", Some((0, 0))),
            ("Cleo", "Ben", Some((1, 0))),
        ],
    );
    let table = standings(&night);
    let anna = table.iter().find(|s| s.player == p("Anna")).unwrap();
    let ben = table.iter().find(|s| s.player == p("Ben")).unwrap();
    assert_eq!(
        (anna.points, anna.goal_difference(), anna.goals_for),
        (ben.points, ben.goal_difference(), ben.goals_for)
    );
    assert_eq!((anna.points, anna.goal_difference(), anna.goals_for), (5, 0, 2));
    assert_eq!(order(&night), ["Ben", "Anna", "Cleo"]);
}

#[test]
fn a_knockout_ranks_by_how_far_each_player_got() {
    // Five players: Eve v Dan in round 1; Anna v (Eve or Dan) and Ben v Cleo in the semi-finals.
    let mut night = Night {
        format: Format::Knockout,
        players_may_record: false,
        players: ["Anna", "Ben", "Cleo", "Dan", "Eve"].iter().map(|n| p(n)).collect(),
        fixtures: vec![
            Fixture { number: 1, round: 1, leg: 1, home: Slot::from(&p("Dan")), away: Slot::from(&p("Eve")) },
            Fixture { number: 2, round: 2, leg: 1, home: Slot::from(&p("Anna")), away: Slot::WinnerOf { number: 1 } },
            Fixture { number: 3, round: 2, leg: 1, home: Slot::from(&p("Ben")), away: Slot::from(&p("Cleo")) },
            Fixture {
                number: 4,
                round: 3,
                leg: 1,
                home: Slot::WinnerOf { number: 2 },
                away: Slot::WinnerOf { number: 3 },
            },
        ],
        results: vec![None; 4],
        finished: false,
    };
    // Before anything is played, the players with a bye are a round ahead.
    let table = standings(&night);
    assert_eq!(order(&night), ["Anna", "Ben", "Cleo", "Dan", "Eve"]);
    assert_eq!(table[0].reached_round, Some(2));
    assert_eq!(table[4].reached_round, Some(1));

    night.results[0] = Some(played(1, 1, Some(Side::Away))); // Eve through on penalties
    night.results[1] = Some(played(0, 2, None)); // Eve beats Anna
    night.results[2] = Some(played(5, 0, None)); // Ben beats Cleo
                                                 // The finalists first (Eve has more points), then the semi-finalists, then round 1.
    assert_eq!(order(&night), ["Eve", "Ben", "Anna", "Cleo", "Dan"]);
    night.results[3] = Some(played(1, 3, None)); // Ben wins the final
    let table = standings(&night);
    assert_eq!(order(&night), ["Ben", "Eve", "Anna", "Cleo", "Dan"], "the champion above all");
    assert!(table[0].champion && !table[0].eliminated);
    let eve = &table[1];
    assert_eq!((eve.played, eve.won, eve.drawn, eve.lost, eve.points), (3, 1, 1, 1, 4), "a shoot-out counts as a draw");
    assert_eq!((eve.goals_for, eve.goals_against), (4, 4), "shoot-out goals are not goals");
    assert!(table[1..].iter().all(|s| s.eliminated && !s.champion));
    // Anna (out in the semi-final, goal difference -2) is above Cleo (-5): the same round, then the record.
    assert_eq!((table[2].reached_round, table[3].reached_round), (Some(2), Some(2)));
}
