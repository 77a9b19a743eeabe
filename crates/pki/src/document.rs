//! The per-epoch network document, the authority set that signs it, and its verification.
//!
//! Encoding (see the crate documentation, *Encoding*):
//!
//! ```text
//! document = u32 len, body | u8 count, (key [32] ‖ signature [64]) × count, sorted by key
//! body     = u8 version (1 or 2) | u64 epoch | parameters | [32] shared random value
//!          | u16 count, (u8 position ‖ u16 len, signed descriptor) × count, sorted by node id
//! position = 0 for a gateway, 1..=L for a mix in layer 1..=L
//! parameters (version 1) = u8 len, scheme name | u8 hops | u32 forward payload length
//!          | u8 mix layers | u32 mean delay (ms) | u64 λ_P | u64 λ_L | u64 λ_D | u64 λ_M (µ/s)
//!          | u64 epoch period (ms)
//! parameters (version 2) = parameters (version 1) | u32 max file bytes | u8 fast factor max
//! ```
//!
//! The version is the parameters' ([`Parameters::version`]): 2 when they carry file limits
//! ([`crate::params::FileLimits`]), else 1, so that a network whose authorities did not set
//! them publishes the very bytes it did before version 2. A reader takes both; a version-1
//! document means 1 MiB files and no fast mode.
//!
//! Each signature is an authority's Ed25519 signature over `"qanat-pki v1 document\0" ‖ body`.
//! The body holds each node's descriptor exactly as the node signed it, so a reader can check
//! every node's own signature too (the decoder does).

use core::fmt;
use std::collections::BTreeMap;

use qanat_packet::{NodeId, PublicKey};

use crate::descriptor::{MAX_DESCRIPTOR_LEN, NodeDescriptor, Role, SignedDescriptor};
use crate::error::{ConfigError, DecodeError, VerifyError};
use crate::identity::{Domain, IDENTITY_KEY_LEN, IdentityKey, SIGNATURE_LEN};
use crate::params::{Parameters, VERSION_1, VERSION_2};
use crate::time::Epoch;
use crate::wire::{Reader, Writer, encoded};

/// Most authorities in a set: nine, which tolerates four faulty or offline (deployed mix
/// networks run three to five). The bound matters because a cert relays every authority's vote
/// in one message, so the largest message an authority must accept from a peer grows with it
/// ([`crate::authority::MAX_PEER_MESSAGE_LEN`], about 38 MB at nine).
pub const MAX_AUTHORITIES: usize = 9;
/// Most nodes in a document (and descriptors in a vote).
pub const MAX_NODES: usize = 512;
/// Longest document body (also bounds votes).
pub const MAX_BODY_LEN: usize = 256 + MAX_NODES * (3 + MAX_DESCRIPTOR_LEN);
/// Longest encoded document.
pub const MAX_DOCUMENT_LEN: usize =
    4 + MAX_BODY_LEN + 1 + MAX_AUTHORITIES * (IDENTITY_KEY_LEN + SIGNATURE_LEN);

/// Signatures by authority key, in canonical (key) order.
pub(crate) type Signatures = BTreeMap<IdentityKey, [u8; SIGNATURE_LEN]>;
/// A signature list as decoded: strictly increasing keys.
pub(crate) type SignatureList = Vec<(IdentityKey, [u8; SIGNATURE_LEN])>;

/// The configured directory authorities: the only keys whose signatures count.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AuthoritySet {
    keys: Vec<IdentityKey>,
}

impl AuthoritySet {
    /// The set of `keys`: between 1 and [`MAX_AUTHORITIES`], all distinct.
    pub fn new(keys: impl IntoIterator<Item = IdentityKey>) -> Result<Self, ConfigError> {
        let mut keys: Vec<IdentityKey> = keys.into_iter().collect();
        keys.sort();
        if keys.is_empty() {
            return Err(ConfigError::AuthoritySet("empty"));
        }
        if keys.len() > MAX_AUTHORITIES {
            return Err(ConfigError::AuthoritySet("too many authorities"));
        }
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return Err(ConfigError::AuthoritySet("duplicate key"));
        }
        Ok(Self { keys })
    }

    /// Number of authorities.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a set has at least one authority.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// A strict majority: `⌊n/2⌋ + 1`.
    pub fn threshold(&self) -> usize {
        self.keys.len() / 2 + 1
    }

    /// Whether `k` is one of the authorities.
    pub fn contains(&self, k: &IdentityKey) -> bool {
        self.keys.binary_search(k).is_ok()
    }

    /// The keys, sorted.
    pub fn keys(&self) -> &[IdentityKey] {
        &self.keys
    }
}

