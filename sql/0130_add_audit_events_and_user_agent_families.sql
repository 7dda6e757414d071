-- Who did what to whose data, kept after the data (and the service) are gone:
-- for now, a service key deleting its own logs (DELETE /api/v1/logs).
CREATE TABLE audit_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    action      text NOT NULL,
    actor       text NOT NULL,
    -- No foreign key: the record must outlive the service it is about.
    service_id  integer NOT NULL,
    service     text NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_events_service_idx ON audit_events (service_id, at DESC);

-- Browser, OS and device family of each log's user agent, parsed at ingest (prober/push/useragents.py),
-- so analytics can group by them. Rows stored before stay NULL (no backfill). One ADD COLUMN per
-- statement: TimescaleDB refuses several at once on a compressed hypertable.
ALTER TABLE request_logs ADD COLUMN ua_browser text;
ALTER TABLE request_logs ADD COLUMN ua_os text;
ALTER TABLE request_logs ADD COLUMN ua_device text;
