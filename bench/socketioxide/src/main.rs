//! The lobby fan-out of lct written the way users build it with socketioxide, the Rust
//! Socket.IO server, and its Redis adapter: the same events and payloads as
//! `bench/socketio/server.js`. One room per tournament, the adapter carrying every emit to the
//! other processes through Redis, and the TeamClicked list (each player's latest click, held by
//! the process the clicker is connected to) broadcast to the room on every click.
//!
//! Start: `PORT=0 REDIS_URL=redis://127.0.0.1:6379 lct-bench-socketioxide`. It prints one JSON
//! line `{"message":"listening","addr":"127.0.0.1:<port>"}` when ready. Clients connect with
//! `?tournamentId=<lobby>`; they emit "TeamClicked" `{team, name, surname}` with an
//! acknowledgement and receive "TeamClicked" `{type, tournamentId, clickedTeams}`.

use serde::Serialize;
use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::SocketIo;
use socketioxide_redis::drivers::fred::fred_client as fred;
use socketioxide_redis::{FredAdapter, RedisAdapterCtr};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

const TEAMS: [&str; 10] = [
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

#[derive(Debug, Clone, Serialize)]
struct Click {
    team: String,
    name: String,
    surname: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClickList<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    tournament_id: &'a str,
    clicked_teams: Vec<Click>,
}

/// A lobby's latest click of each player, keyed by the player, in the order players first
/// clicked (as a JavaScript `Map` keeps them).
type LobbyClicks = Vec<(String, Click)>;

/// The clicks of each lobby.
static CLICKS: LazyLock<Mutex<HashMap<String, LobbyClicks>>> = LazyLock::new(Mutex::default);

/// The lobby a socket joins, from its handshake's `tournamentId`.
fn lobby_of(socket: &SocketRef<impl Adapter>) -> String {
    let query = socket.req_parts().uri.query().unwrap_or_default();
    query.split('&').find_map(|pair| pair.strip_prefix("tournamentId=")).unwrap_or_default().to_owned()
}

async fn on_connect<A: Adapter>(socket: SocketRef<A>) {
    let lobby = lobby_of(&socket);
    if lobby.is_empty() {
        let _ = socket.disconnect();
        return;
    }
    socket.join(lobby.clone());
    socket.on("TeamClicked", async move |io: SocketIo<A>, Data(click): Data<Value>, ack: AckSender<A>| {
        on_click(io, &lobby, click, ack).await;
    });
}

async fn on_click<A: Adapter>(io: SocketIo<A>, lobby: &str, click: Value, ack: AckSender<A>) {
    let valid = match (click["team"].as_str(), click["name"].as_str(), click["surname"].as_str()) {
        (Some(team), Some(name), Some(surname)) if TEAMS.contains(&team) => {
            Some(Click { team: team.to_owned(), name: name.to_owned(), surname: surname.to_owned() })
        }
        _ => None,
    };
    let Some(click) = valid else {
        let _ = ack.send(&serde_json::json!({"error": "invalid click"}));
        return;
    };
    let list = {
        let mut lobbies = CLICKS.lock().unwrap();
        let lobby_clicks = lobbies.entry(lobby.to_owned()).or_default();
        let key = format!("{}\u{1f}{}", click.name, click.surname);
        match lobby_clicks.iter_mut().find(|(k, _)| *k == key) {
            Some((_, latest)) => *latest = click,
            None => lobby_clicks.push((key, click)),
        }
        lobby_clicks.iter().map(|(_, c)| c.clone()).collect()
    };
    let payload = ClickList { kind: "TeamClicked", tournament_id: lobby, clicked_teams: list };
    let _ = io.to(lobby.to_owned()).emit("TeamClicked", &payload).await;
    let _ = ack.send(&serde_json::json!({}));
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let port: u16 = std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(0);
    let mut config = fred::prelude::Config::from_url(&redis_url)?;
    config.version = fred::types::RespVersion::RESP3;
    let client = fred::prelude::Builder::from_config(config).build_subscriber_client()?;
    let adapter = RedisAdapterCtr::new_with_fred(client).await?;
    let (service, io) = SocketIo::builder().with_adapter::<FredAdapter<_>>(adapter).build_svc();
    io.ns("/", on_connect).await?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("{}", serde_json::json!({"message": "listening", "addr": listener.local_addr()?.to_string()}));
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}
