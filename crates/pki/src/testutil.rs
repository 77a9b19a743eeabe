//! Helpers for the unit tests.
#![allow(clippy::unwrap_used)]

use chacha20::ChaCha20Rng;
use qanat_packet::{Scheme, SecretKey};
use rand_core::SeedableRng;

use crate::descriptor::{LinkAddress, NodeDescriptor, Role, SignedDescriptor};
use crate::identity::IdentitySecret;
use crate::time::Epoch;

pub(crate) fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// A fresh node identity and its signed descriptor for `epoch`.
pub(crate) fn descriptor(
    rng: &mut ChaCha20Rng,
    scheme: Scheme,
    role: Role,
    epoch: Epoch,
    i: usize,
) -> (IdentitySecret, SignedDescriptor) {
    let secret = IdentitySecret::generate(rng);
    let keys = (0..3).map(|_| SecretKey::generate(scheme, rng).public_key()).collect();
    let address = LinkAddress::parse(&format!("127.0.0.1:{}", 20000 + i)).unwrap();
    let d = NodeDescriptor::new(epoch, secret.public(), role, address, vec![i as u8; 32], keys).unwrap();
    let signed = d.sign(&secret).unwrap();
    (secret, signed)
}
