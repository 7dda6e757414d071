-- Requests per client IP per hour, so analytics over long ranges count unique
-- client IPs and rank the top ones without reading request_logs.
--
-- One row per (service, hour, source_ip) with the number of requests; rows
-- without an IP (privacy levels that drop it) are not counted here, as
-- count(DISTINCT source_ip) ignores them in the raw logs too. Distinct IPs over
-- whole hours are the distinct IPs of the union of these rows, and an IP's
-- requests are the sum of its hourly counts: both exact. prober/push/rollup.py
-- adds each new log row exactly once, in the transaction that moves the
-- request_rollup_1m watermark, and rebuild() recomputes hours from the raw logs.
CREATE TABLE request_client_ips_1h (
    bucket      timestamptz NOT NULL,
    service_id  integer NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    source_ip   inet NOT NULL,
    count       bigint NOT NULL,
    PRIMARY KEY (service_id, bucket, source_ip)
);
CREATE INDEX request_client_ips_1h_bucket_idx ON request_client_ips_1h (bucket DESC);

-- Requests per status code per hour, kept the same way, so the status counts
-- of long ranges are exact sums too (rows without a status code are not counted).
CREATE TABLE request_status_1h (
    bucket       timestamptz NOT NULL,
    service_id   integer NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    status_code  integer NOT NULL,
    count        bigint NOT NULL,
    PRIMARY KEY (service_id, bucket, status_code)
);
CREATE INDEX request_status_1h_bucket_idx ON request_status_1h (bucket DESC);

-- Like 0050's hourly tables: plain tables (the retention job deletes their old
-- rows on both PostgreSQL and TimescaleDB); explicit grant for the reader role.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'upwatch_reader') THEN
        GRANT SELECT ON request_client_ips_1h, request_status_1h TO upwatch_reader;
    END IF;
END
$$;
