//! The tunable parameters of a conversation, and the openmls settings every conversation uses
//! (ciphersuite, capabilities, pure-ciphertext wire format, padding, ratchet).

use std::time::Duration;

use openmls::prelude::*;

use super::CIPHERSUITE;

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
    /// [`MlsError::BufferFull`](super::MlsError::BufferFull)).
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

/// What a member's leaf supports: this ciphersuite and basic credentials only.
pub(super) fn capabilities() -> Capabilities {
    Capabilities::new(None, Some(&[CIPHERSUITE]), None, None, Some(&[CredentialType::Basic]))
}

fn ratchet(config: &Config) -> SenderRatchetConfiguration {
    SenderRatchetConfiguration::new(config.out_of_order_tolerance, config.max_forward_distance)
}

/// The openmls settings of a new conversation.
pub(super) fn create_config(config: &Config) -> MlsGroupCreateConfig {
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

/// The settings of [`create_config`] that a joining member uses: a create config holds a join
/// config, so both come from the one builder above and cannot drift apart.
pub(super) fn join_config(config: &Config) -> MlsGroupJoinConfig {
    create_config(config).join_config().clone()
}