/// Where a node sits in the network for the document's epoch.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Position {
    /// A mix in layer `layer`, counted from 0 (the layer after the entry gateway).
    Mix {
        /// The layer, `0..mix_layers`.
        layer: u8,
    },
    /// A gateway.
    Gateway,
}

/// A node as listed in a document.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Node {
    id: NodeId,
    position: Position,
    signed: SignedDescriptor,
}

impl Node {
    pub(crate) fn new(position: Position, signed: SignedDescriptor) -> Self {
        Self { id: signed.descriptor().node_id(), position, signed }
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Mix layer or gateway.
    pub fn position(&self) -> Position {
        self.position
    }

    /// The node's descriptor.
    pub fn descriptor(&self) -> &NodeDescriptor {
        self.signed.descriptor()
    }

    /// The node's descriptor with its signature, as the node uploaded it.
    pub fn signed_descriptor(&self) -> &SignedDescriptor {
        &self.signed
    }
}

/// The signed part of a document.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Body {
    pub(crate) epoch: Epoch,
    pub(crate) params: Parameters,
    pub(crate) shared_random: [u8; 32],
    /// Sorted by node id.
    pub(crate) nodes: Vec<Node>,
}

impl Body {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(self.params.version());
        w.u64(self.epoch.0);
        self.params.encode(&mut w);
        w.raw(&self.shared_random);
        // Tabulation includes at most MAX_NODES (votes hold no more).
        w.count16(self.nodes.len());
        for n in &self.nodes {
            w.u8(match n.position {
                Position::Gateway => 0,
                Position::Mix { layer } => layer.saturating_add(1),
            });
            w.bytes16(n.signed.as_bytes());
        }
        encoded(w)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = r.u8()?;
        if v != VERSION_1 && v != VERSION_2 {
            return Err(DecodeError::Version { what: "document", got: v });
        }
        let epoch = Epoch(r.u64()?);
        let params = Parameters::decode(&mut r, v)?;
        let shared_random = r.array::<32>()?;
        let n = r.count16(MAX_NODES, "node list")?;
        let mut nodes: Vec<Node> = Vec::with_capacity(n);
        for _ in 0..n {
            let pos = r.u8()?;
            let signed = SignedDescriptor::decode(r.bytes16(MAX_DESCRIPTOR_LEN, "descriptor")?)?;
            let d = signed.descriptor();
            let position = match (pos, d.role()) {
                (0, Role::Gateway) => Position::Gateway,
                (l, Role::Mix) if l >= 1 && usize::from(l) <= params.mix_layers() => {
                    Position::Mix { layer: l - 1 }
                }
                _ => return Err(DecodeError::Invalid { what: "node position" }),
            };
            if d.epoch() != epoch {
                return Err(DecodeError::Invalid { what: "descriptor epoch" });
            }
            if d.scheme() != params.scheme() {
                return Err(DecodeError::Invalid { what: "descriptor scheme" });
            }
            let node = Node::new(position, signed);
            if nodes.last().is_some_and(|last| last.id >= node.id) {
                return Err(DecodeError::NotCanonical { what: "node list" });
            }
            nodes.push(node);
        }
        r.finish()?;
        Ok(Self { epoch, params, shared_random, nodes })
    }
}

/// Assembles `u32 len ‖ body ‖ signatures`.
pub(crate) fn encode_document(body: &[u8], sigs: &Signatures) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes32(body);
    // The signers are configured authorities, at most MAX_AUTHORITIES.
    w.count8(sigs.len());
    for (k, s) in sigs {
        w.raw(k.as_bytes());
        w.raw(s);
    }
    encoded(w)
}

