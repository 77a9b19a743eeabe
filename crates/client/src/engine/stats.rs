//! Counters of what the engine dropped, refused and sent ([`EngineStats`]), for `qanat status`
//! and the tests that check each attack's counter.

use super::Engine;

/// Counters of input the engine dropped (from the network: never an error).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Items that did not decode.
    pub malformed: u64,
    /// MLS messages or Welcomes refused.
    pub rejected: u64,
    /// Duplicate fragments (acknowledged again).
    pub duplicates: u64,
    /// Cover packets received (loops).
    pub cover: u64,
    /// Acknowledgements received.
    pub acks: u64,
    /// Packets sent: real, acknowledgements, cover.
    pub sent_real: u64,
    /// Acknowledgement packets sent.
    pub sent_acks: u64,
    /// Fragments whose acknowledgement was dropped unsent (the queue was full, or it waited too
    /// long): their senders send them again.
    pub acks_dropped: u64,
    /// Commits to members who left, dropped unacknowledged [`FAREWELL`](super::FAREWELL) after
    /// their departure (the member's client never learnt that it is out).
    pub farewells_dropped: u64,
    /// Mailbox registrations the gateway refused for good.
    pub registrations_refused: u64,
    /// Fragments or messages refused for now, unacknowledged, because what waits is at its
    /// bound (partial messages, messages for a later epoch): their senders send them again.
    pub deferred: u64,
    /// Cover packets sent (drops and loops).
    pub sent_cover: u64,
    /// Fragments that could not leave in their slot because no packet could be built for them
    /// (their recipient's gateway missing from the directory); each is tried again later.
    pub unroutable: u64,
    /// Slots that carried nothing: not even a cover packet could be built (an empty layer).
    pub unsendable: u64,
    /// Messages partly received and held now, a gauge (at most
    /// [`sending::MAX_PARTIAL_MESSAGES`]; each expires [`sending::REMEMBER_DELIVERED`] after its
    /// first fragment).
    ///
    /// [`sending::MAX_PARTIAL_MESSAGES`]: qanat_mixnet::sending::MAX_PARTIAL_MESSAGES
    /// [`sending::REMEMBER_DELIVERED`]: qanat_mixnet::sending::REMEMBER_DELIVERED
    pub partial_messages: u64,
    /// The bytes of their fragments, a gauge (at most [`sending::MAX_PARTIAL_BYTES`]).
    ///
    /// [`sending::MAX_PARTIAL_BYTES`]: qanat_mixnet::sending::MAX_PARTIAL_BYTES
    pub partial_bytes: u64,
    /// Payload slots that left a queued message waiting (and carried an acknowledgement or a
    /// drop) because the directory document in use is of an epoch whose keys the network no
    /// longer accepts: the next epoch's document had not come yet.
    pub held_for_directory: u64,
    /// Operations on one item or peer that failed part-way with an error that is not fatal
    /// ([`EngineError::is_fatal`]): the item was refused (a message is taken as MLS's refusals
    /// are, what it changed is saved), and the client went on. None is known to happen: this
    /// is the rule's backstop.
    ///
    /// [`EngineError::is_fatal`]: super::EngineError::is_fatal
    pub failed: u64,
    /// Messages of ours dropped unsent because the network cannot carry them (more than
    /// [`sending::MAX_FRAGMENTS`] fragments: the Welcome of a group of some 1,600 members,
    /// which carries its whole ratchet tree, say), or because a field is over its format's limit
    /// (a GROUP_WELCOME listing more than [`MAX_ROSTER`] members): their recipients never get
    /// them.
    ///
    /// [`sending::MAX_FRAGMENTS`]: qanat_mixnet::sending::MAX_FRAGMENTS
    /// [`MAX_ROSTER`]: super::wire::MAX_ROSTER
    pub too_long: u64,
    /// Replaced mailboxes given up before their grace ended, because a thread already read
    /// [`MAX_REPLACED`](super::MAX_REPLACED) of them. What was still written there
    /// comes again to the newest mailbox once its sender reads our ROUTE.
    pub replaced_given_up: u64,
    /// Packets of files sent: chunks and SURBS (probes included).
    pub sent_file: u64,
    /// Answers of blocks of files sent (through their senders' SURBs).
    pub sent_file_answers: u64,
    /// Shards kept for files being received.
    pub shards_stored: u64,
    /// Shards that arrived again, or for a block already decoded.
    pub shards_duplicate: u64,
    /// Shards and SURBS refused: of no file we accepted, a bad signature, out of range, too
    /// many blocks open (neither kept nor answered).
    pub shards_refused: u64,
    /// Files offered to us that were refused: over the limit, of another network's packets,
    /// over the bounds of offers per conversation.
    pub offers_refused: u64,
    /// Files that arrived whole and checked.
    pub files_received: u64,
    /// Files whose bytes did not check against their digest (given up).
    pub files_corrupt: u64,
}

impl Engine {
    /// Counters of dropped input and sent packets, and what is held of partly received messages.
    pub fn stats(&self) -> EngineStats {
        let (partial_messages, partial_bytes) = self.inbox.partial();
        EngineStats {
            acks_dropped: self.acks.stats().dropped,
            unroutable: self.outbox.unroutable(),
            partial_messages: partial_messages as u64,
            partial_bytes: partial_bytes as u64,
            ..self.stats
        }
    }
}
