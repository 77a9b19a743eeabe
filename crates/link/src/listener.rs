//! The listening side: accepts TCP connections, runs handshakes concurrently, asks the
//! authorizer, and yields authenticated [`Connection`]s.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{self, AbortHandle, JoinHandle, JoinSet};
use tokio::time::timeout;

use crate::authorizer::Authorizer;
use crate::budget::{ConnectionLimits, Established, Pending, Refusal, SharedEstablished, source_of};
use crate::config::LinkConfig;
use crate::conn::{Connection, FrameReceiver};
use crate::error::HandshakeError;
use crate::frame::Frame;
use crate::handshake::{Ciphers, respond};
use crate::keys::LinkSecretKey;
use crate::metrics::{LinkMetrics, inc};
use crate::session::shutdown_requested;

/// Accepts links. Handshakes run concurrently, each bounded by
/// [`LinkConfig::handshake_timeout`]; a failure affects only its own connection.
///
/// Budgets, each kept per source address (an IPv4 address, or an IPv6 /64) as well as in all,
/// so that a flood from a few addresses cannot lock out everyone else (node links included):
///
/// - at most [`LinkConfig::max_pending_handshakes_per_ip`] handshakes in flight from one source
///   and [`LinkConfig::max_connections_per_ip`] connections (in handshake or established); a
///   connection beyond is closed at once;
/// - at most [`LinkConfig::max_connections`] established connections; a connection beyond is
///   closed, before its handshake or, if others finished first, after it;
/// - at most [`LinkConfig::max_pending_handshakes`] handshakes in flight: a new connection that
///   finds the table full takes the place of the oldest handshake of the source with the most
///   in flight, which is abandoned.
///
/// Each refusal and each abandoned handshake is counted in [`LinkMetrics`]; the number in flight
/// is the gauge [`LinkMetrics::handshakes_in_flight`].
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

/// What a finished handshake task hands back to the accept loop.
type Outcome<P> = Result<(P, TcpStream, Ciphers), HandshakeError>;

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
    let mut pending =
        Pending::<task::Id>::new(config.max_pending_handshakes, config.max_pending_handshakes_per_ip);
    let limits =
        ConnectionLimits { max: config.max_connections, max_per_source: config.max_connections_per_ip };
    let established = SharedEstablished::default();
    let mut handshakes: JoinSet<Outcome<A::Peer>> = JoinSet::new();
    let mut aborts: HashMap<task::Id, AbortHandle> = HashMap::new();
    let set_gauge = |n: usize| metrics.handshakes_in_flight.store(n as u64, Ordering::Relaxed);
    loop {
        tokio::select! {
            () = shutdown_requested(&mut shutdown) => break,
            // The `Listener` was dropped without `shutdown`: stop too.
            () = tx.closed() => break,
            Some(joined) = handshakes.join_next_with_id(), if !handshakes.is_empty() => {
                let (id, outcome) = match joined {
                    Ok((id, outcome)) => (id, Some(outcome)),
                    // Abandoned (already out of the table) or panicked.
                    Err(e) => (e.id(), None),
                };
                aborts.remove(&id);
                let source = pending.remove(id);
                set_gauge(pending.len());
                let (Some(outcome), Some(source)) = (outcome, source) else { continue };
                match outcome {
                    Ok((peer, stream, ciphers)) => {
                        let slot = match Established::reserve(&established, source, limits.max, limits.max_per_source) {
                            Ok(slot) => slot,
                            Err(refusal) => {
                                count_refusal(&metrics, refusal);
                                continue;
                            }
                        };
                        inc(&metrics.handshakes);
                        let conn = Connection::start(
                            peer,
                            stream,
                            ciphers,
                            config.clone(),
                            metrics.clone(),
                            shared.clone(),
                            Some(slot),
                        );
                        // If the listener is gone, the connection is dropped and closes. A full
                        // queue (its reader is slow) waits in a task of its own: there are at
                        // most `max_connections` of them.
                        if let Err(mpsc::error::TrySendError::Full(conn)) = tx.try_send(conn) {
                            let tx = tx.clone();
                            tokio::spawn(async move {
                                let _ = tx.send(conn).await;
                            });
                        }
                    }
                    Err(HandshakeError::Unauthorized) => {
                        inc(&metrics.auth_rejections);
                        tracing::debug!("link peer not authorized");
                    }
                    Err(e) => {
                        if matches!(e, HandshakeError::Timeout) {
                            inc(&metrics.handshake_timeouts);
                        }
                        inc(&metrics.handshake_failures);
                        tracing::debug!(error = %e, "link handshake failed");
                    }
                }
            }
            accepted = listener.accept() => {
                let (mut stream, addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: do not spin.
                        tracing::warn!(error = %e, "link accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let source = source_of(addr);
                match pending.admit(source, Established::counts(&established, source), limits) {
                    Err(refusal) => {
                        // Dropping the stream closes it.
                        count_refusal(&metrics, refusal);
                        continue;
                    }
                    Ok(Some(evicted)) => {
                        if let Some(h) = aborts.remove(&evicted) {
                            h.abort();
                        }
                        inc(&metrics.handshake_evictions);
                    }
                    Ok(None) => {}
                }
                let (local, config, authorizer) = (local.clone(), config.clone(), authorizer.clone());
                let abort = handshakes.spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let r = timeout(
                        config.handshake_timeout,
                        respond(&mut stream, &config, &local, authorizer.as_ref()),
                    )
                    .await
                    .unwrap_or(Err(HandshakeError::Timeout));
                    r.map(|(peer, ciphers)| (peer, stream, ciphers))
                });
                pending.insert(source, abort.id());
                aborts.insert(abort.id(), abort);
                set_gauge(pending.len());
            }
        }
    }
    set_gauge(0);
}

fn count_refusal(metrics: &LinkMetrics, refusal: Refusal) {
    inc(match refusal {
        Refusal::HandshakesPerIp => &metrics.refused_handshakes_per_ip,
        Refusal::ConnectionsPerIp => &metrics.refused_connections_per_ip,
        Refusal::Connections => &metrics.refused_connections,
    });
}
