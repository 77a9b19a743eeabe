//! Node descriptors: what a node tells the authorities about itself for one epoch, signed by its
//! identity key.
//!
//! A descriptor for epoch `E` carries the node's packet public keys for `E, E+1, …` (at least
//! [`MIN_PACKET_KEYS`]: the current epoch and two ahead, so that a client holding the document
//! of `E` can still build packets, forward and reply, that cross two epoch boundaries).
//!
//! Encoding of the signed part (see the crate documentation, *Encoding*):
//!
//! ```text
//! u8 version (1) | u64 epoch | [32] identity key | u8 role (1 mix, 2 gateway)
//! | u8 len, address (ASCII host:port) | u16 len, link key | u8 len, scheme name
//! | u8 count, packet keys (count × scheme's public key length)
//! ```
//!
//! followed by the 64-byte signature of the identity key over
//! `"qanat-pki v1 descriptor\0" ‖ signed part`. A [`SignedDescriptor`] exists only once the
//! signature verified.

use core::fmt;
use core::net::SocketAddr;

use qanat_packet::{NodeId, PublicKey, Scheme};

use crate::error::{AddressError, BuildError, DecodeError};
use crate::identity::{Domain, IDENTITY_KEY_LEN, IdentityKey, IdentitySecret, SIGNATURE_LEN};
use crate::params::decode_scheme;
use crate::time::Epoch;
use crate::wire::{Reader, Writer, encoded, split_signature};

/// Longest link address.
pub const MAX_ADDRESS_LEN: usize = 255;
/// Longest link public key (room for a hybrid post-quantum static key).
pub const MAX_LINK_KEY_LEN: usize = 2048;
/// Fewest packet keys in a descriptor: the epoch's own and two ahead.
pub const MIN_PACKET_KEYS: usize = 3;
/// Most packet keys in a descriptor.
pub const MAX_PACKET_KEYS: usize = 4;
/// Longest signed descriptor.
pub const MAX_DESCRIPTOR_LEN: usize = 8192;

const VERSION: u8 = 1;
const ROLE_MIX: u8 = 1;
const ROLE_GATEWAY: u8 = 2;

/// A node's link address: `host:port` with a lower-case DNS name, a dotted IPv4 address or a
/// bracketed IPv6 address, in canonical form (so that equal addresses have equal bytes).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkAddress(String);

impl LinkAddress {
    /// Parses and validates `s`.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        if s.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong);
        }
        if let Ok(sa) = s.parse::<SocketAddr>() {
            let scoped = matches!(sa, SocketAddr::V6(v6) if v6.scope_id() != 0 || v6.flowinfo() != 0);
            if sa.port() == 0 {
                return Err(AddressError::Port);
            }
            if scoped || sa.to_string() != s {
                return Err(AddressError::Host);
            }
            return Ok(Self(s.to_owned()));
        }
        let (host, port) = s.rsplit_once(':').ok_or(AddressError::MissingPort)?;
        parse_port(port)?;
        if !is_dns_name(host) {
            return Err(AddressError::Host);
        }
        Ok(Self(s.to_owned()))
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn parse_port(p: &str) -> Result<u16, AddressError> {
    if p.is_empty() || p.len() > 5 || p.starts_with('0') || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AddressError::Port);
    }
    p.parse::<u16>().map_err(|_| AddressError::Port)
}

fn is_dns_name(h: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    // A final all-digit label would make a malformed IPv4 address look like a name.
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(label_ok)
        && h.rsplit('.').next().is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit()))
}

impl fmt::Debug for LinkAddress {
    // Addresses of nodes are public, but logs stay free of them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkAddress(..)")
    }
}

impl fmt::Display for LinkAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a node does in the network. A mix's layer is not its choice: the consensus assigns it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Role {
    /// A mix node.
    Mix,
    /// A gateway (holds clients' connections and mailboxes).
    Gateway,
}

/// A node's description of itself for one epoch (not yet signed, or already verified).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct NodeDescriptor {
    epoch: Epoch,
    identity: IdentityKey,
    role: Role,
    address: LinkAddress,
    link_key: Vec<u8>,
    packet_keys: Vec<PublicKey>,
}

