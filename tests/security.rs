//! Security end to end, against the real binary: the token key file, idempotency keys that
//! cannot be guessed, `LCT_V1`, names, cross-site WebSocket upgrades, client addresses behind a
//! proxy, and tokens across replicas.

mod common;

use common::redis_server::RedisServer;
use common::ws::{expect_refused, SignalR};
use common::*;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn v2_post(server: &Server, path: &str, token: Option<&str>, body: Value) -> reqwest::Response {
    let mut request = client().post(server.url(path)).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// Creates a tournament through v2: its id and organiser token.
async fn v2_create(server: &Server, name: &str, limit: u32) -> (String, String) {
    let r = v2_post(server, "/api/v2/tournaments", None, json!({"name": name, "playerLimit": limit})).await;
    assert_eq!(r.status(), 201, "create {name}");
    let body: Value = r.json().await.unwrap();
    (body["id"].as_str().unwrap().to_owned(), body["organiserToken"].as_str().unwrap().to_owned())
}

/// Joins through v2: the player's token.
async fn v2_join(server: &Server, id: &str, name: &str, surname: &str) -> String {
    let r =
        v2_post(server, &format!("/api/v2/tournaments/{id}/players"), None, json!({"name": name, "surname": surname}))
            .await;
    assert_eq!(r.status(), 201, "join {name}");
    r.json::<Value>().await.unwrap()["playerToken"].as_str().unwrap().to_owned()
}

async fn v2_version(server: &Server, id: &str) -> u64 {
    let body: Value = json_of(client().get(server.url(&format!("/api/v2/tournaments/{id}")))).await;
    body["version"].as_u64().unwrap()
}

/// The problem type of a v2 error answer, checking its status.
async fn problem_type(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    response.json::<Value>().await.unwrap()["type"].as_str().unwrap().to_owned()
}

// --- the token key file -------------------------------------------------------------------------

#[tokio::test]
async fn the_token_key_file_is_created_readable_by_its_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let _server = Server::start(dir.path(), &[]).await;
    let mode = std::fs::metadata(dir.path().join("token.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "token.key has mode {mode:o}");
}

#[tokio::test]
async fn a_token_key_file_readable_by_others_is_reported_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.key");
    std::fs::write(&path, "ab".repeat(32)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let warned = server
        .log_lines()
        .into_iter()
        .any(|line| line["log.level"] == "warn" && line["message"].as_str().unwrap_or_default().contains("token.key"));
    assert!(warned, "no start-up warning about the readable key file");
    // The existing key is still the one in use: it is reported, not replaced.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "ab".repeat(32));
}

// --- idempotency keys ---------------------------------------------------------------------------

#[tokio::test]
async fn keys_of_requests_answered_with_a_token_must_be_unguessable() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("LCT_RATE_LIMIT_COMMANDS", "0")]).await;
    let create = |key: &'static str, name: &'static str| {
        client()
            .post(server.url("/api/v2/tournaments"))
            .header("Idempotency-Key", key)
            .json(&json!({"name": name, "playerLimit": 2}))
            .send()
    };
    for short in ["key-1", "abcdefghijklmnopqrstu", "abcdefghijklmnopqrstu!", "abcdefghij klmnopqrstuv"] {
        let r = create(short, "Guessable night").await.unwrap();
        assert_eq!(problem_type(r, 400).await, "urn:lct:problem:invalid-idempotency-key", "{short:?}");
    }
    let first = create("Q2xhcmEncyBuaWdodCBvdXQ", "Unguessable night").await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = create("Q2xhcmEncyBuaWdodCBvdXQ", "Unguessable night").await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<Value>().await.unwrap(), first);

    let id = first["id"].as_str().unwrap();
    let join = |key: &'static str| {
        client()
            .post(server.url(&format!("/api/v2/tournaments/{id}/players")))
            .header("Idempotency-Key", key)
            .json(&json!({"name": "Anna", "surname": "Nowak"}))
            .send()
    };
    assert_eq!(problem_type(join("join-anna").await.unwrap(), 400).await, "urn:lct:problem:invalid-idempotency-key");
    assert_eq!(join("0f8e2c4a9b7d41c6a3e5f7091b2d4c6e").await.unwrap().status(), 201);
    // Answers without a token take any key.
    let rename = client()
        .post(server.url(&format!("/api/v2/tournaments/{id}/rename")))
        .bearer_auth(first["organiserToken"].as_str().unwrap())
        .header("Idempotency-Key", "rename-1")
        .json(&json!({"name": "Renamed night"}))
        .send()
        .await
        .unwrap();
    assert_eq!(rename.status(), 200);
}

