//! The client's side of the pull exchange: [`qanat_mixnet::pull`]'s IO-free [`PullClient`],
//! re-exported here where the runtime ([`crate::runtime`]) drives it over the gateway session
//! ([`crate::gateway`]). It lives in `qanat-mixnet` so that `qanat-sim` runs this same core.

pub use qanat_mixnet::pull::{AnswerError, MAX_QUEUED_OPS, PullClient, PullClientMetrics, PullOutcome};
