"""Idempotency-Key on POST /logs over real HTTP: a repeat is answered like the first and stored once,
across a restart, across the spool path of a database outage, and while the first is still in flight."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg_pool import AsyncConnectionPool

from push import idempotency, records
from tests.push.conftest import Api, start_api
from upwatch.db import open_pool
from upwatch.embedded import EmbeddedPostgres
from upwatch.migrate import migrate
from upwatch.rows import PUSH_IDEMPOTENCY_KEYS, Batch

BATCH = [{"path": "/a", "timestamp": "2026-11-22T10:00:00Z"}, {"path": "/b"}]


def headers(key: str, idempotency_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Idempotency-Key": idempotency_key}


async def stored(api: Api) -> list[tuple[str, int]]:
    return await api.rows("SELECT path, count(*)::int FROM request_logs GROUP BY path ORDER BY path")


async def test_a_repeated_key_gets_the_same_answer_and_stores_nothing_twice(api: Api) -> None:
    shop, other = await api.service("shop"), await api.service("other")
    first = await api.client.post("/logs", json=BATCH, headers=headers(shop, "batch-1"))
    assert first.status == 202 and await first.json() == {"accepted": 2}
    assert "Idempotent-Replayed" not in first.headers
    again = await api.client.post("/logs", json=BATCH, headers=headers(shop, '"batch-1"'))  # quoted form
    assert again.status == 202 and await again.json() == {"accepted": 2}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await stored(api) == [("/a", 1), ("/b", 1)]
    # Another key, or the same key of another service, is another batch.
    assert (await api.client.post("/logs", json=BATCH, headers=headers(shop, "batch-2"))).status == 202
    assert (await api.client.post("/logs", json=BATCH, headers=headers(other, "batch-1"))).status == 202
    assert await stored(api) == [("/a", 3), ("/b", 3)]


async def test_a_key_reused_for_another_body_is_422_and_stores_nothing(api: Api) -> None:
    # draft-ietf-httpapi-idempotency-key-header: a key reused with a different payload is a client error,
    # not a repeat (a repeat's answer would claim records that were never sent).
    shop = await api.service("shop")
    assert (await api.client.post("/logs", json=BATCH, headers=headers(shop, "k"))).status == 202
    for body in ([{"path": "/c"}], None):
        resp = await api.client.post("/logs", json=body, headers=headers(shop, "k"))
        assert resp.status == 422, body
        error = await resp.json()
        assert error["details"][0]["field"] == "Idempotency-Key"
        assert "different request body" in error["error"]
    again = await api.client.post("/logs", json=BATCH, headers=headers(shop, "k"))
    assert again.status == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert await stored(api) == [("/a", 1), ("/b", 1)]


async def test_a_refused_batch_does_not_use_up_its_key(api: Api) -> None:
    shop = await api.service("shop")
    bad = await api.client.post("/logs", json=[{"status_code": 700}], headers=headers(shop, "k"))
    assert bad.status == 422
    good = await api.client.post("/logs", json=BATCH, headers=headers(shop, "k"))
    assert good.status == 202 and "Idempotent-Replayed" not in good.headers
    assert await stored(api) == [("/a", 1), ("/b", 1)]


async def test_an_invalid_key_is_422_naming_the_header(api: Api) -> None:
    shop = await api.service("shop")
    for value in ("", '""', "x" * 256, "caf\u00e9"):
        resp = await api.client.post("/logs", json=BATCH, headers={
            "Authorization": f"Bearer {shop}", "Idempotency-Key": value.encode().decode("latin-1")})
        assert resp.status == 422, value
        body = await resp.json()
        assert body["error"] == "invalid Idempotency-Key header"
        assert body["details"][0]["field"] == "Idempotency-Key"
    assert await stored(api) == []


async def test_keys_survive_a_restart(database_url: str, pool: AsyncConnectionPool, tmp_path: Path) -> None:
    first, _ = await start_api(database_url, pool, tmp_path / "first")
    shop = await first.service("shop")
    assert (await first.client.post("/logs", json=BATCH, headers=headers(shop, "k1"))).status == 202
    await first.client.close()
    await first.writer.stop()
    second, _ = await start_api(database_url, pool, tmp_path / "second")  # remembers nothing itself
    try:
        again = await second.client.post("/logs", json=BATCH, headers=headers(shop, "k1"))
        assert again.status == 202 and again.headers["Idempotent-Replayed"] == "true"
        assert await stored(second) == [("/a", 1), ("/b", 1)]
    finally:
        await second.client.close()
        await second.writer.stop()


async def test_a_retry_while_the_first_waits_for_its_commit_waits_for_its_answer(
        database_url: str, pool: AsyncConnectionPool, tmp_path: Path) -> None:
    api, _ = await start_api(database_url, pool, tmp_path)
    lock = await psycopg.AsyncConnection.connect(database_url)
    try:
        shop = await api.service("shop")
        await lock.execute("LOCK TABLE request_logs IN ACCESS EXCLUSIVE MODE")  # the first COPY waits
        first = asyncio.create_task(api.client.post("/logs", json=BATCH, headers=headers(shop, "k")))
        for _ in range(400):  # bounded: until the first batch is being written
            async with pool.connection() as conn:
                cur = await conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                         " AND query LIKE 'COPY%%request_logs%%'")
                if (await cur.fetchone())[0]:
                    break
            await asyncio.sleep(0.05)
        retry = asyncio.create_task(api.client.post("/logs", json=BATCH, headers=headers(shop, "k")))
        # Most likely the retry now waits for the first attempt's key; if it only arrives after the
        # first was answered it finds the key remembered. Either way: one answer, stored once.
        await asyncio.sleep(0.2)
        await lock.rollback()
        answers = [await first, await retry]
        assert [a.status for a in answers] == [202, 202]
        assert [await a.json() for a in answers] == [{"accepted": 2}, {"accepted": 2}]
        assert answers[1].headers["Idempotent-Replayed"] == "true"
        assert await stored(api) == [("/a", 1), ("/b", 1)]
    finally:
        await lock.close()
        await api.client.close()
        await api.writer.stop()


async def test_keys_go_through_the_spool_with_their_records(own_server: EmbeddedPostgres, tmp_path: Path) -> None:
    url = own_server.url
    await migrate(url)
    pool = await open_pool(url, max_size=4, name="idempotency-outage")
    api, _ = await start_api(url, pool, tmp_path / "first")
    try:
        shop = await api.service("shop")
        assert (await api.client.post("/logs", json=[{"path": "/warm"}], headers=headers(shop, "w"))).status == 202
        await asyncio.to_thread(own_server.stop)
        during = await api.client.post("/logs", json=BATCH, headers=headers(shop, "outage-1"))
        assert during.status == 202  # spooled: records and key in one append
        assert api.writer.stats.rows_spooled == 3
        again = await api.client.post("/logs", json=BATCH, headers=headers(shop, "outage-1"))
        assert again.status == 202 and again.headers["Idempotent-Replayed"] == "true"
    finally:
        await api.client.close()
        await api.writer.stop()  # the spool stays for the next start
    await asyncio.to_thread(own_server.start)
    second, _ = await start_api(url, pool, tmp_path / "first")  # the same spool: replayed on start
    try:
        for _ in range(100):  # bounded: until the spool is replayed
            await second.writer.flush()
            if second.writer.spool_bytes == 0 and second.writer.stats.rows_replayed:
                break
            await asyncio.sleep(0.1)
        retry = await second.client.post("/logs", json=BATCH, headers=headers(shop, "outage-1"))
        assert retry.status == 202 and retry.headers["Idempotent-Replayed"] == "true"
        assert await stored(second) == [("/a", 1), ("/b", 1), ("/warm", 1)]
    finally:
        await second.client.close()
        await second.writer.stop()
        await pool.close()


async def replayed(api: Api) -> None:
    for _ in range(100):  # bounded: until the spool this API's writer found is replayed
        await api.writer.flush()
        if api.writer.spool_bytes == 0 and api.writer.stats.rows_replayed:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the spool was not replayed")


async def test_a_batch_two_processes_spooled_under_one_key_is_stored_once(
        own_server: EmbeddedPostgres, tmp_path: Path) -> None:
    # While the database is down neither process can see the other's key, so both accept the batch and
    # spool it (each with ingest ids of its own); replayed, the second finds the key and skips its rows.
    url = own_server.url
    await migrate(url)
    pool = await open_pool(url, max_size=4, name="idempotency-two-spools")
    apis = [(await start_api(url, pool, tmp_path / name))[0] for name in ("a", "b")]
    try:
        shop = await apis[0].service("shop")
        for n, api in enumerate(apis):  # each verifies the key before the outage
            warm = await api.client.post("/logs", json=[{"path": f"/warm-{n}"}], headers=headers(shop, f"w{n}"))
            assert warm.status == 202
        await asyncio.to_thread(own_server.stop)
        for api in apis:
            answer = await api.client.post("/logs", json=BATCH, headers=headers(shop, "outage-1"))
            assert answer.status == 202 and "Idempotent-Replayed" not in answer.headers
        # Two more keyed batches at once on the first: spooled together, each with its own key.
        both = await asyncio.gather(*(apis[0].client.post("/logs", json=[{"path": f"/only-a-{n}"}],
                                                          headers=headers(shop, f"only-a-{n}")) for n in range(2)))
        assert [r.status for r in both] == [202, 202]
        assert [api.writer.stats.rows_spooled for api in apis] == [7, 3]
    finally:
        for api in apis:
            await api.client.close()
            await api.writer.stop()  # the spools stay for the next start
    await asyncio.to_thread(own_server.start)
    again = [(await start_api(url, pool, tmp_path / name))[0] for name in ("a", "b")]
    try:
        for api in again:
            await replayed(api)
        assert await stored(again[0]) == [("/a", 1), ("/b", 1), ("/only-a-0", 1), ("/only-a-1", 1),
                                          ("/warm-0", 1), ("/warm-1", 1)]
        keys = await again[0].rows("SELECT count(*)::int, sum(accepted)::int FROM push_idempotency_keys")
        assert keys == [(5, 6)]
    finally:
        for api in again:
            await api.client.close()
            await api.writer.stop()
        await pool.close()


def keyed(service_id: int, paths: list[str], key: str | None, body: str) -> Batch:
    valid, problems = records.validate([{"path": p} for p in paths], privacy_level=0,
                                       oldest=datetime.now(UTC) - timedelta(days=1))
    assert not problems
    batch = records.batch(valid, service_id=service_id, privacy_level=0, sensitive=records.sensitive_set([]),
                          max_body_bytes=4096, now=datetime.now(UTC))
    if key is not None:
        batch.companions = (Batch(PUSH_IDEMPOTENCY_KEYS.name, ("service_id", "key_hash", "accepted", "body_hash"),
                                  [(service_id, idempotency.key_hash(key), len(paths), body)]),)
    return batch


async def test_a_refused_batch_written_row_by_row_skips_batches_whose_key_is_stored(api: Api) -> None:
    # Keyed batches queued together are written as one; a key another process stored meanwhile makes
    # that COPY fail, and the row-by-row fallback then takes each batch with its own key.
    await api.service("shop")
    (service_id,), = await api.rows("SELECT id FROM services WHERE name = 'shop'")
    async with api.pool.connection() as conn:
        await conn.execute("INSERT INTO push_idempotency_keys (service_id, key_hash, accepted, body_hash)"
                           " VALUES (%s, %s, 2, 'body-1'), (%s, %s, 5, 'old-body')",
                           (service_id, idempotency.key_hash("k1"), service_id, idempotency.key_hash("k3")))
    offered = [keyed(service_id, ["/a1", "/a2"], "k1", "body-1"),  # stored before: skipped
               keyed(service_id, ["/b1"], "k2", "body-2"),  # new
               keyed(service_id, ["/c1", "/c2"], "k3", "body-3"),  # the key's other batch: stored, key taken over
               keyed(service_id, ["/d1"], None, "")]  # no key
    assert all([api.writer.offer_batch(b, external=True) for b in offered])  # in one go: taken together
    assert await stored(api) == [("/b1", 1), ("/c1", 1), ("/c2", 1), ("/d1", 1)]
    rows = await api.rows("SELECT key_hash, accepted, body_hash FROM push_idempotency_keys"
                          " ORDER BY accepted, body_hash")
    assert rows == [(idempotency.key_hash("k2"), 1, "body-2"), (idempotency.key_hash("k1"), 2, "body-1"),
                    (idempotency.key_hash("k3"), 2, "body-3")]
    assert api.writer.stats.rows_rejected == 0
