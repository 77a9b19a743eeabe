//! The two formats of the engine, both strict (exact lengths, known kinds, no trailing bytes) so
//! that whatever decodes re-encodes to the same bytes.
//!
//! # Outer message: what the outbox carries to a mailbox
//!
//! ```text
//! outer = kind u8 ‖ bytes
//!   kind 1 ANSWER   an invitation's answer (encrypted by `invite`), to the invitation's mailbox
//!   kind 2 WELCOME  an MLS Welcome (encrypted to the KeyPackage), to the accepter's mailbox
//!   kind 3 MLS      an MLS PrivateMessage of the conversation that owns the mailbox
//! ```
//!
//! Every packet's payload is sealed to the mailbox's owner (`qanat_mixnet::sending::seal`), and
//! everything here is end-to-end encrypted besides; nothing in clear names a conversation or a
//! person.
//!
//! # Content: the plaintext of an MLS application message
//!
//! ```text
//! TEXT          = 1 ‖ seq u64 ‖ epoch u64 ‖ prev_epoch u64 (u64::MAX: none) ‖ sent_at u64 (Unix ms) ‖ u32 len ‖ UTF-8
//! ROUTE         = 6 ‖ member (32) ‖ gateway (32) ‖ mailbox (32) ‖ seal key (32)
//! GROUP_INVITE  = 3 ‖ token (16) ‖ u16 len ‖ group name (UTF-8)
//! GROUP_JOIN    = 7 ‖ token (16) ‖ gateway (32) ‖ mailbox (32) ‖ seal key (32) ‖ u32 len ‖ KeyPackage
//! GROUP_WELCOME = 8 ‖ token (16) ‖ u16 len ‖ group name ‖ u32 len ‖ Welcome ‖ u16 n ‖ n × (member ‖ gateway ‖ mailbox ‖ seal key)
//! FILE          = 9 ‖ sent_at u64 ‖ transfer (16) ‖ kind u8 ‖ u8 len ‖ name ‖ u8 len ‖ MIME type ‖ size u64
//!                   ‖ duration_ms u32 ‖ shard u16 ‖ file key (32) ‖ transfer key (32) ‖ digest (32) ‖ u16 len ‖ caption
//! FILE_STATUS   = 10 ‖ transfer (16) ‖ status u8
//! ```
//!
//! A FILE offers a file (docs/ATTACHMENTS.md): `kind` 0 a file, 1 a voice note, 2 an image; the
//! name (UTF-8, at most [`MAX_FILE_NAME`] bytes, no control characters or path separators) and
//! MIME type (printable ASCII, at most [`MAX_MIME`]) are the sender's words, shown, never
//! trusted; `shard` is the network's shard length the plan was made for; the file key and the
//! transfer's Ed25519 public key decrypt and check its chunks; the digest is
//! `SHA-256("qanat-file v1" ‖ file key ‖ file)`. It carries no `seq`: a FILE that a member
//! refuses must never hold back the sender's later TEXTs. FILE_STATUS answers it, sent to the
//! file's sender alone: 0 accepted (send the chunks), 1 declined, 2 complete (the whole file
//! arrived and checked), 3 cancelled (by the sender, to every recipient).
//!
//! Kinds 2, 4 and 5 were ROUTE, GROUP_JOIN and GROUP_WELCOME before routes carried a seal key;
//! they are refused as from an older Qanat.
//!
//! `seq` counts a member's TEXTs in one conversation; `epoch` is the MLS epoch it was encrypted
//! in and `prev_epoch` the epoch of the same member's previous TEXT. A receiver that joined at
//! epoch J delivers a member's TEXTs in `seq` order, and knows that a TEXT whose `prev_epoch` is
//! below J (or none) is the first it can ever read from that member.
//!
//! Both formats are read and written with `qanat_codec`. Every length-prefixed field has a limit
//! (the `MAX_*` constants) that the decoder enforces, and [`Content::encode`] refuses, as
//! [`TooLong`], a content with a field over its limit: what it encodes always decodes, and
//! nothing is ever cut to fit.

use std::fmt;

use qanat_codec::{DecodeError, Reader, Writer};
use zeroize::Zeroize as _;

use crate::invite::MAX_KEY_PACKAGE_LEN;

