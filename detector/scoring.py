"""Judge a series' new rows with its model: score, verdict, severity, reason, feature values.

The same features.compute / model.score / threshold the backtest replays; the caller
passes enough history before the new rows (features.Scale(step).lookback) for features to match.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd

from detector import features, models, phases, reasons
from detector.artifacts import Artifact
from detector.incidents import LastAlarm, hold
from detector.series import Series

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """One judged row."""

    time: datetime
    value: float
    score: float
    anomalous: bool
    severity: str
    reason: str
    features: dict[str, float | None]


def judge(history: pd.DataFrame, new_since: datetime | None, artifact: Artifact, series: Series) -> list[Verdict]:
    """Verdicts for rows of `history` (timestamp, value) newer than `new_since`, oldest first."""
    module = models.get(artifact.model_name)
    prepared = features.prepare(history)
    step = artifact.step
    if new_since is not None:
        prepared = prepared[features.needed(prepared, pd.Timestamp(new_since), step)]
    feats = features.compute(prepared, artifact.features, step, artifact.two_sided)
    fresh = prepared["timestamp"] > new_since if new_since is not None else prepared["timestamp"].notna()
    rows = feats[fresh.to_numpy()]
    if rows.empty:
        return []
    scores = module.score(artifact.model, rows).to_numpy(dtype="float64")
    stamps = prepared.loc[rows.index, "timestamp"]
    timings = prepared.loc[rows.index, [c for c in phases.PHASES if c in prepared.columns]].to_dict("records")
    out = []
    for record, timing, score, at in zip(rows.to_dict("records"), timings, scores, stamps, strict=True):
        if math.isnan(score):
            continue
        row = {str(k): float(v) for k, v in record.items()}
        anomalous = bool(score >= artifact.threshold)
        out.append(Verdict(
            time=at.floor("us").to_pydatetime(),
            value=row["value"],
            score=float(score),
            anomalous=anomalous,
            severity=reasons.severity(score) if anomalous else "",
            reason=_reason(module, artifact, row, {str(k): float(v) for k, v in timing.items()}, series)
            if anomalous else "",
            features={k: _finite(v) for k, v in row.items()},
        ))
    return out


def _reason(module: models.Model, artifact: Artifact, row: dict[str, float], timing: dict[str, float],
            series: Series) -> str:
    """The phase that moved, where the series has phases and one stands out; else the model's feature."""
    return phases.reason(row | timing, artifact.phases) \
        or reasons.explain(module.explain(artifact.model, row), row, series.label, series.unit)


def _finite(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


def held(verdicts: list[Verdict], last: LastAlarm | None, gap: timedelta, window: timedelta) -> list[Verdict]:
    """The verdicts after the event hold (detector.incidents.hold, as the backtest applies it): an
    anomalous verdict within `window` of the series' last alarm and not above its peak is not anomalous."""
    flagged = [v for v in verdicts if v.anomalous]
    keep, _ = hold(((pd.Timestamp(v.time), v.score) for v in flagged), last, gap, window)
    dropped = {id(v) for v, kept in zip(flagged, keep, strict=True) if not kept}
    return [dataclasses.replace(v, anomalous=False, severity="", reason="") if id(v) in dropped else v
            for v in verdicts]
