//! Per-hop unwrap cost of every variant, side by side with Nym's `sphinx-packet` and with the bare
//! public-key operation each variant needs (the floor). Run with
//! `cargo bench -p qanat-packet --bench packet`, then `scripts/bench-table` prints the table
//! recorded in `docs/BENCHMARKS.md`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use qanat_packet::primitives::{AwsLc, Dalek, X25519Backend, x25519_base};
use qanat_packet::{Geometry, Scheme, Sphinx};

fn qanat_unwrap(c: &mut Criterion) {
    let mut g = c.benchmark_group("unwrap");
    for scheme in Scheme::ALL {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let (sphinx, keys, path, payload, pkt) = common::qanat_packet(scheme, &mut rng);
        let name = format!("qanat {} ({} B)", scheme.name(), pkt.len());
        g.bench_function(&name, |b| {
            b.iter_batched_ref(
                || pkt.clone(),
                |p| black_box(sphinx.unwrap(&keys[0], p).unwrap()),
                BatchSize::SmallInput,
            )
        });
        if scheme == Scheme::X25519Kem {
            g.bench_function(format!("qanat {} create", scheme.name()), |b| {
                b.iter(|| black_box(sphinx.new_packet(&mut rng, &path, &payload).unwrap()))
            });
        }
    }
    g.finish();
}

