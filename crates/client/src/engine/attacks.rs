//! What a hostile contact's modified client sends, for tests. Compiled in this crate's own tests
//! and with the cargo feature `attacks`, which nothing but the `qanat` crate's dev-dependency
//! enables (for its devnet tests): `cargo build` and `cargo install` leave it out
//! (`crates/client/tests/standalone.rs` checks the binary's feature set).
//!
//! # Fragments of messages that never complete
//!
//! A contact knows where it writes to the user: the conversation's mailbox at the user's gateway
//! and the mailbox's seal key. What a DATA packet says there is its own choice, and the user can
//! check none of it before reassembly: the message id, the fragment's index, the claimed
//! fragment count and the data (MLS, which refuses what the contact did not encrypt for the
//! conversation, sees a message only once all its fragments are in). So a contact can send
//! fragments of messages that never complete: the one fragment of a message that claims
//! [`MAX_FRAGMENTS`] fragments, all but the last of a short one; and fragments that contradict
//! earlier ones, or claim more fragments than the codec takes. The user's
//! [`Inbox`](qanat_mixnet::sending::Inbox) bounds what they make it hold; this module is the
//! attack its tests run, in this crate's simulated network and through a devnet
//! (`crates/qanat/tests/hostile_fragments.rs`).
//!
//! [`Engine::forged_fragment`] builds one such packet on the profile's real route: the payload
//! written by the codec ([`Payload::encode`]), with a SURB back to the sender's home mailbox made
//! as the [`Outbox`](qanat_mixnet::sending::Outbox) makes its SURBs, sealed to the mailbox and
//! wrapped by [`sealed_packet`](qanat_mixnet::sending::sealed_packet). Until reassembly it is an
//! honest DATA packet in every byte the user (or the gateway) sees. [`IncompleteMessages`] plans a stream of
//! them and counts what it made, so that a test knows what the user must hold, refuse and drop.
//!
//! ## Why packets, and not a message queued in the outbox
//!
//! - The outbox keeps a state per fragment of each message and scans them all on every timeout:
//!   a claimed count of 4,096 would cost the attacker 4,096 entries per message, and a forged
//!   count would need a hook in the code every client runs. A child module of
//!   [`crate::engine`] can read the route the engine otherwise keeps to itself, so this one needs
//!   no hook at all.
//! - A modified client is not bound to its Poisson schedule: the caller sends the packets as
//!   fast as its gateway session takes them (the gateway's per-session budget is then the
//!   limit), as an attacker would.
//! - The SURB's keys are not kept: the attacker does not wait for acknowledgements (the replies
//!   land in its home mailbox, unread), and resends nothing.
//!
//! # What a contact or member chooses inside the conversation
//!
//! The rest of what a contact writes is its own choice too, and only checked where it arrives:
//! the KeyPackage it hands over when it answers an invitation or joins a group
//! ([`untakeable_key_package`], [`Engine::accept_with_key_package`],
//! [`Engine::join_group_with_key_package`]), and the fields of its TEXTs
//! ([`Engine::send_text_as`]).

use std::collections::{BTreeMap, VecDeque};

use qanat_packet::MailboxId;
use qanat_pki::UnixMillis;
use rand_core::CryptoRng;

use std::time::SystemTime;

use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::{BasicCredential, Capabilities, Ciphersuite, CredentialWithKey, KeyPackage};
use openmls_basic_credential::SignatureKeyPair;

use super::rows::{Kind, ThreadState};
use super::wire::Content;
use super::{Engine, EngineError};
use crate::mls::{CIPHERSUITE, MlsError, PendingJoin};
use qanat_mixnet::sending::{self, MAX_FRAGMENTS, MessageId, Payload, PayloadError};

/// A KeyPackage that verifies and names nobody (its credential is its bare per-conversation
/// key, as every Qanat client's), of the conversations' ciphersuite, that no conversation can
/// take: its leaf does not list that ciphersuite among its capabilities. The KeyPackage's own
/// checks pass; adding it fails only when a commit is built with it.
pub fn untakeable_key_package() -> Result<Vec<u8>, EngineError> {
    let bad = |e: String| EngineError::Mls(MlsError::Internal(e));
    let provider = openmls_rust_crypto::OpenMlsRustCrypto::default();
    let signer =
        SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).map_err(|e| bad(format!("{e:?}")))?;
    let credential = CredentialWithKey {
        credential: BasicCredential::new(signer.to_public_vec()).into(),
        signature_key: signer.to_public_vec().into(),
    };
    let other = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;
    let caps = Capabilities::new(None, Some(&[other]), None, None, None);
    let bundle = KeyPackage::builder()
        .leaf_node_capabilities(caps)
        .build(CIPHERSUITE, &provider, &signer, credential)
        .map_err(|e| bad(format!("{e:?}")))?;
    bundle.key_package().tls_serialize_detached().map_err(|e| bad(format!("{e:?}")))
}

