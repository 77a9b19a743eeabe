-- A database as schema version 1 writes it (see src/sqlite/schema.rs), with data:
-- mailbox(1) registered with credential(1): message 1 deleted by its owner (tombstone),
-- messages 2 and 3 live; mailbox(2) registered with credential(2), empty.
-- Credential hashes: SHA-256("qanat mailbox credential v1\0" || mailbox id || credential).
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
INSERT INTO mailboxes (id, mailbox_id, credential_hash, registered_at, next_seq) VALUES (1, X'014d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d', X'eb5eaeba4394763ecb01d2bf896abc5a6c112d7d73ab600848694a032f12b055', 1700000000, 4);
INSERT INTO mailboxes (id, mailbox_id, credential_hash, registered_at, next_seq) VALUES (2, X'024d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d', X'4b1b9bb552d8af0d2c940ac1331a2d099f185687fd922f2b297f6da5484938f9', 1700000000, 1);
INSERT INTO messages (mailbox, seq, message_id, stored_at, payload) VALUES (1, 1, X'000000011d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d', 1700000000, NULL);
INSERT INTO messages (mailbox, seq, message_id, stored_at, payload) VALUES (1, 2, X'000000021d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d', 1700000000, CAST('second' AS BLOB));
INSERT INTO messages (mailbox, seq, message_id, stored_at, payload) VALUES (1, 3, X'000000031d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d', 1700000000, CAST('third!' AS BLOB));
PRAGMA user_version = 1;
