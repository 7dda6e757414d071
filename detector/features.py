"""Causal per-row features of one series, defined once and shared by training, scoring and reasons.

A frame is (timestamp, value[, extra columns]). Every feature of row t reads only
rows at or before t, so scoring a row live and replaying it in a backtest give the
same numbers. Baselines (medians, spreads, usual ranges) come from rows strictly
before t, so an outlier never dilutes its own yardstick.

Any cadence: windows that are about sample size (the 60-point baseline, the 20-point
spread) count observations, so they mean "the last 60 checks" whether checks come
every 15 s or every 5 min, and a gap simply means the window reaches further back.
Windows that are about time are in time, with a floor in observations of the series'
step (`Scale`): persistence is 45 s of data (three checks at 15 s, one at 1 min or
more), the long baseline 6 h (at least 72 steps), "same time yesterday" +-15 min (at
least +-3 steps). The step is the series' observed cadence (median spacing, snapped
to a round value by `cadence`); a model stores the step it was trained with and its
rows are scored with the same one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

logger = logging.getLogger(__name__)

# Robust spreads of a flat series are 0; this floor (in log units, about 1 %) keeps
# z-scores finite and makes "no change" score 0 rather than NaN.
SCALE_FLOOR = 0.01
# A series of low counts (tweets, purchases, a few errors a minute) moves by whole counts: a window of
# 0s and 1s has an IQR of 0 or of log 2, so its spread ratio and z-scores leapt by orders of magnitude
# between windows that differ by one count (Twitter_volume_IBM's 11 spread alarms, #13.4, 4 Dec). The
# robust spreads are never below the series' rounding noise at the row's level: the standard deviation
# of a uniform rounding error, a quantum / sqrt(12), in symlog units at the level of the 60-point
# baseline. The quantum is the smallest change between consecutive values over the long baseline (6 h,
# at least 72 steps: live scoring reads those rows before a new one, `needed`), read once 60 values are in;
# it counts at most as much as one count at 0 does, so a series of 0s and 810-byte writes keeps the
# yardstick of a count (a write is a signal). Values with decimals have a quantum far below their level:
# their floor stays SCALE_FLOOR.
QUANTUM_SHARE = 1.0 / np.sqrt(12.0)
QUANTUM_CAP = float(np.log(2.0))
# Rolling windows: short noise baseline, persistence, spread, long baseline.
BASE_POINTS = 60
SPREAD_POINTS = 20
# ...but no longer than this in time (and never fewer than the floor): at 5 min, 60 points are
# 5 h, across which a daily cycle moves the median and widens the spread more than noise does.
BASE_SPAN, BASE_FLOOR = pd.Timedelta(hours=1), 12
SPREAD_SPAN, SPREAD_FLOOR = pd.Timedelta(minutes=30), 10
RECENT_POINTS, RECENT_SPAN, RECENT_FLOOR = 10, pd.Timedelta(minutes=30), 5
LONG_WINDOW = pd.Timedelta(hours=6)
LONG_POINTS = 72
SEASON_LAG = pd.Timedelta(days=1)
SEASON_HALF_WIDTH = pd.Timedelta(minutes=15)
SEASON_POINTS = 3
# The accumulated level (`level_cusum`, `Window.accumulated`): each row's deviation from its baselines,
# capped so that one far row cannot make it alone, less a slack of one noise unit (half the 2-unit
# shift it is for), summed over the run of rows that maximises it within the last 2 h (#13.4, 4 Dec).
CUSUM_SLACK = 1.0
CUSUM_CAP = 6.0
CUSUM_SPAN = pd.Timedelta(hours=2)
CUSUM_BLOCK = pd.Timedelta(minutes=5)
# ...over runs of at least 30 min: a burst of a few checks is the point features' to judge, and at 15 s
# four 10x checks counted on their own kept the level flagged for 5 min after them (bench/detector_speed.py).
CUSUM_SHORTEST = pd.Timedelta(minutes=30)
# How long a deviation must last before the point features call it persistent: three checks at 15 s.
PERSIST = pd.Timedelta(seconds=45)
DEFAULT_STEP = pd.Timedelta(seconds=15)
# Observed cadences are snapped to one of these, so a model's features do not depend on jitter.
STEPS = tuple(pd.Timedelta(s) for s in (
    "1s", "2s", "5s", "10s", "15s", "20s", "30s", "1min", "2min", "3min", "5min", "10min", "15min", "20min",
    "30min", "1h", "2h", "3h", "6h", "12h", "1D"))


def cadence(stamps: pd.Series | pd.DatetimeIndex | np.ndarray, recent: int = 2000) -> pd.Timedelta:
    """The series' step: median spacing of its last `recent` distinct timestamps, snapped to STEPS.

    The median ignores gaps (outages, quiet minutes) and bursts; DEFAULT_STEP when fewer than two rows.
    """
    # Through DatetimeIndex, not np.asarray: a tz-aware Series would become an object array of
    # Timestamps (a third of a 7-day 15 s training's feature time went there).
    ns = pd.DatetimeIndex(stamps)[-recent - 1:].as_unit("ns").asi8
    diffs = np.diff(ns)
    diffs = diffs[diffs > 0]
    if not len(diffs):
        return DEFAULT_STEP
    median = float(np.median(diffs))
    grid = np.array([t.value for t in STEPS], dtype="float64")
    return STEPS[int(np.argmin(np.abs(np.log(grid / median))))]


@dataclass(frozen=True)
class Scale:
    """The time-denominated windows of one step (see the module docstring)."""

    step: pd.Timedelta

    @property
    def base(self) -> int:
        return int(np.clip(round(BASE_SPAN / self.step), BASE_FLOOR, BASE_POINTS))

    @property
    def spread(self) -> int:
        return int(np.clip(round(SPREAD_SPAN / self.step), SPREAD_FLOOR, SPREAD_POINTS))

    @property
    def recent(self) -> int:
        """Checks in the recent level: 10, but no more than 30 min of them (6 at 5 min, at least 5).

        At 5 min 10 checks are 50 min, so a 30-minute shift never held the median (#13.4).
        """
        return int(np.clip(round(RECENT_SPAN / self.step), RECENT_FLOOR, RECENT_POINTS))

    @property
    def persist(self) -> int:
        return max(1, round(PERSIST / self.step))

    @property
    def long(self) -> pd.Timedelta:
        return max(LONG_WINDOW, LONG_POINTS * self.step)

    @property
    def season_half(self) -> pd.Timedelta:
        return max(SEASON_HALF_WIDTH, SEASON_POINTS * self.step)

    @property
    def block(self) -> pd.Timedelta:
        """The grid the accumulated level's runs start on: 5 min, or the step when it is longer."""
        return max(CUSUM_BLOCK, self.step)

    @property
    def lookback(self) -> pd.Timedelta:
        """History a row's features read: a day plus the seasonal window, or the long baseline and point windows."""
        return max(SEASON_LAG + 2 * self.season_half, self.long + (2 * BASE_POINTS + 2 * SPREAD_POINTS) * self.step) \
            + pd.Timedelta(minutes=90)


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame sorted by time (stable, duplicates kept), UTC timestamps, float values; non-finite values as NaN."""
    for column in ("timestamp", "value"):
        if column not in frame.columns:
            raise KeyError(f"missing column {column!r}")
    out = frame.copy()
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True)
    values = pd.to_numeric(out["value"], errors="coerce").astype("float64")
    out["value"] = values.where(np.isfinite(values))
    return out.sort_values("timestamp", kind="stable")


def symlog(x: np.ndarray | pd.Series) -> np.ndarray:
    """Log scale that keeps sign and zero: latency noise is multiplicative, error rates sit near 0."""
    return np.asarray(np.sign(x) * np.log1p(np.abs(x)), dtype="float64")


class Window:
    """Finite observations of one sorted series with their shared rolling statistics."""

    def __init__(self, timestamps: pd.Series, values: pd.Series, step: pd.Timedelta = DEFAULT_STEP,
                 two_sided: bool = False) -> None:
        self.scale = Scale(step)
        self.two_sided = two_sided
        # In ns whatever the input's unit (the database gives us): the seasonal lookup, the rate
        # of change and cadence do arithmetic on asi8.
        index = pd.DatetimeIndex(timestamps).as_unit("ns").rename(None)
        self.index = index
        self.x = pd.Series(values.to_numpy(dtype="float64"), index=index)
        self.y = pd.Series(symlog(self.x.to_numpy()), index=index)

    @cached_property
    def base_windows(self) -> Sorted:
        return Sorted(self.y.shift(1), self.scale.base)

    @cached_property
    def base_median(self) -> pd.Series:
        return self.base_windows.median(min_periods=10)

    @cached_property
    def base_scale(self) -> pd.Series:
        return _iqr_scale(self.base_windows, min_periods=10, floor=self.floor)

    @cached_property
    def floor(self) -> np.ndarray:
        """Per row, the least a robust spread may be: SCALE_FLOOR, or the rounding noise of the values at the
        level of the 60-point baseline (QUANTUM_SHARE)."""
        steps = self.x.diff().abs()
        quantum = steps.where(steps > 0).rolling(self.scale.long, min_periods=1).min()
        quantum.iloc[:BASE_POINTS] = np.nan  # a quantum seen in fewer values is only an upper bound
        level = _unsymlog(self.base_median.fillna(0.0)).abs().to_numpy()
        rounding = symlog(level + quantum.fillna(0.0).to_numpy()) - symlog(level)
        floor: np.ndarray = np.maximum(SCALE_FLOOR, QUANTUM_SHARE * np.minimum(rounding, QUANTUM_CAP))
        return floor

    @cached_property
    def steady_scale(self) -> pd.Series:
        """The z-scores' unit: the short-term noise, but never below its usual value over the long baseline.

        One window's IQR (12 rows at 5 min) is a noisy yardstick: a calm hour shrank it and
        made ordinary rows look far out, so the calibrated tail sat high and small spikes fell
        under it (bench/detector_quality.py, docs/detector.md). Never below: a noisier hour
        still widens it, so noise alone is the spread feature's to judge.
        """
        usual = self.base_scale.rolling(self.scale.long, min_periods=10).median()
        return pd.Series(np.maximum(self.base_scale, usual.fillna(self.base_scale)), index=self.base_scale.index)

    @cached_property
    def robust_z(self) -> pd.Series:
        return ((self.y - self.base_median) / self.steady_scale).fillna(0.0)

    @cached_property
    def recent_median(self) -> pd.Series:
        return Sorted(self.y, self.scale.recent).median(min_periods=1)

    @cached_property
    def long_median(self) -> pd.Series:
        # The 6 h baseline ends 10 points back, so a fresh shift is compared with what came before it.
        return self.y.rolling(self.scale.long, min_periods=10).median().shift(10)

    @cached_property
    def accumulated(self) -> tuple[np.ndarray, np.ndarray]:
        """(above, below): see `accumulation`."""
        above, below, _, _ = self.accumulation
        return above, below

    @cached_property
    def accumulation(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(above, below) per row: how much evidence the recent rows give that the level is above both
        its baselines (same time yesterday and the 6 h median, either alone when the other is missing)
        or below both. For a run of the last m rows, m x (their mean's distance past the farther
        baseline, in noise units, less CUSUM_SLACK); the largest over the runs that start at a block
        boundary (`Scale.block`) at least CUSUM_SHORTEST and at most CUSUM_SPAN back, or 0. Each row
        counts at most CUSUM_CAP of its own short-term noise units past the median before it (the
        60-point baseline, at most 1 h), so one far row cannot make it alone, and a row's value reads
        no baseline older than its own (live scoring needs no more history than the other features).
        Measured against the row's current baselines: once they have taken a new level in, its rows
        stop counting (a CUSUM of each row's own gap kept flagging a level shift for 2 h after the 6 h
        median had moved).
        """
        high = np.fmax(self.season_median.to_numpy(), self.long_median.to_numpy())
        low = np.fmin(self.season_median.to_numpy(), self.long_median.to_numpy())
        noise = self.steady_scale.to_numpy()
        y = self.y.to_numpy()
        near, unit = self.base_median.to_numpy(), self.base_scale.to_numpy()
        sums = [np.r_[0.0, np.cumsum(np.nan_to_num(clipped))] for clipped in
                (np.fmin(y, near + CUSUM_CAP * unit), np.fmax(y, near - CUSUM_CAP * unit))]
        stamps = self.index.asi8
        block = self.scale.block.value
        runs = max(round(CUSUM_SPAN.value / block), 1)  # at a step of 4 h or more, the row's own block only
        # A run's first row is the first at or after its boundary: looked up once per block of the
        # series' time range (and the span before it), then gathered for each row and run.
        blocks = stamps // block if len(stamps) else np.zeros(0, dtype="int64")
        origin = int(blocks[0]) - runs if len(blocks) else 0
        first_row = np.searchsorted(stamps, (origin + np.arange(int(blocks[-1]) - origin + 1 if len(blocks) else 0))
                                    * block)
        shortest = min(int(np.ceil(CUSUM_SHORTEST.value / block)), runs - 1)
        starts = first_row[(blocks - origin)[:, None] - np.arange(shortest, runs)]
        rows = np.arange(len(y))
        count = (rows + 1)[:, None] - starts  # starts <= row: the row's own block has it
        # Per run: the sum past (baseline + slack) in the series' units; the noise unit divides the best.
        # With each side's best run's first row, for reasons (`_context`), or -1 without one.
        out: list[np.ndarray] = []
        for side in ((sums[0][rows + 1][:, None] - sums[0][starts] - count * (high + CUSUM_SLACK * noise)[:, None]),
                     (count * (low - CUSUM_SLACK * noise)[:, None] - (sums[1][rows + 1][:, None] - sums[1][starts]))):
            best = np.argmax(side, axis=1) if side.shape[1] else np.zeros(len(rows), dtype="int64")
            value = side[rows, best] if side.shape[1] else np.zeros(len(rows))
            out.append(np.nan_to_num(np.clip(value, 0.0, None) / noise))
            out.append(np.where(value > 0, starts[rows, best] if side.shape[1] else -1, -1))
        return out[0], out[2], out[1], out[3]

    @cached_property
    def spread(self) -> pd.Series:
        return _iqr_scale(Sorted(self.y, self.scale.spread), min_periods=5, floor=self.floor)

    @cached_property
    def season_median(self) -> pd.Series:
        """Median of the 30 min (at least 7 steps) around the same time a day earlier; NaN when that day is missing."""
        half = self.scale.season_half
        windowed = self.y.rolling(2 * half, min_periods=min(5, 2 * SEASON_POINTS)).median()
        stamps = self.index.asi8
        wanted = (self.index - SEASON_LAG + half).asi8
        pos = np.searchsorted(stamps, wanted, side="right") - 1
        found = windowed.to_numpy()[np.clip(pos, 0, None)]
        too_old = (pos < 0) | (wanted - stamps[np.clip(pos, 0, None)] > half.value)
        return pd.Series(np.where(too_old, np.nan, found), index=self.y.index)


def _iqr_scale(windows: Sorted, min_periods: int, floor: np.ndarray) -> pd.Series:
    """The windows' IQR as a normal standard deviation, never below `floor` (per row); NaN below min_periods."""
    iqr = (windows.quantile(0.75, min_periods) - windows.quantile(0.25, min_periods)).to_numpy()
    return pd.Series(np.where(np.isnan(iqr), np.nan, np.fmax(iqr / 1.349, floor)), index=windows.index)


class Sorted:
    """Every count window of a series (`y.rolling(points)`), sorted once: pandas' rolling medians and
    quantiles of those windows, the same numbers bit for bit (NaN counts as absent, as in pandas).

    pandas keeps a skiplist per statistic: 8-10 ms each for a week at 15 s, and the 60-point
    baseline reads three (median, quartiles). Sorting all 60-point windows takes about 4 ms,
    and every statistic is then a lookup (#17.6).
    """

    def __init__(self, y: pd.Series, points: int) -> None:
        self.index = y.index
        self.points = points
        padded = np.concatenate([np.full(points - 1, np.nan), y.to_numpy(dtype="float64")])
        windows = sliding_window_view(padded, points) if len(y) else np.empty((0, points))
        self.ordered = np.sort(windows, axis=1).ravel()  # NaN last
        present = np.concatenate([[0], np.cumsum(~np.isnan(padded))])
        self.nobs = present[points:] - present[:-points]
        self.starts = np.arange(len(y)) * points

    def _at(self, rank: np.ndarray) -> np.ndarray:
        return np.asarray(self.ordered[self.starts + np.clip(rank, 0, self.points - 1)])

    def median(self, min_periods: int) -> pd.Series:
        """`y.rolling(points, min_periods).median()`: the middle value, or the mean of the middle two."""
        middle = self.nobs // 2
        upper = self._at(middle)
        result = np.where(self.nobs % 2 == 1, upper, (upper + self._at(middle - 1)) / 2)
        return self._series(result, min_periods)

    def quantile(self, q: float, min_periods: int) -> pd.Series:
        """`y.rolling(points, min_periods).quantile(q)`: linear between the values around rank q (nobs - 1)."""
        rank = q * (self.nobs - 1).astype("float64")
        below = rank.astype("int64")
        low = self._at(below)
        result = np.where(rank == below, low, low + (self._at(below + 1) - low) * (rank - below))
        return self._series(result, min_periods)

    def _series(self, values: np.ndarray, min_periods: int) -> pd.Series:
        return pd.Series(np.where(self.nobs >= max(min_periods, 1), values, np.nan), index=self.index)


@dataclass(frozen=True)
class Feature:
    """One feature: how to compute it from a Window and how to say it to a person."""

    name: str
    compute: Callable[[Window], pd.Series]
    kind: str  # "value", "level", "run", "spread" or "plain": picks the phrasing in detector.reasons
    label: str


def _hour(w: Window) -> pd.Series:
    return pd.Series(w.index.hour + w.index.minute / 60.0, index=w.index, dtype="float64")


def _weekday(w: Window) -> pd.Series:
    return pd.Series(w.index.day_of_week, index=w.index, dtype="float64")


def _mean10(w: Window) -> pd.Series:
    return w.x.rolling(10, min_periods=1).mean()


def _std10(w: Window) -> pd.Series:
    return w.x.rolling(10, min_periods=2).std().fillna(0.0)


def _zscore60(w: Window) -> pd.Series:
    rolling = w.x.rolling(60, min_periods=2)
    std = rolling.std().replace(0.0, np.nan)
    return ((w.x - rolling.mean()) / std).fillna(0.0)


def _pct_dev10(w: Window) -> pd.Series:
    mean = _mean10(w)
    return (100.0 * (w.x - mean) / mean.abs().replace(0.0, np.nan)).fillna(0.0)


def _rate_of_change(w: Window) -> pd.Series:
    # Per minute of elapsed time, so the same slope reads the same at any cadence and across a gap.
    minutes = pd.Series(w.index.asi8, index=w.index).diff() / 60e9
    return (w.x.diff() / minutes.where(minutes > 0)).fillna(0.0)


# For latency and error rates only "worse than usual" is an incident. The robust features
# keep their better-than-usual side shrunk (not cut: a cut piles rows onto one value,
# which makes every rise look isolated) so the forest rarely spends a split on it.
BETTER_SIDE_SHRINK = 5.0


def _worse(v: pd.Series) -> pd.Series:
    return v.where(v >= 0, v / BETTER_SIDE_SHRINK)


def _away(w: Window, v: pd.Series) -> pd.Series:
    """How far from usual: the worse side only for a metric where higher is worse, else either side."""
    return v.abs() if w.two_sided else _worse(v)


def _z_persist(w: Window) -> pd.Series:
    # The middle of the z-scores of the last PERSIST (three at 15 s): one stray check never
    # moves it, two in a row do. At a minute or more one row is already PERSIST of data.
    return _away(w, Sorted(w.robust_z, w.scale.persist).median(min_periods=1))


def _z_run3(w: Window) -> pd.Series:
    # The lowest of the z-scores of the last PERSIST: high only when every check in it is far
    # out, so two benign stray 15 s checks that happen to be adjacent never raise it.
    points = w.scale.persist
    rolling = w.robust_z.rolling(points, min_periods=points)
    high = rolling.min().fillna(0.0)
    if not w.two_sided:
        return _worse(high)
    return high.clip(lower=-rolling.max().fillna(0.0))  # every check in it far out on the same side


def _nearer(day: pd.Series, long: pd.Series) -> pd.Series:
    """The nearer of two gaps when both point the same way, 0 when they disagree, either alone when the
    other is missing (NaN when both are)."""
    both = np.where(np.sign(day) == np.sign(long), np.sign(day) * np.minimum(day.abs(), long.abs()), 0.0)
    return pd.Series(both, index=day.index).where(day.notna() & long.notna(), day.fillna(long))


def _level_z_day(w: Window) -> pd.Series:
    # Away from both same time yesterday and the long baseline, by the nearer of the two: a day
    # unlike yesterday (a weekend, a first Monday) stops counting once the last hours agree with it.
    day = (w.recent_median - w.season_median) / w.steady_scale
    long = (w.recent_median - w.long_median) / w.steady_scale
    return _away(w, _nearer(day, long).fillna(0.0))


def _level_cusum(w: Window) -> pd.Series:
    # Evidence for a changed level that accumulates row by row: two noise units for an hour, which no
    # single row's z and no 30-minute median shows in AR noise, sums to one unit per row.
    # Summed per row, so its size depends on the cadence; its calibrated envelope, per series, judges it.
    up, down = w.accumulated
    if w.two_sided:
        return pd.Series(np.maximum(up, down), index=w.index)
    return pd.Series(np.where(up >= down, up, -down / BETTER_SIDE_SHRINK), index=w.index)


def _spread_ratio(w: Window) -> pd.Series:
    usual = w.spread.shift(w.scale.spread).rolling(w.scale.long, min_periods=10).median()
    ratio = w.spread / usual
    return _away(w, pd.Series(np.log(ratio.to_numpy()), index=ratio.index).fillna(0.0))


FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        # The reference set from the issue.
        Feature("rolling_mean_10", _mean10, "plain", "rolling mean of 10"),
        Feature("rolling_std_10", _std10, "plain", "rolling std of 10"),
        Feature("zscore_60", _zscore60, "plain", "z-score vs 60 points"),
        Feature("pct_deviation_10", _pct_dev10, "plain", "% deviation from rolling mean"),
        Feature("rate_of_change", _rate_of_change, "plain", "change per minute vs previous point"),
        Feature("hour_of_day", _hour, "plain", "hour of day"),
        Feature("weekday", _weekday, "plain", "weekday"),
        # Robust additions that earned their place on bench/detector_quality.py.
        Feature("robust_z_persist", _z_persist, "value", "value vs last 60 points"),
        Feature("robust_z_run3", _z_run3, "value", "values for 45 s in a row vs last 60 points"),
        Feature("level_z_day", _level_z_day, "level", "level vs same time yesterday"),
        Feature("spread_ratio", _spread_ratio, "spread", "spread vs last 6 h"),
        Feature("level_cusum", _level_cusum, "run", "level vs same time yesterday, accumulated over 2 h"),
    )
}

