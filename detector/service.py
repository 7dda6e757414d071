"""The live detector: every score_interval judge rows past each series' watermark; retrain on a cadence.

Training runs in a process pool (max_workers processes) so the event loop keeps
scoring while models are fitted. Models are loaded from model_dir at start; a
corrupt or incompatible file is retrained, not fatal.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from detector import artifacts, early, features, models, store, training
from detector import series as series_sql
from detector.cluster import training_executor
from detector.incidents import gap_for
from detector.models import NotEnoughData
from detector.scoring import Verdict, held, judge
from detector.series import Series
from upwatch import durations, leadership
from upwatch.config.detector import Detector
from upwatch.db import ROWS_CHANNEL, error_summary
from upwatch.runtime import Runtime, pause

logger = logging.getLogger(__name__)

# A series without a model asks for one at most this often (it may still be short of rows).
RETRY_UNTRAINED = timedelta(minutes=5)
# Per-minute series (failure rates, pushed services' rollups) get a new row once a minute.
PER_MINUTE = timedelta(minutes=1)


@dataclass
class State:
    """What the service holds in memory for one series."""

    series: Series
    version: int = 0
    watermark: datetime | None = None
    history: pd.DataFrame = field(default_factory=lambda: pd.DataFrame({"timestamp": [], "value": []}))
    artifact: artifacts.Artifact | None = None
    training: bool = False
    tried_at: datetime | None = None
    read_at: datetime | None = None  # the last full pass that read it in turn (per-minute series)


class LiveDetector:
    """Scores and trains every discovered series against one database."""

    def __init__(self, pool: AsyncConnectionPool, settings: Detector, executor: Executor) -> None:
        self.pool, self.settings, self.executor = pool, settings, executor
        self.states: dict[str, State] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.cpu = asyncio.Semaphore(1)
        # Trainings fetch their window only shortly before a worker is free: with every
        # series due at once (a first start), fetching all windows up front held the pool's
        # connections past its timeout and every window in memory (bench/detector_speed.py).
        self.fitting = asyncio.Semaphore(2 * settings.max_workers)  # one fetching while one fits, per worker
        self.refreshed_at: datetime | None = None

    async def refresh(self) -> None:
        """Pick up new series; load their saved watermark, version and model file."""
        async with self.pool.connection() as conn:
            found = await series_sql.discover(conn, self.settings.training_window)
            known = await store.saved(conn)
        module = models.get(self.settings.model)
        for s in found:
            if s.key in self.states:
                continue
            saved = known.get(s.key)
            state = State(s, version=saved.version if saved else 0, watermark=saved.watermark if saved else None)
            try:
                state.artifact = await asyncio.to_thread(
                    artifacts.load, artifacts.path_for(self.settings.model_dir, s.key), self.settings.model, module)
            except FileNotFoundError:
                pass
            except artifacts.ArtifactError as e:
                logger.warning("detector model unusable, retraining series=%s error=%r", s.key, str(e))
            self.states[s.key] = state

    async def tick(self, now: datetime) -> int:
        """One scoring pass, then start due trainings; returns anomalies written.

        Endpoint latency series that already have a watermark are read only when one query finds
        rows past it: at 100 endpoints, a read per series made each pass cost ~0.9 s and put the
        p99 from commit to anomaly row at 1.9 s (bench/detector_speed.py). Passes woken by new rows
        read just those. Once per score_interval a pass also looks for new series, reads every series
        without a watermark (its first pass learns where it ends) and the per-minute series in turn,
        each once a minute (`_in_turn`): they wait for their minute to settle anyway. (Reading every
        series in that pass, a probe row committed just after it began waited for it and for the
        pause after it: p99 2.1-2.9 s at 100 endpoints, 0.6 s since; bench/detector_speed.py, 4 Dec.)
        """
        if self.refreshed_at is None or now - self.refreshed_at >= self.settings.score_interval:
            await self.refresh()
            self.refreshed_at = now
            followed = {id(s) for s in self._followed().values()}
            others = [s for s in self.states.values() if id(s) not in followed]
            due = self._in_turn(others, now) + await self._with_new_rows()
        else:
            due = await self._with_new_rows()
        # Series are independent: their database reads overlap, while judging (CPU, in a
        # thread so the loop stays responsive) runs one at a time: two threads were slower
        # than one on bench/detector_speed.py because of the GIL.
        gate = asyncio.Semaphore(self.settings.max_workers)

        async def one(state: State) -> int:
            async with gate:
                return await self.score(state, now)

        written = sum(await asyncio.gather(*(one(s) for s in due)))
        for state in self.states.values():
            if self._due(state, now):
                state.training, state.tried_at = True, now
                task = asyncio.create_task(self.train(state, now), name=f"train {state.series.key}")
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        return written

    def _in_turn(self, others: list[State], now: datetime) -> list[State]:
        """Of the series a full pass reads in full: every one without a watermark, and of the per-minute
        series (a new row once a minute) a share, the longest unread first (by when a pass last read
        them, not by their data, so a series with no rows any more cannot keep the others waiting),
        so that each is read once a minute (all at once, 100 of them took a pass 1.2-1.5 s: `tick`)."""
        fresh = [s for s in others if s.watermark is None]
        never = datetime.min.replace(tzinfo=UTC)
        minute = sorted((s for s in others if s.watermark is not None), key=lambda s: s.read_at or never)
        share = minute[:math.ceil(len(minute) * min(1.0, self.settings.score_interval / PER_MINUTE))]
        for state in share:
            state.read_at = now
        return fresh + share

    def _followed(self) -> dict[int, State]:
        """Endpoint latency series with a watermark, by endpoint: one query tells which have new rows."""
        return {s.series.endpoint_id: s for s in self.states.values()
                if s.series.metric == "latency" and s.series.endpoint_id is not None and s.watermark is not None}

    async def _with_new_rows(self) -> list[State]:
        latency = self._followed()
        if not latency:
            return []
        async with self.pool.connection() as conn:
            fresh = await series_sql.endpoints_with_new_latency(
                conn, {endpoint_id: s.watermark for endpoint_id, s in latency.items() if s.watermark is not None})
        return [latency[endpoint_id] for endpoint_id in fresh]

    def _due(self, state: State, now: datetime) -> bool:
        if state.training:
            return False
        if state.artifact is None:
            retry = min(RETRY_UNTRAINED, self.settings.retrain_interval)
            return state.tried_at is None or now - state.tried_at >= retry
        last = state.tried_at or state.artifact.trained_at
        return now - last >= training.due_after(state.artifact.rows, state.artifact.step,
                                                self.settings).to_pytimedelta()

    async def score(self, state: State, now: datetime) -> int:
        """Judge rows past the watermark; write anomalies, incidents and the new watermark together."""
        step = state.artifact.step if state.artifact is not None else features.DEFAULT_STEP
        lookback = max(features.Scale(step).lookback, training.LOOKBACK).to_pytimedelta()
        if state.history.empty and state.watermark is not None:
            async with self.pool.connection() as conn:
                state.history = await series_sql.fetch(conn, state.series, state.watermark - lookback, state.watermark)
        # A new series only needs the rows its first verdicts will look back over, not its whole history.
        since = state.watermark or now - lookback
        async with self.pool.connection() as conn:
            new = await series_sql.fetch(conn, state.series, since, now)
        if new.empty:
            return 0
        history = pd.concat([state.history, new], ignore_index=True)
        newest = new["timestamp"].iloc[-1].to_pydatetime()
        verdicts = await self._judge(state, history)
        # Without a model the early rule's points group at the series' observed cadence (as the
        # backtest's), not at the 15 s default: flagged 5-minute checks in a row are one incident.
        gap = gap_for(step if state.artifact is not None else features.cadence(history["timestamp"]))
        async with self.pool.connection() as conn, conn.transaction():
            hold = state.artifact is not None and self.settings.event_hold > timedelta(0)
            if hold and any(v.anomalous for v in verdicts):
                # A model's rows pass the event hold (the early rule has a rising bar of its own); its
                # state is the series' stored anomalies, so a restart keeps it.
                since = verdicts[0].time - self.settings.event_hold - gap
                last = await store.last_alarm(conn, state.series.key, since)
                verdicts = held(verdicts, last, gap, self.settings.event_hold)
            written = await store.record(conn, state.series, verdicts, state.artifact, gap)
            await store.advance(conn, state.series, newest, verdicts[-1].score if verdicts else None)
        state.watermark = newest
        state.history = history[history["timestamp"] > newest - lookback].reset_index(drop=True)
        if written:
            logger.info("detector anomalies series=%s written=%d", state.series.key, written)
        return written

    async def _judge(self, state: State, history: pd.DataFrame) -> list[Verdict]:
        # A series' first pass only learns where it ends; without a model the early rule speaks
        # (or nothing, with before_model: silent).
        if state.watermark is None or (state.artifact is None and self.settings.before_model == "silent"):
            return []
        async with self.cpu:
            if state.artifact is None:
                return await asyncio.to_thread(early.judge, history, state.watermark, state.series)
            return await asyncio.to_thread(judge, history, state.watermark, state.artifact, state.series)

    async def train(self, state: State, now: datetime) -> None:
        """Fit in the process pool with the window's rows, minus past incidents; never raises for data
        problems or database errors (a failed training is tried again at the next due time)."""
        window = self.settings.training_window
        try:
            try:
                async with self.fitting:
                    artifact = await self._fit(state, now, window)
            except NotEnoughData as e:
                logger.info("detector not enough data series=%s reason=%r", state.series.key, str(e))
                if state.artifact is not None and training.outlived(state.artifact.trained_at, state.artifact.step,
                                                                     now, self.settings):
                    # Older than its window: judged as a series without a model until a retraining succeeds
                    # (the backtest does the same); the file goes too, so a restart does not bring it back.
                    logger.info("detector model outlived its window series=%s trained_at=%s", state.series.key,
                                state.artifact.trained_at.isoformat())
                    state.artifact = None
                    path = artifacts.path_for(self.settings.model_dir, state.series.key)
                    try:
                        await asyncio.to_thread(path.unlink, missing_ok=True)
                    except OSError as error:  # the model is out of use either way; a restart would load it
                        logger.warning("detector cannot remove model file=%s error=%r", path, str(error))
                async with self.pool.connection() as conn:
                    await store.save_model(conn, state.series, state.artifact, "learning" if state.artifact is None
                                           else "ready")
                return
            state.artifact, state.version = artifact, artifact.version
            async with self.pool.connection() as conn:
                await store.save_model(conn, state.series, artifact, "ready")
        except (psycopg.Error, PoolTimeout) as e:
            logger.warning("detector training failed series=%s error=%r", state.series.key, error_summary(e))
            return
        finally:
            state.training = False
        logger.info("detector trained series=%s version=%d rows=%d", state.series.key, artifact.version, artifact.rows)

    async def _fit(self, state: State, now: datetime, window: timedelta) -> artifacts.Artifact:
        # The step from the rows scoring holds decides how far back training reads (a sparse series
        # trains on a longer window); training.fit then measures it again on what it reads. After a
        # restart a latency series is read only once it has new rows, so its history may not be back
        # yet: then the rows before its watermark tell (read here, not kept: scoring keeps its own).
        history = state.history
        if history.empty and state.watermark is not None:
            async with self.pool.connection() as conn:
                back = state.watermark - training.LOOKBACK.to_pytimedelta()
                history = await series_sql.fetch(conn, state.series, back, state.watermark)
        step = features.cadence(history["timestamp"])  # DEFAULT_STEP below two rows
        since = now - max(window + training.LOOKBACK, training.history_for(step, self.settings)).to_pytimedelta()
        async with self.pool.connection() as conn:
            frame = await series_sql.fetch(conn, state.series, since, now)
            claimed = await store.claimed(conn, state.series.key, since, gap_for(step))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor, training.fit, state.series.key, frame, claimed, self.settings, state.version + 1,
            self.settings.model_dir)

    async def drain(self) -> None:
        """Wait for trainings in flight (used at shutdown and by tests)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


