//! Votes, shared-random reveals, and the deterministic tabulation of a consensus.
//!
//! Encodings (see the crate documentation, *Encoding*):
//!
//! ```text
//! vote   = body ‖ signature over "qanat-pki v1 vote\0" ‖ body
//! body   = u8 version (1 or 2) | u64 epoch | [32] authority key | parameters | [32] commit
//!        | u16 count, (u16 len, signed descriptor) × count, sorted by node id
//! reveal = u8 version (1) | u64 epoch | [32] authority key | [32] value
//!          ‖ signature over "qanat-pki v1 reveal\0" ‖ those bytes
//! commit = SHA-256("qanat-pki v1 commit\0" ‖ authority key ‖ u64 epoch ‖ value)
//! ```
//!
//! A vote's version is its parameters' ([`Parameters::version`]), and `parameters` is encoded
//! as in a document of that version ([`crate::document`]): 2 with file limits, else 1. Reveals
//! have only version 1.
//!
//! # Tabulation
//!
//! Given the votes and reveals an authority holds for epoch `E`, tabulation computes the
//! document body; it depends on nothing else, so authorities holding the same votes and
//! reveals compute the same bytes. With `n` the size of the configured authority set:
//!
//! 1. A vote counts only if its author is in the set and its reveal opens its commit. Fewer than
//!    `⌊n/2⌋+1` counted votes: no consensus.
//! 2. The parameters are those (byte-identical) in at least `⌊n/2⌋+1` counted votes, else no
//!    consensus.
//! 3. A descriptor is included iff the byte-identical signed descriptor appears in at least
//!    `⌊n/2⌋+1` counted votes and uses the agreed scheme. A vote holds at most one descriptor
//!    per node, so at most one descriptor per node can pass.
//! 4. The shared random value is
//!    `SHA-256("qanat-pki v1 srv\0" ‖ u64 epoch ‖ (key ‖ value) for each counted vote by key)`.
//! 5. Mixes are ordered by `SHA-256("qanat-pki v1 layer\0" ‖ srv ‖ node id)` and dealt to layers
//!    in turn, so layer sizes differ by at most one and no node (nor any authority, which
//!    committed before seeing the others' values) can choose its layer. Gateways keep their role.

use core::fmt;
use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::descriptor::{MAX_DESCRIPTOR_LEN, Role, SignedDescriptor};
use crate::document::{AuthoritySet, Body, MAX_BODY_LEN, MAX_NODES, Node, Position};
use crate::error::{ConsensusFailure, DecodeError};
use crate::identity::{Domain, IDENTITY_KEY_LEN, IdentityKey, IdentitySecret, SIGNATURE_LEN};
use crate::params::{Parameters, VERSION_1, VERSION_2};
use crate::time::Epoch;
use crate::wire::{Reader, Writer, encoded, split_signature};

/// The version of reveals.
const REVEAL_VERSION: u8 = 1;
/// Longest signed vote.
pub const MAX_VOTE_LEN: usize = MAX_BODY_LEN + IDENTITY_KEY_LEN + 32 + SIGNATURE_LEN;
/// Length of a signed reveal.
pub const REVEAL_LEN: usize = 1 + 8 + IDENTITY_KEY_LEN + 32 + SIGNATURE_LEN;

/// The commitment to a shared-random value.
pub(crate) fn commit(authority: &IdentityKey, epoch: Epoch, value: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"qanat-pki v1 commit\0");
    h.update(authority.as_bytes());
    h.update(epoch.0.to_be_bytes());
    h.update(value);
    h.finalize().into()
}

