//! A TCP proxy between a pod and Redis that a test can cut, blackhole and delay, to inject
//! network faults into real processes.
//!
//! - `Pass`: bytes flow both ways.
//! - `Cut`: every open connection is closed and new ones are closed as soon as accepted.
//! - `Blackhole`: connections stay open (and new ones are accepted) but nothing flows either
//!   way until the mode changes; then they carry on.
//! - `Delay(d)`: every chunk is held for `d` before it is forwarded.
//! - `Vanish`: the connections open when it is set lose their way to Redis without their
//!   client being told, as when the host on the other side dies: the side to Redis is closed
//!   (Redis drops the connection), the client's stays open and silent. New connections pass.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Cut,
    Blackhole,
    Delay(Duration),
    Vanish,
}

/// A running proxy; stops accepting when dropped.
pub struct Proxy {
    pub port: u16,
    /// `redis://127.0.0.1:{port}`
    pub url: String,
    mode: watch::Sender<Mode>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        // Open connections end with the cut.
        let _ = self.mode.send(Mode::Cut);
    }
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `target`.
    pub async fn start(target_port: u16) -> Proxy {
        let target: SocketAddr = ([127, 0, 0, 1], target_port).into();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the proxy");
        let port = listener.local_addr().unwrap().port();
        let (mode, watcher) = watch::channel(Mode::Pass);
        let acceptor = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let _ = client.set_nodelay(true);
                tokio::spawn(connection(client, target, watcher.clone()));
            }
        });
        Proxy { port, url: format!("redis://127.0.0.1:{port}"), mode, acceptor }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

/// Waits until the mode lets traffic through: `Some(delay)`, or `None` for a cut.
async fn open(mode: &mut watch::Receiver<Mode>) -> Option<Duration> {
    loop {
        match *mode.borrow_and_update() {
            Mode::Pass | Mode::Vanish => return Some(Duration::ZERO),
            Mode::Delay(delay) => return Some(delay),
            Mode::Cut => return None,
            Mode::Blackhole => {}
        }
        if mode.changed().await.is_err() {
            return None;
        }
    }
}

async fn connection(client: TcpStream, target: SocketAddr, mut mode: watch::Receiver<Mode>) {
    // A blackholed connection is accepted and left hanging until the mode changes.
    if open(&mut mode).await.is_none() {
        return;
    }
    let Ok(mut server) = TcpStream::connect(target).await else { return };
    let _ = server.set_nodelay(true);
    let mut client = client;
    // Borrowed halves: ending a pump closes nothing; the sockets close when dropped.
    let (client_read, client_write) = client.split();
    let (server_read, server_write) = server.split();
    // Either direction ending (a cut, a vanishing, or a side closing) ends both.
    let vanished = tokio::select! {
        vanished = pump(client_read, server_write, mode.clone()) => vanished,
        vanished = pump(server_read, client_write, mode.clone()) => vanished,
    };
    drop(server);
    if vanished {
        // The client's side stays open and silent until the proxy cuts or goes away.
        while *mode.borrow_and_update() != Mode::Cut {
            if mode.changed().await.is_err() {
                break;
            }
        }
    }
    drop(client);
}

/// Forwards until a side closes or the mode ends it; true when it ended by vanishing.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut mode: watch::Receiver<Mode>,
) -> bool {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let Some(_) = open(&mut mode).await else { return false };
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            // Re-check the mode: a cut, a blackhole or a vanishing applies to connections
            // already open.
            changed = mode.changed() => {
                if changed.is_err() { return false; }
                if *mode.borrow() == Mode::Vanish { return true; }
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        // The chunk read goes out under the mode in force now.
        let Some(delay) = open(&mut mode).await else { return false };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return false;
        }
    }
}
