//! The openmls provider of one conversation, the keys kept in it, and the checks on what enters
//! through it (key packages) and leaves it (wire bytes).

use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_memory_storage::MemoryStorage;
use openmls_rust_crypto::RustCrypto;

use super::error::{internal, rejected};
use super::{CIPHERSUITE, MemberId, MlsError, blob};

/// The openmls provider of one conversation: its crypto, randomness and its own storage, so that
/// a conversation's keys live (and are deleted) with it.
#[derive(Default)]
pub(super) struct Provider {
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
    /// Everything in the storage, for [`blob::encode`].
    pub(super) fn entries(&self) -> Result<blob::Entries, MlsError> {
        let map = self.storage.values.read().map_err(|_| internal("storage lock poisoned"))?;
        Ok(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// A provider whose storage holds `entries` (from [`blob::decode`]).
    pub(super) fn from_entries(entries: blob::Entries) -> Result<Self, MlsError> {
        let provider = Self::default();
        provider.storage.values.write().map_err(|_| internal("storage lock poisoned"))?.extend(entries);
        Ok(provider)
    }
}

/// A fresh signature key for one conversation, stored in that conversation's storage, and the
/// credential naming it.
pub(super) fn new_identity(provider: &Provider) -> Result<(SignatureKeyPair, CredentialWithKey), MlsError> {
    let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).map_err(internal)?;
    signer.store(provider.storage()).map_err(internal)?;
    let credential = CredentialWithKey {
        credential: BasicCredential::new(signer.to_public_vec()).into(),
        signature_key: signer.to_public_vec().into(),
    };
    Ok((signer, credential))
}

/// The signature key whose public half is `public`, from the storage.
pub(super) fn read_signer(provider: &Provider, public: &[u8]) -> Result<SignatureKeyPair, MlsError> {
    SignatureKeyPair::read(provider.storage(), public, CIPHERSUITE.signature_algorithm())
        .ok_or(MlsError::CorruptState("signature key missing"))
}

/// A KeyPackage from its bytes: valid, of this ciphersuite, with a bare credential (P4).
pub(super) fn parse_key_package(crypto: &RustCrypto, bytes: &[u8]) -> Result<KeyPackage, MlsError> {
    let kp = KeyPackageIn::tls_deserialize_exact(bytes).map_err(|_| MlsError::Malformed)?;
    let kp = kp.validate(crypto, ProtocolVersion::Mls10).map_err(rejected)?;
    if kp.ciphersuite() != CIPHERSUITE {
        return Err(MlsError::Unsupported("key package of another ciphersuite"));
    }
    MemberId::of_leaf(kp.leaf_node())?;
    Ok(kp)
}

/// The bytes of an outgoing message.
pub(super) fn wire(message: &MlsMessageOut) -> Result<Vec<u8>, MlsError> {
    message.to_bytes().map_err(internal)
}
