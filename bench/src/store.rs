//! `lct-bench store`: memory and start-up time of `lct` on embedded stores of growing size, and
//! the latency of loading a tournament from the largest.
//!
//! For each size it fills a fresh data directory through the store itself (tournaments of
//! `--per-tournament` events: one created, the rest joins, one record each, many appends in
//! flight so that the group commit batches them), then starts the real `lct` on it several
//! times: with the index checkpoint the store wrote when it closed, and without it (the index
//! rebuilt from the whole log). Start-up is the time from spawning the process to its
//! "listening" line; memory is its resident set size right after. At the largest size it also
//! times `load` of random tournaments in-process and `GET /api/Tournament` over HTTP.

use crate::processes::{Server, TempDir};
use anyhow::{bail, Context};
use domain::ports::{AppendRequest, EventMetadata, EventStore, UniqueKey};
use domain::{PlayerLimit, PlayerName, PlayerSurname, TournamentEvent, TournamentName};
use hdrhistogram::Histogram;
use infrastructure::{EmbeddedEventStore, EmbeddedOptions};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(clap::Args)]
pub struct StoreOptions {
    /// Store sizes to measure, in events, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    events: Vec<u64>,
    /// Events per tournament: one created, the rest joins (at most 11).
    #[arg(long, default_value_t = 10)]
    per_tournament: u64,
    /// Start-ups measured per case.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Loads timed at the largest size, in-process and over HTTP each.
    #[arg(long, default_value_t = 20_000)]
    loads: usize,
    /// Appends in flight while filling a store.
    #[arg(long, default_value_t = 512)]
    in_flight: usize,
    /// Another lct binary (e.g. an earlier version) started on the same stores, for comparison.
    #[arg(long)]
    compare_lct: Option<std::path::PathBuf>,
}

pub async fn run(lct: &Path, options: &StoreOptions) -> anyhow::Result<()> {
    if !(2..=11).contains(&options.per_tournament) {
        bail!("--per-tournament must be between 2 and 11");
    }
    let largest = options.events.iter().copied().max().unwrap_or(0);
    println!(
        "store: {} events per tournament, {} start-ups per case; start-up = spawn to listening, RSS right after",
        options.per_tournament, options.runs
    );
    for &events in &options.events {
        let tournaments = events / options.per_tournament;
        let data = TempDir::new(&format!("store-{events}"));
        let filled = fill(&data.0, tournaments, options).await?;
        let log_bytes = std::fs::metadata(data.0.join("events.log"))?.len();
        println!(
            "\n{events} events ({tournaments} tournaments): log {:.1} MiB, filled at {:.0} appends/s",
            log_bytes as f64 / 1048576.0,
            filled.appends as f64 / filled.elapsed.as_secs_f64()
        );
        let mut binaries = vec![("lct", lct)];
        if let Some(other) = &options.compare_lct {
            binaries.push(("compared", other.as_path()));
        }
        for (label, binary) in binaries {
            let with = start_ups(binary, &data.0, options.runs, false).await?;
            println!("  {label}, with the index checkpoint:    {with}");
            let without = start_ups(binary, &data.0, options.runs, true).await?;
            println!("  {label}, without the checkpoint:       {without}");
        }
        if events == largest {
            load_latency(lct, &data.0, &filled.ids, options.loads).await?;
        }
    }
    Ok(())
}

struct Filled {
    appends: u64,
    elapsed: Duration,
    ids: Vec<Uuid>,
}

