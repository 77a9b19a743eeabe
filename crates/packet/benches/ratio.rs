//! The X25519-KEM unwrap against the bare X25519 operation and against Nym's `sphinx-packet`,
//! measured *interleaved*, for a machine shared with other work: criterion measures one benchmark
//! after another, so a neighbour's build that starts halfway through skews its ratios. Here the
//! three operations take turns in short rounds (each round times `ITERS` operations on fresh
//! copies made before the clock starts), and the table reports, per operation, the fastest round
//! (the least disturbed) and the median round. Run with
//! `cargo bench -p qanat-packet --bench ratio`; `docs/BENCHMARKS.md` records its output.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::hint::black_box;
use std::time::Instant;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use qanat_packet::Scheme;
use qanat_packet::primitives::{AwsLc, X25519Backend, x25519_base};

const ITERS: usize = 50;
const ROUNDS: usize = 400;

fn time_round<T>(inputs: &mut [T], mut f: impl FnMut(&mut T)) -> f64 {
    let t = Instant::now();
    for x in inputs.iter_mut() {
        f(x);
    }
    t.elapsed().as_nanos() as f64 / inputs.len() as f64 / 1000.0
}

fn main() {
    // Qanat X25519 KEM at the default geometry, the packet `benches/packet.rs` unwraps.
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (sphinx, keys, _, _, pkt) = common::qanat_packet(Scheme::X25519Kem, &mut rng);

    // The bare operation: X25519 with a prepared key (aws-lc-rs), as the unwrap does it.
    let prepared = AwsLc::prepare(&[0x42; 32]);
    let point = x25519_base(&[0x17; 32]);

    // Nym's sphinx-packet 0.8: parse + process one hop of the packet `benches/packet.rs` unwraps.
    use sphinx_packet::SphinxPacket;
    let (secrets, nym) = common::nym_packet();

    let mut times: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..ROUNDS + 20 {
        let mut a: Vec<Vec<u8>> = vec![pkt.clone(); ITERS];
        let ta = time_round(&mut a, |p| {
            black_box(sphinx.unwrap(&keys[0], p).unwrap());
        });
        let mut b = vec![point; ITERS];
        let tb = time_round(&mut b, |p| {
            black_box(AwsLc::agree(&prepared, black_box(p)).unwrap());
        });
        let mut c: Vec<Vec<u8>> = vec![nym.clone(); ITERS];
        let tc = time_round(&mut c, |p| {
            black_box(SphinxPacket::from_bytes(p).unwrap().process(&secrets[0]).unwrap());
        });
        if round >= 20 {
            // The first rounds warm caches and clocks.
            for (v, t) in times.iter_mut().zip([ta, tb, tc]) {
                v.push(t);
            }
        }
    }
    for v in &mut times {
        v.sort_by(f64::total_cmp);
    }
    let min = |i: usize| times[i][0];
    let med = |i: usize| times[i][times[i].len() / 2];
    println!("{ROUNDS} rounds of {ITERS} operations each, the three operations taking turns\n");
    println!("| operation | fastest round µs | median round µs |");
    println!("|---|---:|---:|");
    for (i, name) in [
        format!("qanat x25519-kem unwrap ({} B)", pkt.len()),
        "x25519 aws-lc-rs (prepared key), the bare operation".to_owned(),
        format!("nym sphinx-packet 0.8 process ({} B)", nym.len()),
    ]
    .iter()
    .enumerate()
    {
        println!("| {name} | {:.1} | {:.1} |", min(i), med(i));
    }
    println!();
    println!("| ratio | fastest rounds | median rounds |");
    println!("|---|---:|---:|");
    println!("| x25519-kem unwrap / bare X25519 | {:.3}× | {:.3}× |", min(0) / min(1), med(0) / med(1));
    println!("| sphinx-packet / x25519-kem unwrap | {:.2}× | {:.2}× |", min(2) / min(0), med(2) / med(0));
}
