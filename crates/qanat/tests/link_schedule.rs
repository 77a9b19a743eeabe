//! One schedule on the client's link (P3): what a client–gateway link carries does not depend on
//! what the user does or receives, nor on how many mailboxes the user has.
//!
//! The link is driven, as the runtime drives it, by the IO-free cores on simulated time: the
//! client's Poisson `Schedule` (one packet frame per slot), its `PullClient` (one pull per
//! interval) and the gateway's `PullServer` (the answer) over a store model. Four clients: 1 and
//! 50 mailboxes, idle and busy (making and expiring invitations, joining and leaving groups,
//! receiving items). Every frame must fit one link frame (so all are one size on the wire), the
//! frame timings of every pair must be indistinguishable (two-sample Kolmogorov–Smirnov over
//! thousands of frames, p > 0.05), and session starts must be identical.

use std::collections::BTreeMap;
use std::time::Duration;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng as _, SeedableRng as _};
use qanat_client::gateway::MailboxAccess;
use qanat_client::pull::PullClient;
use qanat_link::FrameSize;
use qanat_mixnet::UnixMicros;
use qanat_mixnet::client_proto::{Op, OpResult, PULL_OPS, Request, Response, doc_chunk_len};
use qanat_mixnet::pull::PullServer;
use qanat_mixnet::sending::{PULL_BATCH, PULL_FIRST, Rates, Schedule};
use qanat_packet::{Geometry, MailboxId, Scheme};
use qanat_sim::stats::ks_two_sample;

const RATES: Rates = Rates { payload: 2.0, loops: 0.5, drops: 0.5 };
const INTERVAL: Duration = Duration::from_millis(500);
const RUN: Duration = Duration::from_secs(1200);

/// One frame on the link: when, which way (true: up), and its encoded length.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    at: f64,
    up: bool,
    len: usize,
}

struct Gateway {
    server: PullServer,
    store: BTreeMap<MailboxId, Vec<(u64, Vec<u8>)>>,
    next_seq: u64,
    doc: Vec<u8>,
}

impl Gateway {
    fn answer(&mut self, req: Request, chunk_len: usize) -> Vec<Response> {
        let Request::Pull { id, limit, want, ops } = req else { panic!("only pulls on the link") };
        let mut results = [OpResult::Done; PULL_OPS];
        for (op, r) in ops.iter().zip(results.iter_mut()) {
            if self.server.admit(op).is_ok() {
                match *op {
                    Op::Register { mailbox, .. } => {
                        self.store.entry(mailbox).or_default();
                    }
                    Op::Unregister { mailbox, .. } => {
                        self.store.remove(&mailbox);
                    }
                    Op::Delete { mailbox, up_to, .. } => {
                        if let Some(q) = self.store.get_mut(&mailbox) {
                            q.retain(|(s, _)| *s > up_to);
                        }
                    }
                }
            }
            self.server.handle_op_result(op, *r);
        }
        let doc = (want.epoch == 7).then_some(self.doc.as_slice());
        let room = PullServer::item_room(limit, want, doc, chunk_len, 7);
        let mut reads = self.server.reads(room);
        while let Some(read) = reads.next_read() {
            let stored =
                self.store.get(&read.mailbox).into_iter().flatten().take(read.max).cloned().collect();
            reads.handle_read(&read, Ok(stored));
        }
        let (items, more) = reads.finish();
        self.server.answer(id, limit, more, results, items, want, doc, chunk_len, 7)
    }

    fn deliver(&mut self, mailbox: MailboxId) {
        if let Some(q) = self.store.get_mut(&mailbox) {
            self.next_seq += 1;
            q.push((self.next_seq, vec![0x5a; 1600]));
        }
    }
}

fn access(rng: &mut ChaCha20Rng) -> MailboxAccess {
    let mut m = MailboxAccess { mailbox: MailboxId([0; 32]), credential: [0; 32] };
    rng.fill_bytes(&mut m.mailbox.0);
    rng.fill_bytes(&mut m.credential);
    m
}

