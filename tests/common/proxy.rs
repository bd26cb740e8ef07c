//! A TCP proxy between a pod and Redis that a test can cut, blackhole and delay, to inject
//! network faults into real processes.
//!
//! - `Pass`: bytes flow both ways.
//! - `Cut`: every open connection is closed and new ones are closed as soon as accepted.
//! - `Blackhole`: connections stay open (and new ones are accepted) but nothing flows either
//!   way until the mode changes; then they carry on.
//! - `Delay(d)`: every chunk is held for `d` before it is forwarded.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Cut,
    Blackhole,
    Delay(Duration),
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
            Mode::Pass => return Some(Duration::ZERO),
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
    let Ok(server) = TcpStream::connect(target).await else { return };
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Either direction ending (a cut, or a side closing) ends both.
    tokio::select! {
        () = pump(client_read, server_write, mode.clone()) => {}
        () = pump(server_read, client_write, mode) => {}
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let Some(_) = open(&mut mode).await else { return };
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            // Re-check the mode: a cut or a blackhole applies to connections already open.
            changed = mode.changed() => {
                if changed.is_err() { return; }
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // The chunk read goes out under the mode in force now.
        let Some(delay) = open(&mut mode).await else { return };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
