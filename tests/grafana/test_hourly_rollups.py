"""sql/0050: hourly rollups change how fast long ranges are read, never what they add up to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grafana_seed
import psycopg
import pytest

HOURLY_MS, MINUTE_MS = 3_600_000, 60_000
TOTALS = """
SELECT endpoint_id, sum(count), sum(ok_count), sum(p95_latency_ms * count) / sum(count), max(max_latency_ms),
       count(*) AS rows
FROM probe_rollup(%s, %s, %s) GROUP BY endpoint_id ORDER BY endpoint_id
"""


@pytest.fixture
def seeded(database_url: str) -> tuple[str, datetime]:
    now = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(database_url, autocommit=True) as conn:
        grafana_seed.seed(conn, grafana_seed.Scale(endpoints=3, days=1, services=1), now, refresh=False)
    return database_url, now


def totals(conn: psycopg.Connection, start: datetime, end: datetime, step_ms: int) -> list[tuple]:  # type: ignore[type-arg]
    return conn.execute(TOTALS, (start, end, step_ms)).fetchall()


def same(a: list[tuple], b: list[tuple]) -> bool:  # type: ignore[type-arg]
    """Equal counts and maxima; weighted means equal up to float rounding."""
    return len(a) == len(b) and all(
        x[:3] == y[:3] and x[4] == y[4] and abs(x[3] - y[3]) <= 1e-9 * abs(y[3]) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(minutes=23, seconds=17)], ids=["on-the-hour", "mid-hour"])
def test_hourly_rows_add_up_to_the_minutes(seeded: tuple[str, datetime], offset: timedelta) -> None:
    url, now = seeded
    # End at the last hour the refresh will have materialized (it leaves hours that ended under 5
    # minutes ago), so the share read from minutes does not depend on the time of day the test runs.
    end = (now - timedelta(minutes=6)).replace(minute=0, second=0)
    start = end - timedelta(hours=20) + offset
    with psycopg.connect(url, autocommit=True) as conn:
        minutes = totals(conn, start, end, MINUTE_MS)
        assert same(totals(conn, start, end, HOURLY_MS), minutes)  # not refreshed yet: read from minutes
        assert conn.execute("SELECT refresh_hourly_rollups()").fetchone()[0] > 0
        hourly = totals(conn, start, end, HOURLY_MS)
        assert same(hourly, minutes)
        assert sum(r[5] for r in hourly) < sum(r[5] for r in minutes) / 10  # and read far fewer rows
        assert same(totals(conn, start, end, MINUTE_MS), minutes)  # short steps still read every minute


def test_refresh_is_repeatable_and_picks_up_late_minutes(seeded: tuple[str, datetime]) -> None:
    url, now = seeded
    with psycopg.connect(url, autocommit=True) as conn:
        table = ("SELECT bucket, endpoint_id, count, ok_count, round(p95_latency_ms::numeric, 6) FROM probe_rollup_1h"
                 " ORDER BY 2, 1")
        conn.execute("SELECT refresh_hourly_rollups()")
        first = conn.execute(table).fetchall()
        conn.execute("SELECT refresh_hourly_rollups()")
        assert conn.execute(table).fetchall() == first
        # A minute replayed late (e.g. from the prober's spool) two hours back.
        late = conn.execute("SELECT bucket FROM probe_rollup_1h ORDER BY bucket DESC OFFSET 1 LIMIT 1").fetchone()[0]
        conn.execute("UPDATE probe_rollup_1m SET count = count + 5, ok_count = ok_count + 5 WHERE bucket = %s",
                     (late + timedelta(minutes=7),))
        conn.execute("SELECT refresh_hourly_rollups()")
        start = now - timedelta(hours=20)
        assert same(totals(conn, start, now, HOURLY_MS), totals(conn, start, now, MINUTE_MS))


def test_request_rollups_add_up_too(seeded: tuple[str, datetime]) -> None:
    url, now = seeded
    query = ("SELECT service_id, route, method, sum(count), sum(error_count) FROM request_rollup(%s, %s, %s)"
             " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
    start = now - timedelta(hours=13, minutes=5)
    with psycopg.connect(url, autocommit=True) as conn:
        minutes = conn.execute(query, (start, now, MINUTE_MS)).fetchall()
        conn.execute("SELECT refresh_hourly_rollups()")
        assert conn.execute(query, (start, now, HOURLY_MS)).fetchall() == minutes
        assert conn.execute("SELECT count(*) FROM request_rollup_1h").fetchone()[0] > 0


def test_the_planner_inlines_the_rollup_function(seeded: tuple[str, datetime]) -> None:
    url, now = seeded
    with psycopg.connect(url) as conn:
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT sum(count) FROM probe_rollup(%s, %s, 3600000)", (now - timedelta(days=30), now)))
    assert "Function Scan" not in plan and "probe_rollup_1h" in plan


# sql/0180: one endpoint's phase sums and status codes, from hourly rows and the raw rows around them.
DETAIL = """
SELECT status_code, sum(checks), sum(dns_ms_sum) / sum(dns_ms_n), sum(ttfb_ms_sum) / NULLIF(sum(ttfb_ms_n), 0),
       sum(ttfb_ms_n), count(*) AS rows
