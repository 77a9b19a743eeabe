//! One established connection's read and write loops, shared by listeners and dialers.
//!
//! Both loops move many frames per system call when many are waiting: the reader asks the
//! socket for up to [`READ_FRAMES`] frames at once and opens them in place in its buffer; the
//! writer seals frames straight into a buffer of [`WRITE_FRAMES`] frames and writes it when it
//! is full or when nothing more is queued. Both buffers are fixed at the start, so a
//! connection's memory is bounded (about 105 KB at F = 2,213), and a reader whose inbox is full
//! stops reading, so TCP still pushes back on the peer.

use std::future::pending;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};

use crate::cipher::FrameCipher;
use crate::config::LinkConfig;
use crate::frame::Frame;
use crate::handshake::{Ciphers, open, seal};
use crate::metrics::{LinkMetrics, inc};

/// Most frames one read from the socket takes.
pub(crate) const READ_FRAMES: usize = 16;
/// Most frames written to the socket with one write.
pub(crate) const WRITE_FRAMES: usize = 32;

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Local shutdown: queued frames were written, then `Close`.
    Shutdown,
    /// Every sender and the receiver were dropped: `Close` was written.
    OutboxClosed,
    /// The peer sent `Close`.
    PeerClosed,
    /// A frame failed authentication or decoding.
    BadFrame,
    /// Nothing arrived within the idle timeout.
    IdleTimeout,
    /// A write did not finish within the write timeout.
    WriteTimeout,
    /// The socket failed or the peer closed it without `Close`.
    Io,
}

/// What a session reads from and writes to; the dialer keeps these across reconnections.
pub(crate) struct Queues<'a> {
    pub(crate) outbox: &'a mut mpsc::Receiver<Frame>,
    /// A frame taken from `outbox` but not yet written; retried on the next connection.
    pub(crate) pending: &'a mut Option<Frame>,
    pub(crate) inbox: &'a mpsc::Sender<Frame>,
    pub(crate) shutdown: &'a mut watch::Receiver<bool>,
}

/// Resolves once shutdown is requested; never, if the requester is gone.
pub(crate) async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            pending::<()>().await;
        }
    }
}

pub(crate) async fn run(
    stream: TcpStream,
    ciphers: Ciphers,
    config: &Arc<LinkConfig>,
    metrics: &Arc<LinkMetrics>,
    q: Queues<'_>,
) -> End {
    let Ciphers { send, recv } = ciphers;
    let (rd, wr) = stream.into_split();
    let end = tokio::select! {
        end = read_loop(rd, recv, config, metrics, q.inbox) => end,
        end = write_loop(wr, send, config, metrics, q.outbox, q.pending, q.shutdown, q.inbox) => end,
    };
    match end {
        End::BadFrame => inc(&metrics.bad_frames),
        End::IdleTimeout | End::WriteTimeout => inc(&metrics.timeouts),
        _ => {}
    }
    tracing::debug!(reason = ?end, "link connection ended");
    end
}

