-- Hourly rollups, so that dashboards over weeks read ~60x fewer rows.
--
-- probe_rollup_1h and request_rollup_1h have the columns of their per-minute
-- tables; an hour's percentiles and mean are the count-weighted means of its
-- minutes' values (what the dashboards computed from the minutes anyway).
-- refresh_hourly_rollups() (re)computes the last few complete hours from the
-- per-minute rollups and records how far the hourly tables are complete in
-- rollup_progress. probe_rollup() and request_rollup() return rollup rows for a
-- dashboard range: hourly rows for the complete hours inside it when Grafana
-- asks for points an hour or more apart, per-minute rows for everything else,
-- so a range reads the same totals whether or not the hourly tables are
-- refreshed (only faster when they are).

CREATE TABLE probe_rollup_1h (
    LIKE probe_rollup_1m INCLUDING DEFAULTS,
    PRIMARY KEY (endpoint_id, location, bucket)
);
CREATE INDEX probe_rollup_1h_bucket_idx ON probe_rollup_1h (bucket DESC);

CREATE TABLE request_rollup_1h (
    LIKE request_rollup_1m INCLUDING DEFAULTS,
    PRIMARY KEY (service_id, route, method, bucket)
);
CREATE INDEX request_rollup_1h_bucket_idx ON request_rollup_1h (bucket DESC);

-- Hours before complete_until are materialized in the named table.
CREATE TABLE rollup_progress (
    name            text PRIMARY KEY,
    complete_until  timestamptz NOT NULL,
    refreshed_at    timestamptz NOT NULL DEFAULT now()
);

