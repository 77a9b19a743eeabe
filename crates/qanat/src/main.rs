//! `qanat`: the one binary. Thin glue: parse arguments, call the libraries.
#![forbid(unsafe_code)]

mod demo;
mod devnet;
mod node_cmd;
mod packet_demo;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use qanat_packet::Scheme;

#[derive(Parser)]
#[command(name = "qanat", version, about = "Qanat: messaging over a Loopix-style mix network")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Starts a whole network in this process (3 directory authorities, 3 layers of 2 mixes, 2
    /// gateways with SQLite mailboxes, in a temporary directory on 127.0.0.1) and two users who
    /// invite each other and exchange messages through it; prints each message with its latency
    /// and exits 0 only if all arrived.
    Demo {
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
        /// Instead: only the packet layer, in memory (Sphinx through five hops, SURB replies).
        #[arg(long)]
        packets_only: bool,
        /// With --packets-only: x25519-nike, x25519-kem or xwing.
        #[arg(long, default_value = "x25519-kem")]
        scheme: String,
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
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Runs the node a config file describes until SIGINT or SIGTERM (graceful shutdown).
    /// Logs go to standard error; their level is set by QANAT_LOG (error, warn, info, debug).
    Run {
        /// The node's TOML config (see 'qanat node example-config').
        #[arg(long)]
        config: PathBuf,
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

#[derive(Subcommand)]
enum DevnetCommand {
    /// Generates keys and configs under DIR and starts every node as its own process.
    Up {
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
        /// Loop cover packets per second per mix (3 x lambda_m x mean delay must be >= 2).
        #[arg(long, default_value_t = 20.0)]
        lambda_m: f64,
        /// Client payload packets per second (lambda_P), as the directory publishes it.
        #[arg(long, default_value_t = 2.0)]
        lambda_p: f64,
        /// Fault injection for tests: the gateways drop this fraction of the packets they get.
        #[arg(long, default_value_t = 0.0)]
        fault_drop_rate: f64,
        /// Returns only once every mix and gateway is in the directory.
        #[arg(long)]
        wait: bool,
    },
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
    match Cli::parse().command {
        Command::Demo {
            messages,
            epoch_secs,
            mean_delay_ms,
            lambda_p,
            fetch_interval_ms,
            gap_ms,
            packets_only,
            scheme,
        } => {
            if packets_only {
                return packet_demo::demo(&scheme, messages);
            }
            demo::demo(&demo::DemoOptions {
                messages,
                epoch_secs,
                mean_delay_ms,
                lambda_p,
                fetch_interval_ms,
                gap_ms,
            })
        }
        Command::Node { command } => {
            init_logs();
            match command {
                NodeCommand::Run { config } => node_cmd::run(&config),
                NodeCommand::ShowKeys { config } => node_cmd::show_keys(&config),
                NodeCommand::ExampleConfig { role, listen } => node_cmd::example_config(&role, &listen),
            }
        }
        Command::Devnet { command } => match command {
            DevnetCommand::Up {
                dir,
                epoch_secs,
                scheme,
                mean_delay_ms,
                lambda_m,
                lambda_p,
                fault_drop_rate,
                wait,
            } => {
                let scheme = Scheme::from_name(&scheme).with_context(|| {
                    format!("unknown scheme {scheme:?}: use xwing, x25519-kem or x25519-nike")
                })?;
                let o = devnet::UpOptions {
                    epoch_secs,
                    scheme,
                    mean_delay_ms,
                    lambda_m,
                    lambda_p,
                    fault_drop_rate,
                    wait,
                };
                devnet::up(&dir, &o)
            }
            DevnetCommand::Status { dir } => devnet::status(&dir),
            DevnetCommand::Down { dir } => devnet::down(&dir),
            DevnetCommand::Restart { dir, name } => devnet::restart(&dir, &name),
        },
    }
}
