"""Database outage: ingest keeps accepting (the writer spools, keys are answered from the
verified-key cache), reads say 503, nothing is lost, and revocations apply once it is back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg

from push import keys
from push.context import CONTEXT
from tests.push.conftest import Api, start_api
from upwatch.db import open_pool
from upwatch.embedded import EmbeddedPostgres
from upwatch.migrate import migrate


async def drained(api: Api) -> None:
    """Wait (bounded) until the writer has backfilled its spool into the database."""
    for _ in range(200):
        await api.writer.flush()
        if api.writer.spool_bytes == 0 and api.writer.stats.database_ok:
            return
        await asyncio.sleep(0.1)


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
        await drained(api)
        counts = await api.rows("SELECT path, count(*) FROM request_logs GROUP BY path ORDER BY path")
        assert counts == [("/before", 5), ("/during", 15)]
        resp = await api.client.get("/logs", headers=api.admin, params={"limit": "1"})
        assert resp.status == 200
    finally:
        await api.client.close()
        await api.writer.stop()
        await pool.close()


async def test_push_answers_202_past_the_key_cache_ttl_and_revocations_apply_once_the_database_is_back(
        own_server: EmbeddedPostgres, tmp_path: Path) -> None:
    url = own_server.url
    await migrate(url)
    pool = await open_pool(url, max_size=4, name="outage-keys")
    api, server = await start_api(url, pool, tmp_path)
    store = server.app[CONTEXT].keys
    store.ttl_s = 1.0  # the production default is 5 s; only how long this test waits depends on it
    try:
        key = await api.service("shop")
        async with pool.connection() as conn:
            unseen, _ = await keys.create_key(conn, "shop", "never used before the outage")
        headers = {"X-API-Key": key}
        assert (await api.client.post("/logs", json={"path": "/before"}, headers=headers)).status == 202
        await api.writer.flush()
        await asyncio.to_thread(own_server.stop)
        await asyncio.sleep(store.ttl_s + 0.5)  # every cached answer is now older than the TTL
        for _ in range(3):
            resp = await api.client.post("/logs", json=[{"path": "/during"}] * 5, headers=headers)
            assert resp.status == 202, await resp.text()
        assert store.database_down
        resp = await api.client.post("/logs", json={"path": "/unseen"}, headers={"X-API-Key": unseen})
        assert resp.status == 503 and "database unavailable" in (await resp.json())["error"]
        wrong = key[:-1] + ("A" if key[-1] != "A" else "B")  # the cached hash still refuses a wrong secret
        assert (await api.client.post("/logs", json={"path": "/x"}, headers={"X-API-Key": wrong})).status == 401
        await api.writer.flush()
        assert api.writer.stats.rows_spooled >= 15

        await asyncio.to_thread(own_server.start)
        await drained(api)
        counts = await api.rows("SELECT path, count(*) FROM request_logs GROUP BY path ORDER BY path")
        assert counts == [("/before", 1), ("/during", 15)]
        # Revoked from another process, as `upwatch key revoke` does: this prober's cache is not told.
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await keys.revoke_key(conn, key[:keys.PREFIX_LEN])
        bound_s = store.ttl_s + keys.DB_TIMEOUT_S + store.retry_s  # documented in docs/push.md
        for _ in range(int(bound_s / 0.25) + 20):
            resp = await api.client.post("/logs", json={"path": "/after"}, headers=headers)
            if resp.status != 202:
                break
            await asyncio.sleep(0.25)
        assert resp.status == 401
        for _ in range(40):  # the outage ends once the prober's own pool answers again
            resp = await api.client.post("/logs", json={"path": "/unseen"}, headers={"X-API-Key": unseen})
            if resp.status == 202:
                break
            await asyncio.sleep(0.25)
        assert resp.status == 202 and not store.database_down
    finally:
        await api.client.close()
        await api.writer.stop()
        await pool.close()