/// Splits an encoded document into its body (not decoded) and its signature list (keys parsed,
/// canonical order checked, signatures not verified).
pub(crate) fn split_document(bytes: &[u8]) -> Result<(&[u8], SignatureList), DecodeError> {
    if bytes.len() > MAX_DOCUMENT_LEN {
        return Err(DecodeError::TooLarge { what: "document" });
    }
    let mut r = Reader::new(bytes);
    let body_bytes = r.bytes32(MAX_BODY_LEN, "document body")?;
    let n = usize::from(r.u8()?);
    if n > MAX_AUTHORITIES {
        return Err(DecodeError::TooLarge { what: "signature list" });
    }
    let want = n * (IDENTITY_KEY_LEN + SIGNATURE_LEN);
    if r.remaining() != want {
        return Err(if r.remaining() < want { DecodeError::Truncated } else { DecodeError::TrailingBytes });
    }
    let mut signatures: SignatureList = Vec::with_capacity(n);
    for _ in 0..n {
        let k =
            IdentityKey::from_bytes(&r.array()?).map_err(|_| DecodeError::Invalid { what: "signer key" })?;
        let s = r.array()?;
        if signatures.last().is_some_and(|(last, _)| *last >= k) {
            return Err(DecodeError::NotCanonical { what: "signature list" });
        }
        signatures.push((k, s));
    }
    r.finish()?;
    Ok((body_bytes, signatures))
}

/// A document that parsed, whose authority signatures have not been checked yet.
#[derive(Clone)]
pub struct UnverifiedDocument {
    body_bytes: Vec<u8>,
    body: Body,
    signatures: SignatureList,
}

impl UnverifiedDocument {
    /// Parses a document (checking its structure and every node's own descriptor signature, but
    /// not the authorities' signatures).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (body_bytes, signatures) = split_document(bytes)?;
        let body = Body::decode(body_bytes)?;
        Ok(Self { body_bytes: body_bytes.to_vec(), body, signatures })
    }

    /// The epoch the document claims to be for.
    pub fn epoch(&self) -> Epoch {
        self.body.epoch
    }

    /// Re-encodes the document (identical to the bytes it was decoded from).
    pub fn to_bytes(&self) -> Vec<u8> {
        encode_document(&self.body_bytes, &self.signatures.iter().copied().collect())
    }

    /// Checks that the document is for `epoch` and that a strict majority of `authorities`
    /// signed it. Signatures by keys outside the set are ignored; a signature by a key in the
    /// set that does not verify rejects the whole document.
    pub fn verify(self, authorities: &AuthoritySet, epoch: Epoch) -> Result<Document, VerifyError> {
        if self.body.epoch != epoch {
            return Err(VerifyError::WrongEpoch { expected: epoch, got: self.body.epoch });
        }
        let mut signers = Vec::new();
        for (k, s) in &self.signatures {
            if !authorities.contains(k) {
                continue;
            }
            if !k.verify(Domain::Document, &self.body_bytes, s) {
                return Err(VerifyError::BadSignature);
            }
            signers.push(*k);
        }
        if signers.len() < authorities.threshold() {
            return Err(VerifyError::NotEnoughSignatures {
                valid: signers.len(),
                needed: authorities.threshold(),
            });
        }
        Ok(Document::from_parts(self.body_bytes, self.body, self.signatures, signers))
    }
}

impl fmt::Debug for UnverifiedDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnverifiedDocument")
            .field("epoch", &self.body.epoch)
            .field("nodes", &self.body.nodes.len())
            .field("signatures", &self.signatures.len())
            .finish()
    }
}

/// A verified network document: the nodes, their positions and keys, and the parameters of one
/// epoch, signed by a majority of the authorities.
#[derive(Clone)]
pub struct Document {
    body_bytes: Vec<u8>,
    body: Body,
    signatures: SignatureList,
    signers: Vec<IdentityKey>,
    layers: Vec<Vec<usize>>,
    gateways: Vec<usize>,
}

impl Document {
    /// Decodes and verifies a document: it must be for `epoch` and signed by a strict majority
    /// of `authorities` (see [`UnverifiedDocument::verify`]). A client that knows the time
    /// computes `epoch` with [`Epoch::at`]; one that fetches the next document early passes
    /// the next epoch.
    pub fn verify(bytes: &[u8], authorities: &AuthoritySet, epoch: Epoch) -> Result<Self, VerifyError> {
        UnverifiedDocument::decode(bytes)?.verify(authorities, epoch)
    }

