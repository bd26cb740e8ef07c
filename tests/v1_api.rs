//! End-to-end tests of the v1 REST API against the real `lct` binary on a free port.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn a_whole_tournament_night() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let http = client();
    let id = create(&http, &server, "Friday night", 4).await;
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().to_string(), id, "ids are lowercase UUIDs");

    let players = [("Anna", "Nowak"), ("Ben", "Kowal"), ("Cleo", "Lis"), ("Dan", "Wolf")];
    for (name, surname) in players {
        let response = join(&http, &server.base, &id, name, surname).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "");
    }
    let teams: Value =
        http.get(server.url(&format!("/api/Team?tournamentId={id}"))).send().await.unwrap().json().await.unwrap();
    let expected: Vec<Value> = TEAMS.iter().map(|t| json!({"name": t, "selected": false})).collect();
    assert_eq!(teams, Value::Array(expected));

    let picks = ["PSG", "Chelsea", "Juventus", "Manchaster City"];
    for ((name, surname), team) in players.iter().zip(picks) {
        let response = select(&http, &server.base, &id, name, surname, team).await;
        assert_eq!(response.status(), 200);
    }
    let teams: Vec<Value> =
        http.get(server.url(&format!("/api/team?tournamentid={id}"))).send().await.unwrap().json().await.unwrap();
    let selected: Vec<&str> =
        teams.iter().filter(|t| t["selected"] == true).map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(selected, ["PSG", "Manchaster City", "Chelsea", "Juventus"]);

    let state = tournament(&http, &server.base, &id).await;
    assert_eq!(state["tournamentName"], "Friday night");
    assert_eq!(state["playerLimit"], 4);
    assert_eq!(state["version"], 9);
    assert_eq!(
        state["players"][0],
        json!({"name": "Anna", "surname": "Nowak", "selectedTeam": "PSG", "drawnTeam": null})
    );

    let first: Vec<Value> = json_of(http.get(server.url(&format!("/api/Tournament/draw?tournamentId={id}")))).await;
    let again = http.post(server.url(&format!("/api/Tournament/draw?tournamentId={id}"))).send().await.unwrap();
    assert_eq!(again.status(), 200);
    let again: Vec<Value> = again.json().await.unwrap();
    assert_eq!(first, again, "drawing again answers the stored result");
    assert_eq!(first.len(), 4);
    let mut drawn: Vec<&str> = first.iter().map(|a| a["teamName"].as_str().unwrap()).collect();
    drawn.sort();
    let mut picked = picks.to_vec();
    picked.sort();
    assert_eq!(drawn, picked, "the draw is a bijection of the selected teams");
    for (line, (name, surname)) in first.iter().zip(players) {
        assert_eq!((line["name"].as_str().unwrap(), line["surname"].as_str().unwrap()), (name, surname));
    }
    let state = tournament(&http, &server.base, &id).await;
    assert_eq!(state["version"], 10, "the second draw appended nothing");
    assert_eq!(state["players"][0]["drawnTeam"], first[0]["teamName"]);
}

