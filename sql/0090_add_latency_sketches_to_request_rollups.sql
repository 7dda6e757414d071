-- Mergeable latency sketches, so that percentiles over many minutes or hours
-- are right within a stated bound instead of being means of per-minute
-- percentiles (a 24 h p99 of 66 ms when the raw p99 was 324 ms).
--
-- A sketch is DDSketch's log-bucketed histogram with relative accuracy
-- alpha = 1%: a latency x >= 0.001 ms falls in bucket k = ceil(ln x / ln g),
-- g = (1 + alpha) / (1 - alpha) = 101/99, so bucket k holds (g^(k-1), g^k] and
-- its representative value (1 - alpha) * g^k is within 1% of every latency in
-- it. Latencies under 0.001 ms share bucket -32768, read as 0. A row keeps the
-- non-empty buckets as two parallel arrays (keys ascending, counts); merging
-- rows is adding counts per key, which is exact, so a sketch over any set of
-- minutes equals the sketch of their raw logs. latency_sketch_quantiles()
-- reads percentile_cont's rank (1 + q (n - 1)) from a sketch, interpolating
-- between the two neighbouring ranks as percentile_cont does: each of those
-- is within 1% of the true order statistic, so the answer is within 1% of the
-- exact percentile_cont of the raw logs. Keys run from -345 (0.001 ms) to 914
-- (86,400,000 ms, the largest accepted latency), so a sketch has at most 1,260
-- buckets whatever the traffic; a minute of one route usually has tens.
--
-- Plain SQL on both PostgreSQL and TimescaleDB (ADD COLUMN with no default
-- is allowed on compressed hypertables).

CREATE FUNCTION latency_sketch_key(latency_ms double precision) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN latency_ms < 0.001 THEN -32768
                ELSE ceil(ln(latency_ms) / 0.020000666706669435)::smallint END  -- ln(101/99)
$$;

CREATE FUNCTION latency_sketch_value(key smallint) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN key = -32768 THEN 0 ELSE 0.99 * power(101.0::float8 / 99, key) END
$$;

-- The percentile_cont(q) of the latencies a sketch counts, for each q; NULL for an empty sketch.
-- Keys may repeat (unmerged rows): the window adds their counts.
CREATE FUNCTION latency_sketch_quantiles(keys smallint[], counts bigint[], qs double precision[])
RETURNS double precision[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH b AS (
        SELECT k, sum(n) OVER (ORDER BY k) AS cum FROM unnest(keys, counts) AS u(k, n)
    ), ranks AS (
        SELECT x.ord, 1 + x.q * (t.n - 1) AS rank
        FROM (SELECT max(cum) AS n FROM b) t, unnest(qs) WITH ORDINALITY AS x(q, ord)
        WHERE t.n > 0
    )
    SELECT array_agg(lo.v + (r.rank - floor(r.rank)) * (hi.v - lo.v) ORDER BY r.ord)
    FROM ranks r,
         LATERAL (SELECT latency_sketch_value(b.k) AS v FROM b WHERE b.cum >= floor(r.rank) ORDER BY b.k LIMIT 1) lo,
         LATERAL (SELECT latency_sketch_value(b.k) AS v FROM b WHERE b.cum >= ceil(r.rank) ORDER BY b.k LIMIT 1) hi
$$;

-- Same columns, same order, on both tables: request_rollup() returns the hourly rows as request_rollup_1m.
-- One nullable column per statement, the plain form TimescaleDB allows on a compressed hypertable.
ALTER TABLE request_rollup_1m ADD COLUMN latency_sketch_keys smallint[];
ALTER TABLE request_rollup_1m ADD COLUMN latency_sketch_counts integer[];
ALTER TABLE request_rollup_1h ADD COLUMN latency_sketch_keys smallint[];
ALTER TABLE request_rollup_1h ADD COLUMN latency_sketch_counts integer[];

-- Sketches for the minutes already rolled up whose raw logs are still kept. On TimescaleDB versions that
-- cannot update compressed chunks this is skipped; rollup.rebuild() fills in any range later.
DO $$
BEGIN
    UPDATE request_rollup_1m r SET latency_sketch_keys = s.keys, latency_sketch_counts = s.counts
    FROM (
        SELECT bucket, service_id, route, method, array_agg(k ORDER BY k) AS keys, array_agg(n ORDER BY k) AS counts
        FROM (SELECT date_trunc('minute', time) AS bucket, service_id, coalesce(route, '') AS route,
                     coalesce(method, '') AS method, latency_sketch_key(latency_ms) AS k, count(*)::integer AS n
              FROM request_logs WHERE latency_ms IS NOT NULL GROUP BY 1, 2, 3, 4, 5) per_key
        GROUP BY 1, 2, 3, 4
    ) s
    WHERE r.bucket = s.bucket AND r.service_id = s.service_id AND r.route = s.route AND r.method = s.method;
EXCEPTION WHEN feature_not_supported OR object_not_in_prerequisite_state THEN
    RAISE NOTICE 'latency sketches not backfilled (%); run rollup.rebuild() over the range to add them', SQLERRM;
END
$$;

-- As in 0050, but an hour's sketch is the merge of its minutes' and its percentiles come from it
-- (the count-weighted mean of the minutes' percentiles only for hours without any sketch, rolled up
-- before this migration from logs since expired).
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
    RETURN total;
END
$$;

-- The next refresh rebuilds every hour, now with sketches.
DELETE FROM rollup_progress WHERE name = 'request_rollup_1h';
