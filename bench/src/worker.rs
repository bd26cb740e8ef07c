//! A load worker: one process holding the WebSocket clients of some lobbies (a process may not
//! hold more than about 20 000 sockets here, so the harness spreads clients over several).
//!
//! Every connection of a lobby lives in the same worker, so the time a lobby's click was sent
//! and the times its broadcast arrives are read from one clock. The driver connection of each
//! lobby clicks the ten teams in turn; a receiver reads which team the broadcast carries and
//! takes the latency from when that team was last clicked in its lobby.
//!
//! The worker reads commands as JSON lines on stdin and answers on stdout:
//! `{"cmd":"drive","rate":R}` (clicks per second over its lobbies), `{"cmd":"mark"}` (start a
//! measurement window), `{"cmd":"report"}` (the window's figures), `{"cmd":"totals"}` and
//! `{"cmd":"latest"}` (how many clients hold their lobby's latest click list) and
//! `{"cmd":"stop"}`.

use anyhow::{bail, Context};
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// The name of the team a driver clicks `n`th in a round (the ten teams in contract order).
fn team_name(n: usize) -> &'static str {
    domain::Team::ALL[n].name()
}

/// Which server the clients speak to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// lct's SignalR-compatible hub, two pods on one Redis.
    Lct,
    /// The same two lct pods on a Redis Cluster of three masters (sharded pub/sub).
    #[serde(rename = "lct-cluster")]
    LctCluster,
    /// Socket.IO with the Redis adapter.
    Socketio,
    /// The floor: `lct-bench floor-server`, the least server the SignalR clients accept, two
    /// processes on one Redis.
    Floor,
    /// socketioxide (Socket.IO in Rust) with its Redis adapter, the Socket.IO clients unchanged.
    Socketioxide,
}

impl System {
    /// Whether the clients speak SignalR's JSON hub protocol (else Socket.IO).
    pub fn speaks_signalr(self) -> bool {
        matches!(self, System::Lct | System::LctCluster | System::Floor)
    }

    /// The name used on the command line and in the JSON figures.
    pub fn name(self) -> &'static str {
        match self {
            System::Lct => "lct",
            System::LctCluster => "lct-cluster",
            System::Socketio => "socketio",
            System::Floor => "floor",
            System::Socketioxide => "socketioxide",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lobby {
    pub id: String,
    /// The joined player whose connection clicks.
    pub driver_name: String,
    pub driver_surname: String,
}

/// What the harness tells a worker when it starts it (the first line on its stdin).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerConfig {
    pub system: System,
    /// The two servers; a lobby's connections alternate between them.
    pub servers: Vec<String>,
    pub lobbies: Vec<Lobby>,
    pub clients_per_lobby: usize,
    /// Index of this worker's first lobby overall (decides which server drives each lobby).
    pub first_lobby: usize,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
enum WorkerCommand {
    Drive { rate: f64 },
    Mark,
    Report,
    Totals,
    Latest,
    Stop,
}

/// A measurement window's figures.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WindowReport {
    pub received: u64,
    pub clicks: u64,
    pub seconds: f64,
    /// Latency histogram, `(microseconds, count)` pairs.
    pub latency_us: Vec<(u64, u64)>,
}

/// Whole-run figures: what should have arrived and what did.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct TotalsReport {
    #[serde(default)]
    pub clicks_sent: u64,
    pub clicks_acknowledged: u64,
    pub click_errors: u64,
    /// The errors clicks were answered with, and how many times each.
    #[serde(default)]
    pub refusals: BTreeMap<String, u64>,
    pub expected: u64,
    pub received: u64,
    pub connections_closed: u64,
}

impl TotalsReport {
    pub fn add(&mut self, part: &TotalsReport) {
        self.clicks_sent += part.clicks_sent;
        self.clicks_acknowledged += part.clicks_acknowledged;
        self.click_errors += part.click_errors;
        for (error, count) in &part.refusals {
            *self.refusals.entry(error.clone()).or_default() += count;
        }
        self.expected += part.expected;
        self.received += part.received;
        self.connections_closed += part.connections_closed;
    }
}

/// Whether clients hold their lobby's latest click list: for each lobby with an acknowledged
/// click, its clients whose last received list carries the team of that click (lists carry one
/// player's click here, so a list with that team is the latest list's content), or of a click
/// the driver sent after it and was answered with an error: an error can leave a click's
/// outcome open (lct answers a click whose record script timed out with an error, and Redis
/// may have recorded it all the same), so that click's list is as much the latest.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LatestReport {
    pub clients: u64,
    pub holding_latest: u64,
    /// Of `holding_latest`, the clients whose list is that of a click answered with an error.
    #[serde(default)]
    pub holding_refused_click: u64,
}