#[tokio::test]
async fn a_players_key_is_never_answered_with_another_players_stored_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("LCT_RATE_LIMIT_COMMANDS", "0")]).await;
    let (id, _) = v2_create(&server, "Pipes night", 4).await;
    // Names may hold '|': these two players differ, though "a|b" + "c" and "a" + "b|c" read
    // alike once joined with it.
    let mallory = v2_join(&server, &id, "a|b", "c").await;
    let victim = v2_join(&server, &id, "a", "b|c").await;
    let select = |token: String, team: &'static str| {
        client()
            .post(server.url(&format!("/api/v2/tournaments/{id}/selection")))
            .bearer_auth(token)
            .header("Idempotency-Key", "pick-1")
            .json(&json!({"team": team}))
            .send()
    };
    let first = select(mallory, "Chelsea").await.unwrap();
    assert_eq!(first.status(), 200);
    let answer = select(victim, "Chelsea").await.unwrap();
    assert!(answer.headers().get("idempotent-replayed").is_none(), "the victim got Mallory's stored answer");
    // The victim's own command ran: the team is already taken, which the victim is told.
    assert_eq!(problem_type(answer, 409).await, "urn:lct:problem:team-already-selected");
}

// --- LCT_V1 -------------------------------------------------------------------------------------

#[tokio::test]
async fn v1_read_only_serves_reads_and_refuses_writes_on_rest_and_hub_alike() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("LCT_V1", "read-only")]).await;
    let http = client();
    let (id, organiser) = v2_create(&server, "Read-only night", 2).await;
    let anna = v2_join(&server, &id, "Anna", "Nowak").await;
    let before = v2_version(&server, &id).await;

    assert_eq!(tournament(&http, &server.base, &id).await["players"][0]["name"], "Anna");
    let teams = http.get(server.url(&format!("/api/Team?tournamentId={id}"))).send().await.unwrap();
    assert_eq!(teams.status(), 200);
    let qr = http.get(server.url(&format!("/api/Tournament/qr?tournamentId={id}"))).send().await.unwrap();
    assert_eq!(qr.status(), 200);

    let refused = http
        .post(server.url("/api/Tournament/create"))
        .json(&json!({"name": "Another", "playerLimit": 2}))
        .send()
        .await
        .unwrap();
    assert!(assert_error(refused, 403).await.contains("read-only"));
    assert!(assert_error(join(&http, &server.base, &id, "Ben", "Kowal").await, 403).await.contains("read-only"));
    let select = select(&http, &server.base, &id, "Anna", "Nowak", "PSG").await;
    assert!(assert_error(select, 403).await.contains("read-only"));
    let draw = http.get(server.url(&format!("/api/Tournament/draw?tournamentId={id}"))).send().await.unwrap();
    assert!(assert_error(draw, 403).await.contains("read-only"));

    // The hub delivers, but its invocations are refused with a completion error. Clients
    // negotiate first (the official client does by default): that is no write.
    let negotiated = http
        .post(server.url(&format!("/hubs/actions/negotiate?tournamentId={id}&negotiateVersion=1")))
        .send()
        .await
        .unwrap();
    assert_eq!(negotiated.status(), 200, "negotiation refused in read-only");
    let token = negotiated.json::<Value>().await.unwrap()["connectionToken"].as_str().unwrap().to_owned();
    let hub_url = format!("{}/hubs/actions?tournamentId={id}&id={token}", server.base.replace("http://", "ws://"));
    let mut hub = SignalR::connect_url(&hub_url).await;
    hub.click(Some("1"), "PSG", "Anna", "Nowak").await;
    let completion = hub.next_completion().await;
    assert_eq!(completion["invocationId"], "1");
    assert!(completion["error"].as_str().unwrap().contains("read-only"), "{completion}");
    assert_eq!(v2_version(&server, &id).await, before, "nothing was appended through v1");

    // v2 keeps working, and its events reach the v1 hub.
    let r = v2_post(&server, &format!("/api/v2/tournaments/{id}/selection"), Some(&anna), json!({"team": "PSG"})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(hub.next_payload(&id).await["type"], "TeamSelected");
    // A draw already made is a read: v1 answers it.
    let ben = v2_join(&server, &id, "Ben", "Kowal").await;
    v2_post(&server, &format!("/api/v2/tournaments/{id}/selection"), Some(&ben), json!({"team": "Chelsea"})).await;
    let drawn = v2_post(&server, &format!("/api/v2/tournaments/{id}/draw"), Some(&organiser), json!({})).await;
    assert_eq!(drawn.status(), 200);
    let draw = http.get(server.url(&format!("/api/Tournament/draw?tournamentId={id}"))).send().await.unwrap();
    assert_eq!(draw.status(), 200);
    assert_eq!(draw.json::<Vec<Value>>().await.unwrap().len(), 2);
}

