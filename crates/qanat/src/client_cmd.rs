//! The client commands on a profile directory (`--home`): `init`, `run`, `wipe`, `passphrase`,
//! the commands that are one [`Request`] each (`invite`, `accept`, `contacts`, `send`, `inbox`,
//! `history`, `status`, `network`, `traffic`, `group …`), and `verify` (one or two).
//!
//! A request goes to the running client (`qanat run`) over `HOME/control.sock` when one answers
//! there. Otherwise the command opens the profile itself (which needs the passphrase, and fails
//! while another process holds the profile) and carries the request out offline with
//! `running = false`: what needs the network (`invite`, `accept`) then fails with the engine's
//! message, and a `send` waits in the profile until the client runs.
//!
//! The passphrase comes from `QANAT_PASSPHRASE`, else from a prompt on the terminal without
//! echo (a new one from `QANAT_NEW_PASSPHRASE`, a duress one from `QANAT_DURESS_PASSPHRASE`,
//! else asked twice). Every command that opens the profile does so through
//! [`qanat_client::open::open_profile`]: a duress passphrase destroys the profile and the command
//! goes on with a fresh, empty one, saying nothing different. Nothing here logs identifiers, keys
//! or addresses.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, anyhow, bail};
use qanat_client::control::{self, Request, Response, SOCKET_FILE};

use crate::client_print::{bytes, print_response};
use qanat_client::engine::{Engine, EngineConfig, LANGUAGES};
use qanat_client::open::{OpenError, open_profile as open_or_duress, traffic_code};
use qanat_client::runtime::{self, RuntimeConfig};
use qanat_client::store::{
    self, DATABASE_FILE, DuressSettings, HEADER_FILE, PASSPHRASE_ENV, Passphrase, Profile, StoreError,
};
use qanat_mixnet::sending::TrafficProfile;
use qanat_network::file::{Access, write_atomically};
use qanat_node::config::ClientNetwork;
use qanat_packet::NodeId;
use rand::SeedableRng as _;
use rand::rngs::{StdRng, SysRng};
use zeroize::Zeroizing;

/// The network file's name in the profile directory.
pub(crate) const NETWORK_FILE: &str = "network.toml";

/// The environment variable `qanat passphrase` reads the new passphrase from.
const NEW_PASSPHRASE_ENV: &str = "QANAT_NEW_PASSPHRASE";
/// The environment variable `qanat passphrase --duress` (and `--keep-duress`) reads the duress
/// passphrase from.
const DURESS_PASSPHRASE_ENV: &str = "QANAT_DURESS_PASSPHRASE";

/// How long a command waits for the running client's answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The profile directory: `--home`, else `$QANAT_HOME`, else `~/.qanat`.
pub(crate) fn home_dir(arg: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(h) = arg {
        return Ok(h);
    }
    if let Some(h) = std::env::var_os("QANAT_HOME").filter(|h| !h.is_empty()) {
        return Ok(h.into());
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("no profile directory: give --home DIR or set QANAT_HOME")?;
    Ok(PathBuf::from(home).join(".qanat"))
}

/// How responses are printed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    /// The raw JSON of each response, one per line.
    pub(crate) json: bool,
}

// ---------------------------------------------------------------------------------------------
// Passphrase and profile

fn passphrase(confirm: bool) -> Result<Passphrase> {
    if let Some(p) = Passphrase::from_env() {
        return Ok(p);
    }
    let first = prompt("Passphrase: ", false)?;
    if confirm {
        if first.is_empty() {
            bail!("the passphrase is empty; nothing was created");
        }
        let second = prompt("Passphrase (again): ", false)?;
        if *first != *second {
            bail!("the two passphrases differ; nothing was created");
        }
    }
    Ok(Passphrase::new(first.as_str()))
}

/// A new passphrase (`label`): from the environment variable `env`, else asked twice at the
/// terminal. Never empty.
fn new_passphrase(env: &str, label: &str) -> Result<Passphrase> {
    if let Some(value) = std::env::var_os(env) {
        let bytes = std::os::unix::ffi::OsStringExt::into_vec(value);
        if bytes.is_empty() {
            bail!("{env} is empty; nothing was changed");
        }
        return Ok(Passphrase::from_bytes(bytes));
    }
    let first = prompt(&format!("{label}: "), false)?;
    if first.is_empty() {
        bail!("the {} is empty; nothing was changed", label.to_lowercase());
    }
    let second = prompt(&format!("{label} (again): "), false)?;
    if *first != *second {
        bail!("the two entries differ; nothing was changed");
    }
    Ok(Passphrase::new(first.as_str()))
}

