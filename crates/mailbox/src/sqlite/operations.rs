//! The [`MailboxStore`] operations: a write (register, unregister, append, delete, expire) is one
//! job of the writer, a read (fetch, stats) runs on a read connection; each is SQL on the tables
//! of [`schema`](super::schema). A delete sets the payload to NULL (its bytes overwritten:
//! `secure_delete`) and keeps the row's ids for de-duplication until `expire` removes it. Also the
//! conversions between SQLite's `i64` and the store's numbers.

use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use super::errors::OpError;
use super::writer::Kind;
use crate::{
    Append, AppendOutcome, Credential, CredentialHash, ItemId, Limits, MailboxId, MailboxStore, Seq,
    StoreError, StoreStats, StoredMessage, UnixSeconds,
};

fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::internal(format!("{what} {v} is out of range")))
}

/// For comparisons: a bound beyond `i64::MAX` means the same as `i64::MAX` (no stored value is
/// larger).
fn bound_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::corrupt(format!("negative {what} {v} in the database")))
}

fn blob32(v: Vec<u8>, what: &str) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(v).map_err(|_| StoreError::corrupt(format!("{what} is not 32 bytes")))
}

/// The mailbox's row id, after checking the credential.
fn authorize(conn: &Connection, mailbox: &MailboxId, hash: &CredentialHash) -> Result<i64, OpError> {
    let row: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT id, credential_hash FROM mailboxes WHERE mailbox_id = ?1")?
        .query_row([&mailbox.0[..]], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        Some((id, stored)) if hash.matches(&stored) => Ok(id),
        _ => Err(StoreError::Unauthorized.into()),
    }
}

