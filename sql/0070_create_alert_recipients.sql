-- Per-recipient delivery of outbox messages. A message is the set of alerts rows sharing a
-- message_id (assigned on the first attempt and kept for every retry, so the Message-ID a
-- receiving server sees never changes). Each recipient's outcome is kept here, under the
-- message's first (lowest-id) alert, so a retry goes only to the recipients still owed, also
-- after a restart, and the retention job's purge of old alerts takes these rows with it.
ALTER TABLE alerts ADD COLUMN message_id text;
CREATE INDEX alerts_message_idx ON alerts (message_id, id) WHERE message_id IS NOT NULL;

CREATE TABLE alert_recipients (
    alert_id     bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    recipient    text NOT NULL,
    state        text NOT NULL
                 CHECK (state IN ('pending', 'sent', 'failed', 'uncertain', 'unconfirmed')),
    attempts     integer NOT NULL DEFAULT 0,
    last_error   text,
    sent_at      timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (alert_id, recipient)
);
