//! MLS conversations driven over a deterministic simulated network: random delays (hence random
//! order), simulated time, members joining, leaving, restarting and committing concurrently.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qanat_client::mls::{
    Config, Conversation, Event, MemberId, MlsError, OutgoingKind, Output, PendingJoin, conversation_of,
    key_package_member,
};

/// Small deterministic generator for the simulation's choices (not for keys).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Delivery {
    at_ms: u64,
    to: MemberId,
    bytes: Vec<u8>,
    kind: OutgoingKind,
}

/// A network of members of one conversation. Every message reaches each recipient after a random
/// delay of at most `max_delay`; the decision window is set above twice that.
struct Net {
    config: Config,
    now_ms: u64,
    max_delay_ms: u64,
    rng: Rng,
    members: BTreeMap<MemberId, Conversation>,
    pending: BTreeMap<MemberId, PendingJoin>,
    queue: Vec<Delivery>,
    /// Application messages each member received: (sender, plaintext).
    received: BTreeMap<MemberId, Vec<(MemberId, Vec<u8>)>>,
    removed: Vec<MemberId>,
    errors: Vec<(MemberId, MlsError)>,
    /// A member that is offline, and its mailbox.
    away: Option<MemberId>,
    mailbox: Vec<Delivery>,
    /// Messages that reached an invitee before its Welcome.
    mailbox_early: Vec<Delivery>,
}

const START_MS: u64 = 1_800_000_000_000;

