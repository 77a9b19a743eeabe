//! Which master serves each hash slot, as far as the store knows (`CLUSTER SLOTS`): used only to
//! group work into one pipeline per master (the client routes, and follows redirections, by
//! itself). Read at connect and again when a grouped pipeline fails; a master not seen before has
//! its persistence checked.

use redis::Value;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

use super::RedisStore;
use crate::StoreError;

/// Which master serves each hash slot, as far as the store knows; used only to group work into
/// one pipeline per master (the client routes, and follows redirections, by itself).
#[derive(Default)]
pub(super) struct SlotMap {
    /// Per slot: an index into the masters, or `u16::MAX` when no master serves it.
    master: Vec<u16>,
    /// The masters, as `host:port`.
    masters: Vec<String>,
}

impl SlotMap {
    pub(super) fn master(&self, slot: u16) -> Option<u16> {
        self.master.get(usize::from(slot)).copied().filter(|&m| m != u16::MAX)
    }

    /// Parses a `CLUSTER SLOTS` reply: `[[start, end, [host, port, …], replica…], …]`.
    pub(super) fn parse(v: &Value) -> Result<SlotMap, StoreError> {
        let bad = || StoreError::internal("unexpected reply to CLUSTER SLOTS");
        let Value::Array(ranges) = v else { return Err(bad()) };
        let mut masters: Vec<Vec<u8>> = Vec::new();
        let mut map = vec![u16::MAX; 16_384];
        for range in ranges {
            let Value::Array(fields) = range else { return Err(bad()) };
            let [Value::Int(start), Value::Int(end), Value::Array(node), ..] = fields.as_slice() else {
                return Err(bad());
            };
            let [Value::BulkString(host), Value::Int(port), ..] = node.as_slice() else { return Err(bad()) };
            let mut addr = host.clone();
            addr.extend_from_slice(format!(":{port}").as_bytes());
            let index = match masters.iter().position(|m| *m == addr) {
                Some(i) => i,
                None => {
                    masters.push(addr);
                    masters.len() - 1
                }
            };
            let index = u16::try_from(index).map_err(|_| bad())?;
            let (start, end) =
                (usize::try_from(*start).map_err(|_| bad())?, usize::try_from(*end).map_err(|_| bad())?);
            for slot in map.get_mut(start..=end).ok_or_else(bad)? {
                *slot = index;
            }
        }
        let masters = masters.iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect();
        Ok(SlotMap { master: map, masters })
    }
}

impl RedisStore {
    /// Reads the cluster's slot map again (`CLUSTER SLOTS`); keeps the old one if that fails.
    /// A master it has not checked (a failover, a new node) has its persistence checked.
    pub(super) async fn refresh_slots(&self) {
        let mut conn = self.conn();
        let reply = conn
            .route_command(
                redis::cmd("CLUSTER").arg("SLOTS").clone(),
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary),
            )
            .await;
        let Ok(map) = reply.map_err(|_| ()).and_then(|v| SlotMap::parse(&v).map_err(|_| ())) else { return };
        let unchecked = match self.checked_masters.lock() {
            Ok(checked) => map.masters.iter().any(|m| !checked.contains(m)),
            Err(_) => true,
        };
        if let Ok(mut slots) = self.slots.write() {
            *slots = map;
        }
        if unchecked {
            // The outcome is recorded for `append`; a failed listing leaves the last one.
            let _ = self.check_persistence(false).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.into()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    fn range(start: i64, end: i64, master: Value) -> Value {
        Value::Array(vec![Value::Int(start), Value::Int(end), master, node("127.0.0.1", 9)])
    }

    #[test]
    fn slot_map_from_cluster_slots() {
        let reply = Value::Array(vec![
            range(0, 5460, node("127.0.0.1", 7301)),
            range(5461, 10922, node("127.0.0.1", 7302)),
            range(10923, 16000, node("127.0.0.1", 7301)),
        ]);
        let map = SlotMap::parse(&reply).unwrap();
        assert_eq!(map.master(0), Some(0));
        assert_eq!(map.master(5461), Some(1));
        assert_eq!(map.master(16000), Some(0));
        assert_eq!(map.master(16001), None);
        assert_eq!(SlotMap::default().master(0), None);
    }

    #[test]
    fn malformed_cluster_slots_are_errors() {
        for bad in [
            Value::Nil,
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![range(0, 16384, node("h", 1))]),
            Value::Array(vec![range(-1, 3, node("h", 1))]),
            Value::Array(vec![range(5, 3, node("h", 1))]),
            Value::Array(vec![Value::Array(vec![Value::Int(0), Value::Int(1), Value::Nil])]),
            Value::Array(vec![range(0, 1, Value::Array(vec![Value::Int(1)]))]),
        ] {
            assert!(SlotMap::parse(&bad).is_err(), "{bad:?}");
        }
    }
}
