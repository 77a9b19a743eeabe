//! The client's gateway session against a real gateway runtime on 127.0.0.1.

use std::collections::HashMap;
use std::sync::Arc;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use qanat_client::gateway::{GatewayAddress, GatewayError, GatewaySession, MailboxAccess};
use qanat_client::pull::PullClient;
use qanat_link::{FrameSize, LinkConfig, LinkMetrics, LinkSecretKey};
use qanat_mailbox::sqlite::{SqliteConfig, SqliteStore};
use qanat_mailbox::{Append, ItemId, MailboxId, MailboxStore as _, UnixSeconds};
use qanat_mixnet::client_proto::ErrorCode;
use qanat_mixnet::{Gateway, GatewayConfig, MailboxItem, UnixMicros};
use qanat_node::runtime::{DocumentCache, GatewayRuntimeConfig, spawn_gateway};
use qanat_packet::{Geometry, NodeId, Scheme};

struct Gw {
    address: GatewayAddress,
    link: LinkConfig,
    store: Arc<SqliteStore>,
    handle: qanat_node::runtime::GatewayHandle,
    documents: DocumentCache,
    _dir: tempfile::TempDir,
}

async fn gateway(rng: &mut ChaCha20Rng) -> Gw {
    let geometry = Geometry::default_for(Scheme::X25519Kem);
    let link = LinkConfig::new(FrameSize::for_packet_len(geometry.packet_len()).unwrap());
    let gw_key = Arc::new(LinkSecretKey::generate(rng));
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("m.sqlite"), SqliteConfig::default()).unwrap());
    let any = "127.0.0.1:0".parse().unwrap();
    let documents = DocumentCache::default();
    let handle = spawn_gateway(
        Gateway::new(GatewayConfig::new(NodeId([1; 32])), geometry.clone()),
        store.clone(),
        GatewayRuntimeConfig {
            listen: any,
            client_listen: any,
            link_key: gw_key.clone(),
            link: link.clone(),
            peers: HashMap::new(),
            max_batch: 16,
            clock: UnixMicros::ZERO,
            fault_drop_rate: 0.0,
            documents: documents.clone(),
            pull_answer_delay: qanat_node::runtime::PULL_ANSWER_DELAY,
            clients: Default::default(),
        },
    )
    .await
    .unwrap();
    let address = GatewayAddress { addr: handle.client_addr(), link_key: gw_key.public_key().clone() };
    Gw { address, link, store, handle, documents, _dir: dir }
}

