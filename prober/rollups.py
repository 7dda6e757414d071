"""probe_rollup_1m, maintained incrementally by the prober, in plain SQL (identical on PostgreSQL and
TimescaleDB).

A minute is rolled up once, when it has closed and settled (`settle_s` after
its end, so results of checks that started in it have been written), with one
range statement for the locations this prober writes. Rows committed later
for an already rolled-up minute (spool replays, slow checks, pushed results
with old timestamps) are noted by the writer hook and their minutes are
recomputed at the next tick. On start the last `catch_up` minutes are
recomputed, which covers whatever a killed process had not rolled up yet.
"""

from __future__ import annotations

import datetime as dt
import logging

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from upwatch.rows import Batch

logger = logging.getLogger(__name__)

_AGGREGATES = sql.SQL("""count(*), count(*) FILTER (WHERE p.ok), avg(p.latency_ms),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY p.latency_ms),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY p.latency_ms),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY p.latency_ms),
       max(p.latency_ms)""")
_UPSERT = sql.SQL("""ON CONFLICT (endpoint_id, location, bucket) DO UPDATE
SET count = excluded.count, ok_count = excluded.ok_count, avg_latency_ms = excluded.avg_latency_ms,
    p50_latency_ms = excluded.p50_latency_ms, p95_latency_ms = excluded.p95_latency_ms,
    p99_latency_ms = excluded.p99_latency_ms, max_latency_ms = excluded.max_latency_ms""")
_COLUMNS = sql.SQL("""INSERT INTO probe_rollup_1m AS r (bucket, endpoint_id, location, count, ok_count, avg_latency_ms,
                                  p50_latency_ms, p95_latency_ms, p99_latency_ms, max_latency_ms)""")
# Skipped runs are not measurements; they stay out of the rollup. (Composed from the constants above.)
RANGE = sql.SQL("""{columns}
SELECT date_trunc('minute', p.time), p.endpoint_id, p.location, {aggregates}
FROM probe_results p
WHERE p.time >= %s AND p.time < %s AND p.location = ANY(%s) AND p.error_kind IS DISTINCT FROM 'skipped'
GROUP BY 1, 2, 3
{upsert}""").format(columns=_COLUMNS, aggregates=_AGGREGATES, upsert=_UPSERT)
KEYS = sql.SQL("""{columns}
SELECT t.bucket, t.endpoint_id, t.location, {aggregates}
FROM unnest(%s::integer[], %s::text[], %s::timestamptz[]) AS t(endpoint_id, location, bucket)
JOIN probe_results p
  ON p.endpoint_id = t.endpoint_id AND p.location = t.location
 AND p.time >= t.bucket AND p.time < t.bucket + interval '1 minute'
 AND p.error_kind IS DISTINCT FROM 'skipped'
GROUP BY t.bucket, t.endpoint_id, t.location
{upsert}""").format(columns=_COLUMNS, aggregates=_AGGREGATES, upsert=_UPSERT)

Key = tuple[int, str, dt.datetime]


def minute(value: dt.datetime | str) -> dt.datetime:
    """The UTC minute a probe_results time falls in (rows from the spool hold ISO strings)."""
    t = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    t = t.astimezone(dt.UTC) if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)
    return t.replace(second=0, microsecond=0)


class Rollups:
    """Call `note` after each committed probe_results batch (a writer hook) and `tick` every few seconds."""

    def __init__(self, pool: AsyncConnectionPool, *, settle_s: float = 15.0,
                 catch_up: dt.timedelta = dt.timedelta(minutes=10)) -> None:
        self.pool = pool
        self.settle = dt.timedelta(seconds=settle_s)
        self.catch_up = catch_up
        self.closed_until: dt.datetime | None = None  # minutes before this are rolled up
        self.late: set[Key] = set()
        self.locations: set[str] = set()

    def note(self, batch: Batch) -> None:
        """Writer hook: remember locations, and rows that landed in minutes already rolled up."""
        cols = batch.columns
        e, t = cols.index("endpoint_id"), cols.index("time")
        loc = cols.index("location") if "location" in cols else None
        closed = self.closed_until
        for row in batch.rows:
            location = row[loc] if loc is not None else ""
            self.locations.add(location)
            when = row[t]
            # A time at or after a minute boundary is in no minute before it: the usual row costs one compare.
            if closed is None or (isinstance(when, dt.datetime) and when.tzinfo is not None and when >= closed):
                continue
            bucket = minute(when)
            if bucket < closed:
                self.late.add((row[e], location, bucket))

    async def tick(self, now: dt.datetime) -> None:
        """Roll up minutes that have settled, and recompute minutes that received late rows."""
        target = minute(now - self.settle)
        start = self.closed_until if self.closed_until is not None else minute(now) - self.catch_up
        late, self.late = self.late, set()
        async with self.pool.connection(timeout=2.0) as conn:
            try:
                if target > start and self.locations:
                    # Advanced before the statement: a batch committed from here on counts as late.
                    self.closed_until = target
                    await conn.execute(RANGE, (start, target, sorted(self.locations)))
                elif self.closed_until is None:
                    self.closed_until = start
                if late:
                    ids, locations, buckets = zip(*sorted(late), strict=True)
                    await conn.execute(KEYS, (list(ids), list(locations), list(buckets)))
            except psycopg.Error:
                self.closed_until = start if self.closed_until == target else self.closed_until
                self.late |= late
                raise
