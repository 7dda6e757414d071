"""The live detector against a real PostgreSQL: train, score past the watermark, write anomalies and incidents."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from detector import artifacts
from detector.models import isolation_forest
from detector.service import LiveDetector
from detector.status import render, status
from upwatch.config.detector import Detector

SERIES = "endpoint:api:latency"


async def _add_checks(pool: AsyncConnectionPool, endpoint_id: int, times: list[datetime], latency: list[float]) -> None:
    query = "COPY probe_results (time, endpoint_id, id, ok, latency_ms) FROM STDIN"
    async with pool.connection() as conn, conn.cursor() as cur, cur.copy(query) as copy:
        for at, ms in zip(times, latency, strict=True):
            await copy.write_row((at, endpoint_id, uuid.uuid4(), True, ms))


async def _new_endpoint(pool: AsyncConnectionPool, name: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("INSERT INTO endpoints (name, kind, target) VALUES (%s, 'http', %s) RETURNING id",
                                 (name, f"http://127.0.0.1/{name}"))
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
async def endpoint(pool: AsyncConnectionPool) -> int:
    return await _new_endpoint(pool, "api")


async def _trained(pool: AsyncConnectionPool, endpoint: int, settings: Detector,
                   seed: int) -> tuple[LiveDetector, ThreadPoolExecutor, datetime, list[datetime]]:
    """A detector after its first full pass over 700 checks (3 h at 15 s) of `endpoint`, models trained."""
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    history = [now - timedelta(hours=3) + timedelta(seconds=15 * i) for i in range(700)]
    await _add_checks(pool, endpoint, history, list(100 * np.exp(rng.normal(0, 0.08, len(history)))))
    executor = ThreadPoolExecutor(max_workers=1)
    live = LiveDetector(pool, settings, executor)
    await live.tick(now)
    await live.drain()
    return live, executor, now, history


@pytest.fixture
def settings(tmp_path: Path) -> Detector:
    return Detector(min_training_rows=500, min_training_span="1h", model_dir=tmp_path / "models")


async def _anomalies(pool: AsyncConnectionPool) -> list[tuple]:  # type: ignore[type-arg]
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT time, score, severity, reason, incident_id, model_version, features"
                                 " FROM anomalies WHERE series = %s ORDER BY time", (SERIES,))
        return await cur.fetchall()


@pytest.mark.timeout(60)
async def test_live_detector_trains_scores_and_survives_a_restart(
    pool: AsyncConnectionPool, endpoint: int, settings: Detector
) -> None:
    rng = np.random.default_rng(0)
    now = datetime.now(UTC).replace(microsecond=0)
    history = [now - timedelta(hours=3) + timedelta(seconds=15 * i) for i in range(700)]
    await _add_checks(pool, endpoint, history, list(100 * np.exp(rng.normal(0, 0.08, len(history)))))
    executor = ThreadPoolExecutor(max_workers=1)
    live = LiveDetector(pool, settings, executor)

    assert await live.tick(now) == 0  # the first pass only learns where the series ends
    await live.drain()
    assert live.states[SERIES].artifact is not None

    fresh = [history[-1] + timedelta(seconds=15 * (i + 1)) for i in range(12)]
    await _add_checks(pool, endpoint, fresh, [100.0] * 4 + [900.0] * 8)
    written = await live.tick(now + timedelta(minutes=4))
    rows = await _anomalies(pool)
    assert written == len(rows) >= 3
    assert {r[0] for r in rows} <= set(fresh[4:])
    assert all(0.5 <= r[1] <= 1 and r[2] in {"medium", "high", "critical"} for r in rows)
    assert all(r[3].startswith(("latency 900 ms, usually ", "latency level ")) and "usually" in r[3] for r in rows)
    assert len({r[4] for r in rows}) == 1 and rows[0][5] == 1 and "robust_z_persist" in rows[0][6]
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT started_at, ended_at, peak_score, points, severity FROM incidents WHERE series = %s", (SERIES,))
        incidents = await cur.fetchall()
        cur = await conn.execute(
            "SELECT watermark, status, version, rows FROM detector_models WHERE series = %s", (SERIES,))
        model = await cur.fetchone()
    assert len(incidents) == 1
    start, end, peak, points, _ = incidents[0]
    assert (start, end, points) == (rows[0][0], rows[-1][0], len(rows)) and peak == max(r[1] for r in rows)
    assert model is not None and model[0] == fresh[-1] and model[1] == "ready" and model[2] == 1 and model[3] >= 500

    # A restart loads the model file and the watermark: nothing is scored twice.
    again = LiveDetector(pool, settings, executor)
    assert await again.tick(now + timedelta(minutes=5)) == 0
    assert len(await _anomalies(pool)) == len(rows)
    assert again.states[SERIES].artifact is not None and again.states[SERIES].artifact.version == 1

    async with pool.connection() as conn:
        table = render(await status(conn, now + timedelta(minutes=5), settings))
    assert SERIES in table and "ready" in table and f" {len(rows)}" in table
    executor.shutdown()


@pytest.mark.timeout(60)
async def test_a_pass_between_full_passes_judges_the_endpoints_that_got_rows(
    pool: AsyncConnectionPool, endpoint: int, settings: Detector
) -> None:
    live, executor, now, history = await _trained(pool, endpoint, settings, seed=3)
    fresh = [history[-1] + timedelta(seconds=15 * (i + 1)) for i in range(8)]
    await _add_checks(pool, endpoint, fresh, [100.0, 100.0] + [900.0] * 6)
    # One second after a full pass, well inside score_interval: only rows found by the one query are read.
    written = await live.tick(now + timedelta(seconds=1))
    assert written == len(await _anomalies(pool)) >= 3
    assert live.states[SERIES].watermark == fresh[-1]
    assert live.states["endpoint:api:failure_rate"].watermark is None or \
        live.states["endpoint:api:failure_rate"].watermark < fresh[0]
    executor.shutdown()


@pytest.mark.timeout(60)
async def test_a_full_pass_judges_the_latency_rows_past_the_watermark_and_learns_new_series(
    pool: AsyncConnectionPool, endpoint: int, settings: Detector
) -> None:
    # A full pass (once per score_interval) reads latency series with a watermark only when the one query
    # finds rows past it; the rows it finds are judged as in any pass, and a series seen for the first
    # time still gets its watermark.
    live, executor, now, history = await _trained(pool, endpoint, settings, seed=4)
    await _add_checks(pool, await _new_endpoint(pool, "web"), history[-40:], [50.0] * 40)
    fresh = [history[-1] + timedelta(seconds=15 * (i + 1)) for i in range(8)]
    await _add_checks(pool, endpoint, fresh, [100.0, 100.0] + [900.0] * 6)
    written = await live.tick(now + settings.score_interval + timedelta(seconds=1))
    assert written == len(await _anomalies(pool)) >= 3
    assert live.states[SERIES].watermark == fresh[-1]
    assert live.states["endpoint:web:latency"].watermark == history[-1]
    executor.shutdown()


@pytest.mark.timeout(60)
async def test_after_a_restart_a_sparse_series_without_new_rows_retrains_on_its_own_cadence(
    pool: AsyncConnectionPool, endpoint: int, settings: Detector
) -> None:
    # An hourly series needs 2 x min_training_rows hours of window (41 days here). After a restart its
    # state holds no history, and a full pass reads it only once it has new rows: its retraining must
    # still measure the hourly cadence (not assume 15 s, which reads 8 days: too few rows to train).
    rng = np.random.default_rng(5)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    history = [now - timedelta(hours=1440 - i) for i in range(1440)]
    await _add_checks(pool, endpoint, history, list(100 * np.exp(rng.normal(0, 0.08, len(history)))))
    executor = ThreadPoolExecutor(max_workers=1)
    first = LiveDetector(pool, settings, executor)
    await first.tick(now)
    await first.drain()
    trained = first.states[SERIES].artifact
    assert trained is not None and trained.step == timedelta(hours=1)
    restarted = LiveDetector(pool, settings, executor)
    await restarted.tick(now + timedelta(days=8))  # no new rows; the model is due again
    await restarted.drain()
    again = restarted.states[SERIES].artifact
    assert again is not None and again.version == trained.version + 1 and again.rows >= settings.min_training_rows
    executor.shutdown()


@pytest.mark.timeout(90)
async def test_per_minute_series_are_read_in_turn_each_once_a_minute(
    pool: AsyncConnectionPool, endpoint: int, settings: Detector
) -> None:
    # 8 endpoints: at a 15 s score_interval each full pass reads 2 of the 8 failure-rate series that
    # have a watermark, the longest unread first, so all 8 are read within the minute and no pass reads
    # them all at once. Three endpoints stopped reporting an hour ago: their series, oldest in data,
    # must not take every turn from the five that have new minutes.
    rng = np.random.default_rng(6)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    ids = [endpoint] + [await _new_endpoint(pool, f"api{i}") for i in range(7)]
    old = [now - timedelta(hours=2) + timedelta(seconds=15 * i) for i in range(460)]  # to now - 5 min
    stale, active = ids[:3], ids[3:]
    for endpoint_id in ids:
        times = old[:200] if endpoint_id in stale else old
        await _add_checks(pool, endpoint_id, times, list(100 * np.exp(rng.normal(0, 0.08, len(times)))))
    executor = ThreadPoolExecutor(max_workers=1)
    live = LiveDetector(pool, settings, executor)
    await live.tick(now)  # first pass: every series learns where it ends
    rates = {s.series.endpoint_id: s for s in live.states.values() if s.series.metric == "failure_rate"}
    assert len(rates) == 8 and all(s.watermark is not None for s in rates.values())
    before = {i: s.watermark for i, s in rates.items()}
    new = [old[-1] + timedelta(seconds=15 * (i + 1)) for i in range(12)]  # three more minutes, settled below
    for endpoint_id in active:
        await _add_checks(pool, endpoint_id, new, [100.0] * len(new))
    advanced = []
    for k in range(1, 5):
        await live.tick(now + k * settings.score_interval)  # each a full pass
        advanced.append(sum(1 for i in active if rates[i].watermark != before[i]))
        assert advanced[-1] <= 2 * k  # at most two of the eight per pass
    assert advanced[-1] == len(active)
    assert all(rates[i].watermark == before[i] for i in stale)
    await live.drain()
    executor.shutdown()


async def test_endpoints_with_new_latency_finds_successful_checks_past_each_watermark(
    pool: AsyncConnectionPool, endpoint: int
) -> None:
    from detector.series import endpoints_with_new_latency

    async with pool.connection() as conn:
        cur = await conn.execute("INSERT INTO endpoints (name, kind, target) VALUES ('web', 'http', 'http://127.0.0.1/')"
                                 " RETURNING id")
        other = int((await cur.fetchone() or [0])[0])
        now = datetime.now(UTC).replace(microsecond=0)
        await _add_checks(pool, endpoint, [now - timedelta(seconds=30), now], [100.0, 110.0])
        await conn.execute("INSERT INTO probe_results (time, endpoint_id, id, ok) VALUES (%s, %s, %s, false)",
                           (now, other, uuid.uuid4()))
        since = {endpoint: now - timedelta(seconds=15), other: now - timedelta(hours=1)}
        assert await endpoints_with_new_latency(conn, since) == [endpoint]
        assert await endpoints_with_new_latency(conn, {endpoint: now, other: now - timedelta(hours=1)}) == []


async def test_corrupt_model_file_is_retrained_not_fatal(
    pool: AsyncConnectionPool, endpoint: int, settings: Detector
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    times = [now - timedelta(hours=3) + timedelta(seconds=15 * i) for i in range(600)]
    await _add_checks(pool, endpoint, times, [100.0 + (i % 5) for i in range(600)])
    path = artifacts.path_for(settings.model_dir, SERIES)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00not a model")
    with ThreadPoolExecutor(max_workers=1) as executor:
        live = LiveDetector(pool, settings, executor)
        await live.tick(now)
        assert live.states[SERIES].training
        await live.drain()
    assert live.states[SERIES].artifact is not None
    assert artifacts.load(path, "isolation_forest", isolation_forest).version == 1


async def test_series_shorter_than_the_minimum_is_learning_and_claims_nothing(
    pool: AsyncConnectionPool, endpoint: int, settings: Detector
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    times = [now - timedelta(minutes=30) + timedelta(seconds=15 * i) for i in range(100)]
    await _add_checks(pool, endpoint, times, [100.0] * 99 + [5000.0])
    with ThreadPoolExecutor(max_workers=1) as executor:
        live = LiveDetector(pool, settings, executor)
        await live.tick(now)
        await live.drain()
    assert live.states[SERIES].artifact is None
    assert await _anomalies(pool) == []
    async with pool.connection() as conn:
        rows = await status(conn, now, settings)
    assert [(r.series, r.status) for r in rows if r.series == SERIES] == [(SERIES, "learning")]


@pytest.mark.timeout(60)
async def test_run_trains_in_worker_processes_and_flags_a_fresh_spike(
    pool: AsyncConnectionPool, database_url: str, endpoint: int, tmp_path: Path
) -> None:
    import asyncio

    from detector.service import run
    from upwatch.config import Config
    from upwatch.runtime import Runtime

    settings = Detector(score_interval="1s", min_training_rows=500, min_training_span="1h", max_workers=1,
                        model_dir=tmp_path / "models")
    rng = np.random.default_rng(1)
    start = datetime.now(UTC) - timedelta(hours=3)
    history = [start + timedelta(seconds=15 * i) for i in range(715)]
    await _add_checks(pool, endpoint, history, list(100 * np.exp(rng.normal(0, 0.08, len(history)))))
    stop = asyncio.Event()
    runtime = Runtime(Config(detector=settings), tmp_path / "upwatch.yaml", database_url, pool)
    task = asyncio.create_task(run(runtime, stop))

    async def until(query: str, timeout_s: float) -> None:
        for _ in range(int(timeout_s * 10)):
            async with pool.connection() as conn:
                if (await (await conn.execute(query)).fetchone() or [False])[0]:
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for: {query}")

    await until(f"SELECT status = 'ready' FROM detector_models WHERE series = '{SERIES}'", 40)
    landed = datetime.now(UTC)
    await _add_checks(pool, endpoint, [landed - timedelta(seconds=3 - 0.5 * i) for i in range(6)], [1500.0] * 6)
    await until(f"SELECT count(*) > 0 FROM anomalies WHERE series = '{SERIES}'", 10)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert (tmp_path / "models").is_dir() and any((tmp_path / "models").iterdir())


async def _until(pool: AsyncConnectionPool, query: str, timeout_s: float) -> None:
    import asyncio

    for _ in range(int(timeout_s * 20)):
        async with pool.connection() as conn:
            if (await (await conn.execute(query)).fetchone() or [False])[0]:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {query}")


@pytest.mark.timeout(60)
async def test_rows_written_by_the_prober_are_judged_before_the_score_interval_passes(
    pool: AsyncConnectionPool, database_url: str, endpoint: int, tmp_path: Path
) -> None:
    """The writer notifies on commit, so the default 15 s score_interval is only a fallback."""
    import asyncio

    from detector.service import run
    from prober.writer import BatchWriter
    from upwatch.config import Config
    from upwatch.runtime import Runtime

    settings = Detector(min_training_rows=500, min_training_span="1h", max_workers=1, model_dir=tmp_path / "models")
    assert settings.score_interval == timedelta(seconds=15)
    rng = np.random.default_rng(2)
    start = datetime.now(UTC) - timedelta(hours=3)
    history = [start + timedelta(seconds=15 * i) for i in range(715)]
    await _add_checks(pool, endpoint, history, list(100 * np.exp(rng.normal(0, 0.08, len(history)))))
    writer = BatchWriter(pool, tmp_path / "spool", flush_interval_s=0.2)
    await writer.start()
    stop = asyncio.Event()
    runtime = Runtime(Config(detector=settings), tmp_path / "upwatch.yaml", database_url, pool)
    task = asyncio.create_task(run(runtime, stop))
    try:
        await _until(pool, f"SELECT status = 'ready' FROM detector_models WHERE series = '{SERIES}'", 40)
        await asyncio.sleep(1.0)  # let the pass that follows training go by
        landed = datetime.now(UTC)
        rows = [{"time": landed - timedelta(seconds=3 - 0.5 * i), "endpoint_id": endpoint, "id": uuid.uuid4(),
                 "ok": True, "latency_ms": 1500.0} for i in range(6)]
        assert writer.offer("probe_results", rows)
        # Claimed by the pass the commit's notification wakes, before the 15 s fallback pass (about 14 s
        # after these rows: the last pass went by during the 1 s sleep). 10 s leaves a loaded machine room
        # (5 s was missed under load 8-10); the latency itself is bench/detector_speed.py's.
        await _until(pool, f"SELECT count(*) > 0 FROM anomalies WHERE series = '{SERIES}'", 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await writer.stop()


@pytest.mark.timeout(60)
async def test_detector_keeps_running_through_a_database_outage(
    server_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio
    import logging

    from detector.service import run
    from upwatch.config import Config
    from upwatch.db import open_pool
    from upwatch.embedded import EmbeddedPostgres
    from upwatch.migrate import migrate
    from upwatch.runtime import Runtime

    server = EmbeddedPostgres(server_dir / "pg", settings={"fsync": "off"})
    url = server.start()
    stop = asyncio.Event()
    try:
        await migrate(url)
        pool = await open_pool(url, max_size=4)
        pool.timeout = 1.0
        async with pool.connection() as conn:
            cur = await conn.execute("INSERT INTO endpoints (name, kind) VALUES ('api', 'http') RETURNING id")
            endpoint = (await cur.fetchone())[0]  # type: ignore[index]
        now = datetime.now(UTC)
        await _add_checks(pool, endpoint, [now - timedelta(seconds=60 - i) for i in range(10)], [100.0] * 10)
        settings = Detector(score_interval="1s", min_training_span="1h", max_workers=1, model_dir=tmp_path / "models")
        task = asyncio.create_task(run(Runtime(Config(detector=settings), tmp_path / "u.yaml", url, pool), stop))
        await _until(pool, f"SELECT watermark IS NOT NULL FROM detector_models WHERE series = '{SERIES}'", 20)
        server.stop()
        with caplog.at_level(logging.WARNING, logger="detector.service"):
            await asyncio.sleep(3)
        assert not task.done(), "the detector must outlive a database outage"
        assert any("failed, retrying" in r.getMessage() for r in caplog.records)
        server.start()
        later = datetime.now(UTC)
        for _ in range(20):  # the pool may still hand out a connection the restart ended: retry, bounded
            try:
                await _add_checks(pool, endpoint, [later], [100.0])
                break
            except psycopg.OperationalError:
                await asyncio.sleep(0.5)
        await _until(pool, f"SELECT watermark >= '{later.isoformat()}' FROM detector_models"
                           f" WHERE series = '{SERIES}'", 20)
        stop.set()
        await asyncio.wait_for(task, 10)
        await pool.close()
    finally:
        stop.set()
        server.stop()


async def _endpoint_every_5_minutes(pool: AsyncConnectionPool) -> int:
    """An http endpoint 'api' checked every 5 minutes; its id."""
    async with pool.connection() as conn:
        cur = await conn.execute("INSERT INTO endpoints (name, kind, target, config) VALUES ('api', 'http',"
                                 " 'http://127.0.0.1/', '{\"interval\": \"5m\"}') RETURNING id")
        return int((await cur.fetchone() or [0])[0])


@pytest.mark.timeout(60)
async def test_an_endpoint_checked_every_5_minutes_gets_a_model_at_defaults_and_its_spike_is_claimed(
    pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    # Before #13 min_training_rows was 5,760 (a day at 15 s): at 5 min a week is 2,016 rows, so never.
    endpoint = await _endpoint_every_5_minutes(pool)
    rng = np.random.default_rng(8)
    now = datetime.now(UTC).replace(microsecond=0)
    history = [now - timedelta(days=1, hours=12) + timedelta(minutes=5 * i) for i in range(432)]
    hours = np.arange(len(history)) / 12
    cycle = 1 + 0.2 * np.sin(2 * np.pi * hours / 24)
    await _add_checks(pool, endpoint, history, list(100 * cycle * np.exp(rng.normal(0, 0.05, len(history)))))
    settings = Detector(model_dir=tmp_path / "models")
    executor = ThreadPoolExecutor(max_workers=1)
    live = LiveDetector(pool, settings, executor)
    await live.tick(now)
    await live.drain()
    artifact = live.states[SERIES].artifact
    assert artifact is not None and artifact.step == timedelta(minutes=5) and artifact.rows >= 288

    fresh = [history[-1] + timedelta(minutes=5 * (i + 1)) for i in range(3)]
    await _add_checks(pool, endpoint, fresh, [100.0, 900.0, 100.0])  # one check at 9x: 5 minutes of it
    written = await live.tick(now + timedelta(minutes=16))
    rows = await _anomalies(pool)
    # Only the latency spike: the failure rate, 0 throughout, also got a model and claims nothing.
    assert written == len(rows) >= 1 and {r[0] for r in rows} == {fresh[1]}
    async with pool.connection() as conn:
        table = render(await status(conn, now + timedelta(minutes=16), settings))
    line = next(t for t in table.splitlines() if t.startswith(SERIES))
    assert line.split()[1] == "ready"
    executor.shutdown()


@pytest.mark.parametrize("before_model", ["rule", "silent"])
async def test_a_series_without_a_model_is_judged_by_the_early_rule_unless_silent(
    pool: AsyncConnectionPool, endpoint: int, tmp_path: Path, before_model: str
) -> None:
    rng = np.random.default_rng(5)
    now = datetime.now(UTC).replace(microsecond=0)
    times = [now - timedelta(minutes=30) + timedelta(seconds=15 * i) for i in range(100)]
    await _add_checks(pool, endpoint, times, list(100 * np.exp(rng.normal(0, 0.05, len(times)))))
    settings = Detector(before_model=before_model, model_dir=tmp_path / "models")  # a model needs a day: none
    with ThreadPoolExecutor(max_workers=1) as executor:
        live = LiveDetector(pool, settings, executor)
        await live.tick(now)
        await live.drain()
        fresh = [times[-1] + timedelta(seconds=15 * (i + 1)) for i in range(8)]
        await _add_checks(pool, endpoint, fresh, [100.0] * 2 + [3000.0] * 4 + [100.0] * 2)
        written = await live.tick(now + timedelta(minutes=3))
        await live.drain()
    assert live.states[SERIES].artifact is None
    rows = await _anomalies(pool)
    if before_model == "silent":
        assert written == 0 and rows == []
        return
    # Every check of the last 45 s far out: from the third 3000 ms check on, while the spike lasts.
    assert written == len(rows) >= 1 and {r[0] for r in rows} <= set(fresh[4:6])
    assert all(r[5] == 0 and r[3].startswith("latency 3,000 ms, usually ") and "no model yet" in r[3] for r in rows)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM incidents WHERE series = %s", (SERIES,))
        assert (await cur.fetchone() or [0])[0] == 1


@pytest.mark.timeout(60)
async def test_early_rule_points_of_a_5_minute_series_group_at_its_own_cadence(
    pool: AsyncConnectionPool, tmp_path: Path
) -> None:
    # Two flagged checks 5 minutes apart are one incident; the 15 s default's 2-minute gap made them two.
    endpoint = await _endpoint_every_5_minutes(pool)
    rng = np.random.default_rng(11)
    now = datetime.now(UTC).replace(microsecond=0)
    history = [now - timedelta(hours=5) + timedelta(minutes=5 * i) for i in range(60)]
    await _add_checks(pool, endpoint, history, list(100 * np.exp(rng.normal(0, 0.05, len(history)))))
    settings = Detector(model_dir=tmp_path / "models")  # a model needs a day: the early rule judges
    with ThreadPoolExecutor(max_workers=1) as executor:
        live = LiveDetector(pool, settings, executor)
        await live.tick(now)
        await live.drain()
        fresh = [history[-1] + timedelta(minutes=5 * (i + 1)) for i in range(4)]
        await _add_checks(pool, endpoint, fresh, [100.0, 3000.0, 5000.0, 100.0])
        written = await live.tick(now + timedelta(minutes=25))
        await live.drain()
    assert live.states[SERIES].artifact is None
    rows = await _anomalies(pool)
    assert written == len(rows) == 2 and [r[0] for r in rows] == fresh[1:3]
    assert rows[0][4] == rows[1][4]  # one incident
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT points FROM incidents WHERE series = %s", (SERIES,))
        assert await cur.fetchall() == [(2,)]
