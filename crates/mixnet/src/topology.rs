//! The part of the directory a node or client needs to build routes: for one epoch, the mixes of
//! each layer and the gateways, with their packet keys. Built from a verified directory document
//! by [`Topology::from_document`], for nodes and clients alike.

use core::time::Duration;

use qanat_packet::{MailboxId, NodeDelay, NodeId, PathHop, PublicKey, RoutingCommand, SurbId};
use qanat_pki::{Document, Position};
use rand_core::Rng;

use crate::time::exponential;

/// A node and its packet key for the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The node.
    pub id: NodeId,
    /// Its packet key for this epoch.
    pub key: PublicKey,
}

/// The network's layers and gateways for one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The epoch.
    pub epoch: u64,
    /// `layers[0]` is the first mix layer (after the ingress gateway).
    pub layers: Vec<Vec<Hop>>,
    /// The gateways.
    pub gateways: Vec<Hop>,
}

impl Topology {
    /// The routes a verified document gives for its epoch: its layers and gateways, each node
    /// with its packet key for the epoch (a node without one is left out). The one conversion
    /// from the directory to the cores' topology.
    pub fn from_document(doc: &Document) -> Self {
        let epoch = doc.epoch();
        let hop = |id: NodeId| doc.packet_key(&id, epoch).map(|k| Hop { id, key: k.clone() });
        let layers =
            (0..doc.layer_count()).map(|l| doc.layer(l).filter_map(|n| hop(n.id())).collect()).collect();
        let gateways = doc.gateways().filter_map(|n| hop(n.id())).collect();
        Self { epoch: epoch.0, layers, gateways }
    }

    /// Where `id` sits, if it is in the topology.
    pub fn position(&self, id: &NodeId) -> Option<Position> {
        if self.gateways.iter().any(|h| h.id == *id) {
            return Some(Position::Gateway);
        }
        let layer = self.layers.iter().position(|l| l.iter().any(|h| h.id == *id))?;
        Some(Position::Mix { layer: u8::try_from(layer).ok()? })
    }

    /// The hop entry of `id`.
    pub fn hop(&self, id: &NodeId) -> Option<&Hop> {
        self.gateways.iter().chain(self.layers.iter().flatten()).find(|h| h.id == *id)
    }

    /// A uniformly random mix of layer `layer`.
    pub fn random_mix<R: Rng + ?Sized>(&self, layer: usize, rng: &mut R) -> Option<&Hop> {
        pick(self.layers.get(layer)?, rng)
    }

    /// A uniformly random gateway.
    pub fn random_gateway<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<&Hop> {
        pick(&self.gateways, rng)
    }
}

fn pick<'a, R: Rng + ?Sized>(v: &'a [Hop], rng: &mut R) -> Option<&'a Hop> {
    if v.is_empty() {
        return None;
    }
    let i = (rng.next_u64() % v.len() as u64) as usize;
    v.get(i)
}

/// What the last hop of a route does with the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Deliver to a mailbox.
    Recipient(MailboxId),
    /// Deliver to a mailbox as a SURB reply with this id.
    SurbReply(MailboxId, SurbId),
}

/// Turns a list of hops into Sphinx path hops: every mix hop gets a delay drawn from Exp(mean);
/// gateway hops (recognised through `is_gateway`) forward without delay; the last hop gets the
/// destination commands.
pub fn path_hops<R: Rng + ?Sized>(
    hops: &[&Hop],
    is_gateway: impl Fn(&NodeId) -> bool,
    mean_delay: Duration,
    destination: Destination,
    rng: &mut R,
) -> Vec<PathHop> {
    let n = hops.len();
    hops.iter()
        .enumerate()
        .map(|(i, h)| {
            let commands = if i + 1 == n {
                match destination {
                    Destination::Recipient(r) => vec![RoutingCommand::Recipient(r)],
                    Destination::SurbReply(r, s) => {
                        vec![RoutingCommand::Recipient(r), RoutingCommand::SurbReply(s)]
                    }
                }
            } else if is_gateway(&h.id) {
                vec![RoutingCommand::NodeDelay(NodeDelay { delay_ms: 0 })]
            } else {
                let ms = exponential(rng, mean_delay).as_millis().min(u128::from(u32::MAX)) as u32;
                vec![RoutingCommand::NodeDelay(NodeDelay { delay_ms: ms })]
            };
            PathHop { id: h.id, public_key: h.key.clone(), commands }
        })
        .collect()
}
