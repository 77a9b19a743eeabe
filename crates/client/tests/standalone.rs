//! The client core stands alone: what a phone build takes. `qanat-client` must not pull in node
//! code (the node runtime, the gateway's mailbox store) or the store's backends (Redis), only the
//! IO-free cores, `qanat-link` and `qanat-network`. And no production build of the binary has
//! the client's test-only attack programs (feature `attacks`).

use std::process::Command;

/// Crates that must never be in the client's normal dependency tree.
const FORBIDDEN: &[&str] = &["qanat-node", "qanat-mailbox", "qanat-sim", "qanat", "redis"];

/// `cargo tree ARGS --prefix none --offline` in this crate's directory.
fn cargo_tree(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .arg("tree")
        .args(args)
        .args(["--prefix", "none", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("cargo tree prints UTF-8")
}

#[test]
fn client_depends_on_no_node_code() {
    let text = cargo_tree(&["-p", "qanat-client", "-e", "normal"]);
    let names: Vec<&str> = text.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(names.contains(&"qanat-client") && names.contains(&"qanat-network"), "unexpected tree:\n{text}");
    for bad in FORBIDDEN {
        assert!(!names.contains(bad), "qanat-client depends on {bad}:\n{text}");
    }
}

#[test]
fn production_builds_leave_the_attacks_out() {
    let attacks = "qanat-client feature \"attacks\"";
    // The binary's tests enable it (the check below would pass vacuously after a rename)...
    let with_tests = cargo_tree(&["-p", "qanat", "-e", "features"]);
    assert!(with_tests.contains(attacks), "no attacks feature in the tests' tree:\n{with_tests}");
    // ...and nothing else does: not the binary, not the libraries it is built from.
    let production = cargo_tree(&["-p", "qanat", "-e", "features,normal"]);
    assert!(production.contains("qanat-client feature \"default\""), "unexpected tree:\n{production}");
    assert!(!production.contains(attacks), "a production build has the attacks:\n{production}");
}
