//! Packet creation, per-hop unwrapping, and single-use reply blocks (SURBs).
//!
//! A packet is `header || payload`, where
//! `header = version (2) || element || routing_information || MAC (32)` and
//! `payload = tag (32 zero bytes) || forward payload`, the payload enciphered under every hop's
//! SPRP key. `element` is an X25519 group element (NIKE, blinded at each hop) or the first hop's
//! KEM ciphertext (KEM; later hops' ciphertexts travel at the end of each routing slot).

use core::ops::Range;

use rand_core::CryptoRng;
use zeroize::{Zeroize, Zeroizing};

use crate::commands::{Commands, NodeId, RoutingCommand, is_zero};
use crate::crypto::{PacketKeys, SPRP_IV_LEN, SPRP_KEY_LEN, Sprp, mac_eq, replay_tag};
use crate::error::{CreateError, SurbError, UnwrapError};
use crate::geometry::{AD_LEN, Geometry, MAC_LEN, NODE_ID_LEN, PAYLOAD_TAG_LEN, SPRP_KEY_MATERIAL_LEN};
use crate::primitives::{Fast, X25519Backend, x25519_base};
use crate::scheme::{PublicKey, SecretKey};

/// The version field of every packet this crate makes and accepts.
const VERSION: [u8; AD_LEN] = [0, 0];

/// One hop of a path: the node, its packet key for the epoch, and its commands (a
/// [`RoutingCommand::NodeDelay`] for a mix; [`RoutingCommand::Recipient`] and optionally
/// [`RoutingCommand::SurbReply`] for the last hop). `NextNodeHop` is added by the builder.
#[derive(Debug, Clone)]
pub struct PathHop {
    /// The node.
    pub id: NodeId,
    /// The node's packet public key.
    pub public_key: PublicKey,
    /// The node's commands.
    pub commands: Vec<RoutingCommand>,
}

/// The tag a node remembers to drop replays: SHA-512/256 of the packet's group element or KEM
/// ciphertext, unique per packet and per hop.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplayTag(pub [u8; 32]);

impl core::fmt::Debug for ReplayTag {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ReplayTag(..)")
    }
}

/// What a hop learned from unwrapping a packet.
#[derive(Debug, Clone)]
pub struct Unwrapped {
    /// The packet's replay tag at this hop.
    pub replay_tag: ReplayTag,
    /// The commands for this hop.
    pub commands: Commands,
    payload: Range<usize>,
}

impl Unwrapped {
    /// Whether the packet is to be forwarded (the buffer now holds the next hop's packet).
    pub fn is_forward(&self) -> bool {
        self.commands.next_hop.is_some()
    }

    /// At the last hop, the payload inside the unwrapped packet buffer: the user payload of a
    /// forward packet, or the still-encrypted reply (tag included) of a SURB reply, to be passed
    /// to [`Sphinx::decrypt_surb_payload`] by the SURB's creator. `None` when forwarding.
    pub fn payload<'p>(&self, packet: &'p [u8]) -> Option<&'p [u8]> {
        if self.is_forward() { None } else { packet.get(self.payload.clone()) }
    }
}

/// The keys that decrypt a reply sent with a SURB: one SPRP key and IV per hop, in reverse hop
/// order, then the key the replier used. Secret; zeroized on drop.
#[derive(Clone)]
pub struct SurbKeys(Zeroizing<Vec<u8>>);

impl core::fmt::Debug for SurbKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SurbKeys(..)")
    }
}

impl SurbKeys {
    /// Parses the encoding (a positive multiple of 64 bytes).
    pub fn from_bytes(b: &[u8]) -> Result<Self, SurbError> {
        if b.is_empty() || !b.len().is_multiple_of(SPRP_KEY_MATERIAL_LEN) {
            return Err(SurbError::Keys);
        }
        Ok(Self(Zeroizing::new(b.to_vec())))
    }
    /// The encoding (secret).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Sphinx for one geometry.
#[derive(Debug, Clone)]
pub struct Sphinx {
    geometry: Geometry,
}

struct Header {
    bytes: Vec<u8>,
    keys: Vec<PacketKeys>,
}

fn split_sprp_material(m: &[u8]) -> Option<([u8; SPRP_KEY_LEN], [u8; SPRP_IV_LEN])> {
    let key: [u8; SPRP_KEY_LEN] = m.get(..SPRP_KEY_LEN)?.try_into().ok()?;
    let iv: [u8; SPRP_IV_LEN] = m.get(SPRP_KEY_LEN..SPRP_KEY_MATERIAL_LEN)?.try_into().ok()?;
    Some((key, iv))
}

impl Sphinx {
    /// Sphinx packets of `geometry`.
    pub fn new(geometry: Geometry) -> Self {
        Self { geometry }
    }

