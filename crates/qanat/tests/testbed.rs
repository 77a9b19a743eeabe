//! The hostile testbed, short: a devnet in Linux network namespaces (`qanat testbed run`) with
//! both clients on 2G (50 kbit/s each way, 500 ms RTT with jitter, 5% loss: `tc tbf`, nftables
//! drops and the userspace delay relay all in the path), a few messages, each of which must
//! arrive exactly once. The full run of every profile is `qanat testbed run --profile all`
//! (docs/TESTBED.md).
//!
//! Needs root (it creates namespaces `qtb-*`, and removes them). Skipped, loudly, only when the
//! kernel refuses to create a network namespace; anything else (a missing `ip`, `tc` or `nft`, a
//! message lost) fails.
//!
//! `cargo test --release -p qanat --test testbed` (about 3 minutes).

use std::process::Command;

mod common;
use common::BIN;

#[test]
fn a_chat_over_2g_arrives_exactly_once() {
    let check = Command::new(BIN).args(["testbed", "check"]).output().unwrap();
    if check.status.code() == Some(2) {
        eprintln!(
            "\n==============================================================\n\
             SKIPPED testbed: network namespaces are unavailable here\n\
             ({}). Run as root to test the hostile testbed.\n\
             ==============================================================\n",
            String::from_utf8_lossy(&check.stderr).trim()
        );
        return;
    }
    assert!(check.status.success(), "testbed check: {}", String::from_utf8_lossy(&check.stderr));

    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["testbed", "run", "--profile", "2g", "--messages", "6", "--duration", "15"])
        .args(["--drain", "180", "--no-group", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // On failure the logs are what tells why.
    if !out.status.success() {
        for log in ["clients/alice.log", "clients/bob.log", "net/gw1/node.log"] {
            let text = std::fs::read_to_string(dir.path().join("2g").join(log)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            eprintln!("--- {log} (last lines, newest first)\n{}", tail.join("\n"));
        }
    }
    assert!(out.status.success(), "testbed run failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("testbed: 2g: 6/6 delivered, 0 duplicate"), "{stdout}");
    // Nothing is left behind: no namespace of this run, no process.
    let manifest = std::fs::read_to_string(dir.path().join("2g/testbed.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(m["namespaces"].as_array().map(Vec::len), Some(0), "{manifest}");
    assert_eq!(m["processes"].as_array().map(Vec::len), Some(0), "{manifest}");
}