#[derive(Default)]
struct Stats {
    received: AtomicU64,
    received_total: AtomicU64,
    clicks: AtomicU64,
    clicks_total: AtomicU64,
    acked: AtomicU64,
    ack_errors: AtomicU64,
    expected: AtomicU64,
    closed: AtomicU64,
}

/// Per lobby: when each team was last clicked, in nanoseconds since the worker started, the
/// highest acknowledged click and the highest answered one, acknowledged or refused (each its
/// invocation number + 1, 0 for none) and, per client, the team of the last list it received
/// (`NO_TEAM` for none).
struct LobbyClock {
    sent_at: [AtomicU64; 10],
    last_acked: AtomicU64,
    last_answered: AtomicU64,
    last_team: Vec<AtomicU8>,
}

const NO_TEAM: u8 = u8::MAX;

impl LobbyClock {
    fn new(clients: usize) -> LobbyClock {
        LobbyClock {
            sent_at: Default::default(),
            last_acked: AtomicU64::new(0),
            last_answered: AtomicU64::new(0),
            last_team: (0..clients).map(|_| AtomicU8::new(NO_TEAM)).collect(),
        }
    }

    /// Adds this lobby's clients to `report` when one of its clicks was acknowledged.
    fn count_latest(&self, report: &mut LatestReport) {
        let acked = self.last_acked.load(Ordering::Relaxed);
        if acked == 0 {
            return;
        }
        let team = ((acked - 1) % 10) as u8;
        // Every click answered after the last acknowledged one was refused.
        let answered = self.last_answered.load(Ordering::Relaxed).max(acked);
        let refused_teams: Vec<u8> = (acked..answered).take(10).map(|n| (n % 10) as u8).collect();
        report.clients += self.last_team.len() as u64;
        for held in self.last_team.iter().map(|t| t.load(Ordering::Relaxed)) {
            if held == team {
                report.holding_latest += 1;
            } else if refused_teams.contains(&held) {
                report.holding_latest += 1;
                report.holding_refused_click += 1;
            }
        }
    }
}

