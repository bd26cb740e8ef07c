//! How events, claims and snapshots are laid out as MongoDB documents.
//!
//! - `events`: one document per event: `streamId` (UUID, binary subtype 4), `version` (int64,
//!   from 1), `type`, `schemaVersion`, `recordedAt` (BSON date), `requestId` (UUID or null) and
//!   `data` (the event's fields). Unique on `{streamId, version}`.
//! - `claims`: one document per unique value held by a stream: `scope`, `value`, `owner`
//!   (stream id). Unique on `{scope, value}`.
//! - `snapshots`: one document per stream: `_id` (stream id), `version`, `schemaVersion` (of the
//!   state's shape, [`SNAPSHOT_SCHEMA_VERSION`]), `state`.

use domain::ports::{RecordedEvent, Snapshot, StoreError, UniqueKey, SNAPSHOT_SCHEMA_VERSION};
use domain::{TournamentEvent, TournamentState};
use mongodb::bson::{self, doc, spec::BinarySubtype, Binary, Bson, DateTime, Document};
use uuid::Uuid;

pub const EVENTS: &str = "events";
pub const CLAIMS: &str = "claims";
pub const SNAPSHOTS: &str = "snapshots";

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// A UUID as BSON binary subtype 4, the standard representation.
pub fn uuid_bson(id: Uuid) -> Bson {
    Bson::Binary(Binary { subtype: BinarySubtype::Uuid, bytes: id.as_bytes().to_vec() })
}

fn uuid_from(value: &Bson, field: &str) -> Result<Uuid, StoreError> {
    match value {
        Bson::Binary(Binary { subtype: BinarySubtype::Uuid, bytes }) => {
            Uuid::from_slice(bytes).map_err(|e| corrupt(format!("{field}: {e}")))
        }
        other => Err(corrupt(format!("{field} is not a UUID: {other}"))),
    }
}

fn field<'a>(doc: &'a Document, name: &str) -> Result<&'a Bson, StoreError> {
    doc.get(name).ok_or_else(|| corrupt(format!("missing field {name}")))
}

fn version_from(doc: &Document) -> Result<u64, StoreError> {
    let version = doc.get_i64("version").map_err(|e| corrupt(format!("version: {e}")))?;
    u64::try_from(version).map_err(|_| corrupt(format!("negative version {version}")))
}

pub fn version_bson(version: u64) -> Result<Bson, StoreError> {
    i64::try_from(version).map(Bson::Int64).map_err(|_| corrupt(format!("version {version} is out of range")))
}

/// The filter selecting one stream's events.
pub fn stream_filter(stream_id: Uuid) -> Document {
    doc! { "streamId": uuid_bson(stream_id) }
}

/// The document of one recorded event.
pub fn event_document(event: &RecordedEvent) -> Result<Document, StoreError> {
    let mut data = bson::to_document(&event.event).map_err(|e| corrupt(format!("encoding an event: {e}")))?;
    // The serde tag becomes the top-level `type`, so `data` holds only the event's fields.
    data.remove("type");
    Ok(doc! {
        "streamId": uuid_bson(event.stream_id),
        "version": version_bson(event.version)?,
        "type": event.event.event_type(),
        "schemaVersion": i64::from(event.schema_version),
        "recordedAt": DateTime::from_millis(event.recorded_at_ms),
        "requestId": event.request_id.map_or(Bson::Null, uuid_bson),
        "data": data,
    })
}

/// The recorded event a document holds.
pub fn recorded_event(doc: &Document) -> Result<RecordedEvent, StoreError> {
    let event_type = doc.get_str("type").map_err(|e| corrupt(format!("type: {e}")))?;
    let mut data = doc.get_document("data").map_err(|e| corrupt(format!("data: {e}")))?.clone();
    data.insert("type", event_type);
    let event: TournamentEvent =
        bson::from_document(data).map_err(|e| corrupt(format!("event of type {event_type}: {e}")))?;
    let schema_version = match field(doc, "schemaVersion")? {
        Bson::Int32(v) => i64::from(*v),
        Bson::Int64(v) => *v,
        other => return Err(corrupt(format!("schemaVersion is not an integer: {other}"))),
    };
    let request_id = match field(doc, "requestId")? {
        Bson::Null => None,
        value => Some(uuid_from(value, "requestId")?),
    };
    Ok(RecordedEvent {
        stream_id: uuid_from(field(doc, "streamId")?, "streamId")?,
        version: version_from(doc)?,
        schema_version: u32::try_from(schema_version).map_err(|_| corrupt("schemaVersion is out of range"))?,
        recorded_at_ms: doc
            .get_datetime("recordedAt")
            .map_err(|e| corrupt(format!("recordedAt: {e}")))?
            .timestamp_millis(),
        request_id,
        event,
    })
}

