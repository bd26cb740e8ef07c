//! After the draw, end to end against the real binary: scheduling a league and a knockout,
//! recording and correcting results, who may record them, idempotency keys, the table, finishing
//! the night, and every result reaching live connections (v2 with its version, SignalR as an
//! additive payload).

mod common;

use common::v2::{problem, refused, Drawn, V2};
use common::ws::{Live, SignalR};
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const FOUR: [(&str, &str); 4] = [("Anna", "Nowak"), ("Ben", "Okafor"), ("Chloé", "Durand"), ("Dev", "Patel")];
const FIVE: [(&str, &str); 5] =
    [("Anna", "Nowak"), ("Ben", "Okafor"), ("Chloé", "Durand"), ("Dev", "Patel"), ("Eva", "Lind")];

fn path(d: &Drawn, rest: &str) -> String {
    format!("/api/v2/tournaments/{}{rest}", d.id)
}

fn result_path(d: &Drawn, number: u64) -> String {
    path(d, &format!("/matches/{number}/result"))
}

fn score(home: u8, away: u8) -> Value {
    json!({"homeGoals": home, "awayGoals": away})
}

/// The index in `d.seats` of a side of a match.
fn seat_of(d: &Drawn, side: &Value) -> usize {
    d.seats.iter().position(|s| side["playerId"] == s.id.as_str()).expect("a player of the night")
}

/// The score where the player who joined earlier wins 2-0, home or away.
fn by_join_order(d: &Drawn, m: &Value) -> Value {
    if seat_of(d, &m["home"]) < seat_of(d, &m["away"]) {
        score(2, 0)
    } else {
        score(0, 2)
    }
}

