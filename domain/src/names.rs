//! Validated values parsed at the edge: names and the player limit.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest accepted name, in characters, after trimming.
pub const MAX_NAME_CHARS: usize = 50;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} must be at most {MAX_NAME_CHARS} characters")]
    TooLong { field: &'static str },
    #[error("{field} must not contain control characters")]
    ControlCharacter { field: &'static str },
    #[error("player limit must be between {min} and {max}", min = PlayerLimit::MIN, max = PlayerLimit::MAX)]
    PlayerLimitOutOfRange,
}

fn parse_name(field: &'static str, raw: &str) -> Result<String, NameError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(NameError::Empty { field });
    }
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong { field });
    }
    if trimmed.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter { field });
    }
    Ok(trimmed.to_owned())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $type:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $type(String);

        impl $type {
            /// Trims and validates: non-empty, at most 50 characters, no control characters.
            pub fn parse(raw: &str) -> Result<Self, NameError> {
                parse_name($field, raw).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $type {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$type> for String {
            fn from(value: $type) -> String {
                value.0
            }
        }
    };
}

name_type!(
    /// The unique name of a tournament.
    TournamentName,
    "tournament name"
);
name_type!(
    /// A player's first name.
    PlayerName,
    "player name"
);
name_type!(
    /// A player's surname.
    PlayerSurname,
    "player surname"
);

/// How many players a tournament seats: 2 to 10, as there are 10 teams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct PlayerLimit(u8);

impl PlayerLimit {
    pub const MIN: u8 = 2;
    pub const MAX: u8 = 10;

    pub fn new(value: i64) -> Result<Self, NameError> {
        if (i64::from(Self::MIN)..=i64::from(Self::MAX)).contains(&value) {
            Ok(Self(value as u8))
        } else {
            Err(NameError::PlayerLimitOutOfRange)
        }
    }

    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

impl TryFrom<u8> for PlayerLimit {
    type Error = NameError;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Self::new(i64::from(value))
    }
}

impl From<PlayerLimit> for u8 {
    fn from(value: PlayerLimit) -> u8 {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed() {
        assert_eq!(PlayerName::parse("  Anna ").unwrap().as_str(), "Anna");
    }

    #[test]
    fn blank_names_are_refused() {
        assert_eq!(TournamentName::parse("   "), Err(NameError::Empty { field: "tournament name" }));
    }

    #[test]
    fn names_longer_than_fifty_characters_are_refused() {
        assert!(PlayerSurname::parse(&"ż".repeat(50)).is_ok());
        assert_eq!(PlayerSurname::parse(&"ż".repeat(51)), Err(NameError::TooLong { field: "player surname" }));
    }

    #[test]
    fn names_with_control_characters_are_refused() {
        assert_eq!(PlayerName::parse("An\u{7}na"), Err(NameError::ControlCharacter { field: "player name" }));
    }

    #[test]
    fn player_limit_is_two_to_ten() {
        assert!(PlayerLimit::new(1).is_err());
        assert!(PlayerLimit::new(2).is_ok());
        assert!(PlayerLimit::new(10).is_ok());
        assert!(PlayerLimit::new(11).is_err());
    }
}
