//! The HTTP server: one handler behind the gate, on 127.0.0.1 only.
//!
//! `POST /api/call` takes one command as JSON (`{"cmd":"send","to":"bob","text":"hi"}`, the
//! client's control protocol) and answers the [`Backend`]'s JSON with status 200, refusals
//! included. Without a key only [`LOCKED`] commands pass. The server adds to the backend's
//! answers only the key (to a successful `unlock` or `create`), and answers `lock` itself.
//! `GET /api/events` streams the backend's events as server-sent events (`data: {json}`), a
//! `: ping` every 15 s, `event: resync` when the page fell behind.
//!
//! Commands that name a path on the user's disk ([`PATH_COMMANDS`]) are refused: files go
//! through `/api/call` in parts of at most 48 KiB (docs/ATTACHMENTS.md §3.15).
//!
//! Every answer carries the headers of [`secure`]: a Content-Security-Policy that lets the page
//! load nothing but its own files (and the `blob:` URLs it makes itself, for a received image
//! or voice note) and run no inline script, no caching, no framing, no cross-origin reads, the
//! microphone for this page only (voice notes), and no `Access-Control-*` header ever.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use serde::Deserialize;
use tokio::sync::{broadcast, oneshot};
use zeroize::Zeroizing;

use crate::assets;
use crate::gate::{self, Route};
use crate::sessions::{CookieId, Redeemed, Sessions};
use crate::{qr, strength};

/// Commands that pass without a key: what the lock screen and the first run need.
pub const LOCKED: [&str; 3] = ["app_state", "create", "unlock"];

/// Commands that name a path on the user's disk (the control socket's `send_file` and
/// `file_save`): refused here, whoever asks. The page never names a path; it sends a file by
/// `attach_begin`/`attach_part`/`attach_commit` and reads one by `file_part`, and a command
/// that made the client read or write a path the page chose would let whatever runs in the
/// page reach every file the user can.
pub const PATH_COMMANDS: [&str; 2] = ["send_file", "file_save"];

/// Commands that check a passphrase: one at a time, and slower after repeated failures.
const PASSPHRASE_CHECKS: [&str; 3] = ["unlock", "change_passphrase", "set_duress"];

/// Connections served at once (a browser opens a handful); more wait in the kernel's queue.
pub const MAX_CONNECTIONS: usize = 64;

/// The largest command body.
pub const MAX_BODY: usize = 64 * 1024;

/// The largest body of a strength check (a passphrase needs no more).
pub const MAX_STRENGTH_BODY: usize = 4 * 1024;

/// Failed unlocks before each next one waits (1 s, doubling up to 5 min).
pub const FREE_UNLOCK_FAILURES: u32 = 5;

/// What answers the page's commands and streams its events: the client (in this process, or a
/// running `qanat run` through its control socket), or a fake in tests.
pub trait Backend: Send + Sync + 'static {
    /// Answers one command: the request's JSON body, one line (an object with `cmd`, never
    /// `watch`; it may hold a passphrase, so it is zeroized once read), the answer's JSON (with
    /// `kind`). A body that is not a command is the backend's to refuse, naming no more than
    /// the position of the fault (it may hold a passphrase).
    fn call(&self, body: Zeroizing<Vec<u8>>) -> impl Future<Output = Vec<u8>> + Send;

    /// The events from now on, each one JSON object on one line (any other is dropped).
    fn subscribe(&self) -> broadcast::Receiver<String>;
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The port on 127.0.0.1 (0: a free one).
    pub port: u16,
    /// How long the start link can be used.
    pub token_lifetime: Duration,
    /// The lock timeout until the profile's own is known.
    pub lock_timeout: Duration,
    /// The first wait after [`FREE_UNLOCK_FAILURES`] failed unlocks (doubling from there).
    pub unlock_delay: Duration,
    /// How long a connection may take to send a request's head.
    pub header_timeout: Duration,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            port: 0,
            token_lifetime: Duration::from_secs(120),
            lock_timeout: Duration::from_secs(300),
            unlock_delay: Duration::from_secs(1),
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// A running server.
pub struct Running {
    addr: SocketAddr,
    token: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    spent: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl Running {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The start link: works once, within the token's lifetime.
    pub fn start_url(&self) -> String {
        format!("http://{}/s/{}", self.addr, self.token)
    }

    /// Whether the start link can no longer be used (redeemed, or expired): a file that holds
    /// it may go.
    pub fn start_link_spent(&self) -> bool {
        (self.spent)()
    }

    /// Stops the server (open event streams end with it).
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.map_err(std::io::Error::other)?
    }
}

