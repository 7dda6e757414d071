"""Durable acknowledgements in groups (push.context.Commits): concurrent requests share a commit, and
each is still answered only after its own rows are committed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from push import records
from push.context import Commits
from tests.push.conftest import Api


async def test_concurrent_durable_requests_share_commits_and_each_202_follows_its_own(api: Api) -> None:
    key = await api.service("shop")
    committed: list[int] = []
    api.writer.hooks["request_logs"].append(lambda batch: committed.append(len(batch.rows)))

    async def post(n: int) -> int:
        resp = await api.client.post("/logs", json={"path": f"/r/{n}"}, headers={"Authorization": f"Bearer {key}"})
        assert resp.status == 202, await resp.text()
        async with api.pool.connection() as conn:  # no flush: the 202 itself says the row is committed
            cur = await conn.execute("SELECT count(*) FROM request_logs WHERE path = %s", (f"/r/{n}",))
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    found = await asyncio.gather(*(post(n) for n in range(24)))
    assert found == [1] * 24
    assert sum(committed) == 24 and len(committed) <= 4, committed


@pytest.mark.parametrize("window_s", [0.002, 0.0], ids=["window", "no-window"])
async def test_a_cancelled_waiter_does_not_cancel_the_commit_of_its_group(api: Api, window_s: float) -> None:
    commits = Commits(api.writer, window_s)
    valid, _ = records.validate([{"path": "/kept"}], privacy_level=0, oldest=datetime(2000, 1, 1, tzinfo=UTC))
    batch = records.batch(valid, service_id=await _service_id(api), privacy_level=0,
                          sensitive=records.sensitive_set([]), max_body_bytes=64, now=datetime.now(UTC))
    assert api.writer.offer_batch(batch, external=True)
    cancelled, waiting = asyncio.create_task(commits.durable()), asyncio.create_task(commits.durable())
    await asyncio.sleep(0)
    cancelled.cancel()
    await waiting
    async with api.pool.connection() as conn:  # no flush: `waiting` returned, so the row is committed
        cur = await conn.execute("SELECT path FROM request_logs")
        assert await cur.fetchall() == [("/kept",)]
    assert cancelled.cancelled()


async def _service_id(api: Api) -> int:
    await api.service("shop")
    async with api.pool.connection() as conn:
        row = await (await conn.execute("SELECT id FROM services WHERE name = 'shop'")).fetchone()
    assert row is not None
    return int(row[0])