    fn from_parts(
        body_bytes: Vec<u8>,
        body: Body,
        signatures: SignatureList,
        signers: Vec<IdentityKey>,
    ) -> Self {
        let mut layers = vec![Vec::new(); body.params.mix_layers()];
        let mut gateways = Vec::new();
        for (i, n) in body.nodes.iter().enumerate() {
            match n.position {
                Position::Gateway => gateways.push(i),
                Position::Mix { layer } => {
                    if let Some(l) = layers.get_mut(usize::from(layer)) {
                        l.push(i);
                    }
                }
            }
        }
        Self { body_bytes, body, signatures, signers, layers, gateways }
    }

    /// The epoch.
    pub fn epoch(&self) -> Epoch {
        self.body.epoch
    }

    /// The network parameters.
    pub fn parameters(&self) -> &Parameters {
        &self.body.params
    }

    /// The shared random value the authorities computed for this epoch.
    pub fn shared_random(&self) -> &[u8; 32] {
        &self.body.shared_random
    }

    /// Every node, sorted by id.
    pub fn nodes(&self) -> &[Node] {
        &self.body.nodes
    }

    /// Number of mix layers.
    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// The mixes of layer `layer` (from 0), sorted by id; empty for a layer that does not exist.
    pub fn layer(&self, layer: usize) -> impl Iterator<Item = &Node> {
        self.layers.get(layer).into_iter().flatten().filter_map(|&i| self.body.nodes.get(i))
    }

    /// The gateways, sorted by id.
    pub fn gateways(&self) -> impl Iterator<Item = &Node> {
        self.gateways.iter().filter_map(|&i| self.body.nodes.get(i))
    }

    /// The node with id `id`.
    pub fn node(&self, id: &NodeId) -> Option<&Node> {
        self.body.nodes.binary_search_by(|n| n.id.cmp(id)).ok().and_then(|i| self.body.nodes.get(i))
    }

    /// The packet key of node `id` for epoch `e` (this epoch or one of the next ones its
    /// descriptor covers).
    pub fn packet_key(&self, id: &NodeId, e: Epoch) -> Option<&PublicKey> {
        self.node(id)?.descriptor().packet_key(e)
    }

    /// The configured authorities whose signatures verified.
    pub fn signers(&self) -> &[IdentityKey] {
        &self.signers
    }

