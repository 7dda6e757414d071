"""`detector:` how series are modelled and scored."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from upwatch.config.base import Section
from upwatch.durations import Interval


class Detector(Section):
    """Shared by the live detector and `python -m detector backtest`; defaults are the benchmarked ones."""

    enabled: bool = True
    score_interval: Interval = Field(default="15s", validate_default=True)
    retrain_interval: Interval = Field(default="1h", validate_default=True)
    training_window: Interval = Field(default="7d", validate_default=True)
    # A day at 15 s: models that have not seen a daily cycle cried wolf on bench/detector_quality.py.
    min_training_rows: int = Field(default=5760, ge=10)
    # Share of normal points above the threshold, extrapolated from the bulk of the training scores.
    target_false_alarm_rate: float = Field(default=0.0001, gt=0, lt=0.5)
    model_dir: Path = Path(".upwatch/models")
    max_workers: int = Field(default=2, ge=1)