/// The `{_id: streamId, version}` pair of a stream-version aggregation.
pub fn stream_version(doc: &Document) -> Result<(Uuid, u64), StoreError> {
    Ok((uuid_from(field(doc, "_id")?, "_id")?, version_from(doc)?))
}

/// The filter selecting the claim of one unique value, whoever holds it.
pub fn claim_filter(key: &UniqueKey) -> Document {
    doc! { "scope": &key.scope, "value": &key.value }
}

/// The claim of `key` by stream `owner`.
pub fn claim_document(key: &UniqueKey, owner: Uuid) -> Document {
    doc! { "scope": &key.scope, "value": &key.value, "owner": uuid_bson(owner) }
}

/// The stream holding a claim.
pub fn claim_owner(doc: &Document) -> Result<Uuid, StoreError> {
    uuid_from(field(doc, "owner")?, "owner")
}

/// The stored form of a snapshot; `version` is kept beside the state so that an update can
/// keep the newer one, and `schemaVersion` so that a state of another shape is not misread.
pub fn snapshot_document(snapshot: &Snapshot) -> Result<Document, StoreError> {
    let state = bson::to_document(&snapshot.state).map_err(|e| corrupt(format!("encoding a snapshot: {e}")))?;
    Ok(doc! {
        "_id": uuid_bson(snapshot.stream_id),
        "version": version_bson(snapshot.state.version)?,
        "schemaVersion": i64::from(SNAPSHOT_SCHEMA_VERSION),
        "state": state,
    })
}

