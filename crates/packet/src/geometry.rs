//! Packet geometry: every length in a packet, derived from a few parameters exactly as
//! Katzenpost's `geo` package derives them, so that both produce the same sizes.
//!
//! A geometry is built only through [`Geometry::new`] or
//! [`Geometry::from_user_forward_payload_length`], so a value of this type is always consistent.

use crate::error::GeometryError;
use crate::scheme::Scheme;

/// Length of a node identifier.
pub const NODE_ID_LEN: usize = 32;
/// Length of a mailbox id (Katzenpost's recipient id).
pub const MAILBOX_ID_LEN: usize = 32;
/// Length of a SURB identifier.
pub const SURB_ID_LEN: usize = 16;
/// Length of the header MAC (HMAC-SHA256, untruncated).
pub const MAC_LEN: usize = 32;
/// Length of the payload tag: zero bytes before the payload that every hop's SPRP scrambles.
pub const PAYLOAD_TAG_LEN: usize = 32;
/// Length of the SPRP key and IV handed to a SURB's user.
pub const SPRP_KEY_MATERIAL_LEN: usize = crate::crypto::SPRP_KEY_LEN + crate::crypto::SPRP_IV_LEN;
/// Length of the version field at the start of the header.
pub const AD_LEN: usize = 2;
/// Length of the Katzenpost "plaintext header" that precedes a SURB in a forward payload.
pub const SPHINX_PLAINTEXT_HEADER_LEN: usize = 2;
/// Length of an encoded `NextNodeHop` command (tag, node id, MAC).
pub const NEXT_NODE_HOP_LEN: usize = 1 + NODE_ID_LEN + MAC_LEN;
/// Length of an encoded `SURBReply` command.
pub const SURB_REPLY_LEN: usize = 1 + SURB_ID_LEN;
/// Most hops a geometry may have.
pub const MAX_HOPS: usize = 16;
/// Largest forward payload a geometry may have (1 MiB; real networks use about 2 KiB).
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Qanat's default number of hops: entry gateway, three mix layers, exit gateway.
pub const DEFAULT_HOPS: usize = 5;
/// Qanat's default forward payload length (bytes after the payload tag).
pub const DEFAULT_FORWARD_PAYLOAD_LEN: usize = 1536;

/// Every length in a Sphinx packet of one network.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Geometry {
    scheme: Scheme,
    nr_hops: usize,
    header_len: usize,
    packet_len: usize,
    routing_info_len: usize,
    per_hop_routing_info_len: usize,
    surb_len: usize,
    forward_payload_len: usize,
    user_forward_payload_len: usize,
}

impl Geometry {
    /// A geometry whose forward payload (the bytes after the payload tag) is
    /// `forward_payload_len` long.
    pub fn new(scheme: Scheme, forward_payload_len: usize, nr_hops: usize) -> Result<Self, GeometryError> {
        Self::build(scheme, forward_payload_len, forward_payload_len, nr_hops)
    }

    /// Katzenpost's `GeometryFromUserForwardPayloadLength` / `KEMGeometryFromUserForwardPayloadLength`:
    /// with `with_surb`, the forward payload also has room for a plaintext header and one SURB.
    pub fn from_user_forward_payload_length(
        scheme: Scheme,
        user_forward_payload_len: usize,
        with_surb: bool,
        nr_hops: usize,
    ) -> Result<Self, GeometryError> {
        if !(1..=MAX_PAYLOAD).contains(&user_forward_payload_len) {
            return Err(GeometryError::PayloadLength(user_forward_payload_len));
        }
        let forward = if with_surb {
            let header = header_len(scheme, nr_hops);
            user_forward_payload_len + SPHINX_PLAINTEXT_HEADER_LEN + surb_len(header)
        } else {
            user_forward_payload_len
        };
        Self::build(scheme, forward, user_forward_payload_len, nr_hops)
    }

    /// Qanat's default geometry for `scheme`: [`DEFAULT_HOPS`] hops and a
    /// [`DEFAULT_FORWARD_PAYLOAD_LEN`]-byte forward payload (about 2 KiB packets with X25519).
    pub fn default_for(scheme: Scheme) -> Self {
        // The default parameters are constants inside the accepted ranges.
        #[allow(clippy::expect_used)]
        Self::build(scheme, DEFAULT_FORWARD_PAYLOAD_LEN, DEFAULT_FORWARD_PAYLOAD_LEN, DEFAULT_HOPS)
            .expect("default geometry parameters are in range")
    }

