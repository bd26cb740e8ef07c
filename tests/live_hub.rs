//! The live hub on one pod: the SignalR JSON protocol frame by frame, the payload types, the
//! team-click preview, the v2 live socket, negotiation, bad clients and draining.

mod common;

use common::ws::{expect_refused, Live, SignalR};
use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn signalr_clients_get_every_message_of_their_tournament_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let http = client();
    let id = create(&http, &server, "Live", 2).await;
    let other = create(&http, &server, "Elsewhere", 2).await;
    let mut watcher = SignalR::connect(&server.base, &id).await;
    let mut bystander = SignalR::connect(&server.base, &other).await;

    assert_eq!(join(&http, &server.base, &id, "Anna", "Nowak").await.status(), 200);
    assert_eq!(
        watcher.next_payload(&id).await,
        json!({"type": "PlayerAssigned", "tournamentId": id, "name": "Anna", "surname": "Nowak"})
    );
    assert_eq!(join(&http, &server.base, &id, "Ben", "Kowal").await.status(), 200);
    assert_eq!(watcher.next_payload(&id).await["name"], "Ben");

    let mut anna = SignalR::connect(&server.base, &id).await;
    anna.click(Some("7"), "Chelsea", "Anna", "Nowak").await;
    assert_eq!(anna.next_completion().await, json!({"type": 3, "invocationId": "7"}));
    let clicked = json!({"type": "TeamClicked", "tournamentId": id, "clickedTeams": [{"team": "Chelsea", "name": "Anna", "surname": "Nowak"}]});
    assert_eq!(watcher.next_payload(&id).await, clicked);
    assert_eq!(anna.next_payload(&id).await, clicked);
    // A later click of the same player replaces the earlier one; another player's is added.
    anna.click(None, "PSG", "Anna", "Nowak").await;
    assert_eq!(
        watcher.next_payload(&id).await["clickedTeams"],
        json!([{"team": "PSG", "name": "Anna", "surname": "Nowak"}])
    );
    anna.click(None, "Bayern", "Ben", "Kowal").await;
    assert_eq!(
        watcher.next_payload(&id).await["clickedTeams"],
        json!([{"team": "PSG", "name": "Anna", "surname": "Nowak"}, {"team": "Bayern", "name": "Ben", "surname": "Kowal"}])
    );
    // Refused clicks: a stranger, an unknown team, an unknown method.
    anna.click(Some("8"), "PSG", "Eve", "Stranger").await;
    let refused = anna.next_completion().await;
    assert_eq!(refused["invocationId"], "8");
    assert!(refused["error"].as_str().unwrap().contains("not joined"), "{refused}");
    anna.click(Some("9"), "Arsenal", "Anna", "Nowak").await;
    assert!(anna.next_completion().await["error"].is_string());
    anna.send_raw("{\"type\":1,\"invocationId\":\"10\",\"target\":\"Nope\",\"arguments\":[]}\u{1e}").await;
    assert!(anna.next_completion().await["error"].as_str().unwrap().contains("Unknown hub method"));

    assert_eq!(select(&http, &server.base, &id, "Anna", "Nowak", "PSG").await.status(), 200);
    assert_eq!(
        watcher.next_payload(&id).await,
        json!({"type": "TeamSelected", "tournamentId": id, "playerName": "Anna", "playerSurname": "Nowak", "team": "PSG"})
    );
    assert_eq!(select(&http, &server.base, &id, "Ben", "Kowal", "Juventus").await.status(), 200);
    assert_eq!(watcher.next_payload(&id).await["team"], "Juventus");
    let drawn: serde_json::Value =
        json_of(http.get(server.url(&format!("/api/Tournament/draw?tournamentId={id}")))).await;
    let message = watcher.next_payload(&id).await;
    assert_eq!(message["type"], "TeamsDrawn");
    assert_eq!(message["drawnTeams"], drawn);

    // The bystander's first message is about its own tournament: nothing else leaked to it.
    assert_eq!(join(&http, &server.base, &other, "Zed", "Last").await.status(), 200);
    assert_eq!(bystander.next_payload(&other).await["name"], "Zed");
}

