//! What a conversation keeps beyond openmls' own group state (candidate commits, queued
//! operations, leave requests, messages for later epochs), and its saved form.

use std::collections::BTreeMap;

use openmls::prelude::StagedCommit;
use serde::{Deserialize, Serialize};

use super::MemberId;

/// (De)serializes a map whose keys are not strings as a list of pairs.
mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::MemberId;

    pub(super) fn serialize<S: Serializer>(m: &BTreeMap<MemberId, u64>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<MemberId, u64>, D::Error> {
        Ok(Vec::<(MemberId, u64)>::deserialize(d)?.into_iter().collect())
    }
}

/// An operation the user asked for that is not yet in a winning commit.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) enum Intent {
    /// Add the owner of this key package.
    Add(Vec<u8>),
    /// Remove this member.
    Remove(MemberId),
    /// Refresh own keys.
    Update,
}

/// A commit for the current epoch, staged, waiting for the decision.
#[derive(Serialize, Deserialize)]
pub(super) struct Candidate {
    pub(super) hash: [u8; 32],
    pub(super) committer: u32,
    pub(super) removed: Vec<u32>,
    /// `None` for this member's own commit, which openmls holds as the pending commit.
    pub(super) staged: Option<StagedCommit>,
}

/// This member's own commit in the race, and what it carries.
#[derive(Serialize, Deserialize)]
pub(super) struct OwnCommit {
    pub(super) welcome: Option<Vec<u8>>,
    pub(super) joiners: Vec<MemberId>,
    pub(super) intents: Vec<Intent>,
}

/// A message for a later epoch, kept until this member gets there.
#[derive(Serialize, Deserialize)]
pub(super) struct Buffered {
    pub(super) epoch: u64,
    pub(super) received_ms: u64,
    pub(super) bytes: Vec<u8>,
}

/// Everything beyond openmls' own group state.
#[derive(Default, Serialize, Deserialize)]
pub(super) struct State {
    /// Candidates for the current epoch.
    pub(super) candidates: Vec<Candidate>,
    /// When this member first saw a commit for the current epoch (milliseconds since 1970).
    pub(super) window_start_ms: Option<u64>,
    pub(super) own: Option<OwnCommit>,
    pub(super) queued: Vec<Intent>,
    /// Members who asked to leave, and when this member first heard of it.
    /// Saved as a list of pairs: JSON map keys must be strings.
    #[serde(with = "pairs")]
    pub(super) leave_requests: BTreeMap<MemberId, u64>,
    pub(super) leaving: bool,
    pub(super) buffered: Vec<Buffered>,
}

/// The saved metadata, written by reference (a staged commit cannot be cloned) ...
#[derive(Serialize)]
pub(super) struct MetaOut<'a> {
    pub(super) group_id: &'a [u8],
    pub(super) signer: &'a [u8],
    pub(super) state: &'a State,
}

/// ... and read back owned.
#[derive(Deserialize)]
pub(super) struct MetaIn {
    pub(super) group_id: Vec<u8>,
    pub(super) signer: Vec<u8>,
    pub(super) state: State,
}
