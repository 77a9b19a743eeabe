//! Decoding what the scripts answer. Redis is trusted to run our scripts, but whatever comes back
//! is checked: an unexpected shape is an error ([`StoreError::Internal`] for a reply the script
//! cannot give, [`StoreError::Corrupt`] for damaged stored data), never a panic.

use redis::Value;

use crate::{AppendOutcome, ItemId, MailboxId, Seq, StoreError, StoredMessage, UnixSeconds};

/// Bytes before the payload in a stored record: item id (32) ‖ stored_at (u64 BE).
pub(crate) const RECORD_HEADER: usize = 40;

/// A stored record: what the fetch script returns for each message.
pub(crate) fn record(item_id: &ItemId, stored_at: UnixSeconds, payload: &[u8]) -> Vec<u8> {
    let mut rec = Vec::with_capacity(RECORD_HEADER + payload.len());
    rec.extend_from_slice(&item_id.0);
    rec.extend_from_slice(&stored_at.0.to_be_bytes());
    rec.extend_from_slice(payload);
    rec
}

fn unexpected(what: &str, v: &Value) -> StoreError {
    StoreError::internal(format!("unexpected reply from the {what} script: {}", shape(v)))
}

/// The kind of a value, without its content (replies may hold payloads and ids).
fn shape(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Int(_) => "integer",
        Value::BulkString(_) => "string",
        Value::Array(_) => "array",
        Value::SimpleString(_) => "status",
        Value::Okay => "OK",
        Value::ServerError(_) => "error",
        _ => "other",
    }
}

/// An integer reply.
pub(crate) fn int(what: &str, v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Int(i) => Ok(*i),
        _ => Err(unexpected(what, v)),
    }
}

/// A `{status, …}` reply: `None` when the status is 0 (unauthorized or unknown mailbox), else the
/// rest.
pub(crate) fn status<'a>(what: &str, v: &'a Value) -> Result<Option<&'a [Value]>, StoreError> {
    match v {
        Value::Array(items) => match items.split_first() {
            Some((Value::Int(0), _)) => Ok(None),
            Some((Value::Int(1), rest)) => Ok(Some(rest)),
            _ => Err(unexpected(what, v)),
        },
        _ => Err(unexpected(what, v)),
    }
}

/// The append script's outcomes for `n` items.
pub(crate) fn append_outcomes(v: &Value, n: usize) -> Result<Vec<AppendOutcome>, StoreError> {
    let Some(rest) = status("append", v)? else {
        return Ok(vec![AppendOutcome::UnknownMailbox; n]);
    };
    if rest.len() != n {
        return Err(StoreError::internal(format!(
            "the append script answered {} outcomes for {n} messages",
            rest.len()
        )));
    }
    rest.iter()
        .map(|o| {
            let i = int("append", o)?;
            Ok(match i {
                0 => AppendOutcome::QuotaExceeded,
                s if s > 0 => AppendOutcome::Stored(Seq(s.unsigned_abs())),
                s => AppendOutcome::Duplicate(Seq(s.unsigned_abs())),
            })
        })
        .collect()
}

/// A `{status, count}` reply of the delete scripts.
pub(crate) fn count(what: &str, v: &Value) -> Result<Option<u64>, StoreError> {
    let Some(rest) = status(what, v)? else { return Ok(None) };
    match rest {
        [n] => u64::try_from(int(what, n)?).map(Some).map_err(|_| unexpected(what, v)),
        _ => Err(unexpected(what, v)),
    }
}

fn bytes<'a>(what: &str, v: &'a Value) -> Result<&'a [u8], StoreError> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.as_bytes()),
        _ => Err(unexpected(what, v)),
    }
}

