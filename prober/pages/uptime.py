"""Exact uptime and latency figures from the rollups, with raw rows only where no rollup covers a range.

Uptime is successful checks / all checks in the range; skipped runs are not
checks (the rollups leave them out, and so does the raw part here). A range
is cut into the coarsest pieces that are materialized: whole UTC days from
probe_rollup_1d, whole hours from probe_rollup_1h, whole minutes from
probe_rollup_1m, and probe_results itself for the partial minutes at the
edges and for the last RAW_TAIL, which the prober may not have rolled up yet.
Every piece is a sum of counts, so the result equals a direct count over
probe_results (tests/pages/test_uptime.py checks it).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from psycopg import AsyncConnection

# The prober rolls a minute up 15 s after it closes (prober/rollups.py), every few seconds; anything
# newer than this is read raw so a figure never misses checks that are written but not rolled up.
RAW_TAIL = dt.timedelta(minutes=3)
MINUTE, HOUR, DAY = dt.timedelta(minutes=1), dt.timedelta(hours=1), dt.timedelta(days=1)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

_ROLLUP = """SELECT %(label)s::text, endpoint_id, {bucket}, sum(count), sum(ok_count),
       sum(avg_latency_ms * count) FILTER (WHERE avg_latency_ms IS NOT NULL),
       sum(count) FILTER (WHERE avg_latency_ms IS NOT NULL)
FROM {table} WHERE endpoint_id = ANY(%(ids)s::integer[]) AND bucket >= %(lo)s AND bucket < %(hi)s GROUP BY 2, 3"""
_RAW = """SELECT %(label)s::text, endpoint_id, {bucket}, count(*), count(*) FILTER (WHERE ok),
       sum(latency_ms), count(latency_ms)