FROM probe_detail(%(start)s, %(end)s, %(endpoint)s) GROUP BY status_code ORDER BY status_code NULLS FIRST
"""
RAW_DETAIL = """
SELECT status_code, count(*), avg(dns_ms), avg(ttfb_ms), count(ttfb_ms)
FROM probe_results WHERE endpoint_id = %(endpoint)s AND time BETWEEN %(start)s AND %(end)s
GROUP BY status_code ORDER BY status_code NULLS FIRST
"""


def same_detail(detail: list[tuple], raw: list[tuple]) -> bool:  # type: ignore[type-arg]
    """Equal counts per status code, means equal up to float rounding (NULL where no value)."""
    def close(a: float | None, b: float | None) -> bool:
        return a == b if a is None or b is None else abs(a - b) <= 1e-9 * abs(b)
    return len(detail) == len(raw) and all(
        d[0] == r[0] and d[1] == r[1] and d[4] == r[4] and close(d[2], r[2]) and close(d[3], r[3])
        for d, r in zip(detail, raw, strict=True))


@pytest.mark.parametrize("offset", [timedelta(0), timedelta(minutes=41, seconds=3)], ids=["on-the-hour", "mid-hour"])
def test_hourly_detail_adds_up_to_the_raw_checks(seeded: tuple[str, datetime], offset: timedelta) -> None:
    url, now = seeded
    with psycopg.connect(url, autocommit=True) as conn:
        # Every endpoint with checks in the range, including the one whose latest checks time out (no status
        # code, no ttfb).
        endpoints = [e for (e,) in conn.execute("SELECT id FROM endpoints WHERE enabled ORDER BY id").fetchall()]
        ranges = [{"start": now - timedelta(hours=22) + offset, "end": now, "endpoint": e} for e in endpoints]
        raw = [conn.execute(RAW_DETAIL, args).fetchall() for args in ranges]
        assert all(raw) and len(raw) == 2
        for args, expected in zip(ranges, raw, strict=True):
            assert same_detail(conn.execute(DETAIL, args).fetchall(), expected)  # not refreshed: all raw
        conn.execute("SELECT refresh_hourly_rollups()")
        for args, expected in zip(ranges, raw, strict=True):
            assert same_detail(conn.execute(DETAIL, args).fetchall(), expected)
        # The whole hours come from probe_detail_1h: raw rows dropped from one of them change nothing.
        hour = (now - timedelta(hours=10)).replace(minute=0, second=0)
        conn.execute("DELETE FROM probe_results WHERE time >= %s AND time < %s", (hour, hour + timedelta(hours=1)))
        assert same_detail(conn.execute(DETAIL, ranges[0]).fetchall(), raw[0])
        assert not same_detail(conn.execute(RAW_DETAIL, ranges[0]).fetchall(), raw[0])


def test_detail_refresh_picks_up_late_checks(seeded: tuple[str, datetime]) -> None:
    url, now = seeded
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT refresh_hourly_rollups()")
        endpoint, late = conn.execute("SELECT endpoint_id, bucket FROM probe_detail_1h ORDER BY bucket DESC"
                                      " LIMIT 1").fetchone()
        # A check replayed from the spool into an hour already rolled up.
        conn.execute("INSERT INTO probe_results (time, endpoint_id, id, location, ok, status_code, latency_ms, dns_ms)"
                     " VALUES (%s, %s, gen_random_uuid(), 'eu-west', false, 418, 5, 3)",
                     (late + timedelta(minutes=17), endpoint))
        conn.execute("SELECT refresh_hourly_rollups()")
        assert conn.execute("SELECT checks, dns_ms_sum FROM probe_detail_1h WHERE status_code = 418").fetchall() \
            == [(1, 3.0)]
        args = {"start": now - timedelta(hours=20), "end": now, "endpoint": endpoint}
        assert same_detail(conn.execute(DETAIL, args).fetchall(), conn.execute(RAW_DETAIL, args).fetchall())


def test_the_planner_inlines_the_detail_function(seeded: tuple[str, datetime]) -> None:
    url, now = seeded
    with psycopg.connect(url) as conn:
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT sum(checks) FROM endpoints e CROSS JOIN LATERAL probe_detail(%s, %s, e.id) d"
            " WHERE e.name = 'api-001'", (now - timedelta(days=30), now)))
    assert "Function Scan" not in plan and "probe_detail_1h" in plan