/// Longest text of one message, in bytes.
pub const MAX_TEXT_LEN: usize = 64 * 1024;
/// Longest group name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest Welcome carried, in bytes.
pub const MAX_WELCOME_LEN: usize = 1 << 22;
/// Most members listed in a GROUP_WELCOME.
pub const MAX_ROSTER: usize = 4096;
/// Longest file name, in bytes.
pub const MAX_FILE_NAME: usize = 255;
/// Longest MIME type, in bytes.
pub const MAX_MIME: usize = 64;
/// Longest caption of a file, in bytes.
pub const MAX_CAPTION: usize = 1024;

// The kind bytes of this module's two formats (the first byte of each, as in `qanat-link`'s
// frames: the tables look alike, the formats share nothing).
const OUTER_ANSWER: u8 = 1;
const OUTER_WELCOME: u8 = 2;
const OUTER_MLS: u8 = 3;

const TEXT: u8 = 1;
const ROUTE: u8 = 6;
const GROUP_INVITE: u8 = 3;
const GROUP_JOIN: u8 = 7;
const GROUP_WELCOME: u8 = 8;
const FILE: u8 = 9;
const FILE_STATUS: u8 = 10;
/// Kinds of the format before routes carried a seal key.
const OLD_KINDS: [u8; 3] = [2, 4, 5];

/// A message the engine could not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed engine message: {0}")]
pub struct Malformed(pub &'static str);

impl From<DecodeError> for Malformed {
    fn from(e: DecodeError) -> Self {
        Self(e.reason())
    }
}

/// A content the format cannot carry: one of its fields is longer than the format's limit (which
/// every decoder would refuse). Nothing was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("engine message not encoded: {0}")]
pub struct TooLong(pub &'static str);

/// What the outbox carries to a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outer {
    /// An invitation's answer.
    Answer(Vec<u8>),
    /// An MLS Welcome.
    Welcome(Vec<u8>),
    /// An MLS message.
    Mls(Vec<u8>),
}

impl Outer {
    /// Its bytes. (No length prefix: the body runs to the end, so nothing can be too long.)
    pub fn encode(&self) -> Vec<u8> {
        let (kind, body) = match self {
            Self::Answer(b) => (OUTER_ANSWER, b),
            Self::Welcome(b) => (OUTER_WELCOME, b),
            Self::Mls(b) => (OUTER_MLS, b),
        };
        let mut v = Vec::with_capacity(1 + body.len());
        v.push(kind);
        v.extend_from_slice(body);
        v
    }

    /// Reads [`Outer::encode`]'s bytes.
    pub fn decode(b: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(b);
        let kind = r.u8().map_err(|_| Malformed("empty"))?;
        let body = r.rest();
        if body.is_empty() {
            return Err(Malformed("empty body"));
        }
        let body = body.to_vec();
        match kind {
            OUTER_ANSWER => Ok(Self::Answer(body)),
            OUTER_WELCOME => Ok(Self::Welcome(body)),
            OUTER_MLS => Ok(Self::Mls(body)),
            _ => Err(Malformed("unknown kind")),
        }
    }
}

/// Where a member receives a conversation's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteEntry {
    /// The member (its per-conversation key).
    pub member: [u8; 32],
    /// Its gateway.
    pub gateway: [u8; 32],
    /// Its mailbox for this conversation.
    pub mailbox: [u8; 32],
    /// The key that seals what is written into that mailbox.
    pub seal: [u8; 32],
}

impl RouteEntry {
    fn encode_into(&self, w: &mut Writer) {
        w.raw(&self.member);
        w.raw(&self.gateway);
        w.raw(&self.mailbox);
        w.raw(&self.seal);
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, Malformed> {
        Ok(Self { member: r.array()?, gateway: r.array()?, mailbox: r.array()?, seal: r.array()? })
    }
}

/// What a file is, as its sender calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// Any file.
    File,
    /// A voice note.
    Voice,
    /// An image.
    Image,
}

impl FileKind {
    fn byte(self) -> u8 {
        match self {
            Self::File => 0,
            Self::Voice => 1,
            Self::Image => 2,
        }
    }

    fn from_byte(b: u8) -> Result<Self, Malformed> {
        Ok(match b {
            0 => Self::File,
            1 => Self::Voice,
            2 => Self::Image,
            _ => return Err(Malformed("unknown file kind")),
        })
    }

    /// Its name in the interfaces.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Voice => "voice",
            Self::Image => "image",
        }
    }
}

