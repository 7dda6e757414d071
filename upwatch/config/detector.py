"""`detector:` how series are modelled and scored."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from upwatch.config.base import Section
from upwatch.durations import Interval


class Detector(Section):
    """Shared by the live detector and `python -m detector backtest`; defaults are the benchmarked ones."""

    enabled: bool = True
    model: Literal["isolation_forest"] = "isolation_forest"
    score_interval: Interval = Field(default="15s", validate_default=True)
    retrain_interval: Interval = Field(default="1h", validate_default=True)
    training_window: Interval = Field(default="7d", validate_default=True)
    # A day at 15 s: models that have not seen a daily cycle cried wolf on bench/detector_quality.py.
    min_training_rows: int = Field(default=5760, ge=10)
    # Share of normal points above the threshold, extrapolated from the bulk of the training scores.
    target_false_alarm_rate: float = Field(default=0.0001, gt=0, lt=0.5)
    # Anomalous points of one series no further apart than this form one incident.
    incident_gap: Interval = Field(default="2m", validate_default=True)
    n_estimators: int = Field(default=100, ge=10, le=1000)
    random_state: int = 0
    model_dir: Path = Path(".upwatch/models")
    max_workers: int = Field(default=2, ge=1)