fn table(standings: &Value) -> Vec<(String, u64)> {
    standings["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_owned(), r["points"].as_u64().unwrap()))
        .collect()
}

/// The next domain message of a live socket (presence and clicks are passed over).
async fn next_event(live: &mut Live) -> Value {
    loop {
        let message = live.next().await.expect("the live socket stays open");
        if message.get("version").is_some() {
            return message;
        }
    }
}

#[tokio::test]
async fn a_league_night_is_scheduled_played_corrected_and_finished() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let v2 = V2::new(&server);

    // Only after the draw.
    let (early, early_organiser) = v2.create("Too early", 2).await;
    let schedule =
        |id: &str, token: &str, body: Value| v2.post(&format!("/api/v2/tournaments/{id}/fixtures"), Some(token), body);
    assert_eq!(refused(schedule(&early, &early_organiser, json!({"format": "league"})), 409).await, "not-drawn-yet");

    let d = v2.drawn("League night", &FOUR).await;
    let unscheduled = v2.get(&path(&d, "/fixtures")).await;
    assert_eq!(
        (unscheduled["scheduled"].as_bool(), unscheduled["matches"].as_array().map(Vec::len)),
        (Some(false), Some(0))
    );
    assert_eq!(v2.get(&path(&d, "/standings")).await["rows"], json!([]));
    let mut live = Live::connect(&server.base, &d.id, None).await;
    let drawn_at = live.live_from;

    // Values that cannot be right are refused before anything is decided.
    for bad in [
        json!({"format": "cup"}),
        json!({"format": "league", "legs": 3}),
        json!({"format": "league", "legs": "2"}),
        json!({"format": "knockout", "legs": 3}),
        json!({}),
    ] {
        assert_eq!(refused(schedule(&d.id, &d.organiser, bad.clone()), 400).await, "invalid-request", "{bad}");
    }
    assert_eq!(refused(schedule(&d.id, &d.seats[0].token, json!({"format": "league"})), 403).await, "forbidden");

    let fixtures =
        v2.expect(&path(&d, "/fixtures"), Some(&d.organiser), json!({"format": "league", "legs": 1}), 201).await;
    assert_eq!((fixtures["format"].as_str(), fixtures["legs"].as_u64()), (Some("league"), Some(1)));
    assert_eq!(fixtures["playersMayRecord"], false);
    let matches = fixtures["matches"].as_array().unwrap().clone();
    assert_eq!(matches.len(), 6);
    let pairs: BTreeSet<_> = matches
        .iter()
        .map(|m| {
            let (h, a) = (seat_of(&d, &m["home"]), seat_of(&d, &m["away"]));
            (h.min(a), h.max(a))
        })
        .collect();
    assert_eq!(pairs.len(), 6, "every pair once");
    for round in 1..=3 {
        let playing: BTreeSet<_> = matches
            .iter()
            .filter(|m| m["round"] == round)
            .flat_map(|m| [seat_of(&d, &m["home"]), seat_of(&d, &m["away"])])
            .collect();
        assert_eq!(playing.len(), 4, "everyone plays once in round {round}");
    }
    assert!(matches.iter().all(|m| m["status"] == "ready" && m["home"]["team"].is_string()));
    let scheduled = next_event(&mut live).await;
    assert_eq!(
        (scheduled["type"].as_str(), scheduled["version"].as_u64()),
        (Some("FixturesScheduled"), Some(drawn_at + 1))
    );
    assert_eq!(scheduled["event"]["fixtures"].as_array().map(Vec::len), Some(6));
    assert_eq!(
        refused(schedule(&d.id, &d.organiser, json!({"format": "knockout"})), 409).await,
        "fixtures-already-scheduled"
    );

    // The schedule is stored: a restarted server answers the same one.
    drop(live);
    server.stop().await;
    let server = Server::start(dir.path(), &[]).await;
    let v2 = V2 { http: client(), base: server.base.clone() };
    assert_eq!(v2.get(&path(&d, "/fixtures")).await["matches"], json!(matches));
    let mut live = Live::connect(&server.base, &d.id, None).await;

    // Bad results.
    let record = |number: u64, body: Value| v2.post(&result_path(&d, number), Some(&d.organiser), body);
    assert_eq!(refused(record(1, score(100, 0)), 400).await, "invalid-request");
    assert_eq!(refused(record(1, json!({"homeGoals": -1, "awayGoals": 0})), 400).await, "invalid-request");
    assert_eq!(refused(record(1, json!({"homeGoals": 1.5, "awayGoals": 0})), 400).await, "invalid-request");
    assert_eq!(refused(record(1, json!({"homeGoals": "1", "awayGoals": 0})), 400).await, "invalid-request");
    assert_eq!(refused(record(99, score(1, 0)), 404).await, "match-not-found");
    assert_eq!(refused(record(0, score(1, 0)), 400).await, "invalid-request");
    assert_eq!(refused(record(65536, score(1, 0)), 400).await, "invalid-request");
    let not_a_number = v2.post(&path(&d, "/matches/first/result"), Some(&d.organiser), score(1, 0));
    assert_eq!(refused(not_a_number, 400).await, "invalid-request");
    let penalties = json!({"homeGoals": 1, "awayGoals": 1, "penaltyWinner": "home"});
    assert_eq!(refused(record(1, penalties), 409).await, "unexpected-penalty-winner");
    let before = v2.events(&d.id).await.len();

    // Play the league: whoever joined earlier wins 2-0.
    for (i, m) in matches.iter().enumerate() {
        let number = m["number"].as_u64().unwrap();
        if i == 5 {
            assert_eq!(
                refused(v2.post(&path(&d, "/finish"), Some(&d.organiser), json!({})), 409).await,
                "matches-still-to-play"
            );
        }
        let after = v2.expect(&result_path(&d, number), Some(&d.organiser), by_join_order(&d, m), 200).await;
        let played = &after["matches"][i];
        assert_eq!((played["status"].as_str(), played["result"]["corrected"].as_bool()), (Some("played"), Some(false)));
        assert_eq!(played["result"]["recordedBy"], json!({"kind": "organiser", "playerId": null}));
        let message = next_event(&mut live).await;
        assert_eq!(message["type"], "ResultRecorded");
        assert_eq!(message["version"].as_u64(), Some((before + i + 1) as u64), "each result with its version");
        assert_eq!(message["event"]["number"].as_u64(), Some(number));
    }
    let standings = v2.get(&path(&d, "/standings")).await;
    assert_eq!(
        table(&standings),
        [("Anna".to_owned(), 9), ("Ben".to_owned(), 6), ("Chloé".to_owned(), 3), ("Dev".to_owned(), 0)]
    );
    let first = &standings["rows"][0];
    assert_eq!(
        (first["position"].as_u64(), first["goalsFor"].as_u64(), first["goalDifference"].as_i64()),
        (Some(1), Some(6), Some(6))
    );
    assert!(standings["rows"].as_array().unwrap().iter().all(|r| r["nextMatch"].is_null()));

    // The organiser corrects Anna v Ben: Ben won 3-0. A new event; the table follows.
    let anna_ben = matches
        .iter()
        .find(|m| BTreeSet::from([seat_of(&d, &m["home"]), seat_of(&d, &m["away"])]) == BTreeSet::from([0, 1]))
        .unwrap();
    let ben_wins = if seat_of(&d, &anna_ben["home"]) == 1 { score(3, 0) } else { score(0, 3) };
    let corrected =
        v2.expect(&result_path(&d, anna_ben["number"].as_u64().unwrap()), Some(&d.organiser), ben_wins, 200).await;
    let index = anna_ben["number"].as_u64().unwrap() as usize - 1;
    assert_eq!(corrected["matches"][index]["result"]["corrected"], true);
    assert_eq!(corrected["matches"][index]["result"]["winnerId"], d.seats[1].id.as_str());
    assert_eq!(next_event(&mut live).await["type"], "ResultCorrected");
    let events = v2.events(&d.id).await;
    let kinds: Vec<_> = events.iter().rev().take(2).map(|e| e["type"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds, ["ResultCorrected", "ResultRecorded"], "the first result stays in the history");
    assert_eq!(
        table(&v2.get(&path(&d, "/standings")).await),
        [("Ben".to_owned(), 9), ("Anna".to_owned(), 6), ("Chloé".to_owned(), 3), ("Dev".to_owned(), 0)]
    );

    // Finish: the final table; then results are final. Finishing again answers the same.
    let finished = v2.expect(&path(&d, "/finish"), Some(&d.organiser), json!({}), 200).await;
    assert_eq!(finished["finished"], true);
    assert_eq!(table(&finished)[0], ("Ben".to_owned(), 9));
    assert_eq!(next_event(&mut live).await["type"], "NightFinished");
    let count = v2.events(&d.id).await.len();
    assert_eq!(v2.expect(&path(&d, "/finish"), Some(&d.organiser), json!({}), 200).await, finished);
    assert_eq!(refused(record(1, score(5, 5)), 409).await, "night-already-finished");
    assert_eq!(v2.events(&d.id).await.len(), count, "nothing appended after the finish");
    assert_eq!(v2.get(&path(&d, "/fixtures")).await["finished"], true);
}

#[tokio::test]
async fn results_come_from_the_organiser_or_from_a_player_of_the_match_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let v2 = V2::new(&server);
    let (_, stranger_organiser) = v2.create("Elsewhere", 2).await;

    // Not allowed: even a player of the match is refused.
    let closed = v2.drawn("Organiser only", &FOUR[..2]).await;
    v2.expect(&path(&closed, "/fixtures"), Some(&closed.organiser), json!({"format": "league"}), 201).await;
    let player = v2.post(&result_path(&closed, 1), Some(&closed.seats[0].token), score(1, 0));
    assert_eq!(refused(player, 403).await, "players-may-not-record");

    let d = v2.drawn("Players record", &FOUR[..3]).await;
    let fixtures = v2
        .expect(&path(&d, "/fixtures"), Some(&d.organiser), json!({"format": "league", "playersMayRecord": true}), 201)
        .await;
    assert_eq!(fixtures["playersMayRecord"], true);
    assert_eq!(fixtures["rounds"][0]["byes"].as_array().map(Vec::len), Some(1), "three players: one rests each round");
    let first = &fixtures["matches"][0];
    let (home, away) = (seat_of(&d, &first["home"]), seat_of(&d, &first["away"]));
    let resting = 3 - home - away;
    assert_eq!(fixtures["rounds"][0]["byes"][0]["playerId"], d.seats[resting].id.as_str());
    let post = |token: Option<&str>, body: Value| v2.post(&result_path(&d, 1), token, body);

    assert_eq!(refused(post(None, score(1, 0)), 401).await, "unauthorized");
    assert_eq!(refused(post(Some(&stranger_organiser), score(1, 0)), 403).await, "forbidden");
    assert_eq!(refused(post(Some("p.nobody.00"), score(1, 0)), 403).await, "forbidden");
    assert_eq!(refused(post(Some(&d.seats[resting].token), score(1, 0)), 403).await, "not-a-player-of-the-match");
    let before = v2.events(&d.id).await.len();
    assert_eq!(before, 1 + 3 + 3 + 1 + 1, "refused results appended nothing");

    let recorded = v2.expect(&result_path(&d, 1), Some(&d.seats[away].token), score(2, 1), 200).await;
    assert_eq!(recorded["matches"][0]["result"]["recordedBy"], json!({"kind": "player", "playerId": d.seats[away].id}));
    // The other player enters the same score: nothing changes. A different one is refused.
    v2.expect(&result_path(&d, 1), Some(&d.seats[home].token), score(2, 1), 200).await;
    assert_eq!(v2.events(&d.id).await.len(), before + 1);
    assert_eq!(refused(post(Some(&d.seats[home].token), score(2, 2)), 409).await, "result-already-recorded");
    // The organiser settles it.
    let corrected = v2.expect(&result_path(&d, 1), Some(&d.organiser), score(2, 2), 200).await;
    assert_eq!(corrected["matches"][0]["result"]["corrected"], true);
    assert_eq!(corrected["matches"][0]["result"]["recordedBy"]["kind"], "organiser");
    assert_eq!(v2.events(&d.id).await.len(), before + 2);
}