fn register_op(
    conn: &Connection,
    mailbox: &MailboxId,
    hash: &CredentialHash,
    now: UnixSeconds,
) -> Result<(), OpError> {
    let stored: Option<Vec<u8>> = conn
        .prepare_cached("SELECT credential_hash FROM mailboxes WHERE mailbox_id = ?1")?
        .query_row([&mailbox.0[..]], |r| r.get(0))
        .optional()?;
    match stored {
        Some(stored) if hash.matches(&stored) => Ok(()),
        Some(_) => Err(StoreError::Unauthorized.into()),
        None => {
            conn.prepare_cached(
                "INSERT INTO mailboxes (mailbox_id, credential_hash, registered_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![&mailbox.0[..], &hash.0[..], to_i64(now.0, "time")?])?;
            Ok(())
        }
    }
}

fn append_op(
    conn: &Connection,
    batch: &[Append],
    now: UnixSeconds,
    limits: &Limits,
) -> Result<Vec<AppendOutcome>, OpError> {
    let now = to_i64(now.0, "time")?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for item in batch {
        outcomes.push(append_one(conn, item, now, limits)?);
    }
    Ok(outcomes)
}

fn append_one(conn: &Connection, item: &Append, now: i64, limits: &Limits) -> Result<AppendOutcome, OpError> {
    if item.payload.len() > limits.max_payload_len {
        return Ok(AppendOutcome::TooLarge);
    }
    let row: Option<(i64, i64, i64, i64)> = conn
        .prepare_cached(
            "SELECT id, next_seq, message_count, payload_bytes FROM mailboxes WHERE mailbox_id = ?1",
        )?
        .query_row([&item.mailbox.0[..]], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    let Some((id, next_seq, count, bytes)) = row else {
        return Ok(AppendOutcome::UnknownMailbox);
    };
    let existing: Option<i64> = conn
        .prepare_cached("SELECT seq FROM messages WHERE mailbox = ?1 AND message_id = ?2")?
        .query_row(params![id, &item.item_id.0[..]], |r| r.get(0))
        .optional()?;
    if let Some(seq) = existing {
        return Ok(AppendOutcome::Duplicate(Seq(to_u64(seq, "sequence number")?)));
    }
    let count = to_u64(count, "message count")?;
    let bytes = to_u64(bytes, "byte count")?;
    let len = item.payload.len() as u64;
    if count >= limits.max_messages_per_mailbox || bytes.saturating_add(len) > limits.max_bytes_per_mailbox {
        return Ok(AppendOutcome::QuotaExceeded);
    }
    conn.prepare_cached(
        "INSERT INTO messages (mailbox, seq, message_id, stored_at, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, next_seq, &item.item_id.0[..], now, &item.payload[..]])?;
    conn.prepare_cached("UPDATE mailboxes SET next_seq = next_seq + 1 WHERE id = ?1")?.execute([id])?;
    Ok(AppendOutcome::Stored(Seq(to_u64(next_seq, "sequence number")?)))
}

fn fetch_op(
    conn: &Connection,
    mailbox: &MailboxId,
    hash: &CredentialHash,
    after: Option<Seq>,
    limit: usize,
) -> Result<Vec<StoredMessage>, OpError> {
    let id = authorize(conn, mailbox, hash)?;
    let after = bound_i64(after.map_or(0, |s| s.0));
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(
        "SELECT seq, message_id, payload, stored_at FROM messages
         WHERE mailbox = ?1 AND seq > ?2 AND payload IS NOT NULL ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![id, after, limit], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, Vec<u8>>(2)?, r.get::<_, i64>(3)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, item_id, payload, stored_at) = row?;
        out.push(StoredMessage {
            seq: Seq(to_u64(seq, "sequence number")?),
            item_id: ItemId(blob32(item_id, "item id")?),
            payload,
            stored_at: UnixSeconds(to_u64(stored_at, "time")?),
        });
    }
    Ok(out)
}

fn stats_op(conn: &Connection) -> Result<StoreStats, OpError> {
    let (mailboxes, messages, bytes): (i64, i64, i64) = conn.query_row(
        "SELECT count(*), coalesce(sum(message_count), 0), coalesce(sum(payload_bytes), 0) FROM mailboxes",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(StoreStats {
        mailboxes: to_u64(mailboxes, "count")?,
        messages: to_u64(messages, "count")?,
        payload_bytes: to_u64(bytes, "count")?,
    })
}

// Alike in its openings to `RedisStore`'s and `ModelStore`'s on purpose (see the note above
// `impl MailboxStore for RedisStore`).
impl MailboxStore for SqliteStore {
    fn limits(&self) -> &Limits {
        &self.limits
    }

    async fn register(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        now: UnixSeconds,
    ) -> Result<(), StoreError> {
        let hash = CredentialHash::derive(&mailbox, credential);
        self.write(Kind::Other, move |conn| register_op(conn, &mailbox, &hash, now)).await
    }

    async fn unregister(&self, mailbox: MailboxId, credential: &Credential) -> Result<(), StoreError> {
        let hash = CredentialHash::derive(&mailbox, credential);
        self.write(Kind::Delete, move |conn| {
            let id = authorize(conn, &mailbox, &hash)?;
            conn.prepare_cached("DELETE FROM mailboxes WHERE id = ?1")?.execute([id])?;
            Ok(())
        })
        .await
    }

    async fn append(&self, batch: Vec<Append>, now: UnixSeconds) -> Result<Vec<AppendOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let limits = self.limits.clone();
        self.write(Kind::Append, move |conn| append_op(conn, &batch, now, &limits)).await
    }

    async fn fetch(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        after: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let hash = CredentialHash::derive(&mailbox, credential);
        self.read(move |conn| fetch_op(conn, &mailbox, &hash, after, limit)).await
    }

    async fn delete_up_to(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        up_to: Seq,
    ) -> Result<u64, StoreError> {
        let hash = CredentialHash::derive(&mailbox, credential);
        self.write(Kind::Delete, move |conn| {
            let id = authorize(conn, &mailbox, &hash)?;
            let n = conn
                .prepare_cached(
                    "UPDATE messages SET payload = NULL WHERE mailbox = ?1 AND seq <= ?2 AND payload IS NOT NULL",
                )?
                .execute(params![id, bound_i64(up_to.0)])?;
            Ok(n as u64)
        })
        .await
    }

    async fn delete(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        seqs: &[Seq],
    ) -> Result<u64, StoreError> {
        let hash = CredentialHash::derive(&mailbox, credential);
        let seqs = seqs.to_vec();
        self.write(Kind::Delete, move |conn| {
            let id = authorize(conn, &mailbox, &hash)?;
            let mut stmt = conn.prepare_cached(
                "UPDATE messages SET payload = NULL WHERE mailbox = ?1 AND seq = ?2 AND payload IS NOT NULL",
            )?;
            let mut n = 0u64;
            for seq in seqs {
                // A sequence number beyond i64 cannot be in the database.
                if let Ok(seq) = i64::try_from(seq.0) {
                    n += stmt.execute(params![id, seq])? as u64;
                }
            }
            Ok(n)
        })
        .await
    }

    async fn expire(&self, now: UnixSeconds) -> Result<u64, StoreError> {
        let retention = now.0.checked_sub(self.limits.retention.as_secs());
        let Some(deleted) = now.0.checked_sub(self.limits.deleted_id_lifetime()) else {
            return Ok(0);
        };
        self.write(Kind::Delete, move |conn| {
            // Ids of deleted messages, past the de-duplication window.
            conn.prepare_cached("DELETE FROM messages WHERE payload IS NULL AND stored_at <= ?1")?
                .execute([bound_i64(deleted)])?;
            let Some(cutoff) = retention else { return Ok(0) };
            let cutoff = bound_i64(cutoff);
            let live: i64 = conn
                .prepare_cached(
                    "SELECT count(*) FROM messages WHERE stored_at <= ?1 AND payload IS NOT NULL",
                )?
                .query_row([cutoff], |r| r.get(0))?;
            conn.prepare_cached("DELETE FROM messages WHERE stored_at <= ?1")?.execute([cutoff])?;
            Ok(to_u64(live, "count")?)
        })
        .await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.read(stats_op).await
    }
}
