//! The on-disk schema, as numbered migrations.
//!
//! `PRAGMA user_version` holds the number of migrations applied. Migration `i` (counting from 1)
//! takes a database from version `i - 1` to `i`; each runs in its own transaction together with
//! the bump of `user_version`. Never edit a published migration: append a new one, and update
//! the known-answer test (`tests/data/schema.sql`) in the same commit.
//!
//! What is on disk, and nothing else: mailbox ids, a per-mailbox [`CredentialHash`], registration
//! and storage times (whole seconds), item ids (column `message_id`), sequence numbers and opaque payloads. Nothing
//! links one mailbox to another or to a person. A message its owner deleted keeps only its row's
//! id, mailbox, sequence number, item id and storage time (the payload is NULL, its bytes
//! overwritten) until `expire` removes the row at `stored_at + Limits::remember_deleted_ids`.
//!
//! [`CredentialHash`]: crate::CredentialHash

use rusqlite::Connection;

/// The migrations, in order. `MIGRATIONS.len()` is the current schema version.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: mailboxes, messages, and the triggers that keep per-mailbox counters.
    r#"
CREATE TABLE mailboxes (
    id INTEGER PRIMARY KEY,
    mailbox_id BLOB NOT NULL UNIQUE CHECK (length(mailbox_id) = 32),
    credential_hash BLOB NOT NULL CHECK (length(credential_hash) = 32),
    registered_at INTEGER NOT NULL,
    next_seq INTEGER NOT NULL DEFAULT 1,
    message_count INTEGER NOT NULL DEFAULT 0,
    payload_bytes INTEGER NOT NULL DEFAULT 0
) STRICT;

-- payload is NULL once the owner deleted the message: the row stays until it expires, so that a
-- late retransmission is still recognised as a duplicate.
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    mailbox INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    message_id BLOB NOT NULL CHECK (length(message_id) = 32),
    stored_at INTEGER NOT NULL,
    payload BLOB
) STRICT;

CREATE UNIQUE INDEX messages_by_seq ON messages (mailbox, seq);
CREATE UNIQUE INDEX messages_by_message_id ON messages (mailbox, message_id);
CREATE INDEX messages_by_age ON messages (stored_at);
-- Fetch and delete walk only live messages: deleted ones (the majority, once clients keep up)
-- stay out of their way.
CREATE INDEX messages_live ON messages (mailbox, seq) WHERE payload IS NOT NULL;

CREATE TRIGGER messages_count_insert AFTER INSERT ON messages WHEN NEW.payload IS NOT NULL
BEGIN
    UPDATE mailboxes SET message_count = message_count + 1,
        payload_bytes = payload_bytes + length(NEW.payload)
    WHERE id = NEW.mailbox;
END;

CREATE TRIGGER messages_count_clear AFTER UPDATE OF payload ON messages
    WHEN OLD.payload IS NOT NULL AND NEW.payload IS NULL
BEGIN
    UPDATE mailboxes SET message_count = message_count - 1,
        payload_bytes = payload_bytes - length(OLD.payload)
    WHERE id = OLD.mailbox;
END;

CREATE TRIGGER messages_count_delete AFTER DELETE ON messages WHEN OLD.payload IS NOT NULL
BEGIN
    UPDATE mailboxes SET message_count = message_count - 1,
        payload_bytes = payload_bytes - length(OLD.payload)
    WHERE id = OLD.mailbox;
END;
"#,
    // 2: deleted messages (payload NULL, kept only for de-duplication) by age, so that `expire`
    // forgets their ids after `Limits::remember_deleted_ids` without walking live messages.
    r#"
CREATE INDEX messages_deleted_by_age ON messages (stored_at) WHERE payload IS NULL;
"#,
];

/// Why migrating failed.
pub(crate) enum MigrateError {
    Db(rusqlite::Error),
    TooNew { found: i64 },
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> Self {
        MigrateError::Db(e)
    }
}

/// Brings the database up to the current version. Each step re-reads the version inside its
/// write transaction, so two processes opening one file at once cannot apply a step twice.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let step = usize::try_from(found).map_err(|_| MigrateError::TooNew { found })?;
        let Some(sql) = MIGRATIONS.get(step) else {
            if step == MIGRATIONS.len() {
                return Ok(());
            }
            return Err(MigrateError::TooNew { found });
        };
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", found + 1)?;
        tx.commit()?;
    }
}
