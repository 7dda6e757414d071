"""/healthz over real HTTP with a real writer on a real database: busy is healthy, no progress is not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from psycopg_pool import AsyncConnectionPool

from prober.app import State, build_app, serve
from prober.checks.http import new_session
from prober.metrics import Metrics
from prober.scheduler import Scheduler
from prober.writer import BatchWriter
from tests.prober import targets
from tests.prober.conftest import fetch, result_row
from upwatch import config as configuration
from upwatch.runtime import Runtime

STUCK_AFTER_S = 2.0  # short for a test, long enough that a stall of the shared machine is not "stuck"


@asynccontextmanager
async def prober_listener(pool: AsyncConnectionPool, database_url: str, tmp_path: Path,
                          writer: BatchWriter) -> AsyncIterator[Callable[[], Awaitable[tuple[int, Any]]]]:
    """The prober's listener (no extensions) with a running scheduler; yields a /healthz getter."""
    port = targets.closed_port()
    path = tmp_path / "upwatch.yaml"
    path.write_text(f"push: {{listen: '127.0.0.1:{port}'}}\n")
    runtime = Runtime(configuration.load(path), path, database_url, pool)
    session = new_session()
    scheduler = Scheduler(session, writer, location="lab", prober="p1")
    scheduler.start()
    await writer.start()
    runner = await serve(build_app(runtime, State(scheduler, writer, Metrics("lab")), extensions=[]),
                         "127.0.0.1", port)
    async with aiohttp.ClientSession() as client:

        async def healthz() -> tuple[int, Any]:
            async with client.get(f"http://127.0.0.1:{port}/healthz") as resp:
                return resp.status, await resp.json()

        try:
            yield healthz
        finally:
            await runner.cleanup()
            scheduler.shutdown()
            await session.close()


async def test_a_writer_busy_with_steady_inflow_is_healthy(pool: AsyncConnectionPool, database_url: str,
                                                          endpoint_ids: list[int], tmp_path: Path) -> None:
    # Small batches and a backlog kept topped up: the writer's flush loop never finds the queue empty.
    writer = BatchWriter(pool, tmp_path / "spool", batch_rows=5, flush_interval_s=0.02, stuck_after_s=STUCK_AFTER_S)
    offered = 0
    async with prober_listener(pool, database_url, tmp_path, writer) as healthz:
        answers: list[tuple[int, Any]] = []
        started = time.monotonic()
        while time.monotonic() - started < 3 * STUCK_AFTER_S or len(answers) < 10:
            if writer.queue_rows < 200:
                assert writer.offer("probe_results", [result_row(endpoint_ids[0], offered + i) for i in range(50)])
                offered += 50
            answers.append(await healthz())
            await asyncio.sleep(0.01)
        await writer.stop()
    assert writer.stats.rows_written == offered > 200
    assert all(status == 200 and body["writer_stuck"] is False for status, body in answers), answers
    assert any(body["queue_rows"] > 0 for _, body in answers)  # it was busy while it answered
    assert fetch(database_url, "SELECT count(*) FROM probe_results") == [(offered,)]


async def test_a_writer_whose_database_hangs_is_reported_stuck(pool: AsyncConnectionPool, database_url: str,
                                                              endpoint_ids: list[int], tmp_path: Path) -> None:
    writer = BatchWriter(pool, tmp_path / "spool", flush_interval_s=0.02, stuck_after_s=STUCK_AFTER_S)
    lock = await psycopg.AsyncConnection.connect(database_url)
    async with prober_listener(pool, database_url, tmp_path, writer) as healthz:

        async def answer(status: int) -> tuple[int, Any]:
            for _ in range(200):  # bounded: about 10 s
                got = await healthz()
                if got[0] == status:
                    return got
                await asyncio.sleep(0.05)
            raise AssertionError(f"/healthz never answered {status}: {got}")

        assert (await answer(200))[1]["writer_stuck"] is False
        try:
            await lock.execute("LOCK TABLE probe_results IN ACCESS EXCLUSIVE MODE")  # the writer's COPY blocks
            assert writer.offer("probe_results", [result_row(endpoint_ids[0], 0)])
            _, body = await answer(503)
            assert body["writer_stuck"] is True and body["status"] == "unhealthy"
        finally:
            await lock.rollback()
            await lock.close()
        assert (await answer(200))[1]["writer_stuck"] is False  # progress again: healthy again
        await writer.stop()
    assert fetch(database_url, "SELECT count(*) FROM probe_results") == [(1,)]