impl Net {
    fn new(seed: u64, max_delay: Duration) -> Self {
        let mut config = Config::default();
        config.decision_window = max_delay * 2 + Duration::from_millis(1);
        Self {
            config,
            now_ms: START_MS,
            max_delay_ms: u64::try_from(max_delay.as_millis()).unwrap(),
            rng: Rng(seed),
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            queue: Vec::new(),
            received: BTreeMap::new(),
            removed: Vec::new(),
            errors: Vec::new(),
            away: None,
            mailbox: Vec::new(),
            mailbox_early: Vec::new(),
        }
    }

    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.now_ms)
    }

    /// A group of `n` members, everyone joined and at the same epoch.
    fn group(seed: u64, n: usize) -> (Self, Vec<MemberId>) {
        let mut net = Self::new(seed, Duration::from_secs(5));
        let creator = Conversation::create(&net.config).unwrap();
        let first = creator.own_id();
        net.members.insert(first, creator);
        let mut ids = vec![first];
        for _ in 1..n {
            ids.push(net.invite(first));
            net.settle();
        }
        (net, ids)
    }

    /// `adder` adds a new member; returns the newcomer's id (it joins once the Welcome arrives).
    fn invite(&mut self, adder: MemberId) -> MemberId {
        let (pending, kp) = PendingJoin::new().unwrap();
        let id = pending.member_id();
        assert_eq!(key_package_member(&kp).unwrap(), id);
        self.pending.insert(id, pending);
        let now = self.now();
        let out = self.members.get_mut(&adder).unwrap().add(&kp, now).unwrap();
        self.dispatch(adder, out);
        id
    }

    fn dispatch(&mut self, from: MemberId, out: Output) {
        for event in out.events {
            match event {
                Event::Message { sender, bytes } => {
                    self.received.entry(from).or_default().push((sender, bytes))
                }
                Event::Removed => self.removed.push(from),
                Event::StaleCommit { epoch } => {
                    panic!("{from:?}: commit for epoch {epoch} arrived after the decision")
                }
                _ => {}
            }
        }
        for o in out.outgoing {
            assert!(!o.to.contains(&from), "a member never sends to itself");
            for to in o.to {
                let at_ms = self.now_ms + self.rng.next() % (self.max_delay_ms + 1);
                let d = Delivery { at_ms, to, bytes: o.bytes.clone(), kind: o.kind };
                if self.away == Some(to) {
                    self.mailbox.push(d);
                } else {
                    self.queue.push(d);
                }
            }
        }
    }

    fn send(&mut self, from: MemberId, text: &[u8]) {
        let o = self.members.get_mut(&from).unwrap().send(text).unwrap();
        self.dispatch(from, qanat_client_output(o));
    }

    /// Runs until no message is in flight and no member has a deadline.
    fn settle(&mut self) {
        for _ in 0..100_000 {
            let next_msg = self.queue.iter().map(|d| d.at_ms).min();
            let next_tick = self
                .members
                .values()
                .filter_map(|c| c.next_deadline())
                .map(|t| u64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap())
                .min();
            let Some(at) = next_msg.into_iter().chain(next_tick).min() else { return };
            self.now_ms = self.now_ms.max(at);
            let now = self.now();
            let due: Vec<Delivery> = {
                let (due, rest): (Vec<_>, Vec<_>) =
                    self.queue.drain(..).partition(|d| d.at_ms <= self.now_ms);
                self.queue = rest;
                due
            };
            for d in due {
                self.deliver(d, now);
            }
            let ids: Vec<MemberId> = self.members.keys().copied().collect();
            for id in ids {
                let c = self.members.get_mut(&id).unwrap();
                if c.next_deadline().is_some_and(|t| t <= now) {
                    match c.tick(now) {
                        Ok(out) => self.dispatch(id, out),
                        Err(e) => self.errors.push((id, e)),
                    }
                }
            }
        }
        panic!("the network did not settle");
    }

    fn deliver(&mut self, d: Delivery, now: SystemTime) {
        if d.kind == OutgoingKind::Welcome {
            let pending = self.pending.remove(&d.to).expect("a welcome goes to an invited member, once");
            let (conversation, out) = pending.join(&d.bytes, &self.config).unwrap();
            self.members.insert(d.to, conversation);
            self.dispatch(d.to, out);
            let early: Vec<Delivery> = self.mailbox_early.extract_if(.., |e| e.to == d.to).collect();
            for e in early {
                self.deliver(e, now);
            }
            return;
        }
        if self.pending.contains_key(&d.to) {
            // Sent by a member that merged the invitee's addition before the Welcome reached it: a
            // client keeps messages of an unknown conversation until a Welcome explains them.
            self.mailbox_early.push(d);
            return;
        }
        let Some(c) = self.members.get_mut(&d.to) else { return };
        if !c.is_active() {
            return;
        }
        assert_eq!(conversation_of(&d.bytes).unwrap(), c.id());
        match c.receive(&d.bytes, now) {
            Ok(out) => self.dispatch(d.to, out),
            Err(e) => self.errors.push((d.to, e)),
        }
    }

    fn active(&self) -> Vec<MemberId> {
        self.members.iter().filter(|(_, c)| c.is_active()).map(|(id, _)| *id).collect()
    }

    /// All active members are at the same epoch with the same secrets and the same members, and
    /// every one of them can talk to all the others.
    fn assert_converged(&mut self) {
        let active = self.active();
        let first = &self.members[&active[0]];
        let (epoch, auth, mut members) = (first.epoch(), first.epoch_authenticator(), first.members());
        members.sort();
        let mut sorted = active.clone();
        sorted.sort();
        assert_eq!(members, sorted, "membership is the set of active members");
        for id in &active {
            let c = &self.members[id];
            assert_eq!(c.epoch(), epoch);
            assert_eq!(c.epoch_authenticator(), auth);
            let mut m = c.members();
            m.sort();
            assert_eq!(m, members);
        }
        self.received.clear();
        for id in &active {
            let text = format!("hello from {id:?} at epoch {epoch}");
            self.send(*id, text.as_bytes());
        }
        self.settle();
        for id in &active {
            let got = self.received.get(id).map_or(0, Vec::len);
            assert_eq!(got, active.len() - 1, "{id:?} hears every other member");
        }
        assert!(self.errors.is_empty(), "errors: {:?}", self.errors);
    }
}

fn qanat_client_output(o: qanat_client::mls::Outgoing) -> Output {
    let mut out = Output::default();
    out.outgoing.push(o);
    out
}

#[test]
fn two_members_create_add_join_and_talk() {
    let (mut net, ids) = Net::group(1, 2);
    let (alice, bob) = (ids[0], ids[1]);
    assert_ne!(alice, bob);
    assert_eq!(net.members[&bob].epoch(), 1);
    net.send(alice, b"hello bob");
    net.send(bob, b"hello alice");
    net.settle();
    assert_eq!(net.received[&bob], vec![(alice, b"hello bob".to_vec())]);
    assert_eq!(net.received[&alice], vec![(bob, b"hello alice".to_vec())]);
    net.assert_converged();
}

