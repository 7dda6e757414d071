-- POST /logs with an Idempotency-Key header: the key of every accepted batch is
-- kept for a window (24 h, pruned by the push maintenance task), so a client that
-- retries after losing the answer gets the first answer again instead of storing
-- the batch twice. The prober's writer stores a key in the same transaction as
-- the batch's records (or in the same spool append), so a key is never stored
-- without its records. Only the key's SHA-256 is kept, with the SHA-256 of the
-- request body: a key reused for another body is refused (422), not answered as a repeat.
CREATE TABLE push_idempotency_keys (
    service_id  integer NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    key_hash    text NOT NULL,
    accepted    integer NOT NULL,
    body_hash   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service_id, key_hash)
);
CREATE INDEX push_idempotency_keys_created_idx ON push_idempotency_keys (created_at);
