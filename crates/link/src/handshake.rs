//! The handshake: `Noise_hybridXK_25519+MLKEM768_ChaChaPoly_BLAKE2b` (Clatter's hybrid XK),
//! four messages, then one key-confirmation frame from the initiator.
//!
//! ```text
//! <- s                                  (the dialer knows the listener's link key)
//! ...
//! -> skem, e, es                        skem: ML-KEM ciphertext to the listener's static key
//! <- ekem, e, ee                        ekem: ML-KEM ciphertext to the dialer's ephemeral key
//! -> s, se                              the dialer's static keys, encrypted
//! <- skem                               ML-KEM ciphertext to the dialer's static key
//! -> [KeepAlive frame]                  first transport frame: proves the dialer's ML-KEM key
//! ```
//!
//! Each handshake message travels as `length (u16, big-endian) ‖ message`; a message longer
//! than [`MAX_HANDSHAKE_MSG`] ends the handshake. The listener calls the authorizer as soon as
//! message 3 reveals the dialer's static key, and answers an unauthorized dialer with nothing.

use clatter::bytearray::{ByteArray, HeapArray, SensitiveByteArray};
use clatter::crypto::cipher::ChaChaPoly;
use clatter::crypto::dh::X25519;
use clatter::crypto::hash::Blake2b;
use clatter::handshakepattern::noise_hybrid_xk;
use clatter::traits::Handshaker;
use clatter::{HybridHandshake, HybridHandshakeParams, KeyPair};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::authorizer::Authorizer;
use crate::cipher::FrameCipher;
use crate::config::LinkConfig;
use crate::error::HandshakeError;
use crate::frame::Frame;
use crate::keys::{KEM_PK_LEN, LinkPublicKey, LinkSecretKey};
use crate::mlkem::MlKem768;

/// The Noise protocol name (it is also hashed into every handshake).
pub const PROTOCOL_NAME: &str = "Noise_hybridXK_25519+MLKEM768_ChaChaPoly_BLAKE2b";
/// Largest handshake message accepted (the largest real one is 2,320 bytes; see
/// [`MESSAGE_LENS`]).
pub const MAX_HANDSHAKE_MSG: usize = 4096;
/// The lengths of the four handshake messages (without their 2-byte length prefixes); the same
/// in every handshake.
pub const MESSAGE_LENS: [usize; 4] = [2320, 2320, 1264, 1120];

type Hs = HybridHandshake<X25519, MlKem768, MlKem768, ChaChaPoly, Blake2b>;

/// The two transport ciphers of an established link.
pub(crate) struct Ciphers {
    pub(crate) send: FrameCipher,
    pub(crate) recv: FrameCipher,
}

/// `"qanat-link/1" ‖ 0 ‖ frame length (u32) ‖ network length (u32) ‖ network`: binds the
/// protocol version, the frame size and the network into the handshake hash.
fn prologue(config: &LinkConfig) -> Vec<u8> {
    let mut p = b"qanat-link/1\0".to_vec();
    p.extend_from_slice(&(config.frame_size.frame_len() as u32).to_be_bytes());
    p.extend_from_slice(&(config.network.len() as u32).to_be_bytes());
    p.extend_from_slice(&config.network);
    p
}

fn new_handshake(
    initiator: bool,
    prologue: &[u8],
    local: &LinkSecretKey,
    remote: Option<&LinkPublicKey>,
) -> Result<Hs, HandshakeError> {
    let public = local.public_key();
    let mut params = HybridHandshakeParams::<X25519, MlKem768, MlKem768>::new(noise_hybrid_xk(), initiator)
        .with_prologue(prologue)
        .with_s(KeyPair { public: *public.dh(), secret: SensitiveByteArray::from_slice(local.dh_secret()) })
        .with_s_kem(KeyPair {
            public: HeapArray::<KEM_PK_LEN>::from_slice(public.kem()),
            secret: SensitiveByteArray::from_slice(local.kem_secret()),
        });
    if let Some(remote) = remote {
        params = params.with_rs(*remote.dh()).with_rs_kem(HeapArray::<KEM_PK_LEN>::from_slice(remote.kem()));
    }
    Hs::new(params).map_err(|_| HandshakeError::Internal)
}

/// A handshake in progress, without IO: the async drivers below move its messages.
pub(crate) struct Handshake {
    hs: Hs,
    buf: Vec<u8>,
}

