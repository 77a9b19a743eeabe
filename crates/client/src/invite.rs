//! One-time invitations: how two people become contacts with no identifier (DESIGN.md P4).
//!
//! The inviter makes a [`PendingInvitation`] and shows its [`Invitation`] as a link
//! (`qanat://invite/<base64url>`) or a QR code. The invitation carries the inviter's gateway, a
//! fresh mailbox made for this invitation only, a one-time X25519 public key and a one-time secret
//! token. Whoever accepts it writes an *answer* into that mailbox (through the network): its own
//! gateway, a fresh mailbox it made for this contact, and its MLS KeyPackage, encrypted to the
//! one-time key. The inviter opens the answer ([`PendingInvitation::open_answer`]), and the
//! invitation is spent. Nothing in either message names a person or a long-term key.
//!
//! # Invitation (version 2, big-endian integers), then base64url without padding
//!
//! ```text
//! version u8 = 2 ‖ expires u64 (Unix ms)
//!   ‖ gateway: node id (32) ‖ u8 len ‖ address ("host:port") ‖ u16 len ‖ link public key (1..=2048)
//!   ‖ mailbox id (32) ‖ one-time X25519 public key (32) ‖ token (32)
//! ```
//!
//! The decoder is strict (exact lengths, known version, a valid address, no trailing bytes), so
//! an invitation that decodes re-encodes to the same bytes, and the same link.
//!
//! What is written into the invitation's mailbox (the answer, then the conversation's messages,
//! since the inviter keeps that mailbox for the contact) is sealed ([`qanat_mixnet::sending::seal`]) under
//! `HKDF-SHA256(salt = mailbox id, ikm = token, info = "qanat-seal v1 invitation")`
//! ([`Invitation::seal_key`]): only whoever holds the link can make or open those items, and the
//! gateway, which never sees the link, stores random bytes. (Version 1 had no seal.)
//!
//! # Answer (version 2)
//!
//! ```text
//! answer    = version u8 = 2 ‖ E (32) ‖ ChaCha20-Poly1305(k, n, plaintext, aad = version ‖ E)
//! k ‖ n     = HKDF-SHA256(salt = token, ikm = X25519(e, A), info = "qanat invite answer v1" ‖ E ‖ A), 32 + 12 bytes
//! plaintext = token (32) ‖ gateway (as above) ‖ mailbox id (32) ‖ seal key (32) ‖ u32 len ‖ KeyPackage
//! ```
//!
//! `A` is the invitation's one-time public key and `e`, `E` a fresh ephemeral key pair. The token
//! is the HKDF salt (like HPKE's PSK mode), so only someone who saw the invitation can make or
//! read an answer: an adversary who records the answer and later breaks X25519 (A6) still lacks
//! the token. The token is also checked inside the plaintext, in constant time.
//!
//! # State in the profile
//!
//! | namespace | key | value |
//! |---|---|---|
//! | [`NS_PENDING`] | the invitation's mailbox id | [`PendingInvitation::encode`] |
//! | [`NS_ANSWERED`] | the invitation's mailbox id | `version u8 = 1 ‖ u64` Unix ms after which the record may go (before row versions, the `u64` alone: still read) |
//! | [`NS_ACCEPTED`] | the inviter's mailbox id | [`Accepted::encode`] |
//!
//! Each record starts with its version; one of a version newer than this code's is refused with
//! [`InviteError::NewerRecord`] (the profile was written by a newer Qanat), never misread.
//!
//! [`create`], [`take_answer`] and [`accept`] each work inside a store [`Transaction`], so a
//! caller can, in the same transaction, create the conversation or queue the answer: either all
//! of it happens or none. A rejected invitation or answer changes nothing.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use qanat_codec::{DecodeError, Reader, Writer};
use qanat_mixnet::sending::seal::SealKey;
use qanat_packet::{MailboxId, NodeId};
use qanat_pki::descriptor::MAX_ADDRESS_LEN;
use qanat_pki::{LinkAddress, MAX_LINK_KEY_LEN, UnixMillis};
use rand_core::CryptoRng;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::store::{StoreError, Transaction};