#[tokio::test]
async fn every_error_class_has_its_status_and_body() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let http = client();
    let id = create(&http, &server, "Errors", 2).await;
    let unknown = uuid::Uuid::new_v4().to_string();

    // 400: invalid input.
    let r = http
        .post(server.url("/api/Tournament/create"))
        .json(&json!({"name": " ", "playerLimit": 4}))
        .send()
        .await
        .unwrap();
    assert_error(r, 400).await;
    // 404: unknown tournament.
    let msg = assert_error(join(&http, &server.base, &unknown, "A", "B").await, 404).await;
    assert!(msg.contains("does not exist"), "{msg}");
    let r = http.get(server.url(&format!("/api/Tournament?id={unknown}"))).send().await.unwrap();
    assert_error(r, 404).await;
    // 409: each rule.
    let r = http
        .post(server.url("/api/Tournament/create"))
        .json(&json!({"name": "Errors", "playerLimit": 4}))
        .send()
        .await
        .unwrap();
    assert!(assert_error(r, 409).await.contains("name already exists"));
    assert_eq!(join(&http, &server.base, &id, "Anna", "Nowak").await.status(), 200);
    assert!(assert_error(join(&http, &server.base, &id, "Anna", "Nowak").await, 409).await.contains("already joined"));
    let draw = |http: reqwest::Client| {
        let url = server.url(&format!("/api/Tournament/draw?tournamentId={id}"));
        async move { http.get(url).send().await.unwrap() }
    };
    assert!(assert_error(draw(http.clone()).await, 409).await.contains("every seat"));
    assert_eq!(join(&http, &server.base, &id, "Ben", "Kowal").await.status(), 200);
    assert!(assert_error(join(&http, &server.base, &id, "Cleo", "Lis").await, 409).await.contains("full"));
    assert!(assert_error(select(&http, &server.base, &id, "Cleo", "Lis", "PSG").await, 409)
        .await
        .contains("not joined"));
    assert!(assert_error(draw(http.clone()).await, 409).await.contains("every player"));
    assert_eq!(select(&http, &server.base, &id, "Anna", "Nowak", "PSG").await.status(), 200);
    assert!(assert_error(select(&http, &server.base, &id, "Anna", "Nowak", "Bayern").await, 409)
        .await
        .contains("already selected a team"));
    assert!(assert_error(select(&http, &server.base, &id, "Ben", "Kowal", "PSG").await, 409)
        .await
        .contains("another player"));
    // Unknown routes and methods.
    assert_error(http.get(server.url("/api/nothing")).send().await.unwrap(), 404).await;
    assert_error(http.delete(server.url("/api/Tournament/create")).send().await.unwrap(), 405).await;
    // api-version.
    let r =
        http.get(server.url(&format!("/api/Tournament?id={id}"))).header("api-version", "1.0").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(server.url(&format!("/api/Tournament?id={id}"))).header("api-version", "2").send().await.unwrap();
    assert!(assert_error(r, 400).await.contains("api-version"));
}

