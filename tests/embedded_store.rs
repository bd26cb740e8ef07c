//! The embedded store through the real binary: a process killed in the middle of writing loses
//! no acknowledged command; a full disk refuses commands (503) and leaves nothing half-written;
//! a log damaged in the middle stops start-up with an error naming the file, the offset and the
//! repair command; `lct store verify` and `lct store repair` do what they say, and lct then
//! serves every valid record.

mod common;

use common::*;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// Runs `lct` with `args` on `data_dir` (nothing else configured) to completion.
async fn lct(data_dir: &Path, args: &[&str]) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_lct"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LCT_DATA_DIR", data_dir)
        .env("LCT_LISTEN", "127.0.0.1:0")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(60), run).await.expect("lct did not finish").unwrap()
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Offsets and lengths of the records of a log: `[len: u32 LE][crc32][payload]` each.
fn records(log: &[u8]) -> Vec<(usize, usize)> {
    let mut at = 0;
    let mut found = Vec::new();
    while at + 8 <= log.len() {
        let len = u32::from_le_bytes(log[at..at + 4].try_into().unwrap()) as usize + 8;
        found.push((at, len));
        at += len;
    }
    assert_eq!(at, log.len(), "the log is whole");
    found
}

#[tokio::test]
async fn acknowledged_commands_survive_a_kill_in_the_middle_of_writing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("LCT_RATE_LIMIT_COMMANDS", "0")]).await;
    let http = client();
    let base = server.base.clone();
    // Creates go on from many tasks while the process is killed.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (http, base, acknowledged) = (http.clone(), base.clone(), acknowledged.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("Kill {worker}-{i}");
                let sent = http
                    .post(format!("{base}/api/Tournament/create"))
                    .json(&serde_json::json!({"name": name, "playerLimit": 4}))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 200 => {
                        let id: String = response.json().await.unwrap();
                        acknowledged.lock().unwrap().push((id, name));
                    }
                    _ => return,
                }
            }
        }));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() < 200 {
        assert!(tokio::time::Instant::now() < deadline, "creates are not acknowledged");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut server = server;
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    for task in tasks {
        task.await.unwrap();
    }

    let restarted = Server::start(dir.path(), &[]).await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    for (id, name) in &acknowledged {
        assert_eq!(tournament(&http, &restarted.base, id).await["tournamentName"], name.as_str());
    }
    let verified = lct(dir.path(), &["store", "verify"]).await;
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
}

#[tokio::test]
async fn a_full_disk_refuses_commands_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // Room for a few dozen records.
    let server = Server::start_with_file_size_limit(dir.path(), &[("LCT_RATE_LIMIT_COMMANDS", "0")], 8).await;
    let http = client();
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for i in 0..200 {
        let name = format!("Full disk cup {i:03} with a long name to fill it up");
        let response = http
            .post(server.url("/api/v2/tournaments"))
            .json(&serde_json::json!({"name": name, "playerLimit": 4}))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            201 => acknowledged.push((response.json::<serde_json::Value>().await.unwrap()["id"].clone(), name)),
            503 => refused += 1,
            status => panic!("a create answered {status}: {}", response.text().await.unwrap()),
        }
        if refused == 10 {
            break;
        }
    }
    assert_eq!(refused, 10, "the disk never filled up");
    assert!(acknowledged.len() > 5, "{} creates fit", acknowledged.len());
    // The pod still serves what it has.
    let (id, name) = &acknowledged[0];
    let view: serde_json::Value =
        json_of(http.get(server.url(&format!("/api/v2/tournaments/{}", id.as_str().unwrap())))).await;
    assert_eq!(view["name"], name.as_str());
    assert!(server.stop().await.success());

    // Nothing half-written stayed in the log: it verifies whole, with exactly the acknowledged.
    let verified = lct(dir.path(), &["store", "verify"]).await;
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));
    assert!(text(&verified).contains(&format!("valid records: {} ", acknowledged.len())), "{}", text(&verified));
    let log = std::fs::read(dir.path().join("events.log")).unwrap();
    records(&log);

    // With room again, every acknowledged command is there and new ones are taken.
    let restarted = Server::start(dir.path(), &[]).await;
    for (id, name) in &acknowledged {
        let view: serde_json::Value =
            json_of(http.get(restarted.url(&format!("/api/v2/tournaments/{}", id.as_str().unwrap())))).await;
        assert_eq!(view["name"], name.as_str());
    }
    let created = http
        .post(restarted.url("/api/v2/tournaments"))
        .json(&serde_json::json!({"name": "After the clean-up", "playerLimit": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
}

#[tokio::test]
async fn a_log_damaged_in_the_middle_stops_start_up_until_repaired_and_no_valid_record_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let http = client();
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(create(&http, &server, &format!("Damaged {i}"), 4).await);
    }
    let repair_refused = lct(dir.path(), &["store", "repair"]).await;
    assert_eq!(repair_refused.status.code(), Some(2), "repair refuses while lct runs: {}", text(&repair_refused));
    assert!(text(&repair_refused).contains("stop every process using it"), "{}", text(&repair_refused));
    server.stop().await;

    // One byte of the third tournament's record goes bad.
    let log_path = dir.path().join("events.log");
    let mut log = std::fs::read(&log_path).unwrap();
    let (offset, len) = records(&log)[2];
    log[offset + len / 2] ^= 0x02;
    std::fs::write(&log_path, &log).unwrap();

    let refused = lct(dir.path(), &[]).await;
    assert!(!refused.status.success(), "lct must not start on a damaged log");
    let message = text(&refused);
    let data_dir = dir.path().display();
    assert!(message.contains(&format!("{data_dir}/events.log at byte {offset}:")), "{message}");
    assert!(message.contains(&format!("lct store repair --data-dir {data_dir}")), "{message}");
    assert_eq!(std::fs::read(&log_path).unwrap(), log, "a refused start changes nothing");

    let verified = lct(dir.path(), &["store", "verify"]).await;
    assert_eq!(verified.status.code(), Some(1), "{}", text(&verified));
    assert!(text(&verified).contains(&format!("bytes {offset}..{}", offset + len)), "{}", text(&verified));

    let repaired = lct(dir.path(), &["store", "repair"]).await;
    assert_eq!(repaired.status.code(), Some(0), "{}", text(&repaired));
    let quarantine: Vec<_> = std::fs::read_dir(dir.path().join("quarantine")).unwrap().collect();
    assert_eq!(quarantine.len(), 1);
    let saved = std::fs::read(quarantine[0].as_ref().unwrap().path()).unwrap();
    assert_eq!(saved, log[offset..offset + len], "the quarantine holds the damaged record as it was");
    let verified = lct(dir.path(), &["store", "verify"]).await;
    assert_eq!(verified.status.code(), Some(0), "{}", text(&verified));

    let server = Server::start(dir.path(), &[]).await;
    for (i, id) in ids.iter().enumerate() {
        let response = http.get(server.url(&format!("/api/Tournament?id={id}"))).send().await.unwrap();
        if i == 2 {
            assert_eq!(response.status(), 404, "the damaged record's tournament is gone from the log");
        } else {
            assert_eq!(response.status(), 200);
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["tournamentName"], format!("Damaged {i}"));
        }
    }
    // Its name was in the damaged record only, so it is free again.
    create(&http, &server, "Damaged 2", 4).await;
}
