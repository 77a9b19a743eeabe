//! A directory authority as a state machine without IO.
//!
//! The caller (the node binary) owns the sockets and the clock. It passes node uploads to
//! [`Authority::handle_descriptor`], messages from peer authorities to
//! [`Authority::handle_message`], calls [`Authority::poll`] at [`Authority::next_timeout`] (and
//! after handling messages), and carries out the [`Action`]s it returns: send bytes to a peer,
//! publish a document, report a failed round.
//!
//! # One round
//!
//! During epoch `E` the authority runs the round for `E + 1` on the schedule of
//! [`crate::time`]: at the vote point it signs a vote over the descriptors it accepted for
//! `E + 1` from nodes it heard from lately (see *Liveness* below), its parameters, and a commit to a fresh random value, and sends it to every peer;
//! at the reveal point it sends the signed reveal of that value; at the cert point it relays
//! every vote and reveal it holds to every peer (all are signed by their authors, so relaying
//! cannot forge anything, and a vote or reveal lost on one link still arrives through another);
//! at the tabulate point it computes the consensus body ([`crate::vote`]), signs it and sends
//! the signature; at the publish point, if a strict majority of the configured authorities
//! signed the same body, it publishes the document with every signature collected and sends
//! it to its peers. A peer whose own tabulation lost (it missed votes, or it was offline)
//! adopts a majority-signed document it receives, after verifying it like any client would.
//!
//! # Liveness
//!
//! A node re-uploads its descriptor every [`heartbeat`] (a sixteenth of the period, between one
//! second and one minute) until the vote. An authority votes only for nodes whose last accepted
//! upload is at most [`LIVENESS_HEARTBEATS`] heartbeats old at the vote point, so a node that
//! died before then is left out of the next epoch's document (by every authority that noticed,
//! hence by the majority), and clients route around it from that epoch on.
//!
//! A step whose window has passed when [`Authority::poll`] first sees it is skipped (an
//! authority that was down at the vote point sits the round out but still tabulates and signs
//! what its peers voted, and still adopts their document), so an authority coming back never
//! sends a late vote that only some peers would count.

use core::fmt;
use std::collections::{BTreeMap, BTreeSet};

use chacha20::ChaCha20Rng;
use qanat_packet::NodeId;
use rand_core::{CryptoRng, Rng, SeedableRng};
use zeroize::Zeroizing;

use crate::descriptor::SignedDescriptor;
use crate::document::{
    AuthoritySet, Document, Signatures, UnverifiedDocument, encode_document, split_document,
};
use crate::error::{
    ConfigError, ConsensusFailure, DecodeError, DescriptorRejected, PeerMessageError, VerifyError,
};
use crate::identity::{Domain, IDENTITY_KEY_LEN, IdentityKey, IdentitySecret, SIGNATURE_LEN};
use crate::params::Parameters;
use crate::time::{Epoch, UnixMillis};
use crate::vote::{MAX_VOTE_LEN, REVEAL_LEN, SignedReveal, SignedVote, commit, tabulate};
use crate::wire::{Reader, Writer, encoded};

const TAG_VOTE: u8 = 1;
const TAG_REVEAL: u8 = 2;
const TAG_CERT: u8 = 3;
const TAG_SIGNATURE: u8 = 4;
const TAG_CONSENSUS: u8 = 5;

/// Longest message between authorities (a cert relaying a vote from every authority).
pub const MAX_PEER_MESSAGE_LEN: usize =
    2 + crate::document::MAX_AUTHORITIES * (4 + MAX_VOTE_LEN + REVEAL_LEN) + 1;

/// How often a node re-uploads its descriptor as a sign of life, in milliseconds: a sixteenth of
/// the epoch period, between one second and one minute.
pub fn heartbeat(period: crate::time::EpochPeriod) -> u64 {
    (period.as_millis() / 16).clamp(1_000, 60_000)
}

/// How many heartbeats old a node's last upload may be at the vote point for the authority to
/// vote for it.
pub const LIVENESS_HEARTBEATS: u64 = 3;

/// What an authority is configured with.
#[derive(Clone, Debug)]
pub struct AuthorityConfig {
    /// This authority's identity key.
    pub identity: IdentitySecret,
    /// Every authority of the network, this one included.
    pub authorities: AuthoritySet,
    /// The parameters this authority votes for.
    pub parameters: Parameters,
    /// The nodes allowed in the network (closed network): their identity keys.
    pub allowed_nodes: BTreeSet<IdentityKey>,
}

