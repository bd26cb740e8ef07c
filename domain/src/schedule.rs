//! How a night's matches are laid out, once, when the organiser schedules them: a round robin by
//! the circle method for a league, a seeded single-elimination bracket with byes for a knockout.
//! Both work on seed positions (`0..n`); [`crate::fixtures`] maps them to players and stores the
//! result in `FixturesScheduled`, so nothing here is ever run again for the same night.

/// Where a knockout match takes a side from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The player of this seed position (`0` is the top seed).
    Seed(usize),
    /// The winner of the match at this index of the schedule.
    Winner(usize),
}

/// One pairing of a schedule: round numbers count from 1 over the whole night.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pairing<S> {
    pub round: u16,
    pub leg: u8,
    pub home: S,
    pub away: S,
}

/// A round robin of `n` players by the circle method: `n - 1` rounds for an even `n`, `n` rounds
/// for an odd one (each round one player rests). Every pair meets once per leg and nobody plays
/// twice in a round; the second leg repeats the first with home and away swapped.
///
/// Seat 0 stays put while the others turn one place a round, so each of them spends a run of
/// rounds on the left half of the ring, then a run on the right. Seat 0 is home every other round
/// and the left seat of every other pairing is home, so each player's home and away games in a
/// leg differ by at most one.
pub fn round_robin(n: usize, legs: u8) -> Vec<Pairing<usize>> {
    let mut ring: Vec<Option<usize>> = (0..n).map(Some).collect();
    if n % 2 == 1 {
        ring.push(None); // the rest: whoever meets it sits the round out
    }
    let seats = ring.len();
    let rounds_per_leg = seats.saturating_sub(1);
    let mut first_leg = Vec::new();
    for round in 0..rounds_per_leg {
        for i in 0..seats / 2 {
            let (left, right) = (ring[i], ring[seats - 1 - i]);
            let (Some(left), Some(right)) = (left, right) else { continue };
            let left_home = i > 0 || round % 2 == 0;
            let (home, away) = if left_home { (left, right) } else { (right, left) };
            first_leg.push(Pairing { round: round as u16 + 1, leg: 1, home, away });
        }
        // Turn every seat but the first one place clockwise.
        if let Some(last) = ring.pop() {
            ring.insert(1, last);
        }
    }
    let mut all = first_leg.clone();
    if legs >= 2 {
        all.extend(first_leg.iter().map(|p| Pairing {
            round: p.round + rounds_per_leg as u16,
            leg: 2,
            home: p.away,
            away: p.home,
        }));
    }
    all
}

/// The seed positions of a bracket of `size` places (a power of two), top to bottom, so that the
/// top seeds meet as late as possible: 1 v 8, 4 v 5, 2 v 7, 3 v 6 for eight (0-based here).
fn bracket_order(size: usize) -> Vec<usize> {
    let mut order = vec![0];
    while order.len() < size {
        let next = order.len() * 2;
        order = order.iter().flat_map(|&s| [s, next - 1 - s]).collect();
    }
    order
}

