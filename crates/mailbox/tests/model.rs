//! The reference model passes the conformance suite itself (so the suite and the model agree).
#![allow(missing_docs)]

use qanat_mailbox::Limits;
use qanat_mailbox::conformance::ModelStore;

qanat_mailbox::conformance_tests!(|limits: Limits| async move { ModelStore::new(limits) });