/// Decodes an authority's signed statement (a vote or a reveal): `body ‖ signature`, where the
/// body opens with the version (one of `versions`), the epoch and the authority's key, and `rest`
/// reads what follows (given the version and the epoch); the signature must verify under that
/// key in `domain`. `what` names the statement in errors.
fn decode_signed<T>(
    bytes: &[u8],
    domain: Domain,
    what: &'static str,
    versions: &[u8],
    rest: impl FnOnce(&mut Reader<'_>, u8, Epoch) -> Result<T, DecodeError>,
) -> Result<(Epoch, IdentityKey, T), DecodeError> {
    let (body, sig) = split_signature(bytes)?;
    let mut r = Reader::new(body);
    let v = r.u8()?;
    if !versions.contains(&v) {
        return Err(DecodeError::Version { what, got: v });
    }
    let epoch = Epoch(r.u64()?);
    let authority =
        IdentityKey::from_bytes(&r.array()?).map_err(|_| DecodeError::Invalid { what: "authority key" })?;
    let rest = rest(&mut r, v, epoch)?;
    r.finish()?;
    if !authority.verify(domain, body, &sig) {
        return Err(DecodeError::BadSignature { what });
    }
    Ok((epoch, authority, rest))
}

/// An authority's signed vote for one epoch.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedVote {
    bytes: Vec<u8>,
    epoch: Epoch,
    authority: IdentityKey,
    params: Parameters,
    commit: [u8; 32],
    descriptors: Vec<SignedDescriptor>,
}

impl SignedVote {
    /// Makes and signs a vote. `descriptors` must be for `epoch`; duplicates per node are
    /// resolved by keeping the last, and at most [`MAX_NODES`] are kept.
    pub(crate) fn new(
        secret: &IdentitySecret,
        epoch: Epoch,
        params: &Parameters,
        commit: [u8; 32],
        descriptors: impl IntoIterator<Item = SignedDescriptor>,
    ) -> Self {
        let by_id: BTreeMap<_, _> = descriptors
            .into_iter()
            .filter(|d| d.descriptor().epoch() == epoch)
            .map(|d| (d.descriptor().node_id(), d))
            .collect();
        let descriptors: Vec<SignedDescriptor> = by_id.into_values().take(MAX_NODES).collect();
        let mut w = Writer::new();
        w.u8(params.version());
        w.u64(epoch.0);
        w.raw(secret.public().as_bytes());
        params.encode(&mut w);
        w.raw(&commit);
        w.count16(descriptors.len());
        for d in &descriptors {
            w.bytes16(d.as_bytes());
        }
        let mut bytes = encoded(w);
        let sig = secret.sign(Domain::Vote, &bytes);
        bytes.extend_from_slice(&sig);
        Self { bytes, epoch, authority: secret.public(), params: params.clone(), commit, descriptors }
    }

    /// Parses a vote and checks its signature under the authority key it names (whether that
    /// key is a configured authority is the caller's check) and every descriptor's signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_VOTE_LEN {
            return Err(DecodeError::TooLarge { what: "vote" });
        }
        let (epoch, authority, (params, commit, descriptors)) =
            decode_signed(bytes, Domain::Vote, "vote", &[VERSION_1, VERSION_2], |r, version, epoch| {
                let params = Parameters::decode(r, version)?;
                let commit = r.array::<32>()?;
                let n = r.count16(MAX_NODES, "vote descriptors")?;
                let mut descriptors: Vec<SignedDescriptor> = Vec::with_capacity(n);
                for _ in 0..n {
                    let d = SignedDescriptor::decode(r.bytes16(MAX_DESCRIPTOR_LEN, "descriptor")?)?;
                    if d.descriptor().epoch() != epoch {
                        return Err(DecodeError::Invalid { what: "descriptor epoch" });
                    }
                    if descriptors
                        .last()
                        .is_some_and(|last| last.descriptor().node_id() >= d.descriptor().node_id())
                    {
                        return Err(DecodeError::NotCanonical { what: "vote descriptors" });
                    }
                    descriptors.push(d);
                }
                Ok((params, commit, descriptors))
            })?;
        Ok(Self { bytes: bytes.to_vec(), epoch, authority, params, commit, descriptors })
    }

    /// The exact bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The epoch voted on.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The voting authority.
    pub fn authority(&self) -> &IdentityKey {
        &self.authority
    }

    /// The parameters the authority proposes.
    pub fn parameters(&self) -> &Parameters {
        &self.params
    }

    /// The descriptors the authority holds for the epoch, sorted by node id.
    pub fn descriptors(&self) -> &[SignedDescriptor] {
        &self.descriptors
    }
}

