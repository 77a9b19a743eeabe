//! `qanat`: the one binary. Thin glue: parse arguments, call the libraries.
#![forbid(unsafe_code)]

mod app_cmd;
mod client_cmd;
mod client_print;
mod demo;
mod devnet;
mod eval;
mod node_cmd;
mod packet_demo;
mod testbed;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use qanat_client::control::Request;
use qanat_packet::Scheme;
use qanat_pki::FileLimits;

#[derive(Parser)]
#[command(name = "qanat", version, about = "Qanat: messaging over a Loopix-style mix network")]
struct Cli {
    /// Client commands: print each answer as one line of JSON (as the control socket carries it).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// The profile directory of the client commands.
#[derive(Args)]
struct Home {
    /// The profile directory [default: $QANAT_HOME, else ~/.qanat]. The passphrase comes from
    /// QANAT_PASSPHRASE, else from a prompt.
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
}

/// What `qanat files` does with one file.
#[derive(Subcommand)]
enum FilesAction {
    /// Accepts a file offered (larger than what is accepted without asking).
    Accept {
        /// The file's id.
        id: String,
    },
    /// Declines a file offered (its sender is told).
    Decline {
        /// The file's id.
        id: String,
    },
    /// Stops a file in progress, ours or one arriving (the other side is told).
    Cancel {
        /// The file's id.
        id: String,
    },
    /// Your own limits: the largest file you send or accept (never above the network's; 0:
    /// the network's), and the size accepted without asking (0: ask for every file).
    Limits {
        /// The largest file, in bytes.
        #[arg(long)]
        max: Option<u64>,
        /// Accepted without asking up to this many bytes.
        #[arg(long)]
        auto_accept: Option<u64>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Starts a whole network in this process (3 directory authorities, 3 layers of 2 mixes, 2
    /// gateways with SQLite mailboxes, in a temporary directory on 127.0.0.1) and two users who
    /// invite each other and exchange messages through it; prints each message with its latency
    /// and exits 0 only if all arrived.
    Demo(DemoArgs),
    /// Measures what Qanat hides: runs a simulated network of the real mix, gateway and client
    /// cores, lets a global passive adversary (every packet on every link) guess each message's
    /// sender, tests unobservability, and writes OUT/EVALUATION.md with plots in OUT/eval/.
    Eval {
        /// The report's directory.
        #[arg(long, default_value = "docs")]
        out: PathBuf,
        /// A small population and short runs (about a minute), not the reference figures.
        #[arg(long)]
        quick: bool,
        /// The seed (each run of the report adds its own offset).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Instead: run one setting (the default one, changed by the options below) and print
        /// its figures.
        #[arg(long)]
        setting: bool,
        /// With --setting: clients (all writing).
        #[arg(long)]
        clients: Option<u32>,
        /// With --setting: mean delay per hop in milliseconds (0: mixes forward at once).
        #[arg(long)]
        mean_delay_ms: Option<u64>,
        /// With --setting: each mix's loop rate lambda_M per second (0: none).
        #[arg(long)]
        lambda_m: Option<f64>,
        /// With --setting: client payload rate lambda_P per second.
        #[arg(long)]
        lambda_p: Option<f64>,
        /// With --setting: client loop rate lambda_L per second.
        #[arg(long)]
        lambda_l: Option<f64>,
        /// With --setting: client drop rate lambda_D per second.
        #[arg(long)]
        lambda_d: Option<f64>,
        /// With --setting: every client on the metered profile.
        #[arg(long)]
        metered: bool,
        /// With --setting: messages per second each client writes.
        #[arg(long)]
        message_rate: Option<f64>,
        /// With --setting: clients send only real packets.
        #[arg(long)]
        no_client_cover: bool,
        /// With --setting: one layer of one mix (every route's only mix is honest).
        #[arg(long)]
        one_mix: bool,
        /// With --setting: recipients wait an exponential delay of this mean (ms) before
        /// queueing each acknowledgement.
        #[arg(long)]
        ack_delay_ms: Option<u64>,
        /// Instead: what a fast file shows an observer of the sender's link (a table; see
        /// docs/EVALUATION.md "Fast files").
        #[arg(long)]
        fast_transfer: bool,
    },
    /// Runs and inspects one node (directory authority, mix or gateway).
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// A whole local network as separate processes on 127.0.0.1: 3 authorities, 3 layers of 2
    /// mixes, 2 gateways.
    Devnet {
        #[command(subcommand)]
        command: DevnetCommand,
    },
    /// A devnet in Linux network namespaces it creates (needs root), with the links users meet
    /// (2G, lossy 3G, satellite, flapping links, partitions between layers): runs the same
    /// chat over each and prints p50/p99 latency (see docs/TESTBED.md).
    Testbed {
        #[command(subcommand)]
        command: TestbedCommand,
    },
    /// Creates a client profile (encrypted under a passphrase) for the network a network file
    /// describes ('qanat devnet up' writes DIR/network.toml), with the gateway it will use.
    /// Refuses, changing nothing, if the directory already holds a profile.
    Init {
        #[command(flatten)]
        home: Home,
        /// The network file (copied into the profile directory as network.toml).
        #[arg(long, value_name = "FILE")]
        network: PathBuf,
        /// The gateway to use, by its name in the network file [default: the first listed].
        #[arg(long, value_name = "NAME")]
        gateway: Option<String>,
        /// Cover traffic: standard (the directory's rates) or metered (a tenth of them, for
        /// expensive links; messages wait ten times longer for a slot).
        #[arg(long, default_value = "standard", value_parser = ["standard", "metered"])]
        traffic: String,
    },
    /// Runs the client with its page, the Qanat app, on 127.0.0.1 until SIGINT or SIGTERM:
    /// prints the page's one-time start link and opens the browser on it. The passphrase is
    /// typed into the page (QANAT_PASSPHRASE must not be set); the other commands reach the
    /// client through HOME/control.sock while the profile is open.
    App {
        #[command(flatten)]
        home: Home,
        /// The network file (the first run only; later the profile's own HOME/network.toml).
        #[arg(long)]
        network: Option<PathBuf>,
        /// Prints the start link without opening a browser.
        #[arg(long)]
        no_browser: bool,
        /// The port on 127.0.0.1 [default: a free one].
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// As for 'qanat run'.
        #[arg(long, value_parser = clap::value_parser!(u64).range(50..=600_000))]
        fetch_interval_ms: Option<u64>,
        /// As for 'qanat run'.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
        decision_window_secs: Option<u64>,
    },
    /// Runs the client until SIGINT or SIGTERM: keeps the directory, the gateway connection and
    /// the cover traffic going, answers the other commands through HOME/control.sock, and
    /// prints events (messages with their latency) as they happen.
    Run {
        #[command(flatten)]
        home: Home,
        /// How often the mailboxes are fetched from the gateway, in milliseconds (default: once
        /// per mean payload slot of the traffic profile, 1/λ_P: each fetch costs about as much as
        /// a packet, so fetching more often than packets leave would dominate the traffic).
        #[arg(long, value_parser = clap::value_parser!(u64).range(50..=600_000))]
        fetch_interval_ms: Option<u64>,
        /// How long group members wait after a commit for concurrent ones before choosing, in
        /// seconds (default 120: twice a slow network's delivery delay, and more). Test
        /// networks with one member committing at a time use less.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
        decision_window_secs: Option<u64>,
    },
    /// Makes a one-time invitation for a new contact, to be called NAME here, and prints its
    /// link and QR code (needs the running client).
    Invite {
        #[command(flatten)]
        home: Home,
        /// What to call the contact.
        #[arg(long)]
        name: String,
    },
    /// Accepts an invitation link; the inviter is called NAME here (needs the running client).
    Accept {
        #[command(flatten)]
        home: Home,
        /// What to call the inviter.
        #[arg(long)]
        name: String,
        /// The invitation link (qanat://invite/...).
        link: String,
    },
    /// Lists contacts and groups, with their state and unread messages.
    Contacts {
        #[command(flatten)]
        home: Home,
    },
    /// Sends a text to a contact or group (queued in the profile if the client is not running),
    /// or a file or voice note with --file (needs the running client; the text is its caption).
    Send {
        #[command(flatten)]
        home: Home,
        /// The contact or group.
        name: String,
        /// The text (with --file: words that go with the file).
        #[arg(default_value = "")]
        text: String,
        /// Sends this file (it goes in the normal sending slots, so it shows nothing more on
        /// your connection; the estimate of its time is printed first).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// With --file: sends it faster, at a raised packet rate while it runs. This shows on
        /// your connection: the warning is printed and you are asked (or pass --yes).
        #[arg(long, requires = "file")]
        fast: bool,
        /// With --fast: do not ask.
        #[arg(long, requires = "fast")]
        yes: bool,
        /// Waits until the message is delivered (needs the running client).
        #[arg(long)]
        wait: bool,
        /// With --wait: how long to wait, in seconds.
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
    },
    /// Lists files and voice notes, sent and received, with their progress; or accepts,
    /// declines or stops one.
    Files {
        #[command(flatten)]
        home: Home,
        #[command(subcommand)]
        action: Option<FilesAction>,
        /// Only those of this contact or group.
        #[arg(long = "of", value_name = "NAME")]
        of: Option<String>,
        /// Keeps printing the files' progress until Ctrl-C.
        #[arg(long)]
        follow: bool,
    },
    /// Saves a file (received whole, or one of ours) outside the profile, readable only by you.
    /// Refuses to replace a file unless --force.
    Save {
        #[command(flatten)]
        home: Home,
        /// The file's id (`qanat files` lists them).
        id: String,
        /// Where.
        path: PathBuf,
        /// Replace a file already there.
        #[arg(long)]
        force: bool,
    },
    /// Opens a file with the desktop's viewer (a copy in a private temporary directory, outside
    /// the encrypted profile).
    Open {
        #[command(flatten)]
        home: Home,
        /// The file's id (`qanat files` lists them).
        id: String,
    },
    /// Prints unread messages (and marks them read).
    Inbox {
        #[command(flatten)]
        home: Home,
        /// Then keeps printing events as they happen, until Ctrl-C (needs the running client).
        #[arg(long)]
        follow: bool,
    },
    /// Prints a conversation's history.
    History {
        #[command(flatten)]
        home: Home,
        /// The contact or group.
        name: String,
        /// Only the newest N messages.
        #[arg(long, value_name = "N")]
        last: Option<u32>,
    },
    /// Shows the network in use: the directory, the link to the gateway, today's traffic, and
    /// what each traffic profile costs per day and how long its messages take.
    Network {
        #[command(flatten)]
        home: Home,
    },
    /// Switches the traffic profile: standard (the directory's rates) or metered (a tenth of
    /// them: less data, ten times the wait for a sending slot).
    Traffic {
        #[command(flatten)]
        home: Home,
        /// `standard` or `metered`.
        traffic: String,
    },
    /// Shows the client's state: running, directory, traffic profile and its cost, messages
    /// not yet delivered, packets sent.
    Status {
        #[command(flatten)]
        home: Home,
    },
    /// Shows the safety code of a contact (or of a group's member): 60 digits to compare with
    /// them in person or on a call you trust. The same code on both sides proves that nobody
    /// sits between you (see docs/CLIENT.md). --mark records that you compared it.
    Verify {
        #[command(flatten)]
        home: Home,
        /// The contact or group.
        name: String,
        /// In a group: the member (see 'qanat group members').
        #[arg(long)]
        member: Option<String>,
        /// Marks the code verified: give the code you compared (spaces are ignored); refused
        /// unless it is the current code.
        #[arg(long, value_name = "CODE", conflicts_with = "unmark")]
        mark: Option<String>,
        /// Takes the mark away.
        #[arg(long)]
        unmark: bool,
    },
    /// Destroys the profile: overwrites its header (the only copy of the key every record is
    /// sealed under) and its database with random bytes, then deletes them; keeps network.toml.
    /// Asks to type "wipe" unless --yes. Refused while `qanat run` holds the profile. What it
    /// cannot reach (flash remapping, copy-on-write file systems, backups): docs/STORAGE.md.
    Wipe {
        #[command(flatten)]
        home: Home,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
    /// Changes the profile's passphrase (asked twice; QANAT_NEW_PASSPHRASE in scripts). A
    /// duress passphrase stops working unless --keep-duress gives it again. With --duress: sets
    /// a duress passphrase instead (QANAT_DURESS_PASSPHRASE in scripts), which, typed in place
    /// of the passphrase, destroys the profile and opens an empty one; with --remove-duress:
    /// removes any. Needs the profile: stop `qanat run` first.
    Passphrase {
        #[command(flatten)]
        home: Home,
        /// Set the duress passphrase (replacing any).
        #[arg(long, conflicts_with_all = ["remove_duress", "keep_duress"])]
        duress: bool,
        /// Remove the duress passphrase (the same answer whether there was one).
        #[arg(long, conflicts_with = "keep_duress")]
        remove_duress: bool,
        /// When changing the passphrase, ask for the duress passphrase again and keep it.
        #[arg(long)]
        keep_duress: bool,
    },
    /// Creates and manages groups.
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Creates a group (you are its only member until you add contacts).
    Create {
        #[command(flatten)]
        home: Home,
        /// Its name.
        name: String,
    },
    /// Adds a contact to a group.
    Add {
        #[command(flatten)]
        home: Home,
        /// The group.
        group: String,
        /// The contact.
        contact: String,
    },
    /// Removes a member from a group.
    Remove {
        #[command(flatten)]
        home: Home,
        /// The group.
        group: String,
        /// A contact name or member label (see 'qanat group members').
        member: String,
    },
    /// Leaves a group.
    Leave {
        #[command(flatten)]
        home: Home,
        /// The group.
        group: String,
    },
    /// Lists a group's members.
    Members {
        #[command(flatten)]
        home: Home,
        /// The group.
        group: String,
    },
    /// Lists the group invitations waiting for your answer (joining needs your yes).
    Invitations {
        #[command(flatten)]
        home: Home,
    },
    /// Accepts a group invitation: joins the group.
    Accept {
        #[command(flatten)]
        home: Home,
        /// The invitation's id (or its first characters; see 'qanat group invitations').
        invitation: String,
        /// The group's name here (default: the name the contact suggested).
        #[arg(long)]
        name: Option<String>,
    },
    /// Declines a group invitation (the contact is not told).
    Decline {
        #[command(flatten)]
        home: Home,
        /// The invitation's id (or its first characters).
        invitation: String,
    },
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Runs the node a config file describes until SIGINT or SIGTERM (graceful shutdown).
    /// Logs go to standard error; their level is set by QANAT_LOG (error, warn, info, debug).
    Run {
        /// The node's TOML config (see 'qanat node example-config').
        #[arg(long)]
        config: PathBuf,
        /// Runs a config with a `[danger]` table (settings for tests that break the network's
        /// promises, such as fault injection); never on a real network.
        #[arg(long)]
        allow_danger: bool,
    },
    /// Prints the node's public identity and link keys (creating them on first use), as other
    /// nodes' configs need them.
    ShowKeys {
        /// The node's TOML config.
        #[arg(long)]
        config: PathBuf,
    },
    /// Prints a commented example config for a role, which 'node run' accepts as it is.
    ExampleConfig {
        /// authority, mix or gateway.
        #[arg(long, default_value = "mix")]
        role: String,
        /// The node's link address (host:port).
        #[arg(long, default_value = "127.0.0.1:7101")]
        listen: String,
    },
}

// The arguments of `demo`. (No doc comment: clap would show it in place of the subcommand's
// own.)
#[derive(Args)]
struct DemoArgs {
    /// Messages to exchange (alternately from each user).
    #[arg(long, default_value_t = 10)]
    messages: usize,
    /// Epoch length in seconds (a real network uses 1200).
    #[arg(long, default_value_t = 10)]
    epoch_secs: u64,
    /// Mean delay per mix, in milliseconds.
    #[arg(long, default_value_t = 50)]
    mean_delay_ms: u32,
    /// Client payload packets per second (lambda_P).
    #[arg(long, default_value_t = 10.0)]
    lambda_p: f64,
    /// How often the clients fetch their mailboxes, in milliseconds.
    #[arg(long, default_value_t = 50)]
    fetch_interval_ms: u64,
    /// Pause between two messages, in milliseconds.
    #[arg(long, default_value_t = 500)]
    gap_ms: u64,
    /// Then keeps the network running and serves each user's app (the Qanat app, on its own
    /// port of 127.0.0.1, opened in the browser), to watch the conversation in the real
    /// interface, until Ctrl-C. The passphrases of the throwaway profiles are printed.
    #[arg(long)]
    ui: bool,
    /// With --ui: print the apps' links without opening a browser.
    #[arg(long)]
    no_browser: bool,
    /// Instead: only the packet layer, in memory (Sphinx through five hops, SURB replies).
    #[arg(long)]
    packets_only: bool,
    /// With --packets-only: x25519-nike, x25519-kem or xwing.
    #[arg(long, default_value = "x25519-kem")]
    scheme: String,
}

impl DemoArgs {
    /// The settings `demo::demo` takes.
    fn options(&self) -> demo::DemoOptions {
        demo::DemoOptions {
            messages: self.messages,
            epoch_secs: self.epoch_secs,
            mean_delay_ms: self.mean_delay_ms,
            lambda_p: self.lambda_p,
            fetch_interval_ms: self.fetch_interval_ms,
            gap_ms: self.gap_ms,
            ui: self.ui,
            browser: !self.no_browser,
        }
    }
}

// The arguments of `devnet up`. (No doc comment: clap would show it in place of the
// subcommand's own.)
#[derive(Args)]
struct UpArgs {
    /// Where the devnet lives (configs, keys, data, logs, devnet.json).
    #[arg(long)]
    dir: PathBuf,
    /// Epoch length in seconds (a real network uses 1200).
    #[arg(long, default_value_t = 20)]
    epoch_secs: u64,
    /// Packet scheme: xwing, x25519-kem or x25519-nike.
    #[arg(long, default_value = "x25519-kem")]
    scheme: String,
    /// Mean delay per mix, in milliseconds.
    #[arg(long, default_value_t = 50)]
    mean_delay_ms: u32,
    /// Loop cover packets per second per mix ((3 - 1) x lambda_m x mean delay must be >= 2).
    #[arg(long, default_value_t = 20.0)]
    lambda_m: f64,
    /// Client payload packets per second (lambda_P), as the directory publishes it.
    #[arg(long, default_value_t = 2.0)]
    lambda_p: f64,
    /// Client loop packets per second (lambda_L), and as many drop packets (lambda_D). Loops
    /// come back to the client's mailboxes, so they share its pulls with what it receives.
    #[arg(long, default_value_t = 0.5)]
    lambda_l: f64,
    /// Fault injection for tests: the gateways drop this fraction of the packets they get.
    #[arg(long, default_value_t = 0.0)]
    fault_drop_rate: f64,
    /// The largest file clients may send or accept, in bytes (the directory's max_file_bytes,
    /// at most 67108864).
    #[arg(long, default_value_t = FileLimits::DEFAULT.max_file_bytes)]
    max_file_bytes: u32,
    /// The largest multiple of lambda_P a fast transfer may use (the directory's
    /// fast_factor_max, 1 to 8; 1: no fast mode). Gateways budget each client for
    /// fast_factor_max x lambda_P + lambda_L + lambda_D.
    #[arg(long, default_value_t = FileLimits::DEFAULT.fast_factor_max)]
    fast_factor_max: u8,
    /// The authorities vote version 1 of the directory, without file limits (clients then allow
    /// 1 MiB files and no fast mode): a network whose operators have not switched.
    #[arg(long, conflicts_with_all = ["max_file_bytes", "fast_factor_max"])]
    directory_v1: bool,
    /// Returns only once every mix and gateway is in the directory.
    #[arg(long)]
    wait: bool,
}

impl UpArgs {
    /// The typed settings `devnet::up` takes.
    fn options(&self) -> Result<devnet::UpOptions> {
        let scheme = Scheme::from_name(&self.scheme).with_context(|| {
            format!("unknown scheme {:?}: use xwing, x25519-kem or x25519-nike", self.scheme)
        })?;
        let network = devnet::generate::Options {
            epoch_secs: self.epoch_secs,
            scheme,
            mean_delay_ms: self.mean_delay_ms,
            lambda_m: self.lambda_m,
            lambda_p: self.lambda_p,
            lambda_l: self.lambda_l,
            metrics: true,
            fault_drop_rate: self.fault_drop_rate,
            file_limits: (!self.directory_v1).then_some(FileLimits {
                max_file_bytes: self.max_file_bytes,
                fast_factor_max: self.fast_factor_max,
            }),
        };
        Ok(devnet::UpOptions { network, wait: self.wait })
    }
}

#[derive(Subcommand)]
enum DevnetCommand {
    /// Generates keys and configs under DIR and starts every node as its own process.
    Up(UpArgs),
    /// Reports each node's health: process, metrics endpoint, epoch, directory, traffic.
    Status {
        /// The devnet's directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Stops every node of the devnet (SIGTERM, then SIGKILL after 10 s), by PID.
    Down {
        /// The devnet's directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Stops one node if it runs, then starts it again with the same config and data.
    Restart {
        /// The devnet's directory.
        #[arg(long)]
        dir: PathBuf,
        /// The node's name (as 'status' lists them).
        name: String,
    },
}

#[derive(Subcommand)]
enum TestbedCommand {
    /// Brings up the network in namespaces, runs the chat over one profile (or each), checks
    /// that every message arrived exactly once, prints latencies, and tears everything down.
    Run {
        /// lan, 2g, 3g-lossy, satellite, flapping, partition, or all (repeatable).
        #[arg(long, required = true)]
        profile: Vec<String>,
        /// Messages in the chat.
        #[arg(long, default_value_t = 30)]
        messages: usize,
        /// The chat's length in seconds (messages are sent evenly over it; the profile's
        /// trouble is scheduled over it).
        #[arg(long, default_value_t = 90)]
        duration: u64,
        /// Seconds after the last send within which every message must arrive.
        #[arg(long, default_value_t = 300)]
        drain: u64,
        /// Where configs, profiles and logs go (kept); default: a temporary directory, removed
        /// after a successful run.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The seed of the trouble's schedule.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Only alice and bob (no group of three with carol).
        #[arg(long)]
        no_group: bool,
        /// The network's epoch length in seconds (keys change at each epoch). Much shorter than
        /// 60 s leaves clients at λ_P = 0.5/s too little time for documents and
        /// acknowledgements (see docs/TESTBED.md).
        #[arg(long, default_value_t = testbed::EPOCH_SECS, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        epoch_secs: u64,
    },
    /// Stops the processes and removes the namespaces a run in DIR left behind (after a crash).
    Down {
        /// The run's directory (or one profile's subdirectory of it).
        #[arg(long)]
        dir: PathBuf,
    },
    /// Exits 0 if network namespaces can be created here, 2 if the kernel refuses (not root).
    Check,
}

fn init_logs() {
    let level = match std::env::var("QANAT_LOG").as_deref() {
        Ok("error") => tracing::Level::ERROR,
        Ok("warn") => tracing::Level::WARN,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("trace") => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let out = client_cmd::Output { json: cli.json };
    let home = |h: Home| client_cmd::home_dir(h.home);
    let request = |h: Home, req: Request| client_cmd::request(&home(h)?, req, out);
    match cli.command {
        Command::Demo(args) if args.packets_only => packet_demo::demo(&args.scheme, args.messages),
        Command::Demo(args) => demo::demo(&args.options()),
        Command::Eval {
            out,
            quick,
            seed,
            setting,
            clients,
            mean_delay_ms,
            lambda_m,
            lambda_p,
            lambda_l,
            lambda_d,
            metered,
            message_rate,
            no_client_cover,
            one_mix,
            ack_delay_ms,
            fast_transfer,
        } => {
            if fast_transfer {
                return eval::fast_transfer(seed, quick);
            }
            if setting {
                return eval::one_setting(&eval::SettingOptions {
                    quick,
                    seed,
                    clients,
                    mean_delay_ms,
                    lambda_m,
                    lambda: [lambda_p, lambda_l, lambda_d],
                    metered,
                    message_rate,
                    no_client_cover,
                    one_mix,
                    ack_delay_ms,
                });
            }
            eval::eval(&eval::EvalOptions { out, quick, seed })
        }
        Command::Node { command } => {
            init_logs();
            match command {
                NodeCommand::Run { config, allow_danger } => node_cmd::run(&config, allow_danger),
                NodeCommand::ShowKeys { config } => node_cmd::show_keys(&config),
                NodeCommand::ExampleConfig { role, listen } => node_cmd::example_config(&role, &listen),
            }
        }
        Command::Devnet { command } => match command {
            DevnetCommand::Up(args) => devnet::up(&args.dir, &args.options()?),
            DevnetCommand::Status { dir } => devnet::status(&dir),
            DevnetCommand::Down { dir } => devnet::down(&dir),
            DevnetCommand::Restart { dir, name } => devnet::restart(&dir, &name),
        },
        Command::Testbed { command } => match command {
            TestbedCommand::Run { profile, messages, duration, drain, dir, seed, no_group, epoch_secs } => {
                testbed::run(&testbed::RunOptions {
                    profiles: profile,
                    messages,
                    duration: Duration::from_secs(duration),
                    drain: Duration::from_secs(drain),
                    dir,
                    seed,
                    group: !no_group,
                    epoch_secs,
                })
            }
            TestbedCommand::Down { dir } => testbed::down(&dir),
            TestbedCommand::Check => {
                if testbed::namespaces_available()? {
                    println!("testbed: network namespaces are available");
                    Ok(())
                } else {
                    eprintln!("testbed: network namespaces are unavailable (not root?)");
                    std::process::exit(2)
                }
            }
        },
        Command::Init { home: h, network, gateway, traffic } => {
            client_cmd::init(&home(h)?, &network, gateway.as_deref(), &traffic, out)
        }
        Command::Run { home: h, fetch_interval_ms, decision_window_secs } => {
            init_logs();
            client_cmd::run(
                &home(h)?,
                fetch_interval_ms.map(Duration::from_millis).unwrap_or(Duration::ZERO),
                decision_window_secs.map(Duration::from_secs),
                out,
            )
        }
        Command::App { home: h, network, no_browser, port, fetch_interval_ms, decision_window_secs } => {
            init_logs();
            app_cmd::app(app_cmd::AppArgs {
                home: home(h)?,
                network,
                browser: !no_browser,
                port,
                fetch_interval: fetch_interval_ms.map(Duration::from_millis).unwrap_or(Duration::ZERO),
                decision_window: decision_window_secs.map(Duration::from_secs),
            })
        }
        Command::Invite { home: h, name } => request(h, Request::Invite { name }),
        Command::Accept { home: h, name, link } => request(h, Request::Accept { link, name }),
        Command::Contacts { home: h } => request(h, Request::Contacts),
        Command::Send { home: h, name, text, file: Some(path), fast, yes, wait, timeout_secs } => {
            client_cmd::send_file(
                &home(h)?,
                client_cmd::FileSend {
                    to: name,
                    path: &path,
                    caption: text,
                    fast: fast.then_some(yes),
                    wait: wait.then(|| Duration::from_secs(timeout_secs)),
                },
                out,
            )
        }
        Command::Send { home: h, name, text, file: None, wait: true, timeout_secs, .. } => {
            client_cmd::send_and_wait(&home(h)?, name, text, Duration::from_secs(timeout_secs), out)
        }
        Command::Send { home: h, name, text, file: None, wait: false, .. } => {
            request(h, Request::Send { to: name, text })
        }
        Command::Files { home: h, action: None, of, follow } => client_cmd::files(&home(h)?, of, follow, out),
        Command::Files { home: h, action: Some(a), .. } => request(
            h,
            match a {
                FilesAction::Accept { id } => Request::FileAccept { id },
                FilesAction::Decline { id } => Request::FileDecline { id },
                FilesAction::Cancel { id } => Request::TransferCancel { id },
                FilesAction::Limits { max: None, auto_accept: None } => Request::Settings,
                FilesAction::Limits { max, auto_accept } => Request::SetSettings {
                    language: None,
                    lock_timeout_secs: None,
                    max_file_bytes: max,
                    auto_accept_bytes: auto_accept,
                },
            },
        ),
        Command::Save { home: h, id, path, force } => client_cmd::save_file(&home(h)?, id, &path, force, out),
        Command::Open { home: h, id } => client_cmd::open_file(&home(h)?, id, out),
        Command::Inbox { home: h, follow: true } => client_cmd::follow(&home(h)?, out),
        Command::Inbox { home: h, follow: false } => request(h, Request::Inbox),
        Command::History { home: h, name, last } => {
            request(h, Request::History { name, before: None, limit: last })
        }
        Command::Network { home: h } => request(h, Request::Network),
        Command::Traffic { home: h, traffic } => request(h, Request::SetTraffic { traffic }),
        Command::Status { home: h } => request(h, Request::Status),
        Command::Verify { home: h, name, member, mark, unmark } => {
            let action = match (mark, unmark) {
                (Some(code), _) => client_cmd::Mark::Verified(code),
                (None, true) => client_cmd::Mark::Unverified,
                (None, false) => client_cmd::Mark::Show,
            };
            client_cmd::verify(&home(h)?, name, member, action, out)
        }
        Command::Wipe { home: h, yes } => client_cmd::wipe(&home(h)?, yes, out),
        Command::Passphrase { home: h, duress, remove_duress, keep_duress } => {
            let what = if duress {
                client_cmd::PassphraseChange::SetDuress
            } else if remove_duress {
                client_cmd::PassphraseChange::RemoveDuress
            } else {
                client_cmd::PassphraseChange::New { keep_duress }
            };
            client_cmd::change_passphrase(&home(h)?, what, out)
        }
        Command::Group { command } => match command {
            GroupCommand::Create { home: h, name } => request(h, Request::GroupCreate { name }),
            GroupCommand::Add { home: h, group, contact } => request(h, Request::GroupAdd { group, contact }),
            GroupCommand::Remove { home: h, group, member } => {
                request(h, Request::GroupRemove { group, member })
            }
            GroupCommand::Leave { home: h, group } => request(h, Request::GroupLeave { group }),
            GroupCommand::Members { home: h, group } => request(h, Request::Members { name: group }),
            GroupCommand::Invitations { home: h } => request(h, Request::GroupInvitations),
            GroupCommand::Accept { home: h, invitation, name } => {
                request(h, Request::GroupAccept { invitation, name })
            }
            GroupCommand::Decline { home: h, invitation } => request(h, Request::GroupDecline { invitation }),
        },
    }
}
