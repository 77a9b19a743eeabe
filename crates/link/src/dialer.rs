//! The dialing side: a [`PeerLink`] keeps one connection to one peer, reconnecting with
//! jittered exponential backoff, and keeps its send queue across reconnections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clatter::rand_core::RngCore;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::LinkConfig;
use crate::conn::{FrameReceiver, FrameSender, dial};
use crate::error::{SendError, TrySendError};
use crate::frame::Frame;
use crate::keys::{LinkPublicKey, LinkSecretKey};
use crate::metrics::{LinkMetrics, dec, inc};
use crate::session::{self, End, Queues, shutdown_requested};

/// One outgoing link to a peer at a fixed address holding a known link key.
///
/// Frames go into a bounded queue ([`LinkConfig::send_queue`]) that outlives connections:
/// while the peer is unreachable, frames wait and the producer is pushed back
/// ([`PeerLink::send`] waits, [`PeerLink::try_send`] returns `Full`). A frame taken from the
/// queue whose write failed is retried on the next connection. Frames already written into a
/// connection that then breaks may be lost, as with any TCP connection: the `Ack` frames exist
/// for the protocols that need to know.
///
/// Dropping the `PeerLink` stops it; [`PeerLink::shutdown`] first writes what is queued.
#[derive(Debug)]
pub struct PeerLink {
    sender: FrameSender,
    receiver: FrameReceiver,
    connected: watch::Receiver<bool>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl PeerLink {
    /// Starts dialing `addr`, expecting the listener there to hold `remote`.
    pub fn spawn(
        addr: SocketAddr,
        remote: LinkPublicKey,
        local: Arc<LinkSecretKey>,
        config: LinkConfig,
        metrics: Arc<LinkMetrics>,
    ) -> Self {
        let size = config.frame_size;
        let (out_tx, out_rx) = mpsc::channel(config.send_queue.max(1));
        let (in_tx, in_rx) = mpsc::channel(config.recv_queue.max(1));
        let (sd_tx, sd_rx) = watch::channel(false);
        let (conn_tx, conn_rx) = watch::channel(false);
        let task =
            tokio::spawn(run(addr, remote, local, Arc::new(config), metrics, out_rx, in_tx, sd_rx, conn_tx));
        Self {
            sender: FrameSender::new(out_tx, size),
            receiver: FrameReceiver::new(in_rx),
            connected: conn_rx,
            shutdown: sd_tx,
            task,
        }
    }

    // `sender`, `send`, `try_send` and `recv` delegate as `Connection`'s do, on purpose: both
    // types are a sender and a receiver, and each keeps its own documented methods (a shared
    // trait would make every caller import it for four one-line calls).

    /// A handle for sending on this link.
    pub fn sender(&self) -> FrameSender {
        self.sender.clone()
    }

    /// See [`FrameSender::send`].
    pub async fn send(&self, frame: Frame) -> Result<(), SendError> {
        self.sender.send(frame).await
    }

    /// See [`FrameSender::try_send`].
    pub fn try_send(&self, frame: Frame) -> Result<(), TrySendError> {
        self.sender.try_send(frame)
    }

    /// The next frame the peer sent on any of this link's connections.
    pub async fn recv(&mut self) -> Option<Frame> {
        self.receiver.recv().await
    }

    /// Whether a connection is established now.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// Waits until a connection is established (at once if one is).
    pub async fn connected(&mut self) {
        let _ = self.connected.wait_for(|c| *c).await;
    }

    /// Writes the frames already queued (if connected), then `Close`, and stops.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let _ = (&mut self.task).await;
    }
}

impl Drop for PeerLink {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    addr: SocketAddr,
    remote: LinkPublicKey,
    local: Arc<LinkSecretKey>,
    config: Arc<LinkConfig>,
    metrics: Arc<LinkMetrics>,
    mut outbox: mpsc::Receiver<Frame>,
    inbox: mpsc::Sender<Frame>,
    mut shutdown: watch::Receiver<bool>,
    connected: watch::Sender<bool>,
) {
    let mut pending = None;
    let mut backoff = config.reconnect_initial;
    let mut first = true;
    loop {
        if !first {
            inc(&metrics.reconnects);
        }
        first = false;
        let attempt = tokio::select! {
            () = shutdown_requested(&mut shutdown) => return,
            r = dial(addr, &local, &remote, &config, &metrics) => r,
        };
        match attempt {
            Ok((stream, ciphers)) => {
                backoff = config.reconnect_initial;
                inc(&metrics.connections_open);
                let _ = connected.send(true);
                let end = session::run(
                    stream,
                    ciphers,
                    &config,
                    &metrics,
                    Queues {
                        outbox: &mut outbox,
                        pending: &mut pending,
                        inbox: &inbox,
                        shutdown: &mut shutdown,
                    },
                )
                .await;
                let _ = connected.send(false);
                dec(&metrics.connections_open);
                if matches!(end, End::Shutdown | End::OutboxClosed) {
                    return;
                }
                // A keepalive is not worth carrying to the next connection.
                if matches!(pending, Some(Frame::KeepAlive | Frame::Close)) {
                    pending = None;
                }
            }
            Err(e) => tracing::debug!(error = %e, "link dial failed"),
        }
        tokio::select! {
            () = shutdown_requested(&mut shutdown) => return,
            () = tokio::time::sleep(jitter(backoff)) => {}
        }
        backoff = (backoff * 2).min(config.reconnect_max);
    }
}

/// Uniform in `[d/2, d]`, so that many dialers of one restarted node do not return together.
fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    let span = u64::try_from(half.as_micros()).unwrap_or(u64::MAX).max(1);
    let r = clatter::crypto::rng::DefaultRng.next_u64() % (span + 1);
    half + Duration::from_micros(r)
}
