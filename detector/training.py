"""Which rows a model trains on and when it is retrained, and the worker-process fit of one series.

The rules here are shared by the live service and the backtest replay, so a backtest
is a faithful rehearsal: the last training window of rows (at least long enough to hold
2 x min_training_rows at the series' step), minus rows inside past incidents; a model once
there is min_training_span of history and min_training_rows usable rows; a retrain once
data time passes max(retrain_interval, retrain_fraction x the model's span).

`fit` is a plain function of picklable arguments so it runs in a ProcessPoolExecutor
(off the event loop, many series in parallel within max_workers).
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from detector import artifacts, features, models, phases
from detector.models import NotEnoughData
from upwatch.config.detector import Detector

logger = logging.getLogger(__name__)

# History a row's features look back over at the default 15 s step: a day for "same time
# yesterday", plus the 6 h and 60-point baselines that fall back when yesterday is missing.
# Sparser series look back further (features.Scale.lookback).
LOOKBACK = features.Scale(features.DEFAULT_STEP).lookback


def window_for(step: pd.Timedelta, settings: Detector) -> pd.Timedelta:
    """The training window at `step`: training_window, or the time 2 x min_training_rows steps take if longer."""
    return max(pd.Timedelta(settings.training_window), 2 * settings.min_training_rows * step)


def outlived(trained_at: datetime | np.datetime64, step: pd.Timedelta, now: datetime | np.datetime64,
             settings: Detector) -> bool:
    """Whether a model trained at `trained_at` (at `step`) is past its training window at `now`.

    A retraining that finds too few rows (a series that turned sparse, a window mostly inside a long
    incident) leaves the model judging while it is younger than the window it learnt from; once it
    is older, nothing it saw is in the window any more, and the series is judged as one without a
    model (the early rule, or nothing with before_model: silent) until a retraining succeeds. Live
    and the backtest both ask this.
    """
    return bool(pd.Timestamp(now) - pd.Timestamp(trained_at) > window_for(step, settings))


def history_for(step: pd.Timedelta, settings: Detector) -> pd.Timedelta:
    """How far back a training reads: its window plus the features' lookback before it."""
    return window_for(step, settings) + features.Scale(step).lookback


def select(stamps: np.ndarray, usable: np.ndarray, excluded: np.ndarray, step: pd.Timedelta,
           settings: Detector) -> np.ndarray:
    """Training rows (a mask) of a series ending at stamps[-1]; raise NotEnoughData if there are too few.

    stamps are sorted datetime64; usable marks rows with finite features, excluded rows
    inside past incidents.
    """
    trained_at = stamps[-1]
    keep = usable & ~excluded & (stamps > trained_at - np.timedelta64(window_for(step, settings)))
    rows = int(keep.sum())
    if rows < settings.min_training_rows:
        raise NotEnoughData(f"{rows} usable rows, need {settings.min_training_rows}")
    span = pd.Timedelta(trained_at - stamps[keep][0])
    if span < pd.Timedelta(settings.min_training_span):
        raise NotEnoughData(f"{_hours(span)} of history, need {_hours(pd.Timedelta(settings.min_training_span))}")
    return np.asarray(keep, dtype=bool)


def _hours(span: pd.Timedelta) -> str:
    return f"{span.total_seconds() / 3600:.1f} h"


def ready_at(stamps: np.ndarray, finite: np.ndarray, settings: Detector) -> int:
    """Index of the first row by which a series has enough history for a first model (len(stamps) if never)."""
    seen = np.cumsum(finite)
    if not finite.any():
        return len(stamps)
    first = stamps[int(np.argmax(finite))]
    enough = (seen >= settings.min_training_rows) & (stamps - first >= np.timedelta64(settings.min_training_span))
    hits = np.flatnonzero(enough)
    return int(hits[0]) if len(hits) else len(stamps)


def due_after(rows: int, step: pd.Timedelta, settings: Detector) -> pd.Timedelta:
    """Data time from one training to the next for a model of `rows` rows at `step`."""
    return max(pd.Timedelta(settings.retrain_interval), settings.retrain_fraction * rows * step)


def fit(
    series: str,
    frame: pd.DataFrame,
    claimed: list[tuple[datetime, datetime]],
    settings: Detector,
    version: int,
    model_dir: Path,
) -> artifacts.Artifact:
    """Train the configured model on `frame` (timestamp, value; history_for(step) of rows) and save the artifact.

    Raises NotEnoughData when the window holds too little history.
    """
    module = models.get(settings.model)
    prepared = features.prepare(frame)
    finite = prepared["value"].notna().to_numpy()
    if not finite.any():
        raise NotEnoughData(f"0 usable rows, need {settings.min_training_rows}")
    step = features.cadence(prepared["timestamp"][finite])
    # Every live series (latency, failure and error rates) is one where only higher is worse.
    feats = features.compute(prepared, module.FEATURES, step, two_sided=False, context=False)
    stamps = pd.DatetimeIndex(prepared["timestamp"]).tz_convert(None).to_numpy()
    excluded = np.zeros(len(stamps), dtype=bool)
    for start, end in claimed:
        excluded |= ((prepared["timestamp"] >= start) & (prepared["timestamp"] <= end)).to_numpy()
    usable = np.isfinite(feats.loc[:, list(module.FEATURES)].to_numpy()).all(axis=1)
    keep = select(stamps, usable, excluded, step, settings)
    model = module.train(feats[keep], settings)
    trained_at = prepared["timestamp"].iloc[-1]
    artifact = artifacts.Artifact(
        model=model, model_name=settings.model, series=series, version=version,
        trained_at=trained_at.floor("us").to_pydatetime(), rows=model.rows, features=tuple(module.FEATURES),
        threshold=model.threshold, step=step, two_sided=False, versions=module.versions(),
        phases=phases.baselines(prepared[keep]),
    )
    artifacts.save(artifact, artifacts.path_for(model_dir, series))
    return artifact
