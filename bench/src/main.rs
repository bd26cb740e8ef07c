//! Measurement harnesses of lct. They start the real `lct` binary (and `redis-server` where
//! needed) on loopback, drive it, print figures and stop by themselves.
//!
//! `lct-bench idle-memory`: server memory per idle live connection (SignalR or v2) of one pod.
//! `lct-bench stalled-readers`: server memory per SignalR connection that sends invocations
//! with large invocation ids and never reads, and how long the server takes to cut them off.
//! `lct-bench fanout`: lobby fan-out through two pods and Redis, against the floor server,
//! Socket.IO and socketioxide with their Redis adapters on the same machine in the same run (see
//! `docs/benchmarks.md`).
//! `lct-bench floor-server`: the least server the fan-out clients accept, measured by `fanout`
//! as the floor the other systems' CPU per delivery is compared to.
//! `lct-bench store`: memory and start-up time on embedded stores of growing size, and load
//! latency at the largest.
//! `lct-bench check-cost`: what the live feeds' periodic check of the event store costs (see
//! `docs/delivery.md`).

mod check_cost;
mod fanout;
mod floor;
mod idle;
mod processes;
mod store;
mod worker;

use anyhow::bail;
use clap::{Parser, Subcommand};
use futures::{SinkExt, StreamExt};
use processes::{Server, TempDir};
use std::path::PathBuf;
use std::time::Duration;
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
    /// Server memory (RSS) per idle live connection (SignalR or v2).
    IdleMemory(idle::IdleOptions),
    /// Server memory (RSS) per SignalR connection that sends invocations with large ids and
    /// never reads its completions, until the server cuts it off.
    StalledReaders {
        /// Such connections, all at once.
        #[arg(long, default_value_t = 200)]
        connections: usize,
        /// Bytes of each invocation id (the server echoes it in the completion).
        #[arg(long, default_value_t = 30_000)]
        id_bytes: usize,
    },
    /// Delivered messages per second, latency, CPU and memory of lobby fan-out across two
    /// server processes and Redis, for lct, the floor server, Socket.IO and socketioxide.
    Fanout(fanout::FanoutOptions),
    /// Memory and start-up time of lct on embedded stores of 10 000 to 1 000 000 events, and
    /// load latency at the largest.
    Store(store::StoreOptions),
    /// CPU and store reads of the live feeds' periodic check, with idle clients on two pods.
    CheckCost(check_cost::CheckCostOptions),
    /// The floor of `fanout`: a minimal server that gives the harness's SignalR clients their
    /// handshake, click completions and lobby broadcasts across processes through Redis.
    FloorServer {
        /// Address to listen on (port 0: any free port; the address is printed as JSON).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// The Redis both processes publish through.
        #[arg(long, default_value = "redis://127.0.0.1:6379")]
        redis_url: String,
    },
    /// A load process started by `fanout` (reads its commands on stdin).
    #[command(hide = true)]
    Worker,
    /// A process of idle clients started by `idle-memory` (reads what to open on stdin).
    #[command(hide = true)]
    IdleClients,
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

/// One client that sends invocations and never reads: how long until the server cut it off
/// (`None` when it still held the connection after `give_up`).
async fn stall(
    addr: String,
    tournament: String,
    id_bytes: usize,
    give_up: Duration,
) -> anyhow::Result<Option<Duration>> {
    let socket = signalr_connect(&addr, &tournament).await?;
    let (mut sink, _unread) = socket.split();
    let record = serde_json::json!({
        "type": 1, "invocationId": "i".repeat(id_bytes), "target": "TeamClicked",
        "arguments": [{"groupKey": tournament, "team": "PSG", "name": "Nobody", "surname": "Here"}],
    });
    let record = format!("{record}\u{1e}");
    let started = tokio::time::Instant::now();
    let deadline = started + give_up;
    loop {
        match tokio::time::timeout_at(deadline, sink.send(Message::text(record.clone()))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Ok(Some(started.elapsed())),
            Err(_) => return Ok(None),
        }
    }
}

async fn stalled_readers(lct: &std::path::Path, connections: usize, id_bytes: usize) -> anyhow::Result<()> {
    let data = TempDir::new("stalled");
    let pod = Server::lct(lct, &data.0, "pod-a", &[]).await?;
    let tournament = create_tournament(&reqwest::Client::new(), &pod.addr, "Stalled readers").await?;
    // Warm up: one well-behaved connection, so the feed and its buffers are in the baseline.
    let _watcher = signalr_connect(&pod.addr, &tournament).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = pod.usage()?.rss_bytes;
    let give_up = Duration::from_secs(120);
    let clients: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(stall(pod.addr.clone(), tournament.clone(), id_bytes, give_up)))
        .collect();
    let mut peak = before;
    let mut done = Vec::new();
    for client in clients {
        let mut client = client;
        loop {
            tokio::select! {
                outcome = &mut client => {
                    done.push(outcome??);
                    break;
                }
                () = tokio::time::sleep(Duration::from_millis(20)) => peak = peak.max(pod.usage()?.rss_bytes),
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = pod.usage()?.rss_bytes;
    let cut: Vec<Duration> = done.iter().flatten().copied().collect();
    let slowest = cut.iter().max().copied().unwrap_or_default();
    let kib = |bytes: u64| bytes / 1024;
    println!("stalled-readers: {connections} SignalR connections sending invocations with {id_bytes}-byte ids, never reading");
    println!("  cut off by the server: {} of {connections}; the last after {:.1} s", cut.len(), slowest.as_secs_f64());
    println!("  server RSS before: {} KiB, peak: {} KiB, after: {} KiB", kib(before), kib(peak), kib(after));
    println!(
        "  peak server memory per stalled connection: {:.1} KiB",
        peak.saturating_sub(before) as f64 / 1024.0 / connections.max(1) as f64
    );
    if cut.len() < connections {
        bail!("{} connections were still held after {give_up:?}", connections - cut.len());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::IdleMemory(options) => idle::idle_memory(&cli.lct, &options).await,
        Command::StalledReaders { connections, id_bytes } => stalled_readers(&cli.lct, connections, id_bytes).await,
        Command::Fanout(options) => fanout::run(&cli.lct, &options).await,
        Command::Store(options) => store::run(&cli.lct, &options).await,
        Command::CheckCost(options) => check_cost::run(&cli.lct, &options).await,
        Command::FloorServer { listen, redis_url } => floor::serve(&listen, &redis_url).await,
        Command::Worker => worker::run().await,
        Command::IdleClients => idle::clients().await,
    }
}
