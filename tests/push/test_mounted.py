"""The push API as a listener mounts it (a sub-app at /api/v1, push.workers.serve): POST /logs and
every other path answered over real HTTP with the JSON answers of json_errors, as create_app alone
answers them in the other tests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from prober.writer import BatchWriter
from push import keys, workers
from tests.push.conftest import ADMIN_TOKEN, make_config
from upwatch.db import open_pool
from upwatch.embedded import EmbeddedPostgres
from upwatch.migrate import migrate
from upwatch.runtime import Runtime

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def mounted(url: str, pool: AsyncConnectionPool, tmp_path: Path) -> tuple[str, web.AppRunner, BatchWriter]:
    """The push API mounted as the ingest workers mount it (push.workers.serve): (base URL, runner, writer)."""
    runtime = Runtime(make_config(url), tmp_path / "test.yaml", url, pool)
    writer = BatchWriter(pool, tmp_path / "spool", flush_interval_s=0.05)
    await writer.start()
    port = free_port()
    runner = await workers.serve(runtime, writer, "127.0.0.1", port, admin_token=ADMIN_TOKEN)
    return f"http://127.0.0.1:{port}/api/v1", runner, writer


@pytest.fixture
async def base(database_url: str, pool: AsyncConnectionPool, tmp_path: Path) -> AsyncIterator[str]:
    url, runner, writer = await mounted(database_url, pool, tmp_path)
    yield url
    await runner.cleanup()
    await writer.stop()


async def key_for(pool: AsyncConnectionPool, service: str = "shop") -> str:
    async with pool.connection() as conn:
        await keys.create_service(conn, service)
        raw, _ = await keys.create_key(conn, service, "test")
    return raw


async def test_a_pushed_record_is_answered_202_and_stored(base: str, pool: AsyncConnectionPool) -> None:
    key = await key_for(pool)
    async with aiohttp.ClientSession() as session, session.post(
            f"{base}/logs", json={"path": "/one"}, headers={"Authorization": f"Bearer {key}"}) as resp:
        assert (resp.status, await resp.read()) == (202, b'{"accepted":1}')
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    async with pool.connection() as conn:  # durable_ack: committed before the 202
        assert await (await conn.execute("SELECT path FROM request_logs")).fetchall() == [("/one",)]


ANSWERS = [
    # (method, path, admin?, body, status, JSON answer or None to check the status and headers only)
    ("POST", "/logs", False, b'{"path": "/x"}', 401, {"error": "missing or invalid credentials"}),
    ("PUT", "/logs", False, None, 405, {"error": "Method Not Allowed"}),
    ("GET", "/logs", True, None, 200, None),
    ("GET", "/nope", False, None, 404, {"error": "Not Found"}),
    ("GET", "/services/%00", True, None, 404, {"error": "Not Found"}),
    ("GET", "/services/nope", True, None, 404, None),
    ("GET", "/openapi.json", False, None, 200, None),
    ("GET", "/docs", False, None, 200, None),
]


@pytest.mark.parametrize(("method", "path", "admin", "body", "status", "answer"), ANSWERS,
                         ids=[f"{m} {p}" for m, p, *_ in ANSWERS])
async def test_mounted_paths_get_the_json_answers(base: str, method: str, path: str, admin: bool,
                                                           body: bytes | None, status: int,
                                                           answer: dict[str, Any] | None) -> None:
    headers = {**(ADMIN if admin else {}), "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session, session.request(
            method, f"{base}{path}", data=body, headers=headers) as resp:
        assert resp.status == status, await resp.text()
        if answer is not None:
            assert await resp.json() == answer
        if status == 405:
            assert set(resp.headers["Allow"].split(",")) == {"GET", "HEAD", "POST", "DELETE"}
        if path == "/openapi.json":
            assert "post" in (await resp.json())["paths"]["/logs"]


async def test_invalid_json_is_refused_with_its_position(base: str, pool: AsyncConnectionPool) -> None:
    key = await key_for(pool)
    async with aiohttp.ClientSession() as session, session.post(
            f"{base}/logs", data=b'{"path": ', headers={"X-API-Key": key, "Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"].startswith("invalid JSON at line 1")


async def test_a_key_that_cannot_be_verified_while_the_database_is_away_is_a_503(
        own_server: EmbeddedPostgres, tmp_path: Path) -> None:
    await migrate(own_server.url)
    pool = await open_pool(own_server.url, max_size=4, name="mount-outage")
    base, runner, writer = await mounted(own_server.url, pool, tmp_path)
    try:
        key = await key_for(pool)
        await asyncio.to_thread(own_server.stop)
        async with aiohttp.ClientSession() as session, session.post(
                f"{base}/logs", json={"path": "/during"}, headers={"X-API-Key": key}) as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "5"
            assert await resp.json() == {"error": "database unavailable; retry later"}
    finally:
        await runner.cleanup()
        await writer.stop()
        await pool.close()
