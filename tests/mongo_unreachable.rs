//! `lct` pointed at a MongoDB replica set that cannot be reached (loopback ports where nothing
//! listens): the process stays up, liveness answers, readiness says 503, a command answers 503
//! in the error shape within a few seconds, and no credential reaches the logs.

use serde_json::Value;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const URI_PASSWORD: &str = "uri-secret-7f3a";
const ENV_PASSWORD: &str = "env-secret-91cd";
/// How long a command may take to answer 503 while MongoDB is unreachable.
const COMMAND_DEADLINE: Duration = Duration::from_secs(5);

/// The `lct` binary with only the settings of this test (none inherited from the caller).
fn lct(data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lct"));
    for (key, _) in std::env::vars() {
        if key.starts_with("LCT_") {
            command.env_remove(key);
        }
    }
    command
        .env("LCT_LISTEN", "127.0.0.1:0")
        .env("LCT_DATA_DIR", data_dir)
        .env(
            "LCT_MONGODB_URI",
            format!(
                "mongodb://lct:{URI_PASSWORD}@127.0.0.1:1,127.0.0.1:2/?replicaSet=rs0&serverSelectionTimeoutMS=1500"
            ),
        )
        .env("LCT_MONGODB_PASSWORD", ENV_PASSWORD)
        .env("LCT_MONGODB_DATABASE", "lct_unreachable")
        .env("LCT_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Collects everything a pipe carries until it closes; sends the address of the "listening"
/// log line on `listening` when it passes. Reading all along keeps the pipe from filling up.
fn collect(
    pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    mut listening: Option<oneshot::Sender<String>>,
) -> JoinHandle<String> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        let mut log = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(record) = serde_json::from_str::<Value>(&line) {
                if record["message"] == "listening" {
                    if let (Some(tx), Some(addr)) = (listening.take(), record["addr"].as_str()) {
                        let _ = tx.send(addr.to_owned());
                    }
                }
            }
            log.push_str(&line);
            log.push('\n');
        }
        log
    })
}

/// A running `lct` and its logs.
struct Lct {
    child: Child,
    addr: String,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<String>,
}

impl Lct {
    async fn start(data_dir: &std::path::Path) -> Self {
        let mut child = lct(data_dir).spawn().expect("starting lct");
        let (tx, rx) = oneshot::channel();
        let stdout = collect(child.stdout.take().unwrap(), Some(tx));
        let stderr = collect(child.stderr.take().unwrap(), None);
        let addr = match tokio::time::timeout(Duration::from_secs(30), rx).await {
            Ok(Ok(addr)) => addr,
            _ => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                let log = stdout.await.unwrap() + &stderr.await.unwrap();
                panic!("lct did not start listening; its output:\n{log}");
            }
        };
        Self { child, addr, stdout, stderr }
    }

    /// Stops the process and returns everything it wrote.
    async fn stop(mut self) -> String {
        self.child.start_kill().expect("stopping lct");
        let _ = self.child.wait().await;
        self.stdout.await.unwrap() + &self.stderr.await.unwrap()
    }
}

#[tokio::test]
async fn an_unreachable_replica_set_keeps_lct_alive_but_not_ready_and_commands_answer_503() {
    let data_dir = tempfile::tempdir().unwrap();
    let lct = Lct::start(data_dir.path()).await;
    let base = format!("http://{}", lct.addr);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();

    let liveness = http.get(format!("{base}/liveness")).send().await.unwrap();
    assert_eq!(liveness.status(), 200);
    assert_eq!(liveness.text().await.unwrap(), "Healthy");

    let readiness = http.get(format!("{base}/readiness")).send().await.unwrap();
    assert_eq!(readiness.status(), 503);
    let body: Value = readiness.json().await.unwrap();
    assert_eq!(body["dependencies"]["eventStore"]["status"], "Unhealthy", "{body}");

    let started = Instant::now();
    let created = http
        .post(format!("{base}/api/Tournament/create"))
        .json(&serde_json::json!({"name": "Friday", "playerLimit": 4}))
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(created.status(), 503);
    assert!(elapsed < COMMAND_DEADLINE, "the 503 took {elapsed:?}");
    let header_id = created.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned());
    let content_type = created.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let error: Value = created.json().await.unwrap();
    let request_id = error["RequestId"].as_str().expect("a RequestId");
    assert!(uuid::Uuid::parse_str(request_id).is_ok(), "{error}");
    assert!(!error["ErrorMessage"].as_str().expect("an ErrorMessage").is_empty());
    if let Some(header_id) = header_id {
        assert_eq!(header_id, request_id);
    }

    // Still alive after the failures.
    let liveness = http.get(format!("{base}/liveness")).send().await.unwrap();
    assert_eq!(liveness.status(), 200);

    let log = lct.stop().await;
    assert!(log.contains("using the MongoDB event store"), "{log}");
    for secret in [URI_PASSWORD, ENV_PASSWORD] {
        assert!(!log.contains(secret), "a MongoDB password reached the log:\n{log}");
    }
}