#[tokio::test]
async fn v1_off_refuses_its_routes_and_the_hub_while_v2_and_the_web_client_work() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("LCT_V1", "off")]).await;
    let http = client();
    let (id, _) = v2_create(&server, "v2 only night", 2).await;
    let get = http.get(server.url(&format!("/api/Tournament?id={id}"))).send().await.unwrap();
    assert!(assert_error(get, 404).await.contains("turned off"));
    let create = http
        .post(server.url("/api/Tournament/create"))
        .json(&json!({"name": "Another", "playerLimit": 2}))
        .send()
        .await
        .unwrap();
    assert!(assert_error(create, 404).await.contains("turned off"));
    let negotiate = http.post(server.url("/hubs/actions/negotiate?negotiateVersion=1")).send().await.unwrap();
    assert!(assert_error(negotiate, 404).await.contains("turned off"));
    let ws = server.base.replace("http://", "ws://");
    expect_refused(&format!("{ws}/hubs/actions?tournamentId={id}"), 404).await;
    // The v2 API, its live socket and the QR code of the web client are there.
    assert!(v2_join(&server, &id, "Anna", "Nowak").await.starts_with("p."));
    let qr = http.get(server.url(&format!("/api/v2/tournaments/{id}/qr?format=svg"))).send().await.unwrap();
    assert_eq!(qr.status(), 200);
    assert_eq!(qr.headers()["content-type"], "image/svg+xml");
    let live = tokio_tungstenite::connect_async(format!("{ws}/api/v2/tournaments/{id}/live")).await;
    assert!(live.is_ok());
    assert_eq!(http.get(server.url("/")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn an_unknown_v1_mode_stops_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_lct"))
        .env_clear()
        .env("LCT_LISTEN", "127.0.0.1:0")
        .env("LCT_DATA_DIR", dir.path())
        .env("LCT_V1", "closed")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .expect("lct refuses to start instead of serving")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("read-only") && stderr.contains("off"), "{stderr}");
}

// --- names --------------------------------------------------------------------------------------

#[tokio::test]
async fn names_need_a_visible_character_and_no_bidirectional_controls() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("LCT_RATE_LIMIT_COMMANDS", "0")]).await;
    let http = client();
    let create_v1 = |name: &str| {
        http.post(server.url("/api/Tournament/create")).json(&json!({"name": name, "playerLimit": 2})).send()
    };
    for invisible in ["\u{200B}", "\u{FEFF}\u{200D}", "\u{0301}\u{0301}", "\u{3164}", "\u{200C}\u{2060}"] {
        let message = assert_error(create_v1(invisible).await.unwrap(), 400).await;
        assert!(message.contains("visible character"), "{invisible:?}: {message}");
    }
    for spoof in ["Anna\u{202E}kciN", "\u{2066}Ben\u{2069}", "Night\u{200F}", "\u{061C}x"] {
        let message = assert_error(create_v1(spoof).await.unwrap(), 400).await;
        assert!(message.contains("bidirectional"), "{spoof:?}: {message}");
    }
    for emoji in ["👨\u{200D}👩\u{200D}👧 night", "🏳\u{FE0F}\u{200D}🌈", "Zoë", "नमस्ते"] {
        assert_eq!(create_v1(emoji).await.unwrap().status(), 200, "{emoji:?}");
    }
    let (id, _) = v2_create(&server, "Names night", 2).await;
    let r = v2_post(
        &server,
        &format!("/api/v2/tournaments/{id}/players"),
        None,
        json!({"name": "Anna", "surname": "\u{200B}"}),
    )
    .await;
    assert_eq!(problem_type(r, 400).await, "urn:lct:problem:invalid-request");
}

