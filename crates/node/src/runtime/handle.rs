//! The handle of a running mix or gateway: its addresses, its counters, the way to hand it the
//! directory's news, and the way to stop it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use qanat_link::LinkMetrics;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::peers::{EpochUpdate, Probe, Updater};

/// The runtime has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the runtime has stopped")]
pub struct Stopped;

/// A running mix or gateway whose core counts in `C` and whose runtime counts in `R`.
#[derive(Debug)]
pub struct RuntimeHandle<C, R> {
    pub(crate) local_addr: SocketAddr,
    pub(crate) client_addr: Option<SocketAddr>,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) task: JoinHandle<()>,
    pub(crate) updates: mpsc::Sender<EpochUpdate>,
    pub(crate) core_metrics: Arc<Mutex<C>>,
    /// Link counters.
    pub link_metrics: Arc<LinkMetrics>,
    /// Runtime counters.
    pub metrics: Arc<R>,
}

impl<C: Clone + Default, R> RuntimeHandle<C, R> {
    /// The address the node listener bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The core's counters, as of the last event.
    pub fn core_metrics(&self) -> C {
        self.core_metrics.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Hands the runtime what the directory says about an epoch. Fails only once the runtime
    /// has stopped.
    pub async fn update(&self, update: EpochUpdate) -> Result<(), Stopped> {
        self.updates.send(update).await.map_err(|_| Stopped)
    }

    /// A cloneable way to hand the runtime [`EpochUpdate`]s.
    pub fn updater(&self) -> Updater {
        Updater(self.updates.clone())
    }

    /// A cloneable view of every counter, for a metrics endpoint.
    pub fn probe(&self) -> Probe<C, R> {
        Probe {
            core: self.core_metrics.clone(),
            links: self.link_metrics.clone(),
            runtime: self.metrics.clone(),
        }
    }

    /// Stops the runtime: listeners close and outgoing links are dropped.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}
