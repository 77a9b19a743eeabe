//! Property tests: packets survive any path and geometry, and any modification is caught.

mod common;

use chacha20::rand_core::Rng;
use common::{nodes, path, rng};
use proptest::prelude::*;
use qanat_packet::{Geometry, Scheme, Sphinx, UnwrapError};

fn scheme_strategy() -> impl Strategy<Value = Scheme> {
    prop_oneof![Just(Scheme::X25519Nike), Just(Scheme::X25519Kem), Just(Scheme::XWing)]
}

/// Sends a packet through every hop; returns the delivered payload, or the first hop's error.
fn deliver(sphinx: &Sphinx, ns: &[common::Node], mut packet: Vec<u8>) -> Result<Vec<u8>, UnwrapError> {
    for (i, n) in ns.iter().enumerate() {
        let out = sphinx.unwrap(&n.key, &mut packet)?;
        if i + 1 == ns.len() {
            assert!(!out.is_forward());
            return Ok(out.payload(&packet).expect("last hop has a payload").to_vec());
        }
        assert_eq!(out.commands.next_hop.expect("forward").id, ns[i + 1].id);
        assert_eq!(out.commands.delay.expect("delay").delay_ms, 1000 + i as u32);
    }
    unreachable!("path is never empty")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Create, then unwrap through a random path of a random geometry: the payload comes back.
    #[test]
    fn round_trip(scheme in scheme_strategy(), max_hops in 1usize..=6, payload_len in 1usize..3000, seed: u64) {
        let mut r = rng(seed);
        let hops = 1 + (seed as usize) % max_hops;
        let sphinx = Sphinx::new(Geometry::new(scheme, payload_len, max_hops).unwrap());
        let ns = nodes(scheme, hops, &mut r);
        let mut payload = vec![0u8; payload_len];
        r.fill_bytes(&mut payload);
        let pkt = sphinx.new_packet(&mut r, &path(&ns, [7; 32], None), &payload).unwrap();
        prop_assert_eq!(pkt.len(), sphinx.geometry().packet_len());
        prop_assert_eq!(deliver(&sphinx, &ns, pkt).unwrap(), payload);
    }

    /// A SURB made for a random path carries a reply back to its creator.
    #[test]
    fn surb_round_trip(scheme in scheme_strategy(), max_hops in 1usize..=6, payload_len in 1usize..2100, seed: u64) {
        let mut r = rng(seed);
        let hops = 1 + (seed as usize) % max_hops;
        let sphinx = Sphinx::new(Geometry::new(scheme, payload_len, max_hops).unwrap());
        let ns = nodes(scheme, hops, &mut r);
        let (surb, keys) = sphinx.new_surb(&mut r, &path(&ns, [9; 32], Some([3; 16]))).unwrap();
        prop_assert_eq!(surb.len(), sphinx.geometry().surb_len());
        let mut reply = vec![0u8; payload_len];
        r.fill_bytes(&mut reply);
        let (mut pkt, first) = sphinx.new_packet_from_surb(&surb, &reply).unwrap();
        prop_assert_eq!(first, ns[0].id);
        for (i, n) in ns.iter().enumerate() {
            let out = sphinx.unwrap(&n.key, &mut pkt).unwrap();
            if i + 1 == ns.len() {
                prop_assert_eq!(out.commands.surb_reply.unwrap().0, [3; 16]);
                let got = sphinx.decrypt_surb_payload(out.payload(&pkt).unwrap(), &keys).unwrap();
                prop_assert_eq!(&got, &reply);
            }
        }
    }

    /// An opaque packet (last hop with a SURB-reply command) delivers its whole body unchanged,
    /// with no tag of zeros, and its last hop sees it exactly as it sees a SURB reply.
    #[test]
    fn opaque_round_trip(scheme in scheme_strategy(), max_hops in 1usize..=6, payload_len in 1usize..2100, seed: u64) {
        let mut r = rng(seed);
        let hops = 1 + (seed as usize) % max_hops;
        let sphinx = Sphinx::new(Geometry::new(scheme, payload_len, max_hops).unwrap());
        let ns = nodes(scheme, hops, &mut r);
        let g = sphinx.geometry();
        let mut body = vec![0u8; g.payload_tag_len() + g.forward_payload_len()];
        r.fill_bytes(&mut body);
        let mut pkt = sphinx.new_opaque_packet(&mut r, &path(&ns, [9; 32], Some([4; 16])), &body).unwrap();
        prop_assert_eq!(pkt.len(), g.packet_len());
        for (i, n) in ns.iter().enumerate() {
            let out = sphinx.unwrap(&n.key, &mut pkt).unwrap();
            if i + 1 == ns.len() {
                prop_assert_eq!(out.commands.surb_reply.unwrap().0, [4; 16]);
                prop_assert_eq!(out.payload(&pkt).unwrap(), &body[..]);
            }
        }
        // Without a SURB-reply command on the last hop, the last hop would check a tag.
        prop_assert!(sphinx.new_opaque_packet(&mut r, &path(&ns, [9; 32], None), &body).is_err());
        prop_assert!(sphinx.new_opaque_packet(&mut r, &path(&ns, [9; 32], Some([4; 16])), &body[1..]).is_err());
    }

    /// Flipping any one bit of a packet makes some hop reject it, or the payload that arrives is
    /// noise: never the original payload.
    #[test]
    fn any_bit_flip_is_caught(scheme in scheme_strategy(), bit_seed: u64, seed: u64) {
        let mut r = rng(seed);
        let sphinx = Sphinx::new(Geometry::new(scheme, 200, 5).unwrap());
        let ns = nodes(scheme, 5, &mut r);
        let mut payload = vec![0u8; 200];
        r.fill_bytes(&mut payload);
        let mut pkt = sphinx.new_packet(&mut r, &path(&ns, [1; 32], None), &payload).unwrap();
        let bit = (bit_seed as usize) % (pkt.len() * 8);
        pkt[bit / 8] ^= 1 << (bit % 8);
        match deliver(&sphinx, &ns, pkt) {
            Err(_) => {}
            Ok(got) => prop_assert_ne!(got, payload),
        }
    }
}

