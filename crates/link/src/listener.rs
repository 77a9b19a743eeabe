//! The listening side: accepts TCP connections, runs handshakes concurrently, asks the
//! authorizer, and yields authenticated [`Connection`]s.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;

use crate::authorizer::Authorizer;
use crate::config::LinkConfig;
use crate::conn::{Connection, FrameReceiver};
use crate::error::HandshakeError;
use crate::frame::Frame;
use crate::handshake::respond;
use crate::keys::LinkSecretKey;
use crate::metrics::{LinkMetrics, inc};
use crate::session::shutdown_requested;

/// Accepts links. Handshakes run concurrently (at most
/// [`LinkConfig::max_pending_handshakes`]; further connections are dropped at once and
/// counted), each bounded by [`LinkConfig::handshake_timeout`]; a failure affects only its own
/// connection.
///
/// Received frames wait in each connection's own queue ([`Listener::bind`]), or all go into
/// one queue shared by every connection ([`Listener::bind_shared`]).
#[derive(Debug)]
pub struct Listener<P> {
    incoming: mpsc::Receiver<Connection<P>>,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl<P: Send + 'static> Listener<P> {
    /// Binds `addr` and starts accepting.
    pub async fn bind<A: Authorizer<Peer = P>>(
        addr: SocketAddr,
        local: Arc<LinkSecretKey>,
        config: LinkConfig,
        authorizer: A,
        metrics: Arc<LinkMetrics>,
    ) -> io::Result<Self> {
        Self::start(addr, local, config, authorizer, metrics, None).await
    }

    /// Like [`Listener::bind`], but every connection's received frames go straight into one
    /// bounded queue of [`LinkConfig::recv_queue`] frames, read from the returned
    /// [`FrameReceiver`], instead of into a queue per connection (the connections' own
    /// receivers yield nothing). For a node that treats every peer's packets alike: one queue
    /// and one wake-up for many connections, and a bound on the frames waiting from all of them.
    ///
    /// Backpressure and fairness: a connection's reader that finds the queue full waits for
    /// room and stops reading its socket, so TCP pushes back on that peer; waiting readers get
    /// room in the order they started waiting, one frame at a time, so a fast peer cannot
    /// crowd out the others. The receiver ends (`None`) once the listener and every connection
    /// it accepted have ended.
    pub async fn bind_shared<A: Authorizer<Peer = P>>(
        addr: SocketAddr,
        local: Arc<LinkSecretKey>,
        config: LinkConfig,
        authorizer: A,
        metrics: Arc<LinkMetrics>,
    ) -> io::Result<(Self, FrameReceiver)> {
        let (tx, rx) = mpsc::channel(config.recv_queue.max(1));
        let listener = Self::start(addr, local, config, authorizer, metrics, Some(tx)).await?;
        Ok((listener, FrameReceiver::new(rx)))
    }

    async fn start<A: Authorizer<Peer = P>>(
        addr: SocketAddr,
        local: Arc<LinkSecretKey>,
        config: LinkConfig,
        authorizer: A,
        metrics: Arc<LinkMetrics>,
        shared: Option<mpsc::Sender<Frame>>,
    ) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let (tx, incoming) = mpsc::channel(config.max_pending_handshakes.max(1));
        let (sd_tx, sd_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            listener,
            local,
            Arc::new(config),
            Arc::new(authorizer),
            metrics,
            tx,
            shared,
            sd_rx,
        ));
        Ok(Self { incoming, local_addr, shutdown: sd_tx, task })
    }

    /// The next authenticated connection; `None` after shutdown.
    pub async fn accept(&mut self) -> Option<Connection<P>> {
        self.incoming.recv().await
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, abandons handshakes in progress and releases the port. Connections
    /// already handed out are not affected. Dropping the `Listener` does the same without
    /// waiting.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn accept_loop<A: Authorizer>(
    listener: TcpListener,
    local: Arc<LinkSecretKey>,
    config: Arc<LinkConfig>,
    authorizer: Arc<A>,
    metrics: Arc<LinkMetrics>,
    tx: mpsc::Sender<Connection<A::Peer>>,
    shared: Option<mpsc::Sender<Frame>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(config.max_pending_handshakes.max(1)));
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown_requested(&mut shutdown) => break,
            // The `Listener` was dropped without `shutdown`: stop too.
            () = tx.closed() => break,
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
            accepted = listener.accept() => {
                let (mut stream, _addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: do not spin.
                        tracing::warn!(error = %e, "link accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    inc(&metrics.overload_drops);
                    continue;
                };
                let (local, config, authorizer, metrics, tx, shared) = (
                    local.clone(),
                    config.clone(),
                    authorizer.clone(),
                    metrics.clone(),
                    tx.clone(),
                    shared.clone(),
                );
                handshakes.spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let r = timeout(
                        config.handshake_timeout,
                        respond(&mut stream, &config, &local, authorizer.as_ref()),
                    )
                    .await
                    .unwrap_or(Err(HandshakeError::Timeout));
                    drop(permit);
                    match r {
                        Ok((peer, ciphers)) => {
                            inc(&metrics.handshakes);
                            let conn = Connection::start(peer, stream, ciphers, config, metrics, shared);
                            // If the listener is gone, the connection is dropped and closes.
                            let _ = tx.send(conn).await;
                        }
                        Err(HandshakeError::Unauthorized) => {
                            inc(&metrics.auth_rejections);
                            tracing::debug!("link peer not authorized");
                        }
                        Err(e) => {
                            inc(&metrics.handshake_failures);
                            tracing::debug!(error = %e, "link handshake failed");
                        }
                    }
                });
            }
        }
    }
}
