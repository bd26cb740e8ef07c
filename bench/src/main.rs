//! Measurement harnesses of lct. They start the real `lct` binary (and `redis-server` where
//! needed) on loopback, drive it, print figures and stop by themselves.
//!
//! `lct-bench idle-memory`: server memory per idle SignalR connection.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use futures::{SinkExt, StreamExt};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
#[command(about = "Measurement harnesses of lct (loopback only; they stop by themselves)")]
struct Cli {
    /// The lct binary to measure (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/lct")]
    lct: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Server memory (RSS) per idle SignalR connection.
    IdleMemory {
        /// Idle connections to open.
        #[arg(long, default_value_t = 5000)]
        connections: usize,
        /// Tournaments they are spread over.
        #[arg(long, default_value_t = 500)]
        tournaments: usize,
    },
}

/// A running lct process on a free loopback port.
struct Pod {
    child: tokio::process::Child,
    addr: String,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A temporary directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    pub fn new(tag: &str) -> Dir {
        let path = std::env::temp_dir().join(format!("lct-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        Dir(path)
    }
}

impl Pod {
    async fn start(lct: &PathBuf, env: &[(&str, &str)]) -> anyhow::Result<Pod> {
        let dir = tempdir::new("pod");
        let mut child = tokio::process::Command::new(lct)
            .env("LCT_LISTEN", "127.0.0.1:0")
            .env("LCT_DATA_DIR", &dir.0)
            .env("LCT_LOG", "warn,lct=info")
            // The harness is one client address opening thousands of connections.
            .env("LCT_RATE_LIMIT_COMMANDS", "0")
            .env("LCT_RATE_LIMIT_CONNECTIONS", "0")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", lct.display()))?;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let Some(line) = lines.next_line().await? else { bail!("lct exited before listening") };
            let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if json["message"] == "listening" {
                break json["addr"].as_str().unwrap_or_default().to_owned();
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Pod { child, addr, _dir: dir })
    }

    fn rss_kib(&self) -> anyhow::Result<u64> {
        let pid = self.child.id().context("pod exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
        Ok(line.split_whitespace().nth(1).context("VmRSS value")?.parse()?)
    }
}

async fn create_tournament(http: &reqwest::Client, addr: &str, name: &str) -> anyhow::Result<String> {
    let response = http
        .post(format!("http://{addr}/api/Tournament/create"))
        .json(&serde_json::json!({"name": name, "playerLimit": 10}))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("create answered {}", response.status());
    }
    Ok(response.json().await?)
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn signalr_connect(addr: &str, tournament: &str) -> anyhow::Result<Socket> {
    let url = format!("ws://{addr}/hubs/actions?tournamentId={tournament}");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    socket.send(Message::text("{\"protocol\":\"json\",\"version\":1}\u{1e}")).await?;
    match socket.next().await {
        Some(Ok(Message::Text(text))) if text.as_str() == "{}\u{1e}" => Ok(socket),
        other => bail!("unexpected handshake answer {other:?}"),
    }
}

async fn idle_memory(lct: &PathBuf, connections: usize, tournaments: usize) -> anyhow::Result<()> {
    let pod = Pod::start(lct, &[]).await?;
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..tournaments.max(1) {
        ids.push(create_tournament(&http, &pod.addr, &format!("Idle {i}")).await?);
    }
    // One connection per tournament first, so per-tournament feeds are counted in the baseline.
    let mut sockets = Vec::with_capacity(connections);
    for id in &ids {
        sockets.push(signalr_connect(&pod.addr, id).await?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = pod.rss_kib()?;
    let added = connections.saturating_sub(sockets.len());
    for i in 0..added {
        sockets.push(signalr_connect(&pod.addr, &ids[i % ids.len()]).await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = pod.rss_kib()?;
    let per_connection = (after.saturating_sub(before)) as f64 * 1024.0 / added.max(1) as f64;
    println!("idle-memory: {added} idle SignalR connections over {} tournaments", ids.len());
    println!("  server RSS before: {before} KiB, after: {after} KiB");
    println!("  server memory per idle connection: {:.0} bytes ({:.1} KiB)", per_connection, per_connection / 1024.0);
    drop(sockets);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::IdleMemory { connections, tournaments } => idle_memory(&cli.lct, connections, tournaments).await,
    }
}
