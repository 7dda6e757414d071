"""The event hold (detector.incidents.hold): a flagged row soon after an alarm counts only when it is bigger.

The same rule in the backtest (detector.backtest.replay) and live (detector.service, its state read
back from the anomalies rows, so it survives a restart).
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from psycopg_pool import AsyncConnectionPool

from detector.backtest import replay
from detector.incidents import LastAlarm, hold
from detector.service import LiveDetector
from upwatch.config.detector import Detector

T0 = pd.Timestamp("2026-03-02T00:00Z")
GAP, WINDOW = timedelta(minutes=10), timedelta(hours=3)
SERIES = "endpoint:api:latency"


def _at(minutes: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=minutes)


def test_a_point_soon_after_an_alarm_counts_only_above_its_peak() -> None:
    points = [(_at(0), 0.7), (_at(5), 0.8),  # one alarm, peak 0.8
              (_at(60), 0.8),                 # the same size again within 3 h: held
              (_at(120), 0.75),               # smaller: held
              (_at(150), 0.9), (_at(155), 0.6),  # bigger: a new alarm, and its next row continues it
              (_at(155 + 181), 0.6)]          # 3 h after that alarm's end: news again
    keep, last = hold(points, None, GAP, WINDOW)
    assert keep == [True, True, False, False, True, True, True]
    assert last == LastAlarm(_at(336), 0.6)


def test_held_points_do_not_extend_the_hold() -> None:
    # A burst every 2 h of the same size: one alarm per hold, not one ever.
    points = [(_at(120 * i), 0.7) for i in range(4)]
    keep, _ = hold(points, None, GAP, WINDOW)
    assert keep == [True, False, True, False]


def test_the_hold_starts_from_a_given_last_alarm_and_a_zero_window_keeps_everything() -> None:
    before = LastAlarm(_at(-30), 0.95)
    assert hold([(_at(0), 0.9), (_at(1), 0.99)], before, GAP, WINDOW)[0] == [False, True]
    assert hold([(_at(0), 0.9), (_at(60), 0.9)], before, GAP, timedelta(0))[0] == [True, True]


def _bumped(bumps: dict[int, float], seed: int = 2) -> pd.DataFrame:
    """Three days at 5 min of log-normal noise around 100, with one-row bumps to 100 x factor at the given rows."""
    rng = np.random.default_rng(seed)
    values = 100 * np.exp(rng.normal(0, 0.05, 3 * 288))
    for at, factor in bumps.items():
        values[at] = 100 * factor
    return pd.DataFrame({"timestamp": T0 + pd.Timedelta(minutes=5) * np.arange(len(values)), "value": values})


def test_backtest_flags_a_repeating_bump_once_and_a_bigger_one_after() -> None:
    # Day 3, after the first model: a bump, the same size again 70 and 140 minutes later, then a
    # bigger one 170 minutes after the first, still inside its 3 h hold.
    first = 2 * 288 + 24
    same, bigger = [first, first + 14, first + 28], first + 34
    frame = _bumped({at: 1.6 for at in same} | {bigger: 3.0})
    settings = {"retrain_interval": "1d"}  # one model judges all four: their scores compare directly
    off = replay(frame, Detector(event_hold="0s", **settings))
    on = replay(frame, Detector(**settings))
    scores = off["anomaly_score"].to_numpy()
    # Without the hold every bump is an alarm; the repeats score no higher than the first, the bigger one higher.
    assert off["is_anomaly"].iloc[[*same, bigger]].tolist() == [1, 1, 1, 1]
    assert max(scores[same[1:]]) <= scores[first] < scores[bigger]
    assert np.flatnonzero(on["is_anomaly"].to_numpy()[first - 10:]).tolist() == [10, 10 + 34]
    # The hold decides verdicts, not scores; and nothing before the first bump changes.
    np.testing.assert_array_equal(on["anomaly_score"].to_numpy(), scores)
    pd.testing.assert_frame_equal(on.iloc[:first], off.iloc[:first])


async def _add_checks(pool: AsyncConnectionPool, endpoint_id: int, times: list[datetime], latency: list[float]) -> None:
    query = "COPY probe_results (time, endpoint_id, id, ok, latency_ms) FROM STDIN"
    async with pool.connection() as conn, conn.cursor() as cur, cur.copy(query) as copy:
        for at, ms in zip(times, latency, strict=True):
            await copy.write_row((at, endpoint_id, uuid.uuid4(), True, ms))


async def _anomalies(pool: AsyncConnectionPool) -> list[tuple[datetime, float, int]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT time, score, incident_id FROM anomalies WHERE series = %s ORDER BY time", (SERIES,))
        return await cur.fetchall()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("event_hold", ["3h", "0s"])
async def test_live_detector_restarted_between_two_alarms_still_holds(
    pool: AsyncConnectionPool, tmp_path: Path, event_hold: str
) -> None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO endpoints (name, kind, target) VALUES ('api', 'http', 'http://127.0.0.1/') RETURNING id")
        row = await cur.fetchone()
    assert row is not None
    endpoint = int(row[0])
    settings = Detector(min_training_rows=500, min_training_span="1h", retrain_interval="1d",
                        event_hold=event_hold, model_dir=tmp_path / "models")
    rng = np.random.default_rng(0)
    now = datetime.now(UTC).replace(microsecond=0)
    history = [now - timedelta(hours=3) + timedelta(seconds=15 * i) for i in range(700)]
    await _add_checks(pool, endpoint, history, list(100 * np.exp(rng.normal(0, 0.08, len(history)))))
    clock = history[-1]

    # The same 20 minutes of usual checks before every spike and 10 after it: the spikes differ only in
    # what came before those 20 minutes (the 6 h baselines, which hold the earlier spikes).
    calm = list(100 * np.exp(rng.normal(0, 0.08, 120)))

    async def spike(live: LiveDetector, ms: float) -> list[tuple[datetime, float, int]]:
        """Usual checks, 4 checks at `ms`, usual checks; one pass; the anomalies rows it wrote."""
        nonlocal clock
        times = [clock + timedelta(seconds=15 * (i + 1)) for i in range(124)]
        await _add_checks(pool, endpoint, times, calm[:80] + [ms] * 4 + calm[80:])
        clock = times[-1]
        before = len(await _anomalies(pool))
        await live.tick(clock + timedelta(seconds=1))
        return (await _anomalies(pool))[before:]

    with ThreadPoolExecutor(max_workers=1) as executor:
        live = LiveDetector(pool, settings, executor)
        await live.tick(now)
        await live.drain()
        assert live.states[SERIES].artifact is not None
        first = await spike(live, 300.0)
        assert first, "the first spike is an alarm"

        # A restart: a new service knows nothing in memory; the hold comes from the anomalies rows.
        again = LiveDetector(pool, settings, executor)
        repeat = await spike(again, 300.0)
        assert again.states[SERIES].watermark == clock  # judged, whatever it decided
        bigger = await spike(again, 3000.0)
        await again.drain()

    peak = max(score for _, score, _ in first)
    assert bigger and max(score for _, score, _ in bigger) > peak
    assert {incident for _, _, incident in bigger}.isdisjoint({incident for _, _, incident in first})
    if event_hold == "0s":
        # Without the hold the same spike again is an alarm again (no bigger than the first).
        assert repeat and max(score for _, score, _ in repeat) <= peak
    else:
        assert repeat == []
