"""The database goes away under a running alerter and comes back: it keeps running, says what is
wrong, and delivers what happened afterwards."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest
from alerting_support import SmtpServer, add_endpoint, add_results, alerting, wait_for
from psycopg_pool import AsyncConnectionPool

from alerter import service
from upwatch.config import Config
from upwatch.embedded import EmbeddedPostgres
from upwatch.migrate import migrate
from upwatch.runtime import Runtime


@pytest.mark.timeout(60)
async def test_alerter_survives_a_database_outage(smtp: SmtpServer, caplog: pytest.LogCaptureFixture,
                                                  server_dir: Path) -> None:
    data = server_dir
    server = EmbeddedPostgres(data / "pg", settings={"fsync": "off"})
    url = server.start()
    pool: AsyncConnectionPool | None = None
    try:
        await migrate(url)
        pool = AsyncConnectionPool(url, min_size=1, max_size=3, timeout=1.0, open=False,
                                   configure=lambda conn: conn.set_autocommit(True))
        await pool.open(wait=True)
        api = await add_endpoint(pool, "api")
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(Runtime(Config(alerting=alerting(smtp.port)), Path("x"), url, pool),
                                               stop))
        with caplog.at_level(logging.INFO):
            # Evaluation starts once this copy holds the leadership (upwatch.leadership).
            await wait_for(lambda: "this process is the active alerter" in caplog.text, timeout_s=20)
            server.stop()
            # Said either by the evaluation or by the leadership losing its session, whichever notices first.
            await wait_for(lambda: "alerter evaluation failed" in caplog.text or
                           "stepping down, the session cannot be confirmed name=alerter" in caplog.text, timeout_s=10)
            assert server.start() == url
            await wait_for(lambda: _insert_failures(pool, api), timeout_s=20, step_s=0.2)
            await wait_for(lambda: smtp.messages, timeout_s=20)
        assert not task.done()
        stop.set()
        await asyncio.wait_for(task, timeout=5)
        assert smtp.mailbox.subjects() == ["[upwatch] DOWN api: timeout after 10 s"]
    finally:
        if pool is not None:
            await pool.close()
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


async def _insert_failures(pool: AsyncConnectionPool, endpoint_id: int) -> bool:
    """The database may still be coming back; retry until the prober's rows are in."""
    import psycopg
    from psycopg_pool import PoolTimeout

    try:
        await add_results(pool, endpoint_id, "fff")
    except (psycopg.OperationalError, PoolTimeout):
        return False
    return True