struct Shared {
    system: System,
    base: Instant,
    stats: Stats,
    latency: Mutex<Histogram<u64>>,
    clients_per_lobby: u64,
    refusals: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

pub async fn run() -> anyhow::Result<()> {
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let config: WorkerConfig = serde_json::from_str(&stdin.next_line().await?.context("no configuration on stdin")?)?;
    let shared = Arc::new(Shared {
        system: config.system,
        base: Instant::now(),
        stats: Stats::default(),
        latency: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        clients_per_lobby: config.clients_per_lobby as u64,
        refusals: Mutex::default(),
    });

    // Connect everything, a bounded number at a time.
    let mut plans = Vec::new();
    let mut drivers = Vec::new();
    let mut clocks = Vec::new();
    for (index, lobby) in config.lobbies.iter().enumerate() {
        let clock = Arc::new(LobbyClock::new(config.clients_per_lobby));
        clocks.push(Arc::clone(&clock));
        let driver_server = (config.first_lobby + index) % config.servers.len();
        for client in 0..config.clients_per_lobby {
            let server = (driver_server + client) % config.servers.len();
            let outgoing = if client == 0 {
                let (tx, rx) = mpsc::unbounded_channel();
                drivers.push(Driver { lobby: lobby.clone(), clock: Arc::clone(&clock), outgoing: tx, next: 0 });
                Some(rx)
            } else {
                None
            };
            let client = Client { clock: Arc::clone(&clock), index: client };
            plans.push((config.servers[server].clone(), lobby.id.clone(), client, outgoing));
        }
    }
    let total = plans.len();
    let system = config.system;
    let mut connecting = futures::stream::iter(plans.into_iter().map(|(server, lobby, client, outgoing)| async move {
        let socket = connect_with_retries(system, &server, &lobby).await?;
        anyhow::Ok((socket, client, outgoing))
    }))
    .buffer_unordered(128);
    while let Some(connected) = connecting.next().await {
        let (socket, client, outgoing) = connected?;
        tokio::spawn(connection(socket, client, outgoing, Arc::clone(&shared)));
    }
    say(&serde_json::json!({"ready": true, "connected": total}));

    // Drive at the requested rate until told to stop.
    let rate = Arc::new(Mutex::new(0.0f64));
    let driving = tokio::spawn(drive(drivers, Arc::clone(&rate), Arc::clone(&shared)));
    let mut window_start = Instant::now();
    while let Some(line) = stdin.next_line().await? {
        match serde_json::from_str::<WorkerCommand>(&line)? {
            WorkerCommand::Drive { rate: new } => *rate.lock().unwrap() = new,
            WorkerCommand::Mark => {
                shared.latency.lock().unwrap().reset();
                shared.stats.received.store(0, Ordering::Relaxed);
                shared.stats.clicks.store(0, Ordering::Relaxed);
                window_start = Instant::now();
            }
            WorkerCommand::Report => {
                let seconds = window_start.elapsed().as_secs_f64();
                let received = shared.stats.received.load(Ordering::Relaxed);
                let clicks = shared.stats.clicks.load(Ordering::Relaxed);
                let latency_us = {
                    let histogram = shared.latency.lock().unwrap();
                    histogram.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()
                };
                say(&WindowReport { received, clicks, seconds, latency_us });
            }
            WorkerCommand::Totals => {
                let s = &shared.stats;
                say(&TotalsReport {
                    clicks_sent: s.clicks_total.load(Ordering::Relaxed),
                    clicks_acknowledged: s.acked.load(Ordering::Relaxed),
                    click_errors: s.ack_errors.load(Ordering::Relaxed),
                    refusals: shared.refusals.lock().unwrap().clone(),
                    expected: s.expected.load(Ordering::Relaxed),
                    received: s.received_total.load(Ordering::Relaxed),
                    connections_closed: s.closed.load(Ordering::Relaxed),
                });
            }
            WorkerCommand::Latest => {
                let mut report = LatestReport::default();
                for clock in &clocks {
                    clock.count_latest(&mut report);
                }
                say(&report);
            }
            WorkerCommand::Stop => break,
        }
    }
    driving.abort();
    Ok(())
}

fn say(value: &impl Serialize) {
    println!("{}", serde_json::to_string(value).expect("serialisable"));
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn client_config() -> WebSocketConfig {
    // Small buffers: thousands of clients share this process.
    WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0)
}

async fn connect_with_retries(system: System, server: &str, lobby: &str) -> anyhow::Result<Socket> {
    let mut attempt = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), connect(system, server, lobby)).await {
            Ok(Ok(socket)) => return Ok(socket),
            Ok(Err(error)) if attempt >= 4 => return Err(error),
            Err(_) if attempt >= 4 => bail!("connecting to {server} timed out"),
            _ => {}
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
    }
}

/// Opens a client and completes the protocol's handshake.
async fn connect(system: System, server: &str, lobby: &str) -> anyhow::Result<Socket> {
    let url = match system {
        System::Lct | System::LctCluster | System::Floor => format!("ws://{server}/hubs/actions?tournamentId={lobby}"),
        System::Socketio | System::Socketioxide => {
            format!("ws://{server}/socket.io/?EIO=4&transport=websocket&tournamentId={lobby}")
        }
    };
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(client_config()), true).await?;
    match system {
        System::Lct | System::LctCluster | System::Floor => {
            socket.send(Message::text("{\"protocol\":\"json\",\"version\":1}\u{1e}")).await?;
            match socket.next().await {
                Some(Ok(Message::Text(text))) if text.as_str() == "{}\u{1e}" => {}
                other => bail!("unexpected SignalR handshake answer {other:?}"),
            }
        }
        System::Socketio | System::Socketioxide => {
            match socket.next().await {
                Some(Ok(Message::Text(text))) if text.as_str().starts_with('0') => {}
                other => bail!("unexpected Engine.IO open packet {other:?}"),
            }
            socket.send(Message::text("40")).await?;
            // The server may ping before it answers the connect: answer as the clients do.
            loop {
                match socket.next().await {
                    Some(Ok(Message::Text(text))) if text.as_str().starts_with("40") => break,
                    Some(Ok(Message::Text(text))) if text.as_str() == "2" => socket.send(Message::text("3")).await?,
                    other => bail!("unexpected Socket.IO connect answer {other:?}"),
                }
            }
        }
    }
    Ok(socket)
}

/// A client of a lobby: its lobby's clock and its place among the lobby's clients.
struct Client {
    clock: Arc<LobbyClock>,
    index: usize,
}