#[tokio::test]
async fn negotiation_answers_websockets_only_with_a_token_for_its_tournament() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let http = client();
    let id = create(&http, &server, "Negotiated", 2).await;
    let answer: serde_json::Value =
        json_of(http.post(server.url(&format!("/hubs/actions/negotiate?tournamentId={id}&negotiateVersion=1")))).await;
    assert_eq!(answer["negotiateVersion"], 1);
    assert_eq!(
        answer["availableTransports"],
        json!([{"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}])
    );
    let token = answer["connectionToken"].as_str().unwrap();
    let ws = server.base.replace("http://", "ws://");
    let url = format!("{ws}/hubs/actions?tournamentId={id}&id={token}");
    let mut client = SignalR::connect_url(&url).await;
    assert_eq!(join(&http, &server.base, &id, "Anna", "Nowak").await.status(), 200);
    assert_eq!(client.next_payload(&id).await["type"], "PlayerAssigned");

    // Negotiation version 0 hands out the token as the connection id.
    let answer: serde_json::Value =
        json_of(http.post(server.url(&format!("/hubs/actions/negotiate?tournamentId={id}")))).await;
    let old_style = answer["connectionId"].as_str().unwrap();
    let _second = SignalR::connect_url(&format!("{ws}/hubs/actions?tournamentId={id}&id={old_style}")).await;

    // A token is for the tournament it was negotiated for; a changed or made-up one is refused.
    let other = create(&http, &server, "Elsewhere", 2).await;
    let (body, mac) = token.rsplit_once('.').unwrap();
    let flipped = format!("{body}.{}{}", if mac.starts_with('0') { '1' } else { '0' }, &mac[1..]);
    for refused in [
        format!("{ws}/hubs/actions?tournamentId={other}&id={token}"),
        format!("{ws}/hubs/actions?tournamentId={id}&id={flipped}"),
        format!("{ws}/hubs/actions?tournamentId={id}&id=unknown"),
    ] {
        expect_refused(&refused, 404).await;
    }
}

#[tokio::test]
async fn bad_clients_are_closed_cleanly_and_the_pod_stays_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let http = client();
    let id = create(&http, &server, "Robust", 2).await;
    let ws = server.base.replace("http://", "ws://");
    let hub_url = format!("{ws}/hubs/actions?tournamentId={id}");

    // A wrong protocol gets a handshake error, then the close.
    let (mut socket, _) = tokio_tungstenite::connect_async(&hub_url).await.unwrap();
    socket.send(Message::text("{\"protocol\":\"messagepack\",\"version\":1}\u{1e}")).await.unwrap();
    let answer = socket.next().await.unwrap().unwrap();
    assert!(answer.to_text().unwrap().contains("\"error\""), "{answer:?}");
    assert!(matches!(socket.next().await, Some(Ok(Message::Close(_))) | None | Some(Err(_))));

    // Garbage after the handshake ends the connection with a close record carrying an error.
    let mut garbage = SignalR::connect(&server.base, &id).await;
    garbage.send_raw("this is not json\u{1e}").await;
    let close = garbage.next_non_ping().await.unwrap();
    assert_eq!(close["type"], 7);
    assert!(close["error"].is_string());
    assert!(garbage.next_non_ping().await.is_none());

    // An oversized frame is refused by closing the connection.
    let mut big = SignalR::connect(&server.base, &id).await;
    let _ = big.send(Message::text(format!("{{\"type\":6,\"pad\":\"{}\"}}\u{1e}", "x".repeat(1 << 20)))).await;
    assert!(big.next_non_ping().await.is_none());

    // A binary frame is not the JSON protocol.
    let mut binary = SignalR::connect(&server.base, &id).await;
    binary.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(binary.next_non_ping().await.unwrap()["type"], 7);

    // Unknown tournaments and bad ids are refused before the upgrade.
    for (url, status) in [
        (format!("{ws}/hubs/actions?tournamentId={}", uuid::Uuid::new_v4()), 404),
        (format!("{ws}/hubs/actions?tournamentId=nope"), 400),
        (format!("{ws}/hubs/actions"), 400),
        (format!("{ws}/api/v2/tournaments/{}/live", uuid::Uuid::new_v4()), 404),
    ] {
        expect_refused(&url, status).await;
    }
    let plain = http.get(server.url(&format!("/hubs/actions?tournamentId={id}"))).send().await.unwrap();
    assert_error(plain, 400).await;

    // The pod is healthy and serves a good client.
    assert_eq!(http.get(server.url("/liveness")).send().await.unwrap().status(), 200);
    let mut good = SignalR::connect(&server.base, &id).await;
    assert_eq!(join(&http, &server.base, &id, "Anna", "Nowak").await.status(), 200);
    assert_eq!(good.next_payload(&id).await["name"], "Anna");
}

#[tokio::test]
async fn the_v2_live_socket_replays_after_since_then_streams_without_a_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let http = client();
    let id = create(&http, &server, "Resume", 4).await;
    for (name, surname) in [("A", "One"), ("B", "Two")] {
        assert_eq!(join(&http, &server.base, &id, name, surname).await.status(), 200);
    }
    let mut live = Live::connect(&server.base, &id, Some(1)).await;
    let mut fresh = Live::connect(&server.base, &id, None).await;
    // A client ahead of the server (its store restored from a backup) is told the server's own
    // version, the signal to read the tournament again, and follows it from there.
    let mut ahead = Live::connect(&server.base, &id, Some(99)).await;
    assert_eq!((live.live_from, fresh.live_from, ahead.live_from), (3, 3, 3));
    for (name, surname) in [("C", "Three"), ("D", "Four")] {
        assert_eq!(join(&http, &server.base, &id, name, surname).await.status(), 200);
    }
    let mut versions = Vec::new();
    while versions.len() < 4 {
        let message = live.next().await.unwrap();
        assert_eq!(message["tournamentId"], id.as_str());
        versions.push(message["version"].as_u64().unwrap());
    }
    assert_eq!(versions, [2, 3, 4, 5]);
    assert_eq!(fresh.next().await.unwrap()["version"], 4);
    assert_eq!(fresh.next().await.unwrap()["version"], 5);
    assert_eq!(ahead.next().await.unwrap()["version"], 4);
    assert_eq!(select(&http, &server.base, &id, "A", "One", "PSG").await.status(), 200);
    let selected = live.next().await.unwrap();
    assert_eq!((selected["version"].as_u64(), selected["type"].as_str()), (Some(6), Some("TeamSelected")));
}