/// A pull's answer is `1 + limit` frames whatever waits; it registers and deletes through its
/// slots, reads only this session's mailboxes, takes turns between them, and carries the
/// directory document the client asks for in the slots items leave free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_answers_are_always_the_same_length() {
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let gw = gateway(&mut rng).await;
    let metrics = Arc::new(LinkMetrics::default());
    let me = LinkSecretKey::generate(&mut rng);
    let mut s =
        GatewaySession::connect_counted(&gw.address, &me, gw.link.clone(), metrics.clone()).await.unwrap();
    let (busy, quiet) = (
        MailboxAccess { mailbox: MailboxId([1; 32]), credential: [2; 32] },
        MailboxAccess { mailbox: MailboxId([3; 32]), credential: [4; 32] },
    );
    // The mailboxes are registered through a pull's operation slots.
    let mut core = PullClient::new(1 << 20);
    core.start_session([busy, quiet]);
    let a = s.pull(core.poll_pull(2, 0)).await.unwrap();
    assert!(core.handle_answer(a).unwrap().items.is_empty());
    let item = |n: u8| MailboxItem { id: qanat_packet::SurbId([n; 16]), body: vec![n; 1500] }.encode();
    let mut appends: Vec<Append> = (0..5u8)
        .map(|n| Append { mailbox: busy.mailbox, item_id: ItemId([n; 32]), payload: item(n) })
        .collect();
    appends.push(Append { mailbox: quiet.mailbox, item_id: ItemId([9; 32]), payload: item(9) });
    gw.store.append(appends, UnixSeconds(1_800_000_000)).await.unwrap();

    let mut seen = Vec::new();
    let mut frames = Vec::new();
    let access = |m: MailboxId| if m == busy.mailbox { busy } else { quiet };
    // The gateway holds epoch 5's document: it rides in the slots the items leave free.
    let doc: Vec<u8> = (0..6000u32).map(|i| (i % 251) as u8).collect();
    gw.documents.insert(5, doc.clone());
    let mut got_doc = None;
    for _ in 0..8 {
        let before = metrics.snapshot().frames_in;
        let answer = s.pull(core.poll_pull(2, if got_doc.is_some() { 0 } else { 5 })).await.unwrap();
        frames.push(metrics.snapshot().frames_in - before);
        let p = core.handle_answer(answer).unwrap();
        if let Some(d) = p.document {
            got_doc = Some(d);
        }
        for (m, seq, item) in &p.items {
            seen.push((*m, MailboxItem::decode(item).unwrap().body[0]));
            core.delete(access(*m), *seq);
        }
    }
    assert_eq!(got_doc, Some((5, doc)), "the document arrives whole through the pulls");
    // Turns: the quiet mailbox's item comes early, not after all the busy one's.
    let quiet_at = seen.iter().position(|(m, _)| *m == quiet.mailbox).unwrap();
    assert!(quiet_at < 4, "{quiet_at}");
    assert_eq!(frames, vec![3; 8], "the answer's length never changes");
    let mut payloads: Vec<u8> = seen.iter().map(|(_, n)| *n).collect();
    payloads.sort_unstable();
    assert_eq!(payloads, vec![0, 1, 2, 3, 4, 9], "each item exactly once");
    let a = s.pull(core.poll_pull(2, 0)).await.unwrap();
    let last = core.handle_answer(a).unwrap();
    assert!(last.items.is_empty() && !last.more);

    // Another session sees nothing of these mailboxes without registering them.
    let other = LinkSecretKey::generate(&mut rng);
    let mut t = GatewaySession::connect(&gw.address, &other, gw.link.clone()).await.unwrap();
    gw.store
        .append(
            vec![Append { mailbox: busy.mailbox, item_id: ItemId([7; 32]), payload: item(7) }],
            UnixSeconds(1_800_000_001),
        )
        .await
        .unwrap();
    let mut other_core = PullClient::new(1 << 20);
    other_core.delete(MailboxAccess { mailbox: busy.mailbox, credential: [0; 32] }, u64::MAX);
    let a = t.pull(other_core.poll_pull(4, 0)).await.unwrap();
    let p = other_core.handle_answer(a).unwrap();
    assert!(p.items.is_empty());
    // ... and its deletion, without the credential, did nothing.
    let a = s.pull(core.poll_pull(2, 0)).await.unwrap();
    assert_eq!(core.handle_answer(a).unwrap().items.len(), 1);
    t.close().await;
    s.close().await;
    gw.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_fetch_delete_and_refusals() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let gw = gateway(&mut rng).await;
    let (address, link) = (gw.address.clone(), gw.link.clone());
    let me = LinkSecretKey::generate(&mut rng);
    let mut s = GatewaySession::connect(&address, &me, link.clone()).await.unwrap();
    let m = MailboxAccess { mailbox: MailboxId([7; 32]), credential: [8; 32] };
    s.register(m).await.unwrap();
    s.register(m).await.unwrap();
    assert_eq!(s.fetch(m, 0, 10).await.unwrap(), (vec![], false));
    s.delete_up_to(m, 5).await.unwrap();
    let wrong = MailboxAccess { credential: [9; 32], ..m };
    assert!(matches!(s.fetch(wrong, 0, 10).await, Err(GatewayError::Refused(ErrorCode::Unauthorized))));
    // The session goes on after a refusal.
    assert_eq!(s.fetch(m, 0, 10).await.unwrap(), (vec![], false));
    s.unregister(m).await.unwrap();
    assert!(s.fetch(m, 0, 10).await.is_err());
    s.close().await;

    // The wrong gateway key: the handshake fails.
    let other = LinkSecretKey::generate(&mut rng);
    let bad = GatewayAddress { addr: gw.handle.client_addr(), link_key: other.public_key().clone() };
    assert!(matches!(GatewaySession::connect(&bad, &me, link).await, Err(GatewayError::Connect(_))));
    gw.handle.shutdown().await;
}
