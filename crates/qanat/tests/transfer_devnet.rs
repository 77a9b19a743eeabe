//! Files and voice notes through a real devnet (11 node processes on 127.0.0.1 whose gateways
//! drop 10% of what they receive, from clients and from the last mix: about 19% of packets end
//! to end) between real clients in this process (docs/ATTACHMENTS.md §5.1).
//!
//! Shows: a 1 MB file from alice to bob while bob goes offline halfway and comes back and alice's
//! client restarts halfway; a 30-second voice note (about 90 KB, handed over in parts as the app
//! does) from bob to alice; the same 1 MB file to a group of three with carol offline halfway,
//! and a voice note from carol to the group. Each arrives once, byte for byte, and its sender
//! sees it delivered to every recipient.
//!
//! `cargo test --release -p qanat --test transfer_devnet` (a few minutes).

use std::time::Duration;

use qanat_client::control::{FileOut, MAX_PART, Request, Response};
use qanat_client::engine::EngineEvent;
use qanat_node::config::ClientNetwork;

mod common;
use common::devnet_up;
use common::users::{User, accept_group, connect, until, wait_members, wait_network};

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A stand-in for a 30-second Opus voice note: WebM's magic and 90 KB.
fn voice(seed: u8) -> Vec<u8> {
    let mut v = vec![0x1a, 0x45, 0xdf, 0xa3];
    v.extend(bytes(90_000, seed));
    v
}

async fn transfers(u: &User, name: Option<&str>) -> Vec<FileOut> {
    match u.call(Request::Transfers { name: name.map(Into::into) }).await {
        Response::Transfers { list } => list,
        r => panic!("{}: transfers: {r:?}", u.name),
    }
}

/// The files of `thread` that `u` has, by name.
async fn file_named(u: &User, thread: &str, name: &str) -> Option<FileOut> {
    transfers(u, Some(thread)).await.into_iter().find(|f| f.name == name)
}

