//! Frames: the only thing a link carries after its handshake. Pure functions on bytes.
//!
//! Every frame is exactly [`FrameSize::frame_len`] bytes of plaintext (`F`), which the link
//! encrypts into one Noise transport message of `F + 16` bytes. Layout of the plaintext:
//!
//! ```text
//! offset 0      kind: 1 Packet, 2 Ack, 3 KeepAlive, 4 Control, 5 Close
//! Packet        [1..9)  id (u64, big-endian)   [9..F)  the Sphinx packet (exactly F - 9 bytes)
//! Ack           [1..3)  count n (u16, 1 ≤ n)    [3..3+8n) n ids (u64, big-endian)   rest zero
//! KeepAlive     [1..F)  zero
//! Control       [1..3)  length m (u16)          [3..3+m) opaque bytes               rest zero
//! Close         [1..F)  zero
//! ```
//!
//! The decoder is strict: an unknown kind, a count or length that does not fit, or a non-zero
//! padding byte is an error, so every accepted frame has exactly one encoding (the fuzz target
//! `link_frame` checks the round trip).
//!
//! # Acknowledgement ids
//!
//! A [`PacketId`] is a 64-bit number the *sender* writes into each `Packet` frame; an `Ack`
//! frame carries ids of packets the receiver has durably taken responsibility for (a gateway
//! sends it only after its mailbox store committed them). Ids are explicit rather than implied
//! by position so that acknowledgements may come out of order (group commits finish in any
//! order) and survive reconnection: a sender that resends an unacknowledged packet on a new
//! connection keeps its id. A sender should number its packets with a counter that never
//! repeats while any packet is unacknowledged; the link itself does not interpret ids.

use crate::error::{ConfigError, FrameError};

/// Bytes of `Packet` header: kind and id.
pub const PACKET_HEADER_LEN: usize = 9;
/// The AEAD tag Noise's ChaCha20-Poly1305 adds to each frame.
pub const TAG_LEN: usize = 16;
/// The largest Noise message.
const NOISE_MAX: usize = 65_535;
/// Smallest packet length a frame size may be built for: leaves room for at least a few acks.
const MIN_PACKET_LEN: usize = 32;

const KIND_PACKET: u8 = 1;
const KIND_ACK: u8 = 2;
const KIND_KEEPALIVE: u8 = 3;
const KIND_CONTROL: u8 = 4;
const KIND_CLOSE: u8 = 5;

/// A network's frame size: the plaintext length `F` of every frame, fixed by the Sphinx packet
/// length (`F = packet_len + 9`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrameSize {
    packet_len: u16,
}

impl FrameSize {
    /// The frame size for packets of `packet_len` bytes (for example
    /// `Geometry::packet_len()` of `qanat-packet`).
    pub fn for_packet_len(packet_len: usize) -> Result<Self, ConfigError> {
        if packet_len < MIN_PACKET_LEN || packet_len + PACKET_HEADER_LEN + TAG_LEN > NOISE_MAX {
            return Err(ConfigError::PacketLength(packet_len));
        }
        let packet_len = u16::try_from(packet_len).map_err(|_| ConfigError::PacketLength(packet_len))?;
        Ok(Self { packet_len })
    }

    /// Length of the Sphinx packet a `Packet` frame carries.
    pub fn packet_len(self) -> usize {
        usize::from(self.packet_len)
    }

    /// `F`: the plaintext length of every frame.
    pub fn frame_len(self) -> usize {
        self.packet_len() + PACKET_HEADER_LEN
    }

    /// `F + 16`: the length of every transport message on the wire.
    pub fn wire_len(self) -> usize {
        self.frame_len() + TAG_LEN
    }

    /// The most ids one `Ack` frame holds.
    pub fn max_acks(self) -> usize {
        (self.frame_len() - 3) / 8
    }

    /// The most bytes one `Control` frame holds.
    pub fn max_control_len(self) -> usize {
        self.frame_len() - 3
    }
}

/// The sender-chosen id of one `Packet` frame, echoed in `Ack` frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketId(pub u64);

