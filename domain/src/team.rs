//! The ten teams players can pick, spelled exactly as existing clients expect.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One of the ten football teams of the game.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Team {
    Bayern,
    Psg,
    ManchasterCity,
    Liverpool,
    MachesterUnited,
    RealMadrid,
    Chelsea,
    AtleticoMadrid,
    Juventus,
    Barcelona,
}

/// The given text names none of the ten teams.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not one of the teams")]
pub struct UnknownTeam(pub String);

impl Team {
    /// All teams, in the order clients list them.
    pub const ALL: [Team; 10] = [
        Team::Bayern,
        Team::Psg,
        Team::ManchasterCity,
        Team::Liverpool,
        Team::MachesterUnited,
        Team::RealMadrid,
        Team::Chelsea,
        Team::AtleticoMadrid,
        Team::Juventus,
        Team::Barcelona,
    ];

    /// The display name, part of the contract with existing clients (misspellings included).
    pub fn name(self) -> &'static str {
        match self {
            Team::Bayern => "Bayern",
            Team::Psg => "PSG",
            Team::ManchasterCity => "Manchaster City",
            Team::Liverpool => "Liverpool",
            Team::MachesterUnited => "Machester United",
            Team::RealMadrid => "Real Madrid",
            Team::Chelsea => "Chelsea",
            Team::AtleticoMadrid => "Atletico Madrid",
            Team::Juventus => "Juventus",
            Team::Barcelona => "Barcelona",
        }
    }

    /// Parses a team by its exact display name (surrounding whitespace ignored).
    pub fn parse(raw: &str) -> Result<Team, UnknownTeam> {
        let wanted = raw.trim();
        Team::ALL
            .into_iter()
            .find(|team| team.name() == wanted)
            .ok_or_else(|| UnknownTeam(raw.chars().take(60).collect()))
    }
}

impl fmt::Display for Team {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<String> for Team {
    type Error = UnknownTeam;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Team::parse(&value)
    }
}

impl From<Team> for String {
    fn from(team: Team) -> String {
        team.name().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ten_teams_are_listed_in_contract_order_and_spelling() {
        let names: Vec<_> = Team::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(
            names,
            [
                "Bayern",
                "PSG",
                "Manchaster City",
                "Liverpool",
                "Machester United",
                "Real Madrid",
                "Chelsea",
                "Atletico Madrid",
                "Juventus",
                "Barcelona"
            ]
        );
    }

    #[test]
    fn a_team_is_parsed_by_its_exact_name() {
        assert_eq!(Team::parse(" PSG "), Ok(Team::Psg));
        assert!(Team::parse("psg").is_err());
        assert!(Team::parse("Manchester City").is_err());
        assert!(Team::parse("").is_err());
    }
}
