//! The recipient's side of a transfer: shards checked and kept until their block decodes, and
//! one answer per SURBS with the bitmap of what arrived.
//!
//! A shard is taken only if its signature is the transfer key's, its block and index exist, and
//! it is new; at most `max_open` blocks may hold shards without having decoded (an honest
//! sender keeps far fewer open), so a hostile sender can make us hold at most that many blocks'
//! shards per transfer. What is refused is neither kept nor acknowledged. A block decodes as soon
//! as it has as many shards as data shards; its shards are then dropped, and later ones only
//! set their bit.
//!
//! Each SURBS (signed, and naming the mailbox it arrived in) is answered once, through its
//! SURB: at once (after the reply delay) when its block has decoded, else after the grace
//! period, which leaves room for shards still inside the mixes, or as soon as the block decodes
//! within it. (A round ends with two SURBS, so that one lost packet does not cost the sender a
//! whole resend wait; at most four are kept per block.) The answer is the bitmap of the shard
//! indices that arrived, with [`REPORT_BIT`] set; for a decoded block every data index is set.
//! A transfer that is complete still answers (a lost final answer must not leave its sender
//! probing until it gives up).
//!
//! The caller keeps every shard [`ChunkOutcome::Stored`] returns in durable storage before any
//! answer leaves, and gives them back after a restart ([`TransferRecv::restore_shard`]).
//!
//! # What others learn
//!
//! The sender learns when we read each block's SURBS (to the reply delay) and which shards
//! arrived. No one else reads the answers.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use qanat_packet::MailboxId;
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::Bits;
use super::code::{self, verify_chunk, verify_surbs};
use super::plan::{PARITY, Plan, REPORT_BIT, block_id};
use crate::sending::payload::{AckEntry, TransferId};
use crate::{UnixMicros, time::exponential};

/// A recipient's settings.
#[derive(Debug, Clone, Copy)]
pub struct RecvConfig {
    /// How long after a SURBS arrives an incomplete block is answered.
    pub grace: Duration,
    /// The mean of the random delay before each answer.
    pub reply_delay: Duration,
    /// Blocks that may hold shards without having decoded.
    pub max_open: usize,
}

impl Default for RecvConfig {
    fn default() -> Self {
        Self { grace: Duration::from_secs(20), reply_delay: Duration::from_secs(10), max_open: 8 }
    }
}

/// SURBs kept per block (the newest).
const MAX_SURBS: usize = 4;

/// What became of a shard.
#[derive(Debug, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// New: keep it durably (it is answered as held from now on).
    Stored,
    /// Already held, or its block already decoded: nothing to keep.
    Duplicate,
    /// It completed block `block`, whose plaintext (`data · S` bytes, zeros past the file's end)
    /// this is: keep it, and drop the block's stored shards.
    Decoded {
        /// The block.
        block: u16,
        /// Its plaintext.
        plain: Zeroizing<Vec<u8>>,
    },
}

/// Why a shard or SURBS was refused (counted, not kept, not answered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefuseReason {
    /// No such block or index, or the wrong length.
    #[error("no such shard")]
    Range,
    /// The signature is not the transfer key's.
    #[error("bad signature")]
    Signature,
    /// Too many blocks open at once.
    #[error("too many blocks open")]
    TooManyOpen,
    /// The block's shards do not decode (cannot happen with signed shards; counted).
    #[error("the block does not decode")]
    Decode,
}

#[derive(Debug, Default)]
struct BlockRecv {
    held: Bits,
    shards: BTreeMap<u16, Vec<u8>>,
    done: bool,
    /// SURBs not yet used, each with the time its answer is due.
    surbs: VecDeque<(Vec<u8>, UnixMicros)>,
}

/// The recipient's side of one transfer.
pub struct TransferRecv {
    id: TransferId,
    plan: Plan,
    key: Zeroizing<[u8; 32]>,
    verify: VerifyingKey,
    config: RecvConfig,
    blocks: Vec<BlockRecv>,
}

impl std::fmt::Debug for TransferRecv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransferRecv")
            .field("blocks", &self.blocks.len())
            .field("decoded", &self.decoded())
            .finish()
    }
}

impl TransferRecv {
    /// Receiving transfer `id` (planned by `plan`, encrypted under `key`, signed by `verify`).
    pub fn new(
        id: TransferId,
        plan: Plan,
        key: Zeroizing<[u8; 32]>,
        verify: VerifyingKey,
        config: RecvConfig,
    ) -> Self {
        let blocks = plan.blocks().iter().map(|_| BlockRecv::default()).collect();
        let key = code::stream_key(&key, &id);
        Self { id, plan, key, verify, config, blocks }
    }

    /// Changes the settings (the grace and delay follow the network's rates).
    pub fn set_config(&mut self, config: RecvConfig) {
        self.config = config;
    }

