//! Connections that cannot be held open: the real binary against raw sockets that send nothing,
//! half a request, a body that never ends, or open more connections than they may; and a live
//! client that sends invocations but never reads.

mod common;

use common::*;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long a test waits for the server to act before it fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// Short timeouts so that the tests see them act; the caps are left at their defaults unless a
/// test sets them.
const FAST_TIMEOUTS: [(&str, &str); 3] =
    [("LCT_HEADER_READ_TIMEOUT_MS", "1000"), ("LCT_BODY_READ_TIMEOUT_MS", "1000"), ("LCT_REQUEST_TIMEOUT_MS", "3000")];

/// Lets idle sockets stay while a test counts them against a cap.
const HOLD_IDLE: (&str, &str) = ("LCT_HEADER_READ_TIMEOUT_MS", "600000");

/// A TCP connection to `server` from the loopback address `from` (any 127.x.y.z on Linux).
async fn connect_from(server: &Server, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0)).unwrap();
    socket.connect(server.addr).await.unwrap()
}

/// Reads until the server closes the connection (end of file or reset) and returns what came,
/// failing the test when the connection is still open at the deadline.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(DEADLINE, read_all).await.expect("the server closes the connection");
    String::from_utf8_lossy(&received).into_owned()
}

/// One `GET /liveness` on a fresh connection from `from`: the status line's code, or `None` when
/// the server closed the connection without an answer.
async fn liveness_from(server: &Server, from: &str) -> Option<u16> {
    let mut stream = connect_from(server, from).await;
    let request = "GET /liveness HTTP/1.1\r\nHost: lct\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return None;
    }
    let answer = read_until_closed(&mut stream).await;
    answer.strip_prefix("HTTP/1.1 ").and_then(|rest| rest.get(..3)).and_then(|code| code.parse().ok())
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &FAST_TIMEOUTS).await;
    let mut silent = connect_from(&server, "127.0.0.1").await;
    let answer = read_until_closed(&mut silent).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn half_a_request_line_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &FAST_TIMEOUTS).await;
    let mut slow = connect_from(&server, "127.0.0.1").await;
    slow.write_all(b"GET /liven").await.unwrap();
    let answer = read_until_closed(&mut slow).await;
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &FAST_TIMEOUTS).await;
    let mut idle = connect_from(&server, "127.0.0.1").await;
    idle.write_all(b"GET /liveness HTTP/1.1\r\nHost: lct\r\n\r\n").await.unwrap();
    let answer = read_until_closed(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "the request is answered before the idle close: {answer}");
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &FAST_TIMEOUTS).await;
    let mut stalled = connect_from(&server, "127.0.0.1").await;
    let head = "POST /api/Tournament/create HTTP/1.1\r\nHost: lct\r\nContent-Type: application/json\r\n\
                Content-Length: 100\r\n\r\n{\"name\":";
    stalled.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stalled).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("The request body did not arrive in time."), "{answer}");
}