#[tokio::test]
async fn a_result_sent_again_with_its_idempotency_key_is_answered_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let v2 = V2::new(&server);
    let d = v2.drawn("Retries", &FOUR[..2]).await;
    let schedule = || {
        v2.post(&path(&d, "/fixtures"), Some(&d.organiser), json!({"format": "knockout"}))
            .header("Idempotency-Key", "schedule-once")
    };
    let first = schedule().send().await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = schedule().send().await.unwrap();
    assert_eq!((again.status().as_u16(), again.headers()["idempotent-replayed"].to_str().unwrap()), (201, "true"));
    assert_eq!(again.json::<Value>().await.unwrap(), first, "the stored answer, not fixtures-already-scheduled");

    let record = |key: &str, body: Value| {
        v2.post(&result_path(&d, 1), Some(&d.organiser), body).header("Idempotency-Key", key).send()
    };
    let penalties = json!({"homeGoals": 0, "awayGoals": 0, "penaltyWinner": "away"});
    let answer: Value = record("final", penalties.clone()).await.unwrap().json().await.unwrap();
    let events = v2.events(&d.id).await;
    let retried = record("final", penalties).await.unwrap();
    assert_eq!(retried.headers()["idempotent-replayed"], "true");
    assert_eq!(retried.json::<Value>().await.unwrap(), answer);
    assert_eq!(v2.events(&d.id).await, events, "a retry appends nothing");
    problem(record("final", score(1, 0)).await.unwrap(), 422).await;
    // A new key is a new command: here, a correction.
    let corrected: Value = record("correction", score(1, 0)).await.unwrap().json().await.unwrap();
    assert_eq!(corrected["matches"][0]["result"]["corrected"], true);
    assert_eq!(corrected["champion"]["playerId"], corrected["matches"][0]["home"]["playerId"]);
}

