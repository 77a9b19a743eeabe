//! The client core stands alone: what a phone build takes. `qanat-client` must not pull in node
//! code (the node runtime, the gateway's mailbox store) or the store's backends (Redis), only the
//! IO-free cores, `qanat-link` and `qanat-network`.

use std::process::Command;

/// Crates that must never be in the client's normal dependency tree.
const FORBIDDEN: &[&str] = &["qanat-node", "qanat-mailbox", "qanat-sim", "qanat", "redis"];

#[test]
fn client_depends_on_no_node_code() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "-p", "qanat-client", "-e", "normal", "--prefix", "none", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("cargo tree prints UTF-8");
    let names: Vec<&str> = text.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(names.contains(&"qanat-client") && names.contains(&"qanat-network"), "unexpected tree:\n{text}");
    for bad in FORBIDDEN {
        assert!(!names.contains(bad), "qanat-client depends on {bad}:\n{text}");
    }
}
