//! The cost of the live feeds' periodic check of the event store: two `lct` pods sharing an
//! embedded data directory and a Redis, N idle SignalR clients (sending the official client's
//! keep-alive) over M tournaments, each tournament's clients alternating between the pods so
//! that both pods serve every tournament. The same set-up runs twice, with the periodic check at
//! the default delivery bound and with a bound of a day (no check during the window); each run
//! measures the pods' CPU time and the versions read over an idle window.

use crate::fanout::{create_lobbies, Worker};
use crate::processes::{Redis, Server, TempDir, Usage};
use crate::worker::{System, WorkerConfig};
use anyhow::bail;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct CheckCostOptions {
    /// Idle WebSocket clients in all.
    #[arg(long, default_value_t = 20_000)]
    pub clients: usize,
    /// Tournaments they are spread over.
    #[arg(long, default_value_t = 2_000)]
    pub tournaments: usize,
    /// Seconds measured per run.
    #[arg(long, default_value_t = 60.0)]
    pub window_seconds: f64,
    /// Delivery bound of the run with the check, in ms (the check runs every third of it).
    #[arg(long, default_value_t = 5_000)]
    pub bound_ms: u64,
}

/// What one run measured over its window.
struct Run {
    pods_cpu_seconds: f64,
    redis_cpu_seconds: f64,
    versions_read: f64,
    checks: f64,
    check_seconds: f64,
}

pub async fn run(lct: &std::path::Path, options: &CheckCostOptions) -> anyhow::Result<()> {
    if options.tournaments == 0 || options.clients < 2 * options.tournaments {
        bail!("--clients must be at least twice --tournaments (both pods serve every tournament)");
    }
    println!(
        "check-cost: {} idle SignalR clients over {} tournaments, two pods, {} s windows",
        options.clients, options.tournaments, options.window_seconds
    );
    let with = measure(lct, options, options.bound_ms).await?;
    let without = measure(lct, options, 86_400_000).await?;
    let window = options.window_seconds;
    println!("\n{:>30} {:>14} {:>14}", "", format!("check ({} ms)", options.bound_ms / 3), "no check");
    let pct = |run: &Run| 100.0 * run.pods_cpu_seconds / window;
    println!("{:>30} {:>13.2}% {:>13.2}%", "pods' CPU (% of one core)", pct(&with), pct(&without));
    let redis = |run: &Run| 100.0 * run.redis_cpu_seconds / window;
    println!("{:>30} {:>13.2}% {:>13.2}%", "redis CPU (% of one core)", redis(&with), redis(&without));
    println!(
        "{:>30} {:>14.0} {:>14.0}",
        "stream versions read / s",
        with.versions_read / window,
        without.versions_read / window
    );
    println!("{:>30} {:>14.2} {:>14}", "store reads (checks) / s", with.checks / window, "-");
    if with.checks > 0.0 {
        println!("{:>30} {:>14.3}", "mean check read (ms)", 1000.0 * with.check_seconds / with.checks);
    }
    println!("{:>30} {:>14.2}", "cost (% of one core, 2 pods)", pct(&with) - pct(&without));
    Ok(())
}

async fn measure(lct: &std::path::Path, options: &CheckCostOptions, bound_ms: u64) -> anyhow::Result<Run> {
    let redis = Redis::start().await?;
    let data = TempDir::new("check-cost");
    let env = [("LCT_REDIS_URL", redis.url.clone()), ("LCT_DELIVERY_BOUND_MS", bound_ms.to_string())];
    let pods = [Server::lct(lct, &data.0, "pod-a", &env).await?, Server::lct(lct, &data.0, "pod-b", &env).await?];
    let lobbies = create_lobbies(System::Lct, &pods[0].addr, options.tournaments).await?;
    let per_lobby = options.clients / options.tournaments;
    let workers_wanted = options.clients.div_ceil(8_000).max(2).min(options.tournaments);
    let chunk = options.tournaments.div_ceil(workers_wanted);
    let mut workers = Vec::new();
    for (index, lobbies) in lobbies.chunks(chunk).enumerate() {
        let config = WorkerConfig {
            system: System::Lct,
            servers: pods.iter().map(|p| p.addr.clone()).collect(),
            lobbies: lobbies.to_vec(),
            clients_per_lobby: per_lobby,
            first_lobby: index * chunk,
        };
        workers.push(Worker::start(&config).await?);
    }
    for worker in &mut workers {
        let ready: serde_json::Value = worker.answer(Duration::from_secs(600)).await?;
        if ready["ready"] != true {
            bail!("a load worker could not connect its clients: {ready}");
        }
    }
    // Settle: every feed started, the first checks done.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let http = reqwest::Client::new();
    let (cpu_before, redis_before) = (pods_cpu(&pods)?, redis.usage()?.cpu_seconds);
    let metrics_before = scrape(&http, &pods).await?;
    tokio::time::sleep(Duration::from_secs_f64(options.window_seconds)).await;
    let (cpu_after, redis_after) = (pods_cpu(&pods)?, redis.usage()?.cpu_seconds);
    let metrics_after = scrape(&http, &pods).await?;
    let delta = |i: usize| metrics_after[i] - metrics_before[i];
    let run = Run {
        pods_cpu_seconds: cpu_after - cpu_before,
        redis_cpu_seconds: redis_after - redis_before,
        versions_read: delta(0),
        checks: delta(1),
        check_seconds: delta(2),
    };
    println!(
        "  bound {bound_ms} ms: {} clients connected; pods {:.2} CPU-s, redis {:.2} CPU-s, {:.0} versions read in {} s",
        per_lobby * options.tournaments,
        run.pods_cpu_seconds,
        run.redis_cpu_seconds,
        run.versions_read,
        options.window_seconds
    );
    drop(workers);
    Ok(run)
}

fn pods_cpu(pods: &[Server]) -> anyhow::Result<f64> {
    Ok(Usage::sum(&pods.iter().map(Server::usage).collect::<anyhow::Result<Vec<_>>>()?).cpu_seconds)
}

/// Versions checked, reads of versions and their total time, summed over the pods.
async fn scrape(http: &reqwest::Client, pods: &[Server]) -> anyhow::Result<[f64; 3]> {
    let series = [
        "lct_stream_versions_checked_total",
        "lct_event_store_versions_duration_seconds_count",
        "lct_event_store_versions_duration_seconds_sum",
    ];
    let mut sums = [0.0; 3];
    for pod in pods {
        let text = http.get(format!("http://{}/metrics", pod.addr)).send().await?.text().await?;
        for (sum, name) in sums.iter_mut().zip(series) {
            *sum += text
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
    }
    Ok(sums)
}
