"""Push API fixtures: the real app on 127.0.0.1 with a real BatchWriter on a fresh database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiohttp.test_utils import TestClient, TestServer
from psycopg_pool import AsyncConnectionPool

from prober.writer import BatchWriter
from push import create_app, keys
from upwatch import config
from upwatch.catalog import sync_endpoints
from upwatch.embedded import EmbeddedPostgres
from upwatch.runtime import Runtime

ADMIN_TOKEN = "admin-secret-for-tests"
CONFIG = """
endpoints:
  - name: nightly-backup
    kind: push
    period: 1h
    grace: 5m
  - name: guarded-job
    kind: push
    period: 1h
    auth:
      bearer: job-token
  - name: web
    url: http://127.0.0.1:9/
push:
  rate_limit_per_key: {rate}
  max_body_bytes: 65536
  max_batch_records: 100
  max_stored_body_bytes: 64
  sensitive_headers: [X-Session]
storage:
  database_url: {url}
"""


@dataclass
class Api:
    """A running push API and what a test needs to talk to it and check the database."""

    client: TestClient
    pool: AsyncConnectionPool
    writer: BatchWriter
    runtime: Runtime

    admin: ClassVar[dict[str, str]] = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def service(self, name: str = "shop", **fields: Any) -> str:
        """Create a service and return a raw key for it."""
        async with self.pool.connection() as conn:
            await keys.create_service(conn, name, **fields)
            raw, _ = await keys.create_key(conn, name, "test")
        return raw

    async def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """Flush the writer, then run a query."""
        await self.writer.flush()
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, params or None)
            return await cur.fetchall()


def make_config(database_url: str, rate: float = 1000.0) -> config.Config:
    return config.parse(CONFIG.format(url=database_url, rate=rate), "test.yaml", {})


async def start_api(database_url: str, pool: AsyncConnectionPool, tmp_path: Path, *, rate: float = 1000.0,
                    queue_size: int = 50_000) -> tuple[Api, TestServer]:
    cfg = make_config(database_url, rate)
    async with pool.connection() as conn:
        await sync_endpoints(conn, cfg.endpoints)
    runtime = Runtime(cfg, tmp_path / "test.yaml", database_url, pool)
    writer = BatchWriter(pool, tmp_path / "spool", flush_interval_s=0.05, queue_size=queue_size)
    await writer.start()
    app = create_app(runtime, writer, admin_token=ADMIN_TOKEN, background_every_s=0.2, rollup_every_s=0.2)
    server = TestServer(app, host="127.0.0.1")
    client = TestClient(server)
    await client.start_server()
    return Api(client, pool, writer, runtime), server


@pytest.fixture
async def api(database_url: str, pool: AsyncConnectionPool, tmp_path: Path) -> AsyncIterator[Api]:
    running, _ = await start_api(database_url, pool, tmp_path)
    yield running
    await running.client.close()
    await running.writer.stop()


@pytest.fixture
def own_server(server_dir: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server of the test's own, to stop and start. In server_dir, not tmp_path: as root the
    server runs as its own user, which cannot enter pytest's 0700 tmp."""
    server = EmbeddedPostgres(server_dir / "pg", settings={"fsync": "off"})
    server.start()
    yield server
    server.stop()
