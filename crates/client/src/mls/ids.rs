//! Who and which: a member's per-conversation id, a conversation's id, and reading them from
//! the bytes that carry them.

use std::fmt;

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use serde::{Deserialize, Serialize};

use super::MlsError;
use super::provider::parse_key_package;

/// A member as known inside one conversation: its per-conversation Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemberId([u8; 32]);

impl MemberId {
    /// The 32 bytes of the key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The id from 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub(super) fn from_slice(bytes: &[u8]) -> Result<Self, MlsError> {
        bytes.try_into().map(Self).map_err(|_| MlsError::IdentifyingCredential)
    }

    /// The id of a leaf's credential, refusing anything but the bare signature key.
    pub(super) fn of_credential(credential: &Credential, signature_key: &[u8]) -> Result<Self, MlsError> {
        if credential.credential_type() != CredentialType::Basic {
            return Err(MlsError::IdentifyingCredential);
        }
        let basic =
            BasicCredential::try_from(credential.clone()).map_err(|_| MlsError::IdentifyingCredential)?;
        if basic.identity() != signature_key {
            return Err(MlsError::IdentifyingCredential);
        }
        Self::from_slice(signature_key)
    }

    pub(super) fn of_leaf(leaf: &LeafNode) -> Result<Self, MlsError> {
        Self::of_credential(leaf.credential(), leaf.signature_key().as_slice())
    }

    pub(super) fn of_member(member: &Member) -> Result<Self, MlsError> {
        Self::of_credential(&member.credential, &member.signature_key)
    }

    /// The id of this member's own signature key (a fresh Ed25519 key: always 32 bytes).
    pub(super) fn of_signer(signer: &SignatureKeyPair) -> Self {
        Self(signer.public().try_into().unwrap_or([0; 32]))
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberId(")?;
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// The random id of a conversation (the MLS group id, 32 bytes). It travels in clear in every
/// message of the conversation, so that a client can route an incoming message; it names the
/// conversation, never a person.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ConversationId(Vec<u8>);

impl ConversationId {
    /// The bytes of the id.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub(super) fn of_group(group_id: &GroupId) -> Self {
        Self(group_id.as_slice().to_vec())
    }
}

/// The conversation an incoming MLS message belongs to (read from its clear header), for routing.
pub fn conversation_of(message: &[u8]) -> Result<ConversationId, MlsError> {
    let msg = MlsMessageIn::tls_deserialize_exact(message).map_err(|_| MlsError::Malformed)?;
    let message: ProtocolMessage = match msg.extract() {
        MlsMessageBodyIn::PrivateMessage(m) => m.into(),
        MlsMessageBodyIn::PublicMessage(m) => m.into(),
        _ => return Err(MlsError::Unexpected("not a group message")),
    };
    Ok(ConversationId::of_group(message.group_id()))
}

/// The member a key package (as made by [`PendingJoin::new`](super::PendingJoin::new)) will be once added.
pub fn key_package_member(key_package: &[u8]) -> Result<MemberId, MlsError> {
    let kp = parse_key_package(&RustCrypto::default(), key_package)?;
    MemberId::of_leaf(kp.leaf_node())
}