REFERENCE_FEATURES = (
    "rolling_mean_10",
    "rolling_std_10",
    "zscore_60",
    "pct_deviation_10",
    "rate_of_change",
    "hour_of_day",
    "weekday",
)

# Columns that are not model inputs but let reasons state a usual range in the series' own units.
CONTEXT = (
    "value", "usual_low", "usual_high",  # this point vs the last 60 points (10-90 %)
    "level", "level_low", "level_high",  # median of the last 10 (30 min at most) vs its baseline +-2 noise units
    "level_checks",  # how many checks that median reads (Scale.recent)
    "spread", "usual_spread",  # IQR of the last 20 vs its usual value over 6 h
    "run_level", "run_minutes",  # the accumulated level's best run: its mean, and the minutes it spans
)


def _context(w: Window) -> dict[str, pd.Series]:
    usual = Sorted(w.x.shift(1), w.scale.base)
    baseline = w.season_median.fillna(w.long_median)
    windows = Sorted(w.x, w.scale.spread)
    spread = windows.quantile(0.75, 5) - windows.quantile(0.25, 5)
    return {
        "value": w.x,
        "usual_low": usual.quantile(0.1, 10),
        "usual_high": usual.quantile(0.9, 10),
        "level": _unsymlog(w.recent_median),
        "level_low": _unsymlog(baseline - 2 * w.steady_scale),
        "level_high": _unsymlog(baseline + 2 * w.steady_scale),
        "level_checks": pd.Series(float(w.scale.recent), index=w.index),
        "spread": spread,
        "usual_spread": spread.shift(w.scale.spread).rolling(w.scale.long, min_periods=10).median(),
        **_run(w),
    }


