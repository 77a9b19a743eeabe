//! The authority's control protocol, carried in link `Control` frames.
//!
//! # Messages
//!
//! A message is one tag byte and its body:
//!
//! | tag | message | body |
//! |---|---|---|
//! | 1 | `PeerMessage` | the bytes an authority core emitted for a peer (`Action::Send`) |
//! | 2 | `UploadDescriptor` | a signed node descriptor |
//! | 3 | `GetDocument` | the epoch, `u64` big-endian |
//! | 4 | `Ok` | empty (the upload was accepted) |
//! | 5 | `Error` | one [`ErrorCode`] byte (the upload was refused) |
//! | 6 | `Document` | an encoded, majority-signed document |
//! | 7 | `NotYet` | empty (no document for that epoch here) |
//!
//! Byte-carrying bodies are non-empty; fixed bodies must have exactly their length.
//!
//! # Chunks
//!
//! Votes, certs and documents are far larger than one frame ([`FrameSize::max_control_len`],
//! about 2.2 KB): a descriptor alone carries a 1,216-byte link key. Every message is therefore
//! sent as `count ≥ 1` numbered chunks, each one `Control` frame:
//! `version (1) ‖ index (u32) ‖ count (u32) ‖ data`. Every chunk but the last carries exactly
//! [`chunk_capacity`] bytes of data, the last 1 to that many. A link delivers frames in order and
//! one writer sends a whole message before the next, so chunks must arrive as `0, 1, …,
//! count - 1`; anything else is an error and the receiver closes the connection (except that
//! an authority's runtime skips stray chunks from another authority, the tail of a message cut
//! by a reconnection, until the next message starts). The
//! [`Reassembler`] refuses, from the first chunk's header, any message longer than its bound
//! (which depends on who is at the other end), so a peer cannot make it buffer more.

use qanat_codec::{DecodeError, Reader, Writer};
use qanat_link::FrameSize;
use qanat_pki::Epoch;
use qanat_pki::authority::MAX_PEER_MESSAGE_LEN;
use qanat_pki::document::MAX_DOCUMENT_LEN;
use qanat_pki::{DescriptorRejected, MAX_DESCRIPTOR_LEN};

/// The chunk format's version byte.
pub const VERSION: u8 = 1;
/// Bytes of a chunk before its data.
pub const CHUNK_HEADER_LEN: usize = 1 + 4 + 4;
/// The longest message an authority takes from another authority.
pub const MAX_PEER_LEN: usize = 1 + MAX_PEER_MESSAGE_LEN;
/// The longest request an authority takes from anyone (an upload).
pub const MAX_REQUEST_LEN: usize = 1 + MAX_DESCRIPTOR_LEN;
/// The longest answer a node takes from an authority (a document).
pub const MAX_RESPONSE_LEN: usize = 1 + MAX_DOCUMENT_LEN;
/// The longest message of any kind.
pub const MAX_MESSAGE_LEN: usize = max(max(MAX_PEER_LEN, MAX_REQUEST_LEN), MAX_RESPONSE_LEN);

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

const TAG_PEER: u8 = 1;
const TAG_UPLOAD: u8 = 2;
const TAG_GET: u8 = 3;
const TAG_OK: u8 = 4;
const TAG_ERROR: u8 = 5;
const TAG_DOCUMENT: u8 = 6;
const TAG_NOT_YET: u8 = 7;

/// Why an upload was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ErrorCode {
    /// Not a well-formed, correctly self-signed descriptor.
    Malformed = 1,
    /// The node is not on the allowlist.
    NotAllowed = 2,
    /// Packet keys of another scheme.
    WrongScheme = 3,
    /// That epoch's vote has passed.
    TooLate = 4,
    /// That epoch is too far ahead.
    TooEarly = 5,
    /// It would change an already-published packet key.
    KeyChanged = 6,
    /// The authority could not handle it now (shutting down, overloaded); try again.
    Unavailable = 7,
    /// Refused for a reason this version of the protocol has no code for.
    Other = 8,
}

impl ErrorCode {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Malformed,
            2 => Self::NotAllowed,
            3 => Self::WrongScheme,
            4 => Self::TooLate,
            5 => Self::TooEarly,
            6 => Self::KeyChanged,
            7 => Self::Unavailable,
            8 => Self::Other,
            _ => return None,
        })
    }
}

