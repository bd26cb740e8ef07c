//! Helpers of the end-to-end tests: start the real `lct` binary on a free port and talk to it.
#![allow(dead_code)]

pub mod proxy;
pub mod redis_cluster;
pub mod redis_sentinel;
pub mod redis_server;
pub mod v2;
pub mod ws;

use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running `lct` process; killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub addr: std::net::SocketAddr,
    /// Every stdout line so far.
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `lct` on 127.0.0.1:0 with `data_dir` and extra environment, and waits for the
    /// line that says where it listens.
    pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Self::start_command(Command::new(env!("CARGO_BIN_EXE_lct")), data_dir, env).await
    }

    /// [`Server::start`] with the files the process writes limited to `kib` KiB each: past it a
    /// write fails with EFBIG, as it would with ENOSPC on a full disk.
    pub async fn start_with_file_size_limit(data_dir: &Path, env: &[(&str, &str)], kib: u32) -> Server {
        let mut command = Command::new("bash");
        command.arg("-c").arg(format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\"")).arg(env!("CARGO_BIN_EXE_lct"));
        Self::start_command(command, data_dir, env).await
    }

    /// [`Server::start`] with the soft open-file limit lowered to `soft` (the hard one unchanged),
    /// as many container runtimes start processes.
    pub async fn start_with_soft_open_file_limit(data_dir: &Path, env: &[(&str, &str)], soft: u32) -> Server {
        let mut command = Command::new("bash");
        command.arg("-c").arg(format!("ulimit -Sn {soft}; exec \"$0\"")).arg(env!("CARGO_BIN_EXE_lct"));
        Self::start_command(command, data_dir, env).await
    }

    async fn start_command(mut command: Command, data_dir: &Path, env: &[(&str, &str)]) -> Server {
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LCT_LISTEN", "127.0.0.1:0")
            .env("LCT_DATA_DIR", data_dir)
            .env("LCT_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("starting lct");
        let stdout = child.stdout.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let sink = Arc::clone(&logs);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut addr_tx = Some(addr_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(json) = serde_json::from_str::<Value>(&line) {
                    if json["message"] == "listening" {
                        if let Some(tx) = addr_tx.take() {
                            let _ = tx.send(json["addr"].as_str().unwrap_or_default().to_owned());
                        }
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr: std::net::SocketAddr = tokio::time::timeout(Duration::from_secs(30), addr_rx)
            .await
            .expect("lct did not report its address in time")
            .expect("lct exited before listening")
            .parse()
            .unwrap();
        Server { child, base: format!("http://{addr}"), addr, logs }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
        tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.expect("lct did not stop").unwrap()
    }

    pub fn log_lines(&self) -> Vec<Value> {
        self.logs.lock().unwrap().iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap()
}

/// Creates a tournament and returns its id.
pub async fn create(http: &reqwest::Client, server: &Server, name: &str, limit: u32) -> String {
    let response = http
        .post(server.url("/api/Tournament/create"))
        .json(&serde_json::json!({"name": name, "playerLimit": limit}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "create {name}");
    response.json::<String>().await.unwrap()
}

pub async fn join(http: &reqwest::Client, base: &str, id: &str, name: &str, surname: &str) -> reqwest::Response {
    http.post(format!("{base}/api/Tournament/assignPlayer"))
        .json(&serde_json::json!({"name": name, "surname": surname, "tournamentId": id}))
        .send()
        .await
        .unwrap()
}

pub async fn select(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    name: &str,
    surname: &str,
    team: &str,
) -> reqwest::Response {
    http.post(format!("{base}/api/Team/select"))
        .json(&serde_json::json!({"playerName": name, "playerSurname": surname, "tournamentId": id, "team": team}))
        .send()
        .await
        .unwrap()
}

/// Sends a request and reads its JSON body.
pub async fn json_of<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> T {
    request.send().await.unwrap().json().await.unwrap()
}

pub async fn tournament(http: &reqwest::Client, base: &str, id: &str) -> Value {
    let response = http.get(format!("{base}/api/Tournament?id={id}")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Checks the v1 error shape and returns the message.
pub async fn assert_error(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status, "status");
    let header_id = response.headers().get("x-request-id").expect("x-request-id header").to_str().unwrap().to_owned();
    assert_eq!(response.headers().get("content-type").unwrap(), "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["RequestId"], header_id.as_str(), "the body names the request id of the header");
    uuid::Uuid::parse_str(&header_id).unwrap();
    let message = body["ErrorMessage"].as_str().expect("ErrorMessage").to_owned();
    assert!(!message.is_empty());
    message
}

pub const TEAMS: [&str; 10] = [
    "Bayern",
    "PSG",
    "Manchaster City",
    "Liverpool",
    "Machester United",
    "Real Madrid",
    "Chelsea",
    "Atletico Madrid",
    "Juventus",
    "Barcelona",
];
