//! The pod registry end to end: `lct` processes sharing a `redis-server` of the test's own see
//! each other in `GET /cluster`; a pod killed with SIGKILL leaves every view within two heartbeat
//! periods and its presence entries are removed by a survivor; a pod stopped with SIGTERM leaves
//! at once; ordinals stay unique and dense through the churn; a pod restarted under its name
//! leaves none of its previous run's players online. Without Redis the registry holds the one
//! pod.

mod common;

use common::redis_server::RedisServer;
use common::ws::Live;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// The heartbeat period of the pods under test; an entry lapses after one and a half periods.
const HEARTBEAT: Duration = Duration::from_millis(400);
/// Longest wait for pods to find each other after they start.
const SETTLE: Duration = Duration::from_secs(15);

async fn pod(dir: &Path, redis: &RedisServer, name: &str) -> Server {
    let heartbeat = HEARTBEAT.as_millis().to_string();
    Server::start(
        dir,
        &[("LCT_REDIS_URL", redis.url.as_str()), ("LCT_POD_NAME", name), ("LCT_HEARTBEAT_MS", heartbeat.as_str())],
    )
    .await
}

async fn view(http: &reqwest::Client, server: &Server) -> Value {
    let response = http.get(server.url("/cluster")).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET /cluster");
    response.json().await.unwrap()
}

/// The view, or `Value::Null` while the pod cannot read the registry yet (503 while its Redis
/// connection is still being made at start).
async fn view_when_ready(http: &reqwest::Client, server: &Server) -> Value {
    let response = http.get(server.url("/cluster")).send().await.unwrap();
    match response.status().as_u16() {
        200 => response.json().await.unwrap(),
        503 => Value::Null,
        status => panic!("GET /cluster answered {status}"),
    }
}