impl From<&DescriptorRejected> for ErrorCode {
    fn from(e: &DescriptorRejected) -> Self {
        match e {
            DescriptorRejected::Malformed(_) => Self::Malformed,
            DescriptorRejected::NotAllowed => Self::NotAllowed,
            DescriptorRejected::WrongScheme => Self::WrongScheme,
            DescriptorRejected::TooLate(_) => Self::TooLate,
            DescriptorRejected::TooEarly(_) => Self::TooEarly,
            DescriptorRejected::KeyChanged => Self::KeyChanged,
            _ => Self::Other,
        }
    }
}

/// One message of the protocol.
#[derive(Clone, PartialEq, Eq)]
pub enum Message {
    /// Authority to authority: bytes for the peer core's `handle_message`.
    PeerMessage(Vec<u8>),
    /// Node to authority: a signed descriptor. Answered `Ok` or `Error`.
    UploadDescriptor(Vec<u8>),
    /// Anyone to authority: the document of an epoch. Answered `Document` or `NotYet`.
    GetDocument(Epoch),
    /// The upload was accepted.
    Ok,
    /// The upload was refused.
    Error(ErrorCode),
    /// The requested document.
    Document(Vec<u8>),
    /// No document for the requested epoch (yet, or any more).
    NotYet,
}

impl std::fmt::Debug for Message {
    // Never prints contents.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PeerMessage(b) => write!(f, "PeerMessage({} bytes)", b.len()),
            Self::UploadDescriptor(b) => write!(f, "UploadDescriptor({} bytes)", b.len()),
            Self::GetDocument(e) => write!(f, "GetDocument({e:?})"),
            Self::Ok => f.write_str("Ok"),
            Self::Error(c) => write!(f, "Error({c:?})"),
            Self::Document(b) => write!(f, "Document({} bytes)", b.len()),
            Self::NotYet => f.write_str("NotYet"),
        }
    }
}

/// A protocol violation (the connection should be closed) or a message too large to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// Shorter than its fixed parts.
    #[error("truncated")]
    Truncated,
    /// Bytes after a fixed-length body.
    #[error("trailing bytes")]
    Trailing,
    /// A byte-carrying body was empty.
    #[error("empty body")]
    Empty,
    /// Unknown message tag.
    #[error("unknown message tag")]
    UnknownTag,
    /// Unknown error code.
    #[error("unknown error code")]
    UnknownCode,
    /// Unknown chunk format version.
    #[error("unknown chunk version")]
    Version,
    /// Longer than the bound that applies.
    #[error("message too large")]
    TooLarge,
    /// A chunk out of order, of the wrong length, or with an inconsistent count.
    #[error("bad chunk sequence")]
    BadChunk,
    /// The frame size leaves no room for chunk data.
    #[error("frame too small for chunks")]
    FrameTooSmall,
}

impl Message {
    /// The message's bytes (tag ‖ body).
    pub fn encode(&self) -> Vec<u8> {
        let (tag, body): (u8, &[u8]) = match self {
            Self::PeerMessage(b) => (TAG_PEER, b),
            Self::UploadDescriptor(b) => (TAG_UPLOAD, b),
            Self::GetDocument(_) => (TAG_GET, &[]),
            Self::Ok => (TAG_OK, &[]),
            Self::Error(_) => (TAG_ERROR, &[]),
            Self::Document(b) => (TAG_DOCUMENT, b),
            Self::NotYet => (TAG_NOT_YET, &[]),
        };
        let mut w = Writer::with_capacity(1 + 8 + body.len());
        w.u8(tag);
        match self {
            Self::GetDocument(e) => w.u64(e.0),
            Self::Error(c) => w.u8(*c as u8),
            _ => w.raw(body),
        }
        // Nothing here has a length prefix: the writer cannot fail.
        w.finish().unwrap_or_default()
    }

