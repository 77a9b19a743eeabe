//! The node's Prometheus metrics: counters and gauges of the runtime, its core, its links and
//! its place in the directory, rendered in the text exposition format. No metric has a label
//! that names a node, mailbox, address or key.
//!
//! Each metric is one call with its name, its help and the counter it reads, so the functions
//! below are alike in shape on purpose: they are a table of distinct metrics, written out so that
//! each name stands beside its source and a reviewer can check what the page exposes. A table
//! type or a macro would save lines, not logic.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use qanat_link::{LinkMetrics, MetricsSnapshot};

use crate::replay_log::ReplayLogMetrics;
use crate::runtime::authority::AuthorityMetrics;
use crate::runtime::{GatewayProbe, MixProbe};

/// A page of metrics being written.
#[derive(Debug, Default)]
pub struct Exposition(String);

impl Exposition {
    /// A counter (a `_total` suffix is expected in `name`).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
    }

    /// A gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    }

    /// A gauge with one label (whose value must not identify anyone).
    pub fn info(&mut self, name: &str, help: &str, label: &str, value: &str) {
        let _ =
            writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{label}=\"{value}\"}} 1");
    }

    /// The link counters, prefixed `qanat_link_`.
    pub fn links(&mut self, m: &LinkMetrics) {
        let s = m.snapshot();
        self.counter("qanat_link_frames_in_total", "Frames received on links.", s.frames_in);
        self.counter("qanat_link_frames_out_total", "Frames sent on links.", s.frames_out);
        self.counter("qanat_link_handshakes_total", "Link handshakes completed.", s.handshakes);
        self.counter(
            "qanat_link_handshake_failures_total",
            "Link handshakes that failed (garbage, wrong key, timeout).",
            s.handshake_failures,
        );
        self.counter(
            "qanat_link_auth_rejections_total",
            "Connections refused because the peer's key is not allowed.",
            s.auth_rejections,
        );
        self.counter(
            "qanat_link_bad_frames_total",
            "Frames that failed authentication or decoding (their connection was closed).",
            s.bad_frames,
        );
        self.counter("qanat_link_timeouts_total", "Links closed for silence.", s.timeouts);
        self.counter("qanat_link_reconnects_total", "Outgoing link reconnections.", s.reconnects);
        self.links_budgets("qanat_link", &s);
        self.gauge("qanat_link_connections_open", "Open link connections.", s.connections_open as f64);
    }

    /// One listener's own counters (a gateway's client listener), prefixed `prefix`.
    pub fn listener(&mut self, prefix: &str, m: &LinkMetrics) {
        let s = m.snapshot();
        self.counter(&format!("{prefix}_handshakes_total"), "Handshakes completed.", s.handshakes);
        self.counter(
            &format!("{prefix}_handshake_failures_total"),
            "Handshakes that failed (garbage, wrong key, timeout).",
            s.handshake_failures,
        );
        self.counter(&format!("{prefix}_frames_in_total"), "Frames received.", s.frames_in);
        self.counter(&format!("{prefix}_frames_out_total"), "Frames sent.", s.frames_out);
        self.counter(
            &format!("{prefix}_timeouts_total"),
            "Connections closed for silence or a stuck write.",
            s.timeouts,
        );
        self.links_budgets(prefix, &s);
        self.gauge(&format!("{prefix}_connections_open"), "Open connections.", s.connections_open as f64);
    }

    /// A listener's budget counters (see `qanat_link::Listener`), prefixed `prefix`.
    fn links_budgets(&mut self, prefix: &str, s: &MetricsSnapshot) {
        self.counter(
            &format!("{prefix}_handshake_timeouts_total"),
            "Incoming handshakes that did not finish within the handshake timeout (silent or slow dialers).",
            s.handshake_timeouts,
        );
        self.counter(
            &format!("{prefix}_handshake_evictions_total"),
            "Incoming handshakes abandoned for a newcomer while the table was full (the oldest of the busiest address).",
            s.handshake_evictions,
        );
        self.counter(
            &format!("{prefix}_refused_handshakes_per_ip_total"),
            "Incoming connections refused: their address had too many handshakes in flight.",
            s.refused_handshakes_per_ip,
        );
        self.counter(
            &format!("{prefix}_refused_connections_per_ip_total"),
            "Incoming connections refused: their address held too many connections.",
            s.refused_connections_per_ip,
        );
        self.counter(
            &format!("{prefix}_refused_connections_total"),
            "Incoming connections refused: the listener held its most connections.",
            s.refused_connections,
        );
        self.gauge(
            &format!("{prefix}_handshakes_in_flight"),
            "Incoming handshakes in progress.",
            s.handshakes_in_flight as f64,
        );
    }

    /// The page.
    pub fn finish(self) -> String {
        self.0
    }
}

