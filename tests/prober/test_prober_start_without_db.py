"""A prober restarted while the database is down: it probes the endpoints of its snapshot, spools
the results, and once the database is back migrates it, syncs the endpoints and stores everything
under the right endpoint ids."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from prober import service
from prober.snapshot import SNAPSHOT_NAME
from tests.prober import targets
from tests.prober.conftest import fetch
from tests.prober.test_prober_service import wait_for
from upwatch import config as configuration
from upwatch.embedded import EmbeddedPostgres
from upwatch.migrate import migrate
from upwatch.runtime import serve


def write_config(path: Path, base: str, port: int, names: list[str]) -> None:
    endpoints = "".join(f"  - {{name: {n}, url: '{base}/{'status/500' if n == 'b' else 'ok'}', interval: 1s}}\n"
                        for n in names)
    path.write_text(f"endpoints:\n{endpoints}"
                    f"prober: {{data_dir: '{path.parent / 'data'}', flush_interval: 100ms,"
                    f" config_poll_interval: 100ms}}\n"
                    f"push: {{listen: '127.0.0.1:{port}'}}\n")


async def health(client: aiohttp.ClientSession, port: int) -> dict[str, Any]:
    try:
        async with client.get(f"http://127.0.0.1:{port}/healthz") as resp:
            return dict(await resp.json())
    except aiohttp.ClientConnectionError:
        return {}


async def test_prober_starts_during_an_outage_and_stores_results_when_the_database_returns(
        own_pg: EmbeddedPostgres, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    url = own_pg.url
    await migrate(url)
    port = targets.closed_port()
    path = tmp_path / "upwatch.yaml"
    async with targets.serve(targets.app()) as base, aiohttp.ClientSession() as client:
        # A first run with the database up leaves the snapshot of endpoint ids.
        write_config(path, base, port, ["a", "b"])
        stop = asyncio.Event()
        first = asyncio.create_task(serve(configuration.load(path), path, url, {"prober": service.run}, stop))
        await wait_for(lambda: fetch(url, "SELECT count(DISTINCT endpoint_id) FROM probe_results") == [(2,)],
                       timeout_s=15)
        stop.set()
        await asyncio.wait_for(first, 10)
        ids = dict(fetch(url, "SELECT name, id FROM endpoints"))
        snapshot = tmp_path / "data" / SNAPSHOT_NAME
        assert json.loads(snapshot.read_text())["ids"] == ids
        assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600

        # An upgrade brings a migration, and the database goes down before the restart.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE request_client_ips_1h, request_status_1h")
            conn.execute("DELETE FROM schema_migrations WHERE version = 60")
        stored_before = fetch(url, "SELECT count(*) FROM probe_results")[0][0]
        await asyncio.to_thread(own_pg.stop)
        write_config(path, base, port, ["a", "b", "c"])  # c is new: no id until the database is back

        stop = asyncio.Event()
        second = asyncio.create_task(serve(configuration.load(path), path, url, {"prober": service.run}, stop))
        await wait_for(lambda: _spooled(health(client, port)), timeout_s=20)
        state = await health(client, port)
        assert state["status"] == "ok" and state["database_ok"] is False and state["endpoints"] == 2
        assert "database unavailable at start, probing the endpoints of the snapshot known=2 configured=3" \
            in caplog.text

        # A reload during the outage: b removed, d added (no id yet either), a goes on.
        write_config(path, base, port, ["a", "c", "d"])
        await wait_for(lambda: "config reload applied without the database" in caplog.text)
        assert (await health(client, port))["endpoints"] == 1

        await asyncio.to_thread(own_pg.start)
        await wait_for(lambda: _names_stored(url) == {"a", "b", "c", "d"}, timeout_s=30)
        await wait_for(lambda: _drained(health(client, port)), timeout_s=10)
        stop.set()
        await asyncio.wait_for(second, 10)

    by_id = dict(fetch(url, "SELECT id, name FROM endpoints"))
    assert {n: i for i, n in by_id.items() if n in ids} == ids  # a and b kept their ids
    rows = fetch(url, "SELECT e.name, count(*) FROM probe_results r JOIN endpoints e ON e.id = r.endpoint_id"
                      " GROUP BY e.name ORDER BY e.name")
    assert [r[0] for r in rows] == ["a", "b", "c", "d"]
    assert fetch(url, "SELECT name FROM endpoints WHERE NOT enabled") == [("b",)]
    assert sum(r[1] for r in rows) > stored_before
    outage = fetch(url, "SELECT count(*) FROM probe_results WHERE endpoint_id = ANY(%s) AND time < ("
                        "SELECT min(time) FROM probe_results WHERE endpoint_id = %s)",
                   list(ids.values()), next(i for i, n in by_id.items() if n == "c"))
    assert outage[0][0] > stored_before  # results of the outage were spooled and stored
    assert fetch(url, "SELECT version FROM schema_migrations WHERE version = 60") == [(60,)]
    assert fetch(url, "SELECT to_regclass('request_status_1h') IS NOT NULL") == [(True,)]


async def _spooled(state: Any) -> bool:
    found = await state
    return bool(found) and found["spool_bytes"] > 0 and found["endpoints"] == 2


async def _drained(state: Any) -> bool:
    found = await state
    return bool(found) and found["spool_bytes"] == 0 and found["database_ok"] is True


def _names_stored(url: str) -> set[str]:
    try:
        return {r[0] for r in fetch(url, "SELECT DISTINCT e.name FROM probe_results r JOIN endpoints e"
                                         " ON e.id = r.endpoint_id")}
    except psycopg.Error:  # the database is still starting
        return set()