/// One frame.
#[derive(Clone, PartialEq, Eq)]
pub enum Frame {
    /// Exactly one Sphinx packet, with the id its sender chose.
    Packet {
        /// The sender's id for this packet.
        id: PacketId,
        /// The packet: exactly [`FrameSize::packet_len`] bytes.
        packet: Vec<u8>,
    },
    /// Ids of packets the receiver has durably taken responsibility for (1 to
    /// [`FrameSize::max_acks`]).
    Ack(Vec<PacketId>),
    /// Keeps an idle link alive; consumed by the link, never delivered.
    KeepAlive,
    /// Opaque bytes for a protocol above the link (client ↔ gateway commands), at most
    /// [`FrameSize::max_control_len`].
    Control(Vec<u8>),
    /// The sender is closing the connection; consumed by the link, never delivered.
    Close,
}

impl std::fmt::Debug for Frame {
    // Never prints packet or control bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Frame::Packet { id, packet } => write!(f, "Packet({id:?}, {} bytes)", packet.len()),
            Frame::Ack(ids) => write!(f, "Ack({} ids)", ids.len()),
            Frame::KeepAlive => f.write_str("KeepAlive"),
            Frame::Control(b) => write!(f, "Control({} bytes)", b.len()),
            Frame::Close => f.write_str("Close"),
        }
    }
}

impl Frame {
    /// Checks that this frame can be encoded at `size`.
    pub fn validate(&self, size: FrameSize) -> Result<(), FrameError> {
        match self {
            Frame::Packet { packet, .. } if packet.len() != size.packet_len() => {
                Err(FrameError::PacketLength(packet.len()))
            }
            Frame::Ack(ids) if ids.is_empty() || ids.len() > size.max_acks() => {
                Err(FrameError::AckCount(ids.len()))
            }
            Frame::Control(b) if b.len() > size.max_control_len() => Err(FrameError::ControlLength(b.len())),
            _ => Ok(()),
        }
    }

    /// Encodes this frame into `out`, which must be exactly [`FrameSize::frame_len`] bytes;
    /// every byte of `out` is written.
    pub fn encode(&self, size: FrameSize, out: &mut [u8]) -> Result<(), FrameError> {
        self.validate(size)?;
        if out.len() != size.frame_len() {
            return Err(FrameError::FrameLength(out.len()));
        }
        if let Frame::Packet { id, packet } = self {
            // Every byte is written (validated: the packet fills the frame), no padding to clear.
            out[0] = KIND_PACKET;
            out[1..9].copy_from_slice(&id.0.to_be_bytes());
            out[9..].copy_from_slice(packet);
            return Ok(());
        }
        out.fill(0);
        match self {
            Frame::Packet { .. } => {}
            Frame::Ack(ids) => {
                out[0] = KIND_ACK;
                write_u16(&mut out[1..3], ids.len());
                for (slot, id) in out[3..].chunks_exact_mut(8).zip(ids) {
                    slot.copy_from_slice(&id.0.to_be_bytes());
                }
            }
            Frame::KeepAlive => out[0] = KIND_KEEPALIVE,
            Frame::Control(b) => {
                out[0] = KIND_CONTROL;
                write_u16(&mut out[1..3], b.len());
                out[3..3 + b.len()].copy_from_slice(b);
            }
            Frame::Close => out[0] = KIND_CLOSE,
        }
        Ok(())
    }

    /// Decodes one frame of exactly [`FrameSize::frame_len`] bytes.
    pub fn decode(size: FrameSize, bytes: &[u8]) -> Result<Frame, FrameError> {
        if bytes.len() != size.frame_len() {
            return Err(FrameError::FrameLength(bytes.len()));
        }
        let (&kind, body) = bytes.split_first().ok_or(FrameError::FrameLength(0))?;
        let zero_from = |from: usize| -> Result<(), FrameError> {
            if body[from..].iter().any(|&b| b != 0) { Err(FrameError::Padding) } else { Ok(()) }
        };
        match kind {
            KIND_PACKET => {
                let (id, packet) = body.split_at(8);
                Ok(Frame::Packet { id: PacketId(read_u64(id)), packet: packet.to_vec() })
            }
            KIND_ACK => {
                let n = read_u16(&body[..2]);
                if n == 0 || n > size.max_acks() {
                    return Err(FrameError::AckCount(n));
                }
                let end = 2 + 8 * n;
                zero_from(end)?;
                Ok(Frame::Ack(body[2..end].chunks_exact(8).map(|c| PacketId(read_u64(c))).collect()))
            }
            KIND_KEEPALIVE => zero_from(0).map(|()| Frame::KeepAlive),
            KIND_CONTROL => {
                let m = read_u16(&body[..2]);
                if m > size.max_control_len() {
                    return Err(FrameError::ControlLength(m));
                }
                zero_from(2 + m)?;
                Ok(Frame::Control(body[2..2 + m].to_vec()))
            }
            KIND_CLOSE => zero_from(0).map(|()| Frame::Close),
            other => Err(FrameError::Kind(other)),
        }
    }
}

