//! The HTTP server: accepts connections under a cap in all and a cap per client address, serves
//! each with hyper's HTTP/1 (header-read timeout, WebSocket upgrades, `TCP_NODELAY`), and on
//! shutdown stops accepting and lets in-flight requests finish.
//!
//! A connection over a cap is answered 503 at once and closed; it never waits. A connection's
//! place under the caps is held by its socket, so an upgraded WebSocket keeps it until it closes.
//! Behind trusted proxies every connection comes from a proxy: the per-client cap then counts the
//! live (WebSocket) connections of each forwarded client address instead (see
//! [`ConnectionLimits::admit_client`]).

use crate::client_ip::ClientIpSource;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

/// Timeouts and caps of the server; a cap of 0 is no cap.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Time to receive a request's head, counted from the connection's opening and from the end
    /// of the previous answer: also how long an idle kept-alive connection stays open.
    pub header_read_timeout: Duration,
    /// Longest pause while a request body arrives.
    pub body_read_timeout: Duration,
    /// Longest time for a whole request, its body included, until its answer starts (408).
    pub request_timeout: Duration,
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections of one client address.
    pub max_connections_per_client: usize,
    /// Longest time a connection's socket may take no bytes while the server has some to write
    /// (a client that does not read its answers): the connection is then closed. Longer than a
    /// live connection's own limit, so that a WebSocket session closes a slow client itself.
    pub send_timeout: Duration,
    /// On shutdown, how long requests in flight are waited for before their connections are
    /// closed.
    pub drain_grace: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_client: 256,
            send_timeout: Duration::from_secs(40),
            drain_grace: Duration::from_secs(20),
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds as many connections as it may.
    Full,
    /// This client address holds as many connections as it may.
    ClientFull,
}

impl Refusal {
    /// The refusal's label in `lct_connections_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Full => "full",
            Refusal::ClientFull => "client_full",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::Full => "The server has too many open connections; retry shortly.",
            Refusal::ClientFull => "Too many open connections from this address; close some and retry.",
        }
    }
}

struct Counts {
    max_total: usize,
    max_per_client: usize,
    send_timeout: Duration,
    total: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
    refused_full: AtomicU64,
    refused_client_full: AtomicU64,
}

/// The open connections, counted against the caps; cheap to clone.
#[derive(Clone)]
pub struct ConnectionLimits {
    counts: Arc<Counts>,
    /// Whether the peer address is a client's (not a trusted proxy's).
    peers_are_clients: bool,
}

/// A connection's place under the caps, given back when dropped.
pub struct Slot {
    counts: Arc<Counts>,
    total: bool,
    client: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.total {
            self.counts.total.fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(ip) = self.client {
            let mut per_client = self.counts.per_client.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(count) = per_client.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    per_client.remove(&ip);
                }
            }
        }
    }
}

impl ConnectionLimits {
    pub fn new(options: &ServerOptions, client_ip: &ClientIpSource) -> Self {
        let counts = Counts {
            max_total: options.max_connections,
            max_per_client: options.max_connections_per_client,
            send_timeout: options.send_timeout,
            total: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
            refused_full: AtomicU64::new(0),
            refused_client_full: AtomicU64::new(0),
        };
        Self { counts: Arc::new(counts), peers_are_clients: !client_ip.behind_proxy() }
    }

    /// Admits a new connection from `peer`, counting it in all and, when peers are clients, for
    /// its address.
    pub fn admit_connection(&self, peer: IpAddr) -> Result<Slot, Refusal> {
        let counts = &self.counts;
        let admitted = counts.total.fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
            (counts.max_total == 0 || open < counts.max_total).then_some(open + 1)
        });
        if admitted.is_err() {
            counts.refused_full.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Full);
        }
        let mut slot = Slot { counts: Arc::clone(counts), total: true, client: None };
        if self.peers_are_clients {
            slot.client = Some(self.take_client_place(peer)?);
        }
        Ok(slot)
    }

    /// Admits a live connection of the client `client` behind trusted proxies; `None` when peers
    /// are clients (their connections are counted as they are accepted).
    pub fn admit_client(&self, client: IpAddr) -> Option<Result<Slot, Refusal>> {
        if self.peers_are_clients {
            return None;
        }
        let place = self.take_client_place(client);
        Some(place.map(|ip| Slot { counts: Arc::clone(&self.counts), total: false, client: Some(ip) }))
    }

    fn take_client_place(&self, ip: IpAddr) -> Result<IpAddr, Refusal> {
        let ip = crate::client_ip::limited_as(ip);
        let max = self.counts.max_per_client;
        let mut per_client = self.counts.per_client.lock().unwrap_or_else(|p| p.into_inner());
        let count = per_client.entry(ip).or_insert(0);
        if max != 0 && *count >= max {
            self.counts.refused_client_full.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::ClientFull);
        }
        *count += 1;
        Ok(ip)
    }

    /// Connections refused so far, by [`Refusal::label`].
    pub fn refusals(&self) -> Vec<(&'static str, u64)> {
        vec![
            (Refusal::Full.label(), self.counts.refused_full.load(Ordering::Relaxed)),
            (Refusal::ClientFull.label(), self.counts.refused_client_full.load(Ordering::Relaxed)),
        ]
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.counts.total.load(Ordering::Acquire)
    }
}