/// The start of an invitation link.
pub const LINK_PREFIX: &str = "qanat://invite/";
/// The invitation format this code writes and reads.
pub const INVITATION_VERSION: u8 = 2;
/// The answer format this code writes and reads.
pub const ANSWER_VERSION: u8 = 2;
/// How long an invitation can be accepted by default: 7 days.
pub const DEFAULT_VALIDITY_MS: u64 = 7 * 24 * 3600 * 1000;
/// How long after its expiry the inviter keeps a pending invitation, and either side keeps the
/// record of a spent one: the mailbox retention (30 days), so an answer written just before the
/// expiry is still read by an inviter offline for a month.
pub const GRACE_MS: u64 = 30 * 24 * 3600 * 1000;
/// The longest MLS KeyPackage an answer carries.
pub const MAX_KEY_PACKAGE_LEN: usize = 64 * 1024;
/// The longest link [`Invitation::parse`] looks at.
pub const MAX_LINK_LEN: usize = 8 * 1024;
/// Namespace of the inviter's open invitations.
pub const NS_PENDING: &str = "invite.pending";
/// Namespace of the inviter's answered invitations.
pub const NS_ANSWERED: &str = "invite.answered";
/// Namespace of the invitations this profile accepted.
pub const NS_ACCEPTED: &str = "invite.accepted";

const KEY_LEN: usize = 32;
const TOKEN_LEN: usize = 32;
const ANSWER_INFO: &[u8] = b"qanat invite answer v1";
const SEAL_INFO: &[u8] = b"qanat-seal v1 invitation";
const PENDING_VERSION: u8 = 1;
const ACCEPTED_VERSION: u8 = 1;
const ANSWERED_VERSION: u8 = 1;
/// The longest encoded gateway.
const MAX_GATEWAY_LEN: usize = 32 + 1 + MAX_ADDRESS_LEN + 2 + MAX_LINK_KEY_LEN;
/// The longest encoded invitation.
const MAX_INVITATION_LEN: usize = 1 + 8 + MAX_GATEWAY_LEN + 32 + KEY_LEN + TOKEN_LEN;
/// The longest answer: version, ephemeral key, the plaintext and its tag.
const MAX_ANSWER_LEN: usize =
    1 + KEY_LEN + TOKEN_LEN + MAX_GATEWAY_LEN + 32 + 32 + 4 + MAX_KEY_PACKAGE_LEN + 16;

/// Why an invitation or an answer was refused. Each refusal changes nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InviteError {
    /// The text is not an invitation link.
    #[error("not a Qanat invitation (expected {LINK_PREFIX}… or its base64 part)")]
    NotALink,
    /// The invitation's bytes are damaged (a truncated or altered link?).
    #[error("damaged invitation: {0} (was the link cut or altered?)")]
    Malformed(&'static str),
    /// An invitation of a format version this code does not read.
    #[error(
        "this invitation has format version {0}; this Qanat reads version {INVITATION_VERSION} (the invitation was made by another version of Qanat: both sides need a current one)"
    )]
    UnknownVersion(u8),
    /// The invitation has expired.
    #[error("this invitation expired {} s after 1970 (Unix time); ask for a new one", .expired_at.as_secs())]
    Expired {
        /// When it expired.
        expired_at: UnixMillis,
    },
    /// This profile already accepted this invitation.
    #[error("this invitation was already accepted on this profile")]
    AlreadyAccepted,
    /// The inviter already received an answer to this invitation: it is one-time.
    #[error("this invitation was already answered (invitations are one-time)")]
    AlreadyUsed,
    /// No open invitation has this mailbox (never made here, or expired and forgotten).
    #[error("no open invitation for this mailbox (never made on this profile, or expired)")]
    Unknown,
    /// The answer does not open with the invitation's keys (tampered, or for another invitation).
    #[error("the answer does not decrypt with this invitation's keys (tampered, or not for this invitation)")]
    BadAnswer,
    /// The invitation was made by this very profile.
    #[error("this invitation was made by this profile; send it to the person you invite")]
    OwnInvitation,
    /// A gateway's address or link key is invalid.
    #[error("invalid gateway: {0}")]
    InvalidGateway(&'static str),
    /// The KeyPackage is longer than [`MAX_KEY_PACKAGE_LEN`].
    #[error("the KeyPackage has {0} bytes, more than {MAX_KEY_PACKAGE_LEN}")]
    KeyPackageTooLong(usize),
    /// The link is too long for a QR code.
    #[error("the link does not fit in a QR code: {0}")]
    Qr(String),
    /// The profile failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record saved in the profile has a format version this code does not know: the profile
    /// was written by a newer Qanat.
    #[error(
        "this profile was written by a newer Qanat: its {what} record has format version {found}, which this Qanat does not read"
    )]
    NewerRecord {
        /// The kind of record.
        what: &'static str,
        /// Its version.
        found: u8,
    },
}

