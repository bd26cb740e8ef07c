//! Real-time delivery: the pod's live hub, the SignalR-compatible hub endpoint, the v2 live
//! socket and the team-click preview.

pub mod clicks;
pub mod hub;
pub mod messages;
pub mod presence;
pub mod session;
pub mod signalr;
pub mod v2;

pub use hub::{Hub, HubOptions};

use domain::ports::{PresenceStore, SharedState};
use std::sync::Arc;

/// What live endpoints need.
#[derive(Clone)]
pub struct LiveState {
    pub hub: Hub,
    pub shared: Arc<dyn SharedState>,
    /// Hub invocations one connection may make per second (bursts of twice that).
    pub invocations_per_second: f64,
    /// Who is connected, across pods.
    pub presence: Arc<dyn PresenceStore>,
    /// This pod's own count of connections per player.
    pub local_presence: presence::SharedLocalPresence,
    /// This pod's id, owner of its presence entries.
    pub pod_id: Arc<str>,
}