/// A single-elimination bracket of `n` players (`n >= 2`). The bracket has the next power of
/// two places; the places left over are byes, given to the top seeds, who go straight into the
/// second round. A first-round pairing of a player with a bye is no match at all, so every match
/// has two sides and nobody plays twice in a round. Matches are listed round by round.
pub fn knockout(n: usize) -> Vec<Pairing<Source>> {
    let size = n.max(2).next_power_of_two();
    let mut matches = Vec::new();
    // What fills each place of the current round, top to bottom.
    let mut places: Vec<Option<Source>> =
        bracket_order(size).into_iter().map(|seed| (seed < n).then_some(Source::Seed(seed))).collect();
    let mut round = 1u16;
    while places.len() > 1 {
        let mut next = Vec::with_capacity(places.len() / 2);
        for pair in places.chunks(2) {
            next.push(match (pair[0], pair[1]) {
                (Some(home), Some(away)) => {
                    matches.push(Pairing { round, leg: 1, home, away });
                    Some(Source::Winner(matches.len() - 1))
                }
                (Some(one), None) | (None, Some(one)) => Some(one),
                (None, None) => None,
            });
        }
        places = next;
        round += 1;
    }
    matches
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet, HashMap};

    fn pair(p: &Pairing<usize>) -> (usize, usize) {
        (p.home.min(p.away), p.home.max(p.away))
    }

    #[test]
    fn every_pair_meets_exactly_once_per_leg_and_nobody_plays_twice_in_a_round() {
        for n in 2..=10 {
            for legs in [1, 2] {
                let schedule = round_robin(n, legs);
                let rounds_per_leg = if n % 2 == 0 { n - 1 } else { n };
                assert_eq!(schedule.len(), legs as usize * n * (n - 1) / 2, "n={n} legs={legs}");
                for leg in 1..=legs {
                    let pairs: Vec<_> = schedule.iter().filter(|p| p.leg == leg).map(pair).collect();
                    let distinct: BTreeSet<_> = pairs.iter().copied().collect();
                    assert_eq!(distinct.len(), pairs.len(), "a pair met twice in leg {leg}, n={n}");
                    assert_eq!(distinct.len(), n * (n - 1) / 2, "a pair never met in leg {leg}, n={n}");
                }
                let mut by_round: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
                for p in &schedule {
                    assert_ne!(p.home, p.away);
                    by_round.entry(p.round).or_default().extend([p.home, p.away]);
                }
                assert_eq!(by_round.len(), legs as usize * rounds_per_leg, "n={n}");
                for (round, players) in by_round {
                    let distinct: BTreeSet<_> = players.iter().collect();
                    assert_eq!(distinct.len(), players.len(), "someone plays twice in round {round}, n={n}");
                    // Everyone plays each round, but one when the number is odd.
                    assert_eq!(players.len(), n - n % 2, "round {round}, n={n}");
                }
            }
        }
    }

    #[test]
    fn with_an_odd_number_each_player_rests_exactly_once_per_leg() {
        for n in [3, 5, 7, 9] {
            let schedule = round_robin(n, 1);
            let mut rests = vec![0; n];
            for round in 1..=n as u16 {
                let playing: BTreeSet<_> =
                    schedule.iter().filter(|p| p.round == round).flat_map(|p| [p.home, p.away]).collect();
                for (player, count) in rests.iter_mut().enumerate() {
                    if !playing.contains(&player) {
                        *count += 1;
                    }
                }
            }
            assert!(rests.iter().all(|&r| r == 1), "n={n}: {rests:?}");
        }
    }

    #[test]
    fn home_and_away_are_balanced_and_swap_in_the_second_leg() {
        for n in 2..=10 {
            let schedule = round_robin(n, 2);
            let mut home: HashMap<usize, i32> = HashMap::new();
            for p in schedule.iter().filter(|p| p.leg == 1) {
                *home.entry(p.home).or_default() += 1;
                *home.entry(p.away).or_default() -= 1;
            }
            assert!(home.values().all(|balance| balance.abs() <= 1), "n={n}: {home:?}");
            let first: BTreeSet<_> = schedule.iter().filter(|p| p.leg == 1).map(|p| (p.home, p.away)).collect();
            let second: BTreeSet<_> = schedule.iter().filter(|p| p.leg == 2).map(|p| (p.away, p.home)).collect();
            assert_eq!(first, second, "the second leg is the first with sides swapped, n={n}");
        }
    }

    #[test]
    fn a_bracket_of_eight_keeps_the_top_seeds_apart() {
        assert_eq!(bracket_order(8), [0, 7, 3, 4, 1, 6, 2, 5]);
        assert_eq!(bracket_order(2), [0, 1]);
    }

    /// Plays the bracket with the lower seed winning, returning who was still in before each round.
    fn simulate(n: usize) -> (Vec<Pairing<Source>>, BTreeMap<u16, BTreeSet<usize>>) {
        let matches = knockout(n);
        let mut winners = Vec::new();
        let mut players_by_round: BTreeMap<u16, BTreeSet<usize>> = BTreeMap::new();
        for m in &matches {
            let side = |s: Source| match s {
                Source::Seed(seed) => seed,
                Source::Winner(i) => winners[i],
            };
            let (home, away) = (side(m.home), side(m.away));
            let round = players_by_round.entry(m.round).or_default();
            assert!(round.insert(home) && round.insert(away), "someone plays twice in round {}", m.round);
            winners.push(home.min(away));
        }
        (matches, players_by_round)
    }

    #[test]
    fn a_knockout_has_byes_for_the_top_seeds_when_the_number_is_not_a_power_of_two() {
        for n in 2..=10 {
            let (matches, by_round) = simulate(n);
            assert_eq!(matches.len(), n - 1, "one match per player knocked out, n={n}");
            let size = n.next_power_of_two();
            let byes = size - n;
            let first: BTreeSet<_> = by_round[&1].iter().copied().collect();
            let with_bye: Vec<_> = (0..n).filter(|s| !first.contains(s)).collect();
            assert_eq!(with_bye, (0..byes).collect::<Vec<_>>(), "the top seeds get the byes, n={n}");
            assert_eq!(by_round.len(), size.trailing_zeros() as usize, "n={n}");
            // Every later round holds exactly the players still in: byes join in round 2.
            let mut expected_in = (size / 2).min(n);
            for round in 2..=by_round.len() as u16 {
                assert_eq!(by_round[&round].len(), expected_in, "round {round}, n={n}");
                expected_in /= 2;
            }
            assert_eq!(matches.last().map(|m| m.round), Some(by_round.len() as u16), "the final is last");
        }
    }

    #[test]
    fn five_players_play_one_first_round_match_then_semi_finals_and_a_final() {
        let matches = knockout(5);
        assert_eq!(
            matches,
            vec![
                Pairing { round: 1, leg: 1, home: Source::Seed(3), away: Source::Seed(4) },
                Pairing { round: 2, leg: 1, home: Source::Seed(0), away: Source::Winner(0) },
                Pairing { round: 2, leg: 1, home: Source::Seed(1), away: Source::Seed(2) },
                Pairing { round: 3, leg: 1, home: Source::Winner(1), away: Source::Winner(2) },
            ]
        );
    }
}