#[tokio::test]
async fn a_knockout_of_five_has_byes_and_fills_its_rounds_live_as_winners_are_decided() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let v2 = V2::new(&server);
    let d = v2.drawn("Knockout night", &FIVE).await;
    let mut live = Live::connect(&server.base, &d.id, None).await;
    let mut signalr = SignalR::connect(&server.base, &d.id).await;
    let mut version = live.live_from;

    let fixtures = v2.expect(&path(&d, "/fixtures"), Some(&d.organiser), json!({"format": "knockout"}), 201).await;
    assert_eq!(fixtures["format"], "knockout");
    let matches = fixtures["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 4);
    assert_eq!(matches.iter().map(|m| m["round"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 2, 3]);
    assert_eq!(fixtures["rounds"][0]["byes"].as_array().map(Vec::len), Some(3), "three byes into the semi-finals");
    assert_eq!(fixtures["rounds"][1]["byes"], json!([]));
    assert_eq!((matches[1]["status"].as_str(), matches[1]["awayFrom"].as_u64()), (Some("waiting"), Some(1)));
    assert!(matches[1]["away"].is_null());
    assert_eq!((matches[3]["homeFrom"].as_u64(), matches[3]["awayFrom"].as_u64()), (Some(2), Some(3)));
    version += 1;
    assert_eq!(next_event(&mut live).await["version"].as_u64(), Some(version));
    let payload = signalr.next_payload(&d.id).await;
    assert_eq!((payload["type"].as_str(), payload["format"].as_str()), (Some("FixturesScheduled"), Some("knockout")));
    assert_eq!(payload["matches"][1]["awayFrom"], 1);
    let waiting = v2.post(&result_path(&d, 4), Some(&d.organiser), score(1, 0));
    assert_eq!(refused(waiting, 409).await, "match-not-ready");

    // Round 1 ends level: penalties are needed; the away side wins them.
    assert_eq!(
        refused(v2.post(&result_path(&d, 1), Some(&d.organiser), score(1, 1)), 409).await,
        "penalty-winner-required"
    );
    let penalties = json!({"homeGoals": 1, "awayGoals": 1, "penaltyWinner": "away"});
    let after = v2.expect(&result_path(&d, 1), Some(&d.organiser), penalties, 200).await;
    let through = after["matches"][0]["away"]["playerId"].clone();
    assert_eq!(after["matches"][0]["result"]["winnerId"], through);
    assert_eq!(after["matches"][1]["away"]["playerId"], through, "the winner fills the semi-final");
    assert_eq!(after["matches"][1]["status"], "ready");
    version += 1;
    let message = next_event(&mut live).await;
    assert_eq!((message["type"].as_str(), message["version"].as_u64()), (Some("ResultRecorded"), Some(version)));
    let payload = signalr.next_payload(&d.id).await;
    let winner = d.seat(through.as_str().unwrap());
    assert_eq!(payload["type"], "ResultRecorded");
    assert_eq!(payload["away"], json!({"name": winner.name, "surname": winner.surname}));
    assert_eq!((payload["homeGoals"].as_u64(), payload["penaltyWinner"].as_str()), (Some(1), Some("away")));

    // Semi-finals: the home sides win; then the final.
    for number in [2, 3] {
        v2.expect(&result_path(&d, number), Some(&d.organiser), score(3, 1), 200).await;
    }
    let fixtures = v2.get(&path(&d, "/fixtures")).await;
    let last = &fixtures["matches"][3];
    assert_eq!(last["home"]["playerId"], fixtures["matches"][1]["home"]["playerId"]);
    assert_eq!(last["away"]["playerId"], fixtures["matches"][2]["home"]["playerId"]);
    let table_before = v2.get(&path(&d, "/standings")).await;
    let next_of = |id: &Value| {
        table_before["rows"].as_array().unwrap().iter().find(|r| r["playerId"] == *id).unwrap()["nextMatch"].clone()
    };
    assert_eq!(next_of(&last["home"]["playerId"]), 4, "a finalist's next match is the final");
    assert_eq!(next_of(&through), Value::Null, "a player knocked out has none");
    v2.expect(&result_path(&d, 4), Some(&d.organiser), score(0, 2), 200).await;
    let standings = v2.expect(&path(&d, "/finish"), Some(&d.organiser), json!({}), 200).await;
    let rows = standings["rows"].as_array().unwrap();
    assert_eq!(rows[0]["playerId"], last["away"]["playerId"]);
    assert!(rows[0]["champion"].as_bool().unwrap());
    assert_eq!(rows[1]["playerId"], last["home"]["playerId"]);
    assert_eq!(rows.iter().map(|r| r["reachedRound"].as_u64().unwrap()).collect::<Vec<_>>(), [3, 3, 2, 2, 1]);
    assert_eq!(v2.get(&path(&d, "/fixtures")).await["champion"]["playerId"], last["away"]["playerId"]);

    // Every connection heard every result, in version order.
    for kind in ["ResultRecorded", "ResultRecorded", "ResultRecorded", "NightFinished"] {
        version += 1;
        let message = next_event(&mut live).await;
        assert_eq!((message["type"].as_str(), message["version"].as_u64()), (Some(kind), Some(version)));
        assert_eq!(signalr.next_payload(&d.id).await["type"], kind);
    }
}

#[tokio::test]
async fn the_openapi_document_describes_the_fixtures_routes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let doc: Value = client().get(server.url("/swagger/v1/swagger.json")).send().await.unwrap().json().await.unwrap();
    for (path, method) in [
        ("/api/v2/tournaments/{id}/fixtures", "post"),
        ("/api/v2/tournaments/{id}/fixtures", "get"),
        ("/api/v2/tournaments/{id}/matches/{number}/result", "post"),
        ("/api/v2/tournaments/{id}/finish", "post"),
        ("/api/v2/tournaments/{id}/standings", "get"),
    ] {
        assert!(doc["paths"][path].get(method).is_some(), "{method} {path}");
    }
    let result = &doc["paths"]["/api/v2/tournaments/{id}/matches/{number}/result"]["post"];
    assert_eq!(result["security"], json!([{"organiser": []}, {"player": []}]));
    let body = &doc["components"]["schemas"]["ResultBody"]["properties"];
    assert_eq!((body["homeGoals"]["minimum"].as_u64(), body["homeGoals"]["maximum"].as_u64()), (Some(0), Some(99)));
    assert_eq!(doc["components"]["schemas"]["FormatName"]["enum"], json!(["league", "knockout"]));
}

