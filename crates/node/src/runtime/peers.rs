//! The nodes a mix or gateway runtime talks to, and the directory's news about each epoch.
//!
//! A runtime starts with a fixed set of peers (tests and benchmarks give them directly) and
//! learns the rest from the directory, one epoch at a time ([`EpochUpdate`]). The table is shared
//! between the runtime's main loop (where packets go) and its link listener's authoriser (who may
//! connect), so a node that joins the network in a new epoch can connect as soon as the runtime
//! has heard of it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use qanat_link::LinkPublicKey;
use qanat_mixnet::{EpochWindow, Topology};
use qanat_packet::{NodeId, SecretKey};
use tokio::sync::mpsc;

use super::handle::Stopped;

/// A node this runtime talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its link address.
    pub addr: SocketAddr,
    /// Its link public key (also what authorises it to connect here).
    pub link_key: LinkPublicKey,
    /// Whether it is a gateway (a mix keeps packets to it until they are acknowledged).
    pub gateway: bool,
}

/// What the directory says about one epoch, for a running mix or gateway.
#[derive(Debug)]
pub struct EpochUpdate {
    /// The epoch.
    pub epoch: u64,
    /// This node's packet key for the epoch, when it has one.
    pub key: Option<SecretKey>,
    /// When the epoch's key is used.
    pub window: EpochWindow,
    /// The epoch's layers and gateways.
    pub topology: Topology,
    /// Every node of the epoch this node may exchange packets with.
    pub peers: HashMap<NodeId, Peer>,
    /// The mean per-hop delay 1/μ (mixes use it for their own loop packets).
    pub mean_delay: Duration,
    /// The mix loop rate λ_M, per second.
    pub loop_rate: f64,
    /// The most a client may send: `fast_factor_max·λ_P + λ_L + λ_D`, packets per second
    /// ([`Parameters::max_client_rate`](qanat_pki::Parameters::max_client_rate); gateways budget each client
    /// session from it; 0: unknown).
    pub client_rate: f64,
}

/// Every counter of a running mix or gateway, readable while it runs: its core's (`C`, as of
/// the last event), its links' and its runtime's (`R`).
#[derive(Debug)]
pub struct Probe<C, R> {
    pub(crate) core: Arc<std::sync::Mutex<C>>,
    /// Link counters.
    pub links: Arc<qanat_link::LinkMetrics>,
    /// Runtime counters.
    pub runtime: Arc<R>,
}

impl<C, R> Clone for Probe<C, R> {
    fn clone(&self) -> Self {
        Self { core: self.core.clone(), links: self.links.clone(), runtime: self.runtime.clone() }
    }
}

impl<C: Clone + Default, R> Probe<C, R> {
    /// The core's counters, as of the last event.
    pub fn core(&self) -> C {
        self.core.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// Hands [`EpochUpdate`]s to a running mix or gateway (a cloneable half of its handle).
#[derive(Debug, Clone)]
pub struct Updater(pub(crate) mpsc::Sender<EpochUpdate>);

impl Updater {
    /// Hands over `update`. Fails only once the runtime has stopped.
    pub async fn send(&self, update: EpochUpdate) -> Result<(), Stopped> {
        self.0.send(update).await.map_err(|_| Stopped)
    }
}

/// Epochs of peers kept: the current one, the next, and the one before (packets in flight).
const EPOCHS_KEPT: usize = 3;

/// The peers of a runtime: fixed ones, and those of the epochs the directory announced.
#[derive(Debug, Default)]
pub struct PeerTable {
    fixed: HashMap<NodeId, Peer>,
    epochs: BTreeMap<u64, HashMap<NodeId, Peer>>,
}

/// A peer table shared between a runtime's main loop and its listener.
pub(crate) type SharedPeers = Arc<RwLock<PeerTable>>;

impl PeerTable {
    /// A table of `fixed` peers, which stay known whatever the directory says.
    pub fn new(fixed: HashMap<NodeId, Peer>) -> Self {
        Self { fixed, epochs: BTreeMap::new() }
    }

    /// Where `id` is reached: its entry of the latest epoch that lists it, else the fixed one.
    pub fn get(&self, id: &NodeId) -> Option<&Peer> {
        self.epochs.values().rev().find_map(|m| m.get(id)).or_else(|| self.fixed.get(id))
    }

    /// The node whose link key is `key`, if it is known.
    pub fn by_link_key(&self, key: &LinkPublicKey) -> Option<NodeId> {
        let find = |m: &HashMap<NodeId, Peer>| m.iter().find(|(_, p)| p.link_key == *key).map(|(id, _)| *id);
        self.epochs.values().rev().find_map(find).or_else(|| find(&self.fixed))
    }

    /// Records the peers of `epoch` (replacing what was known of it) and forgets epochs older
    /// than the last three. Returns the nodes whose address or key changed or that are
    /// no longer known, whose links should be closed.
    pub fn set_epoch(&mut self, epoch: u64, peers: HashMap<NodeId, Peer>) -> Vec<NodeId> {
        let before: HashMap<NodeId, Peer> = self.all();
        self.epochs.insert(epoch, peers);
        while self.epochs.len() > EPOCHS_KEPT {
            self.epochs.pop_first();
        }
        before.into_iter().filter(|(id, p)| self.get(id) != Some(p)).map(|(id, _)| id).collect()
    }

    fn all(&self) -> HashMap<NodeId, Peer> {
        let mut out = self.fixed.clone();
        for m in self.epochs.values() {
            out.extend(m.iter().map(|(k, v)| (*k, v.clone())));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20::ChaCha20Rng;
    use qanat_link::LinkSecretKey;
    use rand_core::SeedableRng as _;

    fn peer(rng: &mut ChaCha20Rng, port: u16) -> Peer {
        Peer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            link_key: LinkSecretKey::generate(rng).public_key().clone(),
            gateway: false,
        }
    }

    #[test]
    fn latest_epoch_wins_and_old_epochs_are_forgotten() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let (a, b) = (NodeId([1; 32]), NodeId([2; 32]));
        let fixed_a = peer(&mut rng, 1);
        let mut t = PeerTable::new(HashMap::from([(a, fixed_a.clone())]));
        assert_eq!(t.get(&a), Some(&fixed_a));
        let pb = peer(&mut rng, 2);
        assert!(t.set_epoch(10, HashMap::from([(b, pb.clone())])).is_empty());
        assert_eq!(t.get(&b), Some(&pb));
        assert_eq!(t.by_link_key(&pb.link_key), Some(b));
        assert_eq!(t.by_link_key(&fixed_a.link_key), Some(a));
        // b moves in epoch 11: its old link must close.
        let pb2 = peer(&mut rng, 3);
        assert_eq!(t.set_epoch(11, HashMap::from([(b, pb2.clone())])), vec![b]);
        assert_eq!(t.get(&b), Some(&pb2));
        // Epochs 12 and 13 without b: after epoch 10 and 11 age out, b is gone.
        t.set_epoch(12, HashMap::new());
        assert_eq!(t.get(&b), Some(&pb2));
        t.set_epoch(13, HashMap::new());
        assert_eq!(t.get(&b), Some(&pb2));
        assert_eq!(t.set_epoch(14, HashMap::new()), vec![b]);
        assert_eq!(t.get(&b), None);
        assert_eq!(t.by_link_key(&pb.link_key), None);
        assert_eq!(t.get(&a), Some(&fixed_a));
    }
}
