//! `qanat demo`: a whole network in this process (3 directory authorities, 3 layers of 2 mixes,
//! 2 gateways with SQLite mailboxes, all on 127.0.0.1 in a temporary directory) and two users,
//! alice (on gateway 1) and bob (on gateway 2), each a real client: encrypted profile, Loopix
//! sending with cover traffic, MLS conversation. Alice invites bob, bob accepts, and they
//! exchange messages; each is printed as it arrives with its latency. Exits 0 only if every
//! message arrived.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use qanat_app::AppConfig;
use qanat_client::control::{Request, Response};
use qanat_client::engine::{Engine, EngineConfig, EngineEvent};
use qanat_client::host::{Host, HostConfig, HostRequest};
use qanat_client::runtime::{self, ClientHandle, RuntimeConfig};
use qanat_client::store::{Passphrase, Profile};
use qanat_mixnet::sending::TrafficProfile;
use qanat_node::config::ClientNetwork;
use qanat_packet::Scheme;
use tokio::sync::broadcast;

use crate::app_cmd::{HostBackend, open_browser};
use crate::client_cmd::Signals;
use crate::devnet::generate;

/// Settings of the demo.
#[derive(Debug, Clone)]
pub(crate) struct DemoOptions {
    pub(crate) messages: usize,
    pub(crate) epoch_secs: u64,
    pub(crate) mean_delay_ms: u32,
    pub(crate) lambda_p: f64,
    pub(crate) fetch_interval_ms: u64,
    pub(crate) gap_ms: u64,
    /// After the exchange, both users' apps on the network, until Ctrl-C.
    pub(crate) ui: bool,
    /// With `ui`: open a browser window for each.
    pub(crate) browser: bool,
}

pub(crate) fn demo(o: &DemoOptions) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    let dir =
        tempfile::Builder::new().prefix("qanat-demo-").tempdir().context("making a temporary directory")?;
    let result = rt.block_on(run(o, dir.path()));
    drop(dir);
    let (delivered, n) = result?;
    if delivered != n {
        bail!("{delivered} of {n} messages arrived");
    }
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

async fn start_user(
    name: &str,
    dir: &std::path::Path,
    network: &ClientNetwork,
    gateway: usize,
    fetch: Duration,
) -> Result<ClientHandle> {
    let gw = network.gateways.get(gateway).context("the network has too few gateways")?.clone();
    let mut profile =
        Profile::create(dir.join(name), &Passphrase::new(format!("demo passphrase of {name}")))?;
    Engine::init(&mut profile, gw.identity.node_id(), TrafficProfile::Standard, &mut rand::rng())?;
    let config = EngineConfig { fetch_interval: fetch, ..EngineConfig::default() };
    let engine = Engine::open(profile, config, SystemTime::now())?;
    Ok(runtime::start(
        engine,
        RuntimeConfig { network: network.clone(), gateway: gw, fetch_interval: fetch },
    )?)
}

async fn wait_for(
    events: &mut broadcast::Receiver<EngineEvent>,
    limit: Duration,
    mut want: impl FnMut(&EngineEvent) -> bool,
) -> Result<()> {
    let end = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end, events.recv()).await {
            Ok(Ok(e)) if want(&e) => return Ok(()),
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(_)) => bail!("the client stopped"),
            Err(_) => bail!("timed out after {limit:?}"),
        }
    }
}