#[tokio::test]
async fn bad_input_gets_a_4xx_and_leaves_the_store_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let http = client();
    let id = create(&http, &server, "Guarded", 2).await;
    assert_eq!(join(&http, &server.base, &id, "Anna", "Nowak").await.status(), 200);
    let log = dir.path().join("events.log");
    let size_before = std::fs::metadata(&log).unwrap().len();
    let long = "x".repeat(10_000);
    let unknown = uuid::Uuid::new_v4().to_string();

    let create_url = server.url("/api/Tournament/create");
    let join_url = server.url("/api/Tournament/assignPlayer");
    let select_url = server.url("/api/Team/select");
    let raw =
        |url: &str, body: &str| http.post(url).header("content-type", "application/json").body(body.to_owned()).send();
    let cases: Vec<(reqwest::Response, u16)> = vec![
        (raw(&create_url, "{\"name\": \"Broken\",").await.unwrap(), 400),
        (raw(&create_url, "[1,2]").await.unwrap(), 400),
        (raw(&create_url, "").await.unwrap(), 400),
        (
            raw(&create_url, &format!("{{\"name\":\"{}\",\"playerLimit\":4}}", "y".repeat(20 * 1024))).await.unwrap(),
            413,
        ),
        (http.post(&create_url).json(&json!({"name": long, "playerLimit": 4})).send().await.unwrap(), 400),
        (http.post(&create_url).json(&json!({"name": "  ", "playerLimit": 4})).send().await.unwrap(), 400),
        (http.post(&create_url).json(&json!({"name": "Tab\tname", "playerLimit": 4})).send().await.unwrap(), 400),
        (http.post(&create_url).json(&json!({"name": "One", "playerLimit": 1})).send().await.unwrap(), 400),
        (http.post(&create_url).json(&json!({"name": "Eleven", "playerLimit": 11})).send().await.unwrap(), 400),
        (http.post(&create_url).json(&json!({"name": "Text", "playerLimit": "four"})).send().await.unwrap(), 400),
        (http.post(&create_url).json(&json!({"name": "Missing"})).send().await.unwrap(), 400),
        (
            http.post(&join_url).json(&json!({"name": long, "surname": "B", "tournamentId": id})).send().await.unwrap(),
            400,
        ),
        (
            http.post(&join_url).json(&json!({"name": "A", "surname": "", "tournamentId": id})).send().await.unwrap(),
            400,
        ),
        (
            http.post(&join_url)
                .json(&json!({"name": "A", "surname": "B", "tournamentId": "not-a-uuid"}))
                .send()
                .await
                .unwrap(),
            400,
        ),
        (
            http.post(&join_url)
                .json(&json!({"name": "A", "surname": "B", "tournamentId": unknown}))
                .send()
                .await
                .unwrap(),
            404,
        ),
        (
            http.post(&select_url)
                .json(&json!({"playerName": "Anna", "playerSurname": "Nowak", "tournamentId": id, "team": "Arsenal"}))
                .send()
                .await
                .unwrap(),
            400,
        ),
        (
            http.post(&select_url)
                .json(&json!({"playerName": "Anna", "playerSurname": "Nowak", "tournamentId": unknown, "team": "PSG"}))
                .send()
                .await
                .unwrap(),
            404,
        ),
        (http.get(server.url("/api/Tournament?id=123")).send().await.unwrap(), 400),
        (http.get(server.url("/api/Tournament")).send().await.unwrap(), 400),
        (http.get(server.url("/api/Team?tournamentId=zzz")).send().await.unwrap(), 400),
        (http.get(server.url(&format!("/api/Tournament/draw?tournamentId={unknown}"))).send().await.unwrap(), 404),
        (http.get(server.url(&format!("/api/Tournament/qr?tournamentId={id}&format=gif"))).send().await.unwrap(), 400),
    ];
    for (i, (response, status)) in cases.into_iter().enumerate() {
        assert_eq!(response.status(), status, "case {i}");
        assert_error(response, status).await;
    }
    assert_eq!(std::fs::metadata(&log).unwrap().len(), size_before, "nothing was written");
    let state = tournament(&http, &server.base, &id).await;
    assert_eq!(state["version"], 2);
}

