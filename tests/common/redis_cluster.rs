//! A Redis Cluster of a test's own on loopback: `redis-server --cluster-enabled yes` nodes joined
//! by `redis-cli --cluster create`, masters and replicas. The test can kill a master (one of its
//! replicas takes over after [`NODE_TIMEOUT_MS`]), restart it (it rejoins as a replica), move a
//! slot to another master, and ask any node what the cluster looks like.
//!
//! Needs `redis-server` and `redis-cli` (Redis 7) on the PATH; uses std, tokio and tempfile.
#![allow(dead_code)]

pub use super::redis_server::cli_at;
use super::redis_server::{free_port, RedisServer};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Milliseconds a node may stay silent before it is taken for failed (and a replica takes over).
pub const NODE_TIMEOUT_MS: u64 = 1000;
/// Longest wait for the cluster to form or to heal.
const DEADLINE: Duration = Duration::from_secs(30);

/// A running cluster; every node is killed when dropped.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub port: u16,
    pub master: bool,
    pub failed: bool,
    /// Slot ranges it serves, inclusive.
    pub slots: Vec<(u16, u16)>,
}

impl RedisCluster {
    /// Starts `masters` masters with `replicas` replicas each and returns once every node says
    /// the cluster is ok and every replica is in sync with its master.
    pub async fn start(masters: usize, replicas: usize) -> RedisCluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut nodes = Vec::new();
        for index in 0..masters * (1 + replicas) {
            let home = dir.path().join(index.to_string());
            std::fs::create_dir_all(&home).unwrap();
            let args: Vec<String> = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &home.join("nodes.conf").display().to_string(),
                "--cluster-node-timeout",
                &NODE_TIMEOUT_MS.to_string(),
                "--cluster-port",
                &free_port().to_string(),
                "--dir",
                &home.display().to_string(),
            ]
            .iter()
            .map(|arg| (*arg).to_owned())
            .collect();
            nodes.push(RedisServer::start_with(&args).await);
        }
        let addresses: Vec<String> = nodes.iter().map(|node| format!("127.0.0.1:{}", node.port)).collect();
        let created = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("running redis-cli --cluster create");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = RedisCluster { nodes, _dir: dir };
        cluster.wait_until_healthy().await;
        cluster
    }

    /// `redis-cluster://127.0.0.1:{port}` of the first node only: the pods find the rest.
    pub fn url(&self) -> String {
        format!("redis-cluster://127.0.0.1:{}", self.nodes[0].port)
    }

    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes.iter().find(|node| node.port == port).expect("a node of this cluster")
    }

    fn any_running(&self) -> u16 {
        self.nodes.iter().find(|node| node.is_running()).expect("a running node").port
    }

    /// The cluster as the node on `port` sees it.
    pub fn view_of(&self, port: u16) -> Vec<Node> {
        cli_at(port, &["CLUSTER", "NODES"]).lines().filter_map(parse_node).collect()
    }

    /// The ports of the masters serving slots, as a running node sees it.
    pub fn masters(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .view_of(self.any_running())
            .into_iter()
            .filter(|node| node.master && !node.failed && !node.slots.is_empty())
            .map(|node| node.port)
            .collect();
        ports.sort_unstable();
        ports
    }

    /// The port of the master serving `slot`, as a running node sees it.
    pub fn owner(&self, slot: u16) -> u16 {
        owner_in(&self.view_of(self.any_running()), slot).expect("every slot is served")
    }

    /// The hash slot of `key`.
    pub fn keyslot(&self, key: &str) -> u16 {
        cli_at(self.any_running(), &["CLUSTER", "KEYSLOT", key]).parse().expect("CLUSTER KEYSLOT")
    }

    /// `PUBSUB SHARDNUMSUB channel` on the master of the channel's slot.
    pub fn shard_subscribers(&self, channel: &str) -> u32 {
        let owner = self.owner(self.keyslot(channel));
        let out = cli_at(owner, &["PUBSUB", "SHARDNUMSUB", channel]);
        out.lines().nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("SHARDNUMSUB said {out:?}"))
    }

    /// `PUBSUB SHARDCHANNELS` of the node on `port`, sorted.
    pub fn shard_channels(&self, port: u16) -> Vec<String> {
        let mut channels: Vec<String> =
            cli_at(port, &["PUBSUB", "SHARDCHANNELS"]).lines().filter(|l| !l.is_empty()).map(str::to_owned).collect();
        channels.sort();
        channels
    }

    /// Kills the node on `port` with SIGKILL.
    pub async fn kill(&mut self, port: u16) {
        self.nodes.iter_mut().find(|node| node.port == port).expect("a node of this cluster").kill().await;
    }

    /// Starts the node on `port` again with its configuration: it rejoins the cluster.
    pub async fn restart(&mut self, port: u16) {
        self.nodes.iter_mut().find(|node| node.port == port).expect("a node of this cluster").restart().await;
    }

    /// Waits until every running node says `cluster_state:ok`, every slot is served by a running
    /// master on which all running nodes agree, and every replica is in sync.
    pub async fn wait_until_healthy(&self) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            match self.unhealthy() {
                None => return,
                Some(why) => assert!(Instant::now() < deadline, "the cluster did not heal: {why}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn unhealthy(&self) -> Option<String> {
        let running: Vec<u16> = self.nodes.iter().filter(|n| n.is_running()).map(|n| n.port).collect();
        let mut owners: Option<BTreeMap<(u16, u16), u16>> = None;
        for &port in &running {
            if !cli_at(port, &["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                return Some(format!("{port} is not ok"));
            }
            let view = self.view_of(port);
            let served: BTreeMap<(u16, u16), u16> = view
                .iter()
                .filter(|node| node.master && !node.failed)
                .flat_map(|node| node.slots.iter().map(move |range| (*range, node.port)))
                .collect();
            if served.values().any(|port| !running.contains(port)) {
                return Some(format!("{port} sees a dead master serving slots"));
            }
            if served.keys().map(|(start, end)| u32::from(end - start) + 1).sum::<u32>() != 16384 {
                return Some(format!("{port} does not see every slot served"));
            }
            match &owners {
                Some(seen) if *seen != served => return Some(format!("{port} disagrees on the slots")),
                Some(_) => {}
                None => owners = Some(served),
            }
            let me = view.iter().find(|node| node.port == port);
            if me.is_some_and(|node| !node.master)
                && !cli_at(port, &["INFO", "replication"]).contains("master_link_status:up")
            {
                return Some(format!("replica {port} is not in sync"));
            }
        }
        None
    }

    /// Moves `slot` (and its keys) to the master on `to`, the way `redis-cli --cluster reshard`
    /// does, and waits until every running node agrees.
    pub async fn migrate(&self, slot: u16, to: u16) {
        let from = self.owner(slot);
        assert_ne!(from, to, "slot {slot} is already on {to}");
        let id = |port: u16| cli_at(port, &["CLUSTER", "MYID"]);
        let (from_id, to_id) = (id(from), id(to));
        let slot_arg = slot.to_string();
        assert_eq!(cli_at(to, &["CLUSTER", "SETSLOT", &slot_arg, "IMPORTING", &from_id]), "OK");
        assert_eq!(cli_at(from, &["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", &to_id]), "OK");
        loop {
            let keys = cli_at(from, &["CLUSTER", "GETKEYSINSLOT", &slot_arg, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let port = to.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys);
            assert_eq!(cli_at(from, &args), "OK");
        }
        for port in [to, from] {
            assert_eq!(cli_at(port, &["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to_id]), "OK");
        }
        for port in self.masters() {
            if port != to && port != from {
                cli_at(port, &["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to_id]);
            }
        }
        let deadline = Instant::now() + DEADLINE;
        while self.nodes.iter().filter(|n| n.is_running()).any(|n| owner_in(&self.view_of(n.port), slot) != Some(to)) {
            assert!(Instant::now() < deadline, "the nodes never agreed that slot {slot} is on {to}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn owner_in(view: &[Node], slot: u16) -> Option<u16> {
    view.iter()
        .filter(|node| node.master && !node.failed)
        .find(|node| node.slots.iter().any(|&(start, end)| (start..=end).contains(&slot)))
        .map(|node| node.port)
}

/// `id 127.0.0.1:port@bus flags master ping pong epoch link slot...`
fn parse_node(line: &str) -> Option<Node> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let port = fields.get(1)?.split('@').next()?.rsplit(':').next()?.parse().ok()?;
    let flags: Vec<&str> = fields.get(2)?.split(',').collect();
    let slots = fields
        .iter()
        .skip(8)
        .filter(|range| !range.starts_with('['))
        .filter_map(|range| match range.split_once('-') {
            Some((start, end)) => Some((start.parse().ok()?, end.parse().ok()?)),
            None => range.parse().ok().map(|slot| (slot, slot)),
        })
        .collect();
    Some(Node {
        id: fields[0].to_owned(),
        port,
        master: flags.contains(&"master"),
        failed: flags.iter().any(|flag| flag.starts_with("fail")),
        slots,
    })
}
