//! The local server's gate, attacked over raw HTTP (any header can be forged on a `TcpStream`):
//! the start token, the cookie and the key; Host, Origin, Fetch-metadata and content-type
//! checks; body bounds; the unlock throttle; the headers of every answer; the event stream.
//! A fake backend stands for the client (`docs/APP.md` §7, "Security, raw HTTP").

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qanat_app::{AppConfig, Backend, Running, serve};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use zeroize::Zeroizing;

#[derive(Clone)]
struct Fake {
    calls: Arc<Mutex<Vec<String>>>,
    events: broadcast::Sender<String>,
}

impl Fake {
    fn new() -> Self {
        Self { calls: Arc::default(), events: broadcast::channel(16).0 }
    }

    fn commands(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Backend for Fake {
    async fn call(&self, body: Zeroizing<Vec<u8>>) -> Vec<u8> {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let cmd = v["cmd"].as_str().unwrap().to_owned();
        self.calls.lock().unwrap().push(cmd.clone());
        if let Some(ms) = v["slow_ms"].as_u64() {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let answer = match cmd.as_str() {
            "app_state" => r#"{"kind":"state","profile":"closed"}"#.to_owned(),
            "unlock" if v["passphrase"] == "right horse" => r#"{"kind":"unlocked"}"#.to_owned(),
            "unlock" => {
                r#"{"kind":"error","message":"wrong passphrase","code":"wrong_passphrase"}"#.to_owned()
            }
            "settings" => {
                r#"{"kind":"settings","traffic":"standard","language":null,"lock_timeout_secs":300}"#
                    .to_owned()
            }
            "send" => r#"{"kind":"sent","id":"01"}"#.to_owned(),
            "invite" => r#"{"kind":"invitation","link":"qanat://invite/AQID","qr":"x x","expires_at_ms":7}"#
                .to_owned(),
            _ => r#"{"kind":"ok"}"#.to_owned(),
        };
        self.calls.lock().unwrap().push(format!("{cmd} done"));
        answer.into_bytes()
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.events.subscribe()
    }
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection, `head` lines as given (no Host unless given).
async fn raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    head: &[(&str, String)],
    body: &[u8],
) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in head {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    parse(&out)
}

fn parse(out: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(out);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Answer { status, headers, body: body.to_owned() }
}

struct Page {
    running: Running,
    fake: Fake,
    host: String,
    cookie: Option<String>,
    key: Option<String>,
}

impl Page {
    async fn start(config: AppConfig) -> Self {
        let fake = Fake::new();
        let running = serve(fake.clone(), config).await.unwrap();
        let host = running.addr().to_string();
        Self { running, fake, host, cookie: None, key: None }
    }

    fn token_path(&self) -> String {
        let url = self.running.start_url();
        url[url.find("/s/").unwrap()..].to_owned()
    }

    async fn redeem(&mut self) -> Answer {
        let path = self.token_path();
        let head = [
            ("Host", self.host.clone()),
            ("Sec-Fetch-Site", "cross-site".into()),
            ("Sec-Fetch-Dest", "document".into()),
        ];
        let a = raw(self.running.addr(), "GET", &path, &head, b"").await;
        if let Some(c) = a.header("set-cookie") {
            self.cookie = Some(c.split(';').next().unwrap().to_owned());
        }
        a
    }

    /// The headers our own page sends with a command.
    fn api_head(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("Host", self.host.clone()),
            ("Origin", format!("http://{}", self.host)),
            ("Sec-Fetch-Site", "same-origin".into()),
            ("Content-Type", "application/json".into()),
            ("X-Qanat-Activity", "1".into()),
        ];
        if let Some(c) = &self.cookie {
            h.push(("Cookie", c.clone()));
        }
        if let Some(k) = &self.key {
            h.push(("X-Qanat-Key", k.clone()));
        }
        h
    }

    async fn call_with(&self, head: &[(&str, String)], body: &str) -> Answer {
        raw(self.running.addr(), "POST", "/api/call", head, body.as_bytes()).await
    }

    async fn call(&self, body: &str) -> Answer {
        self.call_with(&self.api_head(), body).await
    }

    async fn strength_with(&self, head: &[(&str, String)], body: &str) -> Answer {
        raw(self.running.addr(), "POST", "/api/strength", head, body.as_bytes()).await
    }

    async fn unlock(&mut self, passphrase: &str) -> Answer {
        let a = self.call(&format!(r#"{{"cmd":"unlock","passphrase":"{passphrase}"}}"#)).await;
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&a.body)
            && let Some(k) = v["key"].as_str()
        {
            self.key = Some(k.to_owned());
        }
        a
    }
}

/// Request header lines.
type Head = Vec<(&'static str, String)>;

/// Replaces (or adds) header `k` in `head`; `None` removes it.
fn with(mut head: Head, k: &'static str, v: Option<&str>) -> Head {
    head.retain(|(h, _)| !h.eq_ignore_ascii_case(k));
    if let Some(v) = v {
        head.push((k, v.to_owned()));
    }
    head
}

const SECURE: [(&str, &str); 9] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; media-src blob:; font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("cross-origin-embedder-policy", "require-corp"),
    (
        "permissions-policy",
        "camera=(), microphone=(self), geolocation=(), clipboard-read=(), payment=(), usb=()",
    ),
];

fn assert_secure(a: &Answer, what: &str) {
    for (k, v) in SECURE {
        assert_eq!(a.header(k), Some(v), "{what}: {k}");
    }
    assert!(a.header("server").is_none(), "{what}");
    assert!(
        !a.headers.iter().any(|(k, _)| k.to_ascii_lowercase().starts_with("access-control-")),
        "{what}: no CORS ever"
    );
}

#[tokio::test]
async fn without_the_cookie_only_the_lock_page_text_answers() {
    let mut p = Page::start(AppConfig::default()).await;
    let a = p.call(r#"{"cmd":"app_state"}"#).await;
    assert_eq!(a.status, 403);
    assert!(a.body.contains("link it printed"), "{}", a.body);
    assert_secure(&a, "no cookie");
    let page = [("Host", p.host.clone()), ("Sec-Fetch-Site", "none".into())];
    assert_eq!(raw(p.running.addr(), "GET", "/", &page, b"").await.status, 403);
    // A made-up cookie is no cookie.
    let fake = with(p.api_head(), "Cookie", Some(&format!("qanat={}", "ab".repeat(32))));
    assert_eq!(p.call_with(&fake, r#"{"cmd":"app_state"}"#).await.status, 403);
    assert!(p.fake.commands().is_empty(), "the backend heard nothing");
    // With it: the page, its files, the lock screen's commands.
    let a = p.redeem().await;
    assert_eq!(a.status, 200);
    let set = a.header("set-cookie").unwrap();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"), "{set}");
    assert!(a.body.contains("http-equiv=refresh"), "{}", a.body);
    assert_secure(&a, "redeem");
    let page = [page[0].clone(), page[1].clone(), ("Cookie", p.cookie.clone().unwrap())];
    let a = raw(p.running.addr(), "GET", "/", &page, b"").await;
    assert_eq!(a.status, 200);
    assert!(a.body.contains("/assets/app.js"));
    assert_secure(&a, "the page");
    // Its files, in subdirectories too, each with its type; nothing outside the table.
    let asset = [
        ("Host", p.host.clone()),
        ("Sec-Fetch-Site", "same-origin".into()),
        ("Cookie", p.cookie.clone().unwrap()),
    ];
    for (path, kind) in [
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/screens/chat.js", "text/javascript; charset=utf-8"),
        ("/assets/vendor/htm-preact.js", "text/javascript; charset=utf-8"),
        ("/assets/i18n/ar.json", "application/json"),
        ("/assets/style.css", "text/css; charset=utf-8"),
        ("/assets/eval/summary.json", "application/json"),
    ] {
        let a = raw(p.running.addr(), "GET", path, &asset, b"").await;
        assert_eq!((a.status, a.header("content-type")), (200, Some(kind)), "{path}");
        assert_secure(&a, path);
    }
    // Compressed when the browser says it takes gzip, with its security headers all the same;
    // never when it refuses it.
    for (accept, coded) in
        [("gzip, deflate, br, zstd", true), ("br;q=1, gzip;q=0", false), ("identity", false)]
    {
        let head = [asset[0].clone(), asset[1].clone(), asset[2].clone(), ("Accept-Encoding", accept.into())];
        let a = raw(p.running.addr(), "GET", "/assets/i18n/ar.json", &head, b"").await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("content-encoding"), coded.then_some("gzip"), "{accept}");
        assert_eq!(a.header("vary"), Some("accept-encoding"));
        let len: usize = a.header("content-length").unwrap().parse().unwrap();
        let plain =
            std::fs::metadata(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/i18n/ar.json")).unwrap().len();
        assert_eq!(len < plain as usize / 2, coded, "{accept}: {len} of {plain} bytes");
        assert_secure(&a, accept);
    }
    for path in ["/assets/screens/", "/assets/screens/nope.js", "/assets/../src/lib.rs", "/assets/index.html"]
    {
        assert_eq!(raw(p.running.addr(), "GET", path, &asset, b"").await.status, 404, "{path}");
    }
    let a = p.call(r#"{"cmd":"app_state"}"#).await;
    assert_eq!((a.status, a.body.as_str()), (200, r#"{"kind":"state","profile":"closed"}"#));
}

#[tokio::test]
async fn the_start_token_works_once_within_its_lifetime_and_a_second_use_revokes_all() {
    let mut p = Page::start(AppConfig::default()).await;
    let wrong =
        [("Host", p.host.clone()), ("Sec-Fetch-Site", "none".into()), ("Sec-Fetch-Dest", "document".into())];
    let a = raw(p.running.addr(), "GET", &format!("/s/{}", "00".repeat(32)), &wrong, b"").await;
    assert_eq!(a.status, 403);
    assert!(a.header("set-cookie").is_none());
    // Not by an image or a script.
    let img = with(wrong.to_vec(), "Sec-Fetch-Dest", Some("image"));
    assert_eq!(raw(p.running.addr(), "GET", &p.token_path(), &img, b"").await.status, 403);
    assert!(!p.running.start_link_spent());
    assert_eq!(p.redeem().await.status, 200);
    assert!(p.running.start_link_spent());
    assert_eq!(p.unlock("right horse").await.status, 200);
    assert_eq!(p.call(r#"{"cmd":"send","to":"bob","text":"hi"}"#).await.status, 200);
    // Someone uses the link again: told so, and nothing it gave lives on.
    let mut other =
        Page { cookie: None, key: None, host: p.host.clone(), fake: p.fake.clone(), running: p.running };
    let a = other.redeem().await;
    assert_eq!(a.status, 403);
    assert!(a.body.contains("already used"), "{}", a.body);
    assert!(other.cookie.is_none());
    let mine = Page { cookie: p.cookie.clone(), key: p.key.clone(), ..other };
    assert_eq!(mine.call(r#"{"cmd":"send","to":"bob","text":"hi"}"#).await.status, 403);

    // A token not used in time is dead.
    let config = AppConfig { token_lifetime: Duration::from_millis(300), ..AppConfig::default() };
    let mut late = Page::start(config).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(late.running.start_link_spent());
    let a = late.redeem().await;
    assert_eq!(a.status, 403);
    assert!(a.body.contains("no longer valid"), "{}", a.body);
}

#[tokio::test]
async fn rebinding_cross_site_forms_websockets_and_preflights_are_refused() {
    let mut p = Page::start(AppConfig::default()).await;
    p.redeem().await;
    p.unlock("right horse").await;
    let send = r#"{"cmd":"send","to":"bob","text":"from elsewhere"}"#;
    let port = p.running.addr().port();
    let cases: Vec<(&str, Head, u16)> = vec![
        ("rebinding host", with(p.api_head(), "Host", Some(&format!("rebind.test:{port}"))), 421),
        ("localhost", with(p.api_head(), "Host", Some(&format!("localhost:{port}"))), 421),
        ("other port", with(p.api_head(), "Host", Some(&format!("127.0.0.1:{}", port + 1))), 421),
        ("no host", with(p.api_head(), "Host", None), 421),
        ("foreign origin", with(p.api_head(), "Origin", Some("http://evil.example")), 403),
        ("null origin", with(p.api_head(), "Origin", Some("null")), 403),
        ("no origin", with(p.api_head(), "Origin", None), 403),
        ("cross-site fetch", with(p.api_head(), "Sec-Fetch-Site", Some("cross-site")), 403),
        ("same-site fetch", with(p.api_head(), "Sec-Fetch-Site", Some("same-site")), 403),
        ("form post", with(p.api_head(), "Content-Type", Some("application/x-www-form-urlencoded")), 415),
        ("text/plain", with(p.api_head(), "Content-Type", Some("text/plain")), 415),
        ("multipart", with(p.api_head(), "Content-Type", Some("multipart/form-data; boundary=x")), 415),
        ("websocket", with(p.api_head(), "Upgrade", Some("websocket")), 405),
    ];
    for (what, head, status) in cases {
        let a = p.call_with(&head, send).await;
        assert_eq!(a.status, status, "{what}");
        assert_secure(&a, what);
    }
    let a = raw(p.running.addr(), "OPTIONS", "/api/call", &p.api_head(), b"").await;
    assert_eq!(a.status, 405);
    assert_secure(&a, "preflight");
    assert!(!p.fake.commands().contains(&"send".to_owned()), "{:?}", p.fake.commands());
    // Our own page's request passes.
    assert_eq!(p.call(send).await.status, 200);
}

#[tokio::test]
async fn commands_need_the_key_an_unlock_gives_and_a_lock_takes() {
    let mut p = Page::start(AppConfig::default()).await;
    p.redeem().await;
    let send = r#"{"cmd":"send","to":"bob","text":"hi"}"#;
    assert_eq!(p.call(send).await.status, 401);
    let a = p.unlock("wrong").await;
    assert_eq!(a.status, 200);
    assert!(a.body.contains("wrong_passphrase") && !a.body.contains("key"), "{}", a.body);
    let a = p.unlock("right horse").await;
    assert!(p.key.is_some(), "{}", a.body);
    assert_eq!(a.header("clear-site-data"), Some("\"cache\""));
    assert_eq!(p.call(send).await.status, 200);
    // Answers of commands mix secrets with what others chose: never compressed (BREACH), even
    // for a browser that takes gzip.
    let gzip = with(p.api_head(), "Accept-Encoding", Some("gzip, deflate, br"));
    let a = p.call_with(&gzip, r#"{"cmd":"app_state"}"#).await;
    assert_eq!((a.status, a.header("content-encoding")), (200, None), "{}", a.body);
    // A key of another cookie, or none, is no key.
    let other = with(p.api_head(), "X-Qanat-Key", Some(&"ab".repeat(32)));
    assert_eq!(p.call_with(&other, send).await.status, 401);
    // Locked: the key is gone.
    assert_eq!(p.call(r#"{"cmd":"lock"}"#).await.body, r#"{"kind":"ok"}"#);
    assert_eq!(p.call(send).await.status, 401);
    let sent = p.fake.commands().iter().filter(|c| *c == "send").count();
    assert_eq!(sent, 1);
    // A body over 64 KiB, or not a command.
    p.unlock("right horse").await;
    let big = format!(r#"{{"cmd":"send","to":"bob","text":"{}"}}"#, "x".repeat(65 * 1024));
    assert_eq!(p.call(&big).await.status, 413);
    let a = p.call(r#"{"passphrase":"hunter2 secret"}"#).await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("line 1") && !a.body.contains("hunter2"), "{}", a.body);
}

#[tokio::test]
async fn repeated_wrong_unlocks_must_wait_longer_each_time_and_one_runs_at_a_time() {
    // Long enough that a loaded machine's scheduling does not turn a "too soon" into a "late".
    let delay = Duration::from_millis(1000);
    let mut p = Page::start(AppConfig { unlock_delay: delay, ..AppConfig::default() }).await;
    p.redeem().await;
    let code = |a: &Answer| serde_json::from_str::<serde_json::Value>(&a.body).unwrap()["code"].clone();
    for _ in 0..qanat_app::FREE_UNLOCK_FAILURES {
        assert_eq!(code(&p.unlock("wrong").await), "wrong_passphrase", "the first failures cost nothing");
    }
    // The sixth is told to wait, and asked again too soon, the right one too.
    let a = p.unlock("wrong").await;
    assert_eq!(code(&a), "busy");
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert!(v["retry_after_ms"].as_u64().unwrap() <= delay.as_millis() as u64, "{}", a.body);
    assert_eq!(code(&p.unlock("right horse").await), "busy");
    tokio::time::sleep(delay).await;
    assert_eq!(code(&p.unlock("wrong").await), "wrong_passphrase");
    // Then twice as long.
    tokio::time::sleep(delay).await;
    assert_eq!(code(&p.unlock("right horse").await), "busy");
    tokio::time::sleep(delay).await;
    p.unlock("right horse").await;
    assert!(p.key.is_some());
    // A check under way makes a second one at the same time busy (not queued behind it).
    let slow = p.call(r#"{"cmd":"unlock","passphrase":"wrong","slow_ms":3000}"#);
    let quick = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        p.call(r#"{"cmd":"unlock","passphrase":"right horse"}"#).await
    };
    let (_, second) = tokio::join!(slow, quick);
    assert_eq!(code(&second), "busy");
}

#[tokio::test]
async fn a_command_runs_to_its_end_when_its_connection_goes() {
    let mut p = Page::start(AppConfig::default()).await;
    p.redeem().await;
    p.unlock("right horse").await;
    let body = r#"{"cmd":"wipe","confirm":"wipe","slow_ms":300}"#;
    let mut req = "POST /api/call HTTP/1.1\r\n".to_owned();
    for (k, v) in p.api_head() {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let mut s = TcpStream::connect(p.running.addr()).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.fake.commands().contains(&"wipe done".to_owned()) {
        assert!(Instant::now() < deadline, "{:?}", p.fake.commands());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And what follows it in the server too: a wipe leaves no key alive.
    let deadline = Instant::now() + Duration::from_secs(10);
    while p.call(r#"{"cmd":"send","to":"bob","text":"hi"}"#).await.status != 401 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn one_line_commands_only_and_no_watch_and_no_key_less_lock() {
    let mut p = Page::start(AppConfig::default()).await;
    p.redeem().await;
    // A second command smuggled on a second line of a key-less one.
    let a = p.call("{\"cmd\":\"app_state\",\"a\":\n{\"cmd\":\"wipe\",\"confirm\":\"wipe\"}\n}").await;
    assert_eq!(a.status, 400);
    assert!(p.fake.commands().is_empty());
    // Locking needs the key it locks.
    assert_eq!(p.call(r#"{"cmd":"lock"}"#).await.status, 401);
    p.unlock("right horse").await;
    assert_eq!(p.call(r#"{"cmd":"watch"}"#).await.status, 400);
    assert!(!p.fake.commands().contains(&"watch".to_owned()));
    assert_eq!(p.call(r#"{"cmd":"lock"}"#).await.status, 200);
}

#[tokio::test]
async fn idle_connections_are_bounded_and_timed_out() {
    let config = AppConfig { header_timeout: Duration::from_millis(500), ..AppConfig::default() };
    let mut p = Page::start(config).await;
    p.redeem().await;
    // Every slot taken by a connection that sends half a head and nothing more.
    let mut idle = Vec::new();
    for _ in 0..qanat_app::MAX_CONNECTIONS + 8 {
        let mut s = TcpStream::connect(p.running.addr()).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: ").await.unwrap();
        idle.push(s);
    }
    // They are cut off once their time is up: the user's request is answered.
    let a = tokio::time::timeout(Duration::from_secs(10), p.call(r#"{"cmd":"app_state"}"#)).await;
    assert_eq!(a.map(|a| a.status).ok(), Some(200));
    let mut closed = 0;
    for mut s in idle {
        let mut buf = [0u8; 64];
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, qanat_app::MAX_CONNECTIONS + 8, "every idle connection ends");
}

#[tokio::test]
async fn the_event_stream_needs_the_key_and_carries_the_backends_events() {
    let mut p = Page::start(AppConfig::default()).await;
    p.redeem().await;
    let head = |p: &Page| {
        let mut h = with(p.api_head(), "Origin", None);
        h = with(h, "Content-Type", None);
        h
    };
    assert_eq!(raw(p.running.addr(), "GET", "/api/events", &head(&p), b"").await.status, 401);
    p.unlock("right horse").await;
    let mut s = TcpStream::connect(p.running.addr()).await.unwrap();
    let mut req = "GET /api/events HTTP/1.1\r\n".to_owned();
    for (k, v) in head(&p) {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    // Events sent until the stream shows one (the subscription starts with the request).
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains(r#"data: {"type":"left","name":"team"}"#) {
        assert!(Instant::now() < deadline, "{}", String::from_utf8_lossy(&got));
        let _ = p.fake.events.send(r#"{"type":"left","name":"team"}"#.to_owned());
        let mut buf = [0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
            got.extend_from_slice(&buf[..n]);
        }
    }
    let a = parse(&got);
    assert_eq!((a.status, a.header("content-type")), (200, Some("text/event-stream")));
    assert_secure(&a, "events");
}

#[tokio::test]
async fn the_strength_check_needs_the_cookie_not_the_key_and_tells_nobody_else() {
    let mut p = Page::start(AppConfig::default()).await;
    let ask = r#"{"passphrase":"password"}"#;
    // No cookie: the lock page's text, no estimate.
    let a = p.strength_with(&p.api_head(), ask).await;
    assert_eq!(a.status, 403);
    p.redeem().await;
    // The cookie, no key (the first run has none yet).
    let a = p.strength_with(&p.api_head(), ask).await;
    assert_eq!(a.status, 200);
    assert_secure(&a, "strength");
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["score"], 0);
    assert_eq!(v["warning"], "strength_warning_common");
    assert!(v["suggestions"].as_array().is_some_and(|s| !s.is_empty()));
    assert!(!a.body.contains("password"), "the passphrase is not echoed: {}", a.body);
    let a = p.strength_with(&p.api_head(), r#"{"passphrase":"correct horse battery staple lantern"}"#).await;
    assert!(a.body.starts_with(r#"{"score":4"#) || a.body.starts_with(r#"{"score":3"#), "{}", a.body);
    // A page elsewhere: refused before anything reads the body.
    let cases: Vec<(&str, Head, u16)> = vec![
        ("foreign origin", with(p.api_head(), "Origin", Some("http://evil.example")), 403),
        ("no origin", with(p.api_head(), "Origin", None), 403),
        ("cross-site", with(p.api_head(), "Sec-Fetch-Site", Some("cross-site")), 403),
        ("text/plain", with(p.api_head(), "Content-Type", Some("text/plain")), 415),
        ("rebinding", with(p.api_head(), "Host", Some("rebind.test")), 421),
    ];
    for (what, head, status) in cases {
        let a = p.strength_with(&head, ask).await;
        assert_eq!(a.status, status, "{what}");
        assert_secure(&a, what);
    }
    let a = raw(p.running.addr(), "GET", "/api/strength", &p.api_head(), b"").await;
    assert_eq!(a.status, 405);
    // Bounded: 4 KiB, a passphrase or 400 (naming nothing of it).
    let big = format!(r#"{{"passphrase":"{}"}}"#, "x".repeat(5 * 1024));
    assert_eq!(p.strength_with(&p.api_head(), &big).await.status, 413);
    let a = p.strength_with(&p.api_head(), r#"{"secret":"hunter2"}"#).await;
    assert_eq!(a.status, 400);
    assert!(!a.body.contains("hunter2"));
    // At most ten a second.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(p.strength_with(&p.api_head(), ask).await.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    // The backend (the profile) heard nothing of it.
    assert!(p.fake.commands().is_empty(), "{:?}", p.fake.commands());
}

#[tokio::test]
async fn an_invitation_comes_with_its_qr_code_as_a_path() {
    let mut p = Page::start(AppConfig::default()).await;
    p.redeem().await;
    p.unlock("right horse").await;
    let a = p.call(r#"{"cmd":"invite","name":"bob"}"#).await;
    assert_eq!(a.status, 200);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["kind"], "invitation");
    assert_eq!(v["link"], "qanat://invite/AQID");
    assert_eq!(v["expires_at_ms"], 7);
    assert_eq!(v["qr"]["size"], 25);
    let path = v["qr"]["path"].as_str().unwrap();
    assert!(path.starts_with("M0 0h7v1h-7z"), "{path}");
    assert!(path.chars().all(|c| "Mhvz- ".contains(c) || c.is_ascii_digit()), "{path}");
}

#[tokio::test]
async fn commands_that_name_a_path_on_the_disk_are_refused_and_files_go_in_parts() {
    let mut p = Page::start(AppConfig::default()).await;
    p.redeem().await;
    let send_file = r#"{"cmd":"send_file","to":"bob","path":"/home/user/.ssh/id_ed25519","name":null,"fast":false,"caption":null}"#;
    let file_save = r#"{"cmd":"file_save","id":"0a","path":"/home/user/.bashrc","force":true}"#;
    // Without the key, as any command.
    assert_eq!(p.call(send_file).await.status, 401);
    p.unlock("right horse").await;
    for body in [send_file, file_save] {
        let a = p.call(body).await;
        assert_eq!(a.status, 400, "{body}");
        assert!(a.body.contains("names no path") && a.body.contains("attach_begin"), "{}", a.body);
        assert!(!a.body.contains("/home/user"), "the path is not echoed: {}", a.body);
        assert_secure(&a, body);
    }
    // Nor hidden behind a second `cmd` (the first would be what a lenient parser reads).
    let twice = r#"{"cmd":"send","to":"bob","text":"hi","cmd":"send_file","path":"/etc/shadow"}"#;
    assert_eq!(p.call(twice).await.status, 400);
    let heard = p.fake.commands();
    assert!(
        !heard
            .iter()
            .any(|c| qanat_app::PATH_COMMANDS.iter().any(|x| c.starts_with(x)) || c.starts_with("send")),
        "the backend heard {heard:?}"
    );
    // What the page uses instead passes the gate: a part of 48,000 bytes (64,000 in base64)
    // fits a command body; one of 48 KiB (65,536 in base64, and the command around it) does not.
    let part = |raw: usize| {
        let data = "A".repeat(raw.div_ceil(3) * 4);
        format!(r#"{{"cmd":"attach_part","id":"{}","offset":4294967296,"data":"{data}"}}"#, "ab".repeat(16))
    };
    assert_eq!(p.call(&part(48_000)).await.status, 200);
    assert_eq!(p.call(&part(48 * 1024)).await.status, 413);
    for body in [
        r#"{"cmd":"attach_begin","to":"bob","name":"a.pdf","mime":"application/pdf","size":3,"kind":"file","duration_ms":null,"caption":null}"#,
        r#"{"cmd":"attach_commit","id":"ab","fast":false}"#,
        r#"{"cmd":"file_part","id":"0a","offset":0,"len":49152}"#,
    ] {
        assert_eq!(p.call(body).await.status, 200, "{body}");
    }
    assert_eq!(
        p.fake.commands().iter().filter(|c| !c.ends_with(" done")).collect::<Vec<_>>(),
        ["unlock", "settings", "attach_part", "attach_begin", "attach_commit", "file_part"]
    );
}
