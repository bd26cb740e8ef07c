//! Validated values parsed at the edge: names and the player limit.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

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
    /// Direction overrides, embeddings, isolates and marks let one name render as another.
    #[error("{field} must not contain bidirectional control characters")]
    BidiControl { field: &'static str },
    /// Only zero-width, joiner, filler or combining characters: the name would look blank.
    #[error("{field} must contain at least one visible character")]
    NoVisibleCharacter { field: &'static str },
    #[error("player limit must be between {min} and {max}", min = PlayerLimit::MIN, max = PlayerLimit::MAX)]
    PlayerLimitOutOfRange,
}

/// The Unicode `Bidi_Control` characters: the Arabic letter mark, the left-to-right and
/// right-to-left marks, the embeddings and overrides, and the isolates. Refused in names.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether `c` shows as something: a letter, number, punctuation mark or symbol. Separators,
/// controls, format characters (zero-width space, joiners, BOM), marks (combining accents,
/// variation selectors) and unassigned code points do not, nor do the letters and symbols that
/// render blank (the Hangul fillers, the blank Braille pattern). A name needs one.
pub fn is_visible(c: char) -> bool {
    let shows = matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Letter
            | GeneralCategoryGroup::Number
            | GeneralCategoryGroup::Punctuation
            | GeneralCategoryGroup::Symbol
    );
    shows && !matches!(c, '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' | '\u{2800}')
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
    if trimmed.chars().any(is_bidi_control) {
        return Err(NameError::BidiControl { field });
    }
    if !trimmed.chars().any(is_visible) {
        return Err(NameError::NoVisibleCharacter { field });
    }
    Ok(trimmed.to_owned())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $type:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(into = "String")]
        pub struct $type(String);

        impl $type {
            /// Trims and validates: non-empty, at most 50 characters, no control or
            /// bidirectional control characters, at least one visible character.
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

        /// Stored events and snapshots are read back as written: a name accepted under the
        /// rules of its day stays readable after the rules tighten. Input is parsed with
        /// [`Self::parse`].
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer).map(Self)
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
    fn names_with_only_invisible_characters_are_refused() {
        for invisible in [
            "\u{200B}",
            "\u{FEFF}",
            "\u{200C}\u{200D}\u{2060}",
            "\u{0301}\u{0308}",
            "\u{FE0F}",
            "\u{3164}\u{115F}",
            "\u{2800}",
            "\u{00A0}\u{200B}\u{3000}",
        ] {
            assert_eq!(
                PlayerName::parse(invisible),
                Err(NameError::NoVisibleCharacter { field: "player name" }),
                "{invisible:?}"
            );
        }
    }

    #[test]
    fn bidirectional_controls_are_refused() {
        for spoof in ["Anna\u{202E}kciN", "\u{2066}Ben\u{2069}", "Eve\u{200F}", "\u{061C}Ali", "x\u{202A}y\u{202C}"] {
            assert_eq!(
                TournamentName::parse(spoof),
                Err(NameError::BidiControl { field: "tournament name" }),
                "{spoof:?}"
            );
        }
        // An override with nothing visible breaks the bidi rule first: the answer names it.
        assert_eq!(PlayerSurname::parse("\u{202E}"), Err(NameError::BidiControl { field: "player surname" }));
    }

    #[test]
    fn emoji_sequences_with_joiners_and_marks_on_letters_are_names() {
        for name in [
            "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}",
            "\u{1F3F3}\u{FE0F}\u{200D}\u{1F308} night",
            "1\u{FE0F}\u{20E3}",
            "Zoe\u{0308}",
            "\u{0928}\u{092E}\u{0938}\u{094D}\u{0924}\u{0947}",
            "\u{0627}\u{0644}\u{0639}\u{0631}\u{0628}\u{064A}\u{0629}",
            "O'Brien-Smith",
        ] {
            assert_eq!(PlayerName::parse(name).map(|n| n.as_str().to_owned()), Ok(name.to_owned()), "{name:?}");
        }
    }

    #[test]
    fn stored_names_are_read_back_as_written() {
        // A name stored before the visible-character rule existed still loads.
        let stored: PlayerName = serde_json::from_str("\"\\u200b\"").unwrap();
        assert_eq!(stored.as_str(), "\u{200B}");
    }

    #[test]
    fn player_limit_is_two_to_ten() {
        assert!(PlayerLimit::new(1).is_err());
        assert!(PlayerLimit::new(2).is_ok());
        assert!(PlayerLimit::new(10).is_ok());
        assert!(PlayerLimit::new(11).is_err());
    }
}
