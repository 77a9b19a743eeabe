//! The Qanat app in a real browser (docs/APP.md §7): Debian's `chromium`, driven through
//! `chromedriver` by WebDriver (fantoccini), against `qanat app` processes on a devnet.
//!
//! - `two_users_in_their_browsers`: alice and bob, each a `qanat app` with its own headless
//!   Chromium (bob's phone-sized), go through the first run, an invitation and its acceptance, a
//!   conversation whose ticks reach "delivered" and only move forward, the safety code (one on
//!   both sides, marked by alice only), locking and unlocking; then alice's browser,
//!   which holds her cookie, visits a hostile page on another loopback port (same site to the
//!   browser) that tries a no-cors `text/plain` command, an auto-submitted form, the event stream
//!   as an image, a WebSocket and an EventSource, and a DNS-rebinding name: none gets through.
//!   Then a group of three: alice makes it in her page and adds bob and carol (who uses the
//!   terminal: `qanat run` and its commands); nobody is in it before saying yes (bob in his
//!   page, carol by `qanat group accept`); messages show their sender; alice removes carol,
//!   bob leaves. Meanwhile alice's page locks itself after its one-minute timeout, and she
//!   unlocks, opens the group, sends and locks with the keyboard alone.
//!   Last, bob sets a duress passphrase, locks, and types it (an empty profile; his real
//!   passphrase opens nothing any more), then wipes the profile from the settings (the first run
//!   again, no header left).
//! - `a_voice_note_and_a_picture_between_two_browsers`: alice records a voice note of 30
//!   seconds from Chromium's fake microphone (a tone the test writes), sends it hidden from the
//!   dialog that shows the estimate, then a picture through the file input; bob's page shows the
//!   note's length, plays it (the same bytes alice recorded, which her app also gives back
//!   whole) and shows the picture (its bytes); no progress bar on either side moves back.
//! - `the_page_is_refused_without_its_link`: a browser that never had the start link gets
//!   nothing of the app, nor does a Host the app does not know.
//!
//! Without `/usr/bin/chromium` and `/usr/bin/chromedriver` these tests say so and pass, except
//! under `CI=true` where they fail (`scripts/test` installs both).

mod common;

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, devnet_up};
use fantoccini::{Client, ClientBuilder, Locator, elements::Element, key::Key};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ALICE_PASS: &str = "alice keeps her sources safe tonight";
const BOB_PASS: &str = "bob reads the river charts at dawn";
const GROUP: &str = "field team";

/// Whether the browser is here; under `CI=true` it must be.
fn have_browser() -> bool {
    let here = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !here {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{CHROMIUM} and {CHROMEDRIVER} are needed under CI=true (scripts/test installs them)"
        );
        eprintln!("SKIPPED: the browser tests need Debian's chromium and chromium-driver");
    }
    here
}

/// A `chromedriver` on a free loopback port, killed by its PID when dropped, with the browsers
/// it started (found by their profile directories, which are this test's own).
struct Driver {
    child: Child,
    port: u16,
    profiles: std::sync::Mutex<Vec<PathBuf>>,
}

impl Driver {
    fn start() -> Self {
        let port = qanat_link::http::free_local_port().unwrap();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = Self { child, port, profiles: Default::default() };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    /// A fresh browser (its own profile directory), `width` × `height`.
    async fn browser(&self, profile: &Path, width: u32, height: u32) -> Client {
        self.browser_with(profile, width, height, &[]).await
    }

    /// A fresh browser as [`Driver::browser`] makes it, with `extra` arguments for Chromium.
    async fn browser_with(&self, profile: &Path, width: u32, height: u32, extra: &[String]) -> Client {
        self.profiles.lock().unwrap().push(profile.to_owned());
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-default-apps",
            "--disable-extensions",
            "--lang=en-US",
            "--host-resolver-rules=MAP rebind.test 127.0.0.1",
        ]
        .map(String::from)
        .into();
        args.push(format!("--window-size={width},{height}"));
        args.push(format!("--user-data-dir={}", profile.display()));
        args.extend_from_slice(extra);
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), json!({ "binary": CHROMIUM, "args": args }));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a WebDriver session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // chromedriver leaves its browsers running when it is killed: each is stopped by the
        // PID of the processes whose command line names one of our profile directories.
        let profiles = self.profiles.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Ok(procs) = std::fs::read_dir("/proc") else { return };
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            let Ok(cmd) = std::fs::read(p.path().join("cmdline")) else { continue };
            let cmd = String::from_utf8_lossy(&cmd);
            if profiles.iter().any(|d| cmd.contains(&format!("--user-data-dir={}", d.display())))
                && let Some(pid) = rustix::process::Pid::from_raw(pid)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// A `qanat app --no-browser` process; stopped by SIGTERM (then killed) when dropped.
struct App {
    child: Child,
    url: String,
    home: PathBuf,
}

