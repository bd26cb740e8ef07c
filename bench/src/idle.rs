//! `lct-bench idle-memory`: server memory (RSS) per idle live connection of one pod, over the
//! SignalR hub or the v2 live socket.
//!
//! A process may not hold more than about 20 000 sockets here, so past
//! [`CLIENTS_PER_PROCESS`] the clients are spread over child processes
//! (`lct-bench idle-clients`, hidden), each told on stdin what to open and holding its
//! connections until its stdin closes.

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

use crate::processes::{Server, TempDir};
use crate::Socket;

/// Clients one process holds at most (below its open-file limit, with headroom).
pub const CLIENTS_PER_PROCESS: usize = 15_000;
/// Connections opened at once while connecting.
const CONCURRENT_CONNECTS: usize = 32;

/// The live protocol the idle clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LiveProtocol {
    /// The SignalR-compatible hub `/hubs/actions` (JSON hub protocol handshake).
    Signalr,
    /// The v2 live socket `/api/v2/tournaments/{id}/live` (waits for its `Subscribed` message).
    V2,
}

#[derive(clap::Args)]
pub struct IdleOptions {
    /// Idle connections to open.
    #[arg(long, default_value_t = 5000)]
    connections: usize,
    /// Tournaments they are spread over.
    #[arg(long, default_value_t = 500)]
    tournaments: usize,
    /// The live protocol of the connections.
    #[arg(long, value_enum, default_value_t = LiveProtocol::Signalr)]
    protocol: LiveProtocol,
}

/// What a client process opens (the first line on its stdin).
#[derive(Serialize, Deserialize)]
struct ClientsConfig {
    addr: String,
    protocol: LiveProtocol,
    tournaments: Vec<String>,
    /// Index of the first connection overall (decides the tournament of each).
    first: usize,
    count: usize,
}

/// Opens one idle live connection and waits until the server has taken it in: the SignalR
/// handshake answer, or the v2 `Subscribed` message.
async fn connect(addr: &str, protocol: LiveProtocol, tournament: &str) -> anyhow::Result<Socket> {
    match protocol {
        LiveProtocol::Signalr => crate::signalr_connect(addr, tournament).await,
        LiveProtocol::V2 => {
            let url = format!("ws://{addr}/api/v2/tournaments/{tournament}/live");
            let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
            match socket.next().await {
                Some(Ok(Message::Text(text))) if text.as_str().contains("\"Subscribed\"") => Ok(socket),
                other => bail!("unexpected first v2 message {other:?}"),
            }
        }
    }
}

