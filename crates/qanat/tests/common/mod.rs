//! What the integration tests that run a devnet of `qanat` processes share.
#![allow(dead_code)]

use std::process::Command;

pub(crate) mod users;
pub(crate) mod world;

/// The `qanat` binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_qanat");

/// A devnet in a temporary directory, stopped (its processes, by PID) when dropped, also when a
/// test fails.
pub(crate) struct Devnet {
    pub(crate) dir: tempfile::TempDir,
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = Command::new(BIN).args(["devnet", "down", "--dir"]).arg(self.dir.path()).output();
    }
}

/// `qanat devnet up ARGS --wait`: returns once every node is up.
pub(crate) fn devnet_up(args: &[&str]) -> Devnet {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["devnet", "up"])
        .args(args)
        .arg("--wait")
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let devnet = Devnet { dir };
    assert!(out.status.success(), "devnet up failed: {}", String::from_utf8_lossy(&out.stderr));
    devnet
}
