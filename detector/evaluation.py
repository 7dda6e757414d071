"""Score a replay against labelled incidents: recall, false alarms per series-day, detection delay.

Definitions (also printed by bench/detector_quality.py):
- An incident counts once the detector could claim anything (its start is after the first model).
- Detected: at least one flagged row inside [start, end]. Delay: first such row minus start.
- A false alarm is a group of flagged rows (rows within `gap` of each other, as for live
  incidents) with no row inside any incident or in the `grace` after one ends,
  where a detector may legitimately still see the recovery.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from detector.incidents import Incident, from_scores
from detector.synthetic import LabelledSeries

GRACE = timedelta(minutes=15)


@dataclass(frozen=True)
class Found:
    kind: str
    detected: bool
    delay_s: float | None


@dataclass(frozen=True)
class Outcome:
    """One series' result."""

    days: float
    found: tuple[Found, ...]
    false_alarms: int
    flagged_outside: int


def evaluate(
    labelled: LabelledSeries, result: pd.DataFrame, gap: timedelta, grace: timedelta = GRACE
) -> Outcome:
    """Compare replay output (anomaly_score, is_anomaly, judged; aligned with labelled.frame) with the labels."""
    stamps = pd.to_datetime(labelled.frame["timestamp"], utc=True)
    judged = result["judged"].to_numpy(dtype=bool)
    if not judged.any():
        return Outcome(0.0, (), 0, 0)
    since = stamps[judged].min()
    flags = result["is_anomaly"].to_numpy(dtype=bool)
    flagged_at = stamps[flags]
    found = []
    covered = np.zeros(len(stamps), dtype=bool)
    for incident in labelled.incidents:
        covered |= ((stamps >= incident.start) & (stamps <= incident.end + grace)).to_numpy()
        if incident.start < since:
            continue
        inside = flagged_at[(flagged_at >= incident.start) & (flagged_at <= incident.end)]
        delay = (inside.min() - incident.start).total_seconds() if len(inside) else None
        found.append(Found(incident.kind, bool(len(inside)), delay))
    alarms = from_scores(stamps, result["anomaly_score"], pd.Series(flags & ~covered), gap)
    # A group touching an incident window was split off by the mask above; rejoin it.
    real = from_scores(stamps, result["anomaly_score"], pd.Series(flags & covered), gap)
    false_alarms = sum(1 for a in alarms if not any(_touch(a, r, gap) for r in real))
    days = (stamps.max() - since).total_seconds() / 86400.0
    return Outcome(days, tuple(found), false_alarms, int((flags & ~covered).sum()))


def _touch(a: Incident, b: Incident, gap: timedelta) -> bool:
    return bool(a.start <= b.end + gap and b.start <= a.end + gap)


def summarize(outcomes: list[Outcome]) -> dict[str, object]:
    """Totals over series: recall overall and per kind, false alarms per series-day, delays."""
    found = [f for o in outcomes for f in o.found]
    days = sum(o.days for o in outcomes)
    delays = [f.delay_s for f in found if f.delay_s is not None]
    false_alarms = sum(o.false_alarms for o in outcomes)
    return {
        "series": len(outcomes),
        "series_days": days,
        "incidents": len(found),
        "recall": _share(found),
        "false_alarms": false_alarms,
        "false_alarms_per_series_day": _per_day(false_alarms, days),
        "flagged_points_outside_per_day": _per_day(sum(o.flagged_outside for o in outcomes), days),
        "delay_median_s": _median(delays),
        "delay_p90_s": float(np.quantile(delays, 0.9)) if delays else float("nan"),
        "by_kind": {k: _kind(found, k) for k in sorted({f.kind for f in found})},
    }


def _kind(found: list[Found], kind: str) -> dict[str, float]:
    mine = [f for f in found if f.kind == kind]
    return {
        "incidents": len(mine),
        "recall": _share(mine),
        "delay_median_s": _median([f.delay_s for f in mine if f.delay_s is not None]),
    }


def _per_day(count: int, days: float) -> float:
    return count / days if days else float("nan")


def _share(found: list[Found]) -> float:
    return sum(f.detected for f in found) / len(found) if found else float("nan")


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")
