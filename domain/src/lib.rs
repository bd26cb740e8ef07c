//! The pure model of lct: tournaments, their rules and events, the ports the application needs,
//! and the application services that load, decide, append and publish.
//!
//! Nothing here performs I/O, reads a clock or draws random numbers: adapters and callers pass
//! those in.
#![forbid(unsafe_code)]

pub mod names;
pub mod ports;
pub mod service;
pub mod team;
pub mod tournament;

pub use names::{NameError, PlayerLimit, PlayerName, PlayerSurname, TournamentName};
pub use team::{Team, UnknownTeam};
pub use tournament::{Assignment, Command, DomainError, Player, Tournament, TournamentEvent, TournamentState};