/// Reads a line from the terminal (with echo off unless `echo`).
fn prompt(text: &str, echo: bool) -> Result<Zeroizing<String>> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| anyhow!("no passphrase: set {PASSPHRASE_ENV} or run the command in a terminal"))?;
    let saved = tcgetattr(&tty).context("cannot read the terminal's settings")?;
    let mut quiet = saved.clone();
    if !echo {
        quiet.local_modes.remove(LocalModes::ECHO);
    }
    tcsetattr(&tty, OptionalActions::Flush, &quiet).context("cannot turn the terminal's echo off")?;
    let _ = write!(tty, "{text}");
    let _ = tty.flush();
    let mut bytes = Zeroizing::new(Vec::new());
    let mut byte = [0u8; 1];
    let read = loop {
        match (&tty).read(&mut byte) {
            Ok(0) => break Ok(()),
            Ok(_) if byte[0] == b'\n' => break Ok(()),
            Ok(_) => bytes.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    let _ = tcsetattr(&tty, OptionalActions::Now, &saved);
    if !echo {
        let _ = writeln!(tty);
    }
    read.context("cannot read the passphrase")?;
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    let text = std::str::from_utf8(&bytes).context("the passphrase is not UTF-8")?;
    Ok(Zeroizing::new(text.to_owned()))
}

fn has_profile(home: &Path) -> bool {
    home.join(HEADER_FILE).exists() || home.join(DATABASE_FILE).exists()
}

fn require_profile(home: &Path) -> Result<()> {
    if !has_profile(home) {
        bail!(
            "no profile in {}: create one with `qanat init --home {} --network FILE`",
            home.display(),
            home.display()
        );
    }
    Ok(())
}

/// Opens the profile in `home` with the passphrase (a duress passphrase: wiped, and a fresh
/// profile in its place, see the module documentation).
fn open_profile(home: &Path) -> Result<Profile> {
    require_profile(home)?;
    let pass = passphrase(false)?;
    let gateways = network_gateways(home);
    match open_or_duress(home, &pass, &gateways, &mut os_rng()?) {
        Ok(opened) => Ok(opened.profile),
        Err(OpenError::Store(e)) => Err(store_error(e)),
        Err(e) => Err(anyhow!("{e}")),
    }
}

/// The gateways of `HOME/network.toml`, in order (none if the file cannot be read).
fn network_gateways(home: &Path) -> Vec<NodeId> {
    ClientNetwork::load(&home.join(NETWORK_FILE))
        .map(|n| n.gateways.iter().map(|g| g.identity.node_id()).collect())
        .unwrap_or_default()
}

fn store_error(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::InUse { dir } => anyhow!(
            "the profile in {} is in use by another process (is `qanat run` starting, or another \
             command running?); try again, or stop that process",
            dir.display()
        ),
        e => anyhow!("{e}"),
    }
}

fn os_rng() -> Result<StdRng> {
    StdRng::try_from_rng(&mut SysRng)
        .map_err(|_| anyhow!("the operating system's random number generator failed"))
}

/// Reads the network file at `path` (its text, to copy, and its contents).
fn load_network(path: &Path) -> Result<(Vec<u8>, ClientNetwork)> {
    let text =
        std::fs::read(path).with_context(|| format!("cannot read the network file {}", path.display()))?;
    let network = ClientNetwork::load(path).map_err(|e| anyhow!("{e}"))?;
    Ok((text, network))
}

// ---------------------------------------------------------------------------------------------
// init

