"""probe_rollup_1m kept up to date incrementally: after each batch, the minutes it touched are recomputed
from the raw rows in the same transaction. Plain SQL, so identical on PostgreSQL and TimescaleDB."""

from __future__ import annotations

import psycopg

from prober.spool import Batch

# Skipped runs are not measurements; they stay out of the rollup.
UPSERT = """
INSERT INTO probe_rollup_1m AS r (bucket, endpoint_id, location, count, ok_count, avg_latency_ms,
                                  p50_latency_ms, p95_latency_ms, p99_latency_ms, max_latency_ms)
SELECT t.bucket, t.endpoint_id, t.location, count(p.*), count(p.*) FILTER (WHERE p.ok), avg(p.latency_ms),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY p.latency_ms),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY p.latency_ms),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY p.latency_ms),
       max(p.latency_ms)
FROM (SELECT DISTINCT u.endpoint_id, u.location, date_trunc('minute', u.time::timestamptz) AS bucket
      FROM unnest(%s::integer[], %s::text[], %s::text[]) AS u(endpoint_id, location, time)) AS t
JOIN probe_results p
  ON p.endpoint_id = t.endpoint_id AND p.location = t.location
 AND p.time >= t.bucket AND p.time < t.bucket + interval '1 minute'
 AND p.error_kind IS DISTINCT FROM 'skipped'
GROUP BY t.bucket, t.endpoint_id, t.location
ON CONFLICT (endpoint_id, location, bucket) DO UPDATE
SET count = excluded.count, ok_count = excluded.ok_count, avg_latency_ms = excluded.avg_latency_ms,
    p50_latency_ms = excluded.p50_latency_ms, p95_latency_ms = excluded.p95_latency_ms,
    p99_latency_ms = excluded.p99_latency_ms, max_latency_ms = excluded.max_latency_ms
"""


async def update(conn: psycopg.AsyncConnection, batch: Batch) -> None:
    """Writer hook for probe_results: recompute every (endpoint, location, minute) the batch touched."""
    cols = batch.columns
    e, t = cols.index("endpoint_id"), cols.index("time")
    loc = cols.index("location") if "location" in cols else None
    endpoint_ids = [row[e] for row in batch.rows]
    locations = [row[loc] if loc is not None else "" for row in batch.rows]
    times = [str(row[t]) for row in batch.rows]
    await conn.execute(UPSERT, (endpoint_ids, locations, times))