/// The node's place in the directory, updated by the service loop.
#[derive(Debug, Default)]
pub struct DirectoryStatus {
    /// The current epoch.
    pub epoch: AtomicU64,
    /// The latest epoch with a verified document (0: none yet).
    pub document_epoch: AtomicU64,
    /// 1 when this node is listed in the current epoch's document.
    pub listed: AtomicU64,
    /// Descriptor uploads accepted by an authority.
    pub uploads_accepted: AtomicU64,
    /// Descriptor uploads that failed or were refused.
    pub uploads_failed: AtomicU64,
    /// Document fetches that found no verifying document.
    pub fetches_failed: AtomicU64,
    /// Documents the node could not use (another geometry or period).
    pub documents_unusable: AtomicU64,
    /// Packet keys created by rotation.
    pub keys_created: AtomicU64,
    /// Packet keys deleted by rotation.
    pub keys_deleted: AtomicU64,
}

impl DirectoryStatus {
    /// Writes the status into `e`.
    pub fn render(&self, e: &mut Exposition) {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        e.gauge("qanat_epoch", "The current epoch.", g(&self.epoch) as f64);
        e.gauge(
            "qanat_directory_epoch",
            "The latest epoch for which the node holds a verified directory document (0: none).",
            g(&self.document_epoch) as f64,
        );
        e.gauge(
            "qanat_directory_listed",
            "1 when this node is in the current epoch's directory document.",
            g(&self.listed) as f64,
        );
        e.counter(
            "qanat_descriptor_uploads_accepted_total",
            "Descriptor uploads accepted by an authority.",
            g(&self.uploads_accepted),
        );
        e.counter(
            "qanat_descriptor_uploads_failed_total",
            "Descriptor uploads that failed or were refused.",
            g(&self.uploads_failed),
        );
        e.counter(
            "qanat_document_fetches_failed_total",
            "Document fetches that found no verifying document.",
            g(&self.fetches_failed),
        );
        e.counter(
            "qanat_documents_unusable_total",
            "Verified documents whose geometry or period differs from this node's config.",
            g(&self.documents_unusable),
        );
        e.counter(
            "qanat_packet_keys_created_total",
            "Packet keys created by rotation.",
            g(&self.keys_created),
        );
        e.counter(
            "qanat_packet_keys_deleted_total",
            "Packet keys deleted by rotation.",
            g(&self.keys_deleted),
        );
    }
}

/// A mix's counters.
pub fn mix(e: &mut Exposition, p: &MixProbe, uptime_secs: f64) {
    let c = p.core();
    e.counter("qanat_mix_packets_received_total", "Packets received.", c.received);
    e.counter("qanat_mix_packets_forwarded_total", "Packets forwarded (own loops included).", c.forwarded);
    e.counter("qanat_mix_dropped_malformed_total", "Packets dropped: no valid unwrap.", c.dropped_malformed);
    e.counter("qanat_mix_dropped_replay_total", "Packets dropped: replayed.", c.dropped_replay);
    e.counter("qanat_mix_dropped_no_key_total", "Packets dropped: no live key for them.", c.dropped_no_key);
    e.counter(
        "qanat_mix_dropped_queue_full_total",
        "Packets dropped: delay queue full.",
        c.dropped_queue_full,
    );
    e.counter("qanat_mix_dropped_terminal_total", "Packets dropped: terminal here.", c.dropped_terminal);
    e.counter("qanat_mix_loops_sent_total", "Own loop cover packets sent.", c.loops_sent);
    e.counter("qanat_mix_loops_returned_total", "Own loop cover packets that came back.", c.loops_returned);
    e.gauge(
        "qanat_mix_mean_pool_packets",
        "Mean number of packets held since start: an estimate of lambda/mu at this mix.",
        if uptime_secs > 0.0 { c.pool_packet_seconds / uptime_secs } else { 0.0 },
    );
    let r = &p.runtime;
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    e.counter(
        "qanat_mix_unknown_next_hop_total",
        "Packets for a next hop not in the directory.",
        g(&r.unknown_next_hop),
    );
    e.counter(
        "qanat_mix_link_queue_full_total",
        "Packets dropped on a full link queue.",
        g(&r.link_queue_full),
    );
    e.counter("qanat_mix_gateway_resent_total", "Packets to gateways sent again.", g(&r.resent));
    e.counter("qanat_mix_gateway_acked_total", "Packets to gateways acknowledged.", g(&r.acked));
    e.counter(
        "qanat_mix_unacked_full_total",
        "Packets to gateways not kept for resending (too many unacknowledged in all).",
        g(&r.unacked_full),
    );
    e.counter(
        "qanat_mix_unacked_gateway_full_total",
        "Packets to gateways not kept for resending (too many unacknowledged for that gateway).",
        g(&r.unacked_gateway_full),
    );
    e.counter(
        "qanat_mix_gateway_gave_up_total",
        "Packets to gateways given up without an acknowledgement (after the key grace).",
        g(&r.gave_up),
    );
    e.counter(
        "qanat_mix_gateway_stray_acks_total",
        "Acknowledgements naming no packet kept for the gateway that sent them.",
        g(&r.stray_acks),
    );
    e.gauge(
        "qanat_mix_gateway_unacked_packets",
        "Packets to gateways kept until acknowledged.",
        g(&r.unacked) as f64,
    );
    // A hostile mix's own counts ([danger] table, tests only); zero on every honest mix.
    if r.hostile_withheld.load(Ordering::Relaxed)
        + r.hostile_replayed.load(Ordering::Relaxed)
        + r.hostile_forged.load(Ordering::Relaxed)
        > 0
    {
        e.counter(
            "qanat_mix_danger_withheld_total",
            "[danger] hostile mix: packets dropped instead of forwarded.",
            g(&r.hostile_withheld),
        );
        e.counter(
            "qanat_mix_danger_replayed_total",
            "[danger] hostile mix: extra copies of forwarded packets sent.",
            g(&r.hostile_replayed),
        );
        e.counter(
            "qanat_mix_danger_forged_total",
            "[danger] hostile mix: packets of random bytes sent.",
            g(&r.hostile_forged),
        );
    }
    replay_log(e, c.replay_tags_restored, c.replay_log_full, &r.replay_log);
}

