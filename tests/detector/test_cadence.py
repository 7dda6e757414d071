"""Any cadence (#13): a 5-minute and a gappy 1-minute series get a model after a day and their planted
anomalies flagged by `python -m detector backtest` at its defaults, causally."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detector import features
from detector.__main__ import main
from detector.backtest import replay
from upwatch.config.detector import Detector

START = pd.Timestamp("2026-03-02T00:00:00Z")


def _series(step: pd.Timedelta, days: float, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A daily cycle and AR noise; returns the frame and a per-row planted-kind array ('' = normal)."""
    rng = np.random.default_rng(seed)
    n = int(pd.Timedelta(days=days) / step)
    stamps = START + pd.to_timedelta(np.arange(n) * step.total_seconds(), unit="s")
    hours = np.arange(n) * step.total_seconds() / 3600
    cycle = 1.0 + 0.3 * np.sin(2 * np.pi * hours / 24)
    noise = np.zeros(n)
    for i in range(1, n):
        noise[i] = 0.5 * noise[i - 1] + rng.normal(0, 0.06)
    values = 120.0 * cycle * np.exp(noise)
    return pd.DataFrame({"timestamp": stamps, "value": values}), np.full(n, "", dtype=object)


def _plant(frame: pd.DataFrame, kinds: np.ndarray, at: pd.Timedelta, length: int, factor: float, kind: str) -> None:
    first = int(np.searchsorted(frame["timestamp"], START + at))
    frame.loc[frame.index[first:first + length], "value"] *= factor
    kinds[first:first + length] = kind


def _flags_by_kind(frame: pd.DataFrame, kinds: np.ndarray, flags: np.ndarray) -> dict[str, bool]:
    return {k: bool(flags[kinds == k].any()) for k in set(kinds) - {""}}


def _alarms_outside(frame: pd.DataFrame, kinds: np.ndarray, flags: np.ndarray, grace: pd.Timedelta) -> int:
    """Groups of flagged rows more than `grace` away from every planted row."""
    stamps = pd.DatetimeIndex(frame["timestamp"]).tz_convert(None).to_numpy()
    planted = stamps[kinds != ""]
    near = np.array([np.abs(planted - t).min() <= np.timedelta64(grace) for t in stamps])
    outside = flags & ~near
    return int((np.diff(np.r_[0, outside.astype(int)]) == 1).sum())


@pytest.fixture(scope="module")
def five_minute() -> tuple[pd.DataFrame, np.ndarray]:
    frame, kinds = _series(pd.Timedelta(minutes=5), days=10.5, seed=11)  # 3,024 rows
    _plant(frame, kinds, pd.Timedelta(days=2, hours=9), 1, 4.0, "spike")
    _plant(frame, kinds, pd.Timedelta(days=4, hours=15), 2, 0.3, "dip")
    _plant(frame, kinds, pd.Timedelta(days=6, hours=3), 24, 2.2, "level")  # 2 h
    _plant(frame, kinds, pd.Timedelta(days=8, hours=20), 12, 1.0, "noise")
    noisy = kinds == "noise"
    frame.loc[noisy, "value"] *= np.exp(np.random.default_rng(5).normal(0, 0.6, noisy.sum()))
    return frame, kinds


