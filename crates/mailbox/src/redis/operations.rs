//! The [`MailboxStore`] operations: each one script call on the mailbox's keys, or for an append
//! batch one call per mailbox in one pipeline per bucket, the replies decoded by `reply.rs`. `stats`
//! sums the buckets' totals; `expire` runs the expiry script on the mailboxes each bucket's index
//! says are due, then re-checks every node's persistence. What the scripts store is in
//! `scripts.rs`.

use std::collections::BTreeMap;

use redis::Value;

use super::keys::Bucket;
use super::pipeline::{Call, redis_error};
use super::{RedisStore, reply};
use crate::{
    Append, AppendOutcome, Credential, CredentialHash, Limits, MailboxId, MailboxStore, Seq, StoreError,
    StoreStats, StoredMessage, UnixSeconds,
};

/// Largest time the store accepts (Lua numbers and sorted-set scores are exact below 2^53).
const MAX_TIME: u64 = 1 << 53;

fn num(v: u64) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn check_time(now: UnixSeconds) -> Result<(), StoreError> {
    if now.0 > MAX_TIME {
        return Err(StoreError::internal(format!("time {} is out of range", now.0)));
    }
    Ok(())
}

impl RedisStore {
    /// How much earlier than a live message's a deleted message's expiry entry is (seconds), so
    /// that `EXPIRE` forgets its id `remember_deleted_ids` after it was stored.
    fn forget_shift(&self) -> u64 {
        self.limits.retention.as_secs().saturating_sub(self.limits.deleted_id_lifetime())
    }
}

// Each operation opens as `SqliteStore`'s does (the trait's signature, the credential's hash):
// two backends behind one trait, kept independent on purpose so that each can change, or be
// dropped, alone; the conformance suite holds them to one contract.
impl MailboxStore for RedisStore {
    fn limits(&self) -> &Limits {
        &self.limits
    }

    async fn register(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        now: UnixSeconds,
    ) -> Result<(), StoreError> {
        check_time(now)?;
        let hash = CredentialHash::derive(&mailbox, credential);
        let v = self.run_one(&self.scripts.register, &mailbox, vec![hash.0.to_vec(), num(now.0)]).await?;
        match reply::int("register", &v)? {
            1 => Ok(()),
            _ => Err(StoreError::Unauthorized),
        }
    }

    async fn unregister(&self, mailbox: MailboxId, credential: &Credential) -> Result<(), StoreError> {
        let hash = CredentialHash::derive(&mailbox, credential);
        let v = self
            .run_one(&self.scripts.unregister, &mailbox, vec![hash.0.to_vec(), mailbox.0.to_vec()])
            .await?;
        match reply::int("unregister", &v)? {
            1 => Ok(()),
            _ => Err(StoreError::Unauthorized),
        }
    }

