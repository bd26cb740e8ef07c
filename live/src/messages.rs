//! What live clients receive, encoded once per message for every connection: SignalR
//! invocation records for v1 clients and plain JSON for the v2 live socket. Also the wire
//! format exchanged between pods over the bus.
//!
//! Frames are of the transport's text type `F` (see [`Frame`]): each message is encoded to a
//! `String` once and turned into an `F` once, then every connection gets a cheap clone.

use crate::ports::{Click, ClickPublication, PresenceEntry};
use crate::Frame;
use domain::fixtures::Slot;
use domain::ports::RecordedEvent;
use domain::{Format, Goals, PlayerRef, TournamentEvent};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use uuid::Uuid;

/// The SignalR record separator that ends every JSON record.
pub const RECORD_SEPARATOR: char = '\u{1e}';

/// A message between pods on the bus channel of a tournament.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum WireMessage {
    /// A committed event, carrying its stream version.
    Event { event: RecordedEvent },
    /// The current team-click list (not versioned); `seq` orders the lists of a tournament, so
    /// a list older than one already delivered is dropped (0: unordered).
    Clicks {
        tournament_id: Uuid,
        clicks: Vec<Click>,
        #[serde(default)]
        seq: u64,
    },
    /// The players connected now (not versioned).
    Presence { tournament_id: Uuid, players: Vec<PresenceEntry> },
    /// The stream has reached at least `version`: sent by a pod whose publications did not
    /// reach the bus, once it can publish again, so that pods behind it read the store.
    Head { tournament_id: Uuid, version: u64 },
}

/// A bus payload: the message, which hub published it (a pod hears its own publications back
/// and has already delivered them locally) and when it was handed to the bus (ms since the Unix
/// epoch), from which receivers measure the pub/sub lag. Decoding a [`WireMessage`] ignores the
/// stamp.
#[derive(Debug, Serialize)]
pub struct Stamped<'a> {
    #[serde(flatten)]
    pub message: &'a WireMessage,
    pub origin: Uuid,
    #[serde(rename = "publishedAtMs")]
    pub published_at_ms: i64,
}

/// A bus payload read in one pass: its stamp (as far as its publisher stamped it) and the
/// message's parts, left as raw JSON until [`BusPayload::message`] reads them, so that a pod
/// skips its own publications without reading their clicks or event. The tagged
/// [`WireMessage`] would buffer the whole payload before reading it.
#[derive(Debug, Deserialize)]
pub struct BusPayload<'a> {
    kind: WireKind,
    pub origin: Option<Uuid>,
    #[serde(rename = "publishedAtMs")]
    pub published_at_ms: Option<i64>,
    tournament_id: Option<Uuid>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    clicks: Option<&'a RawValue>,
    #[serde(borrow)]
    players: Option<&'a RawValue>,
    seq: Option<u64>,
    version: Option<u64>,
}

/// The tag of a [`WireMessage`].
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
enum WireKind {
    Event,
    Clicks,
    Presence,
    Head,
}

impl BusPayload<'_> {
    /// The message, read from the parts it needs; fails as decoding the payload as a
    /// [`WireMessage`] would.
    pub fn message(&self) -> Result<WireMessage, serde_json::Error> {
        fn part<T: serde::de::DeserializeOwned>(raw: Option<&RawValue>, field: &'static str) -> serde_json::Result<T> {
            serde_json::from_str(raw.ok_or_else(|| serde::de::Error::missing_field(field))?.get())
        }
        fn given<T>(value: Option<T>, field: &'static str) -> serde_json::Result<T> {
            value.ok_or_else(|| serde::de::Error::missing_field(field))
        }
        Ok(match self.kind {
            WireKind::Event => WireMessage::Event { event: part(self.event, "event")? },
            WireKind::Clicks => WireMessage::Clicks {
                tournament_id: given(self.tournament_id, "tournament_id")?,
                clicks: part(self.clicks, "clicks")?,
                seq: self.seq.unwrap_or_default(),
            },
            WireKind::Presence => WireMessage::Presence {
                tournament_id: given(self.tournament_id, "tournament_id")?,
                players: part(self.players, "players")?,
            },
            WireKind::Head => WireMessage::Head {
                tournament_id: given(self.tournament_id, "tournament_id")?,
                version: given(self.version, "version")?,
            },
        })
    }
}

