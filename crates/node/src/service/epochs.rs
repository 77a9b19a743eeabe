//! The IO-free half of a mix's or gateway's life in the directory: which descriptor to upload
//! when, which documents to fetch when, and what a verified document means for the runtime
//! ([`EpochUpdate`]). The service loop in [`super`] does the IO; everything here takes `now` and
//! returns decisions, so it is tested without sockets or clocks.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use qanat_link::LinkPublicKey;
use qanat_mixnet::{EpochWindow, Topology, UnixMicros};
use qanat_packet::{Geometry, NodeId, SecretKey};
use qanat_pki::{Document, Epoch, EpochPeriod, Position, UnixMillis};

use crate::runtime::{EpochUpdate, Peer};

/// How long after its end (and before its start) an epoch's packet key still unwraps packets:
/// the network's rule, [`EpochPeriod::key_grace`] (a quarter of the period, at most five
/// minutes), which clients follow too. It covers packets built near the end of an epoch that
/// are still in flight, and clocks a little apart.
pub fn grace(period: EpochPeriod) -> Duration {
    period.key_grace()
}

/// How long a gateway's mailbox store remembers the id of a message its owner deleted
/// (`qanat_mailbox::Limits::remember_deleted_ids`), counted from when it was stored: the epoch
/// period plus twice the key grace. The id is the packet's replay tag at the gateway, which only
/// the packet key of one epoch produces, and that key unwraps packets from `start − grace` to
/// `end + grace` of its epoch (`window`), so a copy of the packet (a last mix resending it, see
/// `qanat_mixnet::resend`, which gives up after `resend_give_up`, at most the grace; or a
/// replayed copy) can reach the store at most `period + 2 × grace` after the first was stored.
/// 30 minutes for the default 20-minute epoch.
pub fn dedup_window(period: EpochPeriod) -> Duration {
    Duration::from_millis(period.as_millis()).saturating_add(grace(period).saturating_mul(2))
}

/// The window of `epoch`'s packet key on the core's clock.
pub fn window(epoch: Epoch, period: EpochPeriod) -> EpochWindow {
    EpochWindow {
        start: UnixMicros::from_unix_millis(epoch.start(period)),
        end: UnixMicros::from_unix_millis(epoch.end(period)),
        grace: grace(period),
    }
}

/// The epoch a node uploads its descriptor for at `now`: the next one until the authorities
/// vote on it (with a margin of a sixteenth of the period for the upload to arrive), else the
/// one after.
pub fn upload_target(now: UnixMillis, period: EpochPeriod) -> Epoch {
    let cur = Epoch::at(now, period);
    let margin = period.as_millis() / 16;
    if now.plus_millis(margin) < cur.schedule(period).vote() { cur.next() } else { cur.next().next() }
}

/// The documents worth asking for at `now`, given those already held: the current epoch's, and
/// the next one's once the authorities publish it.
pub fn wanted_documents(now: UnixMillis, period: EpochPeriod, held: &BTreeSet<Epoch>) -> Vec<Epoch> {
    let cur = Epoch::at(now, period);
    let mut out = Vec::new();
    if !held.contains(&cur) {
        out.push(cur);
    }
    if now >= cur.schedule(period).publish() && !held.contains(&cur.next()) {
        out.push(cur.next());
    }
    out
}

/// Why a verified document cannot be used by this node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// Its packet geometry differs from this node's configuration.
    #[error(
        "the directory's packet geometry differs from this node's [network] settings (scheme, nr_hops, forward_payload_len)"
    )]
    Geometry,
    /// Its epoch period differs from this node's configuration.
    #[error("the directory's epoch period differs from this node's network.epoch_period_secs")]
    Period,
}

