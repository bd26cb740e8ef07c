//! Memory per idle WebSocket connection of three Rust WebSocket libraries.
//!
//! `ws-idle server --lib X --listen ADDR` accepts WebSocket connections with library X (one task
//! per connection that awaits the next message; the library answers pings) and prints
//! `open <count>` on stdout after each completed handshake.
//!
//! `ws-idle measure --lib X --connections N` runs that server as a child process, opens a
//! baseline of 500 connections, reads the server's VmRSS, opens N more idle connections, waits
//! until the server has completed all handshakes, lets it settle, reads VmRSS again and prints
//! the difference per connection. These are library floors: no application state.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const BASELINE: usize = 500;
const SETTLE: Duration = Duration::from_secs(3);
const CONNECT_CONCURRENCY: usize = 64;
/// Read buffer lct configures per connection (api/src/live/session.rs).
const TUNGSTENITE_READ_BUFFER: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lib {
    Tungstenite,
    TokioWebsockets,
    Fastwebsockets,
    /// tungstenite through axum 0.8's `WebSocketUpgrade`, configured as lct configures it.
    Axum,
}

impl Lib {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "tungstenite" => Ok(Lib::Tungstenite),
            "tokio-websockets" => Ok(Lib::TokioWebsockets),
            "fastwebsockets" => Ok(Lib::Fastwebsockets),
            "axum" => Ok(Lib::Axum),
            other => Err(format!("unknown library {other:?} (tungstenite, tokio-websockets, fastwebsockets, axum)")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Lib::Tungstenite => "tungstenite",
            Lib::TokioWebsockets => "tokio-websockets",
            Lib::Fastwebsockets => "fastwebsockets",
            Lib::Axum => "axum",
        }
    }
}

