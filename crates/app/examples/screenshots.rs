//! The screenshots of docs/APP.md §7, used by docs/USER-GUIDE.md and the README:
//! `cargo run -p qanat-app --example screenshots -- docs/app` (from the repository's root), then
//! `optipng -quiet -o2 docs/app/*.png` (Debian's `optipng`; lossless, about a fifth smaller).
//!
//! Serves the page over the preview's fake backend (`demo/mod.rs`, in this process), starts
//! `/usr/bin/chromedriver` on a free loopback port and drives headless `/usr/bin/chromium`
//! through every screen, at 1280×800 (`desktop`) and 360×780 (`phone`), in English and Arabic,
//! and French for the files and voice notes' screens ([`FILE_SCREENS`]; French goes through the
//! others too, checked but not written), writing the viewport as
//! `DIR/{screen}-{desktop|phone}-{en|fr|ar}.png`. The browser's microphone is Chromium's fake
//! one (a beep), allowed without asking. In every screen it checks
//! that every control has a name, every input a label, `lang`/`dir` are set, and that the page
//! recorded no error or CSP report; a failed check stops the run.
//!
//! chromedriver is killed by its PID when the run ends (also on panic), and so are the Chromium
//! processes it started, found by the `--user-data-dir` of this run's own temporary directory.

#[allow(dead_code)] // the preview uses the rest
mod demo;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use demo::{Demo, LINK, demo_world};
use fantoccini::{Client, ClientBuilder, Locator};
use qanat_app::{AppConfig, serve};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const PASSPHRASE: &str = "seven quiet herons fold the copper map";

/// The screens of files and voice notes (docs/APP.md §5), the only ones written in French.
const FILE_SCREENS: [&str; 7] = [
    "files-offered",
    "files-progress",
    "files-received",
    "voice-recording",
    "voice-estimate",
    "file-estimate",
    "file-fast",
];

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A `chromedriver` on a free loopback port, killed by its PID when dropped, with the browsers
/// it started (their command lines name a profile directory under `profiles`).
struct Driver {
    child: Child,
    port: u16,
    profiles: tempfile::TempDir,
}

