//! Three authority runtimes over real sockets on 127.0.0.1 with a 4-second epoch: four nodes
//! (played by the test) upload signed descriptors over links, and every authority then serves the
//! same majority-signed document for the next epoch, holding every node.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use qanat_link::{
    Connection, Frame, FrameSize, LinkConfig, LinkMetrics, LinkPublicKey, LinkSecretKey, connect,
};
use qanat_network::wall_now;
use qanat_node::runtime::authority_proto::{MAX_RESPONSE_LEN, Message, Reassembler, to_chunks};
use qanat_node::runtime::{AuthorityLink, AuthorityRuntimeConfig, spawn_authority};
use qanat_packet::{Geometry, Scheme, SecretKey};
use qanat_pki::{
    Authority, AuthorityConfig, AuthoritySet, Document, Epoch, EpochPeriod, IdentitySecret, LinkAddress,
    NodeDescriptor, Parameters, ParametersConfig, Role,
};

const SCHEME: Scheme = Scheme::X25519Kem;
const PERIOD_MS: u64 = 4_000;

fn size() -> FrameSize {
    FrameSize::for_packet_len(Geometry::default_for(SCHEME).packet_len()).unwrap()
}

fn link_config() -> LinkConfig {
    let mut c = LinkConfig::new(size());
    c.reconnect_max = Duration::from_millis(500);
    c
}