/// Commands racing on one tournament: a double tap on "schedule" makes one schedule, and
/// results sent at once by both players make one result; the others are clean refusals.
#[tokio::test]
async fn racing_schedules_and_results_make_one_of_each() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("LCT_RATE_LIMIT_COMMANDS", "0")]).await;
    let v2 = V2::new(&server);
    let d = v2.drawn("Races", &FOUR[..2]).await;
    let schedule = |format: &str| {
        v2.post(&path(&d, "/fixtures"), Some(&d.organiser), json!({"format": format, "playersMayRecord": true})).send()
    };
    let (league, knockout) = tokio::join!(schedule("league"), schedule("knockout"));
    let mut statuses = [league.unwrap().status().as_u16(), knockout.unwrap().status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [201, 409]);
    let count = |events: &[Value], kind: &str| events.iter().filter(|e| e["type"] == kind).count();
    assert_eq!(count(&v2.events(&d.id).await, "FixturesScheduled"), 1);

    let sends = (1..=4u8).flat_map(|goals| {
        [(&d.seats[0].token, score(goals, 0)), (&d.seats[1].token, score(0, goals))]
            .map(|(token, body)| v2.post(&result_path(&d, 1), Some(token), body).send())
    });
    let answers = futures::future::join_all(sends).await;
    let mut outcomes: Vec<u16> = answers.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    outcomes.sort();
    assert_eq!(outcomes, [200, 409, 409, 409, 409, 409, 409, 409], "one result; the others result-already-recorded");
    assert_eq!(count(&v2.events(&d.id).await, "ResultRecorded"), 1);
    assert_eq!(count(&v2.events(&d.id).await, "ResultCorrected"), 0);
}

