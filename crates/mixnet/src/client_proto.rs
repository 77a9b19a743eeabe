//! The client–gateway control protocol: what a client asks its gateway about its mailboxes, and
//! the answers. Carried in the link's control frames, one message per frame, so every message has
//! a bounded size (the largest is a [`Response::Message`] carrying one stored item).
//!
//! A client proves it owns a mailbox with the per-mailbox credential it chose when registering it;
//! the gateway stores only a hash of it. Nothing here names a person: a client has one mailbox per
//! contact and per open invitation, and the gateway cannot tell which belong together beyond
//! seeing them on the same connection.
//!
//! A client's routine way to talk to its gateway is [`Request::Pull`] (version [`PULL_VERSION`]):
//! one frame up carrying exactly [`PULL_OPS`] operation slots ([`Op`]: register, unregister,
//! delete, or a dummy of the same encoded size) and the directory document the client lacks
//! ([`Want`]); always answered by exactly `1 + limit` frames down: a [`Response::PullHead`] with
//! the result of each slot, then `limit` slots each holding an item from a mailbox registered on
//! this connection ([`Response::Pulled`]), a chunk of the wanted document
//! ([`Response::DocChunk`]) or padding ([`Response::PullPad`]). A client that pulls on a fixed
//! schedule with a fixed `limit` shows an observer of its link the same traffic whatever it
//! receives, whatever it registers, and however many contacts it has. (`Register`, `Unregister`,
//! `Fetch` and `Delete` remain, one frame each, for tools and tests.)
//!
//! Encoding: one tag byte, then fixed-width big-endian fields; the only variable field (an item,
//! or a pull's list of deletions) is last, after its length. Decoding is strict.

use qanat_codec::{DecodeError, EncodeError, Reader, Writer};
use qanat_packet::MailboxId;
use thiserror::Error;

/// Longest item a response can carry.
pub const MAX_ITEM_LEN: usize = 16 * 1024;
/// The version of the pull exchange; a pull of another version is refused with
/// [`ErrorCode::Version`].
pub const PULL_VERSION: u8 = 2;
/// Operation slots in every [`Request::Pull`] (unused ones are dummies).
pub const PULL_OPS: usize = 8;
/// Encoded length of one [`Op`], whatever its kind.
pub const OP_LEN: usize = 1 + 32 + 32 + 8;
/// Longest document chunk a [`Response::DocChunk`] carries.
pub const MAX_CHUNK_LEN: usize = 4096;
/// Largest `limit` of a [`Request::Pull`] a gateway honours.
pub const MAX_PULL_LIMIT: u16 = 256;

/// Bytes of a [`Response::DocChunk`] around its chunk: tag, id, epoch, index, count, length.
const DOC_CHUNK_OVERHEAD: usize = 1 + 4 + 8 + 2 + 2 + 2;

/// The longest document chunk whose [`Response::DocChunk`] fits a message of `max_message_len`
/// bytes (a link's largest control frame): at least 1, at most [`MAX_CHUNK_LEN`].
pub fn doc_chunk_len(max_message_len: usize) -> usize {
    max_message_len.saturating_sub(DOC_CHUNK_OVERHEAD).clamp(1, MAX_CHUNK_LEN)
}

/// A client's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Register a mailbox with its credential (idempotent for the same credential).
    Register {
        /// Echoed in the response.
        id: u32,
        /// The mailbox.
        mailbox: MailboxId,
        /// The owner's secret for this mailbox.
        credential: [u8; 32],
    },
    /// Remove a mailbox and everything in it.
    Unregister {
        /// Echoed in the response.
        id: u32,
        /// The mailbox.
        mailbox: MailboxId,
        /// The owner's secret.
        credential: [u8; 32],
    },
    /// Send the stored items after sequence number `after` (0: from the start), at most `limit`.
    Fetch {
        /// Echoed in the responses.
        id: u32,
        /// The mailbox.
        mailbox: MailboxId,
        /// The owner's secret.
        credential: [u8; 32],
        /// Items with a larger sequence number are sent.
        after: u64,
        /// At most this many.
        limit: u16,
    },
    /// Delete every item up to and including sequence number `up_to`.
    Delete {
        /// Echoed in the response.
        id: u32,
        /// The mailbox.
        mailbox: MailboxId,
        /// The owner's secret.
        credential: [u8; 32],
        /// Last sequence number deleted.
        up_to: u64,
    },
    /// First carry out the operations, in order; then send exactly `1 + limit` frames: a
    /// [`Response::PullHead`], then the oldest waiting items of the mailboxes registered on this
    /// connection ([`Response::Pulled`]), chunks of the wanted document ([`Response::DocChunk`])
    /// and [`Response::PullPad`] frames.
    Pull {
        /// Echoed in the responses.
        id: u32,
        /// How many slots the answer has after its head (at most [`MAX_PULL_LIMIT`] are honoured).
        limit: u16,
        /// The directory document the client lacks.
        want: Want,
        /// At most [`PULL_OPS`] operations; the encoding fills the other slots with dummies.
        ops: Vec<Op>,
    },
}