struct Throttle {
    failures: u32,
    next: Option<Instant>,
}

struct App<B> {
    backend: B,
    sessions: Mutex<Sessions>,
    authority: String,
    unlock: tokio::sync::Mutex<Throttle>,
    unlock_delay: Duration,
    /// Strength checks in the current second: when it began, how many.
    strength: Mutex<(Instant, u32)>,
}

impl<B> App<B> {
    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        // A panic while holding it cannot leave the sessions half-changed in a way that opens
        // anything: every method changes one field last.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts the server on 127.0.0.1.
pub async fn serve<B: Backend>(backend: B, config: AppConfig) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
    let addr = listener.local_addr()?;
    let sessions = Sessions::new(Instant::now(), config.token_lifetime, config.lock_timeout);
    let token = sessions.token();
    let app = Arc::new(App {
        backend,
        sessions: Mutex::new(sessions),
        authority: addr.to_string(),
        unlock: tokio::sync::Mutex::new(Throttle { failures: 0, next: None }),
        unlock_delay: config.unlock_delay,
        strength: Mutex::new((Instant::now(), 0)),
    });
    let a = app.clone();
    let spent = Arc::new(move || a.sessions().token_spent(Instant::now()));
    let router = Router::new().fallback(handle::<B>).with_state(app);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(accept(listener, router, config.header_timeout, stopped));
    Ok(Running { addr, token, stop: Some(stop), task, spent })
}

/// Serves connections until `stopped`: at most [`MAX_CONNECTIONS`] at once, each given
/// `header_timeout` for a request's head (a local process that opens connections and sends
/// nothing holds no more than that many descriptors, for no longer than that).
async fn accept(
    listener: tokio::net::TcpListener,
    router: Router,
    header_timeout: Duration,
    mut stopped: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
            _ = &mut stopped => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                // Out of descriptors, say: wait a little rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stopped => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        connections.spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
        // Reap the finished ones.
        while connections.try_join_next().is_some() {}
    }
    connections.abort_all();
    Ok(())
}

async fn handle<B: Backend>(State(app): State<Arc<App<B>>>, req: Request) -> Response<Body> {
    let mut resp = answer(&app, req).await;
    secure(resp.headers_mut());
    resp
}