/// Waits until `u` has the file `name` of `thread` in state `state`.
async fn wait_state(u: &User, thread: &str, name: &str, state: &str, limit: Duration) -> FileOut {
    let end = tokio::time::Instant::now() + limit;
    let mut next_log = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(f) = file_named(u, thread, name).await
            && f.state == state
        {
            return f;
        }
        let now = tokio::time::Instant::now();
        if now >= next_log {
            // What a failure needs: how far it got, and how fast.
            let files = match u.call(Request::Status).await {
                Response::Status { files, .. } => Some(files),
                _ => None,
            };
            println!(
                "transfer_devnet: {} waits for {name} {state}: {:?} {files:?}",
                u.name,
                file_named(u, thread, name).await
            );
            next_log = now + Duration::from_secs(30);
        }
        assert!(now < end, "{}: {name} never {state}: {:?}", u.name, file_named(u, thread, name).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `u` holds more than `bytes` of the file `name` of `thread`.
async fn wait_progress(u: &User, thread: &str, name: &str, bytes: u64, limit: Duration) {
    let end = tokio::time::Instant::now() + limit;
    loop {
        if file_named(u, thread, name).await.is_some_and(|f| f.done_bytes > bytes) {
            return;
        }
        assert!(tokio::time::Instant::now() < end, "{}: {name} never past {bytes} bytes", u.name);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The whole file `id` as `u` reads it, in parts as the app does.
async fn read_file(u: &User, id: &str) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let r =
            u.call(Request::FilePart { id: id.into(), offset: out.len() as u64, len: MAX_PART as u32 }).await;
        let Response::FileData { data, total } = r else { panic!("{}: file_part: {r:?}", u.name) };
        let part = base64_decode(&data);
        out.extend_from_slice(&part);
        if out.len() as u64 >= total || part.is_empty() {
            return out;
        }
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Sends `file` as the app does: begin, parts, commit.
async fn attach(u: &User, to: &str, name: &str, kind: &str, file: &[u8], duration_ms: Option<u32>) -> String {
    let r = u
        .call(Request::AttachBegin {
            to: to.into(),
            name: name.into(),
            mime: "audio/webm".into(),
            size: file.len() as u64,
            kind: kind.into(),
            duration_ms,
            caption: None,
        })
        .await;
    let Response::Attach { id } = r else { panic!("{}: attach: {r:?}", u.name) };
    for (i, part) in file.chunks(MAX_PART).enumerate() {
        let r = u
            .call(Request::AttachPart {
                id: id.clone(),
                offset: (i * MAX_PART) as u64,
                data: base64_encode(part),
            })
            .await;
        assert_eq!(r, Response::Ok, "{}: part {i}", u.name);
    }
    match u.call(Request::AttachCommit { id, fast: false }).await {
        Response::Sent { id } => id,
        r => panic!("{}: commit: {r:?}", u.name),
    }
}

/// Sends the file at `path` as the terminal does.
async fn send_file(u: &User, to: &str, path: &std::path::Path) -> String {
    let r = u
        .call(Request::SendFile {
            to: to.into(),
            path: path.to_string_lossy().into_owned(),
            name: None,
            fast: false,
            caption: Some("the report".into()),
        })
        .await;
    match r {
        Response::Sent { id } => id,
        r => panic!("{}: send_file: {r:?}", u.name),
    }
}

/// How many file messages `u` was told of in `thread`.
fn offers(u: &User, thread: &str) -> usize {
    u.seen
        .iter()
        .filter(|e| matches!(e, EngineEvent::Message { thread: t, file: Some(_), .. } if t == thread))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_voice_notes_through_a_lossy_devnet() {
    let devnet = devnet_up(&["--epoch-secs", "10", "--lambda-p", "40", "--fault-drop-rate", "0.1"]);
    let network = ClientNetwork::load(&devnet.dir.path().join("network.toml")).unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut alice = User::new(root.path(), "alice", &network, 0);
    let mut bob = User::new(root.path(), "bob", &network, 1);
    let mut carol = User::new(root.path(), "carol", &network, 0);
    for u in [&mut alice, &mut bob, &mut carol] {
        u.start(&network);
    }
    for u in [&alice, &bob, &carol] {
        wait_network(u).await;
    }
    connect(&mut alice, "bob", &mut bob, "alice").await;
    connect(&mut alice, "carol", &mut carol, "alice").await;
    let started = std::time::Instant::now();
    let phase = |what: &str| println!("transfer_devnet: {what} at {} s", started.elapsed().as_secs());

    // 1. A 1 MB file, alice → bob: bob offline halfway, alice restarted halfway.
    let report = bytes(1_000_000, 1);
    let path = root.path().join("report.pdf");
    std::fs::write(&path, &report).unwrap();
    let sent = send_file(&alice, "bob", &path).await;
    wait_progress(&bob, "alice", "report.pdf", 300_000, Duration::from_secs(300)).await;
    bob.stop().await;
    phase("bob offline");
    tokio::time::sleep(Duration::from_secs(10)).await;
    bob.start(&network);
    phase("bob back");
    wait_progress(&bob, "alice", "report.pdf", 600_000, Duration::from_secs(300)).await;
    alice.stop().await;
    alice.start(&network);
    phase("alice restarted");
    let done = wait_state(&alice, "bob", "report.pdf", "sent", Duration::from_secs(600)).await;
    assert_eq!(done.recipients, [1, 1]);
    assert_eq!(done.transfer, sent);
    let theirs = wait_state(&bob, "alice", "report.pdf", "received", Duration::from_secs(60)).await;
    assert!(read_file(&bob, &theirs.transfer).await == report, "byte for byte");
    bob.pump();
    assert_eq!(offers(&bob, "alice"), 1, "one message for the file, after a restart too");
    assert_eq!(transfers(&bob, Some("alice")).await.len(), 1);
    // Saved outside the profile, as `qanat save` does.
    let saved = root.path().join("saved.pdf");
    let r = bob
        .call(Request::FileSave {
            id: theirs.transfer.clone(),
            path: saved.to_string_lossy().into(),
            force: false,
        })
        .await;
    assert_eq!(r, Response::Ok);
    assert!(std::fs::read(&saved).unwrap() == report);
    let r = bob
        .call(Request::FileSave {
            id: theirs.transfer.clone(),
            path: saved.to_string_lossy().into(),
            force: false,
        })
        .await;
    assert!(matches!(r, Response::Error { .. }), "no overwrite without force");
    phase("1 MB one-to-one");

    // 2. A 30-second voice note, bob → alice, handed over in parts.
    let note = voice(2);
    attach(&bob, "alice", "note.webm", "voice", &note, Some(30_000)).await;
    let got = wait_state(&alice, "bob", "note.webm", "received", Duration::from_secs(300)).await;
    assert_eq!((got.kind.as_str(), got.duration_ms), ("voice", Some(30_000)));
    assert!(read_file(&alice, &got.transfer).await == note, "byte for byte");
    wait_state(&bob, "alice", "note.webm", "sent", Duration::from_secs(120)).await;
    phase("voice note one-to-one");

    // 3. The group of three: the 1 MB file with carol offline halfway, and carol's voice note.
    assert_eq!(alice.call(Request::GroupCreate { name: "team".into() }).await, Response::Ok);
    for c in ["bob", "carol"] {
        let r = alice.call(Request::GroupAdd { group: "team".into(), contact: c.into() }).await;
        assert_eq!(r, Response::Ok);
    }
    accept_group(&bob, "team").await;
    accept_group(&carol, "team").await;
    for u in [&alice, &bob, &carol] {
        wait_members(u, "team", 2).await;
    }
    phase("group");
    send_file(&alice, "team", &path).await;
    wait_progress(&carol, "team", "report.pdf", 300_000, Duration::from_secs(300)).await;
    carol.stop().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    carol.start(&network);
    let done = wait_state(&alice, "team", "report.pdf", "sent", Duration::from_secs(900)).await;
    assert_eq!(done.recipients, [2, 2]);
    for u in [&mut bob, &mut carol] {
        let f = wait_state(u, "team", "report.pdf", "received", Duration::from_secs(60)).await;
        assert!(read_file(u, &f.transfer).await == report, "{}: byte for byte", u.name);
        u.pump();
        assert_eq!(offers(u, "team"), 1, "{}: one message", u.name);
    }
    phase("1 MB to the group");
    let note = voice(3);
    attach(&carol, "team", "team-note.webm", "voice", &note, Some(30_000)).await;
    for u in [&alice, &bob] {
        let f = wait_state(u, "team", "team-note.webm", "received", Duration::from_secs(300)).await;
        assert!(read_file(u, &f.transfer).await == note, "{}: byte for byte", u.name);
    }
    let f = wait_state(&carol, "team", "team-note.webm", "sent", Duration::from_secs(120)).await;
    assert_eq!(f.recipients, [2, 2]);
    phase("voice note to the group");
    until(&mut [&mut alice], Duration::from_secs(5), "events", |_| true).await;
    for u in [&mut alice, &mut bob, &mut carol] {
        u.stop().await;
    }
}