    /// The signed body (what the authorities signed): equal across authorities for one epoch,
    /// whatever signatures each collected.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body_bytes
    }

    /// The encoded document, with every signature it carried.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode_document(&self.body_bytes, &self.signatures.iter().copied().collect())
    }

    pub(crate) fn signatures(&self) -> &[(IdentityKey, [u8; SIGNATURE_LEN])] {
        &self.signatures
    }
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Document")
            .field("epoch", &self.body.epoch)
            .field("layers", &self.layers.iter().map(Vec::len).collect::<Vec<_>>())
            .field("gateways", &self.gateways.len())
            .field("signers", &self.signers.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{FileLimits, ParametersConfig};
    use crate::testutil::{descriptor, rng};
    use qanat_packet::Scheme;

    const SCHEME: Scheme = Scheme::X25519Kem;

    fn params(file_limits: Option<FileLimits>) -> Parameters {
        Parameters::new(ParametersConfig { file_limits, ..ParametersConfig::default_for(SCHEME) }).unwrap()
    }

    /// A body of epoch 7 with a mix and a gateway.
    fn body(file_limits: Option<FileLimits>) -> Body {
        let mut rng = rng(3);
        let mut nodes: Vec<Node> =
            [(Role::Mix, Position::Mix { layer: 1 }), (Role::Gateway, Position::Gateway)]
                .into_iter()
                .enumerate()
                .map(|(i, (role, position))| {
                    Node::new(position, descriptor(&mut rng, SCHEME, role, Epoch(7), i).1)
                })
                .collect();
        nodes.sort_by_key(Node::id);
        Body { epoch: Epoch(7), params: params(file_limits), shared_random: [5; 32], nodes }
    }

    #[test]
    fn bodies_of_either_version_round_trip_in_it() {
        for (limits, version) in [(None, 1), (Some(FileLimits::DEFAULT), 2)] {
            let b = body(limits);
            let bytes = b.encode();
            assert_eq!(bytes[0], version);
            let back = Body::decode(&bytes).unwrap();
            assert_eq!(back.encode(), bytes);
            assert_eq!(back.params.file_limits(), limits.unwrap_or(FileLimits::VERSION_1));
            assert_eq!(back, b);
        }
    }

    /// A version-2 body without nodes, pinned: the version, the epoch, the parameters with the
    /// default file limits after the version-1 fields, the shared random value, no nodes.
    #[test]
    fn the_version_2_body_is_pinned() {
        let b = Body {
            epoch: Epoch(7),
            params: params(Some(FileLimits::DEFAULT)),
            shared_random: [5; 32],
            nodes: Vec::new(),
        };
        let expected = [
            "02",
            "0000000000000007",
            "0a7832353531392d6b656d", // scheme
            "05",                     // hops
            "00000600",               // forward payload length
            "03",                     // mix layers
            "000003e8",               // mean delay (ms)
            "0000000000030d40000000000000c350000000000000c35000000000001e8480", // λ_P, λ_L, λ_D, λ_M
            "0000000000124f80",       // epoch period
            "00400000",               // max_file_bytes
            "04",                     // fast_factor_max
            &"05".repeat(32),
            "0000",
        ]
        .concat();
        let hex: String = b.encode().iter().map(|x| format!("{x:02x}")).collect();
        assert_eq!(hex, expected);
        assert_eq!(Body::decode(&b.encode()).unwrap(), b);
    }

    /// Strict decoding of version 2: trailing bytes, limits out of range, a version-2 body
    /// labelled 1 or the reverse, and an unknown version are refused with their errors.
    #[test]
    fn bad_version_2_bodies_are_refused() {
        let bytes = body(Some(FileLimits::DEFAULT)).encode();
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Body::decode(&longer), Err(DecodeError::TrailingBytes));
        // Where the limits are: after the version, the epoch and the version-1 parameters.
        let at = 1 + 8 + params(None).to_bytes().len();
        let with = |offset: usize, value: &[u8]| {
            let mut b = bytes.clone();
            b[at + offset..at + offset + value.len()].copy_from_slice(value);
            Body::decode(&b)
        };
        assert_eq!(with(0, &[0; 4]), Err(DecodeError::Invalid { what: "max file bytes" }));
        assert_eq!(with(0, &[0x04, 0, 0, 1]), Err(DecodeError::Invalid { what: "max file bytes" }));
        assert_eq!(with(4, &[0]), Err(DecodeError::Invalid { what: "fast factor max" }));
        assert_eq!(with(4, &[9]), Err(DecodeError::Invalid { what: "fast factor max" }));
        assert!(with(4, &[8]).is_ok());
        assert_eq!(with(0, &[0, 0, 0, 1]).map(|b| b.params.max_file_bytes()), Ok(1));
        // The version byte and the parameters disagree.
        let mut relabelled = bytes.clone();
        relabelled[0] = 1;
        assert!(Body::decode(&relabelled).is_err());
        let mut v1 = body(None).encode();
        v1[0] = 2;
        assert!(Body::decode(&v1).is_err());
        v1[0] = 3;
        assert_eq!(Body::decode(&v1), Err(DecodeError::Version { what: "document", got: 3 }));
        v1[0] = 0;
        assert_eq!(Body::decode(&v1), Err(DecodeError::Version { what: "document", got: 0 }));
    }

    /// The committed documents of both versions (`tests/formats.rs`) decode to bodies that
    /// encode to their very bytes: this code writes each version as it was written.
    #[test]
    fn the_fixtures_bodies_re_encode_to_their_bytes() {
        for (version, bytes) in [
            (1, &include_bytes!("../tests/data/directory-v1/document.bin")[..]),
            (2, &include_bytes!("../tests/data/directory-v2/document.bin")[..]),
        ] {
            let (body, _) = split_document(bytes).unwrap();
            let decoded = Body::decode(body).unwrap();
            assert_eq!(decoded.params.version(), version);
            assert_eq!(decoded.encode(), body);
        }
    }
}
