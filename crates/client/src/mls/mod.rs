//! Conversations as MLS groups (RFC 9420, `openmls`), hybrid post-quantum, converging without a
//! server.
//!
//! A [`Conversation`] is one MLS group seen by one member; a chat between two people is a group of
//! two. The module does no IO and reads no clock: every method takes bytes (and `now`) and returns
//! an [`Output`]: [`Event`]s for the user interface and [`Outgoing`] messages, each with the
//! [`MemberId`]s it must reach, for the sending layer to carry through the mixnet. Randomness comes
//! from the `openmls` crypto provider (operating-system seeded).
//!
//! # Choices
//! - Ciphersuite [`CIPHERSUITE`], `MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519` (0x004F, the
//!   X-Wing KEM of the IETF draft): ML-KEM-768 and X25519 together protect content recorded today
//!   against a quantum computer tomorrow (A6); signatures stay Ed25519 (forging needs a quantum
//!   computer *during* the conversation).
//! - Every handshake (commit, proposal) and application message is a `PrivateMessage` (pure
//!   ciphertext wire format), padded to a multiple of [`Config::padding`] bytes. A member cannot
//!   decrypt its own messages, so it keeps its own commit as openmls' pending commit.
//! - **No identifiers (P4).** Each conversation gets a fresh Ed25519 signature key, made for it
//!   alone, and the MLS credential is a basic credential whose identity *is* that public key. A
//!   [`MemberId`] is this key: it names a member inside one conversation and means nothing in any
//!   other, so two contacts comparing their groups cannot tell that they share a member. Key
//!   packages, welcomes and commits whose credentials are anything else are refused.
//!
//! # Convergence without a server
//! Members commit whenever they like; nobody orders the commits. Each commit carries its proposals
//! inline (no proposals by reference), and includes a path update (post-compromise security).
//! For each epoch *n*:
//! 1. every member *stages* every commit for epoch *n* it receives (its own included), merging
//!    none; application messages keep flowing meanwhile (epoch *n* keys stay usable);
//! 2. [`Config::decision_window`] after it first saw a commit for epoch *n*, it ranks the candidates
//!    deterministically (module `rank`) and merges the winner; the members whose commit lost
//!    re-check what they wanted against the new state and commit again in epoch *n+1*;
//! 3. a Welcome is sent only by the member whose commit won, so a newcomer joins only the epoch
//!    that everyone else reaches;
//! 4. a member creates a commit for epoch *n* only while it has seen no commit for epoch *n*, so
//!    concurrent commits are those created before their authors saw each other's.
//!
//! Hence if every message reaches every online member within *D*, a window of at least 2*D*
//! guarantees that all members see the same candidates and pick the same winner: every candidate
//! of an epoch is created less than *D* after the first one and arrives less than 2*D* after it.
//! A member that was offline fetches the epoch's commits together from its mailbox and decides
//! the same way; messages for later epochs wait in a buffer and count as seen when they arrived,
//! so catching up on many epochs does not wait a window per epoch.
//!
//! A commit that arrives after its epoch was decided is reported as [`Event::StaleCommit`]. If it
//! would have won, the member that saw it late has diverged from the others (it then cannot read
//! their later messages, which fail with [`MlsError::Rejected`]); the decision window is the knob
//! that makes this as unlikely as the network requires. Rolling back to the snapshot of the
//! previous epoch is not implemented.
//!
//! Leaving: [`Conversation::leave`] sends a Remove proposal for oneself (a `SelfRemove` is refused
//! with encrypted handshakes). Other members treat it as a request: the member with the lowest
//! leaf index that is not leaving commits the removal at once, and any member does so after
//! [`Config::leave_fallback`]; any commit also carries every known leave request.
//!
//! # Persistence
//! [`Conversation::export`] returns the whole state of the conversation (openmls' key/value
//! storage, the signature key, the staged candidates and queued operations) as one byte string for
//! the encrypted profile store, and [`Conversation::import`] resumes from it, after a restart or
//! days offline. The string is rewritten whole after each change: tens of kilobytes for two people,
//! growing linearly with the group (about 0.1 MB after some epochs, 29 MB at 1,000 members: see
//! `docs/BENCHMARKS.md`; saving only the changed storage keys is a follow-up).