MIN_PASS_GAP_S = 0.5


async def listen(url: str, wake: asyncio.Event, stop: asyncio.Event) -> None:
    """Set `wake` whenever new probe results are committed; reconnect after database errors."""
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(ROWS_CHANNEL)))
                wake.set()  # rows may have landed while we were not listening
                while not stop.is_set():
                    async for note in conn.notifies(timeout=1.0):
                        if note.payload == "probe_results":
                            wake.set()
        except psycopg.Error as e:
            logger.warning("detector listen failed, retrying error=%r", error_summary(e))
            await pause(stop, 2.0)


async def run(runtime: Runtime, stop: asyncio.Event) -> None:
    """Run until `stop` is set: score when rows land (and every score_interval), train off the event loop.
    Only one copy of the detector works at a time; the others stand by (upwatch.leadership)."""
    settings = runtime.config.detector
    if not settings.enabled:
        logger.info("detector disabled")
        await stop.wait()
        return

    async def active(stepped_down: asyncio.Event) -> None:
        await _work(runtime, stepped_down)

    await leadership.lead(runtime.database_url, "detector", stop, active)
    logger.info("detector stopped")


async def _work(runtime: Runtime, stop: asyncio.Event) -> None:
    """The detector's passes while this copy is the active one (state is read back from the database)."""
    settings = runtime.config.detector
    wake = asyncio.Event()
    listener = asyncio.create_task(listen(runtime.database_url, wake, stop), name="detector-listen")
    if swept := await asyncio.to_thread(artifacts.sweep, settings.model_dir):
        logger.info("removed temporary model files left by an interrupted save count=%d dir=%s", swept,
                    settings.model_dir)
    with training_executor(settings) as executor:
        detector = LiveDetector(runtime.pool, settings, executor)
        logger.info("detector started model=%s score_interval=%s retrain_interval=%s", settings.model,
                    durations.format(settings.score_interval), durations.format(settings.retrain_interval))
        while not stop.is_set():
            wake.clear()
            started = time.monotonic()
            try:
                await detector.tick(datetime.now(UTC))
            except (psycopg.Error, PoolTimeout) as e:
                logger.warning("detector pass failed, retrying error=%r", error_summary(e))
            # At most half the time in passes, however often rows land.
            await pause(stop, max(MIN_PASS_GAP_S, time.monotonic() - started))
            await pause(stop, settings.score_interval.total_seconds(), wake)
        for task in detector.tasks:
            task.cancel()
        await asyncio.gather(*detector.tasks, return_exceptions=True)
    listener.cancel()
    await asyncio.gather(listener, return_exceptions=True)