#[test]
fn identities_differ_between_conversations() {
    // The same person creates two conversations: nothing links its two member ids.
    let config = Config::default();
    let a = Conversation::create(&config).unwrap();
    let b = Conversation::create(&config).unwrap();
    assert_ne!(a.own_id(), b.own_id());
    assert_ne!(a.id(), b.id());
}

#[test]
fn group_of_five_adds_and_removes_while_others_talk() {
    let (mut net, ids) = Net::group(2, 5);
    net.assert_converged();
    // Carol removes dave while alice and bob keep talking and erin adds a sixth member.
    let now = net.now();
    let out = net.members.get_mut(&ids[2]).unwrap().remove(&ids[3], now).unwrap();
    net.dispatch(ids[2], out);
    net.send(ids[0], b"still here");
    let newcomer = net.invite(ids[4]);
    net.send(ids[1], b"me too");
    net.settle();
    assert!(net.removed.contains(&ids[3]));
    assert!(!net.members[&ids[3]].is_active());
    assert!(net.members.contains_key(&newcomer));
    // Both talkers were heard by everyone who was in the group when they spoke.
    for id in [ids[1], ids[2], ids[4]] {
        assert!(net.received[&id].iter().any(|(s, m)| *s == ids[0] && m == b"still here"));
    }
    net.assert_converged();
    assert_eq!(net.active().len(), 5);
}

#[test]
fn leaving_is_committed_by_another_member() {
    let (mut net, ids) = Net::group(3, 4);
    let now = net.now();
    let out = net.members.get_mut(&ids[1]).unwrap().leave(now).unwrap();
    assert!(out.outgoing.iter().all(|o| o.kind == OutgoingKind::Proposal));
    net.dispatch(ids[1], out);
    // Regression: a member holding a leave request can be saved and restored (the requests were
    // a JSON map with non-string keys, which failed to save).
    let now = net.now();
    let due: Vec<Delivery> = net.queue.drain(..).collect();
    for d in due {
        net.deliver(d, now);
    }
    let config = net.config.clone();
    for id in &ids {
        let saved = net.members[id].export().unwrap();
        net.members.insert(*id, Conversation::import(&saved, &config).unwrap());
    }
    net.settle();
    assert_eq!(net.removed, vec![ids[1]]);
    assert!(matches!(net.members.get_mut(&ids[1]).unwrap().send(b"x"), Err(MlsError::NotMember)));
    net.assert_converged();
    assert_eq!(net.active().len(), 3);
}

#[test]
fn restart_resumes_every_conversation() {
    let (mut net, ids) = Net::group(4, 3);
    // Restart a member while a commit is in flight: candidates and queued work survive.
    let now = net.now();
    let out = net.members.get_mut(&ids[0]).unwrap().update(now).unwrap();
    net.dispatch(ids[0], out);
    let config = net.config.clone();
    for id in &ids {
        let saved = net.members[id].export().unwrap();
        let back = Conversation::import(&saved, &config).unwrap();
        assert_eq!(back.epoch_authenticator(), net.members[id].epoch_authenticator());
        net.members.insert(*id, back);
    }
    net.settle();
    net.assert_converged();
    // A pending invitation survives a restart too.
    let (pending, kp) = PendingJoin::new().unwrap();
    let id = pending.member_id();
    let pending = PendingJoin::import(&pending.export().unwrap()).unwrap();
    net.pending.insert(id, pending);
    let now = net.now();
    let out = net.members.get_mut(&ids[2]).unwrap().add(&kp, now).unwrap();
    net.dispatch(ids[2], out);
    net.settle();
    net.assert_converged();
    assert_eq!(net.active().len(), 4);
}

#[test]
fn back_after_days_offline() {
    let (mut net, ids) = Net::group(5, 3);
    let offline = ids[2];
    let saved = net.members.remove(&offline).unwrap().export().unwrap();
    net.away = Some(offline);
    // While it is away, the others change the group many times and talk.
    for round in 0..6 {
        let who = ids[round % 2];
        let now = net.now();
        let out = net.members.get_mut(&who).unwrap().update(now).unwrap();
        net.dispatch(who, out);
        net.send(ids[(round + 1) % 2], format!("message {round}").as_bytes());
        // Messages to the offline member wait in its mailbox.
        net.settle();
    }
    net.now_ms += 3 * 24 * 3600 * 1000;
    let back = Conversation::import(&saved, &net.config).unwrap();
    net.members.insert(offline, back);
    net.away = None;
    // It fetches its whole mailbox at once, in the order the gateway happens to return it.
    let mut mailbox = std::mem::take(&mut net.mailbox);
    for i in (1..mailbox.len()).rev() {
        mailbox.swap(i, net.rng.below(i + 1));
    }
    for mut d in mailbox {
        d.at_ms = net.now_ms;
        net.queue.push(d);
    }
    net.settle();
    let got = &net.received[&offline];
    assert_eq!(got.iter().filter(|(_, m)| m.starts_with(b"message ")).count(), 6);
    net.assert_converged();
}