/// `qanat init`: creates the profile in `home` for the network in `network_file`.
pub(crate) fn init(
    home: &Path,
    network_file: &Path,
    gateway: Option<&str>,
    traffic: &str,
    out: Output,
) -> Result<()> {
    let traffic = TrafficProfile::from_name(traffic)
        .with_context(|| format!("unknown traffic profile {traffic:?}: use standard or metered"))?;
    let (text, network) = load_network(network_file)?;
    let names = || network.gateways.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(", ");
    let chosen = match gateway {
        None => network.gateways.first(),
        Some(name) => network.gateways.iter().find(|g| g.name == name),
    };
    let Some(chosen) = chosen else {
        bail!(
            "no gateway named {:?} in {}; it lists: {}",
            gateway.unwrap_or_default(),
            network_file.display(),
            names()
        );
    };
    if has_profile(home) {
        bail!(
            "{} already holds a profile; nothing was changed (choose another --home, or remove that \
             directory to start over)",
            home.display()
        );
    }
    let pass = passphrase(true)?;
    let mut profile = Profile::create(home, &pass).map_err(store_error)?;
    let mut rng = os_rng()?;
    let setup = Engine::init(&mut profile, chosen.identity.node_id(), traffic, &mut rng)
        .map_err(|e| anyhow!("{e}"))
        .and_then(|()| {
            // Which network and gateway the user chose is theirs alone, as the profile is.
            write_atomically(&home.join(NETWORK_FILE), &text, Access::OwnerOnly).map_err(Into::into)
        });
    if let Err(e) = setup {
        // Undo: the directory held no profile before.
        drop(profile);
        for f in [
            HEADER_FILE.to_owned(),
            DATABASE_FILE.to_owned(),
            format!("{DATABASE_FILE}-wal"),
            format!("{DATABASE_FILE}-shm"),
        ] {
            let _ = std::fs::remove_file(home.join(f));
        }
        return Err(e);
    }
    drop(profile);
    if out.json {
        let v = serde_json::json!({
            "kind": "initialized",
            "home": home,
            "gateway": chosen.name,
            "traffic": traffic.name(),
        });
        println!("{v}");
    } else {
        println!(
            "Created the profile in {} (gateway {}, traffic {}).",
            home.display(),
            chosen.name,
            traffic.name()
        );
        println!(
            "Its cost in bytes per day is shown when the client first reaches the network's directory \
             (`qanat run`, then `qanat status`)."
        );
        println!("Next: `qanat run --home {}` keeps the client connected.", home.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// wipe, passphrase

/// Fails, changing nothing, while a `qanat run` answers on `home`'s control socket.
fn refuse_while_running(home: &Path, what: &str) -> Result<()> {
    if Control::connect(home).is_some() {
        bail!(
            "a `qanat run` holds the profile in {}: stop it (Ctrl-C), then {what} again; nothing was changed",
            home.display()
        );
    }
    Ok(())
}

/// `qanat wipe`: destroys the profile in `home` ([`store::wipe`]), after the user typed `wipe`
/// unless `yes`.
pub(crate) fn wipe(home: &Path, yes: bool, out: Output) -> Result<()> {
    require_profile(home)?;
    refuse_while_running(home, "wipe")?;
    if !yes {
        let typed = prompt(
            &format!(
                "This destroys the profile in {}: contacts, groups and messages, for good.\nType wipe to go on: ",
                home.display()
            ),
            true,
        )
        .map_err(|_| anyhow!("no terminal to confirm on: pass --yes to wipe without asking"))?;
        if typed.trim() != "wipe" {
            bail!("not wiped: you did not type wipe; nothing was changed");
        }
    }
    store::wipe(home).map_err(|e| match e {
        StoreError::InUse { dir } => anyhow!(
            "the profile in {} is in use (by `qanat run`, or another command): stop it, then wipe \
             again; nothing was changed",
            dir.display()
        ),
        e => anyhow!("{e}"),
    })?;
    if out.json {
        println!("{}", serde_json::json!({ "kind": "wiped", "home": home }));
    } else {
        println!(
            "The profile in {} is destroyed: its header and database were overwritten with random \
             bytes and deleted (network.toml is kept). Copies the storage or backups keep are not \
             reached: see docs/STORAGE.md \"Wipe\".",
            home.display()
        );
    }
    Ok(())
}

/// What `qanat passphrase` changes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PassphraseChange {
    /// A new passphrase; the duress passphrase given again if `keep_duress`.
    New { keep_duress: bool },
    /// Sets the duress passphrase.
    SetDuress,
    /// Removes the duress passphrase.
    RemoveDuress,
}

/// `qanat passphrase`: changes the passphrase, or sets or removes the duress passphrase.
pub(crate) fn change_passphrase(home: &Path, what: PassphraseChange, out: Output) -> Result<()> {
    refuse_while_running(home, "change the passphrase")?;
    let mut profile = open_profile(home)?;
    let refused = |e: StoreError| match e {
        StoreError::DuressIsReal => {
            anyhow!("the duress passphrase must differ from the passphrase; nothing was changed")
        }
        e => anyhow!("{e}"),
    };
    let (kind, text) = match what {
        PassphraseChange::New { keep_duress } => {
            let new = new_passphrase(NEW_PASSPHRASE_ENV, "New passphrase")?;
            let duress = if keep_duress {
                Some((
                    new_passphrase(DURESS_PASSPHRASE_ENV, "Duress passphrase")?,
                    duress_settings(home, &profile)?,
                ))
            } else {
                None
            };
            let params = profile.kdf_params();
            profile
                .change_passphrase(&new, params, duress.as_ref().map(|(d, s)| (d, *s)))
                .map_err(refused)?;
            let text = if keep_duress {
                "The passphrase is changed; the duress passphrase still works."
            } else {
                "The passphrase is changed. A duress passphrase, if one was set, no longer works \
                 (set one with `qanat passphrase --duress`)."
            };
            ("passphrase_changed", text)
        }
        PassphraseChange::SetDuress => {
            let duress = new_passphrase(DURESS_PASSPHRASE_ENV, "Duress passphrase")?;
            let settings = duress_settings(home, &profile)?;
            profile.set_duress(&duress, settings).map_err(refused)?;
            (
                "duress_set",
                "The duress passphrase is set (it replaces any earlier one). Typed instead of the \
                 passphrase, it destroys this profile and opens an empty one with the same gateway \
                 and traffic.",
            )
        }
        PassphraseChange::RemoveDuress => {
            profile.remove_duress().map_err(refused)?;
            ("duress_removed", "No duress passphrase opens this profile now.")
        }
    };
    drop(profile);
    if out.json {
        println!("{}", serde_json::json!({ "kind": kind }));
    } else {
        println!("{text}");
    }
    Ok(())
}

/// The settings a duress slot set now keeps: this profile's gateway (its position in
/// `HOME/network.toml`), traffic profile, and the app's language and lock timeout.
fn duress_settings(home: &Path, profile: &Profile) -> Result<DuressSettings> {
    let gateway = Engine::gateway_of(profile).map_err(|e| anyhow!("{e}"))?;
    let traffic = Engine::traffic_of(profile).map_err(|e| anyhow!("{e}"))?;
    let ui = Engine::ui_settings_of(profile).map_err(|e| anyhow!("{e}"))?;
    let gateway_index = network_gateways(home).iter().position(|g| *g == gateway).unwrap_or(0);
    let language = ui.language.and_then(|l| LANGUAGES.iter().position(|x| *x == l)).unwrap_or(0);
    Ok(DuressSettings {
        gateway_index: u16::try_from(gateway_index).unwrap_or(0),
        traffic: traffic_code(traffic),
        language: u8::try_from(language).unwrap_or(0),
        lock_timeout_secs: ui.lock_timeout_secs,
    })
}

// ---------------------------------------------------------------------------------------------
// run

/// `qanat run`: the long-running client, until SIGINT or SIGTERM.
pub(crate) fn run(
    home: &Path,
    fetch_interval: Duration,
    decision_window: Option<Duration>,
    out: Output,
) -> Result<()> {
    require_profile(home)?;
    let network_path = home.join(NETWORK_FILE);
    let (_, network) = load_network(&network_path)?;
    let profile = open_profile(home)?;
    let gw = Engine::gateway_of(&profile).map_err(|e| anyhow!("{e}"))?;
    let gateway =
        network.gateways.iter().find(|g| g.identity.node_id() == gw).cloned().with_context(|| {
            format!(
                "this profile's gateway is not listed in {} (was the file replaced?)",
                network_path.display()
            )
        })?;
    let mut mls = EngineConfig::default().mls;
    if let Some(w) = decision_window {
        mls.decision_window = w;
    }
    let engine = Engine::open(
        profile,
        EngineConfig {
            mls,
            fetch_interval: if fetch_interval.is_zero() {
                EngineConfig::default().fetch_interval
            } else {
                fetch_interval
            },
            ..EngineConfig::default()
        },
        SystemTime::now(),
    )
    .map_err(|e| anyhow!("{e}"))?;
    let traffic = engine.traffic();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start tokio")?;
    let socket = home.join(SOCKET_FILE);
    rt.block_on(async move {
        let mut handle =
            runtime::start(engine, RuntimeConfig { network, gateway: gateway.clone(), fetch_interval })
                .map_err(|e| anyhow!("{e}"))?;
        if let Err(e) = handle.serve_socket(&socket) {
            let _ = handle.shutdown().await;
            bail!("{e}");
        }
        let mut events = handle.subscribe();
        let say = |line: String| {
            if out.json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        };
        say(format!(
            "qanat: the client runs (gateway {}, traffic {}); commands reach it through {}; \
             Ctrl-C stops it",
            gateway.name,
            traffic.name(),
            socket.display()
        ));
        say("qanat: waiting for the network's directory…".into());
        let signals = Signals::new()?;
        tokio::pin!(signals);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut cost_shown = false;
        let mut failed = false;
        loop {
            tokio::select! {
                () = signals.as_mut().recv() => break,
                ev = events.recv() => match ev {
                    Ok(ev) => {
                        print_response(&Response::event(&ev), out);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        say(format!("qanat: {n} events not shown (output too slow)"));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => { failed = true; break }
                },
                _ = tick.tick() => {
                    if handle.is_finished() {
                        failed = true;
                        break;
                    }
                    if !cost_shown {
                        let status = handle.call(Request::Status).await;
                        if let Response::Status { network: true, idle_bytes_per_day, .. } = &status {
                            cost_shown = true;
                            if out.json {
                                print_response(&status, out);
                            } else {
                                let cost = idle_bytes_per_day
                                    .map(|[up, down]| format!(
                                        "; traffic {} costs about {} up and {} down per day while idle",
                                        traffic.name(), bytes(up), bytes(down)
                                    ))
                                    .unwrap_or_default();
                                say(format!("qanat: the network's directory arrived{cost}"));
                            }
                        }
                    }
                }
            }
        }
        if !failed {
            say("qanat: stopping…".into());
        }
        match tokio::time::timeout(Duration::from_secs(15), handle.shutdown()).await {
            Ok(Ok(profile)) => {
                drop(profile);
                say("qanat: stopped".into());
                Ok(())
            }
            Ok(Err(e)) => Err(anyhow!("the client stopped: {e}")),
            Err(_) => Err(anyhow!("the client did not stop within 15 s")),
        }
    })
}

/// SIGINT and SIGTERM.
pub(crate) struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn new() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        })
    }

    pub(crate) async fn recv(self: std::pin::Pin<&mut Self>) {
        let this = self.get_mut();
        tokio::select! {
            _ = this.term.recv() => {}
            _ = this.int.recv() => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests: to the running client, or offline on the profile

/// A connection to the running client's control socket.
struct Control {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Control {
    /// The running client of `home`, if one answers.
    fn connect(home: &Path) -> Option<Self> {
        let stream = UnixStream::connect(home.join(SOCKET_FILE)).ok()?;
        stream.set_read_timeout(Some(CALL_TIMEOUT)).ok()?;
        let writer = stream.try_clone().ok()?;
        Some(Self { reader: BufReader::new(stream), writer })
    }

    fn send(&mut self, req: &Request) -> Result<()> {
        let mut line = serde_json::to_vec(req).context("cannot encode the request")?;
        line.push(b'\n');
        self.writer.write_all(&line).context("the running client closed the connection")
    }

    /// The next response (`None` when the client closed the connection).
    fn next(&mut self) -> Result<Option<Response>> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).context("no answer from the running client")?;
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line).map(Some).context("the running client's answer is unreadable")
    }

    fn call(&mut self, req: &Request) -> Result<Response> {
        self.send(req)?;
        self.next()?.context("the running client closed the connection without answering")
    }
}