/// A file offered in a conversation (FILE).
#[derive(Clone, PartialEq, Eq)]
pub struct FileOffer {
    /// When the sender sent it (Unix ms, the sender's clock).
    pub sent_at_ms: u64,
    /// The transfer.
    pub transfer: [u8; 16],
    /// What it is.
    pub kind: FileKind,
    /// Its name.
    pub name: String,
    /// Its MIME type.
    pub mime: String,
    /// Its size in bytes.
    pub size: u64,
    /// A voice note's length (ms), else 0.
    pub duration_ms: u32,
    /// The shard length its plan is for.
    pub shard: u16,
    /// The key its bytes are encrypted under.
    pub file_key: [u8; 32],
    /// The transfer's Ed25519 public key, which signs its chunks.
    pub transfer_key: [u8; 32],
    /// `SHA-256("qanat-file v1" ‖ file key ‖ file)`.
    pub digest: [u8; 32],
    /// The sender's words with it.
    pub caption: String,
}

impl fmt::Debug for FileOffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileOffer")
            .field("kind", &self.kind)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Drop for FileOffer {
    fn drop(&mut self) {
        self.file_key.zeroize();
    }
}

/// A recipient's (or the sender's) word on a file (FILE_STATUS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    /// Send the chunks.
    Accepted,
    /// The recipient does not want it.
    Declined,
    /// The whole file arrived and checked.
    Complete,
    /// The sender stopped it.
    Cancelled,
}

impl FileStatus {
    fn byte(self) -> u8 {
        match self {
            Self::Accepted => 0,
            Self::Declined => 1,
            Self::Complete => 2,
            Self::Cancelled => 3,
        }
    }

    fn from_byte(b: u8) -> Result<Self, Malformed> {
        Ok(match b {
            0 => Self::Accepted,
            1 => Self::Declined,
            2 => Self::Complete,
            3 => Self::Cancelled,
            _ => return Err(Malformed("unknown file status")),
        })
    }
}

/// Whether `name` may name a file: non-empty, no control or bidirectional-override character, no
/// path separator, not `.` or `..`.
pub fn file_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.chars().any(|c| {
            c.is_control() || c == '/' || c == '\\' || matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
}

fn mime_ok(mime: &str) -> bool {
    !mime.is_empty() && mime.bytes().all(|b| b.is_ascii_graphic())
}

/// The plaintext of an MLS application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A user's message.
    Text {
        /// The sender's count of its TEXTs in this conversation.
        seq: u64,
        /// The MLS epoch it was encrypted in.
        epoch: u64,
        /// The epoch of the sender's previous TEXT here, if any.
        prev_epoch: Option<u64>,
        /// When the sender sent it (Unix ms, the sender's clock).
        sent_at_ms: u64,
        /// The text.
        text: String,
    },
    /// Where a member receives this conversation's messages.
    Route(RouteEntry),
    /// "Join my group": asks the contact for a KeyPackage and a mailbox.
    GroupInvite {
        /// Matches the answer.
        token: [u8; 16],
        /// The group's name (a suggestion; each member names it locally).
        name: String,
    },
    /// The answer to [`Content::GroupInvite`].
    GroupJoin {
        /// The invite's token.
        token: [u8; 16],
        /// The joiner's gateway.
        gateway: [u8; 32],
        /// The joiner's mailbox for the group.
        mailbox: [u8; 32],
        /// The key that seals what is written into that mailbox.
        seal: [u8; 32],
        /// Its KeyPackage.
        key_package: Vec<u8>,
    },
    /// The group's Welcome, and where every member receives.
    GroupWelcome {
        /// The invite's token.
        token: [u8; 16],
        /// The group's name.
        name: String,
        /// The MLS Welcome.
        welcome: Vec<u8>,
        /// Every member's route.
        roster: Vec<RouteEntry>,
    },
    /// A file offered.
    File(Box<FileOffer>),
    /// A word on a file.
    FileStatus {
        /// The transfer.
        transfer: [u8; 16],
        /// The word.
        status: FileStatus,
    },
}

