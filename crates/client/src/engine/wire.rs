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
//! ```
//!
//! Kinds 2, 4 and 5 were ROUTE, GROUP_JOIN and GROUP_WELCOME before routes carried a seal key;
//! they are refused as from an older Qanat.
//!
//! ```text
//! ```
//!
//! `seq` counts a member's TEXTs in one conversation; `epoch` is the MLS epoch it was encrypted
//! in and `prev_epoch` the epoch of the same member's previous TEXT. A receiver that joined at
//! epoch J delivers a member's TEXTs in `seq` order, and knows that a TEXT whose `prev_epoch` is
//! below J (or none) is the first it can ever read from that member.

use crate::invite::MAX_KEY_PACKAGE_LEN;

/// Longest text of one message, in bytes.
pub const MAX_TEXT_LEN: usize = 64 * 1024;
/// Longest group name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest Welcome carried, in bytes.
pub const MAX_WELCOME_LEN: usize = 1 << 22;
/// Most members listed in a GROUP_WELCOME.
pub const MAX_ROSTER: usize = 4096;

const OUTER_ANSWER: u8 = 1;
const OUTER_WELCOME: u8 = 2;
const OUTER_MLS: u8 = 3;

const TEXT: u8 = 1;
const ROUTE: u8 = 6;
const GROUP_INVITE: u8 = 3;
const GROUP_JOIN: u8 = 7;
const GROUP_WELCOME: u8 = 8;
/// Kinds of the format before routes carried a seal key.
const OLD_KINDS: [u8; 3] = [2, 4, 5];

/// A message the engine could not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed engine message: {0}")]
pub struct Malformed(pub &'static str);

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
    /// Its bytes.
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
        let (&kind, body) = b.split_first().ok_or(Malformed("empty"))?;
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
}

impl Content {
    /// Its bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        match self {
            Self::Text { seq, epoch, prev_epoch, sent_at_ms, text } => {
                v.push(TEXT);
                v.extend_from_slice(&seq.to_be_bytes());
                v.extend_from_slice(&epoch.to_be_bytes());
                v.extend_from_slice(&prev_epoch.unwrap_or(u64::MAX).to_be_bytes());
                v.extend_from_slice(&sent_at_ms.to_be_bytes());
                put32(&mut v, text.as_bytes());
            }
            Self::Route(r) => {
                v.push(ROUTE);
                put_route(&mut v, r);
            }
            Self::GroupInvite { token, name } => {
                v.push(GROUP_INVITE);
                v.extend_from_slice(token);
                put16(&mut v, name.as_bytes());
            }
            Self::GroupJoin { token, gateway, mailbox, seal, key_package } => {
                v.push(GROUP_JOIN);
                v.extend_from_slice(token);
                v.extend_from_slice(gateway);
                v.extend_from_slice(mailbox);
                v.extend_from_slice(seal);
                put32(&mut v, key_package);
            }
            Self::GroupWelcome { token, name, welcome, roster } => {
                v.push(GROUP_WELCOME);
                v.extend_from_slice(token);
                put16(&mut v, name.as_bytes());
                put32(&mut v, welcome);
                v.extend_from_slice(&(roster.len().min(MAX_ROSTER) as u16).to_be_bytes());
                for r in roster.iter().take(MAX_ROSTER) {
                    put_route(&mut v, r);
                }
            }
        }
        v
    }

    /// Reads [`Content::encode`]'s bytes.
    pub fn decode(b: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader(b);
        let c = match r.u8()? {
            TEXT => {
                let seq = r.u64()?;
                let epoch = r.u64()?;
                let prev = r.u64()?;
                let sent_at_ms = r.u64()?;
                let text = r.string32(MAX_TEXT_LEN)?;
                Self::Text { seq, epoch, prev_epoch: (prev != u64::MAX).then_some(prev), sent_at_ms, text }
            }
            ROUTE => Self::Route(r.route()?),
            GROUP_INVITE => Self::GroupInvite { token: r.array()?, name: r.string16(MAX_NAME_LEN)? },
            GROUP_JOIN => Self::GroupJoin {
                token: r.array()?,
                gateway: r.array()?,
                mailbox: r.array()?,
                seal: r.array()?,
                key_package: r.bytes32(MAX_KEY_PACKAGE_LEN)?.to_vec(),
            },
            GROUP_WELCOME => {
                let token = r.array()?;
                let name = r.string16(MAX_NAME_LEN)?;
                let welcome = r.bytes32(MAX_WELCOME_LEN)?.to_vec();
                let n = usize::from(r.u16()?);
                if n > MAX_ROSTER {
                    return Err(Malformed("roster too long"));
                }
                let roster = (0..n).map(|_| r.route()).collect::<Result<Vec<_>, _>>()?;
                Self::GroupWelcome { token, name, welcome, roster }
            }
            k if OLD_KINDS.contains(&k) => return Err(Malformed("a route of an older Qanat (no seal key)")),
            _ => return Err(Malformed("unknown content kind")),
        };
        if !r.0.is_empty() {
            return Err(Malformed("trailing bytes"));
        }
        Ok(c)
    }
}

fn put16(v: &mut Vec<u8>, b: &[u8]) {
    let b = &b[..b.len().min(usize::from(u16::MAX))];
    v.extend_from_slice(&(b.len() as u16).to_be_bytes());
    v.extend_from_slice(b);
}

fn put32(v: &mut Vec<u8>, b: &[u8]) {
    v.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
    v.extend_from_slice(b);
}

fn put_route(v: &mut Vec<u8>, r: &RouteEntry) {
    v.extend_from_slice(&r.member);
    v.extend_from_slice(&r.gateway);
    v.extend_from_slice(&r.mailbox);
    v.extend_from_slice(&r.seal);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let (h, t) = self.0.split_at_checked(n).ok_or(Malformed("truncated"))?;
        self.0 = t;
        Ok(h)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        self.take(N)?.try_into().map_err(|_| Malformed("truncated"))
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn bytes32(&mut self, max: usize) -> Result<&'a [u8], Malformed> {
        let n = u32::from_be_bytes(self.array()?) as usize;
        if n > max {
            return Err(Malformed("field too long"));
        }
        self.take(n)
    }

    fn string16(&mut self, max: usize) -> Result<String, Malformed> {
        let n = usize::from(self.u16()?);
        if n > max {
            return Err(Malformed("name too long"));
        }
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| Malformed("not UTF-8"))
    }

    fn string32(&mut self, max: usize) -> Result<String, Malformed> {
        String::from_utf8(self.bytes32(max)?.to_vec()).map_err(|_| Malformed("not UTF-8"))
    }

    fn route(&mut self) -> Result<RouteEntry, Malformed> {
        Ok(RouteEntry {
            member: self.array()?,
            gateway: self.array()?,
            mailbox: self.array()?,
            seal: self.array()?,
        })
    }
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
        ];
        for c in all {
            let b = c.encode();
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

    #[test]
    fn routes_of_the_format_before_seal_keys_are_refused_by_name() {
        // ROUTE of format 1: kind 2 ‖ member ‖ gateway ‖ mailbox.
        let mut old = vec![2u8];
        old.extend_from_slice(&[1; 96]);
        assert_eq!(Content::decode(&old), Err(Malformed("a route of an older Qanat (no seal key)")));
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic_and_round_trip(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(c) = Content::decode(&b) {
                prop_assert_eq!(c.encode(), b.clone());
            }
            if let Ok(o) = Outer::decode(&b) {
                prop_assert_eq!(o.encode(), b);
            }
        }
    }
}