/// Concurrent commits from different members, delivered in random orders, converge.
#[test]
fn concurrent_commits_converge() {
    for seed in 0..40u64 {
        let (mut net, mut ids) = Net::group(100 + seed, 3 + (seed % 3) as usize);
        for _round in 0..5 {
            let active = net.active();
            let committers = if active.len() < 2 { 1 } else { 2 + net.rng.below(active.len().min(4) - 1) };
            let mut chosen: Vec<MemberId> = Vec::new();
            while chosen.len() < committers {
                let c = active[net.rng.below(active.len())];
                if !chosen.contains(&c) {
                    chosen.push(c);
                }
            }
            let now = net.now();
            for c in chosen {
                let op = net.rng.below(4);
                if (op == 0 || active.len() < 3) && net.active().len() < 8 {
                    ids.push(net.invite(c));
                    continue;
                }
                let others: Vec<MemberId> = active.iter().copied().filter(|m| *m != c).collect();
                let victim = others.get(net.rng.below(others.len().max(1))).copied();
                let c_conv = net.members.get_mut(&c).unwrap();
                let out = if let (1, Some(victim)) = (op, victim) {
                    c_conv.remove(&victim, now).unwrap()
                } else if op == 2 && active.len() > 3 {
                    c_conv.leave(now).unwrap()
                } else {
                    c_conv.update(now).unwrap()
                };
                net.dispatch(c, out);
                let talker = active[net.rng.below(active.len())];
                // A member that is leaving cannot talk any more.
                if let Ok(o) = net.members.get_mut(&talker).unwrap().send(b"chatter during the race") {
                    net.dispatch(talker, qanat_client_output(o));
                }
            }
            net.settle();
            net.assert_converged();
        }
    }
}

#[test]
fn malformed_and_forged_input_is_rejected_without_panic() {
    let (mut net, ids) = Net::group(6, 2);
    let (alice, bob) = (ids[0], ids[1]);
    let msg = net.members.get_mut(&alice).unwrap().send(b"secret").unwrap().bytes;
    let now = net.now();
    let bob_c = net.members.get_mut(&bob).unwrap();
    assert!(matches!(bob_c.receive(&[], now), Err(MlsError::Malformed)));
    assert!(matches!(bob_c.receive(&msg[..msg.len() - 1], now), Err(MlsError::Malformed)));
    let mut rng = Rng(7);
    for _ in 0..300 {
        let mut forged = msg.clone();
        let i = rng.below(forged.len());
        forged[i] ^= 1 << rng.below(8);
        let _ = bob_c.receive(&forged, now);
        let _ = conversation_of(&forged);
        let len = rng.below(600);
        let junk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        assert!(bob_c.receive(&junk, now).is_err());
        let _ = key_package_member(&junk);
        assert!(PendingJoin::new().unwrap().0.join(&junk, &net.config).is_err());
        assert!(Conversation::import(&junk, &net.config).is_err());
    }
    // The genuine message still decrypts after all that.
    let out = bob_c.receive(&msg, now).unwrap();
    assert_eq!(out.events, vec![Event::Message { sender: alice, bytes: b"secret".to_vec() }]);
    // Replaying it is refused.
    assert!(matches!(bob_c.receive(&msg, now), Err(MlsError::Rejected(_))));
    // A message of another conversation is refused.
    let mut other = Conversation::create(&net.config).unwrap();
    let (p, kp) = PendingJoin::new().unwrap();
    let out = other.add(&kp, now).unwrap();
    let welcome = out.outgoing.iter().find(|o| o.kind == OutgoingKind::Welcome).unwrap().bytes.clone();
    let (_joined, _) = p.join(&welcome, &net.config).unwrap();
    let foreign = other.send(b"elsewhere").unwrap().bytes;
    let bob_c = net.members.get_mut(&bob).unwrap();
    assert!(matches!(bob_c.receive(&foreign, now), Err(MlsError::WrongConversation)));
    // A welcome is not a group message; a welcome reaches only its invitee.
    assert!(bob_c.receive(&welcome, now).is_err());
    assert!(PendingJoin::new().unwrap().0.join(&welcome, &net.config).is_err());
    // Corrupted saved state is refused.
    let mut saved = net.members[&alice].export().unwrap().to_vec();
    let n = saved.len();
    saved.truncate(n - 3);
    assert!(Conversation::import(&saved, &net.config).is_err());
}

