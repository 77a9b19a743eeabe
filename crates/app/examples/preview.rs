//! The page over a fake backend holding demo data, to look at it without a network:
//! `cargo run -p qanat-app --example preview -- [--first] [--long] [--lang en|fr|ar] [--lock-secs N] [--port N]`, then
//! open the printed link (it works once, for 2 minutes). Any passphrase unlocks, but `wrong`.
//!
//! Demo data: two contacts (one with an Arabic name), a group of three, messages in every
//! delivery state, a contact waiting for its invitation's answer and a group invitation;
//! safety codes (Jules verified in the group, سلمى's "changed", Amina's not verified), groups
//! that can be made, joined, changed and left, the network panel's counters (growing), and
//! settings whose passphrase commands refuse `wrong`; a wipe starts the first run again.
//! Files and voice notes: سلمى's conversation holds one file in each state (a received PNG map
//! and WAV voice note drawn by `demo/media.rs`, ours sending, cancelled, one failed, one
//! receiving, one offered to accept or decline), moved on by `transfer` events every second;
//! the Field team holds an "image" whose bytes are SVG (not shown). Files attached or recorded
//! here are kept in memory, arrive within 15 s (7 s faster) and can be played or saved back;
//! the estimate follows docs/ATTACHMENTS.md §3.11 (4 MiB at most; contacts offer the faster
//! way, groups do not).
//! Messages sent here go queued → sent → delivered within seconds; `--first` starts with no
//! profile (the first run), whose network costs appear after four seconds ("measuring…" until
//! then); `--long` adds a conversation of 250 messages (history pages). Nothing here is in the real server: it is a `Backend` like the tests' fakes.

mod demo;

use demo::{Demo, MIN, Thread, demo_world, message, now_ms};
use qanat_app::{AppConfig, serve};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().position(|a| a == f);
    let value = |f: &str| flag(f).and_then(|i| args.get(i + 1)).cloned();
    let first = flag("--first").is_some();
    let port = value("--port").and_then(|p| p.parse().ok()).unwrap_or(0);
    let mut world = demo_world(first, value("--lang"));
    if flag("--long").is_some() {
        // A conversation longer than one page (the page asks 100 at a time).
        let start = now_ms() - 300 * MIN;
        let messages = (0..250u64)
            .map(|i| {
                let (sender, state) = if i % 3 == 0 { ("me", Some("delivered")) } else { ("Archive", None) };
                message(
                    10_000 + i,
                    "Archive",
                    sender,
                    &format!("Message number {}", i + 1),
                    start + i * MIN,
                    state,
                    [1, 1],
                )
            })
            .collect();
        world.threads.push(Thread {
            name: "Archive".into(),
            group: false,
            state: "active",
            members: vec!["Archive".into()],
            invited: vec![],
            unread: 0,
            expires_at_ms: None,
            made_ms: start,
            messages,
        });
    }
    if let Some(s) = value("--lock-secs").and_then(|s| s.parse().ok()) {
        world.lock_timeout_secs = s;
    }
    let demo = Demo::new(world);
    let running = serve(demo, AppConfig { port, ..AppConfig::default() }).await?;
    println!("{}", running.start_url());
    // Until the process is stopped (Ctrl-C).
    std::future::pending::<()>().await;
    running.stop().await
}