/// The replay log's counters (mixes and gateways).
fn replay_log(e: &mut Exposition, restored: u64, full: u64, m: &ReplayLogMetrics) {
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    e.counter(
        "qanat_replay_tags_restored_total",
        "Replay tags read back into the filters at start.",
        restored,
    );
    e.counter(
        "qanat_replay_log_full_total",
        "Replay tags not logged: their key's log reached the filter's capacity (a restart forgets them).",
        full,
    );
    e.counter("qanat_replay_log_tags_total", "Replay tags appended to the replay log.", g(&m.tags));
    e.counter("qanat_replay_log_bytes_total", "Bytes appended to the replay log.", g(&m.bytes));
    e.counter("qanat_replay_log_fsyncs_total", "fdatasync calls of the replay log.", g(&m.fsyncs));
    e.gauge(
        "qanat_replay_log_write_seconds",
        "Seconds spent appending to and syncing the replay log (divided by fsyncs: the mean sync time).",
        g(&m.write_micros) as f64 / 1e6,
    );
    e.counter("qanat_replay_log_commits_total", "Group commits of the replay log.", g(&m.commits));
    e.counter(
        "qanat_replay_log_errors_total",
        "Replay log writes that failed (retried; packets wait meanwhile).",
        g(&m.errors),
    );
    e.counter("qanat_replay_log_deleted_total", "Replay logs deleted with their key.", g(&m.deleted));
}

