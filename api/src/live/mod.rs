//! Real-time transports over the delivery engine (the `live` crate): the SignalR-compatible hub
//! endpoint and the v2 live socket, each a WebSocket session writing the frames the engine
//! queues for it.

mod records;
pub mod session;
pub mod signalr;
pub mod v2;

use ::live::ports::SharedState;
use std::sync::Arc;

/// The frame the engine builds once per message for every WebSocket connection: axum's UTF-8
/// bytes, made from the encoded `String` without a copy and cloned by reference count.
pub type Frame = axum::extract::ws::Utf8Bytes;
/// The engine's hub with WebSocket frames.
pub type Hub = ::live::Hub<Frame>;
/// This pod's membership of the cluster.
pub type Cluster = ::live::Cluster<Frame>;
/// This pod's presence, with the transport's frames.
pub type Presence = ::live::Presence<Frame>;

/// What live endpoints need.
#[derive(Clone)]
pub struct LiveState {
    pub hub: Hub,
    /// Team clicks: recorded, then broadcast.
    pub clicks: ::live::Clicks<Frame>,
    /// Who is connected, across pods.
    pub presence: ::live::Presence<Frame>,
    /// One-use connection tokens of the SignalR negotiation.
    pub shared: Arc<dyn SharedState>,
    /// Hub invocations one connection may make per second (bursts of twice that).
    pub invocations_per_second: f64,
}
