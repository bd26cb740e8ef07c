//! Delivery under faults, against real processes: two or three `lct` pods sharing a data
//! directory, a `redis-server` of the test's own reached through a proxy per pod that can cut,
//! blackhole and delay the link, and SignalR and v2 clients on every pod. Each scenario ends
//! with every client holding the tournament's whole sequence, in order, once.

mod common;

use common::proxy::{Mode, Proxy};
use common::redis_server::RedisServer;
use common::ws::{Live, SignalR};
use common::*;
use serde_json::Value;

/// A pod and the proxy its Redis link goes through.
struct Pod {
    server: Server,
    link: Proxy,
}

async fn pods(count: usize, dir: &std::path::Path, redis: &RedisServer, env: &[(&str, &str)]) -> Vec<Pod> {
    let mut pods = Vec::new();
    for _ in 0..count {
        let link = Proxy::start(redis.port).await;
        let mut vars = vec![("LCT_REDIS_URL", link.url.as_str())];
        vars.extend_from_slice(env);
        pods.push(Pod { server: Server::start(dir, &vars).await, link });
    }
    pods
}

fn numsub(redis: &RedisServer, tournament: &str) -> u32 {
    let out = redis.cli(&["PUBSUB", "NUMSUB", &format!("lct:tournament:{tournament}")]);
    out.lines().nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("NUMSUB answer: {out}"))
}