fn request(stream_id: Uuid, version: u64, tournament: u64) -> anyhow::Result<AppendRequest> {
    let name = format!("Bench night {tournament}");
    let event = if version == 1 {
        TournamentEvent::TournamentCreated { name: TournamentName::parse(&name)?, player_limit: PlayerLimit::new(10)? }
    } else {
        TournamentEvent::PlayerJoined {
            name: PlayerName::parse(&format!("Player{version}"))?,
            surname: PlayerSurname::parse("Benchmark")?,
        }
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    Ok(AppendRequest {
        stream_id,
        expected_version: version - 1,
        events: vec![event],
        metadata: EventMetadata { request_id: Some(Uuid::new_v4()), recorded_at_ms: now },
        claims: if version == 1 { vec![UniqueKey::tournament_name(&name)] } else { vec![] },
        releases: vec![],
    })
}

/// Appends the tournaments through the store, `--in-flight` at a time.
async fn fill(dir: &Path, tournaments: u64, options: &StoreOptions) -> anyhow::Result<Filled> {
    let store = Arc::new(EmbeddedEventStore::open_with(dir, EmbeddedOptions::default())?);
    let ids: Arc<Vec<Uuid>> = Arc::new((0..tournaments).map(|_| Uuid::new_v4()).collect());
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..options.in_flight {
        let (store, ids, next, per) = (Arc::clone(&store), Arc::clone(&ids), Arc::clone(&next), options.per_tournament);
        tasks.push(tokio::spawn(async move {
            loop {
                let t = next.fetch_add(1, Ordering::Relaxed);
                if t >= ids.len() as u64 {
                    return anyhow::Ok(());
                }
                for version in 1..=per {
                    store.append(request(ids[t as usize], version, t)?).await?;
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    drop(store);
    let ids = Arc::try_unwrap(ids).unwrap_or_else(|ids| (*ids).clone());
    Ok(Filled { appends: tournaments * options.per_tournament, elapsed, ids })
}

/// Start-up times and resident memory over several runs.
struct StartUps {
    millis: Vec<f64>,
    rss_mib: Vec<f64>,
}

impl std::fmt::Display for StartUps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (t, m) = (summary(&self.millis), summary(&self.rss_mib));
        write!(
            f,
            "start-up {:.0} / {:.0} / {:.0} ms, RSS {:.1} / {:.1} / {:.1} MiB (min / median / max)",
            t.0, t.1, t.2, m.0, m.1, m.2
        )
    }
}

fn summary(values: &[f64]) -> (f64, f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    (sorted[0], sorted[sorted.len() / 2], sorted[sorted.len() - 1])
}

async fn start_ups(lct: &Path, dir: &Path, runs: usize, without_checkpoint: bool) -> anyhow::Result<StartUps> {
    let mut result = StartUps { millis: Vec::new(), rss_mib: Vec::new() };
    for _ in 0..runs.max(1) {
        if without_checkpoint {
            let _ = std::fs::remove_file(dir.join("events.idx"));
        }
        let started = Instant::now();
        let server = Server::lct(lct, dir, "store-bench", &[]).await?;
        result.millis.push(started.elapsed().as_secs_f64() * 1000.0);
        result.rss_mib.push(server.usage()?.rss_bytes as f64 / 1048576.0);
        server.stop().await?;
    }
    Ok(result)
}

fn percentiles(label: &str, histogram: &Histogram<u64>) {
    println!(
        "  {label}: p50 {:.0} µs, p99 {:.0} µs, p99.9 {:.0} µs, max {:.0} µs ({} loads)",
        histogram.value_at_quantile(0.50) as f64,
        histogram.value_at_quantile(0.99) as f64,
        histogram.value_at_quantile(0.999) as f64,
        histogram.max() as f64,
        histogram.len()
    );
}

/// Loads of random tournaments: in-process through the store, then over HTTP from one `lct`.
async fn load_latency(lct: &Path, dir: &Path, ids: &[Uuid], loads: usize) -> anyhow::Result<()> {
    let pick = |i: usize| ids[(i.wrapping_mul(2_654_435_761) ^ (i >> 3)) % ids.len()];
    let store = EmbeddedEventStore::open(dir)?;
    let mut in_process = Histogram::<u64>::new(3)?;
    for i in 0..loads {
        let started = Instant::now();
        let events = store.load(pick(i), 0).await?;
        in_process.record(started.elapsed().as_micros() as u64)?;
        if events.is_empty() {
            bail!("tournament {} has no events", pick(i));
        }
    }
    drop(store);
    println!("\nloads of random tournaments from the largest store:");
    percentiles("EventStore::load, in-process, one at a time", &in_process);

    let server = Server::lct(lct, dir, "store-bench", &[]).await?;
    let http = reqwest::Client::new();
    let mut over_http = Histogram::<u64>::new(3)?;
    for i in 0..loads {
        let url = format!("http://{}/api/Tournament?id={}", server.addr, pick(i));
        let started = Instant::now();
        let response = http.get(&url).send().await?;
        let status = response.status();
        response.bytes().await?;
        over_http.record(started.elapsed().as_micros() as u64)?;
        if !status.is_success() {
            bail!("GET {url} answered {status}");
        }
    }
    percentiles("GET /api/Tournament over HTTP (loopback), one at a time", &over_http);
    let rss = server.usage()?.rss_bytes as f64 / 1048576.0;
    println!("  lct RSS after the loads: {rss:.1} MiB");
    server.stop().await.context("stopping lct")
}
