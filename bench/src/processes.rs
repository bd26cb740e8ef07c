//! The server processes a harness starts on loopback: `lct` pods, Socket.IO node processes,
//! socketioxide processes, floor servers and `redis-server` (one, or the masters of a Redis
//! Cluster), with their memory and CPU time read from `/proc`. Every child is killed when its
//! handle is dropped, so a harness never leaves anything running.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("lct-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running server process and the loopback address it listens on.
pub struct Server {
    child: tokio::process::Child,
    pub addr: String,
}

impl Server {
    /// Starts `command` and waits for its JSON log line `{"message":"listening","addr":…}`.
    async fn start(mut command: tokio::process::Command, what: &str) -> anyhow::Result<Server> {
        let mut child = command
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let Some(line) = lines.next_line().await? else { bail!("{what} exited before listening") };
                let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if json["message"] == "listening" {
                    return Ok(json["addr"].as_str().unwrap_or_default().to_owned());
                }
            }
        })
        .await
        .with_context(|| format!("{what} did not start listening in time"))??;
        // Keep draining its output so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server { child, addr })
    }

    /// An `lct` pod with the harness's settings: no per-address limits (the harness is one
    /// address opening thousands of connections), quiet logs.
    pub async fn lct(binary: &Path, data_dir: &Path, name: &str, env: &[(&str, String)]) -> anyhow::Result<Server> {
        let mut command = tokio::process::Command::new(binary);
        command
            .env("LCT_LISTEN", "127.0.0.1:0")
            .env("LCT_DATA_DIR", data_dir)
            .env("LCT_POD_NAME", name)
            .env("LCT_LOG", "warn,lct=info")
            .env("LCT_RATE_LIMIT_COMMANDS", "0")
            .env("LCT_RATE_LIMIT_CONNECTIONS", "0")
            // Every client of a harness comes from loopback: no connection caps.
            .env("LCT_MAX_CONNECTIONS", "0")
            .env("LCT_MAX_CONNECTIONS_PER_CLIENT", "0")
            .env("LCT_WS_INVOCATIONS_PER_SECOND", "100000")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        Server::start(command, &format!("{} ({name})", binary.display())).await
    }

    /// A Socket.IO server process (`bench/socketio/server.js`) using the Redis adapter.
    pub async fn socketio(dir: &Path, redis_url: &str) -> anyhow::Result<Server> {
        if !dir.join("node_modules").is_dir() {
            bail!("{} has no node_modules: run `npm ci --prefix {}` first", dir.display(), dir.display());
        }
        let mut command = tokio::process::Command::new("node");
        command.arg("server.js").current_dir(dir).env("PORT", "0").env("REDIS_URL", redis_url);
        Server::start(command, "node server.js").await
    }

    /// A floor server process (`lct-bench floor-server`, this executable) on `redis_url`.
    pub async fn floor(redis_url: &str, env: &[(&str, String)]) -> anyhow::Result<Server> {
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
        command
            .args(["floor-server", "--listen", "127.0.0.1:0", "--redis-url", redis_url])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        Server::start(command, "lct-bench floor-server").await
    }

    /// A socketioxide server process (`lct-bench-socketioxide`) using its Redis adapter.
    pub async fn socketioxide(binary: &Path, redis_url: &str, env: &[(&str, String)]) -> anyhow::Result<Server> {
        if !binary.exists() {
            bail!("{} is missing: run `cargo build -p lct-bench-socketioxide` first", binary.display());
        }
        let mut command = tokio::process::Command::new(binary);
        command.env("PORT", "0").env("REDIS_URL", redis_url).envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        Server::start(command, "lct-bench-socketioxide").await
    }

    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the server exited")
    }

    pub fn usage(&self) -> anyhow::Result<Usage> {
        Usage::of(self.pid()?)
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.pid()?;
        std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
        tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await.context("the server did not stop")??;
        Ok(())
    }
}

