//! The fan-out benchmark: for each system, a fresh `redis-server` (for `lct-cluster`, a Redis
//! Cluster of three masters) and two server processes, N WebSocket clients over M lobbies with
//! each lobby's clients alternating between the two processes (so every broadcast crosses
//! Redis), and one click driver per lobby. For each offered rate it reports delivered messages
//! per second, click-to-client latency percentiles, server CPU seconds per 100 000 deliveries,
//! each Redis server's (each shard's) share of the publications, server CPU per delivery as a
//! multiple of the floor's (`lct-bench floor-server`) at the same step, and, once the step has
//! settled, how load was shed: clicks refused (with the errors answered), deliveries missing,
//! deliveries of refused clicks that were recorded all the same, and how many clients hold their
//! lobby's latest list. Before any load it reads server memory per
//! idle connection. Everything runs on loopback and stops by itself.

use crate::processes::{Redis, Server, TempDir, Usage};
use crate::worker::{LatestReport, Lobby, System, TotalsReport, WindowReport, WorkerConfig};
use anyhow::{bail, Context};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

#[derive(Debug, Clone, clap::Args)]
pub struct FanoutOptions {
    /// WebSocket clients in all.
    #[arg(long, default_value_t = 20_000)]
    pub clients: usize,
    /// Lobbies they are spread over (clients per lobby = clients / lobbies; by default ten, the
    /// product's lobby size).
    #[arg(long, default_value_t = 2_000)]
    pub lobbies: usize,
    /// Offered click rates in clicks per second over all lobbies, one measurement step each.
    /// Each click is broadcast to every client of its lobby.
    #[arg(long, value_delimiter = ',', default_value = "1000,2500,5000,7500,10000")]
    pub rates: Vec<f64>,
    /// Seconds measured per step.
    #[arg(long, default_value_t = 10.0)]
    pub step_seconds: f64,
    /// Seconds at a new rate before its measurement starts.
    #[arg(long, default_value_t = 3.0)]
    pub warmup_seconds: f64,
    /// Idle seconds after all clients connected, before memory is read and load starts.
    #[arg(long, default_value_t = 5.0)]
    pub settle_seconds: f64,
    /// Systems to measure, in order: `lct` (one Redis), `lct-cluster` (a Redis Cluster of three
    /// masters), `floor` (the least server the clients accept, the yardstick of CPU per
    /// delivery), `socketio` (node, Redis adapter), `socketioxide` (Rust, Redis adapter).
    #[arg(long, value_delimiter = ',', default_value = "lct,floor,socketio,socketioxide")]
    pub systems: Vec<System>,
    /// Client processes (a process here may hold at most 20 000 sockets); by default one per
    /// 8 000 clients, at least two.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Runtime worker threads of each Rust server process (lct's pods, the floor, socketioxide),
    /// given to them as `TOKIO_WORKER_THREADS`; by default tokio's, one per core. `1` sizes the
    /// two processes of a system to a core each, as a pod limited to one CPU runs; Node's
    /// Socket.IO server runs one event loop per process either way.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub server_workers: Option<u16>,
    /// The socketioxide server (`cargo build -p lct-bench-socketioxide`); by default the one
    /// beside this executable.
    #[arg(long)]
    pub socketioxide: Option<PathBuf>,
    /// The Socket.IO server's directory (with `npm ci` run in it).
    #[arg(long, default_value = "bench/socketio")]
    pub socketio_dir: PathBuf,
    /// Where to write the figures as JSON.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Results {
    machine: Machine,
    clients: usize,
    lobbies: usize,
    clients_per_lobby: usize,
    step_seconds: f64,
    /// Runtime worker threads of each Rust server process; `None` for tokio's default.
    server_workers: Option<u16>,
    systems: Vec<SystemResult>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: String,
    memory_gib: f64,
    kernel: String,
}

#[derive(Debug, Serialize)]
struct SystemResult {
    system: System,
    idle_rss_before_bytes: u64,
    idle_rss_after_bytes: u64,
    memory_per_idle_connection_bytes: f64,
    steps: Vec<Step>,
    totals: TotalsReport,
    /// Deliveries of acknowledged clicks that never arrived.
    lost: u64,
    /// Deliveries beyond the acknowledged clicks': of clicks answered with an error that the
    /// server recorded all the same.
    delivered_of_refused_clicks: u64,
}

