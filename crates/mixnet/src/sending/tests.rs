//! The sending layer end to end: messages, acknowledgements and cover from one client to another
//! through an in-memory network (each hop unwrapped with its key), with loss.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chacha20::ChaCha20Rng;
use qanat_packet::{Geometry, MailboxId, NodeId, Scheme, SecretKey, Sphinx, SurbId};
use rand_core::{Rng as _, SeedableRng as _};

use super::acks::{self, AckGroup, AckQueue, AckStats};
use super::seal::{self, SealKey};
use super::*;
use crate::{Hop, Topology, UnixMicros};

const SCHEME: Scheme = Scheme::X25519Kem;

/// The source of the inbox's fragments.
const SRC: Source = [9; 16];

fn geometry() -> Geometry {
    Geometry::default_for(SCHEME)
}

/// A network of 2 gateways and 3 layers of 2 mixes, unwrapped in memory.
pub(super) struct Net {
    pub(super) sphinx: Sphinx,
    keys: HashMap<NodeId, SecretKey>,
    topology: Topology,
    pub(super) gw: [NodeId; 2],
}

/// Where a packet ended.
pub(super) struct Arrival {
    pub(super) gateway: NodeId,
    pub(super) recipient: MailboxId,
    pub(super) surb_id: Option<SurbId>,
    pub(super) payload: Vec<u8>,
}

impl Net {
    pub(super) fn new(rng: &mut ChaCha20Rng) -> Self {
        let mut keys = HashMap::new();
        let mut hop = |n: u8, rng: &mut ChaCha20Rng| {
            let k = SecretKey::generate(SCHEME, rng);
            let h = Hop { id: NodeId([n; 32]), key: k.public_key() };
            keys.insert(h.id, k);
            h
        };
        let gateways = vec![hop(1, rng), hop(2, rng)];
        let layers = (0..3).map(|l| vec![hop(10 + 2 * l, rng), hop(11 + 2 * l, rng)]).collect();
        let topology = Topology { epoch: 1, layers, gateways };
        Self { sphinx: Sphinx::new(geometry()), keys, topology, gw: [NodeId([1; 32]), NodeId([2; 32])] }
    }

    pub(super) fn view(&self, gw: usize) -> NetworkView {
        NetworkView {
            topology: self.topology.clone(),
            mean_delay: Duration::from_millis(10),
            gateway: self.gw[gw],
        }
    }

    /// Sends `packet` into gateway `first` and follows it to its last hop.
    pub(super) fn deliver(&self, first: NodeId, mut packet: Vec<u8>) -> Arrival {
        let mut at = first;
        loop {
            let out = self.sphinx.unwrap(&self.keys[&at], &mut packet).unwrap();
            match out.commands.next_hop {
                Some(next) => at = next.id,
                None => {
                    return Arrival {
                        gateway: at,
                        recipient: out.commands.recipient.unwrap(),
                        surb_id: out.commands.surb_reply,
                        payload: out.payload(&packet).unwrap().to_vec(),
                    };
                }
            }
        }
    }
}

