//! A deterministic simulated network of authorities and nodes, with simulated time and a
//! message queue whose delivery each test can shape (loss, delay).
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::type_complexity
)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use qanat_packet::{PublicKey, Scheme, SecretKey};
use qanat_pki::{
    Action, Authority, AuthorityConfig, AuthoritySet, ConsensusFailure, Document, Epoch, EpochPeriod,
    FileLimits, IdentityKey, IdentitySecret, LinkAddress, NodeDescriptor, Parameters, ParametersConfig,
    PeerMessageError, Role, SignedDescriptor, UnixMillis,
};

pub const SCHEME: Scheme = Scheme::X25519Kem;
pub const LINK_DELAY_MS: u64 = 50;

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

pub fn period() -> EpochPeriod {
    EpochPeriod::from_secs(8).unwrap()
}

pub fn params() -> Parameters {
    Parameters::new(ParametersConfig { epoch_period: period(), ..ParametersConfig::default_for(SCHEME) })
        .unwrap()
}

/// [`params`] of version 2: with the default file limits.
pub fn params_v2() -> Parameters {
    Parameters::new(ParametersConfig { file_limits: Some(FileLimits::DEFAULT), ..params().config() }).unwrap()
}

/// The message kinds, by their first byte.
pub const VOTE: u8 = 1;
pub const REVEAL: u8 = 2;
pub const CERT: u8 = 3;
pub const SIGNATURE: u8 = 4;
pub const CONSENSUS: u8 = 5;

/// One message in flight, as a shaping rule sees it.
#[derive(Clone, Copy, Debug)]
pub struct Msg {
    pub from: usize,
    pub to: usize,
    pub kind: u8,
    /// The epoch during which it was sent.
    pub epoch: Epoch,
}

pub enum Fate {
    Deliver { delay_ms: u64 },
    Drop,
}

pub struct SimNode {
    pub secret: IdentitySecret,
    pub role: Role,
    pub index: usize,
    pub keys: BTreeMap<Epoch, PublicKey>,
    /// The node uploads until (excluding) this time.
    pub uploads_until: UnixMillis,
    pub rng: ChaCha20Rng,
}

impl SimNode {
    fn key(&mut self, e: Epoch) -> PublicKey {
        let rng = &mut self.rng;
        self.keys.entry(e).or_insert_with(|| SecretKey::generate(SCHEME, rng).public_key()).clone()
    }

    pub fn descriptor(&mut self, e: Epoch) -> SignedDescriptor {
        let keys = (0..3).map(|i| self.key(e.plus(i))).collect();
        let address = LinkAddress::parse(&format!("127.0.0.1:{}", 30000 + self.index)).unwrap();
        NodeDescriptor::new(e, self.secret.public(), self.role, address, vec![self.index as u8; 32], keys)
            .unwrap()
            .sign(&self.secret)
            .unwrap()
    }
}

pub struct Sim {
    pub now: UnixMillis,
    pub set: AuthoritySet,
    pub keys: Vec<IdentityKey>,
    secrets: Vec<IdentitySecret>,
    allowed: BTreeSet<IdentityKey>,
    pub authorities: Vec<Authority>,
    pub online: Vec<bool>,
    pub nodes: Vec<SimNode>,
    queue: BinaryHeap<Reverse<(UnixMillis, u64, usize, usize, Vec<u8>)>>,
    seq: u64,
    pub rule: Box<dyn FnMut(&Msg) -> Fate>,
    /// Latest document each authority published, per epoch.
    pub published: Vec<BTreeMap<Epoch, Vec<u8>>>,
    pub publish_count: Vec<BTreeMap<Epoch, usize>>,
    pub failures: Vec<(usize, Epoch, ConsensusFailure)>,
    pub message_errors: Vec<(usize, PeerMessageError)>,
    /// The first message of each kind sent.
    pub samples: BTreeMap<u8, Vec<u8>>,
    next_upload: UnixMillis,
}

/// The first simulated epoch.
pub fn first_epoch() -> Epoch {
    Epoch(100_000)
}

