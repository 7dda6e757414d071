-- Threshold rules created over the push API (/api/v1/rules). Rules in upwatch.yaml are not
-- stored here: they stay the config's, and a rule here never takes a config rule's name.
CREATE TABLE alert_rules (
    name        text PRIMARY KEY,
    rule        text NOT NULL,
    endpoint    text,
    service     text,
    severity    text NOT NULL DEFAULT 'high' CHECK (severity IN ('medium', 'high', 'critical')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((endpoint IS NULL) <> (service IS NULL))
);

-- Alerts are listed and acknowledged over the API by this id (a fingerprint may hold a '/').
-- An acknowledged alert gets no reminders until it resolves; a new firing clears the ack.
ALTER TABLE alert_state ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX alert_state_id_idx ON alert_state (id);
ALTER TABLE alert_state ADD COLUMN acked_at timestamptz;
ALTER TABLE alert_state ADD COLUMN acked_by text;
