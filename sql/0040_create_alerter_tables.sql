-- Alerter bookkeeping. Results are read per prober location because each
-- prober writes its own results in time order; a single cursor across
-- locations would skip a slow location's rows.
CREATE TABLE alert_cursors (
    endpoint_id  integer NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
    location     text NOT NULL,
    last_time    timestamptz NOT NULL,
    PRIMARY KEY (endpoint_id, location)
);

-- Watermarks of other streams the alerter follows (incidents.updated_at).
CREATE TABLE alert_watermarks (
    name        text PRIMARY KEY,
    value       timestamptz NOT NULL
);

-- Every firing of a threshold rule, kept as history.
CREATE TABLE alert_rule_firings (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule         text NOT NULL,
    condition    text NOT NULL,
    fired_at     timestamptz NOT NULL,
    resolved_at  timestamptz,
    first_value  double precision,
    peak_value   double precision,
    last_value   double precision
);
CREATE INDEX alert_rule_firings_rule_idx ON alert_rule_firings (rule, fired_at DESC);
CREATE UNIQUE INDEX alert_rule_firings_open_idx ON alert_rule_firings (rule) WHERE resolved_at IS NULL;

CREATE INDEX alerts_fingerprint_idx ON alerts (fingerprint, created_at DESC);
