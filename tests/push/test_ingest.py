"""POST /logs over real HTTP into the database: formats, masking, privacy and every refusal."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from tests.prober.conftest import result_row
from tests.push.conftest import Api, start_api


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_single_record_is_stored_with_masked_headers_and_truncated_body(api: Api) -> None:
    key = await api.service("shop")
    record = {
        "timestamp": "2026-11-22T10:00:00Z", "method": "post", "url": "http://shop.test/users/7?x=1",
        "path": "/users/7", "route": "/users/{id}", "status_code": 201, "latency_ms": 12.5,
        "query_params": {"x": "1"},
        "request_headers": {"Authorization": "Bearer secret", "Cookie": "sid=1", "X-Session": "s",
                            "User-Agent": "curl/8", "Accept": "*/*"},
        "response_headers": {"Set-Cookie": "sid=2", "Content-Type": "application/json"},
        "request_body": "x" * 100, "response_body": {"id": 7}, "source_ip": "203.0.113.9",
        "user_id": 42, "tags": {"env": "prod"},
    }
    resp = await api.client.post("/logs", json=record, headers=auth(key))
    assert resp.status == 202 and await resp.json() == {"accepted": 1}
    (row,) = await api.rows(
        "SELECT method, route, status_code, latency_ms, request_headers, response_headers, request_body,"
        " response_body, host(source_ip), user_id, user_agent, tags, time FROM request_logs")
    method, route, status, latency, req_h, resp_h, req_body, resp_body, ip, user, agent, tags, time = row
    assert (method, route, status, latency) == ("POST", "/users/{id}", 201, 12.5)
    assert req_h == {"Authorization": "***", "Cookie": "***", "X-Session": "***", "User-Agent": "curl/8",
                     "Accept": "*/*"}
    assert resp_h == {"Set-Cookie": "***", "Content-Type": "application/json"}
    assert req_body == "x" * 64 and resp_body == '{"id":7}'
    assert (ip, user, agent, tags) == ("203.0.113.9", "42", "curl/8", {"env": "prod"})
    assert time == datetime(2026, 11, 22, 10, tzinfo=UTC)


async def test_array_and_ndjson_batches_are_accepted(api: Api) -> None:
    key = await api.service("shop")
    batch = [{"path": f"/a/{i}", "status_code": 200, "latency_ms": i} for i in range(50)]
    resp = await api.client.post("/logs", json=batch, headers={"X-API-Key": key})
    assert resp.status == 202 and await resp.json() == {"accepted": 50}
    lines = "\n".join(json.dumps({"path": f"/n/{i}"}) for i in range(3)) + "\n\n"
    resp = await api.client.post("/logs", data=lines, headers={**auth(key), "Content-Type": "application/x-ndjson"})
    assert resp.status == 202 and await resp.json() == {"accepted": 3}
    assert await api.rows("SELECT count(*) FROM request_logs") == [(53,)]


async def test_invalid_batch_is_422_with_every_problem_and_nothing_stored(api: Api) -> None:
    key = await api.service("shop")
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    batch = [{"path": "/ok"}, {"status_code": 700}, {"path": "/ok"}, {"latency_ms": -1, "method": 5},
             {"timestamp": future}, "not an object", {"status_code": "200"}, {"surprise": 1},
             {"timestamp": "2001-01-01T00:00:00Z"}]
    resp = await api.client.post("/logs", json=batch, headers=auth(key))
    assert resp.status == 422
    body = await resp.json()
    assert body["error"] == "7 of 9 records are invalid; nothing was stored"
    found = {(d["index"], d["field"]) for d in body["details"]}
    assert found == {(1, "status_code"), (3, "latency_ms"), (3, "method"), (4, "timestamp"), (5, "(record)"),
                     (6, "status_code"), (7, "surprise"), (8, "timestamp")}
    assert all(d["reason"] for d in body["details"])
    assert await api.rows("SELECT count(*) FROM request_logs") == [(0,)]


BAD_BODIES = [
    ('{"path": "/x",}', "application/json", 400, "invalid JSON at line 1 column 15 (char 14)"),
    ('{"a": NaN}', "application/json", 400, "invalid JSON at line 1: NaN is not valid JSON"),
    ('{"latency_ms": 1e999}', "application/json", 400, "1e999 is out of range for a number"),
    ('{"query_params": ' + "[" * 20000 + "]" * 20000 + "}", "application/json", 400, "nested too deeply"),
    ('{"query_params": ' + "[" * 40 + "]" * 40 + "}", "application/json", 422, "1 of 1 records are invalid"),
    ('{"path": "/x"}\n{oops}\n', "application/x-ndjson", 400, "invalid JSON at line 2 column 2"),
    (b"\xff\xfe", "application/json", 400, "body is not UTF-8"),
    ('{"path": "/x"}', "text/plain", 415, "Content-Type must be application/json or application/x-ndjson"),
    ("[]", "application/json", 422, "no records in the request"),
    ("[" + ",".join(['{"path":"/x"}'] * 101) + "]", "application/json", 413, "101 records in one request"),
    ('{"p": "' + "x" * 70000 + '"}', "application/json", 413, "request body exceeds 65536 bytes"),
]


async def test_bad_bodies_are_refused_with_a_clear_reason(api: Api) -> None:
    key = await api.service("shop")
    for data, ctype, status, message in BAD_BODIES:
        resp = await api.client.post("/logs", data=data, headers={**auth(key), "Content-Type": ctype})
        assert resp.status == status, message
        assert message in (await resp.json())["error"]
    assert await api.rows("SELECT count(*) FROM request_logs") == [(0,)]


async def test_missing_invalid_and_revoked_keys_get_the_same_401(api: Api) -> None:
    key = await api.service("shop")
    resp = await api.client.delete(f"/keys/{key[:12]}", headers=api.admin)
    assert resp.status == 200
    for headers in ({}, auth("uwk_wrong"), auth(key), {"X-API-Key": "nope"}, api.admin):
        resp = await api.client.post("/logs", json={"path": "/x"}, headers=headers)
        assert resp.status == 401
        assert await resp.json() == {"error": "missing or invalid credentials"}


PRIVACY = [(0, "198.51.100.4", 202, "198.51.100.4"), (0, "fe80::1%eth0", 202, "fe80::1"),
           (1, "198.51.100.4", 202, None), (1, "not-an-ip", 422, None), (2, "not-an-ip", 202, None)]


async def test_privacy_level_decides_what_happens_to_the_client_ip(api: Api) -> None:
    for n, (level, ip, status, stored) in enumerate(PRIVACY):
        key = await api.service(f"s{n}", privacy_level=level)
        resp = await api.client.post("/logs", json={"path": "/x", "source_ip": ip}, headers=auth(key))
        assert resp.status == status, (level, ip)
        if status == 202:
            rows = await api.rows("SELECT host(l.source_ip) FROM request_logs l JOIN services s"
                                  " ON s.id = l.service_id WHERE s.name = %s", f"s{n}")
            assert rows == [(stored,)], (level, ip)


async def test_nul_and_lone_surrogates_are_stored_safely(api: Api) -> None:
    key = await api.service("shop")
    raw = '{"path": "/a\\u0000b", "error": "bad \\ud800 char", "tags": {"k\\u0000": "v"}}'
    resp = await api.client.post("/logs", data=raw, headers={**auth(key), "Content-Type": "application/json"})
    assert resp.status == 202
    assert await api.rows("SELECT path, error, tags FROM request_logs") == [
        ("/a\ufffdb", "bad ? char", {"k\ufffd": "v"})]


async def test_rate_limit_answers_429_with_retry_after(database_url: str, pool: AsyncConnectionPool,
                                                       tmp_path: Path) -> None:
    api, _ = await start_api(database_url, pool, tmp_path, rate=2)
    try:
        key = await api.service("shop")
        statuses = [(await api.client.post("/logs", json={"path": "/x"}, headers=auth(key))) for _ in range(3)]
        assert [r.status for r in statuses] == [202, 202, 429]
        assert statuses[2].headers["Retry-After"] == "1"
        other = await api.service("other")
        assert (await api.client.post("/logs", json={"path": "/x"}, headers=auth(other))).status == 202
    finally:
        await api.client.close()
        await api.writer.stop()


async def test_stopping_writer_answers_503_and_stores_nothing(database_url: str, pool: AsyncConnectionPool,
                                                              tmp_path: Path) -> None:
    api, _ = await start_api(database_url, pool, tmp_path, queue_size=400)
    try:
        key = await api.service("shop")
        resp = await api.client.post("/logs", json=[{"path": "/x"}] * 60, headers=auth(key))
        assert resp.status == 202
        await api.writer.stop()  # a stopping writer refuses everything, like a full one
        resp = await api.client.post("/logs", json=[{"path": "/y"}] * 60, headers=auth(key))
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        assert await resp.json() == {"error": "write queue is full; retry later"}
        async with pool.connection() as conn:
            assert await (await conn.execute("SELECT count(*) FROM request_logs")).fetchall() == [(60,)]
    finally:
        await api.client.close()


async def until(condition: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    for _ in range(400):  # bounded: about 20 s
        met = condition()
        if await met if inspect.isawaitable(met) else met:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_push_overload_is_refused_unread_and_probe_results_still_fit(
        database_url: str, pool: AsyncConnectionPool, tmp_path: Path) -> None:
    # A session holds a lock on request_logs, so the writer's COPY of pushed rows hangs and push load
    # piles up in the queue: push may fill only half of it (200 of 400), the rest is the prober's.
    api, _ = await start_api(database_url, pool, tmp_path, queue_size=400)
    lock = await psycopg.AsyncConnection.connect(database_url)
    pending: list[asyncio.Task[Any]] = []
    try:
        key = await api.service("shop")
        endpoint_id = (await api.rows("SELECT id FROM endpoints WHERE name = 'web'"))[0][0]
        await lock.execute("LOCK TABLE request_logs IN ACCESS EXCLUSIVE MODE")
        batch = [{"path": "/p"}] * 100

        async def post() -> tuple[int, Any]:
            resp = await api.client.post("/logs", json=batch, headers=auth(key))
            return resp.status, await resp.json()

        async def copy_waits() -> bool:
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                         " AND query LIKE 'COPY%%request_logs%%'")
                return (await cur.fetchone())[0] == 1

        pending.append(asyncio.create_task(post()))
        await until(copy_waits, "the writer's COPY to wait for the lock")
        for queued in (100, 200):  # durable pushes wait for their commit; their rows wait in the queue
            pending.append(asyncio.create_task(post()))

            async def queued_rows(n: int = queued) -> bool:
                return api.writer.queue_rows == n

            await until(queued_rows, f"{queued} queued rows")
        status, body = await asyncio.wait_for(post(), 10)  # bounded: an accepted push would wait for the lock
        assert (status, body) == (503, {"error": "write queue is full; retry later"})
        malformed = await api.client.post("/logs", data="{not json", headers={
            **auth(key), "Content-Type": "application/json"})
        assert malformed.status == 503 and malformed.headers["Retry-After"] == "1"  # refused before parsing
        assert (await malformed.json())["error"] == "write queue is full; retry later"
        assert api.writer.stats.requests_refused_unread == 2
        # The prober's own results still find room, while push is refused.
        assert api.writer.offer("probe_results", [result_row(endpoint_id, i) for i in range(150)])
        assert (await asyncio.wait_for(post(), 10))[0] == 503
        metrics = api.writer.stats
        assert metrics.rows_refused == metrics.external_rows_refused == 0  # refused before offering
    finally:
        await lock.rollback()
        await lock.close()
        statuses = [await task for task in pending]
    assert [s for s, _ in statuses] == [202, 202, 202]
    assert await api.rows("SELECT count(*) FROM request_logs") == [(300,)]
    assert await api.rows("SELECT count(*) FROM probe_results") == [(150,)]
    await api.client.close()
    await api.writer.stop()


async def test_room_is_held_while_a_body_is_read_so_what_is_read_fits(database_url: str, pool: AsyncConnectionPool,
                                                                     tmp_path: Path) -> None:
    # Push's share is 200 rows and a batch may hold 100: two requests being read hold all of it.
    api, _ = await start_api(database_url, pool, tmp_path, queue_size=400)
    try:
        key = await api.service("shop")
        go = asyncio.Event()

        async def slow_body() -> Any:
            yield b"["
            await go.wait()
            yield ",".join(['{"path": "/slow"}'] * 100).encode() + b"]"

        slow = [asyncio.create_task(api.client.post("/logs", data=slow_body(), headers={
            **auth(key), "Content-Type": "application/json"})) for _ in range(2)]
        await until(lambda: api.writer.reserved_rows == 200, "both requests to hold their room")
        refused = await asyncio.wait_for(api.client.post("/logs", json=[{"path": "/x"}], headers=auth(key)), 10)
        assert refused.status == 503 and api.writer.stats.requests_refused_unread == 1
        go.set()
        assert [(await task).status for task in slow] == [202, 202]
        assert api.writer.reserved_rows == 0 and api.writer.stats.external_rows_refused == 0
        assert (await api.client.post("/logs", json=[{"path": "/x"}], headers=auth(key))).status == 202
        assert await api.rows("SELECT path, count(*) FROM request_logs GROUP BY path ORDER BY path") == [
            ("/slow", 200), ("/x", 1)]
    finally:
        await api.client.close()
        await api.writer.stop()
