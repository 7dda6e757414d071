"""Labelled synthetic probe-latency series for the quality benchmark and its CI floor.

Each series: checks every 15 s (±1 s jitter) over several days, a daily cycle,
multiplicative autocorrelated noise, benign single-point jitter, a few outage
gaps, and injected incidents of known extent. A failed check is recorded as the
probe timeout (10 s), the latency a timed-out probe reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.signal import lfilter

STEP_S = 15.0
TIMEOUT_MS = 10_000.0
KINDS = ("spike", "level_shift", "degradation", "variance_burst", "failure_burst")
START = pd.Timestamp("2026-03-02T00:00:00Z")


@dataclass(frozen=True)
class Incident:
    kind: str
    start: pd.Timestamp
    end: pd.Timestamp


@dataclass(frozen=True)
class LabelledSeries:
    name: str
    frame: pd.DataFrame  # timestamp, value
    incidents: tuple[Incident, ...]


def generate(seed: int, days: float = 4.0, incidents_per_day: float = 2.0, name: str = "") -> LabelledSeries:
    """One labelled series; the same seed always gives the same series."""
    rng = np.random.default_rng(seed)
    n = int(days * 86400 / STEP_S)
    seconds = np.arange(n) * STEP_S + rng.uniform(-1.0, 1.0, n)
    base = rng.uniform(40.0, 400.0)
    amplitude = rng.uniform(0.1, 0.4)
    phase = rng.uniform(0, 2 * np.pi)
    cycle = 1.0 + amplitude * np.sin(2 * np.pi * seconds / 86400.0 + phase)
    sigma = np.full(n, rng.uniform(0.05, 0.15))
    factor = np.ones(n)
    failed = np.zeros(n, dtype=bool)
    incidents = []
    for kind, first, last in _place(rng, n, days, incidents_per_day):
        _inject(rng, kind, first, last, factor, sigma, failed)
        incidents.append(Incident(kind, _at(seconds[first]), _at(seconds[last])))
    noise = _ar_noise(rng, n, sigma, phi=rng.uniform(0.0, 0.6))
    value = base * cycle * factor * np.exp(noise)
    jitter = rng.random(n) < 0.003
    value[jitter] *= rng.uniform(2.0, 6.0, jitter.sum())
    value[failed] = TIMEOUT_MS * rng.uniform(1.0, 1.01, failed.sum())
    keep = _gaps(rng, n, incidents_at=[(i.start, i.end) for i in incidents], seconds=seconds)
    frame = pd.DataFrame({"timestamp": _stamps(seconds[keep]), "value": np.round(value[keep], 2)})
    return LabelledSeries(name or f"synthetic-{seed}", frame.reset_index(drop=True), tuple(incidents))


def _at(seconds: float) -> pd.Timestamp:
    return START + pd.to_timedelta(seconds, unit="s")


def _stamps(seconds: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(START + pd.to_timedelta(seconds, unit="s"))


def _ar_noise(rng: np.random.Generator, n: int, sigma: np.ndarray, phi: float) -> np.ndarray:
    shocks = rng.standard_normal(n) * np.sqrt(1 - phi**2)
    noise: np.ndarray = np.asarray(lfilter([1.0], [1.0, -phi], shocks), dtype="float64") * sigma
    return noise


def _place(rng: np.random.Generator, n: int, days: float, per_day: float) -> list[tuple[str, int, int]]:
    """Non-overlapping incidents at least an hour apart, kinds drawn evenly."""
    wanted = rng.poisson(per_day * days)
    placed: list[tuple[str, int, int]] = []
    hour = int(3600 / STEP_S)
    for _ in range(wanted * 20):
        if len(placed) >= wanted:
            break
        kind = KINDS[int(rng.integers(len(KINDS)))]
        length = _length(rng, kind)
        first = int(rng.integers(hour, n - length - hour))
        last = first + length - 1
        if all(last + hour < a or first > b + hour for _, a, b in placed):
            placed.append((kind, first, last))
    return sorted(placed, key=lambda p: p[1])


def _length(rng: np.random.Generator, kind: str) -> int:
    minutes = {
        "spike": (0.75, 3.0),
        "level_shift": (20.0, 120.0),
        "degradation": (60.0, 180.0),
        "variance_burst": (10.0, 60.0),
        "failure_burst": (3.0, 15.0),
    }[kind]
    return max(3, int(rng.uniform(*minutes) * 60 / STEP_S))


def _inject(
    rng: np.random.Generator, kind: str, first: int, last: int,
    factor: np.ndarray, sigma: np.ndarray, failed: np.ndarray,
) -> None:
    span = slice(first, last + 1)
    size = last - first + 1
    if kind == "spike":
        factor[span] *= rng.uniform(3.0, 8.0)
    elif kind == "level_shift":
        factor[span] *= rng.uniform(1.6, 2.5)
    elif kind == "degradation":
        factor[span] *= np.linspace(1.0, rng.uniform(2.0, 3.5), size)
    elif kind == "variance_burst":
        sigma[span] *= rng.uniform(4.0, 8.0)
    else:
        hits = rng.random(size) < rng.uniform(0.3, 0.8)
        hits[[0, -1]] = True  # the labelled extent is from first to last failure
        failed[span] |= hits


def _gaps(rng: np.random.Generator, n: int, incidents_at: list[tuple[pd.Timestamp, pd.Timestamp]],
          seconds: np.ndarray) -> np.ndarray:
    """Drop 0-2 stretches of 5-90 minutes (prober restarts), never inside an incident."""
    keep = np.ones(n, dtype=bool)
    stamps = _stamps(seconds)
    for _ in range(int(rng.integers(0, 3))):
        length = int(rng.uniform(5, 90) * 60 / STEP_S)
        first = int(rng.integers(0, n - length))
        lo, hi = stamps[first], stamps[first + length - 1]
        if any(not (hi < a or lo > b) for a, b in incidents_at):
            continue
        keep[first:first + length] = False
    return keep


# Real-world shapes at other cadences (bench/detector_quality.py --suite shapes): what public
# benchmarks of 1- and 5-minute metrics look like, not only probe latency.
SHAPE_KINDS = ("spike", "dip", "level_shift", "transient_shift", "variance_regime", "variance_burst")
# Permanent changes are labelled from their start for this long (in steps, at least an hour):
# the time in which a detector should say "this changed".
PERMANENT_LABEL_STEPS = 12


# Textures of normal behaviour real series have and the plain shapes lack (#13, seventh session).
# Name -> the tag in a series' name ("plain" keeps the names of before).
TEXTURES = {"plain": "", "heavy": "heavy-"}


def shapes(seed: int, step_s: float = 300.0, days: float = 21.0, incidents_per_day: float = 0.5,
           irregular: bool = False, name: str = "", texture: str = "plain") -> LabelledSeries:
    """A labelled series at `step_s` with daily and weekly seasonality, trend, AR noise and incidents.

    Incidents: spikes and dips of 1-3 steps (at least 1-3 minutes), level shifts that stay,
    transient shifts of 30 min-3 h, a noise regime that stays, noise bursts of 30 min-2 h.
    irregular=True drops ~15 % of rows at random and 0-2 stretches of 1-6 h, with +-20 % jitter.
    texture="heavy" gives the same series (same incidents) the normal behaviour of real counters
    and latencies on top (`_heavy`): heavy-tailed noise, unlabelled bursts and, on half the
    series, quantised low counts. Its draws come from a second generator, so "plain" is unchanged.
    """
    name = name or f"shapes-{int(step_s)}s-{_tag(texture)}{seed}"
    rng = np.random.default_rng(seed)
    n = int(days * 86400 / step_s)
    jitter = 0.2 if irregular else 0.02
    seconds = np.arange(n) * step_s + rng.uniform(-jitter, jitter, n) * step_s
    day = 2 * np.pi * seconds / 86400.0
    daily = 1.0 + rng.uniform(0.0, 0.5) * np.sin(day + rng.uniform(0, 2 * np.pi)) \
        + rng.uniform(0.0, 0.15) * np.sin(2 * day + rng.uniform(0, 2 * np.pi))
    weekday = ((seconds // 86400 + rng.integers(7)) % 7) >= 5
    weekend = np.where(weekday, rng.uniform(0.5, 1.0), 1.0)
    # Weekends ease in and out over ~6 h, as traffic does, rather than stepping at midnight.
    weekly = pd.Series(weekend).rolling(max(1, int(6 * 3600 / step_s)), min_periods=1, center=True).mean().to_numpy()
    trend = np.exp(rng.uniform(-0.3, 0.3) * seconds / seconds[-1])
    base = rng.uniform(5.0, 500.0)
    sigma = np.full(n, rng.uniform(0.03, 0.15))
    factor = np.ones(n)
    incidents = []
    permanent = False
    for kind, first, last in _place_shapes(rng, n, step_s, days, incidents_per_day):
        if kind in ("level_shift", "variance_regime"):
            if permanent:
                continue
            permanent = True
        span = slice(first, last + 1)
        if kind == "spike":
            factor[span] *= rng.uniform(2.5, 6.0)
        elif kind == "dip":
            factor[span] *= rng.uniform(0.15, 0.45)
        elif kind == "level_shift":
            factor[first:] *= rng.choice([rng.uniform(1.6, 2.5), 1 / rng.uniform(1.6, 2.5)])
        elif kind == "transient_shift":
            factor[span] *= rng.choice([rng.uniform(1.6, 2.5), 1 / rng.uniform(1.6, 2.5)])
        elif kind == "variance_regime":
            sigma[first:] *= rng.uniform(3.0, 5.0)
        else:
            sigma[span] *= rng.uniform(4.0, 8.0)
        incidents.append(Incident(kind, _at(seconds[first]), _at(seconds[last])))
    noise = _ar_noise(rng, n, sigma, phi=rng.uniform(0.0, 0.8))
    value = base * daily * weekly * trend * factor * np.exp(noise)
    value = _heavy(np.random.default_rng([seed, 13]), value, sigma, seconds, step_s, incidents) \
        if texture == "heavy" else value
    keep = np.ones(n, dtype=bool)
    if irregular:
        keep &= rng.random(n) >= 0.15
        for _ in range(int(rng.integers(0, 3))):
            length = int(rng.uniform(1, 6) * 3600 / step_s)
            first = int(rng.integers(0, n - length))
            lo, hi = _at(seconds[first]), _at(seconds[first + length - 1])
            if not any(not (hi < i.start or lo > i.end) for i in incidents):
                keep[first:first + length] = False
    for i in incidents:  # an incident's first and last rows are observed, as the label says
        keep[np.flatnonzero(_stamps(seconds).isin([i.start, i.end]))] = True
    frame = pd.DataFrame({"timestamp": _stamps(seconds[keep]), "value": np.round(value[keep], 3)})
    return LabelledSeries(name, frame.reset_index(drop=True), tuple(incidents))


def _tag(texture: str) -> str:
    if texture not in TEXTURES:
        raise ValueError(f"texture must be one of {', '.join(TEXTURES)}, not {texture!r}")
    return TEXTURES[texture]


def _heavy(rng: np.random.Generator, value: np.ndarray, sigma: np.ndarray, seconds: np.ndarray,
           step_s: float, incidents: list[Incident]) -> np.ndarray:
    """Normal behaviour of real series that the plain shapes lack, none of it labelled.

    - heavy-tailed noise: Student-t shocks (2.5-5 degrees of freedom) at 0.5-1x the series' noise
      on top of it, so a normal row strays 5-10 noise units now and then (the normal fit's tail does not);
    - bursts: 1-6 a day of 1-3 steps at 1.3-2.2x (a cron job, a batch, a retry storm), never within
      2 h of an incident, so the labels stay true; with a fifth of them at 2-3.5x (as big as the
      smaller labelled spikes: a detector must learn they are usual from their frequency);
    - on half the series, a count: the value rescaled to a median of 2-40 and drawn as Poisson, so
      low levels are quantised and zeros are common.
    """
    n = len(value)
    df = rng.uniform(2.5, 5.0)
    shocks = rng.standard_t(df, n) * np.sqrt((df - 2.0) / df)  # unit variance
    value = value * np.exp(rng.uniform(0.5, 1.0) * sigma * shocks)
    per_day = rng.uniform(1.0, 6.0)
    clear = np.ones(n, dtype=bool)
    stamps = _stamps(seconds)
    for i in incidents:
        clear &= ~((stamps >= i.start - pd.Timedelta(hours=2)) & (stamps <= i.end + pd.Timedelta(hours=2)))
    for first in np.flatnonzero(rng.random(n) < per_day * step_s / 86400.0):
        length = int(rng.integers(1, 4))
        if first + length <= n and clear[first:first + length].all():
            big = rng.random() < 0.2
            value[first:first + length] *= rng.uniform(2.0, 3.5) if big else rng.uniform(1.3, 2.2)
    if rng.random() < 0.5:
        value = rng.poisson(value * rng.uniform(2.0, 40.0) / float(np.median(value))).astype("float64")
    return value


def _place_shapes(rng: np.random.Generator, n: int, step_s: float, days: float,
                  per_day: float) -> list[tuple[str, int, int]]:
    """Incidents after the first 1.5 days (a first model needs a day), at least 6 h apart, kinds drawn evenly."""
    wanted = max(1, rng.poisson(per_day * days))
    placed: list[tuple[str, int, int]] = []
    start, apart = int(1.5 * 86400 / step_s), int(6 * 3600 / step_s)
    for _ in range(wanted * 20):
        if len(placed) >= wanted:
            break
        kind = SHAPE_KINDS[int(rng.integers(len(SHAPE_KINDS)))]
        length = _shape_length(rng, kind, step_s)
        first = int(rng.integers(start, n - length - apart))
        last = first + length - 1
        if all(last + apart < a or first > b + apart for _, a, b in placed):
            placed.append((kind, first, last))
    return sorted(placed, key=lambda p: p[1])


def _shape_length(rng: np.random.Generator, kind: str, step_s: float) -> int:
    if kind in ("spike", "dip"):
        return int(rng.integers(1, 4)) * max(1, int(60 / step_s))
    if kind in ("level_shift", "variance_regime"):
        return max(PERMANENT_LABEL_STEPS, int(3600 / step_s))
    minutes = {"transient_shift": (30.0, 180.0), "variance_burst": (30.0, 120.0)}[kind]
    return max(3, int(rng.uniform(*minutes) * 60 / step_s))