/// A `redis-server` on a free loopback port, or the masters of a Redis Cluster, without
/// persistence.
pub struct Redis {
    children: Vec<tokio::process::Child>,
    /// The ports of the server or of the cluster's masters.
    pub ports: Vec<u16>,
    pub url: String,
    _dir: Option<TempDir>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `redis-server` on `port` with more arguments and returns once it accepts connections.
async fn redis_server(port: u16, args: &[String]) -> anyhow::Result<tokio::process::Child> {
    let child = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(args)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting redis-server (install it with `apt-get install -y redis-server`)")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if tokio::time::Instant::now() > deadline {
            bail!("redis-server did not start listening on port {port}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(child)
}

/// `redis-cli -p {port} {args}`, its output trimmed.
pub fn redis_cli(port: u16, args: &[&str]) -> anyhow::Result<String> {
    let output = std::process::Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running redis-cli")?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

impl Redis {
    pub async fn start() -> anyhow::Result<Redis> {
        let port = free_port()?;
        let child = redis_server(port, &[]).await?;
        Ok(Redis { children: vec![child], ports: vec![port], url: format!("redis://127.0.0.1:{port}"), _dir: None })
    }

    /// A Redis Cluster of `masters` masters without replicas (`redis-cli --cluster create`),
    /// once every node says it is ok.
    pub async fn cluster(masters: usize) -> anyhow::Result<Redis> {
        let dir = TempDir::new("cluster");
        let (mut children, mut ports) = (Vec::new(), Vec::new());
        for index in 0..masters {
            let home = dir.0.join(index.to_string());
            std::fs::create_dir_all(&home)?;
            let port = free_port()?;
            let args: Vec<String> = vec![
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                home.join("nodes.conf").display().to_string(),
                "--cluster-port".into(),
                free_port()?.to_string(),
                "--dir".into(),
                home.display().to_string(),
            ];
            children.push(redis_server(port, &args).await?);
            ports.push(port);
        }
        let created = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(ports.iter().map(|port| format!("127.0.0.1:{port}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .context("running redis-cli --cluster create")?;
        if !created.status.success() {
            bail!("redis-cli --cluster create failed: {}", String::from_utf8_lossy(&created.stdout));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for &port in &ports {
            while !redis_cli(port, &["CLUSTER", "INFO"])?.contains("cluster_state:ok") {
                if tokio::time::Instant::now() > deadline {
                    bail!("the cluster node on port {port} never became ok");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let url = format!("redis-cluster://127.0.0.1:{}", ports[0]);
        Ok(Redis { children, ports, url, _dir: Some(dir) })
    }

    /// CPU time and memory of every server process together.
    pub fn usage(&self) -> anyhow::Result<Usage> {
        Ok(Usage::sum(&self.usage_by_server()?))
    }

    /// CPU time and memory of each server process, in the order of [`ports`](Self::ports).
    pub fn usage_by_server(&self) -> anyhow::Result<Vec<Usage>> {
        self.children.iter().map(|child| Usage::of(child.id().context("redis-server exited")?)).collect()
    }

    /// Publications each server (or master) has handled so far (`PUBLISH` and `SPUBLISH` in
    /// `INFO commandstats`), in the order of [`ports`](Self::ports).
    pub fn publications(&self) -> anyhow::Result<Vec<u64>> {
        self.ports
            .iter()
            .map(|&port| {
                let stats = redis_cli(port, &["INFO", "commandstats"])?;
                let calls = |command: &str| {
                    let prefix = format!("cmdstat_{command}:calls=");
                    stats
                        .lines()
                        .find_map(|line| line.strip_prefix(prefix.as_str()))
                        .and_then(|rest| rest.split(',').next())
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                Ok(calls("publish") + calls("spublish"))
            })
            .collect()
    }
}

/// Resident memory and CPU time of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
}

impl Usage {
    pub fn of(pid: u32) -> anyhow::Result<Usage> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let rss_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .context("no VmRSS")?
            .parse()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let after = stat.rsplit_once(')').context("malformed stat")?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        Ok(Usage { rss_bytes: rss_kib * 1024, cpu_seconds: ticks as f64 / clock_ticks_per_second() })
    }

    pub fn sum(all: &[Usage]) -> Usage {
        all.iter().fold(Usage::default(), |a, u| Usage {
            rss_bytes: a.rss_bytes + u.rss_bytes,
            cpu_seconds: a.cpu_seconds + u.cpu_seconds,
        })
    }
}

/// `USER_HZ`, read from `getconf` once (100 on Linux almost everywhere).
fn clock_ticks_per_second() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
