"""Long ranges from the rollups: client IPs and status codes exact (hourly counts plus raw edges),
latency percentiles within the sketches' 1% bound (sql/0090), against the raw logs."""

from __future__ import annotations

import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from push import rollup
from tests.push.conftest import Api
from tests.push.test_query import get
from upwatch.config.storage import Retention
from upwatch.migrate import discover, migrate
from upwatch.storage import purge

# Ten whole UTC hours of traffic ending two hours ago, so that ranges have edges inside hours.
START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=12)


def record(i: int, **extra: Any) -> dict[str, Any]:
    """One request every 7 minutes; IPs repeat within and across hours, some with much more traffic."""
    ip = f"10.0.{i % 2}.{i % 13}" if i % 5 else "192.0.2.7"
    return {"timestamp": (START + timedelta(minutes=7 * i)).isoformat(), "method": "GET", "path": "/a",
            "status_code": 404 if i % 7 == 0 else 200 if i % 4 else 503, "latency_ms": 1.0, "source_ip": ip, **extra}


async def post(api: Api, key: str, records: list[dict[str, Any]]) -> None:
    resp = await api.client.post("/logs", json=records, headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 202, await resp.text()
    await api.writer.flush()


async def raw_clients(api: Api, since: datetime, until: datetime,
                      service: str | None) -> tuple[int, list[Any], dict[str, int]]:
    """The exact answer, straight from request_logs (independent of push/analytics.py)."""
    scope = ("l.time >= %s AND l.time < %s AND (%s::text IS NULL OR"
             " l.service_id = (SELECT id FROM services WHERE name = %s))")
    (unique,), = await api.rows(f"SELECT count(DISTINCT source_ip) FROM request_logs l WHERE {scope}",
                                since, until, service, service)
    top = await api.rows(f"SELECT host(source_ip), count(*) FROM request_logs l WHERE {scope}"
                         " AND source_ip IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10",
                         since, until, service, service)
    statuses = await api.rows(f"SELECT status_code, count(*) FROM request_logs l WHERE {scope}"
                              " AND status_code IS NOT NULL GROUP BY 1", since, until, service, service)
    return unique, [{"ip": ip, "requests": n} for ip, n in top], {str(s): n for s, n in statuses}


async def seed(api: Api) -> str:
    key = await api.service("shop")
    private = await api.service("private", privacy_level=2)  # its rows are stored without IPs
    await post(api, key, [record(i) for i in range(86)])  # 86 * 7 min: about ten hours
    await post(api, private, [record(i) for i in range(0, 86, 3)])
    await post(api, key, [record(i, source_ip=None) for i in range(1, 86, 4)])  # rows without an IP
    return key


RANGES = [  # (from, to) relative to START: edges inside hours, on hour boundaries, past the data
    (timedelta(minutes=-17), timedelta(hours=8, minutes=23)),
    (timedelta(minutes=31), timedelta(hours=9, minutes=59)),
    (timedelta(hours=1), timedelta(hours=8)),
    (timedelta(hours=-3), timedelta(hours=12)),
    (timedelta(hours=2, minutes=5), timedelta(hours=8, minutes=10)),
]


async def test_hourly_client_ips_match_the_raw_logs(api: Api) -> None:
    key = await seed(api)
    await rollup.update(api.pool)
    hourly = await api.rows("SELECT count(*), sum(count) FROM request_client_ips_1h")
    with_ip = await api.rows("SELECT count(*) FROM request_logs WHERE source_ip IS NOT NULL")
    assert hourly[0][1] == with_ip[0][0] and hourly[0][0] < with_ip[0][0]
    assert await api.rows("SELECT sum(count) FROM request_status_1h") == await api.rows(
        "SELECT count(*) FROM request_logs")
    for low, high in RANGES:
        since, until = START + low, START + high
        for who, service in ((key, "shop"), (None, None)):  # a service's key, and the admin over all services
            status, body = await get(api, "/analytics", who, bucket="1h",
                                      **{"from": since.isoformat(), "to": until.isoformat()})
            assert status == 200 and body["source"] == "rollup", body
            unique, top, statuses = await raw_clients(api, since, until, service)
            assert unique > 0 and top and len(statuses) == 3
            assert (body["unique_client_ips"], body["top_client_ips"], body["status_codes"]) == (
                unique, top, statuses), (low, high, service)


async def test_late_rows_are_added_once_and_rebuild_recomputes_hours(api: Api) -> None:
    key = await seed(api)
    await rollup.update(api.pool)
    # A late request from a new client into an hour that is already rolled up.
    await post(api, key, [record(10, source_ip="198.51.100.1"), record(11, source_ip="198.51.100.1")])
    await rollup.update(api.pool)
    await rollup.update(api.pool)  # nothing new: nothing added twice
    exact = ("SELECT date_trunc('hour', time, 'UTC'), service_id, source_ip, count(*) FROM request_logs"
             " WHERE source_ip IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
    stored = "SELECT bucket, service_id, source_ip, count FROM request_client_ips_1h ORDER BY 1, 2, 3"
    exact_statuses = ("SELECT date_trunc('hour', time, 'UTC'), service_id, status_code, count(*) FROM request_logs"
                      " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
    stored_statuses = "SELECT bucket, service_id, status_code, count FROM request_status_1h ORDER BY 1, 2, 3"
    assert await api.rows(stored_statuses) == await api.rows(exact_statuses)
    assert await api.rows(stored) == await api.rows(exact)
    # A manual change to the raw logs, repaired by rebuild over a range with edges inside hours.
    async with api.pool.connection() as conn:
        await conn.execute("DELETE FROM request_logs WHERE host(source_ip) = '192.0.2.7' AND time < %s",
                           (START + timedelta(hours=5),))
    await rollup.rebuild(api.pool, START + timedelta(hours=1, minutes=40), START + timedelta(hours=3, minutes=20))
    repaired = [r for r in await api.rows(exact) if START + timedelta(hours=1) <= r[0] < START + timedelta(hours=4)]
    assert repaired and [r for r in await api.rows(stored) if r in repaired or
                         START + timedelta(hours=1) <= r[0] < START + timedelta(hours=4)] == repaired
    assert await api.rows(stored) != await api.rows(exact)  # hours 0 and 4 are outside the repaired range
    await rollup.rebuild(api.pool, START - timedelta(minutes=1), START + timedelta(hours=24))
    assert await api.rows(stored) == await api.rows(exact)
    assert await api.rows(stored_statuses) == await api.rows(exact_statuses)
    status, body = await get(api, "/analytics", key, bucket="1h", **{
        "from": (START - timedelta(minutes=10)).isoformat(), "to": (START + timedelta(hours=9)).isoformat()})
    assert status == 200
    assert (body["unique_client_ips"], body["top_client_ips"], body["status_codes"]) == await raw_clients(
        api, START - timedelta(minutes=10), START + timedelta(hours=9), "shop")


async def test_retention_expires_old_hourly_counts(api: Api) -> None:
    await api.service("shop")
    async with api.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO request_client_ips_1h (bucket, service_id, source_ip, count)"
            " SELECT date_trunc('hour', now() - d * interval '1 day'), id, '10.0.0.1', 1"
            " FROM services, unnest(ARRAY[1, 400]) d WHERE name = 'shop'")
        await conn.execute(
            "INSERT INTO request_status_1h (bucket, service_id, status_code, count)"
            " SELECT date_trunc('hour', now() - d * interval '1 day'), id, 200, 1"
            " FROM services, unnest(ARRAY[1, 400]) d WHERE name = 'shop'")
    deleted = await purge(api.pool, Retention(rollups="365d"), skip_hypertables=True)
    assert deleted["request_client_ips_1h"] == 1 and deleted["request_status_1h"] == 1
    assert len(await api.rows("SELECT * FROM request_client_ips_1h")) == 1
    assert len(await api.rows("SELECT * FROM request_status_1h")) == 1


# Latency percentiles over long ranges: merged sketches against percentile_cont of the raw logs.
SKETCH_START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=21)
ALPHA = 0.01  # the relative error bound stated in sql/0090 and docs/push.md
EXACT = """
SELECT {group} percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms)
FROM request_logs WHERE time >= %s AND time < %s {where} {group_by}
"""


def skewed(rng: random.Random, minute: int) -> list[dict[str, Any]]:
    """Five requests a minute for 20 hours: mostly 5-80 ms on /fast, a heavy tail on /mixed, and one
    minute in 30 where everything is slow (what averaging per-minute percentiles hides)."""
    at = SKETCH_START + timedelta(minutes=minute)
    slow = minute % 30 == 7
    records = []
    for i in range(5):
        if slow:
            latency = rng.uniform(300, 3000)
        elif i == 4:
            latency = rng.lognormvariate(4, 1.5)  # median 55 ms, long tail
        else:
            latency = rng.choice([0.0, 0.0004, rng.uniform(0.3, 2)]) if rng.random() < 0.05 else rng.uniform(5, 80)
        records.append({"timestamp": (at + timedelta(seconds=11 * i)).isoformat(), "method": "GET",
                        "route": "/mixed" if i == 4 or slow else "/fast", "latency_ms": round(latency, 4),
                        "status_code": 200})
    return records


def within(estimate: float, exact: float) -> bool:
    return abs(estimate - exact) <= ALPHA * exact + 1e-9


async def test_long_range_percentiles_are_within_the_sketch_bound(api: Api) -> None:
    rng = random.Random(20261201)
    key = await api.service("shop")
    records = [r for minute in range(20 * 60) for r in skewed(rng, minute)]
    for i in range(0, len(records), 100):
        await post(api, key, records[i:i + 100])
    await rollup.update(api.pool)
    status, body = await get(api, "/analytics", key)  # the default range: the last 24 h
    assert status == 200 and body["source"] == "rollup" and body["total_requests"] == 6000, body
    assert body["service"] == "shop"  # was null for a key's call
    since, until = datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"])
    (p50, p95, p99), = await api.rows(EXACT.format(group="", where="", group_by=""), since, until)
    latency = body["latency_ms"]
    for name, exact in (("p50", p50), ("p95", p95), ("p99", p99)):
        assert within(latency[name], exact), (name, latency[name], exact)
    # The data makes the old answer, the count-weighted mean of per-minute p99, far off.
    (mean_p99,), = await api.rows("SELECT sum(p99_latency_ms * count) / sum(count) FROM request_rollup_1m")
    assert not within(mean_p99, p99) and p99 > 1.5 * mean_p99
    by_route = await api.rows(EXACT.format(group="route,", where="", group_by="GROUP BY route ORDER BY route"),
                              since, until)
    assert {r["route"]: r["p95_latency_ms"] for r in body["routes"]}.keys() == {"/fast", "/mixed"}
    for route, _, exact_p95, _ in by_route:
        got = next(r["p95_latency_ms"] for r in body["routes"] if r["route"] == route)
        assert within(got, exact_p95), (route, got, exact_p95)
    status, everyone = await get(api, "/analytics", None, **{"from": body["from"], "to": body["to"]})
    assert status == 200 and everyone["service"] is None
    assert everyone["latency_ms"] == pytest.approx(latency)  # one service: the same answer


async def test_hourly_rollups_merge_the_sketches(api: Api) -> None:
    rng = random.Random(7)
    key = await api.service("shop")
    records = [r for minute in range(3 * 60) for r in skewed(rng, minute)]
    for i in range(0, len(records), 100):
        await post(api, key, records[i:i + 100])
    await rollup.update(api.pool)
    assert await api.rows("SELECT refresh_hourly_rollups()") != [(0,)]
    hours = await api.rows("SELECT bucket, route, count, p50_latency_ms, p95_latency_ms, p99_latency_ms,"
                           " (SELECT sum(n) FROM unnest(latency_sketch_counts) n)"
                           " FROM request_rollup_1h ORDER BY 1, 2")
    assert len(hours) == 6  # three hours, two routes
    for bucket, route, count, *percentiles, sketched in hours:
        assert sketched == count  # every log of the hour is in its sketch
        exact = await api.rows(EXACT.format(group="", where="AND route = %s", group_by=""),
                               bucket, bucket + timedelta(hours=1), route)
        assert all(within(got, want) for got, want in zip(percentiles, exact[0], strict=True)), (
            bucket, route, percentiles, exact)


async def test_migration_backfills_sketches_of_minutes_rolled_up_before_it(empty_database_url: str,
                                                                           tmp_path: Path) -> None:
    before = tmp_path / "sql"
    before.mkdir()
    for migration in discover():
        if migration.version < 90:
            shutil.copy(migration.path, before)
    await migrate(empty_database_url, directory=before)
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO services (name) VALUES ('shop')")
        conn.execute("INSERT INTO request_logs (time, service_id, method, route, latency_ms)"
                     " SELECT now() - i * interval '7 seconds', 1, 'GET', '/r' || i % 3, (i * 37 % 1000) / 10.0"
                     " FROM generate_series(1, 3000) i")
        # What rollup.py wrote before sql/0090 (no sketch columns yet).
        conn.execute("INSERT INTO request_rollup_1m (bucket, service_id, route, method, count, error_count)"
                     " SELECT date_trunc('minute', time), service_id, route, method, count(*), 0"
                     " FROM request_logs GROUP BY 1, 2, 3, 4")
    assert [m for m in await migrate(empty_database_url) if m.startswith("0090")]
    stored = ("SELECT bucket, route, latency_sketch_keys, latency_sketch_counts FROM request_rollup_1m"
              " ORDER BY 1, 2")
    with psycopg.connect(empty_database_url) as conn:
        backfilled = conn.execute(stored).fetchall()
    assert len(backfilled) > 100 and all(row[2] for row in backfilled)
    async with AsyncConnectionPool(empty_database_url, open=False) as pool:
        await pool.open()
        await rollup.rebuild(pool, datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(minutes=1))
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute(stored).fetchall() == backfilled  # the sketches rollup.py itself computes