/// What a [`Request::Pull`] asks of the directory: the chunks of epoch `epoch`'s document from
/// chunk `from` on. Always on the wire; epoch 0 asks for nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Want {
    /// The epoch whose document the client lacks (0: none).
    pub epoch: u64,
    /// The first chunk it lacks.
    pub from: u16,
}

/// One operation slot of a [`Request::Pull`]; every kind encodes to [`OP_LEN`] bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Register a mailbox on this connection (and in the store, idempotently).
    Register {
        /// The mailbox.
        mailbox: MailboxId,
        /// The owner's secret for it.
        credential: [u8; 32],
    },
    /// Remove a mailbox and everything in it.
    Unregister {
        /// The mailbox.
        mailbox: MailboxId,
        /// The owner's secret.
        credential: [u8; 32],
    },
    /// Delete every item up to and including `up_to`.
    Delete {
        /// The mailbox.
        mailbox: MailboxId,
        /// The owner's secret.
        credential: [u8; 32],
        /// Last sequence number deleted.
        up_to: u64,
    },
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Register { .. } => "Op::Register(..)",
            Self::Unregister { .. } => "Op::Unregister(..)",
            Self::Delete { .. } => "Op::Delete(..)",
        })
    }
}

impl Op {
    /// The mailbox the operation is about.
    pub fn mailbox(&self) -> MailboxId {
        match self {
            Self::Register { mailbox, .. }
            | Self::Unregister { mailbox, .. }
            | Self::Delete { mailbox, .. } => *mailbox,
        }
    }

    fn put(op: Option<&Self>, w: &mut Writer) {
        let (kind, m, c, n) = match op {
            None => (0u8, MailboxId([0; 32]), [0; 32], 0u64),
            Some(Self::Register { mailbox, credential }) => (1, *mailbox, *credential, 0),
            Some(Self::Unregister { mailbox, credential }) => (2, *mailbox, *credential, 0),
            Some(Self::Delete { mailbox, credential, up_to }) => (3, *mailbox, *credential, *up_to),
        };
        w.u8(kind);
        w.raw(&m.0);
        w.raw(&c);
        w.u64(n);
    }

    /// One slot: `None` for a dummy (all zeros), strictly.
    fn take(r: &mut Reader<'_>) -> Result<Option<Self>, ProtoError> {
        let kind = r.u8()?;
        let mailbox = MailboxId(r.array()?);
        let credential = r.array::<32>()?;
        let up_to = r.u64()?;
        Ok(match (kind, up_to) {
            (0, 0) if mailbox == MailboxId([0; 32]) && credential == [0; 32] => None,
            (1, 0) => Some(Self::Register { mailbox, credential }),
            (2, 0) => Some(Self::Unregister { mailbox, credential }),
            (3, _) => Some(Self::Delete { mailbox, credential, up_to }),
            _ => return Err(ProtoError::Malformed),
        })
    }
}

/// The outcome of one operation slot of a pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpResult {
    /// Done (or a dummy).
    Done,
    /// Refused or failed.
    Failed(ErrorCode),
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Unknown mailbox or wrong credential (deliberately one answer).
    Unauthorized,
    /// The store cannot serve now; try again later.
    Unavailable,
    /// The request was malformed.
    BadRequest,
    /// Any other failure.
    Internal,
    /// The request is of a version of the protocol this side does not speak.
    Version,
}

