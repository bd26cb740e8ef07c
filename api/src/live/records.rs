//! Reading and writing the JSON hub protocol's records on the hot path of a click, without a
//! JSON tree: the record is scanned once for the four fields the hub reads, the arguments are
//! kept as raw text until the method reads them, and completions are written straight out.
//!
//! What a client sees is what a JSON tree would give it: a field of an unexpected type reads as
//! absent, of a field given twice the last counts, and a record that is JSON but not an object
//! is ignored.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;

/// The fields of a record the hub reads.
#[derive(Debug, Default)]
pub(super) struct Record<'a> {
    /// `type`, when it is a non-negative integer.
    pub kind: Option<u64>,
    /// `invocationId`, when it is a string.
    pub invocation_id: Option<String>,
    /// `target`, when it is a string.
    pub target: Option<String>,
    /// `arguments` as sent, not read yet.
    pub arguments: Option<&'a RawValue>,
}

impl<'a> Record<'a> {
    /// Reads a record; `None` when it is not JSON.
    pub fn parse(record: &'a str) -> Option<Record<'a>> {
        if !record.trim_start().starts_with('{') {
            return serde_json::from_str::<IgnoredAny>(record).ok().map(|_| Record::default());
        }
        let fields: RawFields<'a> = serde_json::from_str(record).ok()?;
        fn read<T: de::DeserializeOwned>(raw: Option<&RawValue>) -> Option<T> {
            raw.and_then(|raw| serde_json::from_str(raw.get()).ok())
        }
        Some(Record {
            kind: read(fields.kind),
            invocation_id: read(fields.invocation_id),
            target: read(fields.target),
            arguments: fields.arguments,
        })
    }
}

/// The four fields as raw JSON text, the last of each if given twice.
#[derive(Default)]
struct RawFields<'a> {
    kind: Option<&'a RawValue>,
    invocation_id: Option<&'a RawValue>,
    target: Option<&'a RawValue>,
    arguments: Option<&'a RawValue>,
}

impl<'de> Deserialize<'de> for RawFields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = RawFields<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a hub protocol record")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = RawFields::default();
                while let Some(key) = map.next_key::<Key>()? {
                    let slot = match key {
                        Key::Type => &mut fields.kind,
                        Key::InvocationId => &mut fields.invocation_id,
                        Key::Target => &mut fields.target,
                        Key::Arguments => &mut fields.arguments,
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value()?);
                }
                Ok(fields)
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// A key of a record, matched without keeping it.
enum Key {
    Type,
    InvocationId,
    Target,
    Arguments,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Keys;
        impl Visitor<'_> for Keys {
            type Value = Key;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "type" => Key::Type,
                    "invocationId" => Key::InvocationId,
                    "target" => Key::Target,
                    "arguments" => Key::Arguments,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_str(Keys)
    }
}

/// The argument of `TeamClicked`: an object whose keys are matched in any case.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ClickArgs {
    pub team: String,
    pub name: String,
    pub surname: String,
}

impl ClickArgs {
    /// Reads the invocation's arguments; the error is the completion's sentence.
    pub fn from_arguments(arguments: Option<&RawValue>) -> Result<ClickArgs, String> {
        const ONE: &str = "TeamClicked expects one argument.";
        let arguments = arguments.ok_or(ONE)?;
        let arguments: Vec<&RawValue> = serde_json::from_str(arguments.get()).map_err(|_| ONE)?;
        let first = arguments.first().ok_or(ONE)?;
        let loose: LooseArgs =
            serde_json::from_str(first.get()).map_err(|_| "TeamClicked expects an object argument.".to_owned())?;
        let field = |value: Option<Value>, name: &str| match value {
            None => Err(format!("Invalid TeamClicked argument: missing field `{name}`.")),
            Some(value) => serde_json::from_value::<String>(value)
                .map_err(|error| format!("Invalid TeamClicked argument: {error}.")),
        };
        Ok(ClickArgs {
            team: field(loose.team, "team")?,
            name: field(loose.name, "name")?,
            surname: field(loose.surname, "surname")?,
        })
    }
}

/// The three fields of the argument by their lower-cased key, whatever their type.
#[derive(Default)]
struct LooseArgs {
    team: Option<Value>,
    name: Option<Value>,
    surname: Option<Value>,
}

impl<'de> Deserialize<'de> for LooseArgs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Args;
        impl<'de> Visitor<'de> for Args {
            type Value = LooseArgs;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LooseArgs, A::Error> {
                let mut args = LooseArgs::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let slot = match key.to_lowercase().as_str() {
                        "team" => &mut args.team,
                        "name" => &mut args.name,
                        "surname" => &mut args.surname,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value()?);
                }
                Ok(args)
            }
        }
        deserializer.deserialize_map(Args)
    }
}

