//! Fan-out across pods: two or three `lct` processes sharing one data directory and a
//! `redis-server` of the test's own; clients on every pod, commands to any pod.

mod common;

use common::redis_server::RedisServer;
use common::ws::{Live, SignalR};
use common::*;
use serde_json::Value;

async fn pods(count: usize, dir: &std::path::Path, redis: &RedisServer) -> Vec<Server> {
    let mut pods = Vec::new();
    for _ in 0..count {
        pods.push(Server::start(dir, &[("LCT_REDIS_URL", redis.url.as_str())]).await);
    }
    pods
}

fn numsub(redis: &RedisServer, tournament: &str) -> u32 {
    let channel = format!("lct:tournament:{tournament}");
    let out = redis.cli(&["PUBSUB", "NUMSUB", &channel]);
    out.lines().nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("NUMSUB answer: {out}"))
}

/// Waits (with a deadline) until `count` pods listen on the tournament's channel.
async fn wait_for_numsub(redis: &RedisServer, tournament: &str, count: u32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while numsub(redis, tournament) != count {
        assert!(
            std::time::Instant::now() < deadline,
            "expected {count} subscribed pods, got {}",
            numsub(redis, tournament)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// How many bus messages pod `server` has received (its own publications heard back included).
async fn bus_messages_heard(http: &reqwest::Client, server: &Server) -> f64 {
    let text = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("lct_pubsub_lag_seconds_count ")?.parse().ok())
        .expect("the pub/sub lag histogram")
}

/// Receives v2 messages until `last` and checks versions `first..=last` arrive once, in order.
async fn expect_versions(live: &mut Live, first: u64, last: u64) -> Vec<Value> {
    let mut seen = Vec::new();
    while seen.last().map(|m: &Value| m["version"].as_u64().unwrap()) != Some(last) {
        let message = live.next().await.expect("live socket open");
        if message.get("version").is_some() {
            seen.push(message);
        }
    }
    let versions: Vec<u64> = seen.iter().map(|m| m["version"].as_u64().unwrap()).collect();
    assert_eq!(versions, (first..=last).collect::<Vec<_>>(), "every version once, in order");
    seen
}

/// Receives SignalR payloads and returns their types and player names, in order.
async fn expect_payloads(client: &mut SignalR, tournament: &str, count: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while out.len() < count {
        let p = client.next_payload(tournament).await;
        let who = p["name"].as_str().or(p["playerName"].as_str()).unwrap_or_default().to_owned();
        out.push((p["type"].as_str().unwrap().to_owned(), who));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_client_on_every_pod_gets_every_event_once_in_order() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pods = pods(3, dir.path(), &redis).await;
    let (a, b, c) = (&pods[0], &pods[1], &pods[2]);
    let http = client();
    let id = create(&http, a, "Across pods", 10).await;
    let other = create(&http, a, "Other lobby", 2).await;

    let mut signalr = vec![
        SignalR::connect(&a.base, &id).await,
        SignalR::connect(&a.base, &id).await,
        SignalR::connect(&b.base, &id).await,
    ];
    let mut lives = vec![Live::connect(&a.base, &id, None).await, Live::connect(&b.base, &id, None).await];
    let mut bystander = SignalR::connect(&b.base, &other).await;
    // Pods A and B serve the tournament, C serves nobody: C is not subscribed to its channel.
    // (A client is answered once its pod listens on the channel.)
    wait_for_numsub(&redis, &id, 2).await;
    assert_eq!(redis.cli(&["PUBSUB", "NUMPAT"]).trim(), "0", "no pattern subscriptions");

    let bases = [a.base.clone(), b.base.clone(), c.base.clone()];
    let mut expected = Vec::new();
    for i in 0..10 {
        let name = format!("P{i}");
        assert_eq!(join(&http, &bases[i % 3], &id, &name, "S").await.status(), 200);
        expected.push(("PlayerAssigned".to_owned(), name));
    }
    for i in 0..10 {
        let name = format!("P{i}");
        assert_eq!(select(&http, &bases[(i + 1) % 3], &id, &name, "S", TEAMS[i]).await.status(), 200);
        expected.push(("TeamSelected".to_owned(), name));
    }
    let draw = http.get(format!("{}/api/Tournament/draw?tournamentId={id}", bases[2])).send().await.unwrap();
    assert_eq!(draw.status(), 200);
    expected.push(("TeamsDrawn".to_owned(), String::new()));

    for client in &mut signalr {
        assert_eq!(expect_payloads(client, &id, expected.len()).await, expected);
    }
    for live in &mut lives {
        expect_versions(live, 2, 22).await;
    }
    // Nothing of this tournament reached the other lobby's client.
    assert_eq!(join(&http, &c.base, &other, "Own", "Event").await.status(), 200);
    assert_eq!(bystander.next_payload(&other).await["name"], "Own");

    // When the last client of a pod leaves, the pod unsubscribes.
    drop(signalr.pop());
    drop(lives.pop());
    wait_for_numsub(&redis, &id, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_click_reaches_every_client_on_every_pod_exactly_once() {
    // A pod hears its own publications back from Redis; they must not reach its clients twice.
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pods = pods(2, dir.path(), &redis).await;
    let (a, b) = (&pods[0], &pods[1]);
    let http = client();
    let id = create(&http, a, "Clicks across pods", 10).await;
    assert_eq!(join(&http, &a.base, &id, "Anna", "Nowak").await.status(), 200);

    let mut clicker = SignalR::connect(&a.base, &id).await;
    let mut others = [
        SignalR::connect(&a.base, &id).await,
        SignalR::connect(&b.base, &id).await,
        SignalR::connect(&b.base, &id).await,
    ];
    wait_for_numsub(&redis, &id, 2).await;
    for (i, team) in TEAMS[..3].iter().enumerate() {
        clicker.click(Some(&i.to_string()), team, "Anna", "Nowak").await;
        let completion = clicker.next_completion().await;
        assert!(completion.get("error").is_none(), "{completion}");
    }
    // Pod A has heard its own three clicks back from Redis (it counts every bus message it
    // receives); a later message through Redis from the other pod then marks the end.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while bus_messages_heard(&http, a).await < 3.0 {
        assert!(std::time::Instant::now() < deadline, "pod A never heard its clicks back");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(join(&http, &b.base, &id, "Marker", "Last").await.status(), 200);

    for client in others.iter_mut().chain(std::iter::once(&mut clicker)) {
        let mut clicked = Vec::new();
        loop {
            let payload = client.next_payload(&id).await;
            match payload["type"].as_str().unwrap() {
                "TeamClicked" => clicked.push(payload["clickedTeams"][0]["team"].as_str().unwrap().to_owned()),
                "PlayerAssigned" if payload["name"] == "Marker" => break,
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(clicked, TEAMS[..3].to_vec(), "each click once, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_outage_loses_nothing_and_commands_keep_working() {
    let mut redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pods = pods(2, dir.path(), &redis).await;
    let (a, b) = (&pods[0], &pods[1]);
    let http = client();
    let id = create(&http, a, "Outage", 10).await;
    let mut live_a = Live::connect(&a.base, &id, None).await;
    let mut live_b = Live::connect(&b.base, &id, None).await;
    let mut signalr_a = SignalR::connect(&a.base, &id).await;

    for i in 0..3 {
        assert_eq!(
            join(&http, if i % 2 == 0 { &a.base } else { &b.base }, &id, &format!("P{i}"), "S").await.status(),
            200
        );
    }
    expect_versions(&mut live_a, 2, 4).await;
    expect_versions(&mut live_b, 2, 4).await;

    redis.kill().await;
    for i in 3..7 {
        let response = join(&http, if i % 2 == 0 { &a.base } else { &b.base }, &id, &format!("P{i}"), "S").await;
        assert_eq!(response.status(), 200, "commands work while Redis is down");
    }
    // The outage shows as degraded (once the pod has noticed it), still in service.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let response = http.get(a.url("/readiness")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let ready: Value = response.json().await.unwrap();
        if ready["dependencies"]["bus"]["status"] == "Degraded" {
            assert_eq!(ready["status"], "Degraded");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the bus outage never showed: {ready}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The hub still takes clients that negotiate first (as the official client does by
    // default), with a token one pod issued and another accepts.
    let negotiated = http
        .post(b.url(&format!("/hubs/actions/negotiate?tournamentId={id}&negotiateVersion=1")))
        .send()
        .await
        .unwrap();
    assert_eq!(negotiated.status(), 200, "negotiation while Redis is down");
    let token = negotiated.json::<Value>().await.unwrap()["connectionToken"].as_str().unwrap().to_owned();
    let hub_a = a.base.replace("http://", "ws://");
    let mut negotiated_a = SignalR::connect_url(&format!("{hub_a}/hubs/actions?tournamentId={id}&id={token}")).await;

    redis.restart().await;
    for i in 7..10 {
        assert_eq!(
            join(&http, if i % 2 == 0 { &a.base } else { &b.base }, &id, &format!("P{i}"), "S").await.status(),
            200
        );
    }
    expect_versions(&mut live_a, 5, 11).await;
    expect_versions(&mut live_b, 5, 11).await;
    let names: Vec<String> = expect_payloads(&mut signalr_a, &id, 10).await.into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, (0..10).map(|i| format!("P{i}")).collect::<Vec<_>>());
    // It may also get events of the outage that its pod had not delivered yet (those made on
    // the other pod), each once, in order, then every later one.
    let mut names = Vec::new();
    while names.last().map(String::as_str) != Some("P9") {
        names.push(expect_payloads(&mut negotiated_a, &id, 1).await.remove(0).1);
    }
    let later: Vec<&str> = names.iter().map(String::as_str).filter(|n| ["P7", "P8", "P9"].contains(n)).collect();
    assert_eq!(later, ["P7", "P8", "P9"], "{names:?}");
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "nothing twice: {names:?}");
}

/// During a rolling deploy, negotiation and connection may reach pods of two releases: the
/// previous one kept its tokens in Redis alone and took each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn negotiate_tokens_work_across_releases() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pods = pods(1, dir.path(), &redis).await;
    let http = client();
    let id = create(&http, &pods[0], "Rolling", 4).await;
    let ws = pods[0].base.replace("http://", "ws://");

    // A token a previous-release pod issued is taken from Redis, once.
    redis.cli(&["SET", "lct:token:0f1e2d3c4b5a69788796a5b4c3d2e1f0", &id, "PX", "60000"]);
    let url = format!("{ws}/hubs/actions?tournamentId={id}&id=0f1e2d3c4b5a69788796a5b4c3d2e1f0");
    let _previous = SignalR::connect_url(&url).await;
    common::ws::expect_refused(&url, 404).await;

    // A token this pod issues is kept in Redis for such pods, bound to its tournament.
    let negotiated: Value =
        json_of(http.post(pods[0].url(&format!("/hubs/actions/negotiate?tournamentId={id}&negotiateVersion=1")))).await;
    let token = negotiated["connectionToken"].as_str().unwrap();
    assert_eq!(redis.cli(&["GET", &format!("lct:token:{token}")]).trim(), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_of_a_killed_pod_reconnect_to_another_and_catch_up() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut pods = pods(2, dir.path(), &redis).await;
    let http = client();
    let id = create(&http, &pods[0], "Failover", 10).await;
    let mut on_b = Live::connect(&pods[1].base, &id, None).await;
    assert_eq!(join(&http, &pods[0].base, &id, "P0", "S").await.status(), 200);
    let seen = expect_versions(&mut on_b, 2, 2).await;
    let last = seen.last().unwrap()["version"].as_u64().unwrap();

    let mut b = pods.pop().unwrap();
    b.child.kill().await.unwrap();
    assert!(on_b.next().await.is_none(), "the client notices its pod is gone");
    let a = &pods[0];
    for i in 1..5 {
        assert_eq!(join(&http, &a.base, &id, &format!("P{i}"), "S").await.status(), 200);
    }
    // Reconnect to the surviving pod from the last version seen.
    let mut resumed = Live::connect(&a.base, &id, Some(last)).await;
    assert_eq!(join(&http, &a.base, &id, "P5", "S").await.status(), 200);
    let replayed = expect_versions(&mut resumed, 3, 7).await;
    assert_eq!(replayed[0]["event"]["name"], "P1");
}