impl ErrorCode {
    fn to_byte(self) -> u8 {
        match self {
            Self::Unauthorized => 1,
            Self::Unavailable => 2,
            Self::BadRequest => 3,
            Self::Internal => 4,
            Self::Version => 5,
        }
    }
    fn from_byte(b: u8) -> Result<Self, ProtoError> {
        Ok(match b {
            1 => Self::Unauthorized,
            2 => Self::Unavailable,
            3 => Self::BadRequest,
            4 => Self::Internal,
            5 => Self::Version,
            _ => return Err(ProtoError::Malformed),
        })
    }
}

/// The gateway's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The request succeeded.
    Ok {
        /// The request's id.
        id: u32,
    },
    /// The request failed.
    Error {
        /// The request's id.
        id: u32,
        /// Why.
        code: ErrorCode,
    },
    /// One stored item, in answer to a fetch.
    Message {
        /// The fetch's id.
        id: u32,
        /// The item's sequence number in its mailbox.
        seq: u64,
        /// The stored item (a `MailboxItem` encoding).
        item: Vec<u8>,
    },
    /// The end of a fetch's answer.
    FetchDone {
        /// The fetch's id.
        id: u32,
        /// Whether more items are waiting.
        more: bool,
    },
    /// One item in answer to a pull.
    Pulled {
        /// The pull's id.
        id: u32,
        /// Whether items are still waiting after this answer.
        more: bool,
        /// The item's mailbox.
        mailbox: MailboxId,
        /// The item's sequence number in its mailbox.
        seq: u64,
        /// The stored item (a `MailboxItem` encoding).
        item: Vec<u8>,
    },
    /// The first frame of a pull's answer.
    PullHead {
        /// The pull's id.
        id: u32,
        /// Whether items are still waiting after this answer.
        more: bool,
        /// The outcome of each of the pull's [`PULL_OPS`] slots, in order.
        results: [OpResult; PULL_OPS],
    },
    /// A chunk of a directory document, in answer to a pull's [`Want`]. The document is the
    /// authorities' signed bytes, which the client verifies itself.
    DocChunk {
        /// The pull's id.
        id: u32,
        /// The document's epoch.
        epoch: u64,
        /// This chunk's number.
        index: u16,
        /// How many chunks the document has.
        count: u16,
        /// The chunk (at most [`MAX_CHUNK_LEN`] bytes).
        bytes: Vec<u8>,
    },
    /// Padding that makes a pull's answer `1 + limit` frames long.
    PullPad {
        /// The pull's id.
        id: u32,
        /// Whether items are still waiting after this answer.
        more: bool,
    },
}

impl Response {
    /// The id of the request this answers.
    pub fn id(&self) -> u32 {
        match self {
            Self::Ok { id }
            | Self::Error { id, .. }
            | Self::Message { id, .. }
            | Self::FetchDone { id, .. }
            | Self::Pulled { id, .. }
            | Self::PullHead { id, .. }
            | Self::DocChunk { id, .. }
            | Self::PullPad { id, .. } => *id,
        }
    }
}

/// A control message could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// Not a message of this protocol.
    #[error("malformed control message")]
    Malformed,
    /// A pull of another version of the exchange (see [`PULL_VERSION`]).
    #[error(
        "the peer speaks version {0} of the pull exchange; this one speaks version {PULL_VERSION}: update the older side"
    )]
    Version(u8),
}

impl From<DecodeError> for ProtoError {
    fn from(_: DecodeError) -> Self {
        Self::Malformed
    }
}

impl From<EncodeError> for ProtoError {
    fn from(_: EncodeError) -> Self {
        Self::Malformed
    }
}

const REGISTER: u8 = 1;
const UNREGISTER: u8 = 2;
const FETCH: u8 = 3;
const DELETE: u8 = 4;
const PULL: u8 = 5;
const OK: u8 = 0x81;
const ERROR: u8 = 0x82;
const MESSAGE: u8 = 0x83;
const FETCH_DONE: u8 = 0x84;
const PULLED: u8 = 0x85;
const PULL_PAD: u8 = 0x86;
const PULL_HEAD: u8 = 0x87;
const DOC_CHUNK: u8 = 0x88;

fn put_item(w: &mut Writer, item: &[u8]) -> Result<(), ProtoError> {
    if item.len() > MAX_ITEM_LEN {
        return Err(ProtoError::Malformed);
    }
    w.bytes16(item);
    Ok(())
}

fn item(r: &mut Reader<'_>) -> Result<Vec<u8>, ProtoError> {
    Ok(r.bytes16(MAX_ITEM_LEN, "item")?.to_vec())
}

