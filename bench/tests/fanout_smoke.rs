//! The fan-out harness end to end at a small scale, against the debug `lct` build (on one Redis
//! and on a Redis Cluster of three masters), the floor server, the Socket.IO server and the
//! socketioxide server: every client connects, every acknowledged click reaches every client of
//! its lobby, each Redis server's publications are counted, each step's overload figures say
//! nothing was shed, CPU per delivery is compared with the floor's, and the figures are written;
//! the Rust servers run with one runtime worker each (`--server-workers 1`).
//! (The figures themselves are not judged here: they are measurements, reported in
//! docs/benchmarks.md and docs/scaling.md.)

use std::path::Path;
use std::process::Command;

#[test]
fn the_fanout_harness_measures_every_system_and_loses_nothing() {
    let bench = Path::new(env!("CARGO_BIN_EXE_lct-bench"));
    let lct = std::env::var_os("LCT_BIN").map(Into::into).unwrap_or_else(|| bench.with_file_name("lct"));
    assert!(lct.exists(), "{} is missing: run `cargo build --bin lct` first", lct.display());
    let socketioxide = bench.with_file_name("lct-bench-socketioxide");
    assert!(
        socketioxide.exists(),
        "{} is missing: run `cargo build -p lct-bench-socketioxide` first",
        socketioxide.display()
    );
    let socketio = Path::new(env!("CARGO_MANIFEST_DIR")).join("socketio");
    assert!(
        socketio.join("node_modules").is_dir(),
        "the Socket.IO server is not installed: run `npm ci --prefix bench/socketio`"
    );
    let out = std::env::temp_dir().join(format!("lct-fanout-smoke-{}.json", std::process::id()));
    let output = Command::new(bench)
        .arg("--lct")
        .arg(&lct)
        .args(["fanout", "--clients", "40", "--lobbies", "4", "--rates", "100"])
        .args([
            "--step-seconds",
            "2",
            "--warmup-seconds",
            "1",
            "--settle-seconds",
            "1",
            "--systems",
            "lct,lct-cluster,floor,socketio,socketioxide",
            // The Rust servers sized to one runtime worker each, as pods limited to one CPU.
            "--server-workers",
            "1",
        ])
        .arg("--socketio-dir")
        .arg(&socketio)
        .arg("--socketioxide")
        .arg(&socketioxide)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run lct-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "lct-bench failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    let figures: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    assert_eq!(figures["clients_per_lobby"], 10);
    assert_eq!(figures["server_workers"], 1);
    let systems = figures["systems"].as_array().unwrap();
    let names: Vec<&str> = systems.iter().map(|s| s["system"].as_str().unwrap()).collect();
    assert_eq!(names, ["lct", "lct-cluster", "floor", "socketio", "socketioxide"], "{stdout}");
    // CPU time is read in clock ticks: a floor that used none at a step has no ratio to offer.
    let floor_cpu = systems[2]["steps"][0]["server_cpu_seconds"].as_f64().unwrap();
    for system in systems {
        let name = system["system"].as_str().unwrap();
        let totals = &system["totals"];
        assert_eq!(totals["connections_closed"], 0, "{name}: no client was dropped");
        assert_eq!(totals["click_errors"], 0, "{name}: every click accepted");
        let expected = totals["expected"].as_u64().unwrap();
        assert!(expected >= 10 * 60, "{name}: clicks were driven ({expected} deliveries expected)");
        assert_eq!(totals["received"].as_u64().unwrap(), expected, "{name}: every click reached every client once");
        assert!(system["memory_per_idle_connection_bytes"].as_f64().unwrap() > 0.0, "{name}");
        let steps = system["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 1);
        let servers = if name == "lct-cluster" { 3 } else { 1 };
        for step in steps {
            let shares = step["redis_publication_shares"].as_array().unwrap();
            assert_eq!(shares.len(), servers, "{name}: one share per Redis server (per shard of a cluster)");
            let total: f64 = shares.iter().map(|s| s.as_f64().unwrap()).sum();
            assert!((total - 1.0).abs() < 1e-6, "{name}: the shares add up ({total})");
            if name.starts_with("lct") || name == "floor" {
                // lct and the floor publish each click's list once, to the shard of its lobby.
                let published: f64 =
                    step["redis_publications_per_second"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).sum();
                let clicks = step["clicks_per_second"].as_f64().unwrap();
                assert!(
                    (published - clicks).abs() < 0.3 * clicks,
                    "{name}: {published}/s published for {clicks} clicks/s"
                );
            }
            let offered = step["offered_deliveries_per_second"].as_f64().unwrap();
            let delivered = step["delivered_per_second"].as_f64().unwrap();
            assert!(
                (delivered - offered).abs() < 0.2 * offered,
                "{name}: {delivered}/s delivered of {offered}/s offered"
            );
            assert!(step["latency_p50_ms"].as_f64().unwrap() > 0.0, "{name}: latency measured");
            assert!(step.get("cpu_per_delivery_vs_floor").is_some(), "{name}: the floor ratio is reported");
            let ratio = &step["cpu_per_delivery_vs_floor"];
            if floor_cpu > 0.0 {
                let ratio = ratio.as_f64();
                assert!(ratio.is_some_and(f64::is_finite), "{name}: CPU per delivery against the floor's: {ratio:?}");
                if name == "floor" {
                    assert!((ratio.unwrap() - 1.0).abs() < 1e-9, "the floor is its own yardstick");
                }
            } else {
                assert!(ratio.is_null(), "{name}: no ratio to a floor that used no CPU: {ratio}");
            }
            let overload = &step["overload"];
            assert!(overload["clicks_sent"].as_u64().unwrap() > 0, "{name}: {overload}");
            assert_eq!(overload["clicks_refused"], 0, "{name}: {overload}");
            assert_eq!(overload["clicks_unanswered"], 0, "{name}: {overload}");
            assert_eq!(overload["deliveries_missing"], 0, "{name}: {overload}");
            assert_eq!(overload["clients_in_clicked_lobbies"], 40, "{name}: {overload}");
            assert_eq!(overload["clients_holding_latest"], 40, "{name}: {overload}");
            assert_eq!(overload["shed"], "none", "{name}: {overload}");
        }
    }
}
