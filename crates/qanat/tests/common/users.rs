//! Users of a devnet in this process: real clients (encrypted profiles, the long-running
//! runtime, gateway sessions) that the devnet tests drive through their control API.

use std::path::Path;
use std::time::{Duration, SystemTime};

use qanat_client::control::{Request, Response};
use qanat_client::engine::{Engine, EngineConfig, EngineEvent};
use qanat_client::runtime::{self, ClientHandle, RuntimeConfig};
use qanat_client::store::{Passphrase, Profile, danger};
use qanat_mixnet::sending::TrafficProfile;
use qanat_node::config::ClientNetwork;
use tokio::sync::broadcast;

pub(crate) fn engine_config() -> EngineConfig {
    // Twice the delivery delay between members, and then some.
    let mut mls = EngineConfig::default().mls;
    mls.decision_window = Duration::from_secs(6);
    EngineConfig { fetch_interval: Duration::from_millis(100), mls, ..EngineConfig::default() }
}

pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) home: std::path::PathBuf,
    pub(crate) gateway: usize,
    pub(crate) handle: Option<ClientHandle>,
    pub(crate) events: Option<broadcast::Receiver<EngineEvent>>,
    pub(crate) seen: Vec<EngineEvent>,
}

impl User {
    pub(crate) fn new(root: &Path, name: &str, network: &ClientNetwork, gateway: usize) -> Self {
        let home = root.join(name);
        let mut p =
            Profile::create_with(&home, &Passphrase::new("pw"), danger::weak_kdf_params(8, 1, 1).unwrap())
                .unwrap();
        Engine::init(
            &mut p,
            network.gateways[gateway].identity.node_id(),
            TrafficProfile::Standard,
            &mut rand::rng(),
        )
        .unwrap();
        drop(p);
        Self { name: name.into(), home, gateway, handle: None, events: None, seen: Vec::new() }
    }

    pub(crate) fn start(&mut self, network: &ClientNetwork) {
        let p = Profile::open(&self.home, &Passphrase::new("pw")).unwrap();
        let engine = Engine::open(p, engine_config(), SystemTime::now()).unwrap();
        let h = runtime::start(
            engine,
            RuntimeConfig {
                network: network.clone(),
                gateway: network.gateways[self.gateway].clone(),
                fetch_interval: Duration::from_millis(100),
            },
        )
        .unwrap();
        self.events = Some(h.subscribe());
        self.handle = Some(h);
    }

    pub(crate) async fn stop(&mut self) {
        // Whatever was emitted up to the stop is kept: the subscription is read once the client
        // has stopped, then dropped.
        if let Err(e) = self.handle.take().unwrap().shutdown().await {
            panic!("{}: the client stopped with an error: {e}", self.name);
        }
        self.pump();
        self.events = None;
    }

    pub(crate) async fn call(&self, r: Request) -> Response {
        self.handle.as_ref().unwrap().call(r).await
    }

    pub(crate) fn pump(&mut self) {
        if let Some(rx) = &mut self.events {
            loop {
                match rx.try_recv() {
                    Ok(e) => self.seen.push(e),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        panic!("{}: lost {n} events", self.name)
                    }
                    Err(_) => break,
                }
            }
        }
    }

    pub(crate) fn texts_from(&self, thread: &str) -> Vec<(String, String)> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Message { thread: t, sender, text, .. } if t == thread => {
                    Some((sender.clone(), text.clone()))
                }
                _ => None,
            })
            .collect()
    }

    pub(crate) fn has(&self, e: &EngineEvent) -> bool {
        self.seen.contains(e)
    }
}

pub(crate) async fn until(
    users: &mut [&mut User],
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&[&mut User]) -> bool,
) {
    let end = tokio::time::Instant::now() + limit;
    loop {
        for u in users.iter_mut() {
            u.pump();
        }
        if done(users) {
            return;
        }
        assert!(tokio::time::Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn wait_network(u: &User) {
    for _ in 0..600 {
        if let Response::Status { network: true, .. } = u.call(Request::Status).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} never got the directory", u.name);
}

pub(crate) async fn connect(a: &mut User, a_calls_b: &str, b: &mut User, b_calls_a: &str) {
    let link = match a.call(Request::Invite { name: a_calls_b.into() }).await {
        Response::Invitation { link, .. } => link,
        r => panic!("invite: {r:?}"),
    };
    assert_eq!(b.call(Request::Accept { link, name: b_calls_a.into() }).await, Response::Ok);
    let (ea, eb) = (
        EngineEvent::ContactReady { name: a_calls_b.into() },
        EngineEvent::ContactReady { name: b_calls_a.into() },
    );
    until(&mut [a, b], Duration::from_secs(120), "a contact", |u| u[0].has(&ea) && u[1].has(&eb)).await;
}

/// Waits until `u` sees `n` other members in `group` (its commits merged): what a member sends
/// before it merged an add does not reach the newcomer, as in any MLS group.
pub(crate) async fn wait_members(u: &User, group: &str, n: usize) {
    for _ in 0..1800 {
        if let Response::Members { list, .. } = u.call(Request::Members { name: group.into() }).await
            && list.len() == n
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} never saw {n} other members in {group}", u.name);
}

/// `u` says yes to the invitation into `group` once it has arrived (joining waits for it).
pub(crate) async fn accept_group(u: &User, group: &str) {
    for _ in 0..1800 {
        if let Response::GroupInvitations { list } = u.call(Request::GroupInvitations).await
            && let Some(i) = list.iter().find(|i| i.group == group)
        {
            let r = u.call(Request::GroupAccept { invitation: i.id.clone(), name: None }).await;
            assert_eq!(r, Response::Joining { name: group.into() }, "{} accepts {group}", u.name);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} was never invited to {group}", u.name);
}

pub(crate) async fn send(u: &User, to: &str, text: &str) {
    match u.call(Request::Send { to: to.into(), text: text.into() }).await {
        Response::Sent { .. } => {}
        r => panic!("{} send to {to}: {r:?}", u.name),
    }
}
