//! lct past one Redis, end to end: `lct` pods on a Redis Cluster of three shards (masters with a
//! replica each) and on Redis Sentinel (a master, a replica, three sentinels), with real SignalR
//! and v2 clients spread over the pods. A master is killed mid-stream; commands keep answering,
//! and once the replica has taken over every client holds every event once, in order. The time
//! from the kill until every client is whole again is printed (a measurement, not a pass mark).

mod common;

use common::redis_cluster::{cli_at, RedisCluster};
use common::redis_sentinel::{SentinelGroup, MASTER_NAME};
use common::ws::{Live, SignalR};
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Longest wait for a condition (subscriptions in place, a failover seen by the pods).
const DEADLINE: Duration = Duration::from_secs(30);

fn channel(tournament: &str) -> String {
    format!("lct:tournament:{tournament}")
}

/// The clients of one tournament on one pod: a SignalR hub client and a v2 live socket.
struct Clients {
    tournament: String,
    pod: usize,
    signalr: SignalR,
    live: Live,
}

impl Clients {
    async fn connect(pods: &[Server], pod: usize, tournament: &str) -> Clients {
        Clients {
            tournament: tournament.to_owned(),
            pod,
            signalr: SignalR::connect(&pods[pod].base, tournament).await,
            live: Live::connect(&pods[pod].base, tournament, None).await,
        }
    }

    /// Reads until version `last` and checks that `first..=last` came once each, in order, on
    /// the v2 socket, and that the SignalR client got the same players in the same order.
    async fn expect(&mut self, first: u64, last: u64, names: &[String]) {
        let mut versions = Vec::new();
        while versions.last() != Some(&last) {
            let message = self.live.next().await.expect("the live socket stays open");
            if let Some(version) = message.get("version").and_then(Value::as_u64) {
                versions.push(version);
            }
        }
        assert_eq!(versions, (first..=last).collect::<Vec<_>>(), "pod {}: every version once, in order", self.pod);
        let mut seen = Vec::new();
        while seen.len() < names.len() {
            let payload = self.signalr.next_payload(&self.tournament).await;
            seen.push(payload["name"].as_str().unwrap_or_default().to_owned());
        }
        assert_eq!(seen, names, "pod {}: every player once, in order, over SignalR", self.pod);
    }
}

