//! Who has joined the tournaments this pod has seen lately, learned from the events its feeds
//! and its own commits deliver and from the tournaments read to check a click.
//!
//! Players never leave a tournament, so whatever is known here stays true: a player found here
//! has joined, and a click needs no read of the event store. A player not found may still have
//! joined (this pod has not seen that event yet, or forgot the tournament): the caller asks the
//! store. The memory is bounded: past `capacity` tournaments the one learned first is forgotten.

use domain::ports::RecordedEvent;
use domain::{PlayerName, PlayerSurname, Tournament, TournamentEvent};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use uuid::Uuid;

/// Tournaments remembered by default (each holds at most ten players).
pub const DEFAULT_CAPACITY: usize = 16_384;

type Player = (PlayerName, PlayerSurname);

#[derive(Default)]
struct Known {
    players: HashMap<Uuid, HashSet<Player>>,
    /// Tournaments in the order they were first learned, for eviction.
    order: VecDeque<Uuid>,
}

/// The joined players of recently seen tournaments; see the module documentation.
pub struct Rosters {
    known: Mutex<Known>,
    capacity: usize,
}

impl Default for Rosters {
    fn default() -> Self {
        Rosters::new(DEFAULT_CAPACITY)
    }
}

impl Rosters {
    pub fn new(capacity: usize) -> Self {
        Rosters { known: Mutex::new(Known::default()), capacity: capacity.max(1) }
    }

    fn lock(&self) -> MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the player is known to have joined `tournament`.
    pub fn has_joined(&self, tournament: Uuid, name: &PlayerName, surname: &PlayerSurname) -> bool {
        let known = self.lock();
        known.players.get(&tournament).is_some_and(|players| players.contains(&(name.clone(), surname.clone())))
    }

    /// Learns the player of a `PlayerJoined` event; other events teach nothing.
    pub fn learn_event(&self, event: &RecordedEvent) {
        if let TournamentEvent::PlayerJoined { name, surname } = &event.event {
            self.learn(event.stream_id, [(name.clone(), surname.clone())]);
        }
    }

    /// Learns every player of a tournament as read from the store.
    pub fn learn_tournament(&self, id: Uuid, tournament: &Tournament) {
        self.learn(id, tournament.players.iter().map(|p| (p.name.clone(), p.surname.clone())));
    }

    fn learn(&self, tournament: Uuid, players: impl IntoIterator<Item = Player>) {
        let mut known = self.lock();
        let Known { players: rosters, order } = &mut *known;
        let roster = match rosters.get_mut(&tournament) {
            Some(roster) => roster,
            None => {
                while order.len() >= self.capacity {
                    match order.pop_front() {
                        Some(oldest) => rosters.remove(&oldest),
                        None => break,
                    };
                }
                order.push_back(tournament);
                rosters.entry(tournament).or_default()
            }
        };
        roster.extend(players);
    }

    /// Tournaments remembered now.
    pub fn len(&self) -> usize {
        self.lock().players.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(tournament: Uuid, name: &str) -> RecordedEvent {
        RecordedEvent {
            stream_id: tournament,
            version: 2,
            schema_version: 1,
            recorded_at_ms: 0,
            request_id: None,
            event: TournamentEvent::PlayerJoined {
                name: PlayerName::parse(name).unwrap(),
                surname: PlayerSurname::parse("Nowak").unwrap(),
            },
        }
    }

    fn has(rosters: &Rosters, tournament: Uuid, name: &str) -> bool {
        rosters.has_joined(tournament, &PlayerName::parse(name).unwrap(), &PlayerSurname::parse("Nowak").unwrap())
    }

    #[test]
    fn a_joined_player_is_known_in_that_tournament_only() {
        let rosters = Rosters::default();
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
        rosters.learn_event(&joined(first, "Anna"));
        assert!(has(&rosters, first, "Anna"));
        assert!(!has(&rosters, first, "Ben"));
        assert!(!has(&rosters, second, "Anna"));
    }

    #[test]
    fn past_its_capacity_the_tournament_learned_first_is_forgotten() {
        let rosters = Rosters::new(2);
        let ids = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
        for id in ids {
            rosters.learn_event(&joined(id, "Anna"));
        }
        rosters.learn_event(&joined(ids[1], "Ben"));
        assert_eq!(rosters.len(), 2);
        assert!(!has(&rosters, ids[0], "Anna"));
        assert!(has(&rosters, ids[1], "Anna") && has(&rosters, ids[1], "Ben") && has(&rosters, ids[2], "Anna"));
    }
}
