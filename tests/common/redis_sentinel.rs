//! Redis Sentinel of a test's own on loopback: a master, a replica and three sentinels
//! (`redis-server --sentinel`, quorum 2) that promote the replica [`DOWN_AFTER_MS`] after the
//! master stops answering.
//!
//! Needs `redis-server` and `redis-cli` on the PATH; uses std, tokio and tempfile.
#![allow(dead_code)]

use super::redis_cluster::cli_at;
use super::redis_server::RedisServer;
use std::time::{Duration, Instant};

/// The master's name in the sentinels' configuration.
pub const MASTER_NAME: &str = "lobby";
/// Milliseconds without an answer before the sentinels take the master for down.
pub const DOWN_AFTER_MS: u64 = 1000;
/// Longest wait for the group to form or to fail over.
const DEADLINE: Duration = Duration::from_secs(30);

/// A master, its replica and three sentinels; all killed when dropped.
pub struct SentinelGroup {
    /// The master, then the replica (which is which changes with failovers).
    pub servers: Vec<RedisServer>,
    pub sentinels: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl SentinelGroup {
    /// Starts the master and its replica, waits for the replica to be in sync, then the
    /// sentinels, and returns once each sentinel knows the replica and the two other sentinels.
    pub async fn start() -> SentinelGroup {
        let dir = tempfile::tempdir().expect("a temporary directory");
        // Replication writes snapshots: into the group's directory, not the working directory.
        let home = |name: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(&path).unwrap();
            vec!["--dir".to_owned(), path.display().to_string()]
        };
        let master = RedisServer::start_with(&home("master")).await;
        let mut replica_args = home("replica");
        replica_args.extend(["--replicaof".to_owned(), "127.0.0.1".to_owned(), master.port.to_string()]);
        let replica = RedisServer::start_with(&replica_args).await;
        wait_for("the replica to be in sync", || {
            cli_at(replica.port, &["INFO", "replication"]).contains("master_link_status:up")
        })
        .await;
        let mut sentinels = Vec::new();
        for index in 0..3 {
            let config = dir.path().join(format!("sentinel-{index}.conf"));
            std::fs::write(
                &config,
                format!(
                    "bind 127.0.0.1\ndir {}\nsentinel monitor {MASTER_NAME} 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n\
                     sentinel failover-timeout {MASTER_NAME} 10000\nsentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir.path().display(),
                    master.port
                ),
            )
            .unwrap();
            sentinels.push(RedisServer::sentinel(&config).await);
        }
        let group = SentinelGroup { servers: vec![master, replica], sentinels, _dir: dir };
        for sentinel in &group.sentinels {
            wait_for("every sentinel to know the replica and the other sentinels", || {
                let info = cli_at(sentinel.port, &["SENTINEL", "MASTER", MASTER_NAME]);
                field(&info, "num-slaves") == Some(1) && field(&info, "num-other-sentinels") == Some(2)
            })
            .await;
        }
        group
    }

    /// The sentinels as `127.0.0.1:port`.
    pub fn sentinel_addresses(&self) -> Vec<String> {
        self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect()
    }

    /// The sentinel URL form: `redis-sentinel://127.0.0.1:{first}?node=...&sentinelServiceName=`.
    pub fn url(&self) -> String {
        let others: String = self.sentinels[1..].iter().map(|s| format!("node=127.0.0.1:{}&", s.port)).collect();
        format!("redis-sentinel://127.0.0.1:{}?{others}sentinelServiceName={MASTER_NAME}", self.sentinels[0].port)
    }

    /// The port of the master according to the first sentinel that answers.
    pub fn master_port(&self) -> u16 {
        for sentinel in self.sentinels.iter().filter(|s| s.is_running()) {
            let answer = cli_at(sentinel.port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]);
            if let Some(port) = answer.lines().nth(1).and_then(|p| p.trim().parse().ok()) {
                return port;
            }
        }
        panic!("no sentinel names the master");
    }

    pub fn server(&self, port: u16) -> &RedisServer {
        self.servers.iter().find(|s| s.port == port).expect("a server of this group")
    }

    /// Kills the master of the moment with SIGKILL and returns its port.
    pub async fn kill_master(&mut self) -> u16 {
        let port = self.master_port();
        self.servers.iter_mut().find(|s| s.port == port).expect("the master is ours").kill().await;
        port
    }

    /// Waits until every sentinel names another master than `old` and that server says it is
    /// the master; returns its port.
    pub async fn wait_for_failover(&self, old: u16) -> u16 {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let named: Vec<Option<u16>> = self
                .sentinels
                .iter()
                .map(|s| {
                    let answer = cli_at(s.port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]);
                    answer.lines().nth(1).and_then(|p| p.trim().parse().ok())
                })
                .collect();
            if let Some(Some(new)) = named.first() {
                if *new != old
                    && named.iter().all(|n| *n == Some(*new))
                    && cli_at(*new, &["ROLE"]).lines().next() == Some("master")
                {
                    return *new;
                }
            }
            assert!(Instant::now() < deadline, "the sentinels did not fail over from {old}: {named:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A number field of `SENTINEL MASTER`'s answer (name and value on alternate lines).
fn field(answer: &str, name: &str) -> Option<u64> {
    let lines: Vec<&str> = answer.lines().collect();
    let at = lines.iter().position(|line| line.trim() == name)?;
    lines.get(at + 1)?.trim().parse().ok()
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