/// The bus publication of a click list of `tournament`, for a shared state that writes the
/// payload itself: the stamped [`WireMessage::Clicks`] with the list's clicks and sequence number
/// put in their places (see [`ClickPublication`]).
pub fn click_publication(tournament: Uuid, origin: Uuid, published_at_ms: i64) -> ClickPublication {
    ClickPublication {
        channel: channel(tournament),
        opening: format!(
            r#"{{"kind":"clicks","tournament_id":"{tournament}","origin":"{origin}","publishedAtMs":{published_at_ms},"clicks":["#
        ),
        middle: r#"],"seq":"#.to_owned(),
        closing: "}".to_owned(),
    }
}

/// Bus channel of a tournament.
pub fn channel(tournament: Uuid) -> String {
    format!("lct:tournament:{tournament}")
}

/// The tournament of a bus channel.
pub fn tournament_of(channel: &str) -> Option<Uuid> {
    channel.strip_prefix("lct:tournament:").and_then(|id| Uuid::parse_str(id).ok())
}

/// One message ready to send, in each protocol (`None` where the protocol has no such message).
#[derive(Debug, Clone)]
pub struct Encoded<F> {
    pub signalr: Option<F>,
    pub v2: F,
}

/// The v1 payload of an event, as existing clients know it.
fn v1_payload(tournament: Uuid, event: &TournamentEvent) -> Option<Value> {
    Some(match event {
        TournamentEvent::PlayerJoined { name, surname } => {
            json!({"type": "PlayerAssigned", "tournamentId": tournament, "name": name, "surname": surname})
        }
        TournamentEvent::TeamSelected { name, surname, team } => json!({
            "type": "TeamSelected", "tournamentId": tournament,
            "playerName": name, "playerSurname": surname, "team": team,
        }),
        TournamentEvent::TeamsDrawn { assignments } => json!({
            "type": "TeamsDrawn", "tournamentId": tournament,
            "drawnTeams": assignments.iter().map(|a| json!({"name": a.name, "surname": a.surname, "teamName": a.team})).collect::<Vec<_>>(),
        }),
        TournamentEvent::TournamentRenamed { name } => {
            json!({"type": "TournamentRenamed", "tournamentId": tournament, "tournamentName": name})
        }
        TournamentEvent::TournamentCreated { .. } => return None,
        TournamentEvent::FixturesScheduled { .. }
        | TournamentEvent::ResultRecorded { .. }
        | TournamentEvent::ResultCorrected { .. }
        | TournamentEvent::NightFinished => return fixtures_payload(tournament, event),
    })
}

/// The payloads of the matches after the draw, new to v1 clients (the original front end
/// ignores types it does not know). Players are named as everywhere in v1: name and surname.
fn fixtures_payload(tournament: Uuid, event: &TournamentEvent) -> Option<Value> {
    let side = |slot: &Slot| match slot {
        Slot::Player { name, surname } => (json!({"name": name, "surname": surname}), Value::Null),
        Slot::WinnerOf { number } => (Value::Null, json!(number)),
    };
    let score = |kind: &str, number: &u16, home: &PlayerRef, away: &PlayerRef, goals: (Goals, Goals), penalties| {
        json!({
            "type": kind, "tournamentId": tournament, "matchNumber": number,
            "home": {"name": home.name, "surname": home.surname},
            "away": {"name": away.name, "surname": away.surname},
            "homeGoals": goals.0, "awayGoals": goals.1, "penaltyWinner": penalties,
        })
    };
    Some(match event {
        TournamentEvent::FixturesScheduled { format, fixtures, .. } => {
            let (kind, legs) = match format {
                Format::League { legs } => ("league", json!(legs)),
                Format::Knockout => ("knockout", Value::Null),
            };
            let matches: Vec<Value> = fixtures
                .iter()
                .map(|f| {
                    let ((home, home_from), (away, away_from)) = (side(&f.home), side(&f.away));
                    json!({"number": f.number, "round": f.round, "leg": f.leg, "home": home, "away": away,
                           "homeFrom": home_from, "awayFrom": away_from})
                })
                .collect();
            json!({"type": "FixturesScheduled", "tournamentId": tournament, "format": kind, "legs": legs, "matches": matches})
        }
        TournamentEvent::ResultRecorded { number, home, away, home_goals, away_goals, penalty_winner, .. } => {
            score("ResultRecorded", number, home, away, (*home_goals, *away_goals), penalty_winner)
        }
        TournamentEvent::ResultCorrected { number, home, away, home_goals, away_goals, penalty_winner } => {
            score("ResultCorrected", number, home, away, (*home_goals, *away_goals), penalty_winner)
        }
        TournamentEvent::NightFinished => json!({"type": "NightFinished", "tournamentId": tournament}),
        _ => return None,
    })
}