#[tokio::test]
async fn property_names_and_paths_match_case_insensitively_and_limits_may_be_strings() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let http = client();
    let r = http
        .post(server.url("/API/TOURNAMENT/CREATE"))
        .json(&json!({"NAME": "Cases", "PlayerLimit": "3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id: String = r.json().await.unwrap();
    let r = http
        .post(server.url("/api/tournament/assignplayer"))
        .json(&json!({"Name": "A", "SURNAME": "B", "TournamentID": id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let state: Value =
        http.get(server.url(&format!("/api/Tournament?ID={id}"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(state["playerLimit"], 3);
    assert_eq!(state["players"].as_array().unwrap().len(), 1);

    // A whole number written as a float is still that number (JSON Schema's `integer`).
    let r = http
        .post(server.url("/api/Tournament/create"))
        .header("content-type", "application/json")
        .body(r#"{"name": "Floats", "playerLimit": 4.0}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id: String = r.json().await.unwrap();
    assert_eq!(tournament(&http, &server.base, &id).await["playerLimit"], 4);
    let r = http
        .post(server.url("/api/Tournament/create"))
        .header("content-type", "application/json")
        .body(r#"{"name": "Fractions", "playerLimit": 4.5}"#)
        .send()
        .await
        .unwrap();
    assert_error(r, 400).await;
}

#[tokio::test]
async fn data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let http = client();
    let id = create(&http, &server, "Durable", 2).await;
    assert_eq!(join(&http, &server.base, &id, "Anna", "Nowak").await.status(), 200);
    assert!(server.stop().await.success());

    let server = Server::start(dir.path(), &[]).await;
    let state = tournament(&http, &server.base, &id).await;
    assert_eq!(state["tournamentName"], "Durable");
    assert_eq!(state["players"][0]["name"], "Anna");
    let r = http
        .post(server.url("/api/Tournament/create"))
        .json(&json!({"name": "Durable", "playerLimit": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "the name is still claimed");
}

#[tokio::test]
async fn qr_codes_encode_the_join_link() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("LCT_PUBLIC_URL", "https://lobby.example/")]).await;
    let http = client();
    let id = create(&http, &server, "Scan me", 2).await;
    let svg = http.get(server.url(&format!("/api/Tournament/qr?tournamentId={id}&format=svg"))).send().await.unwrap();
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    let svg = svg.text().await.unwrap();
    assert!(svg.contains("<svg"), "{}", &svg[..100.min(svg.len())]);
    let png = http.get(server.url(&format!("/api/Tournament/qr?tournamentId={id}&format=png"))).send().await.unwrap();
    assert_eq!(png.headers()["content-type"], "image/png");
    let bytes = png.bytes().await.unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    // The same link encodes to the same modules, so the PNG matches a direct rendering.
    let expected = qr_png(&format!("https://lobby.example/player/register/{id}"));
    assert_eq!(bytes.as_ref(), expected.as_slice());
}

fn qr_png(link: &str) -> Vec<u8> {
    api::qr::render_png(&qrcode::QrCode::new(link.as_bytes()).unwrap())
}

#[tokio::test]
async fn health_openapi_and_swagger_ui() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let http = client();
    let live = http.get(server.url("/liveness")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(live.text().await.unwrap(), "Healthy");
    let ready = http.get(server.url("/readiness")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["dependencies"]["eventStore"]["status"], "Healthy");

    let doc: Value = http.get(server.url("/swagger/v1/swagger.json")).send().await.unwrap().json().await.unwrap();
    let routes = [
        ("/api/Tournament/create", "post", &["200", "400", "409", "503"][..]),
        ("/api/Tournament", "get", &["200", "400", "404", "503"]),
        ("/api/Tournament/assignPlayer", "post", &["200", "400", "404", "409", "503"]),
        ("/api/Tournament/draw", "get", &["200", "400", "404", "409", "503"]),
        ("/api/Tournament/qr", "get", &["200", "400", "404"]),
        ("/api/Team", "get", &["200", "400", "404", "503"]),
        ("/api/Team/select", "post", &["200", "400", "404", "409", "503"]),
        ("/liveness", "get", &["200"]),
    ];
    for (path, method, statuses) in routes {
        let responses = &doc["paths"][path][method]["responses"];
        for status in statuses {
            assert!(responses.get(status).is_some(), "{method} {path} documents {status}: {responses}");
        }
    }
    let ui = http.get(server.url("/swagger/")).send().await.unwrap();
    assert_eq!(ui.status(), 200);
    let html = ui.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    for asset in ["/swagger/swagger-ui-bundle.js", "/swagger/swagger-ui.css", "/swagger/swagger-initializer.js"] {
        let r = http.get(server.url(asset)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
    }
    let init = http.get(server.url("/swagger/swagger-initializer.js")).send().await.unwrap().text().await.unwrap();
    assert!(init.contains("/swagger/v1/swagger.json"), "{init}");
}

#[tokio::test]
async fn cors_answers_preflights_for_the_front_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("LCT_CORS_ORIGINS", "http://front.example")]).await;
    let http = client();
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, server.url("/api/Tournament/create"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let ok = preflight("http://front.example").await.unwrap();
    assert!(ok.status().is_success());
    assert_eq!(ok.headers()["access-control-allow-origin"], "http://front.example");
    let other = preflight("http://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}