    /// Strictly decodes one message of at most `max_len` bytes.
    pub fn decode(bytes: &[u8], max_len: usize) -> Result<Self, ProtoError> {
        if bytes.len() > max_len {
            return Err(ProtoError::TooLarge);
        }
        let mut r = Reader::new(bytes);
        let tag = r.u8()?;
        let m = match tag {
            TAG_PEER => Self::PeerMessage(nonempty(r.rest())?),
            TAG_UPLOAD => Self::UploadDescriptor(nonempty(r.rest())?),
            TAG_GET => Self::GetDocument(Epoch(r.u64()?)),
            TAG_OK => Self::Ok,
            TAG_ERROR => {
                let code = r.u8()?;
                // A fixed body of the wrong length is that, whatever its byte.
                r.clone().finish()?;
                Self::Error(ErrorCode::from_u8(code).ok_or(ProtoError::UnknownCode)?)
            }
            TAG_DOCUMENT => Self::Document(nonempty(r.rest())?),
            TAG_NOT_YET => Self::NotYet,
            _ => return Err(ProtoError::UnknownTag),
        };
        r.finish()?;
        Ok(m)
    }
}

fn nonempty(body: &[u8]) -> Result<Vec<u8>, ProtoError> {
    if body.is_empty() { Err(ProtoError::Empty) } else { Ok(body.to_vec()) }
}

impl From<DecodeError> for ProtoError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::TrailingBytes { .. } => Self::Trailing,
            _ => Self::Truncated,
        }
    }
}

/// Data bytes per chunk at `size`.
pub fn chunk_capacity(size: FrameSize) -> Result<usize, ProtoError> {
    match size.max_control_len().checked_sub(CHUNK_HEADER_LEN) {
        Some(n) if n > 0 => Ok(n),
        _ => Err(ProtoError::FrameTooSmall),
    }
}

/// `message` as the payloads of its `Control` frames, in order.
pub fn to_chunks(message: &Message, size: FrameSize) -> Result<Vec<Vec<u8>>, ProtoError> {
    let bytes = message.encode();
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(ProtoError::TooLarge);
    }
    let cap = chunk_capacity(size)?;
    let count = u32::try_from(bytes.len().div_ceil(cap)).map_err(|_| ProtoError::TooLarge)?;
    let mut out = Vec::with_capacity(bytes.len().div_ceil(cap));
    for (i, data) in (0u32..).zip(bytes.chunks(cap)) {
        let mut w = Writer::with_capacity(CHUNK_HEADER_LEN + data.len());
        w.u8(VERSION);
        w.u32(i);
        w.u32(count);
        w.raw(data);
        // No length prefix: the writer cannot fail.
        out.push(w.finish().unwrap_or_default());
    }
    Ok(out)
}

/// Puts one connection's chunks back together (see the module documentation).
#[derive(Debug)]
pub struct Reassembler {
    cap: usize,
    max_len: usize,
    buf: Vec<u8>,
    /// Next index and count of the message in progress.
    progress: Option<(u32, u32)>,
}

impl Reassembler {
    /// For a connection at `size` whose messages may be at most `max_len` bytes.
    pub fn new(size: FrameSize, max_len: usize) -> Result<Self, ProtoError> {
        Ok(Self { cap: chunk_capacity(size)?, max_len, buf: Vec::new(), progress: None })
    }

