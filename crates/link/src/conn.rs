//! An established connection: its sending and receiving halves, and the one-shot dialer.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::budget::Slot;
use crate::config::LinkConfig;
use crate::error::{HandshakeError, SendError, TrySendError};
use crate::frame::{Frame, FrameSize};
use crate::handshake::{Ciphers, initiate};
use crate::keys::{LinkPublicKey, LinkSecretKey};
use crate::metrics::{LinkMetrics, dec, inc};
use crate::session::{self, Queues};

/// Queues frames for a connection or a [`crate::PeerLink`]. Cheap to clone.
///
/// The queue holds [`LinkConfig::send_queue`] frames: when it is full, [`FrameSender::send`]
/// waits and [`FrameSender::try_send`] returns [`TrySendError::Full`]. A frame is never dropped
/// silently: it is queued, or handed back in the error.
#[derive(Clone, Debug)]
pub struct FrameSender {
    tx: mpsc::Sender<Frame>,
    size: FrameSize,
}

impl FrameSender {
    pub(crate) fn new(tx: mpsc::Sender<Frame>, size: FrameSize) -> Self {
        Self { tx, size }
    }

    /// Queues `frame`, waiting while the queue is full.
    pub async fn send(&self, frame: Frame) -> Result<(), SendError> {
        if let Err(e) = frame.validate(self.size) {
            return Err(SendError::Invalid(frame, e));
        }
        self.tx.send(frame).await.map_err(|e| SendError::Closed(e.0))
    }

    /// Queues `frame` if there is room now.
    pub fn try_send(&self, frame: Frame) -> Result<(), TrySendError> {
        if let Err(e) = frame.validate(self.size) {
            return Err(TrySendError::Invalid(frame, e));
        }
        self.tx.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(f) => TrySendError::Full(f),
            mpsc::error::TrySendError::Closed(f) => TrySendError::Closed(f),
        })
    }

    /// Frames that can be queued right now without waiting.
    pub fn capacity(&self) -> usize {
        self.tx.capacity()
    }

    /// The frame size of this link.
    pub fn frame_size(&self) -> FrameSize {
        self.size
    }
}

/// Frames received on a connection (`Packet`, `Ack` and `Control`; the link consumes
/// `KeepAlive` and `Close`). While nobody calls [`FrameReceiver::recv`], the link stops reading
/// from the socket once [`LinkConfig::recv_queue`] frames wait, so TCP pushes back on the
/// peer.
#[derive(Debug)]
pub struct FrameReceiver {
    rx: mpsc::Receiver<Frame>,
}

impl FrameReceiver {
    pub(crate) fn new(rx: mpsc::Receiver<Frame>) -> Self {
        Self { rx }
    }

    /// The next frame; `None` once the connection has ended and every frame has been read.
    pub async fn recv(&mut self) -> Option<Frame> {
        self.rx.recv().await
    }

    /// The next frame if one is waiting.
    pub fn try_recv(&mut self) -> Option<Frame> {
        self.rx.try_recv().ok()
    }

    /// Waits for at least one frame, then moves every frame already waiting, up to `limit`,
    /// into `buf` (one wake-up for a burst); returns how many were added, 0 once the
    /// connection (or, for [`Listener::bind_shared`](crate::Listener::bind_shared), every
    /// connection and the listener) has ended and every frame has been read.
    pub async fn recv_many(&mut self, buf: &mut Vec<Frame>, limit: usize) -> usize {
        self.rx.recv_many(buf, limit).await
    }
}

