"""The baseline the quality benchmark compares against; deliberately not in MODELS.

The issue's reference method: the plain feature set and
IsolationForest(n_estimators=100, contamination=0.1), which flags ~10 % of points.
Keeps the contract in `detector.models`, with the forest's raw scores (its threshold is not 0.5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

from detector.features import REFERENCE_FEATURES
from detector.models import isolation_forest as ours
from detector.models.contract import NotEnoughData, Settings

FEATURES: tuple[str, ...] = REFERENCE_FEATURES


@dataclass
class Fitted:
    forest: IsolationForest
    features: tuple[str, ...]
    rows: int
    threshold: float


def train(features: pd.DataFrame, settings: Settings) -> Fitted:
    """Fit with contamination=0.1; the threshold is the forest's own offset."""
    x = ours.matrix(features, FEATURES)
    if len(x) < settings.min_training_rows:
        raise NotEnoughData(f"{len(x)} usable rows, need {settings.min_training_rows}")
    forest = IsolationForest(n_estimators=100, contamination=0.1, random_state=ours.RANDOM_STATE)
    forest.fit(x.to_numpy())
    return Fitted(forest=forest, features=FEATURES, rows=len(x), threshold=float(-forest.offset_))


def score(model: Fitted, features: pd.DataFrame) -> pd.Series:
    """Raw Isolation Forest scores in [0, 1]; >= model.threshold is what contamination=0.1 flags."""
    x = ours.matrix(features, model.features)
    out = pd.Series(np.nan, index=features.index, dtype="float64")
    if len(x):
        out.loc[x.index] = -model.forest.score_samples(x.to_numpy())
    return out


def explain(model: Fitted, row: Mapping[str, float]) -> dict[str, float]:
    """The reference method explains nothing: every feature counts alike."""
    return dict.fromkeys(model.features, 0.0)


def versions() -> dict[str, str]:
    """A scikit-learn forest, as ours."""
    return ours.versions()