/// A gateway as an invitation (or its answer) names it, from the directory: its node id, which
/// packets are routed to, its link address (`host:port`, perhaps a name not yet resolved) and its
/// link public key as the descriptor holds it. What a client dials is a
/// [`GatewayAddress`](crate::gateway::GatewayAddress): the address resolved and the key parsed
/// (the runtime makes one for its own gateway, from the network file). `Debug` prints none of it.
#[derive(Clone, PartialEq, Eq)]
pub struct InviteGateway {
    node_id: NodeId,
    address: LinkAddress,
    link_key: Vec<u8>,
}

impl fmt::Debug for InviteGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InviteGateway(..)")
    }
}

impl InviteGateway {
    /// A gateway from its directory entry: node id, address, link public key (opaque here,
    /// 1..=[`MAX_LINK_KEY_LEN`] bytes, as in a descriptor).
    pub fn new(node_id: NodeId, address: LinkAddress, link_key: Vec<u8>) -> Result<Self, InviteError> {
        if link_key.is_empty() || link_key.len() > MAX_LINK_KEY_LEN {
            return Err(InviteError::InvalidGateway("a link key has 1 to 2,048 bytes"));
        }
        Ok(Self { node_id, address, link_key })
    }

    /// The gateway's node id.
    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    /// The gateway's address.
    pub fn address(&self) -> &LinkAddress {
        &self.address
    }

    /// The gateway's link public key.
    pub fn link_key(&self) -> &[u8] {
        &self.link_key
    }

    /// The length of [`InviteGateway::encode_into`]'s bytes.
    fn encoded_len(&self) -> usize {
        32 + 1 + self.address.as_str().len() + 2 + self.link_key.len()
    }

    fn encode_into(&self, w: &mut Writer) {
        w.raw(&self.node_id.0);
        // `LinkAddress` holds at most 255 bytes and `InviteGateway::new` at most 2,048 key bytes.
        w.bytes8(self.address.as_str().as_bytes());
        w.bytes16(&self.link_key);
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, InviteError> {
        let node_id = NodeId(r.array()?);
        let addr = r.bytes8(MAX_ADDRESS_LEN, "gateway address too long")?;
        let addr =
            std::str::from_utf8(addr).map_err(|_| InviteError::Malformed("gateway address not UTF-8"))?;
        let address =
            LinkAddress::parse(addr).map_err(|_| InviteError::Malformed("invalid gateway address"))?;
        let link_key = r.bytes16(MAX_LINK_KEY_LEN, "invalid gateway link key")?.to_vec();
        Self::new(node_id, address, link_key).map_err(|_| InviteError::Malformed("invalid gateway link key"))
    }
}

/// An invitation as the link carries it. `Debug` prints no key, token or mailbox.
#[derive(Clone, PartialEq, Eq)]
pub struct Invitation {
    expires_at: UnixMillis,
    gateway: InviteGateway,
    mailbox: MailboxId,
    answer_key: [u8; KEY_LEN],
    token: [u8; TOKEN_LEN],
}

impl fmt::Debug for Invitation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invitation").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

impl Invitation {
    /// The inviter's gateway: where the answer goes.
    pub fn gateway(&self) -> &InviteGateway {
        &self.gateway
    }

    /// The mailbox (at [`Invitation::gateway`]) the answer goes to.
    pub fn mailbox(&self) -> &MailboxId {
        &self.mailbox
    }

    /// The key that seals what is written into [`Invitation::mailbox`] (see the module
    /// documentation).
    pub fn seal_key(&self) -> SealKey {
        let hk = Hkdf::<Sha256>::new(Some(&self.mailbox.0), &self.token);
        let mut k = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's output limit.
        let _ = hk.expand(SEAL_INFO, &mut k);
        SealKey(k)
    }

    /// When the invitation stops being acceptable.
    pub fn expires_at(&self) -> UnixMillis {
        self.expires_at
    }

