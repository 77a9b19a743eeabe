//! Per-hop routing commands, encoded as in Katzenpost's `core/sphinx/commands`.
//!
//! Each hop's slot of the routing information holds a sequence of commands ended by the null
//! command (a zero byte followed by zero padding). Decoding is strict: unknown commands, a
//! command repeated, or non-zero bytes after the null command are errors.

use subtle::ConstantTimeEq;

use crate::geometry::{MAC_LEN, MAILBOX_ID_LEN, NODE_ID_LEN, SURB_ID_LEN};

const NULL: u8 = 0x00;
const NEXT_NODE_HOP: u8 = 0x01;
const RECIPIENT: u8 = 0x02;
const SURB_REPLY: u8 = 0x03;
const NODE_DELAY: u8 = 0x80;

/// A node's identifier: the hash of its identity key, published in the directory.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; NODE_ID_LEN]);

/// A mailbox: where a packet's last hop stores it, 32 bytes its owner chose at random. Katzenpost
/// calls it the recipient id (the [`RoutingCommand::Recipient`] command carries it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxId(pub [u8; MAILBOX_ID_LEN]);

/// The identifier a SURB's creator uses to find the keys that decrypt the reply.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SurbId(pub [u8; SURB_ID_LEN]);

// Identifiers are never printed in full: logs must not name mailboxes or nodes.
macro_rules! redacted_debug {
    ($($t:ty),*) => {$(
        impl core::fmt::Debug for $t {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "{}(..)", stringify!($t))
            }
        }
    )*};
}
redacted_debug!(NodeId, MailboxId, SurbId);

/// The next hop, and the MAC of the header it will receive.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NextNodeHop {
    /// The next node.
    pub id: NodeId,
    /// The header MAC for the next node.
    pub mac: [u8; MAC_LEN],
}

/// How long a mix holds the packet, in milliseconds, chosen by the sender.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NodeDelay {
    /// Delay in milliseconds.
    pub delay_ms: u32,
}

/// One routing command.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum RoutingCommand {
    /// Forward to the next hop (added by the header builder; callers never pass it).
    NextNodeHop(NextNodeHop),
    /// Store in this mailbox (the last hop of a path).
    Recipient(MailboxId),
    /// The packet is a reply made from a SURB with this id (the last hop of a SURB's path).
    SurbReply(SurbId),
    /// Hold the packet this long before forwarding.
    NodeDelay(NodeDelay),
}

impl RoutingCommand {
    /// Encoded length in bytes.
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            Self::NextNodeHop(_) => NODE_ID_LEN + MAC_LEN,
            Self::Recipient(_) => MAILBOX_ID_LEN,
            Self::SurbReply(_) => SURB_ID_LEN,
            Self::NodeDelay(_) => 4,
        }
    }

    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::NextNodeHop(c) => {
                out.push(NEXT_NODE_HOP);
                out.extend_from_slice(&c.id.0);
                out.extend_from_slice(&c.mac);
            }
            Self::Recipient(id) => {
                out.push(RECIPIENT);
                out.extend_from_slice(&id.0);
            }
            Self::SurbReply(id) => {
                out.push(SURB_REPLY);
                out.extend_from_slice(&id.0);
            }
            Self::NodeDelay(d) => {
                out.push(NODE_DELAY);
                out.extend_from_slice(&d.delay_ms.to_be_bytes());
            }
        }
    }

    /// The encoding as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode(&mut v);
        v
    }
}

/// The commands a hop found in its routing slot, at most one of each kind.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Commands {
    /// Where to forward the packet; `None` at the last hop.
    pub next_hop: Option<NextNodeHop>,
    /// The mailbox at the last hop.
    pub recipient: Option<MailboxId>,
    /// Set when the packet is a SURB reply.
    pub surb_reply: Option<SurbId>,
    /// The delay the sender chose for this hop.
    pub delay: Option<NodeDelay>,
}

/// The slot's commands could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedCommands;

