//! What the engine and a transport share about one connection: its protocol, and how and why
//! it is being closed.

use std::sync::atomic::{AtomicU8, Ordering};
use tokio_util::sync::CancellationToken;

/// Which encoding a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    SignalR,
    V2,
}

/// Why a connection is being closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseReason {
    None = 0,
    /// The client did not keep up with its queue.
    TooSlow = 1,
    /// The pod is draining.
    ShuttingDown = 2,
}

/// Per-connection control shared by the connection's tasks and its feed.
#[derive(Debug)]
pub struct ConnectionControl {
    pub cancel: CancellationToken,
    /// The pod's drain token (the parent of `cancel`).
    shutdown: CancellationToken,
    reason: AtomicU8,
}

impl ConnectionControl {
    pub(crate) fn new(shutdown: &CancellationToken) -> Self {
        ConnectionControl { cancel: shutdown.child_token(), shutdown: shutdown.clone(), reason: AtomicU8::new(0) }
    }

    pub fn close(&self, reason: CloseReason) {
        let _ = self.reason.compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire);
        self.cancel.cancel();
    }

    pub fn reason(&self) -> CloseReason {
        match self.reason.load(Ordering::Acquire) {
            1 => CloseReason::TooSlow,
            2 => CloseReason::ShuttingDown,
            _ if self.shutdown.is_cancelled() => CloseReason::ShuttingDown,
            _ => CloseReason::None,
        }
    }
}
