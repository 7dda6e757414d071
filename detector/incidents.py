"""Group a series' anomalous points into incidents: what an operator is told about."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

# Anomalous points of one series no further apart than this form one incident.
GAP = timedelta(minutes=2)


def gap_for(step: timedelta) -> timedelta:
    """GAP, or two steps of a sparser series: consecutive flagged 5-minute rows are one incident."""
    return max(GAP, 2 * step)


@dataclass(frozen=True)
class Incident:
    """Consecutive anomalous points of one series, no two more than `gap` apart."""

    start: pd.Timestamp
    end: pd.Timestamp
    peak_score: float
    peak_at: pd.Timestamp
    points: int

    def extend(self, at: pd.Timestamp, score: float) -> Incident:
        """This incident with one more anomalous point (at or after its end)."""
        peak = score > self.peak_score
        return Incident(
            start=self.start,
            end=max(self.end, at),
            peak_score=score if peak else self.peak_score,
            peak_at=at if peak else self.peak_at,
            points=self.points + 1,
        )


def group(points: Iterable[tuple[pd.Timestamp, float]], gap: timedelta) -> list[Incident]:
    """Incidents from (time, score) anomalous points in time order; a quiet stretch over `gap` starts a new one."""
    out: list[Incident] = []
    for at, score in points:
        if out and at - out[-1].end <= gap:
            out[-1] = out[-1].extend(at, score)
        else:
            out.append(Incident(start=at, end=at, peak_score=score, peak_at=at, points=1))
    return out


def from_scores(timestamps: pd.Series, scores: pd.Series, flags: pd.Series, gap: timedelta) -> list[Incident]:
    """Incidents of one scored series (any row order); flags marks the anomalous rows."""
    picked = pd.DataFrame({"at": pd.to_datetime(timestamps, utc=True), "score": scores})[flags.astype(bool)]
    picked = picked.sort_values("at", kind="stable")
    return group(zip(picked["at"], picked["score"].astype(float), strict=True), gap)


def quarantine(stamps: np.ndarray, flags: np.ndarray, gap: timedelta) -> np.ndarray:
    """Rows (sorted datetime64 stamps) inside an incident of `flags`, padded by `gap` each side.

    Training leaves these out, so a repeat of last week's outage still looks anomalous
    instead of being learnt as normal.
    """
    out = np.zeros(len(stamps), dtype=bool)
    if not flags.any():
        return out
    pad = np.timedelta64(gap)
    flagged = stamps[flags]
    breaks = np.flatnonzero(np.diff(flagged) > pad)
    starts = flagged[np.r_[0, breaks + 1]] - pad
    ends = flagged[np.r_[breaks, len(flagged) - 1]] + pad
    lo = np.searchsorted(stamps, starts, side="left")
    hi = np.searchsorted(stamps, ends, side="right")
    for a, b in zip(lo, hi, strict=True):
        out[a:b] = True
    return out


@dataclass(frozen=True)
class LastAlarm:
    """A series' latest alarm (incident): when its latest anomalous point was, and its peak score."""

    at: pd.Timestamp
    peak_score: float


def hold(
    points: Iterable[tuple[pd.Timestamp, float]], last: LastAlarm | None, gap: timedelta, window: timedelta,
) -> tuple[list[bool], LastAlarm | None]:
    """Which flagged (time, score) points, in time order, count as anomalous under the event hold.

    A point within `gap` of the last alarm's latest point continues that alarm and counts (the
    alarm's peak rises with it). Past that, for `window` after the alarm's end, a point counts
    only when its score is above the alarm's peak, and then opens a new alarm: the same size
    again soon after is that series' usual, not news (as the early rule's bar); something bigger
    is. Held points are not anomalies: they neither extend nor start an alarm, so a series with a
    burst of the same size every hour alarms about once per `window`. A zero window keeps every
    point. Returns a keep flag per point and the series' last alarm after them.
    """
    keep: list[bool] = []
    for at, score in points:
        if last is not None and at - last.at <= gap:
            last = LastAlarm(max(last.at, at), max(last.peak_score, score))
        elif last is not None and at - last.at <= window and score <= last.peak_score:
            keep.append(False)
            continue
        else:
            last = LastAlarm(at, score)
        keep.append(True)
    return keep, last


def hold_flags(
    stamps: np.ndarray, scores: np.ndarray, flags: np.ndarray, last: LastAlarm | None, gap: timedelta,
    window: timedelta,
) -> tuple[np.ndarray, LastAlarm | None]:
    """`hold` on arrays (sorted datetime64 stamps, scores, flags): the flags that count, and the last alarm."""
    picked = np.flatnonzero(flags)
    keep, last = hold(((pd.Timestamp(stamps[i]), float(scores[i])) for i in picked), last, gap, window)
    out = flags.copy()
    out[picked[~np.asarray(keep, dtype=bool)]] = False
    return out, last
