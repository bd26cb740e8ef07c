//! Schemas of the values the domain parses at the edge. The domain derives no OpenAPI schema,
//! so these state its rules in JSON Schema terms: a name is trimmed of the whitespace Rust's
//! `char::is_whitespace` knows, must then hold 1 to 50 characters, no control or bidirectional
//! control character, and at least one visible character; a player limit is 2 to 10 as a number
//! or a numeric string; a team is one of the ten. The unit tests hold each schema to the parser
//! it describes.

use domain::names::{is_visible, MAX_NAME_CHARS};
use domain::{PlayerLimit, Team};
use std::borrow::Cow;
use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// The characters `char::is_whitespace` accepts, which trimming removes.
const WHITESPACE: &[(char, char)] = &[
    ('\u{9}', '\u{d}'),
    (' ', ' '),
    ('\u{85}', '\u{85}'),
    ('\u{a0}', '\u{a0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200a}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202f}', '\u{202f}'),
    ('\u{205f}', '\u{205f}'),
    ('\u{3000}', '\u{3000}'),
];

/// The characters `char::is_control` accepts, refused inside a name.
const CONTROL: &[(char, char)] = &[('\u{0}', '\u{1f}'), ('\u{7f}', '\u{9f}')];

/// The Unicode `Bidi_Control` characters, refused inside a name.
const BIDI_CONTROL: &[(char, char)] =
    &[('\u{61c}', '\u{61c}'), ('\u{200e}', '\u{200f}'), ('\u{202a}', '\u{202e}'), ('\u{2066}', '\u{2069}')];

/// A regular expression character class of `ranges` (negated with `not`), in the syntax
/// ECMA-262 and Python share: `\uXXXX` escapes only, so no engine reads it differently.
fn class(not: bool, ranges: &[&[(char, char)]]) -> String {
    let mut out = String::from(if not { "[^" } else { "[" });
    for &(first, last) in ranges.iter().copied().flatten() {
        out.push_str(&format!("\\u{:04X}", u32::from(first)));
        if last != first {
            out.push_str(&format!("-\\u{:04X}", u32::from(last)));
        }
    }
    out.push(']');
    out
}

/// The rule of a name's length and characters as one pattern: optional whitespace, then 1 to
/// 50 characters without a control or bidirectional control character that neither start nor
/// end with whitespace, then optional whitespace.
pub fn name_pattern() -> String {
    let space = class(false, &[WHITESPACE]);
    let edge = class(true, &[CONTROL, BIDI_CONTROL, WHITESPACE]);
    let inner = class(true, &[CONTROL, BIDI_CONTROL]);
    format!("^{space}*{edge}(?:{inner}{{0,{between}}}{edge})?{space}*$", between = MAX_NAME_CHARS - 2)
}

/// The characters the domain counts as visible, as (first, last) ranges over every plane.
fn visible_ranges() -> Vec<(char, char)> {
    let mut ranges: Vec<(char, char)> = Vec::new();
    for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32).filter(|&c| is_visible(c)) {
        match ranges.last_mut() {
            Some((_, last)) if u32::from(*last) + 1 == u32::from(c) => *last = c,
            _ => ranges.push((c, c)),
        }
    }
    ranges
}

/// The other half of a name's rule, unanchored: it holds a visible character somewhere. Ranges
/// of the basic plane are written `\uXXXX`; those beyond it as the characters themselves, which
/// Python and ECMA-262 with the `u` flag (the one JSON Schema asks for) read alike.
pub fn visible_pattern() -> String {
    static PATTERN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATTERN
        .get_or_init(|| {
            let mut out = String::from("[");
            for (first, last) in visible_ranges() {
                for (i, c) in [first, last].into_iter().enumerate() {
                    if i == 1 && last == first {
                        break;
                    }
                    if i == 1 {
                        out.push('-');
                    }
                    if u32::from(c) <= 0xFFFF {
                        out.push_str(&format!("\\u{:04X}", u32::from(c)));
                    } else {
                        out.push(c);
                    }
                }
            }
            out.push(']');
            out
        })
        .clone()
}

/// A tournament name, player name or surname.
pub struct Name;

impl PartialSchema for Name {
    fn schema() -> RefOr<Schema> {
        let rule = ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .pattern(Some(name_pattern()))
            .description(Some(format!(
                "1 to {MAX_NAME_CHARS} characters (Unicode scalar values) once surrounding whitespace is \
                 trimmed; no control or bidirectional control characters; at least one visible \
                 character (a letter, number, punctuation mark or symbol: zero-width characters, \
                 joiners and combining marks alone are no name). Compared exactly after trimming."
            )))
            .examples(["Anna"]);
        let visible = ObjectBuilder::new().schema_type(Type::String).pattern(Some(visible_pattern()));
        AllOfBuilder::new().item(rule).item(visible).into()
    }
}

impl ToSchema for Name {}

/// The player limit as a request may send it.
pub struct PlayerLimitInput;