mod blob;
pub(crate) mod rank;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_memory_storage::MemoryStorage;
use openmls_rust_crypto::RustCrypto;
use qanat_pki::UnixTime;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The ciphersuite of every conversation: hybrid ML-KEM-768 + X25519 (X-Wing), AES-128-GCM,
/// SHA-256, Ed25519.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519;

/// Domain separation of the commit hash used to rank concurrent commits.
const COMMIT_HASH_LABEL: &[u8] = b"qanat-commit";

/// Tunable parameters. [`Config::default`] suits a mixnet with delays of seconds to minutes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// How long a member waits, after first seeing a commit for an epoch, before choosing the
    /// winner among all commits for that epoch. Must exceed twice the delivery delay between
    /// online members.
    pub decision_window: Duration,
    /// After this long, any member (not only the designated one) commits a pending leave.
    pub leave_fallback: Duration,
    /// Messages are padded to a multiple of this many bytes.
    pub padding: usize,
    /// Application messages from this many past epochs can still be read.
    pub max_past_epochs: usize,
    /// How many messages of one sender may arrive out of order.
    pub out_of_order_tolerance: u32,
    /// How many messages of one sender may be skipped (lost, or still on their way).
    pub max_forward_distance: u32,
    /// At most this many messages for later epochs wait in the buffer.
    pub max_buffered: usize,
    /// At most this many bytes of them.
    pub max_buffered_bytes: usize,
    /// A message for an epoch more than this far ahead is not buffered (not yet: see
    /// [`MlsError::BufferFull`]).
    pub max_epochs_ahead: u64,
    /// A buffered message whose epoch has not come after this long is dropped (its commit was
    /// never coming: it was garbage).
    pub buffered_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            decision_window: Duration::from_secs(120),
            leave_fallback: Duration::from_secs(600),
            padding: 256,
            max_past_epochs: 5,
            out_of_order_tolerance: 256,
            max_forward_distance: 10_000,
            max_buffered: 1_000,
            max_buffered_bytes: 16 << 20,
            max_epochs_ahead: 16,
            buffered_ttl: Duration::from_secs(7 * 86_400),
        }
    }
}

/// Errors of this module. "The peer sent garbage" ([`MlsError::Malformed`],
/// [`MlsError::Rejected`], ...) is kept apart from "we have a bug" ([`MlsError::Internal`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MlsError {
    /// The bytes do not parse as the expected MLS structure.
    #[error("malformed MLS input")]
    Malformed,
    /// The message belongs to another conversation.
    #[error("the message belongs to another conversation")]
    WrongConversation,
    /// A well-formed message of a kind this conversation does not accept here.
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
    /// openmls refused the input: bad signature or tag, unknown epoch, replay, invalid commit.
    #[error("message rejected: {0}")]
    Rejected(String),
    /// A credential that is not the bare per-conversation signature key (P4).
    #[error("a credential carries something other than its per-conversation key")]
    IdentifyingCredential,
    /// A proposal or commit using MLS features this client does not allow.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// This member is no longer in the conversation (removed, or has left).
    #[error("not a member of this conversation any more")]
    NotMember,
    /// The member named is not in the conversation.
    #[error("no such member")]
    UnknownMember,
    /// A message for a later epoch that cannot wait now: the buffer is full, or the epoch is too
    /// far ahead. Nothing was kept: the caller must not acknowledge the message, so that its
    /// sender sends it again (by then the epoch may have come).
    #[error("too many messages waiting for a later epoch")]
    BufferFull,
    /// Saved state that cannot be read back.
    #[error("saved MLS state is unusable: {0}")]
    CorruptState(&'static str),
    /// A failure that should not happen: a bug here or in openmls.
    #[error("internal MLS error: {0}")]
    Internal(String),
}