impl Content {
    /// Its bytes, or [`TooLong`] if a field is over its limit ([`MAX_TEXT_LEN`],
    /// [`MAX_NAME_LEN`], [`MAX_WELCOME_LEN`], [`MAX_KEY_PACKAGE_LEN`], [`MAX_ROSTER`]).
    pub fn encode(&self) -> Result<Vec<u8>, TooLong> {
        let mut w = Writer::new();
        match self {
            Self::Text { seq, epoch, prev_epoch, sent_at_ms, text } => {
                w.u8(TEXT);
                w.u64(*seq);
                w.u64(*epoch);
                w.u64(prev_epoch.unwrap_or(u64::MAX));
                w.u64(*sent_at_ms);
                w.bytes32(within(text.as_bytes(), MAX_TEXT_LEN, "text too long")?);
            }
            Self::Route(r) => {
                w.u8(ROUTE);
                r.encode_into(&mut w);
            }
            Self::GroupInvite { token, name } => {
                w.u8(GROUP_INVITE);
                w.raw(token);
                w.bytes16(within(name.as_bytes(), MAX_NAME_LEN, "group name too long")?);
            }
            Self::GroupJoin { token, gateway, mailbox, seal, key_package } => {
                w.u8(GROUP_JOIN);
                w.raw(token);
                w.raw(gateway);
                w.raw(mailbox);
                w.raw(seal);
                w.bytes32(within(key_package, MAX_KEY_PACKAGE_LEN, "key package too long")?);
            }
            Self::GroupWelcome { token, name, welcome, roster } => {
                w.u8(GROUP_WELCOME);
                w.raw(token);
                w.bytes16(within(name.as_bytes(), MAX_NAME_LEN, "group name too long")?);
                w.bytes32(within(welcome, MAX_WELCOME_LEN, "welcome too long")?);
                w.count16(within(roster, MAX_ROSTER, "roster too long")?.len());
                for r in roster {
                    r.encode_into(&mut w);
                }
            }
            Self::File(f) => {
                if !file_name_ok(&f.name) {
                    return Err(TooLong("a file name that is not a name"));
                }
                if !mime_ok(&f.mime) {
                    return Err(TooLong("a MIME type that is not one"));
                }
                w.u8(FILE);
                w.u64(f.sent_at_ms);
                w.raw(&f.transfer);
                w.u8(f.kind.byte());
                w.bytes8(within(f.name.as_bytes(), MAX_FILE_NAME, "file name too long")?);
                w.bytes8(within(f.mime.as_bytes(), MAX_MIME, "MIME type too long")?);
                w.u64(f.size);
                w.u32(f.duration_ms);
                w.u16(f.shard);
                w.raw(&f.file_key);
                w.raw(&f.transfer_key);
                w.raw(&f.digest);
                w.bytes16(within(f.caption.as_bytes(), MAX_CAPTION, "caption too long")?);
            }
            Self::FileStatus { transfer, status } => {
                w.u8(FILE_STATUS);
                w.raw(transfer);
                w.u8(status.byte());
            }
        }
        // Every limit above fits its prefix (the largest, `MAX_WELCOME_LEN`, is far below
        // `u32::MAX`), so the writer refuses nothing the checks let through; were it to, the
        // content would still not be encoded.
        w.finish().map_err(|_| TooLong("a field too long for its length prefix"))
    }

