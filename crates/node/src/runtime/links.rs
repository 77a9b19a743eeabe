//! The outgoing links of a mix or gateway runtime: one reconnecting [`PeerLink`] per next hop,
//! opened on the first packet to it, each with a task that reads what comes back on it
//! (acknowledgements, handed on with the id of the node the link was dialled to, so that a
//! gateway's acknowledgements can clear only what was sent to that gateway) until the runtime
//! stops or closes the link.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use qanat_link::{
    Connection, Frame, FrameSender, LinkConfig, LinkMetrics, LinkSecretKey, Listener, PacketId, PeerLink,
};
use qanat_packet::NodeId;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::peers::{Peer, SharedPeers};

/// An open link: its sender, whether its peer is a gateway, and the handle whose drop closes it.
struct Outgoing {
    sender: FrameSender,
    gateway: bool,
    _close: oneshot::Sender<()>,
}

/// The runtime's outgoing links.
pub(crate) struct Links {
    open: HashMap<NodeId, Outgoing>,
    tasks: Vec<JoinHandle<()>>,
    local_key: Arc<LinkSecretKey>,
    config: LinkConfig,
    metrics: Arc<LinkMetrics>,
    /// Where acknowledgements coming back on a link go, with the link's peer (none: they are
    /// ignored).
    acks: Option<mpsc::Sender<(NodeId, Vec<PacketId>)>>,
    shutdown: watch::Receiver<bool>,
}

impl Links {
    pub(crate) fn new(
        local_key: Arc<LinkSecretKey>,
        config: LinkConfig,
        metrics: Arc<LinkMetrics>,
        acks: Option<mpsc::Sender<(NodeId, Vec<PacketId>)>>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self { open: HashMap::new(), tasks: Vec::new(), local_key, config, metrics, acks, shutdown }
    }

    /// The sender of the link to `id`, and whether `id` is a gateway. An unopened link is
    /// opened to the address `peers` gives (the peer is looked up only then: a link whose peer
    /// changes is closed by [`Links::close`]); `None` when `peers` does not know `id`.
    pub(crate) fn route(&mut self, id: NodeId, peers: &SharedPeers) -> Option<(&FrameSender, bool)> {
        if !self.open.contains_key(&id) {
            let peer = peers.read().ok().and_then(|p| p.get(&id).cloned())?;
            self.open_link(id, &peer);
        }
        self.open.get(&id).map(|o| (&o.sender, o.gateway))
    }

    fn open_link(&mut self, id: NodeId, peer: &Peer) {
        let Self { open, tasks, local_key, config, metrics, acks, shutdown } = self;
        open.entry(id).or_insert_with(|| {
            let mut link = PeerLink::spawn(
                peer.addr,
                peer.link_key.clone(),
                local_key.clone(),
                config.clone(),
                metrics.clone(),
            );
            let sender = link.sender();
            let acks = acks.clone();
            let mut stop = shutdown.clone();
            let (close, mut closed) = oneshot::channel::<()>();
            tasks.retain(|t| !t.is_finished());
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        frame = link.recv() => match frame {
                            Some(Frame::Ack(ids)) => {
                                if let Some(a) = &acks
                                    && a.send((id, ids)).await.is_err()
                                {
                                    break;
                                }
                            }
                            Some(_) => {}
                            None => break,
                        },
                        _ = stop.changed() => break,
                        _ = &mut closed => break,
                    }
                }
                link.shutdown().await;
            }));
            Outgoing { sender, gateway: peer.gateway, _close: close }
        });
    }

    /// Closes the link to `id`, if one is open.
    pub(crate) fn close(&mut self, id: &NodeId) {
        self.open.remove(id);
    }

    /// Closes every link and waits for their tasks.
    pub(crate) async fn shutdown(self) {
        drop(self.open);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Binds a runtime's listener for nodes at `addr` with the node's link key and link settings, by
/// `bind` ([`Listener::bind`], or [`Listener::bind_shared`] for one queue of every connection's
/// frames). Returns what `bind` returns and the new link counters, which the runtime's outgoing
/// links share.
pub(crate) async fn bind_nodes<A, T, F>(
    addr: SocketAddr,
    key: &Arc<LinkSecretKey>,
    link: &LinkConfig,
    authorizer: A,
    bind: impl FnOnce(SocketAddr, Arc<LinkSecretKey>, LinkConfig, A, Arc<LinkMetrics>) -> F,
) -> io::Result<(T, Arc<LinkMetrics>)>
where
    F: Future<Output = io::Result<T>>,
{
    let metrics = Arc::new(LinkMetrics::default());
    let bound = bind(addr, key.clone(), link.clone(), authorizer, metrics.clone()).await?;
    Ok((bound, metrics))
}

/// Runs `listener`'s accept loop until `shutdown` changes: each connection goes to `serve`
/// (which typically spawns a task for it); then the listener is shut down.
pub(crate) fn accept_loop<P: Send + 'static>(
    mut listener: Listener<P>,
    mut shutdown: watch::Receiver<bool>,
    mut serve: impl FnMut(Connection<P>) + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                conn = listener.accept() => {
                    let Some(conn) = conn else { break };
                    serve(conn);
                }
                _ = shutdown.changed() => break,
            }
        }
        listener.shutdown().await;
    })
}
