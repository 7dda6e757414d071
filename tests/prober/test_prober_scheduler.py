import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from prober.checks import http
from prober.scheduler import PHASE_STEP_MS, Scheduler, Shard, phase_s, step_of
from prober.writer import BatchWriter
from tests.prober import targets
from tests.prober.conftest import fetch
from upwatch.catalog import sync_endpoints
from upwatch.config.endpoints import Endpoint


def endpoint(name: str, url: str | None, **fields: Any) -> Endpoint:
    own = {"url": url} if url is not None else {}  # a push endpoint has no url
    return Endpoint.model_validate({"name": name, **own, "interval": "1s", "timeout": "2s", **fields})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    s = http.new_session()
    yield s
    await s.close()


@pytest.fixture
async def writer(pool: AsyncConnectionPool, tmp_path: Path) -> AsyncIterator[BatchWriter]:
    w = BatchWriter(pool, tmp_path / "spool", flush_interval_s=0.05)
    await w.start()
    yield w
    await w.stop()


async def start(scheduler: Scheduler, pool: AsyncConnectionPool, endpoints: list[Endpoint]) -> None:
    async with pool.connection() as conn:
        report = await sync_endpoints(conn, endpoints)
    scheduler.apply(endpoints, report.ids)
    scheduler.start()


def test_phases_are_deterministic_and_spread() -> None:
    endpoints = [endpoint(f"ep{i}", "http://x.test/", interval="15s") for i in range(5000)]
    phases = [phase_s(e) for e in endpoints]
    assert phases == [phase_s(e) for e in endpoints]
    per_second = [0] * 15
    for p in phases:
        assert 0 <= p < 15
        per_second[int(p)] += 1
    assert max(per_second) < 5000 / 15 * 1.25  # no second carries much more than its share


def test_shards_split_endpoints_exactly_once() -> None:
    names = [f"ep{i}" for i in range(3000)]
    shards = [Shard.parse(f"{i}/3") for i in (1, 2, 3)]
    owners = [[s.owns(n) for s in shards].count(True) for n in names]
    assert owners == [1] * 3000
    assert all(800 < sum(s.owns(n) for n in names) < 1200 for s in shards)
    with pytest.raises(ValueError, match="must be i/n"):
        Shard.parse("4/3")


async def test_checks_run_on_schedule_and_are_stored(session: aiohttp.ClientSession, writer: BatchWriter,
                                                    pool: AsyncConnectionPool, database_url: str) -> None:
    runs: list[str] = []
    async with targets.serve(targets.app()) as base:
        scheduler = Scheduler(session, writer, location="test-loc", prober="p1")
        scheduler.observers.append(lambda e, r, late: runs.append(e.name))
        endpoints = [endpoint("a", f"{base}/ok"), endpoint("b", f"{base}/status/503")]
        await start(scheduler, pool, endpoints)
        for _ in range(200):  # bounded (10 s): until each endpoint has run twice, about 2 s at 1 s intervals
            if min(runs.count("a"), runs.count("b")) >= 2:
                break
            await asyncio.sleep(0.05)
        scheduler.shutdown()
    await writer.flush()
    rows = fetch(database_url, "SELECT e.name, r.ok, r.status_code, r.location, r.prober, r.time FROM probe_results r"
                               " JOIN endpoints e ON e.id = r.endpoint_id ORDER BY r.time")
    assert {r[0] for r in rows} == {"a", "b"} and len(rows) >= 4
    assert all((r[1], r[2]) == ((True, 200) if r[0] == "a" else (False, 503)) for r in rows)
    assert all(r[3:5] == ("test-loc", "p1") for r in rows)
    # At most one run per interval: each starts in its own slot of the endpoint's schedule (a slow
    # machine may leave a slot out, but never runs one twice).
    phases = {e.name: phase_s(e) for e in endpoints}
    slots = [(r[0], math.floor(r[5].timestamp() - phases[r[0]])) for r in rows]
    assert len(set(slots)) == len(slots), slots


async def test_run_still_going_when_next_is_due_is_recorded_as_skipped(
        session: aiohttp.ClientSession, writer: BatchWriter, pool: AsyncConnectionPool, database_url: str) -> None:
    async with targets.serve(targets.app()) as base:
        scheduler = Scheduler(session, writer, location="l", prober="p")
        await start(scheduler, pool, [endpoint("stuck", f"{base}/hang", timeout="1500ms")])
        for _ in range(200):  # bounded (10 s): the second run comes due while the first still waits
            if scheduler.skipped:
                break
            await asyncio.sleep(0.05)
        scheduler.shutdown()
    await writer.flush()
    kinds = [r[0] for r in fetch(database_url, "SELECT error_kind FROM probe_results ORDER BY time")]
    assert "skipped" in kinds and scheduler.skipped >= 1


async def test_run_due_while_the_loop_was_stalled_past_an_interval_is_recorded_as_missed(
        session: aiohttp.ClientSession, writer: BatchWriter, pool: AsyncConnectionPool, database_url: str) -> None:
    async with targets.serve(targets.app()) as base:
        scheduler = Scheduler(session, writer, location="l", prober="p")
        await start(scheduler, pool, [endpoint("a", f"{base}/ok")])
        await asyncio.sleep(1.1)
        time.sleep(2.5)  # noqa: ASYNC251 - the whole process stalls (the loop is blocked) for more than the 1 s interval
        await asyncio.sleep(1.1)
        scheduler.shutdown()
    await writer.flush()
    rows = fetch(database_url, "SELECT error_kind, error FROM probe_results ORDER BY time")
    # 2.5 s of stall hold 2-3 run times; all but the latest are over one interval late: each is a row
    missed = [r for r in rows if r == ("skipped", "run missed")]
    # (on a loaded machine a run may also find its previous check still going: skipped, but not missed)
    assert len(missed) >= 1 and len([r for r in rows if r[0] == "skipped"]) == scheduler.skipped
    assert [r for r in rows if r[0] is None]  # and checks go on after it