#[tokio::test]
async fn sigterm_tells_live_clients_to_reconnect_and_the_pod_exits() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("LCT_SHUTDOWN_GRACE", "5")]).await;
    let http = client();
    let id = create(&http, &server, "Draining", 2).await;
    let mut signalr = SignalR::connect(&server.base, &id).await;
    let mut live = Live::connect(&server.base, &id, None).await;
    // Make sure both are subscribed before draining.
    assert_eq!(join(&http, &server.base, &id, "A", "B").await.status(), 200);
    signalr.next_payload(&id).await;
    live.next().await.unwrap();

    let started = std::time::Instant::now();
    let status = server.stop().await;
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let close = signalr.next_non_ping().await.unwrap();
    assert_eq!(close, json!({"type": 7, "error": "Server is shutting down.", "allowReconnect": true}));
    assert!(live.next().await.is_none());
}

#[tokio::test]
async fn a_v2_client_missing_more_events_than_its_queue_holds_resumes_with_all_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("LCT_WS_QUEUE", "4")]).await;
    let http = client();
    let id = create(&http, &server, "Asleep", 10).await;
    for i in 0..9 {
        assert_eq!(join(&http, &server.base, &id, &format!("Player{i}"), "Nowak").await.status(), 200);
    }
    let stream: serde_json::Value = json_of(http.get(server.url(&format!("/api/v2/tournaments/{id}")))).await;
    let last = stream["version"].as_u64().unwrap();
    assert!(last > 4, "more events than the queue holds: {last}");

    // A phone that saw nothing comes back from version 0.
    let mut live = Live::connect(&server.base, &id, Some(0)).await;
    assert_eq!(live.live_from, last);
    for version in 1..=last {
        let message = live.next().await.expect("the replay, whole");
        assert_eq!(message["version"].as_u64(), Some(version), "{message}");
    }
    // And it is live after the replay.
    assert_eq!(join(&http, &server.base, &id, "Late", "Comer").await.status(), 200);
    let message = live.next().await.expect("the live socket stays open");
    assert_eq!((message["type"].as_str(), message["version"].as_u64()), (Some("PlayerJoined"), Some(last + 1)));
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_while_the_others_keep_receiving() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("LCT_WS_QUEUE", "16"), ("LCT_RATE_LIMIT_COMMANDS", "0"), ("LCT_WS_INVOCATIONS_PER_SECOND", "100000")];
    let server = Server::start(dir.path(), &env).await;
    let http = client();
    // Renames are events every hub client is sent, as many as the organiser makes.
    let created = http
        .post(server.url("/api/v2/tournaments"))
        .json(&json!({"name": "Slow night 0", "playerLimit": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let organiser = created["organiserToken"].as_str().unwrap().to_owned();
    for i in 0..10 {
        assert_eq!(join(&http, &server.base, &id, &format!("Player{i}"), "Nowak").await.status(), 200);
    }

    // The stalled client asks the kernel for a tiny receive window and then never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let url = format!("ws://{}/hubs/actions?tournamentId={id}", server.addr);
    let (mut stalled, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    stalled.send(Message::text("{\"protocol\":\"json\",\"version\":1}\u{1e}")).await.unwrap();

    let mut reader = SignalR::connect(&server.base, &id).await;
    // The clicker reads (and discards) what it is sent, so only the stalled client falls behind.
    let (clicker, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/hubs/actions?tournamentId={id}", server.addr)).await.unwrap();
    let (mut clicks, mut echoes) = clicker.split();
    clicks.send(Message::text("{\"protocol\":\"json\",\"version\":1}\u{1e}")).await.unwrap();
    tokio::spawn(async move { while let Some(Ok(_)) = echoes.next().await {} });
    // Click lists (a connection holds one unsent list at most) fill what the kernel buffers for
    // the stalled client; then the renames pile up in its queue until it is cut off. Each round
    // waits for the reader to get its rename, so only the stalled client can fall behind,
    // however slow this machine is; it goes on until the server has cut the stalled client off
    // (what the kernel buffers varies with the machine's load).
    let cut_off_line = "live connection fell behind its queue; disconnecting it";
    let cut_off = |server: &Server| server.log_lines().iter().filter(|l| l["message"] == cut_off_line).count();
    let limit = 10_000usize;
    let mut sent = 0usize;
    while sent < limit && cut_off(&server) == 0 {
        for i in 0..32 {
            let record = json!({"type": 1, "target": "TeamClicked",
                "arguments": [{"groupKey": id, "team": TEAMS[(sent + i) % 10], "name": format!("Player{}", i % 10), "surname": "Nowak"}]});
            clicks.send(Message::text(format!("{record}\u{1e}"))).await.unwrap();
        }
        let name = format!("Slow night {}", sent % 2 + 1);
        let renamed = http
            .post(server.url(&format!("/api/v2/tournaments/{id}/rename")))
            .bearer_auth(&organiser)
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(renamed.status(), 200);
        sent += 1;
        loop {
            let payload = reader.next_payload(&id).await;
            if payload["type"] == "TournamentRenamed" {
                assert_eq!(payload["tournamentName"], name.as_str());
                break;
            }
            assert_eq!(payload["type"], "TeamClicked");
        }
    }
    assert!(sent < limit, "the stalled client was still served after {limit} messages");

    // The stalled client was disconnected: draining what the kernel buffered ends in a close.
    let drained = tokio::time::timeout(common::ws::WAIT, async {
        while let Some(Ok(message)) = stalled.next().await {
            if let Message::Close(_) = message {
                break;
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the stalled connection was closed by the server");
    assert_eq!(cut_off(&server), 1, "exactly the stalled client was cut off as too slow");
    assert_eq!(http.get(server.url("/liveness")).send().await.unwrap().status(), 200);
}