    /// [`InviteError::Expired`] if `now` is at or after the expiry.
    pub fn check_expiry(&self, now: UnixMillis) -> Result<(), InviteError> {
        if now >= self.expires_at {
            return Err(InviteError::Expired { expired_at: self.expires_at });
        }
        Ok(())
    }

    /// The binary encoding (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(1 + 8 + self.gateway.encoded_len() + 32 + KEY_LEN + TOKEN_LEN);
        w.u8(INVITATION_VERSION);
        w.u64(self.expires_at.as_millis());
        self.gateway.encode_into(&mut w);
        w.raw(&self.mailbox.0);
        w.raw(&self.answer_key);
        w.raw(&self.token);
        // Every field is bounded by its constructor (see `InviteGateway::encode_into`); were one not
        // to fit, the empty invitation would fail to decode.
        w.finish().unwrap_or_default()
    }

    /// Decodes [`Invitation::encode`]'s bytes, strictly. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, InviteError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != INVITATION_VERSION {
            return Err(InviteError::UnknownVersion(version));
        }
        let expires_at = UnixMillis::from_millis(r.u64()?);
        let gateway = InviteGateway::decode_from(&mut r)?;
        let mailbox = MailboxId(r.array()?);
        let answer_key = r.array()?;
        let token = r.array()?;
        r.finish()?;
        Ok(Self { expires_at, gateway, mailbox, answer_key, token })
    }

    /// The link: `qanat://invite/` ‖ base64url (no padding) of [`Invitation::encode`].
    pub fn to_link(&self) -> String {
        format!("{LINK_PREFIX}{}", URL_SAFE_NO_PAD.encode(self.encode()))
    }

    /// Parses a link, or its bare base64url part; surrounding whitespace is ignored. Does not
    /// check the expiry ([`Invitation::check_expiry`]).
    pub fn parse(link: &str) -> Result<Self, InviteError> {
        let link = link.trim();
        if link.len() > MAX_LINK_LEN {
            return Err(InviteError::NotALink);
        }
        let b64 = link.strip_prefix(LINK_PREFIX).unwrap_or(link);
        let bytes = URL_SAFE_NO_PAD.decode(b64).map_err(|_| InviteError::NotALink)?;
        Self::decode(&bytes)
    }

    /// The link as a QR code drawn with Unicode half blocks (two rows of modules per line),
    /// light modules drawn as blocks: for a terminal with a dark background.
    pub fn qr_code(&self) -> Result<String, InviteError> {
        use qrcode::render::unicode::Dense1x2;
        let code = qrcode::QrCode::with_error_correction_level(self.to_link(), qrcode::EcLevel::L)
            .map_err(|e| InviteError::Qr(e.to_string()))?;
        Ok(code
            .render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build())
    }

    /// The answer to this invitation, to be written into [`Invitation::mailbox`] at
    /// [`Invitation::gateway`]: `answer` encrypted to the invitation's one-time key.
    pub fn answer(&self, rng: &mut impl CryptoRng, answer: &Answer) -> Result<Vec<u8>, InviteError> {
        if answer.key_package.len() > MAX_KEY_PACKAGE_LEN {
            return Err(InviteError::KeyPackageTooLong(answer.key_package.len()));
        }
        let mut e = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(e.as_mut());
        let epk = x25519_dalek::x25519(*e, x25519_dalek::X25519_BASEPOINT_BYTES);
        let dh = Zeroizing::new(x25519_dalek::x25519(*e, self.answer_key));
        let aead = answer_cipher(&self.token, &dh, &epk, &self.answer_key)
            .ok_or(InviteError::Malformed("the one-time key is a low-order point"))?;

        // The exact length, so that the buffer holding the plaintext never moves.
        let len = TOKEN_LEN + answer.gateway.encoded_len() + 32 + 32 + 4 + answer.key_package.len();
        let mut w = Writer::with_capacity(len);
        w.raw(&self.token);
        answer.gateway.encode_into(&mut w);
        w.raw(&answer.mailbox.0);
        w.raw(&answer.seal.0);
        w.bytes32(&answer.key_package);
        let (pt, error) = w.into_parts();
        let pt = Zeroizing::new(pt);
        if error.is_some() {
            return Err(InviteError::KeyPackageTooLong(answer.key_package.len()));
        }

        let mut out = Vec::with_capacity(1 + KEY_LEN + pt.len() + 16);
        out.push(ANSWER_VERSION);
        out.extend_from_slice(&epk);
        let ct = aead
            .0
            .encrypt(&aead.1, Payload { msg: &pt, aad: &out })
            .map_err(|_| InviteError::KeyPackageTooLong(answer.key_package.len()))?;
        out.extend_from_slice(&ct);
        Ok(out)
    }
}