/// Waits until `condition` holds, failing the test after [`DEADLINE`].
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Joins `name` through `pod` and checks the command is answered, Redis or not.
async fn join_through(http: &reqwest::Client, pod: &Server, id: &str, name: &str) {
    let response = join(http, &pod.base, id, name, "S").await;
    assert_eq!(response.status(), 200, "{name} joins through {}", pod.base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_three_shard_cluster_delivers_every_event_once_in_order_through_a_master_failover() {
    let mut cluster = RedisCluster::start(3, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let url = cluster.url();
    let mut pods = Vec::new();
    for _ in 0..3 {
        pods.push(Server::start(dir.path(), &[("LCT_REDIS_URL", url.as_str())]).await);
    }
    let http = client();

    // One tournament per shard; the seed node the pods were given (a master) gets the
    // tournament served by every pod, and is the one that dies.
    let masters = cluster.masters();
    let seed = cluster.nodes[0].port;
    let victim = if masters.contains(&seed) { seed } else { masters[0] };
    let mut on_master: BTreeMap<u16, String> = BTreeMap::new();
    for n in 0..200 {
        let id = create(&http, &pods[n % 3], &format!("Shard night {n}"), 10).await;
        on_master.entry(cluster.owner(cluster.keyslot(&channel(&id)))).or_insert(id);
        if on_master.len() == masters.len() {
            break;
        }
    }
    assert_eq!(on_master.len(), 3, "tournaments on every shard");
    let others: Vec<u16> = masters.iter().copied().filter(|m| *m != victim).collect();
    // Tournament -> the pods serving it: 3, 2 and 1 pods, so each shard's count tells them apart.
    let plan = [
        (on_master[&victim].clone(), vec![0, 1, 2]),
        (on_master[&others[0]].clone(), vec![1, 2]),
        (on_master[&others[1]].clone(), vec![2]),
    ];
    let mut clients = Vec::new();
    for (id, serving) in &plan {
        for &pod in serving {
            clients.push(Clients::connect(&pods, pod, id).await);
        }
    }
    for (id, serving) in &plan {
        let expected = serving.len() as u32;
        eventually("each shard counts the pods serving its tournament", || {
            cluster.shard_subscribers(&channel(id)) == expected
        })
        .await;
    }
    for master in &masters {
        let mine: Vec<String> =
            plan.iter().map(|(id, _)| channel(id)).filter(|c| cluster.owner(cluster.keyslot(c)) == *master).collect();
        assert_eq!(cluster.shard_channels(*master), mine, "master {master} holds its own tournaments' channels only");
        assert_eq!(cli_at(*master, &["PUBSUB", "CHANNELS"]), "", "no classic subscription on {master}");
        assert_eq!(cli_at(*master, &["PUBSUB", "NUMPAT"]), "0", "no pattern subscription on {master}");
    }

    // Joins through every pod, then the victim dies mid-stream; commands keep answering while
    // the cluster fails over, and more come after.
    let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut next = 0;
    let mut round = |count: usize| {
        let batch: Vec<(String, String, usize)> = (0..count)
            .flat_map(|_| {
                next += 1;
                plan.iter().map(move |(id, _)| (id.clone(), format!("P{next}"), next % 3)).collect::<Vec<_>>()
            })
            .collect();
        batch
    };
    for (id, name, pod) in round(3) {
        join_through(&http, &pods[pod], &id, &name).await;
        names.entry(id).or_default().push(name);
    }
    let killed_at = Instant::now();
    cluster.kill(victim).await;
    for (id, name, pod) in round(3) {
        // Answered (join_through checks the status) while the shard fails over; how long it took
        // is printed, not asserted: this machine's load decides it.
        let started = Instant::now();
        join_through(&http, &pods[pod], &id, &name).await;
        println!("cluster: a join answered {:?} into the failover", started.elapsed());
        names.entry(id).or_default().push(name);
    }
    cluster.wait_until_healthy().await;
    for (id, name, pod) in round(4) {
        join_through(&http, &pods[pod], &id, &name).await;
        names.entry(id).or_default().push(name);
    }
    for client in &mut clients {
        let names = &names[&client.tournament];
        client.expect(2, 1 + names.len() as u64, names).await;
    }
    println!("cluster: every client held every event {:?} after the master was killed", killed_at.elapsed());

    // The killed node comes back as a replica; the subscriptions are on the masters of now.
    cluster.restart(victim).await;
    cluster.wait_until_healthy().await;
    for (id, serving) in &plan {
        let expected = serving.len() as u32;
        eventually("the pods are subscribed on the new masters", || {
            cluster.shard_subscribers(&channel(id)) == expected
        })
        .await;
    }
}

/// The bus as the pod's readiness reports it.
async fn bus_status(http: &reqwest::Client, pod: &Server) -> String {
    let ready: Value = json_of(http.get(pod.url("/readiness"))).await;
    ready["dependencies"]["bus"]["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sentinel_failover_mid_stream_keeps_commands_answering_and_every_client_whole() {
    let mut group = SentinelGroup::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sentinels = group.sentinel_addresses().join(",");
    let url = group.url();
    // One pod with the dedicated settings, one with the URL form.
    let pods = [
        Server::start(
            dir.path(),
            &[("LCT_REDIS_SENTINELS", sentinels.as_str()), ("LCT_REDIS_SENTINEL_MASTER", MASTER_NAME)],
        )
        .await,
        Server::start(dir.path(), &[("LCT_REDIS_URL", url.as_str())]).await,
    ];
    let http = client();
    let id = create(&http, &pods[0], "Sentinel night", 10).await;
    let mut clients = vec![Clients::connect(&pods, 0, &id).await, Clients::connect(&pods, 1, &id).await];
    let master = group.master_port();
    eventually("both pods listen on the master", || {
        cli_at(master, &["PUBSUB", "NUMSUB", &channel(&id)]).lines().nth(1) == Some("2")
    })
    .await;

    let mut names = Vec::new();
    for n in 0..3 {
        join_through(&http, &pods[n % 2], &id, &format!("P{n}")).await;
        names.push(format!("P{n}"));
    }
    assert_eq!(cli_at(master, &["WAIT", "1", "5000"]), "1", "the replica holds the shared state so far");
    let killed_at = Instant::now();
    group.kill_master().await;
    for n in 3..6 {
        // Answered (join_through checks the status) while Sentinel fails over; how long it took
        // is printed, not asserted: this machine's load decides it.
        let started = Instant::now();
        join_through(&http, &pods[n % 2], &id, &format!("P{n}")).await;
        println!("sentinel: a join answered {:?} into the failover", started.elapsed());
        names.push(format!("P{n}"));
    }
    let new_master = group.wait_for_failover(master).await;
    let failed_over = killed_at.elapsed();
    let mut reconnected = Vec::new();
    for pod in &pods {
        let deadline = Instant::now() + DEADLINE;
        while bus_status(&http, pod).await != "Healthy" {
            assert!(Instant::now() < deadline, "the pod never reached the new master");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        reconnected.push(killed_at.elapsed());
    }
    for n in 6..10 {
        join_through(&http, &pods[n % 2], &id, &format!("P{n}")).await;
        names.push(format!("P{n}"));
    }
    for client in &mut clients {
        client.expect(2, 11, &names).await;
    }
    println!(
        "sentinel: failover seen by the sentinels after {:?}, pods reconnected after {reconnected:?}, every client \
         whole after {:?}",
        failed_over,
        killed_at.elapsed()
    );
    assert_eq!(cli_at(new_master, &["PUBSUB", "NUMSUB", &channel(&id)]).lines().nth(1), Some("2"));

    // The shared state follows the new master too: clicks, negotiate tokens (kept for pods of
    // the previous release), idempotency keys, presence and the pod registry.
    let clicker = &mut clients[0].signalr;
    clicker.click(Some("c1"), "Bayern", "P0", "S").await;
    let completion = clicker.next_completion().await;
    assert!(completion.get("error").is_none(), "a click after the failover: {completion}");
    let clicked = clients[1].signalr.next_payload(&id).await;
    assert_eq!(clicked["type"], "TeamClicked", "the click reached the other pod");

    let negotiated: Value =
        json_of(http.post(pods[1].url(&format!("/hubs/actions/negotiate?tournamentId={id}&negotiateVersion=1")))).await;
    let token = negotiated["connectionToken"].as_str().unwrap();
    assert_eq!(cli_at(new_master, &["GET", &format!("lct:token:{token}")]).trim(), id);
    let ws = pods[0].base.replace("http://", "ws://");
    SignalR::connect_url(&format!("{ws}/hubs/actions?tournamentId={id}&id={token}")).await;

    let create_v2 = |pod: &Server| {
        http.post(pod.url("/api/v2/tournaments"))
            .header("Idempotency-Key", "sentinel-night-5f3a9c1e7b2d4a6c8e0f")
            .json(&json!({"name": "Once", "playerLimit": 4}))
            .send()
    };
    let first = create_v2(&pods[0]).await.unwrap();
    assert_eq!(first.status(), 201);
    let again = create_v2(&pods[1]).await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true", "the key is known to the other pod");
    let (first, again): (Value, Value) = (first.json().await.unwrap(), again.json().await.unwrap());
    assert_eq!(first["id"], again["id"]);

    let v2_id = first["id"].as_str().unwrap();
    let joined: Value = json_of(
        http.post(pods[1].url(&format!("/api/v2/tournaments/{v2_id}/players")))
            .json(&json!({"name": "Zed", "surname": "Z"})),
    )
    .await;
    let mut watcher = Live::connect(&pods[1].base, v2_id, None).await;
    let (_player, _) = tokio_tungstenite::connect_async(format!(
        "{ws}/api/v2/tournaments/{v2_id}/live?token={}",
        joined["playerToken"].as_str().unwrap()
    ))
    .await
    .unwrap();
    assert_eq!(watcher.next_presence().await, vec![joined["playerId"].as_str().unwrap().to_owned()]);

    let deadline = Instant::now() + DEADLINE;
    loop {
        let view: Value = json_of(http.get(pods[1].url("/cluster"))).await;
        if view["pods"].as_array().is_some_and(|p| p.len() == 2) {
            break;
        }
        assert!(Instant::now() < deadline, "the registry never listed both pods again: {view}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
