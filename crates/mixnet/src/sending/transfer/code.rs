//! A block's bytes: encryption under the file key, the erasure code, and the signatures.
//!
//! - The padded file is encrypted with ChaCha20 under a key derived from the transfer's fresh
//!   32-byte file key and its id ([`stream_key`]) and nonce zero (a key is never used for a
//!   second file), so block `b`'s ciphertext is the keystream at
//!   its offset: blocks are encrypted and decrypted independently.
//! - Each block's ciphertext, cut into its data shards, gets [`PARITY`] parity shards from a
//!   systematic Reed–Solomon code (`reed-solomon-simd`, Leopard over GF(2^16)): any `data` of the
//!   `data + PARITY` shards give the block back.
//! - Every CHUNK and SURBS is signed by the transfer's own Ed25519 key, whose public half the
//!   file's description carries inside the sender's MLS conversation: a group member, who knows
//!   the file key and every member's mailbox key, still cannot forge or alter a shard (the code
//!   alone cannot tell a bad shard), nor a SURBS, which also names the mailbox it was sent to so
//!   that it cannot be replayed into another member's.

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use qanat_packet::MailboxId;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::plan::{BlockShape, PARITY, Plan};
use crate::sending::payload::TransferId;

/// Why a block could not be encoded or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    /// The plaintext handed in is not the block's length.
    #[error("a block's bytes have the wrong length")]
    Length,
    /// Too few shards, or the erasure code refused them.
    #[error("a block could not be decoded")]
    Decode,
}

/// The key the file's bytes are encrypted under: `HKDF-SHA256(file key, info = "qanat-file enc
/// v1" ‖ transfer)`, so that even a file key used twice by mistake would not give two files the
/// same keystream.
pub fn stream_key(file_key: &[u8; 32], transfer: &TransferId) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(None, file_key);
    let mut info = Vec::with_capacity(17 + 16);
    info.extend_from_slice(b"qanat-file enc v1");
    info.extend_from_slice(&transfer.0);
    let mut k = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's limit.
    let _ = hk.expand(&info, k.as_mut());
    k
}

/// XORs the stream key's keystream at byte `offset` of the padded file into `buf`.
pub fn crypt(key: &[u8; 32], offset: u64, buf: &mut [u8]) {
    let mut c = ChaCha20::new(key.into(), &[0u8; 12].into());
    c.seek(offset);
    c.apply_keystream(buf);
}

/// Block `b`'s shards: its plaintext (`data · S` bytes, zeros past the file's end) encrypted,
/// cut into data shards, then the [`PARITY`] parity shards.
pub fn encode_block(
    plan: &Plan,
    key: &[u8; 32],
    b: &BlockShape,
    plain: &[u8],
) -> Result<Vec<Vec<u8>>, CodeError> {
    let (offset, len) = plan.block_range(b);
    if plain.len() != len {
        return Err(CodeError::Length);
    }
    let mut c = plain.to_vec();
    crypt(key, offset, &mut c);
    let mut shards: Vec<Vec<u8>> = c.chunks(plan.shard()).map(<[u8]>::to_vec).collect();
    let parity = reed_solomon_simd::encode(usize::from(b.data), usize::from(PARITY), &shards)
        .map_err(|_| CodeError::Decode)?;
    shards.extend(parity);
    Ok(shards)
}

/// Block `b`'s plaintext from at least `data` of its shards (`(index, shard)`, each of the
/// shard length, indices below `data + PARITY`).
pub fn decode_block(
    plan: &Plan,
    key: &[u8; 32],
    b: &BlockShape,
    shards: &[(u16, &[u8])],
) -> Result<Vec<u8>, CodeError> {
    let data = usize::from(b.data);
    let s = plan.shard();
    if shards.iter().any(|(i, x)| x.len() != s || usize::from(*i) >= data + usize::from(PARITY)) {
        return Err(CodeError::Length);
    }
    let (orig, rec): (Vec<_>, Vec<_>) = shards.iter().partition(|(i, _)| usize::from(*i) < data);
    let (offset, len) = plan.block_range(b);
    let mut out = vec![0u8; len];
    let mut have = vec![false; data];
    for (i, x) in &orig {
        let i = usize::from(*i);
        out[i * s..][..s].copy_from_slice(x);
        have[i] = true;
    }
    if have.iter().any(|h| !h) {
        let restored = reed_solomon_simd::decode(
            data,
            usize::from(PARITY),
            orig.iter().map(|(i, x)| (usize::from(*i), *x)),
            rec.iter().map(|(i, x)| (usize::from(*i) - data, *x)),
        )
        .map_err(|_| CodeError::Decode)?;
        for (i, x) in restored {
            if i >= data || x.len() != s {
                return Err(CodeError::Decode);
            }
            out[i * s..][..s].copy_from_slice(&x);
            have[i] = true;
        }
        if have.iter().any(|h| !h) {
            return Err(CodeError::Decode);
        }
    }
    crypt(key, offset, &mut out);
    Ok(out)
}

fn chunk_message(transfer: &TransferId, block: u16, index: u16, shard: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(14 + 16 + 4 + shard.len());
    m.extend_from_slice(b"qanat-chunk v1");
    m.extend_from_slice(&transfer.0);
    m.extend_from_slice(&block.to_be_bytes());
    m.extend_from_slice(&index.to_be_bytes());
    m.extend_from_slice(shard);
    m
}

fn surbs_message(transfer: &TransferId, mailbox: &MailboxId, block: u16, round: u8, surb: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(14 + 16 + 32 + 3 + surb.len());
    m.extend_from_slice(b"qanat-surbs v1");
    m.extend_from_slice(&transfer.0);
    m.extend_from_slice(&mailbox.0);
    m.extend_from_slice(&block.to_be_bytes());
    m.push(round);
    m.extend_from_slice(surb);
    m
}

/// The signature of a CHUNK.
pub fn sign_chunk(key: &SigningKey, transfer: &TransferId, block: u16, index: u16, shard: &[u8]) -> [u8; 64] {
    key.sign(&chunk_message(transfer, block, index, shard)).to_bytes()
}

/// Whether a CHUNK's signature is the transfer key's (strict: no malleable encodings).
pub fn verify_chunk(
    key: &VerifyingKey,
    transfer: &TransferId,
    block: u16,
    index: u16,
    shard: &[u8],
    signature: &[u8; 64],
) -> bool {
    key.verify_strict(&chunk_message(transfer, block, index, shard), &Signature::from_bytes(signature))
        .is_ok()
}

/// The signature of a SURBS sent to `mailbox`.
pub fn sign_surbs(
    key: &SigningKey,
    transfer: &TransferId,
    mailbox: &MailboxId,
    block: u16,
    round: u8,
    surb: &[u8],
) -> [u8; 64] {
    key.sign(&surbs_message(transfer, mailbox, block, round, surb)).to_bytes()
}

/// Whether a SURBS that arrived in `mailbox` is the transfer key's, for that mailbox.
pub fn verify_surbs(
    key: &VerifyingKey,
    transfer: &TransferId,
    mailbox: &MailboxId,
    block: u16,
    round: u8,
    surb: &[u8],
    signature: &[u8; 64],
) -> bool {
    key.verify_strict(
        &surbs_message(transfer, mailbox, block, round, surb),
        &Signature::from_bytes(signature),
    )
    .is_ok()
}