/// Alice sends messages to Bob through the (in-memory) network; `lose` decides which packets
/// (data or acks) are lost. Returns what Bob delivered and Alice's final states.
fn exchange(
    seed: u64,
    messages: &[Vec<u8>],
    lose: impl Fn(&mut ChaCha20Rng) -> bool,
) -> (Vec<Vec<u8>>, usize) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let net = Net::new(&mut rng);
    let g = geometry();
    let (alice_view, bob_view) = (net.view(0), net.view(1));
    let bob_mailbox = MailboxId([0xb0; 32]);
    let bob_key = SealKey([0xb5; 32]);
    let alice_reply = MailboxId([0xa1; 32]);
    let policy = ResendPolicy { first: Duration::from_secs(2), max: Duration::from_secs(30) };
    let mut outbox = Outbox::new(policy);
    let mut inbox = Inbox::default();
    let ids: Vec<MessageId> = messages
        .iter()
        .map(|m| {
            outbox
                .queue(
                    &g,
                    Route { gateway: net.gw[1], mailbox: bob_mailbox, seal: bob_key },
                    alice_reply,
                    m,
                    &mut rng,
                )
                .unwrap()
        })
        .collect();
    let mut delivered = Vec::new();
    let mut now = UnixMicros::ZERO;
    let mut sends = 0;
    for _ in 0..10_000 {
        now = now + Duration::from_millis(100);
        outbox.handle_timeout(now);
        let Some(p) = outbox.next_packet(now, &net.sphinx, &alice_view, &mut rng) else {
            if ids.iter().all(|id| outbox.state(id).is_none()) {
                break;
            }
            continue;
        };
        sends += 1;
        if lose(&mut rng) {
            continue;
        }
        let a = net.deliver(net.gw[0], p.packet);
        assert_eq!((a.gateway, a.recipient), (net.gw[1], bob_mailbox));
        let plain = seal::open(&bob_key, &a.surb_id.unwrap().0, &a.payload).unwrap();
        let Payload::Data { surb, message_id, index, count, data } = Payload::decode(&g, &plain).unwrap()
        else {
            panic!("not data")
        };
        match inbox.handle(now, SRC, message_id, index, count, data) {
            Received::Message(id, bytes) => {
                inbox.commit(id, now);
                delivered.push(bytes);
            }
            Received::Partial | Received::Duplicate => {}
            Received::Refused => panic!("refused"),
        }
        // Bob acknowledges through the SURB, via his own gateway.
        let ack = ack_packet(&net.sphinx, &surb, message_id, index, &mut rng).unwrap();
        if lose(&mut rng) {
            continue;
        }
        let a = net.deliver(bob_view.gateway, ack.packet);
        assert_eq!((a.gateway, a.recipient), (net.gw[0], alice_reply));
        assert!(outbox.handle_reply(&net.sphinx, a.surb_id.unwrap(), &a.payload));
    }
    for id in &ids {
        assert_eq!(outbox.state(id), None, "every message delivered and forgotten");
    }
    let mut states = BTreeMap::new();
    while let Some(OutboxEvent::State(id, s)) = outbox.poll_event() {
        states.insert(id, s);
    }
    assert!(states.values().all(|s| *s == Delivery::Delivered));
    (delivered, sends)
}

#[test]
fn messages_of_many_fragments_arrive_once_and_are_acknowledged() {
    let msgs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + 900 * usize::from(i)]).collect();
    let (got, sends) = exchange(7, &msgs, |_| false);
    assert_eq!(got, msgs);
    let fragments: usize =
        msgs.iter().map(|m| m.len().div_ceil(fragment_capacity(&geometry()).unwrap())).sum();
    assert_eq!(sends, fragments, "no resend without loss");
}

#[test]
fn with_thirty_percent_loss_everything_still_arrives_exactly_once() {
    for seed in 0..5 {
        let msgs: Vec<Vec<u8>> =
            (0..8u8).map(|i| vec![i ^ seed as u8; 50 + 700 * usize::from(i % 4)]).collect();
        let (got, sends) = exchange(100 + seed, &msgs, |rng| rng.next_u32() % 10 < 3);
        let want: BTreeSet<_> = msgs.iter().cloned().collect();
        assert_eq!(got.len(), msgs.len(), "each delivered once");
        assert_eq!(got.iter().cloned().collect::<BTreeSet<_>>(), want);
        assert!(sends > msgs.len());
    }
}

/// Sends the next packet of `outbox` through `net` and returns the SURB it carried.
fn send_one(
    net: &Net,
    outbox: &mut Outbox,
    now: UnixMicros,
    key: &SealKey,
    rng: &mut ChaCha20Rng,
) -> Vec<u8> {
    let g = geometry();
    let p = outbox.next_packet(now, &net.sphinx, &net.view(0), rng).unwrap();
    let a = net.deliver(net.gw[0], p.packet);
    let plain = seal::open(key, &a.surb_id.unwrap().0, &a.payload).unwrap();
    let Payload::Data { surb, .. } = Payload::decode(&g, &plain).unwrap() else { panic!() };
    surb
}

/// Replies through `surb` with `entries` and hands the reply to `outbox`.
fn reply(net: &Net, outbox: &mut Outbox, surb: &[u8], entries: Vec<AckEntry>, rng: &mut ChaCha20Rng) -> bool {
    let r = acks_packet(&net.sphinx, surb, entries, rng).unwrap();
    let r = net.deliver(net.gw[1], r.packet);
    outbox.handle_reply(&net.sphinx, r.surb_id.unwrap(), &r.payload)
}

