//! The client–gateway control protocol: what a client asks its gateway about its mailboxes, and
//! the answers. Carried in the link's control frames, one message per frame, so every message has
//! a bounded size (the largest is a [`Response::Message`] carrying one stored item).
//!
//! A client proves it owns a mailbox with the per-mailbox credential it chose when registering it;
//! the gateway stores only a hash of it. Nothing here names a person: a client has one mailbox per
//! contact and per open invitation, and the gateway cannot tell which belong together beyond
//! seeing them on the same connection.
//!
//! A client's routine way to read is [`Request::Pull`]: one frame up, always answered by exactly
//! `limit` frames down (items from any of the mailboxes registered on this connection, then
//! padding), and carrying the deletions of what the previous pulls brought. A client that pulls
//! on a fixed schedule with a fixed `limit` shows an observer of its link the same traffic
//! whatever it receives and however many contacts it has. (`Fetch` and `Delete` remain, one
//! mailbox at a time, for tools and tests.)
//!
//! Encoding: one tag byte, then fixed-width big-endian fields; the only variable field (an item,
//! or a pull's list of deletions) is last, after its length. Decoding is strict.

use thiserror::Error;

/// Longest item a response can carry.
pub const MAX_ITEM_LEN: usize = 16 * 1024;
/// Most deletions one [`Request::Pull`] carries (it must fit one frame).
pub const MAX_PULL_DONE: usize = 32;
/// Largest `limit` of a [`Request::Pull`] a gateway honours.
pub const MAX_PULL_LIMIT: u16 = 256;

/// A client's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Register a mailbox with its credential (idempotent for the same credential).
    Register {
        /// Echoed in the response.
        id: u32,
        /// The mailbox.
        mailbox: [u8; 32],
        /// The owner's secret for this mailbox.
        credential: [u8; 32],
    },
    /// Remove a mailbox and everything in it.
    Unregister {
        /// Echoed in the response.
        id: u32,
        /// The mailbox.
        mailbox: [u8; 32],
        /// The owner's secret.
        credential: [u8; 32],
    },
    /// Send the stored items after sequence number `after` (0: from the start), at most `limit`.
    Fetch {
        /// Echoed in the responses.
        id: u32,
        /// The mailbox.
        mailbox: [u8; 32],
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
        mailbox: [u8; 32],
        /// The owner's secret.
        credential: [u8; 32],
        /// Last sequence number deleted.
        up_to: u64,
    },
    /// First delete, in mailboxes registered on this connection, every item up to and including
    /// each given sequence number; then send exactly `limit` frames: the oldest waiting items of
    /// those mailboxes ([`Response::Pulled`]), then [`Response::PullPad`] frames.
    Pull {
        /// Echoed in the responses.
        id: u32,
        /// How many frames the answer has (at most [`MAX_PULL_LIMIT`] are honoured).
        limit: u16,
        /// (mailbox, last sequence number to delete), at most [`MAX_PULL_DONE`].
        done: Vec<([u8; 32], u64)>,
    },
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
}

impl ErrorCode {
    fn to_byte(self) -> u8 {
        match self {
            Self::Unauthorized => 1,
            Self::Unavailable => 2,
            Self::BadRequest => 3,
            Self::Internal => 4,
        }
    }
    fn from_byte(b: u8) -> Result<Self, ProtoError> {
        Ok(match b {
            1 => Self::Unauthorized,
            2 => Self::Unavailable,
            3 => Self::BadRequest,
            4 => Self::Internal,
            _ => return Err(ProtoError),
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
        mailbox: [u8; 32],
        /// The item's sequence number in its mailbox.
        seq: u64,
        /// The stored item (a `MailboxItem` encoding).
        item: Vec<u8>,
    },
    /// Padding that makes a pull's answer `limit` frames long.
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
            | Self::PullPad { id, .. } => *id,
        }
    }
}