async fn read_loop(
    mut rd: OwnedReadHalf,
    mut cipher: FrameCipher,
    config: &LinkConfig,
    metrics: &LinkMetrics,
    inbox: &mpsc::Sender<Frame>,
) -> End {
    let wire = config.frame_size.wire_len();
    let mut buf = vec![0u8; wire * READ_FRAMES];
    // `buf[start..end]` is read but not yet opened; it holds less than a frame after each pass.
    let (mut start, mut end) = (0usize, 0usize);
    // The idle timer is moved only when it fires: it then waits for what is left of the idle
    // timeout since the last read that completed a frame, so a busy connection does not touch
    // the timer per read.
    let mut last_read = Instant::now();
    let idle = sleep(config.idle_timeout);
    tokio::pin!(idle);
    loop {
        while end - start >= wire {
            let Some(frame) = open(config, &mut cipher, &mut buf[start..start + wire]) else {
                return End::BadFrame;
            };
            start += wire;
            inc(&metrics.frames_in);
            match frame {
                Frame::KeepAlive => {}
                Frame::Close => return End::PeerClosed,
                frame => {
                    // If the receiving half was dropped, its owner chose not to read: discard.
                    let _ = inbox.send(frame).await;
                    // A queue more than half full is one its reader does not keep up with,
                    // perhaps shared with other busy connections (`Listener::bind_shared`):
                    // let the other ready tasks run before the next frame, so such connections
                    // take turns frame by frame instead of the first one to run taking all the
                    // room the reader frees.
                    if inbox.capacity() < inbox.max_capacity() / 2 {
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
        buf.copy_within(start..end, 0);
        end -= start;
        start = 0;
        let n = loop {
            tokio::select! {
                biased;
                r = rd.read(&mut buf[end..]) => match r {
                    Ok(0) | Err(_) => return End::Io,
                    Ok(n) => break n,
                },
                () = &mut idle => {
                    let deadline = last_read + config.idle_timeout;
                    if Instant::now() >= deadline {
                        return End::IdleTimeout;
                    }
                    idle.as_mut().reset(deadline);
                }
            }
        };
        end += n;
        if end >= wire {
            last_read = Instant::now();
        }
    }
}

struct Writer<'a> {
    wr: OwnedWriteHalf,
    cipher: FrameCipher,
    config: &'a LinkConfig,
    metrics: &'a LinkMetrics,
    /// Room for [`WRITE_FRAMES`] wire frames; `buf[..filled]` is sealed and not yet written.
    buf: Vec<u8>,
    filled: usize,
    last_write: Instant,
}

impl Writer<'_> {
    /// Seals `frame` into the buffer, writing the buffer first if it is full.
    async fn write(&mut self, frame: &Frame) -> Result<(), End> {
        let wire = self.config.frame_size.wire_len();
        if self.filled + wire > self.buf.len() {
            self.flush().await?;
        }
        let slot = self.buf.get_mut(self.filled..self.filled + wire).ok_or(End::Io)?;
        seal(self.config, &mut self.cipher, frame, slot).map_err(|_| End::Io)?;
        self.filled += wire;
        inc(&self.metrics.frames_out);
        Ok(())
    }

    /// Writes what is buffered.
    async fn flush(&mut self) -> Result<(), End> {
        if self.filled == 0 {
            return Ok(());
        }
        let data = self.buf.get(..self.filled).ok_or(End::Io)?;
        match timeout(self.config.write_timeout, self.wr.write_all(data)).await {
            Err(_) => return Err(End::WriteTimeout),
            Ok(Err(_)) => return Err(End::Io),
            Ok(Ok(())) => {}
        }
        self.filled = 0;
        self.last_write = Instant::now();
        Ok(())
    }

    async fn close(&mut self) -> Result<(), End> {
        self.write(&Frame::Close).await?;
        self.flush().await?;
        let _ = timeout(self.config.write_timeout, self.wr.shutdown()).await;
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_loop(
    wr: OwnedWriteHalf,
    cipher: FrameCipher,
    config: &LinkConfig,
    metrics: &LinkMetrics,
    outbox: &mut mpsc::Receiver<Frame>,
    pending: &mut Option<Frame>,
    shutdown: &mut watch::Receiver<bool>,
    inbox: &mpsc::Sender<Frame>,
) -> End {
    let mut w = Writer {
        wr,
        cipher,
        config,
        metrics,
        buf: vec![0u8; config.frame_size.wire_len() * WRITE_FRAMES],
        filled: 0,
        last_write: Instant::now(),
    };
    match write_frames(&mut w, outbox, pending, shutdown, inbox).await {
        Ok(end) | Err(end) => end,
    }
}

/// Writes queued frames, and keepalives when idle. When every sender is gone the connection
/// stays up for receiving (keepalives continue) until the receiving half is dropped too.
async fn write_frames(
    w: &mut Writer<'_>,
    outbox: &mut mpsc::Receiver<Frame>,
    pending: &mut Option<Frame>,
    shutdown: &mut watch::Receiver<bool>,
    inbox: &mpsc::Sender<Frame>,
) -> Result<End, End> {
    let mut senders_alive = true;
    loop {
        if *shutdown.borrow() {
            return drain_and_close(w, outbox, pending).await;
        }
        let next = match pending.take() {
            Some(f) => Some(f),
            None if senders_alive => match outbox.try_recv() {
                Ok(f) => Some(f),
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    senders_alive = false;
                    None
                }
                Err(mpsc::error::TryRecvError::Empty) => None,
            },
            None => None,
        };
        let frame = match next {
            Some(f) => f,
            None => {
                // Nothing more queued: put what we have on the wire, then wait.
                w.flush().await?;
                let keepalive_at = w.last_write + w.config.keepalive_interval;
                tokio::select! {
                    biased;
                    () = shutdown_requested(shutdown) => {
                        return drain_and_close(w, outbox, pending).await;
                    }
                    f = outbox.recv(), if senders_alive => match f {
                        Some(f) => f,
                        None => {
                            senders_alive = false;
                            continue;
                        }
                    },
                    () = inbox.closed(), if !senders_alive => {
                        w.close().await?;
                        return Ok(End::OutboxClosed);
                    }
                    () = sleep_until(keepalive_at) => Frame::KeepAlive,
                }
            }
        };
        *pending = Some(frame);
        if let Some(f) = pending.as_ref() {
            w.write(f).await?;
        }
        *pending = None;
    }
}

/// Graceful shutdown: writes the frame in hand and every frame already queued, then `Close`.
async fn drain_and_close(
    w: &mut Writer<'_>,
    outbox: &mut mpsc::Receiver<Frame>,
    pending: &mut Option<Frame>,
) -> Result<End, End> {
    outbox.close();
    loop {
        if pending.is_none() {
            *pending = outbox.try_recv().ok();
        }
        let Some(f) = pending.as_ref() else { break };
        w.write(f).await?;
        *pending = None;
    }
    w.close().await?;
    Ok(End::Shutdown)
}