#[derive(Debug, Serialize)]
struct Step {
    offered_clicks_per_second: f64,
    offered_deliveries_per_second: f64,
    clicks_per_second: f64,
    delivered_per_second: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    latency_p999_ms: f64,
    latency_max_ms: f64,
    server_cpu_seconds: f64,
    redis_cpu_seconds: f64,
    client_cpu_seconds: f64,
    server_cpu_seconds_per_100k: f64,
    deliveries_per_server_cpu_second: f64,
    /// Latencies longer than ten clicks of a lobby cannot be told apart (a receiver matches a
    /// broadcast to the last click of its team), so they are under-measured.
    latency_window_ms: f64,
    /// Delivered fell short of offered or latencies reached the window: past capacity.
    saturated: bool,
    /// Publications per second each Redis server handled (each master of a cluster, in port
    /// order), their shares of the total, and each server's CPU time over the window.
    redis_publications_per_second: Vec<f64>,
    redis_publication_shares: Vec<f64>,
    redis_cpu_seconds_by_server: Vec<f64>,
    /// Server CPU-seconds per delivery divided by the floor's at the same step of the same run
    /// (`None` when the floor was not measured or delivered nothing at that step).
    cpu_per_delivery_vs_floor: Option<f64>,
    /// From the step's first click until it settled (clicking stopped, every click answered,
    /// nothing more arriving): how the system shed load, if it did.
    overload: Overload,
}

/// How a step's clicks fared, counted once the step settled.
#[derive(Debug, Default, Serialize)]
struct Overload {
    clicks_sent: u64,
    clicks_acknowledged: u64,
    /// Clicks answered with an error, and the errors' texts with their counts.
    clicks_refused: u64,
    refusals: BTreeMap<String, u64>,
    /// Clicks with no answer when the step settled (or gave up settling).
    clicks_unanswered: u64,
    /// Acknowledged clicks times the clients of their lobby.
    deliveries_expected: u64,
    deliveries_received: u64,
    /// Expected deliveries that did not arrive.
    deliveries_missing: u64,
    /// Deliveries beyond the expected ones: lists of clicks answered with an error that the
    /// server recorded all the same (an error can leave a click's outcome open, as a timeout
    /// does). At most the refused clicks times the clients of their lobby; more is `duplicated`.
    /// (Such deliveries could hide as many missing ones; without refusals the count is exact.)
    deliveries_of_refused_clicks: u64,
    /// Clients of lobbies with an acknowledged click, and how many of them last received that
    /// lobby's latest list: the last acknowledged click's, or that of a click refused after it
    /// (`clients_holding_refused_click_list` of them).
    clients_in_clicked_lobbies: u64,
    clients_holding_latest: u64,
    clients_holding_refused_click_list: u64,
    connections_closed: u64,
    settle_seconds: f64,
    /// `none`, or how load was shed, joined by `+`: `refused` (clicks answered with an error),
    /// `unanswered`, `coalesced` (deliveries missing but every client holds the latest list),
    /// `dropped` (deliveries missing and some clients lack the latest list), `disconnected`;
    /// `duplicated` (more deliveries than the clicks sent could make) is a fault, not shedding.
    /// Judged by the effect: deliberate coalescing and drops that happened to spare every
    /// lobby's last list both read `coalesced`.
    shed: String,
}

