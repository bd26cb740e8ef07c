//! The fan-out harness end to end at a small scale, against the debug `lct` build (on one Redis
//! and on a Redis Cluster of three masters) and the Socket.IO server: every client connects,
//! every acknowledged click reaches every client of its lobby, each Redis server's publications
//! are counted, and the figures are written. (The figures themselves are not judged here: they
//! are measurements, reported in docs/benchmarks.md and docs/scaling.md.)

use std::path::Path;
use std::process::Command;

#[test]
fn the_fanout_harness_measures_every_system_and_loses_nothing() {
    let bench = Path::new(env!("CARGO_BIN_EXE_lct-bench"));
    let lct = std::env::var_os("LCT_BIN").map(Into::into).unwrap_or_else(|| bench.with_file_name("lct"));
    assert!(lct.exists(), "{} is missing: run `cargo build --bin lct` first", lct.display());
    let socketio = Path::new(env!("CARGO_MANIFEST_DIR")).join("socketio");
    assert!(
        socketio.join("node_modules").is_dir(),
        "the Socket.IO server is not installed: run `npm ci --prefix bench/socketio`"
    );
    let out = std::env::temp_dir().join(format!("lct-fanout-smoke-{}.json", std::process::id()));
    let output = Command::new(bench)
        .arg("--lct")
        .arg(&lct)
        .args(["fanout", "--clients", "120", "--lobbies", "6", "--rates", "30,60"])
        .args([
            "--step-seconds",
            "2",
            "--warmup-seconds",
            "1",
            "--settle-seconds",
            "1",
            "--systems",
            "lct,lct-cluster,socketio",
        ])
        .arg("--socketio-dir")
        .arg(&socketio)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run lct-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "lct-bench failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    let figures: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    assert_eq!(figures["clients_per_lobby"], 20);
    let systems = figures["systems"].as_array().unwrap();
    assert_eq!(systems.len(), 3, "{stdout}");
    for system in systems {
        let name = system["system"].as_str().unwrap();
        let totals = &system["totals"];
        assert_eq!(totals["connections_closed"], 0, "{name}: no client was dropped");
        assert_eq!(totals["click_errors"], 0, "{name}: every click accepted");
        let expected = totals["expected"].as_u64().unwrap();
        assert!(expected >= 20 * 100, "{name}: clicks were driven ({expected} deliveries expected)");
        assert_eq!(totals["received"].as_u64().unwrap(), expected, "{name}: every click reached every client once");
        assert!(system["memory_per_idle_connection_bytes"].as_f64().unwrap() > 0.0, "{name}");
        let steps = system["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 2);
        let servers = if name == "lct-cluster" { 3 } else { 1 };
        for step in steps {
            let shares = step["redis_publication_shares"].as_array().unwrap();
            assert_eq!(shares.len(), servers, "{name}: one share per Redis server (per shard of a cluster)");
            let total: f64 = shares.iter().map(|s| s.as_f64().unwrap()).sum();
            assert!((total - 1.0).abs() < 1e-6, "{name}: the shares add up ({total})");
            if name != "socketio" {
                // lct publishes each click's list once, to the shard of its tournament.
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
        }
    }
}
