"""Fit one series in a worker process: features, training rows, model, artifact file.

`fit` is a plain function of picklable arguments so it runs in a ProcessPoolExecutor
(off the event loop, many series in parallel within max_workers). It uses exactly the
replay's rules: the last training_window of rows, minus rows inside past incidents.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from detector import artifacts, features
from detector.models import MODEL, MODELS
from detector.models.isolation_forest import NotEnoughData
from upwatch.config.detector import Detector

logger = logging.getLogger(__name__)

# History a row's features look back over: a day for "same time yesterday", plus the 6 h
# and 60-point baselines that fall back when yesterday is missing.
LOOKBACK = pd.Timedelta(hours=26)


def fit(
    series: str,
    frame: pd.DataFrame,
    claimed: list[tuple[datetime, datetime]],
    settings: Detector,
    version: int,
    model_dir: Path,
) -> artifacts.Artifact:
    """Train on `frame` (timestamp, value; the window plus LOOKBACK before it) and save the artifact.

    Raises NotEnoughData when fewer than settings.min_training_rows usable rows remain.
    """
    module = MODELS[MODEL]
    prepared = features.prepare(frame)
    if prepared.empty:
        raise NotEnoughData(f"0 usable rows, need {settings.min_training_rows}")
    feats = features.compute(prepared, module.FEATURES)
    stamps = prepared["timestamp"]
    trained_at = stamps.iloc[-1]
    keep = (stamps > trained_at - pd.Timedelta(settings.training_window)).to_numpy()
    for start, end in claimed:
        keep &= ~((stamps >= start) & (stamps <= end)).to_numpy()
    usable = np.isfinite(feats.loc[:, list(module.FEATURES)].to_numpy()).all(axis=1)
    model = module.train(feats[keep & usable], settings)
    artifact = artifacts.Artifact(
        model=model, model_name=MODEL, series=series, version=version,
        trained_at=trained_at.floor("us").to_pydatetime(), rows=model.rows, features=tuple(module.FEATURES),
        threshold=model.threshold,
    )
    artifacts.save(artifact, artifacts.path_for(model_dir, series))
    return artifact