impl Request {
    /// The encoding. A [`Request::Pull`] with more than [`PULL_OPS`] operations cannot be
    /// encoded.
    pub fn encode(&self) -> Result<Vec<u8>, ProtoError> {
        let mut w = Writer::with_capacity(1 + 4 + 64 + 10);
        match self {
            Self::Register { id, mailbox, credential } | Self::Unregister { id, mailbox, credential } => {
                w.u8(if matches!(self, Self::Register { .. }) { REGISTER } else { UNREGISTER });
                w.u32(*id);
                w.raw(&mailbox.0);
                w.raw(credential);
            }
            Self::Fetch { id, mailbox, credential, after, limit } => {
                w.u8(FETCH);
                w.u32(*id);
                w.raw(&mailbox.0);
                w.raw(credential);
                w.u64(*after);
                w.u16(*limit);
            }
            Self::Delete { id, mailbox, credential, up_to } => {
                w.u8(DELETE);
                w.u32(*id);
                w.raw(&mailbox.0);
                w.raw(credential);
                w.u64(*up_to);
            }
            Self::Pull { id, limit, want, ops } => {
                if ops.len() > PULL_OPS {
                    return Err(ProtoError::Malformed);
                }
                w.u8(PULL);
                w.u8(PULL_VERSION);
                w.u32(*id);
                w.u16(*limit);
                w.u64(want.epoch);
                w.u16(want.from);
                for i in 0..PULL_OPS {
                    Op::put(ops.get(i), &mut w);
                }
            }
        }
        Ok(w.finish()?)
    }

    /// Parses [`Request::encode`], allowing trailing zero padding.
    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(b);
        let tag = r.u8()?;
        if tag == PULL {
            // Version 1 had the id here: its first byte reads as a version other than ours.
            let version = r.u8()?;
            if version != PULL_VERSION {
                return Err(ProtoError::Version(version));
            }
            let id = r.u32()?;
            let limit = r.u16()?;
            let want = Want { epoch: r.u64()?, from: r.u16()? };
            let mut ops = Vec::new();
            let mut dummy_seen = false;
            for _ in 0..PULL_OPS {
                match Op::take(&mut r)? {
                    // Dummies only after the real operations: one encoding per request.
                    Some(_) if dummy_seen => return Err(ProtoError::Malformed),
                    Some(op) => ops.push(op),
                    None => dummy_seen = true,
                }
            }
            r.finish_zero_padded()?;
            return Ok(Self::Pull { id, limit, want, ops });
        }
        let id = r.u32()?;
        let mailbox = MailboxId(r.array()?);
        let credential = r.array::<32>()?;
        let req = match tag {
            REGISTER => Self::Register { id, mailbox, credential },
            UNREGISTER => Self::Unregister { id, mailbox, credential },
            FETCH => {
                let after = r.u64()?;
                let limit = r.u16()?;
                Self::Fetch { id, mailbox, credential, after, limit }
            }
            DELETE => Self::Delete { id, mailbox, credential, up_to: r.u64()? },
            _ => return Err(ProtoError::Malformed),
        };
        r.finish_zero_padded()?;
        Ok(req)
    }
}

impl Response {
    /// The encoding; an item longer than [`MAX_ITEM_LEN`] cannot be encoded.
    pub fn encode(&self) -> Result<Vec<u8>, ProtoError> {
        let mut w = Writer::new();
        match self {
            Self::Ok { id } => {
                w.u8(OK);
                w.u32(*id);
            }
            Self::Error { id, code } => {
                w.u8(ERROR);
                w.u32(*id);
                w.u8(code.to_byte());
            }
            Self::Message { id, seq, item } => {
                w.u8(MESSAGE);
                w.u32(*id);
                w.u64(*seq);
                put_item(&mut w, item)?;
            }
            Self::Pulled { id, more, mailbox, seq, item } => {
                w.u8(PULLED);
                w.u32(*id);
                w.flag(*more);
                w.raw(&mailbox.0);
                w.u64(*seq);
                put_item(&mut w, item)?;
            }
            Self::PullHead { id, more, results } => {
                w.u8(PULL_HEAD);
                w.u8(PULL_VERSION);
                w.u32(*id);
                w.flag(*more);
                for r in results {
                    w.u8(match r {
                        OpResult::Done => 0,
                        OpResult::Failed(c) => c.to_byte(),
                    });
                }
            }
            Self::DocChunk { id, epoch, index, count, bytes } => {
                if bytes.len() > MAX_CHUNK_LEN || index >= count {
                    return Err(ProtoError::Malformed);
                }
                w.u8(DOC_CHUNK);
                w.u32(*id);
                w.u64(*epoch);
                w.u16(*index);
                w.u16(*count);
                put_item(&mut w, bytes)?;
            }
            Self::PullPad { id, more } => {
                w.u8(PULL_PAD);
                w.u32(*id);
                w.flag(*more);
            }
            Self::FetchDone { id, more } => {
                w.u8(FETCH_DONE);
                w.u32(*id);
                w.flag(*more);
            }
        }
        Ok(w.finish()?)
    }

