"""Leader election for singleton services (upwatch.leadership) over the real database: one active
copy at a time, a standby takes over when the leader's process is killed or its session ends, and
the leader stops its work when it cannot confirm its session."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from tests.prober.conftest import fetch
from upwatch import leadership

REPO = Path(__file__).parents[2]

WORKER = textwrap.dedent("""
    import asyncio, signal, sys
    import psycopg
    from upwatch import leadership

    async def main(url: str, me: str) -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

        async def work(stepped_down: asyncio.Event) -> None:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                while not stepped_down.is_set():
                    await conn.execute("INSERT INTO beats (who) VALUES (%s)", (me,))
                    await asyncio.sleep(0.1)

        await leadership.lead(url, "test-singleton", stop, work)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
""")


async def wait_until(url: str, query: str, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if fetch(url, query)[0][0]:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {limit_s:.0f}s: {query}")


@pytest.fixture
def beats(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE beats (who text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())")
    return database_url


@pytest.mark.timeout(120)
async def test_a_standby_takes_over_when_the_active_copy_is_killed(beats: str, tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = {}
    for me in ("a", "b"):
        procs[me] = await asyncio.create_subprocess_exec(sys.executable, str(script), beats, me, env=env,
                                                         stderr=asyncio.subprocess.PIPE)
    try:
        await wait_until(beats, "SELECT count(*) > 5 FROM beats")
        await asyncio.sleep(1.5)  # both are up: one leads, one stands by
        ((first,),) = fetch(beats, "SELECT DISTINCT who FROM beats")
        procs[first].send_signal(signal.SIGKILL)
        await procs[first].wait()
        second = "b" if first == "a" else "a"
        await wait_until(beats, f"SELECT count(*) > 5 FROM beats WHERE who = '{second}'")
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.communicate(), 30)
    # never both: every beat of the first comes before every beat of the second
    ((last_first, first_second),) = fetch(beats, f"SELECT (SELECT max(at) FROM beats WHERE who = '{first}'),"
                                                 f" (SELECT min(at) FROM beats WHERE who = '{second}')")
    assert last_first < first_second
    assert procs[second].returncode == 0


async def test_one_leads_and_the_other_takes_over_when_its_session_ends(beats: str) -> None:
    active: list[str] = []
    overlaps: list[list[str]] = []
    started: asyncio.Queue[str] = asyncio.Queue()

    def worker(me: str) -> leadership.Work:
        async def work(stepped_down: asyncio.Event) -> None:
            active.append(me)
            started.put_nowait(me)
            if len(active) > 1:
                overlaps.append(list(active))
            try:
                await stepped_down.wait()
            finally:
                active.remove(me)
        return work

    stop = asyncio.Event()
    tasks = [asyncio.create_task(leadership.lead(beats, "test-in-process", stop, worker(me))) for me in ("a", "b")]
    try:
        leader = await asyncio.wait_for(started.get(), 30)
        # End the leader's session from outside, as a server restart or a network cut would.
        fetch(beats, "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                     " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
        assert await asyncio.wait_for(started.get(), 30) != leader
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert overlaps == [] and active == []


def test_lock_keys_are_stable_and_distinct() -> None:
    assert leadership.lock_key("alerter") == leadership.lock_key("alerter")
    assert leadership.lock_key("alerter") != leadership.lock_key("detector")
    assert -(2**63) <= leadership.lock_key("detector") < 2**63
