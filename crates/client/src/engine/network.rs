//! The directory as the engine uses it: the current document's topology, the network's
//! parameters and rates, and until when its keys may carry our packets.

use std::time::Duration;

use qanat_mixnet::{Topology, UnixMicros};
use qanat_packet::{MailboxId, NodeId, Sphinx};
use qanat_pki::{Document, EpochPeriod};

use crate::invite;
use qanat_mixnet::sending::{self, MessageId, NetworkView, ResendPolicy, Schedule};

use super::persist::Write;
use super::rows::{NS_OUT, OutRec};
use super::{Engine, EngineError};

/// The directory as the engine uses it.
pub(super) struct Network {
    pub(super) sphinx: Sphinx,
    pub(super) view: NetworkView,
    pub(super) own_gateway: invite::InviteGateway,
    /// Until when our own packets are built with `view`'s keys ([`keys_usable_until`]).
    pub(super) keys_until: UnixMicros,
    /// The document's parameters (rates, delays, geometry).
    pub(super) params: qanat_pki::Parameters,
}

/// Until when the engine builds its own packets with the keys of `epoch`'s document: the end of
/// the epoch plus half the key grace ([`EpochPeriod::key_grace`]). Mixes and gateways accept
/// those keys until the end plus the whole grace; the other half is for the packet's way through
/// them (the link, the mixes' delays, a replay log's write at each hop) and for clocks a little
/// apart. After it, a packet built with them is dropped at the first hop, so a message put in it
/// would be lost and wait for the outbox's resend (tens of seconds): it waits for the next
/// epoch's document instead, which the runtime applies as soon as it comes.
pub(super) fn keys_usable_until(epoch: u64, period: EpochPeriod) -> UnixMicros {
    UnixMicros::from_unix_millis(qanat_pki::Epoch(epoch).end(period)) + period.key_grace() / 2
}

impl Engine {
    /// This profile's sending rates under the current directory, once it has one.
    pub fn rates(&self) -> Option<sending::Rates> {
        // The profile's own rates, not those of a fast file running (its pulls, which follow
        // these, must not change with it: that would show on the link too).
        self.network.as_ref().map(|n| self.traffic.rates(&n.params))
    }

    /// What the network allows of file transfers under the current document
    /// (`docs/ATTACHMENTS.md` §3.12): the limits a version-2 document sets, or what a version-1
    /// document means (1 MiB, no fast mode); `None` before the first document.
    pub fn file_limits(&self) -> Option<qanat_pki::FileLimits> {
        self.network.as_ref().map(|n| n.params.file_limits())
    }

    /// Whether the engine has a directory document (and so can build packets).
    pub fn has_network(&self) -> bool {
        self.network.is_some()
    }

    /// What this profile's traffic costs while idle, in bytes per day to and from the gateway
    /// ([`TrafficProfile::idle_bytes_per_day`]), under the last document's parameters; `None`
    /// before the first document.
    ///
    /// [`TrafficProfile::idle_bytes_per_day`]: qanat_mixnet::sending::TrafficProfile::idle_bytes_per_day
    pub fn idle_bytes_per_day(&self) -> Option<(f64, f64)> {
        self.idle_cost
    }

    /// Takes the directory's verified document for the current epoch: packets are built with it
    /// from now on, at the rates it sets for this profile.
    pub fn set_document(&mut self, doc: &Document) -> Result<(), EngineError> {
        let gw_id = NodeId(self.settings.gateway);
        let node = doc.node(&gw_id).ok_or(EngineError::GatewayMissing)?;
        let d = node.descriptor();
        let own_gateway = invite::InviteGateway::new(gw_id, d.address().clone(), d.link_key().to_vec())?;
        self.set_network(Topology::from_document(doc), doc.parameters(), own_gateway)
    }