impl App {
    fn start(home: &Path, network: &Path) -> Self {
        let mut child = Command::new(BIN)
            .arg("app")
            .arg("--home")
            .arg(home)
            .arg("--network")
            .arg(network)
            .args(["--no-browser", "--decision-window-secs", "3"])
            .env_remove("QANAT_PASSPHRASE")
            .env_remove("QANAT_HOME")
            .env("QANAT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        // The rest of its output is drained, so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        let url = first.split_whitespace().find(|w| w.starts_with("http://127.0.0.1:")).unwrap().to_owned();
        Self { child, url, home: home.to_owned() }
    }

    /// `http://127.0.0.1:PORT`.
    fn origin(&self) -> String {
        let rest = self.url.trim_start_matches("http://");
        format!("http://{}", &rest[..rest.find('/').unwrap()])
    }

    fn port(&self) -> u16 {
        self.origin().rsplit(':').next().unwrap().parse().unwrap()
    }

    /// A command through the control socket, as the terminal's commands send it.
    fn cli(&self, args: &[&str]) -> Value {
        cli(&self.home, args)
    }
}

/// A command to the client running on `home`, through its control socket (no passphrase): its
/// last line of JSON.
fn cli(home: &Path, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("--json")
        .args(args)
        .arg("--home")
        .arg(home)
        .env_remove("QANAT_PASSPHRASE")
        .env("QANAT_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("null")).unwrap_or(Value::Null)
}

/// Carol, who uses the terminal: `qanat init`, then `qanat run` (killed by its PID when
/// dropped); her commands go through its control socket.
struct Terminal {
    child: Child,
    home: PathBuf,
}

impl Terminal {
    fn start(home: &Path, network: &Path) -> Self {
        const PASS: &str = "carol files her reports from the border";
        let init = Command::new(BIN)
            .arg("init")
            .arg("--home")
            .arg(home)
            .arg("--network")
            .arg(network)
            .env("QANAT_PASSPHRASE", PASS)
            .env("QANAT_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(init.status.success(), "qanat init: {}", String::from_utf8_lossy(&init.stderr));
        let child = Command::new(BIN)
            .arg("run")
            .arg("--home")
            .arg(home)
            // The apps' decision window: a commit takes effect after it (2 minutes by default).
            .args(["--decision-window-secs", "3"])
            .env("QANAT_PASSPHRASE", PASS)
            .env("QANAT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let t = Self { child, home: home.to_owned() };
        let start = Instant::now();
        while cli(home, &["status"])["running"] != true {
            assert!(start.elapsed() < Duration::from_secs(60), "qanat run did not answer");
            std::thread::sleep(Duration::from_millis(200));
        }
        t
    }

    fn cli(&self, args: &[&str]) -> Value {
        cli(&self.home, args)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (polling the terminal's commands, with a deadline) until `ok` holds for the answer
/// to `args`; returns that answer.
async fn until_cli(
    home: &Path,
    args: &[&str],
    what: &str,
    limit: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let v = cli(home, args);
        if ok(&v) {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The contact or group `name` in a `contacts` answer (`null` if it is not there).
fn thread<'a>(contacts: &'a Value, name: &str) -> &'a Value {
    contacts["list"].as_array().and_then(|l| l.iter().find(|t| t["name"] == name)).unwrap_or(&Value::Null)
}

/// Waits (polling, with a deadline) for an element matching `css`.
async fn wait_css(c: &Client, css: &str, limit: Duration) -> Element {
    let start = Instant::now();
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            return e;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {css}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (polling, with a deadline) until `script` (a function body returning a value) returns
/// `true`.
async fn wait_js(c: &Client, what: &str, script: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        if c.execute(script, vec![]).await.ok() == Some(Value::Bool(true)) {
            return;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Clicks the first element matching `css`, once it is there and can be clicked (waiting, with
/// a deadline).
async fn click(c: &Client, css: &str) {
    let start = Instant::now();
    loop {
        let e = wait_css(c, css, Duration::from_secs(20)).await;
        match e.click().await {
            Ok(()) => return,
            Err(err) => assert!(start.elapsed() < Duration::from_secs(20), "cannot click {css}: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Clicks the first element `xpath` finds, once it is there (waiting, with a deadline).
async fn click_xpath(c: &Client, xpath: &str) {
    let start = Instant::now();
    loop {
        if let Ok(e) = c.find(Locator::XPath(xpath)).await
            && e.click().await.is_ok()
        {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "cannot click {xpath}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Presses keys as a keyboard does: into whatever has the focus. By WebDriver's key actions, not
/// by sending them to the focused element, which a file input (the composer's attach control)
/// would take for the path of a file. Shift stays down for the keys after it, as in send_keys.
async fn press(c: &Client, keys: &str) {
    use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
    let shift = char::from(Key::Shift);
    let mut actions = KeyActions::new("keyboard".into());
    for k in keys.chars() {
        actions = actions.then(KeyAction::Down { value: k });
        if k != shift {
            actions = actions.then(KeyAction::Up { value: k });
        }
    }
    if keys.contains(shift) {
        actions = actions.then(KeyAction::Up { value: shift });
    }
    c.perform_actions(actions).await.unwrap();
}

/// Presses Tab (Shift+Tab when `back`), at most 40 times, until the focused element `e` makes
/// the JavaScript expression `is` true.
async fn tab_to(c: &Client, is: &str, back: bool) {
    let script = format!("const e = document.activeElement; return !!e && !!({is});");
    let tab = if back {
        format!("{}{}", char::from(Key::Shift), char::from(Key::Tab))
    } else {
        char::from(Key::Tab).to_string()
    };
    for _ in 0..40 {
        if c.execute(&script, vec![]).await.unwrap() == Value::Bool(true) {
            return;
        }
        press(c, &tab).await;
    }
    let at = c.execute("return document.activeElement && document.activeElement.outerHTML;", vec![]).await;
    panic!("Tab never reached {is}; the focus is on {at:?}");
}

fn enter() -> String {
    char::from(Key::Enter).to_string()
}

async fn type_into(c: &Client, css: &str, text: &str) {
    let e = wait_css(c, css, Duration::from_secs(20)).await;
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

/// The text of every element matching `css`.
async fn texts(c: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in c.find_all(Locator::Css(css)).await.unwrap_or_default() {
        out.push(e.text().await.unwrap_or_default());
    }
    out
}

/// Errors and CSP violations the page recorded (`window.qanatErrors`).
async fn page_errors(c: &Client) -> Value {
    c.execute("return window.qanatErrors || null;", vec![]).await.unwrap()
}

/// The first run, in the page: language, the passphrase twice (a differing one refused), the
/// traffic profile once its cost is known.
async fn first_run(c: &Client, app: &App, passphrase: &str) {
    c.goto(&app.url).await.unwrap();
    // 1: the language.
    wait_css(c, "input[name=language][value=en]", Duration::from_secs(30)).await;
    click(c, "main button.primary").await;
    // 2: the passphrase twice; two that differ are refused.
    type_into(c, "#passphrase", passphrase).await;
    type_into(c, "#again", "something else entirely, and long").await;
    click(c, "form button[type=submit]").await;
    let problem = wait_css(c, ".problem", Duration::from_secs(10)).await;
    assert!(!problem.text().await.unwrap().is_empty());
    assert_eq!(app.cli(&["status"]), Value::Null, "no profile yet");
    type_into(c, "#passphrase", passphrase).await;
    type_into(c, "#again", passphrase).await;
    click(c, "form button[type=submit]").await;
    // 3: the traffic profile, with each one's cost once the client has the directory.
    wait_css(c, "input[name=traffic][value=metered]", Duration::from_secs(60)).await;
    wait_js(
        c,
        "the traffic profiles' costs",
        "return document.querySelectorAll('.choices .measuring').length === 0 \
         && document.querySelectorAll('.choices label').length === 2;",
        Duration::from_secs(180),
    )
    .await;
    let costs = texts(c, ".choices label").await;
    assert!(costs.iter().all(|t| t.contains("MB")), "{costs:?}");
    click(c, "main button.primary").await;
    wait_css(c, ".list-actions", Duration::from_secs(30)).await;
}

/// Alice (`a`, in her page) invites bob, who pastes the link in his page (naming her "alice");
/// alice opens the conversation, where the link waits until bob answers. Returns once both
/// clients have the contact active and both pages, without a reload, show the message box.
async fn invite_and_accept((a, alice): (&Client, &App), (b, bob): (&Client, &App)) {
    click(a, ".list-actions button:nth-child(1)").await;
    type_into(a, "#name", "bob").await;
    click(a, "form button[type=submit]").await;
    let link = wait_css(a, ".link-card code", Duration::from_secs(60)).await.text().await.unwrap();
    assert!(link.starts_with("qanat://invite/"), "{link}");
    click(b, ".list-actions button:nth-child(2)").await;
    type_into(b, "#link", &link).await;
    type_into(b, "#name", "alice").await;
    click(b, "form button[type=submit]").await;
    // Alice opens the conversation: the link waits at its top until bob answers, then the
    // message box appears.
    click(a, ".form-screen .warning + .actions button").await;
    let start = Instant::now();
    loop {
        let (ca, cb) = (alice.cli(&["contacts"]), bob.cli(&["contacts"]));
        if ca["list"][0]["state"] == "active" && cb["list"][0]["state"] == "active" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "the contacts never became active: {ca} {cb}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The pages follow without a reload.
    wait_css(a, ".composer textarea#composer", Duration::from_secs(30)).await;
    wait_css(b, ".composer textarea#composer", Duration::from_secs(30)).await;
}

/// Records, for every message of ours, each tick state it shows, in order
/// (`window.qanatTicks[id]`).
const WATCH_TICKS: &str = r#"
window.qanatTicks = window.qanatTicks || {};
const seen = () => {
  for (const li of document.querySelectorAll('li.msg.mine')) {
    const tick = li.querySelector('.tick');
    if (!tick) continue;
    const state = ['queued', 'sent', 'delivered'].find((s) => tick.classList.contains('tick-' + s));
    const list = (window.qanatTicks[li.id] = window.qanatTicks[li.id] || []);
    if (list[list.length - 1] !== state) list.push(state);
  }
};
new MutationObserver(seen).observe(document.body, { subtree: true, childList: true, attributes: true });
seen();
return true;
"#;

/// Records, for every message from others, how long after its arrival at the client (its
/// `<time datetime>`, the client's clock, which is this machine's) the frame that first shows it
/// began (`window.qanatShown[id]`, ms).
const WATCH_ARRIVALS: &str = r#"
window.qanatShown = window.qanatShown || {};
const look = () => requestAnimationFrame(() => {
  const now = Date.now();
  for (const li of document.querySelectorAll('li.msg.theirs')) {
    const t = li.querySelector('time');
    if (li.id in window.qanatShown || !t) continue;
    window.qanatShown[li.id] = now - Date.parse(t.getAttribute('datetime'));
  }
});
new MutationObserver(look).observe(document.body, { subtree: true, childList: true });
return true;
"#;

/// The bytes the page's first load transferred (the document and every resource), and how long
/// the load took (ms).
const PAGE_WEIGHT: &str = r#"
const entries = performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'));
const nav = performance.getEntriesByType('navigation')[0];
return { bytes: entries.reduce((s, e) => s + e.transferSize, 0), files: entries.length,
  load_ms: nav ? Math.round(nav.loadEventEnd) : null };
"#;

/// A page on another loopback port (the same site to the browser, which sends the app's
/// Strict cookie with its requests) that attacks the app at `target`.
fn hostile_page(target: &str) -> String {
    format!(
        r#"<!doctype html><meta charset=utf-8><title>hostile</title>
<body><p>hostile</p>
<iframe name=sink style="display:none"></iframe>
<form id=f method=POST action="{target}/api/call" enctype="text/plain" target=sink>
<input name='{{"cmd":"send","to":"bob","text":"forged by a form","x":"' value='"}}'></form>
<script>
window.results = {{}};
const done = (k) => (v) => {{ window.results[k] = String(v && v.type || v); }};
fetch("{target}/api/call", {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}},
  body: JSON.stringify({{cmd: "send", to: "bob", text: "forged by fetch"}})}})
  .then(done("fetch"), done("fetch"));
document.getElementById("f").submit();
const img = new Image(); img.onerror = done("img"); img.onload = done("img"); img.src = "{target}/api/events";
try {{ const ws = new WebSocket("{ws}/api/events"); ws.onerror = done("ws"); ws.onopen = done("ws"); }}
catch (e) {{ window.results.ws = "threw"; }}
const es = new EventSource("{target}/api/events"); es.onerror = done("es"); es.onopen = done("es");
</script>"#,
        ws = target.replace("http://", "ws://"),
    )
}

/// Serves `page` to every request on a free loopback port until the task is dropped.
async fn serve_page(page: String) -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let page = page.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    page.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(page.as_bytes()).await;
            });
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_in_their_browsers() {
    if !have_browser() {
        return;
    }
    // The devnet's own rates (λ_P = 2/s): faster ones overload a small machine running debug
    // builds of 11 nodes, two clients and two browsers.
    let began = Instant::now();
    // Where the time goes, for whoever finds this test slow.
    let phase = |what: &str| eprintln!("app_browser: {what} at {:.0?}", began.elapsed());
    let devnet = devnet_up(&["--epoch-secs", "20"]);
    let network = devnet.dir.path().join("network.toml");
    let homes = tempfile::tempdir().unwrap();
    let alice = App::start(&homes.path().join("alice"), &network);
    let bob = App::start(&homes.path().join("bob"), &network);
    let driver = Driver::start();
    let a = driver.browser(&homes.path().join("browser-a"), 1280, 800).await;
    let b = driver.browser(&homes.path().join("browser-b"), 360, 780).await;

    phase("flow 1");
    // 1. First run, both.
    first_run(&a, &alice, ALICE_PASS).await;
    first_run(&b, &bob, BOB_PASS).await;

    phase("flow 2");
    // 2. Alice invites bob; bob pastes the link; both see the contact active.
    invite_and_accept((&a, &alice), (&b, &bob)).await;
    // Carol, who uses the terminal, becomes alice's contact meanwhile (for flow 4).
    let carol = Terminal::start(&homes.path().join("carol"), &network);
    let invitation = alice.cli(&["invite", "--name", "carol"]);
    let carol_link = invitation["link"].as_str().unwrap_or_else(|| panic!("{invitation}")).to_owned();
    let accepted = carol.cli(&["accept", "--name", "alice", &carol_link]);
    assert_eq!(accepted["kind"], "ok", "{accepted}");

    phase("flow 3");
    // 3. They talk; alice's ticks go queued → sent → delivered, never back.
    assert_eq!(a.execute(WATCH_TICKS, vec![]).await.unwrap(), Value::Bool(true));
    assert_eq!(b.execute(WATCH_ARRIVALS, vec![]).await.unwrap(), Value::Bool(true));
    type_into(&a, "#composer", "hello bob, from the page").await;
    a.find(Locator::Css("#composer"))
        .await
        .unwrap()
        .send_keys(&char::from(Key::Enter).to_string())
        .await
        .unwrap();
    let first_id = wait_css(&a, "li.msg.mine .tick-delivered", Duration::from_secs(120))
        .await
        .find(Locator::XPath("./ancestor::li[1]"))
        .await
        .unwrap()
        .attr("id")
        .await
        .unwrap()
        .unwrap()
        .trim_start_matches("m-")
        .to_owned();
    wait_js(
        &b,
        "bob reads alice's message",
        "return [...document.querySelectorAll('li.msg.theirs .text')].some((p) => p.textContent === 'hello bob, from the page');",
        Duration::from_secs(60),
    )
    .await;
    type_into(&b, "#composer", "hello alice").await;
    click(&b, ".composer button.send").await;
    wait_js(
        &a,
        "alice reads bob's answer live",
        "return [...document.querySelectorAll('li.msg.theirs .text')].some((p) => p.textContent === 'hello alice');",
        Duration::from_secs(120),
    )
    .await;
    // Measured: arrival at bob's client → the frame that shows it, over 20 more messages.
    for i in 0..20 {
        type_into(&a, "#composer", &format!("measure {i}")).await;
        click(&a, ".composer button.send").await;
        // Sent (the box is emptied once the client took it) before the next is typed.
        wait_js(
            &a,
            "the message box emptied",
            "return document.querySelector('#composer').value === '' \
             && !document.querySelector('.composer button.send').disabled;",
            Duration::from_secs(30),
        )
        .await;
    }
    wait_js(
        &b,
        "bob's page showing the 21 messages",
        "return Object.keys(window.qanatShown || {}).length >= 21;",
        Duration::from_secs(300),
    )
    .await;
    let shown = b.execute("return Object.values(window.qanatShown);", vec![]).await.unwrap();
    let mut shown: Vec<f64> = shown.as_array().unwrap().iter().filter_map(Value::as_f64).collect();
    shown.sort_by(f64::total_cmp);
    let pct = |p: f64| shown[((shown.len() - 1) as f64 * p).round() as usize];
    let display =
        json!({ "messages": shown.len(), "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0) });
    let ticks = a.execute("return window.qanatTicks;", vec![]).await.unwrap();
    let ticks = ticks.as_object().unwrap();
    assert_eq!(ticks.len(), 21, "{ticks:?}");
    let rank = |s: &str| ["queued", "sent", "delivered"].iter().position(|x| *x == s).unwrap();
    let first = &ticks[&format!("m-{}", first_id)];
    let seq: Vec<&str> = first.as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(seq.last(), Some(&"delivered"), "{seq:?}");
    for (id, seq) in ticks {
        let seq: Vec<&str> = seq.as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
        assert!(seq.windows(2).all(|w| rank(w[0]) < rank(w[1])), "{id}: ticks only move forward: {seq:?}");
    }

    phase("flow 5");
    // 5. Both pages show one safety code; alice marks it verified; bob's mark is his own.
    let code = |c: &Client| {
        let c = c.clone();
        async move {
            c.execute(
                "return [...document.querySelectorAll('.safety .code-row span')].map((s) => s.textContent).join('');",
                vec![],
            )
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_owned()
        }
    };
    click(&a, ".chat-head button.details").await;
    click(&b, ".chat-head button.details").await;
    wait_css(&a, ".safety .code-row span", Duration::from_secs(30)).await;
    wait_css(&b, ".safety .code-row span", Duration::from_secs(30)).await;
    let (code_a, code_b) = (code(&a).await, code(&b).await);
    assert_eq!(code_a.len(), 60, "{code_a}");
    assert!(code_a.bytes().all(|d| d.is_ascii_digit()));
    assert_eq!(code_a, code_b, "both sides see one code");
    click(&a, ".safety .actions button").await;
    wait_css(&a, ".safety .verified", Duration::from_secs(30)).await;
    assert_eq!(thread(&alice.cli(&["contacts"]), "bob")["verified"], true);
    assert!(b.find(Locator::Css(".safety .verified")).await.is_err(), "marks are local");
    // Back to the conversation: from the list beside it on a desktop, by the back arrow on a
    // phone.
    click(&a, "nav.side button.thread").await;
    click(&b, ".form-screen > button.back").await;

    phase("flow 6");
    // 6. Lock by the button; a wrong passphrase is refused; the right one opens it again.
    click(&b, ".bar-actions button:last-child").await;
    wait_css(&b, "main.unlock #passphrase", Duration::from_secs(10)).await;
    assert_eq!(bob.cli(&["status"])["running"], true, "the client runs on while the page is locked");
    type_into(&b, "#passphrase", "not bob's passphrase").await;
    click(&b, "form button[type=submit]").await;
    wait_js(
        &b,
        "the refusal",
        "return !!document.querySelector('#unlock-problem .problem');",
        Duration::from_secs(30),
    )
    .await;
    type_into(&b, "#passphrase", BOB_PASS).await;
    click(&b, "form button[type=submit]").await;
    wait_css(&b, ".list-actions", Duration::from_secs(30)).await;

    phase("flow 10");
    // 10. A hostile page on another loopback port, in alice's browser (which holds her cookie).
    let (port, server) = serve_page(hostile_page(&alice.origin())).await;
    a.goto(&format!("http://127.0.0.1:{port}/")).await.unwrap();
    wait_js(
        &a,
        "the hostile page's attempts",
        "return !!window.results && ['fetch','img','ws','es'].every((k) => k in window.results);",
        Duration::from_secs(30),
    )
    .await;
    let results = a.execute("return window.results;", vec![]).await.unwrap();
    assert_ne!(results["es"], "open", "the event stream opened for another page: {results}");
    assert_ne!(results["ws"], "open", "a WebSocket opened: {results}");
    assert_eq!(results["img"], "error", "{results}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let history = alice.cli(&["history", "bob"]);
    let forged = history["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["text"].as_str().is_some_and(|t| t.starts_with("forged")))
        .count();
    assert_eq!(forged, 0, "a forged command was carried out: {history}");
    // A rebinding name for the app's address: the app is not there.
    a.goto(&format!("http://rebind.test:{}/", alice.port())).await.unwrap();
    let has_app = a.execute("return !!document.querySelector('script[type=module]');", vec![]).await.unwrap();
    assert_eq!(has_app, Value::Bool(false), "the app answered a foreign Host");
    server.abort();
    // Back on the app: the cookie holds, the key did not survive the page: unlock again.
    a.goto(&alice.origin()).await.unwrap();
    wait_css(&a, "main.unlock #passphrase", Duration::from_secs(30)).await;
    let weight = a.execute(PAGE_WEIGHT, vec![]).await.unwrap();
    let measured = json!({ "page": weight, "arrival_to_display": display });
    eprintln!("app-measure: {measured}");
    std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join("app-measure.json"), measured.to_string())
        .unwrap();
    type_into(&a, "main.unlock #passphrase", ALICE_PASS).await;
    click(&a, "form button[type=submit]").await;
    wait_css(&a, ".list-actions", Duration::from_secs(30)).await;

    phase("flow 4");
    // 4. A group of three, each joining only after saying yes: bob in his page, carol with
    // `qanat group accept`. Alice's page locks itself after its minute without her (flow 6's
    // timeout), and she goes on with the keyboard alone (flow 9).
    for (who, home, name) in [("carol", &carol.home, "alice"), ("alice", &alice.home, "carol")] {
        until_cli(
            home,
            &["contacts"],
            &format!("{who}'s contact {name} active"),
            Duration::from_secs(300),
            |v| thread(v, name)["state"] == "active",
        )
        .await;
    }
    click(&a, ".bar-actions button:nth-child(2)").await;
    wait_css(&a, "#lock", Duration::from_secs(30)).await.select_by_value("1").await.unwrap();
    click(&a, "form:has(#lock) button[type=submit]").await;
    wait_css(&a, "form:has(#lock) .done", Duration::from_secs(30)).await;
    click(&a, ".list-actions button:nth-child(3)").await;
    type_into(&a, "#name", GROUP).await;
    click(&a, "form button[type=submit]").await;
    for member in ["bob", "carol"] {
        wait_css(&a, &format!("#contact option[value={member}]"), Duration::from_secs(30)).await;
        wait_css(&a, "#contact", Duration::from_secs(30)).await.select_by_value(member).await.unwrap();
        click(&a, "form.inline-form button[type=submit]").await;
        // Invited, not a member before saying yes.
        wait_js(
            &a,
            &format!("{member} among the invited"),
            &format!("return [...document.querySelectorAll('ul.invited bdi')].some((n) => n.textContent === {member:?});"),
            Duration::from_secs(60),
        )
        .await;
    }
    assert_eq!(texts(&a, ".members .member-row > bdi").await, Vec::<String>::new());
    // From the last click on, alice's page is left alone.
    let alone = Instant::now();
    phase("consent");
    // Nobody is in the group before saying yes: bob answers the invitation at the top of his
    // list; carol lists hers and accepts it.
    click(&b, ".invitations .invitation button.primary").await;
    let suggested = wait_css(&b, "#group-name", Duration::from_secs(30)).await;
    assert_eq!(suggested.prop("value").await.unwrap().as_deref(), Some(GROUP));
    click(&b, "form:has(#group-name) button[type=submit]").await;
    let invitations = until_cli(
        &carol.home,
        &["group", "invitations"],
        "carol's group invitation",
        Duration::from_secs(300),
        |v| v["list"].as_array().is_some_and(|l| !l.is_empty()),
    )
    .await;
    assert_eq!(invitations["list"][0]["from"], "alice");
    let id = invitations["list"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(carol.cli(&["group", "accept", &id])["kind"], "joining");
    for (who, home) in [("bob", &bob.home), ("carol", &carol.home)] {
        until_cli(home, &["contacts"], &format!("{who} in the group"), Duration::from_secs(300), |v| {
            thread(v, GROUP)["state"] == "active"
        })
        .await;
    }
    // Alice's page, left alone, follows: both are members now, nobody is waiting.
    wait_js(
        &a,
        "bob and carol members in alice's page",
        "const n = [...document.querySelectorAll('.members .member-row > bdi')].map((b) => b.textContent).sort().join(); \
         return n === 'bob,carol' && !document.querySelector('ul.invited');",
        Duration::from_secs(120),
    )
    .await;
    phase("waiting for the lock");
    // Locked by the timeout: a minute after the last touch, not before.
    wait_css(&a, "main.unlock #passphrase", Duration::from_secs(120)).await;
    let waited = alone.elapsed();
    assert!(waited >= Duration::from_secs(55), "locked after {waited:?} alone, not a minute");
    assert_eq!(alice.cli(&["status"])["running"], true, "the client runs on while the page is locked");

    phase("flow 9");
    // 9. The keyboard alone: unlock, open the group, send, lock, unlock.
    let is_field = |css: &str| format!("e.matches({css:?})");
    tab_to(&a, &is_field("#passphrase"), false).await;
    press(&a, &format!("{ALICE_PASS}{}", enter())).await;
    wait_css(&a, ".list-actions", Duration::from_secs(30)).await;
    tab_to(&a, &format!("e.matches('button.thread') && e.textContent.includes({GROUP:?})"), false).await;
    press(&a, &enter()).await;
    wait_css(&a, ".composer textarea#composer", Duration::from_secs(30)).await;
    tab_to(&a, &is_field("#composer"), false).await;
    press(&a, &format!("hello team, from the keyboard{}", enter())).await;
    wait_js(
        &a,
        "alice's group message sent",
        "return [...document.querySelectorAll('li.msg.mine .text')].some((p) => p.textContent === 'hello team, from the keyboard');",
        Duration::from_secs(30),
    )
    .await;
    tab_to(&a, &is_field(".bar-actions button:last-child"), true).await;
    press(&a, &enter()).await;
    wait_css(&a, "main.unlock #passphrase", Duration::from_secs(10)).await;
    tab_to(&a, &is_field("#passphrase"), false).await;
    press(&a, &format!("{ALICE_PASS}{}", enter())).await;
    wait_css(&a, ".list-actions", Duration::from_secs(30)).await;
    // Back to five minutes: what follows leaves her page alone for longer than one.
    click(&a, ".bar-actions button:nth-child(2)").await;
    wait_css(&a, "#lock", Duration::from_secs(30)).await.select_by_value("5").await.unwrap();
    click(&a, "form:has(#lock) button[type=submit]").await;
    wait_css(&a, "form:has(#lock) .done", Duration::from_secs(30)).await;

    phase("group messages");
    // Group messages carry their sender: alice's in bob's page, carol's (from the terminal) in
    // both pages.
    let from = |sender: &str, text: &str| {
        format!(
            "return [...document.querySelectorAll('li.msg.theirs')].some((li) =>              li.querySelector('.text')?.textContent === {text:?} && li.querySelector('.sender')?.textContent === {sender:?});"
        )
    };
    wait_js(
        &b,
        "alice's group message, with her name",
        &from("alice", "hello team, from the keyboard"),
        Duration::from_secs(120),
    )
    .await;
    // A message goes to the members its sender knows of: carol writes once the commit that
    // added bob took effect for her (bob may have been added after her).
    until_cli(
        &carol.home,
        &["group", "members", GROUP],
        "bob a member for carol",
        Duration::from_secs(120),
        |v| v["list"].as_array().is_some_and(|l| l.len() == 2),
    )
    .await;
    assert_eq!(carol.cli(&["send", GROUP, "carol writes to the team"])["kind"], "sent");
    click(&a, "nav.side button.thread").await;
    wait_js(
        &a,
        "carol's group message, with her name",
        &from("carol", "carol writes to the team"),
        Duration::from_secs(120),
    )
    .await;
    let carol_sent = Instant::now();
    loop {
        let shown = b
            .execute(
                "return [...document.querySelectorAll('li.msg.theirs .text')].some((p) => p.textContent === 'carol writes to the team');",
                vec![],
            )
            .await
            .ok();
        if shown == Some(Value::Bool(true)) {
            break;
        }
        if carol_sent.elapsed() > Duration::from_secs(120) {
            // What each client knows, for whoever reads the failure.
            for (who, home) in [("alice", &alice.home), ("bob", &bob.home), ("carol", &carol.home)] {
                for args in [&["status"][..], &["group", "members", GROUP], &["history", GROUP]] {
                    eprintln!("app_browser: {who} {args:?}: {}", cli(home, args));
                }
            }
            panic!("carol's group message never reached bob's page");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let carol_history = carol.cli(&["history", GROUP]);
    eprintln!(
        "app_browser: carol's message reached bob's page after {:.0?}: {carol_history}",
        carol_sent.elapsed()
    );
    let bob_calls_carol = b
        .execute(
            "const li = [...document.querySelectorAll('li.msg.theirs')].find((li) => li.querySelector('.text')?.textContent === 'carol writes to the team'); return li.querySelector('.sender')?.textContent || '';",
            vec![],
        )
        .await
        .unwrap();
    assert!(bob_calls_carol.as_str().is_some_and(|n| !n.is_empty() && n != "alice"), "{bob_calls_carol}");

    phase("remove and leave");
    // Alice removes carol (after confirming), who learns she is out; bob leaves from his page.
    click(&a, ".chat-head button.details").await;
    click_xpath(
        &a,
        "//ul[contains(@class,'members')]/li[div[contains(@class,'member-row')]/bdi[.='carol']]\
         //span[contains(@class,'member-actions')]/button[2]",
    )
    .await;
    click(&a, ".confirm button.danger").await;
    until_cli(&carol.home, &["contacts"], "carol out of the group", Duration::from_secs(300), |v| {
        thread(v, GROUP)["state"] == "left"
    })
    .await;
    phase("carol out; bob leaves");
    click(&b, ".chat-head button.details").await;
    click(&b, ".form-screen > div.actions button").await;
    click(&b, ".confirm button.danger").await;
    until_cli(&alice.home, &["group", "members", GROUP], "an empty group", Duration::from_secs(300), |v| {
        v["list"].as_array().is_some_and(|l| l.is_empty())
    })
    .await;
    wait_js(&a, "alice's page showing nobody left", "return !!document.querySelector('.form-screen') && document.querySelectorAll('.members li').length === 0;", Duration::from_secs(60)).await;
    drop(carol);

    phase("flow 7");
    // 7. Bob sets a duress passphrase, locks, and types it: an empty profile, as ordinary as
    // the real one; the real passphrase opens nothing any more.
    const DURESS: &str = "the weather is fine in the valley";
    click(&b, ".bar-actions button:nth-child(2)").await;
    type_into(&b, "#duress_current", BOB_PASS).await;
    type_into(&b, "#duress", DURESS).await;
    type_into(&b, "#duress_again", DURESS).await;
    click(&b, "form:has(#duress) button[type=submit]").await;
    wait_css(&b, ".done", Duration::from_secs(60)).await;
    click(&b, ".bar-actions button:last-child").await;
    type_into(&b, "main.unlock #passphrase", DURESS).await;
    click(&b, "form button[type=submit]").await;
    wait_css(&b, ".list-actions", Duration::from_secs(60)).await;
    wait_js(
        &b,
        "an empty list",
        "return document.querySelectorAll('.threads .thread').length === 0 && !!document.querySelector('nav.side .hint');",
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(bob.cli(&["contacts"])["list"], json!([]), "the duress opening shows no contact");
    click(&b, ".bar-actions button:last-child").await;
    type_into(&b, "main.unlock #passphrase", BOB_PASS).await;
    click(&b, "form button[type=submit]").await;
    wait_css(&b, "#unlock-problem .problem", Duration::from_secs(30)).await;
    type_into(&b, "main.unlock #passphrase", DURESS).await;
    click(&b, "form button[type=submit]").await;
    wait_css(&b, ".list-actions", Duration::from_secs(60)).await;

    phase("flow 8");
    // 8. The panic wipe, after typing the word: the first run again; no profile is left.
    click(&b, ".bar-actions button:nth-child(2)").await;
    type_into(&b, "#wipe-word", "erase").await;
    click(&b, ".danger-zone button.danger").await;
    wait_css(&b, "input[name=language]", Duration::from_secs(60)).await;
    assert!(!bob.home.join("profile.header").exists(), "the profile's header is gone");

    phase("end");
    for (who, c) in [("alice", &a), ("bob", &b)] {
        let errors = page_errors(c).await;
        assert_eq!(errors, json!([]), "{who}'s page recorded errors");
    }
    let _ = a.close().await;
    let _ = b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_refused_without_its_link() {
    if !have_browser() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let network = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/configs-1/network.toml");
    let app = App::start(&dir.path().join("p"), &network);
    let driver = Driver::start();
    let c = driver.browser(&dir.path().join("browser"), 1280, 800).await;
    // No start link: nothing of the app.
    c.goto(&format!("{}/", app.origin())).await.unwrap();
    let body = c.find(Locator::Css("body")).await.unwrap().text().await.unwrap();
    assert!(c.find(Locator::Css("script[type=module]")).await.is_err(), "the app without its link: {body}");
    // A rebinding name: refused before the cookie matters.
    c.goto(&format!("http://rebind.test:{}{}", app.port(), &app.url[app.origin().len()..])).await.unwrap();
    assert!(c.find(Locator::Css("script[type=module]")).await.is_err());
    // The link still works once, in this browser, and the page starts at the first run.
    c.goto(&app.url).await.unwrap();
    wait_css(&c, "input[name=language]", Duration::from_secs(30)).await;
    // Used twice: refused.
    let other = driver.browser(&dir.path().join("browser-2"), 1280, 800).await;
    other.goto(&app.url).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(other.find(Locator::Css("script[type=module]")).await.is_err(), "a spent link opened the app");
    assert_eq!(page_errors(&c).await, json!([]));
    let _ = c.close().await;
    let _ = other.close().await;
}

/// A steady tone of `secs` seconds for Chromium's fake microphone: 16-bit PCM, mono, 48 kHz.
fn tone_wav(secs: u32) -> Vec<u8> {
    let rate = 48_000u32;
    let n = rate * secs;
    let mut out = Vec::with_capacity(44 + 2 * n as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + 2 * n).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(2 * n).to_le_bytes());
    for i in 0..n {
        let t = f64::from(i) / f64::from(rate);
        let s = ((std::f64::consts::TAU * 440.0 * t).sin() * 8000.0) as i16;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// A `w`×`h` RGB picture as a PNG, of pixels that do not compress (so that its transfer takes
/// many slots and its progress has steps).
fn noisy_png(w: u32, h: u32) -> Vec<u8> {
    use std::io::Write as _;
    let mut x = 0x2545_f491_u32;
    let mut noise = move || {
        // xorshift32
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as u8
    };
    let mut raw = Vec::with_capacity(((w * 3 + 1) * h) as usize);
    for _ in 0..h {
        // Each row: no filter, then its pixels.
        raw.extend(std::iter::once(0).chain((0..w * 3).map(|_| noise())));
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).unwrap();
    let idat = z.finish().unwrap();
    let chunk = |out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    };
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8 bits, RGB
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Keeps every Blob the page turns into a blob: URL (`window.qanatBlobs`: the recording the
/// send dialog previews, what a bubble plays or shows), and records, for every file bubble,
/// each value its progress bar shows, in order (`window.qanatProgress[id]`).
const WATCH_FILES: &str = r#"
window.qanatBlobs = window.qanatBlobs || [];
if (!window.qanatBlobsKept) {
  window.qanatBlobsKept = true;
  const make = URL.createObjectURL;
  URL.createObjectURL = (b) => { window.qanatBlobs.push(b); return make.call(URL, b); };
}
window.qanatProgress = window.qanatProgress || {};
const seen = () => {
  for (const li of document.querySelectorAll('li.msg.has-file')) {
    const bar = li.querySelector('.transfer progress');
    if (!bar) continue;
    const list = (window.qanatProgress[li.id] = window.qanatProgress[li.id] || []);
    if (list[list.length - 1] !== bar.value) list.push(bar.value);
  }
};
new MutationObserver(seen).observe(document.body, { subtree: true, childList: true, attributes: true });
seen();
return true;
"#;

/// The size and SHA-256 (hex) of the last Blob kept by [`WATCH_FILES`] whose type begins with
/// `arguments[0]`, or null.
const KEPT_BLOB_DIGEST: &str = r#"
const blobs = window.qanatBlobs.filter((b) => b.type.startsWith(arguments[0]));
if (!blobs.length) return null;
return (async () => {
  const bytes = await blobs[blobs.length - 1].arrayBuffer();
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return { size: bytes.byteLength, sha256: [...digest].map((x) => x.toString(16).padStart(2, '0')).join('') };
})();
"#;

/// The size and SHA-256 (hex) of the file of message `arguments[0]` as the app gives it back
/// (`file_part`, through the page's own API module, so with its key).
const FILE_PART_DIGEST: &str = r#"
const id = arguments[0];
return (async () => {
  const api = await import('/assets/api.js');
  const parts = [];
  let offset = 0, total = null;
  while (total === null || offset < total) {
    const a = await api.call({ cmd: 'file_part', id, offset, len: 48 * 1024 }, { activity: false });
    if (a.kind !== 'file_data') return a;
    const s = atob(a.data);
    if (s.length === 0) return { kind: 'empty part', offset, total: a.total };
    parts.push(Uint8Array.from(s, (c) => c.charCodeAt(0)));
    offset += s.length;
    total = a.total;
  }
  const bytes = await new Blob(parts).arrayBuffer();
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return { size: bytes.byteLength, sha256: [...digest].map((x) => x.toString(16).padStart(2, '0')).join('') };
})();
"#;

/// The bytes of the last Blob kept by [`WATCH_FILES`] whose type begins with `arguments[0]`.
const KEPT_BLOB_BYTES: &str = r#"
const blobs = window.qanatBlobs.filter((b) => b.type.startsWith(arguments[0]));
if (!blobs.length) return null;
return blobs[blobs.length - 1].arrayBuffer().then((b) => Array.from(new Uint8Array(b)));
"#;

/// Checks that every progress bar [`WATCH_FILES`] saw in `who`'s page only moved forward;
/// returns what it saw.
async fn progress_forward(c: &Client, who: &str) -> Value {
    let seen = c.execute("return window.qanatProgress;", vec![]).await.unwrap();
    for (id, values) in seen.as_object().unwrap() {
        let values: Vec<f64> = values.as_array().unwrap().iter().filter_map(Value::as_f64).collect();
        assert!(
            values.windows(2).all(|w| w[0] <= w[1]),
            "{who}'s {id}: progress only moves forward: {values:?}"
        );
    }
    seen
}

/// Waits (polling, with a deadline) for the file bubble in `c`'s page, `side` `mine` or
/// `theirs`, whose file's name `n` makes the JavaScript expression `is` true; returns its
/// message id.
async fn file_bubble(c: &Client, side: &str, is: &str, limit: Duration) -> String {
    let script = format!(
        "const li = [...document.querySelectorAll('li.msg.{side}.has-file')] \
           .find((li) => {{ const n = li.querySelector('.file-name')?.textContent || ''; return {is}; }}); \
         return li ? li.id.slice(2) : null;"
    );
    let start = Instant::now();
    loop {
        if let Ok(Value::String(id)) = c.execute(&script, vec![]).await {
            return id;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for a file bubble ({side}, {is})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voice_note_and_a_picture_between_two_browsers() {
    if !have_browser() {
        return;
    }
    let began = Instant::now();
    let phase = |what: &str| eprintln!("app_browser: {what} at {:.0?}", began.elapsed());
    // Five times the devnet's own rate (release builds keep up with it): a voice note of
    // 30 seconds is about 100 packets.
    let devnet = devnet_up(&["--epoch-secs", "20", "--lambda-p", "10"]);
    let network = devnet.dir.path().join("network.toml");
    let homes = tempfile::tempdir().unwrap();
    // What the fake microphone hears, and the picture alice sends.
    let tone = homes.path().join("tone.wav");
    std::fs::write(&tone, tone_wav(30)).unwrap();
    let (width, height) = (160, 120);
    let picture = noisy_png(width, height);
    let picture_path = homes.path().join("river-crossing.png");
    std::fs::write(&picture_path, &picture).unwrap();
    let alice = App::start(&homes.path().join("alice"), &network);
    let bob = App::start(&homes.path().join("bob"), &network);
    let driver = Driver::start();
    let media = [
        "--use-fake-ui-for-media-stream".to_owned(),
        "--use-fake-device-for-media-stream".to_owned(),
        format!("--use-file-for-fake-audio-capture={}", tone.display()),
    ];
    let a = driver.browser_with(&homes.path().join("browser-a"), 1280, 800, &media).await;
    let b = driver.browser_with(&homes.path().join("browser-b"), 360, 780, &media).await;

    phase("first run");
    tokio::join!(first_run(&a, &alice, ALICE_PASS), first_run(&b, &bob, BOB_PASS));
    phase("contacts");
    invite_and_accept((&a, &alice), (&b, &bob)).await;
    for c in [&a, &b] {
        assert_eq!(c.execute(WATCH_FILES, vec![]).await.unwrap(), Value::Bool(true));
    }

    phase("recording");
    // Alice records from the fake microphone until her recorder's timer says 0:30.
    click(&a, ".composer button.icon-button").await;
    wait_css(&a, ".recorder .rec-dot.on", Duration::from_secs(30)).await;
    wait_js(
        &a,
        "the recorder's timer at 0:30",
        "return document.querySelector('.recorder .rec-time span[dir=ltr]')?.textContent === '0:30';",
        Duration::from_secs(60),
    )
    .await;
    click(&a, ".recorder button.primary").await;
    // The dialog: the note's length, the estimate, "send normally (hidden)" as the default.
    wait_css(&a, ".send-dialog button.send-hidden", Duration::from_secs(30)).await;
    let about = texts(&a, ".send-dialog .file-size, .send-dialog p").await;
    eprintln!("app_browser: alice's send dialog: {about:?}");
    // The timer said 0:30 when she stopped (from 29.5 s); a slow click may make it 0:31.
    let length = about[0].rsplit(' ').next().unwrap_or_default().to_owned();
    assert!(["0:30", "0:31"].contains(&length.as_str()), "{about:?}");
    assert!(about.iter().any(|t| t.starts_with("It takes") && t.contains("bob")), "no estimate: {about:?}");
    let focused = a.execute("return document.activeElement.classList.contains('send-hidden');", vec![]).await;
    assert_eq!(focused.unwrap(), Value::Bool(true), "sending hidden is the default");
    // What she recorded, as the dialog has it before anything is handed over.
    let recorded = a.execute(KEPT_BLOB_DIGEST, vec![json!("audio/")]).await.unwrap();
    eprintln!("app_browser: alice recorded {recorded}");
    assert!(recorded["size"].as_u64().is_some_and(|n| n > 10_000), "{recorded}");
    click(&a, ".send-dialog button.send-hidden").await;
    wait_js(
        &a,
        "the dialog closed",
        "return !document.querySelector('dialog[open]');",
        Duration::from_secs(30),
    )
    .await;
    let voice_a = file_bubble(&a, "mine", "n.endsWith('.webm')", Duration::from_secs(30)).await;

    phase("picture");
    // A picture through the file input, sent the same way.
    wait_css(&a, "#attach", Duration::from_secs(30))
        .await
        .send_keys(&picture_path.display().to_string())
        .await
        .unwrap();
    wait_css(&a, ".send-dialog button.send-hidden", Duration::from_secs(30)).await;
    let name = texts(&a, ".send-dialog .file-name").await;
    assert_eq!(name, ["river-crossing.png"]);
    click(&a, ".send-dialog button.send-hidden").await;
    wait_js(
        &a,
        "the dialog closed",
        "return !document.querySelector('dialog[open]');",
        Duration::from_secs(30),
    )
    .await;
    wait_js(
        &a,
        "alice's two file bubbles",
        "return document.querySelectorAll('li.msg.mine.has-file').length === 2;",
        Duration::from_secs(30),
    )
    .await;

    phase("bob receives");
    // Bob's page shows the voice note with its length, then lets him play it once it is there.
    let voice_b = file_bubble(&b, "theirs", "n.endsWith('.webm')", Duration::from_secs(120)).await;
    let shown_b = texts(&b, &format!("#m-{voice_b} .file-size span[dir=ltr]")).await;
    assert_eq!(shown_b, std::slice::from_ref(&length), "the voice note's length in bob's page");
    wait_css(&b, &format!("#m-{voice_b} button.play-voice"), Duration::from_secs(180)).await;
    phase("voice note received");
    click(&b, &format!("#m-{voice_b} button.play-voice")).await;
    wait_css(&b, &format!("#m-{voice_b} audio"), Duration::from_secs(30)).await;
    phase("bob plays");
    let audio = format!("document.querySelector('#m-{voice_b} audio')");
    wait_js(
        &b,
        "the voice note playing",
        &format!("const a = {audio}; return !!a && a.error === null && a.currentTime > 1.5;"),
        Duration::from_secs(30),
    )
    .await;
    let played = b
        .execute(
            &format!("const a = {audio}; return {{ paused: a.paused, error: a.error && a.error.code, at: a.currentTime, duration: String(a.duration) }};"),
            vec![],
        )
        .await
        .unwrap();
    eprintln!("app_browser: bob's player: {played}");
    assert_eq!(played["error"], Value::Null, "{played}");
    let heard = b.execute(KEPT_BLOB_DIGEST, vec![json!("audio/")]).await.unwrap();
    assert_eq!(heard["sha256"], recorded["sha256"], "bob plays what alice recorded: {heard} {recorded}");
    // Alice's own copy, as the app gives it back, is what she recorded too.
    let kept = a.execute(FILE_PART_DIGEST, vec![json!(voice_a)]).await.unwrap();
    assert_eq!(kept["sha256"], recorded["sha256"], "alice's copy: {kept} {recorded}");
    // And she can play her own note from its bubble.
    click(&a, &format!("#m-{voice_a} button.play-voice")).await;
    wait_js(
        &a,
        "alice's own voice note playing",
        &format!("const a = document.querySelector('#m-{voice_a} audio'); return !!a && a.error === null && a.currentTime > 0.5;"),
        Duration::from_secs(30),
    )
    .await;

    phase("bob shows the picture");
    let picture_b = file_bubble(&b, "theirs", "n === 'river-crossing.png'", Duration::from_secs(60)).await;
    wait_css(&b, &format!("#m-{picture_b} button.show-image"), Duration::from_secs(120)).await;
    click(&b, &format!("#m-{picture_b} button.show-image")).await;
    let img = format!("document.querySelector('#m-{picture_b} img.file-image')");
    wait_js(
        &b,
        "the picture shown",
        &format!("const i = {img}; return !!i && i.complete && i.naturalWidth > 0;"),
        Duration::from_secs(30),
    )
    .await;
    let shown = b
        .execute(&format!("const i = {img}; return [i.naturalWidth, i.naturalHeight];"), vec![])
        .await
        .unwrap();
    assert_eq!(shown, json!([width, height]));
    let bytes = b.execute(KEPT_BLOB_BYTES, vec![json!("image/")]).await.unwrap();
    let bytes: Vec<u8> =
        bytes.as_array().unwrap().iter().map(|v| u8::try_from(v.as_u64().unwrap()).unwrap()).collect();
    assert!(bytes == picture, "bob's page shows other bytes than alice's picture ({} bytes)", bytes.len());

    phase("sent");
    // Alice's page, left alone, follows both files to their end; no bar went back on either side.
    wait_js(
        &a,
        "alice's files sent",
        "return document.querySelectorAll('li.msg.mine.has-file').length === 2 \
         && !document.querySelector('li.msg.mine.has-file .transfer');",
        Duration::from_secs(120),
    )
    .await;
    let transfers = alice.cli(&["files"]);
    eprintln!("app_browser: alice's files: {transfers}");
    let (seen_a, seen_b) = (progress_forward(&a, "alice").await, progress_forward(&b, "bob").await);
    eprintln!("app_browser: progress seen: alice {seen_a}, bob {seen_b}");
    let bar = &seen_b[format!("m-{picture_b}")];
    assert!(
        bar.as_array().is_some_and(|v| !v.is_empty()),
        "bob's page never showed the picture's progress: {seen_b}"
    );
    // The list beside alice's conversation names the newest message: her picture.
    wait_js(
        &a,
        "alice's list naming the picture",
        "return [...document.querySelectorAll('.threads .preview')].some((p) => p.textContent === 'You: Image: river-crossing.png');",
        Duration::from_secs(30),
    )
    .await;

    phase("history");
    // From the history, not the events: bob goes back to his list (which names the picture),
    // locks (the page forgets every message), unlocks and opens the conversation again; both
    // files are there, whole.
    click(&b, ".chat-head button.back").await;
    wait_js(
        &b,
        "bob's list naming the picture",
        "return [...document.querySelectorAll('.threads .preview')].some((p) => p.textContent === 'Image: river-crossing.png');",
        Duration::from_secs(30),
    )
    .await;
    click(&b, ".bar-actions button:last-child").await;
    type_into(&b, "main.unlock #passphrase", BOB_PASS).await;
    click(&b, "form button[type=submit]").await;
    click(&b, "nav.side button.thread").await;
    wait_css(&b, &format!("#m-{voice_b} button.play-voice"), Duration::from_secs(30)).await;
    wait_css(&b, &format!("#m-{picture_b} button.show-image"), Duration::from_secs(30)).await;
    assert_eq!(
        texts(&b, &format!("#m-{voice_b} .file-size span[dir=ltr]")).await,
        std::slice::from_ref(&length)
    );

    phase("end");
    for (who, c) in [("alice", &a), ("bob", &b)] {
        let errors = page_errors(c).await;
        assert_eq!(errors, json!([]), "{who}'s page recorded errors");
    }
    let _ = a.close().await;
    let _ = b.close().await;
}