async fn run(o: &DemoOptions, dir: &std::path::Path) -> Result<(usize, usize)> {
    let started = Instant::now();
    let options = generate::Options {
        epoch_secs: o.epoch_secs,
        scheme: Scheme::X25519Kem,
        mean_delay_ms: o.mean_delay_ms,
        lambda_p: o.lambda_p,
        metrics: false,
        ..generate::Options::default()
    };
    let nodes = generate::generate(&dir.join("net"), &options)?;
    let running = generate::start_all(&nodes).await?;
    println!(
        "demo: started 3 directory authorities, 6 mixes in 3 layers and 2 gateways on 127.0.0.1 \
         (epoch {} s, mean delay {} ms per mix, client rate {} packets/s)",
        o.epoch_secs, o.mean_delay_ms, o.lambda_p
    );
    let network = ClientNetwork::load(&generate::network_file(&dir.join("net")))?;
    let fetch = Duration::from_millis(o.fetch_interval_ms);
    let alice = start_user("alice", dir, &network, 0, fetch).await?;
    let bob = start_user("bob", dir, &network, 1, fetch).await?;
    let (mut a_events, mut b_events) = (alice.subscribe(), bob.subscribe());
    println!("demo: alice (gateway 1) and bob (gateway 2) created their encrypted profiles");

    let outcome = async {
        print!("demo: waiting for the first signed directory document");
        let limit = Instant::now() + Duration::from_secs(o.epoch_secs * 4 + 30);
        for c in [&alice, &bob] {
            loop {
                if let Response::Status { network: true, .. } = c.call(Request::Status).await {
                    break;
                }
                if Instant::now() > limit {
                    bail!("no directory document within {:?}", limit - started);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        println!(" ... ok after {:.1} s", started.elapsed().as_secs_f64());

        let link = match alice.call(Request::Invite { name: "bob".into() }).await {
            Response::Invitation { link, .. } => link,
            other => bail!("alice could not invite: {other:?}"),
        };
        println!(
            "demo: alice made a one-time invitation ({} characters): {}…",
            link.len(),
            &link[..40.min(link.len())]
        );
        match bob.call(Request::Accept { link, name: "alice".into() }).await {
            Response::Ok => {}
            other => bail!("bob could not accept: {other:?}"),
        }
        println!("demo: bob accepted; his answer and alice's MLS Welcome travel through the mixnet");
        let t = Instant::now();
        wait_for(&mut a_events, Duration::from_secs(120), |e| matches!(e, EngineEvent::ContactReady { .. }))
            .await?;
        wait_for(&mut b_events, Duration::from_secs(120), |e| matches!(e, EngineEvent::ContactReady { .. }))
            .await?;
        println!(
            "demo: contact made in {:.1} s, with no identifier; now {} messages",
            t.elapsed().as_secs_f64(),
            o.messages
        );

        let mut latencies = Vec::new();
        let n = o.messages;
        let texts: Vec<(bool, String)> = (0..n)
            .map(|i| {
                let from_alice = i % 2 == 0;
                let text = if from_alice {
                    format!("message {} from alice", i / 2 + 1)
                } else {
                    format!("message {} from bob", i / 2 + 1)
                };
                (from_alice, text)
            })
            .collect();
        for (from_alice, text) in &texts {
            let (c, to) = if *from_alice { (&alice, "bob") } else { (&bob, "alice") };
            if let Response::Error { message, .. } =
                c.call(Request::Send { to: to.into(), text: text.clone() }).await
            {
                bail!("send failed: {message}");
            }
            tokio::time::sleep(Duration::from_millis(o.gap_ms)).await;
            drain(&mut a_events, "alice", &mut latencies);
            drain(&mut b_events, "bob", &mut latencies);
        }
        let end = Instant::now() + Duration::from_secs(120);
        while latencies.len() < n && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drain(&mut a_events, "alice", &mut latencies);
            drain(&mut b_events, "bob", &mut latencies);
        }
        Ok(latencies)
    }
    .await;

    let _ = alice.shutdown().await;
    let _ = bob.shutdown().await;
    if o.ui && outcome.is_ok() {
        let ui = serve_ui(dir, &network, fetch, o.browser).await;
        if let Err(e) = ui {
            println!("demo: the apps could not be served: {e:#}");
        }
    }
    for node in running {
        node.shutdown().await;
    }
    let mut latencies = outcome?;
    latencies.sort_unstable();
    let n = o.messages;
    let (m50, m99) = model(o);
    println!(
        "demo: the model (a sending slot Exp(λ_P) plus 3 mixes' Exp(1/μ) delays) predicts p50 {m50:.0} ms, \
         p99 {m99:.0} ms; fetching every {} ms adds about half that",
        o.fetch_interval_ms
    );
    println!(
        "demo: {}/{} messages delivered, p50 {} ms, p99 {} ms",
        latencies.len().min(n),
        n,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    Ok((latencies.len().min(n), n))
}

/// `demo --ui`: alice's and bob's apps, each on its own port of 127.0.0.1, on the profiles
/// the demo made (their conversation in them), until Ctrl-C.
async fn serve_ui(
    dir: &std::path::Path,
    network: &ClientNetwork,
    fetch: Duration,
    browser: bool,
) -> Result<()> {
    let mut apps = Vec::new();
    for name in ["alice", "bob"] {
        let host = Host::new(HostConfig {
            dir: dir.join(name),
            network: network.clone(),
            engine: EngineConfig { fetch_interval: fetch, ..EngineConfig::default() },
            fetch_interval: fetch,
            kdf: None,
            serve_socket: true,
        });
        let running = qanat_app::serve(HostBackend(host.clone()), AppConfig::default())
            .await
            .context("cannot listen on 127.0.0.1")?;
        let url = running.start_url();
        println!(
            "demo: {name}'s app: open {url} (works once, for 2 minutes); the passphrase is \
             \"demo passphrase of {name}\""
        );
        let opener = if browser { open_browser(&url).ok() } else { None };
        apps.push((host, running, opener));
    }
    println!("demo: the network and both apps run until Ctrl-C");
    let signals = Signals::new()?;
    tokio::pin!(signals);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = signals.as_mut().recv() => break,
            _ = tick.tick() => {
                for (_, running, opener) in &mut apps {
                    if opener.is_some() && running.start_link_spent() {
                        *opener = None;
                    }
                }
            }
        }
    }
    println!("demo: stopping…");
    for (host, running, opener) in apps {
        drop(opener);
        let _ = tokio::time::timeout(Duration::from_secs(15), host.host(HostRequest::Quit)).await;
        let _ = running.stop().await;
    }
    Ok(())
}

/// The latency the Loopix model predicts, p50 and p99 in ms: Exp(λ_P) for the sending slot plus
/// an Exp(mean delay) at each of the 3 mix layers (Monte Carlo, 200,000 draws).
pub(crate) fn model(o: &DemoOptions) -> (f64, f64) {
    let mut rng = rand::rng();
    let mut exp = |mean_ms: f64| -> f64 {
        qanat_mixnet::exponential(&mut rng, Duration::from_secs_f64(mean_ms / 1000.0)).as_secs_f64() * 1000.0
    };
    let mut v: Vec<f64> = (0..200_000)
        .map(|_| exp(1000.0 / o.lambda_p) + (0..3).map(|_| exp(f64::from(o.mean_delay_ms))).sum::<f64>())
        .collect();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() * 99 / 100])
}

fn drain(events: &mut broadcast::Receiver<EngineEvent>, who: &str, latencies: &mut Vec<u64>) {
    while let Ok(e) = events.try_recv() {
        if let EngineEvent::Message { sender, text, sent_at, received_at, .. } = e {
            let ms = received_at.duration_since(sent_at).unwrap_or_default().as_millis() as u64;
            latencies.push(ms);
            println!("  {who} <- {sender}: {text:<24} {ms:>5} ms");
        }
    }
}
