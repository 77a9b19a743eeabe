//! The userspace relay on each emulated access link: the kernel here has no `netem`, so delay
//! and jitter are added by a TCP relay between a client and its gateway, which can also stall
//! (forward nothing for a while, buffering) and reset (abort both connections with RST).
//!
//! Each direction is a FIFO of the chunks read from one side, each released `one_way ± jitter`
//! after it was read, never before the chunk ahead of it (a TCP stream is not reordered). The
//! relay ends TCP: the client's kernel sees the short segment to the relay, so a lost segment
//! costs a retransmission timeout of that segment (at least 200 ms), not of the emulated path
//! (see docs/TESTBED.md).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::RngExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The delay a relay adds in each direction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delay {
    pub(crate) one_way: Duration,
    pub(crate) jitter: Duration,
}

impl Delay {
    /// One draw: `one_way` plus a uniform draw in `[-jitter, +jitter]`, at least zero.
    fn sample(&self) -> Duration {
        let j = self.jitter.as_secs_f64();
        let d = self.one_way.as_secs_f64() + j * (2.0 * rand::rng().random::<f64>() - 1.0);
        Duration::from_secs_f64(d.max(0.0))
    }
}

/// What a relay counted.
#[derive(Debug, Default)]
pub(crate) struct RelayStats {
    pub(crate) connections: AtomicU64,
    pub(crate) resets: AtomicU64,
    pub(crate) stalls: AtomicU64,
}

/// A running relay; dropping it stops accepting (open connections end with their peers).
pub(crate) struct Relay {
    stall_until: watch::Sender<Instant>,
    reset: watch::Sender<u64>,
    pub(crate) stats: Arc<RelayStats>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.reset.send_modify(|g| *g += 1);
    }
}

impl Relay {
    /// Relays every connection `listener` accepts to `upstream` with `delay`. Needs a tokio
    /// runtime; sockets are opened in the network namespace of the thread that runs it.
    pub(crate) fn start(listener: TcpListener, upstream: SocketAddr, delay: Delay) -> Self {
        let (stall_until, stall_rx) = watch::channel(Instant::now());
        let (reset, reset_rx) = watch::channel(0u64);
        let stats = Arc::new(RelayStats::default());
        let s = stats.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                s.connections.fetch_add(1, Ordering::Relaxed);
                let (stall_rx, mut reset_rx) = (stall_rx.clone(), reset_rx.clone());
                reset_rx.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(Ok(server)) =
                        tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(upstream)).await
                    else {
                        let _ = client.set_zero_linger();
                        return;
                    };
                    // Zero linger: dropping a socket aborts its connection (RST), as a reset
                    // must; a stream that ended normally was shut down (FIN) first.
                    let _ = client.set_zero_linger();
                    let _ = server.set_zero_linger();
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        _ = async {
                            tokio::join!(pipe(cr, sw, delay, stall_rx.clone()), pipe(sr, cw, delay, stall_rx))
                        } => {
                            // Both ends closed: let the last FIN and data be acknowledged.
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        _ = reset_rx.changed() => {}
                    }
                });
            }
        });
        Self { stall_until, reset, stats, accept }
    }

    /// Forwards nothing (in either direction) for `d`; what arrives meanwhile is buffered.
    pub(crate) fn stall(&self, d: Duration) {
        self.stats.stalls.fetch_add(1, Ordering::Relaxed);
        let until = Instant::now() + d;
        self.stall_until.send_modify(|u| *u = (*u).max(until));
    }

    /// Aborts every open connection (RST to both ends).
    pub(crate) fn reset(&self) {
        self.stats.resets.fetch_add(1, Ordering::Relaxed);
        self.reset.send_modify(|g| *g += 1);
    }
}

/// One direction: reads chunks from `r`, writes each to `w` at its release time.
async fn pipe(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    delay: Delay,
    stall: watch::Receiver<Instant>,
) {
    // At most 256 chunks in flight: beyond that the relay stops reading and TCP pushes back.
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(256);
    let reader = async move {
        let mut last = Instant::now();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    last = last.max(Instant::now() + delay.sample());
                    if tx.send((last, buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            loop {
                let until = *stall.borrow();
                if until <= Instant::now() {
                    break;
                }
                tokio::time::sleep_until(until).await;
            }
            if w.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn relay(delay: Delay) -> (Relay, TcpListener, SocketAddr) {
        let server = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let relay = Relay::start(front, server.local_addr().unwrap(), delay);
        (relay, server, front_addr)
    }

    #[tokio::test]
    async fn delays_each_direction_and_keeps_the_order() {
        let delay = Delay { one_way: Duration::from_millis(150), jitter: Duration::from_millis(100) };
        let (_relay, server, front) = relay(delay).await;
        let mut c = TcpStream::connect(front).await.unwrap();
        let (mut s, _) = server.accept().await.unwrap();
        let start = Instant::now();
        for i in 0..50u8 {
            c.write_all(&[i]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut got = [0u8; 50];
        s.read_exact(&mut got[..1]).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(50), "{:?}", start.elapsed());
        s.read_exact(&mut got[1..]).await.unwrap();
        assert_eq!(got.to_vec(), (0..50).collect::<Vec<u8>>());
        // And back.
        let t = Instant::now();
        s.write_all(b"pong").await.unwrap();
        let mut back = [0u8; 4];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"pong");
        assert!(t.elapsed() >= Duration::from_millis(50), "{:?}", t.elapsed());
    }

    #[tokio::test]
    async fn stalls_hold_data_and_resets_abort_both_ends() {
        let (relay, server, front) = relay(Delay { one_way: Duration::ZERO, jitter: Duration::ZERO }).await;
        let mut c = TcpStream::connect(front).await.unwrap();
        let (mut s, _) = server.accept().await.unwrap();
        relay.stall(Duration::from_millis(400));
        let t = Instant::now();
        c.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        s.read_exact(&mut one).await.unwrap();
        assert!(t.elapsed() >= Duration::from_millis(350), "{:?}", t.elapsed());

        relay.reset();
        let mut buf = [0u8; 8];
        let deadline = Duration::from_secs(5);
        let rc = tokio::time::timeout(deadline, c.read(&mut buf)).await.unwrap();
        let rs = tokio::time::timeout(deadline, s.read(&mut buf)).await.unwrap();
        assert!(matches!(rc, Err(_) | Ok(0)), "{rc:?}");
        assert!(matches!(rs, Err(_) | Ok(0)), "{rs:?}");
        assert_eq!(relay.stats.resets.load(Ordering::Relaxed), 1);
        assert_eq!(relay.stats.connections.load(Ordering::Relaxed), 1);
    }
}