#[tokio::test]
async fn a_body_dripped_a_byte_at_a_time_is_cut_off_by_the_request_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &FAST_TIMEOUTS).await;
    let mut drip = connect_from(&server, "127.0.0.1").await;
    let head = "POST /api/Tournament/create HTTP/1.1\r\nHost: lct\r\nContent-Type: application/json\r\n\
                Content-Length: 10000\r\n\r\n";
    drip.write_all(head.as_bytes()).await.unwrap();
    // The client's own pace: one byte every 200 ms, well inside the body-read timeout, so only
    // the whole-request timeout can end it. It stops when the server closes the connection.
    let (mut reader, mut writer) = drip.into_split();
    let dripping = tokio::spawn(async move {
        for _ in 0..10_000 {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut received = Vec::new();
    let closed = tokio::time::timeout(DEADLINE, reader.read_to_end(&mut received)).await;
    dripping.abort();
    assert!(closed.is_ok(), "the server ends a request whose body never completes");
    let answer = String::from_utf8_lossy(&received);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // With the v1 error body, naming the request by the id in its header.
    let id = answer.lines().find_map(|l| l.strip_prefix("x-request-id: ")).expect("a request id");
    let body: serde_json::Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or_default())
        .unwrap_or_else(|e| panic!("a JSON body ({e}): {answer}"));
    assert_eq!(body["RequestId"], id, "{answer}");
    assert!(body["ErrorMessage"].as_str().is_some_and(|m| m.contains("in time")), "{answer}");
}

#[tokio::test]
async fn idle_sockets_over_the_per_client_cap_are_refused_while_other_clients_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("LCT_MAX_CONNECTIONS_PER_CLIENT", "20"), HOLD_IDLE]).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect_from(&server, "127.0.0.1").await);
    }
    // One more from the same address is refused at once with 503, not left hanging.
    assert_eq!(liveness_from(&server, "127.0.0.1").await, Some(503));
    // Another address still gets its answer.
    assert_eq!(liveness_from(&server, "127.0.0.2").await, Some(200));
    // Operators see the refusals: counted, reported in the log, and the answer's request id
    // in its header as in every other answer's.
    let mut refused = connect_from(&server, "127.0.0.1").await;
    refused.write_all(b"GET /liveness HTTP/1.1\r\nHost: lct\r\n\r\n").await.unwrap();
    let answer = read_until_closed(&mut refused).await.to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 503") && answer.contains("\r\nx-request-id: "), "{answer}");
    let operator = reqwest::Client::builder().local_address("127.0.0.2".parse::<IpAddr>().unwrap()).build().unwrap();
    let metrics = operator.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let refusals = metrics
        .lines()
        .find_map(|line| line.strip_prefix(r#"lct_connections_refused_total{reason="client_full"} "#))
        .unwrap_or_else(|| panic!("no refusal count in {metrics}"));
    assert_eq!(refusals.trim().parse::<f64>().unwrap(), 2.0);
    assert!(
        server.log_lines().iter().any(|line| line["log.level"] == "warn"
            && line["message"].as_str().is_some_and(|m| m.contains("connections refused"))),
        "no warning of the refusals"
    );
    // Once the idle sockets go, the address is served again.
    drop(held);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while liveness_from(&server, "127.0.0.1").await != Some(200) {
        assert!(tokio::time::Instant::now() < deadline, "the freed slots are never given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn connections_over_the_global_cap_are_refused_and_served_again_once_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start(dir.path(), &[("LCT_MAX_CONNECTIONS", "30"), ("LCT_MAX_CONNECTIONS_PER_CLIENT", "0"), HOLD_IDLE])
            .await;
    let mut held = Vec::new();
    for i in 0..30 {
        held.push(connect_from(&server, &format!("127.0.1.{}", i + 1)).await);
    }
    assert_eq!(liveness_from(&server, "127.0.2.1").await, Some(503));
    held.truncate(10);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while liveness_from(&server, "127.0.2.1").await != Some(200) {
        assert!(tokio::time::Instant::now() < deadline, "the freed slots are never given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A connection from `from` that asks for twenty copies of a large answer at once (Swagger UI's
/// script, 1.4 MB) and never reads them, through a receive buffer of 4 KiB: the server's writes
/// to it stall.
async fn stalled_reader(server: &Server, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0)).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    let request = "GET /swagger/swagger-ui-bundle.js HTTP/1.1\r\nHost: lct\r\n\r\n".repeat(20);
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

#[tokio::test]
async fn a_client_that_never_reads_its_answers_loses_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = FAST_TIMEOUTS.to_vec();
    env.extend([("LCT_MAX_CONNECTIONS_PER_CLIENT", "1"), ("LCT_SEND_TIMEOUT_MS", "1000")]);
    let server = Server::start(dir.path(), &env).await;
    let _stalled = stalled_reader(&server, "127.0.0.3").await;
    // The stalled connection holds the address's one place...
    assert_eq!(liveness_from(&server, "127.0.0.3").await, Some(503));
    // ...until the server gives up writing to it.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while liveness_from(&server, "127.0.0.3").await != Some(200) {
        assert!(tokio::time::Instant::now() < deadline, "a client that never reads holds its connection for ever");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn shutdown_ends_within_its_grace_while_a_client_never_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = FAST_TIMEOUTS.to_vec();
    env.push(("LCT_SHUTDOWN_GRACE", "2"));
    let server = Server::start(dir.path(), &env).await;
    let _stalled = stalled_reader(&server, "127.0.0.3").await;
    // The server has started answering it (and got stuck) before it is told to stop.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !server
        .log_lines()
        .iter()
        .any(|l| l["message"] == "request finished" && l["url.path"] == "/swagger/swagger-ui-bundle.js")
    {
        assert!(tokio::time::Instant::now() < deadline, "the large answer never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // `stop` sends SIGTERM and fails the test if lct has not exited 30 s later.
    assert!(server.stop().await.success());
}

/// The open live connections the server reports on `/metrics`.
async fn live_connections(server: &Server) -> u64 {
    let text = client().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("lct_ws_connections "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .expect("lct_ws_connections on /metrics")
}

#[tokio::test]
async fn a_live_client_that_sends_invocations_but_never_reads_is_disconnected() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let id = create(&client(), &server, "Stalled night", 2).await;
    let url = format!("{}/hubs/actions?tournamentId={id}", server.base.replace("http://", "ws://"));
    let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // The client never reads: everything the server sends piles up in the socket buffers.
    let (mut sink, _unread) = socket.split();
    sink.send(Message::text("{\"protocol\":\"json\",\"version\":1}\u{1e}")).await.unwrap();
    // The server counts the connection once it has read the handshake and subscribed it.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while live_connections(&server).await != 1 {
        assert!(tokio::time::Instant::now() < deadline, "the server never counts the connection");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Invocations with ~30 KB invocation ids, each answered by a completion carrying its id,
    // until the server cuts the connection off (the send fails) or the deadline passes.
    let invocation_id = "i".repeat(30_000);
    let record = serde_json::json!({
        "type": 1, "invocationId": invocation_id, "target": "TeamClicked",
        "arguments": [{"groupKey": id, "team": "PSG", "name": "Nobody", "surname": "Here"}],
    });
    let record = format!("{record}\u{1e}");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut sent = 0usize;
    loop {
        match tokio::time::timeout_at(deadline, sink.send(Message::text(record.clone()))).await {
            Ok(Ok(())) => sent += 1,
            Ok(Err(_)) => break,
            Err(_) => panic!("the connection is still held after {sent} invocations"),
        }
    }
    while live_connections(&server).await != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the server still counts the connection");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The server is fine and serves the next client.
    assert_eq!(liveness_from(&server, "127.0.0.1").await, Some(200));
}

#[tokio::test]
async fn a_request_head_larger_than_any_client_needs_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &FAST_TIMEOUTS).await;
    // Real clients send heads of a few hundred bytes; one of 48 KiB is held by nobody.
    let mut stream = connect_from(&server, "127.0.0.1").await;
    let head = format!(
        "GET /liveness HTTP/1.1\r\nHost: lct\r\nX-Padding: {}\r\nConnection: close\r\n\r\n",
        "p".repeat(48 * 1024)
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{}", answer.lines().next().unwrap_or_default());
    // A head of a usual size is served.
    assert_eq!(liveness_from(&server, "127.0.0.1").await, Some(200));
}

/// The address of the operators' listener, from its start-up line.
fn admin_address(server: &Server) -> String {
    let line = server
        .log_lines()
        .into_iter()
        .find(|line| line["message"] == "operators' endpoints listening")
        .expect("the operators' listener reported its address");
    format!("http://{}", line["addr"].as_str().unwrap())
}

#[tokio::test]
async fn probes_and_scrapes_on_the_operators_listener_are_answered_when_the_pod_is_full_and_draining() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("LCT_ADMIN_LISTEN", "127.0.0.1:0"),
        ("LCT_MAX_CONNECTIONS", "4"),
        ("LCT_MAX_CONNECTIONS_PER_CLIENT", "0"),
        ("LCT_SHUTDOWN_GRACE", "30"),
        HOLD_IDLE,
    ];
    let server = Server::start(dir.path(), &env).await;
    let admin = admin_address(&server);
    let http = client();
    // A stalled reader holds one place, and later the drain; idle sockets hold the others.
    let _stalled = stalled_reader(&server, "127.0.3.1").await;
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(connect_from(&server, &format!("127.0.3.{}", i + 2)).await);
    }
    assert_eq!(liveness_from(&server, "127.0.3.9").await, Some(503), "the public listener is full");
    for path in ["/liveness", "/readiness", "/metrics", "/cluster"] {
        let answer = http.get(format!("{admin}{path}")).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{path} on the operators' listener");
    }
    let metrics = http.get(format!("{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"lct_connections_refused_total{reason="full"} 1"#), "{metrics}");
    // It serves the operators' endpoints alone.
    let api = http.post(format!("{admin}/api/Tournament/create")).json(&serde_json::json!({})).send().await.unwrap();
    assert_eq!(api.status(), 404);

    // Draining, the pod is no longer ready; its probes are still answered.
    let killed = std::process::Command::new("kill").arg("-TERM").arg(server.child.id().unwrap().to_string()).status();
    assert!(killed.unwrap().success());
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let answer = http.get(format!("{admin}/readiness")).send().await.unwrap();
        if answer.status() == 503 {
            let body: serde_json::Value = answer.json().await.unwrap();
            assert_eq!(body["draining"], true, "{body}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "readiness stayed {} while draining", answer.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(http.get(format!("{admin}/liveness")).send().await.unwrap().status(), 200);
}

/// The soft and hard open-file limits of process `pid`.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|line| line.starts_with("Max open files")).unwrap().to_owned();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_owned(), fields[4].to_owned())
}

#[tokio::test]
async fn a_pod_started_with_a_low_soft_open_file_limit_raises_it_to_the_hard_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_soft_open_file_limit(dir.path(), &[], 256).await;
    let (soft, hard) = open_file_limits(server.child.id().unwrap());
    assert_ne!(hard, "256", "the hard limit is higher than the soft one given");
    assert_eq!(soft, hard, "the soft limit is raised to the hard one");
}