impl Overload {
    fn between(
        before: &TotalsReport,
        after: &TotalsReport,
        latest: &LatestReport,
        clients_per_lobby: u64,
        settle_seconds: f64,
    ) -> Overload {
        let mut refusals = BTreeMap::new();
        for (error, count) in &after.refusals {
            let new = count - before.refusals.get(error).copied().unwrap_or(0);
            if new > 0 {
                refusals.insert(error.clone(), new);
            }
        }
        let clicks_sent = after.clicks_sent - before.clicks_sent;
        let clicks_acknowledged = after.clicks_acknowledged - before.clicks_acknowledged;
        let clicks_refused = after.click_errors - before.click_errors;
        let clicks_unanswered = clicks_sent.saturating_sub(clicks_acknowledged + clicks_refused);
        let deliveries_expected = after.expected - before.expected;
        let deliveries_received = after.received - before.received;
        let deliveries_missing = deliveries_expected.saturating_sub(deliveries_received);
        let deliveries_of_refused_clicks = deliveries_received.saturating_sub(deliveries_expected);
        let connections_closed = after.connections_closed - before.connections_closed;
        let mut shed = Vec::new();
        if clicks_refused > 0 {
            shed.push("refused");
        }
        if clicks_unanswered > 0 {
            shed.push("unanswered");
        }
        if deliveries_missing > 0 {
            shed.push(if latest.holding_latest == latest.clients { "coalesced" } else { "dropped" });
        }
        if connections_closed > 0 {
            shed.push("disconnected");
        }
        if deliveries_of_refused_clicks > clicks_refused * clients_per_lobby {
            shed.push("duplicated");
        }
        Overload {
            clicks_sent,
            clicks_acknowledged,
            clicks_refused,
            refusals,
            clicks_unanswered,
            deliveries_expected,
            deliveries_received,
            deliveries_missing,
            deliveries_of_refused_clicks,
            clients_in_clicked_lobbies: latest.clients,
            clients_holding_latest: latest.holding_latest,
            clients_holding_refused_click_list: latest.holding_refused_click,
            connections_closed,
            settle_seconds,
            shed: if shed.is_empty() { "none".into() } else { shed.join("+") },
        }
    }
}

fn refusal_text(refusals: &BTreeMap<String, u64>) -> String {
    refusals.iter().map(|(error, count)| format!("{count}x \"{error}\"")).collect::<Vec<_>>().join(", ")
}

/// Every worker's whole-run figures, added up.
async fn totals_of(workers: &mut [Worker]) -> anyhow::Result<TotalsReport> {
    let mut totals = TotalsReport::default();
    for worker in workers.iter_mut() {
        worker.send(&serde_json::json!({"cmd": "totals"})).await?;
        let part: TotalsReport = worker.answer(Duration::from_secs(30)).await?;
        totals.add(&part);
    }
    Ok(totals)
}