/// Reads one connection until it closes, counting broadcasts and acknowledgements; a driver
/// connection also sends the clicks queued for it. SignalR clients send a keep-alive every 15
/// seconds as the official clients do; Socket.IO clients answer the server's pings.
async fn connection(
    mut socket: Socket,
    client: Client,
    mut outgoing: Option<mpsc::UnboundedReceiver<String>>,
    shared: Arc<Shared>,
) {
    // Keep-alives spread evenly over the period, as independent clients' would be: all at once
    // they would be a burst of thousands of messages no real lobby sends.
    static STARTED: AtomicU64 = AtomicU64::new(0);
    let phase_ms = STARTED.fetch_add(1, Ordering::Relaxed).wrapping_mul(7_919) % 15_000;
    let mut keepalive = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_millis(1 + phase_ms),
        Duration::from_secs(15),
    );
    loop {
        tokio::select! {
            message = socket.next() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let reply = match shared.system {
                    System::Lct | System::LctCluster | System::Floor => on_signalr(text.as_str(), &client, &shared),
                    System::Socketio | System::Socketioxide => on_socketio(text.as_str(), &client, &shared),
                };
                if let Some(reply) = reply {
                    if socket.send(Message::text(reply)).await.is_err() {
                        break;
                    }
                }
            }
            Some(frame) = async { match outgoing.as_mut() { Some(rx) => rx.recv().await, None => None } } => {
                if socket.send(Message::text(frame)).await.is_err() {
                    break;
                }
            }
            _ = keepalive.tick(), if shared.system.speaks_signalr() => {
                if socket.send(Message::text("{\"type\":6}\u{1e}")).await.is_err() {
                    break;
                }
            }
        }
    }
    shared.stats.closed.fetch_add(1, Ordering::Relaxed);
}

fn on_signalr(text: &str, client: &Client, shared: &Shared) -> Option<&'static str> {
    for record in text.split('\u{1e}').filter(|r| !r.is_empty()) {
        if record.starts_with("{\"type\":1,") {
            received(team_of(record, "team\\\":\\\""), client, shared);
        } else if record.starts_with("{\"type\":3,") {
            let invocation = string_field(record, "\"invocationId\":\"").and_then(|id| id.parse().ok());
            acknowledged(invocation, string_field(record, "\"error\":\""), client, shared);
        }
    }
    None
}

fn on_socketio(text: &str, client: &Client, shared: &Shared) -> Option<&'static str> {
    if text == "2" {
        return Some("3");
    }
    if text.starts_with("42[") {
        received(team_of(text, "\"team\":\""), client, shared);
    } else if let Some(rest) = text.strip_prefix("43") {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let error = string_field(text, "\"error\":\"").or(text.contains("\"error\"").then_some("error"));
        acknowledged(rest[..digits].parse().ok(), error, client, shared);
    }
    None
}

/// The string value after `key` (which ends with its opening quote), without unescaping.
fn string_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    let rest = &text[start..];
    Some(&rest[..rest.find('"')?])
}

/// The team named after `key` in a broadcast.
fn team_of(text: &str, key: &str) -> Option<usize> {
    let start = text.find(key)? + key.len();
    let rest = &text[start..];
    (0..domain::Team::ALL.len()).position(|n| {
        let team = team_name(n);
        rest.starts_with(team) && rest[team.len()..].starts_with(['\\', '"'])
    })
}

fn received(team: Option<usize>, client: &Client, shared: &Shared) {
    shared.stats.received.fetch_add(1, Ordering::Relaxed);
    shared.stats.received_total.fetch_add(1, Ordering::Relaxed);
    if let Some(team) = team {
        client.clock.last_team[client.index].store(team as u8, Ordering::Relaxed);
        let sent = client.clock.sent_at[team].load(Ordering::Relaxed);
        if sent > 0 {
            let micros = (shared.now_ns().saturating_sub(sent) / 1_000).max(1);
            let _ = shared.latency.lock().unwrap().record(micros);
        }
    }
}

/// A click's answer: `invocation` is the click's number in its lobby (the driver clicks team
/// `number % 10`), `error` what the server refused it with.
fn acknowledged(invocation: Option<u64>, error: Option<&str>, client: &Client, shared: &Shared) {
    if let Some(number) = invocation {
        client.clock.last_answered.fetch_max(number + 1, Ordering::Relaxed);
    }
    match error {
        None => {
            shared.stats.acked.fetch_add(1, Ordering::Relaxed);
            shared.stats.expected.fetch_add(shared.clients_per_lobby, Ordering::Relaxed);
            if let Some(number) = invocation {
                client.clock.last_acked.fetch_max(number + 1, Ordering::Relaxed);
            }
        }
        Some(error) => {
            shared.stats.ack_errors.fetch_add(1, Ordering::Relaxed);
            let mut refusals = shared.refusals.lock().unwrap();
            let known = refusals.len() < 16 || refusals.contains_key(error);
            let error: String = if known { error.chars().take(160).collect() } else { "(other errors)".into() };
            *refusals.entry(error).or_default() += 1;
        }
    }
}