/// A socket that holds its connection's place under the caps for as long as it lives (an
/// upgraded WebSocket included), and fails its writes once it has taken no bytes for the send
/// timeout.
struct Admitted {
    stream: TcpStream,
    slot: Slot,
    /// Since when the socket has taken no bytes, while it has some to take.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Admitted {
    fn new(stream: TcpStream, slot: Slot) -> Self {
        Self { stream, slot, stalled: None }
    }

    /// A write's outcome, with the stall it ends or continues: `Pending` becomes an error once
    /// the socket has been stalled for the send timeout.
    fn watch<T>(&mut self, cx: &mut Context<'_>, written: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if written.is_ready() {
            self.stalled = None;
            return written;
        }
        let timeout = self.slot.counts.send_timeout;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client took no bytes within the send timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Admitted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Admitted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watch(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.watch(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Largest request head (request line and headers) read, and the connection's buffer: clients
/// send heads of a few hundred bytes (a few KiB with cookies), and hyper's default (about
/// 400 KiB) lets each connection hold that much for the header-read timeout. A larger head is
/// answered 431.
const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Refused connections whose answer is still being delivered; beyond this many, refused
/// sockets are closed without one.
const MAX_LINGERING: usize = 256;
/// How long a refused connection is given to take its answer.
const LINGER: Duration = Duration::from_secs(1);
/// How often refused connections are reported in the log while they go on.
const REPORT_REFUSALS_EVERY: Duration = Duration::from_secs(60);

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits for the
/// requests in flight, for [`ServerOptions::drain_grace`] at most: the connections still busy
/// then are closed (idle connections are closed at once; upgraded WebSockets are not waited for,
/// their own sessions end them).
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    options: &ServerOptions,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    S: tower::Service<Request<axum::body::Body>, Response = axum::response::Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true)
        .max_buf_size(MAX_HEAD_BYTES);
    let body_timeout = options.body_read_timeout;
    // Connections in flight, and the signal that tells them to finish their request and close.
    let connections = tokio_util::task::TaskTracker::new();
    let stop = tokio_util::sync::CancellationToken::new();
    let force = tokio_util::sync::CancellationToken::new();
    let lingering = Arc::new(AtomicUsize::new(0));
    tokio::pin!(shutdown);
    let mut last_reported = None;
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
        };
        // Every message is written whole and at once; Nagle's algorithm would hold a small
        // write that follows another (a broadcast after a completion) until the delayed ACK.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on a connection");
        }
        let slot = match limits.admit_connection(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                // Once per burst: a flood of refusals must not become a flood of log lines.
                if last_reported.is_none_or(|at: Instant| at.elapsed() >= REPORT_REFUSALS_EVERY) {
                    last_reported = Some(Instant::now());
                    tracing::warn!(
                        reason = refusal.label(),
                        open = limits.open(),
                        "connections refused: {} (counted in lct_connections_refused_total; reported once a minute \
                         while it lasts)",
                        refusal.message()
                    );
                }
                refuse(stream, refusal, &lingering);
                continue;
            }
        };
        let app = app.clone();
        let service = tower::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let request =
                request.map(|body| axum::body::Body::new(tower_http::timeout::TimeoutBody::new(body_timeout, body)));
            app.clone().oneshot(request)
        });
        let connection = http
            .serve_connection(TokioIo::new(Admitted::new(stream, slot)), TowerToHyperService::new(service))
            .with_upgrades();
        let (stop, force) = (stop.clone(), force.clone());
        connections.spawn(async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    tokio::select! {
                        ended = connection => ended,
                        () = force.cancelled() => return,
                    }
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    stop.cancel();
    connections.close();
    if tokio::time::timeout(options.drain_grace, connections.wait()).await.is_err() {
        tracing::warn!(
            open = connections.len(),
            "grace period over with requests in flight; closing their connections"
        );
        force.cancel();
        connections.wait().await;
    }
    Ok(())
}

