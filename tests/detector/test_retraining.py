"""Live retraining (#13.7): the real LiveDetector against the real database, time driven by tick(now).

Data time is the `now` each pass is given and the rows' timestamps; no clock is patched.
"""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from psycopg_pool import AsyncConnectionPool

from detector import artifacts, training
from detector.service import LiveDetector
from upwatch.config.detector import Detector

SERIES = "endpoint:api:latency"
STEP = timedelta(minutes=1)


async def _add_checks(pool: AsyncConnectionPool, endpoint_id: int, times: list[datetime], latency: list[float]) -> None:
    query = "COPY probe_results (time, endpoint_id, id, ok, latency_ms) FROM STDIN"
    async with pool.connection() as conn, conn.cursor() as cur, cur.copy(query) as copy:
        for at, ms in zip(times, latency, strict=True):
            await copy.write_row((at, endpoint_id, uuid.uuid4(), True, ms))


@pytest.fixture
async def endpoint(pool: AsyncConnectionPool) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("INSERT INTO endpoints (name, kind, target, config) VALUES ('api', 'http',"
                                 " 'http://127.0.0.1/', '{\"interval\": \"1m\"}') RETURNING id")
        return int((await cur.fetchone() or [0])[0])


@pytest.fixture
def settings(tmp_path: Path) -> Detector:
    # Defaults except a shorter first-model requirement, so a test needs hours of 1-minute rows, not a day.
    return Detector(min_training_rows=200, min_training_span="2h", model_dir=tmp_path / "models")


class Feed:
    """A 1-minute latency series written to probe_results as data time advances."""

    def __init__(self, pool: AsyncConnectionPool, endpoint: int, start: datetime, seed: int) -> None:
        self.pool, self.endpoint, self.last = pool, endpoint, start
        self.rng = np.random.default_rng(seed)

    async def add(self, minutes: int, level: float) -> list[datetime]:
        times = [self.last + STEP * (i + 1) for i in range(minutes)]
        await _add_checks(self.pool, self.endpoint, times, list(level * np.exp(self.rng.normal(0, 0.05, minutes))))
        self.last = times[-1]
        return times


async def _flagged(pool: AsyncConnectionPool, since: datetime) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM anomalies WHERE series = %s AND time > %s", (SERIES, since))
        return int((await cur.fetchone() or [0])[0])


async def _saved_version(pool: AsyncConnectionPool) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT version FROM detector_models WHERE series = %s", (SERIES,))
        return int((await cur.fetchone() or [0])[0])


async def _first_model(live: LiveDetector, feed: Feed) -> artifacts.Artifact:
    """The model a pass at the feed's last row trains."""
    await live.tick(feed.last)
    await live.drain()
    artifact = live.states[SERIES].artifact
    assert artifact is not None
    return artifact


