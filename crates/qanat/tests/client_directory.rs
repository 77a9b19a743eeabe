//! P5 at the edge: a running client gets every epoch's directory document through its gateway
//! and opens no connection to anything else, through epoch changes and a restart.
//!
//! A devnet of 11 processes (10-second epochs); two clients in this process whose network file
//! names, for every authority, an address where this test listens and counts connections. The
//! clients must get each epoch's document (verified against the authority keys of that file),
//! keep it current across epochs and a restart, talk to each other, and never connect there.
//!
//! `cargo test --release -p qanat --test client_directory` (about a minute and a half).

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use qanat_client::control::{Request, Response};
use qanat_client::engine::{Engine, EngineConfig, EngineEvent};
use qanat_client::runtime::{self, ClientHandle, RuntimeConfig};
use qanat_client::store::{Passphrase, Profile, danger};
use qanat_mixnet::sending::TrafficProfile;
use qanat_node::config::ClientNetwork;
use qanat_node::service::wall_now;
use qanat_pki::Epoch;
use qanat_pki::descriptor::LinkAddress;

mod common;
use common::devnet_up;

const EPOCH_SECS: u64 = 10;

/// Listeners standing in for the authorities' addresses: they count every connection.
fn decoys(n: usize, count: &Arc<AtomicU64>) -> Vec<LinkAddress> {
    (0..n)
        .map(|_| {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = LinkAddress::parse(&l.local_addr().unwrap().to_string()).unwrap();
            let count = count.clone();
            std::thread::spawn(move || {
                for c in l.incoming() {
                    if c.is_ok() {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
            addr
        })
        .collect()
}

struct User {
    home: std::path::PathBuf,
    gateway: usize,
    handle: Option<ClientHandle>,
}

impl User {
    fn new(root: &Path, name: &str, network: &ClientNetwork, gateway: usize) -> Self {
        let home = root.join(name);
        let mut p =
            Profile::create_with(&home, &Passphrase::new("pw"), danger::weak_kdf_params(8, 1, 1).unwrap())
                .unwrap();
        let gw = network.gateways[gateway].identity.node_id();
        Engine::init(&mut p, gw, TrafficProfile::Standard, &mut rand::rng()).unwrap();
        Self { home, gateway, handle: None }
    }

    fn start(&mut self, network: &ClientNetwork) {
        let p = Profile::open(&self.home, &Passphrase::new("pw")).unwrap();
        let config = EngineConfig { fetch_interval: Duration::from_millis(200), ..EngineConfig::default() };
        let engine = Engine::open(p, config, SystemTime::now()).unwrap();
        let rc = RuntimeConfig {
            network: network.clone(),
            gateway: network.gateways[self.gateway].clone(),
            fetch_interval: Duration::from_millis(200),
        };
        self.handle = Some(runtime::start(engine, rc).unwrap());
    }

    async fn stop(&mut self) {
        self.handle.take().unwrap().shutdown().await.unwrap();
    }

    async fn call(&self, r: Request) -> Response {
        self.handle.as_ref().unwrap().call(r).await
    }

    /// The epoch of the document in use (0: none yet).
    async fn directory_epoch(&self) -> u64 {
        match self.call(Request::Status).await {
            Response::Status { link: Some(l), .. } => l.directory_epoch,
            r => panic!("status: {r:?}"),
        }
    }
}

fn current_epoch() -> u64 {
    Epoch::at(wall_now(), qanat_pki::EpochPeriod::from_secs(EPOCH_SECS).unwrap()).0
}

/// Waits (with a deadline) until `u` uses the current epoch's document.
async fn wait_current(u: &User, within: Duration) -> u64 {
    let end = tokio::time::Instant::now() + within;
    loop {
        let (have, cur) = (u.directory_epoch().await, current_epoch());
        if have == cur {
            return cur;
        }
        assert!(tokio::time::Instant::now() < end, "the client has epoch {have}'s document in epoch {cur}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_get_every_document_through_their_gateway_only() {
    let devnet = devnet_up(&["--epoch-secs", &EPOCH_SECS.to_string(), "--lambda-p", "20"]);
    let mut network = ClientNetwork::load(&devnet.dir.path().join("network.toml")).unwrap();
    let connections = Arc::new(AtomicU64::new(0));
    let addresses = decoys(network.network.authorities.len(), &connections);
    for (a, addr) in network.network.authorities.iter_mut().zip(addresses) {
        a.address = addr;
    }
    let root = tempfile::tempdir().unwrap();
    let mut alice = User::new(root.path(), "alice", &network, 0);
    let mut bob = User::new(root.path(), "bob", &network, 1);
    alice.start(&network);
    bob.start(&network);
    wait_current(&alice, Duration::from_secs(60)).await;
    wait_current(&bob, Duration::from_secs(60)).await;

    // Through four epoch changes: each epoch's document is in use within two seconds of its
    // start (the next one arrives ahead, in the pulls' free slots).
    let first = current_epoch();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let e = current_epoch();
        if e > first && !seen.contains(&e) {
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(alice.directory_epoch().await, e, "alice in epoch {e}");
            assert_eq!(bob.directory_epoch().await, e, "bob in epoch {e}");
            seen.push(e);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A restart: the document comes again through the gateway.
    alice.stop().await;
    alice.start(&network);
    wait_current(&alice, Duration::from_secs(30)).await;

    // And it is the real thing: the two talk through the network.
    let link = match alice.call(Request::Invite { name: "bob".into() }).await {
        Response::Invitation { link, .. } => link,
        r => panic!("invite: {r:?}"),
    };
    assert_eq!(bob.call(Request::Accept { link, name: "alice".into() }).await, Response::Ok);
    let mut events = alice.handle.as_ref().unwrap().subscribe();
    let ready = EngineEvent::ContactReady { name: "bob".into() };
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Ok(e) = events.recv().await
                && e == ready
            {
                return;
            }
        }
    })
    .await
    .expect("alice and bob became contacts through the network");
    wait_current(&alice, Duration::from_secs(15)).await;

    assert_eq!(connections.load(Ordering::SeqCst), 0, "a client connected to an authority's address");
    alice.stop().await;
    bob.stop().await;
}
