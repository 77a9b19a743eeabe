//! What the mix and gateway runtimes do alike around their cores. Both cores keep one packet
//! key per epoch with its replay filter (`qanat_mixnet`'s key ring), so the glue between a core,
//! the [`ReplayLog`] and the directory's [`EpochUpdate`]s is written once here, over
//! [`NodeCore`]:
//!
//! - at start, [`attach_log`] turns the log on and rebuilds the filter of every key the core
//!   already holds;
//! - [`apply_update`] installs an epoch's key (a key new to the core has its filter rebuilt
//!   from the log), its topology and its peers (links to peers that changed are closed);
//! - after each wake-up, [`log_tags`] hands the tags the core accepted to the log, and
//!   [`durable`] waits for the log to report a batch durable; after a timeout, [`retain_logs`]
//!   deletes the logs of keys the core erased.

use std::sync::Arc;

use qanat_mixnet::{EpochWindow, Gateway, Mix, ReplayBatch, Topology};
use qanat_packet::{ReplayTag, SecretKey};

use super::links::Links;
use super::peers::{EpochUpdate, SharedPeers};
use crate::replay_log::{ReplayLog, ReplayLogMetrics};

/// A core with packet keys, replay filters and a replay log: [`Mix`] and [`Gateway`] (see their
/// methods of the same names).
pub(super) trait NodeCore {
    fn add_epoch_key(&mut self, epoch: u64, key: SecretKey, window: EpochWindow);
    fn key_epochs(&self) -> Vec<u64>;
    fn add_topology(&mut self, topology: Topology);
    fn enable_replay_log(&mut self);
    fn restore_replay_tags(&mut self, epoch: u64, tags: &[ReplayTag]) -> usize;
    fn poll_replay_log(&mut self) -> Option<ReplayBatch>;
}

/// Implements [`NodeCore`] for each core by calling its inherent methods.
macro_rules! node_core {
    ($($core:ty),*) => {$(
        impl NodeCore for $core {
            fn add_epoch_key(&mut self, epoch: u64, key: SecretKey, window: EpochWindow) {
                <$core>::add_epoch_key(self, epoch, key, window)
            }
            fn key_epochs(&self) -> Vec<u64> {
                <$core>::key_epochs(self)
            }
            fn add_topology(&mut self, topology: Topology) {
                <$core>::add_topology(self, topology)
            }
            fn enable_replay_log(&mut self) {
                <$core>::enable_replay_log(self)
            }
            fn restore_replay_tags(&mut self, epoch: u64, tags: &[ReplayTag]) -> usize {
                <$core>::restore_replay_tags(self, epoch, tags)
            }
            fn poll_replay_log(&mut self) -> Option<ReplayBatch> {
                <$core>::poll_replay_log(self)
            }
        }
    )*};
}

node_core!(Mix, Gateway);

/// At start, with a log: turns it on in `core` and rebuilds the filter of every key `core`
/// holds from it. Returns the log's counters (fresh ones, all zero, without a log).
pub(super) fn attach_log(core: &mut impl NodeCore, log: &mut Option<ReplayLog>) -> Arc<ReplayLogMetrics> {
    match log {
        Some(log) => {
            core.enable_replay_log();
            for e in core.key_epochs() {
                core.restore_replay_tags(e, &log.installed(e));
            }
            log.metrics()
        }
        None => Arc::default(),
    }
}

/// Hands `core` the key and topology of `update`, a key new to `core` with its filter rebuilt
/// from the log, and `peers` the epoch's peers; the links to peers whose address or key changed
/// are closed. (What else an update says is each runtime's own.)
pub(super) fn apply_update(
    core: &mut impl NodeCore,
    log: &mut Option<ReplayLog>,
    peers: &SharedPeers,
    links: &mut Links,
    update: EpochUpdate,
) {
    let EpochUpdate { epoch, key, window, topology, peers: epoch_peers, .. } = update;
    if let Some(key) = key {
        let new = !core.key_epochs().contains(&epoch);
        core.add_epoch_key(epoch, key, window);
        if let Some(log) = log.as_mut().filter(|_| new) {
            core.restore_replay_tags(epoch, &log.installed(epoch));
        }
    }
    core.add_topology(topology);
    let changed = match peers.write() {
        Ok(mut t) => t.set_epoch(epoch, epoch_peers),
        Err(_) => Vec::new(),
    };
    for id in changed {
        links.close(&id);
    }
}

/// Hands the tags `core` accepted since the last call to the log; the packets they belong to
/// wait for the log's durable report.
pub(super) fn log_tags(core: &mut impl NodeCore, log: &mut Option<ReplayLog>) {
    if let Some(log) = log {
        while let Some(batch) = core.poll_replay_log() {
            log.append(batch);
        }
    }
}

/// Deletes the logs of keys `core` no longer holds.
pub(super) fn retain_logs(core: &impl NodeCore, log: &mut Option<ReplayLog>) {
    if let Some(log) = log {
        log.retain(&core.key_epochs());
    }
}

/// The next batch the replay log reports durable; never, without a log.
pub(super) async fn durable(log: &mut Option<ReplayLog>) -> Option<u64> {
    match log {
        Some(log) => log.durable().await,
        None => std::future::pending().await,
    }
}