/// Where requests go.
enum Session {
    /// The running client.
    Remote(Control),
    /// This process, on the profile.
    Local(Box<Offline>),
}

/// The engine opened in this process.
struct Offline {
    engine: Engine,
    rng: StdRng,
}

impl Session {
    /// The running client if one answers in `home`, else the profile opened here.
    fn open(home: &Path) -> Result<Self> {
        if let Some(c) = Control::connect(home) {
            return Ok(Self::Remote(c));
        }
        let profile = open_profile(home)?;
        let engine =
            Engine::open(profile, EngineConfig::default(), SystemTime::now()).map_err(|e| anyhow!("{e}"))?;
        Ok(Self::Local(Box::new(Offline { engine, rng: os_rng()? })))
    }

    fn running(&self) -> bool {
        matches!(self, Self::Remote(_))
    }

    fn call(&mut self, req: Request) -> Result<Response> {
        match self {
            Self::Remote(c) => c.call(&req),
            Self::Local(o) => Ok(control::execute(&mut o.engine, req, false, SystemTime::now(), &mut o.rng)),
        }
    }
}

/// One request, printed; an error answer is an error (non-zero exit).
pub(crate) fn request(home: &Path, req: Request, out: Output) -> Result<()> {
    let mut s = Session::open(home)?;
    let running = s.running();
    let ok_text = match &req {
        Request::Accept { name, .. } => format!(
            "accepted; {name} becomes ready when the inviter's client answers (watch `qanat contacts`)"
        ),
        Request::GroupCreate { name } => format!("created group {name}"),
        Request::GroupAdd { group, contact } => format!("adding {contact} to {group}"),
        Request::GroupRemove { group, member } => format!("removing {member} from {group}"),
        Request::GroupLeave { group } => format!("leaving {group}"),
        Request::GroupDecline { .. } => "declined".into(),
        _ => "done".into(),
    };
    let resp = s.call(req)?;
    if !out.json
        && let Response::Sent { id } = &resp
    {
        let when = if running { "" } else { "; it leaves when the client runs (`qanat run`)" };
        println!("queued message {id}{when}");
        return Ok(());
    }
    if !out.json && resp == Response::Ok {
        println!("{ok_text}");
        return Ok(());
    }
    finish(&resp, out)
}

