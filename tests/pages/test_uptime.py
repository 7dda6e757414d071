"""Uptime from the rollups equals a direct count over probe_results, edges included."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from prober.pages import data, uptime
from prober.pages.data import WINDOWS
from prober.pages.uptime import DAY, HOUR, MINUTE, Limits, Query
from tests.pages.conftest import roll_up, seed
from upwatch.runtime import Runtime

DIRECT = """SELECT count(*), count(*) FILTER (WHERE ok) FROM probe_results p JOIN endpoints e ON e.id = p.endpoint_id
WHERE e.name = %s AND time >= %s AND time < %s AND error_kind IS DISTINCT FROM 'skipped'"""


def direct(url: str, name: str, lo: dt.datetime, hi: dt.datetime) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(DIRECT, (name, lo, hi)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def test_window_uptime_equals_a_direct_count(runtime: Runtime, pool: AsyncConnectionPool) -> None:
    url = runtime.database_url
    now = dt.datetime.now(dt.UTC)
    seed(url, "api", days=95, every=dt.timedelta(minutes=9), now=now)
    roll_up(url, now)
    # checks after the rollup ran, as the prober writes them between ticks
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO probe_results (time, endpoint_id, id, ok, error_kind) SELECT %s - interval '20 s',"
                     " id, gen_random_uuid(), false, 'http' FROM endpoints WHERE name = 'api'", (now,))
    async with pool.connection() as conn:
        ids = [(await (await conn.execute("SELECT id FROM endpoints WHERE name = 'api'")).fetchone())[0]]
        queries = [Query(label, now - span, now) for label, span in WINDOWS.items()]
        result = await uptime.figures(conn, ids, queries, now)
        lim = await uptime.limits(conn, now)
        shown = (await data.load_endpoints(conn, ["api"], runtime.config, now))["api"]
    for label, span in WINDOWS.items():
        got = result.totals[label, ids[0]]  # any range: here the rolling one
        assert (got.checks, got.ok) == direct(url, "api", now - span, now), label
        assert got.checks > 0
        page = shown.uptime[label]  # the page's window (from an hour or a midnight), summed from its points
        assert (page.checks, page.ok) == direct(url, "api", data.window_start(label, now), now), label
    tables = {table for table, _, _ in uptime.split(now - WINDOWS["90d"], now, lim)}
    assert tables == {"probe_rollup_1d", "probe_rollup_1h", "probe_rollup_1m", "probe_results"}


async def test_daily_history_equals_a_direct_count_per_day(runtime: Runtime, pool: AsyncConnectionPool) -> None:
    url = runtime.database_url
    now = dt.datetime.now(dt.UTC)
    seed(url, "web", days=92, every=dt.timedelta(minutes=13), now=now, fail_every=5)
    roll_up(url, now)
    today = uptime.floor(now, DAY)
    async with pool.connection() as conn:
        ids = [(await (await conn.execute("SELECT id FROM endpoints WHERE name = 'web'")).fetchone())[0]]
        result = await uptime.figures(conn, ids, [Query("days", today - 89 * DAY, now, "day")], now)
    days = result.buckets["days", ids[0]]
    assert len(days) == 90
    for key, got in days.items():
        day = dt.datetime.fromtimestamp(key, dt.UTC)
        assert (got.checks, got.ok) == direct(url, "web", day, min(day + DAY, now)), day


A = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(("lo", "hi", "limits", "expected"), [
    (A + 30 * MINUTE + dt.timedelta(seconds=5), A + 2 * DAY + 3 * HOUR + 10 * MINUTE + dt.timedelta(seconds=7),
     Limits(day=A + 3 * DAY, hour=A + 3 * DAY, minute=A + 3 * DAY),
     [("probe_results", A + 30 * MINUTE + dt.timedelta(seconds=5), A + 31 * MINUTE),
      ("probe_rollup_1m", A + 31 * MINUTE, A + HOUR), ("probe_rollup_1h", A + HOUR, A + DAY),
      ("probe_rollup_1d", A + DAY, A + 2 * DAY), ("probe_rollup_1h", A + 2 * DAY, A + 2 * DAY + 3 * HOUR),
      ("probe_rollup_1m", A + 2 * DAY + 3 * HOUR, A + 2 * DAY + 3 * HOUR + 10 * MINUTE),
      ("probe_results", A + 2 * DAY + 3 * HOUR + 10 * MINUTE, A + 2 * DAY + 3 * HOUR + 10 * MINUTE
       + dt.timedelta(seconds=7))]),
    (A, A + 2 * DAY, Limits(day=None, hour=A + 5 * HOUR, minute=A + DAY),
     [("probe_rollup_1h", A, A + 5 * HOUR), ("probe_rollup_1m", A + 5 * HOUR, A + DAY),
      ("probe_results", A + DAY, A + 2 * DAY)]),
], ids=["every-level-both-edges", "hours-not-refreshed-past-5h"])
def test_split_reads_the_coarsest_materialized_rollup(lo: dt.datetime, hi: dt.datetime, limits: Limits,
                                                       expected: list[tuple[str, dt.datetime, dt.datetime]]) -> None:
    assert uptime.split(lo, hi, limits) == expected


async def test_kept_final_days_give_the_same_page_as_a_fresh_read(runtime: Runtime, pool: AsyncConnectionPool) -> None:
    from prober.pages import render

    url = runtime.database_url
    now = dt.datetime.now(dt.UTC)
    seed(url, "web", days=30, every=dt.timedelta(minutes=17), now=now, fail_every=3)
    roll_up(url, now)
    cache = uptime.DayCache()
    page = runtime.config.status_pages[0]
    async with pool.connection() as conn:
        first = await data.load(conn, page, runtime.config, now, cache)
        first_html = render.page(first, cache)
        assert cache.days.cells and cache.hours.cells and cache.days.markup  # something was kept
        again = await data.load(conn, page, runtime.config, now, cache)
        fresh = await data.load(conn, page, runtime.config, now)
    web = next(e for e in fresh.endpoints if e.name == "web")
    assert 0 < web.final_days < 90
    assert [e.days for e in again.endpoints] == [e.days for e in fresh.endpoints]
    assert [e.uptime for e in again.endpoints] == [e.uptime for e in fresh.endpoints]
    assert render.page(again, cache) == first_html == render.page(fresh)


def summed(value: Any) -> Any:
    """`value` with each Figures' latency sum rounded to 1e-6 ms (counts stay exact)."""
    if isinstance(value, uptime.Figures):
        return value._replace(latency_sum=round(value.latency_sum, 6))
    if isinstance(value, dict):
        return {k: summed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(summed(v) for v in value) if not hasattr(value, "_fields") else value
    return value


async def test_kept_hours_and_days_follow_the_clock(runtime: Runtime, pool: AsyncConnectionPool) -> None:
    """One cache read at successive times (its span moving by hours and across midnight, then back) gives
    what a fresh read gives at each of them."""
    from prober.pages import render

    url = runtime.database_url
    now = dt.datetime.now(dt.UTC)
    seed(url, "web", days=4, every=dt.timedelta(minutes=7), now=now, fail_every=4)
    seed(url, "api", days=3, every=dt.timedelta(minutes=11), now=now, fail_every=6, seed_value=2)
    roll_up(url, now)
    cache = uptime.DayCache()
    page = runtime.config.status_pages[0]
    # by hours, by minutes within an hour (the kept minutes grow), across midnight; the last goes back in time
    moves = [dt.timedelta(minutes=m) for m in (1800, 1740, 1620, 1560, 1200, 300, 293, 281, 240, 0, 360)]
    async with pool.connection() as conn:
        for back in moves:
            at = now - back
            kept = await data.load(conn, page, runtime.config, at, cache)
            fresh = await data.load(conn, page, runtime.config, at)
            assert cache.hours.first == uptime.floor(at, HOUR) - 23 * HOUR
            # Minutes are kept up to SETTLE ago, or none when the hourly rollup already reaches past that
            # (an `at` in the first minutes of an hour, whose previous hour is rolled up).
            assert cache.minutes.until == max(cache.minutes.lo, uptime.floor(at - uptime.Minutes.SETTLE, MINUTE))
            # Latency sums are floats added in another order by the cache than by a fresh read.
            assert summed([e.hours for e in kept.endpoints]) == summed([e.hours for e in fresh.endpoints]), back
            assert summed([e.days for e in kept.endpoints]) == summed([e.days for e in fresh.endpoints]), back
            assert summed([e.uptime for e in kept.endpoints]) == summed([e.uptime for e in fresh.endpoints]), back
            assert render.page(kept, cache) == render.page(fresh), back
    web = next(e for e in kept.endpoints if e.name == "web")
    assert web.uptime["24h"].checks > 0 and sum(f.checks for f in web.hour_cells[:20]) > 0
