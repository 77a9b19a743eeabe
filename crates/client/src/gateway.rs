//! The client's session with its own gateway: one hybrid-Noise link (the only place the client
//! touches the network, through `qanat-link`), over which it sends its packets and manages its
//! mailboxes (register, fetch, delete) with the client–gateway control protocol.
//!
//! Only the user's own gateway ever sees the user's IP address (P5); it sees which of its
//! mailboxes the client fetches, never who wrote to them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use qanat_link::{
    Connection, Frame, LinkConfig, LinkMetrics, LinkPublicKey, LinkSecretKey, PacketId, connect,
};
use qanat_mixnet::MailboxItem;
use qanat_mixnet::client_proto::{ErrorCode, MAX_PULL_LIMIT, ProtoError, Request, Response};
/// A mailbox and the secret that lets its owner read it (defined beside the pull core in
/// `qanat-mixnet`).
pub use qanat_mixnet::pull::MailboxAccess;

/// How long one control request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a gateway request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// No link could be made.
    #[error("cannot reach the gateway: {0}")]
    Connect(#[from] qanat_link::HandshakeError),
    /// The link broke, or the gateway answered out of protocol.
    #[error("the link to the gateway broke")]
    Link,
    /// No answer in time.
    #[error("the gateway did not answer within {REQUEST_TIMEOUT:?}")]
    Timeout,
    /// The gateway refused the request.
    #[error("the gateway refused the request: {0:?}")]
    Refused(ErrorCode),
    /// The request cannot be encoded (too many operations in one pull).
    #[error("the request does not fit a frame")]
    Request,
    /// The gateway speaks another version of the client protocol.
    #[error(
        "the gateway speaks another version of the client protocol; update the client or use another gateway"
    )]
    Version,
}

/// Where the gateway is and who it is.
#[derive(Clone)]
pub struct GatewayAddress {
    /// Its client address.
    pub addr: SocketAddr,
    /// Its link public key.
    pub link_key: LinkPublicKey,
}

impl std::fmt::Debug for GatewayAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatewayAddress(..)")
    }
}

/// One item fetched from a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Its sequence number in the mailbox.
    pub seq: u64,
    /// The item (a forward payload, or a SURB reply).
    pub item: MailboxItem,
}

/// A pull sent and not yet wholly answered ([`GatewaySession::send_pull`]).
#[derive(Debug)]
pub struct PendingPull {
    id: u32,
    frames: usize,
    deadline: tokio::time::Instant,
    got: Vec<Response>,
}

impl PendingPull {
    /// When the answer is overdue (the session is then lost).
    pub fn deadline(&self) -> tokio::time::Instant {
        self.deadline
    }

    /// Takes one frame from the gateway: `Ok(true)` once the answer is whole. Frames of other
    /// requests (an earlier one that timed out) are ignored; a refusal ends the pull.
    pub fn take(&mut self, r: Response) -> Result<bool, GatewayError> {
        match r {
            Response::Error { code: ErrorCode::Version, .. } => return Err(GatewayError::Version),
            Response::Error { code, .. } => return Err(GatewayError::Refused(code)),
            r if r.id() != self.id => {}
            r => self.got.push(r),
        }
        Ok(self.got.len() >= self.frames)
    }

    /// The answer's frames, for [`crate::pull::PullClient::handle_answer`].
    pub fn into_frames(self) -> Vec<Response> {
        self.got
    }
}

/// A session with the client's gateway.
pub struct GatewaySession {
    conn: Connection<LinkPublicKey>,
    next_request: u32,
    next_packet: u64,
}

impl std::fmt::Debug for GatewaySession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GatewaySession(..)")
    }
}

impl GatewaySession {
    /// Opens a link to `gateway` with the client's link key `local` (a fresh key per session is
    /// fine: the gateway accepts any client key).
    pub async fn connect(
        gateway: &GatewayAddress,
        local: &LinkSecretKey,
        link: LinkConfig,
    ) -> Result<Self, GatewayError> {
        Self::connect_counted(gateway, local, link, Arc::new(LinkMetrics::default())).await
    }

    /// [`GatewaySession::connect`], counting the link's frames in `metrics`.
    pub async fn connect_counted(
        gateway: &GatewayAddress,
        local: &LinkSecretKey,
        link: LinkConfig,
        metrics: Arc<LinkMetrics>,
    ) -> Result<Self, GatewayError> {
        let conn = connect(gateway.addr, local, &gateway.link_key, link, metrics).await?;
        Ok(Self { conn, next_request: 1, next_packet: 1 })
    }

    /// Hands a packet to the gateway (it goes on into the first mix layer).
    pub async fn send_packet(&mut self, packet: Vec<u8>) -> Result<(), GatewayError> {
        self.next_packet += 1;
        self.conn
            .send(Frame::Packet { id: PacketId(self.next_packet), packet })
            .await
            .map_err(|_| GatewayError::Link)
    }