#[test]
fn a_forged_or_replayed_ack_changes_nothing() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let net = Net::new(&mut rng);
    let g = geometry();
    let mut outbox = Outbox::new(ResendPolicy { first: Duration::from_secs(1), max: Duration::from_secs(8) });
    let (ka, kb) = (SealKey([1; 32]), SealKey([3; 32]));
    let to_a = Route { gateway: net.gw[1], mailbox: MailboxId([1; 32]), seal: ka };
    let to_b = Route { gateway: net.gw[1], mailbox: MailboxId([3; 32]), seal: kb };
    let a = outbox.queue(&g, to_a, MailboxId([2; 32]), b"hi a", &mut rng).unwrap();
    let b = outbox.queue(&g, to_b, MailboxId([2; 32]), b"hi b", &mut rng).unwrap();
    let surb_a = send_one(&net, &mut outbox, UnixMicros::ZERO, &ka, &mut rng);
    let surb_b = send_one(&net, &mut outbox, UnixMicros::ZERO, &kb, &mut rng);
    let entry = |id: MessageId, i: u16| AckEntry { message_id: id, indices: vec![i] };

    // Through A's SURB: B's message (sent to another mailbox) and a fragment A's message does
    // not have are ignored.
    assert!(reply(&net, &mut outbox, &surb_a, vec![entry(b, 0), entry(a, 5)], &mut rng));
    assert_eq!((outbox.state(&a), outbox.state(&b)), (Some(Delivery::Sent), Some(Delivery::Sent)));
    // Garbage and unknown SURBs are refused; a SURB is read once.
    let r = acks_packet(&net.sphinx, &surb_b, vec![entry(b, 0), entry(a, 0)], &mut rng).unwrap();
    let r = net.deliver(net.gw[1], r.packet);
    assert!(!outbox.handle_reply(&net.sphinx, r.surb_id.unwrap(), &[0u8; 10]));
    assert!(!outbox.handle_reply(&net.sphinx, SurbId([0; 16]), &r.payload));
    assert!(outbox.handle_reply(&net.sphinx, r.surb_id.unwrap(), &r.payload));
    assert_eq!((outbox.state(&a), outbox.state(&b)), (Some(Delivery::Sent), None));
    assert!(!outbox.handle_reply(&net.sphinx, r.surb_id.unwrap(), &r.payload));
    // A's message, resent, is acknowledged through its own new SURB.
    outbox.handle_timeout(UnixMicros::ZERO + Duration::from_secs(60));
    let again = send_one(&net, &mut outbox, UnixMicros::ZERO + Duration::from_secs(60), &ka, &mut rng);
    assert!(reply(&net, &mut outbox, &again, vec![entry(a, 0)], &mut rng));
    assert_eq!(outbox.state(&a), None);
}

#[test]
fn one_reply_acknowledges_many_messages_to_one_mailbox() {
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let net = Net::new(&mut rng);
    let g = geometry();
    let key = SealKey([1; 32]);
    let route = Route { gateway: net.gw[1], mailbox: MailboxId([1; 32]), seal: key };
    let mut outbox =
        Outbox::new(ResendPolicy { first: Duration::from_secs(10), max: Duration::from_secs(80) });
    let big = vec![7u8; 20 * fragment_capacity(&g).unwrap()];
    let mut ids: Vec<MessageId> =
        (0..60u8).map(|i| outbox.queue(&g, route, MailboxId([2; 32]), &[i], &mut rng).unwrap()).collect();
    ids.push(outbox.queue(&g, route, MailboxId([2; 32]), &big, &mut rng).unwrap());
    let mut queue = AckQueue::default();
    let now = UnixMicros::ZERO;
    for _ in 0..80 {
        let p = outbox.next_packet(now, &net.sphinx, &net.view(0), &mut rng).unwrap();
        let a = net.deliver(net.gw[0], p.packet);
        let plain = seal::open(&key, &a.surb_id.unwrap().0, &a.payload).unwrap();
        let Payload::Data { surb, message_id, index, .. } = Payload::decode(&g, &plain).unwrap() else {
            panic!()
        };
        queue.add(now, AckGroup::Mailbox(MailboxId([1; 32])), surb, message_id, index);
    }
    assert_eq!(queue.len(), 80);
    let mut replies = 0;
    while let Some(r) = queue.next_packet(now, &net.sphinx, &mut rng) {
        replies += 1;
        let a = net.deliver(net.gw[1], r);
        assert!(outbox.handle_reply(&net.sphinx, a.surb_id.unwrap(), &a.payload));
    }
    assert_eq!(replies, 1, "80 fragments of 61 messages fit one reply");
    assert!(ids.iter().all(|id| outbox.state(id).is_none()), "all delivered");
    assert_eq!(queue.stats(), AckStats { replies: 1, fragments: 80, dropped: 0 });
}

