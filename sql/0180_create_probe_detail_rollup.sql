-- Hourly phase timings and status codes per endpoint, so the endpoint dashboard's
-- "Latency by phase" and "Status codes" read ~720 rows per status code for 30 days
-- instead of 172,800 raw checks spread over the whole table (docs/production.md,
-- "Dashboard query benchmark"). The per-minute rollups carry neither.
--
-- probe_detail_1h holds, per hour, endpoint and status code (NULL: no response),
-- the number of checks and each phase's sum and number of non-NULL values, so a
-- range's mean is sum(sum) / sum(n): exactly avg() over the raw rows. It is built
-- from probe_results by refresh_hourly_rollups() (redefined here, otherwise as in
-- 0050), with its own rollup_progress entry. A plain table on both PostgreSQL and
-- TimescaleDB, like 0050's: a continuous aggregate would add invalidation work to
-- every probe_results insert and a raw-retention coupling, for a refresh that reads
-- only the last few (uncompressed) hours of raw rows anyway.

CREATE TABLE probe_detail_1h (
    bucket          timestamptz NOT NULL,
    endpoint_id     integer NOT NULL,
    status_code     integer,
    checks          bigint NOT NULL,
    dns_ms_sum      double precision, dns_ms_n       bigint NOT NULL,
    connect_ms_sum  double precision, connect_ms_n   bigint NOT NULL,
    tls_ms_sum      double precision, tls_ms_n       bigint NOT NULL,
    ttfb_ms_sum     double precision, ttfb_ms_n      bigint NOT NULL,
    transfer_ms_sum double precision, transfer_ms_n  bigint NOT NULL
);
CREATE UNIQUE INDEX probe_detail_1h_key_idx ON probe_detail_1h (endpoint_id, bucket, status_code) NULLS NOT DISTINCT;
CREATE INDEX probe_detail_1h_bucket_idx ON probe_detail_1h (bucket DESC);

CREATE FUNCTION refresh_probe_detail(lookback interval, settle interval) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    upto timestamptz := date_trunc('hour', now() - settle);
    since timestamptz;
    written integer;
BEGIN
    SELECT least(complete_until, upto) - lookback INTO since FROM rollup_progress WHERE name = 'probe_detail_1h';
    since := coalesce(since, (SELECT date_trunc('hour', min(time)) FROM probe_results), upto);
    DELETE FROM probe_detail_1h WHERE bucket >= since AND bucket < upto;
    INSERT INTO probe_detail_1h
    SELECT date_trunc('hour', time), endpoint_id, status_code, count(*),
           sum(dns_ms), count(dns_ms), sum(connect_ms), count(connect_ms), sum(tls_ms), count(tls_ms),
           sum(ttfb_ms), count(ttfb_ms), sum(transfer_ms), count(transfer_ms)
    FROM probe_results
    WHERE time >= since AND time < upto
    GROUP BY 1, 2, 3;
    GET DIAGNOSTICS written = ROW_COUNT;
    INSERT INTO rollup_progress (name, complete_until) VALUES ('probe_detail_1h', upto)
    ON CONFLICT (name) DO UPDATE SET complete_until = excluded.complete_until, refreshed_at = now();
    RETURN written;
END
$$;

-- 0090's function (0050's with the request latency sketches) plus the detail rollup, under the same lock
-- (push/deletion.py takes it too). A test of each part: tests/push/test_analytics_rollup.py, tests/grafana.
CREATE OR REPLACE FUNCTION refresh_hourly_rollups(lookback interval DEFAULT interval '3 hours',
                                                  settle interval DEFAULT interval '5 minutes')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    upto timestamptz := date_trunc('hour', now() - settle);
    since timestamptz;
    written integer;
    total integer := 0;