fn nym_unwrap(c: &mut Criterion) {
    use sphinx_packet::SphinxPacket;

    let (secrets, bytes) = common::nym_packet();
    let mut g = c.benchmark_group("unwrap");
    g.bench_function(format!("nym sphinx-packet 0.8 ({} B)", bytes.len()), |b| {
        b.iter_batched(
            || bytes.clone(),
            |p| black_box(SphinxPacket::from_bytes(&p).unwrap().process(&secrets[0]).unwrap()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn primitives(c: &mut Criterion) {
    let mut g = c.benchmark_group("primitive");
    let sk = [0x42u8; 32];
    let point = x25519_base(&[0x17; 32]);
    fn bench_backend<B: X25519Backend>(
        g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
        sk: &[u8; 32],
        point: &[u8; 32],
    ) {
        let prepared = B::prepare(sk);
        g.bench_function(format!("x25519 {} (prepared key)", B::NAME), |b| {
            b.iter(|| black_box(B::agree(&prepared, black_box(point)).unwrap()))
        });
        g.bench_function(format!("x25519 {} (one-time key)", B::NAME), |b| {
            b.iter(|| black_box(B::scalarmult(black_box(sk), black_box(point)).unwrap()))
        });
    }
    bench_backend::<AwsLc>(&mut g, &sk, &point);
    bench_backend::<Dalek>(&mut g, &sk, &point);

    // X-Wing decapsulation: the reference crate (which re-expands the key every time) and the
    // bare cost with the expanded key kept (ML-KEM-768 decapsulation + one X25519 + SHA3).
    {
        use x_wing::{Decapsulate, Decapsulator};
        let dk = x_wing::DecapsulationKey::from([9u8; 32]);
        let (ct, _) = dk.encapsulation_key().encapsulate_deterministic(&[5u8; 64].into());
        g.bench_function("xwing decapsulate x-wing 0.1 crate", |b| {
            b.iter(|| black_box(dk.decapsulate(black_box(&ct))))
        });
    }
    {
        use ml_kem::kem::{Decapsulate, FromSeed};
        let (dk, ek) = ml_kem::MlKem768::from_seed(&[3u8; 64].into());
        let (ct, _) = ml_kem::kem::Encapsulate::encapsulate_with_rng(&ek, &mut ChaCha20Rng::seed_from_u64(3));
        g.bench_function("ml-kem-768 decapsulate ml-kem 0.3 (expanded key)", |b| {
            b.iter(|| black_box(dk.decapsulate(black_box(&ct))))
        });
        #[allow(deprecated)]
        let expanded = ml_kem::ExpandedKeyEncoding::to_expanded_bytes(&dk);
        let lc = aws_lc_rs::kem::DecapsulationKey::new(&aws_lc_rs::kem::ML_KEM_768, &expanded).unwrap();
        let ss_rc = dk.decapsulate(&ct);
        let ss_lc = lc.decapsulate(aws_lc_rs::kem::Ciphertext::from(&ct[..])).unwrap();
        assert_eq!(ss_rc.as_slice(), ss_lc.as_ref());
        g.bench_function("ml-kem-768 decapsulate aws-lc-rs (expanded key)", |b| {
            b.iter(|| {
                black_box(lc.decapsulate(aws_lc_rs::kem::Ciphertext::from(black_box(&ct[..]))).unwrap())
            })
        });
    }
    g.finish();
}

/// The symmetric steps of one X25519-KEM unwrap at the default geometry, each alone, with the
/// crates and calls the packet code uses (the profile of what the unwrap adds to the X25519).
fn breakdown(c: &mut Criterion) {
    use ctr::cipher::{KeyIvInit, StreamCipher};
    use hmac::{KeyInit, Mac};
    use sha2::Digest;
    let mut g = c.benchmark_group("breakdown");
    let geometry = Geometry::default_for(Scheme::X25519Kem);
    let header_len = geometry.header_len();
    let ri_len = geometry.routing_info_len() + geometry.per_hop_routing_info_len();
    let secret = [0x5au8; 32];
    let element = [0x17u8; 32];
    g.bench_function("replay tag: SHA-512/256 of the 32-byte ciphertext", |b| {
        b.iter(|| black_box(sha2::Sha512_256::digest(black_box(&element))))
    });
    // The same BLAKE2b calls as `blake2x::blake2xb_32` (hpqc's adapter PRF).
    g.bench_function("adapter PRF: BLAKE2Xb-32 (3 BLAKE2b compressions)", |b| {
        b.iter(|| {
            let root = blake2b_simd::Params::new()
                .hash_length(64)
                .key(black_box(&secret))
                .node_offset(32 << 32)
                .to_state()
                .update(&element)
                .update(&element)
                .finalize();
            black_box(
                blake2b_simd::Params::new()
                    .hash_length(32)
                    .fanout(0)
                    .max_depth(0)
                    .max_leaf_length(64)
                    .inner_hash_length(64)
                    .node_offset(32 << 32)
                    .hash(root.as_bytes()),
            )
        })
    });
    // A KEM hop expands 128 bytes (the NIKE's 32-byte blinding seed is not needed).
    g.bench_function("KDF: HKDF-SHA256 expand, 128 bytes", |b| {
        b.iter(|| {
            let mut okm = [0u8; 128];
            hkdf::Hkdf::<sha2::Sha256>::from_prk(black_box(&secret))
                .unwrap()
                .expand(b"katzenpost-kdf-v0-hkdf-sha256", &mut okm)
                .unwrap();
            black_box(okm)
        })
    });
    let header = vec![3u8; header_len - 32];
    g.bench_function(format!("header MAC: HMAC-SHA256 over {} bytes", header.len()), |b| {
        b.iter(|| {
            let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(black_box(&secret)).unwrap();
            m.update(black_box(&header));
            black_box(m.finalize().into_bytes())
        })
    });
    let mut ri = vec![0u8; ri_len];
    g.bench_function(
        format!("header stream: AES-256-CTR over {ri_len} bytes (key schedule included)"),
        |b| {
            b.iter(|| {
                let mut c = ctr::Ctr128BE::<aes::Aes256Enc>::new(&secret.into(), &[1u8; 16].into());
                c.apply_keystream(black_box(&mut ri));
            })
        },
    );
    // One AEZ decryption of the payload through the public API (plus a copy of the payload).
    let sphinx = Sphinx::new(geometry);
    let keys = qanat_packet::SurbKeys::from_bytes(&[9u8; 64]).unwrap();
    let payload = vec![1u8; 32 + sphinx.geometry().forward_payload_len()];
    g.bench_function(format!("payload SPRP: AEZ over {} bytes (+ one copy)", payload.len()), |b| {
        b.iter(|| black_box(sphinx.decrypt_surb_payload(black_box(&payload), &keys)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = qanat_unwrap, nym_unwrap, primitives, breakdown
}
criterion_main!(benches);
