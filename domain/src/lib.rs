//! The pure model of lct: tournaments, their rules and events, the ports the application needs,
//! and the application services that load, decide, append and publish.
//!
//! Nothing here performs I/O, reads a clock or draws random numbers: adapters and callers pass
//! those in.
#![forbid(unsafe_code)]

pub mod fixtures;
pub mod names;
pub mod ports;
pub mod schedule;
pub mod service;
pub mod standings;
pub mod team;
pub mod tournament;

pub use fixtures::{
    FixtureError, FixtureInputError, Format, Goals, Legs, MatchNumber, Night, PlayerRef, Recorder, Score, Side,
};
pub use names::{NameError, PlayerLimit, PlayerName, PlayerSurname, TournamentName};
pub use standings::Standing;
pub use team::{Team, UnknownTeam};
pub use tournament::{Assignment, Command, DomainError, Player, Tournament, TournamentEvent, TournamentState};