/// Something the caller must do.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Send `message` to the authority `to` (to be passed to its [`Authority::handle_message`]).
    Send {
        /// The peer.
        to: IdentityKey,
        /// The bytes.
        message: Vec<u8>,
    },
    /// Serve `document` (verified, majority-signed) to nodes and clients as the document of
    /// `epoch`, replacing any earlier one for that epoch (a later one carries more signatures).
    Publish {
        /// The epoch.
        epoch: Epoch,
        /// The encoded document.
        document: Vec<u8>,
    },
    /// No document for `epoch` could be made or obtained. Clients keep using the previous
    /// document, whose descriptors carry keys for the next two epochs; operators should look.
    ConsensusFailed {
        /// The epoch left without a document.
        epoch: Epoch,
        /// Why.
        reason: ConsensusFailure,
    },
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Send { message, .. } => write!(f, "Send({} bytes)", message.len()),
            Self::Publish { epoch, document } => write!(f, "Publish({epoch:?}, {} bytes)", document.len()),
            Self::ConsensusFailed { epoch, reason } => write!(f, "ConsensusFailed({epoch:?}, {reason})"),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Default)]
enum Step {
    #[default]
    Start,
    Voted,
    Revealed,
    Certified,
    Tabulated,
    Finished,
}

#[derive(Default)]
struct Round {
    step: Step,
    /// Our shared-random value, once we voted.
    value: Option<Zeroizing<[u8; 32]>>,
    votes: BTreeMap<IdentityKey, SignedVote>,
    reveals: BTreeMap<IdentityKey, SignedReveal>,
    /// Signatures that arrived before we tabulated.
    early_sigs: Signatures,
    /// Our tabulated body and the signatures over it.
    ours: Option<(Vec<u8>, Signatures)>,
    failure: Option<ConsensusFailure>,
}

struct Published {
    doc: Document,
    sigs: Signatures,
}

