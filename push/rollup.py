"""request_rollup_1m, kept up to date incrementally.

Every few seconds: find the (service, minute) buckets touched by request_logs
rows above the watermark id, recompute exactly those buckets from the raw
rows, and move the watermark, all in one transaction. Recomputing (not
adding) makes a repeated run harmless, and late rows simply touch an old
bucket again. Plain SQL, so PostgreSQL and TimescaleDB behave the same.
Each row carries its latency sketch (sql/0090), which long ranges merge.

request_client_ips_1h (requests per service, hour and client IP) is kept in
the same transaction by adding the counts of exactly the rows between the old
and the new watermark: the watermark row is locked and moved with it, so each
log row is counted once, and the cost follows the new rows, not the hour's.
request_status_1h (requests per service, hour and status code) likewise.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from push.keys import DB_TIMEOUT_S

logger = logging.getLogger(__name__)

WATERMARK = "request_rollup_1m"
MAX_IDS_PER_RUN = 200_000

_TOUCHED = "SELECT DISTINCT service_id, date_trunc('minute', time) FROM request_logs WHERE id > %s AND id <= %s"

# Both statements take one contiguous time span and the exact (service, minute) pairs in it:
# the span lets PostgreSQL use the time index, the pairs keep untouched minutes out.
_PAIRS = sql.SQL("SELECT * FROM unnest(%(services)s::int[], %(buckets)s::timestamptz[])")

_DELETE = sql.SQL("""
DELETE FROM request_rollup_1m r
WHERE r.bucket >= %(since)s AND r.bucket < %(until)s AND (r.service_id, r.bucket) IN ({pairs})
""").format(pairs=_PAIRS)

# Each group also gets its latency sketch (sql/0090: per bucket key, how many latencies), which merges
# exactly across minutes, so long ranges get percentiles within 1% instead of means of percentiles.
_INSERT = sql.SQL("""
WITH logs AS MATERIALIZED (
    SELECT date_trunc('minute', l.time) AS bucket, l.service_id, coalesce(l.route, '') AS route,
           coalesce(l.method, '') AS method, l.latency_ms, (l.status_code >= 500 OR l.error IS NOT NULL) AS failed
    FROM request_logs l
    WHERE l.time >= %(since)s AND l.time < %(until)s AND (l.service_id, date_trunc('minute', l.time)) IN ({pairs})
), sketches AS (
    SELECT bucket, service_id, route, method, array_agg(k ORDER BY k) AS keys, array_agg(n ORDER BY k) AS counts
    FROM (SELECT bucket, service_id, route, method, latency_sketch_key(latency_ms) AS k, count(*)::integer AS n
          FROM logs WHERE latency_ms IS NOT NULL GROUP BY 1, 2, 3, 4, 5) per_key
    GROUP BY 1, 2, 3, 4
)
INSERT INTO request_rollup_1m (bucket, service_id, route, method, count, error_count, avg_latency_ms, min_latency_ms,
                               p50_latency_ms, p95_latency_ms, p99_latency_ms, max_latency_ms,
                               latency_sketch_keys, latency_sketch_counts)
SELECT g.*, s.keys, s.counts
FROM (SELECT bucket, service_id, route, method, count(*), count(*) FILTER (WHERE failed),
             avg(latency_ms), min(latency_ms),
             percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms),
             percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms),
             percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms),
             max(latency_ms)
      FROM logs GROUP BY 1, 2, 3, 4) g
LEFT JOIN sketches s USING (bucket, service_id, route, method)
ON CONFLICT (service_id, route, method, bucket) DO UPDATE SET
    count = excluded.count, error_count = excluded.error_count, avg_latency_ms = excluded.avg_latency_ms,
    min_latency_ms = excluded.min_latency_ms,
    p50_latency_ms = excluded.p50_latency_ms, p95_latency_ms = excluded.p95_latency_ms,
    p99_latency_ms = excluded.p99_latency_ms, max_latency_ms = excluded.max_latency_ms,
    latency_sketch_keys = excluded.latency_sketch_keys, latency_sketch_counts = excluded.latency_sketch_counts