    /// Takes one `Control` frame's payload; returns the message it completes, if any. After an
    /// error the state is reset, but the connection should be closed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Option<Message>, ProtoError> {
        let r = self.push_inner(chunk);
        if r.is_err() {
            self.buf = Vec::new();
            self.progress = None;
        }
        r
    }

    fn push_inner(&mut self, chunk: &[u8]) -> Result<Option<Message>, ProtoError> {
        let mut r = Reader::new(chunk);
        let (version, index, count) = (r.u8()?, r.u32()?, r.u32()?);
        let data = r.rest();
        if version != VERSION {
            return Err(ProtoError::Version);
        }
        if count == 0 || index >= count || data.is_empty() || data.len() > self.cap {
            return Err(ProtoError::BadChunk);
        }
        match self.progress {
            None if index == 0 => {
                // The smallest message `count` chunks can carry must fit the bound.
                let min_len = usize::try_from(count - 1)
                    .ok()
                    .and_then(|n| n.checked_mul(self.cap))
                    .and_then(|n| n.checked_add(1))
                    .ok_or(ProtoError::TooLarge)?;
                if min_len > self.max_len {
                    return Err(ProtoError::TooLarge);
                }
            }
            Some((next, c)) if next == index && c == count => {}
            _ => return Err(ProtoError::BadChunk),
        }
        let last = index + 1 == count;
        if !last && data.len() != self.cap {
            return Err(ProtoError::BadChunk);
        }
        if self.buf.len() + data.len() > self.max_len {
            return Err(ProtoError::TooLarge);
        }
        self.buf.extend_from_slice(data);
        if !last {
            self.progress = Some((index + 1, count));
            return Ok(None);
        }
        self.progress = None;
        let bytes = std::mem::take(&mut self.buf);
        Message::decode(&bytes, self.max_len).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size() -> FrameSize {
        FrameSize::for_packet_len(2204).unwrap()
    }

    fn all() -> Vec<Message> {
        vec![
            Message::PeerMessage(vec![1, 2, 3]),
            Message::UploadDescriptor(vec![9; 100]),
            Message::GetDocument(Epoch(0x0102_0304_0506_0708)),
            Message::Ok,
            Message::Error(ErrorCode::TooLate),
            Message::Document(vec![7; 5]),
            Message::NotYet,
        ]
    }

    #[test]
    fn messages_round_trip_and_encoding_is_canonical() {
        for m in all() {
            let b = m.encode();
            assert_eq!(Message::decode(&b, MAX_MESSAGE_LEN).unwrap(), m);
        }
        assert_eq!(Message::GetDocument(Epoch(1)).encode(), vec![3, 0, 0, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn decoding_is_strict() {
        let max = MAX_MESSAGE_LEN;
        assert_eq!(Message::decode(&[], max), Err(ProtoError::Truncated));
        assert_eq!(Message::decode(&[0], max), Err(ProtoError::UnknownTag));
        assert_eq!(Message::decode(&[8], max), Err(ProtoError::UnknownTag));
        assert_eq!(Message::decode(&[TAG_PEER], max), Err(ProtoError::Empty));
        assert_eq!(Message::decode(&[TAG_DOCUMENT], max), Err(ProtoError::Empty));
        assert_eq!(Message::decode(&[TAG_GET, 0, 0], max), Err(ProtoError::Truncated));
        assert_eq!(Message::decode(&[TAG_GET, 0, 0, 0, 0, 0, 0, 0, 0, 0], max), Err(ProtoError::Trailing));
        assert_eq!(Message::decode(&[TAG_OK, 0], max), Err(ProtoError::Trailing));
        assert_eq!(Message::decode(&[TAG_NOT_YET, 0], max), Err(ProtoError::Trailing));
        assert_eq!(Message::decode(&[TAG_ERROR], max), Err(ProtoError::Truncated));
        assert_eq!(Message::decode(&[TAG_ERROR, 0], max), Err(ProtoError::UnknownCode));
        assert_eq!(Message::decode(&[TAG_ERROR, 9], max), Err(ProtoError::UnknownCode));
        assert_eq!(Message::decode(&[TAG_ERROR, 1, 1], max), Err(ProtoError::Trailing));
        assert_eq!(Message::decode(&[TAG_UPLOAD, 1, 2], 2), Err(ProtoError::TooLarge));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..64 {
            for _ in 0..64 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x % 11) as u8
                    })
                    .collect();
                if let Ok(m) = Message::decode(&bytes, MAX_MESSAGE_LEN) {
                    assert_eq!(m.encode(), bytes);
                }
                let mut r = Reassembler::new(size(), 1000).unwrap();
                let _ = r.push(&bytes);
            }
        }
    }

    #[test]
    fn large_messages_are_split_and_reassembled() {
        let cap = chunk_capacity(size()).unwrap();
        assert_eq!(cap, size().max_control_len() - CHUNK_HEADER_LEN);
        for len in [1, cap - 1, cap, cap + 1, 3 * cap, 50_000] {
            let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let m = Message::Document(body);
            let chunks = to_chunks(&m, size()).unwrap();
            assert_eq!(chunks.len(), (len + 1).div_ceil(cap));
            assert!(chunks.iter().all(|c| c.len() <= size().max_control_len()));
            let mut r = Reassembler::new(size(), MAX_RESPONSE_LEN).unwrap();
            let mut got = None;
            for (i, c) in chunks.iter().enumerate() {
                let out = r.push(c).unwrap();
                assert_eq!(out.is_some(), i + 1 == chunks.len());
                got = got.or(out);
            }
            assert_eq!(got.unwrap(), m);
            // The reassembler is ready for the next message.
            let small = to_chunks(&Message::NotYet, size()).unwrap();
            assert_eq!(r.push(&small[0]).unwrap(), Some(Message::NotYet));
        }
    }

    #[test]
    fn chunk_sequences_are_checked() {
        let cap = chunk_capacity(size()).unwrap();
        let m = Message::PeerMessage(vec![5; 3 * cap]);
        let chunks = to_chunks(&m, size()).unwrap();
        assert_eq!(chunks.len(), 4);
        let fresh = || Reassembler::new(size(), MAX_PEER_LEN).unwrap();

        // Starting mid-message, skipping, repeating.
        assert_eq!(fresh().push(&chunks[1]), Err(ProtoError::BadChunk));
        let mut r = fresh();
        r.push(&chunks[0]).unwrap();
        assert_eq!(r.push(&chunks[2]), Err(ProtoError::BadChunk));
        let mut r = fresh();
        r.push(&chunks[0]).unwrap();
        assert_eq!(r.push(&chunks[0]), Err(ProtoError::BadChunk));
        // After an error, a new message is accepted.
        assert_eq!(r.push(&to_chunks(&Message::Ok, size()).unwrap()[0]).unwrap(), Some(Message::Ok));

        // Bad headers.
        let mut c = chunks[0].clone();
        c[0] = 2;
        assert_eq!(fresh().push(&c), Err(ProtoError::Version));
        assert_eq!(fresh().push(&chunks[0][..CHUNK_HEADER_LEN - 1]), Err(ProtoError::Truncated));
        assert_eq!(fresh().push(&chunks[0][..CHUNK_HEADER_LEN]), Err(ProtoError::BadChunk));
        let mut c = chunks[0].clone();
        c[5..9].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(fresh().push(&c), Err(ProtoError::BadChunk));
        // A short non-final chunk.
        let mut r = fresh();
        assert_eq!(r.push(&chunks[0][..chunks[0].len() - 1]), Err(ProtoError::BadChunk));
        // A count changing mid-message.
        let mut r = fresh();
        r.push(&chunks[0]).unwrap();
        let mut c = chunks[1].clone();
        c[5..9].copy_from_slice(&5u32.to_be_bytes());
        assert_eq!(r.push(&c), Err(ProtoError::BadChunk));
    }

    #[test]
    fn bounds_are_enforced_from_the_first_chunk() {
        let cap = chunk_capacity(size()).unwrap();
        // A node may send no more than an upload: a message a chunk longer is refused at once.
        let big = to_chunks(&Message::UploadDescriptor(vec![1; MAX_REQUEST_LEN + cap]), size()).unwrap();
        let mut r = Reassembler::new(size(), MAX_REQUEST_LEN).unwrap();
        assert_eq!(r.push(&big[0]), Err(ProtoError::TooLarge));
        // One byte over is refused when the excess arrives.
        let over = to_chunks(&Message::UploadDescriptor(vec![1; MAX_REQUEST_LEN]), size()).unwrap();
        let mut r = Reassembler::new(size(), MAX_REQUEST_LEN).unwrap();
        let results: Vec<_> = over.iter().map(|c| r.push(c)).collect();
        assert_eq!(results.last(), Some(&Err(ProtoError::TooLarge)));
        assert!(results[..results.len() - 1].iter().all(|x| *x == Ok(None)));
        // A huge announced count is refused before anything is buffered.
        let mut c = big[0].clone();
        c[5..9].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(Reassembler::new(size(), MAX_MESSAGE_LEN).unwrap().push(&c), Err(ProtoError::TooLarge));
        // Exactly at the bound is fine.
        let ok = Message::UploadDescriptor(vec![1; MAX_REQUEST_LEN - 1]);
        let mut r = Reassembler::new(size(), MAX_REQUEST_LEN).unwrap();
        let mut got = None;
        for c in to_chunks(&ok, size()).unwrap() {
            got = r.push(&c).unwrap();
        }
        assert_eq!(got, Some(ok));
        assert!(MAX_REQUEST_LEN > cap);
    }
}
