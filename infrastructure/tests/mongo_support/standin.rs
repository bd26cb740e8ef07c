//! The MongoDB wire-protocol stand-in (`jongodb`, from the npm package
//! `@jongodb/memory-server-bin-linux-x64-gnu`): a process of its own per test, on a loopback
//! port, killed when the handle is dropped. It is **not MongoDB**: it speaks the wire protocol
//! and reports itself as a one-member replica set; transactions, unique indexes and duplicate
//! keys work, write conflicts between transactions are not detected, and `drop`, `create`,
//! `listCollections` and `dropDatabase` are missing.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The variable naming the stand-in's binary (`…/bin/jongodb`).
pub const STANDIN_VARIABLE: &str = "LCT_TEST_MONGODB_STANDIN";

/// The stand-in's arguments as a one-member replica set, and as a standalone server.
const REPLICA_SET: &[&str] = &["--topology-profile=singleNodeReplicaSet", "--replica-set-name=rs0"];
const STANDALONE: &[&str] = &["--topology-profile=standalone"];

/// The stand-in's binary, if configured.
pub fn binary() -> Option<String> {
    std::env::var(STANDIN_VARIABLE).ok().filter(|b| !b.trim().is_empty())
}

/// A running stand-in.
pub struct StandIn {
    child: Child,
    binary: String,
    pub port: u16,
    /// `mongodb://127.0.0.1:<port>/?replicaSet=rs0`
    pub uri: String,
}

impl StandIn {
    /// Starts the stand-in named by `LCT_TEST_MONGODB_STANDIN` on a free port.
    pub fn start() -> StandIn {
        let binary = binary().unwrap_or_else(|| panic!("{STANDIN_VARIABLE} must name the stand-in's bin/jongodb"));
        Self::start_on(&binary, 0, REPLICA_SET)
    }

    /// Starts the stand-in as a standalone server (no replica set): its `uri` names no set.
    pub fn start_standalone() -> StandIn {
        let binary = binary().unwrap_or_else(|| panic!("{STANDIN_VARIABLE} must name the stand-in's bin/jongodb"));
        Self::start_on(&binary, 0, STANDALONE)
    }

    /// Starts the binary on `port` (0: any free port) with `profile` and waits for the line that
    /// gives its URI.
    fn start_on(binary: &str, port: u16, profile: &[&str]) -> StandIn {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut child = Command::new(binary)
                .args(["--host=127.0.0.1", &format!("--port={port}")])
                .args(profile)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
            let stdout = child.stdout.take().expect("piped stdout");
            let mut found = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(uri) = line.strip_prefix("JONGODB_URI=") {
                    found = Some(uri.trim().to_owned());
                    break;
                }
            }
            match found {
                Some(uri) => {
                    let port = uri
                        .split("127.0.0.1:")
                        .nth(1)
                        .and_then(|rest| rest.split(['/', '?']).next())
                        .and_then(|p| p.parse().ok())
                        .unwrap_or_else(|| panic!("no port in {uri}"));
                    let set = if profile == REPLICA_SET { "?replicaSet=rs0" } else { "" };
                    let uri = format!("mongodb://127.0.0.1:{port}/{set}");
                    return StandIn { child, binary: binary.to_owned(), port, uri };
                }
                None => {
                    // It exited without a URI: on a fixed port, the old listener may linger.
                    let _ = child.kill();
                    let _ = child.wait();
                    assert!(port != 0 && Instant::now() < deadline, "{binary} did not start");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// Kills the stand-in (its data goes with it) and waits for it to exit.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a new, empty stand-in on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port;
        *self = Self::start_on(&self.binary.clone(), port, REPLICA_SET);
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop();
    }
}
