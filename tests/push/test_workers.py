"""Ingest workers (push.workers): processes sharing one port, each storing what it acknowledges."""

from __future__ import annotations

import gc
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from prober.writer import BatchWriter
from push import keys, workers
from push.app import GC_THRESHOLD
from tests.push.conftest import ADMIN_TOKEN, make_config
from upwatch.runtime import Runtime


def reusable_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def two_workers(database_url: str, pool: AsyncConnectionPool,
                      tmp_path: Path) -> AsyncIterator[tuple[int, list[BatchWriter]]]:
    """Two workers on one port, each with its own writer and spool (in one process here: the kernel
    spreads connections over sockets, not processes)."""
    runtime = Runtime(make_config(database_url), tmp_path / "test.yaml", database_url, pool)
    port = reusable_port()
    writers = [BatchWriter(pool, tmp_path / f"spool-{n}", flush_interval_s=0.05) for n in range(2)]
    runners: list[web.AppRunner] = []
    for writer in writers:
        await writer.start()
        runners.append(await workers.serve(runtime, writer, "127.0.0.1", port, admin_token=ADMIN_TOKEN))
    yield port, writers
    for runner in runners:
        await runner.cleanup()
    for writer in writers:
        await writer.stop()


async def test_two_workers_on_one_port_both_store_what_they_acknowledge(
        two_workers: tuple[int, list[BatchWriter]], pool: AsyncConnectionPool) -> None:
    port, writers = two_workers
    async with pool.connection() as conn:
        await keys.create_service(conn, "shop")
        key, _ = await keys.create_key(conn, "shop", "test")
    accepted = 0
    # A new connection per request: the kernel picks a socket per connection (2 ** -23 that all 24 land on one).
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        for n in range(24):
            async with session.post(f"http://127.0.0.1:{port}/api/v1/logs", json=[{"path": f"/{n}"}, {"path": "/x"}],
                                    headers={"Authorization": f"Bearer {key}"}) as resp:
                assert resp.status == 202, await resp.text()
                accepted += (await resp.json())["accepted"]
    # durable_ack: each 202 followed its worker's own commit, so the rows are there without a flush.
    async with pool.connection() as conn:
        stored = await (await conn.execute("SELECT count(*) FROM request_logs")).fetchone()
    assert stored == (accepted,) == (48,)
    assert all(w.stats.rows_written > 0 for w in writers), [w.stats.rows_written for w in writers]


async def test_a_worker_cannot_share_a_port_bound_without_reuse_port(
        database_url: str, pool: AsyncConnectionPool, tmp_path: Path) -> None:
    runtime = Runtime(make_config(database_url), tmp_path / "test.yaml", database_url, pool)
    writer = BatchWriter(pool, tmp_path / "spool")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match=r"[Aa]ddress already in use"):
            await workers.serve(runtime, writer, "127.0.0.1", taken.getsockname()[1])


async def test_a_running_push_app_collects_garbage_less_often_and_restores_it(
        database_url: str, pool: AsyncConnectionPool, tmp_path: Path) -> None:
    before = gc.get_threshold()
    runtime = Runtime(make_config(database_url), tmp_path / "test.yaml", database_url, pool)
    writer = BatchWriter(pool, tmp_path / "spool")
    await writer.start()
    runner = await workers.serve(runtime, writer, "127.0.0.1", reusable_port())
    try:
        assert gc.get_threshold()[0] >= GC_THRESHOLD[0]
    finally:
        await runner.cleanup()
        await writer.stop()
    assert gc.get_threshold() == before