    /// Parses [`Response::encode`], allowing trailing zero padding.
    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader::new(b);
        let tag = r.u8()?;
        if tag == PULL_HEAD {
            let version = r.u8()?;
            if version != PULL_VERSION {
                return Err(ProtoError::Version(version));
            }
            let id = r.u32()?;
            let more = r.flag()?;
            let mut results = [OpResult::Done; PULL_OPS];
            for x in &mut results {
                *x = match r.u8()? {
                    0 => OpResult::Done,
                    c => OpResult::Failed(ErrorCode::from_byte(c)?),
                };
            }
            r.finish_zero_padded()?;
            return Ok(Self::PullHead { id, more, results });
        }
        let id = r.u32()?;
        let resp = match tag {
            OK => Self::Ok { id },
            ERROR => Self::Error { id, code: ErrorCode::from_byte(r.u8()?)? },
            MESSAGE => {
                let seq = r.u64()?;
                Self::Message { id, seq, item: item(&mut r)? }
            }
            FETCH_DONE => Self::FetchDone { id, more: r.flag()? },
            PULLED => {
                let more = r.flag()?;
                let mailbox = MailboxId(r.array()?);
                let seq = r.u64()?;
                Self::Pulled { id, more, mailbox, seq, item: item(&mut r)? }
            }
            PULL_PAD => Self::PullPad { id, more: r.flag()? },
            DOC_CHUNK => {
                let epoch = r.u64()?;
                let index = r.u16()?;
                let count = r.u16()?;
                let bytes = item(&mut r)?;
                if bytes.len() > MAX_CHUNK_LEN || index >= count {
                    return Err(ProtoError::Malformed);
                }
                Self::DocChunk { id, epoch, index, count, bytes }
            }
            _ => return Err(ProtoError::Malformed),
        };
        r.finish_zero_padded()?;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// `b` is `encoding` followed by zero padding only.
    fn padded(encoding: &[u8], b: &[u8]) -> bool {
        b.starts_with(encoding) && b[encoding.len()..].iter().all(|&x| x == 0)
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic_and_re_encode(
            tag in prop_oneof![1..=5u8, 0x81..=0x88u8, any::<u8>()],
            version in prop_oneof![Just(PULL_VERSION), any::<u8>()],
            head in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), any::<u8>()], 0..700),
            pad in 0..600usize,
        ) {
            let mut b = vec![tag, version];
            b.extend_from_slice(&head);
            b.resize(b.len() + pad, 0);
            for b in [&b[..], &b[..1], &b[1..]] {
                if let Ok(req) = Request::decode(b) {
                    prop_assert!(padded(&req.encode().unwrap(), b));
                }
                if let Ok(resp) = Response::decode(b) {
                    prop_assert!(padded(&resp.encode().unwrap(), b));
                }
            }
        }
    }

    #[test]
    fn round_trips_with_padding() {
        let reqs = [
            Request::Register { id: 1, mailbox: MailboxId([1; 32]), credential: [2; 32] },
            Request::Unregister { id: 2, mailbox: MailboxId([1; 32]), credential: [2; 32] },
            Request::Fetch { id: 3, mailbox: MailboxId([1; 32]), credential: [2; 32], after: 77, limit: 10 },
            Request::Delete { id: 4, mailbox: MailboxId([1; 32]), credential: [2; 32], up_to: 78 },
            Request::Pull { id: 5, limit: 2, want: Want::default(), ops: vec![] },
            Request::Pull {
                id: 6,
                limit: 3,
                want: Want { epoch: 77, from: 3 },
                ops: vec![
                    Op::Register { mailbox: MailboxId([3; 32]), credential: [4; 32] },
                    Op::Unregister { mailbox: MailboxId([5; 32]), credential: [6; 32] },
                    Op::Delete { mailbox: MailboxId([7; 32]), credential: [8; 32], up_to: 9 },
                ],
            },
        ];
        for r in reqs {
            let mut b = r.encode().unwrap();
            assert_eq!(Request::decode(&b), Ok(r.clone()));
            b.resize(2000, 0);
            assert_eq!(Request::decode(&b), Ok(r));
        }
        let resps = [
            Response::Ok { id: 9 },
            Response::Error { id: 9, code: ErrorCode::Unauthorized },
            Response::Message { id: 9, seq: 5, item: vec![0, 1, 2, 3] },
            Response::FetchDone { id: 9, more: true },
            Response::Pulled { id: 9, more: false, mailbox: MailboxId([4; 32]), seq: 7, item: vec![5; 1600] },
            Response::PullPad { id: 9, more: true },
            Response::PullHead {
                id: 9,
                more: true,
                results: [
                    OpResult::Done,
                    OpResult::Failed(ErrorCode::Unauthorized),
                    OpResult::Done,
                    OpResult::Failed(ErrorCode::Unavailable),
                    OpResult::Done,
                    OpResult::Done,
                    OpResult::Done,
                    OpResult::Failed(ErrorCode::Version),
                ],
            },
            Response::DocChunk { id: 9, epoch: 12, index: 1, count: 3, bytes: vec![7; 1900] },
        ];
        for r in resps {
            let mut b = r.encode().unwrap();
            b.resize(2000, 0);
            assert_eq!(Response::decode(&b), Ok(r));
        }
    }

    #[test]
    fn encodings_are_pinned() {
        let fetch = Request::Fetch {
            id: 0x0102_0304,
            mailbox: MailboxId([5; 32]),
            credential: [6; 32],
            after: 7,
            limit: 8,
        };
        let mut want = vec![FETCH, 1, 2, 3, 4];
        want.extend_from_slice(&[5; 32]);
        want.extend_from_slice(&[6; 32]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 7, 0, 8]);
        assert_eq!(fetch.encode().unwrap(), want);

        let del = Op::Delete { mailbox: MailboxId([1; 32]), credential: [2; 32], up_to: 3 };
        let pull = Request::Pull { id: 9, limit: 4, want: Want { epoch: 5, from: 6 }, ops: vec![del] };
        let b = pull.encode().unwrap();
        assert_eq!(b[..18], [PULL, PULL_VERSION, 0, 0, 0, 9, 0, 4, 0, 0, 0, 0, 0, 0, 0, 5, 0, 6]);
        assert_eq!(b[18], 3);
        assert_eq!(b[19..51], [1; 32]);
        assert_eq!(b[51..83], [2; 32]);
        assert_eq!(b[83..91], [0, 0, 0, 0, 0, 0, 0, 3]);
        assert!(b[91..].iter().all(|&x| x == 0));
        assert_eq!(b.len(), 18 + PULL_OPS * OP_LEN);

        let pulled =
            Response::Pulled { id: 1, more: true, mailbox: MailboxId([4; 32]), seq: 2, item: vec![9, 9, 9] };
        let mut want = vec![PULLED, 0, 0, 0, 1, 1];
        want.extend_from_slice(&[4; 32]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2, 0, 3, 9, 9, 9]);
        assert_eq!(pulled.encode().unwrap(), want);

        let head = Response::PullHead {
            id: 1,
            more: false,
            results: [
                OpResult::Done,
                OpResult::Failed(ErrorCode::Version),
                OpResult::Done,
                OpResult::Done,
                OpResult::Done,
                OpResult::Done,
                OpResult::Done,
                OpResult::Failed(ErrorCode::Internal),
            ],
        };
        assert_eq!(head.encode().unwrap(), [PULL_HEAD, PULL_VERSION, 0, 0, 0, 1, 0, 0, 5, 0, 0, 0, 0, 0, 4]);
        let chunk = Response::DocChunk { id: 2, epoch: 3, index: 0, count: 1, bytes: vec![7] };
        assert_eq!(
            chunk.encode().unwrap(),
            [DOC_CHUNK, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 0, 1, 7]
        );
    }

    #[test]
    fn a_chunk_of_the_longest_length_fills_its_message_exactly() {
        for max in [20, 100, 1000, MAX_CHUNK_LEN + DOC_CHUNK_OVERHEAD] {
            let bytes = vec![7; doc_chunk_len(max)];
            let chunk = Response::DocChunk { id: u32::MAX, epoch: u64::MAX, index: 0, count: 1, bytes };
            assert_eq!(chunk.encode().unwrap().len(), max);
        }
        // Bounded both ways.
        assert_eq!(doc_chunk_len(0), 1);
        assert_eq!(doc_chunk_len(usize::MAX), MAX_CHUNK_LEN);
    }

    #[test]
    fn an_old_pull_gets_a_version_error() {
        // Version 1: tag, id, limit, number of deletions.
        let v1 = [PULL, 0, 0, 0, 7, 0, 2, 0];
        assert_eq!(Request::decode(&v1), Err(ProtoError::Version(0)));
        let mut b = Request::Pull { id: 1, limit: 1, want: Want::default(), ops: vec![] }.encode().unwrap();
        b[1] = 3;
        assert_eq!(Request::decode(&b), Err(ProtoError::Version(3)));
        let head = Response::PullHead { id: 1, more: false, results: [OpResult::Done; PULL_OPS] };
        let mut b = head.encode().unwrap();
        b[1] = 1;
        assert_eq!(Response::decode(&b), Err(ProtoError::Version(1)));
        assert!(ProtoError::Version(1).to_string().contains("update"));
    }

    #[test]
    fn every_pull_has_one_length() {
        let reg = Op::Register { mailbox: MailboxId([1; 32]), credential: [2; 32] };
        let del = Op::Delete { mailbox: MailboxId([1; 32]), credential: [2; 32], up_to: u64::MAX };
        let lens: Vec<usize> = [vec![], vec![reg], vec![del; PULL_OPS], vec![reg, del, reg]]
            .into_iter()
            .map(|ops| {
                Request::Pull { id: 1, limit: 2, want: Want { epoch: 5, from: 1 }, ops }
                    .encode()
                    .unwrap()
                    .len()
            })
            .collect();
        assert!(lens.iter().all(|&l| l == lens[0]), "{lens:?}");
    }

    #[test]
    fn rejects_garbage() {
        assert!(Request::decode(&[]).is_err());
        assert!(Request::decode(&[9; 100]).is_err());
        let mut b = Request::Delete { id: 4, mailbox: MailboxId([1; 32]), credential: [2; 32], up_to: 78 }
            .encode()
            .unwrap();
        b.push(1);
        assert!(Request::decode(&b).is_err());
        let reg = Op::Register { mailbox: MailboxId([1; 32]), credential: [2; 32] };
        let too_many = Request::Pull { id: 1, limit: 1, want: Want::default(), ops: vec![reg; PULL_OPS + 1] };
        assert!(too_many.encode().is_err());
        // A real operation after a dummy slot: not the canonical encoding.
        let mut b =
            Request::Pull { id: 1, limit: 1, want: Want::default(), ops: vec![reg] }.encode().unwrap();
        let head = 1 + 1 + 4 + 2 + 10;
        let first: Vec<u8> = b[head..head + OP_LEN].to_vec();
        b[head + OP_LEN..head + 2 * OP_LEN].copy_from_slice(&first);
        b[head..head + OP_LEN].fill(0);
        assert_eq!(Request::decode(&b), Err(ProtoError::Malformed));
        // An unknown op kind, and a dummy with bytes.
        let mut b =
            Request::Pull { id: 1, limit: 1, want: Want::default(), ops: vec![reg] }.encode().unwrap();
        b[head] = 9;
        assert!(Request::decode(&b).is_err());
        let mut b = Request::Pull { id: 1, limit: 1, want: Want::default(), ops: vec![] }.encode().unwrap();
        b[head + 5] = 1;
        assert!(Request::decode(&b).is_err());
        assert!(Response::DocChunk { id: 1, epoch: 1, index: 2, count: 2, bytes: vec![] }.encode().is_err());
        assert!(Response::decode(&[PULL_PAD, 0, 0, 0, 1, 2]).is_err());
        assert!(Response::Message { id: 1, seq: 1, item: vec![0; MAX_ITEM_LEN + 1] }.encode().is_err());
        assert!(Response::decode(&[MESSAGE, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff]).is_err());
    }
}
