"""Client IPs and status codes over long ranges: hourly counts plus raw edges equal the raw logs exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prober.push import rollup
from tests.push.conftest import Api
from tests.push.test_query import get
from upwatch.config.storage import Retention
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
    """The exact answer, straight from request_logs (independent of prober/push/analytics.py)."""
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