/// Keeps a connection alive as an idle client does: reads (answering the server's pings) and,
/// over SignalR, sends a ping record every 15 seconds.
async fn hold(socket: Socket, protocol: LiveProtocol) {
    let (mut sink, mut stream) = socket.split();
    let mut pings = tokio::time::interval(Duration::from_secs(15));
    pings.tick().await;
    loop {
        tokio::select! {
            next = stream.next() => match next {
                Some(Ok(_)) => {}
                _ => return,
            },
            _ = pings.tick(), if protocol == LiveProtocol::Signalr => {
                if sink.send(Message::text("{\"type\":6}\u{1e}")).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Opens `count` connections, the `i`th (counting from `first`) to tournament `i % len`, each
/// held by a task of the returned set (and closed when it is dropped).
async fn open_all(config: &ClientsConfig) -> anyhow::Result<tokio::task::JoinSet<()>> {
    let ids = &config.tournaments;
    let mut held = tokio::task::JoinSet::new();
    let mut connecting = futures::stream::iter(config.first..config.first + config.count)
        .map(|i| connect(&config.addr, config.protocol, &ids[i % ids.len()]))
        .buffer_unordered(CONCURRENT_CONNECTS);
    while let Some(socket) = connecting.next().await {
        held.spawn(hold(socket?, config.protocol));
    }
    Ok(held)
}

/// A child process holding idle connections until its stdin closes.
struct Clients {
    child: tokio::process::Child,
    _stdin: tokio::process::ChildStdin,
}

impl Clients {
    async fn start(config: &ClientsConfig) -> anyhow::Result<Clients> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("idle-clients")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a client process")?;
        let mut stdin = child.stdin.take().context("client process stdin")?;
        stdin.write_all(format!("{}\n", serde_json::to_string(config)?).as_bytes()).await?;
        stdin.flush().await?;
        Ok(Clients { child, _stdin: stdin })
    }

    /// Waits for the process's `ready` line.
    async fn ready(&mut self) -> anyhow::Result<()> {
        let stdout = self.child.stdout.as_mut().context("client process stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).await?;
        if line.trim() != "ready" {
            bail!("a client process failed: {}", line.trim());
        }
        Ok(())
    }
}

/// Opens `count` connections starting at connection `first`: in this process when they fit,
/// else in child processes of at most [`CLIENTS_PER_PROCESS`] each. Both are held until the
/// returned value is dropped.
async fn open(
    addr: &str,
    protocol: LiveProtocol,
    tournaments: &[String],
    first: usize,
    count: usize,
) -> anyhow::Result<(tokio::task::JoinSet<()>, Vec<Clients>)> {
    let config = |first, count| ClientsConfig {
        addr: addr.to_owned(),
        protocol,
        tournaments: tournaments.to_vec(),
        first,
        count,
    };
    if count <= CLIENTS_PER_PROCESS {
        return Ok((open_all(&config(first, count)).await?, Vec::new()));
    }
    let mut processes = Vec::new();
    let mut opened = 0;
    while opened < count {
        let batch = CLIENTS_PER_PROCESS.min(count - opened);
        processes.push(Clients::start(&config(first + opened, batch)).await?);
        opened += batch;
    }
    for process in &mut processes {
        process.ready().await?;
    }
    Ok((tokio::task::JoinSet::new(), processes))
}

pub async fn idle_memory(lct: &std::path::Path, options: &IdleOptions) -> anyhow::Result<()> {
    let data = TempDir::new("idle");
    let pod = Server::lct(lct, &data.0, "pod-a", &[]).await?;
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..options.tournaments.max(1) {
        ids.push(crate::create_tournament(&http, &pod.addr, &format!("Idle {i}")).await?);
    }
    // One connection per tournament first, so per-tournament feeds are counted in the baseline.
    let (warm, _) = open(&pod.addr, options.protocol, &ids, 0, ids.len()).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = pod.usage()?.rss_bytes / 1024;
    let added = options.connections.saturating_sub(warm.len());
    let (held, processes) = open(&pod.addr, options.protocol, &ids, warm.len(), added).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = pod.usage()?.rss_bytes / 1024;
    let per_connection = (after.saturating_sub(before)) as f64 * 1024.0 / added.max(1) as f64;
    let protocol = match options.protocol {
        LiveProtocol::Signalr => "SignalR",
        LiveProtocol::V2 => "v2",
    };
    println!(
        "idle-memory: {added} idle {protocol} connections over {} tournaments ({} client processes)",
        ids.len(),
        processes.len().max(1)
    );
    println!("  server RSS before: {before} KiB, after: {after} KiB");
    println!("  server memory per idle connection: {:.0} bytes ({:.1} KiB)", per_connection, per_connection / 1024.0);
    drop((warm, held, processes));
    Ok(())
}

/// The child process: reads its [`ClientsConfig`], opens the connections, prints `ready` and
/// holds them until stdin closes.
pub async fn clients() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let config: ClientsConfig = serde_json::from_str(&lines.next_line().await?.context("no configuration")?)?;
    let held = match open_all(&config).await {
        Ok(held) => held,
        Err(error) => {
            println!("error: {error:#}");
            return Err(error);
        }
    };
    println!("ready");
    while lines.next_line().await?.is_some() {}
    drop(held);
    Ok(())
}
