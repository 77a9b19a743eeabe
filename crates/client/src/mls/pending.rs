//! An invitee before its Welcome arrives, and joining from the Welcome.

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::config::{capabilities, join_config};
use super::error::{internal, rejected};
use super::provider::{Provider, new_identity, read_signer};
use super::state::State;
use super::{CIPHERSUITE, Config, Conversation, Event, MemberId, MlsError, Output, blob};

/// Someone invited into a conversation, before the Welcome arrives: holds the private keys of the
/// key package it published and the signature key it will have in that conversation.
pub struct PendingJoin {
    provider: Provider,
    signer: SignatureKeyPair,
}

#[derive(Serialize, Deserialize)]
struct PendingMeta {
    signer: Vec<u8>,
}

impl PendingJoin {
    /// A fresh per-conversation identity and a key package (bytes, for the invitation or its
    /// answer) that lets a member add it.
    pub fn new() -> Result<(Self, Vec<u8>), MlsError> {
        let provider = Provider::default();
        let (signer, credential) = new_identity(&provider)?;
        let bundle = KeyPackage::builder()
            .leaf_node_capabilities(capabilities())
            .build(CIPHERSUITE, &provider, &signer, credential)
            .map_err(internal)?;
        let bytes = bundle.key_package().tls_serialize_detached().map_err(internal)?;
        Ok((Self { provider, signer }, bytes))
    }

    /// The member this will be in the conversation.
    pub fn member_id(&self) -> MemberId {
        MemberId::of_signer(&self.signer)
    }

    /// Joins from the Welcome that the adding member sent.
    pub fn join(self, welcome: &[u8], config: &Config) -> Result<(Conversation, Output), MlsError> {
        let msg = MlsMessageIn::tls_deserialize_exact(welcome).map_err(|_| MlsError::Malformed)?;
        let MlsMessageBodyIn::Welcome(welcome) = msg.extract() else {
            return Err(MlsError::Unexpected("not a welcome"));
        };
        if welcome.ciphersuite() != CIPHERSUITE {
            return Err(MlsError::Unsupported("welcome of another ciphersuite"));
        }
        let staged = StagedWelcome::new_from_welcome(&self.provider, &join_config(config), welcome, None)
            .map_err(rejected)?;
        let sender = staged.welcome_sender().map_err(rejected).and_then(MemberId::of_leaf)?;
        let group = staged.into_group(&self.provider).map_err(rejected)?;
        let members = group.members().map(|m| MemberId::of_member(&m)).collect::<Result<Vec<_>, _>>()?;
        let conversation = Conversation {
            provider: self.provider,
            signer: self.signer,
            group,
            config: config.clone(),
            state: State::default(),
        };
        let own = conversation.own_id();
        let mut out = Output::default();
        out.events.push(Event::EpochChanged {
            epoch: conversation.epoch(),
            committer: sender,
            added: members.into_iter().filter(|m| *m != own).collect(),
            removed: Vec::new(),
        });
        Ok((conversation, out))
    }

    /// The whole state, to save (secret: store it encrypted).
    pub fn export(&self) -> Result<Zeroizing<Vec<u8>>, MlsError> {
        let meta =
            serde_json::to_vec(&PendingMeta { signer: self.signer.to_public_vec() }).map_err(internal)?;
        blob::encode(blob::Kind::PendingJoin, self.provider.entries()?, &meta).map(Zeroizing::new)
    }

    /// Resumes from [`PendingJoin::export`].
    pub fn import(saved: &[u8]) -> Result<Self, MlsError> {
        let (entries, meta) = blob::decode(blob::Kind::PendingJoin, saved)?;
        let meta: PendingMeta =
            serde_json::from_slice(meta).map_err(|_| MlsError::CorruptState("unreadable metadata"))?;
        let provider = Provider::from_entries(entries)?;
        let signer = read_signer(&provider, &meta.signer)?;
        Ok(Self { provider, signer })
    }
}