/// Stops clicking and waits until every click was answered and nothing more arrives (all
/// expected deliveries arrived, or none for a second), at most 30 seconds: the totals then, and
/// the seconds it took.
async fn settle(workers: &mut [Worker]) -> anyhow::Result<(TotalsReport, f64)> {
    for worker in workers.iter_mut() {
        worker.send(&serde_json::json!({"cmd": "drive", "rate": 0.0})).await?;
    }
    let started = std::time::Instant::now();
    let mut totals = totals_of(workers).await?;
    let mut quiet_since = std::time::Instant::now();
    loop {
        let answered = totals.clicks_acknowledged + totals.click_errors >= totals.clicks_sent;
        let complete = answered && totals.received >= totals.expected;
        let quiet = answered && quiet_since.elapsed() >= Duration::from_secs(1);
        if complete || quiet || started.elapsed() > Duration::from_secs(30) {
            return Ok((totals, started.elapsed().as_secs_f64()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let next = totals_of(workers).await?;
        if next.received != totals.received || next.clicks_acknowledged != totals.clicks_acknowledged {
            quiet_since = std::time::Instant::now();
        }
        totals = next;
    }
}

/// A load worker process and its command pipes.
pub(crate) struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    lobbies: usize,
}

impl Worker {
    pub(crate) async fn start(config: &WorkerConfig) -> anyhow::Result<Worker> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a load worker")?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let lines = BufReader::new(child.stdout.take().context("worker stdout")?).lines();
        let mut worker = Worker { child, stdin, lines, lobbies: config.lobbies.len() };
        worker.send(&serde_json::to_value(config)?).await?;
        Ok(worker)
    }

    async fn send(&mut self, command: &serde_json::Value) -> anyhow::Result<()> {
        self.stdin.write_all(format!("{command}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    pub(crate) async fn answer<T: serde::de::DeserializeOwned>(&mut self, timeout: Duration) -> anyhow::Result<T> {
        let line = tokio::time::timeout(timeout, self.lines.next_line())
            .await
            .context("a load worker did not answer in time")??
            .context("a load worker exited")?;
        Ok(serde_json::from_str(&line)?)
    }

    fn usage(&self) -> Usage {
        self.child.id().and_then(|pid| Usage::of(pid).ok()).unwrap_or_default()
    }
}

pub async fn run(lct: &std::path::Path, options: &FanoutOptions) -> anyhow::Result<()> {
    if options.lobbies == 0 || options.clients < options.lobbies {
        bail!("--clients must be at least --lobbies, and --lobbies at least 1");
    }
    let mut results = Results {
        machine: machine(),
        clients: options.clients,
        lobbies: options.lobbies,
        clients_per_lobby: options.clients / options.lobbies,
        step_seconds: options.step_seconds,
        server_workers: options.server_workers,
        systems: Vec::new(),
    };
    println!(
        "fan-out: {} clients over {} lobbies ({} per lobby), two server processes and Redis per system, {} cores",
        results.clients_per_lobby * options.lobbies,
        options.lobbies,
        results.clients_per_lobby,
        results.machine.cpus
    );
    if let Some(workers) = options.server_workers {
        println!("runtime worker threads per Rust server process: {workers} (Socket.IO: one event loop per process)");
    }
    for system in &options.systems {
        let result = run_system(*system, lct, options).await?;
        results.systems.push(result);
    }
    compare_with_floor(&mut results.systems);
    print_summary(&results);
    if let Some(out) = &options.out {
        std::fs::write(out, serde_json::to_string_pretty(&results)? + "\n")?;
        println!("figures written to {}", out.display());
    }
    Ok(())
}

async fn run_system(system: System, lct: &std::path::Path, options: &FanoutOptions) -> anyhow::Result<SystemResult> {
    let per_lobby = options.clients / options.lobbies;
    let redis = match system {
        System::LctCluster => Redis::cluster(3).await?,
        System::Lct | System::Socketio | System::Floor | System::Socketioxide => Redis::start().await?,
    };
    let data = TempDir::new("fanout");
    let runtime: Vec<(&str, String)> =
        options.server_workers.map(|n| ("TOKIO_WORKER_THREADS", n.to_string())).into_iter().collect();
    let servers = match system {
        System::Lct | System::LctCluster => {
            let mut env = vec![("LCT_REDIS_URL", redis.url.clone())];
            env.extend(runtime.iter().cloned());
            vec![Server::lct(lct, &data.0, "pod-a", &env).await?, Server::lct(lct, &data.0, "pod-b", &env).await?]
        }
        System::Socketio => vec![
            Server::socketio(&options.socketio_dir, &redis.url).await?,
            Server::socketio(&options.socketio_dir, &redis.url).await?,
        ],
        System::Floor => vec![Server::floor(&redis.url, &runtime).await?, Server::floor(&redis.url, &runtime).await?],
        System::Socketioxide => vec![
            Server::socketioxide(&socketioxide_binary(options)?, &redis.url, &runtime).await?,
            Server::socketioxide(&socketioxide_binary(options)?, &redis.url, &runtime).await?,
        ],
    };
    let redis_kind = if redis.ports.len() > 1 { "a Redis Cluster of three masters" } else { "one redis-server" };
    println!("\n{system:?}: servers on {} and {}, {redis_kind} ({})", servers[0].addr, servers[1].addr, redis.url);
    let lobbies = create_lobbies(system, &servers[0].addr, options.lobbies).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = server_usage(&servers)?;

    let workers_wanted = options.workers.unwrap_or(options.clients.div_ceil(8_000).max(2)).clamp(1, options.lobbies);
    let mut workers = Vec::new();
    let chunk = options.lobbies.div_ceil(workers_wanted);
    for (index, lobbies) in lobbies.chunks(chunk).enumerate() {
        let config = WorkerConfig {
            system,
            servers: servers.iter().map(|s| s.addr.clone()).collect(),
            lobbies: lobbies.to_vec(),
            clients_per_lobby: per_lobby,
            first_lobby: index * chunk,
        };
        workers.push(Worker::start(&config).await?);
    }
    let started = std::time::Instant::now();
    for worker in &mut workers {
        let ready: serde_json::Value = worker.answer(Duration::from_secs(600)).await?;
        if ready["ready"] != true {
            bail!("a load worker could not connect its clients: {ready}");
        }
    }
    println!(
        "  {} clients connected by {} worker processes in {:.1} s",
        per_lobby * options.lobbies,
        workers.len(),
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs_f64(options.settle_seconds.max(1.0))).await;
    let idle = server_usage(&servers)?;
    let per_connection = idle.rss_bytes.saturating_sub(before.rss_bytes) as f64 / (per_lobby * options.lobbies) as f64;
    println!(
        "  server memory: {:.0} MiB before, {:.0} MiB with the idle clients: {:.1} KiB per idle connection",
        before.rss_bytes as f64 / 1048576.0,
        idle.rss_bytes as f64 / 1048576.0,
        per_connection / 1024.0
    );
    println!(
        "  {:>8} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>6} {:>6} {:>6}",
        "clicks/s",
        "offered/s",
        "deliv/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "cpu/100k",
        "deliv/cpu",
        "srv%",
        "redis%",
        "cli%"
    );

    let mut steps = Vec::new();
    let mut before_step = totals_of(&mut workers).await?;
    for &rate in &options.rates {
        for worker in &mut workers {
            let share = rate * worker.lobbies as f64 / options.lobbies as f64;
            worker.send(&serde_json::json!({"cmd": "drive", "rate": share})).await?;
        }
        tokio::time::sleep(Duration::from_secs_f64(options.warmup_seconds)).await;
        let cpu_before = server_usage(&servers)?.cpu_seconds;
        let redis_before = redis.usage_by_server()?;
        let publications_before = redis.publications()?;
        let clients_before: f64 = workers.iter().map(|w| w.usage().cpu_seconds).sum();
        for worker in &mut workers {
            worker.send(&serde_json::json!({"cmd": "mark"})).await?;
        }
        tokio::time::sleep(Duration::from_secs_f64(options.step_seconds)).await;
        for worker in &mut workers {
            worker.send(&serde_json::json!({"cmd": "report"})).await?;
        }
        let server_cpu = server_usage(&servers)?.cpu_seconds - cpu_before;
        let redis_cpu_by_server: Vec<f64> = redis
            .usage_by_server()?
            .iter()
            .zip(&redis_before)
            .map(|(after, before)| after.cpu_seconds - before.cpu_seconds)
            .collect();
        let redis_cpu: f64 = redis_cpu_by_server.iter().sum();
        let publications: Vec<u64> =
            redis.publications()?.iter().zip(&publications_before).map(|(after, before)| after - before).collect();
        let all_publications = publications.iter().sum::<u64>().max(1) as f64;
        let client_cpu = workers.iter().map(|w| w.usage().cpu_seconds).sum::<f64>() - clients_before;
        let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let (mut received, mut clicks, mut seconds) = (0u64, 0u64, 0f64);
        for worker in &mut workers {
            let report: WindowReport = worker.answer(Duration::from_secs(30)).await?;
            received += report.received;
            clicks += report.clicks;
            seconds = seconds.max(report.seconds);
            for (value, count) in report.latency_us {
                latency.record_n(value, count)?;
            }
        }
        let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
        let window_ms = if rate > 0.0 { 10.0 * options.lobbies as f64 / rate * 1000.0 } else { f64::INFINITY };
        let delivered = received as f64 / seconds;
        let mut step = Step {
            offered_clicks_per_second: rate,
            offered_deliveries_per_second: rate * per_lobby as f64,
            clicks_per_second: clicks as f64 / seconds,
            delivered_per_second: received as f64 / seconds,
            latency_p50_ms: ms(0.5),
            latency_p99_ms: ms(0.99),
            latency_p999_ms: ms(0.999),
            latency_max_ms: latency.max() as f64 / 1000.0,
            server_cpu_seconds: server_cpu,
            redis_cpu_seconds: redis_cpu,
            client_cpu_seconds: client_cpu,
            server_cpu_seconds_per_100k: if received > 0 { server_cpu * 100_000.0 / received as f64 } else { 0.0 },
            deliveries_per_server_cpu_second: if server_cpu > 0.0 { received as f64 / server_cpu } else { 0.0 },
            latency_window_ms: window_ms,
            saturated: rate > 0.0 && (delivered < 0.97 * rate * per_lobby as f64 || ms(0.999) > window_ms / 2.0),
            redis_publications_per_second: publications.iter().map(|n| *n as f64 / seconds).collect(),
            redis_publication_shares: publications.iter().map(|n| *n as f64 / all_publications).collect(),
            redis_cpu_seconds_by_server: redis_cpu_by_server,
            cpu_per_delivery_vs_floor: None,
            overload: Overload::default(),
        };
        println!(
            "  {:>8.0} {:>10.0} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.1} {:>9.3} {:>9.0} {:>6.0} {:>6.0} {:>6.0}",
            step.clicks_per_second,
            step.offered_deliveries_per_second,
            step.delivered_per_second,
            step.latency_p50_ms,
            step.latency_p99_ms,
            step.latency_p999_ms,
            step.latency_max_ms,
            step.server_cpu_seconds_per_100k,
            step.deliveries_per_server_cpu_second,
            step.server_cpu_seconds * 100.0 / seconds,
            step.redis_cpu_seconds * 100.0 / seconds,
            step.client_cpu_seconds * 100.0 / seconds
        );
        if step.saturated {
            println!(
                "           ^ past capacity: queues grow; latencies over {:.0} ms are under-measured",
                window_ms / 2.0
            );
        }
        if redis.ports.len() > 1 {
            let shares: Vec<String> = step
                .redis_publication_shares
                .iter()
                .zip(&step.redis_publications_per_second)
                .zip(&step.redis_cpu_seconds_by_server)
                .map(|((share, rate), cpu)| {
                    format!("{:.0} % ({rate:.0}/s, {:.0} % CPU)", share * 100.0, cpu * 100.0 / seconds)
                })
                .collect();
            println!("           publications by shard: {}", shares.join(", "));
        }
        // Stop clicking and let the step settle: what was refused, what never arrived, and
        // whether every client still got its lobby's latest list.
        let (after_step, settle_seconds) = settle(&mut workers).await?;
        let mut latest = LatestReport::default();
        for worker in &mut workers {
            worker.send(&serde_json::json!({"cmd": "latest"})).await?;
            let part: LatestReport = worker.answer(Duration::from_secs(30)).await?;
            latest.clients += part.clients;
            latest.holding_latest += part.holding_latest;
            latest.holding_refused_click += part.holding_refused_click;
        }
        let overload = Overload::between(&before_step, &after_step, &latest, per_lobby as u64, settle_seconds);
        let errors = if overload.refusals.is_empty() {
            String::new()
        } else {
            format!(" ({})", refusal_text(&overload.refusals))
        };
        let of_refused = match overload.deliveries_of_refused_clicks {
            0 => String::new(),
            n => format!(" (and {n} of clicks answered with an error)"),
        };
        let refused_lists = match overload.clients_holding_refused_click_list {
            0 => String::new(),
            n => format!(" ({n} that of a click answered with an error)"),
        };
        println!(
            "           {} clicks: {} refused{errors}, {} unanswered; {} of {} deliveries missing{of_refused}; {} of {} clients hold the latest list{refused_lists}; shed: {}",
            overload.clicks_sent,
            overload.clicks_refused,
            overload.clicks_unanswered,
            overload.deliveries_missing,
            overload.deliveries_expected,
            overload.clients_holding_latest,
            overload.clients_in_clicked_lobbies,
            overload.shed
        );
        step.overload = overload;
        before_step = after_step;
        steps.push(step);
    }

    // Quiet down until nothing more arrives, then compare what should have arrived with what did.
    let (totals, _) = settle(&mut workers).await?;
    for worker in &mut workers {
        let _ = worker.send(&serde_json::json!({"cmd": "stop"})).await;
    }
    for worker in &mut workers {
        if tokio::time::timeout(Duration::from_secs(10), worker.child.wait()).await.is_err() {
            let _ = worker.child.kill().await;
        }
    }
    let lost = totals.expected.saturating_sub(totals.received);
    let delivered_of_refused_clicks = totals.received.saturating_sub(totals.expected);
    println!(
        "  whole run: {} clicks acknowledged ({} refused), {} deliveries expected, {} received ({} of clicks answered with an error), {} lost, {} connections closed",
        totals.clicks_acknowledged,
        totals.click_errors,
        totals.expected,
        totals.received,
        delivered_of_refused_clicks,
        lost,
        totals.connections_closed
    );
    Ok(SystemResult {
        system,
        idle_rss_before_bytes: before.rss_bytes,
        idle_rss_after_bytes: idle.rss_bytes,
        memory_per_idle_connection_bytes: per_connection,
        steps,
        totals,
        lost,
        delivered_of_refused_clicks,
    })
}

/// The socketioxide server binary: `--socketioxide`, else `lct-bench-socketioxide` beside this
/// executable (both are built into the same target directory).
fn socketioxide_binary(options: &FanoutOptions) -> anyhow::Result<PathBuf> {
    match &options.socketioxide {
        Some(path) => Ok(path.clone()),
        None => Ok(std::env::current_exe()?.with_file_name("lct-bench-socketioxide")),
    }
}

fn server_usage(servers: &[Server]) -> anyhow::Result<Usage> {
    Ok(Usage::sum(&servers.iter().map(Server::usage).collect::<anyhow::Result<Vec<_>>>()?))
}

/// lct lobbies are tournaments with their driver joined; Socket.IO rooms need nothing.
pub(crate) async fn create_lobbies(system: System, addr: &str, count: usize) -> anyhow::Result<Vec<Lobby>> {
    let lobby = |id: String, i: usize| Lobby { id, driver_name: "Driver".into(), driver_surname: format!("L{i}") };
    match system {
        System::Socketio | System::Floor | System::Socketioxide => {
            Ok((0..count).map(|i| lobby(uuid::Uuid::new_v4().to_string(), i)).collect())
        }
        System::Lct | System::LctCluster => {
            let http = reqwest::Client::new();
            let created = futures::stream::iter((0..count).map(|i| {
                let http = http.clone();
                async move {
                    let base = format!("http://{addr}/api/Tournament");
                    let response = http
                        .post(format!("{base}/create"))
                        .json(&serde_json::json!({"name": format!("Fan-out {i}"), "playerLimit": 10}))
                        .send()
                        .await?;
                    if !response.status().is_success() {
                        bail!("create answered {}", response.status());
                    }
                    let id: String = response.json().await?;
                    let lobby = lobby(id, i);
                    let response = http
                        .post(format!("{base}/assignPlayer"))
                        .json(&serde_json::json!({"name": lobby.driver_name, "surname": lobby.driver_surname, "tournamentId": lobby.id}))
                        .send()
                        .await?;
                    if !response.status().is_success() {
                        bail!("assignPlayer answered {}", response.status());
                    }
                    Ok(lobby)
                }
            }))
            .buffered(8)
            .collect::<Vec<_>>()
            .await;
            created.into_iter().collect()
        }
    }
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_default();
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1048576.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
    Machine { cpus: std::thread::available_parallelism().map_or(1, |n| n.get()), cpu_model, memory_gib, kernel }
}

/// Each step's server CPU-seconds per delivery as a ratio to the floor's at the same step.
fn compare_with_floor(systems: &mut [SystemResult]) {
    let per_delivery = |step: &Step| {
        let delivered = step.delivered_per_second;
        (delivered > 0.0).then(|| step.server_cpu_seconds / delivered)
    };
    let Some(floor) = systems.iter().find(|s| s.system == System::Floor) else { return };
    let floor: Vec<Option<f64>> = floor.steps.iter().map(per_delivery).collect();
    for system in systems.iter_mut() {
        for (step, floor) in system.steps.iter_mut().zip(&floor) {
            step.cpu_per_delivery_vs_floor = match (per_delivery(step), floor) {
                (Some(cost), Some(floor)) if *floor > 0.0 => Some(cost / floor),
                _ => None,
            };
        }
    }
}

fn print_summary(results: &Results) {
    println!(
        "\nsummary ({} clients, {} per lobby)",
        results.clients_per_lobby * results.lobbies,
        results.clients_per_lobby
    );
    println!(
        "  {:<13} {:>8} {:>10} {:>8} {:>9} {:>9} {:>8} {:>8} {:>13}  shed",
        "system", "clicks/s", "deliv/s", "p99 ms", "cpu/100k", "vs floor", "missing", "refused", "latest held"
    );
    for system in &results.systems {
        for step in &system.steps {
            let ratio = step.cpu_per_delivery_vs_floor.map_or("-".to_owned(), |r| format!("{r:.2}"));
            let overload = &step.overload;
            println!(
                "  {:<13} {:>8.0} {:>10.0} {:>8.2} {:>9.3} {:>9} {:>8} {:>8} {:>13}  {}",
                system.system.name(),
                step.clicks_per_second,
                step.delivered_per_second,
                step.latency_p99_ms,
                step.server_cpu_seconds_per_100k,
                ratio,
                overload.deliveries_missing,
                overload.clicks_refused,
                format!("{}/{}", overload.clients_holding_latest, overload.clients_in_clicked_lobbies),
                overload.shed
            );
        }
    }
    for system in &results.systems {
        let best = system
            .steps
            .iter()
            .filter(|s| s.latency_p99_ms <= 50.0 && !s.saturated)
            .max_by(|a, b| a.delivered_per_second.total_cmp(&b.delivered_per_second));
        let efficiency = system.steps.iter().map(|s| s.deliveries_per_server_cpu_second).fold(0.0, f64::max);
        match best {
            Some(step) => println!(
                "  {:?}: {:.0} deliveries/s with p99 {:.1} ms (best step with p99 <= 50 ms); {:.1} KiB per idle connection; up to {:.0} deliveries per server CPU-second; {} lost",
                system.system, step.delivered_per_second, step.latency_p99_ms, system.memory_per_idle_connection_bytes / 1024.0, efficiency, system.lost
            ),
            None => println!(
                "  {:?}: no step kept p99 <= 50 ms; {:.1} KiB per idle connection; up to {:.0} deliveries per server CPU-second; {} lost",
                system.system, system.memory_per_idle_connection_bytes / 1024.0, efficiency, system.lost
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(sent: u64, acked: u64, refused: u64, expected: u64, received: u64) -> TotalsReport {
        let refusals =
            if refused > 0 { BTreeMap::from([("Too many invocations".to_owned(), refused)]) } else { BTreeMap::new() };
        TotalsReport {
            clicks_sent: sent,
            clicks_acknowledged: acked,
            click_errors: refused,
            refusals,
            expected,
            received,
            connections_closed: 0,
        }
    }

    #[test]
    fn a_step_says_how_load_was_shed() {
        let before = totals(100, 100, 0, 1_000, 1_000);
        let everyone = LatestReport { clients: 40, holding_latest: 40, holding_refused_click: 0 };
        let some = LatestReport { clients: 40, holding_latest: 31, holding_refused_click: 0 };
        let shed = |after: TotalsReport, latest: &LatestReport| Overload::between(&before, &after, latest, 10, 1.0);

        let all = shed(totals(200, 200, 0, 2_000, 2_000), &everyone);
        assert_eq!((all.shed.as_str(), all.deliveries_missing, all.clicks_sent), ("none", 0, 100));
        let coalesced = shed(totals(200, 200, 0, 2_000, 1_400), &everyone);
        assert_eq!((coalesced.shed.as_str(), coalesced.deliveries_missing), ("coalesced", 600));
        assert_eq!(shed(totals(200, 200, 0, 2_000, 1_400), &some).shed, "dropped");
        let refused = shed(totals(200, 150, 40, 1_500, 1_500), &everyone);
        assert_eq!(refused.shed, "refused+unanswered");
        assert_eq!((refused.clicks_refused, refused.clicks_unanswered), (40, 10));
        assert_eq!(refused.refusals, BTreeMap::from([("Too many invocations".to_owned(), 40)]));
    }

    #[test]
    fn lists_of_refused_clicks_are_counted_apart_and_never_as_negative_losses() {
        let before = totals(100, 100, 0, 1_000, 1_000);
        let latest = LatestReport { clients: 40, holding_latest: 40, holding_refused_click: 12 };
        let shed = |after: TotalsReport| Overload::between(&before, &after, &latest, 10, 1.0);

        // 30 clicks refused after a timeout, 25 of them recorded by Redis all the same.
        let recorded_anyway = shed(totals(200, 170, 30, 1_700, 1_950));
        assert_eq!(recorded_anyway.deliveries_missing, 0);
        assert_eq!(recorded_anyway.deliveries_of_refused_clicks, 250);
        assert_eq!(recorded_anyway.clients_holding_refused_click_list, 12);
        assert_eq!(recorded_anyway.shed, "refused");
        // More than every refused click's list could explain: deliveries were duplicated.
        let duplicated = shed(totals(200, 170, 30, 1_700, 2_001));
        assert_eq!(duplicated.shed, "refused+duplicated");
        assert_eq!(shed(totals(200, 200, 0, 2_000, 2_001)).shed, "duplicated");
        // Missing deliveries are counted as before.
        let missing = shed(totals(200, 200, 0, 2_000, 1_990));
        assert_eq!((missing.deliveries_missing, missing.deliveries_of_refused_clicks), (10, 0));
    }
}