fn internal(e: impl fmt::Debug) -> MlsError {
    MlsError::Internal(format!("{e:?}"))
}

/// Whether a commit failed because of what it was asked to add (a KeyPackage the group cannot
/// take), not because of a bug.
fn refused_by_group(e: &CreateCommitError) -> bool {
    matches!(e, CreateCommitError::ProposalValidationError(p) if !matches!(p, ProposalValidationError::LibraryError(_)))
}

fn rejected(e: impl fmt::Debug) -> MlsError {
    MlsError::Rejected(format!("{e:?}"))
}

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

    fn from_slice(bytes: &[u8]) -> Result<Self, MlsError> {
        bytes.try_into().map(Self).map_err(|_| MlsError::IdentifyingCredential)
    }

    /// The id of a leaf's credential, refusing anything but the bare signature key.
    fn of_credential(credential: &Credential, signature_key: &[u8]) -> Result<Self, MlsError> {
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

    fn of_leaf(leaf: &LeafNode) -> Result<Self, MlsError> {
        Self::of_credential(leaf.credential(), leaf.signature_key().as_slice())
    }

    fn of_member(member: &Member) -> Result<Self, MlsError> {
        Self::of_credential(&member.credential, &member.signature_key)
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
}

/// The conversation an incoming MLS message belongs to (read from its clear header), for routing.
pub fn conversation_of(message: &[u8]) -> Result<ConversationId, MlsError> {
    let msg = MlsMessageIn::tls_deserialize_exact(message).map_err(|_| MlsError::Malformed)?;
    match msg.extract() {
        MlsMessageBodyIn::PrivateMessage(m) => {
            Ok(ConversationId(ProtocolMessage::from(m).group_id().as_slice().to_vec()))
        }
        MlsMessageBodyIn::PublicMessage(m) => {
            Ok(ConversationId(ProtocolMessage::from(m).group_id().as_slice().to_vec()))
        }
        _ => Err(MlsError::Unexpected("not a group message")),
    }
}

/// The member a key package (as made by [`PendingJoin::new`]) will be once added.
pub fn key_package_member(key_package: &[u8]) -> Result<MemberId, MlsError> {
    let kp = parse_key_package(&RustCrypto::default(), key_package)?;
    MemberId::of_leaf(kp.leaf_node())
}

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
    /// whoever made it runs a broken or hostile client. See [`Conversation::add`].
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

/// The openmls provider of one conversation: its crypto, randomness and its own storage, so that
/// a conversation's keys live (and are deleted) with it.
#[derive(Default)]
struct Provider {
    crypto: RustCrypto,
    storage: MemoryStorage,
}

impl OpenMlsProvider for Provider {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = MemoryStorage;
    fn storage(&self) -> &MemoryStorage {
        &self.storage
    }
    fn crypto(&self) -> &RustCrypto {
        &self.crypto
    }
    fn rand(&self) -> &RustCrypto {
        &self.crypto
    }
}

impl Provider {
    fn entries(&self) -> Result<blob::Entries, MlsError> {
        let map = self.storage.values.read().map_err(|_| internal("storage lock poisoned"))?;
        Ok(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn from_entries(entries: blob::Entries) -> Result<Self, MlsError> {
        let provider = Self::default();
        provider.storage.values.write().map_err(|_| internal("storage lock poisoned"))?.extend(entries);
        Ok(provider)
    }
}

fn capabilities() -> Capabilities {
    Capabilities::new(None, Some(&[CIPHERSUITE]), None, None, Some(&[CredentialType::Basic]))
}

fn ratchet(config: &Config) -> SenderRatchetConfiguration {
    SenderRatchetConfiguration::new(config.out_of_order_tolerance, config.max_forward_distance)
}

fn create_config(config: &Config) -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .capabilities(capabilities())
        .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .padding_size(config.padding)
        .use_ratchet_tree_extension(true)
        .max_past_epochs(config.max_past_epochs)
        .sender_ratchet_configuration(ratchet(config))
        .build()
}

/// The same settings as [`create_config`], on openmls's other builder (the two share no trait,
/// and a create config cannot be built from a join config).
fn join_config(config: &Config) -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .padding_size(config.padding)
        .use_ratchet_tree_extension(true)
        .max_past_epochs(config.max_past_epochs)
        .sender_ratchet_configuration(ratchet(config))
        .build()
}

/// A fresh signature key for one conversation, stored in that conversation's storage, and the
/// credential naming it.
fn new_identity(provider: &Provider) -> Result<(SignatureKeyPair, CredentialWithKey), MlsError> {
    let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).map_err(internal)?;
    signer.store(provider.storage()).map_err(internal)?;
    let credential = CredentialWithKey {
        credential: BasicCredential::new(signer.to_public_vec()).into(),
        signature_key: signer.to_public_vec().into(),
    };
    Ok((signer, credential))
}