    /// The transfer's id.
    pub fn id(&self) -> TransferId {
        self.id
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Blocks decoded.
    pub fn decoded(&self) -> usize {
        self.blocks.iter().filter(|b| b.done).count()
    }

    /// Whether every block has decoded.
    pub fn is_complete(&self) -> bool {
        self.blocks.iter().all(|b| b.done)
    }

    /// Whether block `b` has decoded.
    pub fn is_decoded(&self, b: u16) -> bool {
        self.blocks.get(usize::from(b)).is_some_and(|b| b.done)
    }

    /// The file's bytes held: decoded blocks, and the share of the others' shards.
    pub fn done_bytes(&self) -> u64 {
        self.plan
            .blocks()
            .iter()
            .zip(&self.blocks)
            .map(|(shape, b)| {
                let bytes = self.plan.block_file_bytes(shape);
                if b.done {
                    bytes
                } else {
                    bytes * (b.shards.len() as u64).min(u64::from(shape.data)) / u64::from(shape.data)
                }
            })
            .sum()
    }

    /// Shards held for blocks not yet decoded.
    pub fn held_shards(&self) -> usize {
        self.blocks.iter().map(|b| b.shards.len()).sum()
    }

    /// Mark block `b` decoded (after a restart: its plaintext is kept).
    pub fn restore_decoded(&mut self, b: u16) {
        if let Some(x) = self.blocks.get_mut(usize::from(b)) {
            x.done = true;
            x.shards.clear();
        }
    }

    /// A shard kept before a restart (from our own storage: not checked again).
    pub fn restore_shard(&mut self, block: u16, index: u16, shard: Vec<u8>) {
        let Some(shape) = self.plan.block(block).copied() else { return };
        let Some(b) = self.blocks.get_mut(usize::from(block)) else { return };
        if b.done || index >= shape.data + PARITY || shard.len() != self.plan.shard() {
            return;
        }
        b.held.set(index);
        b.shards.insert(index, shard);
    }

    /// A CHUNK arrived at `now` (the reply it may complete is scheduled with `rng`).
    pub fn handle_chunk<R: CryptoRng + ?Sized>(
        &mut self,
        block: u16,
        index: u16,
        signature: &[u8; 64],
        shard: &[u8],
        now: UnixMicros,
        rng: &mut R,
    ) -> Result<ChunkOutcome, RefuseReason> {
        let shape = *self.plan.block(block).ok_or(RefuseReason::Range)?;
        if index >= shape.data + PARITY || shard.len() != self.plan.shard() {
            return Err(RefuseReason::Range);
        }
        let open = self.blocks.iter().filter(|b| !b.done && !b.shards.is_empty()).count();
        let b = &self.blocks[usize::from(block)];
        if b.held.get(index) || (b.done && b.held.get(index)) {
            return Ok(ChunkOutcome::Duplicate);
        }
        if !b.done && b.shards.is_empty() && open >= self.config.max_open {
            return Err(RefuseReason::TooManyOpen);
        }
        if !verify_chunk(&self.verify, &self.id, block, index, shard, signature) {
            return Err(RefuseReason::Signature);
        }
        let delay = exponential(rng, self.config.reply_delay);
        let b = &mut self.blocks[usize::from(block)];
        b.held.set(index);
        if b.done {
            return Ok(ChunkOutcome::Duplicate);
        }
        b.shards.insert(index, shard.to_vec());
        if b.shards.len() < usize::from(shape.data) {
            return Ok(ChunkOutcome::Stored);
        }
        let shards: Vec<(u16, &[u8])> = b.shards.iter().map(|(i, s)| (*i, s.as_slice())).collect();
        let plain = match code::decode_block(&self.plan, &self.key, &shape, &shards) {
            Ok(p) => Zeroizing::new(p),
            Err(_) => {
                // Signed shards that do not decode: the sender's fault. Forget this one.
                b.shards.remove(&index);
                return Err(RefuseReason::Decode);
            }
        };
        b.shards.clear();
        b.done = true;
        for (_, at) in &mut b.surbs {
            *at = (*at).min(now + delay);
        }
        Ok(ChunkOutcome::Decoded { block, plain })
    }

    /// A SURBS arrived at `now` in our mailbox `arrived_in` (the caller's word: the mailbox it
    /// read the item from, which the signature must name).
    #[allow(clippy::too_many_arguments)]
    pub fn handle_surbs<R: CryptoRng + ?Sized>(
        &mut self,
        arrived_in: &MailboxId,
        block: u16,
        round: u8,
        signature: &[u8; 64],
        surb: &[u8],
        now: UnixMicros,
        rng: &mut R,
    ) -> Result<(), RefuseReason> {
        if self.plan.block(block).is_none() {
            return Err(RefuseReason::Range);
        }
        if !verify_surbs(&self.verify, &self.id, arrived_in, block, round, surb, signature) {
            return Err(RefuseReason::Signature);
        }
        let delay = exponential(rng, self.config.reply_delay);
        let b = &mut self.blocks[usize::from(block)];
        if b.surbs.len() >= MAX_SURBS {
            b.surbs.pop_front();
        }
        let at = if b.done { now + delay } else { now + self.config.grace + delay };
        b.surbs.push_back((surb.to_vec(), at));
        Ok(())
    }

    /// The next answer due at `now`: the SURB it goes through and its entry.
    pub fn poll_reply(&mut self, now: UnixMicros) -> Option<(Vec<u8>, AckEntry)> {
        let (i, b) =
            self.blocks.iter_mut().enumerate().find(|(_, b)| b.surbs.iter().any(|(_, t)| *t <= now))?;
        // Bounded by the plan's block count.
        let block = i as u16;
        let shape = *self.plan.block(block)?;
        let due = b.surbs.iter().position(|(_, t)| *t <= now)?;
        let (surb, _) = b.surbs.remove(due)?;
        let mut held = b.held.clone();
        if b.done {
            for j in 0..shape.data {
                held.set(j);
            }
        }
        held.set(REPORT_BIT);
        let entry = AckEntry { message_id: block_id(&self.id, block), indices: held.iter().collect() };
        Some((surb, entry))
    }

    /// When [`Self::poll_reply`] next has an answer.
    pub fn poll_timeout(&self) -> Option<UnixMicros> {
        self.blocks.iter().flat_map(|b| b.surbs.iter().map(|(_, t)| *t)).min()
    }
}
