"""The baseline the quality benchmark compares against; deliberately not in MODELS.

The issue's reference method: the plain feature set and
IsolationForest(n_estimators=100, contamination=0.1), which flags ~10 % of points.
Same contract as detector.models.isolation_forest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

from detector.features import DEFAULT_STEP, REFERENCE_FEATURES
from detector.models.isolation_forest import RANDOM_STATE, NotEnoughData, _matrix
from upwatch.config.detector import Detector

FEATURES: tuple[str, ...] = REFERENCE_FEATURES


@dataclass
class Fitted:
    forest: IsolationForest
    features: tuple[str, ...]
    rows: int
    threshold: float
    step: pd.Timedelta = DEFAULT_STEP
    two_sided: bool = False


def train(features: pd.DataFrame, settings: Detector, step: pd.Timedelta = DEFAULT_STEP,
          two_sided: bool = False) -> Fitted:
    """Fit with contamination=0.1; the threshold is the forest's own offset."""
    x = _matrix(features, FEATURES)
    if len(x) < settings.min_training_rows:
        raise NotEnoughData(f"{len(x)} usable rows, need {settings.min_training_rows}")
    forest = IsolationForest(n_estimators=100, contamination=0.1, random_state=RANDOM_STATE)
    forest.fit(x.to_numpy())
    return Fitted(forest=forest, features=FEATURES, rows=len(x), threshold=float(-forest.offset_),
                  step=step, two_sided=two_sided)


def score(model: Fitted, features: pd.DataFrame) -> pd.Series:
    """Raw Isolation Forest scores in [0, 1]; >= model.threshold is what contamination=0.1 flags."""
    x = _matrix(features, model.features)
    out = pd.Series(np.nan, index=features.index, dtype="float64")
    if len(x):
        out.loc[x.index] = -model.forest.score_samples(x.to_numpy())
    return out
