//! An incoming message of the conversation: buffered for a later epoch, dropped as stale, or
//! processed (a text, a leave request, a candidate commit).

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;

use super::error::rejected;
use super::state::{Buffered, Candidate};
use super::{CIPHERSUITE, Conversation, Event, MemberId, MlsError, Output, duration_ms};

impl Conversation {
    pub(super) fn receive_one(
        &mut self,
        bytes: &[u8],
        received_ms: u64,
        out: &mut Output,
    ) -> Result<(), MlsError> {
        if !self.group.is_active() {
            return Err(MlsError::NotMember);
        }
        let msg = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|_| MlsError::Malformed)?;
        let message: ProtocolMessage = match msg.extract() {
            MlsMessageBodyIn::PrivateMessage(m) => m.into(),
            MlsMessageBodyIn::PublicMessage(_) => return Err(MlsError::Unexpected("unencrypted message")),
            _ => return Err(MlsError::Unexpected("not a group message")),
        };
        if message.group_id() != self.group.group_id() {
            return Err(MlsError::WrongConversation);
        }
        let epoch = message.epoch().as_u64();
        let current = self.epoch();
        if epoch > current {
            let ttl = duration_ms(self.config.buffered_ttl);
            self.state.buffered.retain(|b| received_ms.saturating_sub(b.received_ms) < ttl);
            let held: usize = self.state.buffered.iter().map(|b| b.bytes.len()).sum();
            if self.state.buffered.len() >= self.config.max_buffered
                || held + bytes.len() > self.config.max_buffered_bytes
                || epoch > current.saturating_add(self.config.max_epochs_ahead)
            {
                return Err(MlsError::BufferFull);
            }
            self.state.buffered.push(Buffered { epoch, received_ms, bytes: bytes.to_vec() });
            return Ok(());
        }
        let handshake = message.content_type() != ContentType::Application;
        if epoch < current && handshake {
            if message.content_type() == ContentType::Commit {
                out.events.push(Event::StaleCommit { epoch });
            }
            return Ok(());
        }
        let processed = self.group.process_message(&self.provider, message).map_err(rejected)?;
        let sender = match processed.sender() {
            Sender::Member(leaf) => *leaf,
            _ => return Err(MlsError::Unexpected("sender outside the group")),
        };
        // Every leaf's credential was checked when it entered the group: its identity is its key.
        let sender_id = BasicCredential::try_from(processed.credential().clone())
            .map_err(|_| MlsError::IdentifyingCredential)
            .and_then(|c| MemberId::from_slice(c.identity()))?;
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(m) => {
                out.events.push(Event::Message { sender: sender_id, bytes: m.into_bytes() });
            }
            ProcessedMessageContent::ProposalMessage(p) => match p.proposal() {
                Proposal::Remove(r) if r.removed() == sender => {
                    if self.state.leave_requests.insert(sender_id, received_ms).is_none() {
                        out.events.push(Event::LeaveRequested { member: sender_id });
                    }
                }
                _ => return Err(MlsError::Unsupported("proposal other than leaving")),
            },
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                self.check_commit(&staged)?;
                let hash = self.commit_hash(epoch, bytes)?;
                if self.state.candidates.iter().any(|c| c.hash == hash) {
                    return Ok(());
                }
                let removed =
                    staged.remove_proposals().map(|r| r.remove_proposal().removed().u32()).collect();
                self.state.candidates.push(Candidate {
                    hash,
                    committer: sender.u32(),
                    removed,
                    staged: Some(*staged),
                });
                let start = self.state.window_start_ms.get_or_insert(received_ms);
                *start = (*start).min(received_ms);
            }
            ProcessedMessageContent::OwnPrivateMessage => {}
            _ => return Err(MlsError::Unsupported("external proposal")),
        }
        Ok(())
    }

    /// Refuses commits that use features this client does not, or admit identifying credentials.
    fn check_commit(&self, staged: &StagedCommit) -> Result<(), MlsError> {
        for proposal in staged.queued_proposals() {
            match proposal.proposal() {
                Proposal::Add(add) => {
                    if add.key_package().ciphersuite() != CIPHERSUITE {
                        return Err(MlsError::Unsupported("member of another ciphersuite"));
                    }
                    MemberId::of_leaf(add.key_package().leaf_node())?;
                }
                Proposal::Remove(_) | Proposal::Update(_) => {}
                _ => return Err(MlsError::Unsupported("commit with proposals other than add or remove")),
            }
        }
        if let Some(leaf) = staged.update_path_leaf_node() {
            MemberId::of_leaf(leaf)?;
        }
        Ok(())
    }
}
