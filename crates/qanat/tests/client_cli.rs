//! The client commands as a user runs them: the built `qanat` binary on a profile directory,
//! with the passphrase in `QANAT_PASSPHRASE`, against a network file of fresh keys written from
//! `qanat-network`'s typed `ClientNetwork` (no node needs to run for these, so none is
//! generated). Bad input must print a clear error, exit non-zero and change nothing.
//!
//! `client_commands_over_a_devnet` starts `qanat devnet up` (11 node processes), runs two
//! `qanat run` clients and has them invite, accept and talk with the commands (about 30 s in a
//! release build).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use qanat_link::LinkSecretKey;
use qanat_network::config::{AuthorityPeer, ClientGateway, ClientNetwork, NetworkConfig};
use qanat_packet::{Geometry, Scheme};
use qanat_pki::descriptor::LinkAddress;
use qanat_pki::{EpochPeriod, IdentitySecret};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_qanat");
const PASS: &str = "correct horse battery staple";

/// `qanat ARGS` with `passphrase` in the environment.
fn qanat_with(passphrase: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("QANAT_PASSPHRASE", passphrase)
        .env_remove("QANAT_HOME")
        .env("QANAT_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `qanat ARGS` with `passphrase` and the variables `envs` in the environment.
fn qanat_env(passphrase: &str, envs: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("QANAT_PASSPHRASE", passphrase)
        .envs(envs.iter().copied())
        .env_remove("QANAT_HOME")
        .env("QANAT_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn qanat(args: &[&str]) -> Output {
    qanat_with(PASS, args)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(args: &[&str]) -> String {
    let out = qanat(args);
    assert!(out.status.success(), "qanat {args:?} failed:\n{}\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// Runs a command that must fail; returns its standard error, which must hold `needle`.
fn fails_with(passphrase: &str, args: &[&str], needle: &str) -> String {
    let out = qanat_with(passphrase, args);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "qanat {args:?} succeeded:\n{}", text(&out.stdout));
    assert!(err.contains(needle), "qanat {args:?}: {needle:?} not in the error:\n{err}");
    err
}

fn json(args: &[&str]) -> Value {
    let mut full = vec!["--json"];
    full.extend_from_slice(args);
    let out = ok(&full);
    serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap()
}

/// Every file of a directory tree and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

/// A network file of a network that does not run (3 authorities and gateways `gw1`, `gw2` on
/// 127.0.0.1, fresh keys), and a place for profiles.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::rng();
        // Free ports, where nothing answers.
        let address = || {
            let port = qanat_link::http::free_local_port().unwrap();
            LinkAddress::parse(&format!("127.0.0.1:{port}")).unwrap()
        };
        let authorities = (0..3)
            .map(|_| AuthorityPeer {
                identity: IdentitySecret::generate(&mut rng).public(),
                link_key: LinkSecretKey::generate(&mut rng).public_key().clone(),
                address: address(),
            })
            .collect();
        let scheme = Scheme::X25519Kem;
        let network = NetworkConfig::new(
            "devnet",
            EpochPeriod::from_secs(20).unwrap(),
            authorities,
            Geometry::default_for(scheme),
        )
        .unwrap();
        let gateways = (1..=2)
            .map(|i| ClientGateway {
                name: format!("gw{i}"),
                identity: IdentitySecret::generate(&mut rng).public(),
                link_key: LinkSecretKey::generate(&mut rng).public_key().clone(),
                client_address: address(),
            })
            .collect();
        let file = ClientNetwork { network, gateways };
        std::fs::write(dir.path().join("network.toml"), file.render()).unwrap();
        Self { dir }
    }

    fn network(&self) -> String {
        self.dir.path().join("network.toml").display().to_string()
    }

    fn home(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// A `qanat run` process, killed by its PID when dropped.
struct Running(Child);

impl Running {
    fn start(home: &str) -> Self {
        let child = Command::new(BIN)
            .args(["run", "--home", home, "--fetch-interval-ms", "200"])
            .env("QANAT_PASSPHRASE", PASS)
            .env("QANAT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let r = Self(child);
        let socket = Path::new(home).join("control.sock");
        let start = Instant::now();
        // A stale socket file may be there already: wait until the client answers on it.
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(start.elapsed() < Duration::from_secs(60), "qanat run opened no control socket");
            std::thread::sleep(Duration::from_millis(100));
        }
        r
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn init_refuses_bad_input_and_a_second_profile() {
    let s = Setup::new();
    let home = s.home("alice");
    let net = s.network();

    let err = fails_with(PASS, &["init", "--home", &home, "--network", &net, "--gateway", "gw9"], "gw9");
    assert!(err.contains("gw1, gw2"), "the error lists the gateways: {err}");
    assert!(!Path::new(&home).join("profile.header").exists());
    fails_with(PASS, &["init", "--home", &home, "--network", "/nonexistent/network.toml"], "network.toml");
    fails_with("", &["init", "--home", &home, "--network", &net], "passphrase is empty");

    let out = ok(&["init", "--home", &home, "--network", &net, "--gateway", "gw2", "--traffic", "metered"]);
    assert!(out.contains("gw2") && out.contains("metered"), "{out}");
    assert_eq!(
        std::fs::read(Path::new(&home).join("network.toml")).unwrap(),
        std::fs::read(&net).unwrap(),
        "the network file is copied into the profile"
    );

    let before = snapshot(Path::new(&home));
    fails_with(PASS, &["init", "--home", &home, "--network", &net], "already holds a profile");
    fails_with(
        "another passphrase",
        &["init", "--home", &home, "--network", &net],
        "already holds a profile",
    );
    assert_eq!(snapshot(Path::new(&home)), before, "a refused init changed the profile");

    let status = json(&["status", "--home", &home]);
    assert_eq!(status["kind"], "status");
    assert_eq!(status["traffic"], "metered");
    assert_eq!(status["running"], false);
    assert_eq!(status["network"], false);
}

#[test]
fn bad_input_prints_a_clear_error_and_changes_nothing() {
    let s = Setup::new();
    let home = s.home("bob");
    let other = s.home("nobody-here");
    ok(&["init", "--home", &home, "--network", &s.network()]);

    fails_with(PASS, &["contacts", "--home", &other], "no profile in");
    let before = snapshot(Path::new(&home));
    fails_with("wrong", &["contacts", "--home", &home], "wrong passphrase");
    fails_with("wrong", &["run", "--home", &home], "wrong passphrase");
    assert_eq!(snapshot(Path::new(&home)), before, "a wrong passphrase changed the profile");

    fails_with(PASS, &["send", "--home", &home, "nobody", "hi"], "no contact or group named \"nobody\"");
    let out = qanat(&["--json", "send", "--home", &home, "nobody", "hi"]);
    assert!(!out.status.success());
    let v: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(v["kind"], "error");
    fails_with(PASS, &["accept", "--home", &home, "--name", "x", "garbage"], "not a Qanat invitation");
    fails_with(PASS, &["accept", "--home", &home, "--name", "x", "qanat://invite/AAAA"], "invitation");
    fails_with(PASS, &["invite", "--home", &home, "--name", "carol"], "qanat run");
    fails_with(PASS, &["history", "--home", &home, "nobody"], "nobody");
    fails_with(PASS, &["send", "--home", &home, "--wait", "nobody", "hi"], "running client");
    fails_with(PASS, &["inbox", "--home", &home, "--follow"], "running client");
    assert_eq!(json(&["contacts", "--home", &home])["list"], Value::Array(vec![]));
    assert_eq!(json(&["inbox", "--home", &home])["list"], Value::Array(vec![]));

    // Offline group commands work on the profile.
    ok(&["group", "create", "--home", &home, "friends"]);
    fails_with(PASS, &["group", "create", "--home", &home, "friends"], "already used");
    fails_with(PASS, &["group", "add", "--home", &home, "friends", "nobody"], "nobody");
    let contacts = json(&["contacts", "--home", &home]);
    assert_eq!(contacts["list"][0]["name"], "friends");
    assert_eq!(contacts["list"][0]["group"], true);
    assert_eq!(contacts["list"][0]["verified"], false);

    // Safety codes: a group's are per member, and there is none yet.
    fails_with(PASS, &["verify", "--home", &home, "nobody"], "no contact or group named \"nobody\"");
    fails_with(PASS, &["verify", "--home", &home, "friends"], "is a group");
    fails_with(PASS, &["verify", "--home", &home, "friends", "--member", "carol"], "no member of");
    let before = snapshot(Path::new(&home));
    fails_with(
        PASS,
        &["verify", "--home", &home, "friends", "--member", "carol", "--mark", "1"],
        "no member of",
    );
    fails_with(
        PASS,
        &["verify", "--home", &home, "friends", "--mark", "1", "--unmark"],
        "cannot be used with",
    );
    assert_eq!(snapshot(Path::new(&home)), before, "a refused mark changed the profile");
}

#[test]
fn a_profile_runs_in_one_process_and_commands_reach_it() {
    let s = Setup::new();
    let home = s.home("carol");
    ok(&["init", "--home", &home, "--network", &s.network()]);
    let socket = Path::new(&home).join("control.sock");

    // Stopped by SIGTERM: a clean shutdown removes the socket.
    let mut first = Running::start(&home);
    fails_with(PASS, &["run", "--home", &home], "in use by another process");
    let status = json(&["status", "--home", &home]);
    assert_eq!(status["running"], true, "status is answered by the running client: {status}");
    fails_with(PASS, &["send", "--home", &home, "nobody", "hi"], "no contact or group named");
    // Without the passphrase: the running client answers, no profile is opened.
    let out = qanat_with("wrong", &["--json", "status", "--home", &home]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pid = rustix::process::Pid::from_child(&first.0);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(st) = first.0.try_wait().unwrap() {
            break st;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "qanat run did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "qanat run exited with {status}");
    assert!(!socket.exists(), "the control socket is removed on shutdown");
    drop(first);

    // Killed: the stale socket does not stop the next command or the next run.
    let second = Running::start(&home);
    drop(second);
    assert!(socket.exists());
    assert_eq!(json(&["status", "--home", &home])["running"], false);
    let third = Running::start(&home);
    assert_eq!(json(&["status", "--home", &home])["running"], true);
    drop(third);
}

/// One HTTP/1.1 request to the app on 127.0.0.1 (blocking, a fresh connection): its status,
/// headers and body.
fn http(port: u16, method: &str, path: &str, head: &[(&str, &str)], body: &str) -> (u16, String, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in head {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (h, b) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = h.split(' ').nth(1).and_then(|x| x.parse().ok()).unwrap_or(0);
    (status, h.to_owned(), b.to_owned())
}

/// `qanat app`: refuses a passphrase in the environment and a first run without a network;
/// serves the page on 127.0.0.1 behind its one-time start link; a profile is made in the page,
/// the terminal's commands reach its client, and SIGTERM stops both cleanly.
#[test]
fn the_app_runs_the_profile_behind_its_page() {
    let s = Setup::new();
    let home = s.home("dana");
    fails_with(PASS, &["app", "--home", &home, "--no-browser"], "QANAT_PASSPHRASE is set");
    let app = |args: &[&str]| {
        Command::new(BIN)
            .arg("app")
            .args(args)
            .env_remove("QANAT_PASSPHRASE")
            .env_remove("QANAT_HOME")
            .env("QANAT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let out = app(&["--home", &home, "--no-browser"]).wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--network FILE"), "{}", text(&out.stderr));
    assert!(!Path::new(&home).exists(), "nothing was made");

    let mut child = app(&["--home", &home, "--no-browser", "--network", &s.network()]);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let first = lines.next().unwrap().unwrap();
    let url = first.split_whitespace().find(|w| w.starts_with("http://127.0.0.1:")).unwrap().to_owned();
    let rest = url.trim_start_matches("http://127.0.0.1:");
    let (port, path) = rest.split_at(rest.find('/').unwrap());
    let port: u16 = port.parse().unwrap();
    // Without the link's cookie, nothing but the locked page's text.
    let json_head = [("Origin", ""), ("Sec-Fetch-Site", "same-origin"), ("Content-Type", "application/json")];
    let origin = format!("http://127.0.0.1:{port}");
    let head = |extra: &[(&'static str, String)]| {
        let mut h: Vec<(&str, String)> = json_head
            .iter()
            .map(|(k, v)| (*k, if *k == "Origin" { origin.clone() } else { (*v).to_owned() }))
            .collect();
        h.extend(extra.iter().cloned());
        h
    };
    let call = |extra: &[(&'static str, String)], body: &str| {
        let h = head(extra);
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, b) = http(port, "POST", "/api/call", &h, body);
        assert_eq!(status, 200, "{body}: {b}");
        serde_json::from_str::<Value>(&b).unwrap()
    };
    let (status, _, _) = http(port, "POST", "/api/call", &[], r#"{"cmd":"app_state"}"#);
    assert_eq!(status, 403);
    let (status, h, _) =
        http(port, "GET", path, &[("Sec-Fetch-Site", "none"), ("Sec-Fetch-Dest", "document")], "");
    assert_eq!(status, 200, "{h}");
    let cookie = h
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let with_cookie = [("Cookie", cookie.clone())];
    assert_eq!(call(&with_cookie, r#"{"cmd":"app_state"}"#)["profile"], "none");
    let made = call(
        &with_cookie,
        r#"{"cmd":"create","passphrase":"a passphrase typed in the page","traffic":"metered"}"#,
    );
    let key = made["key"].as_str().unwrap_or_else(|| panic!("no key: {made}")).to_owned();
    let keyed = [("Cookie", cookie.clone()), ("X-Qanat-Key", key)];
    assert_eq!(call(&keyed, r#"{"cmd":"settings"}"#)["traffic"], "metered");
    // The terminal's commands reach the app's client, with no passphrase.
    let out = qanat_with("", &["--json", "status", "--home", &home]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(serde_json::from_str::<Value>(text(&out.stdout).trim()).unwrap()["running"], true);
    assert!(Path::new(&home).join("network.toml").exists());

    rustix::process::kill_process(rustix::process::Pid::from_child(&child), rustix::process::Signal::TERM)
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "qanat app did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "qanat app exited with {status}");
    let said: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(said.iter().any(|l| l.contains("stopped")), "{said:?}");
    assert!(!Path::new(&home).join("control.sock").exists());
    // The profile is there, under the page's passphrase.
    let out = qanat_with("a passphrase typed in the page", &["--json", "status", "--home", &home]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `qanat wipe` destroys the profile (nothing of its header is left in any file, no command
/// opens it), keeps network.toml, and is refused while `qanat run` holds the profile.
#[test]
fn wipe_destroys_the_profile_and_is_refused_while_it_runs() {
    let s = Setup::new();
    let home = s.home("dora");
    let dir = Path::new(&home);
    ok(&["init", "--home", &home, "--network", &s.network()]);
    ok(&["group", "create", "--home", &home, "friends"]);
    let header = std::fs::read(dir.join("profile.header")).unwrap();
    assert_eq!(header.len(), 247);

    let running = Running::start(&home);
    fails_with(PASS, &["wipe", "--home", &home, "--yes"], "qanat run");
    assert_eq!(std::fs::read(dir.join("profile.header")).unwrap(), header, "the header is kept");
    drop(running);

    fails_with(PASS, &["wipe", "--home", &s.home("nobody-here"), "--yes"], "no profile in");
    let out = ok(&["wipe", "--home", &home, "--yes"]);
    assert!(out.contains("destroyed"), "{out}");
    let left = snapshot(dir);
    let names: Vec<String> =
        left.keys().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["lock", "network.toml"], "only the lock and the network file stay");
    for bytes in left.values() {
        assert!(!bytes.windows(32).any(|w| header[39..].windows(32).any(|h| h == w)));
    }
    fails_with(PASS, &["contacts", "--home", &home], "no profile in");
    // The directory takes a new profile, from the network file it kept.
    ok(&["init", "--home", &home, "--network", &dir.join("network.toml").display().to_string()]);
    assert_eq!(json(&["contacts", "--home", &home])["list"], Value::Array(vec![]));
}

/// The duress passphrase, typed to any command, destroys the profile and the command goes on
/// with an empty one (same gateway and traffic), whose passphrase it now is; one equal to the
/// passphrase is refused; a new passphrase keeps it only when it is given again.
#[test]
fn a_duress_passphrase_opens_an_empty_profile_in_place_of_the_real_one() {
    const DURESS: &str = "under duress";
    let s = Setup::new();
    let home = s.home("erin");
    let dir = Path::new(&home);
    ok(&["init", "--home", &home, "--network", &s.network(), "--gateway", "gw2", "--traffic", "metered"]);
    ok(&["group", "create", "--home", &home, "friends"]);
    let set_duress = |duress: &str| {
        qanat_env(PASS, &[("QANAT_DURESS_PASSPHRASE", duress)], &["passphrase", "--home", &home, "--duress"])
    };

    let before = snapshot(dir);
    let out = set_duress(PASS);
    assert!(!out.status.success() && text(&out.stderr).contains("must differ"), "{}", text(&out.stderr));
    assert_eq!(snapshot(dir), before, "a refused duress passphrase changed the profile");
    ok(&["passphrase", "--home", &home, "--remove-duress"]);
    assert!(set_duress(DURESS).status.success());
    assert_eq!(std::fs::read(dir.join("profile.header")).unwrap().len(), 247);
    let before = snapshot(dir);
    fails_with("wrong", &["contacts", "--home", &home], "wrong passphrase");
    assert_eq!(snapshot(dir), before, "a wrong passphrase changed the profile");

    // A new passphrase given with the duress one again keeps it.
    let out = qanat_env(
        PASS,
        &[("QANAT_NEW_PASSPHRASE", "new passphrase"), ("QANAT_DURESS_PASSPHRASE", DURESS)],
        &["passphrase", "--home", &home, "--keep-duress"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    fails_with(PASS, &["contacts", "--home", &home], "wrong passphrase");
    let listed = qanat_with("new passphrase", &["--json", "contacts", "--home", &home]);
    assert!(text(&listed.stdout).contains("friends"), "{}", text(&listed.stdout));

    // The duress opening: the same answer as a real one, an empty list.
    let out = qanat_with(DURESS, &["--json", "contacts", "--home", &home]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(v["list"], Value::Array(vec![]));
    assert!(text(&out.stderr).is_empty(), "nothing is said: {}", text(&out.stderr));
    fails_with("new passphrase", &["contacts", "--home", &home], "wrong passphrase");
    let status: Value =
        serde_json::from_str(text(&qanat_with(DURESS, &["--json", "status", "--home", &home]).stdout).trim())
            .unwrap();
    assert_eq!(status["traffic"], "metered", "the slot's traffic profile");
    assert_eq!(std::fs::read(dir.join("network.toml")).unwrap(), std::fs::read(s.network()).unwrap());

    // A new passphrase alone drops the duress one.
    let out = qanat_env(
        DURESS,
        &[("QANAT_DURESS_PASSPHRASE", "second duress")],
        &["passphrase", "--home", &home, "--duress"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = qanat_env(DURESS, &[("QANAT_NEW_PASSPHRASE", "third")], &["passphrase", "--home", &home]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    fails_with("second duress", &["contacts", "--home", &home], "wrong passphrase");
    assert!(qanat_with("third", &["contacts", "--home", &home]).status.success());
}

/// Stops the devnet by PID when dropped (also on failure, keeping its logs then).
struct Devnet(Option<tempfile::TempDir>);

impl Devnet {
    fn dir(&self) -> PathBuf {
        self.0.as_ref().map(|d| d.path().join("devnet")).unwrap_or_default()
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        let _ = Command::new(BIN).args(["devnet", "down", "--dir"]).arg(self.dir()).output();
        if std::thread::panicking()
            && let Some(d) = self.0.take()
        {
            eprintln!("the devnet's logs are kept in {}", d.keep().display());
        }
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn client_commands_over_a_devnet() {
    let devnet = Devnet(Some(tempfile::tempdir().unwrap()));
    let dir = devnet.dir();
    let dir_s = dir.display().to_string();
    // Not `--wait`: the clients below wait until they have a directory that lists their gateway.
    ok(&["devnet", "up", "--dir", &dir_s]);
    let net = dir.join("network.toml").display().to_string();
    let homes = tempfile::tempdir().unwrap();
    let (a, b) = (homes.path().join("a").display().to_string(), homes.path().join("b").display().to_string());
    ok(&["init", "--home", &a, "--network", &net, "--gateway", "gw1"]);
    ok(&["init", "--home", &b, "--network", &net, "--gateway", "gw2"]);
    let _ra = Running::start(&a);
    let _rb = Running::start(&b);
    wait_for("the directory", Duration::from_secs(180), || {
        json(&["status", "--home", &a])["network"] == true
            && json(&["status", "--home", &b])["network"] == true
    });
    let status = json(&["status", "--home", &a]);
    assert!(status["idle_bytes_per_day"][0].as_u64().unwrap_or(0) > 0, "{status}");

    let inv = json(&["invite", "--home", &a, "--name", "bob"]);
    let link = inv["link"].as_str().unwrap().to_owned();
    ok(&["accept", "--home", &b, "--name", "alice", &link]);
    fails_with(PASS, &["accept", "--home", &b, "--name", "alice2", &link], "already accepted");
    let active = |home: &str| {
        let c = json(&["contacts", "--home", home]);
        c["list"][0]["state"] == "active"
    };
    wait_for("both contacts active", Duration::from_secs(120), || active(&a) && active(&b));

    ok(&["send", "--home", &a, "bob", "hello bob", "--wait", "--timeout-secs", "120"]);
    ok(&["send", "--home", &b, "alice", "hello alice", "--wait", "--timeout-secs", "120"]);
    let inbox = json(&["inbox", "--home", &b]);
    assert_eq!(inbox["list"][0]["text"], "hello bob", "{inbox}");
    let history = json(&["history", "--home", &a, "bob"]);
    let texts: Vec<&str> =
        history["list"].as_array().unwrap().iter().filter_map(|m| m["text"].as_str()).collect();
    assert!(texts.contains(&"hello bob") && texts.contains(&"hello alice"), "{history}");

    // Both see one safety code; Alice marks the one she compared.
    let code = json(&["verify", "--home", &a, "bob"]);
    assert_eq!(code["kind"], "safety_code");
    assert_eq!(code["verified"], false);
    assert_eq!(json(&["verify", "--home", &b, "alice"]), code, "both sides compute one code");
    let digits = code["code"].as_str().unwrap().to_owned();
    assert_eq!(digits.len(), 60);
    assert!(digits.bytes().all(|d| d.is_ascii_digit()));
    let shown = ok(&["verify", "--home", &a, "bob"]);
    let groups: Vec<&str> = digits.as_bytes().chunks(5).map(|g| std::str::from_utf8(g).unwrap()).collect();
    for row in groups.chunks(4) {
        assert!(shown.contains(&row.join(" ")), "3 rows of 4 groups:\n{shown}");
    }
    assert!(shown.contains("not verified"), "{shown}");
    let wrong = format!("{}{}", &digits[..59], if digits.ends_with('0') { '1' } else { '0' });
    fails_with(PASS, &["verify", "--home", &a, "bob", "--mark", &wrong], "not the current safety code");
    ok(&["verify", "--home", &a, "bob", "--mark", &groups.join(" ")]);
    assert_eq!(json(&["verify", "--home", &a, "bob"])["verified"], true);
    assert_eq!(json(&["verify", "--home", &b, "alice"])["verified"], false, "marks are local");
    assert_eq!(json(&["contacts", "--home", &a])["list"][0]["verified"], true);
    ok(&["verify", "--home", &a, "bob", "--unmark"]);
    assert_eq!(json(&["contacts", "--home", &a])["list"][0]["verified"], false);
}