""").format(pairs=_PAIRS)

# Hourly request counts per service and one more key: (table, key column). Each is added to by the rows
# between the old and the new watermark, and recomputed by rebuild().
HOURLY_COUNTS = (("request_client_ips_1h", "source_ip"), ("request_status_1h", "status_code"))

_COUNT_HOURS = """
INSERT INTO {table} AS r (bucket, service_id, {key}, count)
SELECT date_trunc('hour', time, 'UTC'), service_id, {key}, count(*)
FROM request_logs WHERE {rows} AND {key} IS NOT NULL
GROUP BY 1, 2, 3
ON CONFLICT (service_id, bucket, {key}) DO UPDATE SET count = r.count + excluded.count
"""


def count_hours(table: str, key: str, rows: str) -> sql.Composed:
    return sql.SQL(_COUNT_HOURS).format(table=sql.Identifier(table), key=sql.Identifier(key), rows=sql.SQL(rows))


SPAN_GAP = timedelta(hours=1)


def hour_floor(t: datetime) -> datetime:
    """Start of t's hour in UTC (the client-IP rollup's buckets)."""
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hour_ceil(t: datetime) -> datetime:
    """Start of the first UTC hour at or after t."""
    floor = hour_floor(t)
    return floor if floor == t else floor + timedelta(hours=1)


def spans(touched: list[tuple[int, datetime]]) -> list[list[tuple[int, datetime]]]:
    """Touched buckets grouped into runs without gaps over SPAN_GAP, so a late row from last week
    does not make one statement scan the whole week."""
    runs: list[list[tuple[int, datetime]]] = []
    for pair in sorted(touched, key=lambda p: p[1]):
        if runs and pair[1] - runs[-1][-1][1] <= SPAN_GAP:
            runs[-1].append(pair)
        else:
            runs.append([pair])
    return runs


async def recompute(conn: AsyncConnection, touched: list[tuple[int, datetime]]) -> None:
    """Replace the rollup rows of these (service_id, minute) buckets with fresh aggregates."""
    for run in spans(touched):
        params = {"services": [t[0] for t in run], "buckets": [t[1] for t in run],
                  "since": run[0][1], "until": run[-1][1] + timedelta(minutes=1)}
        await conn.execute(_DELETE, params)
        await conn.execute(_INSERT, params)


async def _step(conn: AsyncConnection) -> int:
    async with conn.transaction():
        await conn.execute("INSERT INTO rollup_watermarks (name) VALUES (%s) ON CONFLICT DO NOTHING", (WATERMARK,))
        cur = await conn.execute("SELECT last_id FROM rollup_watermarks WHERE name = %s FOR UPDATE", (WATERMARK,))
        low = (await cur.fetchone() or [0])[0]
        cur = await conn.execute(
            "SELECT max(id), count(*) FROM (SELECT id FROM request_logs WHERE id > %s ORDER BY id LIMIT %s) s",
            (low, MAX_IDS_PER_RUN))
        high, seen = await cur.fetchone() or (None, 0)
        if high is None:
            return 0
        cur = await conn.execute(_TOUCHED, (low, high))
        await recompute(conn, [(r[0], r[1]) for r in await cur.fetchall()])
        for table, key in HOURLY_COUNTS:
            await conn.execute(count_hours(table, key, "id > %s AND id <= %s"), (low, high))
        await conn.execute("UPDATE rollup_watermarks SET last_id = %s, updated_at = now() WHERE name = %s",
                           (high, WATERMARK))
        return int(seen)


async def update(pool: AsyncConnectionPool) -> int:
    """Bring the rollup up to date with the logs stored so far; return how many log rows were new."""
    total = 0
    async with pool.connection(timeout=DB_TIMEOUT_S) as conn:
        while True:
            seen = await _step(conn)
            total += seen
            if seen < MAX_IDS_PER_RUN:
                break
    if total:
        logger.debug("request rollup updated rows=%d", total)
    return total


async def rebuild(pool: AsyncConnectionPool, since: datetime, until: datetime) -> None:
    """Recompute every bucket in [since, until) from the raw logs (repair after manual changes); the
    client-IP and status rows are recomputed for every hour that overlaps the range, whole hours being their unit."""
    hours = {"since": hour_floor(since), "until": hour_ceil(until)}
    async with pool.connection(timeout=DB_TIMEOUT_S) as conn, conn.transaction():
        for table, key in HOURLY_COUNTS:
            await conn.execute(sql.SQL("DELETE FROM {} WHERE bucket >= %(since)s AND bucket < %(until)s")
                               .format(sql.Identifier(table)), hours)
            await conn.execute(count_hours(table, key, "time >= %(since)s AND time < %(until)s"), hours)
        await conn.execute("DELETE FROM request_rollup_1m WHERE bucket >= %s AND bucket < %s", (since, until))
        cur = await conn.execute(
            "SELECT DISTINCT service_id, date_trunc('minute', time) FROM request_logs WHERE time >= %s AND time < %s",
            (since, until))
        await recompute(conn, [(r[0], r[1]) for r in await cur.fetchall()])