struct Args {
    mode: String,
    lib: Lib,
    listen: String,
    connections: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it.next().ok_or("usage: ws-idle server|measure|sizes --lib X [--listen ADDR] [--connections N]")?;
    let mut lib = None;
    let mut listen = "127.0.0.1:0".to_string();
    let mut connections = 9500;
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--lib" => lib = Some(Lib::parse(&value)?),
            "--listen" => listen = value,
            "--connections" => connections = value.parse().map_err(|e| format!("--connections: {e}"))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if connections + BASELINE >= 15_000 {
        return Err("--connections must stay below 14 500 (fd limit)".into());
    }
    let lib = if mode == "sizes" { lib.unwrap_or(Lib::Tungstenite) } else { lib.ok_or("--lib is required")? };
    Ok(Args { mode, lib, listen, connections })
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = match args.mode.as_str() {
        "server" => rt.block_on(server(args.lib, &args.listen)),
        "measure" => rt.block_on(measure(args.lib, args.connections)),
        "sizes" => rt.block_on(sizes()),
        other => Err(format!("unknown mode {other}")),
    };
    if let Err(e) = result {
        eprintln!("ws-idle: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Server

fn opened(count: &AtomicUsize) {
    let n = count.fetch_add(1, Ordering::Relaxed) + 1;
    println!("open {n}");
}

async fn server(lib: Lib, listen: &str) -> Result<(), String> {
    let listener = TcpListener::bind(listen).await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening {addr}");
    let count = Arc::new(AtomicUsize::new(0));
    if lib == Lib::Axum {
        return serve_axum(listener, count).await;
    }
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        let count = count.clone();
        match lib {
            Lib::Tungstenite => tokio::spawn(serve_tungstenite(stream, count)),
            Lib::TokioWebsockets => tokio::spawn(serve_tokio_websockets(stream, count)),
            Lib::Fastwebsockets => tokio::spawn(serve_fastwebsockets(stream, count)),
            Lib::Axum => unreachable!("served by axum::serve"),
        };
    }
}

async fn serve_tungstenite(stream: TcpStream, count: Arc<AtomicUsize>) {
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
    let config = WebSocketConfig::default().read_buffer_size(TUNGSTENITE_READ_BUFFER).write_buffer_size(0);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    opened(&count);
    // Pings are answered by the library while it reads.
    while let Some(Ok(_)) = ws.next().await {}
}

async fn serve_tokio_websockets(stream: TcpStream, count: Arc<AtomicUsize>) {
    let Ok((_request, mut ws)) = tokio_websockets::ServerBuilder::new().accept(stream).await else {
        return;
    };
    opened(&count);
    while let Some(Ok(_)) = ws.next().await {}
}

async fn serve_fastwebsockets(stream: TcpStream, count: Arc<AtomicUsize>) {
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper::Request;
    use hyper_util::rt::TokioIo;

    let service = service_fn(move |mut request: Request<Incoming>| {
        let count = count.clone();
        async move {
            let (response, upgrade) = fastwebsockets::upgrade::upgrade(&mut request)?;
            tokio::spawn(async move {
                let Ok(mut ws) = upgrade.await else { return };
                ws.set_auto_pong(true);
                ws.set_auto_close(true);
                opened(&count);
                loop {
                    match ws.read_frame().await {
                        Ok(frame) if frame.opcode == fastwebsockets::OpCode::Close => break,
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            });
            Ok::<_, fastwebsockets::WebSocketError>(response)
        }
    });
    // The HTTP connection ends with the upgrade; the WebSocket lives on in its own task.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

/// axum's upgrade path with the limits lct applies (`api/src/live/session.rs`, `configure`).
async fn serve_axum(listener: TcpListener, count: Arc<AtomicUsize>) -> Result<(), String> {
    use axum::extract::ws::WebSocketUpgrade;
    use axum::extract::State;
    use axum::routing::get;

    async fn upgrade(ws: WebSocketUpgrade, State(count): State<Arc<AtomicUsize>>) -> axum::response::Response {
        ws.read_buffer_size(TUNGSTENITE_READ_BUFFER).write_buffer_size(0).max_write_buffer_size(256 * 1024).on_upgrade(
            move |mut socket| async move {
                opened(&count);
                while let Some(Ok(_)) = socket.recv().await {}
            },
        )
    }

    let app = axum::Router::new().route("/", get(upgrade)).with_state(count);
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

/// Prints the size of each connection task's future (the task cell holds it for the life of the
/// connection, sized for its largest state, the handshake included).
async fn sizes() -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let stream = || async { TcpStream::connect(addr).await.map_err(|e| e.to_string()) };
    let count = Arc::new(AtomicUsize::new(0));
    let f = serve_tungstenite(stream().await?, count.clone());
    println!("tungstenite connection future: {} bytes", std::mem::size_of_val(&f));
    let f = serve_tokio_websockets(stream().await?, count.clone());
    println!("tokio-websockets connection future: {} bytes", std::mem::size_of_val(&f));
    let f = serve_fastwebsockets(stream().await?, count.clone());
    println!("fastwebsockets HTTP connection future: {} bytes", std::mem::size_of_val(&f));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Measurement

fn vm_rss_bytes(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or("no VmRSS line")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or("malformed VmRSS")?
        .parse()
        .map_err(|e: std::num::ParseIntError| e.to_string())?;
    Ok(kib * 1024)
}

type ClientStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn open_connections(url: &str, n: usize, into: &mut Vec<ClientStream>) -> Result<(), String> {
    let mut results = futures_util::stream::iter(0..n)
        .map(|_| tokio_tungstenite::connect_async(url.to_string()))
        .buffer_unordered(CONNECT_CONCURRENCY);
    while let Some(r) = results.next().await {
        let (ws, _) = r.map_err(|e| format!("connect: {e}"))?;
        into.push(ws);
    }
    Ok(())
}

async fn wait_for_count(count: &AtomicUsize, target: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while count.load(Ordering::Relaxed) < target {
        if Instant::now() > deadline {
            return Err(format!(
                "server completed {} of {target} handshakes before the deadline",
                count.load(Ordering::Relaxed)
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

async fn measure(lib: Lib, connections: usize) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["server", "--lib", lib.name(), "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn server: {e}"))?;
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let first = lines.next().ok_or("server exited")?.map_err(|e| e.to_string())?;
    let addr = first.strip_prefix("listening ").ok_or(format!("unexpected server line {first:?}"))?.to_string();
    let count = Arc::new(AtomicUsize::new(0));
    {
        let count = count.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Some(n) = line.strip_prefix("open ").and_then(|n| n.parse().ok()) {
                    // Lines from two connection tasks may arrive out of order.
                    count.fetch_max(n, Ordering::Relaxed);
                }
            }
        });
    }
    let url = format!("ws://{addr}/");
    let result = async {
        let mut clients = Vec::with_capacity(BASELINE + connections);
        open_connections(&url, BASELINE, &mut clients).await?;
        wait_for_count(&count, BASELINE).await?;
        tokio::time::sleep(SETTLE).await;
        let before = vm_rss_bytes(pid)?;
        open_connections(&url, connections, &mut clients).await?;
        wait_for_count(&count, BASELINE + connections).await?;
        tokio::time::sleep(SETTLE).await;
        let after = vm_rss_bytes(pid)?;
        let per = (after as f64 - before as f64) / connections as f64;
        println!(
            "lib={} allocator={} baseline={BASELINE} connections={connections} \
             rss_before={before} rss_after={after} bytes_per_idle_connection={per:.0} ({:.2} KiB)",
            lib.name(),
            if cfg!(feature = "jemalloc") { "jemalloc" } else { "system" },
            per / 1024.0
        );
        // A ping on one connection shows the library answers it while idle.
        let ws = clients.last_mut().ok_or("no connections")?;
        ws.send(tokio_tungstenite::tungstenite::Message::Ping(vec![1, 2, 3].into()))
            .await
            .map_err(|e| format!("ping: {e}"))?;
        let pong = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(msg) = ws.next().await {
                if let Ok(tokio_tungstenite::tungstenite::Message::Pong(p)) = msg {
                    return Some(p);
                }
            }
            None
        })
        .await
        .map_err(|_| "no pong within 10 s".to_string())?;
        if pong.as_deref() != Some(&[1u8, 2, 3][..]) {
            return Err("server did not answer the ping".to_string());
        }
        Ok::<_, String>(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}