/// `qanat send NAME TEXT --wait`: sends, then waits until the message is delivered.
pub(crate) fn send_and_wait(
    home: &Path,
    to: String,
    text: String,
    timeout: Duration,
    out: Output,
) -> Result<()> {
    let Some(mut c) = Control::connect(home) else {
        bail!("--wait needs the running client (start `qanat run`); nothing was sent");
    };
    let resp = c.call(&Request::Send { to, text })?;
    let Response::Sent { id } = &resp else { return finish(&resp, out) };
    if out.json {
        print_response(&resp, out);
    } else {
        println!("queued message {id}");
    }
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let resp = c.call(&Request::Delivery { id: id.clone() })?;
        let Response::Delivery { state } = &resp else { return finish(&resp, out) };
        if *state != last {
            last.clone_from(state);
            if out.json {
                print_response(&resp, out);
            } else if state == "delivered" {
                println!("delivered after {} ms", start.elapsed().as_millis());
            } else {
                println!("{state}");
            }
        }
        if state == "delivered" {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            bail!(
                "not delivered after {} s (state: {state}); the client keeps resending it",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// What `qanat verify` does with the safety code.
pub(crate) enum Mark {
    /// Prints it, and whether it is marked verified.
    Show,
    /// Marks it verified: the code the user compared.
    Verified(String),
    /// Takes the mark away.
    Unverified,
}

/// `qanat verify NAME [--member M] [--mark CODE | --unmark]`.
pub(crate) fn verify(
    home: &Path,
    name: String,
    member: Option<String>,
    mark: Mark,
    out: Output,
) -> Result<()> {
    let mut s = Session::open(home)?;
    let code = match mark {
        Mark::Show => {
            let resp = s.call(Request::SafetyCode { name: name.clone(), member: member.clone() })?;
            if out.json {
                return finish(&resp, out);
            }
            let Response::SafetyCode { code, verified, .. } = &resp else { return finish(&resp, out) };
            let whose = member.as_deref().map_or(name.clone(), |m| format!("{m} in {name}"));
            println!("Safety code with {whose}:");
            println!();
            for row in safety_rows(code) {
                println!("    {row}");
            }
            println!();
            if *verified {
                println!("verified: you marked this code as compared.");
            } else {
                let member = member.as_deref().map(|m| format!(" --member {m:?}")).unwrap_or_default();
                println!(
                    "not verified. Compare it with {whose} in person or on a call you trust (not by a \
                     message); if it is the same, run `qanat verify {name:?}{member} --mark CODE` with \
                     the code you compared."
                );
            }
            return Ok(());
        }
        Mark::Verified(code) => Some(code),
        Mark::Unverified => None,
    };
    let verified = code.is_some();
    let code = match code {
        Some(c) => c,
        // Taking a mark away names the current code too.
        None => match s.call(Request::SafetyCode { name: name.clone(), member: member.clone() })? {
            Response::SafetyCode { code, .. } => code,
            resp => return finish(&resp, out),
        },
    };
    let resp = s.call(Request::SetVerified { name, member, code, verified })?;
    if !out.json && resp == Response::Ok {
        println!("{}", if verified { "marked verified" } else { "no longer marked verified" });
        return Ok(());
    }
    finish(&resp, out)
}

/// A safety code's 60 digits as 3 rows of 4 groups of 5 (other text as it is).
pub(crate) fn safety_rows(code: &str) -> Vec<String> {
    match qanat_client::engine::safety::SafetyCode::parse(code) {
        Some(c) => c.rows(),
        None => vec![code.to_owned()],
    }
}

/// `qanat inbox --follow`: the unread messages, then every event as it happens.
pub(crate) fn follow(home: &Path, out: Output) -> Result<()> {
    let Some(mut c) = Control::connect(home) else {
        bail!("--follow needs the running client (start `qanat run`)");
    };
    let resp = c.call(&Request::Inbox)?;
    finish(&resp, out)?;
    // Events may be far apart: no read timeout.
    c.reader.get_ref().set_read_timeout(None).context("control socket")?;
    c.send(&Request::Watch)?;
    while let Some(resp) = c.next()? {
        finish(&resp, out)?;
    }
    if !out.json {
        println!("the client stopped");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Files

/// What `qanat send --file` was asked.
pub(crate) struct FileSend<'a> {
    pub(crate) to: String,
    pub(crate) path: &'a Path,
    pub(crate) caption: String,
    /// Fast: `Some(yes)`, where `yes` skips the question after the warning.
    pub(crate) fast: Option<bool>,
    pub(crate) wait: Option<Duration>,
}

/// The plain warning before a fast file (docs/ATTACHMENTS.md §3.10).
pub(crate) fn fast_warning(normal_secs: u64, fast_secs: u64, extra: u64) -> String {
    format!(
        "Faster: about {} instead of {}, and about {} more data. While it runs, anyone who \
         watches your connection can see that you are sending something large, and roughly how \
         large. Someone who watches the whole network can very likely tell which gateway \
         receives it, and if they also run that gateway, which of its users. Normal sending \
         hides all of this.",
        duration(fast_secs),
        duration(normal_secs),
        bytes(extra)
    )
}

/// `qanat send NAME --file PATH [CAPTION] [--fast [--yes]] [--wait]`: prints the estimate (and
/// for `--fast` the warning, then asks), sends, and with `--wait` shows the progress until every
/// recipient has the file.
pub(crate) fn send_file(home: &Path, req: FileSend<'_>, out: Output) -> Result<()> {
    let FileSend { to, path, caption, fast, wait } = req;
    let Some(mut c) = Control::connect(home) else {
        bail!("sending a file needs the running client (start `qanat run`); nothing was sent");
    };
    // The running client reads the file: give it the whole path.
    let path = std::fs::canonicalize(path).with_context(|| format!("cannot find {}", path.display()))?;
    let size = std::fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?.len();
    let est = c.call(&Request::Estimate { to: to.clone(), size })?;
    if let Response::Estimate { allowed: false, limit, .. } = &est {
        bail!("{} is {}; the largest file here is {}", path.display(), bytes(size), bytes(*limit));
    }
    if out.json {
        print_response(&est, out);
    } else if let Response::Estimate { hidden, recipients, .. } = &est {
        let who = if *recipients > 1 { format!("{recipients} recipients") } else { to.clone() };
        println!(
            "sending {} ({}) to {who}: about {} if {} online, up to {}. It goes in your normal              sending slots: nothing more shows on your connection, and it costs no extra data.",
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            bytes(size),
            duration(hidden.secs_low),
            if *recipients > 1 { "they are".to_owned() } else { format!("{to} is") },
            duration(hidden.secs_high),
        );
    }
    if let Some(yes) = fast {
        let Response::Estimate { hidden, fast: Some(f), .. } = &est else {
            bail!("faster sending is not offered on this network; nothing was sent");
        };
        eprintln!("{}", fast_warning(hidden.secs_low, f.secs_low, f.bytes_up));
        if !yes {
            eprint!("Send faster? [y/N] ");
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer).context("cannot read the answer")?;
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                bail!("nothing was sent");
            }
        }
    }
    let caption = (!caption.is_empty()).then_some(caption);
    let resp = c.call(&Request::SendFile {
        to,
        path: path.to_string_lossy().into_owned(),
        name: None,
        fast: fast.is_some(),
        caption,
    })?;
    let Response::Sent { id } = &resp else { return finish(&resp, out) };
    if out.json {
        print_response(&resp, out);
    } else {
        println!("file {id} offered; it goes as each recipient accepts");
    }
    let Some(timeout) = wait else { return Ok(()) };
    let start = Instant::now();
    let mut bar = Progress::new(out);
    loop {
        let resp = c.call(&Request::Transfers { name: None })?;
        let Response::Transfers { list } = &resp else { return finish(&resp, out) };
        let Some(f) = list.iter().find(|f| f.transfer == *id) else { bail!("the file is gone") };
        bar.show(f);
        match f.state.as_str() {
            "sent" => {
                bar.done();
                if !out.json {
                    println!("delivered after {}", duration(start.elapsed().as_secs()));
                }
                return Ok(());
            }
            "failed" | "declined" | "cancelled" => {
                bar.done();
                bail!("the file was not delivered ({})", f.state);
            }
            _ => {}
        }
        if start.elapsed() >= timeout {
            bar.done();
            bail!("not delivered after {} s; the client goes on sending it", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `qanat files [--of NAME] [--follow]`.
pub(crate) fn files(home: &Path, of: Option<String>, follow: bool, out: Output) -> Result<()> {
    let mut s = Session::open(home)?;
    let resp = s.call(Request::Transfers { name: of.clone() })?;
    finish(&resp, out)?;
    if !follow {
        return Ok(());
    }
    if !s.running() {
        bail!("--follow needs the running client (start `qanat run`)");
    }
    let mut bars: std::collections::BTreeMap<String, Progress> = std::collections::BTreeMap::new();
    loop {
        std::thread::sleep(Duration::from_millis(1000));
        let resp = s.call(Request::Transfers { name: of.clone() })?;
        let Response::Transfers { list } = &resp else { return finish(&resp, out) };
        for f in list.iter().filter(|f| matches!(f.state.as_str(), "sending" | "receiving")) {
            bars.entry(f.transfer.clone()).or_insert_with(|| Progress::lines(out)).show(f);
        }
    }
}

/// `qanat save ID PATH [--force]`.
pub(crate) fn save_file(home: &Path, id: String, path: &Path, force: bool, out: Output) -> Result<()> {
    let path = absolute(path)?;
    let mut s = Session::open(home)?;
    let resp = s.call(Request::FileSave { id, path: path.to_string_lossy().into_owned(), force })?;
    if !out.json && resp == Response::Ok {
        println!(
            "saved to {} (readable only by you). This copy is outside Qanat's encrypted profile:              delete it when you no longer need it.",
            path.display()
        );
        return Ok(());
    }
    finish(&resp, out)
}

/// `qanat open ID`: a copy in a private temporary directory, opened with `xdg-open`.
pub(crate) fn open_file(home: &Path, id: String, out: Output) -> Result<()> {
    let mut s = Session::open(home)?;
    let resp = s.call(Request::Transfers { name: None })?;
    let Response::Transfers { list } = &resp else { return finish(&resp, out) };
    let f = list.iter().find(|f| f.transfer == id).context("no such file (`qanat files` lists them)")?;
    let dir = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = dir.join("qanat-open");
    std::fs::create_dir_all(&dir).context("cannot make a private directory")?;
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let path = dir.join(safe_file_name(&f.name));
    let resp = s.call(Request::FileSave { id, path: path.to_string_lossy().into_owned(), force: true })?;
    if resp != Response::Ok {
        return finish(&resp, out);
    }
    println!("{} (a copy outside the encrypted profile; delete it when done)", path.display());
    match std::process::Command::new("xdg-open").arg(&path).spawn() {
        Ok(_) => Ok(()),
        Err(_) => {
            println!("no desktop viewer found (xdg-open): open the copy yourself");
            Ok(())
        }
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    Ok(std::env::current_dir().context("cannot read the current directory")?.join(path))
}

/// A name a file may have here: no path, no control or direction characters, no leading dot.
pub(crate) fn safe_file_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| {
            !c.is_control()
                && !matches!(c, '/' | '\\' | '\u{200e}' | '\u{200f}' | '\u{061c}')
                && !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.').trim().to_owned();
    if cleaned.is_empty() { "file".into() } else { cleaned }
}

/// `N s`, `N min` or `N h M min`.
pub(crate) fn duration(secs: u64) -> String {
    match secs {
        s if s < 90 => format!("{s} s"),
        s if s < 5400 => format!("{} min", s.div_ceil(60)),
        s => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// A file's progress: a bar redrawn in place on a terminal, else a line every 10%.
struct Progress {
    out: Output,
    tty: bool,
    last_tenth: Option<u64>,
    drawn: bool,
}

impl Progress {
    fn new(out: Output) -> Self {
        use std::io::IsTerminal as _;
        Self { out, tty: std::io::stdout().is_terminal() && !out.json, last_tenth: None, drawn: false }
    }

    fn lines(out: Output) -> Self {
        Self { tty: false, ..Self::new(out) }
    }

    fn show(&mut self, f: &control::FileOut) {
        if self.out.json {
            if let Ok(line) = serde_json::to_string(f) {
                println!("{line}");
            }
            return;
        }
        let pct = (f.done_bytes * 100).checked_div(f.total_bytes).unwrap_or(100).min(100);
        let left = f.eta_secs.map(|s| format!("  ~{} left", duration(s))).unwrap_or_default();
        let speed = format!("{}/s", bytes(f.rate_bps));
        let text = format!("{pct:>3}%  {}/{}  {speed}{left}", bytes(f.done_bytes), bytes(f.total_bytes));
        if self.tty {
            let filled = (pct / 5) as usize;
            print!("\r[{}{}] {text}   ", "#".repeat(filled), ".".repeat(20 - filled));
            let _ = std::io::stdout().flush();
            self.drawn = true;
        } else if self.last_tenth != Some(pct / 10) {
            self.last_tenth = Some(pct / 10);
            println!("{} {}: {text}", f.name, f.state);
        }
    }

    fn done(&mut self) {
        if self.drawn {
            println!();
            self.drawn = false;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Output

fn finish(resp: &Response, out: Output) -> Result<()> {
    print_response(resp, out);
    match resp {
        Response::Error { message, .. } => Err(anyhow!("{message}")),
        _ => Ok(()),
    }
}