    /// Sends a request and collects its answer: up to the first frame that ends it, or, with
    /// `frames` set, exactly that many frames.
    async fn ask_n(
        &mut self,
        make: impl FnOnce(u32) -> Request,
        frames: Option<usize>,
    ) -> Result<Vec<Response>, GatewayError> {
        let id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1).max(1);
        let req = make(id).encode().map_err(|_| GatewayError::Request)?;
        self.conn.send(Frame::Control(req)).await.map_err(|_| GatewayError::Link)?;
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            let r = self.next_response(deadline).await?;
            // A refusal of a request it could not read carries id 0.
            if r.id() != id && !matches!(r, Response::Error { id: 0, .. }) {
                // An answer to an earlier request that timed out.
                continue;
            }
            if let Response::Error { code, .. } = r {
                return Err(if code == ErrorCode::Version {
                    GatewayError::Version
                } else {
                    GatewayError::Refused(code)
                });
            }
            let ends = matches!(r, Response::Ok { .. } | Response::FetchDone { .. });
            out.push(r);
            match frames {
                Some(n) if out.len() >= n => return Ok(out),
                None if ends => return Ok(out),
                _ => {}
            }
        }
    }

    /// The next control frame from the gateway, decoded, by `deadline`.
    async fn next_response(&mut self, deadline: tokio::time::Instant) -> Result<Response, GatewayError> {
        tokio::time::timeout_at(deadline, self.recv_response()).await.map_err(|_| GatewayError::Timeout)?
    }

    async fn ask(&mut self, make: impl FnOnce(u32) -> Request) -> Result<Vec<Response>, GatewayError> {
        self.ask_n(make, None).await
    }

    /// Sends a [`Request::Pull`] (from [`crate::pull::PullClient::poll_pull`]) and collects its
    /// answer: always `1 + limit` frames, whatever is waiting.
    pub async fn pull(&mut self, request: Request) -> Result<Vec<Response>, GatewayError> {
        let mut pending = self.send_pull(request).await?;
        loop {
            let r = self.next_response(pending.deadline()).await?;
            if pending.take(r)? {
                return Ok(pending.into_frames());
            }
        }
    }

    /// Sends a [`Request::Pull`] without waiting for its answer: the answer's frames are
    /// read with [`GatewaySession::recv_response`] and given to [`PendingPull::take`]. A
    /// runtime that goes on sending packets meanwhile keeps its slots whatever the answer's
    /// time.
    pub async fn send_pull(&mut self, request: Request) -> Result<PendingPull, GatewayError> {
        let Request::Pull { id, limit, want, ops } = request else { return Err(GatewayError::Request) };
        let limit = limit.clamp(1, MAX_PULL_LIMIT);
        let frames = 1 + usize::from(limit);
        // The answer echoes the core's id: the session's own counter is not used for pulls.
        let req = Request::Pull { id, limit, want, ops }.encode().map_err(|_| GatewayError::Request)?;
        self.conn.send(Frame::Control(req)).await.map_err(|_| GatewayError::Link)?;
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        Ok(PendingPull { id, frames, deadline, got: Vec::with_capacity(frames) })
    }

    /// The next control frame from the gateway, decoded. Cancel-safe: nothing is lost when the
    /// future is dropped before it completes.
    pub async fn recv_response(&mut self) -> Result<Response, GatewayError> {
        loop {
            let frame = self.conn.recv().await.ok_or(GatewayError::Link)?;
            let Frame::Control(b) = frame else { continue };
            return match Response::decode(&b) {
                Ok(r) => Ok(r),
                Err(ProtoError::Version(_)) => Err(GatewayError::Version),
                Err(_) => Err(GatewayError::Link),
            };
        }
    }

    /// Registers a mailbox (idempotent for the same credential).
    pub async fn register(&mut self, m: MailboxAccess) -> Result<(), GatewayError> {
        self.ask(|id| Request::Register { id, mailbox: m.mailbox, credential: m.credential })
            .await
            .map(|_| ())
    }

    /// Removes a mailbox and everything in it.
    pub async fn unregister(&mut self, m: MailboxAccess) -> Result<(), GatewayError> {
        self.ask(|id| Request::Unregister { id, mailbox: m.mailbox, credential: m.credential })
            .await
            .map(|_| ())
    }

    /// Fetches up to `limit` items after sequence number `after` (0: from the start); the flag
    /// says whether more are waiting. Items that do not decode are skipped.
    pub async fn fetch(
        &mut self,
        m: MailboxAccess,
        after: u64,
        limit: u16,
    ) -> Result<(Vec<Fetched>, bool), GatewayError> {
        let rs = self
            .ask(|id| Request::Fetch { id, mailbox: m.mailbox, credential: m.credential, after, limit })
            .await?;
        let mut items = Vec::new();
        let mut more = false;
        for r in rs {
            match r {
                Response::Message { seq, item, .. } => {
                    if let Ok(item) = MailboxItem::decode(&item) {
                        items.push(Fetched { seq, item });
                    }
                }
                Response::FetchDone { more: m, .. } => more = m,
                _ => {}
            }
        }
        Ok((items, more))
    }

    /// Deletes every item up to and including `up_to`.
    pub async fn delete_up_to(&mut self, m: MailboxAccess, up_to: u64) -> Result<(), GatewayError> {
        self.ask(|id| Request::Delete { id, mailbox: m.mailbox, credential: m.credential, up_to })
            .await
            .map(|_| ())
    }

    /// Closes the link.
    pub async fn close(self) {
        self.conn.close().await;
    }
}