/// Waits (with a deadline) until `count` pods listen on the tournament's channel.
async fn wait_for_numsub(redis: &RedisServer, tournament: &str, count: u32) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while numsub(redis, tournament) != count {
        assert!(tokio::time::Instant::now() < deadline, "expected {count} subscribed pods");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The clients watching one tournament: a SignalR and a v2 client on every pod.
struct Watchers {
    tournament: String,
    signalr: Vec<SignalR>,
    live: Vec<Live>,
}

impl Watchers {
    async fn connect(pods: &[Pod], tournament: &str) -> Watchers {
        let mut watchers = Watchers { tournament: tournament.to_owned(), signalr: Vec::new(), live: Vec::new() };
        for pod in pods {
            watchers.signalr.push(SignalR::connect(&pod.server.base, tournament).await);
            watchers.live.push(Live::connect(&pod.server.base, tournament, None).await);
        }
        watchers
    }

    /// Every client receives `expected` in order: the SignalR clients these payload types
    /// (with the player's name), the v2 clients the events of versions `first..` in order.
    async fn expect(&mut self, first: u64, expected: &[(&str, &str)]) {
        let tournament = self.tournament.clone();
        for (i, client) in self.signalr.iter_mut().enumerate() {
            let mut seen = Vec::new();
            while seen.len() < expected.len() {
                let payload = client.next_payload(&tournament).await;
                let who = payload["name"].as_str().or(payload["playerName"].as_str()).unwrap_or_default();
                seen.push((payload["type"].as_str().unwrap().to_owned(), who.to_owned()));
            }
            let expected: Vec<(String, String)> =
                expected.iter().map(|(t, n)| ((*t).to_owned(), (*n).to_owned())).collect();
            assert_eq!(seen, expected, "SignalR client {i}: every event, in order");
        }
        let wanted: Vec<u64> = (first..first + expected.len() as u64).collect();
        for (i, client) in self.live.iter_mut().enumerate() {
            let mut versions = Vec::new();
            while versions.len() < wanted.len() {
                let message = client.next().await.expect("live socket open");
                if let Some(version) = message.get("version").and_then(Value::as_u64) {
                    versions.push(version);
                }
            }
            assert_eq!(versions, wanted, "v2 client {i}: every version, in order");
        }
    }

    /// After `marker` (a team click), the click list is the next thing every client sees:
    /// nothing was delivered twice meanwhile.
    async fn expect_nothing_more(&mut self, marker: impl std::future::Future<Output = ()>) {
        marker.await;
        let tournament = self.tournament.clone();
        for (i, client) in self.signalr.iter_mut().enumerate() {
            let payload = client.next_payload(&tournament).await;
            assert_eq!(payload["type"], "TeamClicked", "SignalR client {i}: nothing more before the marker");
        }
        for (i, client) in self.live.iter_mut().enumerate() {
            let message = client.next().await.expect("live socket open");
            assert_eq!(message["type"], "TeamClicked", "v2 client {i}: nothing more before the marker");
        }
    }

    /// Every client's next message is a click list whose first click is on `team`.
    async fn expect_click_on(&mut self, team: &str) {
        let tournament = self.tournament.clone();
        for (i, client) in self.signalr.iter_mut().enumerate() {
            let payload = client.next_payload(&tournament).await;
            assert_eq!(payload["type"], "TeamClicked", "SignalR client {i}: {payload}");
            assert_eq!(payload["clickedTeams"][0]["team"], team, "SignalR client {i}: {payload}");
        }
        for (i, client) in self.live.iter_mut().enumerate() {
            let message = client.next().await.expect("live socket open");
            assert_eq!(message["type"], "TeamClicked", "v2 client {i}: {message}");
            assert_eq!(message["clickedTeams"][0]["team"], team, "v2 client {i}: {message}");
        }
    }
}

/// Clicks as `name` through `base`: a marker every client receives.
async fn click(base: &str, tournament: &str, name: &str) {
    let mut clicker = SignalR::connect(base, tournament).await;
    clicker.click(Some("m"), "Chelsea", name, "S").await;
    let completion = clicker.next_completion().await;
    assert!(completion.get("error").is_none(), "the marker click: {completion}");
}

/// Like `click`, once the pod's commands reach Redis again: until then the click is refused as
/// a dependency outage and broadcast to nobody, and is tried again (with a deadline).
async fn click_once_redis_answers(base: &str, tournament: &str, name: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut clicker = SignalR::connect(base, tournament).await;
    loop {
        clicker.click(Some("m"), "Chelsea", name, "S").await;
        let completion = clicker.next_completion().await;
        match completion.get("error") {
            None => return,
            Some(error) if error == "A dependency is unavailable; try again shortly." => {
                assert!(tokio::time::Instant::now() < deadline, "clicks never reached Redis again");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Some(_) => panic!("the marker click: {completion}"),
        }
    }
}

/// A tournament of two with both teams selected, ready for the draw: versions 1 (created) to
/// 5 (second selection).
async fn ready_to_draw(http: &reqwest::Client, server: &Server, name: &str) -> String {
    let base = &server.base;
    let id = create(http, server, name, 2).await;
    assert_eq!(join(http, base, &id, "Anna", "S").await.status(), 200);
    assert_eq!(join(http, base, &id, "Ben", "S").await.status(), 200);
    assert_eq!(select(http, base, &id, "Anna", "S", TEAMS[0]).await.status(), 200);
    assert_eq!(select(http, base, &id, "Ben", "S", TEAMS[1]).await.status(), 200);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_draw_reaches_every_pod_when_its_publication_is_lost() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pods = pods(2, dir.path(), &redis, &[]).await;
    let (a, b) = (&pods[0], &pods[1]);
    let http = client();
    let id = ready_to_draw(&http, &a.server, "Lost draw").await;
    let mut watchers = Watchers::connect(&pods, &id).await;
    wait_for_numsub(&redis, &id, 2).await;

    // Pod A's link to Redis is cut just before the organiser draws on pod A: the draw is
    // stored and answered, but its publication cannot reach pod B.
    a.link.set(Mode::Cut);
    let draw = http.get(a.server.url(&format!("/api/Tournament/draw?tournamentId={id}"))).send().await.unwrap();
    assert_eq!(draw.status(), 200);

    watchers.expect(6, &[("TeamsDrawn", "")]).await;

    a.link.set(Mode::Pass);
    wait_for_numsub(&redis, &id, 2).await;
    watchers.expect_nothing_more(click(&b.server.base, &id, "Anna")).await;
}

/// A tournament with Anna joined through the first pod and watched on every pod, once a first
/// click of hers reached every client: Redis holds the record script from then on (a click
/// sent by its digest alone would find nothing to run).
async fn anna_watched_on_every_pod(pods: &[Pod], redis: &RedisServer, name: &str) -> (String, Watchers) {
    let (http, a) = (client(), &pods[0]);
    let id = create(&http, &a.server, name, 2).await;
    assert_eq!(join(&http, &a.server.base, &id, "Anna", "S").await.status(), 200);
    let mut watchers = Watchers::connect(pods, &id).await;
    wait_for_numsub(redis, &id, pods.len() as u32).await;
    watchers.expect_nothing_more(click(&a.server.base, &id, "Anna")).await;
    (id, watchers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_click_whose_answer_was_held_back_past_its_timeout_reaches_every_pod_the_clicking_one_too() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pods = pods(2, dir.path(), &redis, &[]).await;
    let a = &pods[0];
    let (id, mut watchers) = anna_watched_on_every_pod(&pods, &redis, "Held click").await;
    let mut clicker = SignalR::connect(&a.server.base, &id).await;

    // Pod A's link holds everything back: the click's script waits in it past the click's
    // timeout, and the clicker is told the click failed...
    a.link.set(Mode::Blackhole);
    clicker.click(Some("held"), "PSG", "Anna", "S").await;
    let completion = clicker.next_completion().await;
    assert_eq!(completion["error"], "A dependency is unavailable; try again shortly.", "{completion}");
    // ...then the script reaches Redis, which records the click and publishes its list to both
    // pods. Pod A drops its own publications; it reads the list again instead.
    a.link.set(Mode::Pass);
    watchers.expect_click_on("PSG").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_click_list_published_while_a_pod_was_not_subscribed_reaches_its_clients_once_it_is() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pods = pods(2, dir.path(), &redis, &[]).await;
    let (a, b) = (&pods[0], &pods[1]);
    let (id, mut watchers) = anna_watched_on_every_pod(&pods, &redis, "Deaf pod").await;

    // Pod B's link to Redis is cut while Anna clicks on pod A: the list is published, answered,
    // and reaches pod A's clients only.
    b.link.set(Mode::Cut);
    wait_for_numsub(&redis, &id, 1).await;
    let mut clicker = SignalR::connect(&a.server.base, &id).await;
    clicker.click(Some("deaf"), "PSG", "Anna", "S").await;
    let completion = clicker.next_completion().await;
    assert!(completion.get("error").is_none(), "{completion}");
    // Pod B is subscribed again: it reads the list it missed, and its clients get it.
    b.link.set(Mode::Pass);
    watchers.expect_click_on("PSG").await;
}

/// The value of a sample of pod `server`'s metrics (name and labels exactly as exposed).
async fn metric(http: &reqwest::Client, server: &Server, series: &str) -> f64 {
    let text = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series}"))
}

fn repaired(cause: &str) -> String {
    format!("lct_gaps_repaired_total{{cause=\"{cause}\"}}")
}

/// Waits (with a deadline) until pod `server` reports `version` for the tournament: the
/// event is committed.
async fn wait_for_version(http: &reqwest::Client, server: &Server, tournament: &str, version: u64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let body: Value = json_of(http.get(server.url(&format!("/api/v2/tournaments/{tournament}")))).await;
        if body["version"].as_u64() == Some(version) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "version {version} never committed: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publisher_link_blackholed_for_ten_seconds_loses_nothing() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pods = pods(2, dir.path(), &redis, &[]).await;
    let (a, b) = (&pods[0], &pods[1]);
    let http = client();
    let id = create(&http, &a.server, "Blackholed", 4).await;
    let mut watchers = Watchers::connect(&pods, &id).await;
    wait_for_numsub(&redis, &id, 2).await;

    // Pod A's link accepts and never answers: its publications time out, it hears nothing.
    a.link.set(Mode::Blackhole);
    let blackholed_until = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let bases = [&a.server.base, &b.server.base];
    let mut expected = Vec::new();
    let names = ["P0", "P1", "P2", "P3"];
    for (i, name) in names.iter().enumerate() {
        assert_eq!(join(&http, bases[i % 2], &id, name, "S").await.status(), 200);
        expected.push(("PlayerAssigned", *name));
    }
    for (i, name) in names.iter().enumerate() {
        assert_eq!(select(&http, bases[(i + 1) % 2], &id, name, "S", TEAMS[i]).await.status(), 200);
        expected.push(("TeamSelected", *name));
    }
    let draw = http.get(a.server.url(&format!("/api/Tournament/draw?tournamentId={id}"))).send().await.unwrap();
    assert_eq!(draw.status(), 200);
    expected.push(("TeamsDrawn", ""));
    // Every client, on either side of the blackhole, gets everything while it lasts: the link is
    // restored only below, once everything arrived.
    watchers.expect(2, &expected).await;
    // Pod B had nothing after the draw to show it a gap: the periodic check found it.
    assert!(metric(&http, &b.server, &repaired("periodic_check")).await >= 1.0);

    // The fault lasts ten seconds at least, however quickly the clients got everything.
    tokio::time::sleep_until(blackholed_until).await;
    a.link.set(Mode::Pass);
    wait_for_numsub(&redis, &id, 2).await;
    watchers.expect_nothing_more(click(&b.server.base, &id, "P0")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_restart_loses_nothing_not_even_the_last_event() {
    let mut redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pods = pods(2, dir.path(), &redis, &[]).await;
    let (a, b) = (&pods[0], &pods[1]);
    let http = client();
    let id = create(&http, &a.server, "Restarted", 2).await;
    let mut watchers = Watchers::connect(&pods, &id).await;
    wait_for_numsub(&redis, &id, 2).await;

    assert_eq!(join(&http, &a.server.base, &id, "Anna", "S").await.status(), 200);
    redis.kill().await;
    assert_eq!(join(&http, &b.server.base, &id, "Ben", "S").await.status(), 200);
    assert_eq!(select(&http, &a.server.base, &id, "Anna", "S", TEAMS[0]).await.status(), 200);
    // A click needs Redis: refused as a dependency outage, not as a rule, and nothing internal
    // is shown.
    let mut clicker = SignalR::connect(&a.server.base, &id).await;
    clicker.click(Some("c"), "Chelsea", "Anna", "S").await;
    let completion = clicker.next_completion().await;
    assert_eq!(completion["error"], "A dependency is unavailable; try again shortly.", "{completion}");
    drop(clicker);
    redis.restart().await;
    // Right after the restart, before the pods are back on Redis, if they can be that quick.
    assert_eq!(select(&http, &b.server.base, &id, "Ben", "S", TEAMS[1]).await.status(), 200);
    let draw = http.get(a.server.url(&format!("/api/Tournament/draw?tournamentId={id}"))).send().await.unwrap();
    assert_eq!(draw.status(), 200);

    let expected = [
        ("PlayerAssigned", "Anna"),
        ("PlayerAssigned", "Ben"),
        ("TeamSelected", "Anna"),
        ("TeamSelected", "Ben"),
        ("TeamsDrawn", ""),
    ];
    watchers.expect(2, &expected).await;
    wait_for_numsub(&redis, &id, 2).await;
    watchers.expect_nothing_more(click_once_redis_answers(&b.server.base, &id, "Anna")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_whose_client_disconnects_mid_request_is_still_published() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The draw is held for two seconds between its append and its publication on pod A, and
    // the periodic check is too slow to matter here: only the publication can deliver it.
    let slow_check = ("LCT_DELIVERY_BOUND_MS", "120000");
    let a = pods(1, dir.path(), &redis, &[slow_check, ("LCT_FAULT_AFTER_APPEND", "TeamsDrawn:delay-2000")]).await;
    let b = pods(1, dir.path(), &redis, &[slow_check]).await;
    let pods: Vec<Pod> = a.into_iter().chain(b).collect();
    let (a, b) = (&pods[0], &pods[1]);
    let http = client();
    let id = ready_to_draw(&http, &a.server, "Impatient organiser").await;
    let mut watchers = Watchers::connect(&pods, &id).await;
    wait_for_numsub(&redis, &id, 2).await;

    // The organiser's client sends the draw and goes away once it is committed, before the
    // answer (and before the publication).
    let mut organiser = tokio::net::TcpStream::connect(a.server.addr).await.unwrap();
    let request = format!("GET /api/Tournament/draw?tournamentId={id} HTTP/1.1\r\nHost: lct\r\n\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut organiser, request.as_bytes()).await.unwrap();
    wait_for_version(&http, &b.server, &id, 6).await;
    drop(organiser);

    watchers.expect(6, &[("TeamsDrawn", "")]).await;
    for cause in ["bus_gap", "periodic_check", "resync"] {
        assert_eq!(metric(&http, &b.server, &repaired(cause)).await, 0.0, "delivered by the publication, not {cause}");
    }
    watchers.expect_nothing_more(click(&b.server.base, &id, "Anna")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pod_killed_right_after_its_append_loses_nothing() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Pod A holds the draw between its append and its publication long enough to be killed.
    let mut pods = pods(1, dir.path(), &redis, &[("LCT_FAULT_AFTER_APPEND", "TeamsDrawn:delay-5000")]).await;
    pods.extend(self::pods(2, dir.path(), &redis, &[]).await);
    let http = client();
    let id = ready_to_draw(&http, &pods[0].server, "Crash at the draw").await;
    let mut survivors = Watchers::connect(&pods[1..], &id).await;
    let mut on_a = Live::connect(&pods[0].server.base, &id, None).await;
    wait_for_numsub(&redis, &id, 3).await;

    let drawing = {
        let (http, url) = (http.clone(), pods[0].server.url(&format!("/api/Tournament/draw?tournamentId={id}")));
        tokio::spawn(async move { http.get(url).send().await })
    };
    wait_for_version(&http, &pods[1].server, &id, 6).await;
    let mut a = pods.remove(0);
    a.server.child.kill().await.unwrap();
    assert!(drawing.await.unwrap().is_err(), "the organiser got no answer");

    // The other pods' clients get the draw from the store; the client of the dead pod resumes
    // on another pod from the last version it saw.
    survivors.expect(6, &[("TeamsDrawn", "")]).await;
    assert!(on_a.next().await.is_none(), "the client notices its pod is gone");
    let mut resumed = Live::connect(&pods[0].server.base, &id, Some(on_a.live_from)).await;
    let replayed = resumed.next().await.expect("the draw, replayed");
    assert_eq!((replayed["type"].as_str(), replayed["version"].as_u64()), (Some("TeamsDrawn"), Some(6)));
    survivors.live.push(resumed);
    survivors.expect_nothing_more(click(&pods[0].server.base, &id, "Anna")).await;
}
