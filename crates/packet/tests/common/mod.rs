//! Helpers shared by the packet crate's integration tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

pub use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng, SeedableRng};
use qanat_packet::{MailboxId, NodeDelay, NodeId, PathHop, RoutingCommand, Scheme, SecretKey, SurbId};

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// A node of a test network.
pub struct Node {
    pub id: NodeId,
    pub key: SecretKey,
}

pub fn nodes(scheme: Scheme, n: usize, rng: &mut ChaCha20Rng) -> Vec<Node> {
    (0..n)
        .map(|_| {
            let mut id = [0u8; 32];
            rng.fill_bytes(&mut id);
            Node { id: NodeId(id), key: SecretKey::generate(scheme, rng) }
        })
        .collect()
}

/// A path through `nodes`: a delay for every mix, a recipient (and a SURB id when `surb`) at the end.
pub fn path(nodes: &[Node], recipient: [u8; 32], surb: Option<[u8; 16]>) -> Vec<PathHop> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let commands = if i + 1 == nodes.len() {
                let mut c = vec![RoutingCommand::Recipient(MailboxId(recipient))];
                if let Some(s) = surb {
                    c.push(RoutingCommand::SurbReply(SurbId(s)));
                }
                c
            } else {
                vec![RoutingCommand::NodeDelay(NodeDelay { delay_ms: 1000 + i as u32 })]
            };
            PathHop { id: n.id, public_key: n.key.public_key(), commands }
        })
        .collect()
}
