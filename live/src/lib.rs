//! The delivery engine of one pod: a feed per tournament with local connections (the hub),
//! team clicks, presence and the cluster heartbeat, over the ports they need (the bus between
//! pods, shared state, presence store, pod registry). It knows nothing of HTTP: transports
//! (`api`) subscribe connections and write the frames it queues for them; adapters
//! (`infrastructure`) implement its ports.
#![forbid(unsafe_code)]

pub mod clicks;
pub mod clock;
pub mod cluster;
pub mod commit;
pub mod connection;
mod feed;
pub mod hub;
pub mod messages;
pub mod ports;
pub mod presence;
pub mod queue;
pub mod rosters;
pub mod stats;

pub use clicks::{ClickError, Clicks};
pub use clock::{Clock, ManualClock, SystemClock};
pub use cluster::{Cluster, ClusterOptions, ClusterView, Figures};
pub use commit::PublishingStore;
pub use connection::{CloseReason, Closed, ConnectionControl, Protocol};
pub use hub::{Hub, HubOptions, Membership};
pub use presence::{Online, Presence};
pub use queue::{Latest, QueueReceiver, QueueSender};
pub use stats::{ClickQueue, HubStats, Overload, RepairCause};

/// A text frame of the transport, as queued for a connection: built once per message from its
/// encoded text (`From<String>`, which must not copy), then cloned for every connection, so a
/// clone must be cheap (a reference count) and must not re-check the text. The WebSocket
/// transport uses its own UTF-8 bytes type; tests may use `String` or `Arc<str>`.
pub trait Frame: From<String> + Clone + Send + Sync + 'static {}

impl<T: From<String> + Clone + Send + Sync + 'static> Frame for T {}
