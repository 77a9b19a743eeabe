//! The public-key primitive behind a small trait, so the fastest audited implementation can be
//! chosen by measurement and both can be benchmarked side by side.
//!
//! Two audited X25519 implementations are wired in:
//! - [`AwsLc`]: `aws-lc-rs` (AWS-LC, whose X25519 is formally verified assembly from s2n-bignum);
//! - [`Dalek`]: `x25519-dalek` (pure Rust, `curve25519-dalek`).
//!
//! [`Fast`] is the one the packet code uses, chosen from `docs/BENCHMARKS.md`.

use zeroize::Zeroizing;

/// X25519 (RFC 7748), with the all-zero output of a low-order point reported as `None`.
pub trait X25519Backend {
    /// A scalar prepared for repeated use (a node's long-lived key).
    type Prepared: Send + Sync;
    /// The implementation's name, for benchmark tables.
    const NAME: &'static str;
    /// Prepares `scalar` for repeated [`X25519Backend::agree`] calls.
    fn prepare(scalar: &[u8; 32]) -> Self::Prepared;
    /// X25519 with a prepared scalar.
    fn agree(scalar: &Self::Prepared, point: &[u8; 32]) -> Option<Zeroizing<[u8; 32]>>;
    /// X25519 with a one-time scalar.
    fn scalarmult(scalar: &[u8; 32], point: &[u8; 32]) -> Option<Zeroizing<[u8; 32]>>;
}

/// The implementation the packet code uses.
pub type Fast = AwsLc;

/// X25519 from `aws-lc-rs`.
#[derive(Debug, Clone, Copy)]
pub struct AwsLc;

impl X25519Backend for AwsLc {
    type Prepared = aws_lc_rs::agreement::PrivateKey;
    const NAME: &'static str = "aws-lc-rs";

    fn prepare(scalar: &[u8; 32]) -> Self::Prepared {
        // AWS-LC rejects an X25519 private key only for a length other than 32 bytes.
        #[allow(clippy::expect_used)]
        aws_lc_rs::agreement::PrivateKey::from_private_key(&aws_lc_rs::agreement::X25519, scalar)
            .expect("a 32-byte X25519 scalar is always accepted")
    }

    fn agree(scalar: &Self::Prepared, point: &[u8; 32]) -> Option<Zeroizing<[u8; 32]>> {
        let peer = aws_lc_rs::agreement::UnparsedPublicKey::new(&aws_lc_rs::agreement::X25519, point);
        let out = aws_lc_rs::agreement::agree(scalar, peer, (), |ss| {
            let mut out = Zeroizing::new([0u8; 32]);
            if ss.len() != 32 {
                return Err(());
            }
            out.copy_from_slice(ss);
            Ok(out)
        })
        .ok()?;
        non_zero(out)
    }

    fn scalarmult(scalar: &[u8; 32], point: &[u8; 32]) -> Option<Zeroizing<[u8; 32]>> {
        Self::agree(&Self::prepare(scalar), point)
    }
}

/// X25519 from `x25519-dalek`.
#[derive(Debug, Clone, Copy)]
pub struct Dalek;

impl X25519Backend for Dalek {
    type Prepared = x25519_dalek::StaticSecret;
    const NAME: &'static str = "x25519-dalek";

    fn prepare(scalar: &[u8; 32]) -> Self::Prepared {
        x25519_dalek::StaticSecret::from(*scalar)
    }

    fn agree(scalar: &Self::Prepared, point: &[u8; 32]) -> Option<Zeroizing<[u8; 32]>> {
        let ss = scalar.diffie_hellman(&x25519_dalek::PublicKey::from(*point));
        non_zero(Zeroizing::new(ss.to_bytes()))
    }

    fn scalarmult(scalar: &[u8; 32], point: &[u8; 32]) -> Option<Zeroizing<[u8; 32]>> {
        non_zero(Zeroizing::new(x25519_dalek::x25519(*scalar, *point)))
    }
}

/// `scalar · basepoint` (a public key). Uses the fixed-base table of `curve25519-dalek`.
pub fn x25519_base(scalar: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::x25519(*scalar, x25519_dalek::X25519_BASEPOINT_BYTES)
}

fn non_zero(v: Zeroizing<[u8; 32]>) -> Option<Zeroizing<[u8; 32]>> {
    if bool::from(crate::commands::is_zero(v.as_ref())) { None } else { Some(v) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_agree() {
        let a = [7u8; 32];
        let b = [9u8; 32];
        let pa = x25519_base(&a);
        let pb = x25519_base(&b);
        let s1 = AwsLc::scalarmult(&a, &pb).unwrap();
        let s2 = Dalek::scalarmult(&b, &pa).unwrap();
        assert_eq!(*s1, *s2);
        assert_eq!(*AwsLc::agree(&AwsLc::prepare(&a), &pb).unwrap(), *s1);
        assert_eq!(*Dalek::agree(&Dalek::prepare(&a), &pb).unwrap(), *s1);
    }

    #[test]
    fn low_order_points_are_rejected() {
        let zero = [0u8; 32];
        let mut one = [0u8; 32];
        one[0] = 1;
        for p in [zero, one] {
            assert!(AwsLc::scalarmult(&[5; 32], &p).is_none());
            assert!(Dalek::scalarmult(&[5; 32], &p).is_none());
        }
    }

    #[test]
    fn rfc7748_vector() {
        // RFC 7748 §5.2, first test vector.
        let k: [u8; 32] = hex::decode("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
            .unwrap()
            .try_into()
            .unwrap();
        let u: [u8; 32] = hex::decode("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
            .unwrap()
            .try_into()
            .unwrap();
        let want = "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552";
        assert_eq!(hex::encode(*AwsLc::scalarmult(&k, &u).unwrap()), want);
        assert_eq!(hex::encode(*Dalek::scalarmult(&k, &u).unwrap()), want);
    }
}