/// What a verified `doc` tells the runtime of node `me`, whose packet key for the document's
/// epoch is `key`. A node of the document whose link key does not parse, or whose address
/// `resolve` cannot turn into a socket address, is left out of the peers (and counted in the
/// second value).
pub fn update_from(
    doc: &Document,
    me: NodeId,
    key: Option<SecretKey>,
    geometry: &Geometry,
    period: EpochPeriod,
    resolve: impl Fn(&str) -> Option<SocketAddr>,
) -> Result<(EpochUpdate, usize), Unusable> {
    let params = doc.parameters();
    if params.geometry() != geometry {
        return Err(Unusable::Geometry);
    }
    if params.epoch_period() != period {
        return Err(Unusable::Period);
    }
    let epoch = doc.epoch();
    let topology = Topology::from_document(doc);
    let mut peers = HashMap::new();
    let mut unreachable = 0;
    for n in doc.nodes() {
        if n.id() == me {
            continue;
        }
        let d = n.descriptor();
        let (Ok(link_key), Some(addr)) =
            (LinkPublicKey::from_bytes(d.link_key()), resolve(d.address().as_str()))
        else {
            unreachable += 1;
            continue;
        };
        peers.insert(n.id(), Peer { addr, link_key, gateway: matches!(n.position(), Position::Gateway) });
    }
    // Our key only if the directory lists us: otherwise nobody routes to us this epoch.
    let key = key.filter(|_| doc.node(&me).is_some());
    let update = EpochUpdate {
        epoch: epoch.0,
        key,
        window: window(epoch, period),
        topology,
        peers,
        mean_delay: Duration::from_millis(u64::from(params.mean_delay_ms())),
        loop_rate: params.lambda_m().per_second(),
        client_rate: params.max_client_rate(),
    };
    Ok((update, unreachable))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 80_000;

    fn period() -> EpochPeriod {
        EpochPeriod::from_millis(P).unwrap()
    }

    #[test]
    fn uploads_for_the_next_epoch_until_its_vote_then_the_one_after() {
        let p = period();
        let e = Epoch(1_000);
        let start = e.start(p);
        assert_eq!(upload_target(start, p), e.next());
        // The vote is at P/2; the margin is P/16.
        assert_eq!(upload_target(start.plus_millis(P / 2 - P / 16 - 1), p), e.next());
        assert_eq!(upload_target(start.plus_millis(P / 2 - P / 16), p), e.plus(2));
        assert_eq!(upload_target(start.plus_millis(P - 1), p), e.plus(2));
    }

    #[test]
    fn fetches_the_current_document_and_the_next_once_published() {
        let p = period();
        let e = Epoch(7);
        let start = e.start(p);
        let mut held = BTreeSet::new();
        assert_eq!(wanted_documents(start, p, &held), vec![e]);
        held.insert(e);
        assert!(wanted_documents(start.plus_millis(P / 2), p, &held).is_empty());
        assert_eq!(wanted_documents(start.plus_millis(7 * P / 8), p, &held), vec![e.next()]);
        held.insert(e.next());
        assert!(wanted_documents(start.plus_millis(7 * P / 8), p, &held).is_empty());
        // A node started late in an epoch wants both.
        assert_eq!(wanted_documents(start.plus_millis(P - 1), p, &BTreeSet::new()), vec![e, e.next()]);
    }

    #[test]
    fn windows_cover_the_epoch_with_grace() {
        let p = period();
        let w = window(Epoch(3), p);
        assert_eq!(w.end.saturating_since(w.start), Duration::from_millis(P));
        assert_eq!(w.grace, Duration::from_millis(P / 4));
        assert_eq!(grace(EpochPeriod::DEFAULT), Duration::from_secs(300));
        assert_eq!(dedup_window(EpochPeriod::DEFAULT), Duration::from_secs(30 * 60));
        assert!(dedup_window(EpochPeriod::DEFAULT) <= qanat_mailbox::Limits::DEFAULT_REMEMBER_DELETED_IDS);
        assert_eq!(w.start, UnixMicros(Epoch(3).start(p).as_millis() * 1000));
    }

    /// A committed document of `version` (`crates/pki/tests/data/directory-v{version}/`: epoch
    /// 100,001 of an 8-second period, X25519-KEM), verified as the service verifies one.
    fn fixture_document(version: u8) -> Document {
        let (doc, keys): (&[u8], &[u8]) = match version {
            1 => (
                include_bytes!("../../../pki/tests/data/directory-v1/document.bin"),
                include_bytes!("../../../pki/tests/data/directory-v1/authorities.bin"),
            ),
            _ => (
                include_bytes!("../../../pki/tests/data/directory-v2/document.bin"),
                include_bytes!("../../../pki/tests/data/directory-v2/authorities.bin"),
            ),
        };
        let keys =
            keys.chunks(32).map(|k| qanat_pki::IdentityKey::from_bytes(k.try_into().unwrap()).unwrap());
        let set = qanat_pki::AuthoritySet::new(keys).unwrap();
        Document::verify(doc, &set, Epoch(100_001)).unwrap()
    }

    /// A node takes documents of either version; a gateway budgets client sessions for
    /// `fast_factor_max·λ_P + λ_L + λ_D`: in version 1, λ_P + λ_L + λ_D (0.3 a second at the
    /// defaults), in version 2 at its default fast factor of 4, 0.9.
    #[test]
    fn documents_of_either_version_set_the_client_rate_for_the_fastest_client() {
        let geometry = Geometry::default_for(qanat_packet::Scheme::X25519Kem);
        let period = EpochPeriod::from_secs(8).unwrap();
        for (version, rate) in [(1, 0.3), (2, 0.9)] {
            let doc = fixture_document(version);
            assert_eq!(doc.parameters().version(), version);
            let (u, _) = update_from(&doc, NodeId([0; 32]), None, &geometry, period, |_| None).unwrap();
            assert!((u.client_rate - rate).abs() < 1e-9, "version {version}: {}", u.client_rate);
            assert_eq!(u.epoch, 100_001);
        }
    }
}