/// `(AEAD, nonce)` for an answer, or `None` if the shared secret is all zeros (a low-order point).
fn answer_cipher(
    token: &[u8; TOKEN_LEN],
    dh: &[u8; KEY_LEN],
    epk: &[u8; KEY_LEN],
    answer_key: &[u8; KEY_LEN],
) -> Option<(ChaCha20Poly1305, Nonce)> {
    if bool::from(dh.ct_eq(&[0u8; KEY_LEN])) {
        return None;
    }
    let hk = Hkdf::<Sha256>::new(Some(token), dh);
    let mut okm = Zeroizing::new([0u8; 44]);
    hk.expand_multi_info(&[ANSWER_INFO, epk, answer_key], okm.as_mut()).ok()?;
    let (k, n) = okm.split_at(32);
    let key: [u8; 32] = k.try_into().ok()?;
    let nonce: [u8; 12] = n.try_into().ok()?;
    Some((ChaCha20Poly1305::new(&Key::from(key)), Nonce::from(nonce)))
}

/// What an accepter tells the inviter: where to reach it, and its MLS KeyPackage (opaque here).
#[derive(Clone, PartialEq, Eq)]
pub struct Answer {
    /// The accepter's gateway.
    pub gateway: InviteGateway,
    /// The mailbox the accepter made for this contact.
    pub mailbox: MailboxId,
    /// The key that seals what the inviter writes into `mailbox`.
    pub seal: SealKey,
    /// The accepter's MLS KeyPackage, serialized.
    pub key_package: Vec<u8>,
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer").field("key_package_len", &self.key_package.len()).finish_non_exhaustive()
    }
}

/// The inviter's side of an invitation: the invitation and its secrets. Zeroized on drop.
pub struct PendingInvitation {
    invitation: Invitation,
    secret: Zeroizing<[u8; KEY_LEN]>,
    credential: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for PendingInvitation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingInvitation").field("invitation", &self.invitation).finish_non_exhaustive()
    }
}