/// One request/answer exchange on a node's connection.
async fn ask(conn: &mut Connection<LinkPublicKey>, request: Message) -> Message {
    for c in to_chunks(&request, size()).unwrap() {
        conn.send(Frame::Control(c)).await.unwrap();
    }
    let mut r = Reassembler::new(size(), MAX_RESPONSE_LEN).unwrap();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), conn.recv()).await.unwrap().unwrap();
        if let Frame::Control(b) = frame
            && let Some(m) = r.push(&b).unwrap()
        {
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_authorities_agree_on_a_document_of_uploaded_nodes() {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let period = EpochPeriod::from_millis(PERIOD_MS).unwrap();
    let params =
        Parameters::new(ParametersConfig { epoch_period: period, ..ParametersConfig::default_for(SCHEME) })
            .unwrap();

    let auth_ids: Vec<IdentitySecret> = (0..3).map(|_| IdentitySecret::generate(&mut rng)).collect();
    let auth_links: Vec<Arc<LinkSecretKey>> =
        (0..3).map(|_| Arc::new(LinkSecretKey::generate(&mut rng))).collect();
    let set = AuthoritySet::new(auth_ids.iter().map(|s| s.public())).unwrap();
    let node_ids: Vec<IdentitySecret> = (0..4).map(|_| IdentitySecret::generate(&mut rng)).collect();
    let node_links: Vec<LinkSecretKey> = (0..4).map(|_| LinkSecretKey::generate(&mut rng)).collect();
    let allowed: BTreeSet<_> = node_ids.iter().map(|s| s.public()).collect();

    // Reserve three ports first, so each authority knows the others' addresses.
    let mut addrs = Vec::new();
    for _ in 0..3 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        addrs.push(l.local_addr().unwrap());
    }
    let mut handles = Vec::new();
    for i in 0..3 {
        let core = Authority::new(
            AuthorityConfig {
                identity: auth_ids[i].clone(),
                authorities: set.clone(),
                parameters: params.clone(),
                allowed_nodes: allowed.clone(),
            },
            &mut rng,
        )
        .unwrap();
        let peers = (0..3)
            .filter(|&j| j != i)
            .map(|j| AuthorityLink {
                identity: auth_ids[j].public(),
                addr: addrs[j],
                link_key: auth_links[j].public_key().clone(),
            })
            .collect();
        let config = AuthorityRuntimeConfig {
            listen: addrs[i],
            link_key: auth_links[i].clone(),
            link: link_config(),
            peers,
            keep_documents: 3,
            peer_queue: 64,
        };
        handles.push(spawn_authority(core, config).await.unwrap());
    }

    // Nodes connect to every authority.
    let mut conns = Vec::new();
    for n in &node_links {
        let mut per_node = Vec::new();
        for (i, h) in handles.iter().enumerate() {
            let c = connect(
                h.local_addr(),
                n,
                auth_links[i].public_key(),
                link_config(),
                Arc::new(LinkMetrics::default()),
            )
            .await
            .unwrap();
            per_node.push(c);
        }
        conns.push(per_node);
    }

    // The epoch whose vote is far enough ahead for the uploads to arrive before it.
    let now = wall_now();
    let cur = Epoch::at(now, period);
    let target = if cur.schedule(period).vote().as_millis() > now.as_millis() + 1_000 {
        cur.next()
    } else {
        cur.next().next()
    };

    // Three mixes (one per layer) and one gateway.
    let mut descriptors = Vec::new();
    for (k, (id, link)) in node_ids.iter().zip(&node_links).enumerate() {
        let role = if k == 3 { Role::Gateway } else { Role::Mix };
        let keys = (0..3).map(|_| SecretKey::generate(SCHEME, &mut rng).public_key()).collect();
        let address = LinkAddress::parse(&format!("127.0.0.1:{}", 30_000 + k)).unwrap();
        let d = NodeDescriptor::new(target, id.public(), role, address, link.public_key().to_bytes(), keys)
            .unwrap()
            .sign(id)
            .unwrap();
        descriptors.push(d);
    }
    // Nodes upload until the vote, every heartbeat (the authorities vote only for nodes heard
    // from lately).
    let vote = Epoch(target.0 - 1).schedule(period).vote();
    loop {
        for (k, d) in descriptors.iter().enumerate() {
            for c in &mut conns[k] {
                assert_eq!(ask(c, Message::UploadDescriptor(d.as_bytes().to_vec())).await, Message::Ok);
            }
        }
        if wall_now().as_millis() + 500 >= vote.as_millis() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Nothing yet for the target epoch.
    assert_eq!(ask(&mut conns[0][0], Message::GetDocument(target)).await, Message::NotYet);

    // Wait for publication (7P/8 into the epoch before the target), then until every authority
    // serves the same bytes signed by all three.
    let publish = target.start(period).as_millis() - PERIOD_MS / 8;
    let wait = publish.saturating_sub(wall_now().as_millis());
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    let docs = loop {
        let mut docs = Vec::new();
        // Node i asks authority i.
        for (i, c) in conns.iter_mut().enumerate().take(3) {
            match ask(&mut c[i], Message::GetDocument(target)).await {
                Message::Document(d) => docs.push(d),
                Message::NotYet => {}
                other => panic!("unexpected answer {other:?}"),
            }
        }
        let all_signed = docs.len() == 3
            && docs.iter().all(|d| Document::verify(d, &set, target).unwrap().signers().len() == 3);
        if all_signed && docs.windows(2).all(|w| w[0] == w[1]) {
            break docs;
        }
        assert!(tokio::time::Instant::now() < deadline, "no agreement: {} documents", docs.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let doc = Document::verify(&docs[0], &set, target).unwrap();
    assert_eq!(doc.epoch(), target);
    let ids: BTreeSet<_> = doc.nodes().iter().map(|n| n.id()).collect();
    let want: BTreeSet<_> = node_ids.iter().map(|s| s.public().node_id()).collect();
    assert_eq!(ids, want);
    assert_eq!(doc.gateways().count(), 1);
    // Its routes, as nodes and clients take them: a mix per layer and the gateway, each with its
    // packet key for the epoch.
    let topology = qanat_mixnet::Topology::from_document(&doc);
    assert_eq!(topology.epoch, target.0);
    assert_eq!(topology.layers.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
    assert_eq!(topology.gateways.len(), 1);
    for hop in topology.layers.iter().flatten().chain(&topology.gateways) {
        assert_eq!(Some(&hop.key), doc.packet_key(&hop.id, target));
    }
    // Documents are larger than one frame: they came in chunks.
    assert!(docs[0].len() > size().max_control_len());
    for h in &handles {
        assert_eq!(h.document(target).as_deref(), Some(&docs[0][..]));
        assert_eq!(h.metrics.protocol_errors.load(std::sync::atomic::Ordering::Relaxed), 0);
    }
    for h in handles {
        h.shutdown().await;
    }
}