impl NodeDescriptor {
    /// A descriptor for `epoch`; `packet_keys[i]` is the node's packet key for epoch `epoch + i`.
    // One argument per field, as the struct lists them: the fields are private so that every
    // descriptor passes these checks, and this is the one way in.
    pub fn new(
        epoch: Epoch,
        identity: IdentityKey,
        role: Role,
        address: LinkAddress,
        link_key: Vec<u8>,
        packet_keys: Vec<PublicKey>,
    ) -> Result<Self, BuildError> {
        if link_key.is_empty() || link_key.len() > MAX_LINK_KEY_LEN {
            return Err(BuildError::LinkKeyLength(link_key.len()));
        }
        if !(MIN_PACKET_KEYS..=MAX_PACKET_KEYS).contains(&packet_keys.len()) {
            return Err(BuildError::PacketKeyCount(packet_keys.len()));
        }
        let scheme = packet_keys[0].scheme();
        if packet_keys.iter().any(|k| k.scheme() != scheme) {
            return Err(BuildError::MixedSchemes);
        }
        let d = Self { epoch, identity, role, address, link_key, packet_keys };
        if d.body().len() + SIGNATURE_LEN > MAX_DESCRIPTOR_LEN {
            return Err(BuildError::TooLarge);
        }
        Ok(d)
    }

    /// Signs the descriptor with the node's identity secret, which must match
    /// [`NodeDescriptor::identity`].
    pub fn sign(self, secret: &IdentitySecret) -> Result<SignedDescriptor, BuildError> {
        if secret.public() != self.identity {
            return Err(BuildError::Parameters("secret key does not match the descriptor's identity"));
        }
        let mut bytes = self.body();
        let sig = secret.sign(Domain::Descriptor, &bytes);
        bytes.extend_from_slice(&sig);
        Ok(SignedDescriptor { bytes, descriptor: self })
    }

    fn body(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(VERSION);
        w.u64(self.epoch.0);
        w.raw(self.identity.as_bytes());
        w.u8(match self.role {
            Role::Mix => ROLE_MIX,
            Role::Gateway => ROLE_GATEWAY,
        });
        w.bytes8(self.address.0.as_bytes());
        w.bytes16(&self.link_key);
        w.bytes8(self.scheme().name().as_bytes());
        // Bounded by MAX_PACKET_KEYS.
        w.count8(self.packet_keys.len());
        for k in &self.packet_keys {
            w.raw(&k.to_bytes());
        }
        encoded(w)
    }

    fn decode_body(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let v = r.u8()?;
        if v != VERSION {
            return Err(DecodeError::Version { what: "descriptor", got: v });
        }
        let epoch = Epoch(r.u64()?);
        let identity = IdentityKey::from_bytes(&r.array::<IDENTITY_KEY_LEN>()?)
            .map_err(|_| DecodeError::Invalid { what: "identity key" })?;
        let role = match r.u8()? {
            ROLE_MIX => Role::Mix,
            ROLE_GATEWAY => Role::Gateway,
            _ => return Err(DecodeError::Invalid { what: "role" }),
        };
        let address = core::str::from_utf8(r.bytes8(MAX_ADDRESS_LEN, "address")?)
            .ok()
            .and_then(|s| LinkAddress::parse(s).ok())
            .ok_or(DecodeError::Invalid { what: "address" })?;
        let link_key = r.bytes16(MAX_LINK_KEY_LEN, "link key")?.to_vec();
        if link_key.is_empty() {
            return Err(DecodeError::Invalid { what: "link key" });
        }
        let scheme = decode_scheme(&mut r)?;
        let n = usize::from(r.u8()?);
        if !(MIN_PACKET_KEYS..=MAX_PACKET_KEYS).contains(&n) {
            return Err(DecodeError::Invalid { what: "packet key count" });
        }
        let mut packet_keys = Vec::with_capacity(n);
        for _ in 0..n {
            let k = PublicKey::from_bytes(scheme, r.raw(scheme.public_key_len())?)
                .map_err(|_| DecodeError::Invalid { what: "packet key" })?;
            packet_keys.push(k);
        }
        r.finish()?;
        Ok(Self { epoch, identity, role, address, link_key, packet_keys })
    }

    /// The epoch this descriptor is for.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The node's identity key.
    pub fn identity(&self) -> &IdentityKey {
        &self.identity
    }

    /// The node's id (the hash of its identity key).
    pub fn node_id(&self) -> NodeId {
        self.identity.node_id()
    }

    /// Mix or gateway.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Where the node accepts link connections.
    pub fn address(&self) -> &LinkAddress {
        &self.address
    }

    /// The node's link public key (its meaning is the link crate's).
    pub fn link_key(&self) -> &[u8] {
        &self.link_key
    }

    /// The scheme of the packet keys.
    pub fn scheme(&self) -> Scheme {
        self.packet_keys.first().map_or(Scheme::X25519Kem, PublicKey::scheme)
    }

    /// The packet keys, for epochs `epoch()`, `epoch() + 1`, ….
    pub fn packet_keys(&self) -> &[PublicKey] {
        &self.packet_keys
    }

    /// The node's packet key for epoch `e`, if this descriptor announces one.
    pub fn packet_key(&self, e: Epoch) -> Option<&PublicKey> {
        let i = e.0.checked_sub(self.epoch.0)?;
        self.packet_keys.get(usize::try_from(i).ok()?)
    }
}