async def test_per_host_cap_limits_concurrent_checks(session: aiohttp.ClientSession, writer: BatchWriter,
                                                     pool: AsyncConnectionPool) -> None:
    application = targets.app()
    async with targets.serve(application) as base:
        scheduler = Scheduler(session, writer, location="l", prober="p", per_host_concurrency=2)
        await start(scheduler, pool, [endpoint(f"s{i}", f"{base}/slow") for i in range(6)])
        deadline = time.monotonic() + 3
        while application[targets.STATS].get("peak", 0) < 2 and time.monotonic() < deadline:  # noqa: ASYNC110 - polls a counter
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        scheduler.shutdown()
    assert application[targets.STATS]["peak"] == 2


async def test_apply_adds_changes_and_removes_jobs(session: aiohttp.ClientSession, writer: BatchWriter) -> None:
    scheduler = Scheduler(session, writer, location="l", prober="p")
    first = [endpoint("a", "http://a.test/"), endpoint("b", "http://b.test/"), endpoint("push", None, kind="push",
                                                                                        period="1m")]
    assert scheduler.apply(first, {"a": 1, "b": 2, "push": 3}) == (["a", "b"], [], [])
    second = [endpoint("a", "http://a.test/", interval="5s"), endpoint("c", "http://c.test/"),
              endpoint("b", "http://b.test/", enabled=False)]
    assert scheduler.apply(second, {"a": 1, "c": 4}) == (["c"], ["a"], ["b"])
    assert scheduler.intervals() == {"a": 5.0, "c": 1.0}


async def test_endpoints_that_start_together_share_one_job(session: aiohttp.ClientSession,
                                                           writer: BatchWriter) -> None:
    scheduler = Scheduler(session, writer, location="l", prober="p")
    many = [endpoint(f"ep{i}", "http://x.test/", interval="15s") for i in range(1000)]
    scheduler.apply(many, {e.name: i for i, e in enumerate(many)})
    steps = {step_of(e) for e in many}
    assert scheduler.job_count == len(steps) <= 15_000 // PHASE_STEP_MS  # 60 steps in 15 s, not a job per endpoint
    assert all(phase % PHASE_STEP_MS == 0 for _, phase in steps)
    assert len(scheduler.intervals()) == 1000
    scheduler.apply(many[:1], {"ep0": 0})
    assert (scheduler.job_count, scheduler.intervals()) == (1, {"ep0": 15.0})
    scheduler.apply([], {})
    assert scheduler.job_count == 0


async def test_missed_runs_are_a_row_per_endpoint_and_one_log_line_per_step(
        session: aiohttp.ClientSession, writer: BatchWriter, pool: AsyncConnectionPool, database_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    by_step: dict[tuple[int, int], list[str]] = {}
    for i in range(60):
        by_step.setdefault(step_of(endpoint(f"ep{i}", "http://x.test/")), []).append(f"ep{i}")
    names = max(by_step.values(), key=len)[:4]  # endpoints that start in the same step
    assert len(names) >= 3
    async with targets.serve(targets.app()) as base:
        scheduler = Scheduler(session, writer, location="l", prober="p")
        await start(scheduler, pool, [endpoint(n, f"{base}/ok") for n in names])
        await asyncio.sleep(1.1)
        with caplog.at_level(logging.WARNING):
            time.sleep(2.5)  # noqa: ASYNC251 - the whole process stalls for more than the 1 s interval
            await asyncio.sleep(1.1)
        scheduler.shutdown()
    await writer.flush()
    rows = fetch(database_url, "SELECT e.name, r.time FROM probe_results r JOIN endpoints e ON e.id = r.endpoint_id"
                               " WHERE r.error = 'run missed'")
    due = {r[1] for r in rows}
    assert sorted(r[0] for r in rows) == sorted(names * len(due)) and len(rows) >= len(names)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "run missed" in r.getMessage()]
    assert lines == [f"probe skipped endpoints={len(names)} first={names[0]} reason='run missed'"] * len(due)
    assert not [r for r in caplog.records if r.name.startswith("apscheduler.executors")]  # not twice


async def test_a_run_still_going_when_a_reload_removes_its_endpoint_is_stored_and_not_observed(
        session: aiohttp.ClientSession, writer: BatchWriter, pool: AsyncConnectionPool, database_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text="late")

    application = web.Application()
    application.router.add_get("/held", held)
    observed: list[str] = []
    async with targets.serve(application) as base:
        scheduler = Scheduler(session, writer, location="l", prober="p")
        scheduler.observers.append(lambda e, r, late: observed.append(e.name))
        gone = endpoint("gone", f"{base}/held", interval="15s", timeout="10s")
        await start(scheduler, pool, [gone])
        await asyncio.wait_for(arrived.wait(), 20)  # its first run is waiting for the answer
        scheduler.shutdown()
        with caplog.at_level(logging.INFO):
            assert scheduler.apply([], {}) == ([], [], ["gone"])  # the reload that removed it
            release.set()
            await scheduler.drain(10)
    await writer.flush()
    rows = fetch(database_url, "SELECT e.name, r.ok, r.status_code FROM probe_results r"
                               " JOIN endpoints e ON e.id = r.endpoint_id")
    assert rows == [("gone", True, 200)]  # measured before the reload: stored under the id it ran with
    assert observed == []  # and no metric series of a removed endpoint comes back
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
