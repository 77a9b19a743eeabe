//! Convergence without a server (see the module documentation): this member's commit for an
//! epoch, built from what is queued, and the decision among an epoch's candidates once its
//! window is over.

use openmls::prelude::*;

use super::error::internal;
use super::provider::{parse_key_package, wire};
use super::state::{Candidate, Intent, OwnCommit};
use super::{
    Conversation, Event, MemberId, MlsError, Outgoing, OutgoingKind, Output, duration_ms, key_package_member,
    rank,
};

/// Domain separation of the commit hash used to rank concurrent commits.
const COMMIT_HASH_LABEL: &[u8] = b"qanat-commit";

/// Whether a commit failed because of what it was asked to add (a KeyPackage the group cannot
/// take), not because of a bug.
pub(super) fn refused_by_group(e: &CreateCommitError) -> bool {
    matches!(e, CreateCommitError::ProposalValidationError(p) if !matches!(p, ProposalValidationError::LibraryError(_)))
}

impl Conversation {
    /// Builds, and throws away, a commit adding `key_packages` and removing `removals`: whether
    /// this member could commit them now. Building changes nothing (openmls keeps a commit only
    /// once it is staged).
    pub(super) fn try_commit(
        &mut self,
        key_packages: Vec<KeyPackage>,
        removals: &[LeafNodeIndex],
    ) -> Result<(), CreateCommitError> {
        self.group
            .commit_builder()
            .consume_proposal_store(false)
            .propose_adds(key_packages)
            .propose_removals(removals.iter().copied())
            .force_self_update(true)
            .load_psks(self.provider.storage())?
            .build(self.provider.rand(), self.provider.crypto(), &self.signer, |_| true)
            .map(|_| ())
    }

    /// Of the newcomers `adds`, in order, those one commit (with `removals`) can take together,
    /// and those it cannot.
    fn takeable(
        &mut self,
        adds: Vec<(MemberId, KeyPackage)>,
        removals: &[LeafNodeIndex],
    ) -> (Vec<(MemberId, KeyPackage)>, Vec<MemberId>) {
        let mut kept: Vec<(MemberId, KeyPackage)> = Vec::new();
        let mut refused = Vec::new();
        for (id, kp) in adds {
            let mut trial: Vec<KeyPackage> = kept.iter().map(|(_, k)| k.clone()).collect();
            trial.push(kp.clone());
            if self.try_commit(trial, removals).is_ok() {
                kept.push((id, kp));
            } else {
                refused.push(id);
            }
        }
        (kept, refused)
    }

    pub(super) fn commit_hash(&self, epoch: u64, bytes: &[u8]) -> Result<[u8; 32], MlsError> {
        let gid = self.group.group_id().as_slice();
        let mut input = Vec::with_capacity(COMMIT_HASH_LABEL.len() + 4 + gid.len() + 8 + bytes.len());
        input.extend_from_slice(COMMIT_HASH_LABEL);
        input.extend_from_slice(&u32::try_from(gid.len()).map_err(internal)?.to_be_bytes());
        input.extend_from_slice(gid);
        input.extend_from_slice(&epoch.to_be_bytes());
        input.extend_from_slice(bytes);
        let digest = self.provider.crypto().hash(HashType::Sha2_256, &input).map_err(internal)?;
        digest.try_into().map_err(internal)
    }

    /// Whether this member should commit the pending leave requests now.
    fn should_commit_leaves(&self, now: u64) -> bool {
        let fallback = duration_ms(self.config.leave_fallback);
        if self.state.leave_requests.values().any(|s| now >= s.saturating_add(fallback)) {
            return true;
        }
        let designated = self
            .group
            .members()
            .find(|m| MemberId::of_member(m).is_ok_and(|id| !self.state.leave_requests.contains_key(&id)));
        !self.state.leave_requests.is_empty()
            && designated.is_some_and(|m| m.index == self.group.own_leaf_index())
    }