def _run(w: Window) -> dict[str, pd.Series]:
    """The accumulated level's best run on the side it points to (above unless below is larger, as
    `_level_cusum` reads them): the mean of its values and the minutes its rows cover (first to last
    plus a step: 12 rows at 5 min are 60 min); NaN without one."""
    above, below, above_start, below_start = w.accumulation
    start = np.where(above >= below, above_start, below_start)
    found = start >= 0
    first = np.where(found, start, 0)
    rows = np.arange(len(start))
    total = np.r_[0.0, np.cumsum(np.nan_to_num(w.x.to_numpy()))]
    level = np.where(found, (total[rows + 1] - total[first]) / (rows + 1 - first), np.nan)
    stamps = w.index.asi8
    minutes = np.where(found, (stamps - stamps[first] + w.scale.step.value) / 60e9, np.nan)
    return {"run_level": pd.Series(level, index=w.index), "run_minutes": pd.Series(minutes, index=w.index)}


def _unsymlog(y: pd.Series) -> pd.Series:
    return pd.Series(np.sign(y.to_numpy()) * np.expm1(np.abs(y.to_numpy())), index=y.index)


def needed(prepared: pd.DataFrame, since: pd.Timestamp, step: pd.Timedelta = DEFAULT_STEP) -> np.ndarray:
    """Rows of a prepared frame that the features of rows after `since` read.

    The long baseline (plus 100 rows for the point-count windows) and the half hour around
    the same time yesterday; live scoring computes on just these, which gives the same
    numbers as the full history at a quarter of the cost.
    """
    scale = Scale(step)
    stamps = prepared["timestamp"]
    fresh = (stamps > since).to_numpy()
    if not fresh.any():
        return fresh
    first, last = stamps[fresh].iloc[0], stamps.iloc[-1]
    start = max(int(np.searchsorted(stamps, first - scale.long)) - 2 * BASE_POINTS - SPREAD_POINTS, 0)
    recent = np.arange(len(stamps)) >= start
    yesterday = ((stamps > first - SEASON_LAG - 2 * scale.season_half)
                 & (stamps <= last - SEASON_LAG + scale.season_half)).to_numpy()
    return np.asarray(recent | yesterday)