/// One fragment as the attacker writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forged {
    /// The message it claims to belong to.
    pub message_id: MessageId,
    /// Its index (below `count`: the codec writes nothing else).
    pub index: u16,
    /// The fragment count it claims (may exceed [`MAX_FRAGMENTS`]).
    pub count: u16,
    /// Bytes of random data, at most [`sending::fragment_capacity`].
    pub len: usize,
}

impl Engine {
    /// [`Engine::accept`], answering with `key_package` (say [`untakeable_key_package`]) instead
    /// of one of our own.
    pub fn accept_with_key_package<R: CryptoRng>(
        &mut self,
        link: &str,
        name: &str,
        now: SystemTime,
        rng: &mut R,
        key_package: &[u8],
    ) -> Result<(), EngineError> {
        let (join, _) = PendingJoin::new()?;
        self.accept_as(link, name, now, rng, &join, key_package)
    }

    /// [`Engine::accept_group_invitation`] of invitation `id` (whole), joining with
    /// `key_package` instead of one of our own; the group is called `name` here.
    pub fn join_group_with_key_package<R: CryptoRng>(
        &mut self,
        id: &str,
        name: &str,
        now: SystemTime,
        rng: &mut R,
        key_package: Vec<u8>,
    ) -> Result<String, EngineError> {
        let token = self.group_invitation(id)?;
        let contact = self
            .group_invites
            .get(&token)
            .map(|r| r.contact)
            .ok_or(EngineError::UnknownInvitation(id.into()))?;
        let (join, _) = PendingJoin::new()?;
        self.join_group_as(token, contact, name.into(), now, rng, &join, key_package)
    }

    /// Sends `text` to the contact or group `name` as a TEXT numbered `seq` (the sender's own
    /// count of its TEXTs, which an honest client keeps), as the first the receivers can read.
    pub fn send_text_as<R: CryptoRng>(
        &mut self,
        name: &str,
        seq: u64,
        text: &str,
        now: SystemTime,
        rng: &mut R,
    ) -> Result<(), EngineError> {
        let t = self.thread_by_name(name)?;
        if self.threads.get(&t).is_none_or(|th| th.state != ThreadState::Active) {
            return Err(EngineError::NotReady(name.into(), "not set up"));
        }
        let epoch = self.convs.get(&t).map(|c| c.epoch()).unwrap_or_default();
        let content = Content::Text {
            seq,
            epoch,
            prev_epoch: None,
            sent_at_ms: UnixMillis::from_system_time(now).as_millis(),
            text: text.into(),
        };
        self.send_content(t, &content, None, now, rng)?;
        self.flush()
    }

    /// The packet of fragment `f` for the contact this profile calls `contact`: random data,
    /// sealed to the mailbox the contact gave us, with a SURB back to our home mailbox whose keys
    /// are dropped. Hand it to the gateway like any packet, at any rate.
    pub fn forged_fragment<R: CryptoRng + ?Sized>(
        &self,
        contact: &str,
        f: &Forged,
        rng: &mut R,
    ) -> Result<Vec<u8>, EngineError> {
        let t = self.thread_by_name(contact)?;
        self.require(t, Kind::Contact)?;
        let th = self.threads.get(&t).ok_or(EngineError::Corrupt("thread"))?;
        let route = th
            .roster
            .values()
            .next()
            .copied()
            .or(th.peer_route)
            .ok_or_else(|| EngineError::NotReady(contact.into(), "no route to the contact yet"))?
            .route();
        let net = self.network()?;
        let g = net.sphinx.geometry();
        if f.len > sending::fragment_capacity(g)? {
            return Err(PayloadError::TooLong.into());
        }
        let mut data = vec![0u8; f.len];
        rng.fill_bytes(&mut data);
        let home = MailboxId(self.settings.home_mailbox);
        let (surb, _id, _keys) = sending::reply_surb(&net.sphinx, &net.view, &route.gateway, home, rng)?;
        let payload = Payload::Data { surb, message_id: f.message_id, index: f.index, count: f.count, data }
            .encode(g, rng)?;
        Ok(sending::sealed_packet(&net.sphinx, &net.view, &route, &payload, rng)?)
    }
}