/// `{"type":"TeamClicked","tournamentId":…,"clickedTeams":[{"team","name","surname"}…]}`,
/// written straight from the list (no intermediate JSON tree).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClicksPayload<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    tournament_id: Uuid,
    clicked_teams: Vec<ClickedTeam<'a>>,
}

#[derive(Serialize)]
struct ClickedTeam<'a> {
    team: &'a domain::Team,
    name: &'a str,
    surname: &'a str,
}

fn clicks_payload(tournament: Uuid, clicks: &[Click]) -> String {
    let payload = ClicksPayload {
        kind: "TeamClicked",
        tournament_id: tournament,
        clicked_teams: clicks
            .iter()
            .map(|c| ClickedTeam { team: &c.team, name: &c.name, surname: &c.surname })
            .collect(),
    };
    serde_json::to_string(&payload).expect("a click list encodes")
}

/// `{"type":1,"target":"<tournament>","arguments":["<payload as a JSON string>"]}␞`
pub fn signalr_invocation<F: Frame>(tournament: Uuid, payload: &Value) -> F {
    signalr_record(tournament, payload.to_string())
}

/// The invocation record of a payload already encoded.
fn signalr_record<F: Frame>(tournament: Uuid, payload: String) -> F {
    #[derive(Serialize)]
    struct Invocation<'a> {
        #[serde(rename = "type")]
        kind: u8,
        target: Uuid,
        arguments: [&'a str; 1],
    }
    let invocation = Invocation { kind: 1, target: tournament, arguments: [&payload] };
    let mut record = serde_json::to_string(&invocation).expect("an invocation encodes");
    record.push(RECORD_SEPARATOR);
    record.into()
}

pub fn encode_event<F: Frame>(event: &RecordedEvent) -> Encoded<F> {
    let id = event.stream_id;
    let v2 =
        json!({"type": event.event.event_type(), "tournamentId": id, "version": event.version, "event": event.event});
    Encoded { signalr: v1_payload(id, &event.event).map(|p| signalr_invocation(id, &p)), v2: v2.to_string().into() }
}

/// Presence goes to v2 clients only: v1 clients have no such message.
pub fn encode_presence<F: Frame>(tournament: Uuid, players: &[PresenceEntry]) -> Encoded<F> {
    let payload = json!({"type": "Presence", "tournamentId": tournament, "players": players});
    Encoded { signalr: None, v2: payload.to_string().into() }
}

