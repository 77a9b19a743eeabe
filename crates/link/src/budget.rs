//! A listener's budgets, without IO: handshakes in flight (in all and per source address) and
//! established connections (in all and per source address).
//!
//! The accept loop asks [`Pending::admit`] about each new connection before its handshake
//! starts. A source that already holds its share is refused; when the table of handshakes is
//! full, the oldest handshake of the source with the most in flight is abandoned to make room
//! ([`Pending::evict`]). So a flood from a few addresses costs those addresses their own
//! handshakes and nobody else's: a node (or an honest client) dialling from another address
//! always gets a slot, and keeps it unless it becomes the worst offender. Only a flood from more
//! addresses than there are slots can abandon an honest handshake, and then the oldest first, so
//! a handshake that finishes quickly (one of a few seconds on a 2G link) outlives the slowloris
//! dialers that hold theirs until the timeout.
//!
//! Established connections hold a [`Slot`] for their lifetime; dropping it (when the session
//! ends) frees the place.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

/// The address budgets are kept per: an IPv4 address (IPv4-mapped IPv6 included), or the /64
/// prefix of an IPv6 address (one host usually holds a whole /64).
pub(crate) fn source_of(addr: SocketAddr) -> IpAddr {
    match addr.ip() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Why a connection was refused before (or at the end of) its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its source already has the most handshakes in flight it may.
    HandshakesPerIp,
    /// Its source already holds the most connections it may.
    ConnectionsPerIp,
    /// The listener holds the most established connections it may.
    Connections,
}

/// Established connections, in all and per source; shared between the accept loop and the
/// sessions (through their [`Slot`]s).
#[derive(Debug, Default)]
pub(crate) struct Established {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

/// [`Established`] behind a lock.
pub(crate) type SharedEstablished = Arc<Mutex<Established>>;

impl Established {
    /// `(in all, from source)`.
    pub(crate) fn counts(table: &SharedEstablished, source: IpAddr) -> (usize, usize) {
        table.lock().map(|t| (t.total, t.per_source.get(&source).copied().unwrap_or(0))).unwrap_or((0, 0))
    }

    /// Takes a place for a connection from `source`, unless the listener holds `max` or the
    /// source `max_per_source`.
    pub(crate) fn reserve(
        table: &SharedEstablished,
        source: IpAddr,
        max: usize,
        max_per_source: usize,
    ) -> Result<Slot, Refusal> {
        let Ok(mut t) = table.lock() else { return Err(Refusal::Connections) };
        let n = t.per_source.get(&source).copied().unwrap_or(0);
        if t.total >= max {
            return Err(Refusal::Connections);
        }
        if n >= max_per_source {
            return Err(Refusal::ConnectionsPerIp);
        }
        t.total += 1;
        t.per_source.insert(source, n + 1);
        Ok(Slot { source, table: table.clone() })
    }

    fn release(&mut self, source: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_source.get_mut(&source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
    }
}

/// One established connection's place in the listener's budget, freed when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    source: IpAddr,
    table: SharedEstablished,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut t) = self.table.lock() {
            t.release(self.source);
        }
    }
}

/// Handshakes in flight, each known by a key `K` (the accept loop's task id), in the order they
/// started.
#[derive(Debug)]
pub(crate) struct Pending<K> {
    by_key: HashMap<K, IpAddr>,
    /// Per source, its handshakes oldest first, each with its start number.
    by_source: HashMap<IpAddr, VecDeque<(u64, K)>>,
    next: u64,
    max: usize,
    max_per_source: usize,
}

/// The connection budgets [`Pending::admit`] checks besides handshakes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// Established connections in all.
    pub(crate) max: usize,
    /// Connections (established and in handshake) per source.
    pub(crate) max_per_source: usize,
}

impl<K: Copy + Eq + Hash> Pending<K> {
    /// At most `max` handshakes, `max_per_source` from one source (both at least 1).
    pub(crate) fn new(max: usize, max_per_source: usize) -> Self {
        Self {
            by_key: HashMap::new(),
            by_source: HashMap::new(),
            next: 0,
            max: max.max(1),
            max_per_source: max_per_source.max(1),
        }
    }

    /// Handshakes in flight.
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    fn in_flight(&self, source: IpAddr) -> usize {
        self.by_source.get(&source).map_or(0, VecDeque::len)
    }

    /// Whether a new connection from `source` may start its handshake, given the established
    /// connections `(in all, from source)`. `Ok(Some(k))`: first abandon handshake `k` (already
    /// taken out of the table) to make room.
    pub(crate) fn admit(
        &mut self,
        source: IpAddr,
        (established, established_from_source): (usize, usize),
        limits: ConnectionLimits,
    ) -> Result<Option<K>, Refusal> {
        let pending = self.in_flight(source);
        if pending >= self.max_per_source {
            return Err(Refusal::HandshakesPerIp);
        }
        if established_from_source + pending >= limits.max_per_source {
            return Err(Refusal::ConnectionsPerIp);
        }
        if established >= limits.max {
            return Err(Refusal::Connections);
        }
        Ok(if self.len() >= self.max { self.evict() } else { None })
    }