/// An authenticated connection to one peer, known as `P` (what the [`crate::Authorizer`]
/// returned; for [`connect`], the peer's link key).
///
/// The connection lives while any of its halves does: dropping it (or, after
/// [`Connection::split`], every [`FrameSender`] and the [`FrameReceiver`]) closes it after the
/// queued frames; [`Connection::close`] does the same and waits. A connection whose senders
/// are all gone keeps receiving (and sending keepalives). A connection of a listener bound with
/// [`Listener::bind_shared`](crate::Listener::bind_shared) has no receiver of its own: once its
/// senders are gone it keeps receiving until the peer closes it, it times out, or the shared
/// receiver is dropped.
#[derive(Debug)]
pub struct Connection<P> {
    peer: P,
    sender: FrameSender,
    receiver: FrameReceiver,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl<P> Connection<P> {
    /// Starts the session's task over an authenticated stream. Received frames go to `shared`
    /// if given (the connection's own receiver then yields nothing), else to the connection's
    /// own queue of [`LinkConfig::recv_queue`] frames. `slot` (a listener's) is held until the
    /// session ends.
    pub(crate) fn start(
        peer: P,
        stream: TcpStream,
        ciphers: Ciphers,
        config: Arc<LinkConfig>,
        metrics: Arc<LinkMetrics>,
        shared: Option<mpsc::Sender<Frame>>,
        slot: Option<Slot>,
    ) -> Self {
        let (out_tx, mut out_rx) = mpsc::channel(config.send_queue.max(1));
        let (in_tx, in_rx) = match shared {
            Some(tx) => (tx, mpsc::channel(1).1),
            None => mpsc::channel(config.recv_queue.max(1)),
        };
        let (sd_tx, mut sd_rx) = watch::channel(false);
        let size = config.frame_size;
        inc(&metrics.connections_open);
        let task = tokio::spawn(async move {
            // The connection's place in its listener's budget, freed when the session ends.
            let _slot = slot;
            let mut pending = None;
            session::run(
                stream,
                ciphers,
                &config,
                &metrics,
                Queues { outbox: &mut out_rx, pending: &mut pending, inbox: &in_tx, shutdown: &mut sd_rx },
            )
            .await;
            dec(&metrics.connections_open);
        });
        Self {
            peer,
            sender: FrameSender::new(out_tx, size),
            receiver: FrameReceiver::new(in_rx),
            shutdown: sd_tx,
            task,
        }
    }

    /// Who the peer is.
    pub fn peer(&self) -> &P {
        &self.peer
    }

    /// A handle for sending on this connection.
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

    /// See [`FrameReceiver::recv`]. `None` at once for a connection of a listener bound with
    /// [`Listener::bind_shared`](crate::Listener::bind_shared): its frames go to the shared
    /// receiver.
    pub async fn recv(&mut self) -> Option<Frame> {
        self.receiver.recv().await
    }

    /// Splits into the peer, the sending and the receiving half. The connection then ends
    /// when every sender and the receiver are dropped (after writing what was queued), or when
    /// the peer closes it.
    pub fn split(self) -> (P, FrameSender, FrameReceiver) {
        (self.peer, self.sender, self.receiver)
    }

    /// Writes the frames already queued, then `Close`, and waits until the connection ended.
    pub async fn close(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Dials `addr` once and runs the handshake, expecting the listener to hold `remote`. The
/// whole attempt is bounded by [`LinkConfig::handshake_timeout`]. For a connection that
/// survives failures, use [`crate::PeerLink`].
pub async fn connect(
    addr: SocketAddr,
    local: &LinkSecretKey,
    remote: &LinkPublicKey,
    config: LinkConfig,
    metrics: Arc<LinkMetrics>,
) -> Result<Connection<LinkPublicKey>, HandshakeError> {
    let config = Arc::new(config);
    let (stream, ciphers) = dial(addr, local, remote, &config, &metrics).await?;
    Ok(Connection::start(remote.clone(), stream, ciphers, config, metrics, None, None))
}

/// TCP connect and handshake within the handshake timeout. Handshake failures (not refused
/// connections) are counted.
pub(crate) async fn dial(
    addr: SocketAddr,
    local: &LinkSecretKey,
    remote: &LinkPublicKey,
    config: &LinkConfig,
    metrics: &LinkMetrics,
) -> Result<(TcpStream, Ciphers), HandshakeError> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let r = initiate(&mut stream, config, local, remote).await;
        if r.is_err() {
            inc(&metrics.handshake_failures);
        }
        r.map(|c| (stream, c))
    };
    match timeout(config.handshake_timeout, attempt).await {
        Ok(r) => {
            if r.is_ok() {
                inc(&metrics.handshakes);
            }
            r
        }
        Err(_) => {
            inc(&metrics.handshake_failures);
            Err(HandshakeError::Timeout)
        }
    }
}
