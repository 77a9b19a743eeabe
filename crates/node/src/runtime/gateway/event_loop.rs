//! The gateway's event loop around its core: what arrives (packets from mixes and clients, store
//! results, replay tags made durable, epoch updates, timeouts) goes into the core; after each event
//! what the core asks for goes out: store writes in batches (appended off the loop), each
//! acknowledgement on the connection its packet came on, replay tags to the log, packets into
//! layer 1.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qanat_link::{Frame, FrameSender, LinkMetrics, PacketId};
use qanat_mailbox::{Append, AppendOutcome, ItemId, MailboxStore};
use qanat_mixnet::{AckToken, Gateway, GatewayMetrics, StoreResult, StoreToken};
use qanat_packet::NodeId;
use rand::rngs::{StdRng, SysRng};
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{CACHED_DOCUMENTS, Event, GatewayRuntimeConfig, GatewayRuntimeMetrics, store_now};
use crate::replay_log::ReplayLog;
use crate::runtime::budget::{ClientRate, RecentClientRates};
use crate::runtime::links::Links;
use crate::runtime::node_core::{apply_update, durable, log_tags, retain_logs};
use crate::runtime::peers::{EpochUpdate, SharedPeers};

/// What the core hears of one append's outcome: durable (stored now or before), or rejected
/// (acknowledged, never stored) and counted by why. Every outcome is named, so that a new one is
/// decided here rather than taken for another.
fn store_result(outcome: AppendOutcome, m: &GatewayRuntimeMetrics) -> StoreResult {
    let rejected = |counter: &AtomicU64| {
        counter.fetch_add(1, Ordering::Relaxed);
        StoreResult::Rejected
    };
    match outcome {
        AppendOutcome::Stored(_) | AppendOutcome::Duplicate(_) => StoreResult::Durable,
        AppendOutcome::UnknownMailbox => rejected(&m.rejected_unknown_mailbox),
        AppendOutcome::QuotaExceeded => rejected(&m.rejected_quota),
        AppendOutcome::TooLarge => rejected(&m.rejected_too_large),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn run<S: MailboxStore>(
    mut core: Gateway,
    store: Arc<S>,
    config: GatewayRuntimeConfig,
    peers: SharedPeers,
    events_tx: mpsc::Sender<Event>,
    mut events: mpsc::Receiver<Event>,
    mut updates: mpsc::Receiver<EpochUpdate>,
    mut shutdown: watch::Receiver<bool>,
    core_metrics: Arc<Mutex<GatewayMetrics>>,
    link_metrics: Arc<LinkMetrics>,
    metrics: Arc<GatewayRuntimeMetrics>,
    accepts: [JoinHandle<()>; 2],
    mut log: Option<ReplayLog>,
    client_rate: ClientRate,
) {
    // The client rate of each epoch the directory described (as many as documents are cached).
    let mut client_rates = RecentClientRates::new(CACHED_DOCUMENTS);
    let origin = Instant::now();
    let clock = config.clock;
    let now = || clock + origin.elapsed();
    let mut links =
        Links::new(config.link_key.clone(), config.link.clone(), link_metrics, None, shutdown.clone());
    // Where each pending ack goes: the connection its packet came on.
    let mut reply_to: HashMap<(NodeId, u64), FrameSender> = HashMap::new();
    let mut next_id: u64 = 0;
    let mut fault_rng = StdRng::try_from_rng(&mut SysRng).ok();
    let rate = config.fault_drop_rate;
    let mut fault = move || {
        rate > 0.0
            && fault_rng.as_mut().is_some_and(|r| (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= rate)
    };
    loop {
        // A key's expiry may lie past what an `Instant` can hold (tests install endless windows).
        let wake = core.poll_timeout().and_then(|t| origin.checked_add(t.saturating_since(clock)));
        let sleep =
            tokio::time::sleep_until(wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)));
        tokio::select! {
            ev = events.recv() => match ev {
                Some(Event::FromMix { reply, id, .. }) if fault() => {
                    // Lost after the hop acknowledged it.
                    metrics.fault_dropped.fetch_add(1, Ordering::Relaxed);
                    let _ = reply.try_send(Frame::Ack(vec![id]));
                }
                Some(Event::FromClient(_)) if fault() => {
                    metrics.fault_dropped.fetch_add(1, Ordering::Relaxed);
                }
                Some(Event::FromMix { from, id, packet, reply }) => {
                    reply_to.insert((from, id.0), reply);
                    if core.handle_mix_packet(now(), from, AckToken(id.0), packet).is_err() {
                        reply_to.remove(&(from, id.0));
                    }
                }
                Some(Event::FromClient(packet)) => { let _ = core.handle_client_packet(now(), packet); }
                Some(Event::Stored(results)) => {
                    for (token, result) in results {
                        // A failed write is never acknowledged: forget where the acks would go.
                        for nack in core.handle_store_result(token, result) {
                            reply_to.remove(&(nack.to, nack.token.0));
                        }
                    }
                }
                None => break,
            },
            Some(id) = durable(&mut log) => core.handle_replay_logged(id),
            _ = sleep => {
                core.handle_timeout(now());
                retain_logs(&core, &mut log);
            }
            update = updates.recv() => {
                let Some(u) = update else { continue };
                if let Some(rate) = client_rates.insert(u.epoch, u.client_rate) {
                    client_rate.set(rate);
                }
                apply_update(&mut core, &mut log, &peers, &mut links, u);
            }
            _ = shutdown.changed() => break,
        }
        // Store writes: one append call per batch, off the event loop.
        let mut batch = Vec::new();
        while let Some(req) = core.poll_store() {
            batch.push(req);
            if batch.len() >= config.max_batch.max(1) {
                break;
            }
        }
        if !batch.is_empty() {
            let (store, tx, m) = (store.clone(), events_tx.clone(), metrics.clone());
            tokio::spawn(async move {
                let tokens: Vec<StoreToken> = batch.iter().map(|r| r.token).collect();
                let appends: Vec<Append> = batch
                    .into_iter()
                    .map(|r| Append { mailbox: r.mailbox, item_id: ItemId(r.item_id), payload: r.item })
                    .collect();
                m.append_calls.fetch_add(1, Ordering::Relaxed);
                let results: Vec<(StoreToken, StoreResult)> = match store.append(appends, store_now()).await {
                    Ok(outcomes) => {
                        tokens.into_iter().zip(outcomes).map(|(t, o)| (t, store_result(o, &m))).collect()
                    }
                    Err(_) => {
                        m.append_failures.fetch_add(1, Ordering::Relaxed);
                        tokens.into_iter().map(|t| (t, StoreResult::Failed)).collect()
                    }
                };
                let _ = tx.send(Event::Stored(results)).await;
            });
        }
        while let Some(ack) = core.poll_ack() {
            if let Some(reply) = reply_to.remove(&(ack.to, ack.token.0)) {
                let _ = reply.try_send(Frame::Ack(vec![PacketId(ack.token.0)]));
            }
        }
        log_tags(&mut core, &mut log);
        let t = now();
        while let Some(tx) = core.poll_transmit(t) {
            let Some((link, _)) = links.route(tx.to, &peers) else { continue };
            next_id += 1;
            if link.try_send(Frame::Packet { id: PacketId(next_id), packet: tx.packet }).is_err() {
                metrics.link_queue_full.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Ok(mut m) = core_metrics.lock() {
            *m = core.metrics().clone();
        }
    }
    for a in accepts {
        a.abort();
    }
    links.shutdown().await;
}

#[cfg(test)]
mod tests {
    use qanat_mailbox::Seq;

    use super::*;

    #[test]
    fn each_append_outcome_is_durable_or_a_counted_rejection() {
        let m = GatewayRuntimeMetrics::default();
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!(store_result(AppendOutcome::Stored(Seq(1)), &m), StoreResult::Durable);
        assert_eq!(store_result(AppendOutcome::Duplicate(Seq(1)), &m), StoreResult::Durable);
        assert_eq!(store_result(AppendOutcome::UnknownMailbox, &m), StoreResult::Rejected);
        assert_eq!(store_result(AppendOutcome::QuotaExceeded, &m), StoreResult::Rejected);
        assert_eq!(store_result(AppendOutcome::QuotaExceeded, &m), StoreResult::Rejected);
        assert_eq!(store_result(AppendOutcome::TooLarge, &m), StoreResult::Rejected);
        assert_eq!(
            (count(&m.rejected_unknown_mailbox), count(&m.rejected_quota), count(&m.rejected_too_large)),
            (1, 2, 1)
        );
    }
}
