"""DELETE /logs: a key holder deletes their own service's logs, and the rollups stop counting them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from push import rollup
from tests.push.conftest import Api

BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=8)
COUNT = 36
# Cuts a minute and an hour at both ends, so partial buckets are adjusted, not just dropped.
FROM, TO = BASE + timedelta(hours=1, minutes=20, seconds=30), BASE + timedelta(hours=2, minutes=41, seconds=10)


def when(i: int) -> datetime:
    return BASE + timedelta(minutes=7 * i, seconds=13 + i)  # several rows in FROM's and TO's minutes and hours


def record(i: int) -> dict[str, Any]:
    return {"timestamp": when(i).isoformat(), "method": "GET" if i % 3 else "POST", "route": f"/r{i % 2}",
            "status_code": (200, 404, 503)[i % 3], "latency_ms": float(i % 9), "source_ip": f"10.0.0.{i % 5}"}


# Inside FROM's and TO's minutes, on both sides of the cuts; EXTRA[::2] is rolled up before the deletion. In
# FROM's minute no row arrives after it, so only the deletion itself can correct that minute's rollup.
EXTRA = [{**record(i), "timestamp": t.isoformat()} for i, t in enumerate([
    FROM - timedelta(seconds=20), FROM + timedelta(seconds=10), FROM + timedelta(seconds=15),
    FROM + timedelta(seconds=18), TO - timedelta(seconds=5), TO - timedelta(seconds=8),
    TO + timedelta(seconds=30), TO + timedelta(seconds=20)])]
ALL = [record(i) for i in range(COUNT)] + EXTRA


def inside(r: dict[str, Any]) -> bool:
    return FROM <= datetime.fromisoformat(r["timestamp"]) < TO


async def push(api: Api, key: str, records: list[dict[str, Any]]) -> None:
    resp = await api.client.post("/logs", json=records, headers={"X-API-Key": key})
    assert resp.status == 202, await resp.text()
    await api.writer.flush()


async def delete(api: Api, key: str | None, headers: dict[str, str] | None = None,
                 **params: str) -> tuple[int, Any]:
    resp = await api.client.delete("/logs", params=params, headers=headers or {"X-API-Key": key or ""})
    return resp.status, await resp.json()


ROLLUPS = {
    "request_rollup_1m": "bucket, service_id, route, method, count, error_count, avg_latency_ms, min_latency_ms,"
                         " p50_latency_ms, p95_latency_ms, p99_latency_ms, max_latency_ms, latency_sketch_keys,"
                         " latency_sketch_counts",
    "request_client_ips_1h": "bucket, service_id, host(source_ip), count",
    "request_status_1h": "bucket, service_id, status_code, count",
}


async def snapshot(api: Api) -> dict[str, list[tuple[Any, ...]]]:
    return {table: await api.rows(f"SELECT {cols} FROM {table} ORDER BY {cols}") for table, cols in ROLLUPS.items()}


async def analytics(api: Api, key: str) -> dict[str, Any]:
    resp = await api.client.get("/analytics", headers={"X-API-Key": key}, params={
        "from": (BASE - timedelta(hours=1)).isoformat(), "to": (BASE + timedelta(hours=7)).isoformat()})
    body = await resp.json()
    assert resp.status == 200 and body["source"] == "rollup", body
    return body


def expected(records: list[dict[str, Any]]) -> dict[str, Any]:
    statuses: dict[str, int] = {}
    for r in records:
        statuses[str(r["status_code"])] = statuses.get(str(r["status_code"]), 0) + 1
    return {"total_requests": len(records), "errors": sum(r["status_code"] >= 500 for r in records),
            "status_codes": statuses, "unique_client_ips": len({r["source_ip"] for r in records})}


async def test_a_key_deletes_its_services_logs_in_a_range_and_analytics_forget_them(api: Api) -> None:
    shop, other = await api.service("shop"), await api.service("other")
    await push(api, other, ALL)
    # Half the rows are rolled up before the deletion, half after: both sides of the watermark.
    await push(api, shop, ALL[::2])
    await rollup.update(api.pool)
    await api.rows("SELECT refresh_hourly_rollups()")
    await push(api, shop, ALL[1::2])
    in_range = [r[0] for r in await api.rows(
        "SELECT l.id FROM request_logs l JOIN services s ON s.id = l.service_id"
        " WHERE s.name = 'shop' AND l.time >= %s AND l.time < %s ORDER BY l.id", FROM, TO)]
    kept_log = (await api.rows("SELECT id FROM request_logs WHERE time < %s LIMIT 1", FROM))[0][0]
    await api.rows("INSERT INTO request_replays (log_id, service_id, method, url)"
                   " SELECT id, service_id, 'GET', 'http://127.0.0.1:9/' FROM request_logs WHERE id = ANY(%s)"
                   " RETURNING id", [in_range[0], kept_log])

    status, body = await delete(api, shop, **{"from": FROM.isoformat(), "to": TO.isoformat()})
    assert status == 200, body
    gone = [r for r in ALL if inside(r)]
    assert body["deleted"] == {"logs": len(gone), "replays": 1} and body["service"] == "shop"
    assert len(gone) == len(in_range) > 4

    await rollup.update(api.pool)
    left = [r for r in ALL if not inside(r)]
    rows = await api.rows("SELECT s.name, count(*) FROM request_logs l JOIN services s ON s.id = l.service_id"
                          " GROUP BY 1 ORDER BY 1")
    assert rows == [("other", len(ALL)), ("shop", len(left))]
    assert await api.rows("SELECT log_id FROM request_replays") == [(kept_log,)]
    for key, records in ((shop, left), (other, ALL)):
        body = await analytics(api, key)
        assert {k: body[k] for k in expected(records)} == expected(records)
    # What the deletion left equals the rollups rebuilt from the remaining raw logs.
    adjusted = await snapshot(api)
    await rollup.rebuild(api.pool, BASE - timedelta(hours=1), BASE + timedelta(hours=7))
    assert adjusted == await snapshot(api)
    # The hourly request rollup (Grafana) is rebuilt for the hours the range cut.
    await api.rows("SELECT refresh_hourly_rollups()")
    hourly = await api.rows("SELECT h.bucket, h.count FROM request_rollup_1h h JOIN services s ON s.id = h.service_id"
                            " WHERE s.name = 'shop' ORDER BY 1")
    raw = await api.rows("SELECT date_trunc('hour', l.time), count(*) FROM request_logs l"
                         " JOIN services s ON s.id = l.service_id WHERE s.name = 'shop' GROUP BY 1 ORDER BY 1")
    assert _per_hour(hourly) == _per_hour(raw)
    (action, actor, service, details), = await api.rows("SELECT action, actor, service, details FROM audit_events")
    assert (action, actor, service) == ("logs.delete", f"key:{shop[:12]}", "shop")
    assert details == {"from": FROM.isoformat(), "to": TO.isoformat(), "all": False, "logs": len(gone), "replays": 1}


def _per_hour(rows: list[tuple[Any, ...]]) -> dict[datetime, int]:
    totals: dict[datetime, int] = {}
    for bucket, n in rows:
        totals[bucket] = totals.get(bucket, 0) + int(n)
    return totals


async def test_all_deletes_every_log_and_rollup_of_the_key_service_only(api: Api) -> None:
    shop, other = await api.service("shop"), await api.service("other")
    await push(api, shop, ALL)
    await push(api, other, ALL)
    await rollup.update(api.pool)
    status, body = await delete(api, shop, all="true")
    assert status == 200 and body["deleted"]["logs"] == len(ALL), body
    await rollup.update(api.pool)
    for table in ("request_logs", *ROLLUPS):
        rows = await api.rows(f"SELECT DISTINCT s.name FROM {table} t JOIN services s ON s.id = t.service_id")
        assert rows == [("other",)], table
    assert (await analytics(api, shop))["total_requests"] == 0
    assert (await analytics(api, other))["total_requests"] == len(ALL)


REFUSED = [
    ({}, 422, "from"), ({"all": "false"}, 422, "from"), ({"all": "true", "to": TO.isoformat()}, 422, "all"),
    ({"from": TO.isoformat(), "to": FROM.isoformat()}, 422, "to"), ({"from": "yesterday"}, 422, "from"),
    ({"all": "maybe"}, 422, "all"), ({"all": "true", "service": "other"}, 422, "service"),
]


async def test_refused_deletions_delete_nothing(api: Api) -> None:
    shop = await api.service("shop")
    await push(api, shop, ALL)
    for params, code, field in REFUSED:
        status, body = await delete(api, shop, **params)
        assert status == code and [d["field"] for d in body["details"]] == [field], (params, body)
    assert (await delete(api, None, api.admin, all="true"))[0] == 403  # admins purge whole services
    assert (await delete(api, "uwk_not-a-key", all="true"))[0] == 401
    assert (await delete(api, None, {}, all="true"))[0] == 401
    other_key = await api.service("other")  # another service's key deletes its own (no) logs, never shop's
    assert (await delete(api, other_key, all="true"))[1]["deleted"]["logs"] == 0
    assert await api.rows("SELECT count(*) FROM request_logs") == [(len(ALL),)]
    assert await api.rows("SELECT count(*) FROM audit_events") == [(1,)]