/// A non-negative decimal integer as Redis prints it.
pub(crate) fn decimal(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// The fetch script's reply: `None` when unauthorized.
pub(crate) fn fetched(v: &Value) -> Result<Option<Vec<StoredMessage>>, StoreError> {
    let Some(rest) = status("fetch", v)? else { return Ok(None) };
    let [Value::Array(flat)] = rest else { return Err(unexpected("fetch", v)) };
    if flat.len() % 2 != 0 {
        return Err(unexpected("fetch", v));
    }
    let mut out = Vec::with_capacity(flat.len() / 2);
    for pair in flat.chunks_exact(2) {
        let rec = bytes("fetch", &pair[0])?;
        let seq = decimal(bytes("fetch", &pair[1])?)
            .ok_or_else(|| StoreError::corrupt("a stored message has a malformed sequence number"))?;
        out.push(parse_record(rec, Seq(seq))?);
    }
    Ok(Some(out))
}

/// Splits a stored record.
pub(crate) fn parse_record(rec: &[u8], seq: Seq) -> Result<StoredMessage, StoreError> {
    let (Some(id), Some(at), Some(payload)) = (rec.get(..32), rec.get(32..40), rec.get(40..)) else {
        return Err(StoreError::corrupt("a stored message record is shorter than its header"));
    };
    let mut item_id = [0; 32];
    item_id.copy_from_slice(id);
    let mut stored_at = [0; 8];
    stored_at.copy_from_slice(at);
    Ok(StoredMessage {
        seq,
        item_id: ItemId(item_id),
        payload: payload.to_vec(),
        stored_at: UnixSeconds(u64::from_be_bytes(stored_at)),
    })
}

/// The mailbox ids in a bucket's expiry index.
pub(crate) fn mailbox_ids(v: &Value) -> Result<Vec<MailboxId>, StoreError> {
    let Value::Array(items) = v else { return Err(unexpected("expiry index", v)) };
    items
        .iter()
        .map(|m| {
            let b = bytes("expiry index", m)?;
            <[u8; 32]>::try_from(b)
                .map(MailboxId)
                .map_err(|_| StoreError::corrupt("the expiry index holds a malformed mailbox id"))
        })
        .collect()
}

/// A bucket's totals (`HMGET stats m k b`): absent fields count 0.
pub(crate) fn totals(v: &Value) -> Result<[u64; 3], StoreError> {
    let Value::Array(items) = v else { return Err(unexpected("stats", v)) };
    let [m, k, b] = items.as_slice() else { return Err(unexpected("stats", v)) };
    let field = |f: &Value| -> Result<u64, StoreError> {
        match f {
            Value::Nil => Ok(0),
            Value::Int(i) => u64::try_from(*i).map_err(|_| StoreError::corrupt("a negative total")),
            other => decimal(bytes("stats", other)?)
                .ok_or_else(|| StoreError::corrupt("a bucket's totals are malformed or negative")),
        }
    };
    Ok([field(m)?, field(k)?, field(b)?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any reply shape, with small integers and strings that are sometimes digits.
    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            (-3i64..70_000).prop_map(Value::Int),
            any::<i64>().prop_map(Value::Int),
            prop::collection::vec(any::<u8>(), 0..48).prop_map(Value::BulkString),
            "[0-9]{1,22}".prop_map(|s| Value::BulkString(s.into_bytes())),
            Just(Value::Okay),
        ];
        leaf.prop_recursive(3, 48, 6, |inner| prop::collection::vec(inner, 0..6).prop_map(Value::Array))
    }

    proptest! {
        /// No reply, however malformed, makes a decoder panic.
        #[test]
        fn decoders_never_panic(v in any_value(), n in 0usize..5, rec in prop::collection::vec(any::<u8>(), 0..60)) {
            let _ = append_outcomes(&v, n);
            let _ = fetched(&v);
            let _ = count("delete", &v);
            let _ = mailbox_ids(&v);
            let _ = totals(&v);
            let _ = int("x", &v);
            let _ = parse_record(&rec, Seq(1));
            let _ = decimal(&rec);
            let _ = crate::redis::SlotMap::parse(&v);
        }
    }

    /// The stored record layout, pinned.
    #[test]
    fn record_known_answer() {
        let rec = record(&ItemId([0xee; 32]), UnixSeconds(0x0102_0304_0506_0708), b"hi");
        let mut want = vec![0xee; 32];
        want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        want.extend_from_slice(b"hi");
        assert_eq!(rec, want);
    }

    #[test]
    fn records_round_trip() {
        let rec = record(&ItemId([7; 32]), UnixSeconds(1_700_000_000), b"hello");
        let m = parse_record(&rec, Seq(3)).unwrap();
        assert_eq!(
            (m.seq, m.item_id, &m.payload[..], m.stored_at),
            (Seq(3), ItemId([7; 32]), &b"hello"[..], UnixSeconds(1_700_000_000))
        );
        assert!(parse_record(&rec[..39], Seq(1)).is_err());
        assert!(parse_record(&rec[..40], Seq(1)).unwrap().payload.is_empty());
    }

    #[test]
    fn malformed_replies_are_errors() {
        let bad = [
            Value::Nil,
            Value::Int(1),
            Value::Array(vec![]),
            Value::Array(vec![Value::Int(2)]),
            Value::Array(vec![Value::Int(1), Value::Int(1)]),
            Value::Array(vec![Value::Int(1), Value::Array(vec![Value::Int(1)])]),
            Value::Array(vec![
                Value::Int(1),
                Value::Array(vec![Value::BulkString(vec![0; 39]), Value::BulkString(b"1".to_vec())]),
            ]),
            Value::Array(vec![
                Value::Int(1),
                Value::Array(vec![Value::BulkString(vec![0; 40]), Value::BulkString(b"-1".to_vec())]),
            ]),
        ];
        for v in &bad {
            assert!(fetched(v).is_err(), "{v:?}");
        }
        assert!(append_outcomes(&Value::Array(vec![Value::Int(1), Value::Int(1)]), 2).is_err());
        assert!(append_outcomes(&Value::Array(vec![Value::Int(1), Value::Nil]), 1).is_err());
        assert_eq!(
            append_outcomes(
                &Value::Array(vec![Value::Int(1), Value::Int(4), Value::Int(-2), Value::Int(0)]),
                3
            )
            .unwrap(),
            vec![
                AppendOutcome::Stored(Seq(4)),
                AppendOutcome::Duplicate(Seq(2)),
                AppendOutcome::QuotaExceeded
            ]
        );
        assert_eq!(
            append_outcomes(&Value::Array(vec![Value::Int(0)]), 2).unwrap(),
            vec![AppendOutcome::UnknownMailbox; 2]
        );
        assert!(mailbox_ids(&Value::Array(vec![Value::BulkString(vec![1; 31])])).is_err());
        assert!(totals(&Value::Array(vec![Value::Nil, Value::Nil])).is_err());
        assert!(
            totals(&Value::Array(vec![Value::BulkString(b"-1".to_vec()), Value::Nil, Value::Nil])).is_err()
        );
        assert_eq!(
            totals(&Value::Array(vec![Value::BulkString(b"3".to_vec()), Value::Nil, Value::Int(9)])).unwrap(),
            [3, 0, 9]
        );
        assert_eq!(decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(decimal(b"18446744073709551616"), None);
        assert_eq!(decimal(b"1.5"), None);
        assert_eq!(decimal(b""), None);
    }
}
