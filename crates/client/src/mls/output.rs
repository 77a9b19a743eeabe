//! What a call produces: events for the user and messages for the network.

use super::MemberId;

/// What a message is, for the sending layer (which may give handshakes priority).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutgoingKind {
    /// A user's message.
    Application,
    /// A commit: changes the group's membership or keys.
    Commit,
    /// A proposal (a request to leave).
    Proposal,
    /// The invitation into the group for newly added members.
    Welcome,
}

/// One message to carry to some members.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// What the message is.
    pub kind: OutgoingKind,
    /// Who must receive it.
    pub to: Vec<MemberId>,
    /// The MLS message, ready for the wire.
    pub bytes: Vec<u8>,
}

/// Something the user should know.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A member's message.
    Message {
        /// The member who sent it.
        sender: MemberId,
        /// The plaintext.
        bytes: Vec<u8>,
    },
    /// A commit was chosen and merged: the conversation is at a new epoch.
    EpochChanged {
        /// The new epoch.
        epoch: u64,
        /// The member whose commit it was.
        committer: MemberId,
        /// Members added.
        added: Vec<MemberId>,
        /// Members removed (or who left).
        removed: Vec<MemberId>,
    },
    /// A member asked to leave; some member will commit the removal.
    LeaveRequested {
        /// Who.
        member: MemberId,
    },
    /// This member is out of the conversation (it was removed, or its leave was committed). The
    /// conversation accepts no more messages; its saved state may be deleted.
    Removed,
    /// A commit for an epoch already decided arrived. See the module documentation.
    StaleCommit {
        /// The epoch the commit was for.
        epoch: u64,
    },
    /// An add waiting for a commit was given up: no commit can take its KeyPackage (its
    /// capabilities or keys do not fit the conversation, or clash with another newcomer's), so
    /// whoever made it runs a broken or hostile client. See [`Conversation::add`](super::Conversation::add).
    AddRefused {
        /// Who would have joined.
        member: MemberId,
    },
}

/// What a call produced.
#[derive(Debug, Default)]
#[must_use]
pub struct Output {
    /// For the user.
    pub events: Vec<Event>,
    /// For the network.
    pub outgoing: Vec<Outgoing>,
}