// --- cross-site WebSocket hijacking -------------------------------------------------------------

/// Opens a WebSocket to `url` with an `Origin` header (none when `origin` is `None`): the status
/// of the refusal, or 101 when it was upgraded.
async fn upgrade_status(url: &str, origin: Option<&str>) -> u16 {
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request.headers_mut().insert("Origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("{url}: {other}"),
    }
}

#[tokio::test]
async fn with_cors_origins_set_websocket_upgrades_from_other_sites_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("LCT_CORS_ORIGINS", "https://front.example")]).await;
    let id = create(&client(), &server, "Origins night", 2).await;
    let ws = server.base.replace("http://", "ws://");
    let own_origin = server.base.clone();
    for url in [format!("{ws}/hubs/actions?tournamentId={id}"), format!("{ws}/api/v2/tournaments/{id}/live")] {
        assert_eq!(upgrade_status(&url, Some("https://evil.example")).await, 403, "{url}");
        assert_eq!(upgrade_status(&url, Some("null")).await, 403, "{url}");
        assert_eq!(upgrade_status(&url, Some("https://front.example")).await, 101, "{url}");
        assert_eq!(upgrade_status(&url, Some(&own_origin)).await, 101, "the web client's own origin: {url}");
        assert_eq!(upgrade_status(&url, None).await, 101, "clients that are not browsers: {url}");
    }
}

#[tokio::test]
async fn without_cors_origins_any_site_may_upgrade_as_the_original_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let id = create(&client(), &server, "Open night", 2).await;
    let url = format!("{}/hubs/actions?tournamentId={id}", server.base.replace("http://", "ws://"));
    assert_eq!(upgrade_status(&url, Some("https://anywhere.example")).await, 101);
}

// --- client addresses behind a proxy ------------------------------------------------------------

/// A v2 create as it arrives from the proxy: `X-Forwarded-For` as the proxy forwards it.
async fn create_through_proxy(server: &Server, forwarded_for: &str) -> u16 {
    let name = format!("Proxy night {}", uuid::Uuid::new_v4().simple());
    client()
        .post(server.url("/api/v2/tournaments"))
        .header("X-Forwarded-For", forwarded_for)
        .json(&json!({"name": name, "playerLimit": 2}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn clients_behind_one_proxy_are_limited_apart_and_a_forged_entry_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Half a command a second: a burst of one, then refused for two seconds.
    let server =
        Server::start(dir.path(), &[("LCT_CLIENT_IP_HEADER", "x-forwarded-for"), ("LCT_RATE_LIMIT_COMMANDS", "0.5")])
            .await;
    // The proxy appends the address it saw to whatever the client sent.
    assert_eq!(create_through_proxy(&server, "198.51.100.7").await, 201);
    assert_eq!(create_through_proxy(&server, "198.51.100.7").await, 429);
    assert_eq!(create_through_proxy(&server, "198.51.100.8").await, 201, "another client has its own limit");
    for forged in 0..5 {
        let header = format!("203.0.113.{forged}, 198.51.100.7");
        assert_eq!(create_through_proxy(&server, &header).await, 429, "forged left-most entry {header}");
    }
    // An IPv6 client is limited by its /64: a host may send from any address of it.
    assert_eq!(create_through_proxy(&server, "2001:db8:1:2::1").await, 201);
    assert_eq!(create_through_proxy(&server, "2001:db8:1:2::beef").await, 429, "another address of the same /64");
    assert_eq!(create_through_proxy(&server, "2001:db8:1:3::1").await, 201, "another /64");
}

#[tokio::test]
async fn with_two_trusted_proxies_the_client_is_the_second_entry_from_the_right() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            ("LCT_CLIENT_IP_HEADER", "x-forwarded-for"),
            ("LCT_TRUSTED_PROXY_HOPS", "2"),
            ("LCT_RATE_LIMIT_COMMANDS", "0.5"),
        ],
    )
    .await;
    assert_eq!(create_through_proxy(&server, "forged, 198.51.100.9, 10.0.0.1").await, 201);
    assert_eq!(
        create_through_proxy(&server, "other, 198.51.100.9, 10.0.0.2").await,
        429,
        "same client, other balancer"
    );
    assert_eq!(create_through_proxy(&server, "forged, 198.51.100.10, 10.0.0.1").await, 201);
}