/// A directory authority (see the module documentation).
pub struct Authority {
    identity: IdentitySecret,
    set: AuthoritySet,
    params: Parameters,
    allowed: BTreeSet<IdentityKey>,
    rng: ChaCha20Rng,
    descriptors: BTreeMap<Epoch, BTreeMap<NodeId, SignedDescriptor>>,
    /// When each node's last upload was accepted.
    last_seen: BTreeMap<NodeId, UnixMillis>,
    rounds: BTreeMap<Epoch, Round>,
    published: BTreeMap<Epoch, Published>,
    pending: Vec<Action>,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority")
            .field("authorities", &self.set.len())
            .field("published", &self.published.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// A new authority. `rng` seeds the generator of its shared-random values.
    pub fn new<R: CryptoRng + ?Sized>(config: AuthorityConfig, rng: &mut R) -> Result<Self, ConfigError> {
        if !config.authorities.contains(&config.identity.public()) {
            return Err(ConfigError::NotInSet);
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Ok(Self {
            rng: ChaCha20Rng::from_seed(*seed),
            identity: config.identity,
            set: config.authorities,
            params: config.parameters,
            allowed: config.allowed_nodes,
            descriptors: BTreeMap::new(),
            last_seen: BTreeMap::new(),
            rounds: BTreeMap::new(),
            published: BTreeMap::new(),
            pending: Vec::new(),
        })
    }

    /// This authority's public key.
    pub fn identity(&self) -> IdentityKey {
        self.identity.public()
    }

    /// The latest document published for `epoch`, encoded.
    pub fn document(&self, epoch: Epoch) -> Option<Vec<u8>> {
        self.published.get(&epoch).map(|p| encode_document(p.doc.body_bytes(), &p.sigs))
    }

    /// When [`Authority::poll`] must next be called (the next schedule point after `now`).
    pub fn next_timeout(&self, now: UnixMillis) -> UnixMillis {
        let period = self.params.epoch_period();
        Epoch::at(now, period).schedule(period).next_point_after(now)
    }

    /// A node uploads its descriptor. Accepted descriptors are for the next epoch (until that
    /// epoch's vote) or the one after; the epoch is returned.
    pub fn handle_descriptor(&mut self, now: UnixMillis, bytes: &[u8]) -> Result<Epoch, DescriptorRejected> {
        let signed = SignedDescriptor::decode(bytes)?;
        let d = signed.descriptor();
        if !self.allowed.contains(d.identity()) {
            return Err(DescriptorRejected::NotAllowed);
        }
        if d.scheme() != self.params.scheme() {
            return Err(DescriptorRejected::WrongScheme);
        }
        let period = self.params.epoch_period();
        let cur = Epoch::at(now, period);
        let target = cur.next();
        let e = d.epoch();
        if e < target || (e == target && now >= cur.schedule(period).vote()) {
            return Err(DescriptorRejected::TooLate(e));
        }
        if e > target.next() {
            return Err(DescriptorRejected::TooEarly(e));
        }
        // Keys already published for coming epochs must not change under clients' feet.
        let id = d.node_id();
        for p in self.published.values() {
            for (i, k) in d.packet_keys().iter().enumerate() {
                let ep = e.plus(i as u64);
                if p.doc.packet_key(&id, ep).is_some_and(|old| old != k) {
                    return Err(DescriptorRejected::KeyChanged);
                }
            }
        }
        self.descriptors.entry(e).or_default().insert(id, signed);
        self.last_seen.insert(id, now);
        Ok(e)
    }

    /// A message from a peer authority. Whatever it causes is returned by the next
    /// [`Authority::poll`].
    pub fn handle_message(&mut self, now: UnixMillis, bytes: &[u8]) -> Result<(), PeerMessageError> {
        if bytes.len() > MAX_PEER_MESSAGE_LEN {
            return Err(DecodeError::TooLarge { what: "peer message" }.into());
        }
        let (&tag, rest) = bytes.split_first().ok_or(DecodeError::Truncated)?;
        match tag {
            TAG_VOTE => self.accept_vote(now, SignedVote::decode(rest)?),
            TAG_REVEAL => self.accept_reveal(now, SignedReveal::decode(rest)?),
            TAG_CERT => {
                // Relayed items: skip those already held byte for byte (most of them), keep
                // what is acceptable of the rest, report the first refusal.
                let (votes, reveals) = split_cert(rest)?;
                let mut first = Ok(());
                for v in votes {
                    if !self.holds(now, v) {
                        let r =
                            SignedVote::decode(v).map_err(Into::into).and_then(|v| self.accept_vote(now, v));
                        first = first.and(r);
                    }
                }
                for rv in reveals {
                    if !self.holds(now, rv) {
                        let r = SignedReveal::decode(rv)
                            .map_err(Into::into)
                            .and_then(|r| self.accept_reveal(now, r));
                        first = first.and(r);
                    }
                }
                first
            }
            TAG_SIGNATURE => {
                let mut r = Reader::new(rest);
                let epoch = Epoch(r.u64()?);
                let key = IdentityKey::from_bytes(&r.array::<IDENTITY_KEY_LEN>()?)
                    .map_err(|_| DecodeError::Invalid { what: "authority key" })?;
                let sig = r.array::<SIGNATURE_LEN>()?;
                r.finish()?;
                self.accept_signature(now, epoch, key, sig)
            }
            TAG_CONSENSUS => self.accept_consensus(now, rest),
            _ => Err(DecodeError::Invalid { what: "peer message tag" }.into()),
        }
    }

    /// Whether the current round already holds a vote or reveal with exactly these bytes.
    fn holds(&self, now: UnixMillis, bytes: &[u8]) -> bool {
        let target = Epoch::at(now, self.params.epoch_period()).next();
        self.rounds.get(&target).is_some_and(|r| {
            r.votes.values().any(|v| v.as_bytes() == bytes)
                || r.reveals.values().any(|v| v.as_bytes() == bytes)
        })
    }

    fn voting_round(
        &mut self,
        now: UnixMillis,
        epoch: Epoch,
        author: &IdentityKey,
    ) -> Result<&mut Round, PeerMessageError> {
        if !self.set.contains(author) {
            return Err(PeerMessageError::NotAnAuthority);
        }
        let period = self.params.epoch_period();
        let cur = Epoch::at(now, period);
        if epoch != cur.next() {
            return Err(PeerMessageError::WrongEpoch(epoch));
        }
        if now >= cur.schedule(period).tabulate() {
            return Err(PeerMessageError::TooLate);
        }
        Ok(self.rounds.entry(epoch).or_default())
    }

    fn accept_vote(&mut self, now: UnixMillis, v: SignedVote) -> Result<(), PeerMessageError> {
        let author = *v.authority();
        let round = self.voting_round(now, v.epoch(), &author)?;
        if let Some(old) = round.votes.get(&author) {
            return if *old == v { Ok(()) } else { Err(PeerMessageError::Equivocation) };
        }
        if round.reveals.get(&author).is_some_and(|r| !r.opens(&v)) {
            round.reveals.remove(&author);
        }
        round.votes.insert(author, v);
        Ok(())
    }

    fn accept_reveal(&mut self, now: UnixMillis, r: SignedReveal) -> Result<(), PeerMessageError> {
        let author = *r.authority();
        let round = self.voting_round(now, r.epoch(), &author)?;
        if round.votes.get(&author).is_some_and(|v| !r.opens(v)) {
            return Err(PeerMessageError::RevealMismatch);
        }
        if let Some(old) = round.reveals.get(&author) {
            return if *old == r { Ok(()) } else { Err(PeerMessageError::Equivocation) };
        }
        round.reveals.insert(author, r);
        Ok(())
    }

    fn accept_signature(
        &mut self,
        now: UnixMillis,
        epoch: Epoch,
        key: IdentityKey,
        sig: [u8; SIGNATURE_LEN],
    ) -> Result<(), PeerMessageError> {
        if !self.set.contains(&key) {
            return Err(PeerMessageError::NotAnAuthority);
        }
        let cur = Epoch::at(now, self.params.epoch_period());
        if epoch != cur.next() {
            return Err(PeerMessageError::WrongEpoch(epoch));
        }
        let round = self.rounds.entry(epoch).or_default();
        let Some((body, sigs)) = &mut round.ours else {
            round.early_sigs.entry(key).or_insert(sig);
            return Ok(());
        };
        if !key.verify(Domain::Document, body, &sig) {
            return Err(PeerMessageError::SignatureMismatch);
        }
        sigs.insert(key, sig);
        // Signatures arriving after publication are merged into the published document.
        if let Some(p) = self.published.get_mut(&epoch)
            && p.doc.body_bytes() == body.as_slice()
            && p.sigs.insert(key, sig).is_none()
        {
            let document = encode_document(body, &p.sigs);
            self.pending.push(Action::Publish { epoch, document });
        }
        Ok(())
    }

    fn accept_consensus(&mut self, now: UnixMillis, bytes: &[u8]) -> Result<(), PeerMessageError> {
        let period = self.params.epoch_period();
        let cur = Epoch::at(now, period);
        // The usual case: a peer's copy of the document we published. Only its signatures
        // need checking.
        let (body, signatures) = split_document(bytes)?;
        if let Some((&epoch, p)) = self.published.iter_mut().find(|(_, p)| p.doc.body_bytes() == body) {
            let before = p.sigs.len();
            for (k, s) in signatures {
                if !self.set.contains(&k) {
                    continue;
                }
                if !k.verify(Domain::Document, body, &s) {
                    return Err(PeerMessageError::Document(VerifyError::BadSignature));
                }
                p.sigs.insert(k, s);
            }
            if p.sigs.len() > before {
                let document = encode_document(body, &p.sigs);
                self.pending.push(Action::Publish { epoch, document });
            }
            return Ok(());
        }
        let unverified = UnverifiedDocument::decode(bytes)?;
        let epoch = unverified.epoch();
        if epoch != cur && epoch != cur.next() {
            return Err(PeerMessageError::WrongEpoch(epoch));
        }
        let doc = unverified.verify(&self.set, epoch).map_err(PeerMessageError::Document)?;
        let theirs: Signatures =
            doc.signatures().iter().filter(|(k, _)| doc.signers().contains(k)).copied().collect();
        if let Some(p) = self.published.get_mut(&epoch) {
            if p.doc.body_bytes() != doc.body_bytes() {
                return Err(PeerMessageError::ConflictingConsensus);
            }
            let before = p.sigs.len();
            p.sigs.extend(theirs);
            if p.sigs.len() > before {
                let document = encode_document(p.doc.body_bytes(), &p.sigs);
                self.pending.push(Action::Publish { epoch, document });
            }
            return Ok(());
        }
        let mut sigs = theirs;
        if let Some(round) = self.rounds.get_mut(&epoch) {
            if let Some((body, ours)) = &round.ours
                && body.as_slice() == doc.body_bytes()
            {
                sigs.extend(ours.iter().map(|(k, s)| (*k, *s)));
            }
            round.step = Step::Finished;
        }
        self.publish(epoch, doc, sigs, false);
        Ok(())
    }

    fn publish(&mut self, epoch: Epoch, doc: Document, sigs: Signatures, announce: bool) {
        let document = encode_document(doc.body_bytes(), &sigs);
        if announce {
            self.broadcast(&[&[TAG_CONSENSUS], &document]);
        }
        self.pending.push(Action::Publish { epoch, document });
        self.published.insert(epoch, Published { doc, sigs });
    }

    fn broadcast(&mut self, parts: &[&[u8]]) {
        let message = parts.concat();
        let me = self.identity.public();
        for k in self.set.keys() {
            if *k != me {
                self.pending.push(Action::Send { to: *k, message: message.clone() });
            }
        }
    }

    /// Advances the schedule to `now` and returns what to do.
    pub fn poll(&mut self, now: UnixMillis) -> Vec<Action> {
        let period = self.params.epoch_period();
        let cur = Epoch::at(now, period);
        let target = cur.next();
        let s = cur.schedule(period);
        self.prune(cur);
        self.report_failures(cur);

        let step = self.rounds.entry(target).or_default().step;
        if step == Step::Start && now >= s.vote() {
            if now < s.reveal() {
                self.vote(target, now);
            }
            self.set_step(target, Step::Voted);
        }
        if self.step(target) == Step::Voted && now >= s.reveal() {
            if now < s.cert() {
                self.reveal(target);
            }
            self.set_step(target, Step::Revealed);
        }
        if self.step(target) == Step::Revealed && now >= s.cert() {
            if now < s.tabulate() {
                self.cert(target);
            }
            self.set_step(target, Step::Certified);
        }
        if self.step(target) == Step::Certified && now >= s.tabulate() {
            if now < s.publish() {
                self.tabulate_and_sign(target);
            }
            self.set_step(target, Step::Tabulated);
        }
        if self.step(target) == Step::Tabulated && now >= s.publish() {
            self.try_publish(target);
        }
        core::mem::take(&mut self.pending)
    }

    fn step(&self, epoch: Epoch) -> Step {
        self.rounds.get(&epoch).map_or(Step::Start, |r| r.step)
    }

    fn set_step(&mut self, epoch: Epoch, step: Step) {
        if let Some(r) = self.rounds.get_mut(&epoch) {
            r.step = step;
        }
    }

    fn prune(&mut self, cur: Epoch) {
        let keep_from = Epoch(cur.0.saturating_sub(1));
        self.rounds.retain(|e, _| *e >= cur);
        self.published.retain(|e, _| *e >= keep_from);
        self.descriptors.retain(|e, _| *e > cur);
        let period = self.params.epoch_period();
        let horizon = cur.start(period);
        self.last_seen.retain(|_, t| t.plus_millis(period.as_millis()) >= horizon);
    }

    /// Rounds whose epoch has begun without a document are reported once.
    fn report_failures(&mut self, cur: Epoch) {
        let needed = self.set.threshold();
        if let Some(round) = self.rounds.get_mut(&cur)
            && round.step != Step::Finished
            && !self.published.contains_key(&cur)
        {
            let got = round.ours.as_ref().map_or(0, |(_, s)| s.len());
            let reason = round.failure.unwrap_or(ConsensusFailure::NotEnoughSignatures { got, needed });
            round.step = Step::Finished;
            self.pending.push(Action::ConsensusFailed { epoch: cur, reason });
        }
    }

    fn vote(&mut self, target: Epoch, now: UnixMillis) {
        let mut value = Zeroizing::new([0u8; 32]);
        self.rng.fill_bytes(value.as_mut());
        let me = self.identity.public();
        let window = LIVENESS_HEARTBEATS * heartbeat(self.params.epoch_period());
        let alive = |id: &NodeId| self.last_seen.get(id).is_some_and(|t| t.plus_millis(window) >= now);
        let descriptors = self
            .descriptors
            .get(&target)
            .map(|m| m.iter().filter(|(id, _)| alive(id)).map(|(_, d)| d.clone()).collect::<Vec<_>>())
            .unwrap_or_default();
        let vote =
            SignedVote::new(&self.identity, target, &self.params, commit(&me, target, &value), descriptors);
        let reveal = SignedReveal::new(&self.identity, target, &value);
        self.broadcast(&[&[TAG_VOTE], vote.as_bytes()]);
        if let Some(round) = self.rounds.get_mut(&target) {
            round.votes.insert(me, vote);
            round.reveals.insert(me, reveal);
            round.value = Some(value);
        }
    }

    fn reveal(&mut self, target: Epoch) {
        let me = self.identity.public();
        let Some(bytes) = self
            .rounds
            .get(&target)
            .and_then(|r| r.value.as_ref().and(r.reveals.get(&me)))
            .map(|r| r.as_bytes().to_vec())
        else {
            return;
        };
        self.broadcast(&[&[TAG_REVEAL], &bytes]);
    }

    fn cert(&mut self, target: Epoch) {
        let Some(round) = self.rounds.get(&target) else { return };
        let mut w = Writer::new();
        w.u8(TAG_CERT);
        // At most one vote and one reveal per configured authority (MAX_AUTHORITIES).
        w.count8(round.votes.len());
        for v in round.votes.values() {
            w.bytes32(v.as_bytes());
        }
        w.count8(round.reveals.len());
        for r in round.reveals.values() {
            w.raw(r.as_bytes());
        }
        let message = encoded(w);
        self.broadcast(&[&message]);
    }

    fn tabulate_and_sign(&mut self, target: Epoch) {
        let me = self.identity.public();
        let Some(round) = self.rounds.get_mut(&target) else { return };
        match tabulate(target, &self.set, &round.votes, &round.reveals) {
            Err(e) => round.failure = Some(e),
            Ok(body) => {
                let sig = self.identity.sign(Domain::Document, &body);
                let mut sigs = BTreeMap::from([(me, sig)]);
                for (k, s) in core::mem::take(&mut round.early_sigs) {
                    if k.verify(Domain::Document, &body, &s) {
                        sigs.insert(k, s);
                    }
                }
                round.ours = Some((body, sigs));
                let mut w = Writer::new();
                w.u8(TAG_SIGNATURE);
                w.u64(target.0);
                w.raw(me.as_bytes());
                w.raw(&sig);
                let message = encoded(w);
                self.broadcast(&[&message]);
            }
        }
    }

    fn try_publish(&mut self, target: Epoch) {
        if self.published.contains_key(&target) {
            self.set_step(target, Step::Finished);
            return;
        }
        let Some(round) = self.rounds.get(&target) else { return };
        let Some((body, sigs)) = round.ours.as_ref().filter(|_| round.failure.is_none()) else { return };
        if sigs.len() < self.set.threshold() {
            // Wait for a peer's document until the epoch begins.
            return;
        }
        let sigs = sigs.clone();
        let bytes = encode_document(body, &sigs);
        match Document::verify(&bytes, &self.set, target) {
            Ok(doc) => {
                self.set_step(target, Step::Finished);
                self.publish(target, doc, sigs, true);
            }
            Err(_) => {
                if let Some(r) = self.rounds.get_mut(&target) {
                    r.failure = Some(ConsensusFailure::Internal("own document does not verify"));
                }
            }
        }
    }
}

/// Splits a cert into its vote and reveal encodings (decoded one by one by the caller).
type CertParts<'a> = (Vec<&'a [u8]>, Vec<&'a [u8]>);

fn split_cert(bytes: &[u8]) -> Result<CertParts<'_>, DecodeError> {
    let mut r = Reader::new(bytes);
    let n = usize::from(r.u8()?);
    if n > crate::document::MAX_AUTHORITIES {
        return Err(DecodeError::TooLarge { what: "cert votes" });
    }
    let mut votes = Vec::with_capacity(n);
    for _ in 0..n {
        votes.push(r.bytes32(MAX_VOTE_LEN, "vote")?);
    }
    let m = usize::from(r.u8()?);
    if m > crate::document::MAX_AUTHORITIES {
        return Err(DecodeError::TooLarge { what: "cert reveals" });
    }
    let mut reveals = Vec::with_capacity(m);
    for _ in 0..m {
        reveals.push(r.raw(REVEAL_LEN)?);
    }
    r.finish()?;
    Ok((votes, reveals))
}