struct Driver {
    lobby: Lobby,
    clock: Arc<LobbyClock>,
    outgoing: mpsc::UnboundedSender<String>,
    next: u64,
}

impl Driver {
    fn click_frame(&self, system: System, team: &str) -> String {
        let click = serde_json::json!({
            "groupKey": self.lobby.id,
            "team": team,
            "name": self.lobby.driver_name,
            "surname": self.lobby.driver_surname,
        });
        match system {
            System::Lct | System::LctCluster | System::Floor => format!(
                "{{\"type\":1,\"target\":\"TeamClicked\",\"invocationId\":\"{}\",\"arguments\":[{click}]}}\u{1e}",
                self.next
            ),
            System::Socketio | System::Socketioxide => format!("42{}[\"TeamClicked\",{click}]", self.next),
        }
    }
}

/// Sends clicks at the current rate, spread evenly over the lobbies in turn.
async fn drive(mut drivers: Vec<Driver>, rate: Arc<Mutex<f64>>, shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut current = 0.0;
    let mut since = Instant::now();
    let mut sent_since = 0u64;
    let mut turn = 0usize;
    loop {
        tick.tick().await;
        let wanted = *rate.lock().unwrap();
        if wanted != current {
            current = wanted;
            since = Instant::now();
            sent_since = 0;
        }
        if current <= 0.0 || drivers.is_empty() {
            continue;
        }
        let due = (since.elapsed().as_secs_f64() * current) as u64;
        while sent_since < due {
            let count = drivers.len();
            let driver = &mut drivers[turn % count];
            turn += 1;
            let team = (driver.next % 10) as usize;
            let frame = driver.click_frame(shared.system, team_name(team));
            driver.next += 1;
            driver.clock.sent_at[team].store(shared.now_ns().max(1), Ordering::Relaxed);
            let _ = driver.outgoing.send(frame);
            shared.stats.clicks.fetch_add(1, Ordering::Relaxed);
            shared.stats.clicks_total.fetch_add(1, Ordering::Relaxed);
            sent_since += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_team_is_read_from_both_encodings() {
        let signalr = r#"{"type":1,"target":"x","arguments":["{\"type\":\"TeamClicked\",\"tournamentId\":\"x\",\"clickedTeams\":[{\"team\":\"Manchaster City\",\"name\":\"Driver\",\"surname\":\"0\"}]}"]}"#;
        assert_eq!(team_of(signalr, "team\\\":\\\""), Some(2));
        let socketio = r#"42["TeamClicked",{"type":"TeamClicked","tournamentId":"x","clickedTeams":[{"team":"Real Madrid","name":"Driver","surname":"0"}]}]"#;
        assert_eq!(team_of(socketio, "\"team\":\""), Some(5));
        assert_eq!(team_of(r#"{"team":"Bayern Munich"}"#, "\"team\":\""), None);
    }

    #[test]
    fn a_client_holding_the_list_of_a_click_refused_after_the_last_acknowledged_one_holds_the_latest() {
        let clock = LobbyClock::new(5);
        let latest = |clock: &LobbyClock| {
            let mut report = LatestReport::default();
            clock.count_latest(&mut report);
            (report.clients, report.holding_latest, report.holding_refused_click)
        };
        assert_eq!(latest(&clock), (0, 0, 0), "no click acknowledged yet");
        // Clicks 0 to 12 answered; 11 (team 1) was the last acknowledged, 12 (team 2) refused.
        clock.last_acked.store(12, Ordering::Relaxed);
        clock.last_answered.store(13, Ordering::Relaxed);
        for (client, team) in [1, 2, 2, 0, NO_TEAM].into_iter().enumerate() {
            clock.last_team[client].store(team, Ordering::Relaxed);
        }
        assert_eq!(latest(&clock), (5, 3, 2));
        // Once click 13 (team 3) is acknowledged, only its list is the latest.
        clock.last_acked.store(14, Ordering::Relaxed);
        clock.last_answered.store(14, Ordering::Relaxed);
        clock.last_team[0].store(3, Ordering::Relaxed);
        assert_eq!(latest(&clock), (5, 1, 0));
    }
}