/// A control message could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("malformed control message")]
pub struct ProtoError;

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], ProtoError> {
        let (h, rest) = self.0.split_first_chunk::<N>().ok_or(ProtoError)?;
        self.0 = rest;
        Ok(*h)
    }
    fn u8(&mut self) -> Result<u8, ProtoError> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, ProtoError> {
        Ok(u16::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, ProtoError> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, ProtoError> {
        Ok(u64::from_be_bytes(self.take()?))
    }
    fn flag(&mut self) -> Result<bool, ProtoError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(ProtoError),
        }
    }
    fn item(&mut self) -> Result<Vec<u8>, ProtoError> {
        let len = usize::from(self.u16()?);
        if len > MAX_ITEM_LEN {
            return Err(ProtoError);
        }
        Ok(self.bytes(len)?.to_vec())
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if self.0.len() < n {
            return Err(ProtoError);
        }
        let (h, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(h)
    }
    /// The rest must be zero padding (messages travel in fixed-size frames).
    fn end(self) -> Result<(), ProtoError> {
        if self.0.iter().all(|&b| b == 0) { Ok(()) } else { Err(ProtoError) }
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

fn put_item(v: &mut Vec<u8>, item: &[u8]) -> Result<(), ProtoError> {
    if item.len() > MAX_ITEM_LEN {
        return Err(ProtoError);
    }
    let len = u16::try_from(item.len()).map_err(|_| ProtoError)?;
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(item);
    Ok(())
}

impl Request {
    /// The encoding. A [`Request::Pull`] with more than [`MAX_PULL_DONE`] deletions cannot be
    /// encoded.
    pub fn encode(&self) -> Result<Vec<u8>, ProtoError> {
        let mut v = Vec::with_capacity(1 + 4 + 64 + 10);
        match self {
            Self::Register { id, mailbox, credential } | Self::Unregister { id, mailbox, credential } => {
                v.push(if matches!(self, Self::Register { .. }) { REGISTER } else { UNREGISTER });
                v.extend_from_slice(&id.to_be_bytes());
                v.extend_from_slice(mailbox);
                v.extend_from_slice(credential);
            }
            Self::Fetch { id, mailbox, credential, after, limit } => {
                v.push(FETCH);
                v.extend_from_slice(&id.to_be_bytes());
                v.extend_from_slice(mailbox);
                v.extend_from_slice(credential);
                v.extend_from_slice(&after.to_be_bytes());
                v.extend_from_slice(&limit.to_be_bytes());
            }
            Self::Delete { id, mailbox, credential, up_to } => {
                v.push(DELETE);
                v.extend_from_slice(&id.to_be_bytes());
                v.extend_from_slice(mailbox);
                v.extend_from_slice(credential);
                v.extend_from_slice(&up_to.to_be_bytes());
            }
            Self::Pull { id, limit, done } => {
                if done.len() > MAX_PULL_DONE {
                    return Err(ProtoError);
                }
                v.push(PULL);
                v.extend_from_slice(&id.to_be_bytes());
                v.extend_from_slice(&limit.to_be_bytes());
                v.push(done.len() as u8);
                for (m, up_to) in done {
                    v.extend_from_slice(m);
                    v.extend_from_slice(&up_to.to_be_bytes());
                }
            }
        }
        Ok(v)
    }

    /// Parses [`Request::encode`], allowing trailing zero padding.
    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader(b);
        let tag = r.u8()?;
        let id = r.u32()?;
        if tag == PULL {
            let limit = r.u16()?;
            let n = usize::from(r.u8()?);
            if n > MAX_PULL_DONE {
                return Err(ProtoError);
            }
            let mut done = Vec::with_capacity(n);
            for _ in 0..n {
                done.push((r.take::<32>()?, r.u64()?));
            }
            r.end()?;
            return Ok(Self::Pull { id, limit, done });
        }
        let mailbox = r.take::<32>()?;
        let credential = r.take::<32>()?;
        let req = match tag {
            REGISTER => Self::Register { id, mailbox, credential },
            UNREGISTER => Self::Unregister { id, mailbox, credential },
            FETCH => {
                let after = r.u64()?;
                let limit = r.u16()?;
                Self::Fetch { id, mailbox, credential, after, limit }
            }
            DELETE => Self::Delete { id, mailbox, credential, up_to: r.u64()? },
            _ => return Err(ProtoError),
        };
        r.end()?;
        Ok(req)
    }
}

impl Response {
    /// The encoding; an item longer than [`MAX_ITEM_LEN`] cannot be encoded.
    pub fn encode(&self) -> Result<Vec<u8>, ProtoError> {
        let mut v = Vec::new();
        match self {
            Self::Ok { id } => {
                v.push(OK);
                v.extend_from_slice(&id.to_be_bytes());
            }
            Self::Error { id, code } => {
                v.push(ERROR);
                v.extend_from_slice(&id.to_be_bytes());
                v.push(code.to_byte());
            }
            Self::Message { id, seq, item } => {
                v.push(MESSAGE);
                v.extend_from_slice(&id.to_be_bytes());
                v.extend_from_slice(&seq.to_be_bytes());
                put_item(&mut v, item)?;
            }
            Self::Pulled { id, more, mailbox, seq, item } => {
                v.push(PULLED);
                v.extend_from_slice(&id.to_be_bytes());
                v.push(u8::from(*more));
                v.extend_from_slice(mailbox);
                v.extend_from_slice(&seq.to_be_bytes());
                put_item(&mut v, item)?;
            }
            Self::PullPad { id, more } => {
                v.push(PULL_PAD);
                v.extend_from_slice(&id.to_be_bytes());
                v.push(u8::from(*more));
            }
            Self::FetchDone { id, more } => {
                v.push(FETCH_DONE);
                v.extend_from_slice(&id.to_be_bytes());
                v.push(u8::from(*more));
            }
        }
        Ok(v)
    }

    /// Parses [`Response::encode`], allowing trailing zero padding.
    pub fn decode(b: &[u8]) -> Result<Self, ProtoError> {
        let mut r = Reader(b);
        let tag = r.u8()?;
        let id = r.u32()?;
        let resp = match tag {
            OK => Self::Ok { id },
            ERROR => Self::Error { id, code: ErrorCode::from_byte(r.u8()?)? },
            MESSAGE => {
                let seq = r.u64()?;
                Self::Message { id, seq, item: r.item()? }
            }
            FETCH_DONE => Self::FetchDone { id, more: r.flag()? },
            PULLED => {
                let more = r.flag()?;
                let mailbox = r.take::<32>()?;
                let seq = r.u64()?;
                Self::Pulled { id, more, mailbox, seq, item: r.item()? }
            }
            PULL_PAD => Self::PullPad { id, more: r.flag()? },
            _ => return Err(ProtoError),
        };
        r.end()?;
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_padding() {
        let reqs = [
            Request::Register { id: 1, mailbox: [1; 32], credential: [2; 32] },
            Request::Unregister { id: 2, mailbox: [1; 32], credential: [2; 32] },
            Request::Fetch { id: 3, mailbox: [1; 32], credential: [2; 32], after: 77, limit: 10 },
            Request::Delete { id: 4, mailbox: [1; 32], credential: [2; 32], up_to: 78 },
            Request::Pull { id: 5, limit: 2, done: vec![] },
            Request::Pull { id: 6, limit: 3, done: vec![([3; 32], 9); MAX_PULL_DONE] },
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
            Response::Pulled { id: 9, more: false, mailbox: [4; 32], seq: 7, item: vec![5; 1600] },
            Response::PullPad { id: 9, more: true },
        ];
        for r in resps {
            let mut b = r.encode().unwrap();
            b.resize(2000, 0);
            assert_eq!(Response::decode(&b), Ok(r));
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(Request::decode(&[]).is_err());
        assert!(Request::decode(&[9; 100]).is_err());
        let mut b =
            Request::Delete { id: 4, mailbox: [1; 32], credential: [2; 32], up_to: 78 }.encode().unwrap();
        b.push(1);
        assert!(Request::decode(&b).is_err());
        let too_many = Request::Pull { id: 1, limit: 1, done: vec![([0; 32], 0); MAX_PULL_DONE + 1] };
        assert!(too_many.encode().is_err());
        let mut b = Request::Pull { id: 1, limit: 1, done: vec![] }.encode().unwrap();
        b[7] = MAX_PULL_DONE as u8 + 1;
        b.resize(2000, 0);
        assert!(Request::decode(&b).is_err());
        assert!(Response::decode(&[PULL_PAD, 0, 0, 0, 1, 2]).is_err());
        assert!(Response::Message { id: 1, seq: 1, item: vec![0; MAX_ITEM_LEN + 1] }.encode().is_err());
        assert!(Response::decode(&[MESSAGE, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff]).is_err());
    }
}
