//! The README's first command: `qanat demo` runs a whole network and two users in one process,
//! and exits 0 only when every message arrived.

use std::process::Command;

#[test]
fn the_demo_delivers_every_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_qanat"))
        .args(["demo", "--messages", "6", "--gap-ms", "300"])
        .output()
        .expect("run qanat demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("demo: 6/6 messages delivered, p50 "), "{stdout}");
    assert!(stdout.matches(" ms\n").count() >= 6, "{stdout}");
}