fn write_u16(out: &mut [u8], v: usize) {
    // Callers have checked v against `max_acks`/`max_control_len`, both below 65,536.
    let v = u16::try_from(v).unwrap_or(u16::MAX);
    out.copy_from_slice(&v.to_be_bytes());
}

fn read_u16(b: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([b[0], b[1]]))
}

fn read_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn size() -> FrameSize {
        FrameSize::for_packet_len(64).unwrap()
    }

    fn frames() -> impl Strategy<Value = Frame> {
        let s = size();
        prop_oneof![
            (any::<u64>(), proptest::collection::vec(any::<u8>(), s.packet_len()))
                .prop_map(|(id, packet)| Frame::Packet { id: PacketId(id), packet }),
            proptest::collection::vec(any::<u64>().prop_map(PacketId), 1..=s.max_acks()).prop_map(Frame::Ack),
            Just(Frame::KeepAlive),
            proptest::collection::vec(any::<u8>(), 0..=s.max_control_len()).prop_map(Frame::Control),
            Just(Frame::Close),
        ]
    }

    proptest! {
        #[test]
        fn every_frame_round_trips(f in frames()) {
            let mut buf = vec![0xaa; size().frame_len()];
            f.encode(size(), &mut buf).unwrap();
            prop_assert_eq!(Frame::decode(size(), &buf).unwrap(), f);
        }

        #[test]
        fn decoder_never_panics_and_accepted_bytes_are_canonical(
            bytes in proptest::collection::vec(any::<u8>(), 73),
            kind in 1u8..=6,
        ) {
            let mut bytes = bytes;
            bytes[0] = kind;
            if let Ok(f) = Frame::decode(size(), &bytes) {
                let mut again = vec![0; size().frame_len()];
                f.encode(size(), &mut again).unwrap();
                prop_assert_eq!(again, bytes);
            }
        }
    }

    #[test]
    fn sizes() {
        let s = FrameSize::for_packet_len(2_204).unwrap();
        assert_eq!(s.frame_len(), 2_213);
        assert_eq!(s.wire_len(), 2_229);
        assert_eq!(s.max_acks(), 276);
        assert!(FrameSize::for_packet_len(65_535).is_err());
        assert!(FrameSize::for_packet_len(8).is_err());
    }

    #[test]
    fn strictness() {
        let s = size();
        let mut b = vec![0; s.frame_len()];
        assert_eq!(Frame::decode(s, &b), Err(FrameError::Kind(0)));
        b[0] = KIND_KEEPALIVE;
        assert_eq!(Frame::decode(s, &b), Ok(Frame::KeepAlive));
        b[40] = 1;
        assert_eq!(Frame::decode(s, &b), Err(FrameError::Padding));
        b[40] = 0;
        b[0] = KIND_ACK;
        assert_eq!(Frame::decode(s, &b), Err(FrameError::AckCount(0)));
        b[0] = KIND_CONTROL;
        b[1] = 0xff;
        assert!(matches!(Frame::decode(s, &b), Err(FrameError::ControlLength(_))));
        assert!(Frame::decode(s, &b[1..]).is_err());
        let bad = Frame::Packet { id: PacketId(1), packet: vec![0; 3] };
        assert_eq!(bad.validate(s), Err(FrameError::PacketLength(3)));
    }
}
