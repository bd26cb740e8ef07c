//! A `redis-server` of a test's own, on a free port, that the test can kill and restart: a plain
//! server, a cluster node, a replica or a sentinel, by its arguments.
//!
//! Needs `redis-server` and `redis-cli` on the PATH. Uses only std and tokio.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a start may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts of a restart while the port is still held by the killed server.
const RESTART_ATTEMPTS: u32 = 10;

/// The line a server prints once it accepts connections.
const SERVER_READY: &str = "Ready to accept connections";
/// The line a sentinel prints once it watches its master.
const SENTINEL_READY: &str = "+monitor master";

/// A running `redis-server`; killed when dropped.
pub struct RedisServer {
    pub port: u16,
    /// `redis://127.0.0.1:{port}`
    pub url: String,
    /// What it runs with besides the port (the same again on a restart).
    args: Vec<String>,
    ready: &'static str,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server without persistence on a free port and returns once it accepts
    /// connections.
    pub async fn start() -> RedisServer {
        RedisServer::start_with(&[]).await
    }

    /// Like [`start`](Self::start), with more arguments (`--cluster-enabled yes`,
    /// `--replicaof 127.0.0.1 6379`, ...), kept for restarts.
    pub async fn start_with(args: &[String]) -> RedisServer {
        RedisServer::start_on(free_port(), args.to_vec(), SERVER_READY).await
    }

    /// A sentinel on a free port with the configuration file `config` (which it rewrites), to
    /// which the port is added.
    pub async fn sentinel(config: &std::path::Path) -> RedisServer {
        let port = free_port();
        let mut text = std::fs::read_to_string(config).expect("reading the sentinel configuration");
        text.push_str(&format!("\nport {port}\n"));
        std::fs::write(config, text).expect("writing the sentinel configuration");
        let args = vec![config.display().to_string(), "--sentinel".to_owned()];
        RedisServer::start_on(port, args, SENTINEL_READY).await
    }

    async fn start_on(port: u16, args: Vec<String>, ready: &'static str) -> RedisServer {
        let child = spawn(port, &args, ready)
            .await
            .unwrap_or_else(|error| panic!("starting redis-server on port {port}: {error}"));
        RedisServer { port, url: format!("redis://127.0.0.1:{port}"), args, ready, child: Some(child) }
    }

    /// Whether it runs (it was not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the server again on the same port (killing it first if it still runs).
    pub async fn restart(&mut self) {
        self.kill().await;
        let mut last_error = String::new();
        for attempt in 0..RESTART_ATTEMPTS {
            match spawn(self.port, &self.args, self.ready).await {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(error) => {
                    // Most likely the port is still briefly held; back off and retry.
                    last_error = error;
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt + 1))).await;
                }
            }
        }
        panic!("restarting redis-server on port {}: {last_error}", self.port);
    }

    /// Runs `redis-cli -p {port} {args}` and returns its trimmed output, e.g.
    /// `cli(&["PUBSUB", "NUMSUB", channel])`.
    pub fn cli(&self, args: &[&str]) -> String {
        cli_at(self.port, args)
    }

    /// Calls of `command` (lower case) so far, from `INFO commandstats`.
    pub fn calls(&self, command: &str) -> u64 {
        calls_at(self.port, command)
    }
}

/// Runs `redis-cli -p {port} {args}` against any server, node or sentinel, and returns its
/// trimmed output.
pub fn cli_at(port: u16, args: &[&str]) -> String {
    let output = std::process::Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running redis-cli");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Calls of `command` (lower case) so far on the server on `port`, from `INFO commandstats`.
pub fn calls_at(port: u16, command: &str) -> u64 {
    let stats = cli_at(port, &["INFO", "commandstats"]);
    let prefix = format!("cmdstat_{command}:calls=");
    stats
        .lines()
        .find_map(|line| line.trim().strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().expect("a call count"))
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local address").port()
}

/// Spawns `redis-server` on `port` and waits for it to print `ready`. The error holds what the
/// server printed when it exited (or did not get ready) instead.
async fn spawn(port: u16, args: &[String], ready: &str) -> Result<Child, String> {
    let mut command = Command::new("redis-server");
    if args.iter().any(|arg| arg == "--sentinel") {
        // The port is in the configuration file, and a sentinel keeps no data.
        command.args(args);
    } else {
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(args);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("cannot run redis-server: {error}"))?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut seen = Vec::new();
    let ready = tokio::time::timeout(START_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            let is_ready = line.contains(ready);
            seen.push(line);
            if is_ready {
                return true;
            }
        }
        false
    })
    .await;
    if ready == Ok(true) {
        // Keep reading so that the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        return Ok(child);
    }
    let _ = child.kill().await;
    Err(match ready {
        Err(_) => format!("not ready after {START_TIMEOUT:?}: {}", seen.join("\n")),
        Ok(_) => format!("exited: {}", seen.join("\n")),
    })
}