FROM probe_results WHERE endpoint_id = ANY(%(ids)s::integer[]) AND time >= %(lo)s AND time < %(hi)s
  AND error_kind IS DISTINCT FROM 'skipped' GROUP BY 2, 3"""
_TABLES = {DAY: "probe_rollup_1d", HOUR: "probe_rollup_1h", MINUTE: "probe_rollup_1m"}
_UNITS = {"": None, "day": DAY, "hour": HOUR}


class Figures(NamedTuple):
    """Checks, successes and latency over a range (or one bucket of it).

    A tuple of numbers rather than an object: a listener keeps ~54,000 of them for a 500-endpoint page,
    and the garbage collector stops tracking tuples that hold only numbers (it scanned every kept
    dataclass on each collection)."""

    checks: int = 0
    ok: int = 0
    latency_sum: float = 0.0
    latency_n: int = 0

    @property
    def uptime(self) -> float | None:
        """Fraction of checks that succeeded; None with no checks."""
        return self.ok / self.checks if self.checks else None

    @property
    def latency_ms(self) -> float | None:
        return self.latency_sum / self.latency_n if self.latency_n else None


# tuple.__new__ skips the namedtuple's own Python-level __new__: a 500-endpoint page sums ~5,000 figures.
_new = tuple.__new__


def total(parts: Iterable[Figures]) -> Figures:
    """The figures of several ranges (or buckets) together."""
    count = ok = latency_n = 0
    latency_sum = 0.0
    for checks, good, lat_sum, lat_n in parts:
        count += checks
        ok += good
        latency_sum += lat_sum
        latency_n += lat_n
    return _new(Figures, (count, ok, latency_sum, latency_n))


def plus(a: Figures, b: Figures) -> Figures:
    """Two figures together: total() of a pair, without its loop."""
    return _new(Figures, (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]))


@dataclass(frozen=True)
class Limits:
    """How far each rollup table is materialized: buckets before these instants are complete."""

    day: dt.datetime | None
    hour: dt.datetime | None
    minute: dt.datetime


@dataclass(frozen=True)
class Query:
    """A range to sum, labelled, bucketed by `unit` ('day', 'hour') or not at all ('' )."""

    label: str
    lo: dt.datetime
    hi: dt.datetime
    unit: str = ""


@dataclass
class Result:
    """Totals of the queries without a unit; per-bucket figures (keyed by the bucket's epoch second) of the rest."""

    totals: dict[tuple[str, int], Figures] = field(default_factory=dict)
    buckets: dict[tuple[str, int], dict[int, Figures]] = field(default_factory=lambda: defaultdict(dict))


def epoch(t: dt.datetime) -> int:
    """A bucket's key in Result.buckets (ints hash far faster than aware datetimes, 45,000 cells a page)."""
    return int((t - _EPOCH).total_seconds())


def floor(t: dt.datetime, step: dt.timedelta) -> dt.datetime:
    return t - (t - _EPOCH) % step


def ceil(t: dt.datetime, step: dt.timedelta) -> dt.datetime:
    down = floor(t, step)
    return down if down == t else down + step


def split(lo: dt.datetime, hi: dt.datetime, limits: Limits) -> list[tuple[str, dt.datetime, dt.datetime]]:
    """[lo, hi) as (table, from, to) pieces: coarsest materialized buckets inside, finer ones at the edges."""
    levels = [(DAY, limits.day), (HOUR, limits.hour), (MINUTE, limits.minute)]

    def cut(a: dt.datetime, b: dt.datetime, level: int) -> list[tuple[str, dt.datetime, dt.datetime]]:
        if a >= b:
            return []
        if level == len(levels):
            return [("probe_results", a, b)]
        step, limit = levels[level]
        inner_lo, inner_hi = ceil(a, step), floor(b, step)
        if limit is not None:
            inner_hi = min(inner_hi, floor(limit, step))
        if limit is None or inner_lo >= inner_hi:
            return cut(a, b, level + 1)
        return [*cut(a, inner_lo, level + 1), (_TABLES[step], inner_lo, inner_hi), *cut(inner_hi, b, level + 1)]

    return cut(lo, hi, 0)


async def limits(conn: AsyncConnection, now: dt.datetime) -> Limits:
    """What is materialized now: rollup_progress for the days and hours, RAW_TAIL before now for minutes."""
    cur = await conn.execute("SELECT name, complete_until FROM rollup_progress"
                             " WHERE name IN ('probe_rollup_1d', 'probe_rollup_1h')")
    progress: dict[str, dt.datetime] = dict(await cur.fetchall())
    tail = floor(now - RAW_TAIL, MINUTE)
    hour = progress.get("probe_rollup_1h")
    hour = min(hour, tail) if hour is not None else None
    day = progress.get("probe_rollup_1d")
    day = min(day, hour) if day is not None and hour is not None else None
    return Limits(day=day, hour=hour, minute=tail)


def _bucket(table: str, unit: str) -> str:
    """The bucket column of a piece: none for totals, the table's own where its buckets are the unit."""
    step = _UNITS[unit]  # a KeyError, not SQL, for anything else
    if step is None:
        return "NULL::timestamptz"
    column = "time" if table == "probe_results" else "bucket"
    if _TABLES.get(step) == table:
        return column
    return f"date_trunc('{unit}', {column}, 'UTC')"


def statement(queries: Iterable[Query], ids: Sequence[int], lim: Limits) -> tuple[str, dict[str, Any]]:
    """One UNION ALL statement summing every piece of every query (parameters numbered per piece)."""
    parts: list[str] = []
    params: dict[str, Any] = {"ids": list(ids)}
    for q in queries:
        # An hourly series never reads days (a day row cannot be cut into hours).
        for table, lo, hi in split(q.lo, q.hi, replace(lim, day=None) if q.unit == "hour" else lim):
            i = len(parts)
            template = _RAW if table == "probe_results" else _ROLLUP.replace("{table}", table)
            template = template.replace("{bucket}", _bucket(table, q.unit))
            for name in ("label", "lo", "hi"):
                template = template.replace(f"%({name})s", f"%({name}_{i})s")
            parts.append(template)
            params |= {f"label_{i}": q.label, f"lo_{i}": lo, f"hi_{i}": hi}
    # Summed across pieces and locations here, so Python gets one row per cell. Only the fixed templates
    # and table names above are joined in; every value is a parameter.
    head = ("SELECT label, endpoint_id, extract(epoch FROM b)::bigint, sum(n)::bigint, sum(ok)::bigint, sum(ls),"
            " sum(ln)::bigint FROM (")
    tail = ") u(label, endpoint_id, b, n, ok, ls, ln) GROUP BY 1, 2, 3"
    return head + "\nUNION ALL\n".join(parts) + tail, params


async def figures(conn: AsyncConnection, ids: Sequence[int], queries: Sequence[Query], now: dt.datetime,
                  lim: Limits | None = None) -> Result:
    """Sum every query for every endpoint in `ids`: totals per (label, endpoint), buckets where a unit is set."""
    result = Result()
    if not ids or not queries:
        return result
    text, params = statement(queries, ids, lim or await limits(conn, now))
    cur = await conn.execute(text, params)
    for label, endpoint_id, bucket, count, ok, lat_sum, lat_n in await cur.fetchall():
        f = Figures(count, ok, lat_sum or 0.0, lat_n or 0)
        if bucket is None:
            result.totals[label, endpoint_id] = f
        else:
            result.buckets[label, endpoint_id][bucket] = f
    return result


class Kept:
    """Whole buckets (days or hours) that no refresh rewrites any more, per endpoint, so a page reads only the
    newest ones from the database.

    refresh_daily_rollups() and refresh_hourly_rollups() recompute from their complete_until minus a lookback
    on (sql/0120, sql/0050); buckets before that are final, so keeping them is exact. One span of buckets
    [first, until) is held as a list per endpoint, in bucket order. When the span moves forward (each hour
    or day), buckets before the new first are dropped and only the new ones are read, once; `markup` and
    `sums`, derived from the held buckets by the pages, start over.
    """

    def __init__(self, label: str, unit: str, lookback: dt.timedelta) -> None:
        self.label, self.unit, self.step, self.lookback = label, unit, {"day": DAY, "hour": HOUR}[unit], lookback
        self.first: dt.datetime | None = None
        self.until: dt.datetime | None = None
        self.cells: dict[int, list[Figures]] = {}
        self.markup: dict[int, str] = {}  # per endpoint, rendered bars of the held days (prober/pages/render.py)
        self.sums: dict[tuple[int, int], Figures] = {}  # (endpoint, first index) -> sum of held cells from there

    def final_until(self, limit: dt.datetime | None, first: dt.datetime, last: dt.datetime) -> dt.datetime:
        """Buckets in [first, this) are final, given how far the rollup is complete (`limit`)."""
        if limit is None:
            return first
        return min(max(first, floor(limit, self.step) - self.lookback), last)

    def _move(self, first: dt.datetime, until: dt.datetime) -> dt.datetime | None:
        """Move the span to [first, until); return where the buckets still to be read start (None: none)."""
        if (first, until) == (self.first, self.until):
            return None
        self.markup, self.sums = {}, {}
        if self.first is None or self.until is None or until < self.until or not self.first <= first <= self.until:
            self.cells = {}  # nothing to keep (the first span, or limits that went back)
            self.first, self.until = first, until
            return None
        drop, start = (first - self.first) // self.step, self.until
        for cells in self.cells.values():
            del cells[:drop]
        self.first, self.until = first, until
        return start if start < until else None

    async def load(self, conn: AsyncConnection, ids: Sequence[int], first: dt.datetime, until: dt.datetime,
                   now: dt.datetime, lim: Limits) -> dict[int, list[Figures]]:
        """The final buckets [first, until) per endpoint, from the database only for those not held yet."""
        start = self._move(first, until)
        if start is not None and self.cells:
            new = await self._read(conn, list(self.cells), start, until, now, lim)
            for i, held in self.cells.items():
                held.extend(new[i])
        missing = [i for i in ids if i not in self.cells]
        if missing:
            self.cells |= await self._read(conn, missing, first, until, now, lim)
        return {i: self.cells[i] for i in ids}

    async def _read(self, conn: AsyncConnection, ids: Sequence[int], lo: dt.datetime, hi: dt.datetime,
                    now: dt.datetime, lim: Limits) -> dict[int, list[Figures]]:
        keys = [epoch(lo + k * self.step) for k in range((hi - lo) // self.step)]
        result = await figures(conn, ids, [Query(self.label, lo, hi, self.unit)], now, lim) if keys else Result()
        none, out = Figures(), {}
        for i in ids:
            got = result.buckets.get((self.label, i), {})
            out[i] = [got.get(k, none) for k in keys]
        return out


class Minutes:
    """Per endpoint and hour, the sums of the minute rollups of the hours the hourly refresh has not reached
    yet (up to ~65 minutes × every endpoint, the largest read of a page), for minutes older than SETTLE.

    The span starts where the hourly rollup ends (hours before it are read from probe_rollup_1h) and
    grows by the minutes that settled since the last request, each read once. A minute is kept once it
    is SETTLE old, the same settling time refresh_hourly_rollups() gives an hour: a check written later
    than that (a spool replayed after an outage) shows once its hour is in probe_rollup_1h, about an hour
    later at most, rather than at once.
    """

    SETTLE = dt.timedelta(minutes=5)

    def __init__(self) -> None:
        self.lo: dt.datetime | None = None
        self.until: dt.datetime | None = None
        self.sums: dict[int, dict[int, Figures]] = {}  # endpoint -> hour (epoch) -> minutes [hour, until)

    def span(self, lim: Limits, now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
        """The minutes [lo, until) kept: from the end of the hourly rollup to SETTLE ago (None: no hourly rollup)."""
        if lim.hour is None:
            return None
        lo = floor(lim.hour, HOUR)
        return lo, max(lo, min(floor(now - self.SETTLE, MINUTE), lim.minute))

    async def load(self, conn: AsyncConnection, ids: Sequence[int], lo: dt.datetime, until: dt.datetime,
                   now: dt.datetime, lim: Limits) -> dict[int, dict[int, Figures]]:
        """Per endpoint, the hourly sums of the minutes [lo, until), from the database only where not kept yet."""
        if self.lo is None or self.until is None or lo < self.lo or until < self.until or lo > self.until:
            self.lo, self.until, self.sums = lo, lo, {}
        elif lo > self.lo:  # the hourly rollup moved on: those hours come from it now
            self.lo = lo
            for sums in self.sums.values():
                for hour in [h for h in sums if h < epoch(lo)]:
                    del sums[hour]
        if until > self.until and self.sums:
            await self._add(conn, list(self.sums), self.until, until, now, lim)
        self.until = until
        missing = [i for i in ids if i not in self.sums]
        for i in missing:
            self.sums[i] = {}
        if missing:
            await self._add(conn, missing, lo, until, now, lim)
        return {i: self.sums[i] for i in ids}

    async def _add(self, conn: AsyncConnection, ids: Sequence[int], a: dt.datetime, b: dt.datetime,
                   now: dt.datetime, lim: Limits) -> None:
        if a >= b:
            return
        result = await figures(conn, ids, [Query("minutes", a, b, "hour")], now, lim)
        for i in ids:
            sums = self.sums[i]
            for hour, f in result.buckets.get(("minutes", i), {}).items():
                sums[hour] = plus(sums[hour], f) if hour in sums else f


class DayCache:
    """What a listener keeps between requests: final days (lookback as refresh_daily_rollups' default, one
    day), final hours (refresh_hourly_rollups' default, three hours) and settled minutes."""

    def __init__(self) -> None:
        self.days = Kept("days", "day", DAY)
        self.hours = Kept("hours", "hour", 3 * HOUR)
        self.minutes = Minutes()