    /// [`Engine::set_document`] from its parts: the epoch's topology, the network's parameters
    /// and this profile's gateway as invitations name it.
    pub fn set_network(
        &mut self,
        topology: Topology,
        params: &qanat_pki::Parameters,
        own_gateway: invite::InviteGateway,
    ) -> Result<(), EngineError> {
        if *own_gateway.node_id() != NodeId(self.settings.gateway) {
            return Err(EngineError::GatewayMissing);
        }
        let geometry = params.geometry().clone();
        // A network keeps its geometry (its nodes refuse a document of another): the fragments
        // in the outbox are cut for it. And one whose payload has no room for a fragment beside
        // its SURB cannot carry a message. Either document is refused whole: nothing changes.
        if let Some(net) = &self.network
            && *net.sphinx.geometry() != geometry
        {
            return Err(EngineError::Geometry("it differs from the one in use"));
        }
        if sending::fragment_capacity(&geometry).is_err() {
            return Err(EngineError::Geometry("its payload has no room for a fragment beside a SURB"));
        }
        let first_time = self.network.is_none();
        let view = NetworkView {
            topology,
            mean_delay: Duration::from_millis(u64::from(params.mean_delay_ms())),
            gateway: NodeId(self.settings.gateway),
        };
        self.apply_traffic(params, &view);
        let keys_until = keys_usable_until(view.topology.epoch, params.epoch_period());
        self.network = Some(Network {
            sphinx: Sphinx::new(geometry.clone()),
            view,
            own_gateway,
            keys_until,
            params: params.clone(),
        });
        if first_time {
            // Messages saved before a restart go back in the queue, with their ids.
            let mut recs: Vec<(MessageId, OutRec)> =
                self.out_recs.iter().map(|(k, v)| (*k, v.clone())).collect();
            recs.sort_by_key(|(id, _)| id.0);
            for (id, rec) in recs {
                let reply = MailboxId(self.settings.home_mailbox);
                if let Err(e) = self.outbox.queue_as(id, &geometry, rec.route.route(), reply, &rec.bytes) {
                    // Queued before the first document (no size to check then): too long for
                    // this network, as in `queue_out`.
                    tracing::warn!(bytes = rec.bytes.len(), "a saved message of ours cannot be sent: {e}");
                    self.stats.too_long += 1;
                    self.out_recs.remove(&id);
                    self.writes.push(Write::Del(NS_OUT, id.0.to_vec()));
                }
            }
        }
        Ok(())
    }

    /// Sets this profile's rates, idle cost and resend policy under `params` (the directory's)
    /// and `view`'s delays.
    pub(super) fn apply_traffic(&mut self, params: &qanat_pki::Parameters, view: &NetworkView) {
        let geometry = params.geometry();
        let mut rates = self.traffic.rates(params);
        // A fast file of ours raises the payload rate, flat, until it is done (docs/PROTOCOL.md
        // "Files": what that shows).
        let fast = self.fast_factor(params);
        rates.payload *= fast;
        self.idle_cost = qanat_link::FrameSize::for_packet_len(geometry.packet_len())
            .ok()
            .map(|size| self.traffic.idle_bytes_per_day(params, size.wire_len()));
        // The wait for an acknowledgement: a slot at each end, the delays of every hop both ways,
        // and a fetch at each end; doubled for the tail.
        let slot = Duration::from_secs_f64(1.0 / rates.payload.max(1e-6));
        let hops = view.mean_delay * (2 * params.mix_layers() as u32);
        let first = (slot * 2 + hops + self.config.fetch_interval * 2) * 2;
        self.outbox.set_policy(ResendPolicy {
            first: first.max(Duration::from_secs(1)),
            max: (first * 16).min(Duration::from_secs(1800)),
        });
        self.apply_file_timing(first.max(Duration::from_secs(1)), slot, hops);
        if self.schedule.as_ref().is_none_or(|s| s.rates() != rates) {
            self.schedule = Some(Schedule::new(rates));
        }
    }

    pub(super) fn network(&self) -> Result<&Network, EngineError> {
        self.network.as_ref().ok_or(EngineError::NoNetwork)
    }
}
