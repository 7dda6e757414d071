"""Lease-based sharding (prober.shard: auto) over the real database: shares are disjoint and cover
every slot, a joining prober gets work, a hung or cut-off prober is fenced by the generation, a
prober without the database keeps its slots, and a clean stop gives them back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool

from prober.leases import Leases
from prober.scheduler import stable_hash
from tests.prober import targets
from tests.prober.conftest import fetch
from upwatch import config as configuration
from upwatch.config import ConfigError
from upwatch.config.prober import Prober
from upwatch.db import new_pool, open_pool

SLOTS = 16
TTL_S = 2.0  # the shortest the config allows: these tests wait for leases to run out


def leases(pool: AsyncConnectionPool, name: str, location: str = "here") -> Leases:
    return Leases(pool, location=location, instance=name, slots=SLOTS, ttl_s=TTL_S, slot_of=stable_hash)


def assert_disjoint(*probers: Leases) -> None:
    seen: dict[int, str] = {}
    for p in probers:
        for slot in p.held:
            assert slot not in seen, f"slot {slot} held by {seen[slot]} and {p.holder}"
            seen[slot] = p.holder


async def test_probers_split_the_slots_and_a_joining_one_gets_its_share(pool: AsyncConnectionPool) -> None:
    a, b, c = leases(pool, "a"), leases(pool, "b"), leases(pool, "c")
    await a.renew()
    assert len(a.held) == SLOTS  # alone: everything
    await b.renew()
    assert not b.held  # everything is held and valid: nothing to claim yet
    await c.renew()
    for _ in range(2):  # a gives back what it holds above its share, the others claim it
        for p in (a, b, c):
            await p.renew()
            assert_disjoint(a, b, c)
    # nobody above its share ceil(16 / 3) = 6, everybody with work, every slot held
    assert max(len(p.held) for p in (a, b, c)) == 6 and min(len(p.held) for p in (a, b, c)) > 0
    assert set(a.held) | set(b.held) | set(c.held) == set(range(SLOTS))
    stored = fetch(pool.conninfo, "SELECT count(DISTINCT holder) FROM prober_slots WHERE location = 'here'")
    assert stored == [(3,)]


async def test_locations_lease_their_own_slots(pool: AsyncConnectionPool) -> None:
    here, there = leases(pool, "a", "here"), leases(pool, "b", "there")
    await here.renew()
    await there.renew()
    assert len(here.held) == len(there.held) == SLOTS


async def test_a_hung_prober_is_taken_over_and_fenced_when_it_comes_back(pool: AsyncConnectionPool) -> None:
    a, b = leases(pool, "a"), leases(pool, "b")
    await a.renew()
    name = next(n for n in (f"ep{i}" for i in range(100)) if a.slot(n) in a.held)
    assert a.owns(name)
    await asyncio.sleep(TTL_S + 0.3)  # a "hangs": no renewal for longer than its lease
    assert not a.owns(name)  # by its own clock its lease ran out: it stops probing before anyone takes over
    await b.renew()
    assert len(b.held) == SLOTS and b.owns(name)  # a's membership ran out too: b's share is everything
    await a.renew()  # a comes back: its generations are gone, so it holds nothing
    assert not a.held and not a.owns(name)
    assert_disjoint(a, b)
    await b.renew()
    await a.renew()
    await b.renew()
    assert_disjoint(a, b)
    assert sorted([len(a.held), len(b.held)]) == [SLOTS // 2, SLOTS // 2]


async def test_without_the_database_a_prober_keeps_probing_what_it_holds(pool: AsyncConnectionPool) -> None:
    a = leases(pool, "a")
    await a.renew()
    held = dict(a.held)
    dead = new_pool(f"postgresql://upwatch@127.0.0.1:{targets.closed_port()}/upwatch", max_size=1, name="dead")
    await dead.open(wait=False)
    try:
        a.pool = dead
        await asyncio.sleep(TTL_S + 0.3)
        await a.renew()
    finally:
        await dead.close()
    assert not a.reachable and a.held == held
    assert all(a.owns(n) for n in (f"ep{i}" for i in range(50)))  # nobody can take a slot over either


async def test_a_clean_stop_gives_the_slots_back(pool: AsyncConnectionPool) -> None:
    a, b = leases(pool, "a"), leases(pool, "b")
    await a.renew()
    await b.renew()
    await a.release()
    await b.renew()
    assert len(b.held) == SLOTS and not a.held
    assert fetch(pool.conninfo, "SELECT count(*) FROM prober_members") == [(1,)]


@pytest.fixture
async def two_pools(database_url: str) -> AsyncIterator[tuple[AsyncConnectionPool, AsyncConnectionPool]]:
    p1 = await open_pool(database_url, max_size=2, name="lease-1")
    p2 = await open_pool(database_url, max_size=2, name="lease-2")
    yield p1, p2
    await p1.close()
    await p2.close()


async def test_concurrent_claims_never_share_a_slot(two_pools: tuple[AsyncConnectionPool, ...]) -> None:
    probers = [leases(two_pools[i % 2], f"p{i}") for i in range(6)]
    deadline = time.monotonic() + 30
    for _ in range(4):
        await asyncio.gather(*(p.renew() for p in probers))
        assert_disjoint(*probers)
    while time.monotonic() < deadline and set().union(*(p.held for p in probers)) != set(range(SLOTS)):
        await asyncio.gather(*(p.renew() for p in probers))
        assert_disjoint(*probers)
    assert set().union(*(p.held for p in probers)) == set(range(SLOTS))
    assert max(len(p.held) for p in probers) <= -(-SLOTS // 6)


@pytest.mark.parametrize(("setting", "message"), [
    ("shard: potato", "upwatch.yaml:3: prober.shard: 'potato' must be i/n with 1 <= i <= n, e.g. 2/3, or auto"),
    ("lease_ttl: 1s", "upwatch.yaml:3: prober.lease_ttl: must be at least 2s"),
    ("lease_slots: 0", "upwatch.yaml:3: prober.lease_slots:"),
])
def test_lease_settings_are_checked_with_file_and_line(tmp_path: Path, setting: str, message: str) -> None:
    path = tmp_path / "upwatch.yaml"
    path.write_text(f"endpoints: []\nprober:\n  {setting}\n")
    with pytest.raises(ConfigError) as caught:
        configuration.load(path, environ={})
    assert message in str(caught.value).replace(f"{tmp_path}/", "")


def test_shard_auto_is_accepted() -> None:
    loaded = Prober.model_validate({"shard": "auto", "lease_ttl": "6s", "lease_slots": 128})
    assert (loaded.shard, loaded.lease_ttl.total_seconds(), loaded.lease_slots) == ("auto", 6.0, 128)