impl PartialSchema for PlayerLimitInput {
    fn schema() -> RefOr<Schema> {
        let number = ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(PlayerLimit::MIN))
            .maximum(Some(PlayerLimit::MAX));
        let space = class(false, &[WHITESPACE]);
        // What `str::parse::<i64>` reads after trimming, limited to the allowed values.
        let text = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!("^{space}*\\+?0*(?:[{}-9]|10){space}*$", PlayerLimit::MIN)));
        AnyOfBuilder::new()
            .item(number)
            .item(text)
            .description(Some(format!(
                "{} to {} seats, as a JSON number or a numeric string such as \"4\".",
                PlayerLimit::MIN,
                PlayerLimit::MAX
            )))
            .into()
    }
}

impl ToSchema for PlayerLimitInput {}

/// One of the ten teams, by its display name (the misspellings are part of the contract).
pub struct TeamName;

impl PartialSchema for TeamName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(Team::ALL.iter().map(|team| team.name())))
            .description(Some("One of the ten teams, spelled exactly."))
            .into()
    }
}

impl ToSchema for TeamName {}

/// The `api-version` header of v1.
pub struct ApiVersion;

impl PartialSchema for ApiVersion {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["1", "1.0"])).into()
    }
}

impl ToSchema for ApiVersion {}

/// A stream version: what `u64` holds.
pub struct StreamVersion;

impl PartialSchema for StreamVersion {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::Custom("uint64".into())))
            .minimum(Some(0))
            .maximum(Some(u64::MAX))
            .into()
    }
}

impl ToSchema for StreamVersion {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("StreamVersion")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{PlayerName, TournamentName};

    fn in_ranges(c: char, ranges: &[(char, char)]) -> bool {
        ranges.iter().any(|&(first, last)| (first..=last).contains(&c))
    }

    #[test]
    fn the_character_sets_are_the_ones_rust_trims_and_refuses() {
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            assert_eq!(in_ranges(c, WHITESPACE), c.is_whitespace(), "whitespace {:?}", c);
            assert_eq!(in_ranges(c, CONTROL), c.is_control(), "control {:?}", c);
            assert_eq!(in_ranges(c, BIDI_CONTROL), domain::names::is_bidi_control(c), "bidi {:?}", c);
        }
    }

    fn regex(pattern: &str) -> regex::Regex {
        regex::Regex::new(pattern).unwrap()
    }

    /// Every string of a varied corpus is a valid name by the pattern exactly when the domain
    /// parses it.
    #[test]
    fn the_name_pattern_accepts_what_the_domain_parses() {
        let pattern = regex(&name_pattern());
        let pieces = ["a", "Ż", " ", "\u{a0}", "\t", "\n", "\u{3000}", "\u{7}", "\u{85}", "\u{200b}", "🙂", "x y"];
        let mut corpus: Vec<String> = vec![String::new()];
        let pieces =
            [&pieces[..], &["\u{202e}", "\u{301}", "\u{3164}", "\u{200d}", "\u{1f468}\u{200d}\u{1f469}"]].concat();
        let visible = regex(&visible_pattern());
        for _ in 0..3 {
            let longer: Vec<String> =
                corpus.iter().flat_map(|s| pieces.iter().map(move |p| format!("{s}{p}"))).collect();
            corpus.extend(longer);
        }
        for n in [48, 49, 50, 51] {
            for (before, after) in [("", ""), (" ", ""), ("", "\n"), ("\u{3000}", " ")] {
                corpus.push(format!("{before}{}{after}", "ż".repeat(n)));
                corpus.push(format!("{before}a{}a{after}", " ".repeat(n.saturating_sub(2))));
            }
        }
        for text in &corpus {
            let valid = pattern.is_match(text) && visible.is_match(text);
            assert_eq!(valid, PlayerName::parse(text).is_ok(), "{text:?}");
            assert_eq!(valid, TournamentName::parse(text).is_ok(), "{text:?}");
        }
    }

    #[test]
    fn the_visible_pattern_holds_exactly_the_visible_characters() {
        let visible = regex(&format!("^{}$", visible_pattern()));
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32).step_by(7) {
            assert_eq!(visible.is_match(&c.to_string()), is_visible(c), "{:?}", c);
        }
    }

    #[test]
    fn the_player_limit_pattern_accepts_the_numeric_strings_the_server_reads() {
        let Schema::AnyOf(any_of) = (match PlayerLimitInput::schema() {
            RefOr::T(schema) => schema,
            RefOr::Ref(_) => unreachable!(),
        }) else {
            panic!("anyOf expected")
        };
        let RefOr::T(Schema::Object(text)) = &any_of.items[1] else { panic!("a string schema expected") };
        let pattern = regex(text.pattern.as_deref().unwrap());
        for raw in ["2", "10", " 4 ", "+5", "007", "\u{3000}9", "1", "11", "0", "-2", "4.0", "", "2 2", "1O", "٣"] {
            let read = raw.trim().parse::<i64>().ok().and_then(|n| PlayerLimit::new(n).ok());
            assert_eq!(pattern.is_match(raw), read.is_some(), "{raw:?}");
        }
    }

    #[test]
    fn the_team_enum_lists_the_ten_teams_in_order() {
        let RefOr::T(Schema::Object(object)) = TeamName::schema() else { panic!("an object schema expected") };
        let names: Vec<String> = object.enum_values.unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        assert_eq!(names, Team::ALL.map(|t| t.name().to_owned()));
    }
}
