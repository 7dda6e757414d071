"""Retention: TimescaleDB policies when the extension is active, otherwise upwatch's own delete job."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

import psycopg
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from upwatch.config.storage import Retention
from upwatch.db import error_summary, timescaledb_active
from upwatch.runtime import Runtime, pause

logger = logging.getLogger(__name__)

# table -> (time column, retention setting)
RETAINED = {
    "probe_results": ("time", "probe_results"),
    "request_logs": ("time", "request_logs"),
    "probe_rollup_1m": ("bucket", "rollups"),
    "request_rollup_1m": ("bucket", "rollups"),
    "probe_rollup_1h": ("bucket", "rollups"),
    # Built from probe_rollup_1h (sql/0120), so it keeps what the hourly rows keep: a day outlives its
    # hours by less than a day, and a status page's 90 days need far less than the default 400.
    "probe_rollup_1d": ("bucket", "rollups"),
    "request_rollup_1h": ("bucket", "rollups"),
    "request_client_ips_1h": ("bucket", "rollups"),
    "request_status_1h": ("bucket", "rollups"),
    "probe_detail_1h": ("bucket", "rollups"),  # hourly phases and status codes (sql/0180)
    "anomalies": ("time", "anomalies"),
    "incidents": ("ended_at", "anomalies"),
    "alerts": ("created_at", "alerts"),
}
HYPERTABLES = frozenset({"probe_results", "request_logs", "probe_rollup_1m", "request_rollup_1m", "anomalies"})
_BATCH = 50_000


async def apply_policies(pool: AsyncConnectionPool, retention: Retention) -> bool:
    """On TimescaleDB, (re)set retention policies from the config; return whether it is active."""
    async with pool.connection() as conn:
        if not await timescaledb_active(conn):
            return False
        for table, (_, setting) in RETAINED.items():
            if table not in HYPERTABLES:
                continue
            keep: timedelta = getattr(retention, setting)
            async with conn.transaction():
                await conn.execute("SELECT remove_retention_policy(%s, if_exists => true)", (table,))
                await conn.execute("SELECT add_retention_policy(%s, %s::interval)", (table, keep))
    return True


async def purge(pool: AsyncConnectionPool, retention: Retention, *, skip_hypertables: bool) -> dict[str, int]:
    """Delete rows past retention in batches (plain PostgreSQL path); return rows deleted per table."""
    deleted: dict[str, int] = {}
    async with pool.connection() as conn:
        for table, (column, setting) in RETAINED.items():
            if skip_hypertables and table in HYPERTABLES:
                continue
            keep: timedelta = getattr(retention, setting)
            deleted[table] = await _delete_older(conn, table, column, keep)
        # Per-service retention of pushed logs (services.retention_days) applies on both paths.
        cur = await conn.execute(
            "DELETE FROM request_logs r USING services s"
            " WHERE r.service_id = s.id AND r.time < now() - make_interval(days => s.retention_days)"
        )
        deleted["request_logs"] = deleted.get("request_logs", 0) + cur.rowcount
    return deleted


async def _delete_older(conn: AsyncConnection, table: str, column: str, keep: timedelta) -> int:
    total = 0
    # (tableoid, ctid) rather than ctid alone: on a hypertable every chunk has its own ctids.
    query = sql.SQL(
        "DELETE FROM {t} WHERE (tableoid, ctid) IN"
        " (SELECT tableoid, ctid FROM {t} WHERE {c} < now() - %s::interval LIMIT %s)"
    ).format(t=sql.Identifier(table), c=sql.Identifier(column))
    while True:
        cur = await conn.execute(query, (keep, _BATCH))
        deleted: int = cur.rowcount
        total += deleted
        if deleted < _BATCH:
            return total


async def _repeat(name: str, job: Callable[[], Awaitable[object]], every: timedelta, stop: asyncio.Event) -> None:
    """Run `job` every `every` until `stop`; a database error is logged and retried next time."""
    while not stop.is_set():
        try:
            await job()
        except (psycopg.Error, PoolTimeout) as e:
            logger.warning("%s failed, retrying in %s error=%r", name, every, error_summary(e))
        await pause(stop, every.total_seconds())


async def run_retention(pool: AsyncConnectionPool, retention: Retention, stop: asyncio.Event,
                        every: timedelta = timedelta(hours=1)) -> None:
    """Keep data within retention until `stop` is set."""
    timescale: bool | None = None

    async def once() -> None:
        nonlocal timescale
        if timescale is None:
            timescale = await apply_policies(pool, retention)
        deleted = await purge(pool, retention, skip_hypertables=timescale)
        if any(deleted.values()):
            logger.info("retention purge %s", " ".join(f"{t}={n}" for t, n in deleted.items() if n))

    await _repeat("retention", once, every, stop)


async def refresh_hourly_rollups(pool: AsyncConnectionPool) -> int:
    """Recompute the recent complete hours of the hourly rollups; return rows written."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT refresh_hourly_rollups()")
        row = await cur.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


async def run_hourly_rollups(pool: AsyncConnectionPool, stop: asyncio.Event,
                             every: timedelta = timedelta(minutes=5)) -> None:
    """Keep probe_rollup_1h and request_rollup_1h current until `stop` is set."""
    await _repeat("hourly rollups", lambda: refresh_hourly_rollups(pool), every, stop)


async def service(runtime: Runtime, stop: asyncio.Event) -> None:
    """Retention and hourly rollups as one upwatch service (runs beside the prober)."""
    await asyncio.gather(run_retention(runtime.pool, runtime.config.storage.retention, stop),
                         run_hourly_rollups(runtime.pool, stop))