/// The snapshot a document holds, or why it cannot be used (another schema version, or a
/// state that does not decode): such a snapshot is ignored and the stream replayed.
pub fn snapshot_from_document(doc: &Document) -> Result<Snapshot, String> {
    let schema = match doc.get("schemaVersion") {
        Some(Bson::Int32(v)) => i64::from(*v),
        Some(Bson::Int64(v)) => *v,
        Some(other) => return Err(format!("schemaVersion is not an integer: {other}")),
        None => return Err("it has no schemaVersion".into()),
    };
    if schema != i64::from(SNAPSHOT_SCHEMA_VERSION) {
        return Err(format!("its schema version is {schema}, this version reads {SNAPSHOT_SCHEMA_VERSION}"));
    }
    let state = doc.get_document("state").map_err(|e| format!("state: {e}"))?.clone();
    let state: TournamentState = bson::from_document(state).map_err(|e| format!("state: {e}"))?;
    let stream_id = uuid_from(field(doc, "_id").map_err(|e| e.to_string())?, "_id").map_err(|e| e.to_string())?;
    Ok(Snapshot { stream_id, state })
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ports::SCHEMA_VERSION;
    use domain::{Assignment, PlayerLimit, PlayerName, PlayerSurname, Team, TournamentName};

    fn player(name: &str) -> (PlayerName, PlayerSurname) {
        (PlayerName::parse(name).unwrap(), PlayerSurname::parse("Nowak").unwrap())
    }

    fn every_event() -> Vec<TournamentEvent> {
        let (anna, nowak) = player("Anna");
        vec![
            TournamentEvent::TournamentCreated {
                name: TournamentName::parse("Friday night").unwrap(),
                player_limit: PlayerLimit::new(4).unwrap(),
            },
            TournamentEvent::TournamentRenamed { name: TournamentName::parse("Friday: finals ü").unwrap() },
            TournamentEvent::PlayerJoined { name: anna.clone(), surname: nowak.clone() },
            TournamentEvent::TeamSelected { name: anna.clone(), surname: nowak.clone(), team: Team::ManchasterCity },
            TournamentEvent::TeamsDrawn {
                assignments: vec![Assignment { name: anna, surname: nowak, team: Team::MachesterUnited }],
            },
        ]
    }

    fn recorded(version: u64, event: TournamentEvent, request_id: Option<Uuid>) -> RecordedEvent {
        RecordedEvent {
            stream_id: Uuid::new_v4(),
            version,
            schema_version: SCHEMA_VERSION,
            recorded_at_ms: 1_700_000_000_123,
            request_id,
            event,
        }
    }

    #[test]
    fn every_event_type_round_trips_through_its_document() {
        for (i, event) in every_event().into_iter().enumerate() {
            let original = recorded(i as u64 + 1, event, (i % 2 == 0).then(Uuid::new_v4));
            let document = event_document(&original).unwrap();
            assert_eq!(recorded_event(&document).unwrap(), original);
        }
    }

    #[test]
    fn an_event_document_has_the_documented_shape() {
        let request_id = Uuid::new_v4();
        let original = recorded(7, every_event().remove(3), Some(request_id));
        let document = event_document(&original).unwrap();
        assert_eq!(document.get("streamId"), Some(&uuid_bson(original.stream_id)));
        assert_eq!(document.get("version"), Some(&Bson::Int64(7)));
        assert_eq!(document.get_str("type").unwrap(), "TeamSelected");
        assert_eq!(document.get("schemaVersion"), Some(&Bson::Int64(i64::from(SCHEMA_VERSION))));
        assert_eq!(document.get_datetime("recordedAt").unwrap().timestamp_millis(), 1_700_000_000_123);
        assert_eq!(document.get("requestId"), Some(&uuid_bson(request_id)));
        let data = document.get_document("data").unwrap();
        assert_eq!(data, &doc! { "name": "Anna", "surname": "Nowak", "team": "Manchaster City" });
        match document.get("streamId") {
            Some(Bson::Binary(binary)) => assert_eq!(binary.subtype, BinarySubtype::Uuid),
            other => panic!("streamId should be a UUID, got {other:?}"),
        }
        let without_request = event_document(&recorded(1, every_event().remove(0), None)).unwrap();
        assert_eq!(without_request.get("requestId"), Some(&Bson::Null));
    }

    #[test]
    fn documents_that_do_not_hold_an_event_are_corrupt() {
        let good = event_document(&recorded(1, every_event().remove(0), None)).unwrap();
        let mut unknown_type = good.clone();
        unknown_type.insert("type", "TournamentExploded");
        let mut negative = good.clone();
        negative.insert("version", -1_i64);
        let mut string_id = good.clone();
        string_id.insert("streamId", Uuid::new_v4().to_string());
        let mut bad_limit = good.clone();
        bad_limit.insert("data", doc! { "name": "X", "playerLimit": 11 });
        for document in [unknown_type, negative, string_id, bad_limit, Document::new()] {
            assert!(matches!(recorded_event(&document), Err(StoreError::Corrupt(_))), "{document}");
        }
    }

    #[test]
    fn snapshots_round_trip_with_their_version_beside_the_state() {
        let events = every_event();
        let snapshot = Snapshot { stream_id: Uuid::new_v4(), state: TournamentState::default().replay(&events) };
        let document = snapshot_document(&snapshot).unwrap();
        assert_eq!(document.get("_id"), Some(&uuid_bson(snapshot.stream_id)));
        assert_eq!(document.get("version"), Some(&Bson::Int64(events.len() as i64)));
        assert_eq!(document.get("schemaVersion"), Some(&Bson::Int64(i64::from(SNAPSHOT_SCHEMA_VERSION))));
        assert_eq!(snapshot_from_document(&document).unwrap(), snapshot);
        let empty = Snapshot { stream_id: Uuid::new_v4(), state: TournamentState::default() };
        assert_eq!(snapshot_from_document(&snapshot_document(&empty).unwrap()).unwrap(), empty);
    }

    /// A knockout of three played to the end through the aggregate: a schedule with a bye and a
    /// later match fed by a winner, a result on penalties by a player, a correction, the finish.
    fn a_night_after_the_draw() -> Vec<TournamentEvent> {
        use domain::{Command, Format, Goals, Recorder, Score, Side};
        let names = ["Anna", "Ben", "Cleo"];
        let mut events = vec![TournamentEvent::TournamentCreated {
            name: TournamentName::parse("Knockout night").unwrap(),
            player_limit: PlayerLimit::new(3).unwrap(),
        }];
        for (i, name) in names.iter().enumerate() {
            let (name, surname) = player(name);
            events.push(TournamentEvent::PlayerJoined { name: name.clone(), surname: surname.clone() });
            events.push(TournamentEvent::TeamSelected { name, surname, team: Team::ALL[i] });
        }
        let then = |events: &mut Vec<TournamentEvent>, command: Command| {
            let decided = TournamentState::default().replay(events.iter()).decide(command).unwrap();
            events.extend(decided);
        };
        then(&mut events, Command::DrawTeams { seed: 5 });
        then(&mut events, Command::ScheduleFixtures { format: Format::Knockout, players_may_record: true, seed: 3 });
        let goals = |n| Goals::new(n).unwrap();
        let level = Score { home: goals(2), away: goals(2), penalty_winner: Some(Side::Away) };
        let night = TournamentState::default().replay(&events).tournament.unwrap().night.unwrap();
        let home = night.sides(1).0.unwrap();
        let by = Recorder::Player { name: home.name, surname: home.surname };
        then(&mut events, Command::RecordResult { number: 1, score: level, by });
        let won = Score { home: goals(3), away: goals(0), penalty_winner: None };
        then(&mut events, Command::RecordResult { number: 1, score: won, by: Recorder::Organiser });
        then(&mut events, Command::RecordResult { number: 2, score: won, by: Recorder::Organiser });
        then(&mut events, Command::FinishNight);
        events
    }

    #[test]
    fn the_matches_after_the_draw_round_trip_through_documents_and_snapshots() {
        let events = a_night_after_the_draw();
        let kinds: Vec<_> = events.iter().skip(8).map(TournamentEvent::event_type).collect();
        assert_eq!(
            kinds,
            ["FixturesScheduled", "ResultRecorded", "ResultCorrected", "ResultRecorded", "NightFinished"]
        );
        for (i, event) in events.iter().enumerate() {
            let original = recorded(i as u64 + 1, event.clone(), None);
            assert_eq!(recorded_event(&event_document(&original).unwrap()).unwrap(), original);
        }
        let finished = recorded(13, events.last().unwrap().clone(), None);
        assert_eq!(event_document(&finished).unwrap().get_document("data").unwrap(), &Document::new());
        let state = TournamentState::default().replay(&events);
        assert!(state.tournament.as_ref().unwrap().night.as_ref().unwrap().finished);
        let snapshot = Snapshot { stream_id: Uuid::new_v4(), state };
        assert_eq!(snapshot_from_document(&snapshot_document(&snapshot).unwrap()).unwrap(), snapshot);
    }

    #[test]
    fn a_snapshot_of_another_schema_version_or_that_does_not_decode_is_refused_with_the_reason() {
        let snapshot = Snapshot { stream_id: Uuid::new_v4(), state: TournamentState::default().replay(&every_event()) };
        let good = snapshot_document(&snapshot).unwrap();
        let mut newer = good.clone();
        newer.insert("schemaVersion", i64::from(SNAPSHOT_SCHEMA_VERSION) + 1);
        assert!(snapshot_from_document(&newer).unwrap_err().contains("schema version"));
        let mut unversioned = good.clone();
        unversioned.remove("schemaVersion");
        assert!(snapshot_from_document(&unversioned).is_err());
        let mut garbled = good.clone();
        garbled.insert("state", doc! { "version": "seven", "tournament": [1, 2] });
        assert!(snapshot_from_document(&garbled).unwrap_err().starts_with("state"));
    }

    #[test]
    fn claims_name_their_scope_value_and_owner() {
        let key = UniqueKey::tournament_name("Friday night");
        let owner = Uuid::new_v4();
        let document = claim_document(&key, owner);
        assert_eq!(claim_owner(&document).unwrap(), owner);
        assert_eq!(claim_filter(&key), doc! { "scope": "tournament-name", "value": "Friday night" });
        assert!(document.iter().all(|(k, _)| ["scope", "value", "owner"].contains(&k.as_str())));
    }
}