#[test]
fn the_ack_queue_is_bounded_and_expires() {
    let mut rng = ChaCha20Rng::seed_from_u64(12);
    let net = Net::new(&mut rng);
    let mut queue = AckQueue::default();
    let now = UnixMicros::ZERO;
    // A flood of single-fragment messages, each its own group: the oldest fall out.
    for i in 0..(acks::MAX_PENDING as u32 + 100) {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        queue.add(now, AckGroup::Message(MessageId(id)), vec![0; 8], MessageId(id), 0);
    }
    assert_eq!(queue.len(), acks::MAX_PENDING);
    assert_eq!(queue.stats().dropped, 100);
    // Past their time they go too, unsent.
    let later = now + acks::ACK_TTL;
    assert!(queue.next_packet(later, &net.sphinx, &mut rng).is_none());
    assert!(queue.is_empty());
    assert_eq!(queue.stats().dropped, acks::MAX_PENDING as u64 + 100);
}

#[test]
fn cover_packets_reach_their_gateways() {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let net = Net::new(&mut rng);
    let me = MailboxId([5; 32]);
    let key = SealKey([6; 32]);
    let l = cover_packet(&net.sphinx, &net.view(0), Some((me, key)), &mut rng).unwrap();
    let a = net.deliver(net.gw[0], l.packet);
    assert_eq!((a.gateway, a.recipient), (net.gw[0], me));
    let plain = seal::open(&key, &a.surb_id.unwrap().0, &a.payload).unwrap();
    assert_eq!(Payload::decode(&geometry(), &plain).unwrap(), Payload::Cover);
    let d = cover_packet(&net.sphinx, &net.view(0), None, &mut rng).unwrap();
    let a = net.deliver(net.gw[0], d.packet);
    assert!(net.gw.contains(&a.gateway));
    // Every kind reaches its last hop in one form: a SURB-reply identifier and a payload of one
    // length (the gateway stores `id ‖ payload`).
    assert!(a.surb_id.is_some());
    assert_eq!(a.payload.len(), geometry().payload_tag_len() + geometry().forward_payload_len());
}

// Regression (soak, 30 minutes of churn): a contact's gateway missing from one epoch's directory
// (killed while the authorities voted) made building its packet fail, and the error stopped the
// whole client. Now that message waits and is tried again; the others leave in their slots.
#[test]
fn a_message_to_a_gateway_missing_from_the_directory_waits_and_does_not_fail_the_slot() {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let net = Net::new(&mut rng);
    let g = geometry();
    let mut outbox =
        Outbox::new(ResendPolicy { first: Duration::from_secs(10), max: Duration::from_secs(60) });
    let gone = NodeId([99; 32]);
    let to_gone = Route { gateway: gone, mailbox: MailboxId([5; 32]), seal: SealKey([6; 32]) };
    let to_b = Route { gateway: net.gw[1], mailbox: MailboxId([3; 32]), seal: SealKey([4; 32]) };
    let stuck = outbox.queue(&g, to_gone, MailboxId([7; 32]), b"to a missing gateway", &mut rng).unwrap();
    let fine = outbox.queue(&g, to_b, MailboxId([7; 32]), b"to a gateway we know", &mut rng).unwrap();
    let now = UnixMicros::ZERO;
    // The first slot goes to the message that can be sent.
    let p = outbox.next_packet(now, &net.sphinx, &net.view(0), &mut rng).expect("the routable one leaves");
    assert_eq!(net.deliver(net.gw[0], p.packet).gateway, net.gw[1]);
    assert_eq!(outbox.unroutable(), 1);
    assert_eq!(outbox.state(&fine), Some(Delivery::Sent));
    assert_eq!(outbox.state(&stuck), Some(Delivery::Queued));
    // Nothing else is due now.
    assert!(outbox.next_packet(now, &net.sphinx, &net.view(0), &mut rng).is_none());
    // After the wait it is tried again: with the gateway back in the directory, it leaves.
    let later = outbox.poll_timeout().unwrap();
    outbox.handle_timeout(later);
    let mut view = net.view(0);
    view.topology.gateways.push(Hop { id: gone, key: SecretKey::generate(SCHEME, &mut rng).public_key() });
    assert!(outbox.next_packet(later, &net.sphinx, &view, &mut rng).is_some());
    assert_eq!(outbox.state(&stuck), Some(Delivery::Sent));
}