/// A gateway's counters.
pub fn gateway(e: &mut Exposition, p: &GatewayProbe) {
    let c = p.core();
    e.counter("qanat_gateway_ingress_total", "Packets from clients.", c.ingress);
    e.counter("qanat_gateway_egress_total", "Packets from mixes.", c.egress);
    e.counter("qanat_gateway_forwarded_total", "Packets forwarded into the network.", c.forwarded);
    e.counter("qanat_gateway_stored_total", "Packets stored durably (duplicates included).", c.stored);
    e.counter("qanat_gateway_store_rejected_total", "Packets the store refused (quota).", c.store_rejected);
    e.counter("qanat_gateway_store_failed_total", "Writes that failed (not acknowledged).", c.store_failed);
    e.counter(
        "qanat_gateway_refused_backlog_total",
        "Packets refused: too many writes pending.",
        c.refused_backlog,
    );
    e.counter(
        "qanat_gateway_dropped_malformed_total",
        "Packets dropped: no valid unwrap.",
        c.dropped_malformed,
    );
    e.counter("qanat_gateway_dropped_replay_total", "Packets dropped: replayed.", c.dropped_replay);
    e.counter("qanat_gateway_dropped_no_key_total", "Packets dropped: no live key.", c.dropped_no_key);
    e.counter("qanat_gateway_dropped_queue_full_total", "Packets dropped: queue full.", c.dropped_queue_full);
    e.counter("qanat_gateway_dropped_misrouted_total", "Packets dropped: misrouted.", c.dropped_misrouted);
    e.counter(
        "qanat_gateway_dropped_unsealed_total",
        "Packets dropped: a last hop whose payload would not be opaque.",
        c.dropped_unsealed,
    );
    e.counter(
        "qanat_gateway_refused_malformed_total",
        "Packets from mixes no live key unwraps: acknowledged so the mix forgets them, never stored.",
        c.refused_malformed,
    );
    e.counter(
        "qanat_gateway_refused_misrouted_total",
        "Packets from mixes misrouted here: acknowledged so the mix forgets them, never stored.",
        c.refused_misrouted,
    );
    e.counter(
        "qanat_gateway_duplicate_stores_total",
        "Resends from mixes answered without another write (joined to the write in flight, or already stored).",
        c.duplicate_stores,
    );
    let r = &p.runtime;
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    e.counter("qanat_gateway_append_calls_total", "Store append calls.", g(&r.append_calls));
    e.counter(
        "qanat_gateway_append_failures_total",
        "Store append calls that failed.",
        g(&r.append_failures),
    );
    e.counter("qanat_gateway_client_requests_total", "Client control requests.", g(&r.client_requests));
    e.counter("qanat_gateway_client_pulls_total", "Client pulls answered.", g(&r.client_pulls));
    e.counter(
        "qanat_gateway_document_chunks_total",
        "Directory document chunks sent to clients in pull answers.",
        g(&r.document_chunks),
    );
    e.counter(
        "qanat_gateway_registrations_refused_total",
        "Client registrations refused at a session's bound of mailboxes.",
        g(&r.registrations_refused),
    );
    e.counter(
        "qanat_gateway_registrations_rate_limited_total",
        "Client registrations refused beyond a session's registration rate (the client retries them).",
        g(&r.registrations_rate_limited),
    );
    e.counter(
        "qanat_gateway_client_packets_over_budget_total",
        "Client packets dropped beyond a session's packet budget (a multiple of the directory's client rate).",
        g(&r.client_packets_over_budget),
    );
    e.listener("qanat_gateway_client_link", &r.client_links);
    e.counter(
        "qanat_gateway_rejected_unknown_mailbox_total",
        "Writes the store rejected for an unknown mailbox (acknowledged, not stored).",
        g(&r.rejected_unknown_mailbox),
    );
    e.counter(
        "qanat_gateway_rejected_quota_total",
        "Writes the store rejected for the mailbox's quota (acknowledged, not stored).",
        g(&r.rejected_quota),
    );
    e.counter(
        "qanat_gateway_rejected_too_large_total",
        "Writes the store rejected as too large (acknowledged, not stored).",
        g(&r.rejected_too_large),
    );
    e.counter(
        "qanat_gateway_version_mismatches_total",
        "Client requests of another protocol version.",
        g(&r.version_mismatches),
    );
    e.counter(
        "qanat_gateway_client_answers_late_total",
        "Answers to clients ready only after their fixed delay (a timing signal; should stay 0).",
        g(&r.client_answers_late),
    );
    e.counter(
        "qanat_gateway_fault_dropped_total",
        "Packets dropped by fault injection (gateway.fault_drop_rate; tests only).",
        g(&r.fault_dropped),
    );
    e.counter(
        "qanat_gateway_link_queue_full_total",
        "Packets dropped on a full link queue.",
        g(&r.link_queue_full),
    );
    replay_log(e, c.replay_tags_restored, c.replay_log_full, &r.replay_log);
}

/// An authority's counters.
pub fn authority(e: &mut Exposition, m: &AuthorityMetrics) {
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    e.counter(
        "qanat_authority_descriptors_accepted_total",
        "Descriptors accepted.",
        g(&m.descriptors_accepted),
    );
    e.counter(
        "qanat_authority_descriptors_rejected_total",
        "Descriptors refused.",
        g(&m.descriptors_rejected),
    );
    e.counter(
        "qanat_authority_peer_messages_accepted_total",
        "Messages from other authorities accepted.",
        g(&m.peer_messages_accepted),
    );
    e.counter(
        "qanat_authority_peer_messages_rejected_total",
        "Messages from other authorities refused.",
        g(&m.peer_messages_rejected),
    );
    e.counter(
        "qanat_authority_peer_messages_dropped_total",
        "Messages to other authorities dropped.",
        g(&m.peer_messages_dropped),
    );
    e.counter("qanat_authority_published_total", "Documents published.", g(&m.published));
    e.counter("qanat_authority_consensus_failed_total", "Rounds without a document.", g(&m.consensus_failed));
    e.counter(
        "qanat_authority_protocol_errors_total",
        "Connections closed for a protocol violation.",
        g(&m.protocol_errors),
    );
    e.counter("qanat_authority_documents_served_total", "Documents served.", g(&m.documents_served));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let mut e = Exposition::default();
        e.info("qanat_node_info", "What the node is.", "role", "mix");
        e.counter("qanat_x_total", "An x.", 3);
        e.gauge("qanat_y", "A y.", 1.5);
        let s = e.finish();
        assert!(s.contains("# TYPE qanat_node_info gauge\nqanat_node_info{role=\"mix\"} 1\n"));
        assert!(s.contains("# TYPE qanat_x_total counter\nqanat_x_total 3\n"));
        assert!(s.contains("qanat_y 1.5\n"));
    }
}
