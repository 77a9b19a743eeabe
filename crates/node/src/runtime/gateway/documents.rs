//! The directory documents a gateway serves its clients in their pulls ([`DocumentCache`]): filled
//! by the directory loop, read by the client sessions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

#[cfg(doc)]
use qanat_mixnet::pull::PullServer;

/// How many epochs' documents a [`DocumentCache`] keeps.
pub const CACHED_DOCUMENTS: usize = 4;

/// The directory documents a gateway serves its clients: the authorities' signed bytes of the
/// last [`CACHED_DOCUMENTS`] epochs, each verified by the gateway's directory loop before it is
/// inserted (clients verify them again against their own network file), and the epoch in
/// progress (a client lacking its document gets it before its items: see
/// [`PullServer::item_room`]). Shared between the directory loop and the client sessions.
#[derive(Debug, Clone, Default)]
pub struct DocumentCache {
    docs: Arc<RwLock<BTreeMap<u64, Arc<[u8]>>>>,
    epoch: Arc<AtomicU64>,
}

impl DocumentCache {
    /// Records the epoch in progress (the directory loop's clock).
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }

    /// The epoch in progress (0 before the directory loop said).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// Keeps the document of `epoch` (dropping the oldest beyond [`CACHED_DOCUMENTS`]).
    pub fn insert(&self, epoch: u64, bytes: Vec<u8>) {
        if let Ok(mut m) = self.docs.write() {
            m.insert(epoch, bytes.into());
            while m.len() > CACHED_DOCUMENTS {
                m.pop_first();
            }
        }
    }

    /// The document of `epoch`, if held.
    pub fn get(&self, epoch: u64) -> Option<Arc<[u8]>> {
        self.docs.read().ok().and_then(|m| m.get(&epoch).cloned())
    }

    /// The epochs held, oldest first.
    pub fn epochs(&self) -> Vec<u64> {
        self.docs.read().map(|m| m.keys().copied().collect()).unwrap_or_default()
    }
}