impl Sim {
    /// `n` authorities, `mixes` mix nodes and `gateways` gateways, every node allowed.
    pub fn new(seed: u64, n: usize, mixes: usize, gateways: usize) -> Self {
        Self::with_params(seed, n, mixes, gateways, params())
    }

    /// As [`Sim::new`], the authorities voting for `parameters` (whose epoch period must be
    /// [`period`]).
    pub fn with_params(seed: u64, n: usize, mixes: usize, gateways: usize, parameters: Parameters) -> Self {
        let mut rng = rng(seed);
        let secrets: Vec<IdentitySecret> = (0..n).map(|_| IdentitySecret::generate(&mut rng)).collect();
        let keys: Vec<IdentityKey> = secrets.iter().map(IdentitySecret::public).collect();
        let set = AuthoritySet::new(keys.clone()).unwrap();
        let nodes: Vec<SimNode> = (0..mixes + gateways)
            .map(|i| SimNode {
                secret: IdentitySecret::generate(&mut rng),
                role: if i < mixes { Role::Mix } else { Role::Gateway },
                index: i,
                keys: BTreeMap::new(),
                uploads_until: UnixMillis::from_millis(u64::MAX),
                rng: ChaCha20Rng::seed_from_u64(seed * 1000 + i as u64),
            })
            .collect();
        let allowed: BTreeSet<IdentityKey> = nodes.iter().map(|n| n.secret.public()).collect();
        let authorities = secrets
            .iter()
            .map(|identity| {
                Authority::new(
                    AuthorityConfig {
                        identity: identity.clone(),
                        authorities: set.clone(),
                        parameters: parameters.clone(),
                        allowed_nodes: allowed.clone(),
                    },
                    &mut rng,
                )
                .unwrap()
            })
            .collect();
        let start = first_epoch().start(period());
        Sim {
            now: start,
            set,
            keys,
            secrets,
            allowed,
            authorities,
            online: vec![true; n],
            nodes,
            queue: BinaryHeap::new(),
            seq: 0,
            rule: Box::new(|_| Fate::Deliver { delay_ms: LINK_DELAY_MS }),
            published: vec![BTreeMap::new(); n],
            publish_count: vec![BTreeMap::new(); n],
            failures: Vec::new(),
            message_errors: Vec::new(),
            samples: BTreeMap::new(),
            next_upload: start.plus_millis(100),
        }
    }

    /// Restarts authority `i` now with `parameters` (as an operator who changed its config):
    /// it keeps its identity and forgets everything else.
    pub fn restart(&mut self, i: usize, parameters: Parameters) {
        let config = AuthorityConfig {
            identity: self.secrets[i].clone(),
            authorities: self.set.clone(),
            parameters,
            allowed_nodes: self.allowed.clone(),
        };
        self.authorities[i] = Authority::new(config, &mut rng(9_000 + i as u64)).unwrap();
    }

    fn index_of(&self, k: &IdentityKey) -> usize {
        self.keys.iter().position(|x| x == k).unwrap()
    }

    /// Nodes upload for the next epoch from 100 ms into every epoch until its vote, once per
    /// heartbeat (the authorities vote only for nodes heard from lately).
    fn upload(&mut self) {
        let cur = Epoch::at(self.now, period());
        for node in &mut self.nodes {
            if self.now >= node.uploads_until {
                continue;
            }
            let d = node.descriptor(cur.next());
            for (a, auth) in self.authorities.iter_mut().enumerate() {
                if self.online[a] {
                    assert_eq!(auth.handle_descriptor(self.now, d.as_bytes()), Ok(cur.next()));
                }
            }
        }
        let vote = cur.schedule(period()).vote();
        let next = self.now.plus_millis(qanat_pki::heartbeat(period()));
        self.next_upload = if next < vote { next } else { cur.next().start(period()).plus_millis(100) };
    }

