"""`detector:` how series are modelled and scored."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from detector.models import DEFAULT, MODELS
from upwatch.config.base import Section
from upwatch.durations import Duration, Interval


class Detector(Section):
    """Shared by the live detector and `python -m detector backtest`; defaults are the benchmarked ones."""

    enabled: bool = True
    # One of detector.models.MODELS (module paths only, so this import stays cheap).
    model: str = DEFAULT
    score_interval: Interval = Field(default="15s", validate_default=True)
    retrain_interval: Interval = Field(default="1h", validate_default=True)
    training_window: Interval = Field(default="7d", validate_default=True)
    # Also retrain once data time since the last training passes this share of the model's training span:
    # young models adapt within hours, a model on a full week is refitted about twice a day.
    retrain_fraction: float = Field(default=0.1, ge=0, le=10)
    # A model needs a day of history (models that had not seen a daily cycle cried wolf on
    # bench/detector_quality.py) and at least min_training_rows usable rows (a day at 5 min).
    # A sparser series trains on as long a window as those rows take (see docs/detector.md).
    min_training_span: Interval = Field(default="1d", validate_default=True)
    min_training_rows: int = Field(default=288, ge=10)
    # Before a series has a model: judge it by the simple rule in detector.early, or claim nothing
    # (measured on bench/detector_quality.py: docs/detector.md).
    before_model: Literal["rule", "silent"] = "rule"
    # Share of normal points above the threshold, extrapolated from the bulk of the training scores.
    target_false_alarm_rate: float = Field(default=0.0001, gt=0, lt=0.5)
    # Event hold: for this long after a series' last alarm, a flagged row counts only when its score is
    # above that alarm's peak (the same size again is that series' usual); 0s switches it off.
    event_hold: Duration = Field(default="3h", validate_default=True)
    model_dir: Path = Path(".upwatch/models")
    max_workers: int = Field(default=2, ge=1)
    # A Dask scheduler (`tcp://scheduler:8786`, `tls://...`): model training runs on its workers
    # instead of max_workers local processes (detector/cluster.py, docs/production.md).
    cluster: str | None = None

    @field_validator("cluster")
    @classmethod
    def _scheduler(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("tcp://", "tls://")):
            raise ValueError(f"{value!r} is not a Dask scheduler address (tcp://host:8786 or tls://host:8786)")
        return value

    @field_validator("event_hold")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative (0s switches the hold off)")
        return value

    @field_validator("model")
    @classmethod
    def _registered(cls, value: str) -> str:
        if value not in MODELS:
            raise ValueError(f"unknown model {value!r} (known: {', '.join(sorted(MODELS))})")
        return value