impl PendingInvitation {
    /// A new invitation through `gateway`, acceptable until `now + validity_ms`: a fresh mailbox
    /// id, its credential, a one-time key pair and a token, all from `rng`.
    pub fn new(rng: &mut impl CryptoRng, gateway: InviteGateway, now: UnixMillis, validity_ms: u64) -> Self {
        let mut mailbox = [0u8; 32];
        let mut token = [0u8; TOKEN_LEN];
        let mut secret = Zeroizing::new([0u8; KEY_LEN]);
        let mut credential = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut mailbox);
        rng.fill_bytes(&mut token);
        rng.fill_bytes(secret.as_mut());
        rng.fill_bytes(credential.as_mut());
        let answer_key = x25519_dalek::x25519(*secret, x25519_dalek::X25519_BASEPOINT_BYTES);
        let invitation = Invitation {
            expires_at: now.plus_millis(validity_ms),
            gateway,
            mailbox: MailboxId(mailbox),
            answer_key,
            token,
        };
        Self { invitation, secret, credential }
    }

    /// The invitation to show.
    pub fn invitation(&self) -> &Invitation {
        &self.invitation
    }

    /// The credential to register [`Invitation::mailbox`] with at the gateway (and fetch with).
    pub fn mailbox_credential(&self) -> &[u8; 32] {
        &self.credential
    }

    /// Opens an answer: decrypts it and checks its token. This does not spend the invitation:
    /// [`take_answer`] does both in the profile.
    pub fn open_answer(&self, bytes: &[u8]) -> Result<Answer, InviteError> {
        let mut r = Reader::new(bytes);
        let version = r.u8().map_err(|_| InviteError::BadAnswer)?;
        if version != ANSWER_VERSION {
            return Err(InviteError::BadAnswer);
        }
        let epk: [u8; KEY_LEN] = r.array().map_err(|_| InviteError::BadAnswer)?;
        let dh = Zeroizing::new(x25519_dalek::x25519(*self.secret, epk));
        let (aead, nonce) = answer_cipher(&self.invitation.token, &dh, &epk, &self.invitation.answer_key)
            .ok_or(InviteError::BadAnswer)?;
        let aad = bytes.get(..1 + KEY_LEN).ok_or(InviteError::BadAnswer)?;
        let pt = Zeroizing::new(
            aead.decrypt(&nonce, Payload { msg: r.rest(), aad }).map_err(|_| InviteError::BadAnswer)?,
        );
        let mut r = Reader::new(&pt);
        let token: [u8; TOKEN_LEN] = r.array().map_err(|_| InviteError::BadAnswer)?;
        if !bool::from(token.ct_eq(&self.invitation.token)) {
            return Err(InviteError::BadAnswer);
        }
        let gateway = InviteGateway::decode_from(&mut r).map_err(|_| InviteError::BadAnswer)?;
        let mailbox = MailboxId(r.array().map_err(|_| InviteError::BadAnswer)?);
        let seal = SealKey(r.array().map_err(|_| InviteError::BadAnswer)?);
        let key_package =
            r.bytes32(MAX_KEY_PACKAGE_LEN, "key package").map_err(|_| InviteError::BadAnswer)?.to_vec();
        r.finish().map_err(|_| InviteError::BadAnswer)?;
        Ok(Answer { gateway, mailbox, seal, key_package })
    }

    /// The encoding kept in the profile: `version u8 = 1 ‖ invitation length u16 ‖ invitation ‖
    /// secret key (32) ‖ mailbox credential (32)`.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let inv = self.invitation.encode();
        // The exact length, so that the buffer holding the secrets never moves.
        let mut w = Writer::with_capacity(3 + inv.len() + 64);
        w.u8(PENDING_VERSION);
        // An invitation is at most `MAX_INVITATION_LEN` (2,443) bytes.
        w.bytes16(&inv);
        w.raw(self.secret.as_ref());
        w.raw(self.credential.as_ref());
        secret_record(w)
    }

    /// Decodes [`PendingInvitation::encode`]'s bytes, strictly.
    pub fn decode(bytes: &[u8]) -> Result<Self, InviteError> {
        let mut r = Reader::new(bytes);
        check_version(r.u8()?, PENDING_VERSION, "pending invitation", "unknown pending-invitation version")?;
        let invitation = Invitation::decode(r.bytes16(MAX_INVITATION_LEN, "invitation too long")?)?;
        let secret = Zeroizing::new(r.array()?);
        let credential = Zeroizing::new(r.array()?);
        r.finish()?;
        if x25519_dalek::x25519(*secret, x25519_dalek::X25519_BASEPOINT_BYTES) != invitation.answer_key {
            return Err(InviteError::Malformed("the secret key does not match the invitation"));
        }
        Ok(Self { invitation, secret, credential })
    }
}

/// What accepting an invitation produced, kept in the profile ([`NS_ACCEPTED`]) so that it
/// survives a restart: the answer to send (until the sender has it delivered), and the mailbox
/// made for this contact with its credential.
pub struct Accepted {
    /// The invitation accepted (the inviter's gateway and mailbox: where `answer` goes).
    pub invitation: Invitation,
    /// The answer's bytes.
    pub answer: Vec<u8>,
    /// The mailbox made for this contact, at the accepter's gateway.
    pub mailbox: MailboxId,
    /// The credential to register `mailbox` with.
    pub mailbox_credential: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for Accepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accepted").field("invitation", &self.invitation).finish_non_exhaustive()
    }
}

impl Accepted {
    /// `version u8 = 1 ‖ u16 len ‖ invitation ‖ mailbox (32) ‖ credential (32) ‖ u32 len ‖ answer`.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let inv = self.invitation.encode();
        // The exact length, so that the buffer holding the credential never moves.
        let mut w = Writer::with_capacity(3 + inv.len() + 68 + self.answer.len());
        w.u8(ACCEPTED_VERSION);
        // An invitation is at most `MAX_INVITATION_LEN` bytes, an answer `MAX_ANSWER_LEN`.
        w.bytes16(&inv);
        w.raw(&self.mailbox.0);
        w.raw(self.mailbox_credential.as_ref());
        w.bytes32(&self.answer);
        secret_record(w)
    }

    /// Decodes [`Accepted::encode`]'s bytes, strictly.
    pub fn decode(bytes: &[u8]) -> Result<Self, InviteError> {
        let mut r = Reader::new(bytes);
        check_version(
            r.u8()?,
            ACCEPTED_VERSION,
            "accepted invitation",
            "unknown accepted-invitation version",
        )?;
        let invitation = Invitation::decode(r.bytes16(MAX_INVITATION_LEN, "invitation too long")?)?;
        let mailbox = MailboxId(r.array()?);
        let mailbox_credential = Zeroizing::new(r.array()?);
        let answer = r.bytes32(MAX_ANSWER_LEN, "answer too long")?.to_vec();
        r.finish()?;
        Ok(Self { invitation, answer, mailbox, mailbox_credential })
    }
}

