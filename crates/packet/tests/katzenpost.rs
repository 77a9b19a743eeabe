//! Katzenpost's vectors, reproduced byte for byte.
//!
//! - NIKE (`x25519`): Katzenpost's published `sphinx_vectors.json` and
//!   `sphinx_commands_vectors.json`.
//! - KEM (`x25519` through hpqc's NIKE-to-KEM adapter, and `XWING`): `kem/kem_sphinx_*_vectors.json`,
//!   made by running Katzenpost's own Go code (core/sphinx and hpqc, unmodified but for the
//!   randomness; `kem/SOURCE.md` there says how). They also record every random byte used, so
//!   packet and SURB *creation* is checked too, not only the unwrap.
//!
//! The vectors are read from `../shared/testvectors/katzenpost/` beside the project (never copied
//! into it). Where that folder is absent, as in a user's own clone, the tests say so and pass;
//! under `CI=true` its absence is a failure.

use std::path::PathBuf;

use qanat_packet::{
    Commands, Geometry, MailboxId, NodeDelay, NodeId, PathHop, PublicKey, RoutingCommand, Scheme, SecretKey,
    Sphinx, SurbId, SurbKeys,
};
use serde::Deserialize;

fn vectors(file: &str) -> Option<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testvectors/katzenpost");
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(s),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but the Katzenpost vectors are missing at {}: {e}",
                path.display()
            );
            eprintln!("SKIPPED: Katzenpost vectors not found at {} ({e})", path.display());
            None
        }
    }
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("vector hex")
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Node {
    #[serde(rename = "ID")]
    id: String,
    private_key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Hop {
    #[serde(rename = "ID")]
    id: String,
    public_key: String,
    commands: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Case {
    nodes: Vec<Node>,
    path: Vec<Hop>,
    packets: Vec<String>,
    payload: String,
    surb: String,
    surb_keys: String,
}

/// All ten cases of `sphinx_vectors.json`: every hop's packet, commands, the final payload, and for
/// SURB cases the reply packet built from the SURB and the decrypted reply.
#[test]
fn sphinx_vectors_byte_for_byte() {
    let Some(json) = vectors("sphinx_vectors.json") else { return };
    let cases: Vec<Case> = serde_json::from_str(&json).expect("vector JSON");
    assert_eq!(cases.len(), 10);
    // The vectors were made with GeometryFromUserForwardPayloadLength(x25519, 103, withSURB, 5).
    // Both geometries have the same header; SURB replies in the vectors carry the 103-byte
    // payload, so every packet is 611 bytes, which is the geometry with a 103-byte payload.
    let sphinx = Sphinx::new(Geometry::new(Scheme::X25519Nike, 103, 5).unwrap());
    let with_surb = Geometry::from_user_forward_payload_length(Scheme::X25519Nike, 103, true, 5).unwrap();
    assert_eq!(with_surb.header_len(), sphinx.geometry().header_len());

    let mut surb_cases = 0;
    for (n, case) in cases.iter().enumerate() {
        let payload = unhex(&case.payload);
        let mut packet = unhex(&case.packets[0]);
        assert_eq!(packet.len(), sphinx.geometry().packet_len(), "case {n}");
        let is_surb = !case.surb.is_empty();
        if is_surb {
            surb_cases += 1;
            let surb = unhex(&case.surb);
            assert_eq!(surb.len(), with_surb.surb_len());
            let (built, first) = sphinx.new_packet_from_surb(&surb, &payload).unwrap();
            assert_eq!(built, packet, "case {n}: reply packet from SURB");
            assert_eq!(first.0.to_vec(), unhex(&case.path[0].id), "case {n}: SURB first hop");
        }
        for (i, node) in case.nodes.iter().enumerate() {
            assert_eq!(node.id, case.path[i].id);
            let key = SecretKey::from_bytes(Scheme::X25519Nike, &unhex(&node.private_key)).unwrap();
            assert_eq!(
                key.public_key().to_bytes(),
                unhex(&case.path[i].public_key),
                "case {n} hop {i}: public key"
            );
            let tag = sphinx.replay_tag(&packet).unwrap();
            let mut tagged = packet.clone();
            let out = sphinx.unwrap(&key, &mut packet).unwrap_or_else(|e| panic!("case {n} hop {i}: {e}"));
            assert_eq!(out.replay_tag, tag);
            // The pre-computed tag path gives the same packet, tag, commands and payload.
            let out_tagged = sphinx.unwrap_with_tag(&key, &mut tagged, tag).unwrap();
            assert_eq!(tagged, packet, "case {n} hop {i}: unwrap_with_tag");
            assert_eq!(out_tagged.replay_tag, tag);
            assert_eq!(out_tagged.commands, out.commands);
            assert_eq!(out_tagged.payload(&tagged), out.payload(&packet));
            let want: Vec<Vec<u8>> = case.path[i].commands.iter().map(|c| unhex(c)).collect();
            if i + 1 == case.path.len() {
                let c = out.commands;
                assert!(c.next_hop.is_none() && c.delay.is_none());
                assert_eq!(RoutingCommand::Recipient(c.recipient.unwrap()).to_bytes(), want[0]);
                let got = out.payload(&packet).unwrap();
                if is_surb {
                    assert_eq!(want.len(), 2);
                    assert_eq!(RoutingCommand::SurbReply(c.surb_reply.unwrap()).to_bytes(), want[1]);
                    let keys = SurbKeys::from_bytes(&unhex(&case.surb_keys)).unwrap();
                    let reply = sphinx.decrypt_surb_payload(got, &keys).unwrap();
                    assert_eq!(reply, payload, "case {n}: SURB reply payload");
                } else {
                    assert_eq!(want.len(), 1);
                    assert!(c.surb_reply.is_none());
                    assert_eq!(got, &payload[..], "case {n}: final payload");
                }
            } else {
                assert_eq!(packet, unhex(&case.packets[i + 1]), "case {n} hop {i}: forwarded packet");
                let c = out.commands;
                assert_eq!(want.len(), 1);
                assert_eq!(RoutingCommand::NodeDelay(c.delay.unwrap()).to_bytes(), want[0]);
                assert_eq!(c.next_hop.unwrap().id.0.to_vec(), unhex(&case.path[i + 1].id));
                assert!(out.payload(&packet).is_none());
            }
        }
    }
    assert_eq!(surb_cases, 5);
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CommandVectors {
    #[serde(rename = "NextHopID")]
    next_hop_id: String,
    #[serde(rename = "NextHopMAC")]
    next_hop_mac: String,
    next_hop_cmd_want: String,
    #[serde(rename = "RecipientID")]
    recipient_id: String,
    recipient_cmd_want: String,
    #[serde(rename = "SURBReplyID")]
    surb_reply_id: String,
    #[serde(rename = "SURBReplyCmdWant")]
    surb_reply_cmd_want: String,
    node_delay: u32,
    node_delay_cmd_want: String,
}

/// `sphinx_commands_vectors.json`: each command encodes to the published bytes and decodes back.
#[test]
fn sphinx_command_vectors() {
    let Some(json) = vectors("sphinx_commands_vectors.json") else { return };
    let v: CommandVectors = serde_json::from_str(&json).expect("vector JSON");
    let cases = [
        (
            RoutingCommand::NextNodeHop(qanat_packet::NextNodeHop {
                id: NodeId(unhex(&v.next_hop_id).try_into().unwrap()),
                mac: unhex(&v.next_hop_mac).try_into().unwrap(),
            }),
            v.next_hop_cmd_want,
        ),
        (
            RoutingCommand::Recipient(MailboxId(unhex(&v.recipient_id).try_into().unwrap())),
            v.recipient_cmd_want,
        ),
        (
            RoutingCommand::SurbReply(SurbId(unhex(&v.surb_reply_id).try_into().unwrap())),
            v.surb_reply_cmd_want,
        ),
        (RoutingCommand::NodeDelay(NodeDelay { delay_ms: v.node_delay }), v.node_delay_cmd_want),
    ];
    for (cmd, want) in cases {
        let want = unhex(&want);
        assert_eq!(cmd.to_bytes(), want);
        let decoded = qanat_packet::Commands::decode(&want).unwrap();
        let again = match cmd {
            RoutingCommand::NextNodeHop(_) => RoutingCommand::NextNodeHop(decoded.next_hop.unwrap()),
            RoutingCommand::Recipient(_) => RoutingCommand::Recipient(decoded.recipient.unwrap()),
            RoutingCommand::SurbReply(_) => RoutingCommand::SurbReply(decoded.surb_reply.unwrap()),
            RoutingCommand::NodeDelay(_) => RoutingCommand::NodeDelay(decoded.delay.unwrap()),
        };
        assert_eq!(again, cmd);
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KemNode {
    #[serde(rename = "ID")]
    id: String,
    private_key: String,
    #[serde(default)]
    private_key_seed: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KemCase {
    #[serde(rename = "KEM")]
    kem: String,
    nr_hops: usize,
    user_forward_payload_length: usize,
    #[serde(rename = "WithSURB")]
    with_surb: bool,
    nodes: Vec<KemNode>,
    path: Vec<Hop>,
    packets: Vec<String>,
    payload: String,
    surb: String,
    surb_keys: String,
    #[serde(rename = "RNG")]
    rng: String,
    #[serde(rename = "KEMCiphertexts")]
    kem_ciphertexts: Vec<String>,
}

/// Hands out the vector's recorded random bytes, in the order Katzenpost drew them.
struct Replay<'a>(&'a [u8]);

impl chacha20::rand_core::TryRng for Replay<'_> {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        assert!(dst.len() <= self.0.len(), "drew more randomness than the vector recorded");
        let (head, rest) = self.0.split_at(dst.len());
        dst.copy_from_slice(head);
        self.0 = rest;
        Ok(())
    }
}
impl chacha20::rand_core::TryCryptoRng for Replay<'_> {}

/// One command's wire bytes, as a builder command.
fn command(bytes: &[u8]) -> RoutingCommand {
    let c = Commands::decode(bytes).expect("vector command");
    let cmd = match (c.next_hop, c.recipient, c.surb_reply, c.delay) {
        (None, Some(r), None, None) => RoutingCommand::Recipient(r),
        (None, None, Some(s), None) => RoutingCommand::SurbReply(s),
        (None, None, None, Some(d)) => RoutingCommand::NodeDelay(d),
        other => panic!("unexpected vector command {other:?}"),
    };
    assert_eq!(cmd.to_bytes(), bytes);
    cmd
}

/// Every case of one KEM vector file: keys, creation from the recorded randomness (the forward
/// packet, or the SURB, its keys and the reply built from it), every hop's unwrap, the commands,
/// the final payload, and the SURB reply's decryption.
fn kem_vectors(file: &str, scheme: Scheme, kem_name: &str) {
    let Some(json) = vectors(&format!("kem/{file}")) else { return };
    let cases: Vec<KemCase> = serde_json::from_str(&json).expect("vector JSON");
    assert_eq!(cases.len(), 10, "{file}");
    let mut surb_cases = 0;
    for (n, case) in cases.iter().enumerate() {
        assert_eq!(case.kem, kem_name);
        assert_eq!(case.with_surb, !case.surb.is_empty());
        // KEMGeometryFromUserForwardPayloadLength(kem, 103, withSURB, 5): as for the NIKE vectors,
        // every packet (SURB replies included) carries the 103-byte payload, so the geometry is
        // the one whose forward payload is 103 bytes; "with SURB" has the same header.
        let sphinx =
            Sphinx::new(Geometry::new(scheme, case.user_forward_payload_length, case.nr_hops).unwrap());
        let with_surb = Geometry::from_user_forward_payload_length(
            scheme,
            case.user_forward_payload_length,
            true,
            case.nr_hops,
        )
        .unwrap();
        assert_eq!(with_surb.header_len(), sphinx.geometry().header_len());
        let payload = unhex(&case.payload);
        assert_eq!(payload.len(), sphinx.geometry().forward_payload_len());

        // Keys: Katzenpost's encoding is the X25519 scalar, or X-Wing's public key || seed.
        let keys: Vec<SecretKey> = case
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                assert_eq!(node.id, case.path[i].id);
                let sk = match scheme {
                    Scheme::XWing => {
                        let seed = unhex(node.private_key_seed.as_deref().expect("X-Wing seed"));
                        let encoded = unhex(&node.private_key);
                        assert_eq!(&encoded[encoded.len() - 32..], &seed[..], "case {n} hop {i}: seed");
                        SecretKey::from_bytes(scheme, &seed).unwrap()
                    }
                    _ => SecretKey::from_bytes(scheme, &unhex(&node.private_key)).unwrap(),
                };
                let public = unhex(&case.path[i].public_key);
                assert_eq!(sk.public_key().to_bytes(), public, "case {n} hop {i}: public key");
                if scheme == Scheme::XWing {
                    assert_eq!(&unhex(&node.private_key)[..public.len()], &public[..]);
                }
                sk
            })
            .collect();
        let path: Vec<PathHop> = case
            .path
            .iter()
            .map(|h| PathHop {
                id: NodeId(unhex(&h.id).try_into().unwrap()),
                public_key: PublicKey::from_bytes(scheme, &unhex(&h.public_key)).unwrap(),
                commands: h.commands.iter().map(|c| command(&unhex(c))).collect(),
            })
            .collect();

        // Creation, replaying Katzenpost's randomness.
        let randomness = unhex(&case.rng);
        let mut rng = Replay(&randomness);
        let mut packet = unhex(&case.packets[0]);
        assert_eq!(packet.len(), sphinx.geometry().packet_len(), "case {n}");
        let surb_keys = if case.with_surb {
            surb_cases += 1;
            let (surb, keys) = sphinx.new_surb(&mut rng, &path).unwrap();
            assert!(rng.0.is_empty(), "case {n}: randomness left over");
            assert_eq!(surb.len(), with_surb.surb_len());
            assert_eq!(hex::encode(&surb), case.surb, "case {n}: SURB");
            assert_eq!(hex::encode(keys.as_bytes()), case.surb_keys, "case {n}: SURB keys");
            let (built, first) = sphinx.new_packet_from_surb(&surb, &payload).unwrap();
            assert_eq!(built, packet, "case {n}: reply packet from SURB");
            assert_eq!(first.0.to_vec(), unhex(&case.path[0].id), "case {n}: SURB first hop");
            Some(keys)
        } else {
            let built = sphinx.new_packet(&mut rng, &path, &payload).unwrap();
            assert!(rng.0.is_empty(), "case {n}: randomness left over");
            assert_eq!(built, packet, "case {n}: packet creation");
            None
        };

        // Every hop's unwrap.
        let element = 2..2 + scheme.element_len();
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(hex::encode(&packet[element.clone()]), case.kem_ciphertexts[i], "case {n} hop {i}");
            let tag = sphinx.replay_tag(&packet).unwrap();
            let mut tagged = packet.clone();
            let out = sphinx.unwrap(key, &mut packet).unwrap_or_else(|e| panic!("case {n} hop {i}: {e}"));
            assert_eq!(out.replay_tag, tag);
            let out_tagged = sphinx.unwrap_with_tag(key, &mut tagged, tag).unwrap();
            assert_eq!(tagged, packet, "case {n} hop {i}: unwrap_with_tag");
            assert_eq!(out_tagged.commands, out.commands);
            let want: Vec<Vec<u8>> = case.path[i].commands.iter().map(|c| unhex(c)).collect();
            let c = out.commands;
            if i + 1 == case.path.len() {
                assert_eq!(case.packets[i + 1], "", "case {n}: no packet after the last hop");
                assert!(c.next_hop.is_none() && c.delay.is_none());
                assert_eq!(RoutingCommand::Recipient(c.recipient.unwrap()).to_bytes(), want[0]);
                let got = out.payload(&packet).unwrap();
                if let Some(keys) = &surb_keys {
                    assert_eq!(want.len(), 2);
                    assert_eq!(RoutingCommand::SurbReply(c.surb_reply.unwrap()).to_bytes(), want[1]);
                    let reply = sphinx.decrypt_surb_payload(got, keys).unwrap();
                    assert_eq!(reply, payload, "case {n}: SURB reply payload");
                    // The keys as Katzenpost recorded them decrypt it too.
                    let recorded = SurbKeys::from_bytes(&unhex(&case.surb_keys)).unwrap();
                    assert_eq!(sphinx.decrypt_surb_payload(got, &recorded).unwrap(), payload);
                } else {
                    assert_eq!(want.len(), 1);
                    assert!(c.surb_reply.is_none());
                    assert_eq!(got, &payload[..], "case {n}: final payload");
                }
            } else {
                assert_eq!(hex::encode(&packet), case.packets[i + 1], "case {n} hop {i}: forwarded packet");
                assert_eq!(want.len(), 1);
                assert_eq!(RoutingCommand::NodeDelay(c.delay.unwrap()).to_bytes(), want[0]);
                assert_eq!(c.next_hop.unwrap().id.0.to_vec(), unhex(&case.path[i + 1].id));
                assert!(out.payload(&packet).is_none());
            }
        }
    }
    assert_eq!(surb_cases, 5, "{file}");
}

/// Katzenpost's KEM Sphinx over hpqc's X25519 NIKE-to-KEM adapter (BLAKE2Xb PRF), all ten cases.
#[test]
fn kem_x25519_vectors_byte_for_byte() {
    kem_vectors("kem_sphinx_x25519_vectors.json", Scheme::X25519Kem, "x25519");
}

/// Katzenpost's KEM Sphinx over X-Wing, all ten cases.
#[test]
fn kem_xwing_vectors_byte_for_byte() {
    kem_vectors("kem_sphinx_xwing_vectors.json", Scheme::XWing, "XWING");
}