    /// Commits the queued operations, if this member may commit now.
    pub(super) fn maybe_commit(&mut self, now: u64, out: &mut Output) -> Result<(), MlsError> {
        if !self.group.is_active()
            || self.state.leaving
            || self.state.window_start_ms.is_some()
            || self.group.pending_commit().is_some()
        {
            return Ok(());
        }
        // Forget what the current state already satisfies.
        let members = self.members();
        let queued = std::mem::take(&mut self.state.queued);
        let mut intents = Vec::new();
        let mut adds: Vec<(MemberId, KeyPackage)> = Vec::new();
        let mut removals = Vec::new();
        for intent in queued {
            match &intent {
                Intent::Add(bytes) => {
                    let Ok(kp) = parse_key_package(self.provider.crypto(), bytes) else { continue };
                    let Ok(id) = MemberId::of_leaf(kp.leaf_node()) else { continue };
                    if members.contains(&id) || adds.iter().any(|(j, _)| *j == id) {
                        continue;
                    }
                    adds.push((id, kp));
                }
                Intent::Remove(id) => {
                    let Some(leaf) = self.leaf_of(id) else { continue };
                    if removals.contains(&leaf) {
                        continue;
                    }
                    removals.push(leaf);
                }
                Intent::Update => {
                    if intents.iter().any(|i| matches!(i, Intent::Update)) {
                        continue;
                    }
                }
            }
            intents.push(intent);
        }
        let leaves =
            !self.state.leave_requests.is_empty() && (!intents.is_empty() || self.should_commit_leaves(now));
        if leaves {
            for id in self.state.leave_requests.keys() {
                if let Some(leaf) = self.leaf_of(id)
                    && !removals.contains(&leaf)
                {
                    removals.push(leaf);
                }
            }
        }
        if intents.is_empty() && removals.is_empty() {
            return Ok(());
        }
        let mut refused_checked = false;
        let bundle = loop {
            let key_packages: Vec<KeyPackage> = adds.iter().map(|(_, kp)| kp.clone()).collect();
            let built = self
                .group
                .commit_builder()
                .consume_proposal_store(false)
                .propose_adds(key_packages)
                .propose_removals(removals.iter().copied())
                .force_self_update(true)
                .load_psks(self.provider.storage())
                .and_then(|b| b.build(self.provider.rand(), self.provider.crypto(), &self.signer, |_| true));
            match built {
                Ok(b) => break b.stage_commit(&self.provider).map_err(internal)?,
                // A newcomer's KeyPackage the commit cannot take (each was checked alone when it
                // was added, but two may clash, the group may have changed since, or an earlier
                // version queued it unchecked): it is left out and reported, the rest goes on.
                Err(e) if !refused_checked && !adds.is_empty() && refused_by_group(&e) => {}
                Err(e) => return Err(internal(e)),
            }
            refused_checked = true;
            let (kept, refused) = self.takeable(std::mem::take(&mut adds), &removals);
            adds = kept;
            intents.retain(|i| match i {
                Intent::Add(bytes) => key_package_member(bytes).is_ok_and(|id| !refused.contains(&id)),
                _ => true,
            });
            out.events.extend(refused.into_iter().map(|member| Event::AddRefused { member }));
            if intents.is_empty() && removals.is_empty() {
                return Ok(());
            }
        };
        let joiners: Vec<MemberId> = adds.iter().map(|(id, _)| *id).collect();
        let (commit, welcome, _) = bundle.into_messages();
        let bytes = wire(&commit)?;
        let welcome = welcome.map(|w| wire(&w)).transpose()?;
        let hash = self.commit_hash(self.epoch(), &bytes)?;
        self.state.candidates.push(Candidate {
            hash,
            committer: self.group.own_leaf_index().u32(),
            removed: removals.iter().map(|l| l.u32()).collect(),
            staged: None,
        });
        self.state.own = Some(OwnCommit { welcome, joiners, intents });
        let others = self.others();
        self.state.window_start_ms = Some(now);
        if !others.is_empty() {
            out.outgoing.push(Outgoing { kind: OutgoingKind::Commit, to: others, bytes });
        }
        Ok(())
    }

    /// Merges the winning commit if the window is over. Returns whether the epoch advanced.
    pub(super) fn decide(&mut self, now: u64, out: &mut Output) -> Result<bool, MlsError> {
        let Some(start) = self.state.window_start_ms else { return Ok(false) };
        // Alone in the group, nobody can race this member: decide at once.
        let alone = self.others().is_empty();
        if !alone && now < start.saturating_add(duration_ms(self.config.decision_window)) {
            return Ok(false);
        }
        let candidates = std::mem::take(&mut self.state.candidates);
        self.state.window_start_ms = None;
        let own = self.state.own.take();
        let facts: Vec<rank::CandidateFacts<'_>> = candidates
            .iter()
            .map(|c| rank::CandidateFacts { committer: c.committer, removed: &c.removed, hash: &c.hash })
            .collect();
        let Some(win) = rank::winner(&facts).and_then(|i| candidates.into_iter().nth(i)) else {
            return Ok(false);
        };
        let committer =
            self.member_at(win.committer).ok_or_else(|| internal("committer not in the group"))?;
        let removed: Vec<MemberId> = win.removed.iter().filter_map(|l| self.member_at(*l)).collect();
        let (added, self_removed) = match &win.staged {
            Some(staged) => (added_by(staged), staged.self_removed()),
            None => match self.group.pending_commit() {
                Some(staged) => (added_by(staged), staged.self_removed()),
                None => return Err(internal("own commit won but is not pending")),
            },
        };
        match win.staged {
            None => {
                self.group.merge_pending_commit(&self.provider).map_err(internal)?;
                if let Some(OwnCommit { welcome: Some(welcome), joiners, .. }) = own {
                    out.outgoing.push(Outgoing { kind: OutgoingKind::Welcome, to: joiners, bytes: welcome });
                }
            }
            Some(staged) => {
                self.group.merge_staged_commit(&self.provider, staged).map_err(internal)?;
                if let Some(own) = own {
                    // Lost: what it carried goes back to the front of the queue, re-checked at the next commit.
                    let later = std::mem::take(&mut self.state.queued);
                    self.state.queued = own.intents.into_iter().chain(later).collect();
                }
            }
        }
        out.events.push(Event::EpochChanged { epoch: self.epoch(), committer, added, removed });
        if self_removed || !self.group.is_active() {
            self.deactivate(out);
            return Ok(true);
        }
        let members = self.members();
        self.state.leave_requests.retain(|id, _| members.contains(id));
        if self.state.leaving {
            self.send_leave(out)?;
        }
        // Messages that waited for this epoch.
        let buffered = std::mem::take(&mut self.state.buffered);
        for b in buffered {
            if b.epoch > self.epoch() {
                self.state.buffered.push(b);
            } else {
                // A message that fails now will fail for good: drop it.
                let _ = self.receive_one(&b.bytes, b.received_ms, out);
            }
        }
        Ok(true)
    }
}

fn added_by(staged: &StagedCommit) -> Vec<MemberId> {
    staged
        .add_proposals()
        .filter_map(|a| MemberId::of_leaf(a.add_proposal().key_package().leaf_node()).ok())
        .collect()
}
