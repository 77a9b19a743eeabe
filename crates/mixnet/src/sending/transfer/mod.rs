//! Files over the mix network: erasure-coded blocks of shards, each block acknowledged once
//! with a bitmap.
//!
//! A file is encrypted under a fresh key and planned into blocks by its size bucket
//! ([`plan`]); each block's ciphertext shards get parity from a Reed–Solomon code and every
//! shard is signed by the transfer's own key ([`code`]). The sender ([`send`]) sends a block's
//! first round and a SURB for its answer in payload slots like any other packet, and tops up
//! from the answer's bitmap; the recipient ([`recv`]) keeps shards until the block decodes and
//! answers each SURB once. The file's description (its key, the transfer's public key, its size)
//! travels inside the conversation (MLS), which is not this crate's.
//!
//! The design, the measurements behind its constants and what each party learns are in
//! `docs/ATTACHMENTS.md` and `docs/PROTOCOL.md` ("Files").

pub mod code;
pub mod plan;
pub mod recv;
pub mod send;

#[cfg(test)]
mod tests;

pub use plan::{
    BLOCK_DATA, BlockShape, MAX_FILE_FORMAT, MIN_BUCKET, PARITY, Plan, PlanError, REPORT_BIT, block_id,
    bucket,
};
pub use recv::{ChunkOutcome, RecvConfig, RefuseReason, TransferRecv};
pub use send::{
    BlockSource, ParityPolicy, PeerProgress, PeerState, PrepareError, SendConfig, SendEvent, SendStats,
    TransferSend,
};

use qanat_codec::{DecodeError, Reader, Writer};

/// Why a transfer's state could not be read or a block encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// Saved state of another version or shape.
    #[error("a transfer's saved state is not readable")]
    Format,
    /// The erasure code refused.
    #[error(transparent)]
    Code(#[from] code::CodeError),
}

impl From<DecodeError> for TransferError {
    fn from(_: DecodeError) -> Self {
        Self::Format
    }
}

/// A set of shard indices of one block (0 to 255).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bits([u64; 4]);

impl Bits {
    pub(crate) fn set(&mut self, i: u16) {
        if let Some(w) = self.0.get_mut(usize::from(i / 64)) {
            *w |= 1 << (i % 64);
        }
    }

    pub(crate) fn get(&self, i: u16) -> bool {
        self.0.get(usize::from(i / 64)).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub(crate) fn count(&self) -> u16 {
        // At most 256.
        self.0.iter().map(|w| w.count_ones()).sum::<u32>() as u16
    }

    pub(crate) fn or(&mut self, o: &Self) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a |= b;
        }
    }

    pub(crate) fn and(&self, o: &Self) -> Self {
        let mut r = self.clone();
        for (a, b) in r.0.iter_mut().zip(o.0) {
            *a &= b;
        }
        r
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..256u16).filter(|i| self.get(*i))
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        for x in self.0 {
            w.u64(x);
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self([r.u64()?, r.u64()?, r.u64()?, r.u64()?]))
    }
}
