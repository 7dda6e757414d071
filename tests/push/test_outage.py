"""Database outage: ingest keeps accepting (the writer spools), reads say 503, nothing is lost."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from upwatch.db import open_pool
from upwatch.embedded import EmbeddedPostgres
from upwatch.migrate import migrate
from tests.push.conftest import start_api


@pytest.fixture
def own_server(server_dir: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(server_dir / "pg", settings={"fsync": "off"})
    server.start()
    yield server
    server.stop()


async def test_ingest_survives_a_database_outage(own_server: EmbeddedPostgres, tmp_path: Path) -> None:
    url = own_server.url
    await migrate(url)
    pool = await open_pool(url, max_size=4, name="outage")
    api, _ = await start_api(url, pool, tmp_path)
    try:
        key = await api.service("shop")
        headers = {"X-API-Key": key}
        assert (await api.client.post("/logs", json=[{"path": "/before"}] * 5, headers=headers)).status == 202
        await api.writer.flush()
        await asyncio.to_thread(own_server.stop)
        for _ in range(3):
            resp = await api.client.post("/logs", json=[{"path": "/during"}] * 5, headers=headers)
            assert resp.status == 202  # the key is cached, the writer spools
        resp = await api.client.get("/logs", headers=api.admin)
        assert resp.status == 503 and "database unavailable" in (await resp.json())["error"]
        await api.writer.flush()
        assert api.writer.stats.rows_spooled >= 15
        await asyncio.to_thread(own_server.start)
        for _ in range(100):
            await api.writer.flush()
            if api.writer.spool_bytes == 0 and api.writer.stats.database_ok:
                break
            await asyncio.sleep(0.1)
        counts = await api.rows("SELECT path, count(*) FROM request_logs GROUP BY path ORDER BY path")
        assert counts == [("/before", 5), ("/during", 15)]
        resp = await api.client.get("/logs", headers=api.admin, params={"limit": "1"})
        assert resp.status == 200
    finally:
        await api.client.close()
        await api.writer.stop()
        await pool.close()