/// The night on two pods behind Redis: results sent to one pod reach the live clients of the
/// other, each once and in version order, on both sockets.
#[tokio::test]
async fn results_sent_to_one_pod_reach_the_live_clients_of_another() {
    let redis = common::redis_server::RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = [("LCT_REDIS_URL", redis.url.as_str())];
    let (a, b) = (Server::start(dir.path(), &env).await, Server::start(dir.path(), &env).await);
    let on_a = V2::new(&a);
    let d = on_a.drawn("Two pods", &FOUR[..3]).await;
    let mut live = Live::connect(&b.base, &d.id, None).await;
    let mut signalr = SignalR::connect(&b.base, &d.id).await;
    let from = live.live_from;

    let fixtures =
        on_a.expect(&path(&d, "/fixtures"), Some(&d.organiser), json!({"format": "league", "legs": 2}), 201).await;
    let numbers: Vec<u64> =
        fixtures["matches"].as_array().unwrap().iter().map(|m| m["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers.len(), 6, "three players, home and away");
    for &number in &numbers {
        on_a.expect(&result_path(&d, number), Some(&d.organiser), score(1, 0), 200).await;
    }
    on_a.expect(&path(&d, "/finish"), Some(&d.organiser), json!({}), 200).await;

    let mut kinds = Vec::new();
    for version in from + 1..=from + 8 {
        let message = next_event(&mut live).await;
        assert_eq!(message["version"].as_u64(), Some(version), "every version once, in order");
        kinds.push(message["type"].as_str().unwrap().to_owned());
        assert_eq!(signalr.next_payload(&d.id).await["type"], message["type"]);
    }
    assert_eq!(kinds.first().map(String::as_str), Some("FixturesScheduled"));
    assert_eq!(kinds.iter().filter(|k| *k == "ResultRecorded").count(), 6);
    assert_eq!(kinds.last().map(String::as_str), Some("NightFinished"));
    // Pod B answers the same table as pod A.
    let on_b = V2::new(&b);
    assert_eq!(on_b.get(&path(&d, "/standings")).await, on_a.get(&path(&d, "/standings")).await);
}