@pytest.mark.timeout(60)
def test_backtest_at_defaults_flags_what_was_planted_in_a_5_minute_series(
    tmp_path: Path, five_minute: tuple[pd.DataFrame, np.ndarray]
) -> None:
    frame, kinds = five_minute
    frame.assign(timestamp=frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(tmp_path / "in.csv",
                                                                                         index=False)
    assert main(["backtest", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    flags = out["is_anomaly"].to_numpy(dtype=bool)
    # Before #13 no model was ever fitted: min_training_rows was 5,760 and 7 days at 5 min are 2,016 rows.
    assert _flags_by_kind(frame, kinds, flags) == {"spike": True, "dip": True, "level": True, "noise": True}
    # The first day has no model: the early rule judges it (scores, no claim on this clean day);
    # from then on at most two stray alarms in 9.5 days.
    first_day = (pd.to_datetime(out["timestamp"]) < START + pd.Timedelta(days=1)).to_numpy()
    assert not flags[first_day].any() and 0 < out["anomaly_score"].to_numpy()[first_day].max() < 0.5
    assert out["anomaly_score"].to_numpy()[~first_day].max() > 0
    assert _alarms_outside(frame, kinds, flags, pd.Timedelta(minutes=30)) <= 2


@pytest.mark.timeout(60)
def test_5_minute_verdicts_for_a_prefix_do_not_change_when_rows_are_appended(
    five_minute: tuple[pd.DataFrame, np.ndarray]
) -> None:
    frame, _ = five_minute
    prefix = 2000
    whole = replay(frame, Detector())
    changed = frame.copy()
    changed.loc[prefix:, "value"] *= 7.0
    alone = replay(frame.iloc[:prefix], Detector())
    pd.testing.assert_frame_equal(whole.iloc[:prefix], alone)
    pd.testing.assert_frame_equal(whole.iloc[:prefix], replay(changed, Detector()).iloc[:prefix])


@pytest.mark.timeout(60)
def test_a_gappy_1_minute_series_trains_after_a_day_and_flags_a_spike_after_a_gap() -> None:
    frame, kinds = _series(pd.Timedelta(minutes=1), days=3.0, seed=12)
    _plant(frame, kinds, pd.Timedelta(days=2, hours=2, minutes=1), 3, 4.0, "spike")  # right after the gap below
    _plant(frame, kinds, pd.Timedelta(days=2, hours=14), 30, 2.0, "level")
    stamps = frame["timestamp"]
    missing = np.random.default_rng(3).random(len(frame)) < 0.2  # pushed minutes with no requests
    missing |= ((stamps >= START + pd.Timedelta(hours=30)) & (stamps < START + pd.Timedelta(hours=33))).to_numpy()
    missing |= ((stamps >= START + pd.Timedelta(days=2)) & (stamps < START + pd.Timedelta(days=2, hours=2))).to_numpy()
    missing &= kinds == ""
    frame, kinds = frame[~missing].reset_index(drop=True), kinds[~missing]
    assert features.cadence(frame["timestamp"]) == pd.Timedelta(minutes=1)
    silent = Detector(before_model="silent")  # judged from the first model on, not by the early rule
    result = replay(frame, silent)
    judged = result["judged"].to_numpy()
    first = frame["timestamp"][judged].min()
    assert START + pd.Timedelta(days=1) <= first <= START + pd.Timedelta(days=1, hours=4)
    flags = result["is_anomaly"].to_numpy(dtype=bool)
    assert _flags_by_kind(frame, kinds, flags) == {"spike": True, "level": True}
    assert _alarms_outside(frame, kinds, flags, pd.Timedelta(minutes=30)) <= 2
    # Causal across the gaps too.
    prefix = int(np.searchsorted(frame["timestamp"], START + pd.Timedelta(days=2, hours=1)))
    pd.testing.assert_frame_equal(result.iloc[:prefix], replay(frame.iloc[:prefix], silent))


def test_cadence_is_the_median_spacing_snapped_to_a_round_step() -> None:
    rng = np.random.default_rng(1)
    every = START + pd.to_timedelta(np.cumsum(rng.uniform(250, 350, 500)), unit="s")
    assert features.cadence(every) == pd.Timedelta(minutes=5)
    gappy = pd.Series(START + pd.to_timedelta(15 * np.r_[np.arange(100), np.arange(5000, 5100)], unit="s"))
    assert features.cadence(gappy) == pd.Timedelta(seconds=15)
    assert features.cadence(pd.Series([START])) == features.DEFAULT_STEP


def test_features_do_not_depend_on_the_timestamp_unit() -> None:
    # The database hands timestamps over in microseconds, CSVs in nanoseconds, and cadence and the
    # step-scaled windows do arithmetic on integer timestamps: live and backtest must still agree.
    frame, _ = _series(pd.Timedelta(minutes=5), days=2.5, seed=4)
    ns = features.compute(features.prepare(frame), step=pd.Timedelta(minutes=5))
    us = features.compute(features.prepare(frame.assign(timestamp=frame["timestamp"].dt.as_unit("us"))),
                          step=pd.Timedelta(minutes=5))
    pd.testing.assert_frame_equal(ns, us)
    assert (ns["level_z_day"].iloc[-200:] != 0).any()


def test_a_series_that_turns_sparse_keeps_its_model_for_its_window_then_gets_the_early_rule() -> None:
    # Three days at 5 min, then a row every 40 min: from day ~9.6 a retraining finds fewer than the
    # 288 rows it needs in its 7 days. As live, the last model judges until it is older than those
    # 7 days, then the early rule does (it needs 30 rows in its 26 h, which 40 minutes give).
    rng = np.random.default_rng(3)
    start = pd.Timestamp("2026-03-02T00:00Z")
    dense = start + pd.Timedelta(minutes=5) * np.arange(3 * 288)
    sparse = dense[-1] + pd.Timedelta(minutes=40) * np.arange(1, 20 * 36 + 1)
    stamps = pd.DatetimeIndex(np.r_[dense, sparse])
    values = 100 * np.exp(rng.normal(0, 0.05, len(stamps)))
    kept, ruled = (int(np.searchsorted(stamps, pd.Timestamp(t))) for t in ("2026-03-14T12:00Z", "2026-03-22T12:00Z"))
    values[[kept, ruled]] *= 20
    frame = pd.DataFrame({"timestamp": stamps, "value": values})

    result = replay(frame, Detector())
    silent = replay(frame, Detector(before_model="silent"))  # only models judge
    first_model = int(np.flatnonzero(silent["judged"].to_numpy())[0])
    assert result["judged"].iloc[first_model:].all()
    assert result["is_anomaly"].iloc[[kept, ruled]].tolist() == [1, 1]
    # Day 12.5: three days after the last retraining that had its rows, the model still judges;
    # day 20.5, more than 7 days after it, no model does.
    assert silent["judged"].iloc[kept] and silent["is_anomaly"].iloc[kept] == 1
    assert not silent["judged"].iloc[ruled:].any()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("step", "days"), [(pd.Timedelta(hours=6), 120), (pd.Timedelta(days=1), 400)])
def test_a_series_slower_than_the_accumulated_levels_span_gets_a_model_and_flags_a_spike(
    step: pd.Timedelta, days: int
) -> None:
    # At a step of 4 h or more no 2-hour run of rows exists: the accumulated level reads the row's own
    # block. Until 4 Dec its lookup indexed past its table there, so any such series failed to train.
    frame, kinds = _series(step, days=days, seed=21)
    _plant(frame, kinds, pd.Timedelta(days=days - 20), 1, 4.0, "spike")
    result = replay(frame, Detector(before_model="silent"))
    judged = result["judged"].to_numpy(dtype=bool)
    assert frame["timestamp"][judged].min() == START + 288 * step  # the first model, after min_training_rows
    flags = result["is_anomaly"].to_numpy(dtype=bool)
    assert _flags_by_kind(frame, kinds, flags) == {"spike": True}
    assert _alarms_outside(frame, kinds, flags, 2 * step) <= 1
    reasons = features.compute(features.prepare(frame), None, step, True)
    assert np.isfinite(reasons["level_cusum"]).all()
    assert (reasons["run_minutes"].dropna() >= step / pd.Timedelta(minutes=1)).all()  # a run is a row at least
