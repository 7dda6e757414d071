"""Push (heartbeat) endpoints: when no pushed result arrived within period + grace, record a failed
result with error_kind "missing_heartbeat", then one more per period while it stays missing."""

from __future__ import annotations

import datetime as dt
import logging

from psycopg_pool import AsyncConnectionPool

from prober.checks import push
from prober.writer import BatchWriter
from upwatch import durations
from upwatch.config.endpoints import Endpoint
from upwatch.records import ProbeResult

logger = logging.getLogger(__name__)


def missing_due(now: dt.datetime, period: dt.timedelta, grace: dt.timedelta, last_push: dt.datetime | None,
                last_missing: dt.datetime | None, since: dt.datetime) -> bool:
    """Whether a missing_heartbeat result is due now."""
    base = last_push or since
    if now < base + period + grace:
        return False
    if last_missing is not None and last_missing > base:
        return now >= last_missing + period
    return True


class HeartbeatWatcher:
    """Checks the push endpoints this prober owns; `check` is called every few seconds."""

    def __init__(self, pool: AsyncConnectionPool, writer: BatchWriter, *, location: str, prober: str):
        self.pool = pool
        self.writer = writer
        self.location = location
        self.prober = prober
        self.watched: dict[str, tuple[Endpoint, push.Options, int]] = {}
        self._recorded: dict[str, dt.datetime] = {}  # rows offered but maybe not yet in the database

    def apply(self, endpoints: list[Endpoint], ids: dict[str, int]) -> None:
        """Watch the enabled push endpoints among `endpoints` that have an id."""
        self.watched = {e.name: (e, e.options, ids[e.name]) for e in endpoints
                        if isinstance(e.options, push.Options) and e.enabled and e.name in ids}

    async def check(self, now: dt.datetime | None = None) -> list[str]:
        """Record missing heartbeats; return the names recorded. Database errors propagate to the caller."""
        now = now or dt.datetime.now(dt.UTC)
        recorded = []
        async with self.pool.connection(timeout=2.0) as conn:
            for name, (endpoint, opts, endpoint_id) in self.watched.items():
                lookback = now - 2 * (opts.period + opts.grace)
                cur = await conn.execute(
                    "SELECT (SELECT created_at FROM endpoints WHERE id = %(id)s),"
                    " max(time) FILTER (WHERE source = 'push'),"
                    " max(time) FILTER (WHERE error_kind = 'missing_heartbeat')"
                    " FROM probe_results WHERE endpoint_id = %(id)s AND time > %(since)s",
                    {"id": endpoint_id, "since": lookback})
                created, last_push, last_missing = await cur.fetchone() or (None, None, None)
                since = max(created or lookback, lookback)
                mine = self._recorded.get(name)
                if mine is not None and (last_missing is None or mine > last_missing):
                    last_missing = mine
                if missing_due(now, opts.period, opts.grace, last_push, last_missing, since):
                    self._record(endpoint.name, opts, endpoint_id, now, last_push)
                    self._recorded[name] = now
                    recorded.append(name)
        return recorded

    def _record(self, name: str, opts: push.Options, endpoint_id: int, now: dt.datetime,
                last: dt.datetime | None) -> None:
        allowed = durations.format(opts.period + opts.grace)
        seen = f"last at {last.isoformat(timespec='seconds')}" if last else "none seen recently"
        result = ProbeResult.failed(now, "missing_heartbeat", f"no result within {allowed} ({seen})",
                                    source="heartbeat")
        logger.warning("heartbeat missing endpoint=%s allowed=%s last=%s", name, allowed, last)
        self.writer.offer("probe_results", [result.to_row(endpoint_id, location=self.location, prober=self.prober)])