impl Driver {
    fn start() -> Result<Self> {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let d = Self { child, port, profiles: tempfile::tempdir()? };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(30) {
                return Err("chromedriver did not start".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(d)
    }

    /// A fresh headless browser in `lang` with a `desktop` or `phone` viewport.
    async fn browser(&self, name: &str, lang: &str, phone: bool) -> Result<Client> {
        let profile = self.profiles.path().join(name);
        let mut options = json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-default-apps", "--disable-extensions",
                "--hide-scrollbars", "--force-device-scale-factor=1",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                format!("--lang={lang}"), "--window-size=1280,800",
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": {"intl.accept_languages": lang},
        });
        if phone {
            options["mobileEmulation"] =
                json!({"deviceMetrics": {"width": 360, "height": 780, "pixelRatio": 1, "touch": true}});
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let c = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await?;
        if !phone {
            // The window's size includes what headless Chromium counts as its frame: grow it
            // until the viewport itself is 1280×800.
            let frame = c.execute("return window.outerHeight - window.innerHeight;", vec![]).await?;
            c.set_window_size(1280, 800 + frame.as_u64().unwrap_or(0) as u32).await?;
        }
        Ok(c)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // chromedriver leaves its browsers running when it is killed: each is stopped by the
        // PID of the processes whose command line names a profile directory of ours.
        let ours = format!("--user-data-dir={}", self.profiles.path().display());
        let Ok(procs) = std::fs::read_dir("/proc") else { return };
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            let Ok(cmd) = std::fs::read(p.path().join("cmdline")) else { continue };
            if String::from_utf8_lossy(&cmd).contains(&ours)
                && let Some(pid) = rustix::process::Pid::from_raw(pid)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// One browser going through the screens, writing each as `DIR/{screen}-{device}-{lang}.png`.
struct Shots<'a> {
    c: Client,
    dir: &'a Path,
    device: &'static str,
    lang: &'static str,
    /// Only the screens of [`FILE_SCREENS`] are written (the others are checked).
    files_only: bool,
    /// A file to attach (a made-up PDF of 1 MB).
    attachment: PathBuf,
    /// A file over the demo network's limit.
    too_large: PathBuf,
}

/// The page's own checks (APP.md §5, accessibility): what is wrong, or an empty list.
const CHECK: &str = r#"
const bad = [];
const html = document.documentElement;
if (!html.lang || !html.dir) bad.push('lang/dir not set');
for (const el of document.querySelectorAll('button, a[href], select, textarea, input')) {
  if (el.type === 'hidden' || el.closest('[hidden]')) continue;
  const named = (el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') || '').trim()
    || (el.labels && el.labels.length > 0) || el.textContent.trim()
    || (el.type === 'radio' && el.closest('label'));
  if (!named) bad.push('unnamed ' + el.outerHTML.slice(0, 80));
}
if (document.querySelectorAll('h1').length !== 1) bad.push('h1 count ' + document.querySelectorAll('h1').length);
if (document.documentElement.scrollWidth > window.innerWidth) bad.push('horizontal overflow');
for (const e of window.qanatErrors || []) bad.push('page error: ' + e);
return bad;
"#;

impl Shots<'_> {
    /// Waits for `css`, lets the page settle, checks it and writes `screen`'s image.
    async fn shot(&self, screen: &str, css: &str) -> Result {
        self.wait(css).await?;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let bad = self.c.execute(CHECK, vec![]).await?;
        if bad.as_array().is_some_and(|b| !b.is_empty()) {
            return Err(format!("{screen} ({}, {}): {bad}", self.device, self.lang).into());
        }
        if self.files_only && !FILE_SCREENS.contains(&screen) {
            return Ok(());
        }
        let png = self.c.screenshot().await?;
        let path = self.dir.join(format!("{screen}-{}-{}.png", self.device, self.lang));
        std::fs::write(&path, &png)?;
        println!("{} ({} bytes)", path.display(), png.len());
        Ok(())
    }

    /// Waits (up to 20 s) for an element matching `css`.
    async fn wait(&self, css: &str) -> Result {
        let start = Instant::now();
        while self.c.find(Locator::Css(css)).await.is_err() {
            if start.elapsed() > Duration::from_secs(20) {
                return Err(format!("timed out waiting for {css}").into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    /// Runs `script` (a statement) once `css` is there.
    async fn js(&self, css: &str, script: &str) -> Result {
        self.wait(css).await?;
        self.c.execute(script, vec![]).await?;
        Ok(())
    }

    /// Clicks the first element matching `css` (from script: hidden columns included).
    async fn click(&self, css: &str) -> Result {
        self.js(css, &format!("document.querySelector({css:?}).click();")).await
    }

    /// Clicks the conversation named `name` in the list.
    async fn open(&self, name: &str) -> Result {
        self.js(
            "button.thread",
            &format!("[...document.querySelectorAll('button.thread')].find((b) => b.textContent.includes({name:?})).click();"),
        )
        .await
    }

    /// Types `text` into the field `css`.
    async fn type_into(&self, css: &str, text: &str) -> Result {
        self.wait(css).await?;
        let e = self.c.find(Locator::Css(css)).await?;
        e.clear().await?;
        e.send_keys(text).await?;
        Ok(())
    }

    /// Scrolls the bubble holding `css` to `block` ("start", "center") of the conversation.
    async fn show(&self, css: &str, block: &str) -> Result {
        let script =
            format!("document.querySelector({css:?}).closest('li').scrollIntoView({{block: {block:?}}});");
        self.js(css, &script).await
    }

    /// Files and voice notes: سلمى's conversation has one in each state; then a voice note is
    /// recorded and a file attached, up to their send dialogs, and the file is sent faster.
    async fn files(&self) -> Result {
        self.open("سلمى").await?;
        self.shot("files-offered", ".offer button.primary").await?;
        self.show("li.msg.mine .transfer", "center").await?;
        self.shot("files-progress", ".transfer progress").await?;
        self.click("button.show-image").await?;
        self.click("button.play-voice").await?;
        self.wait(".file-body audio").await?;
        self.show("img.file-image", "start").await?;
        self.shot("files-received", "img.file-image").await?;
        // A voice note: recording (the fake microphone), then its dialog.
        self.click(".composer button.icon-button").await?;
        self.wait(".rec-dot.on").await?;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        self.shot("voice-recording", ".recorder").await?;
        self.click(".recorder button.primary").await?;
        self.shot("voice-estimate", ".send-dialog button.send-hidden").await?;
        self.click(".send-dialog button.cancel").await?;
        // A file, its dialog, then the faster way with its warning.
        self.attach(&self.attachment).await?;
        self.shot("file-estimate", ".send-dialog button.more").await?;
        self.click(".send-dialog button.more").await?;
        self.click(".fast-panel input[type=checkbox]").await?;
        self.shot("file-fast", ".fast-panel button.send-fast:not([disabled])").await?;
        self.click(".fast-panel button.send-fast").await?;
        // Handed over: the dialog goes, the new bubble moves.
        let start = Instant::now();
        while self.c.find(Locator::Css("dialog[open]")).await.is_ok() {
            if start.elapsed() > Duration::from_secs(20) {
                return Err("the file was never handed over".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.wait("li.msg.mine:last-child .transfer").await?;
        // Checked, not photographed: in a group, no faster way (the demo's groups have none);
        // a file over the limit is refused with the limit; an "image" whose bytes are SVG is
        // not shown, only offered to save.
        self.open("Field team").await?;
        self.attach(&self.attachment).await?;
        self.wait(".send-dialog button.send-hidden").await?;
        self.absent(".send-dialog button.more").await?;
        self.click(".send-dialog button.cancel").await?;
        self.attach(&self.too_large).await?;
        self.wait(".send-dialog .warning").await?;
        self.absent(".send-dialog button.send-hidden").await?;
        self.click(".send-dialog button.cancel").await?;
        self.click("button.show-image").await?;
        self.wait("button.save-file").await?;
        self.absent("img.file-image").await?;
        Ok(())
    }

    /// Chooses `file` in the composer's file input.
    async fn attach(&self, file: &Path) -> Result {
        self.wait("#attach").await?;
        self.c.find(Locator::Css("#attach")).await?.send_keys(&file.display().to_string()).await?;
        Ok(())
    }

    /// Fails if anything matches `css`.
    async fn absent(&self, css: &str) -> Result {
        if self.c.find(Locator::Css(css)).await.is_ok() {
            return Err(format!("{css} should not be there ({}, {})", self.device, self.lang).into());
        }
        Ok(())
    }

    /// Goes through every screen, from the first run to the lock screen.
    async fn all(&self, url: &str) -> Result {
        let c = &self.c;
        c.goto(url).await?;
        // The first run: language, passphrase (with its strength), traffic profile and its cost.
        self.shot("first-language", "input[name=language]").await?;
        self.click("main button.primary").await?;
        self.type_into("#passphrase", PASSPHRASE).await?;
        self.type_into("#again", PASSPHRASE).await?;
        self.wait(".strength span:not(:empty)").await?;
        self.shot("first-passphrase", "#again").await?;
        self.click("form button[type=submit]").await?;
        self.wait("input[name=traffic]").await?;
        let start = Instant::now();
        while c.find(Locator::Css(".choices .measuring")).await.is_ok() {
            if start.elapsed() > Duration::from_secs(20) {
                return Err("the traffic profiles' costs never came".into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        self.shot("first-traffic", "input[name=traffic]").await?;
        self.click("main button.primary").await?;
        // The list, then conversations and their details.
        self.shot("list", "button.thread").await?;
        self.open("Amina").await?;
        self.shot("conversation", "li.msg").await?;
        self.click("button.details").await?;
        self.shot("contact", ".safety .code").await?;
        self.open("Field team").await?;
        self.shot("conversation-group", "li.msg .sender").await?;
        self.click("button.details").await?;
        self.click(".member-actions button[aria-expanded]").await?;
        self.shot("group", ".safety .code").await?;
        self.files().await?;
        // A new contact (its link and QR), accepting one, a group invitation.
        self.click(".list-actions button:nth-child(1)").await?;
        self.type_into("#name", "Noor").await?;
        self.click("form button[type=submit]").await?;
        self.shot("new-contact", "svg.qr").await?;
        self.click(".list-actions button:nth-child(2)").await?;
        self.type_into("#link", LINK).await?;
        self.type_into("#name", "Karim").await?;
        self.shot("accept", "#link").await?;
        self.click(".invitations .invitation button.primary").await?;
        self.shot("group-invitation", "#group-name").await?;
        // Network and privacy, settings, then the lock screen.
        self.click("nav.bar-actions button:nth-child(1)").await?;
        self.shot("network", ".detail h1").await?;
        self.click("nav.bar-actions button:nth-child(2)").await?;
        self.shot("settings", ".detail h1").await?;
        self.click("nav.bar-actions button:nth-child(3)").await?;
        self.shot("unlock", ".unlock #passphrase").await?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "docs/app".into()));
    std::fs::create_dir_all(&dir)?;
    for p in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(p).exists() {
            return Err(format!("{p} is needed (Debian: chromium, chromium-driver, fonts-noto-core)").into());
        }
    }
    let driver = Driver::start()?;
    // A made-up PDF of a megabyte to attach.
    let attachment = driver.profiles.path().join("field-report.pdf");
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend((0..1_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    std::fs::write(&attachment, pdf)?;
    let too_large = driver.profiles.path().join("archive.zip");
    std::fs::write(&too_large, vec![0x50u8; 5 << 20])?;
    for lang in ["en", "fr", "ar"] {
        for (device, phone) in [("desktop", false), ("phone", true)] {
            // Every pass starts with no profile over the demo's conversations, so the first
            // run ends in the full list (the demo world's language is the one chosen at step 1).
            let mut world = demo_world(false, None);
            world.profile = "none";
            let running = serve(Demo::new(world), AppConfig::default()).await?;
            let c = driver.browser(&format!("{device}-{lang}"), lang, phone).await?;
            let shots = Shots {
                c,
                dir: &dir,
                device,
                lang,
                files_only: lang == "fr",
                attachment: attachment.clone(),
                too_large: too_large.clone(),
            };
            let done = shots.all(&running.start_url()).await;
            let _ = shots.c.close().await;
            running.stop().await?;
            done?;
        }
    }
    drop(driver);
    Ok(())
}
