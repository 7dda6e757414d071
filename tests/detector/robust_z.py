"""A throw-away detector model the tests register (`MODELS["robust_z"]`) to show the seam is one module.

Scores a row by its persistent robust z-score alone, against a limit taken from the
training rows: score = 0.5 * z / limit, so a row at the limit is at the threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from detector.models.contract import NotEnoughData, Settings

FEATURES: tuple[str, ...] = ("robust_z_persist",)
# The limit is never below this many noise units, so a quiet week does not flag every wiggle.
FLOOR = 20.0


@dataclass(frozen=True)
class Fitted:
    rows: int
    limit: float
    threshold: float = 0.5


def train(features: pd.DataFrame, settings: Settings) -> Fitted:
    """The limit is twice the training rows' 99.9 % quantile of z, at least FLOOR."""
    z = features["robust_z_persist"].to_numpy(dtype="float64")
    z = z[np.isfinite(z)]
    if len(z) < settings.min_training_rows:
        raise NotEnoughData(f"{len(z)} usable rows, need {settings.min_training_rows}")
    return Fitted(rows=len(z), limit=max(FLOOR, 2.0 * float(np.quantile(z, 0.999))))


def score(model: Fitted, features: pd.DataFrame) -> pd.Series:
    """0.5 * z / limit in [0, 1]; NaN where z is missing."""
    z = features["robust_z_persist"].astype("float64")
    return (0.5 * z / model.limit).clip(0.0, 1.0).where(np.isfinite(z))


def explain(model: Fitted, row: Mapping[str, float]) -> dict[str, float]:
    """Only one feature to blame."""
    return {"robust_z_persist": float(row["robust_z_persist"]) / model.limit}


def versions() -> dict[str, str]:
    """The fitted object is a plain dataclass; numpy computed its limit."""
    return {"numpy": np.__version__}