/// `{"type":3,"invocationId":…}` or with `"error":…`, without the record separator.
pub(super) fn completion_json(invocation_id: &str, error: Option<&str>) -> String {
    #[derive(Serialize)]
    struct Completion<'a> {
        #[serde(rename = "type")]
        kind: u8,
        #[serde(rename = "invocationId")]
        invocation_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    }
    serde_json::to_string(&Completion { kind: 3, invocation_id, error }).expect("a completion encodes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `type`, `invocationId`, `target` and `arguments` as read.
    type Fields = (Option<u64>, Option<String>, Option<String>, Option<Value>);

    /// What the hub read of a record before, from its JSON tree.
    fn from_tree(record: &str) -> Option<Fields> {
        let value: Value = serde_json::from_str(record).ok()?;
        let string = |field: &str| value[field].as_str().map(str::to_owned);
        let arguments = value.get("arguments").cloned();
        Some((value["type"].as_u64(), string("invocationId"), string("target"), arguments))
    }

    fn read(record: &str) -> Option<Fields> {
        let record = Record::parse(record)?;
        let arguments = record.arguments.map(|raw| serde_json::from_str(raw.get()).unwrap());
        Some((record.kind, record.invocation_id, record.target, arguments))
    }

    #[test]
    fn records_read_as_their_json_tree_reads_them() {
        let records = [
            r#"{"type":1,"invocationId":"7","target":"TeamClicked","arguments":[{"team":"PSG"}]}"#,
            r#"{"type":1,"target":"TeamClicked","arguments":[]}"#,
            r#" { "arguments" : [1, {"a": [true]}], "type" : 1 , "extra": {"type": 7} } "#,
            r#"{"type":6}"#,
            r#"{"type":7,"error":"bye"}"#,
            r#"{"type":"1","invocationId":7,"target":["TeamClicked"]}"#,
            r#"{"type":1.0}"#,
            r#"{"type":-1}"#,
            r#"{"type":18446744073709551616}"#,
            r#"{"type":1,"type":7}"#,
            r#"{"invocationId":"a\"b\u00e9","target":"Team\u0043licked"}"#,
            r#"{"type":null,"invocationId":null}"#,
            "{}",
            "5",
            "[1,2]",
            "\"text\"",
            "null",
            "{",
            "{\"type\":1",
            "{\"type\":1}}",
            "",
            "nonsense",
        ];
        for record in records {
            assert_eq!(read(record), from_tree(record), "{record}");
        }
    }

    fn args(arguments: Value) -> Result<ClickArgs, String> {
        let text = arguments.to_string();
        let raw: &RawValue = serde_json::from_str(&text).unwrap();
        ClickArgs::from_arguments(Some(raw))
    }

    #[test]
    fn click_arguments_are_read_in_any_case_and_refused_with_a_sentence() {
        let expected = ClickArgs { team: "PSG".into(), name: "Anna".into(), surname: "Nowak".into() };
        let ok = json!([{"groupKey": "x", "Team": "PSG", "NAME": "Anna", "surName": "Nowak"}]);
        assert_eq!(args(ok), Ok(expected));
        let twice = json!([{"team": "Chelsea", "name": "Anna", "surname": "Nowak", "TEAM": "PSG"}]);
        assert_eq!(args(twice).unwrap().team, "PSG", "the last of a repeated key counts");
        assert_eq!(ClickArgs::from_arguments(None), Err("TeamClicked expects one argument.".into()));
        for one in [json!([]), json!({"team": "PSG"}), json!("PSG"), json!(null)] {
            assert_eq!(args(one.clone()), Err("TeamClicked expects one argument.".into()), "{one}");
        }
        for object in [json!(["PSG"]), json!([["PSG"]]), json!([null])] {
            assert_eq!(args(object.clone()), Err("TeamClicked expects an object argument.".into()), "{object}");
        }
        assert_eq!(
            args(json!([{"name": "Anna", "surname": "Nowak"}])),
            Err("Invalid TeamClicked argument: missing field `team`.".into())
        );
        assert_eq!(
            args(json!([{"team": 5, "name": "Anna", "surname": "Nowak"}])),
            Err("Invalid TeamClicked argument: invalid type: integer `5`, expected a string.".into())
        );
    }

    #[test]
    fn completions_are_the_records_a_json_tree_would_give() {
        let id = "i\"d\u{e9}";
        let parse = |text: String| serde_json::from_str::<Value>(&text).unwrap();
        assert_eq!(parse(completion_json(id, None)), json!({"type": 3, "invocationId": id}));
        assert_eq!(
            parse(completion_json(id, Some("No \"way\"."))),
            json!({"type": 3, "invocationId": id, "error": "No \"way\"."})
        );
    }
}
