-- user_version = 2

-- index messages_by_age
CREATE INDEX messages_by_age ON messages (stored_at);

-- index messages_by_message_id
CREATE UNIQUE INDEX messages_by_message_id ON messages (mailbox, message_id);

-- index messages_by_seq
CREATE UNIQUE INDEX messages_by_seq ON messages (mailbox, seq);

-- index messages_deleted_by_age
CREATE INDEX messages_deleted_by_age ON messages (stored_at) WHERE payload IS NULL;

-- index messages_live
CREATE INDEX messages_live ON messages (mailbox, seq) WHERE payload IS NOT NULL;

-- table mailboxes
CREATE TABLE mailboxes (
    id INTEGER PRIMARY KEY,
    mailbox_id BLOB NOT NULL UNIQUE CHECK (length(mailbox_id) = 32),
    credential_hash BLOB NOT NULL CHECK (length(credential_hash) = 32),
    registered_at INTEGER NOT NULL,
    next_seq INTEGER NOT NULL DEFAULT 1,
    message_count INTEGER NOT NULL DEFAULT 0,
    payload_bytes INTEGER NOT NULL DEFAULT 0
) STRICT;

-- table messages
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    mailbox INTEGER NOT NULL REFERENCES mailboxes (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    message_id BLOB NOT NULL CHECK (length(message_id) = 32),
    stored_at INTEGER NOT NULL,
    payload BLOB
) STRICT;

-- trigger messages_count_clear
CREATE TRIGGER messages_count_clear AFTER UPDATE OF payload ON messages
    WHEN OLD.payload IS NOT NULL AND NEW.payload IS NULL
BEGIN
    UPDATE mailboxes SET message_count = message_count - 1,
        payload_bytes = payload_bytes - length(OLD.payload)
    WHERE id = OLD.mailbox;
END;

-- trigger messages_count_delete
CREATE TRIGGER messages_count_delete AFTER DELETE ON messages WHEN OLD.payload IS NOT NULL
BEGIN
    UPDATE mailboxes SET message_count = message_count - 1,
        payload_bytes = payload_bytes - length(OLD.payload)
    WHERE id = OLD.mailbox;
END;

-- trigger messages_count_insert
CREATE TRIGGER messages_count_insert AFTER INSERT ON messages WHEN NEW.payload IS NOT NULL
BEGIN
    UPDATE mailboxes SET message_count = message_count + 1,
        payload_bytes = payload_bytes + length(NEW.payload)
    WHERE id = NEW.mailbox;
END;