// --- tokens across replicas ---------------------------------------------------------------------

/// A data directory of its own that shares the event log of `shared`: two replicas that share
/// their event store (as they share MongoDB in production) but not their data directories.
fn replica_dir(shared: &std::path::Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::OpenOptions::new().create(true).append(true).open(shared.join("events.log")).unwrap();
    std::os::unix::fs::symlink(shared.join("events.log"), dir.path().join("events.log")).unwrap();
    dir
}

#[tokio::test]
async fn without_a_configured_secret_a_token_from_one_pod_works_on_another() {
    let redis = RedisServer::start().await;
    let store = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (replica_dir(store.path()), replica_dir(store.path()));
    let env = [("LCT_REDIS_URL", redis.url.as_str())];
    let pod_a = Server::start(dir_a.path(), &env).await;
    let pod_b = Server::start(dir_b.path(), &env).await;

    let (id, organiser) = v2_create(&pod_a, "Two pods night", 2).await;
    let anna = v2_join(&pod_b, &id, "Anna", "Nowak").await;
    let r = v2_post(&pod_a, &format!("/api/v2/tournaments/{id}/selection"), Some(&anna), json!({"team": "PSG"})).await;
    assert_eq!(r.status(), 200, "a player token from pod B on pod A");
    let r = v2_post(&pod_b, &format!("/api/v2/tournaments/{id}/rename"), Some(&organiser), json!({"name": "Renamed"}))
        .await;
    assert_eq!(r.status(), 200, "the organiser token from pod A on pod B");

    // A pod started later, in a fresh directory, agrees too; the tokens issued so far stay valid.
    drop(pod_a);
    let dir_c = replica_dir(store.path());
    let pod_c = Server::start(dir_c.path(), &env).await;
    let r =
        v2_post(&pod_c, &format!("/api/v2/tournaments/{id}/rename"), Some(&organiser), json!({"name": "Again"})).await;
    assert_eq!(r.status(), 200);
    // And a forged token is still refused.
    let flipped = if organiser.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{flipped}", &organiser[..organiser.len() - 1]);
    let r =
        v2_post(&pod_c, &format!("/api/v2/tournaments/{id}/rename"), Some(&forged), json!({"name": "Forged"})).await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn behind_a_proxy_the_operator_endpoints_answer_only_requests_that_did_not_come_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("LCT_CLIENT_IP_HEADER", "X-Forwarded-For")]).await;
    let http = client();
    for path in ["/metrics", "/cluster", "/readiness"] {
        // Prometheus, probes and operators reach the pod directly.
        let direct = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(direct.status(), 200, "{path} direct");
        // Through the Ingress (which always adds the header), nobody learns the pods' addresses
        // and counts, or the causes of a dependency's failure.
        let proxied = http.get(server.url(path)).header("X-Forwarded-For", "203.0.113.9").send().await.unwrap();
        assert_eq!(proxied.status(), 404, "{path} through the proxy");
        let body = proxied.text().await.unwrap();
        assert!(!body.contains("lct_") && !body.contains("pods") && !body.contains("dependencies"), "{path}: {body}");
    }
    // The rest of the API is served through the proxy as ever.
    let liveness = http.get(server.url("/liveness")).header("X-Forwarded-For", "203.0.113.9").send().await.unwrap();
    assert_eq!(liveness.status(), 200);
}

