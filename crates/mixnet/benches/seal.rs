//! The cost of sealed mailbox items: `cargo bench -p qanat-mixnet --bench seal` prints a Markdown
//! table.
//!
//! - seal / open: `seal::seal` and `seal::open` of one forward payload (1,536 bytes at the
//!   default X25519-KEM geometry), on each end of every packet;
//! - packet, plain / sealed: a whole client packet to a mailbox through five hops, made the way
//!   the code did before sealing (`Sphinx::new_packet`, a readable last hop) and the way it does
//!   now (`sending::sealed_packet`: seal, then `Sphinx::new_opaque_packet`).
//!
//! Times are medians of 31 batches.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use qanat_mixnet::sending::seal::{self, SealKey};
use qanat_mixnet::sending::{NetworkView, Route, sealed_packet};
use qanat_mixnet::{Destination, Hop, Topology, path_hops};
use qanat_packet::{Geometry, MailboxId, NodeId, Scheme, SecretKey, Sphinx};

fn per_op(batch: usize, mut f: impl FnMut()) -> Duration {
    let mut v: Vec<Duration> = (0..31)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                f();
            }
            t.elapsed() / batch as u32
        })
        .collect();
    v.sort();
    v[v.len() / 2]
}

fn us(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e6)
}

fn main() {
    let scheme = Scheme::X25519Kem;
    let g = Geometry::default_for(scheme);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let key = SealKey::random(&mut rng);
    let payload = vec![0x5au8; g.forward_payload_len()];
    let id = [3u8; 16];
    let body = seal::seal(&key, &id, &payload, &mut rng).unwrap();
    let t_seal = per_op(2000, || {
        black_box(seal::seal(&key, &id, black_box(&payload), &mut rng).unwrap());
    });
    let t_open = per_op(2000, || {
        black_box(seal::open(&key, &id, black_box(&body)).unwrap());
    });

    let mut hop =
        |n: u8| Hop { id: NodeId([n; 32]), key: SecretKey::generate(scheme, &mut rng).public_key() };
    let gw = hop(1);
    let layers: Vec<Vec<Hop>> = (0..3).map(|l| vec![hop(10 + l)]).collect();
    let topology = Topology { epoch: 0, layers: layers.clone(), gateways: vec![gw.clone()] };
    let view = NetworkView { topology, mean_delay: Duration::from_millis(50), gateway: gw.id };
    let sphinx = Sphinx::new(g.clone());
    let route = Route { gateway: gw.id, mailbox: MailboxId([2; 32]), seal: key };
    let hops: Vec<&Hop> = std::iter::once(&gw).chain(layers.iter().map(|l| &l[0])).chain([&gw]).collect();
    let t_plain = per_op(100, || {
        let path = path_hops(
            &hops,
            |n| *n == gw.id,
            Duration::from_millis(50),
            Destination::Recipient(route.mailbox),
            &mut rng,
        );
        black_box(sphinx.new_packet(&mut rng, &path, &payload).unwrap());
    });
    let t_sealed = per_op(100, || {
        black_box(sealed_packet(&sphinx, &view, &route, &payload, &mut rng).unwrap());
    });
    println!("| operation | µs |");
    println!("|---|---|");
    println!("| seal one payload ({} bytes) | {} |", payload.len(), us(t_seal));
    println!("| open one item | {} |", us(t_open));
    println!("| packet to a mailbox, plain (before sealing) | {} |", us(t_plain));
    println!("| packet to a mailbox, sealed | {} |", us(t_sealed));
    println!(
        "\nbytes: body {} = salt 16 + payload {} + tag 16 (the Sphinx payload tag's 32 bytes); item stored {}",
        body.len(),
        payload.len(),
        16 + body.len()
    );
}