def compute(
    frame: pd.DataFrame, names: tuple[str, ...] | list[str] | None = None, step: pd.Timedelta | None = None,
    two_sided: bool = False, context: bool = True,
) -> pd.DataFrame:
    """Features (all, or `names`) for a prepared frame, indexed like it; rows without a finite value get NaN.

    `step` is the cadence the windows are scaled to (a model's own); None estimates it from the frame.
    two_sided: deviations either way count (a metric of unknown meaning, as in a backtest CSV);
    otherwise only higher than usual does (latency, error rates: the live series).
    context: add the CONTEXT columns reasons phrase verdicts with; a training reads none of them
    (they were a third of a 7-day 15 s training's feature time, #17.6).
    """
    wanted = list(FEATURES) if names is None else list(names)
    unknown = [n for n in wanted if n not in FEATURES]
    if unknown:
        raise KeyError(f"unknown feature(s): {', '.join(unknown)}")
    finite = frame["value"].notna()
    observed = frame.loc[finite]
    columns: dict[str, pd.Series] = {}
    if len(observed):
        window = Window(observed["timestamp"], observed["value"], step or cadence(observed["timestamp"]),
                        two_sided)
        for name in wanted:
            columns[name] = pd.Series(FEATURES[name].compute(window).to_numpy(), index=observed.index)
        if context:
            for name, series in _context(window).items():
                columns[name] = pd.Series(series.to_numpy(), index=observed.index)
    out = pd.DataFrame(columns, index=observed.index, columns=[*wanted, *(CONTEXT if context else ())],
                       dtype="float64")
    return out.reindex(frame.index)