impl fmt::Debug for SignedVote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedVote")
            .field("epoch", &self.epoch)
            .field("descriptors", &self.descriptors.len())
            .finish_non_exhaustive()
    }
}

/// An authority's signed reveal of its shared-random value for one epoch.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedReveal {
    bytes: [u8; REVEAL_LEN],
    epoch: Epoch,
    authority: IdentityKey,
    value: [u8; 32],
}

impl SignedReveal {
    pub(crate) fn new(secret: &IdentitySecret, epoch: Epoch, value: &[u8; 32]) -> Self {
        let mut bytes = [0u8; REVEAL_LEN];
        let body_len = REVEAL_LEN - SIGNATURE_LEN;
        bytes[0] = REVEAL_VERSION;
        bytes[1..9].copy_from_slice(&epoch.0.to_be_bytes());
        bytes[9..41].copy_from_slice(secret.public().as_bytes());
        bytes[41..body_len].copy_from_slice(value);
        let sig = secret.sign(Domain::Reveal, &bytes[..body_len]);
        bytes[body_len..].copy_from_slice(&sig);
        Self { bytes, epoch, authority: secret.public(), value: *value }
    }

    /// Parses a reveal and checks its signature under the key it names.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let bytes: [u8; REVEAL_LEN] = bytes.try_into().map_err(|_| {
            if bytes.len() < REVEAL_LEN { DecodeError::Truncated } else { DecodeError::TrailingBytes }
        })?;
        let (epoch, authority, value) =
            decode_signed(&bytes, Domain::Reveal, "reveal", &[REVEAL_VERSION], |r, _, _| {
                Ok(r.array::<32>()?)
            })?;
        Ok(Self { bytes, epoch, authority, value })
    }

    // The same three getters as `SignedVote`'s, on purpose: each public type documents its own
    // accessors, and a trait or macro to share three one-line getters would cost more than it saves.

    /// The exact bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The revealing authority.
    pub fn authority(&self) -> &IdentityKey {
        &self.authority
    }

    /// Whether this reveal opens `vote`'s commit.
    pub fn opens(&self, vote: &SignedVote) -> bool {
        vote.authority == self.authority
            && vote.epoch == self.epoch
            && commit(&self.authority, self.epoch, &self.value) == vote.commit
    }
}

impl fmt::Debug for SignedReveal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedReveal").field("epoch", &self.epoch).finish_non_exhaustive()
    }
}