/// Runs one client for `run`; `mailboxes` at the start, `busy` with user activity. The link's
/// randomness (`seed`) is apart from the user's (`user_seed`), as in the client, whose schedule
/// draws do not depend on what the user does.
fn simulate(mailboxes: usize, busy: bool, seed: u64, run: Duration) -> Vec<Seen> {
    let size = FrameSize::for_packet_len(Geometry::default_for(Scheme::X25519Kem).packet_len()).unwrap();
    let chunk_len = doc_chunk_len(size.max_control_len());
    let mut link_rng = ChaCha20Rng::seed_from_u64(seed);
    let mut user_rng = ChaCha20Rng::seed_from_u64(seed ^ 0xdead_beef);
    let mut owned: Vec<MailboxAccess> = (0..mailboxes).map(|_| access(&mut user_rng)).collect();
    let mut schedule = Schedule::new(RATES);
    let mut client = PullClient::new(1 << 20);
    let mut gw =
        Gateway { server: PullServer::new(4096), store: BTreeMap::new(), next_seq: 0, doc: vec![1; 9000] };
    client.start_session(owned.clone());
    let mut seen = Vec::new();
    let mut have_doc = false;
    let mut next_pull = UnixMicros::ZERO;
    let mut first = true;
    let mut now = UnixMicros::ZERO;
    let end = UnixMicros::ZERO + run;
    let _ = schedule.poll(now, &mut link_rng);
    while now < end {
        let t = schedule.poll_timeout().unwrap().min(next_pull);
        now = t;
        let at = now.0 as f64 / 1e6;
        for _ in schedule.poll(now, &mut link_rng) {
            seen.push(Seen { at, up: true, len: size.packet_len() });
        }
        if now < next_pull {
            continue;
        }
        next_pull = now + INTERVAL;
        if busy {
            // What the user does and receives between two pulls.
            let r = user_rng.next_u32() % 100;
            if r < 10 {
                let m = access(&mut user_rng);
                owned.push(m);
                client.register(m);
            } else if r < 15 && owned.len() > 1 {
                let m = owned.remove((user_rng.next_u32() as usize) % owned.len());
                client.unregister(m);
            }
            for _ in 0..(user_rng.next_u32() % 4) {
                let m = owned[(user_rng.next_u32() as usize) % owned.len()];
                gw.deliver(m.mailbox);
            }
        }
        let limit = if first { PULL_FIRST } else { PULL_BATCH };
        first = false;
        let req = client.poll_pull(limit, if have_doc { 0 } else { 7 });
        seen.push(Seen { at, up: true, len: req.encode().unwrap().len() });
        let answer = gw.answer(req, chunk_len);
        for r in &answer {
            seen.push(Seen { at: at + 0.02, up: false, len: r.encode().unwrap().len() });
        }
        let out = client.handle_answer(answer).unwrap();
        have_doc |= out.document.is_some();
        for (m, seq, _) in out.items {
            if let Some(a) = owned.iter().find(|a| a.mailbox == m) {
                client.delete(*a, seq);
            }
        }
    }
    assert!(have_doc, "the directory document arrived");
    seen
}

fn gaps(s: &[Seen], up: bool) -> Vec<f64> {
    let t: Vec<f64> = s.iter().filter(|x| x.up == up).map(|x| x.at).collect();
    t.windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn frames_are_one_size_and_timings_do_not_depend_on_the_user() {
    let size = FrameSize::for_packet_len(Geometry::default_for(Scheme::X25519Kem).packet_len()).unwrap();
    let clients = [
        ("1 mailbox, idle", simulate(1, false, 1, RUN)),
        ("1 mailbox, busy", simulate(1, true, 2, RUN)),
        ("50 mailboxes, idle", simulate(50, false, 3, RUN)),
        ("50 mailboxes, busy", simulate(50, true, 4, RUN)),
    ];
    for (name, s) in &clients {
        assert!(s.len() > 5_000, "{name}: {} frames", s.len());
        // Every message fits one frame: on the wire each is `wire_len` bytes.
        for f in s {
            let fits = if f.len == size.packet_len() { true } else { f.len <= size.max_control_len() };
            assert!(fits, "{name}: a {}-byte message does not fit a frame", f.len);
        }
    }
    // Each against the idle one-mailbox client (different link randomness, as two users have).
    let (ref_name, reference) = (&clients[0].0, &clients[0].1);
    for (name, s) in &clients[1..] {
        for up in [true, false] {
            let ks = ks_two_sample(&gaps(reference, up), &gaps(s, up)).unwrap();
            assert!(
                ks.p_value > 0.05,
                "{ref_name} vs {name} ({}): D = {:.4}, p = {:.4}",
                if up { "up" } else { "down" },
                ks.statistic,
                ks.p_value
            );
        }
    }
    // Down: one head and `limit` slots per pull, for everyone.
    for (name, s) in &clients {
        let pulls = s.iter().filter(|f| f.up && f.len != size.packet_len()).count();
        let down = s.iter().filter(|f| !f.up).count();
        assert_eq!(down, 1 + usize::from(PULL_FIRST) + (pulls - 1) * (1 + usize::from(PULL_BATCH)), "{name}");
    }
}

#[test]
fn session_starts_are_identical_whatever_the_mailboxes() {
    // The same link randomness: the frames (time, direction, size class) of the first minute.
    let class =
        |s: Vec<Seen>| -> Vec<(u64, bool)> { s.into_iter().map(|f| ((f.at * 1e6) as u64, f.up)).collect() };
    let one = class(simulate(1, false, 9, Duration::from_secs(60)));
    let fifty = class(simulate(50, false, 9, Duration::from_secs(60)));
    let busy = class(simulate(50, true, 9, Duration::from_secs(60)));
    assert_eq!(one, fifty);
    assert_eq!(one, busy);
}