fn read_signer(provider: &Provider, public: &[u8]) -> Result<SignatureKeyPair, MlsError> {
    SignatureKeyPair::read(provider.storage(), public, CIPHERSUITE.signature_algorithm())
        .ok_or(MlsError::CorruptState("signature key missing"))
}

fn parse_key_package(crypto: &RustCrypto, bytes: &[u8]) -> Result<KeyPackage, MlsError> {
    let kp = KeyPackageIn::tls_deserialize_exact(bytes).map_err(|_| MlsError::Malformed)?;
    let kp = kp.validate(crypto, ProtocolVersion::Mls10).map_err(rejected)?;
    if kp.ciphersuite() != CIPHERSUITE {
        return Err(MlsError::Unsupported("key package of another ciphersuite"));
    }
    MemberId::of_leaf(kp.leaf_node())?;
    Ok(kp)
}

fn wire(message: &MlsMessageOut) -> Result<Vec<u8>, MlsError> {
    message.to_bytes().map_err(internal)
}

fn millis(t: SystemTime) -> u64 {
    UnixTime::from_system_time(t).as_millis()
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

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
        MemberId(self.signer.public().try_into().unwrap_or([0; 32]))
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

/// An operation the user asked for that is not yet in a winning commit.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Intent {
    /// Add the owner of this key package.
    Add(Vec<u8>),
    /// Remove this member.
    Remove(MemberId),
    /// Refresh own keys.
    Update,
}

/// A commit for the current epoch, staged, waiting for the decision.
#[derive(Serialize, Deserialize)]
struct Candidate {
    hash: [u8; 32],
    committer: u32,
    removed: Vec<u32>,
    /// `None` for this member's own commit, which openmls holds as the pending commit.
    staged: Option<StagedCommit>,
}

/// This member's own commit in the race, and what it carries.
#[derive(Serialize, Deserialize)]
struct OwnCommit {
    welcome: Option<Vec<u8>>,
    joiners: Vec<MemberId>,
    intents: Vec<Intent>,
}

/// A message for a later epoch, kept until this member gets there.
#[derive(Serialize, Deserialize)]
struct Buffered {
    epoch: u64,
    received_ms: u64,
    bytes: Vec<u8>,
}

/// Everything beyond openmls' own group state.
#[derive(Default, Serialize, Deserialize)]
struct State {
    /// Candidates for the current epoch.
    candidates: Vec<Candidate>,
    /// When this member first saw a commit for the current epoch (milliseconds since 1970).
    window_start_ms: Option<u64>,
    own: Option<OwnCommit>,
    queued: Vec<Intent>,
    /// Members who asked to leave, and when this member first heard of it.
    /// Saved as a list of pairs: JSON map keys must be strings.
    #[serde(with = "pairs")]
    leave_requests: BTreeMap<MemberId, u64>,
    leaving: bool,
    buffered: Vec<Buffered>,
}

