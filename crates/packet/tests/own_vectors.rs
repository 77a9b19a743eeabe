//! Qanat's own known-answer vectors for every scheme, at Katzenpost's vector geometry and at
//! Qanat's default one, committed in `tests/data/` (Katzenpost's own are checked in
//! `tests/katzenpost.rs`).
//!
//! Each case fixes the RNG seed, so both packet *creation* and every hop's *unwrap* are pinned:
//! any change to the wire format, the key schedule or the order in which randomness is drawn
//! fails here. To regenerate after a deliberate format change (and bump the version in
//! `docs/PROTOCOL.md`), run `QANAT_WRITE_VECTORS=1 cargo test -p qanat-packet --test own_vectors`.

mod common;

use common::{nodes, path, rng};
use qanat_packet::{Geometry, Scheme, Sphinx, SurbKeys};
use serde::{Deserialize, Serialize};

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/own_vectors.json");

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Case {
    scheme: String,
    forward_payload_len: usize,
    nr_hops: usize,
    path_len: usize,
    seed: u64,
    node_keys: Vec<String>,
    node_ids: Vec<String>,
    public_keys: Vec<String>,
    payload: String,
    /// `packets[i]` is what hop `i` receives.
    packets: Vec<String>,
    surb: String,
    surb_keys: String,
    /// The reply packet built from the SURB, then what each hop of the SURB's path receives.
    reply_packets: Vec<String>,
}

fn make(scheme: Scheme, forward_payload_len: usize, nr_hops: usize, path_len: usize, seed: u64) -> Case {
    let sphinx = Sphinx::new(Geometry::new(scheme, forward_payload_len, nr_hops).unwrap());
    let mut r = rng(seed);
    let ns = nodes(scheme, path_len, &mut r);
    let payload: Vec<u8> = (0..forward_payload_len).map(|i| (i * 7 + 3) as u8).collect();
    let mut pkt = sphinx.new_packet(&mut r, &path(&ns, [0xaa; 32], None), &payload).unwrap();
    let mut packets = vec![hex::encode(&pkt)];
    for (i, n) in ns.iter().enumerate() {
        let out = sphinx.unwrap(&n.key, &mut pkt).unwrap();
        if i + 1 < ns.len() {
            packets.push(hex::encode(&pkt));
        } else {
            assert_eq!(out.payload(&pkt).unwrap(), &payload[..]);
        }
    }
    let (surb, keys) = sphinx.new_surb(&mut r, &path(&ns, [0xbb; 32], Some([0xcc; 16]))).unwrap();
    let reply: Vec<u8> = payload.iter().map(|b| b ^ 0xff).collect();
    let (mut rp, _) = sphinx.new_packet_from_surb(&surb, &reply).unwrap();
    let mut reply_packets = vec![hex::encode(&rp)];
    for (i, n) in ns.iter().enumerate() {
        let out = sphinx.unwrap(&n.key, &mut rp).unwrap();
        if i + 1 < ns.len() {
            reply_packets.push(hex::encode(&rp));
        } else {
            assert_eq!(sphinx.decrypt_surb_payload(out.payload(&rp).unwrap(), &keys).unwrap(), reply);
        }
    }
    Case {
        scheme: scheme.name().to_owned(),
        forward_payload_len,
        nr_hops,
        path_len,
        seed,
        node_keys: ns.iter().map(|n| hex::encode(*n.key.to_bytes())).collect(),
        node_ids: ns.iter().map(|n| hex::encode(n.id.0)).collect(),
        public_keys: ns.iter().map(|n| hex::encode(n.key.public_key().to_bytes())).collect(),
        payload: hex::encode(&payload),
        packets,
        surb: hex::encode(&surb),
        surb_keys: hex::encode(keys.as_bytes()),
        reply_packets,
    }
}

fn all_cases() -> Vec<Case> {
    let mut v = Vec::new();
    for (k, scheme) in Scheme::ALL.into_iter().enumerate() {
        v.push(make(scheme, 103, 5, 5, 1000 + k as u64));
        v.push(make(scheme, 103, 5, 2, 2000 + k as u64));
        v.push(make(scheme, 1536, 5, 5, 3000 + k as u64));
    }
    v
}

/// The committed vectors are reproduced exactly: creation from the seed and every unwrap.
#[test]
fn own_vectors_reproduce() {
    let cases = all_cases();
    if std::env::var_os("QANAT_WRITE_VECTORS").is_some() {
        std::fs::write(FILE, serde_json::to_string_pretty(&cases).unwrap()).unwrap();
        return;
    }
    let committed: Vec<Case> =
        serde_json::from_str(&std::fs::read_to_string(FILE).expect("tests/data/own_vectors.json")).unwrap();
    assert_eq!(committed.len(), cases.len());
    for (c, want) in cases.iter().zip(&committed) {
        assert_eq!(c, want, "{} {}-hop vector changed", want.scheme, want.path_len);
    }
}

/// The committed vectors also unwrap from their recorded keys alone (no RNG involved), so an
/// implementation in another language can check itself against the file.
#[test]
fn own_vectors_unwrap_from_keys() {
    let Ok(text) = std::fs::read_to_string(FILE) else {
        assert!(std::env::var_os("QANAT_WRITE_VECTORS").is_some(), "tests/data/own_vectors.json is missing");
        return;
    };
    let committed: Vec<Case> = serde_json::from_str(&text).unwrap();
    for c in committed {
        let scheme = Scheme::from_name(&c.scheme).unwrap();
        let sphinx = Sphinx::new(Geometry::new(scheme, c.forward_payload_len, c.nr_hops).unwrap());
        let keys: Vec<_> = c
            .node_keys
            .iter()
            .map(|k| qanat_packet::SecretKey::from_bytes(scheme, &hex::decode(k).unwrap()).unwrap())
            .collect();
        for (k, pk) in keys.iter().zip(&c.public_keys) {
            assert_eq!(hex::encode(k.public_key().to_bytes()), *pk);
        }
        for (packets, surb) in [(&c.packets, false), (&c.reply_packets, true)] {
            let mut p = hex::decode(&packets[0]).unwrap();
            for (i, k) in keys.iter().enumerate() {
                // `unwrap_with_tag` with the pre-computed tag gives exactly what `unwrap` gives.
                let tag = sphinx.replay_tag(&p).unwrap();
                let mut q = p.clone();
                let out = sphinx.unwrap(k, &mut p).unwrap();
                let out_tagged = sphinx.unwrap_with_tag(k, &mut q, tag).unwrap();
                assert_eq!(q, p, "{} hop {i}: unwrap_with_tag output", c.scheme);
                assert_eq!(out_tagged.replay_tag, out.replay_tag);
                assert_eq!(out_tagged.commands, out.commands);
                assert_eq!(out_tagged.payload(&q), out.payload(&p));
                if i + 1 < keys.len() {
                    assert_eq!(hex::encode(&p), packets[i + 1]);
                } else if surb {
                    let sk = SurbKeys::from_bytes(&hex::decode(&c.surb_keys).unwrap()).unwrap();
                    let got = sphinx.decrypt_surb_payload(out.payload(&p).unwrap(), &sk).unwrap();
                    let want: Vec<u8> = hex::decode(&c.payload).unwrap().iter().map(|b| b ^ 0xff).collect();
                    assert_eq!(got, want);
                } else {
                    assert_eq!(hex::encode(out.payload(&p).unwrap()), c.payload);
                }
            }
        }
    }
}
