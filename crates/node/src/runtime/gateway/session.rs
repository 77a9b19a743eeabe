//! A client session's state without IO: the mailboxes it registered (a [`PullServer`], which also
//! plans each pull's store reads) and its budgets ([`SessionBudget`]), on the session's clock as
//! the caller passes it (the time since the session began). `clients.rs` carries out on the store
//! what this admits.

use std::time::Duration;

use qanat_mixnet::client_proto::{ErrorCode, Op};
use qanat_mixnet::pull::PullServer;

use super::ClientBudgets;
use crate::runtime::budget::SessionBudget;

/// Why a session's operation was refused before the store saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// A registration beyond the session's bound of mailboxes.
    Mailboxes,
    /// A registration beyond the session's registration rate.
    RegistrationRate,
}

impl Refused {
    /// The operation's result: `Unavailable` either way, like a store that cannot serve now, so
    /// the client retries in a later pull.
    pub(super) fn code(self) -> ErrorCode {
        match self {
            Refused::Mailboxes | Refused::RegistrationRate => ErrorCode::Unavailable,
        }
    }
}

/// One client connection's state: its mailboxes and its budgets.
#[derive(Debug)]
pub(super) struct Session {
    /// The mailboxes registered on this connection; plans and answers its pulls.
    pub(super) pull: PullServer,
    budget: SessionBudget,
}

impl Session {
    /// A session beginning at `now` with no mailbox.
    pub(super) fn new(b: &ClientBudgets, now: Duration) -> Self {
        Self { pull: PullServer::new(b.max_mailboxes), budget: SessionBudget::new(b, now) }
    }

    /// Whether a packet at `now` is within the session's budget at the directory's client `rate`
    /// (none known: every packet is).
    pub(super) fn take_packet(&mut self, now: Duration, rate: Option<f64>) -> bool {
        self.budget.take_packet(now, rate)
    }

    /// Whether the store should carry `op` out at `now`: the session's bound of mailboxes first,
    /// then (for a registration) its registration rate; a registration refused by the bound
    /// spends nothing of the rate.
    pub(super) fn admit(&mut self, op: &Op, now: Duration) -> Result<(), Refused> {
        if self.pull.admit(op).is_err() {
            return Err(Refused::Mailboxes);
        }
        if matches!(op, Op::Register { .. }) && !self.budget.take_registration(now) {
            return Err(Refused::RegistrationRate);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use qanat_mixnet::client_proto::OpResult;
    use qanat_packet::MailboxId;

    use super::*;

    fn s(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    fn register(m: u8) -> Op {
        Op::Register { mailbox: MailboxId([m; 32]), credential: [m; 32] }
    }

    fn session(max_mailboxes: usize, registration_burst: u32) -> Session {
        let b = ClientBudgets {
            max_mailboxes,
            registration_burst,
            registrations_per_second: 1.0,
            packet_burst: 2,
            packet_slack: 1.0,
            ..ClientBudgets::default()
        };
        Session::new(&b, s(0.0))
    }

    /// Admits `op` at `now` and, if admitted, has the store succeed.
    fn run(session: &mut Session, op: &Op, now: f64) -> Result<(), Refused> {
        let r = session.admit(op, s(now));
        if r.is_ok() {
            session.pull.handle_op_result(op, OpResult::Done);
        }
        r
    }

    #[test]
    fn registrations_are_refused_by_the_bound_then_by_the_rate() {
        let mut x = session(2, 3);
        assert_eq!(run(&mut x, &register(1), 0.0), Ok(()));
        assert_eq!(run(&mut x, &register(2), 0.0), Ok(()));
        // The bound: refused without spending the rate's last token.
        assert_eq!(run(&mut x, &register(3), 0.0), Err(Refused::Mailboxes));
        // A mailbox already held is not a new one: it passes the bound and spends the rate.
        assert_eq!(run(&mut x, &register(1), 0.0), Ok(()));
        assert_eq!(run(&mut x, &register(2), 0.0), Err(Refused::RegistrationRate));
        // One more a second later.
        assert_eq!(run(&mut x, &register(2), 1.0), Ok(()));
        assert_eq!(x.pull.len(), 2);
        assert_eq!(Refused::Mailboxes.code(), ErrorCode::Unavailable);
        assert_eq!(Refused::RegistrationRate.code(), ErrorCode::Unavailable);
    }

    #[test]
    fn other_operations_are_never_refused() {
        let mut x = session(0, 1);
        let ops = [
            Op::Unregister { mailbox: MailboxId([1; 32]), credential: [1; 32] },
            Op::Delete { mailbox: MailboxId([1; 32]), credential: [1; 32], up_to: 9 },
        ];
        for _ in 0..100 {
            for op in &ops {
                assert_eq!(run(&mut x, op, 0.0), Ok(()));
            }
        }
        // The rate was not spent by them.
        assert!(x.budget.take_registration(s(0.0)));
    }

    #[test]
    fn packets_are_held_to_the_budget_on_the_sessions_clock() {
        let mut x = session(1, 1);
        assert!((0..50).all(|_| x.take_packet(s(0.0), None)), "no rate known: no limit");
        assert!(x.take_packet(s(0.0), Some(2.0)));
        assert!(x.take_packet(s(0.0), Some(2.0)));
        assert!(!x.take_packet(s(0.0), Some(2.0)));
        assert!(x.take_packet(s(0.5), Some(2.0)));
    }
}
