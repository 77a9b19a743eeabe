//! Finding and making threads (contacts and groups) by their local names.

use std::collections::BTreeMap;

use rand_core::CryptoRng;

use qanat_mixnet::sending::seal::SealKey;

use super::rows::{Kind, Thread, ThreadState};
use super::{Engine, EngineError};

impl Engine {
    pub(super) fn name_used(&self, name: &str) -> bool {
        self.threads.values().any(|t| t.name == name)
    }

    pub(super) fn thread_by_name(&self, name: &str) -> Result<[u8; 16], EngineError> {
        self.threads
            .values()
            .find(|t| t.name == name)
            .map(|t| t.id)
            .ok_or_else(|| EngineError::UnknownName(name.into()))
    }

    pub(super) fn new_thread<R: CryptoRng>(
        &mut self,
        name: String,
        kind: Kind,
        state: ThreadState,
        rng: &mut R,
    ) -> Thread {
        let mut id = [0u8; 16];
        let mut mailbox = [0u8; 32];
        let mut credential = [0u8; 32];
        rng.fill_bytes(&mut id);
        rng.fill_bytes(&mut mailbox);
        rng.fill_bytes(&mut credential);
        Thread {
            id,
            name,
            kind,
            state,
            mailbox,
            credential,
            seal: SealKey::random(rng).0,
            replaced: Vec::new(),
            peer_route: None,
            roster: BTreeMap::new(),
            labels: BTreeMap::new(),
            join_epoch: 0,
            next_seq: 0,
            last_epoch: None,
            recv: BTreeMap::new(),
            awaiting: BTreeMap::new(),
            moved_from: BTreeMap::new(),
            early: Vec::new(),
            join_token: None,
            give_up_at_ms: None,
            pending_adds: BTreeMap::new(),
            welcome_to: BTreeMap::new(),
            history_next: 0,
        }
    }

    pub(super) fn require(&self, t: [u8; 16], kind: Kind) -> Result<(), EngineError> {
        let th = self.threads.get(&t).ok_or(EngineError::Corrupt("thread"))?;
        if th.kind != kind {
            return Err(EngineError::WrongKind(
                th.name.clone(),
                if kind == Kind::Group { "a contact, not a group" } else { "a group, not a contact" },
            ));
        }
        if th.state != ThreadState::Active {
            return Err(EngineError::NotReady(th.name.clone(), "its conversation is not set up (yet)"));
        }
        Ok(())
    }
}