/// After a failed accept: errors of the one connection are skipped; running out of file
/// descriptors (or memory) pauses accepting briefly instead of spinning.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(%error, "cannot accept connections; retrying shortly");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Answers a refused connection 503 with the v1 error body and closes it, giving the client a
/// moment to read the answer before the socket goes.
fn refuse(stream: TcpStream, refusal: Refusal, lingering: &Arc<AtomicUsize>) {
    let id = uuid::Uuid::new_v4();
    tracing::debug!(RequestId = %id, reason = refusal.label(), "connection refused");
    let body = serde_json::json!({"RequestId": id, "ErrorMessage": refusal.message()}).to_string();
    let answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\n\
         x-request-id: {id}\r\ncontent-length: {}\r\n\r\n{body}",
        StatusCode::SERVICE_UNAVAILABLE.as_u16(),
        StatusCode::SERVICE_UNAVAILABLE.canonical_reason().unwrap_or_default(),
        body.len()
    );
    // A fresh socket's send buffer is empty: the answer is written whole or not at all.
    let _ = stream.try_write(answer.as_bytes());
    if lingering.fetch_add(1, Ordering::AcqRel) >= MAX_LINGERING {
        lingering.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let lingering = Arc::clone(lingering);
    tokio::spawn(async move {
        // Closing with the request unread would reset the connection and could destroy the
        // answer before the client reads it: half-close, then drain what the client sent.
        let _ = tokio::time::timeout(LINGER, async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = stream;
            stream.shutdown().await?;
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await? > 0 {}
            Ok::<(), std::io::Error>(())
        })
        .await;
        lingering.fetch_sub(1, Ordering::AcqRel);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_client: usize, header: Option<&str>) -> ConnectionLimits {
        let options =
            ServerOptions { max_connections: total, max_connections_per_client: per_client, ..Default::default() };
        ConnectionLimits::new(&options, &ClientIpSource::new(header, 1).unwrap())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn connections_are_counted_in_all_and_per_client_and_given_back() {
        let limits = limits(3, 2, None);
        let a1 = limits.admit_connection(ip("10.0.0.1")).unwrap();
        let _a2 = limits.admit_connection(ip("10.0.0.1")).unwrap();
        assert_eq!(limits.admit_connection(ip("10.0.0.1")).err(), Some(Refusal::ClientFull));
        let _b1 = limits.admit_connection(ip("10.0.0.2")).unwrap();
        assert_eq!(limits.admit_connection(ip("10.0.0.3")).err(), Some(Refusal::Full));
        assert_eq!(limits.open(), 3, "refusals hold nothing");
        drop(a1);
        assert_eq!(limits.open(), 2);
        assert!(limits.admit_connection(ip("10.0.0.1")).is_ok(), "a freed place is given back");
    }

    #[test]
    fn zero_is_no_cap() {
        let limits = limits(0, 0, None);
        let held: Vec<Slot> = (0..1000).map(|_| limits.admit_connection(ip("10.0.0.1")).unwrap()).collect();
        assert_eq!(limits.open(), held.len());
    }

    #[test]
    fn behind_proxies_the_per_client_cap_counts_forwarded_clients_not_the_proxy() {
        let limits = limits(100, 2, Some("x-forwarded-for"));
        let proxy = ip("10.0.0.1");
        let _connections: Vec<Slot> = (0..10).map(|_| limits.admit_connection(proxy).unwrap()).collect();
        let client = ip("198.51.100.7");
        let first = limits.admit_client(client).unwrap().unwrap();
        let _second = limits.admit_client(client).unwrap().unwrap();
        assert_eq!(limits.admit_client(client).unwrap().err(), Some(Refusal::ClientFull));
        assert!(limits.admit_client(ip("198.51.100.8")).unwrap().is_ok());
        drop(first);
        assert!(limits.admit_client(client).unwrap().is_ok());
        assert_eq!(limits.open(), 10, "client places are not connections");
        assert!(self::limits(100, 2, None).admit_client(client).is_none(), "direct clients are counted on accept");
    }

    #[test]
    fn an_ipv6_client_is_capped_by_its_64_and_its_places_are_given_back() {
        let limits = limits(100, 2, None);
        let first = limits.admit_connection(ip("2001:db8:1:2::1")).unwrap();
        let _second = limits.admit_connection(ip("2001:db8:1:2::2")).unwrap();
        assert_eq!(limits.admit_connection(ip("2001:db8:1:2::3")).err(), Some(Refusal::ClientFull));
        assert!(limits.admit_connection(ip("2001:db8:1:3::1")).is_ok(), "another /64");
        drop(first);
        assert!(limits.admit_connection(ip("2001:db8:1:2::9")).is_ok(), "a freed place is given back");
    }
}