/// Tampering with the payload, at any hop, is detected at the last hop (the tag turns to noise).
#[test]
fn tagging_attack_turns_payload_to_noise() {
    for scheme in Scheme::ALL {
        let mut r = rng(42);
        let sphinx = Sphinx::new(Geometry::default_for(scheme));
        let ns = nodes(scheme, 5, &mut r);
        let payload = vec![0x55u8; sphinx.geometry().forward_payload_len()];
        for hop in 0..5 {
            let mut pkt = sphinx.new_packet(&mut r, &path(&ns, [1; 32], None), &payload).unwrap();
            for (i, n) in ns.iter().enumerate() {
                if i == hop {
                    let last = pkt.len() - 1;
                    pkt[last] ^= 0x80;
                }
                match sphinx.unwrap(&n.key, &mut pkt) {
                    Ok(_) if i + 1 < ns.len() => {}
                    Ok(_) => panic!("{scheme:?}: tampered payload accepted"),
                    Err(e) => {
                        assert_eq!(i + 1, ns.len(), "{scheme:?}: only the last hop can notice");
                        assert_eq!(e, UnwrapError::PayloadTag);
                    }
                }
            }
        }
    }
}

/// Wrong key, wrong length, wrong version, low-order element and garbage are all typed errors.
#[test]
fn bad_packets_are_rejected_without_panic() {
    for scheme in Scheme::ALL {
        let mut r = rng(7);
        let sphinx = Sphinx::new(Geometry::default_for(scheme));
        let ns = nodes(scheme, 2, &mut r);
        let payload = vec![1u8; sphinx.geometry().forward_payload_len()];
        let pkt = sphinx.new_packet(&mut r, &path(&ns, [1; 32], None), &payload).unwrap();

        let mut wrong_node = pkt.clone();
        assert!(sphinx.unwrap(&ns[1].key, &mut wrong_node).is_err());
        let mut short = pkt[..pkt.len() - 1].to_vec();
        assert_eq!(sphinx.unwrap(&ns[0].key, &mut short).unwrap_err(), UnwrapError::Length);
        let mut version = pkt.clone();
        version[0] = 1;
        assert_eq!(sphinx.unwrap(&ns[0].key, &mut version).unwrap_err(), UnwrapError::Version);
        let mut zeros = vec![0u8; pkt.len()];
        assert!(sphinx.unwrap(&ns[0].key, &mut zeros).is_err());
        let mut garbage = vec![0u8; pkt.len()];
        r.fill_bytes(&mut garbage);
        garbage[..2].copy_from_slice(&[0, 0]);
        assert!(sphinx.unwrap(&ns[0].key, &mut garbage).is_err());
        let other = if scheme == Scheme::XWing { Scheme::X25519Kem } else { Scheme::XWing };
        let foreign = qanat_packet::SecretKey::generate(other, &mut r);
        let mut p = pkt.clone();
        assert_eq!(sphinx.unwrap(&foreign, &mut p).unwrap_err(), UnwrapError::KeyScheme);
        // And the untouched packet still unwraps.
        let mut ok = pkt.clone();
        assert!(sphinx.unwrap(&ns[0].key, &mut ok).is_ok());
    }
}

