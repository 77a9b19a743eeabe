//! `qanat app`: the client and its page (docs/APP.md). The profile's lifecycle and its client
//! run in this process ([`Host`]); the page is served on 127.0.0.1 by `qanat_app`, and the
//! terminal's commands reach the open client through `HOME/control.sock`, as with `qanat run`.
//!
//! The passphrase is typed into the page only: this command refuses to start while
//! `QANAT_PASSPHRASE` is set (a passphrase in the environment is readable by the user's other
//! processes and outlives the wipe), and never prints or logs one. The start link (a one-time
//! token) is printed, and handed to the browser through a 0600 file rather than a command line
//! (which every local user can read in `/proc`); the file is deleted once the link is spent.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use qanat_app::{AppConfig, Backend};
use qanat_client::control::SOCKET_FILE;
use qanat_client::engine::EngineConfig;
use qanat_client::host::{Host, HostConfig, HostRequest};
use qanat_client::store::{HEADER_FILE, PASSPHRASE_ENV};
use qanat_network::file::{Access, write_atomically};
use qanat_node::config::ClientNetwork;
use tokio::sync::broadcast;
use zeroize::Zeroizing;

use crate::client_cmd::NETWORK_FILE;

/// How `qanat app` runs.
#[derive(Debug)]
pub(crate) struct AppArgs {
    /// The profile directory.
    pub(crate) home: PathBuf,
    /// The network file, for the first run.
    pub(crate) network: Option<PathBuf>,
    /// Whether to open the browser.
    pub(crate) browser: bool,
    /// The port on 127.0.0.1 (0: a free one).
    pub(crate) port: u16,
    /// The runtime's pull interval (zero: the traffic profile's).
    pub(crate) fetch_interval: Duration,
    /// The groups' decision window.
    pub(crate) decision_window: Option<Duration>,
}

/// The page's commands go to the host in this process.
pub(crate) struct HostBackend(pub(crate) Arc<Host>);

impl Backend for HostBackend {
    fn call(&self, body: Zeroizing<Vec<u8>>) -> impl Future<Output = Vec<u8>> + Send {
        let host = self.0.clone();
        async move { host.call_json(&body).await }
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.0.subscribe()
    }
}

/// `qanat app`.
pub(crate) fn app(args: AppArgs) -> Result<()> {
    if std::env::var_os(PASSPHRASE_ENV).is_some() {
        bail!(
            "{PASSPHRASE_ENV} is set: the app takes the passphrase in its page only (a passphrase in \
             the environment can be read by your other programs); unset it and start again"
        );
    }
    let home = &args.home;
    if std::os::unix::net::UnixStream::connect(home.join(SOCKET_FILE)).is_ok() {
        bail!(
            "a `qanat run` holds the profile in {}: stop it (Ctrl-C), then start the app; the app \
             runs the client itself",
            home.display()
        );
    }
    let network = network(home, args.network.as_deref())?;
    let mut engine = EngineConfig::default();
    if let Some(w) = args.decision_window {
        engine.mls.decision_window = w;
    }
    if !args.fetch_interval.is_zero() {
        engine.fetch_interval = args.fetch_interval;
    }
    let host = Host::new(HostConfig {
        dir: home.clone(),
        network,
        engine,
        fetch_interval: args.fetch_interval,
        kdf: None,
        serve_socket: true,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start tokio")?;
    rt.block_on(async move {
        let config = AppConfig { port: args.port, ..AppConfig::default() };
        let running = qanat_app::serve(HostBackend(host.clone()), config)
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
        let url = running.start_url();
        println!("qanat app: open {url} (works once, for 2 minutes)");
        println!("qanat app: the profile is in {}; Ctrl-C stops the app and its client", home.display());
        let _ = std::io::stdout().flush();
        let mut opener = if args.browser {
            match open_browser(&url) {
                Ok(f) => Some(f),
                Err(e) => {
                    println!("qanat app: the browser could not be opened ({e:#}); open the link above");
                    None
                }
            }
        } else {
            None
        };
        let signals = crate::client_cmd::Signals::new()?;
        tokio::pin!(signals);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = signals.as_mut().recv() => break,
                _ = tick.tick() => {
                    if opener.is_some() && running.start_link_spent() {
                        opener = None;
                    }
                }
            }
        }
        drop(opener);
        println!("qanat app: stopping…");
        let quit = host.host(HostRequest::Quit);
        if tokio::time::timeout(Duration::from_secs(15), quit).await.is_err() {
            println!("qanat app: the client did not stop within 15 s");
        }
        running.stop().await.context("the page's server failed")?;
        println!("qanat app: stopped");
        Ok(())
    })
}

/// The network: `HOME/network.toml`, or for a first run the file given, copied there.
fn network(home: &Path, given: Option<&Path>) -> Result<ClientNetwork> {
    let kept = home.join(NETWORK_FILE);
    let has_profile = home.join(HEADER_FILE).exists();
    match given {
        Some(file) if has_profile && kept.exists() => {
            let same = std::fs::read(file).ok() == std::fs::read(&kept).ok();
            if !same {
                bail!(
                    "{} already holds a profile on the network in {}: --network is for the first run \
                     only (leave it out)",
                    home.display(),
                    kept.display()
                );
            }
        }
        Some(file) => {
            let text = std::fs::read(file)
                .with_context(|| format!("cannot read the network file {}", file.display()))?;
            ClientNetwork::load(file).map_err(|e| anyhow::anyhow!("{e}"))?;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(home)
                .with_context(|| format!("cannot create {}", home.display()))?;
            write_atomically(&kept, &text, Access::OwnerOnly)?;
        }
        None if !kept.exists() => bail!(
            "no network in {}: give the network file for the first run (--network FILE)",
            home.display()
        ),
        None => {}
    }
    ClientNetwork::load(&kept).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A file holding the start link, opened by the desktop's browser; deleted when dropped.
pub(crate) struct Opener(PathBuf);

impl Drop for Opener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Opens the browser on `url` through a 0600 file that moves to it (no token on any command
/// line).
pub(crate) fn open_browser(url: &str) -> Result<Opener> {
    let dir = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let name = format!("qanat-open-{}.html", hex::encode(rand::random::<[u8; 8]>()));
    let path = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let opener = Opener(path.clone());
    write!(
        f,
        "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=\"0;url={url}\"><title>Qanat</title>"
    )?;
    f.sync_all()?;
    drop(f);
    let program = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    let mut child = std::process::Command::new(program)
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("{program} is missing"))?;
    // Reaped when it exits (it hands the file to the browser and returns).
    std::thread::spawn(move || child.wait());
    Ok(opener)
}
