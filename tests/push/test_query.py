"""Reading logs back: filters, keyset pagination, access rules, analytics and the rollup."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from push import rollup
from push.query import encode_cursor
from tests.push.conftest import Api

BASE = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)


def record(i: int, **extra: Any) -> dict[str, Any]:
    return {"timestamp": (BASE + timedelta(seconds=i)).isoformat(), "method": "GET" if i % 2 else "POST",
            "path": f"/users/{i}", "route": "/users/{id}", "status_code": 500 if i % 10 == 0 else 200,
            "latency_ms": float(i), "source_ip": f"10.0.0.{i % 3}", "user_id": f"u{i % 4}",
            "tags": {"env": "prod" if i % 2 else "dev"}, **extra}


async def seed(api: Api, count: int = 30) -> str:
    key = await api.service("shop")
    resp = await api.client.post("/logs", json=[record(i) for i in range(count)],
                                 headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 202
    await api.writer.flush()
    return key


async def get(api: Api, url: str, key: str | None = None, **params: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else api.admin
    resp = await api.client.get(url, params={k: str(v) for k, v in params.items()}, headers=headers)
    return resp.status, await resp.json()


FILTERS = [
    ({}, 30), ({"method": "get"}, 15), ({"status": "5xx"}, 3), ({"status": "200"}, 27),
    ({"path": "users/1"}, 11), ({"route": "/users/{id}"}, 30), ({"min_latency_ms": 20}, 10),
    ({"max_latency_ms": 4.5}, 5), ({"has_error": "true"}, 3), ({"has_error": "false"}, 27),
    ({"tag": "env=dev"}, 15), ({"tag": "env"}, 30), ({"user_id": "u1"}, 8),
    ({"from": (BASE + timedelta(seconds=25)).isoformat()}, 5),
    ({"to": (BASE + timedelta(seconds=5)).isoformat()}, 5),
]


async def test_filters(api: Api) -> None:
    # One table over one seeded database: a database per case would cost more than the cases.
    key = await seed(api)
    for params, expected in FILTERS:
        status, body = await get(api, "/logs", key, limit=500, **params)
        assert status == 200, (params, body)
        assert (len(body["items"]), body["next_cursor"]) == (expected, None), params


async def test_keyset_pages_are_stable_while_rows_are_inserted(api: Api) -> None:
    key = await seed(api, 25)
    seen: list[int] = []
    status, body = await get(api, "/logs", key, limit=10)
    seen += [item["id"] for item in body["items"]]
    # Newer rows arrive between pages; they must not shift or repeat what follows.
    resp = await api.client.post("/logs", json=[record(100 + i) for i in range(5)],
                                 headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 202
    await api.writer.flush()
    while body["next_cursor"]:
        status, body = await get(api, "/logs", key, limit=10, cursor=body["next_cursor"])
        assert status == 200
        seen += [item["id"] for item in body["items"]]
    assert len(seen) == len(set(seen)) == 25
    times = [item["time"] for item in (await get(api, "/logs", key, limit=500))[1]["items"]]
    assert times == sorted(times, reverse=True)


async def test_one_log_and_access_rules(api: Api) -> None:
    key = await seed(api, 3)
    other = await api.service("other")
    _, body = await get(api, "/logs", key, limit=1)
    log_id = body["items"][0]["id"]
    status, log = await get(api, f"/logs/{log_id}", key)
    assert status == 200 and log["service"] == "shop" and log["source_ip"] == "10.0.0.2"
    assert (await get(api, f"/logs/{log_id}", other))[0] == 404
    assert (await get(api, f"/logs/{log_id}"))[0] == 200  # admin
    assert (await get(api, "/logs", other))[1]["items"] == []
    assert (await get(api, "/logs", other, service="shop"))[0] == 403
    assert (await get(api, "/logs", None, service="nope"))[0] == 404
    assert (await api.client.get("/logs")).status == 401
    assert (await get(api, "/logs/abc", key))[0] == 404


# "²" made int() raise (500); other Unicode digits were read as the log with that number.
NOT_IDS = ["%C2%B2", "%D9%A1", "%EF%BC%91", "%E0%A5%A7", "+1", "%201", "1%20", "0x1", "1_0", "9" * 19]


async def test_only_ascii_digits_are_log_ids(api: Api) -> None:
    key = await seed(api, 3)
    ids = [row[0] for row in await api.rows("SELECT id FROM request_logs ORDER BY id")]
    assert 1 in ids  # "%D9%A1" (Arabic-Indic one) and "%EF%BC%91" (fullwidth one) would have read log 1
    for text in NOT_IDS:
        for who in (key, None):
            status, body = await get(api, f"/logs/{text}", who)
            assert (status, body) == (404, {"error": "no such log"}), (text, who)
        for method in ("GET", "POST"):
            suffix = "/replays" if method == "GET" else "/replay"
            resp = await api.client.request(method, f"/logs/{text}{suffix}", headers=api.admin)
            assert resp.status == 404, (text, method, await resp.text())
    assert (await get(api, f"/logs/{ids[0]}", key))[0] == 200


BAD_QUERIES = [{"limit": 0}, {"limit": 501}, {"status": "6xx"}, {"min_latency_ms": "x"}, {"cursor": "!!"},
               {"cursor": encode_cursor(BASE, 10**20)}, {"from": "yesterday"}, {"bogus": 1}]


async def test_bad_query_parameters_are_422(api: Api) -> None:
    key = await seed(api, 1)
    for params in BAD_QUERIES:
        status, body = await get(api, "/logs", key, **params)
        assert status == 422 and body["details"], params


async def test_analytics_from_raw_logs(api: Api) -> None:
    key = await seed(api, 30)
    status, body = await get(api, "/analytics", key, bucket="1m", **{
        "from": (BASE - timedelta(minutes=1)).isoformat(), "to": (BASE + timedelta(minutes=5)).isoformat()})
    assert status == 200, body
    assert body["source"] == "raw" and body["total_requests"] == 30 and body["errors"] == 3
    assert body["error_rate"] == pytest.approx(0.1)
    assert body["unique_client_ips"] == 3
    assert body["latency_ms"]["min"] == 0 and body["latency_ms"]["max"] == 29
    assert body["latency_ms"]["avg"] == pytest.approx(14.5) and body["latency_ms"]["p50"] == pytest.approx(14.5)
    assert body["methods"] == {"GET": 15, "POST": 15}
    assert body["status_codes"] == {"200": 27, "500": 3}
    assert body["routes"] == [{"route": "/users/{id}", "requests": 30, "avg_latency_ms": 14.5,
                               "p95_latency_ms": pytest.approx(27.55), "errors": 3}]
    assert sorted(ip["ip"] for ip in body["top_client_ips"]) == ["10.0.0.0", "10.0.0.1", "10.0.0.2"]
    assert sum(b["requests"] for b in body["series"]) == 30 and len(body["series"]) == 1


async def test_rollup_matches_raw_logs_and_serves_long_ranges(api: Api) -> None:
    key = await seed(api, 30)
    late = record(5, timestamp=(BASE + timedelta(minutes=3)).isoformat(), latency_ms=100.0)
    assert (await api.client.post("/logs", json=late, headers={"X-API-Key": key})).status == 202
    await api.writer.flush()
    assert await rollup.update(api.pool) == 31
    assert await rollup.update(api.pool) == 0  # idempotent: nothing new
    rows = await api.rows("SELECT bucket, method, count, error_count, min_latency_ms, max_latency_ms"
                          " FROM request_rollup_1m ORDER BY bucket, method")
    assert rows == [(BASE, "GET", 15, 0, 1.0, 29.0), (BASE, "POST", 15, 3, 0.0, 28.0),
                    (BASE + timedelta(minutes=3), "GET", 1, 0, 100.0, 100.0)]
    status, body = await get(api, "/analytics", key, bucket="1h", **{
        "from": (BASE - timedelta(days=1)).isoformat(), "to": (BASE + timedelta(hours=1)).isoformat()})
    assert status == 200 and body["source"] == "rollup"
    assert body["total_requests"] == 31 and body["errors"] == 3
    assert body["methods"] == {"POST": 15, "GET": 16}
    assert body["latency_ms"]["min"] == 0 and body["latency_ms"]["max"] == 100
    assert body["status_codes"] == {"200": 28, "500": 3} and body["unique_client_ips"] == 3


BAD_ANALYTICS = [{"bucket": "1s"}, {"bucket": "soon"}, {"bucket": "99999999999999d"},
                 {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
                 {"from": "2000-01-01T00:00:00Z", "bucket": "1m"}]


async def test_bad_analytics_parameters_are_422(api: Api) -> None:
    for params in BAD_ANALYTICS:
        status, body = await get(api, "/analytics", None, **params)
        assert status == 422 and body["details"], params


async def test_background_job_keeps_the_rollup_current(api: Api) -> None:
    await seed(api, 10)
    for _ in range(100):
        rows = await api.rows("SELECT sum(count) FROM request_rollup_1m")
        if rows == [(10,)]:
            break
        await asyncio.sleep(0.05)
    assert rows == [(10,)]
