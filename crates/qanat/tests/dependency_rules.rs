//! The workspace's dependency rules, checked on what Cargo resolves (`ARCHITECTURE.md`,
//! "Invariants"): the IO-free crates (`qanat-codec`, `qanat-packet`, `qanat-pki`, `qanat-mixnet`,
//! `qanat-sim`) have no async runtime, no socket or event-loop crate, no database and no MLS stack
//! among their normal dependencies, direct or not, and no workspace crate but IO-free ones.
//!
//! Each check is one `cargo tree --locked --offline` on the committed `Cargo.lock` (no build, no
//! network): a second or so.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

/// The crates that do no IO: bytes, `now` and an RNG in, actions out.
const IO_FREE: &[&str] = &["qanat-codec", "qanat-packet", "qanat-pki", "qanat-mixnet", "qanat-sim"];

/// Crates an IO-free crate must never depend on: the async runtime and its socket and event-loop
/// layers, HTTP stacks, SQLite, Redis, and the MLS stack (names ending in `*` are prefixes).
const FORBIDDEN: &[&str] =
    &["tokio", "mio", "socket2", "hyper", "reqwest", "rusqlite", "libsqlite3-sys", "redis", "openmls*"];

fn forbidden(name: &str) -> bool {
    FORBIDDEN.iter().any(|f| match f.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == *f,
    })
}

/// `cargo tree` of the workspace with `args`.
fn cargo_tree(args: &[&str]) -> String {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--locked", "--offline", "--manifest-path", manifest])
        .args(args)
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("cargo tree prints UTF-8")
}

/// Every package in `krate`'s normal dependency tree, as (name, version), `krate` first.
fn normal_dependencies(krate: &str) -> Vec<(String, String)> {
    let text = cargo_tree(&["-e", "normal", "-p", krate, "--prefix", "none"]);
    let deps: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next()?;
            let version = words.next()?.trim_start_matches('v');
            Some((name.to_owned(), version.to_owned()))
        })
        .collect();
    assert_eq!(deps.first().map(|(n, _)| n.as_str()), Some(krate), "unexpected tree:\n{text}");
    deps
}

#[test]
fn io_free_crates_depend_on_no_runtime_socket_database_or_mls() {
    let mut broken = Vec::new();
    for krate in IO_FREE {
        let mut bad: Vec<(String, String)> =
            normal_dependencies(krate).into_iter().filter(|(name, _)| forbidden(name)).collect();
        bad.sort();
        bad.dedup();
        for (name, version) in bad {
            // How it comes in: the inverted tree from the offending package up to the crate.
            let path = cargo_tree(&["-e", "normal", "-p", krate, "-i", &format!("{name}@{version}")]);
            broken.push(format!("{krate} depends on {name} {version}:\n{path}"));
        }
    }
    assert!(broken.is_empty(), "IO-free crates with forbidden dependencies:\n\n{}", broken.join("\n"));
}

#[test]
fn io_free_crates_depend_only_on_io_free_workspace_crates() {
    let mut broken = Vec::new();
    for krate in IO_FREE {
        for (name, _) in normal_dependencies(krate) {
            if name.starts_with("qanat")
                && !IO_FREE.contains(&name.as_str())
                && !broken.contains(&(krate, name.clone()))
            {
                broken.push((krate, name));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "IO-free crates depending on crates that do IO (crate, dependency): {broken:?}"
    );
}

/// The check sees what it looks for: the client, which opens the link and the profile, has
/// tokio and SQLite in its tree (if it did not, a change in `cargo tree`'s output could make the
/// check above pass without looking).
#[test]
fn the_check_finds_forbidden_crates_where_they_are() {
    let names: Vec<String> = normal_dependencies("qanat-client").into_iter().map(|(n, _)| n).collect();
    for expected in ["tokio", "rusqlite", "libsqlite3-sys", "openmls"] {
        assert!(
            forbidden(expected) && names.iter().any(|n| n == expected),
            "no {expected} in qanat-client's tree"
        );
    }
}

/// The web server is a boundary: only `qanat-app` (and the binary that starts it) has axum,
/// hyper or an HTTP server; no core, no node and not the client depend on it.
#[test]
fn only_the_app_has_the_web_server() {
    let web = ["axum", "axum-core", "hyper", "hyper-util", "tower", "qanat-app"];
    let mut broken = Vec::new();
    for krate in
        IO_FREE.iter().chain(&["qanat-mailbox", "qanat-link", "qanat-network", "qanat-node", "qanat-client"])
    {
        for (name, version) in normal_dependencies(krate) {
            if web.contains(&name.as_str()) {
                broken.push(format!("{krate} depends on {name} {version}"));
            }
        }
    }
    broken.sort();
    broken.dedup();
    assert!(broken.is_empty(), "{broken:#?}");
    let app: Vec<String> = normal_dependencies("qanat-app").into_iter().map(|(n, _)| n).collect();
    assert!(app.iter().any(|n| n == "axum") && app.iter().any(|n| n == "hyper"), "the check looks: {app:?}");
    assert!(
        !app.iter().skip(1).any(|n| n.starts_with("qanat-")),
        "the app's server knows no Qanat crate: {app:?}"
    );
}