/// The kinds of fragment [`IncompleteMessages`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Incomplete {
    /// The one fragment ever sent of a message that claims [`MAX_FRAGMENTS`] fragments (the
    /// most the codec takes), at a random index: held, never completed.
    ClaimedMax,
    /// A fragment of a message of 2 to 8 fragments whose last one never leaves.
    Truncated,
    /// Fragment 0 of an earlier truncated message, claiming one fragment more: it contradicts
    /// the fragments before it (or they contradict it, if it arrives first), and is refused.
    Contradicting,
    /// A fragment that claims 65,535 fragments, beyond [`MAX_FRAGMENTS`]: malformed.
    OverClaimed,
}

/// A stream of fragments of messages that never complete, in rounds of two [`Incomplete::ClaimedMax`],
/// one truncated message, one [`Incomplete::Contradicting`] (from the second round on) and one
/// [`Incomplete::OverClaimed`]; every fragment as long as the network's fragments can be. It
/// counts what it made.
#[derive(Debug)]
pub struct IncompleteMessages {
    capacity: usize,
    /// What is planned: the kind, the fragment, and whether it is its message's first.
    queue: VecDeque<(Incomplete, Forged, bool)>,
    /// Truncated messages not yet contradicted: id and count.
    truncated: VecDeque<(MessageId, u16)>,
    made: BTreeMap<Incomplete, u64>,
    messages: u64,
}

impl IncompleteMessages {
    /// A stream of fragments of `fragment_capacity` bytes ([`sending::fragment_capacity`] of the
    /// network's geometry).
    pub fn new(fragment_capacity: usize) -> Self {
        Self {
            capacity: fragment_capacity,
            queue: VecDeque::new(),
            truncated: VecDeque::new(),
            made: BTreeMap::new(),
            messages: 0,
        }
    }

    /// The next fragment to send.
    pub fn next_fragment<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) -> (Incomplete, Forged) {
        loop {
            if let Some((kind, f, first)) = self.queue.pop_front() {
                *self.made.entry(kind).or_default() += 1;
                self.messages += u64::from(first);
                return (kind, f);
            }
            self.plan_round(rng);
        }
    }

    fn plan_round<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) {
        let id = |rng: &mut R| {
            let mut b = [0u8; 16];
            rng.fill_bytes(&mut b);
            MessageId(b)
        };
        let len = self.capacity;
        // `MAX_FRAGMENTS` is 4,096: it fits.
        let max = MAX_FRAGMENTS as u16;
        for _ in 0..2 {
            let index = (rng.next_u32() % u32::from(max)) as u16;
            let f = Forged { message_id: id(rng), index, count: max, len };
            self.queue.push_back((Incomplete::ClaimedMax, f, true));
        }
        // A message planned in an earlier round: all its fragments have been made.
        if let Some((message_id, count)) = self.truncated.pop_front() {
            let f = Forged { message_id, index: 0, count: count + 1, len };
            self.queue.push_back((Incomplete::Contradicting, f, false));
        }
        let count = 2 + (rng.next_u32() % 7) as u16;
        let message_id = id(rng);
        for index in 0..count - 1 {
            let f = Forged { message_id, index, count, len };
            self.queue.push_back((Incomplete::Truncated, f, index == 0));
        }
        self.truncated.push_back((message_id, count));
        let index = (rng.next_u32() % u32::from(u16::MAX)) as u16;
        let f = Forged { message_id: id(rng), index, count: u16::MAX, len };
        self.queue.push_back((Incomplete::OverClaimed, f, false));
    }

    /// Fragments of `kind` made so far.
    pub fn made(&self, kind: Incomplete) -> u64 {
        self.made.get(&kind).copied().unwrap_or(0)
    }

    /// Fragments made so far.
    pub fn fragments(&self) -> u64 {
        self.made.values().sum()
    }

    /// Messages started so far (claimed-maximum and truncated ones): once all their fragments
    /// have arrived, the partial messages the recipient holds for them, one each (whichever of a
    /// message's contradicting fragments came first is kept).
    pub fn messages(&self) -> u64 {
        self.messages
    }
}