#[tokio::test]
async fn hub_invocations_count_against_their_client_s_command_rate_across_its_connections() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("LCT_CLIENT_IP_HEADER", "X-Forwarded-For"),
        // One command every two seconds per client address; each connection alone may invoke
        // a hundred times a second.
        ("LCT_RATE_LIMIT_COMMANDS", "0.5"),
        ("LCT_WS_INVOCATIONS_PER_SECOND", "100"),
    ];
    let server = Server::start(dir.path(), &env).await;
    let organiser = |request: reqwest::RequestBuilder| request.header("X-Forwarded-For", "198.51.100.1");
    let http = client();
    let created = organiser(http.post(server.url("/api/Tournament/create")))
        .json(&json!({"name": "Flood night", "playerLimit": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let tid: String = created.json().await.unwrap();
    let joined = http
        .post(server.url("/api/Tournament/assignPlayer"))
        .header("X-Forwarded-For", "198.51.100.2")
        .json(&json!({"tournamentId": tid, "name": "Anna", "surname": "Nowak"}))
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status(), 200);
    // One client address opens four hub connections and clicks ten times on each.
    let url = format!("{}/hubs/actions?tournamentId={tid}", server.base.replace("http://", "ws://"));
    let mut hubs = Vec::new();
    for _ in 0..4 {
        let mut request = url.as_str().into_client_request().unwrap();
        request.headers_mut().insert("X-Forwarded-For", "203.0.113.7".parse().unwrap());
        hubs.push(SignalR::connect_request(request).await);
    }
    let mut allowed = 0;
    for (n, hub) in hubs.iter_mut().enumerate() {
        for i in 0..10 {
            hub.click(Some(&format!("{n}-{i}")), "PSG", "Anna", "Nowak").await;
            let completion = hub.next_completion().await;
            if completion.get("error").is_none() {
                allowed += 1;
            } else {
                assert_eq!(completion["error"], "Too many invocations; slow down.", "{completion}");
            }
        }
    }
    // The burst (one) and a command every two seconds of the test's run, far fewer than forty.
    assert!(allowed < 20, "{allowed} of 40 clicks of one client address were taken");
}

#[tokio::test]
async fn the_idempotency_store_holds_no_token_yet_a_retry_gets_its_token() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = [("LCT_REDIS_URL", redis.url.as_str()), ("LCT_TOKEN_SECRET", "a secret only the pods know, 32+")];
    let server = Server::start(dir.path(), &env).await;
    let keyed = |path: &str, key: &str, body: Value| {
        client().post(server.url(path)).header("Idempotency-Key", key).json(&body).send()
    };
    let create_key = "Xq3v9Lr2Tn8Kw5Zb7Yc4Md1Pf6Hg0Js";
    let created =
        keyed("/api/v2/tournaments", create_key, json!({"name": "Stored night", "playerLimit": 2})).await.unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let (id, organiser) = (created["id"].as_str().unwrap(), created["organiserToken"].as_str().unwrap());
    let join_key = "Bn4Wc8Rt1Gy6Uz3Ia9Oe5Lp2Kd7Fh0Vm";
    let players = format!("/api/v2/tournaments/{id}/players");
    let joined = keyed(&players, join_key, json!({"name": "Anna", "surname": "Nowak"})).await.unwrap();
    assert_eq!(joined.status(), 201);
    let joined: Value = joined.json().await.unwrap();
    let anna = joined["playerToken"].as_str().unwrap();

    // Whoever reads Redis (a replica, a backup, MONITOR) finds no token to act with.
    let keys: Vec<String> = redis
        .cli(&["--scan", "--pattern", "lct:idem:*"])
        .lines()
        .map(str::to_owned)
        .filter(|k| !k.is_empty())
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in &keys {
        let stored = redis.cli(&["GET", key]);
        for token in [organiser, anna] {
            assert!(!stored.contains(&token[2..]), "{key} holds a token: {stored}");
        }
    }

    // A retry with the key gets the whole answer, token included.
    let again =
        keyed("/api/v2/tournaments", create_key, json!({"name": "Stored night", "playerLimit": 2})).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), created);
    let again = keyed(&players, join_key, json!({"name": "Anna", "surname": "Nowak"})).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<Value>().await.unwrap(), joined);
}