@pytest.mark.timeout(60)
async def test_a_model_is_retrained_each_time_its_interval_passes_in_data_time(
    pool: AsyncConnectionPool, endpoint: int, settings: Detector
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    feed = Feed(pool, endpoint, start, seed=4)
    await feed.add(4 * 60, 100.0)
    with ThreadPoolExecutor(max_workers=1) as executor:
        live = LiveDetector(pool, settings, executor)
        first = await _first_model(live, feed)
        assert first.version == 1 and first.trained_at == feed.last
        due = training.due_after(first.rows, first.step, settings).to_pytimedelta()
        assert due == settings.retrain_interval  # 1 h: 0.1 x 4 h of rows is less

        # Short of the interval nothing is retrained, however many passes run.
        for _ in range(5):
            await feed.add(10, 100.0)
            await live.tick(feed.last)
            await live.drain()
        assert feed.last - first.trained_at < due
        assert live.states[SERIES].artifact is first

        versions = []
        for _ in range(2):  # each time the interval passes, a new version on the newer rows
            await feed.add(int(due / STEP), 100.0)
            await live.tick(feed.last)
            await live.drain()
            artifact = live.states[SERIES].artifact
            assert artifact is not None and artifact.trained_at == feed.last
            versions.append((artifact.version, await _saved_version(pool)))
    assert versions == [(2, 2), (3, 3)]
    assert artifact.rows > first.rows  # the window grew: the newer rows were trained on


@pytest.mark.timeout(60)
async def test_a_model_trained_before_a_level_shift_flags_it_then_judges_the_new_level_as_usual(
    pool: AsyncConnectionPool, endpoint: int, settings: Detector
) -> None:
    """The documented time: a shift stops counting once it fills half the 6 h baseline (3 h + 10 points);
    meanwhile the model is retrained on the new level, which the last verdicts come from."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    feed = Feed(pool, endpoint, start, seed=8)
    await feed.add(6 * 60, 100.0)
    with ThreadPoolExecutor(max_workers=1) as executor:
        live = LiveDetector(pool, settings, executor)
        before = await _first_model(live, feed)
        shift = feed.last
        await feed.add(15, 200.0)
        await live.tick(feed.last)
        assert await _flagged(pool, shift) >= 10  # the model from before the shift flags it at once
        await live.drain()
        adapted = shift + timedelta(hours=3) + 10 * STEP
        while feed.last < adapted:
            await feed.add(30, 200.0)
            await live.tick(feed.last)
            await live.drain()
        settled = feed.last
        for _ in range(4):  # two more hours at the new level: nothing flagged
            await feed.add(30, 200.0)
            await live.tick(feed.last)
            await live.drain()
        assert await _flagged(pool, settled) == 0
        after = live.states[SERIES].artifact
        assert after is not None and after.version >= before.version + 3 and after.trained_at > adapted
        # The retrained model still sees anomalies, now against the new level.
        spike = await feed.add(3, 1200.0)
        await live.tick(feed.last)
    assert await _flagged(pool, settled) >= 2
    assert await _flagged(pool, spike[0] - STEP) >= 2


@pytest.mark.timeout(120)
async def test_a_model_whose_retraining_lacks_rows_judges_until_it_outlives_its_window(
    pool: AsyncConnectionPool, endpoint: int, tmp_path: Path
) -> None:
    """A series that turns sparse: its retrainings find too few rows, the model it has goes on judging
    while younger than its training window, and then is dropped (status, file) for the early rule."""
    settings = Detector(min_training_rows=100, min_training_span="2h", training_window="4h",
                        model_dir=tmp_path / "models")
    window = training.window_for(pd.Timedelta(STEP), settings).to_pytimedelta()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    feed = Feed(pool, endpoint, start, seed=6)
    await feed.add(3 * 60, 100.0)
    with ThreadPoolExecutor(max_workers=1) as executor:
        live = LiveDetector(pool, settings, executor)
        model = await _first_model(live, feed)
        path = artifacts.path_for(Path(settings.model_dir), SERIES)
        assert await asyncio.to_thread(path.exists)
        kept_past_a_retraining = False
        while live.states[SERIES].artifact is not None and feed.last - start < timedelta(hours=20):
            feed.last += 9 * STEP  # a row every 10 minutes from now on
            await feed.add(1, 100.0)
            await live.tick(feed.last)
            await live.drain()
            current = live.states[SERIES].artifact
            if current is not None:
                model = current
                # Dropped at the first retraining that fails once it is older than its window (tried
                # every due interval; the rows come every 10 minutes).
                retry = training.due_after(model.rows, model.step, settings).to_pytimedelta()
                assert feed.last - model.trained_at <= window + retry + 10 * STEP
                kept_past_a_retraining |= feed.last - model.trained_at > 2 * settings.retrain_interval
        assert kept_past_a_retraining  # retrainings failed (due hourly) and the model went on judging
        assert live.states[SERIES].artifact is None
        assert feed.last - model.trained_at > window
        assert not await asyncio.to_thread(path.exists)
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT status, version, trained_at FROM detector_models WHERE series = %s",
                                     (SERIES,))
            assert await cur.fetchone() == ("learning", model.version, None)
        spike = await feed.add(1, 3000.0)
        await live.tick(feed.last)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT model_version FROM anomalies WHERE series = %s AND time = %s",
                                 (SERIES, spike[0]))
        assert await cur.fetchall() == [(0,)]  # the early rule's verdict
