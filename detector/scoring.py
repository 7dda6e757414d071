"""Judge a series' new rows with its model: score, verdict, severity, reason, feature values.

The same features.compute / model.score / threshold the backtest replays; the caller
passes enough history before the new rows (features.Scale(step).lookback) for features to match.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from detector import features, reasons
from detector.artifacts import Artifact
from detector.models import MODELS
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
    module = MODELS[artifact.model_name]
    prepared = features.prepare(history)
    step = artifact.model.step
    if new_since is not None:
        prepared = prepared[features.needed(prepared, pd.Timestamp(new_since), step)]
    feats = features.compute(prepared, artifact.features, step, artifact.model.two_sided)
    fresh = prepared["timestamp"] > new_since if new_since is not None else prepared["timestamp"].notna()
    rows = feats[fresh.to_numpy()]
    if rows.empty:
        return []
    scores = module.score(artifact.model, rows)
    out = []
    for (index, row), at in zip(rows.iterrows(), prepared.loc[rows.index, "timestamp"], strict=True):
        score = float(scores.loc[index])
        if math.isnan(score):
            continue
        anomalous = score >= artifact.threshold
        values = {k: _finite(v) for k, v in row.items()}
        out.append(Verdict(
            time=at.floor("us").to_pydatetime(),
            value=float(row["value"]),
            score=score,
            anomalous=anomalous,
            severity=reasons.severity(score) if anomalous else "",
            reason=reasons.explain(artifact.model, row.to_dict(), series.label, series.unit) if anomalous else "",
            features=values,
        ))
    return out


def _finite(value: Any) -> float | None:
    number = float(value)
    return round(number, 6) if math.isfinite(number) else None