BEGIN
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
                                   min_latency_ms, p50_latency_ms, p95_latency_ms, p99_latency_ms, max_latency_ms,
                                   latency_sketch_keys, latency_sketch_counts)
    SELECT h.bucket, h.service_id, h.route, h.method, h.count, h.error_count, h.avg_latency_ms, h.min_latency_ms,
           coalesce(p.q[1], h.p50), coalesce(p.q[2], h.p95), coalesce(p.q[3], h.p99), h.max_latency_ms, s.keys, s.counts
    FROM (
        SELECT date_trunc('hour', bucket) AS bucket, service_id, route, method, sum(count) AS count,
               sum(error_count) AS error_count,
               sum(avg_latency_ms * count) / NULLIF(sum(count) FILTER (WHERE avg_latency_ms IS NOT NULL), 0)
                   AS avg_latency_ms,
               min(min_latency_ms) AS min_latency_ms,
               sum(p50_latency_ms * count) / NULLIF(sum(count) FILTER (WHERE p50_latency_ms IS NOT NULL), 0) AS p50,
               sum(p95_latency_ms * count) / NULLIF(sum(count) FILTER (WHERE p95_latency_ms IS NOT NULL), 0) AS p95,
               sum(p99_latency_ms * count) / NULLIF(sum(count) FILTER (WHERE p99_latency_ms IS NOT NULL), 0) AS p99,
               max(max_latency_ms) AS max_latency_ms
        FROM request_rollup_1m
        WHERE bucket >= since AND bucket < upto
        GROUP BY 1, 2, 3, 4
    ) h
    LEFT JOIN (
        SELECT bucket, service_id, route, method, array_agg(k ORDER BY k) AS keys,
               array_agg(n ORDER BY k)::integer[] AS counts
        FROM (SELECT date_trunc('hour', m.bucket) AS bucket, m.service_id, m.route, m.method, u.k, sum(u.n) AS n
              FROM request_rollup_1m m, unnest(m.latency_sketch_keys, m.latency_sketch_counts) AS u(k, n)
              WHERE m.bucket >= since AND m.bucket < upto
              GROUP BY 1, 2, 3, 4, 5) per_key
        GROUP BY 1, 2, 3, 4
    ) s USING (bucket, service_id, route, method)
    LEFT JOIN LATERAL (
        SELECT latency_sketch_quantiles(s.keys, s.counts::bigint[], ARRAY[0.5, 0.95, 0.99]) AS q
    ) p ON true;
    GET DIAGNOSTICS written = ROW_COUNT;
    total := total + written;
    INSERT INTO rollup_progress (name, complete_until) VALUES ('request_rollup_1h', upto)
    ON CONFLICT (name) DO UPDATE SET complete_until = excluded.complete_until, refreshed_at = now();
    RETURN total + refresh_probe_detail(lookback, settle);
END
$$;

-- The end of the last whole hour inside a range that probe_detail_1h holds.
CREATE FUNCTION probe_detail_until(range_from timestamptz, range_to timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT greatest(rollup_hours_from(range_from),
                    least(date_trunc('hour', range_to),
                          coalesce((SELECT complete_until FROM rollup_progress WHERE name = 'probe_detail_1h'),
                                   '-infinity')))
$$;

-- One endpoint's detail rows for a dashboard range, for Grafana intervals of an hour or
-- more (whole hours line up with those buckets): whole, materialized hours from
-- probe_detail_1h, the checks before the first and after the last of them grouped by
-- hour from probe_results. One SELECT (inlined by the planner), each part a single
-- index range, so it adds up to exactly what the raw rows of the range add up to.
CREATE FUNCTION probe_detail(range_from timestamptz, range_to timestamptz, endpoint integer)
RETURNS SETOF probe_detail_1h LANGUAGE sql STABLE AS $$
    SELECT d.* FROM probe_detail_1h d
    WHERE d.endpoint_id = endpoint
      AND d.bucket >= rollup_hours_from(range_from) AND d.bucket < probe_detail_until(range_from, range_to)
    UNION ALL
    SELECT date_trunc('hour', r.time), r.endpoint_id, r.status_code, count(*),
           sum(r.dns_ms), count(r.dns_ms), sum(r.connect_ms), count(r.connect_ms), sum(r.tls_ms), count(r.tls_ms),
           sum(r.ttfb_ms), count(r.ttfb_ms), sum(r.transfer_ms), count(r.transfer_ms)
    FROM probe_results r
    WHERE r.endpoint_id = endpoint
      AND r.time >= range_from AND r.time <= range_to AND r.time < rollup_hours_from(range_from)
    GROUP BY 1, 2, 3
    UNION ALL
    SELECT date_trunc('hour', r.time), r.endpoint_id, r.status_code, count(*),
           sum(r.dns_ms), count(r.dns_ms), sum(r.connect_ms), count(r.connect_ms), sum(r.tls_ms), count(r.tls_ms),
           sum(r.ttfb_ms), count(r.ttfb_ms), sum(r.transfer_ms), count(r.transfer_ms)
    FROM probe_results r
    WHERE r.endpoint_id = endpoint
      AND r.time >= probe_detail_until(range_from, range_to) AND r.time <= range_to
    GROUP BY 1, 2, 3
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'upwatch_reader') THEN
        GRANT SELECT ON probe_detail_1h TO upwatch_reader;
    END IF;
END
$$;