    fn build(
        scheme: Scheme,
        forward_payload_len: usize,
        user_forward_payload_len: usize,
        nr_hops: usize,
    ) -> Result<Self, GeometryError> {
        if !(1..=MAX_HOPS).contains(&nr_hops) {
            return Err(GeometryError::Hops(nr_hops));
        }
        if !(1..=MAX_PAYLOAD).contains(&forward_payload_len) {
            return Err(GeometryError::PayloadLength(forward_payload_len));
        }
        let per_hop = per_hop_len(scheme);
        let header = header_len(scheme, nr_hops);
        Ok(Self {
            scheme,
            nr_hops,
            header_len: header,
            packet_len: header + PAYLOAD_TAG_LEN + forward_payload_len,
            routing_info_len: per_hop * nr_hops,
            per_hop_routing_info_len: per_hop,
            surb_len: surb_len(header),
            forward_payload_len,
            user_forward_payload_len,
        })
    }

    /// The key-agreement scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }
    /// Most hops a packet can take.
    pub fn nr_hops(&self) -> usize {
        self.nr_hops
    }
    /// Length of the header.
    pub fn header_len(&self) -> usize {
        self.header_len
    }
    /// Length of every packet.
    pub fn packet_len(&self) -> usize {
        self.packet_len
    }
    /// Length of the routing information block.
    pub fn routing_info_len(&self) -> usize {
        self.routing_info_len
    }
    /// Length of one hop's routing information slot.
    pub fn per_hop_routing_info_len(&self) -> usize {
        self.per_hop_routing_info_len
    }
    /// Length of a serialized SURB.
    pub fn surb_len(&self) -> usize {
        self.surb_len
    }
    /// Length of the payload a packet carries (after the payload tag).
    pub fn forward_payload_len(&self) -> usize {
        self.forward_payload_len
    }
    /// Length of the payload left for the user when a SURB travels in the forward payload.
    pub fn user_forward_payload_len(&self) -> usize {
        self.user_forward_payload_len
    }
    /// Length of the payload tag.
    pub fn payload_tag_len(&self) -> usize {
        PAYLOAD_TAG_LEN
    }
    /// Offset of the payload (tag included) in a packet.
    pub(crate) fn payload_offset(&self) -> usize {
        self.header_len
    }
    /// Bytes of a hop's routing slot available for commands (KEM schemes keep the next hop's
    /// ciphertext at the end of the slot).
    pub(crate) fn command_space(&self) -> usize {
        self.per_hop_routing_info_len - self.scheme.next_element_len()
    }
}

fn per_hop_len(scheme: Scheme) -> usize {
    NEXT_NODE_HOP_LEN + SURB_REPLY_LEN + scheme.next_element_len()
}

fn header_len(scheme: Scheme, nr_hops: usize) -> usize {
    AD_LEN + scheme.element_len() + per_hop_len(scheme) * nr_hops + MAC_LEN
}

fn surb_len(header_len: usize) -> usize {
    header_len + NODE_ID_LEN + SPRP_KEY_MATERIAL_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_geometry_matches_constructor() {
        for scheme in Scheme::ALL {
            let built = Geometry::new(scheme, DEFAULT_FORWARD_PAYLOAD_LEN, DEFAULT_HOPS).unwrap();
            assert_eq!(built, Geometry::default_for(scheme));
        }
    }

    #[test]
    fn katzenpost_vector_geometry() {
        // GeometryFromUserForwardPayloadLength(x25519, 103, false, 5) in Katzenpost.
        let g = Geometry::from_user_forward_payload_length(Scheme::X25519Nike, 103, false, 5).unwrap();
        assert_eq!(g.per_hop_routing_info_len(), 82);
        assert_eq!(g.routing_info_len(), 410);
        assert_eq!(g.header_len(), 476);
        assert_eq!(g.packet_len(), 476 + 32 + 103);
        let s = Geometry::from_user_forward_payload_length(Scheme::X25519Nike, 103, true, 5).unwrap();
        assert_eq!(s.surb_len(), 476 + 32 + 64);
        assert_eq!(s.forward_payload_len(), 103 + 2 + 572);
    }

    #[test]
    fn rejects_bad_parameters() {
        assert_eq!(Geometry::new(Scheme::X25519Nike, 100, 0), Err(GeometryError::Hops(0)));
        assert_eq!(
            Geometry::new(Scheme::X25519Nike, 100, MAX_HOPS + 1),
            Err(GeometryError::Hops(MAX_HOPS + 1))
        );
        assert_eq!(Geometry::new(Scheme::X25519Nike, 0, 5), Err(GeometryError::PayloadLength(0)));
    }
}