#[test]
fn a_rerouted_message_is_due_at_once_at_its_new_mailbox_and_keeps_its_backoff() {
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let net = Net::new(&mut rng);
    let g = geometry();
    // A long first wait: without the reroute nothing would be resent before a minute.
    let first = Duration::from_secs(60);
    let mut outbox = Outbox::new(ResendPolicy { first, max: Duration::from_secs(6000) });
    let (k0, k2) = (SealKey([1; 32]), SealKey([6; 32]));
    let r0 = Route { gateway: net.gw[1], mailbox: MailboxId([1; 32]), seal: k0 };
    let r2 = Route { gateway: net.gw[1], mailbox: MailboxId([6; 32]), seal: k2 };
    let other = Route { gateway: net.gw[1], mailbox: MailboxId([9; 32]), seal: SealKey([9; 32]) };
    let a = outbox.queue(&g, r0, MailboxId([2; 32]), b"to the first mailbox", &mut rng).unwrap();
    let b = outbox.queue(&g, other, MailboxId([2; 32]), b"to someone else", &mut rng).unwrap();
    let surb_r0 = send_one(&net, &mut outbox, UnixMicros::ZERO, &k0, &mut rng);
    let _ = send_one(&net, &mut outbox, UnixMicros::ZERO, &SealKey([9; 32]), &mut rng);
    assert!(!outbox.has_queued());

    // The recipient moved: its message is due at once, sealed to the new mailbox (`send_one`
    // opens it with the new key); the other recipient's waits as it was.
    let now = UnixMicros::ZERO + Duration::from_secs(1);
    assert!(outbox.reroute(&a, r2, now));
    assert!(!outbox.reroute(&MessageId([0xee; 16]), r2, now), "an unknown message");
    outbox.handle_timeout(now);
    let surb_r2 = send_one(&net, &mut outbox, now, &k2, &mut rng);
    assert!(!outbox.has_queued(), "only the moved message was due");
    assert_eq!(outbox.state(&b), Some(Delivery::Sent));
    // Its backoff went on growing: the next wait is that of a second attempt.
    assert!(outbox.cancel(&b));
    assert!(outbox.poll_timeout().unwrap() >= now + first * 2);

    // A reply through the SURB that went to the old mailbox no longer counts; the new one does.
    let entry = |id: MessageId| AckEntry { message_id: id, indices: vec![0] };
    assert!(reply(&net, &mut outbox, &surb_r0, vec![entry(a)], &mut rng));
    assert_eq!(outbox.state(&a), Some(Delivery::Sent));
    assert!(reply(&net, &mut outbox, &surb_r2, vec![entry(a)], &mut rng));
    assert_eq!(outbox.state(&a), None, "delivered");
}

#[test]
fn a_cancelled_message_is_never_sent_again() {
    let mut rng = ChaCha20Rng::seed_from_u64(14);
    let net = Net::new(&mut rng);
    let g = geometry();
    let mut outbox = Outbox::new(ResendPolicy { first: Duration::from_secs(1), max: Duration::from_secs(8) });
    let route = |n: u8| Route { gateway: net.gw[1], mailbox: MailboxId([n; 32]), seal: SealKey([n; 32]) };
    let sent = outbox.queue(&g, route(1), MailboxId([2; 32]), b"sent once", &mut rng).unwrap();
    let _ = send_one(&net, &mut outbox, UnixMicros::ZERO, &SealKey([1; 32]), &mut rng);
    let unsent = outbox.queue(&g, route(3), MailboxId([2; 32]), b"never sent", &mut rng).unwrap();
    assert!(outbox.cancel(&sent) && outbox.cancel(&unsent));
    assert!(!outbox.cancel(&sent), "once");
    let later = UnixMicros::ZERO + Duration::from_secs(600);
    outbox.handle_timeout(later);
    assert!(outbox.next_packet(later, &net.sphinx, &net.view(0), &mut rng).is_none());
    assert!(outbox.is_empty() && outbox.poll_timeout().is_none());
    assert_eq!(
        std::iter::from_fn(|| outbox.poll_event()).collect::<Vec<_>>(),
        [
            OutboxEvent::State(sent, Delivery::Queued),
            OutboxEvent::State(sent, Delivery::Sent),
            OutboxEvent::State(unsent, Delivery::Queued)
        ],
        "nothing is reported of them"
    );
}