    fn act(&mut self, from: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send { to, message } => {
                    let to = self.index_of(&to);
                    self.samples.entry(message[0]).or_insert_with(|| message.clone());
                    let m = Msg { from, to, kind: message[0], epoch: Epoch::at(self.now, period()) };
                    if let Fate::Deliver { delay_ms } = (self.rule)(&m) {
                        self.seq += 1;
                        self.queue.push(Reverse((
                            self.now.plus_millis(delay_ms),
                            self.seq,
                            from,
                            to,
                            message,
                        )));
                    }
                }
                Action::Publish { epoch, document } => {
                    // Every published document verifies as a client would check it.
                    Document::verify(&document, &self.set, epoch).unwrap();
                    *self.publish_count[from].entry(epoch).or_default() += 1;
                    self.published[from].insert(epoch, document);
                }
                Action::ConsensusFailed { epoch, reason } => self.failures.push((from, epoch, reason)),
                _ => unreachable!("unknown action"),
            }
        }
    }

    /// Runs until `end`.
    pub fn run_until(&mut self, end: UnixMillis) {
        loop {
            let mut next = self.next_upload;
            if let Some(Reverse((t, ..))) = self.queue.peek() {
                next = next.min(*t);
            }
            for (i, a) in self.authorities.iter().enumerate() {
                if self.online[i] {
                    next = next.min(a.next_timeout(self.now));
                }
            }
            if next > end {
                self.now = end;
                return;
            }
            self.now = next;
            while let Some(Reverse((t, ..))) = self.queue.peek() {
                if *t > self.now {
                    break;
                }
                let Some(Reverse((_, _, _, to, bytes))) = self.queue.pop() else { break };
                if self.online[to]
                    && let Err(e) = self.authorities[to].handle_message(self.now, &bytes)
                {
                    self.message_errors.push((to, e));
                }
            }
            if self.now >= self.next_upload {
                self.upload();
            }
            for i in 0..self.authorities.len() {
                if self.online[i] {
                    let actions = self.authorities[i].poll(self.now);
                    self.act(i, actions);
                }
            }
        }
    }

    /// Runs to the end of epoch `e`.
    pub fn run_through(&mut self, e: Epoch) {
        self.run_until(e.end(period()));
    }

    /// The documents published for `e` by the authorities in `who`, which must all exist, verify,
    /// and have the same signed body. Returns the first one, verified.
    pub fn agreed(&self, e: Epoch, who: &[usize]) -> Document {
        let docs: Vec<Document> = who
            .iter()
            .map(|&i| {
                let bytes = self.published[i]
                    .get(&e)
                    .unwrap_or_else(|| panic!("authority {i} published nothing for {e:?}"));
                Document::verify(bytes, &self.set, e).unwrap()
            })
            .collect();
        for d in &docs {
            assert_eq!(d.body_bytes(), docs[0].body_bytes(), "authorities disagree on {e:?}");
        }
        docs.into_iter().next().unwrap()
    }

    pub fn node_ids_in(&self, doc: &Document) -> BTreeSet<usize> {
        doc.nodes()
            .iter()
            .map(|n| self.nodes.iter().position(|s| s.secret.public().node_id() == n.id()).unwrap())
            .collect()
    }
}

/// Splits an encoded document into its body and its (key, signature) list, per the documented
/// format: `u32 len ‖ body ‖ u8 count ‖ (key ‖ sig) × count`.
pub fn split_document(doc: &[u8]) -> (Vec<u8>, Vec<([u8; 32], [u8; 64])>) {
    let len = u32::from_be_bytes(doc[..4].try_into().unwrap()) as usize;
    let body = doc[4..4 + len].to_vec();
    let n = doc[4 + len] as usize;
    let mut sigs = Vec::new();
    let mut at = 5 + len;
    for _ in 0..n {
        sigs.push((doc[at..at + 32].try_into().unwrap(), doc[at + 32..at + 96].try_into().unwrap()));
        at += 96;
    }
    assert_eq!(at, doc.len());
    (body, sigs)
}

/// Joins a body and signatures (sorted by key) into a document.
pub fn join_document(body: &[u8], sigs: &[([u8; 32], [u8; 64])]) -> Vec<u8> {
    let mut sigs = sigs.to_vec();
    sigs.sort_by_key(|a| a.0);
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out.push(sigs.len() as u8);
    for (k, s) in sigs {
        out.extend_from_slice(&k);
        out.extend_from_slice(&s);
    }
    out
}
