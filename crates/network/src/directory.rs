//! Talking to the directory authorities: upload a signed descriptor to every authority, fetch
//! and verify an epoch's document from any one. Each request runs on its own short link
//! (hybrid-Noise handshake, chunked control messages of [`crate::authority_proto`], close), with a
//! deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use qanat_link::{Connection, Frame, LinkConfig, LinkMetrics, LinkPublicKey, LinkSecretKey, connect, http};
use qanat_pki::{AuthoritySet, Document, Epoch, VerifyError};
use rand_core::Rng;

use crate::authority_proto::{ErrorCode, MAX_RESPONSE_LEN, Message, Reassembler, to_chunks};
use crate::config::AuthorityPeer;

/// How long one request to one authority may take, handshake included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request to an authority failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The authority's address did not resolve.
    #[error("cannot resolve the authority's address: {0}")]
    Resolve(std::io::Error),
    /// No link could be made (refused, handshake failed, wrong key).
    #[error("cannot reach the authority: {0}")]
    Connect(qanat_link::HandshakeError),
    /// The link broke or the authority answered out of protocol.
    #[error("the authority's answer was cut or malformed")]
    Protocol,
    /// No answer within [`REQUEST_TIMEOUT`].
    #[error("the authority did not answer within {REQUEST_TIMEOUT:?}")]
    Timeout,
    /// The authority refused the upload.
    #[error("the authority refused the descriptor: {0:?}")]
    Refused(ErrorCode),
    /// The authority has no document for the epoch.
    #[error("the authority has no document for that epoch yet")]
    NotYet,
    /// The document did not verify against the configured authorities.
    #[error("the document does not verify: {0}")]
    Verify(VerifyError),
}

/// A client of the directory authorities of one network.
#[derive(Debug, Clone)]
pub struct DirectoryClient {
    authorities: Vec<AuthorityPeer>,
    set: AuthoritySet,
    local: Arc<LinkSecretKey>,
    link: LinkConfig,
    metrics: Arc<LinkMetrics>,
}

impl DirectoryClient {
    /// A client reaching `authorities` (whose identity keys form `set`) with link key `local`.
    pub fn new(
        authorities: Vec<AuthorityPeer>,
        set: AuthoritySet,
        local: Arc<LinkSecretKey>,
        link: LinkConfig,
        metrics: Arc<LinkMetrics>,
    ) -> Self {
        Self { authorities, set, local, link, metrics }
    }

    /// How many authorities there are.
    pub fn len(&self) -> usize {
        self.authorities.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.authorities.is_empty()
    }

    /// Uploads `descriptor` to every authority at once; one result per authority, in order.
    pub async fn upload(&self, descriptor: &[u8]) -> Vec<Result<(), RequestError>> {
        let asks = self.authorities.iter().map(|a| async move {
            match self.ask(a, Message::UploadDescriptor(descriptor.to_vec())).await? {
                Message::Ok => Ok(()),
                Message::Error(code) => Err(RequestError::Refused(code)),
                _ => Err(RequestError::Protocol),
            }
        });
        join_all(asks).await
    }

    /// The document of `epoch`, from the first authority (in random order) that serves one
    /// that verifies; the last error when none does.
    pub async fn fetch<R: Rng + ?Sized>(&self, epoch: Epoch, rng: &mut R) -> Result<Document, RequestError> {
        let mut order: Vec<&AuthorityPeer> = self.authorities.iter().collect();
        // Fisher–Yates, so that load spreads and one dead authority does not stall everyone.
        for i in (1..order.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let mut last = RequestError::NotYet;
        for a in order {
            match self.ask(a, Message::GetDocument(epoch)).await {
                Ok(Message::Document(bytes)) => match Document::verify(&bytes, &self.set, epoch) {
                    Ok(doc) => return Ok(doc),
                    Err(e) => last = RequestError::Verify(e),
                },
                Ok(Message::NotYet) => last = RequestError::NotYet,
                Ok(_) => last = RequestError::Protocol,
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// One request and its answer on a fresh link to `a`.
    async fn ask(&self, a: &AuthorityPeer, request: Message) -> Result<Message, RequestError> {
        let size = self.link.frame_size;
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            let addr = http::resolve(a.address.as_str()).await.map_err(RequestError::Resolve)?;
            let mut conn: Connection<LinkPublicKey> =
                connect(addr, &self.local, &a.link_key, self.link.clone(), self.metrics.clone())
                    .await
                    .map_err(RequestError::Connect)?;
            for chunk in to_chunks(&request, size).map_err(|_| RequestError::Protocol)? {
                conn.send(Frame::Control(chunk)).await.map_err(|_| RequestError::Protocol)?;
            }
            let mut r = Reassembler::new(size, MAX_RESPONSE_LEN).map_err(|_| RequestError::Protocol)?;
            let answer = loop {
                match conn.recv().await {
                    Some(Frame::Control(b)) => {
                        if let Some(m) = r.push(&b).map_err(|_| RequestError::Protocol)? {
                            break m;
                        }
                    }
                    Some(_) => {}
                    None => return Err(RequestError::Protocol),
                }
            };
            conn.close().await;
            Ok(answer)
        })
        .await
        .map_err(|_| RequestError::Timeout)?
    }
}

/// Runs futures concurrently on the current task and collects their outputs in order.
async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outs: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (f, o) in futs.iter_mut().zip(outs.iter_mut()) {
            if o.is_none()
                && let Poll::Ready(v) = f.as_mut().poll(cx)
            {
                *o = Some(v);
            }
        }
        if outs.iter().all(Option::is_some) { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    outs.into_iter().flatten().collect()
}