    /// Reads [`Content::encode`]'s bytes.
    pub fn decode(b: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(b);
        let c = match r.u8()? {
            TEXT => {
                let seq = r.u64()?;
                let epoch = r.u64()?;
                let prev = r.u64()?;
                let sent_at_ms = r.u64()?;
                let text = utf8(r.bytes32(MAX_TEXT_LEN, "text too long")?)?;
                Self::Text { seq, epoch, prev_epoch: (prev != u64::MAX).then_some(prev), sent_at_ms, text }
            }
            ROUTE => Self::Route(RouteEntry::decode_from(&mut r)?),
            GROUP_INVITE => Self::GroupInvite {
                token: r.array()?,
                name: utf8(r.bytes16(MAX_NAME_LEN, "group name too long")?)?,
            },
            GROUP_JOIN => Self::GroupJoin {
                token: r.array()?,
                gateway: r.array()?,
                mailbox: r.array()?,
                seal: r.array()?,
                key_package: r.bytes32(MAX_KEY_PACKAGE_LEN, "key package too long")?.to_vec(),
            },
            GROUP_WELCOME => {
                let token = r.array()?;
                let name = utf8(r.bytes16(MAX_NAME_LEN, "group name too long")?)?;
                let welcome = r.bytes32(MAX_WELCOME_LEN, "welcome too long")?.to_vec();
                let n = r.count16(MAX_ROSTER, "roster too long")?;
                let roster =
                    (0..n).map(|_| RouteEntry::decode_from(&mut r)).collect::<Result<Vec<_>, _>>()?;
                Self::GroupWelcome { token, name, welcome, roster }
            }
            FILE => {
                let sent_at_ms = r.u64()?;
                let transfer = r.array()?;
                let kind = FileKind::from_byte(r.u8()?)?;
                let name = utf8(r.bytes8(MAX_FILE_NAME, "file name too long")?)?;
                let mime = utf8(r.bytes8(MAX_MIME, "MIME type too long")?)?;
                if !file_name_ok(&name) {
                    return Err(Malformed("a file name that is not a name"));
                }
                if !mime_ok(&mime) {
                    return Err(Malformed("a MIME type that is not one"));
                }
                let f = FileOffer {
                    sent_at_ms,
                    transfer,
                    kind,
                    name,
                    mime,
                    size: r.u64()?,
                    duration_ms: r.u32()?,
                    shard: r.u16()?,
                    file_key: r.array()?,
                    transfer_key: r.array()?,
                    digest: r.array()?,
                    caption: utf8(r.bytes16(MAX_CAPTION, "caption too long")?)?,
                };
                Self::File(Box::new(f))
            }
            FILE_STATUS => Self::FileStatus { transfer: r.array()?, status: FileStatus::from_byte(r.u8()?)? },
            k if OLD_KINDS.contains(&k) => return Err(Malformed("a route of an older Qanat (no seal key)")),
            _ => return Err(Malformed("unknown content kind")),
        };
        r.finish()?;
        Ok(c)
    }
}

/// `field` if it has at most `max` items, else [`TooLong`] naming it.
fn within<'a, T>(field: &'a [T], max: usize, what: &'static str) -> Result<&'a [T], TooLong> {
    if field.len() > max { Err(TooLong(what)) } else { Ok(field) }
}

