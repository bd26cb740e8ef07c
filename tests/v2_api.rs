//! The v2 API end to end: tokens, idempotency keys, problem details, rate limits, presence, and
//! the TournamentRenamed message of the hub.

mod common;

use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use common::v2::problem;
use common::ws::{expect_refused, Live, SignalR};
use common::*;
use serde_json::{json, Value};

struct V2<'a> {
    http: reqwest::Client,
    server: &'a Server,
}

impl V2<'_> {
    fn post(&self, path: &str, token: Option<&str>, body: Value) -> reqwest::RequestBuilder {
        let mut request = self.http.post(self.server.url(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
    }

    async fn create(&self, name: &str, limit: u32) -> (String, String) {
        let r =
            self.post("/api/v2/tournaments", None, json!({"name": name, "playerLimit": limit})).send().await.unwrap();
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        (body["id"].as_str().unwrap().to_owned(), body["organiserToken"].as_str().unwrap().to_owned())
    }

    async fn join(&self, id: &str, name: &str, surname: &str) -> (String, String) {
        let r = self
            .post(&format!("/api/v2/tournaments/{id}/players"), None, json!({"name": name, "surname": surname}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        (body["playerId"].as_str().unwrap().to_owned(), body["playerToken"].as_str().unwrap().to_owned())
    }

    async fn version(&self, id: &str) -> u64 {
        let body: Value = json_of(self.http.get(self.server.url(&format!("/api/v2/tournaments/{id}")))).await;
        body["version"].as_u64().unwrap()
    }
}

#[tokio::test]
async fn tokens_stop_one_caller_from_acting_for_another() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let v2 = V2 { http: client(), server: &server };
    let (id, organiser) = v2.create("Guarded night", 2).await;
    let (anna_id, anna) = v2.join(&id, "Anna", "Nowak").await;
    let (_, ben) = v2.join(&id, "Ben", "Kowal").await;
    let (other_id, other_organiser) = v2.create("Other night", 2).await;
    let (_, other_player) = v2.join(&other_id, "Eve", "Stranger").await;

    let select = |token: Option<&str>, team: &str| {
        v2.post(&format!("/api/v2/tournaments/{id}/selection"), token, json!({"team": team})).send()
    };
    assert_eq!(problem(select(None, "PSG").await.unwrap(), 401).await["type"], "urn:lct:problem:unauthorized");
    assert_eq!(
        problem(select(Some(&other_player), "PSG").await.unwrap(), 403).await["type"],
        "urn:lct:problem:forbidden"
    );
    assert_eq!(problem(select(Some(&organiser), "PSG").await.unwrap(), 403).await["type"], "urn:lct:problem:forbidden");
    // The last hex digit changed (to another digit whatever it was).
    let other_digit = if anna.ends_with('0') { '1' } else { '0' };
    let tampered = format!("{}{other_digit}", &anna[..anna.len() - 1]);
    problem(select(Some(&tampered), "PSG").await.unwrap(), 403).await;
    // Anna's token selects for Anna, and only for her.
    let r = select(Some(&anna), "PSG").await.unwrap();
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    let anna_view = view["players"].as_array().unwrap().iter().find(|p| p["id"] == anna_id.as_str()).unwrap().clone();
    assert_eq!(anna_view["selectedTeam"], "PSG");
    assert_eq!(
        problem(select(Some(&ben), "PSG").await.unwrap(), 409).await["type"],
        "urn:lct:problem:team-already-selected"
    );
    assert_eq!(select(Some(&ben), "Chelsea").await.unwrap().status(), 200);

    // Draw and rename need this tournament's organiser token.
    let draw = |token: Option<&str>| v2.post(&format!("/api/v2/tournaments/{id}/draw"), token, json!({})).send();
    problem(draw(None).await.unwrap(), 401).await;
    problem(draw(Some(&anna)).await.unwrap(), 403).await;
    problem(draw(Some(&other_organiser)).await.unwrap(), 403).await;
    let rename = |token: Option<&str>| {
        v2.post(&format!("/api/v2/tournaments/{id}/rename"), token, json!({"name": "Renamed night"})).send()
    };
    problem(rename(Some(&ben)).await.unwrap(), 403).await;
    assert_eq!(v2.version(&id).await, 5, "refused commands appended nothing");
    let drawn = draw(Some(&organiser)).await.unwrap();
    assert_eq!(drawn.status(), 200);
    let drawn: Vec<Value> = drawn.json().await.unwrap();
    assert_eq!(drawn.len(), 2);
    assert_eq!(rename(Some(&organiser)).await.unwrap().status(), 200);
    let teams: Vec<Value> =
        v2.http.get(server.url(&format!("/api/v2/tournaments/{id}/teams"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(teams[1], json!({"name": "PSG", "selected": true, "selectedBy": anna_id}));
}

#[tokio::test]
async fn a_retried_post_with_the_same_key_returns_the_first_result_and_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let v2 = V2 { http: client(), server: &server };
    let create = |key: &str, name: &str| {
        v2.post("/api/v2/tournaments", None, json!({"name": name, "playerLimit": 4}))
            .header("Idempotency-Key", key)
            .send()
    };
    // Create answers with a token: its key must be unguessable (128 random bits in hex here).
    let key = "5d0c4e0b8a1f4f6e9a3b2c7d1e0f9a8b";
    let first = create(key, "Retry night").await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = create(key, "Retry night").await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first, "the same tournament, not a second one");
    problem(create(key, "Another name").await.unwrap(), 422).await;

    let id = first["id"].as_str().unwrap();
    let join = || {
        v2.post(&format!("/api/v2/tournaments/{id}/players"), None, json!({"name": "Anna", "surname": "Nowak"}))
            .header("Idempotency-Key", "join-anna-7c1e5b3f9d2a4e6b8c0d1f2a")
            .send()
    };
    let joined: Value = join().await.unwrap().json().await.unwrap();
    let events_before: Vec<Value> = json_of(v2.http.get(server.url(&format!("/api/v2/tournaments/{id}/events")))).await;
    let retried = join().await.unwrap();
    assert_eq!(retried.status(), 201, "a retry is not refused as a duplicate join");
    assert_eq!(retried.json::<Value>().await.unwrap(), joined);
    let events_after: Vec<Value> = json_of(v2.http.get(server.url(&format!("/api/v2/tournaments/{id}/events")))).await;
    assert_eq!(events_after, events_before);
    assert_eq!(events_after.len(), 2);
    // Without a key the same join is a rule error, as it should be.
    let r = v2
        .post(&format!("/api/v2/tournaments/{id}/players"), None, json!({"name": "Anna", "surname": "Nowak"}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(r, 409).await["type"], "urn:lct:problem:player-already-joined");
    // A failed request does not keep its key: the retry runs again.
    let bad = || {
        v2.post("/api/v2/tournaments", None, json!({"name": " ", "playerLimit": 4}))
            .header("Idempotency-Key", "bad-key-0a1b2c3d4e5f6a7b8c9d")
            .send()
    };
    problem(bad().await.unwrap(), 400).await;
    problem(bad().await.unwrap(), 400).await;
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start(dir.path(), &[("LCT_RATE_LIMIT_COMMANDS", "2"), ("LCT_RATE_LIMIT_CONNECTIONS", "1")]).await;
    let v2 = V2 { http: client(), server: &server };
    let mut statuses = Vec::new();
    for i in 0..6 {
        let r = v2
            .post("/api/v2/tournaments", None, json!({"name": format!("Burst {i}"), "playerLimit": 2}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
            problem(r, 429).await;
        }
    }
    assert_eq!(&statuses[..4], &[201, 201, 201, 201], "a burst of twice the rate passes");
    assert!(statuses[4..].iter().all(|&s| s == 429), "{statuses:?}");
    // A command cannot pass for a WebSocket upgrade (its own bucket) by its headers.
    let disguised = v2
        .post("/api/v2/tournaments", None, json!({"name": "Disguised", "playerLimit": 2}))
        .header("Upgrade", "websocket")
        .send()
        .await
        .unwrap();
    assert_eq!(disguised.status(), 429, "a POST is a command, whatever its headers say");
    // v1 commands share the client's bucket and get the v1 error shape.
    let r = http_create_v1(&v2).await;
    assert_error(r, 429).await;
    // Reads are not limited.
    assert_eq!(v2.http.get(server.url("/liveness")).send().await.unwrap().status(), 200);
    // The bucket refills at two commands a second: a retry soon passes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = v2
            .post("/api/v2/tournaments", None, json!({"name": "After the pause", "playerLimit": 2}))
            .send()
            .await
            .unwrap();
        if r.status() == 201 {
            break;
        }
        assert_eq!(r.status(), 429, "refused only by the limit until it recovers");
        assert!(std::time::Instant::now() < deadline, "the limit never recovered");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // New WebSocket connections are limited too (their own bucket; this create waits for a
    // command token).
    let id = loop {
        let r = v2.http.post(server.url("/api/Tournament/create")).json(&json!({"name": "Sockets", "playerLimit": 2}));
        let r = r.send().await.unwrap();
        if r.status() == 200 {
            break r.json::<String>().await.unwrap();
        }
        assert_eq!(r.status(), 429);
        assert!(std::time::Instant::now() < deadline, "the limit never recovered");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let url = format!("{}/hubs/actions?tournamentId={id}", server.base.replace("http://", "ws://"));
    let mut refused = 0;
    let mut sockets = Vec::new();
    for _ in 0..4 {
        match tokio_tungstenite::connect_async(&url).await {
            Ok((socket, _)) => sockets.push(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 429);
                refused += 1;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!((sockets.len(), refused), (2, 2));
}

async fn http_create_v1(v2: &V2<'_>) -> reqwest::Response {
    v2.http
        .post(v2.server.url("/api/Tournament/create"))
        .json(&json!({"name": "v1 burst", "playerLimit": 2}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn presence_shows_who_is_connected_and_live_streams_announce_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let v2 = V2 { http: client(), server: &server };
    let (id, _) = v2.create("Presence night", 3).await;
    let (anna_id, anna) = v2.join(&id, "Anna", "Nowak").await;
    let (ben_id, ben) = v2.join(&id, "Ben", "Kowal").await;
    let mut watcher = Live::connect(&server.base, &id, None).await;
    let ws = server.base.replace("http://", "ws://");

    let presence = || async {
        let body: Value = json_of(v2.http.get(server.url(&format!("/api/v2/tournaments/{id}/presence")))).await;
        body["players"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["playerId"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert!(presence().await.is_empty());
    let (anna_socket, _) =
        tokio_tungstenite::connect_async(format!("{ws}/api/v2/tournaments/{id}/live?token={anna}")).await.unwrap();
    let announced = watcher.next_presence().await;
    assert_eq!(announced, vec![anna_id.clone()]);
    // Ben's phone offers its token as a subprotocol, which proxies do not log as a URL.
    let offering = |token: &str| {
        let mut request = format!("{ws}/api/v2/tournaments/{id}/live").into_client_request().unwrap();
        let protocols = format!("lct.v2, lct.token.{token}");
        request.headers_mut().insert("sec-websocket-protocol", protocols.parse().unwrap());
        request
    };
    let (ben_socket, answer) = tokio_tungstenite::connect_async(offering(&ben)).await.unwrap();
    assert_eq!(answer.headers()["sec-websocket-protocol"], "lct.v2");
    assert_eq!(watcher.next_presence().await.len(), 2);
    let mut online = presence().await;
    online.sort();
    let mut expected = vec![anna_id.clone(), ben_id.clone()];
    expected.sort();
    assert_eq!(online, expected);
    drop(anna_socket);
    assert_eq!(watcher.next_presence().await, vec![ben_id.clone()]);
    assert_eq!(presence().await, vec![ben_id]);
    drop(ben_socket);
    assert!(watcher.next_presence().await.is_empty());
    // A forged token is refused before the upgrade, in the URL or as a subprotocol.
    expect_refused(&format!("{ws}/api/v2/tournaments/{id}/live?token=p.nope.00"), 403).await;
    match tokio_tungstenite::connect_async(offering("p.nope.00")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("a forged token offered as a subprotocol was not refused: {:?}", other.map(|(_, r)| r)),
    }
}

#[tokio::test]
async fn a_rename_reaches_signalr_clients_as_tournament_renamed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let v2 = V2 { http: client(), server: &server };
    let (id, organiser) = v2.create("Before", 2).await;
    let mut signalr = SignalR::connect(&server.base, &id).await;
    let r = v2
        .post(&format!("/api/v2/tournaments/{id}/rename"), Some(&organiser), json!({"name": "After"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        signalr.next_payload(&id).await,
        json!({"type": "TournamentRenamed", "tournamentId": id, "tournamentName": "After"})
    );
    // The old name is free again, the new one taken.
    assert_eq!(create(&v2.http, &server, "Before", 2).await.len(), 36);
    let r = v2.post("/api/v2/tournaments", None, json!({"name": "After", "playerLimit": 2})).send().await.unwrap();
    assert_eq!(problem(r, 409).await["type"], "urn:lct:problem:tournament-name-taken");
}

#[tokio::test]
async fn the_openapi_document_lists_v2_beside_v1() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let doc: Value = client().get(server.url("/swagger/v1/swagger.json")).send().await.unwrap().json().await.unwrap();
    for path in [
        "/api/v2/tournaments",
        "/api/v2/tournaments/{id}/players",
        "/api/v2/tournaments/{id}/draw",
        "/api/Tournament/create",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path}");
    }
    assert!(doc["paths"]["/api/v2/tournaments/{id}/draw"]["post"]["responses"].get("403").is_some());
    assert!(doc["components"]["securitySchemes"].get("organiser").is_some());
}

/// Under /api/v2 even the router's own refusals are problem details; v1 keeps its error body.
#[tokio::test]
async fn unknown_v2_routes_and_methods_answer_problem_details() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let http = client();
    let id = uuid::Uuid::new_v4();
    let r = http.put(server.url(&format!("/api/v2/tournaments/{id}/players"))).send().await.unwrap();
    assert_eq!(r.headers()["allow"], "POST");
    assert_eq!(problem(r, 405).await["type"], "urn:lct:problem:method-not-allowed");
    let r = http.get(server.url("/api/v2/tournaments/{id}/nothing-here")).send().await.unwrap();
    assert_eq!(problem(r, 404).await["type"], "urn:lct:problem:not-found");
    // Path parameters that are not UTF-8 once decoded, on every kind of v2 route.
    for path in ["/api/v2/tournaments/%FF", "/api/v2/tournaments/%FF/standings", "/api/v2/tournaments/%FF/qr"] {
        let r = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(problem(r, 400).await["type"], "urn:lct:problem:invalid-request", "{path}");
    }
    for path in ["/api/v2/tournaments/%FF/draw", "/api/v2/tournaments/{id}/matches/%C0/result"] {
        let r = http.post(server.url(&path.replace("{id}", &id.to_string()))).send().await.unwrap();
        assert_eq!(problem(r, 400).await["type"], "urn:lct:problem:invalid-request", "{path}");
    }
    // The live socket refuses in the same shape, before the upgrade.
    let ws = server.base.replace("http://", "ws://");
    for (url, status) in
        [(format!("{ws}/api/v2/tournaments/{id}/live"), 404), (format!("{ws}/api/v2/tournaments/%FF/live"), 400)]
    {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), status, "{url}");
                assert_eq!(response.headers()["content-type"], "application/problem+json", "{url}");
            }
            other => panic!("{url} must be refused, got {:?}", other.map(|_| ())),
        }
    }
    assert_error(http.put(server.url("/api/Tournament/create")).send().await.unwrap(), 405).await;
    assert_error(http.get(server.url("/api/nothing-here")).send().await.unwrap(), 404).await;
}

/// A token is valid only with its whole MAC: every truncation, extension, case change, swap or
/// borrowing from another tournament is refused, and nothing is appended.
#[tokio::test]
async fn only_a_whole_mac_of_the_issued_length_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    // No rate limit: the point is what an attacker gets past it, not the limit itself.
    let server = Server::start(dir.path(), &[("LCT_RATE_LIMIT_COMMANDS", "0")]).await;
    let v2 = V2 { http: client(), server: &server };
    let (id, organiser) = v2.create("Forgery night", 2).await;
    let (_, anna) = v2.join(&id, "Anna", "Nowak").await;
    let (other_id, other_organiser) = v2.create("Other forgery night", 2).await;
    let (_, other_player) = v2.join(&other_id, "Eve", "Stranger").await;
    let before = v2.version(&id).await;

    let organiser_mac = organiser.strip_prefix("o.").unwrap();
    let (anna_prefix, anna_mac) = anna.rsplit_once('.').unwrap();
    let other_mac = other_organiser.strip_prefix("o.").unwrap();
    let mut forged_organisers = vec![
        format!("o.{}", &organiser_mac[..2]),
        format!("o.{}", &organiser_mac[..organiser_mac.len() / 2]),
        format!("o.{}", &organiser_mac[..organiser_mac.len() - 2]),
        format!("o.{organiser_mac}00"),
        "o.".to_owned(),
        format!("o.{}", organiser_mac.to_uppercase()),
        format!("o.{other_mac}"),
        format!("p.{}", organiser_mac),
        anna.clone(),
        other_player.clone(),
    ];
    // Every two-hex-digit prefix: the enumeration an attacker would try.
    forged_organisers.extend((0..=255u8).map(|b| format!("o.{b:02x}")));
    for token in &forged_organisers {
        let rename = v2
            .post(&format!("/api/v2/tournaments/{id}/rename"), Some(token), json!({"name": format!("Taken {token}")}))
            .send()
            .await
            .unwrap();
        let status = rename.status().as_u16();
        assert!(matches!(status, 401 | 403), "organiser token {token:?} got {status}");
    }
    // Anna's id written another way than issued: the MAC is hers, the token is not as issued.
    let anna_id = uuid::Uuid::parse_str(anna_prefix.strip_prefix("p.").unwrap()).unwrap();
    let forged_players = [
        format!("p.{}.{anna_mac}", anna_id.hyphenated()),
        format!("p.{}.{anna_mac}", anna_id.simple().to_string().to_uppercase()),
        format!("p.{}.{anna_mac}", anna_id.braced()),
        format!("p.{}.{anna_mac}", anna_id.urn()),
        format!("{anna_prefix}.{}", &anna_mac[..2]),
        format!("{anna_prefix}.{}", &anna_mac[..anna_mac.len() / 2]),
        format!("{anna_prefix}.{anna_mac}00"),
        format!("{anna_prefix}."),
        format!("{anna_prefix}.{}", anna_mac.to_uppercase()),
        format!("{anna_prefix}.{organiser_mac}"),
        format!("o.{anna_mac}"),
        organiser.clone(),
    ];
    for token in &forged_players {
        let select = v2
            .post(&format!("/api/v2/tournaments/{id}/selection"), Some(token), json!({"team": "PSG"}))
            .send()
            .await
            .unwrap();
        let status = select.status().as_u16();
        assert!(matches!(status, 401 | 403), "player token {token:?} got {status}");
    }
    assert_eq!(v2.version(&id).await, before, "a forged token appended an event");
    // The real tokens still work.
    let select = v2
        .post(&format!("/api/v2/tournaments/{id}/selection"), Some(&anna), json!({"team": "PSG"}))
        .send()
        .await
        .unwrap();
    assert_eq!(select.status(), 200);
}
