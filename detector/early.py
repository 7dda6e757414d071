"""The simple rule that judges a series before it has a model (`detector.before_model: rule`).

A row is anomalous when every check of its last 45 s (one row at a minute or more) is more
than EARLY_Z robust z-scores (median / IQR of the previous 60 points, at most 1 h) away from
usual, once EARLY_ROWS rows have been seen, and further out than any row judged before it (a
series' own bursts raise its bar). It needs no training, so it speaks from the
series' first hour; the bar is high because nothing is calibrated yet (docs/detector.md has
what it found on bench/detector_quality.py against staying silent).
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pandas as pd

from detector import features, reasons
from detector.scoring import Verdict
from detector.series import Series

EARLY_Z = 12.0
EARLY_ROWS = 30
# Scores map z to [0, 1] with the rule's bar at 0.5, like a calibrated model's threshold.
THRESHOLD = 0.5


def flags(prepared: pd.DataFrame, two_sided: bool) -> tuple[np.ndarray, np.ndarray]:
    """(score, flag) per row of a prepared frame by the rule, at the step of its first EARLY_ROWS rows."""
    finite = prepared["value"].notna().to_numpy()
    step = features.cadence(prepared["timestamp"][finite].iloc[:EARLY_ROWS])
    z = features.compute(prepared, ("robust_z_run3",), step, two_sided)["robust_z_run3"].to_numpy()
    seen = np.cumsum(finite) > EARLY_ROWS
    z = np.where(seen & np.isfinite(z), z, np.nan)
    bar = np.maximum(EARLY_Z, _record_before(z))
    return np.clip(THRESHOLD * z / bar, 0.0, 1.0), np.nan_to_num(z) >= bar


def _record_before(z: np.ndarray) -> np.ndarray:
    """Per row, the largest z of the rows judged before it (0 before any).

    A series whose ordinary bursts are far out on a one-hour yardstick (network bytes, disk
    writes) shows them in its first hours; once it has, the same size is its usual, not news.
    """
    record = np.fmax.accumulate(np.nan_to_num(z, nan=0.0))
    return np.r_[0.0, record[:-1]] if len(z) else record


def judge(history: pd.DataFrame, new_since: datetime, series: Series) -> list[Verdict]:
    """Verdicts by the rule for rows of `history` (timestamp, value) newer than `new_since`; higher is worse."""
    prepared = features.prepare(history)
    scores, flagged = flags(prepared, two_sided=False)
    finite = prepared["value"].notna().to_numpy()
    step = features.cadence(prepared["timestamp"][finite].iloc[:EARLY_ROWS])
    context = features.compute(prepared, ("robust_z_run3",), step, two_sided=False)
    fresh = (prepared["timestamp"] > pd.Timestamp(new_since)).to_numpy()
    out = []
    for i in np.flatnonzero(fresh):
        score = float(scores[i])
        if math.isnan(score):
            continue
        row = {str(k): float(v) for k, v in context.iloc[i].items()}
        anomalous = bool(flagged[i])
        out.append(Verdict(
            time=prepared["timestamp"].iloc[i].floor("us").to_pydatetime(),
            value=row["value"],
            score=score,
            anomalous=anomalous,
            severity=reasons.severity(score) if anomalous else "",
            reason=_reason(row, series) if anomalous else "",
            features={"robust_z_run3": round(row["robust_z_run3"], 6)},
        ))
    return out


def _reason(row: dict[str, float], series: Series) -> str:
    said = reasons.explain({"robust_z_run3": 1.0}, row, series.label, series.unit)
    return f"{said} (no model yet: the early rule)"