/// The headers of every answer.
pub(crate) fn secure(h: &mut HeaderMap) {
    const HEADERS: [(&str, &str); 9] = [
        (
            "content-security-policy",
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; media-src blob:; \
             font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; \
             require-trusted-types-for 'script'; trusted-types 'none'",
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
    for (k, v) in HEADERS {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h.remove(header::SERVER);
}

fn with_body(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response<Body> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

fn page(status: StatusCode, html: &'static str) -> Response<Body> {
    with_body(status, "text/html; charset=utf-8", html)
}

fn json(v: Vec<u8>) -> Response<Body> {
    with_body(StatusCode::OK, "application/json", v)
}

/// The page for a browser without the cookie (en, fr, ar).
const NO_COOKIE: &str = "<!doctype html><meta charset=utf-8><title>Qanat</title>\
<p lang=en>Open Qanat from the link it printed when it started.</p>\
<p lang=fr>Ouvrez Qanat avec le lien qu'il a affiché au démarrage.</p>\
<p lang=ar dir=rtl>افتح قنات من الرابط الذي طبعه عند بدء تشغيله.</p>";

const REUSED: &str = "<!doctype html><meta charset=utf-8><title>Qanat</title>\
<p lang=en>This link was already used: someone else on this computer may have opened it. Quit Qanat and start it again.</p>\
<p lang=fr>Ce lien a déjà servi : quelqu'un d'autre sur cet ordinateur l'a peut-être ouvert. Quittez Qanat et relancez-le.</p>\
<p lang=ar dir=rtl>استُخدم هذا الرابط من قبل: ربما فتحه شخص آخر على هذا الحاسوب. أغلق قنات وشغّله من جديد.</p>";

const EXPIRED: &str = "<!doctype html><meta charset=utf-8><title>Qanat</title>\
<p lang=en>This link is no longer valid. Quit Qanat and start it again.</p>\
<p lang=fr>Ce lien n'est plus valable. Quittez Qanat et relancez-le.</p>\
<p lang=ar dir=rtl>لم يعد هذا الرابط صالحًا. أغلق قنات وشغّله من جديد.</p>";

/// Moves to `/` by a meta refresh, not a redirect: a redirect chain begun by a `file:` page
/// stays cross-site, and the strict cookie would not be sent to `/`.
const TO_PAGE: &str =
    "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=\"0;url=/\"><title>Qanat</title>";

fn value<'a>(h: &'a HeaderMap, name: &'static str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn answer<B: Backend>(app: &Arc<App<B>>, req: Request) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let route = match gate::check(&parts.method, parts.uri.path(), &parts.headers, &app.authority) {
        Ok(r) => r,
        Err(r) => {
            tracing::debug!(why = r.why, status = r.status.as_u16(), "request refused");
            return empty(r.status);
        }
    };
    let now = Instant::now();
    if let Route::Redeem(token) = &route {
        // Only a navigation redeems it (not an image, a script or a fetch of another page).
        if value(&parts.headers, "sec-fetch-dest") != Some("document")
            || parts.headers.contains_key("sec-purpose")
            || parts.headers.contains_key("purpose")
        {
            // Nor a prefetch or prerender, which the user did not ask for.
            return empty(StatusCode::FORBIDDEN);
        }
        let redeemed = app.sessions().redeem(token, now);
        return match redeemed {
            Redeemed::Cookie(c) => {
                let mut r = page(StatusCode::OK, TO_PAGE);
                let cookie = format!("qanat={c}; Path=/; HttpOnly; SameSite=Strict");
                if let Ok(v) = HeaderValue::from_str(&cookie) {
                    r.headers_mut().insert(header::SET_COOKIE, v);
                }
                r
            }
            Redeemed::Reused => {
                tracing::warn!("the start link was used twice: every session was closed");
                page(StatusCode::FORBIDDEN, REUSED)
            }
            Redeemed::Refused => page(StatusCode::FORBIDDEN, EXPIRED),
        };
    }
    let cookies = parts.headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok());
    let Some(cookie) = app.sessions().cookie(cookies) else {
        return page(StatusCode::FORBIDDEN, NO_COOKIE);
    };
    match route {
        Route::Redeem(_) => empty(StatusCode::FORBIDDEN),
        Route::Index => file("index.html", &parts.headers),
        Route::Asset(f) if f != "index.html" => file(&f, &parts.headers),
        Route::Asset(_) => empty(StatusCode::NOT_FOUND),
        Route::Events => {
            let key = value(&parts.headers, "x-qanat-key").map(str::to_owned);
            if !app.sessions().key_ok(cookie, key.as_deref(), false, now) {
                return empty(StatusCode::UNAUTHORIZED);
            }
            events(app.clone(), cookie, key.unwrap_or_default())
        }
        // Its own task: a connection that goes away does not cut a command (a wipe, a quit, an
        // unlock whose failure must count) in half.
        Route::Strength => strength(app, body, now).await,
        Route::Call => {
            let task = tokio::spawn(call(app.clone(), cookie, parts.headers, body, now));
            task.await.unwrap_or_else(|_| empty(StatusCode::INTERNAL_SERVER_ERROR))
        }
    }
}

/// An embedded file, gzip-compressed when the browser takes that (every browser does).
fn file(name: &str, headers: &HeaderMap) -> Response<Body> {
    let Some((t, bytes)) = assets::get(name) else { return empty(StatusCode::NOT_FOUND) };
    let gzip_ok = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|c| accepts_gzip(c.trim()));
    let mut r = match assets::gzipped(name).filter(|_| gzip_ok) {
        Some(z) => {
            let mut r = with_body(StatusCode::OK, t, z);
            r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        None => with_body(StatusCode::OK, t, bytes),
    };
    r.headers_mut().insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    r
}

/// Whether one coding of an `Accept-Encoding` list is gzip with a weight above zero.
fn accepts_gzip(coding: &str) -> bool {
    let mut parts = coding.split(';').map(str::trim);
    let name = parts.next().unwrap_or_default();
    if !name.eq_ignore_ascii_case("gzip") {
        return false;
    }
    parts.all(|p| match p.split_once('=') {
        Some((q, w)) if q.trim().eq_ignore_ascii_case("q") => w.trim().parse::<f32>().is_ok_and(|w| w > 0.0),
        _ => true,
    })
}

#[derive(Deserialize)]
struct Head {
    cmd: String,
}

#[derive(Deserialize)]
struct Answer {
    kind: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    lock_timeout_secs: Option<u64>,
}

async fn call<B: Backend>(
    app: Arc<App<B>>,
    cookie: CookieId,
    headers: HeaderMap,
    body: Body,
    now: Instant,
) -> Response<Body> {
    let app = &app;
    let headers = &headers;
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => Zeroizing::new(b.to_vec()),
        Err(_) => return empty(StatusCode::PAYLOAD_TOO_LARGE),
    };
    // One line: whatever passes it on line by line (a control socket) sees one command.
    if body.iter().any(|b| *b == b'\n' || *b == b'\r') {
        return with_body(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", "not one line");
    }
    let cmd = match serde_json::from_slice::<Head>(&body) {
        Ok(h) => h.cmd,
        Err(e) => {
            // The position only: the body may hold a passphrase.
            let why = format!("not a command (line {}, column {})", e.line(), e.column());
            return with_body(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", why);
        }
    };
    if !LOCKED.contains(&cmd.as_str()) {
        let key = value(headers, "x-qanat-key");
        let activity = value(headers, "x-qanat-activity") == Some("1");
        if !app.sessions().key_ok(cookie, key, activity, now) {
            return empty(StatusCode::UNAUTHORIZED);
        }
    }
    if PASSPHRASE_CHECKS.contains(&cmd.as_str()) {
        return checked(app, cookie, &cmd, body).await;
    }
    if PATH_COMMANDS.contains(&cmd.as_str()) {
        tracing::debug!(cmd, "a command naming a path was refused");
        return with_body(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "the page names no path on this computer: send a file with attach_begin, attach_part and \
             attach_commit, read one with file_part",
        );
    }
    match cmd.as_str() {
        "watch" => with_body(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", "use /api/events"),
        "lock" => {
            app.sessions().lock(cookie);
            json(br#"{"kind":"ok"}"#.to_vec())
        }
        "create" => {
            let out = app.backend.call(body).await;
            let ok = serde_json::from_slice::<Answer>(&out).is_ok_and(|a| a.kind == "ok");
            keyed(app, cookie, out, ok).await
        }
        "quit" | "wipe" => {
            let out = app.backend.call(body).await;
            let ok = serde_json::from_slice::<Answer>(&out).is_ok_and(|a| a.kind == "ok");
            if ok {
                app.sessions().lock_all();
            }
            let mut r = json(out);
            let clear = if cmd == "wipe" { "\"cache\", \"storage\"" } else { "\"cache\"" };
            r.headers_mut().insert("clear-site-data", HeaderValue::from_static(clear));
            r
        }
        "set_settings" => {
            let out = app.backend.call(body).await;
            refresh_lock_timeout(app).await;
            json(out)
        }
        // The invitation's QR code, drawn by the page (docs/APP.md §4).
        "invite" | "invitation" => json(qr::decorate(app.backend.call(body).await)),
        _ => json(app.backend.call(body).await),
    }
}

/// `POST /api/strength`: `{"passphrase":…}` → `{"score","warning","suggestions"}` (see
/// [`crate::strength`]). Needs the cookie, not the key (the first run asks before any key
/// exists); touches no profile; logs nothing; at most [`strength::PER_SECOND`] a second.
async fn strength<B>(app: &Arc<App<B>>, body: Body, now: Instant) -> Response<Body> {
    {
        let mut s = app.strength.lock().unwrap_or_else(|e| e.into_inner());
        if now.duration_since(s.0) >= Duration::from_secs(1) {
            *s = (now, 0);
        }
        if s.1 >= strength::PER_SECOND {
            return empty(StatusCode::TOO_MANY_REQUESTS);
        }
        s.1 += 1;
    }
    let body = match axum::body::to_bytes(body, MAX_STRENGTH_BODY).await {
        Ok(b) => Zeroizing::new(b.to_vec()),
        Err(_) => return empty(StatusCode::PAYLOAD_TOO_LARGE),
    };
    // zxcvbn takes milliseconds: off the async threads.
    let estimate = tokio::task::spawn_blocking(move || strength::answer(&body)).await;
    match estimate {
        Ok(Some(e)) => json(serde_json::to_vec(&e).unwrap_or_default()),
        Ok(None) => with_body(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", "not a passphrase"),
        Err(_) => empty(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// A command that checks a passphrase: one at a time (a second one meanwhile is `busy`), and
/// after [`FREE_UNLOCK_FAILURES`] failures each next one must wait (1 s doubling to 5 min;
/// asked sooner, `busy` with the wait left). The failure is counted before the check, so
/// nothing can skip the count.
async fn checked<B: Backend>(
    app: &Arc<App<B>>,
    cookie: CookieId,
    cmd: &str,
    body: Zeroizing<Vec<u8>>,
) -> Response<Body> {
    let busy = |wait: Duration| {
        let v = serde_json::json!({
            "kind": "error",
            "message": "wait before trying again",
            "code": "busy",
            "retry_after_ms": wait.as_millis() as u64,
        });
        json(serde_json::to_vec(&v).unwrap_or_default())
    };
    let Ok(mut throttle) = app.unlock.try_lock() else { return busy(Duration::from_secs(1)) };
    let now = Instant::now();
    if let Some(at) = throttle.next
        && at > now
    {
        return busy(at - now);
    }
    let before = (throttle.failures, throttle.next);
    throttle.failures += 1;
    if throttle.failures >= FREE_UNLOCK_FAILURES {
        let doublings = (throttle.failures - FREE_UNLOCK_FAILURES).min(16);
        let wait = (app.unlock_delay * (1u32 << doublings)).min(Duration::from_secs(300));
        throttle.next = Some(now + wait);
    }
    let out = app.backend.call(body).await;
    let answer = serde_json::from_slice::<Answer>(&out).ok();
    let wrong = answer.as_ref().is_some_and(|a| a.code.as_deref() == Some("wrong_passphrase"));
    let ok = answer.as_ref().is_some_and(|a| a.kind == "unlocked" || a.kind == "ok");
    if ok {
        *throttle = Throttle { failures: 0, next: None };
    } else if !wrong {
        // Refused for another reason: not a guess.
        (throttle.failures, throttle.next) = before;
    }
    drop(throttle);
    if cmd == "unlock" { keyed(app, cookie, out, ok).await } else { json(out) }
}

/// The backend's answer to an unlock or a first run, with a fresh key when it succeeded.
async fn keyed<B: Backend>(app: &Arc<App<B>>, cookie: CookieId, out: Vec<u8>, ok: bool) -> Response<Body> {
    if !ok {
        return json(out);
    }
    refresh_lock_timeout(app).await;
    let Some(key) = app.sessions().issue_key(cookie, Instant::now()) else { return json(out) };
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&out).unwrap_or_default();
    v.insert("key".into(), key.into());
    let mut r = json(serde_json::to_vec(&v).unwrap_or_default());
    r.headers_mut().insert("clear-site-data", HeaderValue::from_static("\"cache\""));
    r
}

/// Takes the profile's lock timeout, once it can be read.
async fn refresh_lock_timeout<B: Backend>(app: &Arc<App<B>>) {
    let out = app.backend.call(Zeroizing::new(br#"{"cmd":"settings"}"#.to_vec())).await;
    if let Ok(Answer { lock_timeout_secs: Some(s), .. }) = serde_json::from_slice(&out) {
        app.sessions().set_lock_timeout(Duration::from_secs(s));
    }
}

/// How often the stream says it is alive (and checks that its key still is).
const PING: Duration = Duration::from_secs(15);

fn events<B: Backend>(app: Arc<App<B>>, cookie: CookieId, key: String) -> Response<Body> {
    let rx = app.backend.subscribe();
    let stream = futures_util::stream::unfold((rx, app, key), move |(mut rx, app, key)| async move {
        let chunk = tokio::select! {
            ev = rx.recv() => match ev {
                // One line each, or it could forge the stream's framing.
                Ok(json) if json.contains(['\n', '\r']) => ": dropped\n\n".to_owned(),
                Ok(json) => format!("data: {json}\n\n"),
                Err(broadcast::error::RecvError::Lagged(_)) => "event: resync\ndata: {}\n\n".to_owned(),
                Err(broadcast::error::RecvError::Closed) => return None,
            },
            () = tokio::time::sleep(PING) => ": ping\n\n".to_owned(),
        };
        // A locked page (or an expired key) gets nothing more.
        if !app.sessions().key_ok(cookie, Some(&key), false, Instant::now()) {
            return None;
        }
        Some((Ok::<_, std::convert::Infallible>(chunk), (rx, app, key)))
    });
    with_body(StatusCode::OK, "text/event-stream", Body::from_stream(stream))
}