/// Inviter: makes an invitation through `gateway`, valid for `validity_ms`, and keeps it in the
/// profile until it is answered or forgotten ([`forget_expired`]).
pub fn create(
    tx: &mut Transaction<'_>,
    rng: &mut impl CryptoRng,
    gateway: InviteGateway,
    now: UnixMillis,
    validity_ms: u64,
) -> Result<PendingInvitation, InviteError> {
    let pending = PendingInvitation::new(rng, gateway, now, validity_ms);
    tx.put(NS_PENDING, &pending.invitation.mailbox.0, &pending.encode())?;
    Ok(pending)
}

/// Inviter: the open invitations, oldest expiry first.
pub fn pending(tx: &Transaction<'_>) -> Result<Vec<PendingInvitation>, InviteError> {
    let mut out = tx
        .scan(NS_PENDING)?
        .iter()
        .map(|(_, v)| PendingInvitation::decode(v))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|p| p.invitation.expires_at);
    Ok(out)
}

/// Inviter: opens an answer that arrived in `mailbox` and spends the invitation, in `tx`.
///
/// A second answer gives [`InviteError::AlreadyUsed`]; an answer that does not open gives
/// [`InviteError::BadAnswer`] and leaves the invitation open. An answer that arrives after the
/// expiry is still taken (it may have waited in the mailbox) until [`forget_expired`] drops the
/// invitation.
pub fn take_answer(
    tx: &mut Transaction<'_>,
    mailbox: &MailboxId,
    bytes: &[u8],
) -> Result<Answer, InviteError> {
    let Some(stored) = tx.get(NS_PENDING, &mailbox.0)? else {
        if tx.get(NS_ANSWERED, &mailbox.0)?.is_some() {
            return Err(InviteError::AlreadyUsed);
        }
        return Err(InviteError::Unknown);
    };
    let pending = PendingInvitation::decode(&stored)?;
    let answer = pending.open_answer(bytes)?;
    let forget_after = pending.invitation.expires_at.plus_millis(GRACE_MS);
    tx.delete(NS_PENDING, &mailbox.0)?;
    tx.put(NS_ANSWERED, &mailbox.0, &encode_answered(forget_after))?;
    Ok(answer)
}

/// A spent invitation's record ([`NS_ANSWERED`]): `version u8 ‖ u64` Unix ms after which it may go.
fn encode_answered(forget_after: UnixMillis) -> Vec<u8> {
    let mut w = Writer::with_capacity(9);
    w.u8(ANSWERED_VERSION);
    w.u64(forget_after.as_millis());
    // Fixed fields only: the writer cannot fail.
    w.finish().unwrap_or_default()
}

/// When a spent invitation's record may go: of the current version, or the `u64` alone of
/// profiles from before row versions.
fn decode_answered(value: &[u8]) -> Result<UnixMillis, InviteError> {
    let malformed = |_| InviteError::Malformed("answered record");
    let mut r = Reader::new(value);
    // Before row versions: the time alone (whose first byte is 0 until the year 2,000,000).
    let unversioned = value.len() == 8 && value.first() == Some(&0);
    if !unversioned {
        let version = r.u8().map_err(malformed)?;
        check_version(version, ANSWERED_VERSION, "answered invitation", "answered record")?;
    }
    let at = r.u64().map_err(malformed)?;
    r.finish().map_err(malformed)?;
    Ok(UnixMillis::from_millis(at))
}

