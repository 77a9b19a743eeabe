//! The packets both benchmarks unwrap, built in one place so that `packet` and `ratio` measure
//! the same thing and their numbers can be set side by side.

use chacha20::ChaCha20Rng;
use chacha20::rand_core::Rng;
use qanat_packet::{
    Geometry, MailboxId, NodeDelay, NodeId, PathHop, RoutingCommand, Scheme, SecretKey, Sphinx,
};
use x25519_dalek::StaticSecret;

/// Hops of every benchmarked path.
pub(crate) const HOPS: usize = 5;

/// A Qanat packet of `scheme` at its default geometry over [`HOPS`] hops (delays, then a
/// recipient), with a random payload: the codec, the hops' keys (the first one unwraps the
/// packet), the path, the payload and the packet.
pub(crate) fn qanat_packet(
    scheme: Scheme,
    rng: &mut ChaCha20Rng,
) -> (Sphinx, Vec<SecretKey>, Vec<PathHop>, Vec<u8>, Vec<u8>) {
    let sphinx = Sphinx::new(Geometry::default_for(scheme));
    let keys: Vec<SecretKey> = (0..HOPS).map(|_| SecretKey::generate(scheme, rng)).collect();
    let path: Vec<PathHop> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| PathHop {
            id: NodeId([i as u8; 32]),
            public_key: k.public_key(),
            commands: if i + 1 == HOPS {
                vec![RoutingCommand::Recipient(MailboxId([1; 32]))]
            } else {
                vec![RoutingCommand::NodeDelay(NodeDelay { delay_ms: 100 })]
            },
        })
        .collect();
    let mut payload = vec![0u8; sphinx.geometry().forward_payload_len()];
    rng.fill_bytes(&mut payload);
    let packet = sphinx.new_packet(rng, &path, &payload).unwrap();
    (sphinx, keys, path, payload, packet)
}

/// A packet of Nym's `sphinx-packet` 0.8 over [`HOPS`] hops, with a payload as large as Qanat's
/// default forward payload: the hops' secrets (the first one processes it) and the packet.
pub(crate) fn nym_packet() -> (Vec<StaticSecret>, Vec<u8>) {
    use sphinx_packet::constants::{DESTINATION_ADDRESS_LENGTH, IDENTIFIER_LENGTH, NODE_ADDRESS_LENGTH};
    use sphinx_packet::header::delays;
    use sphinx_packet::packet::builder::SphinxPacketBuilder;
    use sphinx_packet::route::{Destination, DestinationAddressBytes, Node, NodeAddressBytes};
    use std::time::Duration;
    use x25519_dalek::PublicKey;

    let secrets: Vec<StaticSecret> = (0..HOPS as u8).map(|i| StaticSecret::from([i + 1; 32])).collect();
    let route: Vec<Node> = secrets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Node::new(NodeAddressBytes::from_bytes([i as u8; NODE_ADDRESS_LENGTH]), PublicKey::from(s))
        })
        .collect();
    let delays = delays::generate_from_average_duration(HOPS, Duration::from_millis(100));
    let dest = Destination::new(
        DestinationAddressBytes::from_bytes([3u8; DESTINATION_ADDRESS_LENGTH]),
        [4u8; IDENTIFIER_LENGTH],
    );
    let message = vec![7u8; 1400];
    let packet = SphinxPacketBuilder::new()
        .with_payload_size(qanat_packet::geometry::DEFAULT_FORWARD_PAYLOAD_LEN + 32)
        .build_packet(&message, &route, &dest, &delays)
        .unwrap();
    (secrets, packet.to_bytes())
}
