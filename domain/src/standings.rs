//! The table of a night, derived from its results (never stored).
//!
//! Every played match gives 3 points for a win, 1 for a draw and 0 for a loss. A level knockout
//! match settled on penalties counts as a draw here (the shoot-out only decides who goes on) and
//! its shoot-out goals are not goals.
//!
//! A **league** is ordered by points, then goal difference, then goals scored, then head-to-head
//! (the points the players still level took from their matches against each other, both legs),
//! then by first name and surname (code point order).
//!
//! A **knockout** is ordered by how far each player got: the champion, then whoever is still in
//! the furthest round, before whoever went out there, round by round down to the first; players
//! level on that go by points, goal difference, goals scored, then name.

use crate::fixtures::{Format, Goals, Night, PlayerRef};
use std::cmp::Ordering;

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub player: PlayerRef,
    pub played: u16,
    pub won: u16,
    pub drawn: u16,
    pub lost: u16,
    pub goals_for: u16,
    pub goals_against: u16,
    pub points: u16,
    /// Knockout only: the latest round the player has a match in (known players only).
    pub reached_round: Option<u16>,
    /// Knockout only: the player lost a match.
    pub eliminated: bool,
    /// Knockout only: the player won the final.
    pub champion: bool,
}

impl Standing {
    fn new(player: PlayerRef) -> Self {
        Standing {
            player,
            played: 0,
            won: 0,
            drawn: 0,
            lost: 0,
            goals_for: 0,
            goals_against: 0,
            points: 0,
            reached_round: None,
            eliminated: false,
            champion: false,
        }
    }

    pub fn goal_difference(&self) -> i32 {
        i32::from(self.goals_for) - i32::from(self.goals_against)
    }

    fn count(&mut self, scored: Goals, conceded: Goals) {
        let (scored, conceded) = (scored.get(), conceded.get());
        self.played += 1;
        self.goals_for += u16::from(scored);
        self.goals_against += u16::from(conceded);
        match scored.cmp(&conceded) {
            Ordering::Greater => self.won += 1,
            Ordering::Equal => self.drawn += 1,
            Ordering::Less => self.lost += 1,
        }
        self.points = 3 * self.won + self.drawn;
    }

    /// How far a knockout player got, comparable across players: in the furthest round before
    /// out of it, the champion above all.
    fn stage(&self) -> (bool, u16, bool) {
        (self.champion, self.reached_round.unwrap_or(0), !self.eliminated)
    }

    /// Points, goal difference, goals scored: higher first.
    fn record(&self) -> (u16, i32, u16) {
        (self.points, self.goal_difference(), self.goals_for)
    }
}

/// The table, first place first: the position of a line is its index plus one.
pub fn standings(night: &Night) -> Vec<Standing> {
    let mut rows: Vec<Standing> = night.players.iter().cloned().map(Standing::new).collect();
    let knockout = matches!(night.format, Format::Knockout);
    for fixture in &night.fixtures {
        let (home, away) = night.sides(fixture.number);
        if knockout {
            for player in [&home, &away].into_iter().flatten() {
                let row = row_of(&mut rows, player);
                row.reached_round = Some(row.reached_round.map_or(fixture.round, |r| r.max(fixture.round)));
            }
        }
        let (Some(result), Some(home), Some(away)) = (night.result(fixture.number), home, away) else { continue };
        row_of(&mut rows, &home).count(result.home_goals, result.away_goals);
        row_of(&mut rows, &away).count(result.away_goals, result.home_goals);
        if knockout {
            if let Some(winner) = night.winner(fixture.number) {
                let loser = if winner == home { &away } else { &home };
                row_of(&mut rows, loser).eliminated = true;
            }
        }
    }
    if let Some(champion) = night.champion() {
        row_of(&mut rows, &champion).champion = true;
    }
    if knockout {
        rows.sort_by(|a, b| {
            b.stage().cmp(&a.stage()).then_with(|| b.record().cmp(&a.record())).then_with(|| a.player.cmp(&b.player))
        });
    } else {
        rows.sort_by(|a, b| b.record().cmp(&a.record()).then_with(|| a.player.cmp(&b.player)));
        order_level_players_head_to_head(night, &mut rows);
    }
    rows
}

fn row_of<'a>(rows: &'a mut [Standing], player: &PlayerRef) -> &'a mut Standing {
    rows.iter_mut().find(|r| &r.player == player).expect("every player of a match is a player of the night")
}

/// Within each run of players level on points, goal difference and goals scored (already in
/// name order), the points from their matches against each other decide, then the name.
fn order_level_players_head_to_head(night: &Night, rows: &mut [Standing]) {
    let mut start = 0;
    while start < rows.len() {
        let end = start + rows[start..].iter().take_while(|r| r.record() == rows[start].record()).count();
        if end - start > 1 {
            let level: Vec<PlayerRef> = rows[start..end].iter().map(|r| r.player.clone()).collect();
            let points = head_to_head_points(night, &level);
            rows[start..end].sort_by(|a, b| {
                let (pa, pb) = (points(&a.player), points(&b.player));
                pb.cmp(&pa).then_with(|| a.player.cmp(&b.player))
            });
        }
        start = end;
    }
}

/// The points each of `level` took from played matches against the others of `level`.
fn head_to_head_points(night: &Night, level: &[PlayerRef]) -> impl Fn(&PlayerRef) -> u16 {
    let mut points = vec![0u16; level.len()];
    let position = |p: &PlayerRef| level.iter().position(|q| q == p);
    for number in night.numbers() {
        let (Some(result), (Some(home), Some(away))) = (night.result(number), night.sides(number)) else { continue };
        let (Some(h), Some(a)) = (position(&home), position(&away)) else { continue };
        match result.home_goals.cmp(&result.away_goals) {
            Ordering::Greater => points[h] += 3,
            Ordering::Less => points[a] += 3,
            Ordering::Equal => {
                points[h] += 1;
                points[a] += 1;
            }
        }
    }
    let level = level.to_vec();
    move |p| level.iter().position(|q| q == p).map_or(0, |i| points[i])
}

#[cfg(test)]
#[path = "standings_tests.rs"]
mod tests;