/// Accepter: accepts the invitation in `link` at `now`, in `tx`: checks it, makes a fresh
/// mailbox for this contact, encrypts `key_package` and the way back (`own_gateway`, the new
/// mailbox and its `seal` key) into an answer, and records all of it ([`NS_ACCEPTED`]).
///
/// The same invitation twice gives [`InviteError::AlreadyAccepted`]; an expired one
/// [`InviteError::Expired`]; neither changes anything.
pub fn accept(
    tx: &mut Transaction<'_>,
    rng: &mut impl CryptoRng,
    link: &str,
    now: UnixMillis,
    own_gateway: InviteGateway,
    seal: SealKey,
    key_package: &[u8],
) -> Result<Accepted, InviteError> {
    let invitation = Invitation::parse(link)?;
    if tx.get(NS_ACCEPTED, &invitation.mailbox.0)?.is_some() {
        return Err(InviteError::AlreadyAccepted);
    }
    if tx.get(NS_PENDING, &invitation.mailbox.0)?.is_some()
        || tx.get(NS_ANSWERED, &invitation.mailbox.0)?.is_some()
    {
        return Err(InviteError::OwnInvitation);
    }
    invitation.check_expiry(now)?;
    let mut mailbox = [0u8; 32];
    rng.fill_bytes(&mut mailbox);
    let mut mailbox_credential = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(mailbox_credential.as_mut());
    let mailbox = MailboxId(mailbox);
    let answer = invitation
        .answer(rng, &Answer { gateway: own_gateway, mailbox, seal, key_package: key_package.to_vec() })?;
    let accepted = Accepted { invitation, answer, mailbox, mailbox_credential };
    tx.put(NS_ACCEPTED, &accepted.invitation.mailbox.0, &accepted.encode())?;
    Ok(accepted)
}

/// Accepter: the invitations accepted on this profile (for resending their answers after a
/// restart until they are delivered).
pub fn accepted(tx: &Transaction<'_>) -> Result<Vec<Accepted>, InviteError> {
    tx.scan(NS_ACCEPTED)?.iter().map(|(_, v)| Accepted::decode(v)).collect()
}

/// Both sides: drops open invitations, spent-invitation records and acceptance records whose
/// invitation expired more than [`GRACE_MS`] before `now`. Returns how many went.
pub fn forget_expired(tx: &mut Transaction<'_>, now: UnixMillis) -> Result<usize, InviteError> {
    let mut gone = Vec::new();
    for (key, value) in tx.scan(NS_PENDING)? {
        let p = PendingInvitation::decode(&value)?;
        if now >= p.invitation.expires_at.plus_millis(GRACE_MS) {
            gone.push((NS_PENDING, key));
        }
    }
    for (key, value) in tx.scan(NS_ANSWERED)? {
        if now >= decode_answered(&value)? {
            gone.push((NS_ANSWERED, key));
        }
    }
    for (key, value) in tx.scan(NS_ACCEPTED)? {
        let a = Accepted::decode(&value)?;
        if now >= a.invitation.expires_at.plus_millis(GRACE_MS) {
            gone.push((NS_ACCEPTED, key));
        }
    }
    for (ns, key) in &gone {
        tx.delete(ns, key)?;
    }
    Ok(gone.len())
}

/// Checks a profile record's version byte: `current`; a later one is
/// [`InviteError::NewerRecord`] (the profile was written by a newer Qanat), an earlier one
/// `Malformed(unknown)`.
fn check_version(
    found: u8,
    current: u8,
    what: &'static str,
    unknown: &'static str,
) -> Result<(), InviteError> {
    match found {
        v if v == current => Ok(()),
        v if v > current => Err(InviteError::NewerRecord { what, found: v }),
        _ => Err(InviteError::Malformed(unknown)),
    }
}

/// The bytes of a record holding secrets, in a buffer wiped on drop whatever happened. Every
/// field is bounded (an invitation by `MAX_INVITATION_LEN`, an answer by `MAX_ANSWER_LEN`), so
/// the encoding cannot fail; were it to, the empty record would fail to decode, never read wrong.
fn secret_record(w: Writer) -> Zeroizing<Vec<u8>> {
    let (bytes, error) = w.into_parts();
    let bytes = Zeroizing::new(bytes);
    if error.is_some() { Zeroizing::new(Vec::new()) } else { bytes }
}

impl From<DecodeError> for InviteError {
    fn from(e: DecodeError) -> Self {
        Self::Malformed(e.reason())
    }
}