#[test]
fn key_package_with_an_identifier_is_refused() {
    // Build a key package whose credential names a person, as a hostile client might.
    use openmls::prelude::tls_codec::Serialize as _;
    use openmls::prelude::*;
    use openmls_basic_credential::SignatureKeyPair;
    let provider = openmls_rust_crypto::OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(SignatureScheme::ED25519).unwrap();
    let credential = CredentialWithKey {
        credential: BasicCredential::new(b"+1 555 0100".to_vec()).into(),
        signature_key: signer.to_public_vec().into(),
    };
    let caps = Capabilities::new(None, Some(&[qanat_client::mls::CIPHERSUITE]), None, None, None);
    let kp = KeyPackage::builder()
        .leaf_node_capabilities(caps)
        .build(qanat_client::mls::CIPHERSUITE, &provider, &signer, credential)
        .unwrap();
    let bytes = kp.key_package().tls_serialize_detached().unwrap();
    let mut c = Conversation::create(&Config::default()).unwrap();
    let now = SystemTime::now();
    assert!(matches!(c.add(&bytes, now), Err(MlsError::IdentifyingCredential)));
    assert!(matches!(key_package_member(&bytes), Err(MlsError::IdentifyingCredential)));
}

/// A KeyPackage as a hostile client may make it: it verifies and its credential is its bare
/// key, but its leaf does not list the conversations' ciphersuite among its capabilities, so no
/// commit can add it.
fn untakeable_key_package() -> Vec<u8> {
    use openmls::prelude::tls_codec::Serialize as _;
    use openmls::prelude::*;
    use openmls_basic_credential::SignatureKeyPair;
    let provider = openmls_rust_crypto::OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(SignatureScheme::ED25519).unwrap();
    let credential = CredentialWithKey {
        credential: BasicCredential::new(signer.to_public_vec()).into(),
        signature_key: signer.to_public_vec().into(),
    };
    let other = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;
    let caps = Capabilities::new(None, Some(&[other]), None, None, None);
    let kp = KeyPackage::builder()
        .leaf_node_capabilities(caps)
        .build(qanat_client::mls::CIPHERSUITE, &provider, &signer, credential)
        .unwrap();
    kp.key_package().tls_serialize_detached().unwrap()
}

#[test]
fn a_key_package_no_commit_can_take_is_refused_as_the_peers_fault() {
    // Regression: such a KeyPackage passed `add`'s checks, then building the commit failed and
    // was reported as an internal error (the engine stops the client on those): at once for a
    // member alone, at the end of a running decision window otherwise.
    let bad = untakeable_key_package();
    assert!(key_package_member(&bad).is_ok(), "its own checks pass");
    let now = SystemTime::now();
    let mut alone = Conversation::create(&Config::default()).unwrap();
    assert!(matches!(alone.add(&bad, now), Err(MlsError::Rejected(_))), "alone");
    assert_eq!(alone.members().len(), 1);

    let (mut net, ids) = Net::group(8, 2);
    let (alice, bob) = (ids[0], ids[1]);
    // A commit of Alice's is in its window when the KeyPackage comes.
    let carol = net.invite(alice);
    assert!(net.members[&alice].next_deadline().is_some());
    let now = net.now();
    let c = net.members.get_mut(&alice).unwrap();
    assert!(matches!(c.add(&bad, now), Err(MlsError::Rejected(_))), "during a window");
    net.settle();
    let mut members = net.members[&bob].members();
    members.sort();
    let mut want = vec![alice, bob, carol];
    want.sort();
    assert_eq!(members, want);
    net.assert_converged();
}
