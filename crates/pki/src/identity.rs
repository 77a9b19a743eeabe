//! Ed25519 identity keys of authorities and nodes, node ids, and domain-separated signing.
//!
//! Every signature in the directory is an Ed25519 signature (RFC 8032, verified with
//! `verify_strict`, which rejects non-canonical and small-order encodings) over
//! `domain ‖ bytes`, where `domain` is a NUL-terminated ASCII string naming the message type:
//! `"qanat-pki v1 descriptor\0"`, `"qanat-pki v1 vote\0"`, `"qanat-pki v1 reveal\0"` or
//! `"qanat-pki v1 document\0"`. A signature made for one message type never verifies as another.
//!
//! A node's [`NodeId`] (the packet crate's routing identifier) is
//! `SHA-256("qanat-pki v1 node-id\0" ‖ identity public key)`.

use core::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use qanat_packet::NodeId;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Length of an identity public key.
pub const IDENTITY_KEY_LEN: usize = 32;
/// Length of a signature.
pub const SIGNATURE_LEN: usize = 64;

const NODE_ID_DOMAIN: &[u8] = b"qanat-pki v1 node-id\0";

/// What a signature is for: the prefix that separates one message type's signatures from
/// another's.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Domain {
    Descriptor,
    Vote,
    Reveal,
    Document,
}

impl Domain {
    fn prefix(self) -> &'static [u8] {
        match self {
            Self::Descriptor => b"qanat-pki v1 descriptor\0",
            Self::Vote => b"qanat-pki v1 vote\0",
            Self::Reveal => b"qanat-pki v1 reveal\0",
            Self::Document => b"qanat-pki v1 document\0",
        }
    }
}

fn signed_message(domain: Domain, bytes: &[u8]) -> Vec<u8> {
    let prefix = domain.prefix();
    let mut m = Vec::with_capacity(prefix.len() + bytes.len());
    m.extend_from_slice(prefix);
    m.extend_from_slice(bytes);
    m
}

/// An Ed25519 identity public key (of an authority or a node), known to be a valid point.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdentityKey {
    /// A valid, non-weak point (checked by every constructor).
    bytes: [u8; IDENTITY_KEY_LEN],
}

/// The bytes are not an Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an Ed25519 public key")]
pub struct InvalidKey;

impl IdentityKey {
    /// Parses an encoded public key.
    pub fn from_bytes(bytes: &[u8; IDENTITY_KEY_LEN]) -> Result<Self, InvalidKey> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| InvalidKey)?;
        if key.is_weak() {
            return Err(InvalidKey);
        }
        Ok(Self { bytes: *bytes })
    }

    /// The encoding.
    pub fn to_bytes(&self) -> [u8; IDENTITY_KEY_LEN] {
        self.bytes
    }

    /// The encoding, borrowed.
    pub fn as_bytes(&self) -> &[u8; IDENTITY_KEY_LEN] {
        &self.bytes
    }

    /// The node id of the node with this identity key:
    /// `SHA-256("qanat-pki v1 node-id\0" ‖ key)`.
    pub fn node_id(&self) -> NodeId {
        let mut h = Sha256::new();
        h.update(NODE_ID_DOMAIN);
        h.update(self.bytes);
        NodeId(h.finalize().into())
    }

    /// Whether `sig` is this key's signature of `bytes` for `domain`.
    pub(crate) fn verify(&self, domain: Domain, bytes: &[u8], sig: &[u8; SIGNATURE_LEN]) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.bytes) else { return false };
        let sig = ed25519_dalek::Signature::from_bytes(sig);
        key.verify_strict(&signed_message(domain, bytes), &sig).is_ok()
    }
}

impl PartialOrd for IdentityKey {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IdentityKey {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.bytes.cmp(&other.bytes)
    }
}

impl core::hash::Hash for IdentityKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

// Logs must not name nodes: print only that this is a key.
impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityKey(..)")
    }
}

/// An Ed25519 identity secret key. Zeroized on drop; `Debug` prints nothing of it.
#[derive(Clone)]
pub struct IdentitySecret {
    key: SigningKey,
    public: IdentityKey,
}

impl IdentitySecret {
    /// A fresh key from `rng`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self::from_bytes(&seed)
    }

    /// The key with the given 32-byte seed (RFC 8032 secret key).
    pub fn from_bytes(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let public = IdentityKey { bytes: key.verifying_key().to_bytes() };
        Self { key, public }
    }

    /// The 32-byte seed, for storing the key.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// The public key.
    pub fn public(&self) -> IdentityKey {
        self.public
    }

    /// Signs `bytes` for `domain`.
    pub(crate) fn sign(&self, domain: Domain, bytes: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.key.sign(&signed_message(domain, bytes)).to_bytes()
    }
}

impl fmt::Debug for IdentitySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentitySecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20::ChaCha20Rng;
    use chacha20::rand_core::SeedableRng;

    #[test]
    fn signatures_are_domain_separated() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let k = IdentitySecret::generate(&mut rng);
        let sig = k.sign(Domain::Vote, b"hello");
        assert!(k.public().verify(Domain::Vote, b"hello", &sig));
        assert!(!k.public().verify(Domain::Document, b"hello", &sig));
        assert!(!k.public().verify(Domain::Vote, b"hellp", &sig));
        let other = IdentitySecret::generate(&mut rng);
        assert!(!other.public().verify(Domain::Vote, b"hello", &sig));
    }

    #[test]
    fn seed_round_trip_and_node_id() {
        let k = IdentitySecret::from_bytes(&[7; 32]);
        let again = IdentitySecret::from_bytes(&k.to_bytes());
        assert_eq!(k.public(), again.public());
        assert_eq!(IdentityKey::from_bytes(&k.public().to_bytes()), Ok(k.public()));
        // The node id is the domain-separated hash, not the key itself.
        let mut h = Sha256::new();
        h.update(b"qanat-pki v1 node-id\0");
        h.update(k.public().to_bytes());
        let want: [u8; 32] = h.finalize().into();
        assert_eq!(k.public().node_id(), NodeId(want));
        assert_eq!(format!("{:?}", k.public()), "IdentityKey(..)");
    }

    #[test]
    fn weak_keys_are_rejected() {
        // The identity point (small order).
        let mut id = [0u8; 32];
        id[0] = 1;
        assert_eq!(IdentityKey::from_bytes(&id), Err(InvalidKey));
    }
}