/// One conversation (MLS group) as seen by this member.
pub struct Conversation {
    provider: Provider,
    signer: SignatureKeyPair,
    group: MlsGroup,
    config: Config,
    state: State,
}

/// The saved metadata, written by reference (a staged commit cannot be cloned) ...
#[derive(Serialize)]
struct MetaOut<'a> {
    group_id: &'a [u8],
    signer: &'a [u8],
    state: &'a State,
}

/// ... and read back owned.
#[derive(Deserialize)]
struct MetaIn {
    group_id: Vec<u8>,
    signer: Vec<u8>,
    state: State,
}

impl Conversation {
    /// A new conversation with this member alone in it, under a fresh signature key.
    pub fn create(config: &Config) -> Result<Self, MlsError> {
        let provider = Provider::default();
        let (signer, credential) = new_identity(&provider)?;
        let id: [u8; 32] = provider.rand().random_array().map_err(internal)?;
        let group = MlsGroup::new_with_group_id(
            &provider,
            &signer,
            &create_config(config),
            GroupId::from_slice(&id),
            credential,
        )
        .map_err(internal)?;
        Ok(Self { provider, signer, group, config: config.clone(), state: State::default() })
    }

    /// The conversation's id.
    pub fn id(&self) -> ConversationId {
        ConversationId(self.group.group_id().as_slice().to_vec())
    }

    /// This member's id in this conversation.
    pub fn own_id(&self) -> MemberId {
        MemberId(self.signer.public().try_into().unwrap_or([0; 32]))
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.group.epoch().as_u64()
    }

    /// A value all members at the same epoch share (and that differs between branches): compare it
    /// out of band to detect an active attacker, or in tests to check convergence.
    pub fn epoch_authenticator(&self) -> Vec<u8> {
        self.group.epoch_authenticator().as_slice().to_vec()
    }

    /// Whether this member is still in the conversation.
    pub fn is_active(&self) -> bool {
        self.group.is_active()
    }

    /// The members at the current epoch, this member included, in leaf order.
    pub fn members(&self) -> Vec<MemberId> {
        self.group.members().filter_map(|m| MemberId::of_member(&m).ok()).collect()
    }

    fn others(&self) -> Vec<MemberId> {
        let own = self.own_id();
        self.members().into_iter().filter(|m| *m != own).collect()
    }

    fn leaf_of(&self, member: &MemberId) -> Option<LeafNodeIndex> {
        self.group.members().find(|m| m.signature_key.as_slice() == member.as_bytes()).map(|m| m.index)
    }

    fn member_at(&self, leaf: u32) -> Option<MemberId> {
        self.group.member_at(LeafNodeIndex::new(leaf)).and_then(|m| MemberId::of_member(&m).ok())
    }

    /// Adds the owner of `key_package` (from [`PendingJoin::new`]). The Welcome for it is sent
    /// once this member's commit wins.
    ///
    /// A KeyPackage comes from someone else (an invitation's answer, a contact joining a group):
    /// one that verifies may still be one no commit can take (a leaf whose capabilities leave out
    /// the ciphersuite, keys that another member's already use). It is refused here
    /// ([`MlsError::Rejected`]) by building, and throwing away, a commit that adds it; one that
    /// only a later commit finds it cannot take (next to another newcomer's) is left out of that
    /// commit and reported ([`Event::AddRefused`]). Either way it is the KeyPackage's fault, never
    /// an [`MlsError::Internal`].
    pub fn add(&mut self, key_package: &[u8], now: SystemTime) -> Result<Output, MlsError> {
        self.ensure_member()?;
        let kp = parse_key_package(self.provider.crypto(), key_package)?;
        match self.try_commit(vec![kp], &[]) {
            Ok(()) => {}
            Err(e) if refused_by_group(&e) => return Err(rejected(e)),
            Err(e) => return Err(internal(e)),
        }
        self.state.queued.push(Intent::Add(key_package.to_vec()));
        self.poll(now)
    }

