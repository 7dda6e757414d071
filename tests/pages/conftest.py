"""Status page fixtures: seeded probe_results rolled up by the real rollup SQL, and the pages extension on a
real listener on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from psycopg_pool import AsyncConnectionPool

from prober import pages
from prober.rollups import RANGE
from upwatch import config
from upwatch.catalog import sync_endpoints
from upwatch.runtime import Runtime

TOKEN = "private-page-token-0123456789"
ADMIN = "operator-admin-token-0123456789"  # the admin token the `admin` client's listener has
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
CONFIG = """
endpoints:
  - {{name: api, url: "http://127.0.0.1:9/", tags: [core]}}
  - name: web
    url: "http://127.0.0.1:9/"
    tags: [core]
    degraded: ["[RESPONSE_TIME] > 800", "[CERTIFICATE_EXPIRATION] < 72h"]
  - {{name: secret-db, kind: tcp, host: 127.0.0.1, port: 9}}
status_pages:
  - slug: public
    title: "Example <b>status</b>"
    description: "We watch <script>alert(1)</script> for you"
    groups:
      - {{name: Core, tags: [core]}}
  - slug: internal
    title: Internal
    public: false
    token: {token}
    alert_incidents: false
    endpoints: [secret-db, api]
storage:
  database_url: {url}
"""


def seed(url: str, name: str, *, days: int, every: dt.timedelta, now: dt.datetime, fail_every: int = 7,
         seed_value: int = 1) -> int:
    """Results for endpoint `name` from `days` ago until now at jittered times, some failed, some skipped."""
    rng = random.Random(seed_value)
    rows = []
    t = now - dt.timedelta(days=days)
    k = 0
    while t < now:
        k += 1
        skipped = k % 23 == 0
        ok = not skipped and k % fail_every != 0
        rows.append((t, uuid.uuid4(), "here" if k % 2 else "there", ok, 100.0 + rng.random() * 50 if ok else None,
                     "skipped" if skipped else (None if ok else "http"), None if ok else "HTTP 503"))
        t += every + dt.timedelta(seconds=rng.randint(-30, 30))
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT id FROM endpoints WHERE name = %s", (name,)).fetchone()
        assert row is not None
        columns = "time, endpoint_id, id, location, ok, latency_ms, error_kind, error"
        with conn.cursor().copy(f"COPY probe_results ({columns})"
                                " FROM STDIN") as copy:
            for r in rows:
                copy.write_row((r[0], row[0], *r[1:]))
    return len(rows)


def roll_up(url: str, now: dt.datetime) -> None:
    """What the running services do: the prober's per-minute rollup (up to a minute ago), then the hourly
    and daily refreshes."""
    until = now.replace(second=0, microsecond=0) - dt.timedelta(minutes=1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(RANGE, (dt.datetime(2000, 1, 1, tzinfo=dt.UTC), until, ["here", "there"]))
        conn.execute("SELECT refresh_hourly_rollups()")
        conn.execute("SELECT refresh_daily_rollups()")


def make_config(url: str) -> config.Config:
    return config.parse(CONFIG.format(url=url, token=TOKEN), "test.yaml", {})


@pytest.fixture
async def runtime(database_url: str, pool: AsyncConnectionPool, tmp_path: Path) -> Runtime:
    cfg = make_config(database_url)
    async with pool.connection() as conn:
        await sync_endpoints(conn, cfg.endpoints)
    return Runtime(cfg, tmp_path / "test.yaml", database_url, pool)


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[TestClient]:
    """The pages extension on a listener of its own (as prober.app.build_app mounts it)."""
    app = web.Application()
    pages.setup(app, runtime, None)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c


@pytest.fixture
async def admin(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TestClient]:
    """The pages extension on a listener whose environment has an admin token (ADMIN), so incidents can be posted."""
    monkeypatch.setenv(pages.ADMIN_TOKEN_ENV, ADMIN)
    app = web.Application()
    pages.setup(app, runtime, None)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c