    /// Records handshake `key` from `source`, just started.
    pub(crate) fn insert(&mut self, source: IpAddr, key: K) {
        let n = self.next;
        self.next += 1;
        self.by_key.insert(key, source);
        self.by_source.entry(source).or_default().push_back((n, key));
    }

    /// Forgets handshake `key` (it ended); its source, if it was in the table.
    pub(crate) fn remove(&mut self, key: K) -> Option<IpAddr> {
        let source = self.by_key.remove(&key)?;
        if let Some(q) = self.by_source.get_mut(&source) {
            q.retain(|(_, k)| *k != key);
            if q.is_empty() {
                self.by_source.remove(&source);
            }
        }
        Some(source)
    }

    /// Takes out the oldest handshake of the source with the most in flight (of those, the one
    /// whose oldest handshake started first).
    pub(crate) fn evict(&mut self) -> Option<K> {
        let source = self
            .by_source
            .iter()
            .filter_map(|(s, q)| q.front().map(|(n, _)| (q.len(), std::cmp::Reverse(*n), *s)))
            .max()
            .map(|(_, _, s)| s)?;
        let (_, key) = *self.by_source.get(&source)?.front()?;
        self.remove(key);
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    const WIDE: ConnectionLimits = ConnectionLimits { max: 1000, max_per_source: 1000 };

    #[test]
    fn a_full_table_gives_up_the_oldest_handshake_of_the_busiest_source() {
        let mut p = Pending::<u32>::new(6, 4);
        // Source 2 opens four, source 3 two: the table is full.
        for k in 0..4 {
            assert_eq!(p.admit(ip(2), (0, 0), WIDE), Ok(None));
            p.insert(ip(2), k);
        }
        for k in 10..12 {
            assert_eq!(p.admit(ip(3), (0, 0), WIDE), Ok(None));
            p.insert(ip(3), k);
        }
        // Source 2 is at its own bound.
        assert_eq!(p.admit(ip(2), (0, 0), WIDE), Err(Refusal::HandshakesPerIp));
        // A newcomer takes the place of source 2's oldest.
        assert_eq!(p.admit(ip(1), (0, 0), WIDE), Ok(Some(0)));
        p.insert(ip(1), 20);
        assert_eq!(p.len(), 6);
        // Then 2 and 3 have three and two: 2's next oldest goes, then (a tie at two) the
        // source whose oldest is older: 2 again (it started first), then 3.
        assert_eq!(p.admit(ip(4), (0, 0), WIDE), Ok(Some(1)));
        p.insert(ip(4), 30);
        assert_eq!(p.admit(ip(5), (0, 0), WIDE), Ok(Some(2)));
        p.insert(ip(5), 40);
        assert_eq!(p.admit(ip(6), (0, 0), WIDE), Ok(Some(10)));
        p.insert(ip(6), 50);
        // The newcomers, one each, are still there.
        for k in [20, 30, 40, 50] {
            assert!(p.by_key.contains_key(&k));
        }
        assert_eq!(p.remove(20), Some(ip(1)));
        assert_eq!(p.remove(20), None);
        assert_eq!(p.len(), 5);
    }

    #[test]
    fn connection_bounds_count_handshakes_in_flight_and_established_connections() {
        let mut p = Pending::<u32>::new(100, 10);
        let limits = ConnectionLimits { max: 5, max_per_source: 3 };
        p.insert(ip(1), 1);
        // One in flight and two established make three: the source's bound.
        assert_eq!(p.admit(ip(1), (2, 2), limits), Err(Refusal::ConnectionsPerIp));
        assert_eq!(p.admit(ip(1), (2, 1), limits), Ok(None));
        assert_eq!(p.admit(ip(2), (5, 0), limits), Err(Refusal::Connections));

        let table = SharedEstablished::default();
        let a = Established::reserve(&table, ip(1), 3, 2).unwrap();
        let _b = Established::reserve(&table, ip(1), 3, 2).unwrap();
        assert_eq!(Established::reserve(&table, ip(1), 3, 2).unwrap_err(), Refusal::ConnectionsPerIp);
        let _c = Established::reserve(&table, ip(2), 3, 2).unwrap();
        assert_eq!(Established::reserve(&table, ip(3), 3, 2).unwrap_err(), Refusal::Connections);
        assert_eq!(Established::counts(&table, ip(1)), (3, 2));
        drop(a);
        assert_eq!(Established::counts(&table, ip(1)), (2, 1));
        assert!(Established::reserve(&table, ip(3), 3, 2).is_ok());
    }

    #[test]
    fn ipv6_sources_are_their_64_prefix_and_mapped_ipv4_is_ipv4() {
        let a: SocketAddr = "[2001:db8:1:2:aaaa::1]:5".parse().unwrap();
        let b: SocketAddr = "[2001:db8:1:2:bbbb::9]:6".parse().unwrap();
        let c: SocketAddr = "[2001:db8:1:3::1]:6".parse().unwrap();
        assert_eq!(source_of(a), source_of(b));
        assert_ne!(source_of(a), source_of(c));
        let m: SocketAddr = "[::ffff:10.1.2.3]:7".parse().unwrap();
        assert_eq!(source_of(m), IpAddr::from([10, 1, 2, 3]));
    }
}