-- Call every few minutes (upwatch's maintenance job does). Hours that ended
-- more than `settle` ago are complete; the last `lookback` of them are
-- recomputed each time so late per-minute rows (spool replays) are included.
-- The first call builds every hour there is. Returns the hourly rows written.
CREATE FUNCTION refresh_hourly_rollups(lookback interval DEFAULT interval '3 hours',
                                       settle interval DEFAULT interval '5 minutes')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    upto timestamptz := date_trunc('hour', now() - settle);
    since timestamptz;
    written integer;
    total integer := 0;
BEGIN
    -- Two callers at once would delete and insert the same hours.
    PERFORM pg_advisory_xact_lock(hashtext('refresh_hourly_rollups'));

    SELECT least(complete_until, upto) - lookback INTO since FROM rollup_progress WHERE name = 'probe_rollup_1h';
    since := coalesce(since, (SELECT date_trunc('hour', min(bucket)) FROM probe_rollup_1m), upto);
    DELETE FROM probe_rollup_1h WHERE bucket >= since AND bucket < upto;
    INSERT INTO probe_rollup_1h (bucket, endpoint_id, location, count, ok_count, avg_latency_ms, p50_latency_ms,
                                 p95_latency_ms, p99_latency_ms, max_latency_ms)
    SELECT date_trunc('hour', bucket), endpoint_id, location, sum(count), sum(ok_count),
           sum(avg_latency_ms * count) / NULLIF(sum(count) FILTER (WHERE avg_latency_ms IS NOT NULL), 0),
           sum(p50_latency_ms * count) / NULLIF(sum(count) FILTER (WHERE p50_latency_ms IS NOT NULL), 0),
           sum(p95_latency_ms * count) / NULLIF(sum(count) FILTER (WHERE p95_latency_ms IS NOT NULL), 0),
           sum(p99_latency_ms * count) / NULLIF(sum(count) FILTER (WHERE p99_latency_ms IS NOT NULL), 0),
           max(max_latency_ms)
    FROM probe_rollup_1m
    WHERE bucket >= since AND bucket < upto
    GROUP BY 1, 2, 3;
    GET DIAGNOSTICS written = ROW_COUNT;
    total := total + written;
    INSERT INTO rollup_progress (name, complete_until) VALUES ('probe_rollup_1h', upto)
    ON CONFLICT (name) DO UPDATE SET complete_until = excluded.complete_until, refreshed_at = now();

    SELECT least(complete_until, upto) - lookback INTO since FROM rollup_progress WHERE name = 'request_rollup_1h';
    since := coalesce(since, (SELECT date_trunc('hour', min(bucket)) FROM request_rollup_1m), upto);
    DELETE FROM request_rollup_1h WHERE bucket >= since AND bucket < upto;
    INSERT INTO request_rollup_1h (bucket, service_id, route, method, count, error_count, avg_latency_ms,
                                   p50_latency_ms, p95_latency_ms, p99_latency_ms, max_latency_ms)
    SELECT date_trunc('hour', bucket), service_id, route, method, sum(count), sum(error_count),
           sum(avg_latency_ms * count) / NULLIF(sum(count) FILTER (WHERE avg_latency_ms IS NOT NULL), 0),
           sum(p50_latency_ms * count) / NULLIF(sum(count) FILTER (WHERE p50_latency_ms IS NOT NULL), 0),
           sum(p95_latency_ms * count) / NULLIF(sum(count) FILTER (WHERE p95_latency_ms IS NOT NULL), 0),
           sum(p99_latency_ms * count) / NULLIF(sum(count) FILTER (WHERE p99_latency_ms IS NOT NULL), 0),
           max(max_latency_ms)
    FROM request_rollup_1m
    WHERE bucket >= since AND bucket < upto
    GROUP BY 1, 2, 3, 4;
    GET DIAGNOSTICS written = ROW_COUNT;
    total := total + written;
    INSERT INTO rollup_progress (name, complete_until) VALUES ('request_rollup_1h', upto)
    ON CONFLICT (name) DO UPDATE SET complete_until = excluded.complete_until, refreshed_at = now();
    RETURN total;
END
$$;

-- The first whole hour at or after range_from, and the end of the last whole
-- hour inside [range_from, range_to] that is also materialized.
CREATE FUNCTION rollup_hours_from(range_from timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT date_trunc('hour', range_from)
           + CASE WHEN date_trunc('hour', range_from) < range_from THEN interval '1 hour' ELSE interval '0' END
$$;

CREATE FUNCTION rollup_hours_until(range_to timestamptz, name text) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT least(date_trunc('hour', range_to + interval '1 minute'),
                 coalesce((SELECT p.complete_until FROM rollup_progress p WHERE p.name = rollup_hours_until.name),
                          '-infinity'))
$$;

-- Rollup rows for a dashboard range; step_ms is Grafana's $__interval_ms. One
-- SELECT (inlined by the planner), each part a single index range.
CREATE FUNCTION probe_rollup(range_from timestamptz, range_to timestamptz, step_ms bigint)
RETURNS SETOF probe_rollup_1m LANGUAGE sql STABLE AS $$
    -- whole, materialized hours
    SELECT h.* FROM probe_rollup_1h h
    WHERE step_ms >= 3600000
      AND h.bucket >= rollup_hours_from(range_from)
      AND h.bucket < rollup_hours_until(range_to, 'probe_rollup_1h')
    UNION ALL
    -- minutes before the first whole hour (every minute of the range when points are closer than an hour)
    SELECT m.* FROM probe_rollup_1m m
    WHERE m.bucket >= range_from
      AND m.bucket <= range_to
      AND m.bucket < CASE WHEN step_ms >= 3600000 THEN rollup_hours_from(range_from) ELSE 'infinity' END
    UNION ALL
    -- minutes after the last whole materialized hour
    SELECT m.* FROM probe_rollup_1m m
    WHERE step_ms >= 3600000
      AND m.bucket >= greatest(rollup_hours_from(range_from), rollup_hours_until(range_to, 'probe_rollup_1h'))
      AND m.bucket <= range_to
$$;

CREATE FUNCTION request_rollup(range_from timestamptz, range_to timestamptz, step_ms bigint)
RETURNS SETOF request_rollup_1m LANGUAGE sql STABLE AS $$
    -- whole, materialized hours
    SELECT h.* FROM request_rollup_1h h
    WHERE step_ms >= 3600000
      AND h.bucket >= rollup_hours_from(range_from)
      AND h.bucket < rollup_hours_until(range_to, 'request_rollup_1h')
    UNION ALL
    -- minutes before the first whole hour (every minute of the range when points are closer than an hour)
    SELECT m.* FROM request_rollup_1m m
    WHERE m.bucket >= range_from
      AND m.bucket <= range_to
      AND m.bucket < CASE WHEN step_ms >= 3600000 THEN rollup_hours_from(range_from) ELSE 'infinity' END
    UNION ALL
    -- minutes after the last whole materialized hour
    SELECT m.* FROM request_rollup_1m m
    WHERE step_ms >= 3600000
      AND m.bucket >= greatest(rollup_hours_from(range_from), rollup_hours_until(range_to, 'request_rollup_1h'))
      AND m.bucket <= range_to
$$;

-- 0003's default privileges cover the new tables; grant explicitly all the same
-- so the reader role works whoever ran this migration.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'upwatch_reader') THEN
        GRANT SELECT ON probe_rollup_1h, request_rollup_1h, rollup_progress TO upwatch_reader;
    END IF;
END
$$;