    /// The geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    fn element_range(&self) -> Range<usize> {
        AD_LEN..AD_LEN + self.geometry.scheme().element_len()
    }
    fn routing_range(&self) -> Range<usize> {
        let start = self.element_range().end;
        start..start + self.geometry.routing_info_len()
    }
    fn mac_range(&self) -> Range<usize> {
        let start = self.routing_range().end;
        start..start + MAC_LEN
    }

    /// A forward packet along `path` carrying `payload` (exactly the forward payload length).
    pub fn new_packet<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        path: &[PathHop],
        payload: &[u8],
    ) -> Result<Vec<u8>, CreateError> {
        let want = self.geometry.forward_payload_len();
        if payload.len() != want {
            return Err(CreateError::PayloadLength { got: payload.len(), want });
        }
        let header = self.create_header(rng, path)?;
        let mut pkt = header.bytes;
        pkt.reserve_exact(PAYLOAD_TAG_LEN + payload.len());
        pkt.resize(self.geometry.header_len() + PAYLOAD_TAG_LEN, 0);
        pkt.extend_from_slice(payload);
        let body = &mut pkt[self.geometry.payload_offset()..];
        for k in header.keys.iter().rev() {
            k.sprp().encrypt(body);
        }
        Ok(pkt)
    }

    /// A packet along `path` whose last hop treats the payload as opaque: the last hop must carry
    /// a [`RoutingCommand::SurbReply`] command (any identifier), and `body` is the whole payload
    /// the last hop ends up with (exactly [`Geometry::payload_tag_len`] +
    /// [`Geometry::forward_payload_len`] bytes), with no tag of zeros for it to check.
    ///
    /// To every node on the path such a packet is the same as a reply made from a SURB: the last
    /// hop learns its recipient and the identifier, and holds bytes it cannot tell from random
    /// when `body` is itself random-looking (sealed end to end to the recipient). The body's
    /// integrity is then the recipient's to check, as for a SURB reply: a node that changes the
    /// payload on the way turns it to noise under the wide-block cipher.
    pub fn new_opaque_packet<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        path: &[PathHop],
        body: &[u8],
    ) -> Result<Vec<u8>, CreateError> {
        let want = PAYLOAD_TAG_LEN + self.geometry.forward_payload_len();
        if body.len() != want {
            return Err(CreateError::PayloadLength { got: body.len(), want });
        }
        let last = path.len().saturating_sub(1);
        let opaque =
            path.last().is_some_and(|h| h.commands.iter().any(|c| matches!(c, RoutingCommand::SurbReply(_))));
        if !opaque {
            return Err(CreateError::InvalidCommands { hop: last });
        }
        let header = self.create_header(rng, path)?;
        let mut pkt = header.bytes;
        pkt.reserve_exact(body.len());
        pkt.extend_from_slice(body);
        let payload = &mut pkt[self.geometry.payload_offset()..];
        for k in header.keys.iter().rev() {
            k.sprp().encrypt(payload);
        }
        Ok(pkt)
    }

    /// A SURB along `path` (whose last hop carries `Recipient` and `SurbReply` commands), and the
    /// keys that decrypt the reply. The SURB is `header || first hop id || SPRP key and IV`.
    pub fn new_surb<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        path: &[PathHop],
    ) -> Result<(Vec<u8>, SurbKeys), CreateError> {
        let mut key_payload = Zeroizing::new([0u8; SPRP_KEY_MATERIAL_LEN]);
        rng.fill_bytes(key_payload.as_mut());
        let header = self.create_header(rng, path)?;
        let mut keys = Zeroizing::new(Vec::with_capacity(SPRP_KEY_MATERIAL_LEN * (path.len() + 1)));
        for k in header.keys.iter().rev() {
            keys.extend_from_slice(&k.payload_encryption);
            keys.extend_from_slice(&k.header_encryption_iv);
        }
        keys.extend_from_slice(key_payload.as_ref());
        let mut surb = header.bytes;
        surb.reserve_exact(NODE_ID_LEN + SPRP_KEY_MATERIAL_LEN);
        // `create_header` rejects an empty path, so `path[0]` exists.
        surb.extend_from_slice(&path[0].id.0);
        surb.extend_from_slice(key_payload.as_ref());
        Ok((surb, SurbKeys(keys)))
    }

    /// The reply packet a SURB's holder sends, and the node to send it to.
    pub fn new_packet_from_surb(&self, surb: &[u8], payload: &[u8]) -> Result<(Vec<u8>, NodeId), SurbError> {
        let g = &self.geometry;
        if surb.len() != g.surb_len() {
            return Err(SurbError::Length);
        }
        if payload.len() != g.forward_payload_len() {
            return Err(SurbError::PayloadLength);
        }
        let (header, rest) = surb.split_at(g.header_len());
        let (id, material) = rest.split_at(NODE_ID_LEN);
        let mut first = [0u8; NODE_ID_LEN];
        first.copy_from_slice(id);
        let (mut key, mut iv) = split_sprp_material(material).ok_or(SurbError::Length)?;
        let sprp = Sprp::new(&key, &iv);
        key.zeroize();
        iv.zeroize();
        let mut pkt = Vec::with_capacity(g.packet_len());
        pkt.extend_from_slice(header);
        pkt.resize(g.header_len() + PAYLOAD_TAG_LEN, 0);
        pkt.extend_from_slice(payload);
        sprp.encrypt(&mut pkt[g.payload_offset()..]);
        Ok((pkt, NodeId(first)))
    }

    /// Decrypts and authenticates a SURB reply's payload (as returned by [`Unwrapped::payload`])
    /// with the keys from [`Sphinx::new_surb`]; returns the replier's payload.
    pub fn decrypt_surb_payload(&self, payload: &[u8], keys: &SurbKeys) -> Result<Vec<u8>, SurbError> {
        if payload.len() != PAYLOAD_TAG_LEN + self.geometry.forward_payload_len() {
            return Err(SurbError::PayloadLength);
        }
        let material = keys.as_bytes();
        let n = material.len() / SPRP_KEY_MATERIAL_LEN;
        if n == 0 || !material.len().is_multiple_of(SPRP_KEY_MATERIAL_LEN) {
            return Err(SurbError::Keys);
        }
        let mut b = Zeroizing::new(payload.to_vec());
        for (i, m) in material.chunks_exact(SPRP_KEY_MATERIAL_LEN).enumerate() {
            let (mut key, mut iv) = split_sprp_material(m).ok_or(SurbError::Keys)?;
            let sprp = Sprp::new(&key, &iv);
            key.zeroize();
            iv.zeroize();
            if i + 1 == n {
                sprp.decrypt(&mut b);
            } else {
                // Undo one hop's decryption.
                sprp.encrypt(&mut b);
            }
        }
        if !bool::from(is_zero(&b[..PAYLOAD_TAG_LEN])) {
            return Err(SurbError::PayloadTag);
        }
        Ok(b[PAYLOAD_TAG_LEN..].to_vec())
    }

    /// The replay tag of a packet, computed without any public-key operation, so that a node can
    /// drop a replay before paying for the unwrap.
    pub fn replay_tag(&self, packet: &[u8]) -> Result<ReplayTag, UnwrapError> {
        if packet.len() != self.geometry.packet_len() {
            return Err(UnwrapError::Length);
        }
        Ok(ReplayTag(replay_tag(&packet[self.element_range()])))
    }

    /// Unwraps one layer of `packet` in place with this node's key.
    ///
    /// On success, if [`Unwrapped::is_forward`], `packet` now holds the packet for the next hop;
    /// otherwise [`Unwrapped::payload`] locates the payload in it. On error the packet must be
    /// dropped: its content is unspecified.
    pub fn unwrap(&self, key: &SecretKey, packet: &mut [u8]) -> Result<Unwrapped, UnwrapError> {
        self.unwrap_inner(key, packet, None)
    }

    /// [`Sphinx::unwrap`] for a node that already computed the packet's tag with
    /// [`Sphinx::replay_tag`] (to drop replays before any public-key work): the same result,
    /// without hashing the element a second time.
    ///
    /// `tag` must be `self.replay_tag(packet)` of this very packet, taken before any change to it;
    /// it is returned as [`Unwrapped::replay_tag`] unchecked (debug builds assert it), so a caller
    /// that passes another tag only misleads its own replay filter.
    pub fn unwrap_with_tag(
        &self,
        key: &SecretKey,
        packet: &mut [u8],
        tag: ReplayTag,
    ) -> Result<Unwrapped, UnwrapError> {
        self.unwrap_inner(key, packet, Some(tag))
    }

    fn unwrap_inner(
        &self,
        key: &SecretKey,
        packet: &mut [u8],
        tag: Option<ReplayTag>,
    ) -> Result<Unwrapped, UnwrapError> {
        let g = &self.geometry;
        let scheme = g.scheme();
        if packet.len() != g.packet_len() {
            return Err(UnwrapError::Length);
        }
        if key.scheme() != scheme {
            return Err(UnwrapError::KeyScheme);
        }
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&packet[..AD_LEN], &VERSION[..])) {
            return Err(UnwrapError::Version);
        }
        let element = &packet[self.element_range()];
        let tag = match tag {
            Some(t) => {
                debug_assert!(
                    t == ReplayTag(replay_tag(element)),
                    "unwrap_with_tag given another packet's tag"
                );
                t
            }
            None => ReplayTag(replay_tag(element)),
        };
        let shared = if scheme.is_kem() {
            key.decapsulate(element)
        } else {
            let point: &[u8; 32] = element.try_into().map_err(|_| UnwrapError::KeyAgreement)?;
            key.x25519(point)
        }
        .ok_or(UnwrapError::KeyAgreement)?;
        let keys = PacketKeys::derive(&shared, !scheme.is_kem());
        drop(shared);

        let mac_range = self.mac_range();
        let mac = keys.header_mac(&[&packet[..mac_range.start]]);
        if !mac_eq(&packet[mac_range.clone()], &mac) {
            return Err(UnwrapError::Mac);
        }

        // Decrypt the routing information and read this hop's slot in place: its commands, and
        // (KEM) the next hop's ciphertext, which moves straight into the element field. Then take
        // the slot off the front, shifting the rest left and filling the end with key stream so
        // the header keeps its length. (No copy of the slot is made, so none needs wiping.)
        let per_hop = g.per_hop_routing_info_len();
        let ri = self.routing_range();
        let mut stream = keys.header_stream();
        stream.apply(&mut packet[ri.clone()]);
        let cmd_end = ri.start + g.command_space();
        let commands = Commands::decode(&packet[ri.start..cmd_end]).map_err(|_| UnwrapError::Commands)?;
        if commands.next_hop.is_some() && scheme.is_kem() {
            packet.copy_within(cmd_end..ri.start + per_hop, self.element_range().start);
        }
        packet.copy_within(ri.start + per_hop..ri.end, ri.start);
        let tail = &mut packet[ri.end - per_hop..ri.end];
        tail.fill(0);
        stream.apply(tail);

        let body = g.payload_offset()..g.packet_len();
        keys.sprp().decrypt(&mut packet[body.clone()]);

        if let Some(next) = commands.next_hop {
            // KEM: the next ciphertext is already in place. NIKE: blind the group element.
            if !scheme.is_kem() {
                let er = self.element_range();
                let point: [u8; 32] = packet[er.clone()].try_into().map_err(|_| UnwrapError::KeyAgreement)?;
                let blinded =
                    Fast::scalarmult(&keys.blinding_factor(), &point).ok_or(UnwrapError::KeyAgreement)?;
                packet[er].copy_from_slice(blinded.as_ref());
            }
            packet[mac_range].copy_from_slice(&next.mac);
            return Ok(Unwrapped { replay_tag: tag, commands, payload: 0..0 });
        }
        let payload = if commands.surb_reply.is_some() {
            body
        } else {
            if !bool::from(is_zero(&packet[body.start..body.start + PAYLOAD_TAG_LEN])) {
                return Err(UnwrapError::PayloadTag);
            }
            body.start + PAYLOAD_TAG_LEN..body.end
        };
        Ok(Unwrapped { replay_tag: tag, commands, payload })
    }

    fn create_header<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        path: &[PathHop],
    ) -> Result<Header, CreateError> {
        let g = &self.geometry;
        let scheme = g.scheme();
        let n = path.len();
        if n == 0 || n > g.nr_hops() {
            return Err(CreateError::PathLength { got: n, max: g.nr_hops() });
        }
        for (i, hop) in path.iter().enumerate() {
            if hop.public_key.scheme() != scheme {
                return Err(CreateError::PublicKey { hop: i });
            }
        }

        // Per-hop keys and the element each hop sees.
        let mut keys = Vec::with_capacity(n);
        let mut elements: Vec<Vec<u8>> = Vec::with_capacity(n);
        if scheme.is_kem() {
            for (i, hop) in path.iter().enumerate() {
                let (ct, ss) = hop.public_key.encapsulate(rng).ok_or(CreateError::LowOrderKey { hop: i })?;
                keys.push(PacketKeys::derive(&ss, false));
                elements.push(ct);
            }
        } else {
            let mut x = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(x.as_mut());
            let mut alpha = x25519_base(&x);
            for (i, hop) in path.iter().enumerate() {
                let pk = hop.public_key.x25519_point().ok_or(CreateError::PublicKey { hop: i })?;
                let mut ss = Fast::scalarmult(&x, pk).ok_or(CreateError::LowOrderKey { hop: i })?;
                for k in &keys {
                    let k: &PacketKeys = k;
                    ss = Fast::scalarmult(&k.blinding_factor(), &ss)
                        .ok_or(CreateError::LowOrderKey { hop: i })?;
                }
                if let Some(prev) = keys.last() {
                    let prev: &PacketKeys = prev;
                    alpha = *Fast::scalarmult(&prev.blinding_factor(), &alpha)
                        .ok_or(CreateError::LowOrderKey { hop: i })?;
                }
                elements.push(alpha.to_vec());
                keys.push(PacketKeys::derive(&ss, true));
            }
        }

        // Routing-information key streams and the filler ("padding") each hop will see appended.
        let per_hop = g.per_hop_routing_info_len();
        let ri_len = g.routing_info_len();
        let mut streams: Vec<Zeroizing<Vec<u8>>> = Vec::with_capacity(n);
        let mut paddings: Vec<Zeroizing<Vec<u8>>> = Vec::with_capacity(n);
        for (i, k) in keys.iter().enumerate() {
            let mut ks = Zeroizing::new(vec![0u8; ri_len + per_hop]);
            k.header_stream().apply(&mut ks);
            let split = ks.len() - (i + 1) * per_hop;
            let mut pad = Zeroizing::new(ks[split..].to_vec());
            if let Some(prev) = paddings.last() {
                for (p, q) in pad.iter_mut().zip(prev.iter()) {
                    *p ^= q;
                }
            }
            ks.truncate(split);
            streams.push(ks);
            paddings.push(pad);
        }

        // Build the routing information from the last hop back to the first.
        let mut routing = vec![0u8; (g.nr_hops() - n) * per_hop];
        rng.fill_bytes(&mut routing);
        let mut mac = [0u8; MAC_LEN];
        let mut fragment = Vec::with_capacity(per_hop);
        for i in (0..n).rev() {
            let terminal = i + 1 == n;
            fragment.clear();
            for c in &path[i].commands {
                if matches!(c, RoutingCommand::NextNodeHop(_)) {
                    return Err(CreateError::InvalidCommands { hop: i });
                }
                c.encode(&mut fragment);
            }
            if !terminal {
                RoutingCommand::NextNodeHop(crate::commands::NextNodeHop { id: path[i + 1].id, mac })
                    .encode(&mut fragment);
            }
            if fragment.len() > g.command_space() {
                return Err(CreateError::CommandsTooLong { hop: i });
            }
            fragment.resize(per_hop, 0);
            if !terminal && scheme.is_kem() {
                fragment[g.command_space()..].copy_from_slice(&elements[i + 1]);
            }
            let mut next = Vec::with_capacity(per_hop + routing.len());
            next.extend_from_slice(&fragment);
            next.extend_from_slice(&routing);
            routing = next;
            for (r, s) in routing.iter_mut().zip(streams[i].iter()) {
                *r ^= s;
            }
            let pad: &[u8] = if i > 0 { &paddings[i - 1] } else { &[] };
            mac = keys[i].header_mac(&[&VERSION, &elements[i], &routing, pad]);
        }

        let mut bytes = Vec::with_capacity(g.packet_len());
        bytes.extend_from_slice(&VERSION);
        bytes.extend_from_slice(&elements[0]);
        bytes.extend_from_slice(&routing);
        bytes.extend_from_slice(&mac);
        debug_assert_eq!(bytes.len(), g.header_len());
        Ok(Header { bytes, keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_send_and_sync() {
        fn f<T: Send + Sync>() {}
        f::<Sphinx>();
        f::<SecretKey>();
        f::<PublicKey>();
    }
}