/// A replayed packet has the same replay tag at a hop; two packets never share one.
#[test]
fn replay_tags_identify_replays() {
    for scheme in Scheme::ALL {
        let mut r = rng(9);
        let sphinx = Sphinx::new(Geometry::default_for(scheme));
        let ns = nodes(scheme, 3, &mut r);
        let payload = vec![2u8; sphinx.geometry().forward_payload_len()];
        let a = sphinx.new_packet(&mut r, &path(&ns, [1; 32], None), &payload).unwrap();
        let b = sphinx.new_packet(&mut r, &path(&ns, [1; 32], None), &payload).unwrap();
        let (mut a1, mut a2, mut b1) = (a.clone(), a.clone(), b.clone());
        let ta = sphinx.unwrap(&ns[0].key, &mut a1).unwrap().replay_tag;
        let ta2 = sphinx.unwrap(&ns[0].key, &mut a2).unwrap().replay_tag;
        let tb = sphinx.unwrap(&ns[0].key, &mut b1).unwrap().replay_tag;
        assert_eq!(ta, ta2);
        assert_ne!(ta, tb);
        assert_eq!(sphinx.replay_tag(&a).unwrap(), ta);
    }
}

/// Commands that do not fit, or a `NextNodeHop` passed by the caller, are refused at creation.
#[test]
fn bad_paths_are_refused() {
    use qanat_packet::{CreateError, NextNodeHop, NodeId, RoutingCommand};
    let mut r = rng(3);
    let scheme = Scheme::X25519Kem;
    let sphinx = Sphinx::new(Geometry::default_for(scheme));
    let ns = nodes(scheme, 6, &mut r);
    let payload = vec![0u8; sphinx.geometry().forward_payload_len()];
    assert!(matches!(
        sphinx.new_packet(&mut r, &path(&ns, [1; 32], None), &payload),
        Err(CreateError::PathLength { got: 6, max: 5 })
    ));
    assert!(matches!(
        sphinx.new_packet(&mut r, &path(&ns[..2], [1; 32], None), &payload[1..]),
        Err(CreateError::PayloadLength { .. })
    ));
    let mut p = path(&ns[..2], [1; 32], None);
    p[0].commands.push(RoutingCommand::NextNodeHop(NextNodeHop { id: NodeId([0; 32]), mac: [0; 32] }));
    assert!(matches!(sphinx.new_packet(&mut r, &p, &payload), Err(CreateError::InvalidCommands { hop: 0 })));
    let mut p = path(&ns[..2], [1; 32], None);
    p[1].commands.extend(std::iter::repeat_n(RoutingCommand::SurbReply(qanat_packet::SurbId([0; 16])), 5));
    assert!(matches!(sphinx.new_packet(&mut r, &p, &payload), Err(CreateError::CommandsTooLong { hop: 1 })));
}
