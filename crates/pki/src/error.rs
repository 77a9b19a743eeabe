//! Typed errors, one per operation.
//!
//! "The peer sent garbage" ([`DecodeError`], [`VerifyError`], [`DescriptorRejected`],
//! [`PeerMessageError`]) is kept apart from "the caller asked for something impossible"
//! ([`BuildError`], [`ConfigError`]) and from "this crate has a bug" (the `Internal` variants,
//! which no input should ever produce). None carries key material.

use thiserror::Error;

use crate::time::Epoch;

/// Why bytes did not decode as a directory message. Every variant means: drop the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("message is truncated")]
    Truncated,
    /// Bytes are left after the message.
    #[error("message has trailing bytes")]
    TrailingBytes,
    /// A length or count exceeds its limit.
    #[error("{what} exceeds its size limit")]
    TooLarge {
        /// The field.
        what: &'static str,
    },
    /// The version byte is not one this crate speaks.
    #[error("{what} has unsupported version {got}")]
    Version {
        /// The message.
        what: &'static str,
        /// The version found.
        got: u8,
    },
    /// A field holds a value outside its domain (an unknown role or scheme, a bad key or
    /// address, parameters out of range, an inconsistent field).
    #[error("{what} is invalid")]
    Invalid {
        /// The field.
        what: &'static str,
    },
    /// A list is not in its canonical (strictly increasing) order, or holds a duplicate.
    #[error("{what} is not in canonical order or has a duplicate")]
    NotCanonical {
        /// The list.
        what: &'static str,
    },
    /// A self-certifying message's signature does not verify under the key it names.
    #[error("{what} signature does not verify")]
    BadSignature {
        /// The message.
        what: &'static str,
    },
}

/// Why a document was not accepted by [`crate::Document::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The bytes are not a well-formed document.
    #[error("malformed document: {0}")]
    Malformed(#[from] DecodeError),
    /// The document is for another epoch than the one expected.
    #[error("document is for epoch {got:?}, expected {expected:?}")]
    WrongEpoch {
        /// The epoch the caller asked for.
        expected: Epoch,
        /// The document's epoch.
        got: Epoch,
    },
    /// A signature by one of the configured authorities does not verify: the document was
    /// tampered with.
    #[error("a configured authority's signature does not verify")]
    BadSignature,
    /// Fewer than a strict majority of the configured authorities signed.
    #[error("{valid} valid authority signatures, {needed} needed")]
    NotEnoughSignatures {
        /// Distinct configured authorities whose signature verifies.
        valid: usize,
        /// A strict majority of the configured set.
        needed: usize,
    },
}

/// Why an authority refused a node's descriptor upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DescriptorRejected {
    /// The bytes are not a well-formed, correctly self-signed descriptor.
    #[error("malformed descriptor: {0}")]
    Malformed(#[from] DecodeError),
    /// The node's identity key is not on this authority's allowlist (closed network).
    #[error("node is not allowed in this network")]
    NotAllowed,
    /// The packet keys are not of the network's scheme.
    #[error("packet keys are not of the network's scheme")]
    WrongScheme,
    /// The descriptor is for an epoch whose vote has passed.
    #[error("descriptor for epoch {0:?} arrived too late")]
    TooLate(Epoch),
    /// The descriptor is for an epoch too far ahead.
    #[error("descriptor for epoch {0:?} arrived too early")]
    TooEarly(Epoch),
    /// The descriptor changes a packet key that the current document already published for a
    /// coming epoch (clients would build packets the node cannot read).
    #[error("descriptor changes an already-published packet key")]
    KeyChanged,
}

/// Why an authority ignored a message from a peer authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PeerMessageError {
    /// The bytes are not a well-formed message.
    #[error("malformed peer message: {0}")]
    Malformed(#[from] DecodeError),
    /// The message is signed by a key outside the configured authority set.
    #[error("message is not from a configured authority")]
    NotAnAuthority,
    /// The message is for an epoch not being voted on now.
    #[error("message for epoch {0:?} is out of schedule")]
    WrongEpoch(Epoch),
    /// The phase this message belongs to is over.
    #[error("message arrived after its phase ended")]
    TooLate,
    /// The peer sent two different votes or reveals for one epoch (equivocation); the first is kept.
    #[error("authority sent two different messages of one kind for one epoch")]
    Equivocation,
    /// A reveal does not open the commit in its author's vote.
    #[error("reveal does not match the commit")]
    RevealMismatch,
    /// A signature does not verify over this authority's consensus (the peer computed a
    /// different document).
    #[error("signature does not verify over our consensus")]
    SignatureMismatch,
    /// A consensus document did not verify.
    #[error("consensus document rejected: {0}")]
    Document(VerifyError),
    /// A peer's majority-signed consensus differs from ours: some authority signed two
    /// documents. Operators must intervene.
    #[error("conflicting majority-signed documents for one epoch")]
    ConflictingConsensus,
}

/// Why no document came out of a voting round (reported in [`crate::Action::ConsensusFailed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConsensusFailure {
    /// Fewer than a strict majority of authorities both voted and revealed correctly.
    #[error("{got} usable votes, {needed} needed")]
    NotEnoughVotes {
        /// Votes with a matching reveal.
        got: usize,
        /// A strict majority of the configured set.
        needed: usize,
    },
    /// No set of network parameters was voted by a strict majority.
    #[error("no parameters have a majority")]
    NoParameterMajority,
    /// Our document did not collect a majority of signatures, and no peer sent one that did.
    #[error("{got} signatures on our document, {needed} needed")]
    NotEnoughSignatures {
        /// Signatures collected.
        got: usize,
        /// A strict majority of the configured set.
        needed: usize,
    },
    /// The tabulated document could not be built: a bug.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// A value given by the caller is not acceptable (never caused by the network).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The link address is not a valid `host:port`.
    #[error("invalid link address: {0}")]
    Address(#[from] AddressError),
    /// The link public key is empty or longer than [`crate::MAX_LINK_KEY_LEN`].
    #[error("link key length {0} is out of range")]
    LinkKeyLength(usize),
    /// A descriptor needs between [`crate::MIN_PACKET_KEYS`] and [`crate::MAX_PACKET_KEYS`]
    /// packet keys.
    #[error("{0} packet keys, outside the accepted range")]
    PacketKeyCount(usize),
    /// The packet keys are not all of one scheme.
    #[error("packet keys of mixed schemes")]
    MixedSchemes,
    /// The network parameters are out of range.
    #[error("invalid parameters: {0}")]
    Parameters(&'static str),
    /// The descriptor would exceed [`crate::MAX_DESCRIPTOR_LEN`].
    #[error("descriptor too large")]
    TooLarge,
}

/// Why a link address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AddressError {
    /// No `:port` suffix.
    #[error("missing port")]
    MissingPort,
    /// The port is not a decimal number in 1..=65535 without leading zeros.
    #[error("invalid port")]
    Port,
    /// The host is neither a DNS name, an IPv4 address nor a bracketed IPv6 address in
    /// canonical form.
    #[error("invalid host")]
    Host,
    /// Longer than [`crate::descriptor::MAX_ADDRESS_LEN`].
    #[error("address too long")]
    TooLong,
}

/// An authority configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The authority set is empty, too large or has a duplicate key.
    #[error("invalid authority set: {0}")]
    AuthoritySet(&'static str),
    /// This authority's own key is not in the authority set.
    #[error("this authority is not in the authority set")]
    NotInSet,
}