impl Commands {
    /// Decodes a hop's command slot (the decrypted slot, without a KEM ciphertext).
    pub fn decode(mut b: &[u8]) -> Result<Self, MalformedCommands> {
        let mut out = Self::default();
        loop {
            let Some((&id, body)) = b.split_first() else {
                return Ok(out); // An empty remainder is an implicit null command.
            };
            let (cmd, rest) = match id {
                NULL => {
                    return if bool::from(is_zero(body)) { Ok(out) } else { Err(MalformedCommands) };
                }
                NEXT_NODE_HOP => {
                    let (id, rest) = take::<NODE_ID_LEN>(body)?;
                    let (mac, rest) = take::<MAC_LEN>(rest)?;
                    (RoutingCommand::NextNodeHop(NextNodeHop { id: NodeId(id), mac }), rest)
                }
                RECIPIENT => {
                    let (id, rest) = take::<MAILBOX_ID_LEN>(body)?;
                    (RoutingCommand::Recipient(MailboxId(id)), rest)
                }
                SURB_REPLY => {
                    let (id, rest) = take::<SURB_ID_LEN>(body)?;
                    (RoutingCommand::SurbReply(SurbId(id)), rest)
                }
                NODE_DELAY => {
                    let (d, rest) = take::<4>(body)?;
                    (RoutingCommand::NodeDelay(NodeDelay { delay_ms: u32::from_be_bytes(d) }), rest)
                }
                _ => return Err(MalformedCommands),
            };
            out.push(cmd)?;
            b = rest;
        }
    }

    fn push(&mut self, cmd: RoutingCommand) -> Result<(), MalformedCommands> {
        fn set<T>(slot: &mut Option<T>, v: T) -> Result<(), MalformedCommands> {
            if slot.is_some() {
                return Err(MalformedCommands);
            }
            *slot = Some(v);
            Ok(())
        }
        match cmd {
            RoutingCommand::NextNodeHop(c) => set(&mut self.next_hop, c),
            RoutingCommand::Recipient(c) => set(&mut self.recipient, c),
            RoutingCommand::SurbReply(c) => set(&mut self.surb_reply, c),
            RoutingCommand::NodeDelay(c) => set(&mut self.delay, c),
        }
    }
}

fn take<const N: usize>(b: &[u8]) -> Result<([u8; N], &[u8]), MalformedCommands> {
    let (head, rest) = b.split_first_chunk::<N>().ok_or(MalformedCommands)?;
    Ok((*head, rest))
}

/// Constant-time test that every byte is zero.
pub(crate) fn is_zero(b: &[u8]) -> subtle::Choice {
    let acc = b.iter().fold(0u8, |acc, &x| acc | x);
    acc.ct_eq(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_each_command() {
        let cmds = [
            RoutingCommand::NextNodeHop(NextNodeHop { id: NodeId([7; 32]), mac: [9; 32] }),
            RoutingCommand::Recipient(MailboxId([1; 32])),
            RoutingCommand::SurbReply(SurbId([2; 16])),
            RoutingCommand::NodeDelay(NodeDelay { delay_ms: 1234 }),
        ];
        let mut buf = Vec::new();
        for c in &cmds {
            c.encode(&mut buf);
        }
        buf.extend_from_slice(&[0; 10]);
        let d = Commands::decode(&buf).unwrap();
        assert_eq!(d.next_hop, Some(NextNodeHop { id: NodeId([7; 32]), mac: [9; 32] }));
        assert_eq!(d.recipient, Some(MailboxId([1; 32])));
        assert_eq!(d.surb_reply, Some(SurbId([2; 16])));
        assert_eq!(d.delay, Some(NodeDelay { delay_ms: 1234 }));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Commands::decode(&[0x42]), Err(MalformedCommands));
        assert_eq!(Commands::decode(&[0x00, 0x00, 0x01]), Err(MalformedCommands));
        assert_eq!(Commands::decode(&[0x80, 0, 0]), Err(MalformedCommands));
        let mut dup = Vec::new();
        RoutingCommand::NodeDelay(NodeDelay { delay_ms: 1 }).encode(&mut dup);
        RoutingCommand::NodeDelay(NodeDelay { delay_ms: 2 }).encode(&mut dup);
        assert_eq!(Commands::decode(&dup), Err(MalformedCommands));
        assert_eq!(Commands::decode(&[]), Ok(Commands::default()));
        assert_eq!(Commands::decode(&[0]), Ok(Commands::default()));
    }

    #[test]
    fn debug_does_not_print_identifiers() {
        let s = format!("{:?}", MailboxId([0xab; 32]));
        assert!(!s.contains("ab") && !s.contains("171"));
    }
}
