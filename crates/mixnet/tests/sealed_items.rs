//! What a gateway holds in memory on the egress path, for every kind of packet a client sends, is
//! random bytes of one length, different in every mailbox even for one group message.
//!
//! Real client packets (the `sending` layer: DATA fragments with their SURBs, acknowledgements
//! through those SURBs, loops, drops) cross an ingress gateway and three mixes and reach a real
//! egress [`Gateway`] core; its store requests are what it would write to disk.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::Duration;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use qanat_mixnet::sending::seal::{self, SealKey};
use qanat_mixnet::sending::{NetworkView, Outbox, Payload, ResendPolicy, Route, ack_packet, cover_packet};
use qanat_mixnet::{
    AckToken, EpochWindow, Gateway, GatewayConfig, Hop, MailboxItem, StoreRequest, Topology, UnixMicros,
};
use qanat_packet::{Geometry, MailboxId, NodeId, Scheme, SecretKey, Sphinx};

const SCHEME: Scheme = Scheme::X25519Kem;

struct Net {
    sphinx: Sphinx,
    /// Every node's key (the gateway's too: it is ingress and egress).
    keys: HashMap<NodeId, SecretKey>,
    topology: Topology,
    gateway: Gateway,
    gw: NodeId,
}

impl Net {
    fn new(rng: &mut ChaCha20Rng) -> Self {
        let geometry = Geometry::default_for(SCHEME);
        let mut keys = HashMap::new();
        let mut hop = |n: u8, rng: &mut ChaCha20Rng| {
            let k = SecretKey::generate(SCHEME, rng);
            let h = Hop { id: NodeId([n; 32]), key: k.public_key() };
            keys.insert(h.id, k);
            h
        };
        let gw = hop(1, rng);
        let layers = (0..3).map(|l| vec![hop(10 + l, rng)]).collect();
        let topology = Topology { epoch: 0, layers, gateways: vec![gw.clone()] };
        let mut gateway = Gateway::new(GatewayConfig::new(gw.id), geometry.clone());
        let k = SecretKey::from_bytes(SCHEME, &keys[&gw.id].to_bytes()[..]).unwrap();
        let window = EpochWindow {
            start: UnixMicros::ZERO,
            end: UnixMicros::ZERO + Duration::from_secs(3600),
            grace: Duration::from_secs(60),
        };
        gateway.add_epoch_key(0, k, window);
        gateway.add_topology(topology.clone());
        Self { sphinx: Sphinx::new(geometry), keys, topology, gateway, gw: gw.id }
    }

    fn view(&self) -> NetworkView {
        NetworkView {
            topology: self.topology.clone(),
            mean_delay: Duration::from_millis(10),
            gateway: self.gw,
        }
    }

    /// Takes `packet` through the ingress hop and the three mixes, then into the egress core;
    /// returns what the core asks the store to write (none for a packet it drops).
    fn deliver(&mut self, mut packet: Vec<u8>) -> Option<StoreRequest> {
        let mut at = self.gw;
        for _ in 0..4 {
            let out = self.sphinx.unwrap(&self.keys[&at], &mut packet).unwrap();
            let last_mix = at;
            at = out.commands.next_hop.expect("a next hop").id;
            if at == self.gw {
                self.gateway.handle_mix_packet(UnixMicros::ZERO, last_mix, AckToken(0), packet).ok()?;
                return self.gateway.poll_store();
            }
        }
        panic!("the path did not come back to the gateway")
    }
}

fn item_body(req: &StoreRequest) -> MailboxItem {
    MailboxItem::decode(&req.item).unwrap()
}

#[test]
fn every_item_on_the_egress_path_is_random_bytes_of_one_length() {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let mut net = Net::new(&mut rng);
    let g = net.sphinx.geometry().clone();
    let view = net.view();
    let mut outbox =
        Outbox::new(ResendPolicy { first: Duration::from_secs(5), max: Duration::from_secs(60) });
    let alice_home = (MailboxId([0xa0; 32]), SealKey::random(&mut rng));
    // Three members of a group (one mailbox each) and two contacts.
    let routes: Vec<Route> = (0..5u8)
        .map(|i| Route {
            gateway: net.gw,
            mailbox: MailboxId([0x10 + i; 32]),
            seal: SealKey::random(&mut rng),
        })
        .collect();
    let group_message = vec![0x42u8; 700];
    for r in &routes[..3] {
        // One MLS ciphertext, the same bytes for every member.
        outbox.queue(&g, *r, alice_home.0, &group_message, &mut rng).unwrap();
    }
    for r in &routes[3..] {
        outbox.queue(&g, *r, alice_home.0, b"hello, in the clear inside the seal", &mut rng).unwrap();
    }
    let mut stored: Vec<StoreRequest> = Vec::new();
    while let Some(p) = outbox.next_packet(UnixMicros::ZERO, &net.sphinx, &view, &mut rng) {
        stored.push(net.deliver(p.packet).expect("stored"));
    }
    assert_eq!(stored.len(), 5);
    // Each recipient opens its item and acknowledges through the SURB inside.
    let mut acks = Vec::new();
    for req in &stored {
        let route = routes.iter().find(|r| r.mailbox == req.mailbox).unwrap();
        let item = item_body(req);
        let plain = seal::open(&route.seal, &item.id.0, &item.body).unwrap();
        let Payload::Data { surb, message_id, index, .. } = Payload::decode(&g, &plain).unwrap() else {
            panic!("not data")
        };
        acks.push(ack_packet(&net.sphinx, &surb, message_id, index, &mut rng).unwrap().packet);
    }
    for a in acks {
        let req = net.deliver(a).expect("stored");
        assert_eq!(req.mailbox, alice_home.0);
        let item = item_body(&req);
        assert!(outbox.handle_reply(&net.sphinx, item.id, &item.body), "the ack opens for its sender");
        stored.push(req);
    }
    // Loops, and drops (to a random mailbox: the store would refuse them, the core still asks).
    for _ in 0..3 {
        let l = cover_packet(&net.sphinx, &view, Some(alice_home), &mut rng).unwrap();
        stored.push(net.deliver(l.packet).expect("stored"));
        let d = cover_packet(&net.sphinx, &view, None, &mut rng).unwrap();
        stored.push(net.deliver(d.packet).expect("stored"));
    }
    assert_eq!(stored.len(), 16, "5 fragments, 5 acknowledgements, 3 loops, 3 drops");

    let len = MailboxItem::encoded_len(&g);
    let mut runs: HashMap<&[u8], usize> = HashMap::new();
    for (i, req) in stored.iter().enumerate() {
        assert_eq!(req.item.len(), len, "every kind stored at one length");
        for w in req.item.windows(16) {
            if let Some(j) = runs.insert(w, i)
                && j != i
            {
                panic!("items {j} and {i} share a 16-byte run");
            }
        }
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&req.item).unwrap();
        let compressed = z.finish().unwrap();
        assert!(compressed.len() >= req.item.len(), "item {i} compresses to {} of {len}", compressed.len());
    }
}