/// The same payload for both protocols: it is encoded once, and the SignalR record carries
/// that text as its argument.
pub fn encode_clicks<F: Frame>(tournament: Uuid, clicks: &[Click]) -> Encoded<F> {
    let v2 = clicks_payload(tournament, clicks);
    let signalr = signalr_record(tournament, v2.clone());
    Encoded { signalr: Some(signalr), v2: v2.into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{PlayerName, PlayerSurname};

    #[test]
    fn a_click_publication_filled_in_is_the_stamped_click_list() {
        let (tournament, origin) = (Uuid::new_v4(), Uuid::new_v4());
        let clicks = vec![
            Click { team: domain::Team::Bayern, name: "Ann \"A\"".into(), surname: "Ó'Neil".into(), at_ms: 5 },
            Click { team: domain::Team::Psg, name: "Bob".into(), surname: "B".into(), at_ms: 7 },
        ];
        let message = WireMessage::Clicks { tournament_id: tournament, clicks: clicks.clone(), seq: 4_097 };
        let stamped = serde_json::to_value(Stamped { message: &message, origin, published_at_ms: 1_234 }).unwrap();

        let publication = click_publication(tournament, origin, 1_234);
        let encoded: Vec<String> = clicks.iter().map(|c| serde_json::to_string(c).unwrap()).collect();
        let payload = format!(
            "{}{}{}{}{}",
            publication.opening,
            encoded.join(","),
            publication.middle,
            4_097,
            publication.closing
        );
        assert_eq!(serde_json::from_str::<Value>(&payload).unwrap(), stamped, "{payload}");
        assert_eq!(publication.channel, channel(tournament));
        let empty = format!("{}{}{}{}", publication.opening, publication.middle, 1, publication.closing);
        let Ok(WireMessage::Clicks { clicks, seq: 1, .. }) = serde_json::from_str(&empty) else { panic!("{empty}") };
        assert!(clicks.is_empty());
    }

    #[test]
    fn a_joined_player_reaches_v1_clients_as_player_assigned() {
        let id = Uuid::nil();
        let event = RecordedEvent {
            stream_id: id,
            version: 2,
            schema_version: 1,
            recorded_at_ms: 0,
            request_id: None,
            event: TournamentEvent::PlayerJoined {
                name: PlayerName::parse("Anna").unwrap(),
                surname: PlayerSurname::parse("Nowak").unwrap(),
            },
        };
        let encoded: Encoded<String> = encode_event(&event);
        let record = encoded.signalr.unwrap();
        let record = record.as_str();
        assert!(record.ends_with('\u{1e}'));
        let frame: Value = serde_json::from_str(record.trim_end_matches('\u{1e}')).unwrap();
        assert_eq!(frame["type"], 1);
        assert_eq!(frame["target"], id.to_string());
        let payload: Value = serde_json::from_str(frame["arguments"][0].as_str().unwrap()).unwrap();
        assert_eq!(payload, json!({"type": "PlayerAssigned", "tournamentId": id, "name": "Anna", "surname": "Nowak"}));
        let v2: Value = serde_json::from_str(encoded.v2.as_str()).unwrap();
        assert_eq!(v2["version"], 2);
        assert_eq!(v2["type"], "PlayerJoined");
    }

    #[test]
    fn a_result_reaches_v1_clients_as_result_recorded_with_its_players_and_v2_clients_with_its_version() {
        let id = Uuid::new_v4();
        let player = |name: &str| PlayerRef {
            name: PlayerName::parse(name).unwrap(),
            surname: PlayerSurname::parse("Nowak").unwrap(),
        };
        let event = RecordedEvent {
            stream_id: id,
            version: 12,
            schema_version: 1,
            recorded_at_ms: 0,
            request_id: None,
            event: TournamentEvent::ResultRecorded {
                number: 3,
                home: player("Anna"),
                away: player("Ben"),
                home_goals: Goals::new(1).unwrap(),
                away_goals: Goals::new(1).unwrap(),
                penalty_winner: Some(domain::Side::Away),
                recorded_by: domain::Recorder::Organiser,
            },
        };
        let encoded: Encoded<String> = encode_event(&event);
        let record = encoded.signalr.unwrap();
        let frame: Value = serde_json::from_str(record.as_str().trim_end_matches('\u{1e}')).unwrap();
        let payload: Value = serde_json::from_str(frame["arguments"][0].as_str().unwrap()).unwrap();
        assert_eq!(
            payload,
            json!({"type": "ResultRecorded", "tournamentId": id, "matchNumber": 3,
                   "home": {"name": "Anna", "surname": "Nowak"}, "away": {"name": "Ben", "surname": "Nowak"},
                   "homeGoals": 1, "awayGoals": 1, "penaltyWinner": "away"})
        );
        let v2: Value = serde_json::from_str(encoded.v2.as_str()).unwrap();
        assert_eq!((v2["type"].as_str(), v2["version"].as_u64()), (Some("ResultRecorded"), Some(12)));
        assert_eq!(v2["event"]["recordedBy"], json!({"kind": "organiser"}));
        let finished = RecordedEvent { version: 13, event: TournamentEvent::NightFinished, ..event };
        let record = encode_event::<String>(&finished).signalr.unwrap();
        let frame: Value = serde_json::from_str(record.as_str().trim_end_matches('\u{1e}')).unwrap();
        let payload: Value = serde_json::from_str(frame["arguments"][0].as_str().unwrap()).unwrap();
        assert_eq!(payload, json!({"type": "NightFinished", "tournamentId": id}));
    }

    #[test]
    fn a_stamped_bus_payload_still_decodes_and_tells_who_published_it_and_when() {
        let message = WireMessage::Clicks { tournament_id: Uuid::nil(), clicks: Vec::new(), seq: 3 };
        let origin = Uuid::new_v4();
        let payload = serde_json::to_vec(&Stamped { message: &message, origin, published_at_ms: 1234 }).unwrap();
        let read: BusPayload = serde_json::from_slice(&payload).unwrap();
        assert_eq!((read.origin, read.published_at_ms), (Some(origin), Some(1234)));
        let decoded: WireMessage = serde_json::from_slice(&payload).unwrap();
        assert!(matches!(decoded, WireMessage::Clicks { tournament_id, seq: 3, .. } if tournament_id == Uuid::nil()));
        let unstamped = serde_json::to_vec(&message).unwrap();
        let read: BusPayload = serde_json::from_slice(&unstamped).unwrap();
        assert_eq!((read.origin, read.published_at_ms), (None, None), "unstamped payloads");
    }

    #[test]
    fn a_bus_payload_read_in_one_pass_is_the_message_its_publisher_stamped() {
        let tournament = Uuid::new_v4();
        let click = Click {
            team: domain::Team::parse("PSG").unwrap(),
            name: "Anna \"A\" \u{e9}".to_owned(),
            surname: "Nowak".to_owned(),
            at_ms: 7,
        };
        let player = PresenceEntry { player_id: Uuid::new_v4(), name: "Ben".to_owned(), surname: "Nowak".to_owned() };
        let event = RecordedEvent {
            stream_id: tournament,
            version: 4,
            schema_version: 1,
            recorded_at_ms: 9,
            request_id: None,
            event: TournamentEvent::PlayerJoined {
                name: PlayerName::parse("Anna").unwrap(),
                surname: PlayerSurname::parse("Nowak").unwrap(),
            },
        };
        let messages = [
            WireMessage::Event { event },
            WireMessage::Clicks { tournament_id: tournament, clicks: vec![click], seq: 1_765_000_000_000_001 },
            WireMessage::Presence { tournament_id: tournament, players: vec![player] },
            WireMessage::Head { tournament_id: tournament, version: 12 },
        ];
        for message in &messages {
            let payload = serde_json::to_vec(&Stamped { message, origin: Uuid::nil(), published_at_ms: 5 }).unwrap();
            let read: BusPayload = serde_json::from_slice(&payload).unwrap();
            let expected: WireMessage = serde_json::from_slice(&payload).unwrap();
            assert_eq!(serde_json::to_value(read.message().unwrap()).unwrap(), serde_json::to_value(expected).unwrap());
        }
        // A list published without a sequence number is unordered, as before.
        let unordered = format!(r#"{{"kind":"clicks","tournament_id":"{tournament}","clicks":[]}}"#);
        let read: BusPayload = serde_json::from_str(&unordered).unwrap();
        assert!(matches!(read.message().unwrap(), WireMessage::Clicks { seq: 0, .. }));
        // What the tagged message refuses is refused: an unknown kind, a missing part, a bad part.
        for refused in [
            r#"{"kind":"gossip","origin":null}"#.to_owned(),
            r#"{"kind":"event"}"#.to_owned(),
            format!(r#"{{"kind":"head","tournament_id":"{tournament}"}}"#),
            format!(r#"{{"kind":"clicks","tournament_id":"{tournament}","clicks":[{{"team":"PSG"}}]}}"#),
        ] {
            let tagged = serde_json::from_str::<WireMessage>(&refused);
            let one_pass = serde_json::from_str::<BusPayload>(&refused).and_then(|read| read.message());
            assert!(tagged.is_err() && one_pass.is_err(), "{refused}");
        }
    }

    #[test]
    fn a_click_list_reaches_both_protocols_as_the_same_payload() {
        let id = Uuid::new_v4();
        let click = |team: &str, name: &str| Click {
            team: domain::Team::parse(team).unwrap(),
            name: name.to_owned(),
            surname: "Nowak \"N\" \u{e9}".to_owned(),
            at_ms: 7,
        };
        let clicks = [click("PSG", "Anna"), click("Real Madrid", "Ben")];
        let encoded: Encoded<String> = encode_clicks(id, &clicks);
        let payload = json!({
            "type": "TeamClicked", "tournamentId": id,
            "clickedTeams": [
                {"team": "PSG", "name": "Anna", "surname": "Nowak \"N\" \u{e9}"},
                {"team": "Real Madrid", "name": "Ben", "surname": "Nowak \"N\" \u{e9}"},
            ],
        });
        let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap();
        assert_eq!(parse(&encoded.v2), payload);
        let signalr = encoded.signalr.unwrap();
        let record = parse(signalr.strip_suffix('\u{1e}').expect("a record separator"));
        assert_eq!(record, json!({"type": 1, "target": id, "arguments": [encoded.v2]}), "the same payload text");
        let empty: Encoded<String> = encode_clicks(id, &[]);
        assert_eq!(parse(&empty.v2), json!({"type": "TeamClicked", "tournamentId": id, "clickedTeams": []}));
    }

    #[test]
    fn channels_name_their_tournament() {
        let id = Uuid::new_v4();
        assert_eq!(tournament_of(&channel(id)), Some(id));
        assert_eq!(tournament_of("lct:other"), None);
    }
}
