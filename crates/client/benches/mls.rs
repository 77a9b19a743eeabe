//! MLS costs by group size: `cargo bench -p qanat-client --bench mls` prints a Markdown table.
//!
//! For a group of n members (the creator, one measured member "b", and n − 2 members added but
//! idle, so the ratchet tree is sparse as in a freshly created group):
//! - add: the creator's commit adding one member (with a path update), and merging it;
//! - process add: b receives that commit and merges it when the decision window ends;
//! - join: the newcomer joins from the Welcome;
//! - commit: b's self-update commit (a path update, post-compromise security);
//! - process commit: the creator receives b's commit and merges it.
//!
//! Times are medians over the repetitions shown. Sizes are of the MLS messages (before Sphinx).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant, UNIX_EPOCH};

use qanat_client::mls::{Config, Conversation, OutgoingKind, Output, PendingJoin};

fn bytes_of(out: &Output, kind: OutgoingKind) -> Vec<u8> {
    out.outgoing.iter().find(|o| o.kind == kind).expect("message of that kind").bytes.clone()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

struct Row {
    n: usize,
    reps: usize,
    add: Duration,
    process_add: Duration,
    join: Duration,
    commit: Duration,
    process_commit: Duration,
    commit_bytes: usize,
    welcome_bytes: usize,
    state_bytes: usize,
}

fn measure(n: usize, reps: usize) -> Row {
    let config = Config::default();
    let window = config.decision_window + Duration::from_secs(1);
    let mut now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut creator = Conversation::create(&config).unwrap();
    let (pending_b, kp_b) = PendingJoin::new().unwrap();
    let out = creator.add(&kp_b, now).unwrap();
    let (mut b, _) = pending_b.join(&bytes_of(&out, OutgoingKind::Welcome), &config).unwrap();
    // Grow to n: the first addition opens a window, the others queue and go in one commit.
    let mut commits = Vec::new();
    let idle: Vec<Vec<u8>> = (0..n.saturating_sub(2)).map(|_| PendingJoin::new().unwrap().1).collect();
    for kp in &idle {
        let out = creator.add(kp, now).unwrap();
        commits.extend(out.outgoing.into_iter().filter(|o| o.kind == OutgoingKind::Commit).map(|o| o.bytes));
    }
    for _ in 0..2 {
        now += window;
        let out = creator.tick(now).unwrap();
        commits.extend(out.outgoing.into_iter().filter(|o| o.kind == OutgoingKind::Commit).map(|o| o.bytes));
    }
    for c in &commits {
        let _ = b.receive(c, now).unwrap();
    }
    now += window;
    let _ = b.tick(now).unwrap();
    assert_eq!(b.members().len(), n);
    assert_eq!(b.epoch_authenticator(), creator.epoch_authenticator());

    let (mut add, mut process_add, mut join, mut commit, mut process_commit) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut commit_bytes, mut welcome_bytes) = (0, 0);
    for _ in 0..reps {
        let (pending, kp) = PendingJoin::new().unwrap();
        let t = Instant::now();
        let out = creator.add(&kp, now).unwrap();
        now += window;
        let merged = creator.tick(now).unwrap();
        add.push(t.elapsed());
        let c = bytes_of(&out, OutgoingKind::Commit);
        let w = bytes_of(&merged, OutgoingKind::Welcome);
        welcome_bytes = w.len();

        let t = Instant::now();
        let _ = b.receive(&c, now).unwrap();
        let _ = b.tick(now + window).unwrap();
        process_add.push(t.elapsed());
        now += window;

        let t = Instant::now();
        let (newcomer, _) = pending.join(&w, &config).unwrap();
        join.push(t.elapsed());
        assert_eq!(newcomer.epoch_authenticator(), b.epoch_authenticator());

        let t = Instant::now();
        let out = b.update(now).unwrap();
        commit.push(t.elapsed());
        let c = bytes_of(&out, OutgoingKind::Commit);
        commit_bytes = c.len();
        let t = Instant::now();
        let _ = creator.receive(&c, now).unwrap();
        let _ = creator.tick(now + window).unwrap();
        process_commit.push(t.elapsed());
        now += window;
        let _ = b.tick(now).unwrap();
        assert_eq!(b.epoch_authenticator(), creator.epoch_authenticator());

        // Back to n members (not timed).
        let out = creator.remove(&newcomer.own_id(), now).unwrap();
        let c = bytes_of(&out, OutgoingKind::Commit);
        now += window;
        let _ = creator.tick(now).unwrap();
        let _ = b.receive(&c, now).unwrap();
        let _ = b.tick(now + window).unwrap();
        now += window;
        assert_eq!(b.members().len(), n);
    }
    let state_bytes = b.export().unwrap().len();
    Row {
        n,
        reps,
        add: median(add),
        process_add: median(process_add),
        join: median(join),
        commit: median(commit),
        process_commit: median(process_commit),
        commit_bytes,
        welcome_bytes,
        state_bytes,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters group sizes (e.g. `-- 100`).
    let only: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    println!(
        "| members | reps | add (ms) | process add (ms) | join (ms) | commit (ms) | process commit (ms) | commit (B) | welcome (B) | saved state (B) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (n, reps) in [(2, 21), (10, 21), (100, 7), (1000, 3)] {
        if !only.is_empty() && !only.contains(&n) {
            continue;
        }
        let r = measure(n, reps);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.n,
            r.reps,
            ms(r.add),
            ms(r.process_add),
            ms(r.join),
            ms(r.commit),
            ms(r.process_commit),
            r.commit_bytes,
            r.welcome_bytes,
            r.state_bytes
        );
    }
}