impl Handshake {
    pub(crate) fn initiator(
        config: &LinkConfig,
        local: &LinkSecretKey,
        remote: &LinkPublicKey,
    ) -> Result<Self, HandshakeError> {
        Ok(Self {
            hs: new_handshake(true, &prologue(config), local, Some(remote))?,
            buf: vec![0; MAX_HANDSHAKE_MSG],
        })
    }

    pub(crate) fn responder(config: &LinkConfig, local: &LinkSecretKey) -> Result<Self, HandshakeError> {
        Ok(Self {
            hs: new_handshake(false, &prologue(config), local, None)?,
            buf: vec![0; MAX_HANDSHAKE_MSG],
        })
    }

    /// The next message to send.
    pub(crate) fn write(&mut self) -> Result<Vec<u8>, HandshakeError> {
        let n = self.hs.write_message(&[], &mut self.buf).map_err(|_| HandshakeError::Internal)?;
        Ok(self.buf[..n].to_vec())
    }

    /// Processes a message from the peer; any failure is the peer's.
    pub(crate) fn read(&mut self, msg: &[u8]) -> Result<(), HandshakeError> {
        if msg.len() > MAX_HANDSHAKE_MSG {
            return Err(HandshakeError::Protocol);
        }
        let n = self.hs.read_message(msg, &mut self.buf).map_err(|_| HandshakeError::Protocol)?;
        // Every message carries an empty payload.
        if n != 0 {
            return Err(HandshakeError::Protocol);
        }
        Ok(())
    }

    /// The peer's static key, once message 3 has been read (responder) or from the start
    /// (initiator).
    pub(crate) fn remote_static(&self) -> Result<LinkPublicKey, HandshakeError> {
        let rs = self.hs.get_remote_static().ok_or(HandshakeError::Protocol)?;
        LinkPublicKey::from_parts(rs.dh(), rs.kem().as_slice()).map_err(|_| HandshakeError::Protocol)
    }

    pub(crate) fn finish(self) -> Result<Ciphers, HandshakeError> {
        if !self.hs.is_finished() {
            return Err(HandshakeError::Protocol);
        }
        let initiator = self.hs.is_initiator();
        let states = self.hs.finalize().map_err(|_| HandshakeError::Internal)?.take();
        let (send, recv) = if initiator {
            (states.initiator_to_responder, states.responder_to_initiator)
        } else {
            (states.responder_to_initiator, states.initiator_to_responder)
        };
        let take = |s| FrameCipher::from_noise(s).map_err(|_| HandshakeError::Internal);
        Ok(Ciphers { send: take(send)?, recv: take(recv)? })
    }
}

async fn send_msg<S: AsyncWrite + Unpin>(s: &mut S, msg: &[u8]) -> Result<(), HandshakeError> {
    let len = u16::try_from(msg.len()).map_err(|_| HandshakeError::Internal)?;
    let mut out = Vec::with_capacity(2 + msg.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(msg);
    s.write_all(&out).await?;
    s.flush().await?;
    Ok(())
}

async fn recv_msg<S: AsyncRead + Unpin>(s: &mut S) -> Result<Vec<u8>, HandshakeError> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await?;
    let len = usize::from(u16::from_be_bytes(len));
    if len > MAX_HANDSHAKE_MSG {
        return Err(HandshakeError::Protocol);
    }
    let mut msg = vec![0; len];
    s.read_exact(&mut msg).await?;
    Ok(msg)
}

/// Encrypts `frame` into `buf` (exactly one wire frame long).
pub(crate) fn seal(
    config: &LinkConfig,
    cipher: &mut FrameCipher,
    frame: &Frame,
    buf: &mut [u8],
) -> Result<(), HandshakeError> {
    let size = config.frame_size;
    let buf = buf.get_mut(..size.wire_len()).ok_or(HandshakeError::Internal)?;
    frame.encode(size, &mut buf[..size.frame_len()]).map_err(|_| HandshakeError::Internal)?;
    cipher.seal(buf).map_err(|_| HandshakeError::Internal)
}

/// Decrypts and decodes one wire frame in `buf`.
pub(crate) fn open(config: &LinkConfig, cipher: &mut FrameCipher, buf: &mut [u8]) -> Option<Frame> {
    let plain = cipher.open(buf).ok()?;
    Frame::decode(config.frame_size, plain).ok()
}

