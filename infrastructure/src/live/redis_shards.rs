//! Sharded pub/sub in a Redis Cluster: a channel lives on the shard that owns its hash slot, and
//! a subscription (`SSUBSCRIBE`) is held by that shard's master. When the cluster moves the slot
//! (a migration, or a replica taking over a failed master) the subscription is gone: the old
//! owner drops it with a `sunsubscribe` notice, which fred does not pass on, or its connection
//! dies. A dead connection makes fred reconnect, which the bus sees; a migration does not, so the
//! bus remembers where it placed each channel and compares that with the cluster's slot table
//! now and then ([`Placement::moved`]).

use fred::clients::{Client, SubscriberClient};
use fred::prelude::{ClientLike, ClusterInterface, Options, Value};
use fred::types::cluster::ClusterRouting;
use fred::types::config::Server;
use std::collections::HashMap;

/// The hash slot of a channel (or key), as Redis Cluster computes it.
pub(super) fn slot(channel: &str) -> u16 {
    fred::util::redis_keyslot(channel.as_bytes())
}

/// Where each subscribed channel was placed: the master that held its slot when it was
/// subscribed, per the subscribing client's routing table.
#[derive(Debug, Default)]
pub(super) struct Placement {
    nodes: HashMap<String, Server>,
}

impl Placement {
    /// Records that `channel` was just subscribed through `subscriber`.
    pub fn record(&mut self, subscriber: &SubscriberClient, channel: &str) {
        match owner(&subscriber.cached_cluster_state(), channel) {
            Some(node) => self.nodes.insert(channel.to_owned(), node),
            None => self.nodes.remove(channel),
        };
    }

    /// Forgets `channel` and returns the node that holds its subscription when the subscriber
    /// would still reach it. When it would not, the subscription is already gone with the slot
    /// (and an `SUNSUBSCRIBE` sent now would be answered by a redirection fred does not expect
    /// for it).
    pub fn forget(&mut self, subscriber: &SubscriberClient, channel: &str) -> Option<Server> {
        let placed = self.nodes.remove(channel)?;
        (Some(&placed) == owner(&subscriber.cached_cluster_state(), channel).as_ref()).then_some(placed)
    }

    /// The channels whose slot `routing` gives to another master than the one they were
    /// subscribed on. A master named without a host (a node that does not know its address)
    /// is not taken for a move.
    pub fn moved(&self, routing: &ClusterRouting) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(channel, node)| match routing.get_server(slot(channel)) {
                Some(owner) => owner != *node && !matches!(&*owner.host, "" | "?"),
                None => false,
            })
            .map(|(channel, _)| channel.clone())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

fn owner(routing: &Option<ClusterRouting>, channel: &str) -> Option<Server> {
    routing.as_ref()?.get_server(slot(channel)).cloned()
}

/// The slot table as a node of the cluster sees it now, read over `client`'s own connections
/// (`CLUSTER SLOTS`), so that checking costs no new connection.
pub(super) async fn routing_now(client: &Client, options: &Options) -> Result<ClusterRouting, fred::error::Error> {
    let slots: Value = client.with_options(options).cluster_slots().await?;
    ClusterRouting::from_cluster_slots(slots, "")
}
