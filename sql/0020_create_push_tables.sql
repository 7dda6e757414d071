-- Push API: replays of stored requests, and how far the request rollup has got.

-- One re-issue of a logged request, kept beside the original for comparison.
CREATE TABLE request_replays (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    log_id            bigint NOT NULL,
    service_id        integer NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    created_at        timestamptz NOT NULL DEFAULT now(),
    method            text NOT NULL,
    url               text NOT NULL,
    request_headers   jsonb NOT NULL DEFAULT '{}'::jsonb,
    request_body      text,
    status_code       integer,
    response_headers  jsonb,
    response_body     text,
    latency_ms        double precision,
    error             text
);
CREATE INDEX request_replays_log_idx ON request_replays (log_id, id);

-- request_rollup_1m is recomputed for the minutes touched by request_logs
-- rows with id above last_id (ids come from one identity, in insert order).
CREATE TABLE rollup_watermarks (
    name        text PRIMARY KEY,
    last_id     bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