/// Computes the consensus body for `epoch` from the votes and reveals held (see the module
/// documentation). Votes and reveals not for `epoch` or not by a member of `set` are ignored.
pub(crate) fn tabulate(
    epoch: Epoch,
    set: &AuthoritySet,
    votes: &BTreeMap<IdentityKey, SignedVote>,
    reveals: &BTreeMap<IdentityKey, SignedReveal>,
) -> Result<Vec<u8>, ConsensusFailure> {
    let needed = set.threshold();
    // 1. Counted votes, by authority key (BTreeMap order).
    let counted: Vec<(&SignedVote, &SignedReveal)> = votes
        .iter()
        .filter(|(k, v)| set.contains(k) && v.epoch == epoch && v.authority == **k)
        .filter_map(|(k, v)| reveals.get(k).filter(|r| r.opens(v)).map(|r| (v, r)))
        .collect();
    if counted.len() < needed {
        return Err(ConsensusFailure::NotEnoughVotes { got: counted.len(), needed });
    }
    // 2. Parameters.
    let mut param_votes: BTreeMap<Vec<u8>, (usize, &Parameters)> = BTreeMap::new();
    for (v, _) in &counted {
        param_votes.entry(v.params.to_bytes()).or_insert((0, &v.params)).0 += 1;
    }
    let params = param_votes
        .values()
        .find(|(c, _)| *c >= needed)
        .map(|(_, p)| (*p).clone())
        .ok_or(ConsensusFailure::NoParameterMajority)?;
    // 3. Descriptors seen in a majority of votes.
    let mut seen: BTreeMap<&[u8], (usize, &SignedDescriptor)> = BTreeMap::new();
    for (v, _) in &counted {
        for d in &v.descriptors {
            seen.entry(d.as_bytes()).or_insert((0, d)).0 += 1;
        }
    }
    let included: Vec<&SignedDescriptor> = seen
        .values()
        .filter(|(c, d)| *c >= needed && d.descriptor().scheme() == params.scheme())
        .map(|(_, d)| *d)
        .collect();
    // 4. Shared random value.
    let mut h = Sha256::new();
    h.update(b"qanat-pki v1 srv\0");
    h.update(epoch.0.to_be_bytes());
    for (v, r) in &counted {
        h.update(v.authority.as_bytes());
        h.update(r.value);
    }
    let srv: [u8; 32] = h.finalize().into();
    // 5. Layers.
    let mut mixes: Vec<([u8; 32], &SignedDescriptor)> = included
        .iter()
        .filter(|d| d.descriptor().role() == Role::Mix)
        .map(|d| {
            let mut h = Sha256::new();
            h.update(b"qanat-pki v1 layer\0");
            h.update(srv);
            h.update(d.descriptor().node_id().0);
            (h.finalize().into(), *d)
        })
        .collect();
    mixes.sort_by_key(|a| a.0);
    let layers = params.mix_layers();
    let mut nodes: Vec<Node> = Vec::with_capacity(included.len());
    for (i, (_, d)) in mixes.into_iter().enumerate() {
        let layer = u8::try_from(i % layers).map_err(|_| ConsensusFailure::Internal("layer index"))?;
        nodes.push(Node::new(Position::Mix { layer }, d.clone()));
    }
    for d in included.iter().filter(|d| d.descriptor().role() == Role::Gateway) {
        nodes.push(Node::new(Position::Gateway, (*d).clone()));
    }
    nodes.sort_by_key(Node::id);
    if nodes.len() > MAX_NODES || nodes.windows(2).any(|w| w[0].id() == w[1].id()) {
        return Err(ConsensusFailure::Internal("node list"));
    }
    let body = Body { epoch, params, shared_random: srv, nodes }.encode();
    if body.len() > MAX_BODY_LEN {
        return Err(ConsensusFailure::Internal("document body too large"));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{FileLimits, ParametersConfig};
    use crate::testutil::{descriptor, rng};
    use qanat_packet::Scheme;

    struct Setup {
        secrets: Vec<IdentitySecret>,
        set: AuthoritySet,
        descs: Vec<SignedDescriptor>,
        params: Parameters,
    }

    fn setup(n: usize, mixes: usize, gateways: usize) -> Setup {
        let mut rng = rng(9);
        let secrets: Vec<_> = (0..n).map(|_| IdentitySecret::generate(&mut rng)).collect();
        let set = AuthoritySet::new(secrets.iter().map(IdentitySecret::public)).unwrap();
        let mut descs = Vec::new();
        for i in 0..mixes + gateways {
            let role = if i < mixes { Role::Mix } else { Role::Gateway };
            descs.push(descriptor(&mut rng, Scheme::X25519Kem, role, Epoch(10), i).1);
        }
        Setup { secrets, set, descs, params: Parameters::default_for(Scheme::X25519Kem) }
    }

    fn vote_all(
        s: &Setup,
        pick: impl Fn(usize) -> Vec<SignedDescriptor>,
    ) -> (BTreeMap<IdentityKey, SignedVote>, BTreeMap<IdentityKey, SignedReveal>) {
        let mut votes = BTreeMap::new();
        let mut reveals = BTreeMap::new();
        for (i, sk) in s.secrets.iter().enumerate() {
            let value = [i as u8; 32];
            let v =
                SignedVote::new(sk, Epoch(10), &s.params, commit(&sk.public(), Epoch(10), &value), pick(i));
            let v = SignedVote::decode(v.as_bytes()).unwrap();
            votes.insert(sk.public(), v);
            let r = SignedReveal::decode(SignedReveal::new(sk, Epoch(10), &value).as_bytes()).unwrap();
            reveals.insert(sk.public(), r);
        }
        (votes, reveals)
    }

    #[test]
    fn layers_are_balanced_and_majority_rules() {
        let s = setup(3, 7, 2);
        // Authority 0 misses descriptor 0; authorities 1 and 2 miss descriptor 1.
        let (votes, reveals) = vote_all(&s, |i| {
            s.descs
                .iter()
                .enumerate()
                .filter(|(j, _)| !((i == 0 && *j == 0) || (i > 0 && *j == 1)))
                .map(|(_, d)| d.clone())
                .collect()
        });
        let body = tabulate(Epoch(10), &s.set, &votes, &reveals).unwrap();
        let b = Body::decode(&body).unwrap();
        let ids: Vec<_> = b.nodes.iter().map(Node::id).collect();
        assert!(ids.contains(&s.descs[0].descriptor().node_id()));
        assert!(!ids.contains(&s.descs[1].descriptor().node_id()));
        assert_eq!(b.nodes.len(), 8);
        let mut sizes = [0usize; 3];
        for n in &b.nodes {
            if let Position::Mix { layer } = n.position() {
                sizes[usize::from(layer)] += 1;
            }
        }
        assert_eq!(sizes.iter().sum::<usize>(), 6);
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
        // Deterministic: the order of insertion does not matter.
        let again = tabulate(Epoch(10), &s.set, &votes.clone(), &reveals.clone()).unwrap();
        assert_eq!(again, body);
    }

    #[test]
    fn bad_reveal_excludes_the_vote() {
        let s = setup(3, 3, 1);
        let (votes, mut reveals) = vote_all(&s, |_| s.descs.clone());
        let k0 = s.secrets[0].public();
        reveals.insert(k0, SignedReveal::new(&s.secrets[0], Epoch(10), &[99; 32]));
        // Two votes left out of three still make a majority.
        assert!(tabulate(Epoch(10), &s.set, &votes, &reveals).is_ok());
        let k1 = s.secrets[1].public();
        reveals.remove(&k1);
        assert_eq!(
            tabulate(Epoch(10), &s.set, &votes, &reveals),
            Err(ConsensusFailure::NotEnoughVotes { got: 1, needed: 2 })
        );
    }

    #[test]
    fn parameters_need_a_majority() {
        let mut s = setup(3, 3, 1);
        let (mut votes, reveals) = vote_all(&s, |_| s.descs.clone());
        let mut c = s.params.config();
        c.mean_delay_ms += 1;
        s.params = Parameters::new(c).unwrap();
        let sk = &s.secrets[0];
        let v = SignedVote::new(
            sk,
            Epoch(10),
            &s.params,
            commit(&sk.public(), Epoch(10), &[0; 32]),
            s.descs.clone(),
        );
        votes.insert(sk.public(), v);
        assert!(tabulate(Epoch(10), &s.set, &votes, &reveals).is_ok());
        let sk = &s.secrets[1];
        let v = SignedVote::new(
            sk,
            Epoch(10),
            &s.params,
            commit(&sk.public(), Epoch(10), &[1; 32]),
            s.descs.clone(),
        );
        votes.insert(sk.public(), v);
        let body = Body::decode(&tabulate(Epoch(10), &s.set, &votes, &reveals).unwrap()).unwrap();
        assert_eq!(body.params, s.params);
    }

    #[test]
    fn vote_and_reveal_round_trip() {
        let s = setup(1, 2, 1);
        let (votes, reveals) = vote_all(&s, |_| s.descs.clone());
        let v = votes.values().next().unwrap();
        assert_eq!(SignedVote::decode(v.as_bytes()).unwrap(), *v);
        let mut b = v.as_bytes().to_vec();
        let last = b.len() - 1;
        b[last] ^= 1;
        assert_eq!(SignedVote::decode(&b), Err(DecodeError::BadSignature { what: "vote" }));
        let r = reveals.values().next().unwrap();
        assert!(r.opens(v));
        assert_eq!(SignedReveal::decode(&r.as_bytes()[1..]), Err(DecodeError::Truncated));
    }

    fn with_limits(p: &Parameters, file_limits: Option<FileLimits>) -> Parameters {
        Parameters::new(ParametersConfig { file_limits, ..p.config() }).unwrap()
    }

    #[test]
    fn votes_of_either_version_round_trip_and_reveals_stay_at_1() {
        let s = setup(1, 2, 1);
        let sk = &s.secrets[0];
        for (limits, version) in [(None, 1), (Some(FileLimits::DEFAULT), 2)] {
            let params = with_limits(&s.params, limits);
            let v = SignedVote::new(sk, Epoch(10), &params, [3; 32], s.descs.clone());
            assert_eq!(v.as_bytes()[0], version);
            let back = SignedVote::decode(v.as_bytes()).unwrap();
            assert_eq!(back, v);
            assert_eq!(back.parameters().file_limits(), limits.unwrap_or(FileLimits::VERSION_1));
            // The version byte is signed: relabelling breaks the parse or the signature.
            let mut b = v.as_bytes().to_vec();
            b[0] = 3 - version;
            assert!(SignedVote::decode(&b).is_err());
            b[0] = 3;
            assert_eq!(SignedVote::decode(&b), Err(DecodeError::Version { what: "vote", got: 3 }));
            let mut longer = v.as_bytes().to_vec();
            longer.insert(longer.len() - SIGNATURE_LEN, 0);
            assert!(SignedVote::decode(&longer).is_err());
        }
        let r = SignedReveal::new(sk, Epoch(10), &[1; 32]);
        assert_eq!(r.as_bytes()[0], 1);
        let mut b = r.as_bytes().to_vec();
        b[0] = 2;
        assert_eq!(SignedReveal::decode(&b), Err(DecodeError::Version { what: "reveal", got: 2 }));
    }

    /// Parameters of version 1 and 2 are different parameters: the document is of the version a
    /// majority voted, and authorities that switch one by one never split the round (the switch
    /// takes effect once a majority has made it).
    #[test]
    fn the_version_a_majority_votes_is_the_documents() {
        let s = setup(3, 3, 1);
        let v1 = s.params.clone();
        let v2 = with_limits(&v1, Some(FileLimits::DEFAULT));
        for switched in 0..=3 {
            let mut votes = BTreeMap::new();
            let mut reveals = BTreeMap::new();
            for (i, sk) in s.secrets.iter().enumerate() {
                let value = [i as u8; 32];
                let p = if i < switched { &v2 } else { &v1 };
                let c = commit(&sk.public(), Epoch(10), &value);
                votes.insert(sk.public(), SignedVote::new(sk, Epoch(10), p, c, s.descs.clone()));
                reveals.insert(sk.public(), SignedReveal::new(sk, Epoch(10), &value));
            }
            let body = tabulate(Epoch(10), &s.set, &votes, &reveals).unwrap();
            let want = if switched >= 2 { &v2 } else { &v1 };
            assert_eq!(body[0], want.version(), "{switched} switched");
            let b = Body::decode(&body).unwrap();
            assert_eq!(&b.params, want);
            assert_eq!(b.nodes.len(), 4);
        }
        // One authority votes other limits: no majority for any parameters among the three.
        let other = with_limits(&v1, Some(FileLimits { max_file_bytes: 1 << 20, fast_factor_max: 1 }));
        let mut votes = BTreeMap::new();
        let mut reveals = BTreeMap::new();
        for (i, (sk, p)) in s.secrets.iter().zip([&v1, &v2, &other]).enumerate() {
            let value = [i as u8; 32];
            let c = commit(&sk.public(), Epoch(10), &value);
            votes.insert(sk.public(), SignedVote::new(sk, Epoch(10), p, c, s.descs.clone()));
            reveals.insert(sk.public(), SignedReveal::new(sk, Epoch(10), &value));
        }
        assert_eq!(tabulate(Epoch(10), &s.set, &votes, &reveals), Err(ConsensusFailure::NoParameterMajority));
    }
}