fn utf8(b: &[u8]) -> Result<String, Malformed> {
    String::from_utf8(b.to_vec()).map_err(|_| Malformed("not UTF-8"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let route = RouteEntry { member: [1; 32], gateway: [2; 32], mailbox: [3; 32], seal: [9; 32] };
        let all = [
            Content::Text { seq: 7, epoch: 3, prev_epoch: None, sent_at_ms: 99, text: "héllo".into() },
            Content::Text { seq: 8, epoch: 3, prev_epoch: Some(2), sent_at_ms: 100, text: String::new() },
            Content::Route(route),
            Content::GroupInvite { token: [4; 16], name: "field team".into() },
            Content::GroupJoin {
                token: [4; 16],
                gateway: [5; 32],
                mailbox: [6; 32],
                seal: [8; 32],
                key_package: vec![7; 300],
            },
            Content::GroupWelcome {
                token: [4; 16],
                name: "g".into(),
                welcome: vec![8; 10],
                roster: vec![route; 3],
            },
            Content::File(Box::new(offer())),
            Content::FileStatus { transfer: [5; 16], status: FileStatus::Complete },
        ];
        for c in all {
            let b = c.encode().unwrap();
            assert_eq!(Content::decode(&b).unwrap(), c);
            assert!(Content::decode(&b[..b.len() - 1]).is_err());
            let mut longer = b.clone();
            longer.push(0);
            assert!(Content::decode(&longer).is_err());
        }
        for o in [Outer::Answer(vec![1]), Outer::Welcome(vec![2, 3]), Outer::Mls(vec![4; 100])] {
            assert_eq!(Outer::decode(&o.encode()).unwrap(), o);
        }
        assert!(Outer::decode(&[]).is_err());
        assert!(Outer::decode(&[3]).is_err());
        assert!(Outer::decode(&[9, 1]).is_err());
    }

    fn offer() -> FileOffer {
        FileOffer {
            sent_at_ms: 99,
            transfer: [1; 16],
            kind: FileKind::Voice,
            name: "note.webm".into(),
            mime: "audio/webm".into(),
            size: 90_000,
            duration_ms: 30_000,
            shard: 1450,
            file_key: [2; 32],
            transfer_key: [3; 32],
            digest: [4; 32],
            caption: "héllo".into(),
        }
    }

    #[test]
    fn file_offers_are_pinned_and_names_checked() {
        let b = Content::File(Box::new(offer())).encode().unwrap();
        assert_eq!(
            hex(&b),
            concat!(
                "09",
                "0000000000000063",                 // sent at
                "01010101010101010101010101010101", // transfer
                "01",                               // voice
                "09",
                "6e6f74652e7765626d", // note.webm
                "0a",
                "617564696f2f7765626d", // audio/webm
                "0000000000015f90",     // size
                "00007530",             // duration
                "05aa",                 // shard
                "0202020202020202020202020202020202020202020202020202020202020202",
                "0303030303030303030303030303030303030303030303030303030303030303",
                "0404040404040404040404040404040404040404040404040404040404040404",
                "0006",
                "68c3a96c6c6f",
            )
        );
        let st = Content::FileStatus { transfer: [5; 16], status: FileStatus::Accepted }.encode().unwrap();
        assert_eq!(hex(&st), "0a0505050505050505050505050505050500");
        for bad in ["", ".", "..", "a/b", "a\\b", "x\u{202e}gpj.exe", "a\nb", "\u{200f}x"] {
            let mut f = offer();
            f.name = bad.into();
            assert!(Content::File(Box::new(f)).encode().is_err(), "{bad:?}");
        }
        // A name that would not encode is refused on reading too.
        let mut evil = b.clone();
        evil[27] = b'/';
        assert_eq!(Content::decode(&evil), Err(Malformed("a file name that is not a name")));
        assert!(Content::decode(&[10, 0]).is_err());
        let mut st4 = st.clone();
        st4[17] = 4;
        assert_eq!(Content::decode(&st4), Err(Malformed("unknown file status")));
        assert!(format!("{:?}", offer()).find("02, 02").is_none(), "no key in Debug");
    }

    #[test]
    fn routes_of_the_format_before_seal_keys_are_refused_by_name() {
        // ROUTE of format 1: kind 2 ‖ member ‖ gateway ‖ mailbox.
        let mut old = vec![2u8];
        old.extend_from_slice(&[1; 96]);
        assert_eq!(Content::decode(&old), Err(Malformed("a route of an older Qanat (no seal key)")));
    }

    // The bytes of each case below, field by field, as the encoder before `qanat_codec` wrote them.
    const KAT_TEXT_0: &str = concat!(
        "01",
        "0000000000000007",
        "0000000000000003",
        "ffffffffffffffff",
        "0000000000000063",
        "00000006",
        "68c3a96c6c6f",
    );

    const KAT_TEXT_1: &str = concat!(
        "01",
        "0102030405060708",
        "fffffffffffffffe",
        "0000000000000002",
        "0000018bcfe5687b",
        "00000000",
    );

    const KAT_ROUTE: &str = concat!(
        "06",
        "0101010101010101010101010101010101010101010101010101010101010101",
        "0202020202020202020202020202020202020202020202020202020202020202",
        "0303030303030303030303030303030303030303030303030303030303030303",
        "0909090909090909090909090909090909090909090909090909090909090909",
    );

    const KAT_INVITE: &str =
        concat!("03", "04040404040404040404040404040404", "000a", "6669656c64207465616d",);

    const KAT_JOIN: &str = concat!(
        "07",
        "04040404040404040404040404040404",
        "0505050505050505050505050505050505050505050505050505050505050505",
        "0606060606060606060606060606060606060606060606060606060606060606",
        "0808080808080808080808080808080808080808080808080808080808080808",
        "00000003",
        "070707",
    );

    const KAT_WELCOME_0: &str = concat!(
        "08",
        "04040404040404040404040404040404",
        "0001",
        "67",
        "0000000a",
        "08080808080808080808",
        "0002",
        "0101010101010101010101010101010101010101010101010101010101010101",
        "0202020202020202020202020202020202020202020202020202020202020202",
        "0303030303030303030303030303030303030303030303030303030303030303",
        "0909090909090909090909090909090909090909090909090909090909090909",
        "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
        "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2",
        "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3",
        "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4",
    );

    const KAT_WELCOME_1: &str =
        concat!("08", "00000000000000000000000000000000", "0000", "00000000", "0000",);

    /// Hex of `b`.
    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn every_kind_encodes_to_the_bytes_of_the_encoder_before_qanat_codec() {
        // Known answers: the bytes the hand-written encoder (before the port to `qanat_codec`)
        // produced for each kind. The format must not change under a valid content.
        let route = RouteEntry { member: [1; 32], gateway: [2; 32], mailbox: [3; 32], seal: [9; 32] };
        let other =
            RouteEntry { member: [0xa1; 32], gateway: [0xb2; 32], mailbox: [0xc3; 32], seal: [0xd4; 32] };
        let cases = [
            (
                Content::Text {
                    seq: 7,
                    epoch: 3,
                    prev_epoch: None,
                    sent_at_ms: 99,
                    text: "h\u{e9}llo".into(),
                },
                KAT_TEXT_0,
            ),
            (
                Content::Text {
                    seq: 0x0102_0304_0506_0708,
                    epoch: u64::MAX - 1,
                    prev_epoch: Some(2),
                    sent_at_ms: 1_700_000_000_123,
                    text: String::new(),
                },
                KAT_TEXT_1,
            ),
            (Content::Route(route), KAT_ROUTE),
            (Content::GroupInvite { token: [4; 16], name: "field team".into() }, KAT_INVITE),
            (
                Content::GroupJoin {
                    token: [4; 16],
                    gateway: [5; 32],
                    mailbox: [6; 32],
                    seal: [8; 32],
                    key_package: vec![7; 3],
                },
                KAT_JOIN,
            ),
            (
                Content::GroupWelcome {
                    token: [4; 16],
                    name: "g".into(),
                    welcome: vec![8; 10],
                    roster: vec![route, other],
                },
                KAT_WELCOME_0,
            ),
            (
                Content::GroupWelcome {
                    token: [0; 16],
                    name: String::new(),
                    welcome: Vec::new(),
                    roster: Vec::new(),
                },
                KAT_WELCOME_1,
            ),
        ];
        for (c, expected) in cases {
            assert_eq!(hex(&c.encode().unwrap()), expected, "{c:?}");
        }
    }

    #[test]
    fn a_content_over_a_limit_is_refused_not_cut() {
        // Regression: the hand-written encoder cut a name of more than 65,535 bytes to fit its
        // two-byte length and listed only the first MAX_ROSTER routes of a longer roster: a
        // wrong message, sent without a word. Whatever is over a limit is now refused whole.
        let welcome = |name: String, welcome: Vec<u8>, n: usize| Content::GroupWelcome {
            token: [4; 16],
            name,
            welcome,
            roster: vec![
                RouteEntry { member: [1; 32], gateway: [2; 32], mailbox: [3; 32], seal: [9; 32] };
                n
            ],
        };
        let text = |len: usize| Content::Text {
            seq: 1,
            epoch: 1,
            prev_epoch: None,
            sent_at_ms: 1,
            text: "x".repeat(len),
        };
        let join = |len: usize| Content::GroupJoin {
            token: [4; 16],
            gateway: [5; 32],
            mailbox: [6; 32],
            seal: [8; 32],
            key_package: vec![7; len],
        };
        let refused = [
            (welcome(String::new(), Vec::new(), MAX_ROSTER + 1), "roster too long"),
            (welcome("n".repeat(usize::from(u16::MAX) + 1), Vec::new(), 1), "group name too long"),
            (welcome("n".repeat(MAX_NAME_LEN + 1), Vec::new(), 1), "group name too long"),
            (welcome(String::new(), vec![8; MAX_WELCOME_LEN + 1], 1), "welcome too long"),
            (
                Content::GroupInvite { token: [4; 16], name: "n".repeat(MAX_NAME_LEN + 1) },
                "group name too long",
            ),
            (text(MAX_TEXT_LEN + 1), "text too long"),
            (join(MAX_KEY_PACKAGE_LEN + 1), "key package too long"),
        ];
        for (c, what) in refused {
            assert_eq!(c.encode(), Err(TooLong(what)));
        }
        // Each limit itself is carried, and reads back whole.
        for c in [
            welcome("n".repeat(MAX_NAME_LEN), vec![8; MAX_WELCOME_LEN], MAX_ROSTER),
            Content::GroupInvite { token: [4; 16], name: "n".repeat(MAX_NAME_LEN) },
            text(MAX_TEXT_LEN),
            join(MAX_KEY_PACKAGE_LEN),
        ] {
            assert_eq!(Content::decode(&c.encode().unwrap()), Ok(c));
        }
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic_and_round_trip(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(c) = Content::decode(&b) {
                prop_assert_eq!(c.encode(), Ok(b.clone()));
            }
            if let Ok(o) = Outer::decode(&b) {
                prop_assert_eq!(o.encode(), b);
            }
        }
    }
}