    async fn append(&self, batch: Vec<Append>, now: UnixSeconds) -> Result<Vec<AppendOutcome>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        check_time(now)?;
        if let Some(e) = self.refused() {
            return Err(e);
        }
        let mut out: Vec<Option<AppendOutcome>> = vec![None; batch.len()];
        // Bucket → mailbox → the batch positions of its items, in order.
        let mut buckets: BTreeMap<Bucket, BTreeMap<MailboxId, Vec<usize>>> = BTreeMap::new();
        for (i, item) in batch.iter().enumerate() {
            if item.payload.len() > self.limits.max_payload_len {
                out[i] = Some(AppendOutcome::TooLarge);
            } else {
                buckets
                    .entry(Bucket::of(&item.mailbox))
                    .or_default()
                    .entry(item.mailbox)
                    .or_default()
                    .push(i);
            }
        }
        let header = |mailbox: &MailboxId| {
            vec![
                num(now.0),
                num(self.limits.max_messages_per_mailbox),
                num(self.limits.max_bytes_per_mailbox),
                mailbox.0.to_vec(),
            ]
        };
        let mut work = Vec::with_capacity(buckets.len());
        let mut positions = Vec::with_capacity(buckets.len());
        for (bucket, mailboxes) in buckets {
            let mut calls = Vec::with_capacity(mailboxes.len());
            let mut items_of = Vec::with_capacity(mailboxes.len());
            for (mailbox, items) in mailboxes {
                let mut args = header(&mailbox);
                for &i in &items {
                    let a = &batch[i];
                    args.push(a.item_id.0.to_vec());
                    args.push(reply::record(&a.item_id, now, &a.payload));
                }
                calls.push(Call { lua: &self.scripts.append, keys: self.keys.mailbox(&mailbox), args });
                items_of.push(items);
            }
            work.push((bucket, calls));
            positions.push(items_of);
        }
        let replies = self.run_buckets(&work).await?;
        for (bucket_replies, items_of) in replies.iter().zip(positions) {
            if bucket_replies.len() != items_of.len() {
                return Err(StoreError::internal("a pipeline reply of the wrong length"));
            }
            for (v, items) in bucket_replies.iter().zip(items_of) {
                let outcomes = reply::append_outcomes(v, items.len())?;
                for (i, o) in items.into_iter().zip(outcomes) {
                    out[i] = Some(o);
                }
            }
        }
        out.into_iter()
            .map(|o| o.ok_or_else(|| StoreError::internal("an append item got no outcome")))
            .collect()
    }

    async fn fetch(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        after: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let hash = CredentialHash::derive(&mailbox, credential);
        let limit = u64::try_from(limit).unwrap_or(u64::MAX).min(i64::MAX as u64);
        let args = vec![hash.0.to_vec(), num(after.map_or(0, |s| s.0)), num(limit)];
        let v = self.run_one(&self.scripts.fetch, &mailbox, args).await?;
        reply::fetched(&v)?.ok_or(StoreError::Unauthorized)
    }

    async fn delete_up_to(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        up_to: Seq,
    ) -> Result<u64, StoreError> {
        let hash = CredentialHash::derive(&mailbox, credential);
        let args = vec![hash.0.to_vec(), num(up_to.0), num(self.forget_shift()), mailbox.0.to_vec()];
        let v = self.run_one(&self.scripts.delete_up_to, &mailbox, args).await?;
        reply::count("delete", &v)?.ok_or(StoreError::Unauthorized)
    }

    async fn delete(
        &self,
        mailbox: MailboxId,
        credential: &Credential,
        seqs: &[Seq],
    ) -> Result<u64, StoreError> {
        let hash = CredentialHash::derive(&mailbox, credential);
        let mut args = vec![hash.0.to_vec(), num(self.forget_shift()), mailbox.0.to_vec()];
        args.extend(seqs.iter().map(|s| num(s.0)));
        let v = self.run_one(&self.scripts.delete, &mailbox, args).await?;
        reply::count("delete", &v)?.ok_or(StoreError::Unauthorized)
    }

    async fn expire(&self, now: UnixSeconds) -> Result<u64, StoreError> {
        check_time(now)?;
        // Negative before the epoch's first retention period: deleted messages' entries are moved
        // earlier than their stored_at (see `forget_shift`), so some may be due even then.
        let retention = i64::try_from(self.limits.retention.as_secs()).unwrap_or(i64::MAX);
        let cutoff = i64::try_from(now.0).unwrap_or(i64::MAX).saturating_sub(retention);
        // Which mailboxes of which bucket hold something stored at or before the cutoff.
        let due = Bucket::all().map(|bucket| async move {
            let mut conn = self.conn();
            let v: Value = redis::cmd("ZRANGE")
                .arg(self.keys.due(bucket))
                .arg("-inf")
                .arg(cutoff)
                .arg("BYSCORE")
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_error(&e))?;
            Ok::<_, StoreError>((bucket, reply::mailbox_ids(&v)?))
        });
        let mut work = Vec::new();
        for result in futures_util::future::join_all(due).await {
            let (bucket, mailboxes) = result?;
            if !mailboxes.is_empty() {
                work.push((bucket, mailboxes));
            }
        }
        let work: Vec<(Bucket, Vec<Call<'_>>)> = work
            .into_iter()
            .map(|(bucket, mailboxes)| {
                let calls = mailboxes
                    .iter()
                    .map(|m| Call {
                        lua: &self.scripts.expire,
                        keys: self.keys.mailbox(m),
                        args: vec![cutoff.to_string().into_bytes(), m.0.to_vec()],
                    })
                    .collect();
                (bucket, calls)
            })
            .collect();
        let mut total = 0u64;
        for v in self.run_buckets(&work).await?.iter().flatten() {
            let live = reply::int("expire", v)?;
            total += u64::try_from(live).map_err(|_| StoreError::internal("a negative expiry count"))?;
        }
        // The periodic re-check of every node's persistence (see `persistence.rs`).
        self.check_persistence(false).await?;
        Ok(total)
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let buckets = Bucket::all().map(|bucket| async move {
            let mut conn = self.conn();
            let v: Value = redis::cmd("HMGET")
                .arg(self.keys.stats(bucket))
                .arg("m")
                .arg("k")
                .arg("b")
                .query_async(&mut conn)
                .await
                .map_err(|e| redis_error(&e))?;
            reply::totals(&v)
        });
        let mut stats = StoreStats::default();
        for result in futures_util::future::join_all(buckets).await {
            let [m, k, b] = result?;
            stats.mailboxes += m;
            stats.messages += k;
            stats.payload_bytes += b;
        }
        Ok(stats)
    }
}