fn listed(view: &Value) -> BTreeSet<String> {
    view["pods"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

/// Waits until every pod in `pods` lists exactly `expected`, and returns their views.
async fn until_all_list(http: &reqwest::Client, pods: &[&Server], expected: &[&str]) -> Vec<Value> {
    let expected = set(expected);
    let deadline = Instant::now() + SETTLE;
    loop {
        let mut views = Vec::new();
        for pod in pods {
            views.push(view_when_ready(http, pod).await);
        }
        if views.iter().all(|v| !v.is_null() && listed(v) == expected) {
            return views;
        }
        assert!(Instant::now() < deadline, "pods never all listed {expected:?}: {views:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every view numbers its pods 0..n in order, and the pods' own ordinals are 0..n, each once.
fn assert_dense_ordinals(views: &[Value]) {
    let n = views.len();
    for view in views {
        let ordinals: Vec<u64> =
            view["pods"].as_array().unwrap().iter().map(|p| p["ordinal"].as_u64().unwrap()).collect();
        assert_eq!(ordinals, (0..n as u64).collect::<Vec<_>>(), "{view:#}");
        assert_eq!(view["totals"]["pods"], n, "{view:#}");
        let me = view["self"]["id"].as_str().unwrap();
        let mine = view["pods"].as_array().unwrap().iter().find(|p| p["id"] == me).expect("a pod lists itself");
        assert_eq!(view["self"]["ordinal"], mine["ordinal"], "{view:#}");
    }
    let own: BTreeSet<u64> = views.iter().map(|v| v["self"]["ordinal"].as_u64().unwrap()).collect();
    assert_eq!(own, (0..n as u64).collect::<BTreeSet<_>>(), "each pod has its own ordinal");
}

/// The fields of the presence hash of `tournament` (`{player_id}|{pod}`).
fn presence_fields(redis: &RedisServer, tournament: &str) -> Vec<String> {
    let out = redis.cli(&["HKEYS", &format!("lct:presence:{tournament}")]);
    out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

/// Waits (with a deadline) until the presence hash of `tournament` holds exactly `fields`.
async fn until_presence_is(redis: &RedisServer, tournament: &str, fields: &[String]) {
    let deadline = Instant::now() + SETTLE;
    while presence_fields(redis, tournament) != fields {
        assert!(Instant::now() < deadline, "presence is {:?}, not {fields:?}", presence_fields(redis, tournament));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates a v2 tournament with `players` joined; returns its id and each player's id and token.
async fn tournament_with(http: &reqwest::Client, server: &Server, players: &[&str]) -> (String, Vec<(String, String)>) {
    let created: Value =
        json_of(http.post(server.url("/api/v2/tournaments")).json(&json!({"name": "Cluster night", "playerLimit": 4})))
            .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut joined = Vec::new();
    for name in players {
        let body: Value = json_of(
            http.post(server.url(&format!("/api/v2/tournaments/{id}/players")))
                .json(&json!({"name": name, "surname": "Player"})),
        )
        .await;
        joined.push((body["playerId"].as_str().unwrap().to_owned(), body["playerToken"].as_str().unwrap().to_owned()));
    }
    (id, joined)
}

/// A player's live socket on `server`, which makes that pod the owner of the player's presence.
async fn online_through(server: &Server, tournament: &str, token: &str) -> common::ws::Socket {
    let url = format!("{}/api/v2/tournaments/{tournament}/live?token={token}", server.base.replace("http://", "ws://"));
    tokio_tungstenite::connect_async(url).await.expect("live socket").0
}

fn count_logs(pods: &[&Server], message: &str, pod: &str) -> usize {
    pods.iter().flat_map(|p| p.log_lines()).filter(|line| line["message"] == message && line["pod"] == pod).count()
}

/// When pod `id` last sent its heartbeat, as `view` lists it (ms since the Unix epoch).
fn last_heartbeat(view: &Value, id: &str) -> i64 {
    let pods = view["pods"].as_array().unwrap();
    pods.iter().find(|p| p["id"] == id).and_then(|p| p["lastHeartbeat"].as_i64()).expect("the pod is listed")
}

/// The PTTL of `key` (ms), waiting (with a deadline) while the key is missing: a pod late on a
/// loaded machine may let its heartbeat key lapse for a moment before it writes it again.
async fn pttl_of_present_key(redis: &RedisServer, key: &str) -> i64 {
    let deadline = Instant::now() + SETTLE;
    loop {
        let pttl: i64 = redis.cli(&["PTTL", key]).parse().unwrap();
        if pttl != -2 {
            return pttl;
        }
        assert!(Instant::now() < deadline, "{key} never existed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pods_see_each_other_and_a_killed_or_stopped_pod_leaves_every_view() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let http = client();
    let a = pod(dir.path(), &redis, "pod-a").await;
    let b = pod(dir.path(), &redis, "pod-b").await;
    let c = pod(dir.path(), &redis, "pod-c").await;

    // All three see each other, in start order, with their figures.
    let views = until_all_list(&http, &[&a, &b, &c], &["pod-a", "pod-b", "pod-c"]).await;
    assert_dense_ordinals(&views);
    for (view, (id, server)) in views.iter().zip([("pod-a", &a), ("pod-b", &b), ("pod-c", &c)]) {
        assert_eq!(view["self"]["id"], id);
        let ids: Vec<&str> = view["pods"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
        assert_eq!(ids, vec!["pod-a", "pod-b", "pod-c"], "ordered by start time");
        let me = &view["pods"][view["self"]["ordinal"].as_u64().unwrap() as usize];
        assert_eq!(me["address"], server.addr.to_string());
        assert_eq!(me["version"], env!("CARGO_PKG_VERSION"));
        assert!(
            me["startedAt"].as_i64().unwrap() > 0
                && me["lastHeartbeat"].as_i64().unwrap() >= me["startedAt"].as_i64().unwrap()
        );
    }

    // Presence entries owned by pod C, made the way players make them: Anna's live socket (with
    // her v2 player token) is on pod C, Ben's on pod B; a watcher on pod A sees the presence.
    let (tournament, players) = tournament_with(&http, &a, &["Anna", "Ben"]).await;
    let ((anna, anna_token), (ben, ben_token)) = (players[0].clone(), players[1].clone());
    let mut watcher = Live::connect(&a.base, &tournament, None).await;
    let _anna_socket = online_through(&c, &tournament, &anna_token).await;
    let _ben_socket = online_through(&b, &tournament, &ben_token).await;
    let deadline = Instant::now() + SETTLE;
    while presence_fields(&redis, &tournament).len() < 2 {
        assert!(Instant::now() < deadline, "presence never recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(presence_fields(&redis, &tournament).contains(&format!("{anna}|pod-c")));
    assert_eq!(redis.cli(&["EXISTS", "lct:pod-presence:pod-c"]), "1");
    // The connections reach the views with the next heartbeats.
    let deadline = Instant::now() + SETTLE;
    loop {
        let view = view(&http, &b).await;
        if view["totals"]["connections"] == 3 && view["totals"]["tournaments"] == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the connections never showed: {view:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = http.get(a.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(sample(&metrics, "lct_cluster_pods"), Some(3.0), "{metrics}");

    // SIGKILL: pod C disappears from every survivor's view within two heartbeat periods, since
    // its entry lives at most one and a half periods (Redis expires it; the test's own clock is
    // not trusted on a loaded machine). The entry's expiry is read while pod C still refreshes
    // it: after the kill it may be gone before it is read.
    let lapse_ms = HEARTBEAT.as_millis() as i64 * 3 / 2;
    let pttl = pttl_of_present_key(&redis, "lct:{pods}:pod:pod-c").await;
    assert!(0 < pttl && pttl <= lapse_ms, "pod C's entry expires within a lapse of its last heartbeat: PTTL {pttl}");
    let mut c = c;
    c.child.kill().await.unwrap();
    let deadline = Instant::now() + SETTLE;
    let heartbeats = loop {
        let (view_a, view_b) = (view(&http, &a).await, view(&http, &b).await);
        if !listed(&view_a).contains("pod-c") && !listed(&view_b).contains("pod-c") {
            break [last_heartbeat(&view_a, "pod-a"), last_heartbeat(&view_b, "pod-b")];
        }
        assert!(Instant::now() < deadline, "pod C is still listed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    // Its presence entries are removed by the survivor that pruned it (on its next heartbeat),
    // and the watcher is told who is still online.
    let deadline = Instant::now() + SETTLE;
    while presence_fields(&redis, &tournament).iter().any(|f| f.ends_with("|pod-c")) {
        assert!(Instant::now() < deadline, "pod C's presence entries are still there");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(presence_fields(&redis, &tournament), vec![format!("{ben}|pod-b")]);
    assert_eq!(redis.cli(&["EXISTS", "lct:pod-presence:pod-c"]), "0");
    assert_eq!(redis.cli(&["EXISTS", "lct:{pods}:pod:pod-c"]), "0");
    assert_eq!(redis.cli(&["HEXISTS", "lct:{pods}", "pod-c"]), "0");
    loop {
        if watcher.next_presence().await == vec![ben.clone()] {
            break;
        }
    }
    // Both survivors pruned after pod C's entry was gone (two heartbeats each since: the first
    // one's pruning is over when the second is written); exactly one cleaned up.
    let deadline = Instant::now() + SETTLE;
    loop {
        let (view_a, view_b) = (view(&http, &a).await, view(&http, &b).await);
        let now = [last_heartbeat(&view_a, "pod-a"), last_heartbeat(&view_b, "pod-b")];
        if now.iter().zip(&heartbeats).all(|(now, then)| *now >= then + 2 * HEARTBEAT.as_millis() as i64) {
            break;
        }
        assert!(Instant::now() < deadline, "the survivors stopped their heartbeats");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pruned = "a pod stopped sending heartbeats; removed it from the cluster";
    let deadline = Instant::now() + SETTLE;
    while count_logs(&[&a, &b], pruned, "pod-c") == 0 {
        assert!(Instant::now() < deadline, "nobody logged pruning pod C");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count_logs(&[&a, &b], pruned, "pod-c"), 1, "one survivor pruned pod C");
    assert_dense_ordinals(&until_all_list(&http, &[&a, &b], &["pod-a", "pod-b"]).await);

    // A fourth pod joins after the churn and takes the next ordinal.
    let d = pod(dir.path(), &redis, "pod-d").await;
    let views = until_all_list(&http, &[&a, &b, &d], &["pod-a", "pod-b", "pod-d"]).await;
    assert_dense_ordinals(&views);
    assert_eq!(views[2]["self"]["ordinal"], 2, "the newest pod is last");

    // SIGTERM: pod B deregisters itself rather than letting its entry lapse: nobody has to
    // prune it, and it logs that it left.
    let b_logs = std::sync::Arc::clone(&b.logs);
    let status = b.stop().await;
    assert!(status.success(), "pod B stopped cleanly: {status}");
    let left = |line: &String| line.contains("\"left the cluster\"") && line.contains("pod-b");
    let deadline = Instant::now() + SETTLE;
    while !b_logs.lock().unwrap().iter().any(left) {
        assert!(Instant::now() < deadline, "pod B never logged that it left the cluster");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let views = [view(&http, &a).await, view(&http, &d).await];
    assert_eq!(count_logs(&[&a, &d], pruned, "pod-b"), 0, "nobody had to prune pod B");
    for view in &views {
        assert_eq!(listed(view), set(&["pod-a", "pod-d"]), "pod B left at once: {view:#}");
    }
    assert_eq!(redis.cli(&["HEXISTS", "lct:{pods}", "pod-b"]), "0");
    assert_eq!(redis.cli(&["EXISTS", "lct:pod-presence:pod-b"]), "0", "pod B took its presence along");
    assert!(presence_fields(&redis, &tournament).is_empty());
    assert_dense_ordinals(&views);
    assert_eq!(views[0]["self"]["ordinal"], 0);
    assert_eq!(views[1]["self"]["ordinal"], 1);
    let metrics = http.get(d.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let deadline = Instant::now() + SETTLE;
    let mut metrics = metrics;
    while sample(&metrics, "lct_cluster_pods") != Some(2.0) {
        assert!(Instant::now() < deadline, "the gauge never showed two pods: {metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        metrics = http.get(d.url("/metrics")).send().await.unwrap().text().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_restarted_under_its_name_leaves_none_of_its_previous_runs_players_online() {
    let redis = RedisServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let http = client();
    let first = pod(dir.path(), &redis, "pod-a").await;
    let (tournament, players) = tournament_with(&http, &first, &["Anna", "Ben"]).await;
    let ((anna, anna_token), (ben, ben_token)) = (players[0].clone(), players[1].clone());
    let _anna_socket = online_through(&first, &tournament, &anna_token).await;
    until_presence_is(&redis, &tournament, &[format!("{anna}|pod-a")]).await;

    // The process dies (an OOM kill, say) and comes back under the same name at once: nobody
    // else was there to prune it. Ben connects to the new run straight away.
    let mut first = first;
    first.child.kill().await.unwrap();
    let second = pod(dir.path(), &redis, "pod-a").await;
    let _ben_socket = online_through(&second, &tournament, &ben_token).await;
    until_presence_is(&redis, &tournament, &[format!("{ben}|pod-a")]).await;
    let online: Value = json_of(http.get(second.url(&format!("/api/v2/tournaments/{tournament}/presence")))).await;
    let ids: Vec<&str> =
        online["players"].as_array().unwrap().iter().map(|p| p["playerId"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![ben.as_str()]);
}

#[tokio::test]
async fn without_redis_the_cluster_is_the_one_pod() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("LCT_HEARTBEAT_MS", "200"), ("LCT_POD_ADDRESS", "lct-0.lct:8080")]).await;
    let http = client();
    let id = create(&http, &server, "Lone pod", 2).await;
    let _live = Live::connect(&server.base, &id, None).await;

    let deadline = Instant::now() + SETTLE;
    let view = loop {
        let view = view(&http, &server).await;
        if view["totals"]["connections"] == 1 {
            break view;
        }
        assert!(Instant::now() < deadline, "the connection never showed: {view:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let pods = view["pods"].as_array().unwrap();
    assert_eq!(pods.len(), 1, "{view:#}");
    let me = &pods[0];
    assert_eq!(view["self"]["id"], me["id"]);
    assert_eq!(view["self"]["ordinal"], 0);
    assert_eq!(me["ordinal"], 0);
    assert!(!me["id"].as_str().unwrap().is_empty());
    assert_eq!(me["address"], "lct-0.lct:8080");
    assert_eq!(me["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!((me["connections"].as_u64(), me["tournaments"].as_u64()), (Some(1), Some(1)));
    assert_eq!(view["totals"], json!({"pods": 1, "connections": 1, "tournaments": 1}));

    let metrics = http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(sample(&metrics, "lct_cluster_pods"), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, "lct_cluster_connections"), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, "lct_cluster_tournaments"), Some(1.0), "{metrics}");
}