    /// Builds, and throws away, a commit adding `key_packages` and removing `removals`: whether
    /// this member could commit them now. Building changes nothing (openmls keeps a commit only
    /// once it is staged).
    fn try_commit(
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

    /// Removes a member.
    pub fn remove(&mut self, member: &MemberId, now: SystemTime) -> Result<Output, MlsError> {
        self.ensure_member()?;
        if self.leaf_of(member).is_none() {
            return Err(MlsError::UnknownMember);
        }
        if *member == self.own_id() {
            return self.leave(now);
        }
        self.state.queued.push(Intent::Remove(*member));
        self.poll(now)
    }

    /// Refreshes this member's keys (post-compromise security).
    pub fn update(&mut self, now: SystemTime) -> Result<Output, MlsError> {
        self.ensure_member()?;
        self.state.queued.push(Intent::Update);
        self.poll(now)
    }

    /// Leaves the conversation: asks the others to remove this member. [`Event::Removed`] follows
    /// when one of them has.
    pub fn leave(&mut self, now: SystemTime) -> Result<Output, MlsError> {
        self.ensure_member()?;
        self.state.leaving = true;
        self.state.queued.clear();
        let mut out = self.poll(now)?;
        if self.others().is_empty() {
            self.deactivate(&mut out);
        } else if self.group.pending_commit().is_none() {
            self.send_leave(&mut out)?;
        }
        Ok(out)
    }

    fn send_leave(&mut self, out: &mut Output) -> Result<(), MlsError> {
        let message = self.group.leave_group(&self.provider, &self.signer).map_err(internal)?;
        out.outgoing.push(Outgoing {
            kind: OutgoingKind::Proposal,
            to: self.others(),
            bytes: wire(&message)?,
        });
        Ok(())
    }

    fn deactivate(&mut self, out: &mut Output) {
        self.state = State { leaving: self.state.leaving, ..State::default() };
        out.events.push(Event::Removed);
    }

    /// Whether this member may still send (in the group, and not leaving it).
    pub fn can_send(&self) -> bool {
        self.ensure_member().is_ok()
    }

    fn ensure_member(&self) -> Result<(), MlsError> {
        if self.group.is_active() && !self.state.leaving { Ok(()) } else { Err(MlsError::NotMember) }
    }

    /// Encrypts a message for the other members.
    pub fn send(&mut self, plaintext: &[u8]) -> Result<Outgoing, MlsError> {
        self.ensure_member()?;
        let message = self.group.create_message(&self.provider, &self.signer, plaintext).map_err(internal)?;
        Ok(Outgoing { kind: OutgoingKind::Application, to: self.others(), bytes: wire(&message)? })
    }

    /// Handles one incoming message of this conversation.
    pub fn receive(&mut self, message: &[u8], now: SystemTime) -> Result<Output, MlsError> {
        let mut out = Output::default();
        self.receive_one(message, millis(now), &mut out)?;
        self.poll_into(millis(now), &mut out)?;
        Ok(out)
    }

    /// Lets time pass: decides the current epoch once its window is over, commits leaves whose
    /// designated member has not. Call it at [`Conversation::next_deadline`].
    pub fn tick(&mut self, now: SystemTime) -> Result<Output, MlsError> {
        self.poll(now)
    }

    /// When [`Conversation::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<SystemTime> {
        let window = duration_ms(self.config.decision_window);
        let fallback = duration_ms(self.config.leave_fallback);
        let decide = self.state.window_start_ms.map(|s| s.saturating_add(window));
        let leave = (self.state.window_start_ms.is_none() && self.group.is_active() && !self.state.leaving)
            .then(|| self.state.leave_requests.values().min().map(|s| s.saturating_add(fallback)))
            .flatten();
        let at = decide.into_iter().chain(leave).min()?;
        Some(UnixTime::from_millis(at).to_system_time())
    }

