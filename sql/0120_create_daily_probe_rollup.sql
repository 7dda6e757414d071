-- Daily probe rollups, so a status page's 90-day history reads one row per
-- endpoint and day instead of 24 hourly ones.
--
-- probe_rollup_1d has the columns of probe_rollup_1h; a day's figures are
-- summed (counts) or count-weighted (latencies) from its hours, exactly as
-- the hours are from their minutes, so a day's count and ok_count equal a
-- direct count over probe_results. refresh_daily_rollups() (re)computes the
-- days the hourly table holds completely and records how far in
-- rollup_progress ('probe_rollup_1d'); the status pages' service calls it.

CREATE TABLE probe_rollup_1d (
    LIKE probe_rollup_1m INCLUDING DEFAULTS,
    PRIMARY KEY (endpoint_id, location, bucket)
);
CREATE INDEX probe_rollup_1d_bucket_idx ON probe_rollup_1d (bucket DESC);

-- Days before the hourly table's complete_until (UTC days) are complete; the
-- last `lookback` of them are recomputed each time, because the hourly refresh
-- recomputes its last hours too (late per-minute rows). Returns rows written.
CREATE FUNCTION refresh_daily_rollups(lookback interval DEFAULT interval '1 day')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    upto timestamptz;
    since timestamptz;
    written integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('refresh_daily_rollups'));
    SELECT date_trunc('day', complete_until, 'UTC') INTO upto FROM rollup_progress WHERE name = 'probe_rollup_1h';
    IF upto IS NULL THEN
        RETURN 0;
    END IF;
    SELECT least(complete_until, upto) - lookback INTO since FROM rollup_progress WHERE name = 'probe_rollup_1d';
    since := coalesce(since, (SELECT date_trunc('day', min(bucket), 'UTC') FROM probe_rollup_1h), upto);
    DELETE FROM probe_rollup_1d WHERE bucket >= since AND bucket < upto;
    INSERT INTO probe_rollup_1d (bucket, endpoint_id, location, count, ok_count, avg_latency_ms, p50_latency_ms,
                                 p95_latency_ms, p99_latency_ms, max_latency_ms)
    SELECT date_trunc('day', bucket, 'UTC'), endpoint_id, location, sum(count), sum(ok_count),
           sum(avg_latency_ms * count) / NULLIF(sum(count) FILTER (WHERE avg_latency_ms IS NOT NULL), 0),
           sum(p50_latency_ms * count) / NULLIF(sum(count) FILTER (WHERE p50_latency_ms IS NOT NULL), 0),
           sum(p95_latency_ms * count) / NULLIF(sum(count) FILTER (WHERE p95_latency_ms IS NOT NULL), 0),
           sum(p99_latency_ms * count) / NULLIF(sum(count) FILTER (WHERE p99_latency_ms IS NOT NULL), 0),
           max(max_latency_ms)
    FROM probe_rollup_1h
    WHERE bucket >= since AND bucket < upto
    GROUP BY 1, 2, 3;
    GET DIAGNOSTICS written = ROW_COUNT;
    INSERT INTO rollup_progress (name, complete_until) VALUES ('probe_rollup_1d', upto)
    ON CONFLICT (name) DO UPDATE SET complete_until = excluded.complete_until, refreshed_at = now();
    RETURN written;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'upwatch_reader') THEN
        GRANT SELECT ON probe_rollup_1d TO upwatch_reader;
    END IF;
END
$$;