/// A node descriptor whose signature verified, with its exact bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedDescriptor {
    bytes: Vec<u8>,
    descriptor: NodeDescriptor,
}

impl SignedDescriptor {
    /// Parses `bytes` and verifies the signature under the identity key it names.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_DESCRIPTOR_LEN {
            return Err(DecodeError::TooLarge { what: "descriptor" });
        }
        let (body, sig) = split_signature(bytes)?;
        let descriptor = NodeDescriptor::decode_body(body)?;
        if !descriptor.identity.verify(Domain::Descriptor, body, &sig) {
            return Err(DecodeError::BadSignature { what: "descriptor" });
        }
        Ok(Self { bytes: bytes.to_vec(), descriptor })
    }

    /// The exact signed bytes (what is uploaded, voted and published).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The verified contents.
    pub fn descriptor(&self) -> &NodeDescriptor {
        &self.descriptor
    }
}

impl fmt::Debug for SignedDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedDescriptor")
            .field("epoch", &self.descriptor.epoch)
            .field("role", &self.descriptor.role)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{descriptor, rng};

    #[test]
    fn addresses() {
        for ok in ["127.0.0.1:1", "[::1]:65535", "mix-1.example.org:443", "a:9", "[2001:db8::1]:80"] {
            assert_eq!(LinkAddress::parse(ok).map(|a| a.to_string()), Ok(ok.to_owned()), "{ok}");
        }
        // A table of cases, one per row: rows alike in shape on purpose.
        for (bad, e) in [
            ("127.0.0.1", AddressError::MissingPort),
            ("127.0.0.1:0", AddressError::Port),
            ("h:080", AddressError::Port),
            ("h:65536", AddressError::Port),
            ("h:+1", AddressError::Port),
            ("Host:1", AddressError::Host),
            ("-a:1", AddressError::Host),
            ("1.2.3.999:1", AddressError::Host),
            ("[::0001]:1", AddressError::Host),
            ("[fe80::1%2]:1", AddressError::Host),
            ("a..b:1", AddressError::Host),
            (":1", AddressError::Host),
            ("::1:80", AddressError::Host),
        ] {
            assert_eq!(LinkAddress::parse(bad), Err(e), "{bad}");
        }
        assert_eq!(LinkAddress::parse(&"a".repeat(300)), Err(AddressError::TooLong));
    }

    #[test]
    fn round_trip_and_signature() {
        let mut rng = rng(1);
        for scheme in Scheme::ALL {
            let (secret, d) = descriptor(&mut rng, scheme, Role::Mix, Epoch(5), 0);
            let again = SignedDescriptor::decode(d.as_bytes()).unwrap();
            assert_eq!(again, d);
            assert_eq!(again.descriptor().node_id(), secret.public().node_id());
            assert!(d.descriptor().packet_key(Epoch(4)).is_none());
            assert!(d.descriptor().packet_key(Epoch(7)).is_some());
            assert!(d.descriptor().packet_key(Epoch(8)).is_none());
            // Any flipped bit breaks it.
            for i in [0, 9, 40, d.as_bytes().len() - 1] {
                let mut b = d.as_bytes().to_vec();
                b[i] ^= 1;
                assert!(SignedDescriptor::decode(&b).is_err(), "bit {i}");
            }
        }
    }

    #[test]
    fn forged_descriptor_is_rejected() {
        let mut rng = rng(2);
        let (_, d) = descriptor(&mut rng, Scheme::X25519Kem, Role::Gateway, Epoch(1), 0);
        let other = IdentitySecret::generate(&mut rng);
        // Re-sign someone else's body with another key: the body names the original identity.
        let (body, _) = split_signature(d.as_bytes()).unwrap();
        let mut forged = body.to_vec();
        forged.extend_from_slice(&other.sign(Domain::Descriptor, body));
        assert_eq!(SignedDescriptor::decode(&forged), Err(DecodeError::BadSignature { what: "descriptor" }));
        // A signature for another message type does not pass either.
        let (body, _) = split_signature(d.as_bytes()).unwrap();
        let mut wrong_domain = body.to_vec();
        wrong_domain.extend_from_slice(&[0; 64]);
        assert!(SignedDescriptor::decode(&wrong_domain).is_err());
    }

    #[test]
    fn sign_requires_matching_secret() {
        let mut rng = rng(3);
        let (_, d) = descriptor(&mut rng, Scheme::X25519Kem, Role::Mix, Epoch(1), 0);
        let other = IdentitySecret::generate(&mut rng);
        assert!(d.descriptor().clone().sign(&other).is_err());
    }
}
