//! Who may connect: a policy the listener consults with the dialer's static key.

use crate::keys::LinkPublicKey;

/// Decides, after the handshake has authenticated a dialer's static key, whether to accept it,
/// and what to call it. A node's authorizer accepts only link keys in the current directory and
/// returns the node's id; a gateway's client listener accepts any key ([`AcceptAnyKey`]).
///
/// Closures `Fn(&LinkPublicKey) -> Option<P>` are authorizers.
pub trait Authorizer: Send + Sync + 'static {
    /// What an accepted peer is known as.
    type Peer: Send + 'static;
    /// `Some(peer)` accepts the connection; `None` closes it and counts a rejection.
    fn authorize(&self, key: &LinkPublicKey) -> Option<Self::Peer>;
}

impl<P, F> Authorizer for F
where
    P: Send + 'static,
    F: Fn(&LinkPublicKey) -> Option<P> + Send + Sync + 'static,
{
    type Peer = P;
    fn authorize(&self, key: &LinkPublicKey) -> Option<P> {
        self(key)
    }
}

/// Accepts every key and identifies no one: for gateways facing clients, which authenticate
/// per mailbox above the link.
#[derive(Clone, Copy, Debug, Default)]
pub struct AcceptAnyKey;

impl Authorizer for AcceptAnyKey {
    type Peer = ();
    fn authorize(&self, _key: &LinkPublicKey) -> Option<()> {
        Some(())
    }
}