/// Runs the dialer's side; the peer must hold `remote`'s secret key.
pub(crate) async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    config: &LinkConfig,
    local: &LinkSecretKey,
    remote: &LinkPublicKey,
) -> Result<Ciphers, HandshakeError> {
    let mut hs = Handshake::initiator(config, local, remote)?;
    send_msg(s, &hs.write()?).await?;
    hs.read(&recv_msg(s).await?)?;
    send_msg(s, &hs.write()?).await?;
    hs.read(&recv_msg(s).await?)?;
    let mut ciphers = hs.finish()?;
    let mut buf = vec![0; config.frame_size.wire_len()];
    seal(config, &mut ciphers.send, &Frame::KeepAlive, &mut buf)?;
    s.write_all(&buf).await?;
    s.flush().await?;
    Ok(ciphers)
}

/// Runs the listener's side; returns the authorizer's value for the dialer.
pub(crate) async fn respond<S: AsyncRead + AsyncWrite + Unpin, A: Authorizer>(
    s: &mut S,
    config: &LinkConfig,
    local: &LinkSecretKey,
    authorizer: &A,
) -> Result<(A::Peer, Ciphers), HandshakeError> {
    let mut hs = Handshake::responder(config, local)?;
    hs.read(&recv_msg(s).await?)?;
    send_msg(s, &hs.write()?).await?;
    hs.read(&recv_msg(s).await?)?;
    let key = hs.remote_static()?;
    let peer = authorizer.authorize(&key).ok_or(HandshakeError::Unauthorized)?;
    send_msg(s, &hs.write()?).await?;
    let mut ciphers = hs.finish()?;
    let mut buf = vec![0; config.frame_size.wire_len()];
    s.read_exact(&mut buf).await?;
    match open(config, &mut ciphers.recv, &mut buf) {
        Some(Frame::KeepAlive) => Ok((peer, ciphers)),
        _ => Err(HandshakeError::Protocol),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameSize;
    use rand::{Rng, SeedableRng};

    fn config() -> LinkConfig {
        LinkConfig::new(FrameSize::for_packet_len(64).unwrap())
    }

    fn key(seed: u64) -> LinkSecretKey {
        LinkSecretKey::generate(&mut rand::rngs::StdRng::seed_from_u64(seed))
    }

    #[test]
    fn sans_io_handshake_agrees_and_reveals_the_initiator_key() {
        let (a, b) = (key(1), key(2));
        let c = config();
        let mut i = Handshake::initiator(&c, &a, b.public_key()).unwrap();
        let mut r = Handshake::responder(&c, &b).unwrap();
        let m1 = i.write().unwrap();
        r.read(&m1).unwrap();
        let m2 = r.write().unwrap();
        i.read(&m2).unwrap();
        let m3 = i.write().unwrap();
        r.read(&m3).unwrap();
        assert_eq!(&r.remote_static().unwrap(), a.public_key());
        let m4 = r.write().unwrap();
        i.read(&m4).unwrap();
        // Every handshake has these message lengths (docs/LINK.md).
        assert_eq!([m1.len(), m2.len(), m3.len(), m4.len()], MESSAGE_LENS);
        let (mut ci, mut cr) = (i.finish().unwrap(), r.finish().unwrap());
        let mut buf = vec![0; c.frame_size.wire_len()];
        seal(&c, &mut ci.send, &Frame::Control(b"hi".to_vec()), &mut buf).unwrap();
        assert_eq!(open(&c, &mut cr.recv, &mut buf), Some(Frame::Control(b"hi".to_vec())));
        seal(&c, &mut cr.send, &Frame::Close, &mut buf).unwrap();
        assert_eq!(open(&c, &mut ci.recv, &mut buf), Some(Frame::Close));
    }

    #[test]
    fn wrong_listener_key_or_frame_size_fails() {
        let (a, b, other) = (key(1), key(2), key(3));
        let c = config();
        let mut i = Handshake::initiator(&c, &a, other.public_key()).unwrap();
        let mut r = Handshake::responder(&c, &b).unwrap();
        assert!(r.read(&i.write().unwrap()).is_err());

        let mut c2 = config();
        c2.frame_size = FrameSize::for_packet_len(65).unwrap();
        let mut i = Handshake::initiator(&c2, &a, b.public_key()).unwrap();
        let mut r = Handshake::responder(&c, &b).unwrap();
        assert!(r.read(&i.write().unwrap()).is_err());
    }

    #[test]
    fn random_handshake_messages_never_panic() {
        let b = key(2);
        let c = config();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for len in (0..MAX_HANDSHAKE_MSG + 2).step_by(97).chain([2320, 2319, 2321]) {
            let mut r = Handshake::responder(&c, &b).unwrap();
            let mut msg = vec![0u8; len];
            rng.fill_bytes(&mut msg);
            assert!(r.read(&msg).is_err());
        }
    }
}
