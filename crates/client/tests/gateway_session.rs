//! The client's gateway session against a real gateway runtime on 127.0.0.1.

use std::collections::HashMap;
use std::sync::Arc;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use qanat_client::gateway::{GatewayAddress, GatewayError, GatewaySession, MailboxAccess};
use qanat_link::{FrameSize, LinkConfig, LinkSecretKey};
use qanat_mailbox::Limits;
use qanat_mailbox::sqlite::{SqliteConfig, SqliteStore};
use qanat_mixnet::client_proto::ErrorCode;
use qanat_mixnet::{Gateway, GatewayConfig, Time};
use qanat_node::runtime::{GatewayRuntimeConfig, spawn_gateway};
use qanat_packet::{Geometry, NodeId, Scheme};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_fetch_delete_and_refusals() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let geometry = Geometry::default_for(Scheme::X25519Kem);
    let link = LinkConfig::new(FrameSize::for_packet_len(geometry.packet_len()).unwrap());
    let gw_key = Arc::new(LinkSecretKey::generate(&mut rng));
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(
            dir.path().join("m.sqlite"),
            SqliteConfig { limits: Limits::default(), max_database_bytes: None },
        )
        .unwrap(),
    );
    let any = "127.0.0.1:0".parse().unwrap();
    let gw = spawn_gateway(
        Gateway::new(GatewayConfig::new(NodeId([1; 32])), geometry.clone()),
        store,
        GatewayRuntimeConfig {
            listen: any,
            client_listen: any,
            link_key: gw_key.clone(),
            link: link.clone(),
            peers: HashMap::new(),
            max_batch: 16,
            clock: Time::ZERO,
            fault_drop_rate: 0.0,
        },
    )
    .await
    .unwrap();
    let address = GatewayAddress { addr: gw.client_addr(), link_key: gw_key.public_key().clone() };
    let me = LinkSecretKey::generate(&mut rng);
    let mut s = GatewaySession::connect(&address, &me, link.clone()).await.unwrap();
    let m = MailboxAccess { mailbox: [7; 32], credential: [8; 32] };
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
    let bad = GatewayAddress { addr: gw.client_addr(), link_key: other.public_key().clone() };
    assert!(matches!(GatewaySession::connect(&bad, &me, link).await, Err(GatewayError::Connect(_))));
    gw.shutdown().await;
}