    fn poll(&mut self, now: SystemTime) -> Result<Output, MlsError> {
        let mut out = Output::default();
        self.poll_into(millis(now), &mut out)?;
        Ok(out)
    }

    fn poll_into(&mut self, now: u64, out: &mut Output) -> Result<(), MlsError> {
        // Each round merges one epoch; catching up after days offline may take many.
        loop {
            self.maybe_commit(now, out)?;
            if !self.decide(now, out)? {
                return Ok(());
            }
        }
    }

    fn receive_one(&mut self, bytes: &[u8], received_ms: u64, out: &mut Output) -> Result<(), MlsError> {
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

    fn commit_hash(&self, epoch: u64, bytes: &[u8]) -> Result<[u8; 32], MlsError> {
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
    fn maybe_commit(&mut self, now: u64, out: &mut Output) -> Result<(), MlsError> {
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
    fn decide(&mut self, now: u64, out: &mut Output) -> Result<bool, MlsError> {
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

    /// The whole state of the conversation, to save (secret: store it encrypted).
    pub fn export(&self) -> Result<Zeroizing<Vec<u8>>, MlsError> {
        let signer = self.signer.to_public_vec();
        let meta =
            MetaOut { group_id: self.group.group_id().as_slice(), signer: &signer, state: &self.state };
        let meta = Zeroizing::new(serde_json::to_vec(&meta).map_err(internal)?);
        blob::encode(blob::Kind::Conversation, self.provider.entries()?, &meta).map(Zeroizing::new)
    }

    /// Resumes from [`Conversation::export`].
    pub fn import(saved: &[u8], config: &Config) -> Result<Self, MlsError> {
        let (entries, meta) = blob::decode(blob::Kind::Conversation, saved)?;
        let meta: MetaIn =
            serde_json::from_slice(meta).map_err(|_| MlsError::CorruptState("unreadable metadata"))?;
        let provider = Provider::from_entries(entries)?;
        let signer = read_signer(&provider, &meta.signer)?;
        let group = MlsGroup::load(provider.storage(), &GroupId::from_slice(&meta.group_id))
            .map_err(|_| MlsError::CorruptState("unreadable group"))?
            .ok_or(MlsError::CorruptState("group missing"))?;
        Ok(Self { provider, signer, group, config: config.clone(), state: meta.state })
    }
}

fn added_by(staged: &StagedCommit) -> Vec<MemberId> {
    staged
        .add_proposals()
        .filter_map(|a| MemberId::of_leaf(a.add_proposal().key_package().leaf_node()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_add_no_commit_can_take_is_left_out_and_reported() {
        // Regression: an add queued unchecked (as earlier versions did: they checked a
        // KeyPackage by its own signatures only) whose KeyPackage no commit can take failed
        // every later commit of this member as an internal error, at each deadline and again
        // after each restart, which stopped the client for good.
        let config = Config::default();
        let mut c = Conversation::create(&config).unwrap();
        let bad = crate::engine::attacks::untakeable_key_package().unwrap();
        let refused = key_package_member(&bad).unwrap();
        c.state.queued.push(Intent::Add(bad));
        let mut c = Conversation::import(&c.export().unwrap(), &config).unwrap();
        let (join, kp) = PendingJoin::new().unwrap();
        let out = c.add(&kp, SystemTime::now()).unwrap();
        assert!(out.events.contains(&Event::AddRefused { member: refused }), "{:?}", out.events);
        let welcome = out.outgoing.iter().find(|o| o.kind == OutgoingKind::Welcome).unwrap();
        assert_eq!(welcome.to, [join.member_id()]);
        assert_eq!(c.members().len(), 2);
        assert!(c.state.queued.is_empty());
        let (joined, _) = join.join(&welcome.bytes, &config).unwrap();
        assert_eq!(joined.epoch_authenticator(), c.epoch_authenticator());
    }
}
